-- pgTAP: no SECURITY DEFINER function of wval can be made to run a caller's
-- code with the owner's rights (issue 11, defect 1).
--
-- Every SECURITY DEFINER function of the extension is taken from the
-- catalogue (pg_proc joined to pg_depend on the extension), so a new one is
-- covered without editing this file.  For each:
--   * its proconfig pins search_path = pg_catalog, wval, pg_temp (pg_temp last);
--   * as a login member of each wval role, the caller first plants traps:
--       - round "tables": a temporary table named like every relation name
--         the extension's code mentions (and every temporary table name it
--         uses), with a trigger on INSERT/UPDATE/DELETE/TRUNCATE; temporary
--         domains named like the types it casts to, with a CHECK;
--       - round "views": a temporary view of each of those names whose
--         column calls the trap;
--       - in both rounds: functions and operators shadowing those the code
--         calls, in pg_temp and in a schema of the caller's put first on a
--         hostile search_path (pg_temp, that schema, public, pg_catalog);
--     then calls the function with plausible arguments derived from their
--     names and types (errors are fine) and asserts that no trap fired and
--     that the caller did not become superuser.
-- A trap, when it runs, counts itself in a sequence (not transactional, so
-- a call that fails after the trap ran is still caught) and tries
-- ALTER ROLE <caller> SUPERUSER.  Two deliberately vulnerable functions
-- (not part of the extension) prove the traps catch what they should.
-- Every round runs in a subtransaction that is rolled back: no call changes
-- what the next one sees.
BEGIN;
SET client_min_messages = warning;

CREATE TEMP TABLE def_fns AS
SELECT p.oid::regprocedure AS fn, p.prokind, p.proconfig
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
JOIN pg_catalog.pg_extension x ON x.oid = d.refobjid AND x.extname = 'wval'
WHERE p.prosecdef;

SELECT plan((SELECT 5 * count(*)::int + 8 FROM def_fns));

SELECT diag(format('%s SECURITY DEFINER functions of wval covered: %s', count(*),
                   string_agg(fn::text, ', ' ORDER BY fn::text)))
FROM def_fns;

------------------------------------------------------------------------------
-- 1. search_path pinned, pg_temp last
------------------------------------------------------------------------------
SELECT ok(coalesce('search_path=pg_catalog, wval, pg_temp' = ANY (proconfig), false),
          format('%s pins search_path = pg_catalog, wval, pg_temp (proconfig %s)', fn, coalesce(proconfig::text, 'none')))
FROM def_fns ORDER BY fn::text;

------------------------------------------------------------------------------
-- 2. fixture: a world with an active policy and runs; the attackers
------------------------------------------------------------------------------
SELECT wval_world_upsert('tap-def-w', actor => 'dba');
SELECT wval_policy_publish('tap-def-w', (SELECT policy FROM wval.sample_policies), 'alice');
SELECT wval_policy_activate('tap-def-w', 1, 'bob', 'sample');
SELECT wval_producer_register('tap-def-w', 'tap-def-mallory');
CREATE TEMP TABLE def_runs AS
SELECT c.strategy_id, (wval_evaluate('tap-def-w', c.strategy_id, 'backtest', NULL, c.metrics)).run_id
FROM wval.scenario_cases c WHERE c.set_name = 'good' ORDER BY c.strategy_id LIMIT 3;

CREATE ROLE tap_def_analyst LOGIN IN ROLE wval_analyst;
CREATE ROLE tap_def_producer LOGIN IN ROLE wval_producer;
CREATE ROLE tap_def_validator LOGIN IN ROLE wval_validator;
CREATE ROLE tap_def_admin LOGIN IN ROLE wval_admin;
CREATE SCHEMA tap_def_evil_analyst AUTHORIZATION tap_def_analyst;
CREATE SCHEMA tap_def_evil_producer AUTHORIZATION tap_def_producer;
CREATE SCHEMA tap_def_evil_validator AUTHORIZATION tap_def_validator;
CREATE SCHEMA tap_def_evil_admin AUTHORIZATION tap_def_admin;

