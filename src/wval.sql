-- wval.sql: prelude of the install script (roles and shared helpers).
-- Data objects live in schema wval (the extension's schema); the SQL entry
-- points wval_* live in public so that they work unqualified in a default
-- database right after CREATE EXTENSION wval CASCADE.
--
-- requires:  (nothing: the prelude comes first)

\echo Use "CREATE EXTENSION wval CASCADE" to load this file. \quit

-- Roles are cluster-wide: create them only when they do not exist yet, so
-- that the extension can be created in several databases.
DO $roles$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['wval_analyst', 'wval_producer', 'wval_validator', 'wval_admin']
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
END
$roles$;

-- Analysts read; producers and validators read as well; the admin role
-- holds the other three.
GRANT wval_analyst TO wval_producer, wval_validator;
GRANT wval_producer, wval_validator TO wval_admin;

COMMENT ON SCHEMA wval IS 'wval: evaluation store, policies, events (data objects; entry points are the public wval_* functions)';

REVOKE ALL ON SCHEMA wval FROM PUBLIC;
GRANT USAGE ON SCHEMA wval TO wval_analyst;

-- wval._require_text(field, value, sqlstate, hint): raises when value is null or blank.
CREATE FUNCTION wval._require_text(field text, value text, sqlstate text DEFAULT '22023', hint text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    IF value IS NULL OR btrim(value) = '' THEN
        RAISE EXCEPTION '"%" must not be empty', field
            USING ERRCODE = sqlstate,
                  DETAIL = format('%s is %s.', field, coalesce(quote_literal(value), 'null')),
                  HINT = coalesce(hint, format('Pass a non-blank %s.', field));
    END IF;
    RETURN value;
END
$$;
COMMENT ON FUNCTION wval._require_text(text, text, text, text) IS 'raises (default 22023) when a required text argument is null or blank';

-- wval._one_of(field, value, accepted): raises 22023 unless value is accepted.
CREATE FUNCTION wval._one_of(field text, value text, accepted text[]) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    IF value IS NULL OR NOT value = ANY (accepted) THEN
        RAISE EXCEPTION 'invalid value for "%"', field
            USING ERRCODE = '22023',
                  DETAIL = format('%s is %s.', field, coalesce(quote_literal(value), 'null')),
                  HINT = format('Accepted values: %s.', array_to_string(accepted, ', '));
    END IF;
    RETURN value;
END
$$;
COMMENT ON FUNCTION wval._one_of(text, text, text[]) IS 'raises 22023 unless value is one of the accepted values';

-- wval._duration(field, value): interval from a PostgreSQL interval or the
-- short forms 30s, 5m, 1h, 180d (docs/bus.md, "Delivery guarantees").
CREATE FUNCTION wval._duration(field text, value text) RETURNS interval
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    m text[];
BEGIN
    m := regexp_match(btrim(value), '^([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d|w)$');
    IF m IS NOT NULL THEN
        RETURN (m[1] || CASE m[2] WHEN 'ms' THEN ' milliseconds' WHEN 's' THEN ' seconds'
                               WHEN 'm' THEN ' minutes' WHEN 'h' THEN ' hours'
                               WHEN 'd' THEN ' days' ELSE ' weeks' END)::interval;
    END IF;
    RETURN value::interval;
EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow THEN
    RAISE EXCEPTION 'invalid duration for "%"', field
        USING ERRCODE = '22023',
              DETAIL = format('%s is %s.', field, coalesce(quote_literal(value), 'null')),
              HINT = 'Use a PostgreSQL interval (''1 day'') or a short form such as 30s, 5m, 1h, 180d.';
END
$$;
COMMENT ON FUNCTION wval._duration(text, text) IS 'parses a duration: a PostgreSQL interval or the short forms 30s, 5m, 1h, 180d';

------------------------------------------------------------------------------
-- Stages: each list is written here once (docs/development.md, "Stages").
-- Columns use the domains, arguments stay text (so a wrong stage is a 22023
-- naming the argument) and are checked with wval._one_of(field, value,
-- wval._stages()).  Domains over text keep stored values, dumps and the chain
-- hashes (the canonical text of a domain is that of its base type) as before.
------------------------------------------------------------------------------

-- wval._stages(): the evaluation stages, lowest first.
CREATE FUNCTION wval._stages() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT ARRAY['backtest', 'paper', 'shadow', 'live'] $$;
COMMENT ON FUNCTION wval._stages() IS 'the evaluation stages, lowest first: backtest, paper, shadow, live (the values of domain wval.stage)';

CREATE DOMAIN wval.stage AS text CHECK (VALUE = ANY (wval._stages()));
COMMENT ON DOMAIN wval.stage IS 'an evaluation stage: backtest | paper | shadow | live (wval._stages())';

-- wval._deployment_stages(): the stages a strategy can be deployed at.  They
-- differ from the evaluation stages: a strategy is evaluated for shadow but
-- never deployed there, and retired is a decision, not an evaluation.
CREATE FUNCTION wval._deployment_stages() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT ARRAY['backtest', 'paper', 'live', 'retired'] $$;
COMMENT ON FUNCTION wval._deployment_stages() IS 'the deployment stages of wval_set_stage: backtest, paper, live, retired (no shadow; the values of domain wval.deployment_stage)';

CREATE DOMAIN wval.deployment_stage AS text CHECK (VALUE = ANY (wval._deployment_stages()));
COMMENT ON DOMAIN wval.deployment_stage IS 'a deployment stage: backtest | paper | live | retired (wval._deployment_stages())';

-- wval._recommended_stages(): what a validation run may recommend, lowest first.
CREATE FUNCTION wval._recommended_stages() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT ARRAY['backtest_only', 'paper_only', 'paper_ok_live_candidate'] $$;
COMMENT ON FUNCTION wval._recommended_stages() IS 'the recommendations of a validation run, lowest first: backtest_only, paper_only, paper_ok_live_candidate (the values of domain wval.recommended_stage)';

CREATE DOMAIN wval.recommended_stage AS text CHECK (VALUE = ANY (wval._recommended_stages()));
COMMENT ON DOMAIN wval.recommended_stage IS 'a recommendation: backtest_only | paper_only | paper_ok_live_candidate (wval._recommended_stages())';

GRANT EXECUTE ON FUNCTION wval._stages(), wval._deployment_stages(), wval._recommended_stages() TO wval_analyst;
