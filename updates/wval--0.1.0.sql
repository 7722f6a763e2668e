-- generated from src/wval.sql src/store.sql src/security.sql src/schedule.sql src/bus.sql src/metrics.sql src/hub.sql src/policy.sql src/evaluate.sql src/portfolio.sql src/report.sql src/select.sql src/live.sql src/diff.sql src/scenarios.sql src/retention.sql src/observability.sql src/finish.sql; edit those files, not this one

-- source: src/wval.sql
-- wval.sql: prelude of the install script (roles and shared helpers).
-- Data objects live in schema wval (the extension's schema); the SQL entry
-- points wval_* live in public so that they work unqualified in a default
-- database right after CREATE EXTENSION wval CASCADE.

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

-- wval._ident(field, value): raises 22023 unless value is a valid identifier
-- (non-empty, at most 200 bytes, no control characters); returns value.
CREATE FUNCTION wval._ident(field text, value text) RETURNS text
    AS 'MODULE_PATHNAME', 'wval_check_identifier_sql'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._ident(text, text) IS 'checks a wval identifier (non-empty, <= 200 bytes, no control characters) and returns it';

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
-- short forms 30s, 5m, 1h, 180d (spec README conventions).
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

-- source: src/store.sql
-- store.sql: the append-only evaluation store (spec store.md), next to store.c.
--
-- History tables refuse UPDATE/DELETE/TRUNCATE for every role (trigger
-- wval._append_only, SQLSTATE WV003); rows leave only through the retention
-- path, which raises a transaction-local guard first.  Chained tables also
-- carry the per-world hash chain (chain_seq, prev_hash, row_hash).

------------------------------------------------------------------------------
-- Trigger functions (C, store.c)
------------------------------------------------------------------------------

CREATE FUNCTION wval._append_only() RETURNS trigger
    AS 'MODULE_PATHNAME', 'wval_append_only_trigger' LANGUAGE C;
COMMENT ON FUNCTION wval._append_only() IS 'trigger: refuses UPDATE, DELETE and TRUNCATE on history tables (WV003) outside the retention path';

CREATE FUNCTION wval._chain() RETURNS trigger
    AS 'MODULE_PATHNAME', 'wval_chain_trigger' LANGUAGE C;
COMMENT ON FUNCTION wval._chain() IS 'trigger: appends the row to its world''s hash chain (chain_seq, prev_hash, row_hash)';

CREATE FUNCTION wval._purge_guard(raise boolean) RETURNS boolean
    AS 'MODULE_PATHNAME', 'wval_purge_guard' LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION wval._purge_guard(boolean) IS 'raises (true) or lowers the retention guard for the current transaction; executable only by the extension owner';

CREATE FUNCTION wval._chain_link(prev_hash text, table_name text, chain_seq bigint, canonical text) RETURNS text
    AS 'MODULE_PATHNAME', 'wval_chain_link' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._chain_link(text, text, bigint, text) IS 'the hash of a chain link: sha256 over prev_hash, table, chain_seq and the row''s canonical text';

CREATE FUNCTION wval._row_hash(table_name text, chain_seq bigint, prev_hash text, row_value record)
RETURNS text
    AS 'MODULE_PATHNAME', 'wval_row_hash' LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._row_hash(text, bigint, text, record) IS 'recomputes the chain hash of a stored history row';

CREATE FUNCTION wval._canonical(row_value record) RETURNS text
    AS 'MODULE_PATHNAME', 'wval_canonical_row' LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._canonical(record) IS 'the canonical text of a history row that its chain hash covers (see docs/store.md)';

CREATE FUNCTION wval._invoker() RETURNS text
    AS 'MODULE_PATHNAME', 'wval_invoker' LANGUAGE C STABLE;
COMMENT ON FUNCTION wval._invoker() IS 'the role that called into wval (current_user outside SECURITY DEFINER functions; honours SET ROLE)';

-- wval._protect(table, chained): installs the append-only triggers (and the
-- chain trigger) on one history table.  Used by this script and by
-- wval_maintain() for new partitions (TRUNCATE triggers are per table).
CREATE FUNCTION wval._protect(tbl regclass, chain_name text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    kind "char";
BEGIN
    SELECT relkind INTO kind FROM pg_class WHERE oid = tbl;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = tbl AND tgname = 'wval_append_only_truncate') THEN
        EXECUTE format('CREATE TRIGGER wval_append_only_truncate BEFORE TRUNCATE ON %s
                        FOR EACH STATEMENT EXECUTE FUNCTION wval._append_only()', tbl);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = tbl AND tgname = 'wval_append_only') THEN
        EXECUTE format('CREATE TRIGGER wval_append_only BEFORE UPDATE OR DELETE ON %s
                        FOR EACH ROW EXECUTE FUNCTION wval._append_only()', tbl);
    END IF;
    IF chain_name IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = tbl AND tgname = 'wval_chain') THEN
        EXECUTE format('CREATE TRIGGER wval_chain BEFORE INSERT ON %s
                        FOR EACH ROW EXECUTE FUNCTION wval._chain(%L)', tbl, chain_name);
    END IF;
END
$$;
COMMENT ON FUNCTION wval._protect(regclass, text) IS 'installs the append-only (and chain) triggers on a history table';

------------------------------------------------------------------------------
-- Chain bookkeeping
------------------------------------------------------------------------------

CREATE TABLE wval.chain_heads (
    world_id   text PRIMARY KEY,
    seq        bigint NOT NULL,
    prev_hash  text NOT NULL,
    head_hash  text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE wval.chain_heads IS 'head (last chain_seq and row_hash) of each world''s hash chain; the empty world_id is the chain of global audit rows. Publish head_hash outside the database to anchor the chain.';

CREATE TABLE wval.chain_tombstones (
    world_id   text NOT NULL,
    chain_seq  bigint NOT NULL,
    table_name text NOT NULL,
    prev_hash  text NOT NULL,
    row_hash   text NOT NULL,
    purged_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (world_id, chain_seq)
);
COMMENT ON TABLE wval.chain_tombstones IS 'links of rows removed by wval_purge(): the chain of what remains still verifies';
SELECT wval._protect('wval.chain_tombstones');

------------------------------------------------------------------------------
-- Worlds (mutable configuration; every change is audited)
------------------------------------------------------------------------------

CREATE TABLE wval.worlds (
    world_id                text PRIMARY KEY,
    risk_tier               text NOT NULL DEFAULT 'medium' CHECK (risk_tier IN ('high', 'medium', 'low')),
    client_critical         boolean NOT NULL DEFAULT false,
    max_capital_at_risk_pct float8 CHECK (max_capital_at_risk_pct >= 0 AND max_capital_at_risk_pct <= 100),
    legal_hold              boolean NOT NULL DEFAULT false,
    settings                jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(settings) = 'object'),
    created_by              text NOT NULL,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_by              text NOT NULL,
    updated_at              timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE wval.worlds IS 'worlds (portfolios / trading environments); mutable configuration written by wval_world_upsert, every change audited';
COMMENT ON COLUMN wval.worlds.risk_tier IS 'high | medium | low; high + client_critical forces fail-closed validation';
COMMENT ON COLUMN wval.worlds.client_critical IS 'true for worlds that trade client money; with risk_tier high: always fail-closed, 30-day override reviews';
COMMENT ON COLUMN wval.worlds.legal_hold IS 'a world under legal hold is never purged';
COMMENT ON COLUMN wval.worlds.settings IS 'per-world settings (jsonb object)';

------------------------------------------------------------------------------
-- Policy versions and activations
------------------------------------------------------------------------------

CREATE TABLE wval.policy_versions (
    world_id       text NOT NULL,
    version        integer NOT NULL CHECK (version > 0),
    policy         jsonb NOT NULL,
    author         text NOT NULL,
    note           text,
    ruleset_hashes jsonb NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now(),
    chain_seq      bigint NOT NULL,
    prev_hash      text NOT NULL,
    row_hash       text NOT NULL,
    PRIMARY KEY (world_id, version)
);
COMMENT ON TABLE wval.policy_versions IS 'immutable, numbered policy documents per world (1, 2, 3 ... without gaps); publishing does not activate';
COMMENT ON COLUMN wval.policy_versions.ruleset_hashes IS 'per profile: sha256 of the materialised ruleset';
SELECT wval._protect('wval.policy_versions', 'policy_versions');

CREATE SEQUENCE wval.policy_activations_id_seq;
CREATE TABLE wval.policy_activations (
    activation_id    bigint NOT NULL DEFAULT nextval('wval.policy_activations_id_seq'),
    world_id         text NOT NULL,
    version          integer NOT NULL,
    previous_version integer,
    activated_by     text NOT NULL,
    approved_by      text,
    reason           text NOT NULL,
    forced           boolean NOT NULL DEFAULT false,
    details          jsonb NOT NULL DEFAULT '{}',
    activated_at     timestamptz NOT NULL DEFAULT now(),
    chain_seq        bigint NOT NULL,
    prev_hash        text NOT NULL,
    row_hash         text NOT NULL,
    PRIMARY KEY (world_id, activation_id)
);
ALTER SEQUENCE wval.policy_activations_id_seq OWNED BY wval.policy_activations.activation_id;
CREATE INDEX ON wval.policy_activations (world_id, activated_at DESC);
COMMENT ON TABLE wval.policy_activations IS 'which policy version became active, who activated and approved it, why; the active version is the latest activation';
SELECT wval._protect('wval.policy_activations', 'policy_activations');

------------------------------------------------------------------------------
-- Evaluation runs and rule results (partitioned by time, see wval_maintain)
--
-- The partitioned parents carry no indexes: each partition gets its own
-- (wval._index_partition, from wval.partition_indexes).  Indexes on an
-- extension-owned parent would be re-created by CREATE EXTENSION before
-- pg_restore attaches the dumped monthly partitions, and the restore would
-- then fail on the partitions' own copies of them.
------------------------------------------------------------------------------

CREATE TABLE wval.partition_indexes (
    parent text NOT NULL,
    spec   text NOT NULL,
    PRIMARY KEY (parent, spec)
);
COMMENT ON TABLE wval.partition_indexes IS 'the indexes every partition of a partitioned history table gets (PRIMARY KEY (...) or an index column list with optional WHERE)';

-- wval._index_partition(partition): creates the indexes of its parent's
-- specification on one partition.
CREATE FUNCTION wval._index_partition(part regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    parent_name text;
    spec text;
BEGIN
    SELECT c.relname INTO parent_name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhparent
    WHERE i.inhrelid = part;
    FOR spec IN SELECT p.spec FROM wval.partition_indexes p WHERE p.parent = parent_name ORDER BY p.spec LOOP
        IF spec LIKE 'PRIMARY KEY%' THEN
            EXECUTE format('ALTER TABLE %s ADD %s', part, spec);
        ELSE
            EXECUTE format('CREATE INDEX ON %s %s', part, spec);
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION wval._index_partition(regclass) IS 'creates the indexes of wval.partition_indexes on a new partition';

CREATE TABLE wval.evaluation_runs (
    run_id             uuid NOT NULL DEFAULT gen_random_uuid(),
    world_id           text NOT NULL,
    strategy_id        text NOT NULL,
    stage              text NOT NULL CHECK (stage IN ('backtest', 'paper', 'shadow', 'live')),
    kind               text NOT NULL DEFAULT 'single' CHECK (kind IN ('single', 'cohort', 'live', 'portfolio', 'stress')),
    campaign_id        text,
    risk_tier          text,
    model_card_version text,
    code_hash          text,
    data_snapshot      jsonb,
    context            jsonb COMPRESSION lz4 NOT NULL DEFAULT '{}',
    client_run_id      text,
    returns_hash       text,
    metrics            jsonb COMPRESSION lz4 NOT NULL DEFAULT '{}',
    policy_version     integer,
    ruleset_hash       text,
    profile            text,
    status             text NOT NULL CHECK (status IN ('pass', 'warn', 'fail', 'unvalidated')),
    recommended_stage  text CHECK (recommended_stage IN ('backtest_only', 'paper_only', 'paper_ok_live_candidate')),
    recommendation     jsonb COMPRESSION lz4,
    results            jsonb COMPRESSION lz4 NOT NULL DEFAULT '{}',
    linked_run_id      uuid,
    supersedes         uuid,
    as_of              date,
    created_by         text NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    chain_seq          bigint NOT NULL,
    prev_hash          text NOT NULL,
    row_hash           text NOT NULL
) PARTITION BY RANGE (created_at);
INSERT INTO wval.partition_indexes (parent, spec) VALUES
    ('evaluation_runs', 'PRIMARY KEY (world_id, run_id, created_at)'),
    ('evaluation_runs', '(run_id)'),
    ('evaluation_runs', '(world_id, strategy_id, stage, created_at DESC)'),
    ('evaluation_runs', '(world_id, status, created_at DESC)'),
    ('evaluation_runs', '(world_id, strategy_id, client_run_id) WHERE client_run_id IS NOT NULL');
-- lz4: the jsonb columns of a run are compressed on every insert (pglz cost a
-- twentieth of wval_evaluate's time)
COMMENT ON TABLE wval.evaluation_runs IS 'every evaluation ever made: metrics, the policy version and ruleset hash applied, the outcome and its provenance; append-only, hash-chained';
COMMENT ON COLUMN wval.evaluation_runs.kind IS 'single | cohort | live | portfolio | stress';
COMMENT ON COLUMN wval.evaluation_runs.client_run_id IS 'context.run_id: the caller''s idempotency key (same world, strategy and run_id returns the first run)';
COMMENT ON COLUMN wval.evaluation_runs.returns_hash IS 'sha256 of the return series the metrics were computed from: hex(sha256(float8send(r_1) || ... || float8send(r_n)))';
COMMENT ON COLUMN wval.evaluation_runs.metrics IS 'metric blocks (returns, sample, robustness, risk, benchmark, diagnostics, ...)';
COMMENT ON COLUMN wval.evaluation_runs.status IS 'pass | warn | fail | unvalidated (emergency bypass)';
COMMENT ON COLUMN wval.evaluation_runs.recommended_stage IS 'backtest_only | paper_only | paper_ok_live_candidate';
COMMENT ON COLUMN wval.evaluation_runs.recommendation IS 'which profiles were tried for the recommendation and why each stopped';
COMMENT ON COLUMN wval.evaluation_runs.results IS 'check key -> RuleResult';
COMMENT ON COLUMN wval.evaluation_runs.linked_run_id IS 'for cohort, portfolio and stress runs: the candidate run they extend';
COMMENT ON COLUMN wval.evaluation_runs.supersedes IS 'the run this one corrects';
COMMENT ON COLUMN wval.evaluation_runs.as_of IS 'live runs: the day the realized windows end';

CREATE TABLE wval.evaluation_runs_default PARTITION OF wval.evaluation_runs DEFAULT;
SELECT wval._index_partition('wval.evaluation_runs_default');
SELECT wval._protect('wval.evaluation_runs', 'evaluation_runs');
SELECT wval._protect('wval.evaluation_runs_default');

CREATE TABLE wval.rule_results (
    run_id      uuid NOT NULL,
    world_id    text NOT NULL,
    strategy_id text NOT NULL,
    stage       text NOT NULL,
    rule        text NOT NULL,
    layer       text NOT NULL,
    status      text NOT NULL CHECK (status IN ('pass', 'warn', 'fail')),
    severity    text NOT NULL CHECK (severity IN ('blocking', 'soft', 'info')),
    owner       text NOT NULL CHECK (owner IN ('quant', 'risk', 'ops')),
    reason_code text NOT NULL,
    reason      text,
    tags        text[] NOT NULL DEFAULT '{}',
    details     jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL
) PARTITION BY RANGE (created_at);
INSERT INTO wval.partition_indexes (parent, spec) VALUES
    ('rule_results', 'PRIMARY KEY (world_id, run_id, rule, created_at)'),
    ('rule_results', '(world_id, rule, status)');
COMMENT ON TABLE wval.rule_results IS 'one row per check result of a run (the same RuleResults as evaluation_runs.results, indexable by world, rule and status)';
CREATE TABLE wval.rule_results_default PARTITION OF wval.rule_results DEFAULT;
SELECT wval._index_partition('wval.rule_results_default');
SELECT wval._protect('wval.rule_results');
SELECT wval._protect('wval.rule_results_default');

------------------------------------------------------------------------------
-- Overrides and ex-post failures
------------------------------------------------------------------------------

CREATE SEQUENCE wval.overrides_id_seq;
CREATE TABLE wval.overrides (
    override_id   bigint NOT NULL DEFAULT nextval('wval.overrides_id_seq'),
    run_id        uuid NOT NULL,
    world_id      text NOT NULL,
    strategy_id   text NOT NULL,
    status        text NOT NULL CHECK (status IN ('approved', 'rejected', 'revoked')),
    reason        text,
    actor         text,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    review_due_at timestamptz,
    chain_seq     bigint NOT NULL,
    prev_hash     text NOT NULL,
    row_hash      text NOT NULL,
    PRIMARY KEY (world_id, override_id)
);
ALTER SEQUENCE wval.overrides_id_seq OWNED BY wval.overrides.override_id;
CREATE INDEX ON wval.overrides (run_id, recorded_at DESC);
COMMENT ON TABLE wval.overrides IS 'human decisions on runs (approved | rejected | revoked); the latest row per run is its current override state';
COMMENT ON COLUMN wval.overrides.review_due_at IS 'approvals must be reviewed by then: recorded_at + 30 days for live runs or high-tier client-critical worlds, + 90 days otherwise';
SELECT wval._protect('wval.overrides', 'overrides');

CREATE SEQUENCE wval.ex_post_failures_id_seq;
CREATE TABLE wval.ex_post_failures (
    entry_id     bigint NOT NULL DEFAULT nextval('wval.ex_post_failures_id_seq'),
    case_id      uuid NOT NULL,
    run_id       uuid NOT NULL,
    world_id     text NOT NULL,
    strategy_id  text NOT NULL,
    status       text NOT NULL CHECK (status IN ('candidate', 'confirmed', 'dismissed')),
    category     text NOT NULL CHECK (category IN ('risk_breach', 'performance_failure', 'liquidity_failure', 'data_issue', 'ops_incident')),
    reason_code  text NOT NULL,
    severity     text NOT NULL CHECK (severity IN ('critical', 'high', 'medium', 'low')),
    actor        text NOT NULL,
    evidence_url text,
    notes        text,
    source       text NOT NULL DEFAULT 'manual' CHECK (source IN ('manual', 'auto')),
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    chain_seq    bigint NOT NULL,
    prev_hash    text NOT NULL,
    row_hash     text NOT NULL,
    PRIMARY KEY (world_id, case_id, entry_id)
);
ALTER SEQUENCE wval.ex_post_failures_id_seq OWNED BY wval.ex_post_failures.entry_id;
CREATE INDEX ON wval.ex_post_failures (run_id);
COMMENT ON TABLE wval.ex_post_failures IS 'ex-post failure cases: a strategy that passed validation and later failed; a later row with the same case_id changes the case''s state';
SELECT wval._protect('wval.ex_post_failures', 'ex_post_failures');

------------------------------------------------------------------------------
-- Audit log
------------------------------------------------------------------------------

CREATE SEQUENCE wval.audit_log_id_seq;
CREATE TABLE wval.audit_log (
    id          bigint NOT NULL DEFAULT nextval('wval.audit_log_id_seq') PRIMARY KEY,
    world_id    text,
    action      text NOT NULL,
    actor       text NOT NULL,
    db_user     text NOT NULL DEFAULT wval._invoker(),
    details     jsonb NOT NULL DEFAULT '{}',
    recorded_at timestamptz NOT NULL DEFAULT now(),
    chain_seq   bigint NOT NULL,
    prev_hash   text NOT NULL,
    row_hash    text NOT NULL
);
ALTER SEQUENCE wval.audit_log_id_seq OWNED BY wval.audit_log.id;
CREATE INDEX ON wval.audit_log (world_id, recorded_at);
COMMENT ON TABLE wval.audit_log IS 'every administrative act (world change, publish, activate, override, ex-post case, purge, grant) with the actor and the database user';
COMMENT ON COLUMN wval.audit_log.world_id IS 'null for acts that concern no single world (their chain is the one of the empty world_id)';
SELECT wval._protect('wval.audit_log', 'audit_log');

-- wval._audit(world, action, actor, details): appends one audit row.
CREATE FUNCTION wval._audit(p_world_id text, p_action text, p_actor text, p_details jsonb DEFAULT '{}')
RETURNS bigint
LANGUAGE sql SET search_path = pg_catalog, wval, pg_temp AS $$
    INSERT INTO wval.audit_log (world_id, action, actor, details)
    VALUES (p_world_id, p_action, p_actor, coalesce(p_details, '{}'))
    RETURNING id;
$$;
COMMENT ON FUNCTION wval._audit(text, text, text, jsonb) IS 'appends one row to wval.audit_log';

------------------------------------------------------------------------------
-- Partitions (created ahead by wval_maintain, see docs/retention.md)
------------------------------------------------------------------------------

-- Monthly partitions are named <parent>_pYYYYMM and bounded by the first
-- instant of the month in UTC, so that no session TimeZone can make two
-- months overlap.

-- wval._create_month_partition(parent, month): creates, indexes, protects
-- and grants one monthly partition; returns its name.
CREATE FUNCTION wval._create_month_partition(parent regclass, month date) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    m date := date_trunc('month', month)::date;
    part text := format('%s_p%s', (SELECT relname FROM pg_class WHERE oid = parent), to_char(m, 'YYYYMM'));
BEGIN
    EXECUTE format('CREATE TABLE wval.%I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
                   part, parent, m::timestamp AT TIME ZONE 'UTC',
                   (m + interval '1 month')::timestamp AT TIME ZONE 'UTC');
    PERFORM wval._index_partition(('wval.' || quote_ident(part))::regclass);
    PERFORM wval._protect(('wval.' || quote_ident(part))::regclass);
    PERFORM wval._secure(('wval.' || quote_ident(part))::regclass);
    EXECUTE format('GRANT SELECT ON wval.%I TO wval_analyst', part);
    RETURN part;
END
$$;
COMMENT ON FUNCTION wval._create_month_partition(regclass, date) IS 'creates the monthly partition <parent>_pYYYYMM (UTC month bounds) with its indexes, triggers, row-level security and grants';

-- wval._month_partition(parent, month, move): makes sure the month has its
-- own partition.  When the default partition already holds rows of that
-- month, the partition cannot simply be created: with move => false the
-- month stays in the default partition ('left_in_default'); with move =>
-- true those rows leave the default partition under the retention guard and
-- come back unchanged (chain columns included) into the new partition, all
-- in the caller's transaction ('moved').  Needs the extension owner to be a
-- superuser (rows that arrive with their chain values are a restore).
CREATE FUNCTION wval._month_partition(parent regclass, month date, move boolean DEFAULT false) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    m date := date_trunc('month', month)::date;
    parent_name text := (SELECT relname FROM pg_class WHERE oid = parent);
    part text := format('%s_p%s', parent_name, to_char(m, 'YYYYMM'));
    lo timestamptz := m::timestamp AT TIME ZONE 'UTC';
    hi timestamptz := (m + interval '1 month')::timestamp AT TIME ZONE 'UTC';
    cols text;
    has_rows boolean;
BEGIN
    IF to_regclass('wval.' || quote_ident(part)) IS NOT NULL THEN
        RETURN 'exists';
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM wval.%I WHERE created_at >= %L AND created_at < %L)',
                   parent_name || '_default', lo, hi)
        INTO has_rows;
    IF NOT has_rows THEN
        PERFORM wval._create_month_partition(parent, m);
        RETURN 'created';
    END IF;
    IF NOT coalesce(move, false) THEN
        RETURN 'left_in_default';
    END IF;
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO cols
    FROM pg_attribute a WHERE a.attrelid = parent AND a.attnum > 0 AND NOT a.attisdropped;
    IF to_regclass('pg_temp.wval_month_move') IS NOT NULL THEN
        DROP TABLE pg_temp.wval_month_move;
    END IF;
    EXECUTE format('CREATE TEMP TABLE wval_month_move ON COMMIT DROP AS SELECT %s FROM wval.%I WHERE created_at >= %L AND created_at < %L',
                   cols, parent_name || '_default', lo, hi);
    PERFORM wval._purge_guard(true);
    EXECUTE format('DELETE FROM wval.%I WHERE created_at >= %L AND created_at < %L', parent_name || '_default', lo, hi);
    PERFORM wval._purge_guard(false);
    PERFORM wval._create_month_partition(parent, m);
    EXECUTE format('INSERT INTO %s (%s) SELECT %s FROM pg_temp.wval_month_move', parent, cols, cols);
    DROP TABLE pg_temp.wval_month_move;
    PERFORM wval._audit(NULL, 'partition_rows_moved', wval._invoker(),
                        jsonb_build_object('partition', part, 'from', parent_name || '_default'));
    RETURN 'moved';
END
$$;
COMMENT ON FUNCTION wval._month_partition(regclass, date, boolean) IS 'makes sure a month has its own partition: exists | created | left_in_default | moved (rows of the month taken out of the default partition into the new one, unchanged)';

-- wval_maintain(months_ahead): creates the monthly partitions of the
-- partitioned history tables from the current month (UTC) to months_ahead
-- months ahead (a month whose rows already sit in the default partition is
-- left there), protects them, and returns what it created.
CREATE FUNCTION public.wval_maintain(months_ahead integer DEFAULT 3) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    parent regclass;
    m date;
    part text;
    created text[] := '{}';
    skipped text[] := '{}';
BEGIN
    IF months_ahead IS NULL OR months_ahead < 0 OR months_ahead > 120 THEN
        RAISE EXCEPTION 'invalid value for "months_ahead"' USING ERRCODE = '22023',
            DETAIL = format('months_ahead is %s.', coalesce(months_ahead::text, 'null')),
            HINT = 'Pass a number of months between 0 and 120.';
    END IF;
    FOR parent IN
        SELECT c.oid::regclass FROM pg_class c
        WHERE c.relnamespace = 'wval'::regnamespace AND c.relkind = 'p' AND NOT c.relispartition
        ORDER BY c.relname
    LOOP
        FOR i IN 0 .. months_ahead LOOP
            m := (date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => i))::date;
            part := format('%s_p%s', (SELECT relname FROM pg_class WHERE oid = parent), to_char(m, 'YYYYMM'));
            CASE wval._month_partition(parent, m, false)
                WHEN 'created' THEN created := created || part;
                WHEN 'left_in_default' THEN skipped := skipped || part;
                ELSE NULL;
            END CASE;
        END LOOP;
    END LOOP;
    IF cardinality(created) > 0 THEN
        PERFORM wval._audit(NULL, 'partitions_created', wval._invoker(),
                            jsonb_build_object('created', to_jsonb(created)));
    END IF;
    RETURN jsonb_build_object('created', to_jsonb(created), 'left_in_default', to_jsonb(skipped));
END
$$;
COMMENT ON FUNCTION public.wval_maintain(integer) IS 'creates monthly partitions of the history tables ahead of time (run by the maintenance job)';

------------------------------------------------------------------------------
-- Writes
------------------------------------------------------------------------------

-- wval._world(world_id, lock): the world row, WV010 when it does not exist.
CREATE FUNCTION wval._world(p_world_id text, p_lock boolean DEFAULT false) RETURNS wval.worlds
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    w wval.worlds;
BEGIN
    IF p_lock THEN
        SELECT * INTO w FROM wval.worlds WHERE world_id = p_world_id FOR UPDATE;
    ELSE
        SELECT * INTO w FROM wval.worlds WHERE world_id = p_world_id;
    END IF;
    -- a world the calling role may not see does not exist for it (security.sql)
    IF NOT FOUND OR NOT wval._world_access((SELECT oid FROM pg_roles WHERE rolname = wval._invoker()), p_world_id, 'read') THEN
        RAISE EXCEPTION 'world "%" does not exist', p_world_id
            USING ERRCODE = 'WV010',
                  DETAIL = format('world_id is %L.', p_world_id),
                  HINT = 'Create it first with wval_world_upsert(world_id, risk_tier, client_critical).';
    END IF;
    RETURN w;
END
$$;
COMMENT ON FUNCTION wval._world(text, boolean) IS 'returns (optionally locks) a world; WV010 when it does not exist';

CREATE FUNCTION public.wval_world_upsert(
    world_id text,
    risk_tier text DEFAULT NULL,
    client_critical boolean DEFAULT NULL,
    max_capital_at_risk_pct float8 DEFAULT NULL,
    legal_hold boolean DEFAULT NULL,
    settings jsonb DEFAULT NULL,
    actor text DEFAULT NULL)
RETURNS wval.worlds
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    p_world text := wval._ident('world_id', world_id);
    p_actor text := wval._ident('actor', coalesce(actor, wval._invoker()));
    old wval.worlds;
    new wval.worlds;
BEGIN
    IF risk_tier IS NOT NULL THEN
        PERFORM wval._one_of('risk_tier', risk_tier, ARRAY['high', 'medium', 'low']);
    END IF;
    IF settings IS NOT NULL AND jsonb_typeof(settings) <> 'object' THEN
        RAISE EXCEPTION 'invalid value for "settings"' USING ERRCODE = '22023',
            DETAIL = format('settings is %s.', settings), HINT = 'Pass a jsonb object.';
    END IF;
    IF max_capital_at_risk_pct IS NOT NULL AND NOT (max_capital_at_risk_pct >= 0 AND max_capital_at_risk_pct <= 100) THEN
        RAISE EXCEPTION 'invalid value for "max_capital_at_risk_pct"' USING ERRCODE = '22023',
            DETAIL = format('max_capital_at_risk_pct is %s.', max_capital_at_risk_pct),
            HINT = 'Pass a percentage between 0 and 100.';
    END IF;

    SELECT * INTO old FROM wval.worlds w WHERE w.world_id = p_world FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO wval.worlds AS w (world_id, risk_tier, client_critical, max_capital_at_risk_pct,
                                     legal_hold, settings, created_by, updated_by)
        VALUES (p_world, coalesce(risk_tier, 'medium'), coalesce(client_critical, false),
                max_capital_at_risk_pct, coalesce(legal_hold, false), coalesce(settings, '{}'),
                p_actor, p_actor)
        ON CONFLICT ON CONSTRAINT worlds_pkey DO NOTHING
        RETURNING * INTO new;
        IF NOT FOUND THEN
            -- a concurrent creator won: update its row like any other change
            RETURN public.wval_world_upsert(world_id, risk_tier, client_critical, max_capital_at_risk_pct,
                                            legal_hold, settings, actor);
        END IF;
        PERFORM wval._audit(p_world, 'world_created', p_actor, to_jsonb(new));
        RETURN new;
    END IF;

    UPDATE wval.worlds w SET
        risk_tier = coalesce(wval_world_upsert.risk_tier, w.risk_tier),
        client_critical = coalesce(wval_world_upsert.client_critical, w.client_critical),
        max_capital_at_risk_pct = coalesce(wval_world_upsert.max_capital_at_risk_pct, w.max_capital_at_risk_pct),
        legal_hold = coalesce(wval_world_upsert.legal_hold, w.legal_hold),
        settings = coalesce(wval_world_upsert.settings, w.settings),
        updated_by = p_actor,
        updated_at = now()
    WHERE w.world_id = p_world
    RETURNING * INTO new;
    IF (to_jsonb(old) - 'updated_at' - 'updated_by') IS DISTINCT FROM (to_jsonb(new) - 'updated_at' - 'updated_by') THEN
        PERFORM wval._audit(p_world, 'world_updated', p_actor,
                            jsonb_build_object('old', to_jsonb(old), 'new', to_jsonb(new)));
    END IF;
    RETURN new;
END
$$;
COMMENT ON FUNCTION public.wval_world_upsert(text, text, boolean, float8, boolean, jsonb, text) IS 'creates a world or changes its configuration (arguments left null keep their value); audited';

CREATE FUNCTION public.wval_policy_publish(world_id text, policy jsonb, actor text, note text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    p_world text := wval._ident('world_id', world_id);
    p_actor text := wval._ident('actor', actor);
    w wval.worlds := wval._world(p_world, true);	-- the row lock makes versions gapless
    hashes jsonb;
    v integer;
BEGIN
    hashes := wval._policy_validate(policy, wval._fail_closed(w));
    SELECT coalesce(max(pv.version), 0) + 1 INTO v FROM wval.policy_versions pv WHERE pv.world_id = p_world;
    INSERT INTO wval.policy_versions (world_id, version, policy, author, note, ruleset_hashes)
    VALUES (p_world, v, policy, p_actor, note, hashes);
    PERFORM wval._audit(p_world, 'policy_published', p_actor,
                        jsonb_build_object('version', v, 'note', note, 'ruleset_hashes', hashes));
    PERFORM wval._emit('policy_version_published', p_world, 'v' || v,
                       format('policy_version_published:%s:v%s', p_world, v),
                       jsonb_build_object('world_id', p_world, 'version', v, 'ruleset_hashes', hashes,
                                          'author', p_actor));
    RETURN v;
END
$$;
COMMENT ON FUNCTION public.wval_policy_publish(text, jsonb, text, text) IS 'validates a policy document and stores it as the world''s next version (1, 2, 3 ...); does not activate it';

CREATE FUNCTION public.wval_active_policy_version(world_id text) RETURNS integer
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
    SELECT a.version FROM wval.policy_activations a
    WHERE a.world_id = wval_active_policy_version.world_id
    ORDER BY a.activation_id DESC LIMIT 1;
$$;
COMMENT ON FUNCTION public.wval_active_policy_version(text) IS 'the world''s active policy version (latest activation), null when none';

CREATE FUNCTION public.wval_policy_activate(world_id text, version integer, actor text, reason text,
                                            force boolean DEFAULT false)
RETURNS wval.policy_activations
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    p_world text := wval._ident('world_id', world_id);
    p_actor text := wval._ident('actor', actor);
    w wval.worlds;
    doc jsonb;
    author text;
    prev integer;
    exceptions jsonb := '[]';
    impact jsonb;
    act wval.policy_activations;
BEGIN
    PERFORM wval._require_text('reason', reason, '22023', 'Say why this version becomes active.');
    w := wval._world(p_world, true);
    SELECT pv.policy, pv.author INTO doc, author FROM wval.policy_versions pv
    WHERE pv.world_id = p_world AND pv.version = wval_policy_activate.version;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'policy version % of world "%" does not exist', version, p_world
            USING ERRCODE = 'WV010',
                  DETAIL = format('version is %s.', coalesce(version::text, 'null')),
                  HINT = 'Publish it first with wval_policy_publish(); see wval.policy_versions.';
    END IF;

    -- two-person rule: whoever published a version does not activate it
    IF lower(btrim(author)) = lower(btrim(p_actor)) THEN
        RAISE EXCEPTION 'actor "%" published policy version % of world "%" and cannot also activate it', p_actor, version, p_world
            USING ERRCODE = 'WV009',
                  DETAIL = format('Version %s was published by %L; the activation was requested by %L.', version, author, p_actor),
                  HINT = 'A second person with wval_validator activates it (two-person rule); force does not waive this rule.';
    END IF;

    -- high-tier, client-critical worlds are fail-closed: a policy that tries
    -- to relax on_error / on_missing_metric needs a recorded governance exception
    IF wval._fail_closed(w) AND (coalesce(doc #>> '{validation,on_error}', 'fail') <> 'fail'
                                 OR coalesce(doc #>> '{validation,on_missing_metric}', 'fail') <> 'fail') THEN
        IF NOT coalesce(force, false) THEN
            RAISE EXCEPTION 'policy version % relaxes fail-closed validation in high-tier client-critical world "%"', version, p_world
                USING ERRCODE = 'WV009',
                      DETAIL = format('validation is %s.', doc -> 'validation'),
                      HINT = 'Keep on_error and on_missing_metric at "fail", or activate with force => true and a reason (a recorded governance exception; evaluation stays fail-closed either way).';
        END IF;
        exceptions := exceptions || jsonb_build_object('rule', 'fail_closed', 'validation', doc -> 'validation');
    END IF;

    -- the impact gate: the change replayed over the world's history against
    -- the active version (none at the first activation)
    prev := public.wval_active_policy_version(p_world);
    IF prev IS NOT NULL AND prev <> version THEN
        impact := wval._activation_impact(w, prev, version);
        IF (impact ->> 'breached')::boolean THEN
            IF NOT coalesce(force, false) THEN
                RAISE EXCEPTION 'policy version % of world "%" has an impact ratio of % against the active version, at or above the gate %',
                                version, p_world, impact ->> 'impact_ratio', impact ->> 'fail_impact_ratio'
                    USING ERRCODE = 'WV008',
                          DETAIL = format('Against the active version %s, stage %s: %s of %s strategies affected (%s status, %s stage changes).',
                                          prev, impact ->> 'stage',
                                          impact #>> ARRAY['stages', impact ->> 'stage', 'strategies_affected'],
                                          impact #>> ARRAY['stages', impact ->> 'stage', 'total_strategies'],
                                          impact #>> ARRAY['stages', impact ->> 'stage', 'status_changes'],
                                          impact #>> ARRAY['stages', impact ->> 'stage', 'stage_changes']),
                          HINT = 'Review wval_policy_diff(world_id, active, new), roll new checks out with "mode": "warn" first, or activate with force => true and a reason (recorded in the activation).';
            END IF;
            exceptions := exceptions || jsonb_build_object('rule', 'impact_gate', 'stage', impact -> 'stage',
                                                           'impact_ratio', impact -> 'impact_ratio',
                                                           'fail_impact_ratio', impact -> 'fail_impact_ratio');
        END IF;
    END IF;

    INSERT INTO wval.policy_activations (world_id, version, previous_version, activated_by, reason, forced, details)
    VALUES (p_world, version, prev, p_actor, reason, coalesce(force, false),
            jsonb_build_object('governance_exceptions', exceptions)
            || CASE WHEN impact IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('impact_gate', impact) END)
    RETURNING * INTO act;
    PERFORM wval._audit(p_world, 'policy_activated', p_actor,
                        jsonb_build_object('version', version, 'previous_version', prev,
                                           'reason', reason, 'forced', coalesce(force, false),
                                           'governance_exceptions', exceptions,
                                           'impact_ratio', impact -> 'impact_ratio'));
    PERFORM wval._emit('validation_profile_changed', p_world, 'v' || version,
                       format('validation_profile_changed:%s:v%s:%s', p_world, version, act.activation_id),
                       jsonb_build_object('world_id', p_world, 'old_version', prev, 'new_version', version,
                                          'actor', p_actor));
    IF (impact ->> 'breached')::boolean THEN
        -- forced through the gate: this event survives (the activation commits)
        PERFORM wval._impact_event(p_world,
                                   jsonb_build_object('world_id', p_world, 'source', 'activation', 'forced', true,
                                                      'activation_id', act.activation_id, 'actor', p_actor,
                                                      'stage', impact -> 'stage',
                                                      'old_policy_version', prev, 'new_policy_version', version,
                                                      'impact_ratio', impact -> 'impact_ratio',
                                                      'fail_impact_ratio', impact -> 'fail_impact_ratio'),
                                   'activation-' || act.activation_id);
    END IF;
    RETURN act;
END
$$;
COMMENT ON FUNCTION public.wval_policy_activate(text, integer, text, text, boolean) IS 'makes a published policy version the active one (audited, emits validation_profile_changed); governance: the publisher cannot activate (WV009), the impact gate against the active version (WV008), fail-closed worlds; force => true with a reason passes the gate and the fail-closed rule and is recorded';

-- wval._run(run_id): the stored run, WV010 when it does not exist.
CREATE FUNCTION wval._run(p_run_id uuid) RETURNS wval.evaluation_runs
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    r wval.evaluation_runs;
BEGIN
    SELECT * INTO r FROM wval.evaluation_runs WHERE run_id = p_run_id LIMIT 1;
    IF NOT FOUND OR NOT wval._world_access((SELECT oid FROM pg_roles WHERE rolname = wval._invoker()), r.world_id, 'read') THEN
        RAISE EXCEPTION 'evaluation run % does not exist', p_run_id
            USING ERRCODE = 'WV010',
                  DETAIL = format('run_id is %s.', coalesce(p_run_id::text, 'null')),
                  HINT = 'Look the run up in wval.evaluation_runs or wval.latest_runs.';
    END IF;
    RETURN r;
END
$$;
COMMENT ON FUNCTION wval._run(uuid) IS 'returns a stored run; WV010 when it does not exist';

CREATE FUNCTION public.wval_override(run_id uuid, status text, reason text, actor text)
RETURNS wval.overrides
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    r wval.evaluation_runs := wval._run(run_id);
    w wval.worlds;
    missing text[] := '{}';
    due timestamptz;
    o wval.overrides;
BEGIN
    PERFORM wval._one_of('status', status, ARRAY['approved', 'rejected', 'revoked']);
    IF status = 'approved' THEN
        IF reason IS NULL OR btrim(reason) = '' THEN missing := missing || 'reason'::text; END IF;
        IF actor IS NULL OR btrim(actor) = '' THEN missing := missing || 'actor'::text; END IF;
        IF cardinality(missing) > 0 THEN
            RAISE EXCEPTION 'an approved override needs %', array_to_string(missing, ' and ')
                USING ERRCODE = 'WV009',
                      DETAIL = format('reason is %s, actor is %s.', coalesce(quote_literal(reason), 'null'),
                                      coalesce(quote_literal(actor), 'null')),
                      HINT = 'Approve with a non-blank reason and the name of the approving person.';
        END IF;
    END IF;
    IF actor IS NOT NULL THEN
        PERFORM wval._ident('actor', actor);
    END IF;
    -- independent validation: the author of a run does not approve it
    IF status = 'approved' AND lower(btrim(actor)) = lower(btrim(r.created_by)) THEN
        RAISE EXCEPTION 'actor "%" created the run and cannot approve an override on it', actor
            USING ERRCODE = 'WV009',
                  DETAIL = format('Run %s was created by %L.', r.run_id, r.created_by),
                  HINT = 'Another person with wval_validator approves overrides (separation of duties).';
    END IF;
    w := wval._world(r.world_id);
    IF status = 'approved' THEN
        due := now() + CASE WHEN r.stage = 'live' OR r.kind = 'live'
                                 OR (w.risk_tier = 'high' AND w.client_critical)
                            THEN interval '30 days' ELSE interval '90 days' END;
    END IF;
    INSERT INTO wval.overrides (run_id, world_id, strategy_id, status, reason, actor, review_due_at)
    VALUES (r.run_id, r.world_id, r.strategy_id, status, reason, actor, due)
    RETURNING * INTO o;
    PERFORM wval._audit(r.world_id, 'override_' || status, coalesce(actor, wval._invoker()),
                        jsonb_build_object('run_id', r.run_id, 'strategy_id', r.strategy_id,
                                           'reason', reason, 'review_due_at', due));
    PERFORM wval._emit('evaluation_run_updated', r.world_id, r.run_id::text,
                       format('evaluation_run_updated:%s:%s:override:%s', r.world_id, r.run_id, o.override_id),
                       jsonb_build_object('run_id', r.run_id, 'world_id', r.world_id, 'strategy_id', r.strategy_id,
                                          'change_type', 'override', 'status', status,
                                          'review_due_at', due));
    RETURN o;
END
$$;
COMMENT ON FUNCTION public.wval_override(uuid, text, text, text) IS 'records an override (approved | rejected | revoked) on a run; approvals need reason and actor (WV009), not by the run''s author (WV009), and get a review date';

CREATE FUNCTION public.wval_record_failure(
    run_id uuid,
    category text,
    reason_code text,
    severity text,
    actor text,
    evidence_url text DEFAULT NULL,
    notes text DEFAULT NULL,
    status text DEFAULT 'candidate',
    source text DEFAULT 'manual',
    case_id uuid DEFAULT NULL)
RETURNS wval.ex_post_failures
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    r wval.evaluation_runs := wval._run(run_id);
    p_actor text := wval._ident('actor', actor);
    f wval.ex_post_failures;
BEGIN
    PERFORM wval._one_of('category', category,
                         ARRAY['risk_breach', 'performance_failure', 'liquidity_failure', 'data_issue', 'ops_incident']);
    PERFORM wval._one_of('severity', severity, ARRAY['critical', 'high', 'medium', 'low']);
    PERFORM wval._one_of('status', status, ARRAY['candidate', 'confirmed', 'dismissed']);
    PERFORM wval._one_of('source', source, ARRAY['manual', 'auto']);
    PERFORM wval._require_text('reason_code', reason_code);
    IF case_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM wval.ex_post_failures e WHERE e.case_id = wval_record_failure.case_id AND e.run_id = r.run_id) THEN
        RAISE EXCEPTION 'ex-post failure case % does not exist for run %', case_id, r.run_id
            USING ERRCODE = 'WV010',
                  DETAIL = format('case_id is %s.', case_id),
                  HINT = 'Leave case_id null to open a new case; pass the case_id of an existing case of this run to change its state.';
    END IF;
    INSERT INTO wval.ex_post_failures (case_id, run_id, world_id, strategy_id, status, category, reason_code,
                                       severity, actor, evidence_url, notes, source)
    VALUES (coalesce(case_id, gen_random_uuid()), r.run_id, r.world_id, r.strategy_id, status, category,
            reason_code, severity, p_actor, evidence_url, notes, source)
    RETURNING * INTO f;
    PERFORM wval._audit(r.world_id, 'ex_post_failure_' || status, p_actor,
                        jsonb_build_object('case_id', f.case_id, 'run_id', r.run_id, 'category', category,
                                           'reason_code', reason_code, 'severity', severity, 'source', source));
    PERFORM wval._emit('evaluation_run_updated', r.world_id, r.run_id::text,
                       format('evaluation_run_updated:%s:%s:ex_post_failure:%s', r.world_id, r.run_id, f.entry_id),
                       jsonb_build_object('run_id', r.run_id, 'world_id', r.world_id, 'strategy_id', r.strategy_id,
                                          'change_type', 'ex_post_failure', 'case_id', f.case_id,
                                          'status', status, 'category', category, 'severity', severity));
    RETURN f;
END
$$;
COMMENT ON FUNCTION public.wval_record_failure(uuid, text, text, text, text, text, text, text, text, uuid) IS 'opens an ex-post failure case on a run, or (with case_id) records its next state';

------------------------------------------------------------------------------
-- Hash chain verification
------------------------------------------------------------------------------

-- wval_chain_problems(world_id): the first broken link of a world's chain
-- (no row when the chain is intact).
CREATE FUNCTION public.wval_chain_problems(world_id text)
RETURNS TABLE (table_name text, chain_seq bigint, problem text, expected text, found text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    key text := coalesce(world_id, '');
    parts text[] := '{}';
    t record;
    head wval.chain_heads;
    last record;
BEGIN
    FOR t IN
        SELECT tg.tgrelid::regclass AS rel, split_part(encode(tg.tgargs, 'escape'), '\000', 1) AS args
        FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid
        WHERE tg.tgfoid = 'wval._chain'::regproc AND NOT c.relispartition AND tg.tgparentid = 0
        ORDER BY 1
    LOOP
        parts := parts || format(
            'SELECT %L::text AS t, x.chain_seq, x.prev_hash, x.row_hash,
                    wval._row_hash(%L, x.chain_seq, x.prev_hash, x) AS calc
             FROM %s x WHERE %s',
            t.args, t.args, t.rel,
            CASE WHEN key = '' THEN 'x.world_id IS NULL' ELSE 'x.world_id = $1' END);
    END LOOP;
    parts := parts || 'SELECT s.table_name, s.chain_seq, s.prev_hash, s.row_hash, s.row_hash
                       FROM wval.chain_tombstones s WHERE s.world_id = $1'::text;

    RETURN QUERY EXECUTE format(
        'WITH r AS (%s),
              o AS (SELECT r.*, lag(r.row_hash) OVER w AS lag_hash, lag(r.chain_seq) OVER w AS lag_seq
                    FROM r WINDOW w AS (ORDER BY r.chain_seq))
         SELECT o.t, o.chain_seq,
                CASE WHEN o.chain_seq <> coalesce(o.lag_seq, 0) + 1 THEN ''missing or duplicate rows before this one''
                     WHEN o.prev_hash IS DISTINCT FROM coalesce(o.lag_hash, %L) THEN ''prev_hash does not match the previous row''
                     ELSE ''row content does not match its row_hash'' END,
                CASE WHEN o.chain_seq <> coalesce(o.lag_seq, 0) + 1 THEN (coalesce(o.lag_seq, 0) + 1)::text
                     WHEN o.prev_hash IS DISTINCT FROM coalesce(o.lag_hash, %L) THEN coalesce(o.lag_hash, %L)
                     ELSE o.calc END,
                CASE WHEN o.chain_seq <> coalesce(o.lag_seq, 0) + 1 THEN o.chain_seq::text
                     WHEN o.prev_hash IS DISTINCT FROM coalesce(o.lag_hash, %L) THEN o.prev_hash
                     ELSE o.row_hash END
         FROM o
         WHERE o.chain_seq <> coalesce(o.lag_seq, 0) + 1
            OR o.prev_hash IS DISTINCT FROM coalesce(o.lag_hash, %L)
            OR o.calc IS DISTINCT FROM o.row_hash
         ORDER BY o.chain_seq LIMIT 1',
        array_to_string(parts, ' UNION ALL '),
        'sha256:' || repeat('0', 64), 'sha256:' || repeat('0', 64), 'sha256:' || repeat('0', 64),
        'sha256:' || repeat('0', 64), 'sha256:' || repeat('0', 64))
    USING key;
    IF FOUND THEN
        RETURN;
    END IF;

    -- rows removed at the end of the chain leave the head pointing past them
    SELECT * INTO head FROM wval.chain_heads h WHERE h.world_id = key;
    EXECUTE format('SELECT r.t, r.chain_seq, r.row_hash FROM (%s) r ORDER BY r.chain_seq DESC LIMIT 1',
                   array_to_string(parts, ' UNION ALL '))
        INTO last USING key;
    IF head.world_id IS NOT NULL AND (last.chain_seq IS DISTINCT FROM head.seq OR last.row_hash IS DISTINCT FROM head.head_hash) THEN
        table_name := coalesce(last.t, 'wval.chain_heads');
        chain_seq := last.chain_seq;
        problem := 'the chain ends before its recorded head (rows missing at the end)';
        expected := head.seq || ' ' || head.head_hash;
        found := coalesce(last.chain_seq::text || ' ' || last.row_hash, 'no rows');
        RETURN NEXT;
    END IF;
END
$$;
COMMENT ON FUNCTION public.wval_chain_problems(text) IS 'the first broken link of a world''s hash chain (table, chain_seq, problem, expected, found); no row when intact. Pass null for the chain of global audit rows';

CREATE FUNCTION public.wval_verify_chain(world_id text) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    p record;
BEGIN
    SELECT * INTO p FROM public.wval_chain_problems(world_id);
    IF FOUND THEN
        RAISE NOTICE 'hash chain of world "%" is broken at % chain_seq %: %', coalesce(world_id, ''),
            p.table_name, p.chain_seq, p.problem
            USING DETAIL = format('expected %s, found %s', p.expected, p.found);
        RETURN false;
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION public.wval_verify_chain(text) IS 'true when the world''s hash chain is intact; otherwise false and a NOTICE naming the first broken row';

------------------------------------------------------------------------------
-- Reads analysts expect
------------------------------------------------------------------------------

CREATE VIEW wval.current_overrides AS
SELECT DISTINCT ON (o.run_id) o.*
FROM wval.overrides o
ORDER BY o.run_id, o.recorded_at DESC, o.override_id DESC;
COMMENT ON VIEW wval.current_overrides IS 'the current override state of each run (its latest override row)';

CREATE VIEW wval.latest_runs AS
SELECT DISTINCT ON (r.world_id, r.strategy_id, r.stage)
       r.world_id, r.strategy_id, r.stage, r.run_id, r.kind, r.status, r.recommended_stage,
       r.policy_version, r.ruleset_hash, r.profile, r.created_at,
       co.status AS override_status, co.review_due_at AS override_review_due_at,
       (co.status = 'approved' AND co.review_due_at < now()) AS override_overdue
FROM wval.evaluation_runs r
LEFT JOIN wval.current_overrides co ON co.run_id = r.run_id
WHERE r.kind IN ('single', 'live')
ORDER BY r.world_id, r.strategy_id, r.stage, r.created_at DESC, r.chain_seq DESC;
COMMENT ON VIEW wval.latest_runs IS 'latest run per (world, strategy, stage) with the current override state folded in';

CREATE FUNCTION wval.run_history(world_id text, strategy_id text)
RETURNS SETOF wval.evaluation_runs
LANGUAGE sql STABLE AS $$
    SELECT r.* FROM wval.evaluation_runs r
    WHERE r.world_id = run_history.world_id AND r.strategy_id = run_history.strategy_id
    ORDER BY r.created_at, r.chain_seq;
$$;
COMMENT ON FUNCTION wval.run_history(text, text) IS 'every run of a strategy with its policy version and outcome, oldest first';

CREATE VIEW wval.override_queue AS
SELECT o.world_id, o.strategy_id, o.run_id, o.override_id, o.actor, o.reason, o.recorded_at, o.review_due_at,
       o.review_due_at < now() AS overdue,
       array_remove(ARRAY[CASE WHEN o.reason IS NULL OR btrim(o.reason) = '' THEN 'reason' END,
                          CASE WHEN o.actor IS NULL OR btrim(o.actor) = '' THEN 'actor' END,
                          CASE WHEN o.review_due_at IS NULL THEN 'review_due_at' END], NULL) AS missing_fields
FROM wval.current_overrides o
WHERE o.status = 'approved'
ORDER BY o.review_due_at < now() DESC, o.review_due_at;
COMMENT ON VIEW wval.override_queue IS 'approved overrides with their review date, overdue flag and missing fields; overdue first';

CREATE VIEW wval.ex_post_cases AS
SELECT DISTINCT ON (f.case_id) f.*
FROM wval.ex_post_failures f
ORDER BY f.case_id, f.recorded_at DESC, f.entry_id DESC;
COMMENT ON VIEW wval.ex_post_cases IS 'the current state of each ex-post failure case';

------------------------------------------------------------------------------
-- pg_dump: every table that holds data is extension configuration
------------------------------------------------------------------------------

SELECT pg_catalog.pg_extension_config_dump('wval.chain_heads', '');
SELECT pg_catalog.pg_extension_config_dump('wval.chain_tombstones', '');
SELECT pg_catalog.pg_extension_config_dump('wval.worlds', '');
SELECT pg_catalog.pg_extension_config_dump('wval.policy_versions', '');
SELECT pg_catalog.pg_extension_config_dump('wval.policy_activations', '');
SELECT pg_catalog.pg_extension_config_dump('wval.policy_activations_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('wval.evaluation_runs_default', '');
SELECT pg_catalog.pg_extension_config_dump('wval.rule_results_default', '');
SELECT pg_catalog.pg_extension_config_dump('wval.overrides', '');
SELECT pg_catalog.pg_extension_config_dump('wval.overrides_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('wval.ex_post_failures', '');
SELECT pg_catalog.pg_extension_config_dump('wval.ex_post_failures_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('wval.audit_log', '');
SELECT pg_catalog.pg_extension_config_dump('wval.audit_log_id_seq', '');

------------------------------------------------------------------------------
-- Privileges (finish.sql revokes everything from PUBLIC first)
------------------------------------------------------------------------------

GRANT SELECT ON wval.worlds, wval.policy_versions, wval.policy_activations, wval.evaluation_runs,
      wval.evaluation_runs_default, wval.rule_results, wval.rule_results_default, wval.overrides,
      wval.ex_post_failures, wval.audit_log,
      wval.chain_heads, wval.chain_tombstones,
      wval.current_overrides, wval.latest_runs, wval.override_queue, wval.ex_post_cases
   TO wval_analyst;

GRANT EXECUTE ON FUNCTION public.wval_verify_chain(text), public.wval_chain_problems(text),
      public.wval_active_policy_version(text), wval.run_history(text, text)
   TO wval_analyst;
GRANT EXECUTE ON FUNCTION public.wval_policy_publish(text, jsonb, text, text),
      public.wval_policy_activate(text, integer, text, text, boolean),
      public.wval_override(uuid, text, text, text),
      public.wval_record_failure(uuid, text, text, text, text, text, text, text, text, uuid)
   TO wval_validator;
GRANT EXECUTE ON FUNCTION public.wval_world_upsert(text, text, boolean, float8, boolean, jsonb, text),
      public.wval_maintain(integer)
   TO wval_admin;

-- source: src/security.sql
-- security.sql: row-level security per world (spec operations.md, "Governance
-- and security"). A role sees and writes only the worlds granted to it in
-- wval.world_grants. The policies are put on every world-scoped table and view
-- by finish.sql, once every file has created its tables.
--
-- Reads: every table of schema wval with a world_id column gets a row-level
-- security policy, and every view runs with the caller's rights
-- (security_invoker), so an analyst of world A sees no row of world B in any
-- table or view. The SECURITY DEFINER read functions check the caller through
-- wval._world() and wval._run() (an invisible world or run "does not exist").
-- Writes: the chain trigger refuses (42501) a history row for a world the
-- calling role may not write.
--
-- The extension grants '*' (every world) to its four roles, so nothing is
-- restricted until a site narrows it: revoke the '*' grant of a role and
-- grant worlds to the roles that need them.

CREATE TABLE wval.world_grants (
    role_name  name NOT NULL,
    world_id   text NOT NULL,
    privilege  text NOT NULL CHECK (privilege IN ('read', 'write', 'none')),
    granted_by text NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (role_name, world_id, granted_at)
);
COMMENT ON TABLE wval.world_grants IS 'append-only history of world grants: the latest row per (role, world) is in force; privilege read, write (includes read) or none (revoked); world_id ''*'' means every world; membership counts (a grant to wval_analyst covers its members)';
-- the extension's own '*' grants date from -infinity: any later row of a site
-- wins, also after a dump is restored (CREATE EXTENSION re-creates these rows,
-- the dump brings back the site's rows)
INSERT INTO wval.world_grants (role_name, world_id, privilege, granted_by, granted_at) VALUES
    ('wval_analyst', '*', 'read', 'wval', '-infinity'), ('wval_producer', '*', 'write', 'wval', '-infinity'),
    ('wval_validator', '*', 'write', 'wval', '-infinity'), ('wval_admin', '*', 'write', 'wval', '-infinity');
SELECT wval._protect('wval.world_grants');
SELECT pg_catalog.pg_extension_config_dump('wval.world_grants', 'WHERE granted_at <> ''-infinity''');

CREATE VIEW wval.current_world_grants AS
SELECT DISTINCT ON (g.role_name, g.world_id) g.role_name, g.world_id, g.privilege, g.granted_by, g.granted_at
FROM wval.world_grants g
ORDER BY g.role_name, g.world_id, g.granted_at DESC;
COMMENT ON VIEW wval.current_world_grants IS 'the grants in force: the latest row per (role, world) of wval.world_grants (privilege none = revoked)';

-- wval._world_access(role, world, privilege): may role read/write the world?
-- Superusers and the extension owner may do everything.
CREATE FUNCTION wval._world_access(p_role oid, p_world_id text, p_privilege text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
    SELECT (SELECT rolsuper FROM pg_roles WHERE oid = p_role)
        OR EXISTS (SELECT 1 FROM wval.current_world_grants g
                   WHERE (g.world_id = '*' OR g.world_id = p_world_id)
                     AND (g.privilege = 'write' OR (p_privilege = 'read' AND g.privilege = 'read'))
                     AND pg_has_role(p_role, g.role_name, 'MEMBER'))
$$;
COMMENT ON FUNCTION wval._world_access(oid, text, text) IS 'true when the role (or a role it is a member of) was granted the world (or *) with the privilege (write includes read)';

-- wval._visible_worlds(): the worlds the current role may read; null = all.
CREATE FUNCTION wval._visible_worlds() RETURNS text[]
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
    -- the caller: current_user outside this SECURITY DEFINER function
    WITH me AS (SELECT oid, rolsuper FROM pg_roles WHERE rolname = wval._invoker())
    SELECT CASE WHEN (SELECT rolsuper FROM me)
                  OR EXISTS (SELECT 1 FROM wval.current_world_grants g
                             WHERE g.world_id = '*' AND g.privilege <> 'none'
                               AND pg_has_role((SELECT oid FROM me), g.role_name, 'MEMBER'))
                THEN NULL
                ELSE coalesce((SELECT array_agg(DISTINCT g.world_id) FROM wval.current_world_grants g
                               WHERE g.privilege <> 'none' AND pg_has_role((SELECT oid FROM me), g.role_name, 'MEMBER')), '{}') END
$$;
COMMENT ON FUNCTION wval._visible_worlds() IS 'the worlds the current role may read (null: every world); used by the row-level security policies';

-- wval._require_world_access(world, privilege): 42501 unless the calling role
-- (outside SECURITY DEFINER) may read/write the world.
CREATE FUNCTION wval._require_world_access(p_world_id text, p_privilege text DEFAULT 'read') RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
BEGIN
    IF NOT wval._world_access((SELECT oid FROM pg_roles WHERE rolname = wval._invoker()), p_world_id, p_privilege) THEN
        RAISE EXCEPTION 'role "%" may not % world "%"', wval._invoker(), p_privilege, p_world_id
            USING ERRCODE = '42501',
                  HINT = 'A wval_admin grants worlds with wval_world_grant(role, world_id, privilege).';
    END IF;
END
$$;
COMMENT ON FUNCTION wval._require_world_access(text, text) IS 'raises 42501 unless the calling role may read (or write) the world';

CREATE FUNCTION public.wval_world_grant(role_name name, world_id text, privilege text DEFAULT 'read', actor text DEFAULT NULL)
RETURNS wval.world_grants
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    p_actor text := wval._ident('actor', coalesce(actor, wval._invoker()));
    g wval.world_grants;
BEGIN
    PERFORM wval._one_of('privilege', privilege, ARRAY['read', 'write']);
    IF NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = wval_world_grant.role_name) THEN
        RAISE EXCEPTION 'role "%" does not exist', role_name USING ERRCODE = 'WV010',
            HINT = 'Create the role first (CREATE ROLE).';
    END IF;
    IF world_id <> '*' THEN
        PERFORM wval._world(wval._ident('world_id', world_id));
    END IF;
    INSERT INTO wval.world_grants (role_name, world_id, privilege, granted_by, granted_at)
    VALUES (role_name, world_id, privilege, p_actor, clock_timestamp())
    RETURNING * INTO g;
    PERFORM wval._audit(nullif(world_id, '*'), 'world_granted', p_actor,
                        jsonb_build_object('role', role_name, 'world_id', world_id, 'privilege', privilege));
    RETURN g;
END
$$;
COMMENT ON FUNCTION public.wval_world_grant(name, text, text, text) IS 'lets a role read (or write) a world (* = every world); audited';

CREATE FUNCTION public.wval_world_revoke(role_name name, world_id text, actor text DEFAULT NULL) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    p_actor text := wval._ident('actor', coalesce(actor, wval._invoker()));
    found_grant boolean;
BEGIN
    SELECT g.privilege <> 'none' INTO found_grant FROM wval.current_world_grants g
    WHERE g.role_name = wval_world_revoke.role_name AND g.world_id = wval_world_revoke.world_id;
    found_grant := coalesce(found_grant, false);
    IF found_grant THEN
        INSERT INTO wval.world_grants (role_name, world_id, privilege, granted_by, granted_at)
        VALUES (role_name, world_id, 'none', p_actor, clock_timestamp());
    END IF;
    IF found_grant THEN
        PERFORM wval._audit(nullif(world_id, '*'), 'world_revoked', p_actor,
                            jsonb_build_object('role', role_name, 'world_id', world_id));
    END IF;
    RETURN found_grant;
END
$$;
COMMENT ON FUNCTION public.wval_world_revoke(name, text, text) IS 'revokes a role''s grant of a world (or of *) with a row of privilege none; audited; false when there was none in force';

-- wval._secure(table): row-level security by world on one table (also for
-- partitions created later by wval_maintain: a partition queried directly
-- does not inherit its parent's policies).
CREATE FUNCTION wval._secure(tbl regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = tbl AND polname = 'wval_world_read') THEN
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
        -- FOR ALL: a role that a DBA granted table privileges by mistake still
        -- reaches the rows of its worlds, where the append-only trigger says WV003
        EXECUTE format('CREATE POLICY wval_world_read ON %s FOR ALL USING ('
                       '(SELECT wval._visible_worlds()) IS NULL OR world_id = ANY ((SELECT wval._visible_worlds())::text[]))', tbl);
    END IF;
END
$$;
COMMENT ON FUNCTION wval._secure(regclass) IS 'enables row-level security by world on a table (policy wval_world_read)';

GRANT SELECT ON wval.world_grants, wval.current_world_grants TO wval_analyst;
GRANT EXECUTE ON FUNCTION wval._visible_worlds(), wval._world_access(oid, text, text), wval._invoker() TO wval_analyst;
GRANT EXECUTE ON FUNCTION public.wval_world_grant(name, text, text, text), public.wval_world_revoke(name, text, text) TO wval_admin;

-- source: src/schedule.sql
-- schedule.sql: pg_cron plumbing shared by every wval schedule (spec live.md,
-- "Schedules"). Jobs are named wval:<purpose> so that a DBA sees them in
-- cron.job. pg_cron is optional: without it only these functions fail, with a
-- HINT saying what to set.

-- wval._require_pg_cron(): raises WV010 with set-up instructions unless
-- pg_cron is installed in this database.
CREATE FUNCTION wval._require_pg_cron() RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in database "%"', current_database()
            USING ERRCODE = 'WV010',
                  DETAIL = format('shared_preload_libraries is %L, cron.database_name is %L.',
                                  current_setting('shared_preload_libraries', true),
                                  coalesce(current_setting('cron.database_name', true), '(unset)')),
                  HINT = format('Add pg_cron to shared_preload_libraries, set cron.database_name = %L in postgresql.conf, restart the server and run CREATE EXTENSION pg_cron; or run the job''s command from a scheduler of your own.',
                                current_database());
    END IF;
END
$$;
COMMENT ON FUNCTION wval._require_pg_cron() IS 'raises WV010 with set-up instructions unless pg_cron is installed in this database';

-- wval._cron_schedule(purpose, schedule, command): registers (or updates)
-- the pg_cron job wval:<purpose>; audited.
CREATE FUNCTION wval._cron_schedule(purpose text, schedule text, command text) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    job bigint;
BEGIN
    PERFORM wval._require_text('schedule', schedule, '22023', 'Pass a cron expression such as ''15 2 * * *''.');
    PERFORM wval._require_pg_cron();
    EXECUTE 'SELECT cron.schedule($1, $2, $3)' INTO job USING 'wval:' || purpose, schedule, command;
    PERFORM wval._audit(NULL, 'schedule_set', wval._invoker(),
                        jsonb_build_object('job', 'wval:' || purpose, 'jobid', job, 'schedule', schedule, 'command', command));
    RETURN job;
END
$$;
COMMENT ON FUNCTION wval._cron_schedule(text, text, text) IS 'registers or updates the pg_cron job wval:<purpose> (WV010 with a HINT when pg_cron is missing); audited';

CREATE FUNCTION public.wval_unschedule(name text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    job text := CASE WHEN name LIKE 'wval:%' THEN name ELSE 'wval:' || name END;
    found_job boolean;
BEGIN
    PERFORM wval._require_text('name', name);
    PERFORM wval._require_pg_cron();
    EXECUTE 'SELECT EXISTS (SELECT 1 FROM cron.job WHERE jobname = $1)' INTO found_job USING job;
    IF found_job THEN
        EXECUTE 'SELECT cron.unschedule($1)' USING job;
        PERFORM wval._audit(NULL, 'schedule_removed', wval._invoker(), jsonb_build_object('job', job));
    END IF;
    RETURN found_job;
END
$$;
COMMENT ON FUNCTION public.wval_unschedule(text) IS 'removes the pg_cron job wval:<name> (name with or without the wval: prefix); false when it was not scheduled; only wval jobs';

GRANT EXECUTE ON FUNCTION public.wval_unschedule(text) TO wval_admin;

------------------------------------------------------------------------------
-- Cron expressions (schedule.c): when a schedule is expected to fire
------------------------------------------------------------------------------

CREATE FUNCTION wval._cron_valid(schedule text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'wval_cron_valid' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION wval._cron_valid(text) IS 'true for a cron expression wval can evaluate (five fields of *, values, ranges, steps and names, or an @macro)';

CREATE FUNCTION wval._cron_check(schedule text) RETURNS text
    AS 'MODULE_PATHNAME', 'wval_cron_check' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION wval._cron_check(text) IS 'returns the cron expression, or raises 22023 naming the field that is wrong';

CREATE FUNCTION wval._cron_next(schedule text, after timestamptz, tz text DEFAULT 'GMT') RETURNS timestamptz
    AS 'MODULE_PATHNAME', 'wval_cron_next' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION wval._cron_next(text, timestamptz, text) IS 'the first time strictly after "after" at which the schedule fires on the wall clock of time zone tz; null when it never fires';

CREATE FUNCTION wval._cron_times(schedule text, after timestamptz, until timestamptz, tz text DEFAULT 'GMT',
                                 max_rows integer DEFAULT 10000)
RETURNS SETOF timestamptz
    AS 'MODULE_PATHNAME', 'wval_cron_times' LANGUAGE C STABLE STRICT PARALLEL SAFE ROWS 100;
COMMENT ON FUNCTION wval._cron_times(text, timestamptz, timestamptz, text, integer) IS 'the times in (after, until] at which the schedule fires in time zone tz, oldest first, at most max_rows';

-- wval._cron_timezone(): the zone pg_cron reads schedules in (cron.timezone
-- from pg_cron 1.5 on; GMT before).
CREATE FUNCTION wval._cron_timezone() RETURNS text
LANGUAGE sql STABLE AS $$ SELECT coalesce(nullif(current_setting('cron.timezone', true), ''), 'GMT') $$;
COMMENT ON FUNCTION wval._cron_timezone() IS 'the time zone pg_cron evaluates schedules in: cron.timezone, GMT when unset (pg_cron < 1.5)';

-- wval._schedule_grace(): how long after an expected time a run may start
-- before the watchdog calls it missed (setting wval.schedule_grace).
CREATE FUNCTION wval._schedule_grace() RETURNS interval
LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('wval.schedule_grace', true), '')::interval, interval '2 minutes')
$$;
COMMENT ON FUNCTION wval._schedule_grace() IS 'the setting wval.schedule_grace: how late a run may start before it counts as missed (default 2 minutes)';

------------------------------------------------------------------------------
-- The watchdog: expected runs of every wval:* job versus cron.job_run_details
------------------------------------------------------------------------------

CREATE TABLE wval.schedule_watch (
    job_name      text PRIMARY KEY,
    jobid         bigint NOT NULL,
    schedule      text NOT NULL,
    since         timestamptz NOT NULL,
    checked_until timestamptz NOT NULL,
    checked_at    timestamptz
);
COMMENT ON TABLE wval.schedule_watch IS 'watchdog state per wval:* pg_cron job: since when its current schedule applies and up to which expected time it was checked (mutable; a job id or schedule change restarts it)';
COMMENT ON COLUMN wval.schedule_watch.since IS 'when the job''s current schedule took effect (the audit row of wval._cron_schedule, else when the watchdog first saw it)';
COMMENT ON COLUMN wval.schedule_watch.checked_until IS 'expected times up to here have been compared with cron.job_run_details';
COMMENT ON COLUMN wval.schedule_watch.jobid IS 'cron.job.jobid; kept after the job is removed so that its run history can still be trimmed';

CREATE TABLE wval.schedule_misses (
    job_name        text NOT NULL,
    expected_at     timestamptz NOT NULL,
    jobid           bigint NOT NULL,
    schedule        text NOT NULL,
    problem         text NOT NULL CHECK (problem IN ('missed', 'failed')),
    cron_runid      bigint,
    message         text,
    last_success_at timestamptz,
    detected_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_name, expected_at)
);
COMMENT ON TABLE wval.schedule_misses IS 'expected runs of wval:* pg_cron jobs that did not start (missed) or failed, one row per job and expected time, found by wval_watchdog(); each emitted schedule_missed';
COMMENT ON COLUMN wval.schedule_misses.problem IS 'missed: no run started between the expected time and the next one; failed: a run started and failed';
COMMENT ON COLUMN wval.schedule_misses.cron_runid IS 'cron.job_run_details.runid of the failed run';
COMMENT ON COLUMN wval.schedule_misses.message IS 'return_message of the failed run';
COMMENT ON COLUMN wval.schedule_misses.last_success_at IS 'end of the job''s latest successful run when the problem was found';
SELECT wval._protect('wval.schedule_misses');

-- wval._schedule_since(jobid, schedule): when a job's current schedule took
-- effect according to the audit log (null when wval did not schedule it).
CREATE FUNCTION wval._schedule_since(p_jobid bigint, p_schedule text) RETURNS timestamptz
LANGUAGE sql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
    SELECT max(a.recorded_at) FROM wval.audit_log a
    WHERE a.world_id IS NULL AND a.action = 'schedule_set'
      AND a.details->>'jobid' = p_jobid::text AND a.details->>'schedule' = p_schedule
$$;
COMMENT ON FUNCTION wval._schedule_since(bigint, text) IS 'when wval._cron_schedule gave a job its current schedule (audit log), null when unknown';

CREATE FUNCTION public.wval_watchdog(at timestamptz DEFAULT now(), lookback interval DEFAULT '1 day')
RETURNS TABLE (job text, expected_at timestamptz, problem text, message text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    j record;
    w wval.schedule_watch;
    tz text := wval._cron_timezone();
    horizon timestamptz;
    from_t timestamptz;
    last_ok timestamptz;
    hold timestamptz;
    newest timestamptz;
    nslots bigint;
    found_rows jsonb;
BEGIN
    PERFORM wval._require_pg_cron();
    IF at IS NULL OR NOT isfinite(at) OR at > now() OR lookback IS NULL OR lookback <= interval '0' THEN
        RAISE EXCEPTION 'invalid value for "%"', CASE WHEN at IS NULL OR NOT isfinite(at) OR at > now() THEN 'at' ELSE 'lookback' END
            USING ERRCODE = '22023',
                  DETAIL = format('at is %s, lookback is %s.', coalesce(at::text, 'null'), coalesce(lookback::text, 'null')),
                  HINT = 'Pass a point in time that is not in the future (what was missed is recorded for good) and a positive interval such as ''1 day''.';
    END IF;
    horizon := at - wval._schedule_grace();
    FOR j IN
        SELECT c.jobid, c.jobname::text AS jobname, c.schedule FROM cron.job c
        WHERE c.jobname LIKE 'wval:%' ORDER BY c.jobname
    LOOP
        SELECT * INTO w FROM wval.schedule_watch s WHERE s.job_name = j.jobname FOR UPDATE;
        IF NOT FOUND OR w.jobid <> j.jobid OR w.schedule <> j.schedule THEN
            INSERT INTO wval.schedule_watch AS s (job_name, jobid, schedule, since, checked_until)
            VALUES (j.jobname, j.jobid, j.schedule, least(coalesce(wval._schedule_since(j.jobid, j.schedule), at), at),
                    least(coalesce(wval._schedule_since(j.jobid, j.schedule), at), at))
            ON CONFLICT (job_name) DO UPDATE
                SET jobid = excluded.jobid, schedule = excluded.schedule, since = excluded.since,
                    checked_until = excluded.checked_until
            RETURNING * INTO w;
        END IF;
        UPDATE wval.schedule_watch s SET checked_at = at WHERE s.job_name = j.jobname;
        CONTINUE WHEN NOT wval._cron_valid(j.schedule);
        from_t := greatest(w.checked_until, at - lookback);
        CONTINUE WHEN from_t >= horizon;

        SELECT max(d.end_time) INTO last_ok FROM cron.job_run_details d
        WHERE d.jobid = j.jobid AND d.status = 'succeeded';

        -- every expected time in (from_t, horizon] with the runs that started
        -- between it and the next expected time; the ones without a
        -- successful (or still running) run are recorded and announced
        WITH slots AS (
            SELECT e.t AS expected_at,
                   coalesce(bool_or(d.status = 'succeeded'), false) AS ok,
                   coalesce(bool_or(d.status IN ('starting', 'running', 'sending', 'connecting')), false) AS busy,
                   max(d.runid) FILTER (WHERE d.status = 'failed') AS failed_run,
                   (array_agg(d.return_message ORDER BY d.runid DESC) FILTER (WHERE d.status = 'failed'))[1] AS message
            FROM wval._cron_times(j.schedule, from_t, horizon, tz, 10000) e(t)
            LEFT JOIN cron.job_run_details d
                   ON d.jobid = j.jobid AND d.start_time >= e.t
                  AND d.start_time < coalesce(wval._cron_next(j.schedule, e.t, tz), 'infinity')
            GROUP BY e.t),
        found AS (
            INSERT INTO wval.schedule_misses AS m (job_name, expected_at, jobid, schedule, problem, cron_runid,
                                                   message, last_success_at)
            SELECT j.jobname, s.expected_at, j.jobid, j.schedule,
                   CASE WHEN s.failed_run IS NULL THEN 'missed' ELSE 'failed' END, s.failed_run, s.message, last_ok
            FROM slots s
            WHERE NOT s.ok AND NOT s.busy
            ON CONFLICT DO NOTHING
            RETURNING m.*),
        emitted AS (
            SELECT f.job_name, f.expected_at, f.problem, f.message,
                   wval._emit('schedule_missed', NULL, f.job_name,
                              format('schedule_missed:-:%s:%s', f.job_name,
                                     to_char(f.expected_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
                              jsonb_build_object('job', f.job_name, 'jobid', f.jobid, 'schedule', f.schedule,
                                                 'expected_at', f.expected_at, 'problem', f.problem,
                                                 'last_success_at', f.last_success_at, 'message', f.message)) AS event_id
            FROM found f)
        SELECT (SELECT min(s.expected_at) FROM slots s WHERE s.busy AND NOT s.ok),
               (SELECT max(s.expected_at) FROM slots s),
               (SELECT count(*) FROM slots s),
               (SELECT coalesce(jsonb_agg(jsonb_build_object('job', e.job_name, 'expected_at', e.expected_at,
                                                             'problem', e.problem, 'message', e.message)
                                          ORDER BY e.expected_at), '[]')
                FROM emitted e)
          INTO hold, newest, nslots, found_rows;

        RETURN QUERY
        SELECT x.job, x.expected_at, x.problem, x.message
        FROM jsonb_to_recordset(found_rows) AS x(job text, expected_at timestamptz, problem text, message text)
        ORDER BY x.expected_at;

        -- a run still in progress is looked at again next time
        UPDATE wval.schedule_watch s
        SET checked_until = CASE WHEN hold IS NOT NULL THEN hold - interval '1 microsecond'
                                 WHEN nslots >= 10000 THEN newest
                                 ELSE horizon END
        WHERE s.job_name = j.jobname;
    END LOOP;
END
$$;
COMMENT ON FUNCTION public.wval_watchdog(timestamptz, interval) IS 'compares the expected runs of every wval:* pg_cron job (from its cron expression) with cron.job_run_details up to "at" (not in the future) minus wval.schedule_grace, at most lookback back: each missed or failed run is recorded in wval.schedule_misses and emits schedule_missed once per job and expected time; returns what it found';

CREATE FUNCTION public.wval_schedule_watchdog(schedule text DEFAULT '*/5 * * * *') RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
BEGIN
    PERFORM wval._require_text('schedule', schedule, '22023', 'Pass a cron expression such as ''*/5 * * * *''.');
    PERFORM wval._cron_check(schedule);
    RETURN wval._cron_schedule('watchdog', schedule, 'SELECT count(*) FROM public.wval_watchdog()');
END
$$;
COMMENT ON FUNCTION public.wval_schedule_watchdog(text) IS 'schedules (or reschedules) the pg_cron job wval:watchdog that runs wval_watchdog(); WV010 with set-up instructions when pg_cron is missing';

-- wval._schedule_health(at): the rows of wval.schedule_health (no rows
-- without pg_cron).
CREATE FUNCTION wval._schedule_health(at timestamptz DEFAULT now())
RETURNS TABLE (job text, jobid bigint, schedule text, active boolean, since timestamptz,
               last_success timestamptz, last_failure timestamptz, last_failure_message text,
               next_expected timestamptz, late_by interval, missed_24h bigint, status text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    tz text := wval._cron_timezone();
    grace interval := wval._schedule_grace();
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH j AS (
        SELECT c.jobid, c.jobname::text AS job, c.schedule, c.active, wval._cron_valid(c.schedule) AS valid,
               coalesce(CASE WHEN w.jobid = c.jobid AND w.schedule = c.schedule THEN w.since END,
                        wval._schedule_since(c.jobid, c.schedule),
                        (SELECT min(d.start_time) FROM cron.job_run_details d WHERE d.jobid = c.jobid),
                        at) AS since
        FROM cron.job c
        LEFT JOIN wval.schedule_watch w ON w.job_name = c.jobname::text
        WHERE c.jobname LIKE 'wval:%'),
    r AS (
        SELECT d.jobid,
               max(d.end_time) FILTER (WHERE d.status = 'succeeded') AS last_success,
               max(d.start_time) FILTER (WHERE d.status IN ('succeeded', 'starting', 'running', 'sending', 'connecting')) AS last_good_start,
               max(d.start_time) FILTER (WHERE d.status = 'failed') AS last_failure,
               (array_agg(d.return_message ORDER BY d.start_time DESC) FILTER (WHERE d.status = 'failed'))[1] AS last_failure_message,
               (array_agg(d.status ORDER BY d.start_time DESC) FILTER (WHERE d.status IN ('succeeded', 'failed')))[1] AS last_finished
        FROM cron.job_run_details d
        WHERE d.jobid IN (SELECT j.jobid FROM j)
        GROUP BY d.jobid),
    x AS (
        SELECT j.*, r.last_success, r.last_failure, r.last_failure_message, r.last_finished,
               CASE WHEN j.valid THEN wval._cron_next(j.schedule, greatest(j.since, r.last_good_start), tz) END AS due,
               CASE WHEN j.valid THEN wval._cron_next(j.schedule, at, tz) END AS next_expected,
               (SELECT count(*) FROM wval.schedule_misses m
                WHERE m.job_name = j.job AND m.expected_at > at - interval '24 hours') AS missed_24h
        FROM j LEFT JOIN r ON r.jobid = j.jobid)
    SELECT x.job, x.jobid, x.schedule, x.active, x.since, x.last_success, x.last_failure, x.last_failure_message,
           x.next_expected,
           CASE WHEN x.due + grace <= at THEN at - x.due END,
           x.missed_24h,
           CASE WHEN NOT x.valid THEN 'unknown_schedule'
                WHEN NOT x.active THEN 'inactive'
                WHEN x.last_finished = 'failed' THEN 'failing'
                WHEN x.due + grace <= at THEN 'late'
                ELSE 'ok' END
    FROM x
    ORDER BY x.job;
END
$$;
COMMENT ON FUNCTION wval._schedule_health(timestamptz) IS 'the rows of wval.schedule_health as of a point in time';

CREATE VIEW wval.schedule_health AS SELECT * FROM wval._schedule_health();
COMMENT ON VIEW wval.schedule_health IS 'one row per wval:* pg_cron job: schedule, active, last success (end of the latest successful run), last failure and its message, next expected run, late_by (time since the first expected run that has not succeeded, once wval.schedule_grace has passed), schedule_missed rows of the last 24 hours, status ok | late | failing | inactive | unknown_schedule; empty without pg_cron';

-- wval._trim_cron_history(keep): removes the cron.job_run_details rows of
-- wval's own jobs that ended more than `keep` ago; other jobs' rows stay.
CREATE FUNCTION wval._trim_cron_history(keep interval DEFAULT '14 days') RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    n bigint;
BEGIN
    IF keep IS NULL OR keep <= interval '0' THEN
        RAISE EXCEPTION 'invalid value for "keep"' USING ERRCODE = '22023',
            DETAIL = format('keep is %s.', coalesce(keep::text, 'null')),
            HINT = 'Pass a positive interval such as ''14 days''.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        RETURN 0;
    END IF;
    DELETE FROM cron.job_run_details d
    WHERE coalesce(d.end_time, d.start_time) < now() - keep
      AND d.status IN ('succeeded', 'failed')
      AND (d.jobid IN (SELECT c.jobid FROM cron.job c WHERE c.jobname LIKE 'wval:%')
           OR d.jobid IN (SELECT w.jobid FROM wval.schedule_watch w));
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM wval._audit(NULL, 'cron_history_trimmed', wval._invoker(),
                            jsonb_build_object('keep', keep, 'deleted', n));
    END IF;
    RETURN n;
END
$$;
COMMENT ON FUNCTION wval._trim_cron_history(interval) IS 'deletes cron.job_run_details rows of wval:* jobs (also removed ones the watchdog knew) that ended more than keep ago (default 14 days); leaves other jobs alone; 0 without pg_cron';

SELECT pg_catalog.pg_extension_config_dump('wval.schedule_watch', '');
SELECT pg_catalog.pg_extension_config_dump('wval.schedule_misses', '');

GRANT SELECT ON wval.schedule_watch, wval.schedule_misses, wval.schedule_health TO wval_analyst;
GRANT EXECUTE ON FUNCTION wval._schedule_health(timestamptz) TO wval_analyst;
GRANT EXECUTE ON FUNCTION public.wval_watchdog(timestamptz, interval), public.wval_schedule_watchdog(text) TO wval_admin;

-- source: src/bus.sql
-- bus.sql: the event bus (spec bus.md): transactional outbox, LISTEN/NOTIFY
-- wake-ups, consumer groups with retry, backoff, visibility timeout and dead
-- letters, wval's internal consumers, health and pruning.  All of it is SQL
-- and set-based plpgsql; see docs/bus.md for the user's view.
--
-- Delivery design.  Consumers do not track an offset into wval.events:
-- event_ids come from a sequence, so a transaction holding a smaller
-- event_id can commit after one holding a larger id, and an offset that has
-- moved past the larger id would skip the smaller one for ever.  Instead
-- wval._emit() writes one row per subscribed group into wval.deliveries in
-- the same transaction as the event (fan-out at publish time).  A delivery
-- row becomes visible exactly when its event commits, and it stays
-- outstanding (done_at IS NULL) until the group acknowledges it, lets it
-- expire or dead-letters it; a late commit is simply a late delivery row,
-- never a skipped one.
--
-- Per-world order.  A group's outstanding deliveries form one queue per
-- world (world_key; '' for events without a world), ordered by event_id.
-- wval_consume() hands out a world's events only from the head of that
-- queue, and only while the head is visible (visible_at <= now: not leased
-- to another consumer, not waiting for its backoff).  Handing out sets
-- visible_at to now + visibility on every event handed out, and a world with
-- an event in a consumer's hands (leased, visibility not yet passed) is not
-- handed out at all, so the world is busy until those events are acked,
-- nacked or time out.  Two
-- consumers racing for the same world are serialised by a transaction-level
-- advisory lock on (group, world), taken with pg_try_advisory_xact_lock()
-- (the loser skips the world, SKIP LOCKED style); the winner then re-reads
-- the queue in a new statement, whose snapshot includes every lease
-- committed before it got the lock.
--
-- Subscriptions and concurrent emitters.  _emit() holds a shared advisory
-- lock (BUS_LOCK, 0) until its transaction ends; wval_subscribe() takes it
-- exclusively, so it waits for every transaction that is emitting and
-- makes later emitters wait for the subscription to commit: a group receives
-- exactly the events that commit after its subscription.

------------------------------------------------------------------------------
-- The outbox
------------------------------------------------------------------------------

CREATE SEQUENCE wval.events_id_seq;
CREATE TABLE wval.events (
    event_id        bigint NOT NULL DEFAULT nextval('wval.events_id_seq') PRIMARY KEY,
    type            text NOT NULL,
    world_id        text,
    subject         text,
    idempotency_key text NOT NULL UNIQUE,
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz
);
ALTER SEQUENCE wval.events_id_seq OWNED BY wval.events.event_id;
CREATE INDEX ON wval.events (type, event_id);
CREATE INDEX ON wval.events (created_at);
COMMENT ON TABLE wval.events IS 'transactional outbox: one row per event, written in the same transaction as the change it announces; payload is a CloudEvents 1.0 envelope. Append-only; wval_bus_prune() removes events every group has finished';
COMMENT ON COLUMN wval.events.event_id IS 'from a sequence: increasing, but a smaller id may commit after a larger one (consumers never track offsets, see docs/bus.md)';
COMMENT ON COLUMN wval.events.type IS 'event type (catalogue in docs/bus.md), e.g. policy_version_published';
COMMENT ON COLUMN wval.events.world_id IS 'the world the event is about; null for events of no world (schedule_missed)';
COMMENT ON COLUMN wval.events.subject IS 'what in the world the event is about: a run_id, a policy version (v3), an event_id';
COMMENT ON COLUMN wval.events.idempotency_key IS '<type>:<world_id>:<subject>:<discriminator>; publishing an existing key is a counted no-op';
COMMENT ON COLUMN wval.events.payload IS 'CloudEvents 1.0 envelope: specversion, id, source, type, subject, time, datacontenttype, data';
COMMENT ON COLUMN wval.events.created_at IS 'start of the emitting transaction (enqueue time for latency)';
COMMENT ON COLUMN wval.events.expires_at IS 'events with a TTL (risk snapshots) are not handed out after this time; they are counted as expired and acknowledged';
SELECT wval._protect('wval.events');

CREATE TABLE wval.event_dedupe_hits (
    type        text NOT NULL,
    shard       smallint NOT NULL,
    hits        bigint NOT NULL DEFAULT 0,
    last_key    text,
    last_hit_at timestamptz,
    PRIMARY KEY (type, shard)
);
COMMENT ON TABLE wval.event_dedupe_hits IS 'per event type: publishes that were no-ops because their idempotency key existed; sharded by backend so that concurrent publishers do not queue on one row (sum hits over shards, or read wval.bus_health)';
COMMENT ON COLUMN wval.event_dedupe_hits.shard IS 'pg_backend_pid() % 16 of the publisher';
COMMENT ON COLUMN wval.event_dedupe_hits.last_key IS 'the idempotency key of the latest hit in this shard';

------------------------------------------------------------------------------
-- Consumer groups and deliveries
------------------------------------------------------------------------------

CREATE TABLE wval.consumer_groups (
    group_name   text PRIMARY KEY,
    types        text[] NOT NULL,
    max_attempts integer NOT NULL CHECK (max_attempts BETWEEN 1 AND 100),
    backoff      interval NOT NULL CHECK (backoff >= interval '0'),
    visibility   interval NOT NULL CHECK (visibility > interval '0'),
    internal     boolean NOT NULL DEFAULT false,
    created_by   text NOT NULL DEFAULT session_user,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE wval.consumer_groups IS 'consumer groups (wval_subscribe): the event types each receives and its retry settings';
COMMENT ON COLUMN wval.consumer_groups.types IS 'event types delivered to the group (those emitted after the subscription committed)';
COMMENT ON COLUMN wval.consumer_groups.max_attempts IS 'hand-outs before an event is dead-lettered (a nack or an expired visibility timeout each count as a failed attempt)';
COMMENT ON COLUMN wval.consumer_groups.backoff IS 'a nacked event is handed out again after backoff x attempt (linear)';
COMMENT ON COLUMN wval.consumer_groups.visibility IS 'an event handed out and neither acked nor nacked within this time is handed out again';
COMMENT ON COLUMN wval.consumer_groups.internal IS 'true for wval''s own consumers, drained by wval_work() through wval.internal_handlers';

CREATE TABLE wval.deliveries (
    group_name  text NOT NULL,
    event_id    bigint NOT NULL,
    type        text NOT NULL,
    world_key   text NOT NULL,
    enqueued_at timestamptz NOT NULL,
    expires_at  timestamptz,
    visible_at  timestamptz NOT NULL,
    attempts    integer NOT NULL DEFAULT 0,
    handouts    integer NOT NULL DEFAULT 0,
    leased      boolean NOT NULL DEFAULT false,
    leased_at   timestamptz,
    done_at     timestamptz,
    outcome     text CHECK (outcome IN ('acked', 'expired', 'dead')),
    dead_count  integer NOT NULL DEFAULT 0,
    errors      jsonb NOT NULL DEFAULT '[]',
    PRIMARY KEY (group_name, event_id),
    CHECK ((done_at IS NULL) = (outcome IS NULL))
) WITH (fillfactor = 80);
CREATE INDEX deliveries_queue_idx ON wval.deliveries (group_name, world_key, event_id) WHERE done_at IS NULL;
CREATE INDEX deliveries_expiry_idx ON wval.deliveries (group_name, expires_at) WHERE done_at IS NULL AND expires_at IS NOT NULL;
CREATE INDEX deliveries_event_idx ON wval.deliveries (event_id);
COMMENT ON TABLE wval.deliveries IS 'one row per (consumer group, event), written with the event: the group''s queue, its delivery state and the raw numbers of wval.bus_health. Operational state (not history): changed only by the wval_* bus functions';
COMMENT ON COLUMN wval.deliveries.world_key IS 'world_id of the event, '''' for events of no world: the unit of per-world order';
COMMENT ON COLUMN wval.deliveries.enqueued_at IS 'when the event was emitted (events.created_at)';
COMMENT ON COLUMN wval.deliveries.visible_at IS 'the event may be handed out from this time on (lease end, or end of the backoff after a nack)';
COMMENT ON COLUMN wval.deliveries.attempts IS 'how often the event was handed out since it was emitted or redriven';
COMMENT ON COLUMN wval.deliveries.handouts IS 'how often the event was handed out in all (not reset by a redrive): the retried counter of wval.bus_health';
COMMENT ON COLUMN wval.deliveries.leased IS 'true while the latest hand-out is neither acked nor nacked';
COMMENT ON COLUMN wval.deliveries.leased_at IS 'time of the latest hand-out';
COMMENT ON COLUMN wval.deliveries.done_at IS 'when the group finished the event (ack, expiry or dead letter); null while outstanding';
COMMENT ON COLUMN wval.deliveries.outcome IS 'acked | expired | dead; null while outstanding';
COMMENT ON COLUMN wval.deliveries.dead_count IS 'how often the event was dead-lettered in this group (a redriven event can die again)';
COMMENT ON COLUMN wval.deliveries.errors IS 'array of {attempt, at, error} from nacks and visibility timeouts, and {redriven_at, by} marks';

CREATE TABLE wval.bus_counters (
    group_name    text NOT NULL,
    type          text NOT NULL,
    processed     bigint NOT NULL DEFAULT 0,
    retried       bigint NOT NULL DEFAULT 0,
    dead_lettered bigint NOT NULL DEFAULT 0,
    expired       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (group_name, type)
);
COMMENT ON TABLE wval.bus_counters IS 'totals of deliveries removed by wval_bus_prune(), so that the counters of wval.bus_health never go down';

CREATE TABLE wval.internal_handlers (
    group_name    text NOT NULL,
    type          text NOT NULL,
    handler       text NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_name, type)
);
COMMENT ON TABLE wval.internal_handlers IS 'wval''s own consumers: for an internal group and event type, the function wval_work() calls with the event (registered with wval._register_handler)';
COMMENT ON COLUMN wval.internal_handlers.handler IS 'signature of a function taking one wval.events argument, e.g. wval._recheck(wval.events); an error it raises nacks the event';

------------------------------------------------------------------------------
-- Helpers
------------------------------------------------------------------------------

-- wval._group(group_name): the consumer group, WV010 when it does not exist.
CREATE FUNCTION wval._group(p_group text) RETURNS wval.consumer_groups
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    g wval.consumer_groups;
BEGIN
    SELECT * INTO g FROM wval.consumer_groups c WHERE c.group_name = p_group;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'consumer group "%" does not exist', p_group
            USING ERRCODE = 'WV010',
                  DETAIL = format('group_name is %s.', coalesce(quote_literal(p_group), 'null')),
                  HINT = 'Register it first with wval_subscribe(group_name, types); see wval.consumer_groups.';
    END IF;
    RETURN g;
END
$$;
COMMENT ON FUNCTION wval._group(text) IS 'returns a consumer group; WV010 when it does not exist';

-- wval._delivery_missing(group, event_id): raises WV010 for an event the
-- group does not hold (used after an UPDATE found no row).
CREATE FUNCTION wval._delivery_missing(p_group text, p_event_id bigint) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'event % is not delivered to consumer group "%"', p_event_id, p_group
        USING ERRCODE = 'WV010',
              DETAIL = format('event_id is %s, group_name is %L.', coalesce(p_event_id::text, 'null'), p_group),
              HINT = 'Pass an event_id returned by wval_consume() for this group; a group receives only the types it subscribed to, emitted after it subscribed.';
END
$$;
COMMENT ON FUNCTION wval._delivery_missing(text, bigint) IS 'raises WV010: the event is not delivered to the group';

-- wval._dead_lettered(group, event_id): emits event_dead_lettered for a
-- delivery that has just been dead-lettered (not for event_dead_lettered
-- events themselves, so that a failing dead-letter consumer cannot loop).
CREATE FUNCTION wval._dead_lettered(p_group text, p_event_id bigint) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    d wval.deliveries;
    e wval.events;
BEGIN
    SELECT * INTO d FROM wval.deliveries x WHERE x.group_name = p_group AND x.event_id = p_event_id;
    SELECT * INTO e FROM wval.events x WHERE x.event_id = p_event_id;
    IF d.type = 'event_dead_lettered' THEN
        RETURN NULL;
    END IF;
    RETURN wval._emit('event_dead_lettered', e.world_id, p_event_id::text,
                      format('event_dead_lettered:%s:%s:%s:%s', coalesce(e.world_id, '-'), p_event_id,
                             p_group, d.dead_count),
                      jsonb_build_object('group', p_group, 'event_id', p_event_id, 'type', d.type,
                                         'world_id', e.world_id, 'attempts', d.attempts,
                                         'last_error', d.errors -> -1 ->> 'error'));
END
$$;
COMMENT ON FUNCTION wval._dead_lettered(text, bigint) IS 'emits event_dead_lettered for a delivery that was just dead-lettered';

------------------------------------------------------------------------------
-- Publishing
------------------------------------------------------------------------------

-- wval._emit(type, world, subject, key, data, ttl): writes one event and its
-- deliveries and wakes listeners with a small pointer; returns the event_id,
-- or null when the idempotency key exists (counted as a dedupe hit).
CREATE FUNCTION wval._emit(p_type text, p_world_id text, p_subject text, p_idempotency_key text,
                           p_data jsonb, p_ttl interval DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    id bigint;
    inserted bigint;
BEGIN
    IF p_type IS NULL OR btrim(p_type) = '' OR p_idempotency_key IS NULL OR btrim(p_idempotency_key) = '' THEN
        RAISE EXCEPTION '"%" must not be empty', CASE WHEN p_type IS NULL OR btrim(p_type) = '' THEN 'type' ELSE 'idempotency_key' END
            USING ERRCODE = '22023',
                  DETAIL = format('type is %s, idempotency_key is %s.', coalesce(quote_literal(p_type), 'null'),
                                  coalesce(quote_literal(p_idempotency_key), 'null')),
                  HINT = 'Events need a type and an idempotency key <type>:<world_id>:<subject>:<discriminator>.';
    END IF;
    -- shared with other emitters, exclusive for wval_subscribe (file header)
    PERFORM pg_advisory_xact_lock_shared(2004312428, 0);
    id := nextval('wval.events_id_seq');
    INSERT INTO wval.events (event_id, type, world_id, subject, idempotency_key, payload, expires_at)
    VALUES (id, p_type, p_world_id, p_subject, p_idempotency_key,
            jsonb_build_object(
                'specversion', '1.0',
                'id', id::text,
                'source', '/wval/' || current_database() || '/worlds/' || coalesce(p_world_id, '-'),
                'type', p_type,
                'subject', p_subject,
                'time', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                'datacontenttype', 'application/json',
                'data', coalesce(p_data, '{}'::jsonb)),
            now() + p_ttl)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING event_id INTO inserted;
    IF inserted IS NULL THEN
        INSERT INTO wval.event_dedupe_hits AS h (type, shard, hits, last_key, last_hit_at)
        VALUES (p_type, pg_backend_pid() % 16, 1, p_idempotency_key, now())
        ON CONFLICT (type, shard) DO UPDATE
            SET hits = h.hits + 1, last_key = excluded.last_key, last_hit_at = excluded.last_hit_at;
        RETURN NULL;
    END IF;
    INSERT INTO wval.deliveries (group_name, event_id, type, world_key, enqueued_at, expires_at, visible_at)
    SELECT g.group_name, id, p_type, coalesce(p_world_id, ''), now(), now() + p_ttl, now()
    FROM wval.consumer_groups g
    WHERE p_type = ANY (g.types);
    PERFORM pg_notify('wval_events',
                      json_build_object('event_id', id, 'type', p_type, 'world_id', p_world_id)::text);
    RETURN id;
END
$$;
COMMENT ON FUNCTION wval._emit(text, text, text, text, jsonb, interval) IS 'internal API of the bus: writes one event and one delivery per subscribed group in the caller''s transaction and NOTIFYs wval_events with {event_id, type, world_id}; null (and a dedupe hit) when the idempotency key exists';

------------------------------------------------------------------------------
-- Consumer groups
------------------------------------------------------------------------------

CREATE FUNCTION public.wval_subscribe(group_name text, types text[], max_attempts integer DEFAULT 3,
                                      backoff text DEFAULT '500ms', visibility text DEFAULT '30s')
RETURNS wval.consumer_groups
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
#variable_conflict use_column
DECLARE
    p_group text := wval._ident('group_name', wval_subscribe.group_name);
    p_types text[];
    p_backoff interval := wval._duration('backoff', wval_subscribe.backoff);
    p_visibility interval := wval._duration('visibility', wval_subscribe.visibility);
    old wval.consumer_groups;
    g wval.consumer_groups;
    lock_timeout text;
BEGIN
    IF wval_subscribe.types IS NULL OR cardinality(wval_subscribe.types) = 0
       OR EXISTS (SELECT 1 FROM unnest(wval_subscribe.types) t WHERE t IS NULL OR btrim(t) = '') THEN
        RAISE EXCEPTION 'invalid value for "types"' USING ERRCODE = '22023',
            DETAIL = format('types is %s.', coalesce(quote_literal(wval_subscribe.types::text), 'null')),
            HINT = 'Pass a non-empty array of event types, e.g. ARRAY[''evaluation_run_created''] (catalogue in docs/bus.md).';
    END IF;
    SELECT array_agg(DISTINCT t ORDER BY t) INTO p_types FROM unnest(wval_subscribe.types) t;
    IF wval_subscribe.max_attempts IS NULL OR wval_subscribe.max_attempts NOT BETWEEN 1 AND 100 THEN
        RAISE EXCEPTION 'invalid value for "max_attempts"' USING ERRCODE = '22023',
            DETAIL = format('max_attempts is %s.', coalesce(wval_subscribe.max_attempts::text, 'null')),
            HINT = 'Pass a number of attempts between 1 and 100.';
    END IF;
    IF p_backoff IS NULL OR p_backoff < interval '0' THEN
        RAISE EXCEPTION 'invalid value for "backoff"' USING ERRCODE = '22023',
            DETAIL = format('backoff is %s.', coalesce(quote_literal(wval_subscribe.backoff), 'null')),
            HINT = 'Pass a duration of zero or more, e.g. 500ms or 2s.';
    END IF;
    IF p_visibility IS NULL OR p_visibility <= interval '0' THEN
        RAISE EXCEPTION 'invalid value for "visibility"' USING ERRCODE = '22023',
            DETAIL = format('visibility is %s.', coalesce(quote_literal(wval_subscribe.visibility), 'null')),
            HINT = 'Pass a positive duration, e.g. 30s.';
    END IF;

    SELECT * INTO old FROM wval.consumer_groups WHERE group_name = p_group FOR UPDATE;
    IF old.internal THEN
        RAISE EXCEPTION 'consumer group "%" is internal to wval', p_group USING ERRCODE = '42501',
            DETAIL = format('group_name is %L.', p_group),
            HINT = 'Internal groups are managed by wval (wval.internal_handlers); subscribe under another name.';
    END IF;
    -- wait for transactions that are emitting, hold off new ones (file header);
    -- give up rather than stall every emitter behind a long transaction
    lock_timeout := current_setting('lock_timeout');
    BEGIN
        PERFORM set_config('lock_timeout', '5s', true);
        PERFORM pg_advisory_xact_lock(2004312428, 0);
    EXCEPTION WHEN lock_not_available THEN
        RAISE EXCEPTION 'cannot subscribe consumer group "%" while a long transaction is emitting events', p_group
            USING ERRCODE = '55P03',
                  DETAIL = 'A subscription waits for the transactions that are emitting events, and holds new emitters meanwhile; it waited 5 s.',
                  HINT = 'Retry, or end the long transaction first (pg_stat_activity shows it).';
    END;
    PERFORM set_config('lock_timeout', lock_timeout, true);
    INSERT INTO wval.consumer_groups AS c (group_name, types, max_attempts, backoff, visibility)
    VALUES (p_group, p_types, wval_subscribe.max_attempts, p_backoff, p_visibility)
    ON CONFLICT (group_name) DO UPDATE
        SET types = excluded.types, max_attempts = excluded.max_attempts, backoff = excluded.backoff,
            visibility = excluded.visibility, updated_at = now()
    RETURNING * INTO g;
    IF old.group_name IS NULL OR (to_jsonb(old) - 'updated_at') IS DISTINCT FROM (to_jsonb(g) - 'updated_at') THEN
        PERFORM wval._audit(NULL, CASE WHEN old.group_name IS NULL THEN 'bus_subscribed' ELSE 'bus_subscription_changed' END,
                            session_user,
                            jsonb_build_object('group_name', p_group, 'types', to_jsonb(p_types),
                                               'max_attempts', g.max_attempts, 'backoff', g.backoff::text,
                                               'visibility', g.visibility::text));
    END IF;
    RETURN g;
END
$$;
COMMENT ON FUNCTION public.wval_subscribe(text, text[], integer, text, text) IS 'registers (or changes) a consumer group: the event types it receives from now on, max_attempts before dead letter, linear backoff, visibility timeout (durations: intervals or 500ms, 30s, 5m, 1h)';

CREATE FUNCTION public.wval_subscribe(group_name text, types text[], max_attempts integer, backoff interval,
                                      visibility interval DEFAULT '30 seconds')
RETURNS wval.consumer_groups
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
    SELECT public.wval_subscribe(group_name, types, max_attempts, backoff::text, visibility::text);
$$;
COMMENT ON FUNCTION public.wval_subscribe(text, text[], integer, interval, interval) IS 'wval_subscribe with interval values for backoff and visibility';

CREATE FUNCTION public.wval_unsubscribe(group_name text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
#variable_conflict use_column
DECLARE
    g wval.consumer_groups := wval._group(wval_unsubscribe.group_name);
    outstanding bigint;
BEGIN
    IF g.internal THEN
        RAISE EXCEPTION 'consumer group "%" is internal to wval', g.group_name USING ERRCODE = '42501',
            DETAIL = format('group_name is %L.', g.group_name),
            HINT = 'Internal groups are managed by wval and cannot be dropped.';
    END IF;
    PERFORM 1 FROM wval.consumer_groups WHERE group_name = g.group_name FOR UPDATE;
    SELECT count(*) INTO outstanding FROM wval.deliveries WHERE group_name = g.group_name AND done_at IS NULL;
    DELETE FROM wval.deliveries WHERE group_name = g.group_name;
    DELETE FROM wval.bus_counters WHERE group_name = g.group_name;
    DELETE FROM wval.consumer_groups WHERE group_name = g.group_name;
    PERFORM wval._audit(NULL, 'bus_unsubscribed', session_user,
                        jsonb_build_object('group_name', g.group_name, 'outstanding_dropped', outstanding));
    RETURN outstanding;
END
$$;
COMMENT ON FUNCTION public.wval_unsubscribe(text) IS 'drops a consumer group with its deliveries (audited); returns how many outstanding events it drops';

------------------------------------------------------------------------------
-- Consuming
------------------------------------------------------------------------------

CREATE FUNCTION public.wval_consume(group_name text, max integer DEFAULT 100)
RETURNS SETOF wval.events
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
#variable_conflict use_column
DECLARE
    g wval.consumer_groups := wval._group(wval_consume.group_name);
    t timestamptz := clock_timestamp();
    budget integer := wval_consume.max;
    w record;
    handed bigint[] := '{}';
    got bigint[];
    expired bigint[];
    died bigint[];
    n integer;
BEGIN
    IF budget IS NULL OR budget < 1 OR budget > 1000 THEN
        RAISE EXCEPTION 'invalid value for "max"' USING ERRCODE = '22023',
            DETAIL = format('max is %s.', coalesce(budget::text, 'null')),
            HINT = 'Ask for between 1 and 1000 events per call.';
    END IF;

    -- expired events nobody holds: counted as expired and acknowledged
    UPDATE wval.deliveries d SET done_at = t, outcome = 'expired', leased = false
    WHERE (d.group_name, d.event_id) IN (
        SELECT x.group_name, x.event_id FROM wval.deliveries x
        WHERE x.group_name = g.group_name AND x.done_at IS NULL
          AND x.expires_at <= t AND x.visible_at <= t
        FOR UPDATE SKIP LOCKED);

    -- worlds whose queue head may be handed out, oldest head first.  The
    -- recursive part walks the distinct worlds of the queue index (one probe
    -- per world) instead of reading the whole backlog.
    FOR w IN
        WITH RECURSIVE worlds AS (
            (SELECT x.world_key FROM wval.deliveries x
             WHERE x.group_name = g.group_name AND x.done_at IS NULL
             ORDER BY x.world_key LIMIT 1)
            UNION ALL
            SELECT (SELECT x.world_key FROM wval.deliveries x
                    WHERE x.group_name = g.group_name AND x.done_at IS NULL AND x.world_key > ws.world_key
                    ORDER BY x.world_key LIMIT 1)
            FROM worlds ws WHERE ws.world_key IS NOT NULL)
        SELECT ws.world_key
        FROM worlds ws
        CROSS JOIN LATERAL (
            SELECT x.event_id, x.visible_at FROM wval.deliveries x
            WHERE x.group_name = g.group_name AND x.world_key = ws.world_key AND x.done_at IS NULL
            ORDER BY x.event_id LIMIT 1) h
        WHERE ws.world_key IS NOT NULL AND h.visible_at <= t
        ORDER BY h.event_id
        LIMIT wval_consume.max
    LOOP
        EXIT WHEN budget <= 0;
        -- another consumer is claiming this world right now: skip it
        CONTINUE WHEN NOT pg_try_advisory_xact_lock(2004312429, hashtext(g.group_name || '/' || w.world_key));
        -- a new statement, so a new snapshot: it sees every claim committed
        -- before the lock was granted.  Take the visible prefix of the queue,
        -- unless something of this world is in another consumer's hands.
        SELECT coalesce(array_agg(r.event_id ORDER BY r.event_id) FILTER (WHERE r.act = 'lease'), '{}'),
               coalesce(array_agg(r.event_id ORDER BY r.event_id) FILTER (WHERE r.act = 'expire'), '{}'),
               coalesce(array_agg(r.event_id ORDER BY r.event_id) FILTER (WHERE r.act = 'dead'), '{}')
        INTO got, expired, died
        FROM (SELECT p.event_id,
                     CASE WHEN p.expires_at <= t THEN 'expire'
                          WHEN p.attempts >= g.max_attempts THEN 'dead'
                          ELSE 'lease' END AS act,
                     bool_and(p.visible_at <= t) OVER (ORDER BY p.event_id) AS open
              FROM (SELECT x.event_id, x.attempts, x.expires_at, x.visible_at
                    FROM wval.deliveries x
                    WHERE x.group_name = g.group_name AND x.world_key = w.world_key AND x.done_at IS NULL
                      AND NOT EXISTS (SELECT 1 FROM wval.deliveries z
                                      WHERE z.group_name = g.group_name AND z.world_key = w.world_key
                                        AND z.done_at IS NULL AND z.leased AND z.visible_at > t)
                    ORDER BY x.event_id
                    LIMIT budget) p) r
        WHERE r.open;
        -- the conditions are re-checked on rows changed meanwhile by a late
        -- ack or nack of an earlier holder (they take no world lock).
        -- "outcome IS NULL" is "done_at IS NULL" (CHECK constraint) in a form
        -- that keeps the planner on the primary key even with stale
        -- statistics instead of walking the partial queue index.
        IF cardinality(got) > 0 THEN
            UPDATE wval.deliveries d
            SET attempts = d.attempts + 1, handouts = d.handouts + 1, visible_at = t + g.visibility,
                leased = true, leased_at = t,
                errors = CASE WHEN d.leased
                              THEN d.errors || jsonb_build_array(jsonb_build_object(
                                       'attempt', d.attempts, 'at', t, 'error', 'visibility timeout expired'))
                              ELSE d.errors END
            WHERE d.group_name = g.group_name AND d.event_id = ANY (got)
              AND d.outcome IS NULL AND d.visible_at <= t;
            GET DIAGNOSTICS n = ROW_COUNT;
            IF n < cardinality(got) THEN
                -- rare: some were finished meanwhile; hand out what was leased now
                SELECT coalesce(array_agg(d.event_id ORDER BY d.event_id), '{}') INTO got
                FROM wval.deliveries d
                WHERE d.group_name = g.group_name AND d.event_id = ANY (got)
                  AND d.leased AND d.leased_at = t AND d.done_at IS NULL;
            END IF;
            handed := handed || got;
            budget := budget - cardinality(got);
        END IF;
        IF cardinality(expired) > 0 THEN
            UPDATE wval.deliveries d SET done_at = t, outcome = 'expired', leased = false
            WHERE d.group_name = g.group_name AND d.event_id = ANY (expired)
              AND d.outcome IS NULL AND d.visible_at <= t;
            budget := budget - cardinality(expired);
        END IF;
        IF cardinality(died) > 0 THEN
            -- handed out max_attempts times and never acked nor nacked
            UPDATE wval.deliveries d
            SET done_at = t, outcome = 'dead', leased = false, dead_count = d.dead_count + 1,
                errors = d.errors || jsonb_build_array(jsonb_build_object(
                             'attempt', d.attempts, 'at', t, 'error', 'visibility timeout expired'))
            WHERE d.group_name = g.group_name AND d.event_id = ANY (died)
              AND d.outcome IS NULL AND d.visible_at <= t;
            FOR i IN 1 .. cardinality(died) LOOP
                PERFORM wval._dead_lettered(g.group_name, died[i]);
            END LOOP;
            budget := budget - cardinality(died);
        END IF;
    END LOOP;

    RETURN QUERY SELECT e.* FROM wval.events e WHERE e.event_id = ANY (handed) ORDER BY e.event_id;
END
$$;
COMMENT ON FUNCTION public.wval_consume(text, integer) IS 'hands out up to max events the group has not finished, oldest first, per-world order kept (a world''s events go to one consumer at a time); concurrent callers never get the same event';

CREATE FUNCTION public.wval_ack(group_name text, event_id bigint) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
#variable_conflict use_column
DECLARE
    d wval.deliveries;
BEGIN
    UPDATE wval.deliveries SET done_at = clock_timestamp(), outcome = 'acked', leased = false
    WHERE group_name = wval_ack.group_name AND event_id = wval_ack.event_id
      AND done_at IS NULL AND attempts > 0;
    IF FOUND THEN
        RETURN true;
    END IF;
    PERFORM wval._group(wval_ack.group_name);
    SELECT * INTO d FROM wval.deliveries WHERE group_name = wval_ack.group_name AND event_id = wval_ack.event_id;
    IF NOT FOUND THEN
        PERFORM wval._delivery_missing(wval_ack.group_name, wval_ack.event_id);
    ELSIF d.done_at IS NULL THEN
        RAISE EXCEPTION 'event % has not been handed out to consumer group "%"', d.event_id, d.group_name
            USING ERRCODE = '22023',
                  DETAIL = format('event_id is %s, attempts is 0.', d.event_id),
                  HINT = 'Acknowledge only events that wval_consume() returned.';
    END IF;
    RETURN false;	-- already finished (acked, expired or dead-lettered)
END
$$;
COMMENT ON FUNCTION public.wval_ack(text, bigint) IS 'acknowledges an event handed out to the group: true, or false when the group had already finished it';

CREATE FUNCTION public.wval_ack(group_name text, event_ids bigint[]) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
#variable_conflict use_column
DECLARE
    n integer;
    missing bigint;
BEGIN
    PERFORM wval._group(wval_ack.group_name);
    SELECT i INTO missing FROM unnest(wval_ack.event_ids) i
    WHERE i IS NULL OR NOT EXISTS (SELECT 1 FROM wval.deliveries d
                                   WHERE d.group_name = wval_ack.group_name AND d.event_id = i AND d.attempts > 0)
    LIMIT 1;
    IF FOUND THEN
        PERFORM wval._delivery_missing(wval_ack.group_name, missing);
    END IF;
    UPDATE wval.deliveries SET done_at = clock_timestamp(), outcome = 'acked', leased = false
    WHERE group_name = wval_ack.group_name AND event_id = ANY (wval_ack.event_ids) AND outcome IS NULL;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
COMMENT ON FUNCTION public.wval_ack(text, bigint[]) IS 'acknowledges several handed-out events at once; returns how many were not finished before';

CREATE FUNCTION public.wval_nack(group_name text, event_id bigint, error text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
#variable_conflict use_column
DECLARE
    g wval.consumer_groups := wval._group(wval_nack.group_name);
    d wval.deliveries;
    t timestamptz := clock_timestamp();
    entry jsonb;
BEGIN
    PERFORM wval._require_text('error', wval_nack.error, '22023', 'Say why the event could not be processed; it is kept with the dead letter.');
    SELECT * INTO d FROM wval.deliveries
    WHERE group_name = g.group_name AND event_id = wval_nack.event_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM wval._delivery_missing(g.group_name, wval_nack.event_id);
    END IF;
    IF d.done_at IS NOT NULL THEN
        RETURN 'ignored';	-- finished already (acked by a redelivery, expired, dead)
    END IF;
    IF d.attempts = 0 THEN
        RAISE EXCEPTION 'event % has not been handed out to consumer group "%"', d.event_id, d.group_name
            USING ERRCODE = '22023',
                  DETAIL = format('event_id is %s, attempts is 0.', d.event_id),
                  HINT = 'Nack only events that wval_consume() returned.';
    END IF;
    entry := jsonb_build_object('attempt', d.attempts, 'at', t, 'error', left(wval_nack.error, 2000));
    IF d.attempts >= g.max_attempts THEN
        UPDATE wval.deliveries SET done_at = t, outcome = 'dead', leased = false,
               dead_count = dead_count + 1, errors = errors || jsonb_build_array(entry)
        WHERE group_name = g.group_name AND event_id = d.event_id;
        PERFORM wval._dead_lettered(g.group_name, d.event_id);
        RETURN 'dead_lettered';
    END IF;
    UPDATE wval.deliveries SET visible_at = t + g.backoff * d.attempts, leased = false,
           errors = errors || jsonb_build_array(entry)
    WHERE group_name = g.group_name AND event_id = d.event_id;
    RETURN 'retry';
END
$$;
COMMENT ON FUNCTION public.wval_nack(text, bigint, text) IS 'reports a failed event: retried after backoff x attempt (returns retry), or dead-lettered after max_attempts (returns dead_lettered, emits event_dead_lettered); ignored when the group already finished it';

CREATE VIEW wval.dead_letters AS
SELECT d.group_name, d.event_id, d.attempts, d.errors, d.done_at AS dead_at,
       d.type, nullif(d.world_key, '') AS world_id, d.errors -> -1 ->> 'error' AS last_error, d.dead_count
FROM wval.deliveries d
WHERE d.outcome = 'dead';
COMMENT ON VIEW wval.dead_letters IS 'events a group gave up on after max_attempts; wval_redrive(group_name, event_id) hands them out again';
COMMENT ON COLUMN wval.dead_letters.errors IS 'every failed attempt: {attempt, at, error}';
COMMENT ON COLUMN wval.dead_letters.dead_count IS 'how often this event died in this group (more than 1 after a redrive)';

CREATE FUNCTION public.wval_redrive(group_name text, event_id bigint DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
#variable_conflict use_column
DECLARE
    g wval.consumer_groups := wval._group(wval_redrive.group_name);
    d wval.deliveries;
    t timestamptz := clock_timestamp();
    ids bigint[];
BEGIN
    IF wval_redrive.event_id IS NOT NULL THEN
        SELECT * INTO d FROM wval.deliveries
        WHERE group_name = g.group_name AND event_id = wval_redrive.event_id FOR UPDATE;
        IF NOT FOUND THEN
            PERFORM wval._delivery_missing(g.group_name, wval_redrive.event_id);
        END IF;
        IF d.outcome IS DISTINCT FROM 'dead' THEN
            RAISE EXCEPTION 'event % is not a dead letter of consumer group "%"', d.event_id, g.group_name
                USING ERRCODE = '22023',
                      DETAIL = format('event_id is %s, state is %s.', d.event_id, coalesce(d.outcome, 'outstanding')),
                      HINT = 'Redrive events listed in wval.dead_letters.';
        END IF;
    END IF;
    WITH r AS (
        UPDATE wval.deliveries SET done_at = NULL, outcome = NULL, attempts = 0, leased = false, visible_at = t,
               errors = errors || jsonb_build_array(jsonb_build_object('redriven_at', t, 'by', session_user))
        WHERE group_name = g.group_name AND outcome = 'dead'
          AND (wval_redrive.event_id IS NULL OR event_id = wval_redrive.event_id)
        RETURNING event_id)
    SELECT coalesce(array_agg(r.event_id ORDER BY r.event_id), '{}') INTO ids FROM r;
    IF cardinality(ids) > 0 THEN
        PERFORM wval._audit(NULL, 'bus_redriven', session_user,
                            jsonb_build_object('group_name', g.group_name, 'event_ids', to_jsonb(ids)));
    END IF;
    RETURN cardinality(ids);
END
$$;
COMMENT ON FUNCTION public.wval_redrive(text, bigint) IS 'puts a dead-lettered event (or, with event_id null, all of the group''s dead letters) back into the group''s queue with fresh attempts; audited; returns how many';

------------------------------------------------------------------------------
-- Internal consumers (wval_work) and the pg_cron job
------------------------------------------------------------------------------

-- wval._register_handler(group, type, handler): lets a later part of wval
-- consume its own events: creates (or extends) the internal group and maps
-- the type to a function taking one wval.events.  Called by install scripts.
CREATE FUNCTION wval._register_handler(p_group text, p_type text, p_handler regprocedure,
                                       p_max_attempts integer DEFAULT 3, p_backoff interval DEFAULT '5 seconds',
                                       p_visibility interval DEFAULT '5 minutes')
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
BEGIN
    PERFORM wval._ident('group_name', p_group);
    PERFORM wval._require_text('type', p_type);
    IF (SELECT p.pronargs <> 1 OR p.proargtypes[0] <> 'wval.events'::regtype FROM pg_proc p WHERE p.oid = p_handler) THEN
        RAISE EXCEPTION 'invalid value for "handler"' USING ERRCODE = '22023',
            DETAIL = format('handler is %s.', p_handler),
            HINT = 'A handler takes exactly one argument of type wval.events.';
    END IF;
    IF EXISTS (SELECT 1 FROM wval.consumer_groups g WHERE g.group_name = p_group AND NOT g.internal) THEN
        RAISE EXCEPTION 'consumer group "%" is not internal', p_group USING ERRCODE = '22023',
            DETAIL = format('group_name is %L.', p_group),
            HINT = 'Register internal handlers under a group name no client uses.';
    END IF;
    PERFORM pg_advisory_xact_lock(2004312428, 0);
    INSERT INTO wval.consumer_groups AS g (group_name, types, max_attempts, backoff, visibility, internal)
    VALUES (p_group, ARRAY[p_type], p_max_attempts, p_backoff, p_visibility, true)
    ON CONFLICT (group_name) DO UPDATE
        SET types = ARRAY(SELECT DISTINCT u FROM unnest(g.types || excluded.types) u ORDER BY u),
            updated_at = now();
    INSERT INTO wval.internal_handlers AS h (group_name, type, handler)
    VALUES (p_group, p_type, p_handler::text)
    ON CONFLICT (group_name, type) DO UPDATE SET handler = excluded.handler, registered_at = now();
END
$$;
COMMENT ON FUNCTION wval._register_handler(text, text, regprocedure, integer, interval, interval) IS 'registers an internal consumer: wval_work() calls handler(event) for events of this type in this internal group';

-- wval._work(max_events, max_ms): the body of wval_work, returning what it did.
CREATE FUNCTION wval._work(p_max_events integer, p_max_ms integer) RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    deadline timestamptz;
    left_events integer := p_max_events;
    grp text;
    e wval.events;
    h text;
    got integer;
    ok integer := 0;
    failed integer := 0;
BEGIN
    IF p_max_events IS NULL OR p_max_events < 1 THEN
        RAISE EXCEPTION 'invalid value for "max_events"' USING ERRCODE = '22023',
            DETAIL = format('max_events is %s.', coalesce(p_max_events::text, 'null')),
            HINT = 'Pass a positive number of events.';
    END IF;
    IF p_max_ms IS NULL OR p_max_ms < 1 THEN
        RAISE EXCEPTION 'invalid value for "max_ms"' USING ERRCODE = '22023',
            DETAIL = format('max_ms is %s.', coalesce(p_max_ms::text, 'null')),
            HINT = 'Pass a positive number of milliseconds.';
    END IF;
    deadline := clock_timestamp() + p_max_ms * interval '1 millisecond';
    <<groups>>
    FOR grp IN SELECT g.group_name FROM wval.consumer_groups g WHERE g.internal ORDER BY g.group_name LOOP
        LOOP
            EXIT groups WHEN left_events <= 0 OR clock_timestamp() >= deadline;
            got := 0;
            FOR e IN SELECT * FROM public.wval_consume(grp, least(left_events, 20)) LOOP
                got := got + 1;
                left_events := left_events - 1;
                SELECT ih.handler INTO h FROM wval.internal_handlers ih
                WHERE ih.group_name = grp AND ih.type = e.type;
                BEGIN
                    IF h IS NULL THEN
                        RAISE EXCEPTION 'no internal handler for event type "%" in group "%"', e.type, grp
                            USING ERRCODE = 'WV010';
                    END IF;
                    EXECUTE format('SELECT %s($1)', h::regprocedure::oid::regproc) USING e;
                    PERFORM public.wval_ack(grp, e.event_id);
                    ok := ok + 1;
                EXCEPTION WHEN OTHERS THEN
                    PERFORM public.wval_nack(grp, e.event_id, SQLSTATE || ': ' || SQLERRM);
                    failed := failed + 1;
                END;
            END LOOP;
            EXIT WHEN got = 0;
        END LOOP;
    END LOOP;
    RETURN jsonb_build_object('processed', ok, 'failed', failed);
END
$$;
COMMENT ON FUNCTION wval._work(integer, integer) IS 'drains wval''s internal consumer groups through their handlers (at most max_events events, stops starting batches after max_ms); returns {processed, failed}';

CREATE PROCEDURE public.wval_work(max_events integer DEFAULT 1000, max_ms integer DEFAULT 10000)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    report jsonb := wval._work(max_events, max_ms);
BEGIN
    RAISE DEBUG 'wval_work: %', report;
END
$$;
COMMENT ON PROCEDURE public.wval_work(integer, integer) IS 'drains wval''s internal consumer groups (hub re-checks, policy-change re-checks) in the caller''s transaction: at most max_events events, no new batch after max_ms; run every minute by the pg_cron job wval:bus-worker';

CREATE FUNCTION public.wval_schedule_bus_worker(schedule text DEFAULT '* * * * *', max_events integer DEFAULT 1000,
                                                max_ms integer DEFAULT 10000)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    job bigint;
BEGIN
    PERFORM wval._require_text('schedule', schedule);
    IF max_events IS NULL OR max_events < 1 OR max_ms IS NULL OR max_ms < 1 THEN
        RAISE EXCEPTION 'invalid value for "%"', CASE WHEN max_events IS NULL OR max_events < 1 THEN 'max_events' ELSE 'max_ms' END
            USING ERRCODE = '22023',
                  DETAIL = format('max_events is %s, max_ms is %s.', coalesce(max_events::text, 'null'), coalesce(max_ms::text, 'null')),
                  HINT = 'Pass positive numbers.';
    END IF;
    RETURN wval._cron_schedule('bus-worker', schedule, format('CALL public.wval_work(%s, %s)', max_events, max_ms));
END
$$;
COMMENT ON FUNCTION public.wval_schedule_bus_worker(text, integer, integer) IS 'schedules (or reschedules) the pg_cron job wval:bus-worker that runs CALL wval_work(max_events, max_ms); WV010 with set-up instructions when pg_cron is missing';

CREATE FUNCTION public.wval_unschedule_bus_worker() RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
    SELECT public.wval_unschedule('wval:bus-worker');
$$;
COMMENT ON FUNCTION public.wval_unschedule_bus_worker() IS 'removes the pg_cron job wval:bus-worker; false when it was not scheduled';

------------------------------------------------------------------------------
-- Health
------------------------------------------------------------------------------

CREATE VIEW wval.bus_health AS
WITH d AS (
    SELECT x.group_name, x.type,
           count(*) FILTER (WHERE x.done_at IS NULL) AS backlog,
           count(*) FILTER (WHERE x.done_at IS NULL AND x.leased AND x.visible_at > now()) AS in_flight,
           min(x.enqueued_at) FILTER (WHERE x.done_at IS NULL) AS oldest_unacked,
           count(*) FILTER (WHERE x.outcome = 'acked') AS processed,
           sum(greatest(x.handouts - 1, 0)) AS retried,
           sum(x.dead_count) AS dead_lettered,
           count(*) FILTER (WHERE x.outcome = 'dead') AS dead_letters,
           count(*) FILTER (WHERE x.outcome = 'expired') AS expired,
           avg(extract(epoch FROM x.done_at - x.enqueued_at) * 1000)
               FILTER (WHERE x.outcome = 'acked' AND x.done_at > now() - interval '1 hour') AS latency_avg_ms,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM x.done_at - x.enqueued_at) * 1000)
               FILTER (WHERE x.outcome = 'acked' AND x.done_at > now() - interval '1 hour') AS latency_p95_ms,
           max(x.done_at) FILTER (WHERE x.outcome = 'acked') AS last_ack_at
    FROM wval.deliveries x
    GROUP BY x.group_name, x.type),
keys AS (
    SELECT g.group_name, t.type FROM wval.consumer_groups g, unnest(g.types) t(type)
    UNION SELECT d.group_name, d.type FROM d
    UNION SELECT c.group_name, c.type FROM wval.bus_counters c),
dedupe AS (
    SELECT h.type, sum(h.hits) AS hits FROM wval.event_dedupe_hits h GROUP BY h.type)
SELECT k.group_name, k.type,
       coalesce(d.backlog, 0) AS backlog,
       coalesce(d.in_flight, 0) AS in_flight,
       now() - d.oldest_unacked AS oldest_unacked_age,
       (coalesce(d.processed, 0) + coalesce(c.processed, 0))::bigint AS processed,
       (coalesce(d.retried, 0) + coalesce(c.retried, 0))::bigint AS retried,
       (coalesce(d.dead_lettered, 0) + coalesce(c.dead_lettered, 0))::bigint AS dead_lettered,
       coalesce(d.dead_letters, 0) AS dead_letters,
       coalesce(dd.hits, 0)::bigint AS dedupe_hits,
       (coalesce(d.expired, 0) + coalesce(c.expired, 0))::bigint AS expired,
       round(d.latency_avg_ms::numeric, 3) AS latency_avg_ms,
       round(d.latency_p95_ms::numeric, 3) AS latency_p95_ms,
       d.last_ack_at
FROM keys k
LEFT JOIN d ON d.group_name = k.group_name AND d.type = k.type
LEFT JOIN wval.bus_counters c ON c.group_name = k.group_name AND c.type = k.type
LEFT JOIN dedupe dd ON dd.type = k.type;
COMMENT ON VIEW wval.bus_health IS 'per consumer group and event type: backlog, in flight, age of the oldest unacked event, processed, retried, dead-lettered, open dead letters, dedupe hits, expired, processing latency (enqueue -> ack) over the last hour';
COMMENT ON COLUMN wval.bus_health.backlog IS 'events the group has not finished (waiting, in flight or in backoff)';
COMMENT ON COLUMN wval.bus_health.in_flight IS 'events handed out whose visibility timeout has not passed';
COMMENT ON COLUMN wval.bus_health.oldest_unacked_age IS 'now() minus the enqueue time of the oldest unfinished event; null when the backlog is empty';
COMMENT ON COLUMN wval.bus_health.processed IS 'events acknowledged (counter)';
COMMENT ON COLUMN wval.bus_health.retried IS 'hand-outs beyond the first (after a nack or a visibility timeout) (counter)';
COMMENT ON COLUMN wval.bus_health.dead_lettered IS 'times an event was dead-lettered (counter)';
COMMENT ON COLUMN wval.bus_health.dead_letters IS 'dead letters currently waiting for an operator (wval.dead_letters)';
COMMENT ON COLUMN wval.bus_health.dedupe_hits IS 'publishes of this type that were no-ops because the idempotency key existed (per type, all groups) (counter)';
COMMENT ON COLUMN wval.bus_health.expired IS 'events not handed out because their TTL had passed (counter)';
COMMENT ON COLUMN wval.bus_health.latency_avg_ms IS 'average enqueue -> ack time of the events acknowledged in the last hour, in milliseconds';
COMMENT ON COLUMN wval.bus_health.latency_p95_ms IS '95th percentile of enqueue -> ack time over the last hour, in milliseconds';

------------------------------------------------------------------------------
-- Pruning
------------------------------------------------------------------------------

CREATE FUNCTION public.wval_bus_prune(older_than interval DEFAULT '7 days', include_dead_letters boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    cutoff timestamptz;
    cand bigint[];
    n_deliveries bigint;
    n_events bigint;
    report jsonb;
BEGIN
    IF older_than IS NULL OR older_than < interval '0' THEN
        RAISE EXCEPTION 'invalid value for "older_than"' USING ERRCODE = '22023',
            DETAIL = format('older_than is %s.', coalesce(older_than::text, 'null')),
            HINT = 'Pass a period of zero or more, e.g. ''7 days''.';
    END IF;
    cutoff := now() - older_than;
    -- events old enough whose every delivery is finished (dead letters only
    -- when asked): never an event some group still owes
    SELECT coalesce(array_agg(e.event_id), '{}') INTO cand
    FROM wval.events e
    WHERE e.created_at < cutoff
      AND NOT EXISTS (SELECT 1 FROM wval.deliveries d
                      WHERE d.event_id = e.event_id
                        AND (d.done_at IS NULL OR d.done_at >= cutoff
                             OR (d.outcome = 'dead' AND NOT coalesce(include_dead_letters, false))));
    -- fold the counters first; DELETE re-checks each row it locks, so a
    -- delivery redriven meanwhile stays (and so does its event, below)
    WITH gone AS (
        DELETE FROM wval.deliveries d
        WHERE d.event_id = ANY (cand) AND d.done_at IS NOT NULL AND d.done_at < cutoff
          AND (d.outcome <> 'dead' OR coalesce(include_dead_letters, false))
        RETURNING d.*),
    folded AS (
        INSERT INTO wval.bus_counters AS c (group_name, type, processed, retried, dead_lettered, expired)
        SELECT g.group_name, g.type, count(*) FILTER (WHERE g.outcome = 'acked'),
               sum(greatest(g.handouts - 1, 0)), sum(g.dead_count), count(*) FILTER (WHERE g.outcome = 'expired')
        FROM gone g GROUP BY g.group_name, g.type
        ON CONFLICT (group_name, type) DO UPDATE
            SET processed = c.processed + excluded.processed, retried = c.retried + excluded.retried,
                dead_lettered = c.dead_lettered + excluded.dead_lettered, expired = c.expired + excluded.expired
        RETURNING 1)
    SELECT count(*) INTO n_deliveries FROM gone;

    PERFORM wval._purge_guard(true);
    DELETE FROM wval.events e
    WHERE e.event_id = ANY (cand)
      AND NOT EXISTS (SELECT 1 FROM wval.deliveries d WHERE d.event_id = e.event_id);
    GET DIAGNOSTICS n_events = ROW_COUNT;
    PERFORM wval._purge_guard(false);

    report := jsonb_build_object('older_than', older_than::text, 'cutoff', cutoff,
                                 'events_deleted', n_events, 'deliveries_deleted', n_deliveries,
                                 'include_dead_letters', coalesce(include_dead_letters, false),
                                 'oldest_kept', (SELECT min(e.created_at) FROM wval.events e));
    PERFORM wval._audit(NULL, 'bus_pruned', current_user, report);
    RETURN report;
END
$$;
COMMENT ON FUNCTION public.wval_bus_prune(interval, boolean) IS 'removes events older than older_than that every subscribed group has finished (acked or expired; dead letters only with include_dead_letters), with their deliveries; folds their counts into wval.bus_counters; audited; returns a report';

------------------------------------------------------------------------------
-- pg_dump, privileges
------------------------------------------------------------------------------

SELECT pg_catalog.pg_extension_config_dump('wval.events', '');
SELECT pg_catalog.pg_extension_config_dump('wval.events_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('wval.event_dedupe_hits', '');
SELECT pg_catalog.pg_extension_config_dump('wval.consumer_groups', 'WHERE NOT internal');
SELECT pg_catalog.pg_extension_config_dump('wval.deliveries', '');
SELECT pg_catalog.pg_extension_config_dump('wval.bus_counters', '');

GRANT SELECT ON wval.events, wval.event_dedupe_hits, wval.consumer_groups, wval.deliveries,
      wval.bus_counters, wval.internal_handlers, wval.dead_letters, wval.bus_health
   TO wval_analyst;
GRANT EXECUTE ON FUNCTION public.wval_subscribe(text, text[], integer, text, text),
      public.wval_subscribe(text, text[], integer, interval, interval),
      public.wval_consume(text, integer),
      public.wval_ack(text, bigint), public.wval_ack(text, bigint[]),
      public.wval_nack(text, bigint, text)
   TO wval_producer;
GRANT EXECUTE ON FUNCTION public.wval_unsubscribe(text), public.wval_redrive(text, bigint),
      public.wval_bus_prune(interval, boolean),
      public.wval_schedule_bus_worker(text, integer, integer), public.wval_unschedule_bus_worker()
   TO wval_admin;
GRANT EXECUTE ON PROCEDURE public.wval_work(integer, integer) TO wval_admin;

-- source: src/metrics.sql
-- metrics.sql: the metrics engine (metrics.c, metrics_agg.c): wval_metrics,
-- the analyst aggregates and the PSR / DSR / normal-distribution helpers.
-- Everything here is pure: IMMUTABLE PARALLEL SAFE.  Definitions and null
-- rules: docs/metrics.md.  Bad input raises WV001.

-- ---------------------------------------------------------------------
-- The pack
-- ---------------------------------------------------------------------

CREATE FUNCTION public.wval_metrics(
    returns float8[],
    periods_per_year integer DEFAULT 252,
    risk_free float8 DEFAULT 0,
    search_intensity integer DEFAULT 1,
    benchmark float8[] DEFAULT NULL,
    trials_sharpe_variance float8 DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'wval_metrics_sql'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION public.wval_metrics(float8[], integer, float8, integer, float8[], float8) IS
'metric pack of a return series (oldest first): blocks returns, sample, robustness, diagnostics, and benchmark when a benchmark series is given; null when returns or a scalar option is null';

-- ---------------------------------------------------------------------
-- Scalar helpers
-- ---------------------------------------------------------------------

CREATE FUNCTION public.wval_psr(
    sharpe_annual float8,
    n_obs integer,
    skew float8,
    kurtosis float8,
    benchmark_sharpe_annual float8 DEFAULT 0,
    periods_per_year integer DEFAULT 252)
RETURNS float8
AS 'MODULE_PATHNAME', 'wval_psr_sql'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION public.wval_psr(float8, integer, float8, float8, float8, integer) IS
'probabilistic Sharpe ratio PSR(SR*) from an annualised Sharpe, the number of periods, skewness and (raw) kurtosis; null when n_obs < 3 or the variance term is not positive';

CREATE FUNCTION public.wval_dsr(
    sharpe_annual float8,
    n_obs integer,
    skew float8,
    kurtosis float8,
    n_trials integer,
    trials_sharpe_variance_annual float8 DEFAULT NULL,
    periods_per_year integer DEFAULT 252)
RETURNS float8
AS 'MODULE_PATHNAME', 'wval_dsr_sql'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION public.wval_dsr(float8, integer, float8, float8, integer, float8, integer) IS
'deflated Sharpe ratio (Bailey & Lopez de Prado): PSR against the expected maximum Sharpe of n_trials trials; a null trials variance uses the estimator variance; falls as n_trials grows';

CREATE FUNCTION public.wval_norm_cdf(z float8)
RETURNS float8
AS 'MODULE_PATHNAME', 'wval_norm_cdf_sql'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION public.wval_norm_cdf(float8) IS
'standard normal cumulative distribution function';

CREATE FUNCTION public.wval_norm_ppf(p float8)
RETURNS float8
AS 'MODULE_PATHNAME', 'wval_norm_ppf_sql'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION public.wval_norm_ppf(float8) IS
'inverse standard normal CDF (Wichura AS 241, accurate in both tails); -Infinity at 0, Infinity at 1';

CREATE FUNCTION public.wval_strategy_complexity(search_intensity integer, extra_metrics jsonb DEFAULT NULL)
RETURNS float8
AS 'MODULE_PATHNAME', 'wval_strategy_complexity_sql'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION public.wval_strategy_complexity(integer, jsonb) IS
'diagnostics.strategy_complexity: 1 + ln(1 + search_intensity) plus weighted ln(1 + v) of n_features, feature_dim, n_parameters, code_cc and nodes in extra_metrics';

-- ---------------------------------------------------------------------
-- Aggregates (support functions in schema wval; see metrics_agg.c)
-- ---------------------------------------------------------------------

CREATE FUNCTION wval._moments_step(internal, float8) RETURNS internal
    AS 'MODULE_PATHNAME', 'wval_moments_transfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._moments_step(internal, float8) IS 'transition of wval_sharpe / wval_sortino: running mean, squared deviations and downside';
CREATE FUNCTION wval._moments_step(internal, float8, integer) RETURNS internal
    AS 'MODULE_PATHNAME', 'wval_moments_transfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._moments_step(internal, float8, integer) IS 'transition of wval_sharpe / wval_sortino with periods_per_year';
CREATE FUNCTION wval._moments_combine(internal, internal) RETURNS internal
    AS 'MODULE_PATHNAME', 'wval_moments_combinefn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._moments_combine(internal, internal) IS 'combines two partial wval_sharpe / wval_sortino states';
CREATE FUNCTION wval._moments_serialize(internal) RETURNS bytea
    AS 'MODULE_PATHNAME', 'wval_moments_serialize' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION wval._moments_serialize(internal) IS 'serializes a wval_sharpe / wval_sortino state for parallel aggregation';
CREATE FUNCTION wval._moments_deserialize(bytea, internal) RETURNS internal
    AS 'MODULE_PATHNAME', 'wval_moments_deserialize' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION wval._moments_deserialize(bytea, internal) IS 'deserializes a wval_sharpe / wval_sortino state';
CREATE FUNCTION wval._sharpe_final(internal) RETURNS float8
    AS 'MODULE_PATHNAME', 'wval_sharpe_finalfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._sharpe_final(internal) IS 'final of wval_sharpe';
CREATE FUNCTION wval._sortino_final(internal) RETURNS float8
    AS 'MODULE_PATHNAME', 'wval_sortino_finalfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._sortino_final(internal) IS 'final of wval_sortino';
CREATE FUNCTION wval._drawdown_step(internal, float8) RETURNS internal
    AS 'MODULE_PATHNAME', 'wval_drawdown_transfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._drawdown_step(internal, float8) IS 'transition of wval_max_drawdown: advances the wealth path';
CREATE FUNCTION wval._drawdown_final(internal) RETURNS float8
    AS 'MODULE_PATHNAME', 'wval_drawdown_finalfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._drawdown_final(internal) IS 'final of wval_max_drawdown';
CREATE FUNCTION wval._series_step(internal, float8) RETURNS internal
    AS 'MODULE_PATHNAME', 'wval_series_transfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._series_step(internal, float8) IS 'transition of wval_metrics_agg: buffers the returns in call order';
CREATE FUNCTION wval._series_step(internal, float8, integer) RETURNS internal
    AS 'MODULE_PATHNAME', 'wval_series_transfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._series_step(internal, float8, integer) IS 'transition of wval_metrics_agg with periods_per_year';
CREATE FUNCTION wval._metrics_final(internal) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'wval_metrics_finalfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._metrics_final(internal) IS 'final of wval_metrics_agg: the metric pack of the buffered series';
CREATE FUNCTION wval._tail_step(internal, float8, float8) RETURNS internal
    AS 'MODULE_PATHNAME', 'wval_tail_transfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._tail_step(internal, float8, float8) IS 'transition of wval_var / wval_es: buffers the returns';
CREATE FUNCTION wval._var_final(internal) RETURNS float8
    AS 'MODULE_PATHNAME', 'wval_var_finalfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._var_final(internal) IS 'final of wval_var';
CREATE FUNCTION wval._es_final(internal) RETURNS float8
    AS 'MODULE_PATHNAME', 'wval_es_finalfn' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._es_final(internal) IS 'final of wval_es';

CREATE AGGREGATE public.wval_sharpe(r float8) (
    SFUNC = wval._moments_step, STYPE = internal, SSPACE = 40,
    FINALFUNC = wval._sharpe_final, FINALFUNC_MODIFY = READ_ONLY,
    COMBINEFUNC = wval._moments_combine,
    SERIALFUNC = wval._moments_serialize, DESERIALFUNC = wval._moments_deserialize,
    PARALLEL = SAFE);
COMMENT ON AGGREGATE public.wval_sharpe(float8) IS
'annualised Sharpe ratio (252 periods a year) of the returns of a group; null with fewer than 2 rows or zero deviation';

CREATE AGGREGATE public.wval_sharpe(r float8, periods_per_year integer) (
    SFUNC = wval._moments_step, STYPE = internal, SSPACE = 40,
    FINALFUNC = wval._sharpe_final, FINALFUNC_MODIFY = READ_ONLY,
    COMBINEFUNC = wval._moments_combine,
    SERIALFUNC = wval._moments_serialize, DESERIALFUNC = wval._moments_deserialize,
    PARALLEL = SAFE);
COMMENT ON AGGREGATE public.wval_sharpe(float8, integer) IS
'annualised Sharpe ratio of the returns of a group; periods_per_year must be the same in every row';

CREATE AGGREGATE public.wval_sortino(r float8) (
    SFUNC = wval._moments_step, STYPE = internal, SSPACE = 40,
    FINALFUNC = wval._sortino_final, FINALFUNC_MODIFY = READ_ONLY,
    COMBINEFUNC = wval._moments_combine,
    SERIALFUNC = wval._moments_serialize, DESERIALFUNC = wval._moments_deserialize,
    PARALLEL = SAFE);
COMMENT ON AGGREGATE public.wval_sortino(float8) IS
'annualised Sortino ratio (252 periods a year) of the returns of a group; Infinity without losses and a positive mean';

CREATE AGGREGATE public.wval_sortino(r float8, periods_per_year integer) (
    SFUNC = wval._moments_step, STYPE = internal, SSPACE = 40,
    FINALFUNC = wval._sortino_final, FINALFUNC_MODIFY = READ_ONLY,
    COMBINEFUNC = wval._moments_combine,
    SERIALFUNC = wval._moments_serialize, DESERIALFUNC = wval._moments_deserialize,
    PARALLEL = SAFE);
COMMENT ON AGGREGATE public.wval_sortino(float8, integer) IS
'annualised Sortino ratio of the returns of a group; periods_per_year must be the same in every row';

CREATE AGGREGATE public.wval_max_drawdown(r float8) (
    SFUNC = wval._drawdown_step, STYPE = internal, SSPACE = 56,
    FINALFUNC = wval._drawdown_final, FINALFUNC_MODIFY = READ_ONLY,
    PARALLEL = SAFE);
COMMENT ON AGGREGATE public.wval_max_drawdown(float8) IS
'maximum drawdown of the wealth path of the returns in call order (use ORDER BY inside the call), a fraction in [0, 1)';

CREATE AGGREGATE public.wval_var(r float8, p float8) (
    SFUNC = wval._tail_step, STYPE = internal,
    FINALFUNC = wval._var_final, FINALFUNC_MODIFY = READ_ONLY,
    PARALLEL = SAFE);
COMMENT ON AGGREGATE public.wval_var(float8, float8) IS
'historical value at risk max(0, -Q(p)) of the returns of a group (type-7 quantile, p = tail probability, e.g. 0.01)';

CREATE AGGREGATE public.wval_es(r float8, p float8) (
    SFUNC = wval._tail_step, STYPE = internal,
    FINALFUNC = wval._es_final, FINALFUNC_MODIFY = READ_ONLY,
    PARALLEL = SAFE);
COMMENT ON AGGREGATE public.wval_es(float8, float8) IS
'historical expected shortfall max(0, -mean{r <= Q(p)}) of the returns of a group (p = tail probability, e.g. 0.01)';

CREATE AGGREGATE public.wval_metrics_agg(r float8) (
    SFUNC = wval._series_step, STYPE = internal,
    FINALFUNC = wval._metrics_final, FINALFUNC_MODIFY = READ_ONLY,
    PARALLEL = SAFE);
COMMENT ON AGGREGATE public.wval_metrics_agg(float8) IS
'metric pack of the returns in call order (use ORDER BY inside the call): wval_metrics(array_agg(r ORDER BY t))';

CREATE AGGREGATE public.wval_metrics_agg(r float8, periods_per_year integer) (
    SFUNC = wval._series_step, STYPE = internal,
    FINALFUNC = wval._metrics_final, FINALFUNC_MODIFY = READ_ONLY,
    PARALLEL = SAFE);
COMMENT ON AGGREGATE public.wval_metrics_agg(float8, integer) IS
'metric pack of the returns in call order with periods_per_year (the same in every row)';

-- Every role may compute metrics (all four wval roles inherit wval_analyst).
GRANT EXECUTE ON FUNCTION
    public.wval_metrics(float8[], integer, float8, integer, float8[], float8),
    public.wval_psr(float8, integer, float8, float8, float8, integer),
    public.wval_dsr(float8, integer, float8, float8, integer, float8, integer),
    public.wval_norm_cdf(float8),
    public.wval_norm_ppf(float8),
    public.wval_strategy_complexity(integer, jsonb),
    public.wval_sharpe(float8),
    public.wval_sharpe(float8, integer),
    public.wval_sortino(float8),
    public.wval_sortino(float8, integer),
    public.wval_max_drawdown(float8),
    public.wval_var(float8, float8),
    public.wval_es(float8, float8),
    public.wval_metrics_agg(float8),
    public.wval_metrics_agg(float8, integer)
TO wval_analyst;

-- source: src/hub.sql
-- hub.sql: the risk hub (spec hub.md), next to hub.c.
--
-- Producers are registered per world (wval.producers, append-only and
-- hash-chained: the latest row per world and actor is in force).  A
-- snapshot is checked in C (wval_snapshot_publish), stored in its canonical
-- form (wval.risk_snapshots.payload, hash recheckable in SQL), with large
-- parts moved to wval.blobs, and announced with risk_snapshot_updated.
-- Reads and the portfolio baseline follow.  docs/risk-hub.md is the guide.

------------------------------------------------------------------------------
-- Producers
------------------------------------------------------------------------------

CREATE SEQUENCE wval.producers_id_seq;
CREATE TABLE wval.producers (
    registration_id bigint NOT NULL DEFAULT nextval('wval.producers_id_seq'),
    world_id        text NOT NULL,
    actor           text NOT NULL,
    status          text NOT NULL CHECK (status IN ('active', 'revoked')),
    hmac_key        bytea CHECK (hmac_key IS NULL OR (status = 'active' AND length(hmac_key) >= 16)),
    reason          text,
    registered_by   text NOT NULL,
    registered_at   timestamptz NOT NULL DEFAULT now(),
    chain_seq       bigint NOT NULL,
    prev_hash       text NOT NULL,
    row_hash        text NOT NULL,
    PRIMARY KEY (world_id, registration_id)
);
ALTER SEQUENCE wval.producers_id_seq OWNED BY wval.producers.registration_id;
CREATE INDEX ON wval.producers (world_id, actor, registration_id DESC);
COMMENT ON TABLE wval.producers IS 'who may publish risk snapshots to a world: one row per registration or revocation; the latest row per (world_id, actor) is in force';
COMMENT ON COLUMN wval.producers.status IS 'active (may publish) | revoked';
COMMENT ON COLUMN wval.producers.hmac_key IS 'secret of the producer (>= 16 bytes); when set, every snapshot must carry signature = hex HMAC-SHA256 of its canonical text. Not readable by wval_analyst';
COMMENT ON COLUMN wval.producers.reason IS 'why the registration was revoked';
COMMENT ON COLUMN wval.producers.registered_by IS 'the database user who registered or revoked';
SELECT wval._protect('wval.producers', 'producers');

CREATE VIEW wval.current_producers AS
SELECT DISTINCT ON (p.world_id, p.actor)
       p.world_id, p.actor, p.status, p.hmac_key IS NOT NULL AS has_key, p.reason,
       p.registration_id, p.registered_by, p.registered_at
FROM wval.producers p
WHERE (SELECT wval._visible_worlds()) IS NULL OR p.world_id = ANY ((SELECT wval._visible_worlds())::text[])
ORDER BY p.world_id, p.actor, p.registration_id DESC;
COMMENT ON VIEW wval.current_producers IS 'the registration in force for each (world, actor) of the worlds the caller may see: status and whether signatures are required (never the key)';

------------------------------------------------------------------------------
-- Blobs and snapshots
------------------------------------------------------------------------------

CREATE TABLE wval.blobs (
    world_id   text NOT NULL,
    blob_hash  text NOT NULL CHECK (blob_hash ~ '^sha256:[0-9a-f]{64}$'),
    kind       text NOT NULL CHECK (kind IN ('covariance', 'realized_returns', 'stress')),
    content    jsonb NOT NULL,
    size_bytes integer NOT NULL,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (world_id, blob_hash)
);
COMMENT ON TABLE wval.blobs IS 'large snapshot parts, content-addressed per world: blob_hash = ''sha256:'' || hex(sha256(content::text)); identical parts are stored once';
COMMENT ON COLUMN wval.blobs.blob_hash IS 'sha256:<hex> of the UTF-8 jsonb text of content; a snapshot refers to it as wval-blob:sha256:<hex>';
COMMENT ON COLUMN wval.blobs.kind IS 'covariance | realized_returns | stress';
COMMENT ON COLUMN wval.blobs.size_bytes IS 'length of the jsonb text of content';
COMMENT ON COLUMN wval.blobs.created_by IS 'actor of the snapshot that stored the blob first';
SELECT wval._protect('wval.blobs');

CREATE SEQUENCE wval.risk_snapshots_id_seq;
CREATE TABLE wval.risk_snapshots (
    snapshot_id bigint NOT NULL DEFAULT nextval('wval.risk_snapshots_id_seq'),
    world_id    text NOT NULL,
    version     text NOT NULL,
    hash        text NOT NULL,
    payload     jsonb NOT NULL,
    actor       text NOT NULL,
    stage       text NOT NULL CHECK (stage IN ('backtest', 'paper', 'shadow', 'live')),
    as_of       timestamptz NOT NULL,
    ttl_sec     integer NOT NULL CHECK (ttl_sec BETWEEN 1 AND 86400),
    received_at timestamptz NOT NULL,
    signed      boolean NOT NULL DEFAULT false,
    blob_refs   text[] NOT NULL DEFAULT '{}',
    chain_seq   bigint NOT NULL,
    prev_hash   text NOT NULL,
    row_hash    text NOT NULL,
    PRIMARY KEY (world_id, snapshot_id),
    UNIQUE (world_id, version)
);
ALTER SEQUENCE wval.risk_snapshots_id_seq OWNED BY wval.risk_snapshots.snapshot_id;
CREATE INDEX ON wval.risk_snapshots (world_id, as_of DESC);
CREATE INDEX ON wval.risk_snapshots (world_id, stage, as_of DESC);
COMMENT ON TABLE wval.risk_snapshots IS 'every accepted risk snapshot in its canonical form; append-only, hash-chained; (world_id, version) is its identity';
COMMENT ON COLUMN wval.risk_snapshots.hash IS '''sha256:'' || encode(sha256(convert_to(payload::text, ''UTF8'')), ''hex'')';
COMMENT ON COLUMN wval.risk_snapshots.payload IS 'the contract fields as published, without hash, large parts replaced by *_ref blob references (the canonical form)';
COMMENT ON COLUMN wval.risk_snapshots.actor IS 'the registered producer that published it';
COMMENT ON COLUMN wval.risk_snapshots.stage IS 'backtest | paper | shadow | live: the portfolio the snapshot describes';
COMMENT ON COLUMN wval.risk_snapshots.as_of IS 'the time the snapshot describes (payload.as_of)';
COMMENT ON COLUMN wval.risk_snapshots.ttl_sec IS 'seconds after as_of within which the snapshot had to arrive (payload.ttl_sec, default 10)';
COMMENT ON COLUMN wval.risk_snapshots.received_at IS 'when the hub accepted it (clock time at the start of the publish call)';
COMMENT ON COLUMN wval.risk_snapshots.signed IS 'true when an HMAC signature was verified against the producer''s key';
COMMENT ON COLUMN wval.risk_snapshots.blob_refs IS 'the wval-blob references of the payload (offloaded or referenced parts)';
SELECT wval._protect('wval.risk_snapshots', 'risk_snapshots');

------------------------------------------------------------------------------
-- Counters (see hub.c for why rejections are counted with sequences)
------------------------------------------------------------------------------

CREATE TABLE wval.snapshot_counters (
    world_id   text NOT NULL,
    stage      text NOT NULL,
    shard      smallint NOT NULL,
    processed  bigint NOT NULL DEFAULT 0,
    dedupe     bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (world_id, stage, shard)
);
COMMENT ON TABLE wval.snapshot_counters IS 'accepted publishes and dedupe hits per world and stage, spread over 16 rows (shard = backend id % 16) so that concurrent publishers do not queue on one row; sum over shard, or read wval.snapshot_stats';
COMMENT ON COLUMN wval.snapshot_counters.processed IS 'snapshots accepted and stored';
COMMENT ON COLUMN wval.snapshot_counters.dedupe IS 'identical retries answered with the stored snapshot';

CREATE SEQUENCE wval.snapshot_rejects_unattributed;
COMMENT ON SEQUENCE wval.snapshot_rejects_unattributed IS 'rejected publishes that name no existing world (nextval survives the rollback of the rejected call)';

------------------------------------------------------------------------------
-- C entry points (hub.c)
------------------------------------------------------------------------------

CREATE FUNCTION wval._snapshot_counter_name(world_id text, stage text, outcome text) RETURNS text
    AS 'MODULE_PATHNAME', 'wval_snapshot_counter_name' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION wval._snapshot_counter_name(text, text, text) IS 'name of the sequence in schema wval that counts rejected publishes (outcome expired | failed) of a world and stage';

CREATE FUNCTION wval._snapshot_max_age() RETURNS interval
    AS 'MODULE_PATHNAME', 'wval_snapshot_max_age' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._snapshot_max_age() IS 'the setting wval.snapshot_max_age as an interval';

CREATE FUNCTION public.wval_snapshot_publish(world_id text, snapshot jsonb, actor text, stage text,
                                             signature text DEFAULT NULL)
RETURNS wval.risk_snapshots
    AS 'MODULE_PATHNAME', 'wval_snapshot_publish'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp;
COMMENT ON FUNCTION public.wval_snapshot_publish(text, jsonb, text, text, text) IS 'checks a risk snapshot against the contract (WV004-WV007, WV009, WV010), stores it in canonical form and emits risk_snapshot_updated; an identical retry returns the stored row';

CREATE FUNCTION public.wval_snapshot_canonical(world_id text, snapshot jsonb) RETURNS text
    AS 'MODULE_PATHNAME', 'wval_snapshot_canonical'
    LANGUAGE C STABLE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp;
COMMENT ON FUNCTION public.wval_snapshot_canonical(text, jsonb) IS 'the canonical text of a snapshot (what its hash covers and its HMAC signs), after offloading; checks the contract fields but stores nothing';

CREATE FUNCTION public.wval_portfolio_risk(world_id text, stage text DEFAULT NULL) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'wval_portfolio_risk'
    LANGUAGE C STABLE SET search_path = pg_catalog, wval, pg_temp;
COMMENT ON FUNCTION public.wval_portfolio_risk(text, text) IS 'baseline of the latest fresh snapshot: normalised weights, sigma, var_99 = z*sigma, es_99 = sigma*phi(z)/0.01, missing covariance pairs filled with wval.missing_correlation (listed in filled_pairs)';

------------------------------------------------------------------------------
-- Per-world rejection counters: created with the world
------------------------------------------------------------------------------

-- wval._snapshot_counters_create(world_id): the world's sequences that count
-- rejected publishes per stage (expired, failed; an invalid stage argument
-- counts as failed under stage 'invalid').  Owned by a column of
-- wval.snapshot_counters, so DROP EXTENSION removes them.  Runs again for
-- every world restored by pg_restore (the trigger below fires on its COPY).
CREATE FUNCTION wval._snapshot_counters_create(p_world_id text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    st text;
    outcome text;
    seq text;
BEGIN
    FOREACH st IN ARRAY ARRAY['backtest', 'paper', 'shadow', 'live', 'invalid'] LOOP
        FOREACH outcome IN ARRAY ARRAY['expired', 'failed'] LOOP
            CONTINUE WHEN st = 'invalid' AND outcome = 'expired';
            seq := wval._snapshot_counter_name(p_world_id, st, outcome);
            IF to_regclass('wval.' || quote_ident(seq)) IS NULL THEN
                EXECUTE format('CREATE SEQUENCE wval.%I', seq);
                EXECUTE format('COMMENT ON SEQUENCE wval.%I IS %L', seq,
                               format('risk snapshots of world %s, stage %s, rejected as %s', p_world_id, st, outcome));
            END IF;
            -- also after a restore: pg_dump recreates the sequence (with its
            -- value) but not its link to the extension's table
            EXECUTE format('ALTER SEQUENCE wval.%I OWNED BY wval.snapshot_counters.world_id', seq);
        END LOOP;
    END LOOP;
END
$$;
COMMENT ON FUNCTION wval._snapshot_counters_create(text) IS 'creates the sequences that count rejected snapshot publishes of a world';

CREATE FUNCTION wval._world_snapshot_counters() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
BEGIN
    PERFORM wval._snapshot_counters_create(NEW.world_id);
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION wval._world_snapshot_counters() IS 'trigger: gives every new world its snapshot rejection counters';

CREATE TRIGGER wval_snapshot_counters AFTER INSERT ON wval.worlds
    FOR EACH ROW EXECUTE FUNCTION wval._world_snapshot_counters();

SELECT wval._snapshot_counters_create(w.world_id) FROM wval.worlds w;

------------------------------------------------------------------------------
-- Producer registration
------------------------------------------------------------------------------

CREATE FUNCTION public.wval_producer_register(world_id text, actor text, hmac_key bytea DEFAULT NULL)
RETURNS wval.producers
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    p_world text := wval._ident('world_id', world_id);
    p_actor text := wval._ident('actor', actor);
    r wval.producers;
BEGIN
    PERFORM wval._world(p_world);
    IF hmac_key IS NOT NULL AND length(hmac_key) < 16 THEN
        RAISE EXCEPTION 'invalid value for "hmac_key"' USING ERRCODE = '22023',
            DETAIL = format('hmac_key has %s bytes.', length(hmac_key)),
            HINT = 'Use a random key of at least 16 bytes (32 recommended), e.g. gen_random_bytes(32); or null for unsigned snapshots.';
    END IF;
    INSERT INTO wval.producers (world_id, actor, status, hmac_key, registered_by)
    VALUES (p_world, p_actor, 'active', hmac_key, session_user)
    RETURNING * INTO r;
    PERFORM wval._audit(p_world, 'producer_registered', session_user::text,
                        jsonb_build_object('actor', p_actor, 'registration_id', r.registration_id,
                                           'has_key', hmac_key IS NOT NULL));
    RETURN r;
END
$$;
COMMENT ON FUNCTION public.wval_producer_register(text, text, bytea) IS 'allows actor to publish risk snapshots to a world; with hmac_key, its snapshots must be signed. Registering again replaces the key (rotation); audited';

CREATE FUNCTION public.wval_producer_revoke(world_id text, actor text, reason text DEFAULT NULL)
RETURNS wval.producers
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    p_world text := wval._ident('world_id', world_id);
    p_actor text := wval._ident('actor', actor);
    cur text;
    r wval.producers;
BEGIN
    PERFORM wval._world(p_world);
    SELECT p.status INTO cur FROM wval.producers p
    WHERE p.world_id = p_world AND p.actor = p_actor
    ORDER BY p.registration_id DESC LIMIT 1;
    IF cur IS DISTINCT FROM 'active' THEN
        RAISE EXCEPTION 'actor "%" is not an active producer of world "%"', p_actor, p_world
            USING ERRCODE = 'WV010',
                  DETAIL = format('Its current registration is %s.', coalesce(cur, 'missing')),
                  HINT = 'See wval.current_producers.';
    END IF;
    INSERT INTO wval.producers (world_id, actor, status, reason, registered_by)
    VALUES (p_world, p_actor, 'revoked', reason, session_user)
    RETURNING * INTO r;
    PERFORM wval._audit(p_world, 'producer_revoked', session_user::text,
                        jsonb_build_object('actor', p_actor, 'registration_id', r.registration_id,
                                           'reason', reason));
    RETURN r;
END
$$;
COMMENT ON FUNCTION public.wval_producer_revoke(text, text, text) IS 'stops actor from publishing risk snapshots to a world (WV009 from then on); audited';

------------------------------------------------------------------------------
-- Reads
------------------------------------------------------------------------------

-- wval._snapshot_expand(world_id, payload): the payload with every
-- wval-blob reference replaced by the blob's content under the part's own
-- field name (covariance_ref -> covariance ...); the blob's hash is
-- verified (WV006).  External references (s3://, file://) stay as they are.
CREATE FUNCTION wval._snapshot_expand(p_world_id text, p_payload jsonb) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    part text;
    ref text;
    b wval.blobs;
    result jsonb := p_payload;
BEGIN
    FOREACH part IN ARRAY ARRAY['covariance', 'realized_returns', 'stress'] LOOP
        ref := p_payload ->> (part || '_ref');
        CONTINUE WHEN ref IS NULL OR ref NOT LIKE 'wval-blob:sha256:%';
        SELECT * INTO b FROM wval.blobs x WHERE x.world_id = p_world_id AND x.blob_hash = substr(ref, 11);
        IF NOT FOUND THEN
            RAISE EXCEPTION 'blob % of world "%" does not exist', ref, p_world_id
                USING ERRCODE = 'WV010',
                      DETAIL = format('%s_ref is %s.', part, ref),
                      HINT = 'Blobs are never removed while a snapshot refers to them; check wval.blobs.';
        END IF;
        IF 'sha256:' || encode(sha256(convert_to(b.content::text, 'UTF8')), 'hex') <> b.blob_hash THEN
            RAISE EXCEPTION 'blob % of world "%" does not match its hash', ref, p_world_id
                USING ERRCODE = 'WV006',
                      DETAIL = format('The content hashes to sha256:%s.',
                                      encode(sha256(convert_to(b.content::text, 'UTF8')), 'hex')),
                      HINT = 'The stored blob was altered; restore it from a backup.';
        END IF;
        result := (result - (part || '_ref')) || jsonb_build_object(part, b.content);
    END LOOP;
    RETURN result;
END
$$;
COMMENT ON FUNCTION wval._snapshot_expand(text, jsonb) IS 'resolves the wval-blob references of a snapshot payload inline, verifying each blob''s hash';

-- wval._snapshot_doc(row, expand, at): the document the read functions
-- return; stale and age_sec are relative to "at".
CREATE FUNCTION wval._snapshot_doc(s wval.risk_snapshots, p_expand boolean, p_at timestamptz) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
    SELECT jsonb_build_object(
        'world_id', s.world_id, 'version', s.version, 'hash', s.hash,
        'actor', s.actor, 'stage', s.stage, 'as_of', s.as_of, 'received_at', s.received_at,
        'ttl_sec', s.ttl_sec, 'signed', s.signed,
        'age_sec', round(extract(epoch FROM p_at - s.as_of), 3),
        'stale', (p_at - s.as_of) > wval._snapshot_max_age(),
        'expanded', coalesce(p_expand, false),
        'snapshot', CASE WHEN p_expand THEN wval._snapshot_expand(s.world_id, s.payload) ELSE s.payload END);
$$;
COMMENT ON FUNCTION wval._snapshot_doc(wval.risk_snapshots, boolean, timestamptz) IS 'the jsonb document of a stored snapshot returned by the wval_snapshot* reads';

CREATE FUNCTION public.wval_snapshot_latest(world_id text, stage text DEFAULT NULL, actor text DEFAULT NULL,
                                            expand boolean DEFAULT false, include_stale boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    s wval.risk_snapshots;
BEGIN
    PERFORM wval._world(world_id);
    SELECT * INTO s FROM wval.risk_snapshots r
    WHERE r.world_id = wval_snapshot_latest.world_id
      AND (wval_snapshot_latest.stage IS NULL OR r.stage = wval_snapshot_latest.stage)
      AND (wval_snapshot_latest.actor IS NULL OR r.actor = wval_snapshot_latest.actor)
    ORDER BY r.as_of DESC, r.snapshot_id DESC
    LIMIT 1;
    IF NOT FOUND OR (NOT coalesce(include_stale, false) AND now() - s.as_of > wval._snapshot_max_age()) THEN
        RETURN NULL;
    END IF;
    RETURN wval._snapshot_doc(s, expand, now());
END
$$;
COMMENT ON FUNCTION public.wval_snapshot_latest(text, text, text, boolean, boolean) IS 'the latest snapshot (by as_of) of a world, optionally of one stage / actor; null when it is older than wval.snapshot_max_age unless include_stale, in which case the document says "stale": true';

CREATE FUNCTION public.wval_snapshot_as_of(world_id text, ts timestamptz, stage text DEFAULT NULL,
                                           expand boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    s wval.risk_snapshots;
BEGIN
    PERFORM wval._world(world_id);
    SELECT * INTO s FROM wval.risk_snapshots r
    WHERE r.world_id = wval_snapshot_as_of.world_id
      AND (wval_snapshot_as_of.stage IS NULL OR r.stage = wval_snapshot_as_of.stage)
      AND r.as_of <= ts AND r.received_at <= ts
    ORDER BY r.as_of DESC, r.snapshot_id DESC
    LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN wval._snapshot_doc(s, expand, ts);
END
$$;
COMMENT ON FUNCTION public.wval_snapshot_as_of(text, timestamptz, text, boolean) IS 'the snapshot the hub held at ts: the latest with as_of <= ts that had arrived by ts; "stale" and age_sec relative to ts; null when none';

CREATE FUNCTION public.wval_snapshot(world_id text, version text, expand boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    s wval.risk_snapshots;
BEGIN
    PERFORM wval._world(world_id);
    SELECT * INTO s FROM wval.risk_snapshots r
    WHERE r.world_id = wval_snapshot.world_id AND r.version = wval_snapshot.version;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'risk snapshot "%" of world "%" does not exist', version, world_id
            USING ERRCODE = 'WV010',
                  DETAIL = format('version is %L.', version),
                  HINT = 'See wval.risk_snapshots for the versions of the world.';
    END IF;
    RETURN wval._snapshot_doc(s, expand, now());
END
$$;
COMMENT ON FUNCTION public.wval_snapshot(text, text, boolean) IS 'one stored snapshot by (world_id, version), optionally with blob references expanded; WV010 when it does not exist';

------------------------------------------------------------------------------
-- Observability
------------------------------------------------------------------------------

CREATE FUNCTION public.wval_snapshot_stats(world_id text DEFAULT NULL)
RETURNS TABLE (world_id text, stage text, processed bigint, dedupe bigint, expired bigint, failed bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
    WITH stages(stage) AS (VALUES ('backtest'), ('paper'), ('shadow'), ('live'), ('invalid')),
    ws AS (
        SELECT w.world_id, st.stage FROM wval.worlds w CROSS JOIN stages st
        WHERE $1 IS NULL OR w.world_id = $1
    ),
    c AS (
        SELECT c.world_id, c.stage, sum(c.processed)::bigint AS processed, sum(c.dedupe)::bigint AS dedupe
        FROM wval.snapshot_counters c GROUP BY c.world_id, c.stage
    ),
    r AS (
        SELECT ws.world_id, ws.stage, coalesce(c.processed, 0) AS processed, coalesce(c.dedupe, 0) AS dedupe,
               coalesce(pg_sequence_last_value(to_regclass(
                   'wval.' || wval._snapshot_counter_name(ws.world_id, ws.stage, 'expired'))), 0) AS expired,
               coalesce(pg_sequence_last_value(to_regclass(
                   'wval.' || wval._snapshot_counter_name(ws.world_id, ws.stage, 'failed'))), 0) AS failed
        FROM ws LEFT JOIN c ON c.world_id = ws.world_id AND c.stage = ws.stage
    )
    SELECT r.world_id, r.stage, r.processed, r.dedupe, r.expired, r.failed FROM r
    WHERE r.stage <> 'invalid' OR r.failed > 0
    UNION ALL
    SELECT NULL, NULL, 0, 0, 0, coalesce(pg_sequence_last_value('wval.snapshot_rejects_unattributed'), 0)
    WHERE $1 IS NULL
    ORDER BY 1, 2;
$$;
COMMENT ON FUNCTION public.wval_snapshot_stats(text) IS 'risk-snapshot publishes per world and stage: processed (stored), dedupe (identical retries), expired (WV005) and failed (every other rejection; stage ''invalid'' when the stage argument was); the row with null world counts rejections naming no existing world';

CREATE VIEW wval.snapshot_stats AS SELECT * FROM public.wval_snapshot_stats();
COMMENT ON VIEW wval.snapshot_stats IS 'wval_snapshot_stats() for every world';

CREATE VIEW wval.snapshot_freshness AS
SELECT DISTINCT ON (s.world_id, s.stage)
       s.world_id, s.stage, s.version, s.actor, s.as_of,
       now() - s.as_of AS lag,
       now() - s.as_of <= wval._snapshot_max_age() AS fresh
FROM wval.risk_snapshots s
ORDER BY s.world_id, s.stage, s.as_of DESC, s.snapshot_id DESC;
COMMENT ON VIEW wval.snapshot_freshness IS 'latest snapshot per world and stage with its lag (now - as_of) and whether it is fresh (lag <= wval.snapshot_max_age)';

------------------------------------------------------------------------------
-- pg_dump
------------------------------------------------------------------------------

SELECT pg_catalog.pg_extension_config_dump('wval.producers', '');
SELECT pg_catalog.pg_extension_config_dump('wval.producers_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('wval.blobs', '');
SELECT pg_catalog.pg_extension_config_dump('wval.risk_snapshots', '');
SELECT pg_catalog.pg_extension_config_dump('wval.risk_snapshots_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('wval.snapshot_counters', '');
SELECT pg_catalog.pg_extension_config_dump('wval.snapshot_rejects_unattributed', '');

------------------------------------------------------------------------------
-- Privileges
------------------------------------------------------------------------------

GRANT SELECT ON wval.risk_snapshots, wval.blobs, wval.snapshot_counters, wval.current_producers,
      wval.snapshot_stats, wval.snapshot_freshness
   TO wval_analyst;
GRANT SELECT (registration_id, world_id, actor, status, reason, registered_by, registered_at,
              chain_seq, prev_hash, row_hash)
   ON wval.producers TO wval_analyst;
GRANT SELECT ON SEQUENCE wval.snapshot_rejects_unattributed TO wval_analyst;

GRANT EXECUTE ON FUNCTION public.wval_snapshot_latest(text, text, text, boolean, boolean),
      public.wval_snapshot_as_of(text, timestamptz, text, boolean),
      public.wval_snapshot(text, text, boolean),
      public.wval_portfolio_risk(text, text),
      public.wval_snapshot_stats(text),
      wval._snapshot_expand(text, jsonb),
      wval._snapshot_doc(wval.risk_snapshots, boolean, timestamptz),
      wval._snapshot_max_age(),
      wval._world(text, boolean),
      wval._snapshot_counter_name(text, text, text)
   TO wval_analyst;
GRANT EXECUTE ON FUNCTION public.wval_snapshot_publish(text, jsonb, text, text, text),
      public.wval_snapshot_canonical(text, jsonb)
   TO wval_producer;
GRANT EXECUTE ON FUNCTION public.wval_producer_register(text, text, bytea),
      public.wval_producer_revoke(text, text, text)
   TO wval_admin;

-- source: src/policy.sql
-- policy.sql: the policy DSL (spec policy.md), next to policy.c and rules.c.

CREATE FUNCTION wval._policy_validate(policy jsonb, fail_closed boolean DEFAULT false) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'wval_policy_validate' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._policy_validate(jsonb, boolean) IS 'validates a policy document (WV002) and returns {profile: ruleset_hash}';

CREATE FUNCTION wval._policy_ruleset(policy jsonb, stage text, fail_closed boolean) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'wval_policy_ruleset' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION wval._policy_ruleset(jsonb, text, boolean) IS 'the materialised ruleset of the profile applied at a stage, with its ruleset_hash';

CREATE FUNCTION wval._reason_codes() RETURNS TABLE (code text, layer text, meaning text)
    AS 'MODULE_PATHNAME', 'wval_reason_codes' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._reason_codes() IS 'every reason code a RuleResult can carry (from the check catalogue)';

CREATE VIEW wval.reason_codes AS SELECT * FROM wval._reason_codes();
COMMENT ON VIEW wval.reason_codes IS 'stable reason codes of RuleResults: code, layer (* = any), meaning';

-- wval._fail_closed(world): high-tier, client-critical worlds are always fail-closed.
CREATE FUNCTION wval._fail_closed(w wval.worlds) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$ SELECT w.risk_tier = 'high' AND w.client_critical $$;
COMMENT ON FUNCTION wval._fail_closed(wval.worlds) IS 'true for worlds whose validation is forced fail-closed (risk tier high and client critical)';

CREATE FUNCTION public.wval_ruleset(world_id text, stage text DEFAULT 'backtest', version integer DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    w wval.worlds := wval._world(world_id);
    v integer := coalesce(version, public.wval_active_policy_version(world_id));
    doc jsonb;
BEGIN
    PERFORM wval._one_of('stage', stage, ARRAY['backtest', 'paper', 'shadow', 'live']);
    IF v IS NULL THEN
        RAISE EXCEPTION 'world "%" has no active policy version', world_id
            USING ERRCODE = 'WV010',
                  HINT = 'Pass a version, or activate one with wval_policy_activate().';
    END IF;
    SELECT pv.policy INTO doc FROM wval.policy_versions pv
    WHERE pv.world_id = wval_ruleset.world_id AND pv.version = v;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'policy version % of world "%" does not exist', v, world_id
            USING ERRCODE = 'WV010', HINT = 'See wval.policy_versions for the published versions.';
    END IF;
    RETURN wval._policy_ruleset(doc, stage, wval._fail_closed(w));
END
$$;
COMMENT ON FUNCTION public.wval_ruleset(text, text, integer) IS 'the materialised ruleset (checks with metric, operator, threshold, severity, owner, mode; on_error, on_missing_metric, profile) applied at a stage, and its ruleset_hash';

GRANT SELECT ON wval.reason_codes TO wval_analyst;
GRANT EXECUTE ON FUNCTION wval._reason_codes() TO wval_analyst;
GRANT EXECUTE ON FUNCTION public.wval_ruleset(text, text, integer) TO wval_analyst;

CREATE FUNCTION wval._policy_settings(policy jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_object(
        'windows_days', coalesce(policy #> '{live_monitoring,windows_days}', '[30, 60, 90]'),
        'demote_after', coalesce(policy #> '{live_monitoring,demote_after}', '2'))
$$;
COMMENT ON FUNCTION wval._policy_settings(jsonb) IS 'settings of a (validated) policy that are not checks: live_monitoring.windows_days (default [30, 60, 90]) and demote_after (default 2)';

-- source: src/evaluate.sql
-- evaluate.sql: the evaluation entry points (spec policy.md), next to evaluate.c.

CREATE FUNCTION public.wval_check(policy jsonb, metrics jsonb, stage text DEFAULT 'backtest',
                                  context jsonb DEFAULT '{}')
RETURNS jsonb
    AS 'MODULE_PATHNAME', 'wval_check' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION public.wval_check(jsonb, jsonb, text, jsonb) IS 'evaluates metrics against a policy document like wval_evaluate, without storing anything: {status, recommended_stage, ruleset_hash, profile, results, recommendation, validation_health}. context may carry data_as_of and baseline_metrics';

GRANT EXECUTE ON FUNCTION public.wval_check(jsonb, jsonb, text, jsonb) TO wval_analyst;

CREATE FUNCTION public.wval_evaluate(world_id text, strategy_id text, stage text DEFAULT 'backtest',
                                     returns float8[] DEFAULT NULL, metrics jsonb DEFAULT '{}',
                                     context jsonb DEFAULT '{}')
RETURNS wval.evaluation_runs
    AS 'MODULE_PATHNAME', 'wval_evaluate'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp;
COMMENT ON FUNCTION public.wval_evaluate(text, text, text, float8[], jsonb, jsonb) IS 'computes metrics from returns (computed values win over supplied ones), applies the world''s active policy version, stores the run with its provenance, rule results and evaluation_run_created event in one transaction, and returns it; context.run_id makes the call idempotent';

-- wval_record_run: the documented emergency bypass (admin only): records
-- metrics without validation, status unvalidated, visible in every report.
CREATE FUNCTION public.wval_record_run(world_id text, strategy_id text, stage text, metrics jsonb,
                                       actor text, reason text, context jsonb DEFAULT '{}')
RETURNS wval.evaluation_runs
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    p_world text := wval._ident('world_id', world_id);
    p_strategy text := wval._ident('strategy_id', strategy_id);
    p_actor text := wval._ident('actor', actor);
    w wval.worlds := wval._world(p_world);
    r wval.evaluation_runs;
BEGIN
    PERFORM wval._one_of('stage', stage, ARRAY['backtest', 'paper', 'shadow', 'live']);
    PERFORM wval._require_text('reason', reason, '22023', 'Say why the validation is bypassed.');
    IF metrics IS NULL OR jsonb_typeof(metrics) <> 'object' THEN
        RAISE EXCEPTION '"metrics" must be a JSON object' USING ERRCODE = 'WV001',
            HINT = 'Pass metric blocks such as {"returns": {...}}.';
    END IF;
    INSERT INTO wval.evaluation_runs (world_id, strategy_id, stage, kind, risk_tier, model_card_version, code_hash,
                                      data_snapshot, context, metrics, status, results, created_by)
    VALUES (p_world, p_strategy, stage, 'single', w.risk_tier, context->>'model_card_version', context->>'code_hash',
            context->'data_snapshot', coalesce(context, '{}') || jsonb_build_object('bypass_reason', reason),
            metrics, 'unvalidated', '{}', p_actor)
    RETURNING * INTO r;
    PERFORM wval._audit(p_world, 'validation_bypassed', p_actor,
                        jsonb_build_object('run_id', r.run_id, 'strategy_id', p_strategy, 'stage', stage, 'reason', reason));
    PERFORM wval._emit('evaluation_run_created', p_world, p_strategy,
                       format('evaluation_run_created:%s:%s:%s', p_world, p_strategy, r.run_id),
                       jsonb_build_object('world_id', p_world, 'strategy_id', p_strategy, 'run_id', r.run_id,
                                          'stage', stage, 'kind', 'single', 'status', 'unvalidated',
                                          'recommended_stage', NULL, 'policy_version', NULL));
    RETURN r;
END
$$;
COMMENT ON FUNCTION public.wval_record_run(text, text, text, jsonb, text, text, jsonb) IS 'emergency bypass (admin only): records a run without validation (status unvalidated), audited';

-- wval._fmt(x): a metric value for humans
CREATE FUNCTION wval._fmt(v jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN v IS NULL OR jsonb_typeof(v) = 'null' THEN 'n/a'
                WHEN jsonb_typeof(v) = 'number' THEN
                    CASE WHEN abs(v::text::float8) >= 1e6 OR (abs(v::text::float8) < 1e-4 AND v::text::float8 <> 0)
                         THEN btrim(to_char(v::text::float8, '9.999EEEE'))
                         ELSE rtrim(rtrim(round(v::text::numeric, 4)::text, '0'), '.') END
                WHEN jsonb_typeof(v) = 'string' THEN v #>> '{}'
                ELSE v::text END
$$;
COMMENT ON FUNCTION wval._fmt(jsonb) IS 'formats a metric value for reports';

-- wval._threshold(details): "op threshold" for humans
CREATE FUNCTION wval._threshold(d jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN d->>'op' = 'between' THEN 'in [' || wval._fmt(d->'threshold'->0) || ', ' || wval._fmt(d->'threshold'->1) || ']'
                WHEN d ? 'op' THEN (d->>'op') || ' ' || wval._fmt(d->'threshold') || coalesce(' ' || (d->>'unit'), '')
                ELSE '' END
$$;
COMMENT ON FUNCTION wval._threshold(jsonb) IS 'formats the operator and threshold of a RuleResult';

CREATE FUNCTION public.wval_run_explain(run_id uuid) RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    r wval.evaluation_runs := wval._run(run_id);
    o wval.overrides;
    lines text[] := '{}';
    rec record;
    st jsonb;
BEGIN
    lines := lines || format('run %s: world %s, strategy %s, stage %s, kind %s', r.run_id, r.world_id, r.strategy_id, r.stage, r.kind);
    lines := lines || format('evaluated %s by %s under policy version %s, profile %s, ruleset %s',
                             to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS"Z"'), r.created_by,
                             coalesce(r.policy_version::text, 'none'), coalesce(r.profile, 'none'), coalesce(r.ruleset_hash, 'none'));
    IF r.status = 'unvalidated' THEN
        lines := lines || format('status UNVALIDATED: recorded through the emergency bypass (%s); no check ran',
                                 coalesce(r.context->>'bypass_reason', 'no reason'));
    ELSE
        lines := lines || format('status %s, recommended stage %s', upper(r.status), r.recommended_stage);
    END IF;
    lines := lines || ''::text || 'checks (failures first):'::text;
    FOR rec IN
        SELECT e.key, e.value AS v FROM jsonb_each(r.results) e
        ORDER BY CASE e.value->>'status' WHEN 'fail' THEN 0 WHEN 'warn' THEN 1 ELSE 2 END, e.key
    LOOP
        lines := lines || format('  %-4s %-38s %-8s %-5s value %s, threshold %s (%s)',
                                 rec.v->>'status', rec.key, rec.v->>'severity', rec.v->>'owner',
                                 wval._fmt(rec.v->'details'->'value'), nullif(wval._threshold(rec.v->'details'), ''),
                                 rec.v->>'reason_code');
        IF rec.v->>'status' <> 'pass' OR rec.v->>'reason_code' <> 'ok' THEN
            lines := lines || ('       ' || (rec.v->>'reason'));
        END IF;
    END LOOP;
    IF r.recommendation IS NOT NULL THEN
        lines := lines || ''::text || 'recommended stage:'::text;
        FOR st IN SELECT * FROM jsonb_array_elements(r.recommendation->'stages') LOOP
            lines := lines || format('  %-24s %s', st->>'stage',
                CASE WHEN st->>'profile' IS NULL THEN st->>'note'
                     WHEN (st->>'cleared')::boolean THEN format('profile %s cleared (%s)', st->>'profile', st->>'status')
                     ELSE format('profile %s NOT cleared, stopped by %s', st->>'profile',
                                 (SELECT string_agg(x, ', ') FROM jsonb_array_elements_text(st->'stopped_by') x)) END);
        END LOOP;
        lines := lines || format('  -> %s%s', r.recommendation->>'recommended_stage',
                                 CASE WHEN r.recommendation->>'stopped_at' IS NOT NULL AND r.recommendation->>'stopped_at' <> r.recommendation->>'recommended_stage'
                                      THEN format(' (the climb stopped at %s)', r.recommendation->>'stopped_at') ELSE '' END);
    END IF;
    lines := lines || ''::text || 'metrics:'::text;
    FOR rec IN
        SELECT b.key AS block, m.key, m.value FROM jsonb_each(r.metrics) b, jsonb_each(CASE WHEN jsonb_typeof(b.value) = 'object' THEN b.value ELSE '{}' END) m
        WHERE jsonb_typeof(m.value) IN ('number', 'string', 'null')
        ORDER BY 1, 2
    LOOP
        lines := lines || format('  %s.%s = %s', rec.block, rec.key, wval._fmt(rec.value));
    END LOOP;
    SELECT * INTO o FROM wval.current_overrides co WHERE co.run_id = r.run_id;
    lines := lines || ''::text || CASE WHEN o.run_id IS NULL THEN 'override: none'
        ELSE format('override: %s by %s on %s (%s)%s', o.status, coalesce(o.actor, '?'),
                    to_char(o.recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), coalesce(o.reason, 'no reason'),
                    CASE WHEN o.status = 'approved' THEN format(', review due %s%s', to_char(o.review_due_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'),
                                                              CASE WHEN o.review_due_at < now() THEN ' (OVERDUE)' ELSE '' END) ELSE '' END) END;
    RETURN array_to_string(lines, E'\n');
END
$$;
COMMENT ON FUNCTION public.wval_run_explain(uuid) IS 'a human-readable account of one run: every check with value, threshold and outcome, why the recommended stage stopped where it did, metrics, override state';

GRANT EXECUTE ON FUNCTION public.wval_evaluate(text, text, text, float8[], jsonb, jsonb) TO wval_producer;
GRANT EXECUTE ON FUNCTION public.wval_record_run(text, text, text, jsonb, text, text, jsonb) TO wval_admin;
GRANT EXECUTE ON FUNCTION public.wval_run_explain(uuid) TO wval_analyst;

CREATE FUNCTION wval._apply_rules(policy jsonb, ruleset text, metrics jsonb, stage text DEFAULT 'backtest',
                                  fail_closed boolean DEFAULT false, layers text[] DEFAULT NULL,
                                  context jsonb DEFAULT '{}')
RETURNS jsonb
    AS 'MODULE_PATHNAME', 'wval_apply_rules' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._apply_rules(jsonb, text, jsonb, text, boolean, text[], jsonb) IS 'the check engine for other kinds of runs: applies the ruleset "live_monitoring", "cohort", a profile (null: the stage''s profile), optionally only some layers, to metrics; {status, cleared, profile, ruleset_hash, results, stopped_by, validation_error_count}';

------------------------------------------------------------------------------
-- Reads over outcomes (store.md, "Reads analysts expect")
------------------------------------------------------------------------------

CREATE FUNCTION wval.rule_failure_stats(since timestamptz DEFAULT now() - interval '30 days',
                                        until timestamptz DEFAULT now())
RETURNS TABLE (rule text, reason_code text, results bigint, failed bigint, warned bigint,
               missing bigint, errored bigint)
LANGUAGE sql STABLE AS $$
    SELECT rr.rule, rr.reason_code, count(*),
           count(*) FILTER (WHERE rr.status = 'fail'),
           count(*) FILTER (WHERE rr.status = 'warn'),
           count(*) FILTER (WHERE rr.reason_code IN ('missing_metric', 'missing_metric_ignored')),
           count(*) FILTER (WHERE rr.reason_code = 'rule_error')
    FROM wval.rule_results rr
    WHERE rr.created_at >= since AND rr.created_at < until AND rr.reason_code <> 'ok'
    GROUP BY rr.rule, rr.reason_code
    ORDER BY 4 DESC, 5 DESC, 1, 2;
$$;
COMMENT ON FUNCTION wval.rule_failure_stats(timestamptz, timestamptz) IS 'per rule and reason code (other than ok): how often it failed, warned, was missing, errored';

CREATE FUNCTION wval.validation_slo(since timestamptz DEFAULT now() - interval '30 days',
                                    until timestamptz DEFAULT now())
RETURNS TABLE (world_id text, stage text, runs bigint,
               coverage_p50 float8, coverage_p95 float8, coverage_p99 float8,
               rules_executed_p50 float8, rules_executed_p95 float8, rules_executed_p99 float8,
               missing_metric_run_ratio float8, rule_error_run_ratio float8,
               coverage_ok boolean, rules_ok boolean, missing_ok boolean, errors_ok boolean, slo_met boolean)
LANGUAGE sql STABLE AS $$
    WITH r AS (
        SELECT e.world_id, e.stage,
               (e.metrics #>> '{diagnostics,validation_health,metric_coverage_ratio}')::float8 AS coverage,
               (e.metrics #>> '{diagnostics,validation_health,rules_executed_ratio}')::float8 AS executed,
               EXISTS (SELECT 1 FROM jsonb_each(e.results) x WHERE x.value->>'reason_code' = 'missing_metric') AS any_missing,
               EXISTS (SELECT 1 FROM jsonb_each(e.results) x WHERE x.value->>'reason_code' = 'rule_error') AS any_error
        FROM wval.evaluation_runs e
        WHERE e.created_at >= since AND e.created_at < until AND e.status <> 'unvalidated'
    ), s AS (
        SELECT r.world_id, r.stage, count(*) AS runs,
               percentile_cont(0.50) WITHIN GROUP (ORDER BY coverage DESC) AS c50,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY coverage DESC) AS c95,
               percentile_cont(0.99) WITHIN GROUP (ORDER BY coverage DESC) AS c99,
               percentile_cont(0.50) WITHIN GROUP (ORDER BY executed DESC) AS e50,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY executed DESC) AS e95,
               percentile_cont(0.99) WITHIN GROUP (ORDER BY executed DESC) AS e99,
               avg(any_missing::int)::float8 AS missing, avg(any_error::int)::float8 AS errors
        FROM r GROUP BY r.world_id, r.stage
    )
    SELECT s.world_id, s.stage, s.runs, s.c50, s.c95, s.c99, s.e50, s.e95, s.e99, s.missing, s.errors,
           s.c95 >= 0.98, s.e95 >= 1.0, s.missing <= 0.01, s.errors <= 0.01,
           s.c95 >= 0.98 AND s.e95 >= 1.0 AND s.missing <= 0.01 AND s.errors <= 0.01
    FROM s ORDER BY s.world_id, s.stage;
$$;
COMMENT ON FUNCTION wval.validation_slo(timestamptz, timestamptz) IS 'per world and stage: runs, the metric coverage and rules-executed ratios reached by 50/95/99 % of runs, the share of runs with a missing metric or a rule error, and whether the gates hold (coverage p95 >= 0.98, rules p95 >= 1.0, missing <= 1 %, errors <= 1 %)';

CREATE FUNCTION wval.failure_rate(since timestamptz DEFAULT now() - interval '12 months',
                                  until timestamptz DEFAULT now())
RETURNS TABLE (month date, risk_tier text, strategies_passed_live bigint, strategies_failed_ex_post bigint,
               failure_rate float8)
LANGUAGE sql STABLE AS $$
    WITH passed AS (
        SELECT DISTINCT date_trunc('month', r.created_at)::date AS month, w.risk_tier, r.world_id, r.strategy_id
        FROM wval.evaluation_runs r JOIN wval.worlds w USING (world_id)
        WHERE r.created_at >= since AND r.created_at < until
          AND (r.stage = 'live' OR r.kind = 'live') AND r.status = 'pass'
    ), confirmed AS (
        SELECT DISTINCT c.world_id, c.strategy_id
        FROM wval.ex_post_cases c WHERE c.status = 'confirmed'
    )
    SELECT p.month, p.risk_tier, count(*),
           count(*) FILTER (WHERE c.strategy_id IS NOT NULL),
           (count(*) FILTER (WHERE c.strategy_id IS NOT NULL))::float8 / count(*)
    FROM passed p LEFT JOIN confirmed c USING (world_id, strategy_id)
    GROUP BY p.month, p.risk_tier ORDER BY p.month, p.risk_tier;
$$;
COMMENT ON FUNCTION wval.failure_rate(timestamptz, timestamptz) IS 'ex-post failure rate by month and risk tier: strategies with a confirmed ex-post case / strategies whose live run passed';

GRANT EXECUTE ON FUNCTION wval.rule_failure_stats(timestamptz, timestamptz), wval.validation_slo(timestamptz, timestamptz),
      wval.failure_rate(timestamptz, timestamptz) TO wval_analyst;

-- source: src/portfolio.sql
-- portfolio.sql: the extended layers of hub.md, next to portfolio.c.
--
-- Portfolio and stress: wval_evaluate_portfolio (C) evaluates a candidate
-- run against the world's latest fresh risk snapshot and stores a linked
-- run of kind 'portfolio' holding both layers.  The internal consumer
-- 'wval:hub' runs it for the world's deployed strategies after every
-- risk_snapshot_updated (CALL wval_work), or the publishing transaction
-- does when the world's settings say extended_validation = 'sync'.
-- Cohort: wval_evaluate_cohort evaluates a campaign's candidates and then
-- the cohort checks across them.  docs/risk-hub.md is the guide.

------------------------------------------------------------------------------
-- Portfolio and stress layers
------------------------------------------------------------------------------

CREATE FUNCTION public.wval_evaluate_portfolio(world_id text, run_id uuid, returns float8[] DEFAULT NULL,
                                               stress jsonb DEFAULT NULL, snapshot_stage text DEFAULT NULL)
RETURNS wval.evaluation_runs
    AS 'MODULE_PATHNAME', 'wval_evaluate_portfolio'
    LANGUAGE C VOLATILE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp;
COMMENT ON FUNCTION public.wval_evaluate_portfolio(text, uuid, float8[], jsonb, text) IS 'evaluates a candidate run against the latest fresh risk snapshot of its world (of snapshot_stage when given): incremental VaR/ES, Sharpe uplift and stress scenarios, checked with the portfolio and stress layers of the candidate''s profile; stores a run of kind portfolio linked to the candidate and emits evaluation_run_created and evaluation_run_updated (extended_validation). returns: the candidate''s periodic returns (else the snapshot''s realized_returns); stress: scenario results that replace the snapshot''s. Idempotent per candidate run, snapshot version, policy version and inputs';

------------------------------------------------------------------------------
-- The internal consumer and the synchronous setting
------------------------------------------------------------------------------

-- wval._deployed_candidates(world_id, payload): the runs the consumer
-- evaluates — per deployed strategy its latest single run (preferring its
-- deployed stage).  Deployed means wval.current_stage says paper or live;
-- in a world that has recorded no stage decision (or while that view does
-- not exist), the strategies weighted in the snapshot.
CREATE FUNCTION wval._deployed_candidates(p_world_id text, p_payload jsonb)
RETURNS TABLE (strategy_id text, deployed_stage text, run_id uuid)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    decided boolean := false;
BEGIN
    IF to_regclass('wval.current_stage') IS NOT NULL THEN
        EXECUTE 'SELECT EXISTS (SELECT 1 FROM wval.current_stage d WHERE d.world_id = $1)' INTO decided USING p_world_id;
    END IF;
    IF decided THEN
        RETURN QUERY EXECUTE $q$
            SELECT d.strategy_id::text, d.stage::text, lr.run_id
            FROM wval.current_stage d
            CROSS JOIN LATERAL (
                SELECT r.run_id FROM wval.evaluation_runs r
                WHERE r.world_id = d.world_id AND r.strategy_id = d.strategy_id AND r.kind = 'single'
                ORDER BY r.stage = d.stage DESC, r.created_at DESC, r.chain_seq DESC
                LIMIT 1) lr
            WHERE d.world_id = $1 AND d.stage IN ('paper', 'live')
            ORDER BY 1$q$
        USING p_world_id;
        RETURN;
    END IF;
    RETURN QUERY
    SELECT k.k, NULL::text, lr.run_id
    FROM jsonb_object_keys(p_payload -> 'weights') k(k)
    CROSS JOIN LATERAL (
        SELECT r.run_id FROM wval.evaluation_runs r
        WHERE r.world_id = p_world_id AND r.strategy_id = k.k AND r.kind = 'single'
        ORDER BY r.created_at DESC, r.chain_seq DESC
        LIMIT 1) lr
    ORDER BY 1;
END
$$;
COMMENT ON FUNCTION wval._deployed_candidates(text, jsonb) IS 'the latest single run of each deployed strategy of a world (wval.current_stage paper or live; in a world without stage decisions, the strategies weighted in the snapshot payload)';

-- wval._extended_validation(world_id, version, stage, sync): the portfolio
-- runs of the deployed strategies against snapshot (version, stage).  A
-- snapshot that is no longer the latest of its stage, or no longer fresh,
-- is skipped (the newer snapshot's event does the work).  In the
-- synchronous mode (called by wval_snapshot_publish) a candidate that fails
-- is reported as a WARNING and left to the bus consumer, so that a
-- snapshot is never rejected because of a candidate; the consumer raises
-- (the event is nacked and retried).  Returns the number of runs.
CREATE FUNCTION wval._extended_validation(p_world_id text, p_version text, p_stage text, p_sync boolean)
RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    s wval.risk_snapshots;
    c record;
    n integer := 0;
BEGIN
    SELECT * INTO s FROM wval.risk_snapshots r
    WHERE r.world_id = p_world_id AND r.stage = p_stage
    ORDER BY r.as_of DESC, r.snapshot_id DESC
    LIMIT 1;
    IF NOT FOUND OR s.version IS DISTINCT FROM p_version OR now() - s.as_of > wval._snapshot_max_age() THEN
        RETURN 0;
    END IF;
    IF NOT p_sync THEN
        SELECT count(*) INTO n
        FROM wval._deployed_candidates(p_world_id, s.payload) d,
             LATERAL public.wval_evaluate_portfolio(p_world_id, d.run_id, snapshot_stage => p_stage) r;
        RETURN n;
    END IF;
    FOR c IN SELECT * FROM wval._deployed_candidates(p_world_id, s.payload) LOOP
        BEGIN
            PERFORM public.wval_evaluate_portfolio(p_world_id, c.run_id, snapshot_stage => p_stage);
            n := n + 1;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'extended validation of run % (strategy "%") against snapshot "%" of world "%" failed: %',
                c.run_id, c.strategy_id, p_version, p_world_id, SQLERRM
                USING DETAIL = format('SQLSTATE %s; the bus consumer wval:hub retries it.', SQLSTATE);
        END;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION wval._extended_validation(text, text, text, boolean) IS 'runs wval_evaluate_portfolio for the deployed strategies of a world against snapshot (version, stage) unless a newer or no fresh snapshot of that stage exists; sync: failures become WARNINGs (the bus consumer retries them)';

-- wval._hub_extend(event): the handler of risk_snapshot_updated in the
-- internal group wval:hub.  It also runs for worlds in the synchronous
-- mode: what the publish already stored is returned by idempotency, what
-- failed there is done (or retried) here.
CREATE FUNCTION wval._hub_extend(e wval.events) RETURNS integer
LANGUAGE sql SET search_path = pg_catalog, wval, pg_temp AS $$
    SELECT wval._extended_validation(e.world_id, e.payload #>> '{data,version}', e.payload #>> '{data,stage}', false);
$$;
COMMENT ON FUNCTION wval._hub_extend(wval.events) IS 'internal consumer of risk_snapshot_updated (group wval:hub): portfolio runs for the world''s deployed strategies';

SELECT wval._register_handler('wval:hub', 'risk_snapshot_updated', 'wval._hub_extend(wval.events)');

------------------------------------------------------------------------------
-- Cohort (campaign) layer
------------------------------------------------------------------------------

-- wval._metric_number(v): a stored metric value as float8: numbers, the
-- strings "Infinity" / "-Infinity"; null for anything else (missing).
CREATE FUNCTION wval._metric_number(v jsonb) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(v) = 'number' THEN (v #>> '{}')::float8
                WHEN v #>> '{}' IN ('Infinity', '-Infinity') THEN (v #>> '{}')::float8 END
$$;
COMMENT ON FUNCTION wval._metric_number(jsonb) IS 'a metric value as float8 (numbers and the strings Infinity / -Infinity), null otherwise';

-- wval._cohort_candidates_check(candidates, campaign_id): raises for the
-- first malformed candidate (22023; WV001 for returns that are not numbers).
CREATE FUNCTION wval._cohort_candidates_check(p_candidates jsonb, p_campaign text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    bad record;
BEGIN
    IF p_candidates IS NULL OR jsonb_typeof(p_candidates) <> 'array' OR jsonb_array_length(p_candidates) = 0 THEN
        RAISE EXCEPTION '"candidates" must be a non-empty JSON array' USING ERRCODE = '22023',
            DETAIL = format('candidates is %s.', coalesce(left(p_candidates::text, 120), 'null')),
            HINT = 'Pass [{"strategy_id": ..., "returns": [...], "metrics": {...}, "context": {...}}, ...].';
    END IF;
    -- the first problem, in the order of the candidates
    FOR bad IN
        SELECT x.* FROM (
            SELECT e.i, e.c,
                   CASE WHEN jsonb_typeof(e.c) <> 'object' THEN 'must be an object'
                        WHEN EXISTS (SELECT 1 FROM jsonb_object_keys(e.c) k WHERE k NOT IN ('strategy_id', 'returns', 'metrics', 'context'))
                            THEN format('has the unknown key %s (accepted: strategy_id, returns, metrics, context)',
                                        (SELECT min(quote_literal(k)) FROM jsonb_object_keys(e.c) k
                                         WHERE k NOT IN ('strategy_id', 'returns', 'metrics', 'context')))
                        WHEN jsonb_typeof(e.c -> 'strategy_id') IS DISTINCT FROM 'string' THEN 'needs a strategy_id string'
                        WHEN e.c ? 'context' AND jsonb_typeof(e.c -> 'context') <> 'object' THEN 'has a context that is not an object'
                        WHEN e.c -> 'context' ? 'campaign_id' AND e.c #>> '{context,campaign_id}' IS DISTINCT FROM p_campaign
                            THEN format('has context.campaign_id %s, not the campaign %s',
                                        coalesce(quote_literal(e.c #>> '{context,campaign_id}'), 'null'), quote_literal(p_campaign))
                        WHEN row_number() OVER (PARTITION BY CASE WHEN jsonb_typeof(e.c) = 'object' THEN e.c ->> 'strategy_id' END
                                                ORDER BY e.i) > 1
                            THEN 'repeats a strategy_id of the cohort'
                        WHEN e.c ? 'returns' AND jsonb_typeof(e.c -> 'returns') <> 'null'
                             AND (jsonb_typeof(e.c -> 'returns') <> 'array'
                                  OR EXISTS (SELECT 1 FROM jsonb_array_elements(e.c -> 'returns') r WHERE jsonb_typeof(r) <> 'number'))
                            THEN 'returns'
                        WHEN e.c ? 'metrics' AND jsonb_typeof(e.c -> 'metrics') NOT IN ('object', 'null') THEN 'metrics'
                   END AS problem
            FROM jsonb_array_elements(p_candidates) WITH ORDINALITY e(c, i)) x
        WHERE x.problem IS NOT NULL
        ORDER BY x.i
        LIMIT 1
    LOOP
        IF bad.problem = 'returns' THEN
            RAISE EXCEPTION 'candidates[%].returns must be an array of numbers', bad.i - 1 USING ERRCODE = 'WV001',
                DETAIL = format('returns is %s.', left((bad.c -> 'returns')::text, 120)),
                HINT = 'Pass the periodic returns as JSON numbers, oldest first.';
        ELSIF bad.problem = 'metrics' THEN
            RAISE EXCEPTION 'candidates[%].metrics must be a JSON object', bad.i - 1 USING ERRCODE = 'WV001',
                DETAIL = format('metrics is %s.', left((bad.c -> 'metrics')::text, 120)),
                HINT = 'Pass metric blocks such as {"returns": {"sharpe": 1.2}}.';
        END IF;
        RAISE EXCEPTION 'candidates[%] %', bad.i - 1, bad.problem USING ERRCODE = '22023',
            DETAIL = format('candidates[%s] is %s.', bad.i - 1, left(bad.c::text, 120)),
            HINT = 'Each candidate is {"strategy_id": ..., "returns"?: [...], "metrics"?: {...}, "context"?: {...}}, one per strategy.';
    END LOOP;
END
$$;
COMMENT ON FUNCTION wval._cohort_candidates_check(jsonb, text) IS 'raises 22023 (WV001 for returns or metrics of the wrong type) for the first malformed candidate of a cohort';

CREATE FUNCTION public.wval_evaluate_cohort(world_id text, campaign_id text, stage text, candidates jsonb)
RETURNS SETOF wval.evaluation_runs
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    p_world text := wval._ident('world_id', world_id);
    p_campaign text := wval._ident('campaign_id', campaign_id);
    p_stage text := stage;
    w wval.worlds := wval._world(p_world);
    p_version integer;
    p_doc jsonb;
    c record;
    r wval.evaluation_runs;
    runs uuid[] := '{}';
    p_key text;
    n integer;
BEGIN
    PERFORM wval._one_of('stage', p_stage, ARRAY['backtest', 'paper', 'shadow', 'live']);
    PERFORM wval._cohort_candidates_check(candidates, p_campaign);
    PERFORM wval._ident('strategy_id', e.c ->> 'strategy_id') FROM jsonb_array_elements(candidates) e(c);
    p_version := public.wval_active_policy_version(p_world);
    IF p_version IS NULL THEN
        RAISE EXCEPTION 'world "%" has no active policy version', p_world USING ERRCODE = 'WV010',
            DETAIL = 'Nothing was evaluated and nothing was recorded.',
            HINT = 'Publish a policy with wval_policy_publish() and activate it with wval_policy_activate().';
    END IF;
    SELECT pv.policy INTO p_doc FROM wval.policy_versions pv WHERE pv.world_id = p_world AND pv.version = p_version;

    -- every candidate gets its normal run (idempotent with context.run_id)
    FOR c IN SELECT e.c, e.i FROM jsonb_array_elements(candidates) WITH ORDINALITY e(c, i) ORDER BY e.i LOOP
        r := public.wval_evaluate(p_world, c.c ->> 'strategy_id', p_stage,
                 CASE WHEN jsonb_typeof(c.c -> 'returns') = 'array'
                      THEN ARRAY(SELECT x::float8 FROM jsonb_array_elements_text(c.c -> 'returns') WITH ORDINALITY x(x, o) ORDER BY o) END,
                 coalesce(nullif(c.c -> 'metrics', 'null'), '{}'),
                 coalesce(c.c -> 'context', '{}') || jsonb_build_object('campaign_id', p_campaign));
        runs := runs || r.run_id;
    END LOOP;

    -- the same candidate runs under the same policy version: the stored cohort runs
    p_key := format('cohort:%s:%s:v%s', p_campaign,
                  left(encode(sha256(convert_to(array_to_string(runs, ','), 'UTF8')), 'hex'), 16), p_version);
    PERFORM pg_advisory_xact_lock(hashtextextended(p_key, 0));
    SELECT count(*) INTO n FROM wval.evaluation_runs x
    WHERE x.world_id = p_world AND x.client_run_id = p_key AND x.kind = 'cohort';
    IF n = cardinality(runs) THEN
        RETURN QUERY
        SELECT x.* FROM wval.evaluation_runs x
        WHERE x.world_id = p_world AND x.client_run_id = p_key AND x.kind = 'cohort'
        ORDER BY (x.context ->> 'cohort_position')::int;
        RETURN;
    END IF;

    -- the cohort metrics across the candidates, the cohort checks per candidate
    RETURN QUERY
    WITH cand AS (
        SELECT x.*, u.ord,
               wval._metric_number(x.metrics #> '{returns,sharpe}') AS sharpe,
               wval._metric_number(x.metrics #> '{robustness,deflated_sharpe_ratio}') AS dsr
        FROM unnest(runs) WITH ORDINALITY u(run_id, ord)
        JOIN wval.evaluation_runs x ON x.run_id = u.run_id AND x.world_id = p_world
    ),
    -- medians: the middle value, or the mean of the two middle values
    sharpes AS (
        SELECT cand.sharpe AS x, row_number() OVER (ORDER BY cand.sharpe) AS rn, count(*) OVER () AS cnt
        FROM cand WHERE cand.sharpe IS NOT NULL
    ),
    dsrs AS (
        SELECT cand.dsr AS x, row_number() OVER (ORDER BY cand.dsr) AS rn, count(*) OVER () AS cnt
        FROM cand WHERE cand.dsr IS NOT NULL
    ),
    agg AS (
        SELECT (SELECT nullif(avg(s.x), 'NaN') FROM sharpes s WHERE s.rn IN ((s.cnt + 1) / 2, (s.cnt + 2) / 2)) AS sharpe_median,
               (SELECT nullif(avg(d.x), 'NaN') FROM dsrs d WHERE d.rn IN ((d.cnt + 1) / 2, (d.cnt + 2) / 2)) AS dsr_median,
               (SELECT max(cand.sharpe) FROM cand) AS max_sharpe,
               (SELECT count(*) FROM cand) AS size
    ),
    ranked AS (
        SELECT cand.*,
               CASE WHEN cand.dsr IS NOT NULL
                    THEN row_number() OVER (ORDER BY cand.dsr IS NULL, cand.dsr DESC, cand.ord) END AS dsr_rank
        FROM cand
    ),
    checked AS (
        SELECT ranked.*, m.metrics AS cohort_metrics,
               wval._apply_rules(p_doc, 'cohort', m.metrics, p_stage, wval._fail_closed(w), NULL, '{}') AS outcome
        FROM ranked, agg,
             LATERAL (SELECT jsonb_build_object('cohort', jsonb_build_object(
                          'sharpe_median', agg.sharpe_median, 'dsr_median', agg.dsr_median,
                          'dsr_rank', ranked.dsr_rank, 'max_sharpe', agg.max_sharpe, 'size', agg.size)) AS metrics) m
    ),
    ins AS (
        INSERT INTO wval.evaluation_runs (world_id, strategy_id, stage, kind, campaign_id, risk_tier,
                                          model_card_version, code_hash, context, client_run_id, metrics,
                                          policy_version, ruleset_hash, profile, status, results,
                                          linked_run_id, created_by)
        SELECT p_world, ch.strategy_id, ch.stage, 'cohort', p_campaign, w.risk_tier,
               ch.model_card_version, ch.code_hash,
               jsonb_build_object('candidate_run_id', ch.run_id, 'cohort_position', ch.ord,
                                  'cohort_size', cardinality(runs)),
               p_key, ch.cohort_metrics, p_version, ch.outcome ->> 'ruleset_hash', ch.outcome ->> 'profile',
               ch.outcome ->> 'status', ch.outcome -> 'results', ch.run_id, wval._invoker()
        FROM checked ch
        ORDER BY ch.ord
        RETURNING *
    ),
    rr AS (
        INSERT INTO wval.rule_results (run_id, world_id, strategy_id, stage, rule, layer, status, severity,
                                       owner, reason_code, reason, tags, details, created_at)
        SELECT ins.run_id, ins.world_id, ins.strategy_id, ins.stage, e.key, split_part(e.key, '.', 1),
               e.value ->> 'status', e.value ->> 'severity', e.value ->> 'owner', e.value ->> 'reason_code',
               e.value ->> 'reason', ARRAY(SELECT jsonb_array_elements_text(e.value -> 'tags')),
               coalesce(e.value -> 'details', '{}'), ins.created_at
        FROM ins, jsonb_each(ins.results) e
    ),
    ev AS (
        SELECT ins.run_id,
               wval._emit('evaluation_run_created', ins.world_id, ins.strategy_id,
                          format('evaluation_run_created:%s:%s:%s', ins.world_id, ins.strategy_id, ins.run_id),
                          jsonb_build_object('world_id', ins.world_id, 'strategy_id', ins.strategy_id,
                                             'run_id', ins.run_id, 'stage', ins.stage, 'kind', 'cohort',
                                             'status', ins.status, 'recommended_stage', NULL,
                                             'policy_version', p_version, 'linked_run_id', ins.linked_run_id,
                                             'campaign_id', p_campaign)) AS event_id
        FROM ins
    )
    SELECT ins.* FROM ins JOIN ev ON ev.run_id = ins.run_id
    ORDER BY (ins.context ->> 'cohort_position')::int;
END
$$;
COMMENT ON FUNCTION public.wval_evaluate_cohort(text, text, text, jsonb) IS 'evaluates a campaign''s candidates ([{strategy_id, returns?, metrics?, context?}]) with wval_evaluate, then the cohort checks across them (median Sharpe and DSR, rank by DSR for top_k with ties in input order, max Sharpe for the alarm); returns per candidate a linked run of kind cohort with metrics.cohort and the cohort.* results, in input order; all in one transaction';

------------------------------------------------------------------------------
-- Privileges
------------------------------------------------------------------------------

GRANT EXECUTE ON FUNCTION public.wval_evaluate_portfolio(text, uuid, float8[], jsonb, text),
      public.wval_evaluate_cohort(text, text, text, jsonb)
   TO wval_producer;

-- source: src/report.sql
-- report.sql: the validation report of one run (spec operations.md, "Reports").

-- wval._report_sections(run): the report as (section, heading, rows of cells)
-- so that markdown and HTML render the same content.
CREATE FUNCTION wval._report_rows(r wval.evaluation_runs)
RETURNS TABLE (section int, heading text, cells text[])
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    o record;
    rec record;
    fails int := 0;
    warns int := 0;
BEGIN
    -- 1. summary
    section := 1; heading := 'Summary';
    FOR cells IN SELECT ARRAY[k, v] FROM (VALUES
        ('status', upper(r.status)), ('recommended stage', coalesce(r.recommended_stage, 'none')),
        ('world', r.world_id), ('strategy', r.strategy_id), ('run', r.run_id::text), ('stage', r.stage),
        ('kind', r.kind), ('risk tier', coalesce(r.risk_tier, 'n/a')),
        ('model card version', coalesce(r.model_card_version, 'not given')),
        ('profile', coalesce(r.profile, 'none')), ('policy version', coalesce(r.policy_version::text, 'none')),
        ('ruleset hash', coalesce(r.ruleset_hash, 'none')),
        ('evaluated', to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"') || ' by ' || r.created_by)) t(k, v)
    LOOP RETURN NEXT; END LOOP;

    -- 2. scope from the model card
    section := 2; heading := 'Scope';
    FOR cells IN SELECT ARRAY[k, v] FROM (VALUES
        ('model card version', coalesce(r.model_card_version, 'not given')),
        ('code hash', coalesce(r.code_hash, 'not given')),
        ('data snapshot', coalesce(r.data_snapshot::text, 'not given')),
        ('returns', CASE WHEN r.returns_hash IS NULL THEN 'not given (supplied metrics only)'
                         ELSE format('%s periods, %s', r.metrics #>> '{diagnostics,n_periods}', r.returns_hash) END),
        ('campaign', coalesce(r.campaign_id, 'none'))) t(k, v)
    LOOP RETURN NEXT; END LOOP;

    -- 3. rules, failures first
    section := 3; heading := 'Rules';
    FOR rec IN
        SELECT e.key, e.value AS v FROM jsonb_each(r.results) e
        ORDER BY CASE e.value->>'status' WHEN 'fail' THEN 0 WHEN 'warn' THEN 1 ELSE 2 END,
                 CASE e.value->>'severity' WHEN 'blocking' THEN 0 WHEN 'soft' THEN 1 ELSE 2 END, e.key
    LOOP
        cells := ARRAY[rec.key, rec.v->>'status', rec.v->>'severity', rec.v->>'owner',
                       wval._fmt(rec.v->'details'->'value'), wval._threshold(rec.v->'details'),
                       rec.v->>'reason_code', rec.v->>'reason'];
        fails := fails + (rec.v->>'status' = 'fail')::int;
        warns := warns + (rec.v->>'status' = 'warn')::int;
        RETURN NEXT;
    END LOOP;

    -- 4. metric snapshot
    section := 4; heading := 'Metrics';
    FOR cells IN
        SELECT ARRAY[b.key || '.' || m.key, wval._fmt(m.value)]
        FROM jsonb_each(r.metrics) b,
             jsonb_each(CASE WHEN jsonb_typeof(b.value) = 'object' THEN b.value ELSE '{}' END) m
        WHERE b.key IN ('returns', 'sample', 'robustness', 'risk', 'portfolio')
          AND jsonb_typeof(m.value) IN ('number', 'string', 'null')
        ORDER BY b.key, m.key
    LOOP RETURN NEXT; END LOOP;

    -- 5. overrides
    section := 5; heading := 'Overrides';
    FOR o IN SELECT * FROM wval.overrides ov WHERE ov.run_id = r.run_id ORDER BY ov.recorded_at, ov.override_id LOOP
        cells := ARRAY[o.status, coalesce(o.actor, '?'), to_char(o.recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'),
                       coalesce(to_char(o.review_due_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), ''), coalesce(o.reason, '')];
        RETURN NEXT;
    END LOOP;

    -- 6. benchmark comparison
    section := 6; heading := 'Benchmark';
    IF r.metrics ? 'benchmark' THEN
        FOR cells IN SELECT ARRAY[k, s, b] FROM (VALUES
            ('sharpe', wval._fmt(r.metrics #> '{returns,sharpe}'), wval._fmt(r.metrics #> '{benchmark,sharpe}')),
            ('volatility', wval._fmt(r.metrics #> '{returns,volatility}'), wval._fmt(r.metrics #> '{benchmark,volatility}')),
            ('max_drawdown', wval._fmt(r.metrics #> '{returns,max_drawdown}'), wval._fmt(r.metrics #> '{benchmark,max_drawdown}')),
            ('beta', wval._fmt(r.metrics #> '{returns,beta}'), ''),
            ('alpha', wval._fmt(r.metrics #> '{returns,alpha}'), ''),
            ('information_ratio', wval._fmt(r.metrics #> '{returns,information_ratio}'), ''),
            ('tracking_error', wval._fmt(r.metrics #> '{returns,tracking_error}'), '')) t(k, s, b)
        LOOP RETURN NEXT; END LOOP;
    END IF;

    -- 7. limitations and recommendations
    section := 7; heading := 'Limitations and recommendations';
    IF r.status = 'unvalidated' THEN
        cells := ARRAY['This run was recorded through the emergency bypass without validation: ' ||
                       coalesce(r.context->>'bypass_reason', 'no reason given') || '.']; RETURN NEXT;
    END IF;
    IF r.returns_hash IS NULL AND r.status <> 'unvalidated' THEN
        cells := ARRAY['Metrics were supplied by the caller, not computed from returns: wval did not verify them.']; RETURN NEXT;
    END IF;
    IF (r.metrics #>> '{diagnostics,validation_health,metric_coverage_ratio}')::float8 < 1 THEN
        cells := ARRAY[format('Only %s%% of the core metrics were present.',
                              round(100 * (r.metrics #>> '{diagnostics,validation_health,metric_coverage_ratio}')::numeric))];
        RETURN NEXT;
    END IF;
    IF fails > 0 THEN
        cells := ARRAY[format('%s check(s) failed: fix them or record an override with a reason before the strategy climbs.', fails)];
        RETURN NEXT;
    END IF;
    IF warns > 0 THEN
        cells := ARRAY[format('%s check(s) warned; warn-mode checks will fail once enforced.', warns)]; RETURN NEXT;
    END IF;
    IF r.recommendation IS NOT NULL THEN
        cells := ARRAY[format('Recommended stage: %s%s.', r.recommended_stage,
                              CASE WHEN r.recommendation->>'stopped_at' IS NOT NULL
                                   THEN format(' (the climb stopped at %s)', r.recommendation->>'stopped_at') ELSE '' END)];
        RETURN NEXT;
    END IF;
END
$$;
COMMENT ON FUNCTION wval._report_rows(wval.evaluation_runs) IS 'the content of a run''s validation report, section by section';

-- wval._md_cell / wval._html: escaping for the two formats
CREATE FUNCTION wval._md_cell(t text) RETURNS text LANGUAGE sql IMMUTABLE AS
$$ SELECT replace(replace(coalesce(t, ''), '|', '\|'), E'\n', ' ') $$;
CREATE FUNCTION wval._html(t text) RETURNS text LANGUAGE sql IMMUTABLE AS
$$ SELECT replace(replace(replace(replace(coalesce(t, ''), '&', '&amp;'), '<', '&lt;'), '>', '&gt;'), '"', '&quot;') $$;
COMMENT ON FUNCTION wval._md_cell(text) IS 'escapes a markdown table cell';
COMMENT ON FUNCTION wval._html(text) IS 'escapes text for HTML';

CREATE FUNCTION public.wval_report(run_id uuid, format text DEFAULT 'markdown') RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    r wval.evaluation_runs := wval._run(run_id);
    out text[] := '{}';
    rec record;
    prev int := 0;
    headers text[] := ARRAY[NULL, 'item|value', 'item|value', 'check|status|severity|owner|value|threshold|reason code|reason',
                            'metric|value', 'status|actor|recorded|review due|reason', 'metric|strategy|benchmark', NULL];
    titles text[] := ARRAY['Summary', 'Scope', 'Rules', 'Metrics', 'Overrides', 'Benchmark', 'Limitations and recommendations'];
    s int;
    html boolean;
BEGIN
    PERFORM wval._one_of('format', format, ARRAY['markdown', 'html']);
    html := format = 'html';
    IF html THEN
        out := out || format('<!DOCTYPE html><html><head><meta charset="utf-8"><title>wval validation report %s</title>'
                             '<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}'
                             'td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}'
                             '.fail{color:#b00020;font-weight:bold}.warn{color:#a06000}.pass{color:#2e7d32}</style></head><body>'
                             '<h1>Validation report: %s / %s</h1>', r.run_id, wval._html(r.strategy_id), wval._html(r.world_id));
    ELSE
        out := out || format('# Validation report: %s / %s', r.strategy_id, r.world_id);
    END IF;
    FOR s IN 1 .. 7 LOOP
        IF html THEN
            out := out || format('<h2>%s</h2>', titles[s]);
        ELSE
            out := out || ''::text || ('## ' || titles[s]) || ''::text;
        END IF;
        prev := 0;
        FOR rec IN SELECT * FROM wval._report_rows(r) x WHERE x.section = s LOOP
            IF prev = 0 AND headers[s + 1] IS NOT NULL THEN
                IF html THEN
                    out := out || ('<table><tr><th>' || replace(headers[s + 1], '|', '</th><th>') || '</th></tr>');
                ELSE
                    out := out || ('| ' || replace(headers[s + 1], '|', ' | ') || ' |')
                               || ('|' || repeat(' --- |', array_length(string_to_array(headers[s + 1], '|'), 1)));
                END IF;
            END IF;
            prev := prev + 1;
            IF headers[s + 1] IS NULL THEN
                out := out || CASE WHEN html THEN '<p>' || wval._html(rec.cells[1]) || '</p>' ELSE '- ' || rec.cells[1] END;
            ELSIF html THEN
                out := out || ('<tr>' || (SELECT string_agg(
                    CASE WHEN c IN ('fail', 'warn', 'pass') AND s = 3 THEN format('<td class="%s">%s</td>', c, c)
                         ELSE '<td>' || wval._html(c) || '</td>' END, '' ORDER BY i)
                    FROM unnest(rec.cells) WITH ORDINALITY u(c, i)) || '</tr>');
            ELSE
                out := out || ('| ' || (SELECT string_agg(wval._md_cell(c), ' | ' ORDER BY i)
                                        FROM unnest(rec.cells) WITH ORDINALITY u(c, i)) || ' |');
            END IF;
        END LOOP;
        IF prev > 0 AND headers[s + 1] IS NOT NULL AND html THEN
            out := out || '</table>'::text;
        ELSIF prev = 0 THEN
            out := out || CASE WHEN html THEN '<p>none</p>' ELSE 'none' END;
        END IF;
    END LOOP;
    IF html THEN
        out := out || '</body></html>'::text;
    END IF;
    RETURN array_to_string(out, E'\n');
END
$$;
COMMENT ON FUNCTION public.wval_report(uuid, text) IS 'the validation report of a run (markdown or html): summary, scope, rules (failures first), metrics, overrides, benchmark comparison, limitations and recommendations';

GRANT EXECUTE ON FUNCTION public.wval_report(uuid, text) TO wval_analyst;

-- source: src/select.sql
-- select.sql: selection after validation (spec policy.md, "Selection").
-- Validation decides who is eligible; selection decides who is used.

CREATE SEQUENCE wval.selections_id_seq;
CREATE TABLE wval.selections (
    selection_id   bigint NOT NULL DEFAULT nextval('wval.selections_id_seq'),
    world_id       text NOT NULL,
    stage          text NOT NULL,
    policy_version integer,
    selected       text[] NOT NULL,
    entered        text[] NOT NULL,
    left_          text[] NOT NULL,
    decisions      jsonb NOT NULL,
    actor          text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    chain_seq      bigint NOT NULL,
    prev_hash      text NOT NULL,
    row_hash       text NOT NULL,
    PRIMARY KEY (world_id, selection_id)
);
ALTER SEQUENCE wval.selections_id_seq OWNED BY wval.selections.selection_id;
CREATE INDEX ON wval.selections (world_id, stage, selection_id DESC);
COMMENT ON TABLE wval.selections IS 'every call of wval_select: the selected strategies, who entered and who left, and the decision for each candidate';
COMMENT ON COLUMN wval.selections.left_ IS 'strategies selected by the previous call that are no longer selected';
COMMENT ON COLUMN wval.selections.decisions IS 'strategy_id -> {selected, rank, reason_code, value}';
SELECT wval._protect('wval.selections', 'selections');
SELECT pg_catalog.pg_extension_config_dump('wval.selections', '');
SELECT pg_catalog.pg_extension_config_dump('wval.selections_id_seq', '');

-- wval._selection_metric(metrics, name): a metric by path ("returns.sharpe")
-- or by short name, searched in returns, robustness, sample, risk, portfolio
-- ("sharpe" -> returns.sharpe, "deflated_sharpe_ratio" -> robustness...).
CREATE FUNCTION wval._selection_metric(metrics jsonb, name text) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN v IS NULL OR jsonb_typeof(v) NOT IN ('number', 'string') THEN NULL
                WHEN v #>> '{}' IN ('Infinity', '-Infinity') THEN (v #>> '{}')::float8
                WHEN jsonb_typeof(v) = 'number' THEN (v #>> '{}')::float8 END
    FROM (SELECT CASE WHEN strpos(name, '.') > 0 THEN metrics #> string_to_array(name, '.')
                      ELSE coalesce(metrics #> ARRAY['returns', name], metrics #> ARRAY['robustness', name],
                                    metrics #> ARRAY['sample', name], metrics #> ARRAY['risk', name],
                                    metrics #> ARRAY['portfolio', name],
                                    CASE name WHEN 'dsr' THEN metrics #> '{robustness,deflated_sharpe_ratio}'
                                              WHEN 'psr' THEN metrics #> '{robustness,probabilistic_sharpe_ratio}'
                                              WHEN 'sortino' THEN metrics #> '{returns,sortino_ratio}'
                                              WHEN 'gain_to_pain' THEN metrics #> '{returns,gain_to_pain_ratio}' END)
                 END AS v) x
$$;
COMMENT ON FUNCTION wval._selection_metric(jsonb, text) IS 'a metric of a run for selection: a dotted path or a short name (sharpe, dsr, max_drawdown, ...)';

-- wval._correlations(world_id): |correlation| of strategy pairs from the
-- latest snapshot: its covariance, else its realized returns (aligned at
-- their ends); pairs without data are absent.
CREATE FUNCTION wval._correlations(p_world_id text)
RETURNS TABLE (a text, b text, corr float8, source text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    snap jsonb;
BEGIN
    BEGIN
        snap := public.wval_snapshot_latest(p_world_id, expand => true, include_stale => true) -> 'snapshot';
    EXCEPTION WHEN sqlstate 'WV010' OR sqlstate 'WV005' THEN
        RETURN;
    END;
    IF snap IS NULL THEN
        RETURN;
    END IF;
    IF jsonb_typeof(snap -> 'covariance') = 'object' THEN
        RETURN QUERY
        WITH c AS (
            SELECT (regexp_split_to_array(k, '[,:]'))[1] AS x, (regexp_split_to_array(k, '[,:]'))[2] AS y, v::text::float8 AS cov
            FROM jsonb_each(snap -> 'covariance') e(k, v)
        ), d AS (SELECT x, cov FROM c WHERE x = y)
        SELECT least(c.x, c.y), greatest(c.x, c.y), c.cov / sqrt(dx.cov * dy.cov), 'snapshot_covariance'
        FROM c JOIN d dx ON dx.x = c.x JOIN d dy ON dy.x = c.y
        WHERE c.x <> c.y AND dx.cov > 0 AND dy.cov > 0;
    ELSIF jsonb_typeof(snap -> 'realized_returns') = 'object' THEN
        RETURN QUERY
        WITH r AS (
            SELECT e.key AS s, x.v::text::float8 AS ret,
                   jsonb_array_length(e.value) - x.o AS back
            FROM jsonb_each(snap -> 'realized_returns') e, jsonb_array_elements(e.value) WITH ORDINALITY x(v, o)
        )
        SELECT r1.s, r2.s, corr(r1.ret, r2.ret), 'snapshot_realized_returns'
        FROM r r1 JOIN r r2 ON r1.back = r2.back AND r1.s < r2.s
        GROUP BY r1.s, r2.s HAVING count(*) >= 3 AND corr(r1.ret, r2.ret) IS NOT NULL;
    END IF;
END
$$;
COMMENT ON FUNCTION wval._correlations(text) IS 'correlations of strategy pairs from the world''s latest snapshot (covariance, else realized returns)';

CREATE FUNCTION public.wval_select(world_id text, stage text DEFAULT 'paper', actor text DEFAULT NULL)
RETURNS TABLE (strategy_id text, selected boolean, rank integer, reason_code text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
#variable_conflict use_column
DECLARE
    p_world text := wval._ident('world_id', wval_select.world_id);
    p_actor text := wval._ident('actor', coalesce(wval_select.actor, wval._invoker()));
    v_version integer;
    doc jsonb;
    sel jsonb;
    prev text[];
    now_selected text[];
    decisions jsonb;
    kept text[] := '{}';
    cand record;
    k record;
    too_close text;
    entered text[];
    left_set text[];
BEGIN
    PERFORM wval._one_of('stage', stage, ARRAY['backtest', 'paper', 'shadow', 'live']);
    PERFORM wval._world(p_world, true);		-- one selection at a time per world
    v_version := public.wval_active_policy_version(p_world);
    IF v_version IS NULL THEN
        RAISE EXCEPTION 'world "%" has no active policy version', p_world
            USING ERRCODE = 'WV010', HINT = 'Activate a policy with wval_policy_activate() first.';
    END IF;
    SELECT pv.policy INTO doc FROM wval.policy_versions pv WHERE pv.world_id = p_world AND pv.version = v_version;
    -- the selection block, with the QMTL top-level aliases folded in
    sel := coalesce(doc -> 'selection', '{}') || jsonb_strip_nulls(jsonb_build_object(
               'thresholds', doc -> 'thresholds', 'top_k', doc -> 'top_k',
               'correlation', doc -> 'correlation', 'hysteresis', doc -> 'hysteresis'));
    SELECT s.selected INTO prev FROM wval.selections s
    WHERE s.world_id = p_world AND s.stage = wval_select.stage ORDER BY s.selection_id DESC LIMIT 1;
    prev := coalesce(prev, '{}');

    -- candidates: the latest run per strategy at this stage that did not fail
    CREATE TEMP TABLE IF NOT EXISTS wval_select_candidates (
        strategy_id text PRIMARY KEY, metrics jsonb, value float8, ok boolean, rank integer, reason text
    ) ON COMMIT DROP;
    TRUNCATE wval_select_candidates;
    INSERT INTO wval_select_candidates (strategy_id, metrics, ok, reason)
    SELECT r.strategy_id, r.metrics, r.status <> 'fail', CASE WHEN r.status = 'fail' THEN 'not_eligible' END
    FROM (SELECT DISTINCT ON (e.strategy_id) e.strategy_id, e.metrics, e.status
          FROM wval.evaluation_runs e
          WHERE e.world_id = p_world AND e.stage = wval_select.stage AND e.kind = 'single' AND e.status <> 'unvalidated'
          ORDER BY e.strategy_id, e.created_at DESC, e.chain_seq DESC) r;

    -- 1. thresholds: metric -> number (minimum) or {min, max, metric}
    FOR k IN SELECT t.key, t.value FROM jsonb_each(coalesce(sel -> 'thresholds', '{}')) t LOOP
        UPDATE wval_select_candidates SET ok = false, reason = 'threshold_not_met'
        WHERE ok AND NOT coalesce(
            CASE WHEN jsonb_typeof(k.value) = 'number'
                 THEN wval._selection_metric(metrics, k.key) >= (k.value #>> '{}')::float8
                 ELSE (k.value -> 'min' IS NULL OR wval._selection_metric(metrics, coalesce(k.value ->> 'metric', k.key)) >= (k.value ->> 'min')::float8)
                  AND (k.value -> 'max' IS NULL OR wval._selection_metric(metrics, coalesce(k.value ->> 'metric', k.key)) <= (k.value ->> 'max')::float8) END,
            false);
    END LOOP;

    -- 2. top_k by a metric (descending, stable ties by strategy_id, missing last)
    UPDATE wval_select_candidates c SET value = wval._selection_metric(c.metrics,
        coalesce(sel #>> '{top_k,metric}', sel #>> '{hysteresis,metric}', 'sharpe'));
    UPDATE wval_select_candidates c SET rank = o.rn
    FROM (SELECT x.strategy_id, row_number() OVER (ORDER BY x.value DESC NULLS LAST, x.strategy_id) AS rn
          FROM wval_select_candidates x WHERE x.ok) o
    WHERE c.strategy_id = o.strategy_id;
    IF sel -> 'top_k' IS NOT NULL THEN
        UPDATE wval_select_candidates SET ok = false, reason = 'top_k_exceeded'
        WHERE ok AND rank > coalesce((sel #>> '{top_k,k}')::int, (sel #>> '{top_k}')::int);
    END IF;

    -- 3. correlation: greedy in rank order, drop one too correlated with a kept one
    FOR cand IN SELECT * FROM wval_select_candidates WHERE ok ORDER BY rank LOOP
        too_close := NULL;
        IF sel -> 'correlation' IS NOT NULL THEN
            SELECT CASE WHEN x.a = cand.strategy_id THEN x.b ELSE x.a END INTO too_close
            FROM wval._correlations(p_world) x
            WHERE (x.a = cand.strategy_id AND x.b = ANY (kept) OR x.b = cand.strategy_id AND x.a = ANY (kept))
              AND abs(x.corr) > coalesce((sel #>> '{correlation,max}')::float8, (sel #>> '{correlation}')::float8)
            LIMIT 1;
        END IF;
        IF too_close IS NOT NULL THEN
            UPDATE wval_select_candidates SET ok = false, reason = 'correlation_above_max'
            WHERE wval_select_candidates.strategy_id = cand.strategy_id;
        ELSE
            kept := kept || cand.strategy_id;
        END IF;
    END LOOP;

    -- 4. hysteresis: a selected strategy stays while value >= exit, a new one enters at >= enter
    IF sel -> 'hysteresis' IS NOT NULL THEN
        UPDATE wval_select_candidates c SET value = wval._selection_metric(c.metrics, coalesce(sel #>> '{hysteresis,metric}', 'sharpe'));
        UPDATE wval_select_candidates c
        SET ok = false, reason = CASE WHEN c.strategy_id = ANY (prev) THEN 'hysteresis_below_exit' ELSE 'hysteresis_below_enter' END
        WHERE c.ok AND NOT coalesce(c.value >= CASE WHEN c.strategy_id = ANY (prev) THEN (sel #>> '{hysteresis,exit}')::float8
                                                     ELSE (sel #>> '{hysteresis,enter}')::float8 END, false);
    END IF;

    UPDATE wval_select_candidates SET reason = 'selected' WHERE ok;
    SELECT coalesce(jsonb_object_agg(x.strategy_id, jsonb_build_object('selected', x.ok, 'rank', x.rank,
                                                                        'reason_code', x.reason, 'value', x.value)), '{}')
    INTO decisions FROM wval_select_candidates x;
    SELECT coalesce(array_agg(x.strategy_id ORDER BY x.rank), '{}') INTO now_selected FROM wval_select_candidates x WHERE x.ok;
    SELECT coalesce(array_agg(s ORDER BY s), '{}') INTO entered FROM unnest(now_selected) s WHERE NOT s = ANY (prev);
    SELECT coalesce(array_agg(s ORDER BY s), '{}') INTO left_set FROM unnest(prev) s WHERE NOT s = ANY (now_selected);

    INSERT INTO wval.selections (world_id, stage, policy_version, selected, entered, left_, decisions, actor)
    VALUES (p_world, wval_select.stage, v_version, now_selected, entered, left_set, decisions, p_actor);
    IF cardinality(entered) > 0 OR cardinality(left_set) > 0 THEN
        PERFORM wval._emit('selection_changed', p_world, wval_select.stage,
                           format('selection_changed:%s:%s:%s', p_world, wval_select.stage, currval('wval.selections_id_seq')),
                           jsonb_build_object('world_id', p_world, 'stage', wval_select.stage, 'entered', to_jsonb(entered),
                                              'left', to_jsonb(left_set), 'selected', to_jsonb(now_selected),
                                              'policy_version', v_version));
    END IF;

    RETURN QUERY SELECT x.strategy_id, x.ok, x.rank, x.reason FROM wval_select_candidates x
                 ORDER BY x.ok DESC, x.rank NULLS LAST, x.strategy_id;
END
$$;
COMMENT ON FUNCTION public.wval_select(text, text, text) IS 'selection after validation: the latest non-failing run per strategy at the stage, then the policy''s selection block in order (thresholds, top_k, correlation, hysteresis); recorded in wval.selections, selection_changed when the set changed';

GRANT SELECT ON wval.selections TO wval_analyst;
GRANT EXECUTE ON FUNCTION public.wval_select(text, text, text) TO wval_validator;

-- source: src/live.sql
-- live.sql: live monitoring (spec live.md) and stage decisions (store.md,
-- "Stage decisions"), next to live.c.
--
-- Realized returns are appended to wval.live_returns (the latest row per
-- day counts).  People move strategies between stages with wval_set_stage;
-- wval.current_stage is what live monitoring treats as deployed.  A live
-- run (wval_live_run, kind 'live') measures the realized windows, applies
-- the policy's live_monitoring checks, and flags demotion candidates; wval
-- never changes a stage by itself.

------------------------------------------------------------------------------
-- Realized returns
------------------------------------------------------------------------------

CREATE SEQUENCE wval.live_returns_id_seq;
CREATE TABLE wval.live_returns (
    entry_id    bigint NOT NULL DEFAULT nextval('wval.live_returns_id_seq'),
    world_id    text NOT NULL,
    strategy_id text NOT NULL,
    day         date NOT NULL CHECK (isfinite(day)),
    ret         float8 NOT NULL CHECK (ret > -1 AND ret < 'Infinity'),
    source      text NOT NULL,
    recorded_by text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    chain_seq   bigint NOT NULL,
    prev_hash   text NOT NULL,
    row_hash    text NOT NULL,
    PRIMARY KEY (world_id, strategy_id, day, entry_id)
);
ALTER SEQUENCE wval.live_returns_id_seq OWNED BY wval.live_returns.entry_id;
COMMENT ON TABLE wval.live_returns IS 'realized daily returns of deployed strategies; append-only and hash-chained: a correction of a day is a later row, and the latest row (highest entry_id) of each day counts';
COMMENT ON COLUMN wval.live_returns.day IS 'the calendar day the return was earned';
COMMENT ON COLUMN wval.live_returns.ret IS 'simple return of that day (0.01 = +1 %), finite and greater than -1';
COMMENT ON COLUMN wval.live_returns.source IS 'where the number comes from (gateway, broker statement, manual, ...)';
COMMENT ON COLUMN wval.live_returns.recorded_by IS 'the database role that recorded the row';
SELECT wval._protect('wval.live_returns', 'live_returns');

CREATE VIEW wval.live_returns_current AS
SELECT DISTINCT ON (lr.world_id, lr.strategy_id, lr.day)
       lr.world_id, lr.strategy_id, lr.day, lr.ret, lr.source, lr.recorded_by, lr.recorded_at, lr.entry_id
FROM wval.live_returns lr
ORDER BY lr.world_id, lr.strategy_id, lr.day, lr.entry_id DESC;
COMMENT ON VIEW wval.live_returns_current IS 'the return of each (world, strategy, day) that counts: the latest recorded row of the day';

CREATE FUNCTION public.wval_record_live_returns(world_id text, strategy_id text, days date[], rets float8[],
                                                source text DEFAULT 'manual')
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    p_world text := wval._ident('world_id', world_id);
    p_strategy text := wval._ident('strategy_id', strategy_id);
    p_source text := wval._ident('source', source);
    n integer;
BEGIN
    PERFORM wval._world(p_world);
    PERFORM wval._live_check_input(days, rets);
    -- a retry of what is already the day's value (same return, same source) adds nothing
    INSERT INTO wval.live_returns (world_id, strategy_id, day, ret, source, recorded_by)
    SELECT p_world, p_strategy, u.day, u.ret, p_source, wval._invoker()
    FROM unnest(days, rets) WITH ORDINALITY AS u(day, ret, i)
    WHERE NOT EXISTS (SELECT 1 FROM wval.live_returns_current c
                      WHERE c.world_id = p_world AND c.strategy_id = p_strategy AND c.day = u.day
                        AND c.ret = u.ret AND c.source = p_source)
    ORDER BY u.i;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
COMMENT ON FUNCTION public.wval_record_live_returns(text, text, date[], float8[], text) IS 'appends realized daily returns of a strategy (the input rules of wval_metrics, WV001 naming the element; days distinct within a call); a day recorded again is a correction (the latest row counts); returns the number of rows written (an identical retry writes none)';

------------------------------------------------------------------------------
-- Stage decisions
------------------------------------------------------------------------------

CREATE SEQUENCE wval.deployments_id_seq;
CREATE TABLE wval.deployments (
    deployment_id  bigint NOT NULL DEFAULT nextval('wval.deployments_id_seq'),
    world_id       text NOT NULL,
    strategy_id    text NOT NULL,
    stage          text NOT NULL CHECK (stage IN ('backtest', 'paper', 'live', 'retired')),
    previous_stage text NOT NULL CHECK (previous_stage IN ('backtest', 'paper', 'live', 'retired')),
    change         text NOT NULL CHECK (change IN ('promotion', 'demotion', 'confirmation')),
    actor          text NOT NULL,
    reason         text NOT NULL,
    run_id         uuid,
    justification  jsonb NOT NULL DEFAULT '{}',
    recorded_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    chain_seq      bigint NOT NULL,
    prev_hash      text NOT NULL,
    row_hash       text NOT NULL,
    PRIMARY KEY (world_id, deployment_id)
);
ALTER SEQUENCE wval.deployments_id_seq OWNED BY wval.deployments.deployment_id;
CREATE INDEX ON wval.deployments (world_id, strategy_id, deployment_id DESC);
COMMENT ON TABLE wval.deployments IS 'stage decisions made by people (wval_set_stage): which stage a strategy is deployed at, who decided, why, and the run the decision relied on; append-only, hash-chained';
COMMENT ON COLUMN wval.deployments.stage IS 'backtest | paper | live | retired';
COMMENT ON COLUMN wval.deployments.previous_stage IS 'the stage before this decision (backtest for a strategy without an earlier decision)';
COMMENT ON COLUMN wval.deployments.change IS 'promotion (higher stage), demotion (lower stage or retired) or confirmation (same stage, e.g. keeping a flagged strategy)';
COMMENT ON COLUMN wval.deployments.run_id IS 'the run the decision relied on: for a promotion the strategy''s latest validation run, otherwise its latest run of any kind';
COMMENT ON COLUMN wval.deployments.justification IS 'why a promotion was allowed (the run''s recommended stage, or the approved override) or which demotion candidate was open';
COMMENT ON COLUMN wval.deployments.recorded_at IS 'when the decision was recorded (clock time, so that decisions and demotion flags of one transaction stay ordered)';
SELECT wval._protect('wval.deployments', 'deployments');

CREATE VIEW wval.current_stage AS
SELECT DISTINCT ON (d.world_id, d.strategy_id)
       d.world_id, d.strategy_id, d.stage, d.previous_stage, d.change, d.actor, d.reason, d.run_id,
       d.recorded_at AS since, d.deployment_id
FROM wval.deployments d
ORDER BY d.world_id, d.strategy_id, d.deployment_id DESC;
COMMENT ON VIEW wval.current_stage IS 'the latest stage decision per world and strategy: what live monitoring, selection and the invariants treat as deployed (a strategy without a decision is at backtest and not listed)';

-- wval._stage_rank(stage): order of the stages for promotions and demotions.
CREATE FUNCTION wval._stage_rank(stage text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE stage WHEN 'retired' THEN 0 WHEN 'backtest' THEN 1 WHEN 'paper' THEN 2 WHEN 'live' THEN 3 END
$$;
COMMENT ON FUNCTION wval._stage_rank(text) IS 'retired 0 < backtest 1 < paper 2 < live 3';

CREATE FUNCTION public.wval_set_stage(world_id text, strategy_id text, stage text, actor text, reason text)
RETURNS wval.deployments
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    p_world text := wval._ident('world_id', world_id);
    p_strategy text := wval._ident('strategy_id', strategy_id);
    p_stage text := wval._one_of('stage', stage, ARRAY['backtest', 'paper', 'live', 'retired']);
    missing text[] := '{}';
    cur text;
    kind text;
    lr wval.evaluation_runs;
    co wval.overrides;
    needed text[];
    basis jsonb := '{}';
    d wval.deployments;
BEGIN
    IF reason IS NULL OR btrim(reason) = '' THEN missing := missing || 'reason'::text; END IF;
    IF actor IS NULL OR btrim(actor) = '' THEN missing := missing || 'actor'::text; END IF;
    IF cardinality(missing) > 0 THEN
        RAISE EXCEPTION 'a stage decision needs %', array_to_string(missing, ' and ')
            USING ERRCODE = 'WV009',
                  DETAIL = format('reason is %s, actor is %s.', coalesce(quote_literal(reason), 'null'),
                                  coalesce(quote_literal(actor), 'null')),
                  HINT = 'Name the person who decides and say why.';
    END IF;
    PERFORM wval._ident('actor', actor);
    PERFORM wval._world(p_world);
    -- one decision at a time per strategy, so that "from" is the stage decided on
    PERFORM pg_advisory_xact_lock(hashtextextended(format('wval:stage:%s:%s', p_world, p_strategy), 0));
    SELECT cs.stage INTO cur FROM wval.current_stage cs
    WHERE cs.world_id = p_world AND cs.strategy_id = p_strategy;
    cur := coalesce(cur, 'backtest');
    kind := CASE WHEN wval._stage_rank(p_stage) > wval._stage_rank(cur) THEN 'promotion'
                 WHEN wval._stage_rank(p_stage) < wval._stage_rank(cur) THEN 'demotion'
                 ELSE 'confirmation' END;

    IF kind = 'promotion' AND p_stage IN ('paper', 'live') THEN
        -- the strategy's latest validation run must recommend the stage, or
        -- carry an approved override that is not overdue
        SELECT * INTO lr FROM wval.evaluation_runs e
        WHERE e.world_id = p_world AND e.strategy_id = p_strategy AND e.kind = 'single'
        ORDER BY e.created_at DESC, e.chain_seq DESC LIMIT 1;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'promotion of strategy "%" to % is not justified: it has no validation run', p_strategy, p_stage
                USING ERRCODE = 'WV009',
                      DETAIL = format('world_id is %L, strategy_id is %L.', p_world, p_strategy),
                      HINT = 'Evaluate the strategy with wval_evaluate() first.';
        END IF;
        needed := CASE p_stage WHEN 'paper' THEN ARRAY['paper_only', 'paper_ok_live_candidate']
                               ELSE ARRAY['paper_ok_live_candidate'] END;
        SELECT * INTO co FROM wval.current_overrides o WHERE o.run_id = lr.run_id;
        IF lr.recommended_stage = ANY (needed) THEN
            basis := jsonb_build_object('basis', 'recommendation', 'run_id', lr.run_id,
                                        'recommended_stage', lr.recommended_stage, 'run_status', lr.status);
        ELSIF co.status = 'approved' AND co.review_due_at >= now() THEN
            basis := jsonb_build_object('basis', 'override', 'run_id', lr.run_id, 'override_id', co.override_id,
                                        'override_actor', co.actor, 'review_due_at', co.review_due_at,
                                        'recommended_stage', lr.recommended_stage);
        ELSE
            RAISE EXCEPTION 'promotion of strategy "%" to % is not justified by its latest run %', p_strategy, p_stage, lr.run_id
                USING ERRCODE = 'WV009',
                      DETAIL = format('Run %s (stage %s, status %s) recommends %s; %s needs at least %s. Override: %s.',
                                      lr.run_id, lr.stage, lr.status, coalesce(lr.recommended_stage, 'nothing'),
                                      p_stage, needed[1],
                                      CASE WHEN co.run_id IS NULL THEN 'none'
                                           WHEN co.status = 'approved' THEN format('approved but overdue since %s', co.review_due_at)
                                           ELSE co.status END),
                      HINT = format('Evaluate the strategy again, or have a validator approve an override on run %s with wval_override(run_id, ''approved'', reason, actor).', lr.run_id);
        END IF;
    ELSE
        -- demotions and confirmations rely on the latest run of any kind
        SELECT * INTO lr FROM wval.evaluation_runs e
        WHERE e.world_id = p_world AND e.strategy_id = p_strategy
        ORDER BY e.created_at DESC, e.chain_seq DESC LIMIT 1;
        basis := jsonb_build_object('basis', kind,
            'open_demotion_candidate', (SELECT c.candidate_id FROM wval.open_demotion_candidates c
                                        WHERE c.world_id = p_world AND c.strategy_id = p_strategy));
    END IF;

    INSERT INTO wval.deployments (world_id, strategy_id, stage, previous_stage, change, actor, reason, run_id, justification)
    VALUES (p_world, p_strategy, p_stage, cur, kind, actor, reason, lr.run_id, basis)
    RETURNING * INTO d;
    PERFORM wval._audit(p_world, 'stage_' || kind, actor,
                        jsonb_build_object('strategy_id', p_strategy, 'from', cur, 'to', p_stage, 'reason', reason,
                                           'run_id', lr.run_id, 'deployment_id', d.deployment_id,
                                           'justification', basis));
    IF cur <> p_stage THEN
        PERFORM wval._emit('stage_changed', p_world, p_strategy,
                           format('stage_changed:%s:%s:%s', p_world, p_strategy, d.deployment_id),
                           jsonb_build_object('world_id', p_world, 'strategy_id', p_strategy, 'from', cur, 'to', p_stage,
                                              'actor', actor, 'reason', reason, 'run_id', lr.run_id,
                                              'change', kind, 'justification', basis));
    END IF;
    RETURN d;
END
$$;
COMMENT ON FUNCTION public.wval_set_stage(text, text, text, text, text) IS 'records a stage decision (backtest | paper | live | retired): a promotion to paper/live needs the latest validation run to recommend at least paper_only / paper_ok_live_candidate or an approved, not overdue override on it (WV009 otherwise); demotions and confirmations need only actor and reason; audited, emits stage_changed';

------------------------------------------------------------------------------
-- Live runs
------------------------------------------------------------------------------

-- one live run per (world, strategy, as_of): found through this index
INSERT INTO wval.partition_indexes (parent, spec) VALUES
    ('evaluation_runs', '(world_id, strategy_id, as_of) WHERE kind = ''live''');
CREATE INDEX ON wval.evaluation_runs_default (world_id, strategy_id, as_of) WHERE kind = 'live';

CREATE FUNCTION wval._live_check_input(days date[], rets float8[]) RETURNS integer
    AS 'MODULE_PATHNAME', 'wval_live_check_input' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._live_check_input(date[], float8[]) IS 'checks a batch of live returns (WV001 naming the element: nulls, non-finite values, returns <= -1, length mismatch, repeated days) and returns its length';

CREATE FUNCTION wval._live_windows(days date[], rets float8[], as_of date, windows integer[]) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'wval_live_windows' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION wval._live_windows(date[], float8[], date, integer[]) IS 'realized metrics per calendar window (as_of - W, as_of]: {"W": {sharpe (annualised, P = 252), max_drawdown, es_p025 (historical ES 97.5 %), n_obs}}; null metrics below 2 observations; days ascending and distinct';

CREATE FUNCTION wval._live_policy(world_id text, version integer, fail_closed boolean) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'wval_live_policy' LANGUAGE C STABLE;
COMMENT ON FUNCTION wval._live_policy(text, integer, boolean) IS 'live_monitoring settings of a policy version (cached per backend): {windows_days (ascending), demote_after, ruleset_hash, checks}';

CREATE FUNCTION wval._live_rules(world_id text, version integer, fail_closed boolean, metrics jsonb, stage text)
RETURNS jsonb
    AS 'MODULE_PATHNAME', 'wval_live_rules' LANGUAGE C STABLE;
COMMENT ON FUNCTION wval._live_rules(text, integer, boolean, jsonb, text) IS 'applies the live_monitoring checks of a policy version to {"live": {...}} metrics: {status, cleared, profile, ruleset_hash, results, stopped_by, validation_error_count}';

CREATE SEQUENCE wval.demotion_candidates_id_seq;
CREATE TABLE wval.demotion_candidates (
    candidate_id     bigint NOT NULL DEFAULT nextval('wval.demotion_candidates_id_seq'),
    world_id         text NOT NULL,
    strategy_id      text NOT NULL,
    run_id           uuid NOT NULL,
    as_of            date NOT NULL,
    stage            text NOT NULL,
    trigger          text NOT NULL CHECK (trigger IN ('blocking_fail', 'soft_fail_streak')),
    breached         jsonb NOT NULL,
    consecutive_runs integer NOT NULL,
    demote_after     integer NOT NULL,
    flagged_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    chain_seq        bigint NOT NULL,
    prev_hash        text NOT NULL,
    row_hash         text NOT NULL,
    PRIMARY KEY (world_id, candidate_id)
);
ALTER SEQUENCE wval.demotion_candidates_id_seq OWNED BY wval.demotion_candidates.candidate_id;
CREATE UNIQUE INDEX ON wval.demotion_candidates (world_id, run_id);
CREATE INDEX ON wval.demotion_candidates (world_id, strategy_id, as_of DESC);
COMMENT ON TABLE wval.demotion_candidates IS 'live runs that make their strategy a demotion candidate: a blocking fail, or a soft fail in live_monitoring.demote_after consecutive live runs at the same stage; append-only, hash-chained. wval never demotes by itself';
COMMENT ON COLUMN wval.demotion_candidates.trigger IS 'blocking_fail | soft_fail_streak';
COMMENT ON COLUMN wval.demotion_candidates.breached IS 'the failed checks: [{check, severity, reason_code, reason}]';
COMMENT ON COLUMN wval.demotion_candidates.consecutive_runs IS 'live runs in a row (this one included) with a blocking or soft fail';
COMMENT ON COLUMN wval.demotion_candidates.stage IS 'the stage the strategy was deployed at';
SELECT wval._protect('wval.demotion_candidates', 'demotion_candidates');

CREATE VIEW wval.open_demotion_candidates AS
SELECT c.*
FROM (SELECT DISTINCT ON (dc.world_id, dc.strategy_id) dc.*
      FROM wval.demotion_candidates dc
      ORDER BY dc.world_id, dc.strategy_id, dc.as_of DESC, dc.candidate_id DESC) c
WHERE c.run_id = (SELECT e.run_id FROM wval.evaluation_runs e
                  WHERE e.world_id = c.world_id AND e.strategy_id = c.strategy_id AND e.kind = 'live'
                  ORDER BY e.as_of DESC, e.created_at DESC LIMIT 1)
  AND NOT EXISTS (SELECT 1 FROM wval.deployments d
                  WHERE d.world_id = c.world_id AND d.strategy_id = c.strategy_id AND d.recorded_at > c.flagged_at);
COMMENT ON VIEW wval.open_demotion_candidates IS 'strategies whose latest live run flagged them and on which nobody has decided since (a stage decision, also a confirmation, closes the candidate; so does a later live run that does not flag)';

-- wval._live_flag(run, demote_after): records the run as a demotion
-- candidate when it has a blocking fail, or a soft fail that completes
-- demote_after consecutive failing live runs at its stage.
CREATE FUNCTION wval._live_flag(r wval.evaluation_runs, demote_after integer) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    breached jsonb;
    blocking boolean;
    streak integer;
    c wval.demotion_candidates;
BEGIN
    SELECT jsonb_agg(jsonb_build_object('check', x.key, 'severity', x.value->>'severity',
                                        'reason_code', x.value->>'reason_code', 'reason', x.value->>'reason')
                     ORDER BY x.key),
           bool_or(x.value->>'severity' = 'blocking')
      INTO breached, blocking
    FROM jsonb_each(r.results) x
    WHERE x.value->>'status' = 'fail' AND x.value->>'severity' IN ('blocking', 'soft');
    IF breached IS NULL THEN
        RETURN NULL;
    END IF;
    -- failing live runs in a row at this stage, newest first, this one included
    SELECT count(*) INTO streak
    FROM (SELECT bool_and(f.failed) OVER (ORDER BY f.as_of DESC) AS all_failed
          FROM (SELECT e.as_of,
                       EXISTS (SELECT 1 FROM jsonb_each(e.results) x
                               WHERE x.value->>'status' = 'fail' AND x.value->>'severity' IN ('blocking', 'soft')) AS failed
                FROM wval.evaluation_runs e
                WHERE e.world_id = r.world_id AND e.strategy_id = r.strategy_id AND e.kind = 'live'
                  AND e.stage = r.stage AND e.as_of <= r.as_of
                ORDER BY e.as_of DESC LIMIT 1000) f) s
    WHERE s.all_failed;
    IF NOT blocking AND streak < demote_after THEN
        RETURN NULL;
    END IF;
    INSERT INTO wval.demotion_candidates (world_id, strategy_id, run_id, as_of, stage, trigger, breached,
                                          consecutive_runs, demote_after)
    VALUES (r.world_id, r.strategy_id, r.run_id, r.as_of, r.stage,
            CASE WHEN blocking THEN 'blocking_fail' ELSE 'soft_fail_streak' END, breached, streak, demote_after)
    RETURNING * INTO c;
    PERFORM wval._emit('demotion_candidate_flagged', r.world_id, r.strategy_id,
                       format('demotion_candidate_flagged:%s:%s:%s', r.world_id, r.strategy_id, r.run_id),
                       jsonb_build_object('world_id', r.world_id, 'strategy_id', r.strategy_id, 'run_id', r.run_id,
                                          'as_of', r.as_of, 'stage', r.stage, 'trigger', c.trigger,
                                          'breached', (SELECT jsonb_agg(b->'check') FROM jsonb_array_elements(breached) b),
                                          'consecutive_runs', streak, 'demote_after', demote_after));
    RETURN c.candidate_id;
END
$$;
COMMENT ON FUNCTION wval._live_flag(wval.evaluation_runs, integer) IS 'records a live run in wval.demotion_candidates (and emits demotion_candidate_flagged) when it has a blocking fail or completes demote_after consecutive soft-failing live runs at its stage';

CREATE FUNCTION public.wval_live_run(world_id text, strategy_id text, as_of date DEFAULT current_date)
RETURNS wval.evaluation_runs
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    p_world text := wval._ident('world_id', world_id);
    p_strategy text := wval._ident('strategy_id', strategy_id);
    p_as_of date := as_of;
    w wval.worlds;
    r wval.evaluation_runs;
    v integer;
    fc boolean;
    settings jsonb;
    windows integer[];
    longest integer;
    deployed text;
    p_stage text;
    d date[];
    x float8[];
    rhash text;
    win jsonb;
    check_w text;
    bt_run uuid;
    bt_sharpe float8;
    decay float8;
    live jsonb;
    outcome jsonb;
    rid uuid := gen_random_uuid();
    created timestamptz := now();
BEGIN
    IF p_as_of IS NULL OR NOT isfinite(p_as_of) THEN
        RAISE EXCEPTION 'invalid value for "as_of"' USING ERRCODE = '22023',
            DETAIL = format('as_of is %s.', coalesce(p_as_of::text, 'null')),
            HINT = 'Pass the day the windows end, e.g. current_date.';
    END IF;
    w := wval._world(p_world);

    -- idempotent: one live run per (world, strategy, as_of), also for
    -- concurrent callers (read committed: the lookup after the lock sees a
    -- run the other caller committed)
    PERFORM pg_advisory_xact_lock(hashtextextended(format('wval:live_run:%s:%s:%s', p_world, p_strategy, to_char(p_as_of, 'YYYY-MM-DD')), 0));
    SELECT * INTO r FROM wval.evaluation_runs e
    WHERE e.world_id = p_world AND e.strategy_id = p_strategy AND e.kind = 'live' AND e.as_of = p_as_of
    ORDER BY e.created_at LIMIT 1;
    IF FOUND THEN
        RETURN r;
    END IF;

    v := public.wval_active_policy_version(p_world);
    IF v IS NULL THEN
        RAISE EXCEPTION 'world "%" has no active policy version', p_world
            USING ERRCODE = 'WV010',
                  DETAIL = 'Nothing was evaluated and nothing was recorded.',
                  HINT = 'Publish a policy with wval_policy_publish() and activate it with wval_policy_activate().';
    END IF;
    fc := wval._fail_closed(w);
    settings := wval._live_policy(p_world, v, fc);
    windows := ARRAY(SELECT jsonb_array_elements_text(settings->'windows_days')::integer);
    longest := windows[cardinality(windows)];

    -- the run's stage: the strategy's deployed stage (paper or live), else live
    SELECT cs.stage INTO deployed FROM wval.current_stage cs
    WHERE cs.world_id = p_world AND cs.strategy_id = p_strategy;
    p_stage := CASE WHEN deployed IN ('paper', 'live') THEN deployed ELSE 'live' END;

    -- the latest return of each day of the longest window
    SELECT coalesce(array_agg(c.day ORDER BY c.day), '{}'), coalesce(array_agg(c.ret ORDER BY c.day), '{}'),
           'sha256:' || encode(sha256(coalesce(string_agg(float8send(c.ret), ''::bytea ORDER BY c.day), ''::bytea)), 'hex')
      INTO d, x, rhash
    FROM wval.live_returns_current c
    WHERE c.world_id = p_world AND c.strategy_id = p_strategy
      AND c.day > p_as_of - longest AND c.day <= p_as_of;

    win := wval._live_windows(d, x, p_as_of, windows);
    -- the checks use the shortest window with data
    SELECT min(k.key::integer)::text INTO check_w
    FROM jsonb_each(win) k WHERE (k.value->>'n_obs')::integer >= 2;

    -- decay against the latest backtest run (not a paper run)
    SELECT e.run_id, (e.metrics #>> '{returns,sharpe}')::float8 INTO bt_run, bt_sharpe
    FROM wval.evaluation_runs e
    WHERE e.world_id = p_world AND e.strategy_id = p_strategy AND e.stage = 'backtest' AND e.kind = 'single'
      AND e.status <> 'unvalidated'
    ORDER BY e.created_at DESC, e.chain_seq DESC LIMIT 1;
    decay := CASE WHEN bt_sharpe > 0 THEN (win #>> ARRAY[longest::text, 'sharpe'])::float8 / bt_sharpe END;

    live := jsonb_build_object('as_of', p_as_of, 'windows', win, 'check_window', check_w::integer,
                               'decay', decay, 'backtest_run_id', bt_run, 'backtest_sharpe', bt_sharpe);
    outcome := wval._live_rules(p_world, v, fc,
                                jsonb_build_object('live', jsonb_build_object(
                                    'sharpe', win #> ARRAY[check_w, 'sharpe'],
                                    'max_drawdown', win #> ARRAY[check_w, 'max_drawdown'],
                                    'es_p025', win #> ARRAY[check_w, 'es_p025'],
                                    'decay', decay)),
                                p_stage);

    -- rule results and events first, the run last (as wval_evaluate does)
    INSERT INTO wval.rule_results (run_id, world_id, strategy_id, stage, rule, layer, status, severity, owner,
                                   reason_code, reason, tags, details, created_at)
    SELECT rid, p_world, p_strategy, p_stage, e.key, split_part(e.key, '.', 1), e.value->>'status',
           e.value->>'severity', e.value->>'owner', e.value->>'reason_code', e.value->>'reason',
           ARRAY(SELECT jsonb_array_elements_text(e.value->'tags')), coalesce(e.value->'details', '{}'), created
    FROM jsonb_each(outcome->'results') e;
    PERFORM wval._emit('evaluation_run_created', p_world, p_strategy,
                       format('evaluation_run_created:%s:%s:%s', p_world, p_strategy, rid),
                       jsonb_build_object('world_id', p_world, 'strategy_id', p_strategy, 'run_id', rid,
                                          'stage', p_stage, 'kind', 'live', 'status', outcome->>'status',
                                          'recommended_stage', NULL, 'policy_version', v));
    PERFORM wval._emit('live_run_created', p_world, p_strategy,
                       format('live_run_created:%s:%s:%s', p_world, p_strategy, to_char(p_as_of, 'YYYY-MM-DD')),
                       jsonb_build_object('world_id', p_world, 'strategy_id', p_strategy, 'run_id', rid,
                                          'as_of', p_as_of, 'stage', p_stage, 'status', outcome->>'status',
                                          'policy_version', v, 'check_window', check_w::integer,
                                          'windows', win, 'decay', decay,
                                          'failed', outcome->'stopped_by'));

    INSERT INTO wval.evaluation_runs (run_id, world_id, strategy_id, stage, kind, risk_tier, context, returns_hash,
                                      metrics, policy_version, ruleset_hash, profile, status, results, as_of,
                                      created_by, created_at)
    VALUES (rid, p_world, p_strategy, p_stage, 'live', w.risk_tier,
            jsonb_build_object('windows_days', settings->'windows_days', 'demote_after', settings->'demote_after',
                               'deployed_stage', deployed),
            rhash, jsonb_build_object('live', live, 'returns', public.wval_metrics(x)->'returns'),
            v, outcome->>'ruleset_hash', 'live_monitoring', outcome->>'status', outcome->'results', p_as_of,
            wval._invoker(), created)
    RETURNING * INTO r;

    -- only a deployed strategy can be a demotion candidate
    IF deployed IN ('paper', 'live') THEN
        PERFORM wval._live_flag(r, (settings->>'demote_after')::integer);
    END IF;
    RETURN r;
END
$$;
COMMENT ON FUNCTION public.wval_live_run(text, text, date) IS 'the live run of a strategy as of a day: realized Sharpe, max drawdown, ES 97.5 % and n_obs per calendar window (as_of - W, as_of] of live_monitoring.windows_days, decay against the latest backtest run, the live_monitoring checks on the shortest window with data; stores the run (kind live) with rule results, emits evaluation_run_created and live_run_created, flags demotion candidates; a second call for the same day returns the stored run';

CREATE FUNCTION public.wval_live_run_all(as_of date DEFAULT current_date)
RETURNS TABLE (world_id text, strategy_id text, stage text, run_id uuid, status text, flagged boolean, error text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp SET datestyle = 'ISO, YMD' AS $$
DECLARE
    p_as_of date := as_of;
    c record;
    r wval.evaluation_runs;
    msg text;
    state text;
BEGIN
    IF p_as_of IS NULL OR NOT isfinite(p_as_of) THEN
        RAISE EXCEPTION 'invalid value for "as_of"' USING ERRCODE = '22023',
            DETAIL = format('as_of is %s.', coalesce(p_as_of::text, 'null')),
            HINT = 'Pass the day the windows end, e.g. current_date.';
    END IF;
    -- every world the caller may write (row-level security per world)
    FOR c IN
        SELECT cs.world_id, cs.strategy_id, cs.stage FROM wval.current_stage cs
        WHERE cs.stage IN ('paper', 'live')
          AND wval._world_access((SELECT pr.oid FROM pg_roles pr WHERE pr.rolname = wval._invoker()), cs.world_id, 'write')
        ORDER BY cs.world_id, cs.strategy_id
    LOOP
        world_id := c.world_id;
        strategy_id := c.strategy_id;
        stage := c.stage;
        BEGIN
            -- each strategy in its own subtransaction: one failure does not stop the rest
            r := public.wval_live_run(c.world_id, c.strategy_id, p_as_of);
            run_id := r.run_id;
            status := r.status;
            flagged := EXISTS (SELECT 1 FROM wval.demotion_candidates dc
                               WHERE dc.world_id = r.world_id AND dc.run_id = r.run_id);
            error := NULL;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, state = RETURNED_SQLSTATE;
            run_id := NULL;
            status := NULL;
            flagged := NULL;
            error := state || ': ' || msg;
            RAISE WARNING 'live run of strategy "%" in world "%" as of % failed: %', c.strategy_id, c.world_id, p_as_of, msg;
            PERFORM wval._audit(c.world_id, 'live_run_failed', wval._invoker(),
                                jsonb_build_object('strategy_id', c.strategy_id, 'as_of', p_as_of,
                                                   'sqlstate', state, 'message', msg));
        END;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION public.wval_live_run_all(date) IS 'runs wval_live_run for every strategy whose current stage is paper or live, in every world the caller may write, each in its own subtransaction; one row per strategy (run_id, status, flagged as demotion candidate, or the error, which is also audited as live_run_failed)';

CREATE FUNCTION public.wval_schedule_live_monitoring(schedule text DEFAULT '15 2 * * *') RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
BEGIN
    PERFORM wval._require_text('schedule', schedule, '22023', 'Pass a cron expression such as ''15 2 * * *''.');
    PERFORM wval._cron_check(schedule);
    RETURN wval._cron_schedule('live-monitoring', schedule, 'SELECT count(*) FROM public.wval_live_run_all()');
END
$$;
COMMENT ON FUNCTION public.wval_schedule_live_monitoring(text) IS 'schedules (or reschedules) the pg_cron job wval:live-monitoring that runs wval_live_run_all() (default daily at 02:15 in pg_cron''s time zone); remove it with wval_unschedule(''live-monitoring''); WV010 with set-up instructions when pg_cron is missing';

------------------------------------------------------------------------------
-- Live report
------------------------------------------------------------------------------

-- wval._live_table(html, headers, rows): a markdown or HTML table; rows is
-- a jsonb array of arrays of strings; cells that are a status get a class.
CREATE FUNCTION wval._live_table(html boolean, headers text[], rows jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN html THEN
            '<table><tr>' || (SELECT string_agg('<th>' || wval._html(h) || '</th>', '' ORDER BY i)
                              FROM unnest(headers) WITH ORDINALITY u(h, i)) || '</tr>'
            || coalesce((SELECT string_agg('<tr>' || (SELECT string_agg(
                                 CASE WHEN c.v IN ('pass', 'warn', 'fail', 'PASS', 'WARN', 'FAIL')
                                      THEN format('<td class="%s">%s</td>', lower(c.v), c.v)
                                      ELSE '<td>' || wval._html(c.v) || '</td>' END, '' ORDER BY c.i)
                                 FROM jsonb_array_elements_text(r.row) WITH ORDINALITY c(v, i)) || '</tr>', '' ORDER BY r.n)
                         FROM jsonb_array_elements(rows) WITH ORDINALITY r(row, n)), '')
            || '</table>'
        ELSE
            '| ' || array_to_string(headers, ' | ') || ' |' || E'\n'
            || '|' || repeat(' --- |', cardinality(headers))
            || coalesce((SELECT string_agg(E'\n| ' || (SELECT string_agg(wval._md_cell(c.v), ' | ' ORDER BY c.i)
                                                       FROM jsonb_array_elements_text(r.row) WITH ORDINALITY c(v, i)) || ' |',
                                           '' ORDER BY r.n)
                         FROM jsonb_array_elements(rows) WITH ORDINALITY r(row, n)), '')
        END
$$;
COMMENT ON FUNCTION wval._live_table(boolean, text[], jsonb) IS 'renders a table (markdown or HTML, text escaped) for the live report';

-- wval._svg_line(title, days, values, color): an inline SVG line chart
-- (no external assets), or a note when there are fewer than two points.
CREATE FUNCTION wval._svg_line(title text, days date[], vals float8[], color text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    n integer := coalesce(cardinality(vals), 0);
    lo float8;
    hi float8;
    pts text;
    w constant integer := 640;
    h constant integer := 180;
    l constant integer := 70;
    t constant integer := 24;
    b constant integer := 24;
    rgt constant integer := 10;
BEGIN
    IF n < 2 THEN
        RETURN '<p>' || wval._html(title) || ': not enough data for a chart</p>';
    END IF;
    SELECT min(v), max(v) INTO lo, hi FROM unnest(vals) v;
    IF hi = lo THEN
        lo := lo - greatest(abs(lo) * 0.05, 1e-6);
        hi := hi + greatest(abs(hi) * 0.05, 1e-6);
    END IF;
    SELECT string_agg(format('%s,%s',
                             round((l + (i - 1) * (w - l - rgt)::numeric / (n - 1)), 1),
                             round((t + (hi - v) / (hi - lo) * (h - t - b))::numeric, 1)), ' ' ORDER BY i)
      INTO pts
    FROM unnest(vals) WITH ORDINALITY u(v, i);
    RETURN format('<figure><svg xmlns="http://www.w3.org/2000/svg" width="%s" height="%s" viewBox="0 0 %s %s" role="img" aria-label="%s">'
                  '<rect x="0" y="0" width="%s" height="%s" fill="#fff"/>'
                  '<text x="%s" y="16" font-size="13" font-family="sans-serif">%s</text>'
                  '<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#999"/>'
                  '<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#999"/>'
                  '<text x="%s" y="%s" font-size="11" font-family="sans-serif" text-anchor="end">%s</text>'
                  '<text x="%s" y="%s" font-size="11" font-family="sans-serif" text-anchor="end">%s</text>'
                  '<text x="%s" y="%s" font-size="11" font-family="sans-serif">%s</text>'
                  '<text x="%s" y="%s" font-size="11" font-family="sans-serif" text-anchor="end">%s</text>'
                  '<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/></svg></figure>',
                  w, h, w, h, wval._html(title),
                  w, h,
                  l, wval._html(title),
                  l, t, l, h - b,
                  l, h - b, w - rgt, h - b,
                  l - 4, t + 4, wval._html(wval._fmt(to_jsonb(hi))),
                  l - 4, h - b, wval._html(wval._fmt(to_jsonb(lo))),
                  l, h - 6, wval._html(coalesce(days[1]::text, '')),
                  w - rgt, h - 6, wval._html(coalesce(days[n]::text, '')),
                  wval._html(color), pts);
END
$$;
COMMENT ON FUNCTION wval._svg_line(text, date[], float8[], text) IS 'an inline SVG line chart (escaped title, min/max and first/last day labels) for the HTML live report';

-- wval._live_report_items(world, as_of): per strategy of the world with a
-- live run up to as_of, or deployed at paper or live: its stage, latest
-- live run up to as_of, the live run before that, the demotion candidate
-- that run raised and the first stage decision recorded after the flag.
CREATE FUNCTION wval._live_report_items(p_world text, p_as_of date)
RETURNS TABLE (strategy_id text, stage text, run wval.evaluation_runs, prev wval.evaluation_runs,
               candidate wval.demotion_candidates, decision wval.deployments)
LANGUAGE sql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
    SELECT k.strategy_id, cs.stage, lr.run, pr.run, dc.cand, dd.dep
    FROM (SELECT e.strategy_id FROM wval.evaluation_runs e
          WHERE e.world_id = p_world AND e.kind = 'live' AND e.as_of <= p_as_of
          UNION
          SELECT c.strategy_id FROM wval.current_stage c
          WHERE c.world_id = p_world AND c.stage IN ('paper', 'live')) k
    LEFT JOIN wval.current_stage cs ON cs.world_id = p_world AND cs.strategy_id = k.strategy_id
    LEFT JOIN LATERAL (SELECT e FROM wval.evaluation_runs e
                       WHERE e.world_id = p_world AND e.strategy_id = k.strategy_id AND e.kind = 'live'
                         AND e.as_of <= p_as_of
                       ORDER BY e.as_of DESC, e.created_at DESC LIMIT 1) lr(run) ON true
    LEFT JOIN LATERAL (SELECT e FROM wval.evaluation_runs e
                       WHERE e.world_id = p_world AND e.strategy_id = k.strategy_id AND e.kind = 'live'
                         AND e.as_of < (lr.run).as_of
                       ORDER BY e.as_of DESC, e.created_at DESC LIMIT 1) pr(run) ON true
    LEFT JOIN LATERAL (SELECT c FROM wval.demotion_candidates c
                       WHERE c.world_id = p_world AND c.run_id = (lr.run).run_id) dc(cand) ON true
    LEFT JOIN LATERAL (SELECT d FROM wval.deployments d
                       WHERE d.world_id = p_world AND d.strategy_id = k.strategy_id
                         AND d.recorded_at > (dc.cand).flagged_at
                       ORDER BY d.deployment_id LIMIT 1) dd(dep) ON true
    ORDER BY k.strategy_id
$$;
COMMENT ON FUNCTION wval._live_report_items(text, date) IS 'the strategies of a live report with their latest live run up to as_of, the previous live run, stage, the demotion candidate of that run and the first stage decision after it';

CREATE FUNCTION public.wval_live_report(world_id text, as_of date DEFAULT current_date, format text DEFAULT 'markdown')
RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp SET datestyle = 'ISO, YMD' AS $$
DECLARE
    p_world text := wval._ident('world_id', world_id);
    p_as_of date := as_of;
    html boolean;
    out text[] := '{}';
    s record;
    summary jsonb := '[]';
    wins text[];
    rows jsonb;
    cur jsonb;
    prev jsonb;
    ch record;
    days date[];
    equity float8[];
    dd float8[];
    rs_days date[];
    rs float8[];
BEGIN
    PERFORM wval._one_of('format', format, ARRAY['markdown', 'html']);
    IF p_as_of IS NULL OR NOT isfinite(p_as_of) THEN
        RAISE EXCEPTION 'invalid value for "as_of"' USING ERRCODE = '22023',
            DETAIL = format('as_of is %s.', coalesce(p_as_of::text, 'null')),
            HINT = 'Pass the day of the report, e.g. current_date.';
    END IF;
    PERFORM wval._world(p_world);
    html := format = 'html';

    IF html THEN
        out := out || format('<!DOCTYPE html><html><head><meta charset="utf-8"><title>wval live report %s %s</title>'
                             '<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:0.5em 0}'
                             'td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}figure{margin:0.5em 0}'
                             '.fail{color:#b00020;font-weight:bold}.warn{color:#a06000}.pass{color:#2e7d32}</style></head><body>'
                             '<h1>Live monitoring report: %s as of %s</h1>',
                             wval._html(p_world), p_as_of, wval._html(p_world), p_as_of);
    ELSE
        out := out || format('# Live monitoring report: %s as of %s', p_world, p_as_of);
    END IF;

    -- summary, one row per strategy
    FOR s IN SELECT * FROM wval._live_report_items(p_world, p_as_of) LOOP
        summary := summary || jsonb_build_array(jsonb_build_array(
            s.strategy_id, coalesce(s.stage, 'not deployed'),
            coalesce(((s.run).as_of)::text, 'no live run'),
            coalesce(upper((s.run).status), ''),
            coalesce(((s.run).metrics #>> '{live,check_window}') || ' days', 'no data'),
            wval._fmt((s.run).metrics #> ARRAY['live', 'windows', (s.run).metrics #>> '{live,check_window}', 'sharpe']),
            wval._fmt((s.run).metrics #> ARRAY['live', 'windows', (s.run).metrics #>> '{live,check_window}', 'max_drawdown']),
            wval._fmt((s.run).metrics #> ARRAY['live', 'windows', (s.run).metrics #>> '{live,check_window}', 'es_p025']),
            wval._fmt((s.run).metrics #> '{live,decay}'),
            CASE WHEN (s.candidate).candidate_id IS NULL THEN 'none'
                 WHEN (s.decision).deployment_id IS NULL THEN 'CANDIDATE (' || (s.candidate).trigger || '), open'
                 ELSE format('candidate (%s), decided: %s', (s.candidate).trigger, (s.decision).stage) END,
            CASE WHEN (s.run).run_id IS NULL THEN ''
                 WHEN (s.prev).run_id IS NULL THEN 'first report'
                 WHEN (s.prev).status = (s.run).status THEN 'status unchanged since ' || (s.prev).as_of
                 ELSE format('%s -> %s since %s', upper((s.prev).status), upper((s.run).status), (s.prev).as_of) END));
    END LOOP;
    out := out || CASE WHEN html THEN '<h2>Summary</h2>' ELSE E'\n## Summary\n' END;
    IF jsonb_array_length(summary) = 0 THEN
        out := out || CASE WHEN html THEN '<p>No live runs and no deployed strategies up to this day.</p>'
                           ELSE 'No live runs and no deployed strategies up to this day.' END;
    ELSE
        out := out || wval._live_table(html, ARRAY['strategy', 'stage', 'run as of', 'status', 'check window', 'sharpe',
                                                   'max drawdown', 'ES 97.5%', 'decay', 'demotion', 'trend'], summary);
    END IF;

    -- one section per strategy with a run
    FOR s IN SELECT * FROM wval._live_report_items(p_world, p_as_of) x WHERE (x.run).run_id IS NOT NULL LOOP
        cur := (s.run).metrics -> 'live';
        prev := (s.prev).metrics -> 'live';
        out := out || CASE WHEN html THEN '<h2>' || wval._html(s.strategy_id) || '</h2>'
                           ELSE E'\n## ' || s.strategy_id || E'\n' END;
        out := out || wval._live_table(html, ARRAY['item', 'value'], jsonb_build_array(
            jsonb_build_array('stage', coalesce(s.stage, 'not deployed')),
            jsonb_build_array('run', (s.run).run_id::text || ' as of ' || (s.run).as_of),
            jsonb_build_array('status', upper((s.run).status)),
            jsonb_build_array('policy version', coalesce((s.run).policy_version::text, 'none')),
            jsonb_build_array('live ruleset hash', coalesce((s.run).ruleset_hash, 'none')),
            jsonb_build_array('decay', wval._fmt(cur->'decay') ||
                CASE WHEN cur->>'backtest_run_id' IS NULL THEN ' (no backtest run)'
                     ELSE format(' (realized Sharpe over %s days / backtest Sharpe %s of run %s)',
                                 (SELECT max(k::integer) FROM jsonb_object_keys(cur->'windows') k),
                                 wval._fmt(cur->'backtest_sharpe'), cur->>'backtest_run_id') END),
            jsonb_build_array('demotion',
                CASE WHEN (s.candidate).candidate_id IS NULL THEN 'not a candidate'
                     ELSE format('flagged %s (%s; %s failing run%s in a row, demote_after %s; breached: %s)%s',
                                 (s.candidate).as_of, (s.candidate).trigger, (s.candidate).consecutive_runs,
                                 CASE WHEN (s.candidate).consecutive_runs = 1 THEN '' ELSE 's' END,
                                 (s.candidate).demote_after,
                                 (SELECT string_agg(b->>'check', ', ') FROM jsonb_array_elements((s.candidate).breached) b),
                                 CASE WHEN (s.decision).deployment_id IS NULL
                                      THEN ' - open: nobody has decided yet (wval_set_stage)'
                                      ELSE format(' - decided %s by %s: %s to %s (%s)',
                                                  to_char((s.decision).recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'),
                                                  (s.decision).actor, (s.decision).change, (s.decision).stage,
                                                  (s.decision).reason) END) END),
            jsonb_build_array('previous report', coalesce(((s.prev).as_of)::text || ', status ' || upper((s.prev).status),
                                                          'none'))));

        -- windows with the previous report's values
        wins := ARRAY(SELECT k FROM jsonb_object_keys(cur->'windows') k ORDER BY k::integer);
        SELECT jsonb_agg(jsonb_build_array(
                   k || ' days', cur #>> ARRAY['windows', k, 'n_obs'],
                   wval._fmt(cur #> ARRAY['windows', k, 'sharpe']),
                   wval._fmt(cur #> ARRAY['windows', k, 'max_drawdown']),
                   wval._fmt(cur #> ARRAY['windows', k, 'es_p025']),
                   CASE WHEN prev IS NULL THEN 'n/a'
                        ELSE wval._fmt(prev #> ARRAY['windows', k, 'sharpe']) || ' / ' ||
                             wval._fmt(prev #> ARRAY['windows', k, 'max_drawdown']) || ' / ' ||
                             wval._fmt(prev #> ARRAY['windows', k, 'es_p025']) END) ORDER BY o)
          INTO rows
        FROM unnest(wins) WITH ORDINALITY u(k, o);
        out := out || CASE WHEN html THEN '<h3>Windows</h3>' ELSE E'\n### Windows\n' END;
        out := out || wval._live_table(html, ARRAY['window', 'observations', 'sharpe', 'max drawdown', 'ES 97.5%',
                                                   'previous report (sharpe / max drawdown / ES)'], rows);

        -- check outcomes, failures first
        SELECT jsonb_agg(jsonb_build_array(e.key, e.value->>'status', e.value->>'severity', e.value->>'owner',
                                           wval._fmt(e.value->'details'->'value'), wval._threshold(e.value->'details'),
                                           e.value->>'reason_code', e.value->>'reason',
                                           coalesce((s.prev).results #>> ARRAY[e.key, 'status'], 'n/a'))
                         ORDER BY CASE e.value->>'status' WHEN 'fail' THEN 0 WHEN 'warn' THEN 1 ELSE 2 END, e.key)
          INTO rows
        FROM jsonb_each((s.run).results) e;
        out := out || CASE WHEN html THEN '<h3>Checks</h3>' ELSE E'\n### Checks\n' END;
        out := out || wval._live_table(html, ARRAY['check', 'status', 'severity', 'owner', 'value', 'threshold',
                                                   'reason code', 'reason', 'previous status'], coalesce(rows, '[]'));

        IF html THEN
            -- charts over the longest window, from the returns that count now
            SELECT array_agg(q.day ORDER BY q.day), array_agg(q.eq ORDER BY q.day),
                   array_agg(q.eq / q.peak - 1 ORDER BY q.day),
                   array_agg(q.day ORDER BY q.day) FILTER (WHERE q.rs IS NOT NULL),
                   array_agg(q.rs ORDER BY q.day) FILTER (WHERE q.rs IS NOT NULL)
              INTO days, equity, dd, rs_days, rs
            FROM (SELECT z.day, z.eq, max(z.eq) OVER (ORDER BY z.day) AS peak, z.rs
                  FROM (SELECT c.day, exp(sum(ln(1 + c.ret)) OVER (ORDER BY c.day)) AS eq,
                               CASE WHEN count(*) OVER r20 = 20
                                    THEN avg(c.ret) OVER r20 / nullif(stddev_samp(c.ret) OVER r20, 0) * sqrt(252) END AS rs
                        FROM wval.live_returns_current c
                        WHERE c.world_id = p_world AND c.strategy_id = s.strategy_id
                          AND c.day > (s.run).as_of - wins[cardinality(wins)]::integer AND c.day <= (s.run).as_of
                        WINDOW r20 AS (ORDER BY c.day ROWS 19 PRECEDING)) z) q;
            out := out || '<h3>Charts</h3>'::text
                       || wval._svg_line(format('Equity curve (%s days)', wins[cardinality(wins)]), days, equity, '#1f5fa8')
                       || wval._svg_line('Drawdown', days, dd, '#b00020')
                       || wval._svg_line('Rolling Sharpe (20 observations, annualised)', rs_days, rs, '#2e7d32');
        END IF;
    END LOOP;

    IF html THEN
        out := out || '</body></html>'::text;
    END IF;
    RETURN array_to_string(out, E'\n');
END
$$;
COMMENT ON FUNCTION public.wval_live_report(text, date, text) IS 'the live monitoring report of a world as of a day (markdown or html): per strategy its latest live run up to that day with the windows, decay, check outcomes, demotion status and the change since the previous live run; html adds inline SVG charts (equity curve, drawdown, rolling Sharpe)';

------------------------------------------------------------------------------
-- pg_dump and privileges
------------------------------------------------------------------------------

SELECT pg_catalog.pg_extension_config_dump('wval.live_returns', '');
SELECT pg_catalog.pg_extension_config_dump('wval.live_returns_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('wval.deployments', '');
SELECT pg_catalog.pg_extension_config_dump('wval.deployments_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('wval.demotion_candidates', '');
SELECT pg_catalog.pg_extension_config_dump('wval.demotion_candidates_id_seq', '');

GRANT SELECT ON wval.live_returns, wval.live_returns_current, wval.deployments, wval.current_stage,
      wval.demotion_candidates, wval.open_demotion_candidates
   TO wval_analyst;
GRANT EXECUTE ON FUNCTION public.wval_live_report(text, date, text) TO wval_analyst;
GRANT EXECUTE ON FUNCTION public.wval_record_live_returns(text, text, date[], float8[], text),
      public.wval_live_run(text, text, date), public.wval_live_run_all(date)
   TO wval_producer;
GRANT EXECUTE ON FUNCTION public.wval_set_stage(text, text, text, text, text) TO wval_validator;
GRANT EXECUTE ON FUNCTION public.wval_schedule_live_monitoring(text) TO wval_admin;

-- source: src/diff.sql
-- diff.sql: policy diff and the impact gate (spec operations.md, "Policy diff
-- and regression sets"), next to diff.c.  See docs/policy-change.md.

------------------------------------------------------------------------------
-- The replay (C, diff.c)
------------------------------------------------------------------------------

CREATE FUNCTION wval._policy_diff(world_id text, old_policy jsonb, new_policy jsonb, stage text,
                                  since timestamptz, until timestamptz, dedupe text,
                                  fail_closed boolean, old_version integer, new_version integer)
RETURNS jsonb
    AS 'MODULE_PATHNAME', 'wval_policy_diff_history' LANGUAGE C STABLE;
COMMENT ON FUNCTION wval._policy_diff(text, jsonb, jsonb, text, timestamptz, timestamptz, text, boolean, integer, integer) IS 'replays a world''s stored single runs of a stage (created within [since, until], not unvalidated; the latest per strategy when dedupe = strategy) under two policies through one cursor; the diff report';

CREATE FUNCTION wval._scenario_outcomes(policy jsonb, runs jsonb, stage text, fail_closed boolean) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'wval_scenario_outcomes' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._scenario_outcomes(jsonb, jsonb, text, boolean) IS 'status and recommended stage of each run given in the scenario shape, the policy materialised once: [{run_id, status, recommended_stage}]';

-- wval._policy_doc(world, version): a published policy document, WV010 when
-- the version does not exist.
CREATE FUNCTION wval._policy_doc(p_world_id text, p_version integer) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    doc jsonb;
BEGIN
    SELECT pv.policy INTO doc FROM wval.policy_versions pv
    WHERE pv.world_id = p_world_id AND pv.version = p_version;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'policy version % of world "%" does not exist', coalesce(p_version::text, 'null'), p_world_id
            USING ERRCODE = 'WV010',
                  DETAIL = format('version is %s.', coalesce(p_version::text, 'null')),
                  HINT = 'See wval.policy_versions for the published versions.';
    END IF;
    RETURN doc;
END
$$;
COMMENT ON FUNCTION wval._policy_doc(text, integer) IS 'the document of a published policy version; WV010 when it does not exist';

------------------------------------------------------------------------------
-- wval_policy_diff
------------------------------------------------------------------------------

CREATE FUNCTION public.wval_policy_diff(world_id text, old_version integer, new_version integer,
                                        stage text DEFAULT 'backtest',
                                        since timestamptz DEFAULT now() - interval '12 months',
                                        until timestamptz DEFAULT now(),
                                        dedupe text DEFAULT 'strategy')
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    w wval.worlds := wval._world(world_id);
BEGIN
    RETURN wval._policy_diff(w.world_id, wval._policy_doc(w.world_id, old_version),
                             wval._policy_doc(w.world_id, new_version), stage, since, until, dedupe,
                             wval._fail_closed(w), old_version, new_version);
END
$$;
COMMENT ON FUNCTION public.wval_policy_diff(text, integer, integer, text, timestamptz, timestamptz, text) IS 'replays the world''s stored runs of a stage under two published policy versions with the C engine: {old_policy_version, new_policy_version, old_ruleset_hash, new_ruleset_hash, total_strategies, strategies_affected, selection_changes, stage_changes, status_changes, rule_status_changes, impact_ratio, diffs, top_offenders} (docs/policy-change.md)';

CREATE FUNCTION public.wval_policy_diff(world_id text, old_version integer, new_policy jsonb,
                                        stage text DEFAULT 'backtest',
                                        since timestamptz DEFAULT now() - interval '12 months',
                                        until timestamptz DEFAULT now(),
                                        dedupe text DEFAULT 'strategy')
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    w wval.worlds := wval._world(world_id);
BEGIN
    RETURN wval._policy_diff(w.world_id, wval._policy_doc(w.world_id, old_version), new_policy, stage,
                             since, until, dedupe, wval._fail_closed(w), old_version, NULL);
END
$$;
COMMENT ON FUNCTION public.wval_policy_diff(text, integer, jsonb, text, timestamptz, timestamptz, text) IS 'the policy diff of a published version against a candidate policy document (validated like wval_policy_publish, WV002); new_policy_version is null';

CREATE FUNCTION public.wval_policy_diff(old_policy jsonb, new_policy jsonb, runs jsonb, stage text DEFAULT 'backtest')
RETURNS jsonb
    AS 'MODULE_PATHNAME', 'wval_policy_diff_runs' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION public.wval_policy_diff(jsonb, jsonb, jsonb, text) IS 'the policy diff of two policy documents over runs given as JSON, in the scenario files'' shape [{world_id, strategy_id, run_id, metrics}] (optionally context.data_as_of, context.baseline_metrics)';

------------------------------------------------------------------------------
-- The impact gate
------------------------------------------------------------------------------

-- wval._check_impact_ratio(x): the gate threshold, 22023 unless 0 < x <= 1.
CREATE FUNCTION wval._check_impact_ratio(p_ratio float8) RETURNS float8
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_ratio IS NULL OR NOT (p_ratio > 0 AND p_ratio <= 1) THEN
        RAISE EXCEPTION 'invalid value for "fail_impact_ratio"' USING ERRCODE = '22023',
            DETAIL = format('fail_impact_ratio is %s.', coalesce(p_ratio::text, 'null')),
            HINT = 'Pass a share of strategies greater than 0 and at most 1, e.g. 0.05.';
    END IF;
    RETURN p_ratio;
END
$$;
COMMENT ON FUNCTION wval._check_impact_ratio(float8) IS 'checks an impact gate threshold (0 < x <= 1; 22023 otherwise)';

-- wval._impact_threshold(world): the world's gate threshold,
-- settings.fail_impact_ratio when it is a valid share, else 0.05.
CREATE FUNCTION wval._impact_threshold(w wval.worlds) RETURNS float8
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(w.settings -> 'fail_impact_ratio') = 'number'
                     AND (w.settings ->> 'fail_impact_ratio')::float8 > 0
                     AND (w.settings ->> 'fail_impact_ratio')::float8 <= 1
                THEN (w.settings ->> 'fail_impact_ratio')::float8 ELSE 0.05 END
$$;
COMMENT ON FUNCTION wval._impact_threshold(wval.worlds) IS 'the impact gate threshold of a world: settings.fail_impact_ratio (0 < x <= 1), default 0.05';

-- wval._impact_event(world, data, discriminator): emits
-- impact_threshold_exceeded (bus.md: world, versions, impact ratio).
CREATE FUNCTION wval._impact_event(p_world_id text, p_data jsonb, p_discriminator text) RETURNS bigint
LANGUAGE sql SET search_path = pg_catalog, wval, pg_temp AS $$
    SELECT wval._emit('impact_threshold_exceeded', p_world_id,
                      format('v%s..%s', coalesce(p_data ->> 'old_policy_version', '?'),
                             coalesce('v' || (p_data ->> 'new_policy_version'), 'candidate')),
                      format('impact_threshold_exceeded:%s:v%s..%s:%s', coalesce(p_world_id, '-'),
                             coalesce(p_data ->> 'old_policy_version', '?'),
                             coalesce('v' || (p_data ->> 'new_policy_version'), 'candidate'), p_discriminator),
                      p_data);
$$;
COMMENT ON FUNCTION wval._impact_event(text, jsonb, text) IS 'emits impact_threshold_exceeded for a gate breach (subject v<old>..v<new> or v<old>..candidate)';

-- wval._gate(report, world, threshold, raise, stage): decides the gate on a
-- diff report.  At or above the threshold it raises WV008 (raise => true;
-- the aborted transaction keeps no event) or emits
-- impact_threshold_exceeded and returns the report (raise => false).
CREATE FUNCTION wval._gate(p_report jsonb, p_world_id text, p_threshold float8, p_raise boolean, p_stage text)
RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    ratio float8 := (p_report ->> 'impact_ratio')::float8;
    breached boolean;
    offenders text;
BEGIN
    PERFORM wval._check_impact_ratio(p_threshold);
    breached := ratio >= p_threshold;
    IF breached AND coalesce(p_raise, true) THEN
        SELECT string_agg(format('%s (%s, %s -> %s)', o ->> 'strategy_id', o ->> 'label', o ->> 'old_status',
                                 o ->> 'new_status'), ', ' ORDER BY (o ->> 'rank')::int)
        INTO offenders
        FROM jsonb_array_elements(p_report -> 'top_offenders') o
        WHERE (o ->> 'rank')::int <= 3;
        RAISE EXCEPTION 'policy change has an impact ratio of %, at or above the gate %', ratio, p_threshold
            USING ERRCODE = 'WV008',
                  DETAIL = format('world %s, stage %s, version %s -> %s: %s of %s strategies affected (%s status, %s stage, %s selection changes, %s rule flips); top offenders: %s.',
                                  coalesce(quote_literal(p_world_id), 'none'), p_stage,
                                  coalesce(p_report ->> 'old_policy_version', 'document'),
                                  coalesce(p_report ->> 'new_policy_version', 'candidate'),
                                  p_report ->> 'strategies_affected', p_report ->> 'total_strategies',
                                  p_report ->> 'status_changes', p_report ->> 'stage_changes',
                                  p_report ->> 'selection_changes', p_report ->> 'rule_status_changes',
                                  coalesce(offenders, 'none')),
                  HINT = 'Review the report of wval_policy_diff(), roll new checks out with "mode": "warn" first, or activate with force => true and a reason (recorded). Call the gate with raise_on_breach => false to get the report and the impact_threshold_exceeded event instead of this error.';
    END IF;
    IF breached THEN
        IF p_world_id IS NOT NULL THEN
            PERFORM wval._require_world_access(p_world_id, 'write');   -- the event is a write
        END IF;
        PERFORM wval._impact_event(p_world_id,
                                   jsonb_build_object('world_id', p_world_id, 'source', 'gate', 'stage', p_stage,
                                                      'old_policy_version', p_report -> 'old_policy_version',
                                                      'new_policy_version', p_report -> 'new_policy_version',
                                                      'old_ruleset_hash', p_report -> 'old_ruleset_hash',
                                                      'new_ruleset_hash', p_report -> 'new_ruleset_hash',
                                                      'impact_ratio', p_report -> 'impact_ratio',
                                                      'fail_impact_ratio', p_threshold,
                                                      'strategies_affected', p_report -> 'strategies_affected',
                                                      'total_strategies', p_report -> 'total_strategies'),
                                   'gate-' || gen_random_uuid());
    END IF;
    RETURN p_report || jsonb_build_object('gate', jsonb_build_object('fail_impact_ratio', p_threshold,
                                                                     'breached', breached));
END
$$;
COMMENT ON FUNCTION wval._gate(jsonb, text, float8, boolean, text) IS 'decides the impact gate on a diff report: WV008 at or above the threshold, or (raise => false) the impact_threshold_exceeded event and the report with gate.breached';

CREATE FUNCTION public.wval_policy_diff_gate(world_id text, old_version integer, new_version integer,
                                             stage text DEFAULT 'backtest',
                                             since timestamptz DEFAULT now() - interval '12 months',
                                             until timestamptz DEFAULT now(),
                                             dedupe text DEFAULT 'strategy',
                                             fail_impact_ratio float8 DEFAULT 0.05,
                                             raise_on_breach boolean DEFAULT true)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
BEGIN
    PERFORM wval._check_impact_ratio(fail_impact_ratio);
    RETURN wval._gate(public.wval_policy_diff(world_id, old_version, new_version, stage, since, until, dedupe),
                      world_id, fail_impact_ratio, raise_on_breach, stage);
END
$$;
COMMENT ON FUNCTION public.wval_policy_diff_gate(text, integer, integer, text, timestamptz, timestamptz, text, float8, boolean) IS 'the policy diff with the impact gate: WV008 when impact_ratio >= fail_impact_ratio; with raise_on_breach => false it emits impact_threshold_exceeded instead and returns the report with gate.breached (for jobs and CI)';

CREATE FUNCTION public.wval_policy_diff_gate(world_id text, old_version integer, new_policy jsonb,
                                             stage text DEFAULT 'backtest',
                                             since timestamptz DEFAULT now() - interval '12 months',
                                             until timestamptz DEFAULT now(),
                                             dedupe text DEFAULT 'strategy',
                                             fail_impact_ratio float8 DEFAULT 0.05,
                                             raise_on_breach boolean DEFAULT true)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
BEGIN
    PERFORM wval._check_impact_ratio(fail_impact_ratio);
    RETURN wval._gate(public.wval_policy_diff(world_id, old_version, new_policy, stage, since, until, dedupe),
                      world_id, fail_impact_ratio, raise_on_breach, stage);
END
$$;
COMMENT ON FUNCTION public.wval_policy_diff_gate(text, integer, jsonb, text, timestamptz, timestamptz, text, float8, boolean) IS 'the impact gate for a candidate policy document against a published version (see the version overload)';

CREATE FUNCTION public.wval_policy_diff_gate(old_policy jsonb, new_policy jsonb, runs jsonb,
                                             stage text DEFAULT 'backtest',
                                             fail_impact_ratio float8 DEFAULT 0.05,
                                             raise_on_breach boolean DEFAULT true)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
BEGIN
    PERFORM wval._check_impact_ratio(fail_impact_ratio);
    RETURN wval._gate(public.wval_policy_diff(old_policy, new_policy, runs, stage),
                      NULL, fail_impact_ratio, raise_on_breach, stage);
END
$$;
COMMENT ON FUNCTION public.wval_policy_diff_gate(jsonb, jsonb, jsonb, text, float8, boolean) IS 'the impact gate over runs given as JSON (CI): WV008 at or above fail_impact_ratio, or the event and the report with raise_on_breach => false';

-- wval._activation_impact(world, old_version, new_version): the diff of a
-- version change over every stage with the defaults of wval_policy_diff
-- (12 months, latest run per strategy), and whether the world's gate holds.
CREATE FUNCTION wval._activation_impact(w wval.worlds, p_old integer, p_new integer) RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    old_doc jsonb := wval._policy_doc(w.world_id, p_old);
    new_doc jsonb := wval._policy_doc(w.world_id, p_new);
    threshold float8 := wval._impact_threshold(w);
    stages jsonb := '{}';
    st text;
    rep jsonb;
    worst float8 := 0;
    worst_stage text;
BEGIN
    FOREACH st IN ARRAY ARRAY['backtest', 'paper', 'shadow', 'live'] LOOP
        rep := wval._policy_diff(w.world_id, old_doc, new_doc, st, now() - interval '12 months', now(),
                                 'strategy', wval._fail_closed(w), p_old, p_new);
        stages := stages || jsonb_build_object(st, jsonb_build_object(
            'impact_ratio', rep -> 'impact_ratio', 'total_strategies', rep -> 'total_strategies',
            'strategies_affected', rep -> 'strategies_affected', 'status_changes', rep -> 'status_changes',
            'stage_changes', rep -> 'stage_changes', 'selection_changes', rep -> 'selection_changes',
            'rule_status_changes', rep -> 'rule_status_changes',
            'old_ruleset_hash', rep -> 'old_ruleset_hash', 'new_ruleset_hash', rep -> 'new_ruleset_hash',
            'top_offenders', rep -> 'top_offenders'));
        IF (rep ->> 'impact_ratio')::float8 > worst OR worst_stage IS NULL THEN
            worst := (rep ->> 'impact_ratio')::float8;
            worst_stage := st;
        END IF;
    END LOOP;
    RETURN jsonb_build_object('old_policy_version', p_old, 'new_policy_version', p_new,
                              'fail_impact_ratio', threshold, 'impact_ratio', worst, 'stage', worst_stage,
                              'breached', worst >= threshold, 'stages', stages);
END
$$;
COMMENT ON FUNCTION wval._activation_impact(wval.worlds, integer, integer) IS 'the impact of a version change in a world over every stage (12 months, latest run per strategy) against the world''s gate threshold';

GRANT EXECUTE ON FUNCTION public.wval_policy_diff(text, integer, integer, text, timestamptz, timestamptz, text),
      public.wval_policy_diff(text, integer, jsonb, text, timestamptz, timestamptz, text),
      public.wval_policy_diff(jsonb, jsonb, jsonb, text)
   TO wval_analyst;
GRANT EXECUTE ON FUNCTION public.wval_policy_diff_gate(text, integer, integer, text, timestamptz, timestamptz, text, float8, boolean),
      public.wval_policy_diff_gate(text, integer, jsonb, text, timestamptz, timestamptz, text, float8, boolean),
      public.wval_policy_diff_gate(jsonb, jsonb, jsonb, text, float8, boolean)
   TO wval_validator;

-- source: src/scenarios.sql
-- scenarios.sql: the published scenario sets (policy-regression fixtures) and
-- the sample policy they were published with (spec operations.md).
-- The Makefile appends the four sets from data/scenarios/*.json after this file.

CREATE TABLE wval.scenario_cases (
    set_name        text NOT NULL,
    case_id         text NOT NULL,
    strategy_id     text NOT NULL,
    metrics         jsonb NOT NULL CHECK (jsonb_typeof(metrics) = 'object'),
    expected_status text NOT NULL CHECK (expected_status IN ('pass', 'warn', 'fail')),
    expected_stage  text CHECK (expected_stage IN ('backtest_only', 'paper_only', 'paper_ok_live_candidate')),
    note            text,
    shipped         boolean NOT NULL DEFAULT false,
    added_by        text NOT NULL DEFAULT wval._invoker(),
    added_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (set_name, case_id)
);
COMMENT ON TABLE wval.scenario_cases IS 'policy-regression fixtures: the four published sets (good, borderline, bad, known_bad; shipped = true, expected outcomes under the sample policy) and a site''s own cases';
COMMENT ON COLUMN wval.scenario_cases.expected_status IS 'the status the case must get (under the sample policy for shipped cases)';
COMMENT ON COLUMN wval.scenario_cases.shipped IS 'true for cases that ship with wval (re-created by CREATE EXTENSION, not dumped)';

CREATE TABLE wval.sample_policies (
    name   text PRIMARY KEY,
    policy jsonb NOT NULL
);
COMMENT ON TABLE wval.sample_policies IS 'policy documents that ship with wval: "sample" is the policy the scenario sets were published with';

-- wval._load_scenario_set(set, runs, expected): loads a published set given
-- in the reference's evaluation-run JSON shape, with the expected outcome
-- of each strategy.
CREATE FUNCTION wval._load_scenario_set(p_set text, p_runs jsonb, p_expected jsonb) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    INSERT INTO wval.scenario_cases (set_name, case_id, strategy_id, metrics, expected_status,
                                     expected_stage, note, shipped, added_by)
    SELECT p_set, r->>'run_id', r->>'strategy_id', r->'metrics',
           p_expected -> (r->>'strategy_id') ->> 0, p_expected -> (r->>'strategy_id') ->> 1,
           p_expected -> (r->>'strategy_id') ->> 2, true, 'wval'
    FROM jsonb_array_elements(p_runs) r;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
COMMENT ON FUNCTION wval._load_scenario_set(text, jsonb, jsonb) IS 'loads a shipped scenario set (install script only)';

-- Expected outcomes under the sample policy, stage backtest
-- (data/scenarios/README.md): strategy -> [status, recommended stage, note].
CREATE TABLE wval._scenario_expectations (set_name text PRIMARY KEY, expected jsonb NOT NULL);
INSERT INTO wval._scenario_expectations VALUES
('good', '{"good_set_1": ["pass", "paper_only", null],
           "good_set_2": ["pass", "paper_only", null],
           "good_set_3": ["pass", "backtest_only", "paper sharpe_min 0.8 > 0.7"]}'),
('borderline', '{"borderline_floor": ["pass", "backtest_only", "sits exactly on every backtest threshold"],
                 "borderline_hysteresis_blocked": ["pass", "backtest_only", "sharpe 0.59: stopped later by selection hysteresis enter 0.6"],
                 "borderline_close": ["pass", "backtest_only", "just inside every backtest threshold"]}'),
('bad', '{"good_stable_1": ["pass", "paper_only", "control"],
          "good_stable_2": ["pass", "paper_only", "control"],
          "bad_short_history": ["warn", "backtest_only", "sample is soft"],
          "bad_high_drawdown": ["fail", "backtest_only", null],
          "bad_low_sharpe": ["fail", "backtest_only", null],
          "bad_liquidity_risk": ["fail", "backtest_only", null]}'),
('known_bad', '{"known_bad_short_history_01": ["warn", "backtest_only", "sample is soft"],
                "known_bad_short_history_02": ["warn", "backtest_only", "sample is soft"],
                "known_bad_low_trades_01": ["warn", "backtest_only", "sample is soft"],
                "known_bad_low_sharpe_01": ["fail", "backtest_only", null],
                "known_bad_low_sharpe_02": ["fail", "backtest_only", null],
                "known_bad_extreme_drawdown_01": ["fail", "backtest_only", null],
                "known_bad_extreme_drawdown_02": ["fail", "backtest_only", null],
                "known_bad_low_gain_to_pain_01": ["fail", "backtest_only", null],
                "known_bad_low_gain_to_pain_02": ["fail", "backtest_only", null],
                "known_bad_liquidity_adv_01": ["fail", "backtest_only", null],
                "known_bad_liquidity_adv_02": ["fail", "backtest_only", null],
                "known_bad_liquidity_participation_01": ["fail", "backtest_only", null],
                "known_bad_liquidity_participation_02": ["fail", "backtest_only", null],
                "known_bad_low_dsr_01": ["warn", "backtest_only", "robustness is soft"],
                "known_bad_low_dsr_02": ["warn", "backtest_only", "robustness is soft"],
                "known_bad_compound_01": ["fail", "backtest_only", null],
                "known_bad_compound_02": ["fail", "backtest_only", null],
                "known_bad_compound_03": ["fail", "backtest_only", null],
                "known_bad_compound_04": ["fail", "backtest_only", null],
                "known_bad_compound_05": ["fail", "backtest_only", null]}');

-- shipped rows are re-created by CREATE EXTENSION; only a site's own cases are dumped
SELECT pg_catalog.pg_extension_config_dump('wval.scenario_cases', 'WHERE NOT shipped');

GRANT SELECT ON wval.scenario_cases, wval.sample_policies TO wval_analyst;

------------------------------------------------------------------------------
-- Scenario regression check (operations.md: "Scenario sets")
------------------------------------------------------------------------------

-- wval._scenario_check(policy, set, stage, fail_closed): the check of one
-- set under a policy.  Gates: good -> every case passes; known_bad -> pass
-- ratio <= 5 %; bad -> fail ratio >= 50 %; borderline -> mixed (the policy
-- does not decide the whole set one way, 0 < pass ratio < 1, unless that is
-- what the cases expect); any other set -> every case gets its expected
-- status.
CREATE FUNCTION wval._scenario_check(p_policy jsonb, p_set text, p_stage text, p_fail_closed boolean)
RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    runs jsonb;
    n integer;
    res jsonb;
    npass integer;
    nwarn integer;
    nfail integer;
    off jsonb;
    pass_ratio float8;
    fail_ratio float8;
    rule text;
    ok boolean;
BEGIN
    PERFORM wval._one_of('stage', p_stage, ARRAY['backtest', 'paper', 'shadow', 'live']);
    SELECT jsonb_agg(jsonb_build_object('strategy_id', c.strategy_id, 'run_id', c.case_id, 'metrics', c.metrics)
                     ORDER BY c.case_id), count(*)
    INTO runs, n
    FROM wval.scenario_cases c WHERE c.set_name = p_set;
    IF n = 0 THEN
        RAISE EXCEPTION 'scenario set "%" does not exist', p_set
            USING ERRCODE = 'WV010',
                  DETAIL = format('set_name is %s.', coalesce(quote_literal(p_set), 'null')),
                  HINT = 'The shipped sets are good, borderline, bad and known_bad; add your own cases with wval_scenario_add().';
    END IF;
    WITH o AS (
        SELECT x ->> 'run_id' AS case_id, x ->> 'status' AS status, x ->> 'recommended_stage' AS stage
        FROM jsonb_array_elements(wval._scenario_outcomes(p_policy, runs, p_stage, p_fail_closed)) x)
    SELECT count(*) FILTER (WHERE o.status = 'pass'), count(*) FILTER (WHERE o.status = 'warn'),
           count(*) FILTER (WHERE o.status = 'fail'),
           coalesce(jsonb_agg(jsonb_build_object('case_id', c.case_id, 'strategy_id', c.strategy_id,
                                                 'expected_status', c.expected_status, 'status', o.status,
                                                 'expected_stage', c.expected_stage, 'recommended_stage', o.stage,
                                                 'note', c.note)
                              ORDER BY c.case_id) FILTER (WHERE o.status <> c.expected_status), '[]')
    INTO npass, nwarn, nfail, off
    FROM o JOIN wval.scenario_cases c ON c.set_name = p_set AND c.case_id = o.case_id;

    pass_ratio := npass::float8 / n;
    fail_ratio := nfail::float8 / n;
    CASE p_set
        WHEN 'good' THEN
            rule := 'every case passes';
            ok := npass = n;
        WHEN 'known_bad' THEN
            rule := 'pass ratio <= 0.05';
            ok := pass_ratio <= 0.05;
        WHEN 'bad' THEN
            rule := 'fail ratio >= 0.5';
            ok := fail_ratio >= 0.5;
        WHEN 'borderline' THEN
            rule := 'mixed: 0 < pass ratio < 1, or every case gets its expected status';
            ok := (npass > 0 AND npass < n) OR jsonb_array_length(off) = 0;
        ELSE
            rule := 'every case gets its expected status';
            ok := jsonb_array_length(off) = 0;
    END CASE;
    RETURN jsonb_build_object('set_name', p_set, 'stage', p_stage, 'cases', n,
                              'pass', npass, 'warn', nwarn, 'fail', nfail,
                              'pass_ratio', pass_ratio, 'warn_ratio', nwarn::float8 / n, 'fail_ratio', fail_ratio,
                              'off_expected', off, 'gate', rule, 'ok', ok);
END
$$;
COMMENT ON FUNCTION wval._scenario_check(jsonb, text, text, boolean) IS 'the scenario regression check of one set under a policy (optionally fail-closed)';

CREATE FUNCTION public.wval_scenario_check(policy jsonb, set_name text, stage text DEFAULT 'backtest')
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
    SELECT wval._scenario_check(policy, set_name, stage, false);
$$;
COMMENT ON FUNCTION public.wval_scenario_check(jsonb, text, text) IS 'evaluates every case of a scenario set under a policy: {set_name, stage, cases, pass, warn, fail, pass_ratio, warn_ratio, fail_ratio, off_expected (cases that did not get their expected status), gate, ok}; gates: good all pass, known_bad pass ratio <= 5 %, bad fail ratio >= 50 %, borderline mixed, site sets as expected';

CREATE FUNCTION public.wval_scenario_add(set_name text, case_id text, metrics jsonb, expected_status text,
                                         note text DEFAULT NULL)
RETURNS wval.scenario_cases
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    p_set text := wval._ident('set_name', set_name);
    p_case text := wval._ident('case_id', case_id);
    c wval.scenario_cases;
BEGIN
    PERFORM wval._one_of('expected_status', expected_status, ARRAY['pass', 'warn', 'fail']);
    IF metrics IS NULL OR jsonb_typeof(metrics) <> 'object' THEN
        RAISE EXCEPTION '"metrics" must be a JSON object' USING ERRCODE = 'WV001',
            DETAIL = format('metrics is %s.', coalesce(metrics::text, 'null')),
            HINT = 'Pass metric blocks such as {"returns": {"sharpe": 0.4}, "sample": {...}}.';
    END IF;
    PERFORM public.wval_check('{}', metrics);     -- the metric input rules (WV001)
    INSERT INTO wval.scenario_cases AS sc (set_name, case_id, strategy_id, metrics, expected_status, note, shipped, added_by)
    VALUES (p_set, p_case, p_case, metrics, expected_status, note, false, wval._invoker())
    ON CONFLICT ON CONSTRAINT scenario_cases_pkey DO NOTHING
    RETURNING * INTO c;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'scenario case "%" already exists in set "%"', p_case, p_set
            USING ERRCODE = '22023',
                  DETAIL = format('case_id is %L.', p_case),
                  HINT = 'Case ids are unique per set (the shipped cases cannot be replaced); pick another case_id.';
    END IF;
    PERFORM wval._audit(NULL, 'scenario_case_added', wval._invoker(),
                        jsonb_build_object('set_name', p_set, 'case_id', p_case, 'expected_status', expected_status));
    RETURN c;
END
$$;
COMMENT ON FUNCTION public.wval_scenario_add(text, text, jsonb, text, text) IS 'adds a site''s own regression case (metrics in the scenario shape, the status it must get) to a scenario set; shipped cases cannot be replaced; audited';

------------------------------------------------------------------------------
-- The weekly regression (operations.md)
------------------------------------------------------------------------------

CREATE SEQUENCE wval.regression_reports_id_seq;
CREATE TABLE wval.regression_reports (
    report_id        bigint NOT NULL DEFAULT nextval('wval.regression_reports_id_seq'),
    world_id         text NOT NULL,
    policy_version   integer NOT NULL,
    previous_version integer,
    scenarios        jsonb NOT NULL,
    impact           jsonb,
    breached         boolean NOT NULL,
    breaches         text[] NOT NULL DEFAULT '{}',
    created_by       text NOT NULL DEFAULT wval._invoker(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    chain_seq        bigint NOT NULL,
    prev_hash        text NOT NULL,
    row_hash         text NOT NULL,
    PRIMARY KEY (world_id, report_id)
);
ALTER SEQUENCE wval.regression_reports_id_seq OWNED BY wval.regression_reports.report_id;
COMMENT ON TABLE wval.regression_reports IS 'reports of the policy regression (wval_run_regression, weekly job wval:regression): scenario checks of the active policy and the impact of the active version against its predecessor; append-only, hash-chained';
COMMENT ON COLUMN wval.regression_reports.policy_version IS 'the active version that was checked';
COMMENT ON COLUMN wval.regression_reports.previous_version IS 'its predecessor (the version active before its latest activation); null when there is none';
COMMENT ON COLUMN wval.regression_reports.scenarios IS 'set_name -> wval_scenario_check report (stage backtest, the world''s fail-closed rule applied)';
COMMENT ON COLUMN wval.regression_reports.impact IS 'the diff of previous_version -> policy_version over every stage (12 months, latest run per strategy) with the world''s gate threshold; null without a predecessor';
COMMENT ON COLUMN wval.regression_reports.breaches IS 'what failed: scenario:<set> for a scenario gate, impact:<stage> for the impact gate';
SELECT wval._protect('wval.regression_reports', 'regression_reports');

CREATE FUNCTION public.wval_run_regression(world_id text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    w wval.worlds;
    act wval.policy_activations;
    doc jsonb;
    set_name text;
    scen jsonb;
    chk jsonb;
    impact jsonb;
    breaches text[];
    st text;
    rep wval.regression_reports;
    out jsonb := '[]';
BEGIN
    IF world_id IS NOT NULL THEN
        PERFORM wval._world(world_id);
        PERFORM wval._require_world_access(world_id, 'write');
    END IF;
    -- every world means every world the calling role may write (the reports are written)
    FOR w IN SELECT * FROM wval.worlds x
             WHERE (wval_run_regression.world_id IS NULL OR x.world_id = wval_run_regression.world_id)
               AND wval._world_access((SELECT oid FROM pg_roles WHERE rolname = wval._invoker()), x.world_id, 'write')
             ORDER BY x.world_id
    LOOP
        SELECT * INTO act FROM wval.policy_activations a WHERE a.world_id = w.world_id
        ORDER BY a.activation_id DESC LIMIT 1;
        CONTINUE WHEN NOT FOUND;
        doc := wval._policy_doc(w.world_id, act.version);
        scen := '{}';
        breaches := '{}';
        FOR set_name IN SELECT DISTINCT c.set_name FROM wval.scenario_cases c ORDER BY 1 LOOP
            chk := wval._scenario_check(doc, set_name, 'backtest', wval._fail_closed(w));
            scen := scen || jsonb_build_object(set_name, chk);
            IF NOT (chk ->> 'ok')::boolean THEN
                breaches := breaches || ('scenario:' || set_name);
            END IF;
        END LOOP;
        impact := NULL;
        IF act.previous_version IS NOT NULL AND act.previous_version <> act.version
           AND EXISTS (SELECT 1 FROM wval.policy_versions pv
                       WHERE pv.world_id = w.world_id AND pv.version = act.previous_version) THEN
            impact := wval._activation_impact(w, act.previous_version, act.version);
            FOR st IN SELECT s.key FROM jsonb_each(impact -> 'stages') s
                      WHERE (s.value ->> 'impact_ratio')::float8 >= (impact ->> 'fail_impact_ratio')::float8
                      ORDER BY array_position(ARRAY['backtest', 'paper', 'shadow', 'live'], s.key) LOOP
                breaches := breaches || ('impact:' || st);
            END LOOP;
        END IF;
        INSERT INTO wval.regression_reports (world_id, policy_version, previous_version, scenarios, impact,
                                             breached, breaches)
        VALUES (w.world_id, act.version, act.previous_version, scen, impact, cardinality(breaches) > 0, breaches)
        RETURNING * INTO rep;
        IF rep.breached THEN
            PERFORM wval._impact_event(w.world_id,
                                       jsonb_build_object('world_id', w.world_id, 'source', 'regression',
                                                          'report_id', rep.report_id, 'breaches', to_jsonb(breaches),
                                                          'old_policy_version', act.previous_version,
                                                          'new_policy_version', act.version,
                                                          'impact_ratio', impact -> 'impact_ratio',
                                                          'fail_impact_ratio', coalesce(impact -> 'fail_impact_ratio',
                                                                                        to_jsonb(wval._impact_threshold(w)))),
                                       'regression-' || rep.report_id);
        END IF;
        out := out || jsonb_build_object('world_id', w.world_id, 'report_id', rep.report_id,
                                         'policy_version', rep.policy_version, 'previous_version', rep.previous_version,
                                         'breached', rep.breached, 'breaches', to_jsonb(rep.breaches));
    END LOOP;
    RETURN out;
END
$$;
COMMENT ON FUNCTION public.wval_run_regression(text) IS 'the policy regression of one world (null: every world with an active policy): scenario checks of the active policy and the impact of the active version against its predecessor, stored in wval.regression_reports; a breach emits impact_threshold_exceeded; returns [{world_id, report_id, policy_version, previous_version, breached, breaches}]';

CREATE FUNCTION public.wval_schedule_regression(schedule text DEFAULT '0 6 * * 1') RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
BEGIN
    RETURN wval._cron_schedule('regression', schedule, 'SELECT public.wval_run_regression()');
END
$$;
COMMENT ON FUNCTION public.wval_schedule_regression(text) IS 'schedules (or reschedules) the pg_cron job wval:regression (default Mondays 06:00) that runs wval_run_regression(); WV010 with set-up instructions when pg_cron is missing';

SELECT pg_catalog.pg_extension_config_dump('wval.regression_reports', '');
SELECT pg_catalog.pg_extension_config_dump('wval.regression_reports_id_seq', '');

GRANT SELECT ON wval.regression_reports TO wval_analyst;
GRANT EXECUTE ON FUNCTION public.wval_scenario_check(jsonb, text, text) TO wval_analyst;
GRANT EXECUTE ON FUNCTION public.wval_scenario_add(text, text, jsonb, text, text),
      public.wval_run_regression(text)
   TO wval_validator;
GRANT EXECUTE ON FUNCTION public.wval_schedule_regression(text) TO wval_admin;

-- source: data/scenarios/*.json
INSERT INTO wval.sample_policies VALUES ('sample', $json${
  "validation_profiles": {
    "backtest": {
      "sample": {
        "min_effective_years": 2.0,
        "min_trades_total": 50
      },
      "performance": {
        "sharpe_min": 0.5,
        "max_dd_max": 0.25,
        "gain_to_pain_min": 1.0
      },
      "robustness": {
        "dsr_min": 0.15
      },
      "risk": {
        "adv_utilization_p95_max": 0.5,
        "participation_rate_p95_max": 0.4
      }
    },
    "paper": {
      "sample": {
        "min_effective_years": 3.0
      },
      "performance": {
        "sharpe_min": 0.8,
        "max_dd_max": 0.2,
        "gain_to_pain_min": 1.2
      },
      "robustness": {
        "dsr_min": 0.25
      }
    }
  },
  "default_profile_by_stage": {
    "backtest_only": "backtest",
    "paper_only": "paper"
  },
  "selection": {
    "top_k": {
      "metric": "sharpe",
      "k": 3
    },
    "correlation": {
      "max": 0.8
    },
    "hysteresis": {
      "metric": "sharpe",
      "enter": 0.6,
      "exit": 0.4
    }
  }
}$json$);
SELECT wval._load_scenario_set('good', $json$[
  {
    "world_id": "policy-diff",
    "strategy_id": "good_set_1",
    "run_id": "good-set-001",
    "metrics": {
      "returns": {
        "sharpe": 1.2,
        "max_drawdown": 0.12,
        "gain_to_pain_ratio": 1.8
      },
      "sample": {
        "effective_history_years": 5.0,
        "n_trades_total": 500
      },
      "risk": {
        "adv_utilization_p95": 0.1,
        "participation_rate_p95": 0.05
      },
      "robustness": {
        "deflated_sharpe_ratio": 0.8
      }
    }
  },
  {
    "world_id": "policy-diff",
    "strategy_id": "good_set_2",
    "run_id": "good-set-002",
    "metrics": {
      "returns": {
        "sharpe": 0.9,
        "max_drawdown": 0.18,
        "gain_to_pain_ratio": 1.4
      },
      "sample": {
        "effective_history_years": 3.5,
        "n_trades_total": 220
      },
      "risk": {
        "adv_utilization_p95": 0.2,
        "participation_rate_p95": 0.1
      },
      "robustness": {
        "deflated_sharpe_ratio": 0.5
      }
    }
  },
  {
    "world_id": "policy-diff",
    "strategy_id": "good_set_3",
    "run_id": "good-set-003",
    "metrics": {
      "returns": {
        "sharpe": 0.7,
        "max_drawdown": 0.2,
        "gain_to_pain_ratio": 1.2
      },
      "sample": {
        "effective_history_years": 2.5,
        "n_trades_total": 120
      },
      "risk": {
        "adv_utilization_p95": 0.3,
        "participation_rate_p95": 0.2
      },
      "robustness": {
        "deflated_sharpe_ratio": 0.2
      }
    }
  }
]
$json$, (SELECT expected FROM wval._scenario_expectations WHERE set_name = 'good'));
SELECT wval._load_scenario_set('borderline', $json$[
  {
    "world_id": "policy-diff",
    "strategy_id": "borderline_floor",
    "run_id": "borderline-set-001",
    "metrics": {
      "returns": {
        "sharpe": 0.6,
        "max_drawdown": 0.25,
        "gain_to_pain_ratio": 1.0
      },
      "sample": {
        "effective_history_years": 2.0,
        "n_trades_total": 50
      },
      "risk": {
        "adv_utilization_p95": 0.5,
        "participation_rate_p95": 0.4
      },
      "robustness": {
        "deflated_sharpe_ratio": 0.15
      }
    }
  },
  {
    "world_id": "policy-diff",
    "strategy_id": "borderline_hysteresis_blocked",
    "run_id": "borderline-set-002",
    "metrics": {
      "returns": {
        "sharpe": 0.59,
        "max_drawdown": 0.2,
        "gain_to_pain_ratio": 1.2
      },
      "sample": {
        "effective_history_years": 3.0,
        "n_trades_total": 100
      },
      "risk": {
        "adv_utilization_p95": 0.2,
        "participation_rate_p95": 0.1
      },
      "robustness": {
        "deflated_sharpe_ratio": 0.2
      }
    }
  },
  {
    "world_id": "policy-diff",
    "strategy_id": "borderline_close",
    "run_id": "borderline-set-003",
    "metrics": {
      "returns": {
        "sharpe": 0.61,
        "max_drawdown": 0.249,
        "gain_to_pain_ratio": 1.01
      },
      "sample": {
        "effective_history_years": 2.01,
        "n_trades_total": 55
      },
      "risk": {
        "adv_utilization_p95": 0.49,
        "participation_rate_p95": 0.39
      },
      "robustness": {
        "deflated_sharpe_ratio": 0.151
      }
    }
  }
]
$json$, (SELECT expected FROM wval._scenario_expectations WHERE set_name = 'borderline'));
SELECT wval._load_scenario_set('bad', $json$[
  {
    "world_id": "policy-diff",
    "strategy_id": "good_stable_1",
    "run_id": "bad-set-001",
    "metrics": {
      "returns": {
        "sharpe": 1.2,
        "max_drawdown": 0.12,
        "gain_to_pain_ratio": 1.8,
        "time_under_water_ratio": 0.2
      },
      "sample": {
        "effective_history_years": 5.0,
        "n_trades_total": 500,
        "n_trades_per_year": 100.0
      },
      "risk": {
        "adv_utilization_p95": 0.1,
        "participation_rate_p95": 0.05
      },
      "robustness": {
        "deflated_sharpe_ratio": 0.8,
        "sharpe_first_half": 1.1,
        "sharpe_second_half": 1.3
      },
      "diagnostics": {
        "returns_source": "explicit:strategy"
      }
    }
  },
  {
    "world_id": "policy-diff",
    "strategy_id": "good_stable_2",
    "run_id": "bad-set-002",
    "metrics": {
      "returns": {
        "sharpe": 0.9,
        "max_drawdown": 0.18,
        "gain_to_pain_ratio": 1.4,
        "time_under_water_ratio": 0.3
      },
      "sample": {
        "effective_history_years": 3.5,
        "n_trades_total": 220,
        "n_trades_per_year": 80.0
      },
      "risk": {
        "adv_utilization_p95": 0.2,
        "participation_rate_p95": 0.1
      },
      "robustness": {
        "deflated_sharpe_ratio": 0.5,
        "sharpe_first_half": 0.85,
        "sharpe_second_half": 0.95
      }
    }
  },
  {
    "world_id": "policy-diff",
    "strategy_id": "bad_short_history",
    "run_id": "bad-set-003",
    "metrics": {
      "returns": {
        "sharpe": 2.5,
        "max_drawdown": 0.05,
        "gain_to_pain_ratio": 3.0,
        "time_under_water_ratio": 0.1
      },
      "sample": {
        "effective_history_years": 0.5,
        "n_trades_total": 20,
        "n_trades_per_year": 40.0
      },
      "risk": {
        "adv_utilization_p95": 0.05,
        "participation_rate_p95": 0.02
      },
      "robustness": {
        "deflated_sharpe_ratio": 0.3,
        "sharpe_first_half": 2.8,
        "sharpe_second_half": 2.2
      }
    }
  },
  {
    "world_id": "policy-diff",
    "strategy_id": "bad_high_drawdown",
    "run_id": "bad-set-004",
    "metrics": {
      "returns": {
        "sharpe": 0.9,
        "max_drawdown": 0.45,
        "gain_to_pain_ratio": 1.2,
        "time_under_water_ratio": 0.6
      },
      "sample": {
        "effective_history_years": 3.0,
        "n_trades_total": 200,
        "n_trades_per_year": 67.0
      },
      "risk": {
        "adv_utilization_p95": 0.2,
        "participation_rate_p95": 0.1
      },
      "robustness": {
        "deflated_sharpe_ratio": 0.5,
        "sharpe_first_half": 1.2,
        "sharpe_second_half": 0.6
      }
    }
  },
  {
    "world_id": "policy-diff",
    "strategy_id": "bad_low_sharpe",
    "run_id": "bad-set-005",
    "metrics": {
      "returns": {
        "sharpe": 0.3,
        "max_drawdown": 0.2,
        "gain_to_pain_ratio": 1.1,
        "time_under_water_ratio": 0.4
      },
      "sample": {
        "effective_history_years": 4.0,
        "n_trades_total": 300,
        "n_trades_per_year": 75.0
      },
      "risk": {
        "adv_utilization_p95": 0.15,
        "participation_rate_p95": 0.1
      },
      "robustness": {
        "deflated_sharpe_ratio": 0.2,
        "sharpe_first_half": 0.4,
        "sharpe_second_half": 0.2
      }
    }
  },
  {
    "world_id": "policy-diff",
    "strategy_id": "bad_liquidity_risk",
    "run_id": "bad-set-006",
    "metrics": {
      "returns": {
        "sharpe": 0.9,
        "max_drawdown": 0.2,
        "gain_to_pain_ratio": 1.1,
        "time_under_water_ratio": 0.35
      },
      "sample": {
        "effective_history_years": 3.0,
        "n_trades_total": 250,
        "n_trades_per_year": 90.0
      },
      "risk": {
        "adv_utilization_p95": 0.8,
        "participation_rate_p95": 0.5
      },
      "robustness": {
        "deflated_sharpe_ratio": 0.4,
        "sharpe_first_half": 1.0,
        "sharpe_second_half": 0.8
      }
    }
  }
]

$json$, (SELECT expected FROM wval._scenario_expectations WHERE set_name = 'bad'));
SELECT wval._load_scenario_set('known_bad', $json$[
  {
    "world_id": "policy-diff",
    "strategy_id": "known_bad_short_history_01",
    "run_id": "known-bad-001",
    "metrics": {
      "returns": {"sharpe": 1.4, "max_drawdown": 0.08, "gain_to_pain_ratio": 1.6},
      "sample": {"effective_history_years": 0.4, "n_trades_total": 35},
      "risk": {"adv_utilization_p95": 0.12, "participation_rate_p95": 0.08},
      "robustness": {"deflated_sharpe_ratio": 0.6}
    }
  },
  {
    "world_id": "policy-diff",
    "strategy_id": "known_bad_short_history_02",
    "run_id": "known-bad-002",
    "metrics": {
      "returns": {"sharpe": 1.1, "max_drawdown": 0.12, "gain_to_pain_ratio": 1.3},
      "sample": {"effective_history_years": 1.2, "n_trades_total": 120},
      "risk": {"adv_utilization_p95": 0.15, "participation_rate_p95": 0.1},
      "robustness": {"deflated_sharpe_ratio": 0.55}
    }
  },
  {
    "world_id": "policy-diff",
    "strategy_id": "known_bad_low_trades_01",
    "run_id": "known-bad-003",
    "metrics": {
      "returns": {"sharpe": 1.0, "max_drawdown": 0.15, "gain_to_pain_ratio": 1.4},
      "sample": {"effective_history_years": 4.0, "n_trades_total": 12},
      "risk": {"adv_utilization_p95": 0.18, "participation_rate_p95": 0.12},
      "robustness": {"deflated_sharpe_ratio": 0.45}
    }
  },
  {
    "world_id": "policy-diff",
    "strategy_id": "known_bad_low_sharpe_01",
    "run_id": "known-bad-004",
    "metrics": {
      "returns": {"sharpe": 0.05, "max_drawdown": 0.12, "gain_to_pain_ratio": 1.1},
      "sample": {"effective_history_years": 3.2, "n_trades_total": 160},
      "risk": {"adv_utilization_p95": 0.2, "participation_rate_p95": 0.15},
      "robustness": {"deflated_sharpe_ratio": 0.2}
    }
  },
  {
    "world_id": "policy-diff",
    "strategy_id": "known_bad_low_sharpe_02",
    "run_id": "known-bad-005",
    "metrics": {
      "returns": {"sharpe": -0.2, "max_drawdown": 0.2, "gain_to_pain_ratio": 0.9},
      "sample": {"effective_history_years": 2.8, "n_trades_total": 240},
      "risk": {"adv_utilization_p95": 0.18, "participation_rate_p95": 0.12},
      "robustness": {"deflated_sharpe_ratio": 0.1}
    }
  },
  {
    "world_id": "policy-diff",
    "strategy_id": "known_bad_extreme_drawdown_01",
    "run_id": "known-bad-006",
    "metrics": {
      "returns": {"sharpe": 0.9, "max_drawdown": 0.62, "gain_to_pain_ratio": 1.2},
      "sample": {"effective_history_years": 4.5, "n_trades_total": 310},
      "risk": {"adv_utilization_p95": 0.22, "participation_rate_p95": 0.18},
      "robustness": {"deflated_sharpe_ratio": 0.3}
    }
  },
  {
    "world_id": "policy-diff",
    "strategy_id": "known_bad_extreme_drawdown_02",
    "run_id": "known-bad-007",
    "metrics": {
      "returns": {"sharpe": 1.3, "max_drawdown": 0.41, "gain_to_pain_ratio": 1.5},
      "sample": {"effective_history_years": 6.0, "n_trades_total": 480},
      "risk": {"adv_utilization_p95": 0.25, "participation_rate_p95": 0.15},
      "robustness": {"deflated_sharpe_ratio": 0.6}
    }
  },
  {
    "world_id": "policy-diff",
    "strategy_id": "known_bad_low_gain_to_pain_01",
    "run_id": "known-bad-008",
    "metrics": {
      "returns": {"sharpe": 1.0, "max_drawdown": 0.18, "gain_to_pain_ratio": 0.4},
      "sample": {"effective_history_years": 3.8, "n_trades_total": 260},
      "risk": {"adv_utilization_p95": 0.2, "participation_rate_p95": 0.14},
      "robustness": {"deflated_sharpe_ratio": 0.5}
    }
  },
  {
    "world_id": "policy-diff",
    "strategy_id": "known_bad_low_gain_to_pain_02",
    "run_id": "known-bad-009",
    "metrics": {
      "returns": {"sharpe": 0.7, "max_drawdown": 0.22, "gain_to_pain_ratio": 0.7},
      "sample": {"effective_history_years": 2.4, "n_trades_total": 190},
      "risk": {"adv_utilization_p95": 0.15, "participation_rate_p95": 0.1},
      "robustness": {"deflated_sharpe_ratio": 0.3}
    }
  },
  {
    "world_id": "policy-diff",
    "strategy_id": "known_bad_liquidity_adv_01",
    "run_id": "known-bad-010",
    "metrics": {
      "returns": {"sharpe": 1.0, "max_drawdown": 0.12, "gain_to_pain_ratio": 1.3},
      "sample": {"effective_history_years": 4.0, "n_trades_total": 320},
      "risk": {"adv_utilization_p95": 0.92, "participation_rate_p95": 0.25},
      "robustness": {"deflated_sharpe_ratio": 0.55}
    }
  },
  {
    "world_id": "policy-diff",
    "strategy_id": "known_bad_liquidity_adv_02",
    "run_id": "known-bad-011",
    "metrics": {
      "returns": {"sharpe": 0.8, "max_drawdown": 0.2, "gain_to_pain_ratio": 1.0},
      "sample": {"effective_history_years": 3.0, "n_trades_total": 210},
      "risk": {"adv_utilization_p95": 0.7, "participation_rate_p95": 0.2},
      "robustness": {"deflated_sharpe_ratio": 0.4}
    }
  },
  {
    "world_id": "policy-diff",
    "strategy_id": "known_bad_liquidity_participation_01",
    "run_id": "known-bad-012",
    "metrics": {
      "returns": {"sharpe": 1.1, "max_drawdown": 0.15, "gain_to_pain_ratio": 1.2},
      "sample": {"effective_history_years": 5.0, "n_trades_total": 410},
      "risk": {"adv_utilization_p95": 0.25, "participation_rate_p95": 0.8},
      "robustness": {"deflated_sharpe_ratio": 0.6}
    }
  },
  {
    "world_id": "policy-diff",
    "strategy_id": "known_bad_liquidity_participation_02",
    "run_id": "known-bad-013",
    "metrics": {
      "returns": {"sharpe": 0.9, "max_drawdown": 0.22, "gain_to_pain_ratio": 1.0},
      "sample": {"effective_history_years": 3.4, "n_trades_total": 280},
      "risk": {"adv_utilization_p95": 0.3, "participation_rate_p95": 0.55},
      "robustness": {"deflated_sharpe_ratio": 0.5}
    }
  },
  {
    "world_id": "policy-diff",
    "strategy_id": "known_bad_low_dsr_01",
    "run_id": "known-bad-014",
    "metrics": {
      "returns": {"sharpe": 0.9, "max_drawdown": 0.2, "gain_to_pain_ratio": 1.1},
      "sample": {"effective_history_years": 3.5, "n_trades_total": 200},
      "risk": {"adv_utilization_p95": 0.2, "participation_rate_p95": 0.15},
      "robustness": {"deflated_sharpe_ratio": 0.02}
    }
  },
  {
    "world_id": "policy-diff",
    "strategy_id": "known_bad_low_dsr_02",
    "run_id": "known-bad-015",
    "metrics": {
      "returns": {"sharpe": 1.0, "max_drawdown": 0.14, "gain_to_pain_ratio": 1.2},
      "sample": {"effective_history_years": 4.2, "n_trades_total": 360},
      "risk": {"adv_utilization_p95": 0.18, "participation_rate_p95": 0.12},
      "robustness": {"deflated_sharpe_ratio": 0.08}
    }
  },
  {
    "world_id": "policy-diff",
    "strategy_id": "known_bad_compound_01",
    "run_id": "known-bad-016",
    "metrics": {
      "returns": {"sharpe": 0.2, "max_drawdown": 0.48, "gain_to_pain_ratio": 0.6},
      "sample": {"effective_history_years": 1.4, "n_trades_total": 28},
      "risk": {"adv_utilization_p95": 0.75, "participation_rate_p95": 0.62},
      "robustness": {"deflated_sharpe_ratio": 0.05}
    }
  },
  {
    "world_id": "policy-diff",
    "strategy_id": "known_bad_compound_02",
    "run_id": "known-bad-017",
    "metrics": {
      "returns": {"sharpe": 0.35, "max_drawdown": 0.3, "gain_to_pain_ratio": 0.8},
      "sample": {"effective_history_years": 1.8, "n_trades_total": 45},
      "risk": {"adv_utilization_p95": 0.65, "participation_rate_p95": 0.41},
      "robustness": {"deflated_sharpe_ratio": 0.12}
    }
  },
  {
    "world_id": "policy-diff",
    "strategy_id": "known_bad_compound_03",
    "run_id": "known-bad-018",
    "metrics": {
      "returns": {"sharpe": 0.4, "max_drawdown": 0.33, "gain_to_pain_ratio": 0.95},
      "sample": {"effective_history_years": 2.1, "n_trades_total": 80},
      "risk": {"adv_utilization_p95": 0.55, "participation_rate_p95": 0.5},
      "robustness": {"deflated_sharpe_ratio": 0.1}
    }
  },
  {
    "world_id": "policy-diff",
    "strategy_id": "known_bad_compound_04",
    "run_id": "known-bad-019",
    "metrics": {
      "returns": {"sharpe": 0.25, "max_drawdown": 0.26, "gain_to_pain_ratio": 0.7},
      "sample": {"effective_history_years": 2.6, "n_trades_total": 140},
      "risk": {"adv_utilization_p95": 0.58, "participation_rate_p95": 0.3},
      "robustness": {"deflated_sharpe_ratio": 0.09}
    }
  },
  {
    "world_id": "policy-diff",
    "strategy_id": "known_bad_compound_05",
    "run_id": "known-bad-020",
    "metrics": {
      "returns": {"sharpe": 0.1, "max_drawdown": 0.38, "gain_to_pain_ratio": 0.5},
      "sample": {"effective_history_years": 2.9, "n_trades_total": 110},
      "risk": {"adv_utilization_p95": 0.82, "participation_rate_p95": 0.44},
      "robustness": {"deflated_sharpe_ratio": 0.07}
    }
  }
]
$json$, (SELECT expected FROM wval._scenario_expectations WHERE set_name = 'known_bad'));

-- source: src/retention.sql
-- retention.sql: retention settings, the purge, the import of historical
-- runs and the maintenance job (spec store.md, "Retention"); see
-- docs/retention.md.  History leaves only through wval_purge(), under the
-- transaction-local guard of store.c, and every chained row it removes
-- leaves its link in wval.chain_tombstones so that the chain of what remains
-- still verifies.

------------------------------------------------------------------------------
-- Settings
------------------------------------------------------------------------------

-- wval._drop_temp(name): drops a temporary work table of this session if a
-- previous call in the same transaction left it (quietly, unlike DROP TABLE
-- IF EXISTS).
CREATE FUNCTION wval._drop_temp(p_name text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
BEGIN
    IF to_regclass('pg_temp.' || quote_ident(p_name)) IS NOT NULL THEN
        EXECUTE format('DROP TABLE pg_temp.%I', p_name);
    END IF;
END
$$;
COMMENT ON FUNCTION wval._drop_temp(text) IS 'drops a temporary work table of the session when it exists';

CREATE TABLE wval.retention (
    table_name text NOT NULL CHECK (table_name IN ('*', 'evaluation_runs', 'policy_versions')),
    world_id   text NOT NULL DEFAULT '*',
    keep       interval NOT NULL CONSTRAINT retention_minimum CHECK (keep >= interval '90 days'),
    updated_by text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_name, world_id)
);
COMMENT ON TABLE wval.retention IS 'how long history is kept, per table and world (''*'' = every table / every world); at least 90 days; the longest applicable setting wins. Written by wval_retention_set, audited';
COMMENT ON COLUMN wval.retention.table_name IS 'evaluation_runs (with their rule results, overrides and ex-post cases), policy_versions (with their activations), or * for both';
COMMENT ON COLUMN wval.retention.keep IS 'rows younger than now() - keep are never purged; never less than 90 days';

-- wval._retention_keep(table, world): the retention of a table in a world:
-- the longest applicable setting, at least 90 days.
CREATE FUNCTION wval._retention_keep(p_table text, p_world_id text) RETURNS interval
LANGUAGE sql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
    SELECT greatest(interval '90 days', max(r.keep))
    FROM wval.retention r
    WHERE r.table_name IN (p_table, '*') AND r.world_id IN (coalesce(p_world_id, '*'), '*');
$$;
COMMENT ON FUNCTION wval._retention_keep(text, text) IS 'the retention of a table in a world: the longest applicable wval.retention setting, at least 90 days';

CREATE FUNCTION public.wval_retention_set(table_name text, keep interval, world_id text DEFAULT NULL,
                                          actor text DEFAULT NULL)
RETURNS SETOF wval.retention
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp SET IntervalStyle = postgres AS $$
DECLARE
    p_world text := coalesce(world_id, '*');
    p_actor text := wval._ident('actor', coalesce(actor, wval._invoker()));
    old wval.retention;
    r wval.retention;
BEGIN
    PERFORM wval._one_of('table_name', table_name, ARRAY['*', 'evaluation_runs', 'policy_versions']);
    IF world_id IS NOT NULL THEN
        PERFORM wval._world(world_id);
        PERFORM wval._require_world_access(world_id, 'write');
    END IF;
    IF keep IS NOT NULL AND keep < interval '90 days' THEN
        RAISE EXCEPTION 'retention of % must be at least 90 days', table_name
            USING ERRCODE = 'WV011',
                  DETAIL = format('keep is %s.', keep),
                  HINT = 'History is kept at least 90 days; configure longer periods only.';
    END IF;
    SELECT * INTO old FROM wval.retention x
    WHERE x.table_name = wval_retention_set.table_name AND x.world_id = p_world FOR UPDATE;
    IF keep IS NULL THEN
        DELETE FROM wval.retention x WHERE x.table_name = wval_retention_set.table_name AND x.world_id = p_world;
    ELSE
        INSERT INTO wval.retention AS x (table_name, world_id, keep, updated_by)
        VALUES (wval_retention_set.table_name, p_world, keep, p_actor)
        ON CONFLICT ON CONSTRAINT retention_pkey
        DO UPDATE SET keep = excluded.keep, updated_by = excluded.updated_by, updated_at = now()
        RETURNING * INTO r;
    END IF;
    PERFORM wval._audit(world_id, 'retention_set', p_actor,
                        jsonb_build_object('table_name', table_name, 'world_id', p_world,
                                           'old_keep', old.keep::text, 'keep', keep::text));
    IF r.table_name IS NOT NULL THEN
        RETURN NEXT r;
    END IF;
END
$$;
COMMENT ON FUNCTION public.wval_retention_set(text, interval, text, text) IS 'sets how long a table (evaluation_runs, policy_versions or *) is kept in a world (null: every world); at least 90 days (WV011); keep => null removes the setting; audited';

------------------------------------------------------------------------------
-- The purge
------------------------------------------------------------------------------

-- wval._purge_partitions(parent, candidates, dry_run): the monthly
-- partitions of parent whose every row is a purge candidate (candidates is
-- a temporary table whose column part holds the tableoid of each row); only
-- partitions that hold candidates are counted.  Dropped unless dry_run.
CREATE FUNCTION wval._purge_partitions(p_parent text, p_candidates text, p_dry_run boolean) RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    p record;
    total bigint;
    out jsonb := '[]';
BEGIN
    FOR p IN EXECUTE format(
        'SELECT k.relname, c.n FROM (SELECT part, count(*) AS n FROM pg_temp.%I GROUP BY part) c
         JOIN pg_class k ON k.oid = c.part
         WHERE k.relname <> %L ORDER BY k.relname', p_candidates, p_parent || '_default')
    LOOP
        EXECUTE format('SELECT count(*) FROM wval.%I', p.relname) INTO total;
        CONTINUE WHEN p.n <> total;
        IF NOT p_dry_run THEN
            EXECUTE format('ALTER TABLE wval.%I DETACH PARTITION wval.%I', p_parent, p.relname);
            EXECUTE format('DROP TABLE wval.%I', p.relname);
        END IF;
        out := out || jsonb_build_object('partition', 'wval.' || p.relname, 'rows', total, 'dropped', NOT p_dry_run);
    END LOOP;
    RETURN out;
END
$$;
COMMENT ON FUNCTION wval._purge_partitions(text, text, boolean) IS 'the monthly partitions of a history table that hold only purge candidates; detached and dropped unless dry_run';

CREATE FUNCTION public.wval_purge(older_than timestamptz, world_id text DEFAULT NULL, dry_run boolean DEFAULT true)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    w wval.worlds;
    held text[] := '{}';
    t text;
    keep interval;
    floor_keep interval := wval._retention_keep('*', NULL);
    changed bigint;
    n bigint;
    deleted bigint := 0;
    expected bigint;
    parts jsonb := '[]';
    tables jsonb;
    worlds_report jsonb;
    report jsonb;
    wr record;
BEGIN
    IF older_than IS NULL OR dry_run IS NULL THEN
        RAISE EXCEPTION '"%" must not be null', CASE WHEN older_than IS NULL THEN 'older_than' ELSE 'dry_run' END
            USING ERRCODE = '22023',
                  HINT = 'Pass the cut (rows created before it may go) and whether this is a dry run.';
    END IF;
    IF world_id IS NOT NULL THEN
        w := wval._world(world_id);
        PERFORM wval._require_world_access(w.world_id, 'write');
        IF w.legal_hold THEN
            RAISE EXCEPTION 'world "%" is under legal hold', w.world_id
                USING ERRCODE = 'WV011',
                      DETAIL = 'A world under legal hold is never purged.',
                      HINT = 'Lift the hold first with wval_world_upsert(world_id, legal_hold => false) when the hold ends.';
        END IF;
    ELSIF older_than > now() - floor_keep THEN
        RAISE EXCEPTION 'purge would cut inside the minimum retention'
            USING ERRCODE = 'WV011',
                  DETAIL = format('older_than is %s; history is kept for %s, so the cut may be at most %s.',
                                  older_than, floor_keep, now() - floor_keep),
                  HINT = 'Pass an older_than at or before that time (see wval.retention).';
    END IF;

    -- the worlds in scope, locked against a concurrent change of their hold,
    -- each table with its own cut (a longer retention cuts earlier)
    PERFORM wval._drop_temp('wval_purge_scope');
    CREATE TEMP TABLE wval_purge_scope (world_id text PRIMARY KEY, runs_cut timestamptz, versions_cut timestamptz,
                                        active_version integer) ON COMMIT DROP;
    -- (a purge of every world covers the worlds the calling role may write)
    FOR w IN SELECT * FROM wval.worlds x
             WHERE (wval_purge.world_id IS NULL OR x.world_id = wval_purge.world_id)
               AND wval._world_access((SELECT oid FROM pg_roles WHERE rolname = wval._invoker()), x.world_id, 'write')
             ORDER BY x.world_id FOR SHARE
    LOOP
        IF w.legal_hold THEN
            IF wval_purge.world_id IS NOT NULL THEN
                RAISE EXCEPTION 'world "%" is under legal hold', w.world_id USING ERRCODE = 'WV011',
                    DETAIL = 'A world under legal hold is never purged.',
                    HINT = 'Lift the hold first with wval_world_upsert(world_id, legal_hold => false) when the hold ends.';
            END IF;
            held := held || w.world_id;
            CONTINUE;
        END IF;
        IF wval_purge.world_id IS NOT NULL THEN
            FOREACH t IN ARRAY ARRAY['evaluation_runs', 'policy_versions'] LOOP
                keep := wval._retention_keep(t, w.world_id);
                IF older_than > now() - keep THEN
                    RAISE EXCEPTION 'purge would cut inside the retention of % in world "%"', t, w.world_id
                        USING ERRCODE = 'WV011',
                              DETAIL = format('older_than is %s; %s of world %s are kept for %s, so the cut may be at most %s.',
                                              older_than, t, w.world_id, keep, now() - keep),
                              HINT = 'Pass an older_than at or before that time; retention is set with wval_retention_set() and is at least 90 days.';
                END IF;
            END LOOP;
        END IF;
        INSERT INTO pg_temp.wval_purge_scope
        VALUES (w.world_id, least(older_than, now() - wval._retention_keep('evaluation_runs', w.world_id)),
                least(older_than, now() - wval._retention_keep('policy_versions', w.world_id)),
                public.wval_active_policy_version(w.world_id));
    END LOOP;

    -- runs: never the latest of a (world, strategy, stage, kind), one under an
    -- approved override or a case that is not dismissed, the run a strategy's
    -- current stage decision relied on, nor one a kept run links to or
    -- supersedes
    PERFORM wval._drop_temp('wval_purge_runs');
    CREATE TEMP TABLE wval_purge_runs ON COMMIT DROP AS
    SELECT r.tableoid AS part, r.world_id, r.run_id, r.created_at, r.chain_seq, r.prev_hash, r.row_hash
    FROM wval.evaluation_runs r JOIN pg_temp.wval_purge_scope s ON s.world_id = r.world_id
    WHERE r.created_at < s.runs_cut
      AND EXISTS (SELECT 1 FROM wval.evaluation_runs n
                  WHERE n.world_id = r.world_id AND n.strategy_id = r.strategy_id AND n.stage = r.stage
                    AND n.kind = r.kind
                    AND (n.created_at > r.created_at OR (n.created_at = r.created_at AND n.chain_seq > r.chain_seq)))
      AND NOT EXISTS (SELECT 1 FROM wval.current_overrides co WHERE co.run_id = r.run_id AND co.status = 'approved')
      AND NOT EXISTS (SELECT 1 FROM wval.ex_post_cases c WHERE c.run_id = r.run_id AND c.status <> 'dismissed')
      AND NOT EXISTS (SELECT 1 FROM wval.current_stage cs WHERE cs.world_id = r.world_id AND cs.run_id = r.run_id);
    CREATE INDEX ON pg_temp.wval_purge_runs (run_id);
    LOOP
        DELETE FROM pg_temp.wval_purge_runs c
        WHERE EXISTS (SELECT 1 FROM wval.evaluation_runs k
                      WHERE k.world_id = c.world_id AND (k.linked_run_id = c.run_id OR k.supersedes = c.run_id)
                        AND NOT EXISTS (SELECT 1 FROM pg_temp.wval_purge_runs c2 WHERE c2.run_id = k.run_id));
        GET DIAGNOSTICS changed = ROW_COUNT;
        EXIT WHEN changed = 0;
    END LOOP;

    PERFORM wval._drop_temp('wval_purge_results');
    CREATE TEMP TABLE wval_purge_results ON COMMIT DROP AS
    SELECT rr.tableoid AS part, rr.world_id, rr.run_id, rr.rule, rr.created_at
    FROM wval.rule_results rr JOIN pg_temp.wval_purge_runs c ON c.world_id = rr.world_id AND c.run_id = rr.run_id;

    PERFORM wval._drop_temp('wval_purge_overrides');
    CREATE TEMP TABLE wval_purge_overrides ON COMMIT DROP AS
    SELECT o.world_id, o.override_id, o.recorded_at, o.chain_seq, o.prev_hash, o.row_hash
    FROM wval.overrides o JOIN pg_temp.wval_purge_runs c ON c.world_id = o.world_id AND c.run_id = o.run_id;

    PERFORM wval._drop_temp('wval_purge_failures');
    CREATE TEMP TABLE wval_purge_failures ON COMMIT DROP AS
    SELECT f.world_id, f.entry_id, f.case_id, f.recorded_at, f.chain_seq, f.prev_hash, f.row_hash
    FROM wval.ex_post_failures f JOIN pg_temp.wval_purge_runs c ON c.world_id = f.world_id AND c.run_id = f.run_id;

    -- policy versions: never the active one, one a kept run references, or
    -- one activated after the cut; with them go their activations
    PERFORM wval._drop_temp('wval_purge_versions');
    CREATE TEMP TABLE wval_purge_versions ON COMMIT DROP AS
    SELECT pv.world_id, pv.version, pv.created_at, pv.chain_seq, pv.prev_hash, pv.row_hash
    FROM wval.policy_versions pv JOIN pg_temp.wval_purge_scope s ON s.world_id = pv.world_id
    WHERE pv.created_at < s.versions_cut
      AND pv.version IS DISTINCT FROM s.active_version
      AND NOT EXISTS (SELECT 1 FROM wval.evaluation_runs r
                      WHERE r.world_id = pv.world_id AND r.policy_version = pv.version
                        AND NOT EXISTS (SELECT 1 FROM pg_temp.wval_purge_runs c WHERE c.run_id = r.run_id))
      AND NOT EXISTS (SELECT 1 FROM wval.policy_activations a
                      WHERE a.world_id = pv.world_id AND a.version = pv.version AND a.activated_at >= s.versions_cut);

    PERFORM wval._drop_temp('wval_purge_activations');
    CREATE TEMP TABLE wval_purge_activations ON COMMIT DROP AS
    SELECT a.world_id, a.activation_id, a.activated_at, a.chain_seq, a.prev_hash, a.row_hash
    FROM wval.policy_activations a JOIN pg_temp.wval_purge_versions v ON v.world_id = a.world_id AND v.version = a.version;

    -- the report: per world and table, candidates, what the rules protect and the oldest row kept
    WITH runs AS (
        SELECT r.world_id, count(c.run_id) AS candidates,
               count(*) FILTER (WHERE c.run_id IS NULL AND r.created_at < s.runs_cut) AS protected,
               min(r.created_at) FILTER (WHERE c.run_id IS NULL) AS oldest_kept
        FROM wval.evaluation_runs r JOIN pg_temp.wval_purge_scope s ON s.world_id = r.world_id
        LEFT JOIN pg_temp.wval_purge_runs c ON c.world_id = r.world_id AND c.run_id = r.run_id AND c.created_at = r.created_at
        GROUP BY r.world_id),
    results AS (
        SELECT r.world_id, count(c.run_id) AS candidates, min(r.created_at) FILTER (WHERE c.run_id IS NULL) AS oldest_kept
        FROM wval.rule_results r JOIN pg_temp.wval_purge_scope s ON s.world_id = r.world_id
        LEFT JOIN pg_temp.wval_purge_results c ON c.world_id = r.world_id AND c.run_id = r.run_id AND c.rule = r.rule
                                               AND c.created_at = r.created_at
        GROUP BY r.world_id),
    ovr AS (
        SELECT o.world_id, count(c.override_id) AS candidates, min(o.recorded_at) FILTER (WHERE c.override_id IS NULL) AS oldest_kept
        FROM wval.overrides o JOIN pg_temp.wval_purge_scope s ON s.world_id = o.world_id
        LEFT JOIN pg_temp.wval_purge_overrides c ON c.world_id = o.world_id AND c.override_id = o.override_id
        GROUP BY o.world_id),
    fail AS (
        SELECT f.world_id, count(c.entry_id) AS candidates, min(f.recorded_at) FILTER (WHERE c.entry_id IS NULL) AS oldest_kept
        FROM wval.ex_post_failures f JOIN pg_temp.wval_purge_scope s ON s.world_id = f.world_id
        LEFT JOIN pg_temp.wval_purge_failures c ON c.world_id = f.world_id AND c.entry_id = f.entry_id
        GROUP BY f.world_id),
    ver AS (
        SELECT v.world_id, count(c.version) AS candidates,
               count(*) FILTER (WHERE c.version IS NULL AND v.created_at < s.versions_cut) AS protected,
               min(v.created_at) FILTER (WHERE c.version IS NULL) AS oldest_kept
        FROM wval.policy_versions v JOIN pg_temp.wval_purge_scope s ON s.world_id = v.world_id
        LEFT JOIN pg_temp.wval_purge_versions c ON c.world_id = v.world_id AND c.version = v.version
        GROUP BY v.world_id),
    act AS (
        SELECT a.world_id, count(c.activation_id) AS candidates, min(a.activated_at) FILTER (WHERE c.activation_id IS NULL) AS oldest_kept
        FROM wval.policy_activations a JOIN pg_temp.wval_purge_scope s ON s.world_id = a.world_id
        LEFT JOIN pg_temp.wval_purge_activations c ON c.world_id = a.world_id AND c.activation_id = a.activation_id
        GROUP BY a.world_id)
    SELECT coalesce(jsonb_object_agg(s.world_id, jsonb_build_object(
               'runs_cut', s.runs_cut, 'versions_cut', s.versions_cut,
               'tables', jsonb_build_object(
                   'evaluation_runs', jsonb_build_object('candidates', coalesce(runs.candidates, 0), 'deleted', 0,
                                                         'protected', coalesce(runs.protected, 0), 'oldest_kept', runs.oldest_kept),
                   'rule_results', jsonb_build_object('candidates', coalesce(results.candidates, 0), 'deleted', 0,
                                                      'oldest_kept', results.oldest_kept),
                   'overrides', jsonb_build_object('candidates', coalesce(ovr.candidates, 0), 'deleted', 0,
                                                   'oldest_kept', ovr.oldest_kept),
                   'ex_post_failures', jsonb_build_object('candidates', coalesce(fail.candidates, 0), 'deleted', 0,
                                                          'oldest_kept', fail.oldest_kept),
                   'policy_versions', jsonb_build_object('candidates', coalesce(ver.candidates, 0), 'deleted', 0,
                                                         'protected', coalesce(ver.protected, 0), 'oldest_kept', ver.oldest_kept),
                   'policy_activations', jsonb_build_object('candidates', coalesce(act.candidates, 0), 'deleted', 0,
                                                            'oldest_kept', act.oldest_kept)))), '{}')
    INTO worlds_report
    FROM pg_temp.wval_purge_scope s
    LEFT JOIN runs ON runs.world_id = s.world_id LEFT JOIN results ON results.world_id = s.world_id
    LEFT JOIN ovr ON ovr.world_id = s.world_id LEFT JOIN fail ON fail.world_id = s.world_id
    LEFT JOIN ver ON ver.world_id = s.world_id LEFT JOIN act ON act.world_id = s.world_id;

    IF NOT dry_run THEN
        -- every chained row that goes leaves its link behind
        INSERT INTO wval.chain_tombstones (world_id, chain_seq, table_name, prev_hash, row_hash)
        SELECT x.world_id, x.chain_seq, 'evaluation_runs', x.prev_hash, x.row_hash FROM pg_temp.wval_purge_runs x
        UNION ALL SELECT x.world_id, x.chain_seq, 'overrides', x.prev_hash, x.row_hash FROM pg_temp.wval_purge_overrides x
        UNION ALL SELECT x.world_id, x.chain_seq, 'ex_post_failures', x.prev_hash, x.row_hash FROM pg_temp.wval_purge_failures x
        UNION ALL SELECT x.world_id, x.chain_seq, 'policy_versions', x.prev_hash, x.row_hash FROM pg_temp.wval_purge_versions x
        UNION ALL SELECT x.world_id, x.chain_seq, 'policy_activations', x.prev_hash, x.row_hash FROM pg_temp.wval_purge_activations x;
    END IF;

    -- whole months first (detach and drop), then row by row under the guard
    parts := wval._purge_partitions('evaluation_runs', 'wval_purge_runs', dry_run)
             || wval._purge_partitions('rule_results', 'wval_purge_results', dry_run);
    IF NOT dry_run THEN
        SELECT coalesce(sum((p ->> 'rows')::bigint), 0) INTO deleted FROM jsonb_array_elements(parts) p;
        PERFORM wval._purge_guard(true);
        DELETE FROM wval.evaluation_runs r USING pg_temp.wval_purge_runs c
        WHERE r.world_id = c.world_id AND r.run_id = c.run_id AND r.created_at = c.created_at;
        GET DIAGNOSTICS n = ROW_COUNT; deleted := deleted + n;
        DELETE FROM wval.rule_results r USING pg_temp.wval_purge_results c
        WHERE r.world_id = c.world_id AND r.run_id = c.run_id AND r.rule = c.rule AND r.created_at = c.created_at;
        GET DIAGNOSTICS n = ROW_COUNT; deleted := deleted + n;
        DELETE FROM wval.overrides o USING pg_temp.wval_purge_overrides c
        WHERE o.world_id = c.world_id AND o.override_id = c.override_id;
        GET DIAGNOSTICS n = ROW_COUNT; deleted := deleted + n;
        DELETE FROM wval.ex_post_failures f USING pg_temp.wval_purge_failures c
        WHERE f.world_id = c.world_id AND f.case_id = c.case_id AND f.entry_id = c.entry_id;
        GET DIAGNOSTICS n = ROW_COUNT; deleted := deleted + n;
        DELETE FROM wval.policy_activations a USING pg_temp.wval_purge_activations c
        WHERE a.world_id = c.world_id AND a.activation_id = c.activation_id;
        GET DIAGNOSTICS n = ROW_COUNT; deleted := deleted + n;
        DELETE FROM wval.policy_versions v USING pg_temp.wval_purge_versions c
        WHERE v.world_id = c.world_id AND v.version = c.version;
        GET DIAGNOSTICS n = ROW_COUNT; deleted := deleted + n;
        PERFORM wval._purge_guard(false);

        -- what went is exactly what the report promised
        SELECT (SELECT count(*) FROM pg_temp.wval_purge_runs) + (SELECT count(*) FROM pg_temp.wval_purge_results)
               + (SELECT count(*) FROM pg_temp.wval_purge_overrides) + (SELECT count(*) FROM pg_temp.wval_purge_failures)
               + (SELECT count(*) FROM pg_temp.wval_purge_activations) + (SELECT count(*) FROM pg_temp.wval_purge_versions)
        INTO expected;
        IF deleted <> expected THEN
            RAISE EXCEPTION 'purge removed % rows where % were selected', deleted, expected
                USING ERRCODE = 'XX000', HINT = 'Nothing was removed (the transaction is rolled back); run the purge again.';
        END IF;
        SELECT jsonb_object_agg(x.key, jsonb_set(x.value, '{tables}',
                   (SELECT jsonb_object_agg(tt.key, jsonb_set(tt.value, '{deleted}', tt.value -> 'candidates'))
                    FROM jsonb_each(x.value -> 'tables') tt)))
        INTO worlds_report FROM jsonb_each(worlds_report) x;
        worlds_report := coalesce(worlds_report, '{}');
    END IF;

    report := jsonb_build_object('older_than', older_than, 'world_id', world_id, 'dry_run', dry_run,
                                 'worlds', worlds_report, 'legal_hold_skipped', to_jsonb(held),
                                 'partitions', parts);
    IF NOT dry_run THEN
        FOR wr IN SELECT x.key, x.value FROM jsonb_each(worlds_report) x ORDER BY x.key LOOP
            PERFORM wval._audit(wr.key, 'purge', wval._invoker(),
                                jsonb_build_object('older_than', older_than) || wr.value);
        END LOOP;
        IF jsonb_array_length(parts) > 0 THEN
            PERFORM wval._audit(NULL, 'partitions_dropped', wval._invoker(),
                                jsonb_build_object('older_than', older_than, 'partitions', parts));
        END IF;
    END IF;
    RETURN report;
END
$$;
COMMENT ON FUNCTION public.wval_purge(timestamptz, text, boolean) IS 'removes history created before older_than (dry run by default): never the latest run per (world, strategy, stage, kind), runs under an approved override or a case that is not dismissed, runs a kept run links to or supersedes, or policy versions a kept run references; WV011 inside the retention or under a legal hold; drops whole monthly partitions when all their rows go; leaves chain tombstones; audited; returns a report per world and table (candidates, deleted, protected, oldest_kept)';

------------------------------------------------------------------------------
-- Import of historical runs
------------------------------------------------------------------------------

CREATE FUNCTION public.wval_import_runs(runs jsonb) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    e record;
    x jsonb;
    at text;
    ts timestamptz;
    rid uuid;
    crid text;
    m date;
    n integer;
    missing text;
    months jsonb;
    wid text;
    rec record;
    cseq bigint;
    prev text;
    ords bigint[];
    seqs bigint[];
    prevs text[];
    hashes text[];
BEGIN
    IF runs IS NULL OR jsonb_typeof(runs) <> 'array' THEN
        RAISE EXCEPTION '"runs" must be a JSON array' USING ERRCODE = '22023',
            HINT = 'Pass [{"world_id", "strategy_id", "created_at", "status", "metrics", ...}, ...] (docs/retention.md).';
    END IF;
    PERFORM wval._drop_temp('wval_import');
    CREATE TEMP TABLE wval_import (LIKE wval.evaluation_runs INCLUDING DEFAULTS, ord bigint) ON COMMIT DROP;
    ALTER TABLE pg_temp.wval_import ALTER COLUMN chain_seq DROP NOT NULL, ALTER COLUMN prev_hash DROP NOT NULL,
        ALTER COLUMN row_hash DROP NOT NULL;

    -- check every element first: nothing is imported when one is wrong
    FOR e IN SELECT r.value AS v, r.ordinality - 1 AS i FROM jsonb_array_elements(runs) WITH ORDINALITY r LOOP
        x := e.v;
        IF jsonb_typeof(x) <> 'object' THEN
            RAISE EXCEPTION '"runs[%]" must be an object', e.i USING ERRCODE = '22023',
                HINT = 'Each run is an object {"world_id", "strategy_id", "created_at", "status", "metrics", ...}.';
        END IF;
        SELECT string_agg(k, ', ') INTO missing
        FROM unnest(ARRAY['world_id', 'strategy_id', 'created_at', 'status', 'metrics']) k
        WHERE x -> k IS NULL OR jsonb_typeof(x -> k) = 'null';
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION '"runs[%]" lacks %', e.i, missing USING ERRCODE = '22023',
                DETAIL = format('runs[%s] is %s.', e.i, left(x::text, 200)),
                HINT = 'Each imported run needs world_id, strategy_id, created_at, status and metrics.';
        END IF;
        PERFORM wval._ident(format('runs[%s].world_id', e.i), x ->> 'world_id');
        PERFORM wval._ident(format('runs[%s].strategy_id', e.i), x ->> 'strategy_id');
        PERFORM wval._one_of(format('runs[%s].stage', e.i), coalesce(x ->> 'stage', 'backtest'),
                             ARRAY['backtest', 'paper', 'shadow', 'live']);
        PERFORM wval._one_of(format('runs[%s].kind', e.i), coalesce(x ->> 'kind', 'single'),
                             ARRAY['single', 'cohort', 'live', 'portfolio', 'stress']);
        PERFORM wval._one_of(format('runs[%s].status', e.i), x ->> 'status', ARRAY['pass', 'warn', 'fail', 'unvalidated']);
        IF x ? 'recommended_stage' AND jsonb_typeof(x -> 'recommended_stage') <> 'null' THEN
            PERFORM wval._one_of(format('runs[%s].recommended_stage', e.i), x ->> 'recommended_stage',
                                 ARRAY['backtest_only', 'paper_only', 'paper_ok_live_candidate']);
        END IF;
        IF jsonb_typeof(x -> 'metrics') <> 'object' OR (x ? 'results' AND jsonb_typeof(x -> 'results') NOT IN ('object', 'null')) THEN
            RAISE EXCEPTION '"runs[%].%" must be an object', e.i,
                            CASE WHEN jsonb_typeof(x -> 'metrics') <> 'object' THEN 'metrics' ELSE 'results' END
                USING ERRCODE = '22023', HINT = 'metrics are metric blocks, results map check keys to RuleResults.';
        END IF;
        at := x ->> 'created_at';
        BEGIN
            ts := at::timestamptz;
            rid := CASE WHEN x ->> 'run_id' ~* '^[0-9a-f]{8}-?([0-9a-f]{4}-?){3}[0-9a-f]{12}$' THEN (x ->> 'run_id')::uuid END;
            PERFORM (x ->> 'policy_version')::integer, (x ->> 'linked_run_id')::uuid, (x ->> 'supersedes')::uuid,
                    (x ->> 'as_of')::date;
        EXCEPTION WHEN data_exception THEN
            RAISE EXCEPTION '"runs[%]" has a value of the wrong type', e.i USING ERRCODE = '22023',
                DETAIL = format('created_at is %s, run_id is %s, policy_version is %s, linked_run_id is %s, supersedes is %s, as_of is %s.',
                                coalesce(quote_literal(at), 'null'), coalesce(x ->> 'run_id', 'null'),
                                coalesce(x ->> 'policy_version', 'null'), coalesce(x ->> 'linked_run_id', 'null'),
                                coalesce(x ->> 'supersedes', 'null'), coalesce(x ->> 'as_of', 'null')),
                HINT = 'created_at is an ISO-8601 timestamp, run_id a uuid (or your own id, kept as client_run_id), policy_version an integer, linked_run_id and supersedes uuids, as_of a date.';
        END;
        IF ts > now() THEN
            RAISE EXCEPTION '"runs[%].created_at" is in the future', e.i USING ERRCODE = '22023',
                DETAIL = format('created_at is %s.', at), HINT = 'Import runs that already happened.';
        END IF;
        crid := coalesce(x ->> 'client_run_id', CASE WHEN rid IS NULL THEN x ->> 'run_id' END);
        INSERT INTO pg_temp.wval_import (run_id, world_id, strategy_id, stage, kind, campaign_id, risk_tier,
                                         model_card_version, code_hash, data_snapshot, context, client_run_id,
                                         returns_hash, metrics, policy_version, ruleset_hash, profile, status,
                                         recommended_stage, recommendation, results, linked_run_id, supersedes,
                                         as_of, created_by, created_at, ord)
        VALUES (coalesce(rid, gen_random_uuid()), x ->> 'world_id', x ->> 'strategy_id', coalesce(x ->> 'stage', 'backtest'),
                coalesce(x ->> 'kind', 'single'), x ->> 'campaign_id', x ->> 'risk_tier', x ->> 'model_card_version',
                x ->> 'code_hash', nullif(x -> 'data_snapshot', 'null'),
                coalesce(nullif(x -> 'context', 'null'), '{}') || jsonb_build_object('imported', true),
                crid, x ->> 'returns_hash', x -> 'metrics', (x ->> 'policy_version')::integer, x ->> 'ruleset_hash',
                x ->> 'profile', x ->> 'status', x ->> 'recommended_stage', nullif(x -> 'recommendation', 'null'),
                coalesce(nullif(x -> 'results', 'null'), '{}'), (x ->> 'linked_run_id')::uuid,
                (x ->> 'supersedes')::uuid, (x ->> 'as_of')::date,
                coalesce(x ->> 'created_by', wval._invoker()), ts, e.i);
    END LOOP;

    SELECT string_agg(DISTINCT i.world_id, ', ') INTO missing
    FROM pg_temp.wval_import i WHERE NOT EXISTS (SELECT 1 FROM wval.worlds w WHERE w.world_id = i.world_id);
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'world "%" does not exist', missing USING ERRCODE = 'WV010',
            HINT = 'Create the worlds first with wval_world_upsert(); nothing was imported.';
    END IF;

    -- a run already stored (same run_id, or same world/strategy/client_run_id)
    -- or given twice is skipped
    ANALYZE pg_temp.wval_import;
    DELETE FROM pg_temp.wval_import i
    WHERE i.ord IN (SELECT d.ord
                    FROM (SELECT j.ord, row_number() OVER (PARTITION BY j.run_id ORDER BY j.ord) AS by_id
                          FROM pg_temp.wval_import j) d
                    WHERE d.by_id > 1)
       OR i.ord IN (SELECT d.ord
                    FROM (SELECT j.ord, row_number() OVER (PARTITION BY j.world_id, j.strategy_id, j.client_run_id
                                                           ORDER BY j.ord) AS by_client
                          FROM pg_temp.wval_import j WHERE j.client_run_id IS NOT NULL) d
                    WHERE d.by_client > 1)
       OR i.run_id IN (SELECT r.run_id FROM wval.evaluation_runs r JOIN pg_temp.wval_import j ON j.run_id = r.run_id)
       OR i.ord IN (SELECT j.ord FROM wval.evaluation_runs r JOIN pg_temp.wval_import j
                      ON j.client_run_id IS NOT NULL AND r.client_run_id = j.client_run_id
                     AND r.world_id = j.world_id AND r.strategy_id = j.strategy_id);

    -- the months get their partitions before any row arrives
    months := '[]';
    FOR m IN SELECT DISTINCT date_trunc('month', i.created_at AT TIME ZONE 'UTC')::date FROM pg_temp.wval_import i ORDER BY 1 LOOP
        months := months || jsonb_build_object('month', to_char(m, 'YYYY-MM'),
                                               'evaluation_runs', wval._month_partition('wval.evaluation_runs', m, true),
                                               'rule_results', wval._month_partition('wval.rule_results', m, true));
    END LOOP;

    -- chained in import order (the order of the array).  The links are
    -- computed here, one world at a time under the lock of its chain head,
    -- and the head moves once: the chain trigger, which moves the head for
    -- every row, would make a large import quadratic (every update of the
    -- head row in one transaction lengthens its version chain).  Rows that
    -- arrive with their links set are accepted from the extension owner.
    FOR wid IN SELECT DISTINCT i.world_id FROM pg_temp.wval_import i ORDER BY 1 LOOP
        PERFORM wval._require_world_access(wid, 'write');
        INSERT INTO wval.chain_heads (world_id, seq, prev_hash, head_hash)
        VALUES (wid, 0, 'sha256:' || repeat('0', 64), 'sha256:' || repeat('0', 64))
        ON CONFLICT (world_id) DO NOTHING;
        SELECT h.seq, h.head_hash INTO cseq, prev FROM wval.chain_heads h WHERE h.world_id = wid FOR UPDATE;
        ords := '{}'; seqs := '{}'; prevs := '{}'; hashes := '{}';
        FOR rec IN
            SELECT i.ord, jsonb_populate_record(NULL::wval.evaluation_runs, to_jsonb(i) - 'ord') AS r
            FROM pg_temp.wval_import i WHERE i.world_id = wid ORDER BY i.ord
        LOOP
            cseq := cseq + 1;
            ords := ords || rec.ord;
            seqs := seqs || cseq;
            prevs := prevs || prev;
            prev := wval._row_hash('evaluation_runs', cseq, prev, rec.r);
            hashes := hashes || prev;
        END LOOP;
        UPDATE pg_temp.wval_import i SET chain_seq = u.seq, prev_hash = u.prev, row_hash = u.hash
        FROM unnest(ords, seqs, prevs, hashes) AS u(ord, seq, prev, hash)
        WHERE i.ord = u.ord;
        UPDATE wval.chain_heads h SET seq = cseq, prev_hash = prevs[cardinality(prevs)], head_hash = prev,
                                      updated_at = now()
        WHERE h.world_id = wid;
    END LOOP;
    INSERT INTO wval.evaluation_runs (run_id, world_id, strategy_id, stage, kind, campaign_id, risk_tier,
                                      model_card_version, code_hash, data_snapshot, context, client_run_id,
                                      returns_hash, metrics, policy_version, ruleset_hash, profile, status,
                                      recommended_stage, recommendation, results, linked_run_id, supersedes,
                                      as_of, created_by, created_at, chain_seq, prev_hash, row_hash)
    SELECT run_id, world_id, strategy_id, stage, kind, campaign_id, risk_tier, model_card_version, code_hash,
           data_snapshot, context, client_run_id, returns_hash, metrics, policy_version, ruleset_hash, profile,
           status, recommended_stage, recommendation, results, linked_run_id, supersedes, as_of, created_by, created_at,
           chain_seq, prev_hash, row_hash
    FROM pg_temp.wval_import ORDER BY ord;
    GET DIAGNOSTICS n = ROW_COUNT;

    INSERT INTO wval.rule_results (run_id, world_id, strategy_id, stage, rule, layer, status, severity, owner,
                                   reason_code, reason, tags, details, created_at)
    SELECT i.run_id, i.world_id, i.strategy_id, i.stage, r.key, split_part(r.key, '.', 1), r.value ->> 'status',
           coalesce(r.value ->> 'severity', 'blocking'), coalesce(r.value ->> 'owner', 'quant'),
           coalesce(r.value ->> 'reason_code', 'imported'), r.value ->> 'reason',
           ARRAY(SELECT jsonb_array_elements_text(coalesce(r.value -> 'tags', '[]'))),
           coalesce(r.value -> 'details', '{}'), i.created_at
    FROM pg_temp.wval_import i, jsonb_each(i.results) r;

    PERFORM wval._audit(x.world_id, 'runs_imported', wval._invoker(),
                        jsonb_build_object('runs', x.runs, 'first_created_at', x.first_at, 'last_created_at', x.last_at,
                                           'months', months))
    FROM (SELECT i.world_id, count(*) AS runs, min(i.created_at) AS first_at, max(i.created_at) AS last_at
          FROM pg_temp.wval_import i GROUP BY i.world_id ORDER BY i.world_id) x;
    DROP TABLE pg_temp.wval_import;
    RETURN n;
END
$$;
COMMENT ON FUNCTION public.wval_import_runs(jsonb) IS 'admin only: loads historical runs with their original created_at (and metrics, status, policy_version, results, ...); append-only and hash-chained in import order; creates the monthly partitions of the imported months first; skips runs already stored; no events; audited per world; returns the number of runs imported';

------------------------------------------------------------------------------
-- The maintenance job
------------------------------------------------------------------------------

-- wval._maintenance(months_ahead): what the job wval:maintenance runs:
-- partitions ahead, and the trim of pg_cron's run history where the
-- installed wval has it.
CREATE FUNCTION wval._maintenance(months_ahead integer DEFAULT 3) RETURNS jsonb
LANGUAGE plpgsql SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    out jsonb := jsonb_build_object('partitions', public.wval_maintain(months_ahead));
    trimmed text;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_proc p
               WHERE p.pronamespace = 'wval'::regnamespace AND p.proname = '_trim_cron_history'
                 AND p.pronargdefaults = p.pronargs) THEN
        EXECUTE 'SELECT wval._trim_cron_history()::text' INTO trimmed;
        out := out || jsonb_build_object('cron_history', trimmed);
    END IF;
    RETURN out;
END
$$;
COMMENT ON FUNCTION wval._maintenance(integer) IS 'the maintenance job: wval_maintain(months_ahead), and wval._trim_cron_history() when it exists';

CREATE FUNCTION public.wval_schedule_maintenance(schedule text DEFAULT '30 3 * * *', months_ahead integer DEFAULT 3)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
BEGIN
    IF months_ahead IS NULL OR months_ahead < 0 OR months_ahead > 120 THEN
        RAISE EXCEPTION 'invalid value for "months_ahead"' USING ERRCODE = '22023',
            DETAIL = format('months_ahead is %s.', coalesce(months_ahead::text, 'null')),
            HINT = 'Pass a number of months between 0 and 120.';
    END IF;
    RETURN wval._cron_schedule('maintenance', schedule, format('SELECT wval._maintenance(%s)', months_ahead));
END
$$;
COMMENT ON FUNCTION public.wval_schedule_maintenance(text, integer) IS 'schedules (or reschedules) the pg_cron job wval:maintenance (default daily 03:30) that creates partitions months_ahead ahead and trims pg_cron''s run history; WV010 with set-up instructions when pg_cron is missing';

------------------------------------------------------------------------------
-- pg_dump, privileges
------------------------------------------------------------------------------

SELECT pg_catalog.pg_extension_config_dump('wval.retention', '');

GRANT SELECT ON wval.retention TO wval_analyst;
GRANT EXECUTE ON FUNCTION public.wval_retention_set(text, interval, text, text),
      public.wval_purge(timestamptz, text, boolean),
      public.wval_import_runs(jsonb),
      public.wval_schedule_maintenance(text, integer)
   TO wval_admin;

-- source: src/observability.sql
-- observability.sql: what wval exposes to monitoring (spec operations.md,
-- "Observability" and the invariants of "Governance and security").
--
--   wval.metrics                 one row per sample: name, labels, value
--   wval_metrics_prometheus()    the same in the Prometheus text format
--   wval_check_invariants()      the six invariants, violations as rows
--   wval.invariant_reports       what the daily job found (the metrics read it)

------------------------------------------------------------------------------
-- Evaluation counters and latency (written by wval_evaluate, evaluate.c)
------------------------------------------------------------------------------

CREATE TABLE wval.evaluation_stats (
    world_id    text NOT NULL,
    stage       text NOT NULL,
    status      text NOT NULL,
    shard       smallint NOT NULL,
    runs        bigint NOT NULL DEFAULT 0,
    seconds_sum float8 NOT NULL DEFAULT 0,
    buckets     bigint[] NOT NULL,
    PRIMARY KEY (world_id, stage, status, shard)
);
COMMENT ON TABLE wval.evaluation_stats IS 'counters of wval_evaluate per world, stage and status: runs, total seconds and a latency histogram (buckets of wval._latency_bounds(), not cumulative); sharded by backend so that concurrent evaluations do not queue on one row; updated in the evaluating transaction';

-- wval._latency_bounds(): upper bounds (seconds) of the latency histogram
CREATE FUNCTION wval._latency_bounds() RETURNS float8[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT '{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1}'::float8[] $$;
COMMENT ON FUNCTION wval._latency_bounds() IS 'upper bounds in seconds of the evaluation latency histogram (the last bucket of evaluation_stats.buckets is +Inf); keep in step with evaluate.c';

-- non-single runs (live, portfolio, cohort) of the last day, for the metrics
INSERT INTO wval.partition_indexes (parent, spec) VALUES
    ('evaluation_runs', '(created_at) WHERE kind <> ''single''');
CREATE INDEX ON wval.evaluation_runs_default (created_at) WHERE kind <> 'single';

CREATE FUNCTION wval._metric_coverage(metrics jsonb) RETURNS float8
    AS 'MODULE_PATHNAME', 'wval_metric_coverage_sql' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION wval._metric_coverage(jsonb) IS 'share of the 12 v1 core metrics present in a metrics document (validation_health.metric_coverage_ratio)';

------------------------------------------------------------------------------
-- Invariants
------------------------------------------------------------------------------

CREATE FUNCTION public.wval_check_invariants(world_id text DEFAULT NULL)
RETURNS TABLE (invariant text, world text, strategy text, run uuid, detail text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    w record;
    p record;
BEGIN
    -- 1. a strategy deployed live has a latest live run that passed (or an
    --    approved, not overdue override), evaluated under a policy version at
    --    least the one active when it ran
    RETURN QUERY
    WITH live AS (
        SELECT cs.world_id, cs.strategy_id FROM wval.current_stage cs
        WHERE cs.stage = 'live' AND (wval_check_invariants.world_id IS NULL OR cs.world_id = wval_check_invariants.world_id)
    ), latest AS (
        SELECT l.world_id, l.strategy_id, r.run_id, r.status, r.policy_version, r.created_at, co.status AS override,
               co.review_due_at,
               (SELECT a.version FROM wval.policy_activations a
                WHERE a.world_id = l.world_id AND a.activated_at <= r.created_at
                ORDER BY a.activation_id DESC LIMIT 1) AS active_then
        FROM live l
        LEFT JOIN LATERAL (
            SELECT e.run_id, e.status, e.policy_version, e.created_at FROM wval.evaluation_runs e
            WHERE e.world_id = l.world_id AND e.strategy_id = l.strategy_id AND e.kind = 'live'
            ORDER BY e.created_at DESC LIMIT 1) r ON true
        LEFT JOIN wval.current_overrides co ON co.run_id = r.run_id
    )
    SELECT 'live_strategy_validated', x.world_id, x.strategy_id, x.run_id,
           CASE WHEN x.run_id IS NULL THEN 'deployed live without any live run'
                WHEN x.status <> 'pass' AND NOT (x.override = 'approved' AND x.review_due_at >= now())
                     THEN format('latest live run is %s without an approved, current override', x.status)
                ELSE format('latest live run used policy version %s, version %s was active', x.policy_version, x.active_then) END
    FROM latest x
    WHERE x.run_id IS NULL
       OR (x.status <> 'pass' AND NOT (x.override IS NOT DISTINCT FROM 'approved' AND x.review_due_at >= now()))
       OR x.policy_version < x.active_then;

    -- 2. high-tier, client-critical worlds are fail-closed
    RETURN QUERY
    SELECT 'fail_closed', e.world_id, e.strategy_id, e.run_id,
           'a run of a fail-closed world let a missing metric or an error pass: ' || x.key
    FROM wval.worlds wo
    JOIN wval.evaluation_runs e ON e.world_id = wo.world_id
    CROSS JOIN LATERAL jsonb_each(e.results) x
    WHERE wo.risk_tier = 'high' AND wo.client_critical
      AND (wval_check_invariants.world_id IS NULL OR wo.world_id = wval_check_invariants.world_id)
      AND e.created_at >= wo.created_at
      AND x.value->>'reason_code' = 'missing_metric_ignored';

    -- 3. every approved override has reason, actor and a review date, and is not overdue
    RETURN QUERY
    SELECT 'override_in_order', q.world_id, q.strategy_id, q.run_id,
           CASE WHEN cardinality(q.missing_fields) > 0 THEN 'approved override lacks ' || array_to_string(q.missing_fields, ', ')
                ELSE format('approved override overdue since %s', q.review_due_at) END
    FROM wval.override_queue q
    WHERE (wval_check_invariants.world_id IS NULL OR q.world_id = wval_check_invariants.world_id)
      AND (q.overdue OR cardinality(q.missing_fields) > 0);

    -- 4. recorded validation_health matches a recomputation (last 30 days)
    RETURN QUERY
    SELECT 'validation_health', e.world_id, e.strategy_id, e.run_id,
           format('recorded coverage %s / errors %s, recomputed %s / %s',
                  e.metrics #>> '{diagnostics,validation_health,metric_coverage_ratio}',
                  e.metrics #>> '{diagnostics,validation_health,validation_error_count}', c.coverage, c.errors)
    FROM wval.evaluation_runs e
    CROSS JOIN LATERAL (SELECT wval._metric_coverage(e.metrics - 'diagnostics' || jsonb_build_object('diagnostics',
                                   (e.metrics -> 'diagnostics') - 'validation_health')) AS coverage,
                               (SELECT count(*) FROM jsonb_each(e.results) r WHERE r.value->>'reason_code' = 'rule_error') AS errors) c
    WHERE e.kind = 'single' AND e.status <> 'unvalidated' AND e.created_at >= now() - interval '30 days'
      AND (wval_check_invariants.world_id IS NULL OR e.world_id = wval_check_invariants.world_id)
      AND e.metrics #> '{diagnostics,validation_health}' IS NOT NULL
      AND (abs((e.metrics #>> '{diagnostics,validation_health,metric_coverage_ratio}')::float8 - c.coverage) > 1e-12
           OR (e.metrics #>> '{diagnostics,validation_health,validation_error_count}')::int <> c.errors);

    -- 5. risk snapshots are fresh for every world with live strategies
    RETURN QUERY
    SELECT 'snapshot_fresh', l.world_id, NULL::text, NULL::uuid,
           coalesce(format('latest snapshot %s is %s old', f.version, date_trunc('second', f.lag)), 'no risk snapshot')
    FROM (SELECT DISTINCT cs.world_id FROM wval.current_stage cs WHERE cs.stage = 'live'
          AND (wval_check_invariants.world_id IS NULL OR cs.world_id = wval_check_invariants.world_id)) l
    LEFT JOIN LATERAL (SELECT sf.version, sf.lag, sf.fresh FROM wval.snapshot_freshness sf
                       WHERE sf.world_id = l.world_id ORDER BY sf.as_of DESC LIMIT 1) f ON true
    WHERE f.fresh IS NOT TRUE;

    -- 6. the hash chain verifies
    FOR w IN SELECT wo.world_id FROM wval.worlds wo
             WHERE wval_check_invariants.world_id IS NULL OR wo.world_id = wval_check_invariants.world_id LOOP
        FOR p IN SELECT * FROM public.wval_chain_problems(w.world_id) LOOP
            invariant := 'hash_chain'; world := w.world_id; strategy := NULL; run := NULL;
            detail := format('%s chain_seq %s: %s', p.table_name, p.chain_seq, p.problem);
            RETURN NEXT;
        END LOOP;
    END LOOP;
END
$$;
COMMENT ON FUNCTION public.wval_check_invariants(text) IS 'the invariants of operations.md as violation rows (invariant, world, strategy, run, detail): live strategies validated, fail-closed worlds, overrides in order, validation_health recomputable, fresh snapshots for live worlds, hash chains intact';

CREATE SEQUENCE wval.invariant_reports_id_seq;
CREATE TABLE wval.invariant_reports (
    report_id  bigint NOT NULL DEFAULT nextval('wval.invariant_reports_id_seq') PRIMARY KEY,
    checked_at timestamptz NOT NULL DEFAULT now(),
    violations jsonb NOT NULL,
    counts     jsonb NOT NULL
);
ALTER SEQUENCE wval.invariant_reports_id_seq OWNED BY wval.invariant_reports.report_id;
COMMENT ON TABLE wval.invariant_reports IS 'each run of wval_run_invariants(): the violations found and their count per invariant (append-only)';
SELECT wval._protect('wval.invariant_reports');
SELECT pg_catalog.pg_extension_config_dump('wval.invariant_reports', '');
SELECT pg_catalog.pg_extension_config_dump('wval.invariant_reports_id_seq', '');

CREATE FUNCTION public.wval_run_invariants() RETURNS wval.invariant_reports
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    rep wval.invariant_reports;
BEGIN
    INSERT INTO wval.invariant_reports (violations, counts)
    SELECT coalesce(jsonb_agg(to_jsonb(v)), '[]'),
           jsonb_build_object('live_strategy_validated', count(*) FILTER (WHERE v.invariant = 'live_strategy_validated'),
                              'fail_closed', count(*) FILTER (WHERE v.invariant = 'fail_closed'),
                              'override_in_order', count(*) FILTER (WHERE v.invariant = 'override_in_order'),
                              'validation_health', count(*) FILTER (WHERE v.invariant = 'validation_health'),
                              'snapshot_fresh', count(*) FILTER (WHERE v.invariant = 'snapshot_fresh'),
                              'hash_chain', count(*) FILTER (WHERE v.invariant = 'hash_chain'))
    FROM public.wval_check_invariants() v
    RETURNING * INTO rep;
    RETURN rep;
END
$$;
COMMENT ON FUNCTION public.wval_run_invariants() IS 'checks every invariant of every world and stores the report in wval.invariant_reports (what the daily job wval:invariants runs)';

CREATE FUNCTION public.wval_schedule_invariants(schedule text DEFAULT '30 3 * * *') RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
    SELECT wval._cron_schedule('invariants', schedule, 'SELECT public.wval_run_invariants()');
$$;
COMMENT ON FUNCTION public.wval_schedule_invariants(text) IS 'schedules the daily invariant check (pg_cron job wval:invariants)';

------------------------------------------------------------------------------
-- Metrics
------------------------------------------------------------------------------

CREATE VIEW wval.metrics AS
-- evaluations by world, stage and status
SELECT 'wval_evaluations_total'::text AS name, 'counter'::text AS type,
       'wval_evaluate calls recorded, by world, stage and status'::text AS help,
       jsonb_build_object('world_id', s.world_id, 'stage', s.stage, 'status', s.status) AS labels,
       sum(s.runs)::float8 AS value
FROM wval.evaluation_stats s GROUP BY s.world_id, s.stage, s.status
UNION ALL
-- evaluation latency histogram by stage (cumulative buckets)
SELECT 'wval_evaluation_duration_seconds_bucket', 'histogram', 'wval_evaluate latency in seconds',
       jsonb_build_object('stage', h.stage, 'le', CASE WHEN h.i > cardinality(wval._latency_bounds()) THEN '+Inf'
                                                        ELSE (wval._latency_bounds())[h.i]::text END),
       sum(h.n) OVER (PARTITION BY h.stage ORDER BY h.i)::float8
FROM (SELECT s.stage, b.i, sum(b.n) AS n
      FROM wval.evaluation_stats s, unnest(s.buckets) WITH ORDINALITY b(n, i)
      GROUP BY s.stage, b.i) h
UNION ALL
SELECT 'wval_evaluation_duration_seconds_sum', 'histogram', 'wval_evaluate latency in seconds',
       jsonb_build_object('stage', s.stage), sum(s.seconds_sum) FROM wval.evaluation_stats s GROUP BY s.stage
UNION ALL
SELECT 'wval_evaluation_duration_seconds_count', 'histogram', 'wval_evaluate latency in seconds',
       jsonb_build_object('stage', s.stage), sum(s.runs)::float8 FROM wval.evaluation_stats s GROUP BY s.stage
UNION ALL
-- live, portfolio and cohort runs of the last day
SELECT 'wval_runs_last_day', 'gauge', 'live, portfolio and cohort runs of the last 24 hours, by world, kind and status',
       jsonb_build_object('world_id', e.world_id, 'kind', e.kind, 'status', e.status), count(*)::float8
FROM wval.evaluation_runs e WHERE e.kind <> 'single' AND e.created_at >= now() - interval '1 day'
GROUP BY e.world_id, e.kind, e.status
UNION ALL
SELECT 'wval_demotion_candidates_open', 'gauge', 'strategies flagged by live monitoring and not yet decided on',
       jsonb_build_object('world_id', d.world_id), count(*)::float8
FROM wval.open_demotion_candidates d GROUP BY d.world_id
UNION ALL
-- the bus, per group and type
SELECT 'wval_bus_' || m.k, m.t, m.h, jsonb_build_object('group', b.group_name, 'type', b.type), m.v
FROM wval.bus_health b,
     LATERAL (VALUES ('backlog', 'gauge', 'events not yet acknowledged', b.backlog::float8),
                     ('oldest_unacked_seconds', 'gauge', 'age of the oldest unacknowledged event', extract(epoch FROM b.oldest_unacked_age)::float8),
                     ('processed_total', 'counter', 'events acknowledged', b.processed::float8),
                     ('retried_total', 'counter', 'events handed out again after a nack or a timeout', b.retried::float8),
                     ('dead_lettered_total', 'counter', 'events moved to the dead letters', b.dead_lettered::float8),
                     ('dead_letters', 'gauge', 'events now in the dead letters', b.dead_letters::float8),
                     ('dedupe_hits_total', 'counter', 'publishes that were no-ops (idempotency key known)', b.dedupe_hits::float8),
                     ('expired_total', 'counter', 'events past their TTL, acknowledged unprocessed', b.expired::float8),
                     ('latency_p95_seconds', 'gauge', 'p95 of enqueue to acknowledgement', (b.latency_p95_ms / 1000)::float8)) m(k, t, h, v)
WHERE m.v IS NOT NULL
UNION ALL
-- risk snapshots per world and stage, freshness per world
SELECT 'wval_snapshots_' || m.k || '_total', 'counter', 'risk snapshot publishes: ' || m.k,
       jsonb_build_object('world_id', s.world_id, 'stage', s.stage), m.v
FROM wval.snapshot_stats s,
     LATERAL (VALUES ('processed', s.processed::float8), ('dedupe', s.dedupe::float8),
                     ('expired', s.expired::float8), ('failed', s.failed::float8)) m(k, v)
UNION ALL
SELECT 'wval_snapshot_lag_seconds', 'gauge', 'now minus as_of of the latest risk snapshot, per world',
       jsonb_build_object('world_id', f.world_id), min(extract(epoch FROM f.lag))::float8
FROM wval.snapshot_freshness f GROUP BY f.world_id
UNION ALL
SELECT 'wval_snapshot_missing', 'gauge', 'worlds with paper or live strategies and no fresh risk snapshot',
       jsonb_build_object('world_id', d.world_id), 1
FROM (SELECT DISTINCT cs.world_id FROM wval.current_stage cs WHERE cs.stage IN ('paper', 'live')) d
WHERE NOT EXISTS (SELECT 1 FROM wval.snapshot_freshness f WHERE f.world_id = d.world_id AND f.fresh)
UNION ALL
-- schedules
SELECT 'wval_schedule_late_seconds', 'gauge', 'how late the next expected run of a wval pg_cron job is',
       jsonb_build_object('job', h.job), coalesce(extract(epoch FROM h.late_by), 0)::float8
FROM wval.schedule_health h
UNION ALL
SELECT 'wval_schedule_last_success_timestamp_seconds', 'gauge', 'when a wval pg_cron job last succeeded (unix time)',
       jsonb_build_object('job', h.job), extract(epoch FROM h.last_success)::float8
FROM wval.schedule_health h WHERE h.last_success IS NOT NULL
UNION ALL
SELECT 'wval_schedule_missed_last_day', 'gauge', 'missed or failed runs of a wval pg_cron job in 24 hours',
       jsonb_build_object('job', h.job), coalesce(h.missed_24h, 0)::float8
FROM wval.schedule_health h
UNION ALL
-- overrides and invariants
SELECT 'wval_overrides_overdue', 'gauge', 'approved overrides past their review date',
       jsonb_build_object('world_id', q.world_id), count(*)::float8
FROM wval.override_queue q WHERE q.overdue GROUP BY q.world_id
UNION ALL
SELECT 'wval_invariant_violations', 'gauge', 'violations found by the latest invariant check (wval_run_invariants)',
       jsonb_build_object('invariant', c.key), c.value::text::float8
FROM (SELECT r.counts FROM wval.invariant_reports r ORDER BY r.report_id DESC LIMIT 1) r, jsonb_each(r.counts) c
UNION ALL
SELECT 'wval_invariant_check_age_seconds', 'gauge', 'seconds since the latest invariant check', '{}'::jsonb,
       extract(epoch FROM now() - max(r.checked_at))::float8
FROM wval.invariant_reports r HAVING count(*) > 0;
COMMENT ON VIEW wval.metrics IS 'every metric wval exposes, one row per sample (name, type, help, labels, value); wval_metrics_prometheus() renders it in the Prometheus text format';

CREATE FUNCTION public.wval_metrics_prometheus() RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
    WITH m AS (SELECT * FROM wval.metrics),
    families AS (
        SELECT regexp_replace(m.name, '_(bucket|sum|count)$', '') AS family, min(m.type) AS type, min(m.help) AS help
        FROM m GROUP BY 1
    )
    SELECT coalesce(string_agg(block, E'\n' ORDER BY family), '') || E'\n'
    FROM (
        SELECT f.family,
               format('# HELP %s %s', f.family, f.help) || E'\n' || format('# TYPE %s %s', f.family, f.type) || E'\n' ||
               string_agg(m.name ||
                          CASE WHEN m.labels = '{}' THEN ''
                               ELSE '{' || (SELECT string_agg(format('%s="%s"', l.key,
                                                   replace(replace(replace(l.value, '\', '\\'), '"', '\"'), E'\n', '\n')), ',' ORDER BY l.key)
                                            FROM jsonb_each_text(m.labels) l) || '}' END ||
                          ' ' || CASE WHEN m.value = 'Infinity' THEN '+Inf' WHEN m.value = '-Infinity' THEN '-Inf'
                                      ELSE m.value::text END,
                          E'\n' ORDER BY m.name, m.labels::text) AS block
        FROM families f JOIN m ON regexp_replace(m.name, '_(bucket|sum|count)$', '') = f.family
                               AND (f.type = 'histogram' OR m.name = f.family)
        GROUP BY f.family, f.type, f.help
    ) b
$$;
COMMENT ON FUNCTION public.wval_metrics_prometheus() IS 'wval.metrics in the Prometheus text exposition format (for a postgres_exporter query or an HTTP scraper)';

GRANT SELECT ON wval.evaluation_stats, wval.invariant_reports, wval.metrics TO wval_analyst;
GRANT EXECUTE ON FUNCTION public.wval_metrics_prometheus(), wval._latency_bounds(), wval._metric_coverage(jsonb),
      public.wval_check_invariants(text) TO wval_analyst;
GRANT EXECUTE ON FUNCTION public.wval_run_invariants(), public.wval_schedule_invariants(text) TO wval_admin;

-- source: src/finish.sql
-- finish.sql: last part of the install script.
-- Nothing of wval is granted to PUBLIC: EXECUTE on every function of the
-- extension is revoked from PUBLIC here, after each concept's file has
-- granted what its roles need.

DO $finish$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT d.objid::regprocedure
        FROM pg_depend d
        JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'wval'
        WHERE d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
    LOOP
        EXECUTE format('REVOKE ALL ON ROUTINE %s FROM PUBLIC', f);  -- ROUTINE: procedures too
    END LOOP;
END
$finish$;

-- Row-level security on every world-scoped table, caller's rights on every view.
DO $rls$
DECLARE
    t regclass;
    v regclass;
BEGIN
    FOR t IN
        SELECT c.oid::regclass FROM pg_class c
        WHERE c.relnamespace = 'wval'::regnamespace AND c.relkind IN ('r', 'p')
          AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'world_id' AND NOT a.attisdropped)
          AND c.oid <> 'wval.world_grants'::regclass
    LOOP
        PERFORM wval._secure(t);
    END LOOP;
    -- views run with the caller's rights, except those that hide columns the
    -- caller may not read (they filter by world themselves)
    FOR v IN SELECT c.oid::regclass FROM pg_class c
             WHERE c.relnamespace = 'wval'::regnamespace AND c.relkind = 'v'
               AND c.oid <> 'wval.current_producers'::regclass
    LOOP
        EXECUTE format('ALTER VIEW %s SET (security_invoker = true)', v);
    END LOOP;
END
$rls$;