-- the harness (owned by the test's superuser, run as the attackers)
CREATE SCHEMA tap_def;
GRANT USAGE ON SCHEMA tap_def TO PUBLIC;
CREATE SEQUENCE tap_def.fired;
GRANT USAGE, SELECT, UPDATE ON SEQUENCE tap_def.fired TO PUBLIC;
SELECT nextval('tap_def.fired') IS NOT NULL AS started;	-- last_value now counts every later call
-- names the audit attacked (temporary tables of earlier versions): planted
-- whether or not the code still mentions them
CREATE TABLE tap_def.attacked (name text PRIMARY KEY);
GRANT SELECT ON tap_def.attacked TO PUBLIC;
INSERT INTO tap_def.attacked VALUES ('wval_select_candidates'), ('wval_purge_scope'), ('wval_purge_runs'),
    ('wval_purge_results'), ('wval_purge_overrides'), ('wval_purge_failures'), ('wval_purge_versions'),
    ('wval_purge_activations'), ('wval_import'), ('wval_month_move');
CREATE TABLE tap_def.args (arg text PRIMARY KEY, val text NOT NULL);
GRANT SELECT ON tap_def.args TO PUBLIC;

-- plausible values by argument name (else by type, in tap_def.call)
INSERT INTO tap_def.args VALUES
    ('world_id', 'tap-def-w'), ('p_world_id', 'tap-def-w'), ('strategy_id', (SELECT min(strategy_id) FROM def_runs)),
    ('stage', 'backtest'), ('actor', 'tap-def-mallory'), ('reason', 'tap-def'), ('note', 'tap-def'),
    ('run_id', (SELECT min(run_id::text) FROM def_runs)), ('status', 'approved'), ('format', 'markdown'),
    ('group_name', 'tap-def-group'), ('types', '{run_evaluated}'), ('schedule', '*/5 * * * *'),
    ('table_name', 'evaluation_runs'), ('keep', '400 days'), ('set_name', 'good'), ('case_id', 'tap-def-case'),
    ('expected_status', 'pass'), ('privilege', 'read'), ('category', 'risk_breach'), ('severity', 'high'),
    ('reason_code', 'tap_def'), ('source', 'manual'), ('name', 'tap-def-job'), ('version', '1'),
    ('old_version', '1'), ('new_version', '1'), ('months_ahead', '1'), ('max', '10'), ('max_events', '10'),
    ('max_ms', '100'), ('event_id', '1'), ('event_ids', '{1}'), ('error', 'tap-def'), ('dry_run', 'true'),
    ('older_than', (now() - interval '400 days')::text), ('at', now()::text), ('as_of', current_date::text),
    ('days', format('{%s,%s,%s}', current_date - 3, current_date - 2, current_date - 1)),
    ('rets', '{0.01,-0.02,0.015}'), ('returns', '{0.01,-0.02,0.015,0.004,-0.001,0.02,0.01,-0.005,0.007,0.003,0.01,-0.01}'),
    ('metrics', (SELECT metrics::text FROM wval.scenario_cases WHERE set_name = 'good' ORDER BY strategy_id LIMIT 1)),
    ('policy', (SELECT policy::text FROM wval.sample_policies)),
    ('new_policy', (SELECT policy::text FROM wval.sample_policies)),
    ('old_policy', (SELECT policy::text FROM wval.sample_policies)),
    ('snapshot', jsonb_build_object('as_of', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                                    'version', 'tap-def-v1', 'weights', '{"s1": 0.5, "s2": 0.5}'::jsonb,
                                    'covariance', '{"s1,s1": 0.04, "s2,s2": 0.01}'::jsonb, 'ttl_sec', 600)::text),
    ('runs', jsonb_build_array(jsonb_build_object('world_id', 'tap-def-w', 'strategy_id', 'tap-def-imported',
                                                  'created_at', '2020-01-15T00:00:00Z', 'status', 'warn',
                                                  'metrics', '{}'::jsonb))::text),
    ('candidates', '{}'), ('context', '{}'), ('hmac_key', '\x0102'), ('p_now', now()::text),
    ('metric_or_check', 'returns.sharpe'), ('bucket', 'month'),
    ('diff', '{"old_policy_version": 1, "new_policy_version": 2, "impact_ratio": 0, "diffs": [], "top_offenders": []}');

-- tap_def.fire(what): a trap ran.  Counted in the sequence (survives a
-- rollback), then the escalation is attempted.  Created per attacker (the
-- attacker's name is baked in), here as a template.
CREATE FUNCTION tap_def.trap_source(p_attacker name) RETURNS text LANGUAGE sql AS $f$
    SELECT format($t$
        CREATE FUNCTION pg_temp.tap_def_fire(p_what text) RETURNS boolean
        LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $b$
        BEGIN
            PERFORM pg_catalog.nextval('tap_def.fired'::pg_catalog.regclass);
            BEGIN
                EXECUTE pg_catalog.format('ALTER ROLE %%I SUPERUSER', %L::pg_catalog.text);
            EXCEPTION WHEN OTHERS THEN NULL;
            END;
            RETURN true;
        END $b$;
        CREATE FUNCTION pg_temp.tap_def_trigger() RETURNS trigger
        LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $b$
        BEGIN
            PERFORM pg_temp.tap_def_fire(TG_TABLE_NAME);
            RETURN NULL;
        END $b$;
    $t$, p_attacker)
$f$;

-- relation names the extension's code mentions (after FROM, JOIN, INTO,
-- UPDATE, TABLE, USING, ONLY, LIKE, TRUNCATE, EXISTS; schema stripped), the
-- temporary table names it uses, and every relation of schema wval
CREATE FUNCTION tap_def.relation_names() RETURNS text[] LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH src AS (
        SELECT p.prosrc FROM pg_catalog.pg_proc p
        JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
        JOIN pg_catalog.pg_extension x ON x.oid = d.refobjid AND x.extname = 'wval'
        JOIN pg_catalog.pg_language l ON l.oid = p.prolang AND l.lanname IN ('sql', 'plpgsql'))
    SELECT array_agg(DISTINCT n ORDER BY n) FROM (
        SELECT lower(m[1]) AS n
        FROM src, regexp_matches(src.prosrc,
            '(?:from|join|into|update|table|using|only|like|truncate|exists)\s+(?:only\s+)?(?:if\s+(?:not\s+)?exists\s+)?(?:[a-z_][a-z0-9_]*\.)?([a-z_][a-z0-9_]*)',
            'gi') m
        UNION SELECT lower(m[1]) FROM src, regexp_matches(src.prosrc, 'pg_temp\.([a-z_][a-z0-9_]*)', 'gi') m
        UNION SELECT relname::text FROM pg_catalog.pg_class WHERE relnamespace = 'wval'::regnamespace AND relkind IN ('r', 'p', 'v', 'm')
        UNION SELECT a.name FROM tap_def.attacked a
    ) x
    WHERE n !~ '^(select|with|values|not|if|exists|only|lateral|the|a|an|and|or|on|in|is|as|to|of|for|by)$'
      AND n !~ '^__'
$$;

-- temporary table names the extension's code uses (what the audit attacked)
CREATE FUNCTION tap_def.temp_names() RETURNS text[] LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(array_agg(DISTINCT lower(m[1]) ORDER BY lower(m[1])), '{}')
    FROM pg_catalog.pg_proc p
    JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
    JOIN pg_catalog.pg_extension x ON x.oid = d.refobjid AND x.extname = 'wval',
    regexp_matches(p.prosrc, '(?:temp|temporary)\s+table\s+(?:if\s+not\s+exists\s+)?(?:pg_temp\.)?([a-z_][a-z0-9_]*)|pg_temp\.([a-z_][a-z0-9_]*)', 'gi') m0,
    LATERAL (SELECT ARRAY[coalesce(m0[1], m0[2])]) m(m)
$$;

-- the extension's code, for the function, type and operator names it uses
CREATE FUNCTION tap_def.code() RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT string_agg(p.prosrc, E'\n')
    FROM pg_catalog.pg_proc p
    JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
    JOIN pg_catalog.pg_extension x ON x.oid = d.refobjid AND x.extname = 'wval'
    JOIN pg_catalog.pg_language l ON l.oid = p.prolang AND l.lanname IN ('sql', 'plpgsql')
$$;

-- tap_def.plant(attacker schema, round): the traps, created by the current
-- role (the attacker).  Returns how many objects it planted.
CREATE FUNCTION tap_def.plant(p_evil text, p_round text) RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    code text := tap_def.code();
    n text;
    r record;
    planted integer := 0;
    i integer := 0;
BEGIN
    EXECUTE tap_def.trap_source(current_user);
    -- relations
    FOREACH n IN ARRAY tap_def.relation_names() LOOP
        BEGIN
            IF p_round = 'tables' THEN
                EXECUTE format('CREATE TEMP TABLE %I (x integer)', n);
                EXECUTE format('CREATE TRIGGER tap_def_trap BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON pg_temp.%I '
                               'FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.tap_def_trigger()', n);
                EXECUTE format('CREATE TRIGGER tap_def_trap_row BEFORE INSERT OR UPDATE OR DELETE ON pg_temp.%I '
                               'FOR EACH ROW EXECUTE FUNCTION pg_temp.tap_def_trigger()', n);
            ELSE
                EXECUTE format('CREATE TEMP VIEW %I AS SELECT pg_temp.tap_def_fire(%L) AS x', n, n);
            END IF;
            planted := planted + 1;
        EXCEPTION WHEN OTHERS THEN NULL;
        END;
    END LOOP;
    -- types cast to (::name), as domains whose CHECK is the trap
    FOR n IN SELECT DISTINCT lower(m[1]) FROM regexp_matches(code, '::\s*([a-z_][a-z0-9_]*)', 'gi') m
             WHERE lower(m[1]) <> 'wval' LOOP
        BEGIN
            EXECUTE format('CREATE DOMAIN pg_temp.%I AS pg_catalog.text CHECK (pg_temp.tap_def_fire(VALUE))', n);
            planted := planted + 1;
        EXCEPTION WHEN OTHERS THEN NULL;
        END;
    END LOOP;
    -- functions called by name: every overload in pg_catalog and wval, shadowed
    FOR r IN
        SELECT p.proname, p.proargtypes, p.prorettype, p.proretset
        FROM pg_catalog.pg_proc p
        WHERE p.pronamespace IN ('pg_catalog'::regnamespace, 'wval'::regnamespace) AND p.prokind = 'f'
          AND p.proname IN (SELECT DISTINCT lower(m[1]) FROM regexp_matches(code, '([a-z_][a-z0-9_]*)\s*\(', 'gi') m)
          AND NOT EXISTS (SELECT 1 FROM unnest(p.proargtypes::oid[]) t
                          WHERE t IN ('"any"'::regtype, 'internal'::regtype, 'cstring'::regtype))
          AND p.prorettype NOT IN ('internal'::regtype, 'trigger'::regtype, 'event_trigger'::regtype, 'cstring'::regtype)
    LOOP
        FOREACH n IN ARRAY ARRAY['pg_temp', p_evil] LOOP
            BEGIN
                EXECUTE format('CREATE FUNCTION %I.%I(%s) RETURNS %s%s LANGUAGE plpgsql AS %L', n, r.proname,
                               (SELECT string_agg(format_type(t, NULL), ', ') FROM unnest(r.proargtypes::oid[]) t),
                               CASE WHEN r.proretset THEN 'SETOF ' ELSE '' END, format_type(r.prorettype, NULL),
                               format('BEGIN PERFORM pg_temp.tap_def_fire(%L); RETURN%s; END',
                                      'function ' || r.proname, CASE WHEN r.proretset THEN '' ELSE ' NULL' END));
                planted := planted + 1;
            EXCEPTION WHEN OTHERS THEN NULL;
            END;
        END LOOP;
    END LOOP;
    -- operators written in the code: every binary pg_catalog operator of that name, shadowed
    FOR r IN
        SELECT o.oprname, o.oprleft, o.oprright, o.oprresult
        FROM pg_catalog.pg_operator o
        WHERE o.oprnamespace = 'pg_catalog'::regnamespace AND o.oprkind = 'b'
          AND o.oprname IN (SELECT DISTINCT m[1] FROM regexp_matches(code, '([-+*/<>=~!@#%^&|?]+)', 'g') m)
          AND o.oprleft NOT IN ('internal'::regtype, '"any"'::regtype) AND o.oprright NOT IN ('internal'::regtype, '"any"'::regtype)
    LOOP
        i := i + 1;
        FOREACH n IN ARRAY ARRAY['pg_temp', p_evil] LOOP
            BEGIN
                EXECUTE format('CREATE FUNCTION %I.tap_def_op_%s(%s, %s) RETURNS %s LANGUAGE plpgsql AS %L', n, i,
                               format_type(r.oprleft, NULL), format_type(r.oprright, NULL), format_type(r.oprresult, NULL),
                               format('BEGIN PERFORM pg_temp.tap_def_fire(%L); RETURN NULL; END', 'operator ' || r.oprname));
                EXECUTE format('CREATE OPERATOR %I.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = %I.tap_def_op_%s)', n, r.oprname,
                               format_type(r.oprleft, NULL), format_type(r.oprright, NULL), n, i);
                planted := planted + 1;
            EXCEPTION WHEN OTHERS THEN NULL;
            END;
        END LOOP;
    END LOOP;
    RETURN planted;
END
$$;

-- tap_def.call(fn): a call of fn with plausible arguments, by name (named
-- notation; arguments with defaults and no plausible value are left out),
-- every value a literal cast to a schema-qualified type, so that nothing in
-- the call itself resolves through the hostile search_path.
CREATE FUNCTION tap_def.call(p_fn regprocedure) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p pg_proc;
    a record;
    args text[] := '{}';
    v text;
    t text;
BEGIN
    SELECT * INTO p FROM pg_catalog.pg_proc WHERE oid = p_fn;
    FOR a IN
        SELECT u.name, u.typ, u.ord, u.ord > p.pronargs - p.pronargdefaults AS has_default
        FROM unnest(p.proargtypes::oid[], coalesce(p.proargnames[1:p.pronargs], array_fill(NULL::text, ARRAY[p.pronargs])))
             WITH ORDINALITY u(typ, name, ord)
        ORDER BY u.ord
    LOOP
        SELECT x.val INTO v FROM tap_def.args x WHERE x.arg = a.name;
        BEGIN
            EXECUTE format('SELECT %L::%s', v, a.typ::regtype);
        EXCEPTION WHEN OTHERS THEN
            v := NULL;
        END;
        IF v IS NULL THEN
            v := CASE a.typ
                     WHEN 'text'::regtype THEN 'tap-def'
                     WHEN 'name'::regtype THEN current_user
                     WHEN 'oid'::regtype THEN (SELECT r.oid::text FROM pg_catalog.pg_roles r WHERE r.rolname = current_user)
                     WHEN 'integer'::regtype THEN '1'
                     WHEN 'bigint'::regtype THEN '1'
                     WHEN 'double precision'::regtype THEN '0.5'
                     WHEN 'boolean'::regtype THEN 'false'
                     WHEN 'jsonb'::regtype THEN '{}'
                     WHEN 'uuid'::regtype THEN (SELECT min(run_id::text) FROM wval.evaluation_runs WHERE world_id = 'tap-def-w')
                     WHEN 'date'::regtype THEN current_date::text
                     WHEN 'timestamp with time zone'::regtype THEN now()::text
                     WHEN 'interval'::regtype THEN '7 days'
                 END;
            CONTINUE WHEN v IS NULL AND a.has_default;
        END IF;
        SELECT CASE WHEN ty.typelem <> 0 AND ty.typlen = -1
                    THEN format('%I.%I[]', en.nspname, et.typname)
                    ELSE format('%I.%I', tn.nspname, ty.typname) END
        INTO t
        FROM pg_catalog.pg_type ty JOIN pg_catalog.pg_namespace tn ON tn.oid = ty.typnamespace
        LEFT JOIN pg_catalog.pg_type et ON et.oid = ty.typelem LEFT JOIN pg_catalog.pg_namespace en ON en.oid = et.typnamespace
        WHERE ty.oid = a.typ;
        args := args || format('%s%s::%s', CASE WHEN a.name IS NOT NULL THEN quote_ident(a.name) || ' => ' ELSE '' END,
                               coalesce(quote_literal(v), 'NULL'), t);
    END LOOP;
    RETURN format('%s %s.%s(%s)', CASE WHEN p.prokind = 'p' THEN 'CALL' ELSE 'SELECT' END,
                  quote_ident(p.pronamespace::regnamespace::text), quote_ident(p.proname), array_to_string(args, ', '));
END
$$;

-- tap_def.round(login, round, fns): as login, plants the traps of the round,
-- then calls every function of fns under a hostile search_path, each in a
-- subtransaction; returns per function the outcome (ok or the SQLSTATE), how
-- many times a trap ran, and whether login became superuser.  Everything the
-- round did is rolled back before it returns.
CREATE FUNCTION tap_def.round(p_login name, p_round text, p_fns regprocedure[]) RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    out jsonb := '[]';
    f regprocedure;
    sql text;
    state text;
    before bigint;
    fired bigint;
    su boolean;
    planted integer;
    evil text := 'tap_def_evil_' || substr(p_login, 9);
    hostile text;
    safe text := current_setting('search_path');
BEGIN
    hostile := format('pg_temp, %I, public, pg_catalog', evil);
    BEGIN
        EXECUTE format('SET LOCAL ROLE %I', p_login);
        planted := tap_def.plant(evil, p_round);
        FOREACH f IN ARRAY p_fns LOOP
            sql := tap_def.call(f);
            before := (SELECT s.last_value FROM tap_def.fired s);
            BEGIN
                BEGIN
                    PERFORM pg_catalog.set_config('search_path', hostile, true);
                    EXECUTE sql;
                    PERFORM pg_catalog.set_config('search_path', safe, true);
                    state := 'ok';
                EXCEPTION WHEN OTHERS THEN
                    state := SQLSTATE;
                END;
                fired := (SELECT s.last_value FROM tap_def.fired s) - before;
                su := (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = p_login);
                RAISE EXCEPTION USING ERRCODE = 'T0D01';	-- undo what the call did
            EXCEPTION WHEN SQLSTATE 'T0D01' THEN NULL;
            END;
            out := out || jsonb_build_object('fn', f::oid, 'name', f::text, 'role', p_login, 'round', p_round, 'planted', planted,
                                             'call', sql, 'state', state, 'fired', fired, 'superuser', su);
        END LOOP;
        RAISE EXCEPTION USING ERRCODE = 'T0D02';	-- drop the traps, back to the test's role
    EXCEPTION WHEN SQLSTATE 'T0D02' THEN NULL;
    END;
    RETURN out;
END
$$;

CREATE TEMP TABLE def_results (r jsonb);
CREATE TEMP TABLE def_controls (r jsonb);
GRANT ALL ON def_results, def_controls TO PUBLIC;

------------------------------------------------------------------------------
-- 3. the traps catch what they should: two vulnerable definer functions
------------------------------------------------------------------------------
-- one works in a temporary table by an unqualified name (the shape of the
-- old wval_select), one does not pin search_path and compares integers
CREATE FUNCTION public.tap_def_vulnerable_temp() RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS wval_select_candidates (x integer) ON COMMIT DROP;
    TRUNCATE wval_select_candidates;
    RETURN 1;
END
$$;
CREATE FUNCTION public.tap_def_vulnerable_path(a integer) RETURNS boolean
LANGUAGE sql SECURITY DEFINER AS $$ SELECT a = 1 $$;
INSERT INTO def_controls
SELECT jsonb_array_elements(tap_def.round('tap_def_validator', rd,
           ARRAY['public.tap_def_vulnerable_temp()'::regprocedure, 'public.tap_def_vulnerable_path(integer)'::regprocedure]))
FROM unnest(ARRAY['tables', 'views']) rd;
SELECT ok((SELECT (r ->> 'fired')::int > 0 AND (r ->> 'superuser')::boolean FROM def_controls
           WHERE (r ->> 'fn')::oid = 'public.tap_def_vulnerable_temp()'::regprocedure AND r ->> 'round' = 'tables'),
          'control: a definer function truncating a temp table by an unqualified name runs the caller''s trigger as its owner (caught)');
SELECT ok((SELECT bool_and((r ->> 'fired')::int > 0) FROM def_controls WHERE (r ->> 'fn')::oid = 'public.tap_def_vulnerable_path(integer)'::regprocedure),
          'control: a definer function without a pinned search_path uses the caller''s operator (caught)');
SELECT ok(tap_def.temp_names() <@ tap_def.relation_names() AND 'wval_select_candidates' = ANY (tap_def.relation_names()),
          'the temporary table names of the extension''s code and those the audit attacked are among the planted names');
SELECT ok(cardinality(tap_def.relation_names()) > 50,
          format('relation names shadowed: %s', cardinality(tap_def.relation_names())));

------------------------------------------------------------------------------
-- 4. every definer function, as each wval role, in both rounds
------------------------------------------------------------------------------
INSERT INTO def_results
SELECT jsonb_array_elements(tap_def.round(login, rd, (SELECT array_agg(fn ORDER BY fn::text) FROM def_fns)))
FROM unnest(ARRAY['tap_def_analyst', 'tap_def_producer', 'tap_def_validator', 'tap_def_admin']) login,
     unnest(ARRAY['tables', 'views']) rd;

SELECT diag(format('planted per round: %s', string_agg(DISTINCT format('%s/%s: %s', r ->> 'role', r ->> 'round', r ->> 'planted'), '; ')))
FROM def_results;
SELECT diag(format('temporary table names in the extension''s code: %s',
                   coalesce(nullif(array_to_string(tap_def.temp_names(), ', '), ''), 'none')));

SELECT ok(sum((x.r ->> 'fired')::int) = 0 AND NOT bool_or((x.r ->> 'superuser')::boolean),
          format('%s as %s: no trap ran, no superuser (%s)', f.fn, l.login,
                 string_agg(format('%s: %s, fired %s', x.r ->> 'round', x.r ->> 'state', x.r ->> 'fired'), '; ' ORDER BY x.r ->> 'round')))
FROM def_fns f
CROSS JOIN unnest(ARRAY['tap_def_analyst', 'tap_def_producer', 'tap_def_validator', 'tap_def_admin']) l(login)
JOIN def_results x ON (x.r ->> 'fn')::oid = f.fn AND x.r ->> 'role' = l.login
GROUP BY f.fn, l.login
ORDER BY f.fn::text, l.login;

-- the calls reached the code: wval_select ran for the validator, the purge
-- and the import for the admin, in both rounds
SELECT is((SELECT string_agg(DISTINCT r ->> 'state', ',') FROM def_results
           WHERE (r ->> 'fn')::oid = 'public.wval_select(text,text,text)'::regprocedure AND r ->> 'role' = 'tap_def_validator'),
          'ok', 'wval_select ran to the end as a validator with the traps in place');
SELECT is((SELECT string_agg(DISTINCT r ->> 'state', ',') FROM def_results
           WHERE (r ->> 'fn')::oid = 'public.wval_purge(timestamptz,text,boolean)'::regprocedure AND r ->> 'role' = 'tap_def_admin'),
          'ok', 'wval_purge ran to the end as an admin with the traps in place');
SELECT is((SELECT string_agg(DISTINCT r ->> 'state', ',') FROM def_results
           WHERE (r ->> 'fn')::oid = 'public.wval_import_runs(jsonb)'::regprocedure AND r ->> 'role' = 'tap_def_admin'),
          'ok', 'wval_import_runs ran to the end as an admin with the traps in place');
SELECT diag(format('calls that ran to the end: %s of %s', count(*) FILTER (WHERE r ->> 'state' = 'ok'), count(*)))
FROM def_results;
SELECT is((SELECT count(*)::int FROM pg_roles WHERE rolname LIKE 'tap\_def\_%' AND rolsuper), 0,
          'no tap_def role is superuser');

SELECT * FROM finish();
ROLLBACK;
