-- updates/0.1.0--0.2.0.sql: the hand-written part of wval--0.1.0--0.2.0.sql.
--
-- The Makefile runs scripts/upgrade-script.py, which copies this file and
-- replaces the marker lines: "-- @routines" by the DROP of changed or
-- removed routines and CREATE OR REPLACE of every routine of 0.2.0,
-- "-- @comments" by every COMMENT ON of 0.2.0, "-- @grants" by every GRANT
-- and REVOKE of 0.2.0, "-- @include FILE" by that file.  Write here, in
-- order, what the generator cannot know: new and changed tables, columns,
-- types, sequences, indexes, triggers, policies, event triggers, views and
-- data fixes.  See docs/development.md, "Upgrades".
--
-- History rule: never give a column of a chained table a value in rows that
-- exist (the chain hash covers every non-null column, see src/store.c); add
-- it without a default, then SET DEFAULT.  Rows written before the update
-- keep null there, so such a column cannot be NOT NULL in an updated
-- database (test/sessions/upgrade.sh lists these columns).

------------------------------------------------------------------------------
-- Before the routines: what their signatures name
------------------------------------------------------------------------------

-- separation of duties by login
CREATE SEQUENCE wval.governance_exceptions_id_seq;
CREATE TABLE wval.governance_exceptions (
    exception_id bigint NOT NULL DEFAULT nextval('wval.governance_exceptions_id_seq'),
    world_id     text NOT NULL,
    login        name NOT NULL,
    rule         text NOT NULL CHECK (rule IN ('two_person', 'override_author', 'promotion_author')),
    reason       text NOT NULL,
    actor        text NOT NULL,
    granted_by   name NOT NULL DEFAULT session_user,
    granted_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    chain_seq    bigint NOT NULL,
    prev_hash    text NOT NULL,
    row_hash     text NOT NULL,
    PRIMARY KEY (world_id, exception_id),
    CHECK (expires_at > granted_at)
);
SELECT wval._secure('wval.governance_exceptions');
ALTER SEQUENCE wval.governance_exceptions_id_seq OWNED BY wval.governance_exceptions.exception_id;

-- wval_select keeps its candidates in an array of this type
CREATE TYPE wval.select_candidate AS (
    strategy_id text,
    metrics     jsonb,
    value       float8,
    ok          boolean,
    rank        integer,
    reason      text
);

-- the working rows of purge, import and month move (no temporary tables in definer code)
CREATE SEQUENCE wval.work_id_seq;
CREATE UNLOGGED TABLE wval.work_purge_scope (
    work_id        bigint NOT NULL,
    world_id       text NOT NULL,
    runs_cut       timestamptz,
    versions_cut   timestamptz,
    active_version integer,
    PRIMARY KEY (work_id, world_id)
);
SELECT wval._secure('wval.work_purge_scope');
CREATE UNLOGGED TABLE wval.work_purge_runs (
    work_id    bigint NOT NULL,
    part       oid NOT NULL,
    world_id   text NOT NULL,
    run_id     uuid NOT NULL,
    created_at timestamptz NOT NULL,
    chain_seq  bigint NOT NULL,
    prev_hash  text NOT NULL,
    row_hash   text NOT NULL
);
SELECT wval._secure('wval.work_purge_runs');
CREATE INDEX ON wval.work_purge_runs (work_id, run_id);
CREATE UNLOGGED TABLE wval.work_purge_overrides (
    work_id     bigint NOT NULL,
    world_id    text NOT NULL,
    override_id bigint NOT NULL,
    recorded_at timestamptz NOT NULL,
    chain_seq   bigint NOT NULL,
    prev_hash   text NOT NULL,
    row_hash    text NOT NULL
);
SELECT wval._secure('wval.work_purge_overrides');
CREATE INDEX ON wval.work_purge_overrides (work_id, override_id);
CREATE UNLOGGED TABLE wval.work_purge_failures (
    work_id     bigint NOT NULL,
    world_id    text NOT NULL,
    entry_id    bigint NOT NULL,
    case_id     uuid NOT NULL,
    recorded_at timestamptz NOT NULL,
    chain_seq   bigint NOT NULL,
    prev_hash   text NOT NULL,
    row_hash    text NOT NULL
);
SELECT wval._secure('wval.work_purge_failures');
CREATE INDEX ON wval.work_purge_failures (work_id, entry_id);
CREATE UNLOGGED TABLE wval.work_purge_versions (
    work_id    bigint NOT NULL,
    world_id   text NOT NULL,
    version    integer NOT NULL,
    created_at timestamptz NOT NULL,
    chain_seq  bigint NOT NULL,
    prev_hash  text NOT NULL,
    row_hash   text NOT NULL,
    PRIMARY KEY (work_id, world_id, version)
);
SELECT wval._secure('wval.work_purge_versions');
CREATE UNLOGGED TABLE wval.work_purge_activations (
    work_id       bigint NOT NULL,
    world_id      text NOT NULL,
    activation_id bigint NOT NULL,
    activated_at  timestamptz NOT NULL,
    chain_seq     bigint NOT NULL,
    prev_hash     text NOT NULL,
    row_hash      text NOT NULL
);
SELECT wval._secure('wval.work_purge_activations');
CREATE INDEX ON wval.work_purge_activations (work_id, activation_id);
CREATE UNLOGGED TABLE wval.work_purge_returns (
    work_id      bigint NOT NULL,
    world_id     text NOT NULL,
    returns_hash text NOT NULL,
    chain_seq    bigint NOT NULL,
    prev_hash    text NOT NULL,
    row_hash     text NOT NULL,
    PRIMARY KEY (work_id, world_id, returns_hash)
);
SELECT wval._secure('wval.work_purge_returns');
-- Stages: one domain per list (src/wval.sql) instead of a CHECK per column.
-- The domains' functions come first (@routines re-creates them unchanged).
-- Changing a column's type rewrites the table (partitions included) but not
-- its values: the chain hashes stay valid (the canonical text of a domain is
-- that of text).  The views over these columns are dropped here and re-created
-- below (-- @view), before work_import copies evaluation_runs' column types.
CREATE FUNCTION wval._stages() RETURNS text[]
LANGUAGE C IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'wval_stages';
CREATE FUNCTION wval._deployment_stages() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT ARRAY['backtest', 'paper', 'live', 'retired'] $$;
CREATE FUNCTION wval._recommended_stages() RETURNS text[]
LANGUAGE C IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'wval_recommended_stages';
CREATE DOMAIN wval.stage AS text CHECK (VALUE = ANY (wval._stages()));
CREATE DOMAIN wval.deployment_stage AS text CHECK (VALUE = ANY (wval._deployment_stages()));
CREATE DOMAIN wval.recommended_stage AS text CHECK (VALUE = ANY (wval._recommended_stages()));
DROP VIEW wval.metrics, wval.latest_runs, wval.current_stage, wval.open_demotion_candidates, wval.snapshot_freshness;
ALTER TABLE wval.evaluation_runs DROP CONSTRAINT evaluation_runs_stage_check,
    DROP CONSTRAINT evaluation_runs_recommended_stage_check,
    ALTER COLUMN stage TYPE wval.stage, ALTER COLUMN recommended_stage TYPE wval.recommended_stage;
-- Rule results are stored once (issue 13): wval.rule_results becomes a view
-- over evaluation_runs.results (created below, -- @view).  Every stored row
-- must be one the view derives, or the update stops before dropping a fact.
DO $rr$
DECLARE
    n bigint;
    first text;
BEGIN
    WITH stored AS (
        SELECT r.run_id, r.world_id, r.strategy_id, r.stage::text AS stage, r.rule, r.layer, r.status, r.severity,
               r.owner, r.reason_code, r.reason, r.tags, r.details, r.created_at
        FROM wval.rule_results r
    ), derived AS (
        SELECT e.run_id, e.world_id, e.strategy_id, e.stage::text AS stage, k.key AS rule,
               split_part(k.key, '.', 1) AS layer, k.value ->> 'status' AS status,
               coalesce(k.value ->> 'severity', 'blocking') AS severity, coalesce(k.value ->> 'owner', 'quant') AS owner,
               coalesce(k.value ->> 'reason_code', 'imported') AS reason_code, k.value ->> 'reason' AS reason,
               ARRAY(SELECT jsonb_array_elements_text(coalesce(k.value -> 'tags', '[]'))) AS tags,
               coalesce(k.value -> 'details', '{}') AS details, e.created_at
        FROM wval.evaluation_runs e CROSS JOIN LATERAL jsonb_each(e.results) k
        WHERE jsonb_typeof(e.results) = 'object'
    ), lost AS (SELECT * FROM stored EXCEPT ALL SELECT * FROM derived)
    SELECT (SELECT count(*) FROM lost), (SELECT l::text FROM lost l ORDER BY l.world_id, l.created_at, l.run_id, l.rule LIMIT 1)
    INTO n, first;
    IF n > 0 THEN
        RAISE EXCEPTION 'wval.rule_results holds % row(s) that the results of their runs do not record', n
            USING ERRCODE = 'XX000',
                  DETAIL = format('The first is %s.', first),
                  HINT = 'wval 0.2.0 derives rule_results from evaluation_runs.results; nothing was changed. '
                         'Save these rows (SELECT ... FROM wval.rule_results EXCEPT the derived rows), then remove them '
                         'or correct the runs with a DBA''s care, and update again.';
    END IF;
END
$rr$;
-- (leaving the extension takes the default partition off the config-dump list)
ALTER EXTENSION wval DROP TABLE wval.rule_results_default;
DROP TABLE wval.rule_results;
DELETE FROM wval.partition_indexes WHERE parent = 'rule_results';
ALTER TABLE wval.risk_snapshots DROP CONSTRAINT risk_snapshots_stage_check, ALTER COLUMN stage TYPE wval.stage;
ALTER TABLE wval.snapshot_counters ALTER COLUMN stage TYPE wval.stage;
ALTER TABLE wval.selections ALTER COLUMN stage TYPE wval.stage;
ALTER TABLE wval.deployments DROP CONSTRAINT deployments_stage_check, DROP CONSTRAINT deployments_previous_stage_check,
    ALTER COLUMN stage TYPE wval.deployment_stage, ALTER COLUMN previous_stage TYPE wval.deployment_stage;
ALTER TABLE wval.demotion_candidates ALTER COLUMN stage TYPE wval.stage;
ALTER TABLE wval.scenario_cases DROP CONSTRAINT scenario_cases_expected_stage_check,
    ALTER COLUMN expected_stage TYPE wval.recommended_stage;
ALTER TABLE wval.evaluation_stats ALTER COLUMN stage TYPE wval.stage;

CREATE UNLOGGED TABLE wval.work_import (work_id bigint NOT NULL, LIKE wval.evaluation_runs INCLUDING DEFAULTS, ord bigint NOT NULL);
SELECT wval._secure('wval.work_import');
ALTER TABLE wval.work_import ALTER COLUMN chain_seq DROP NOT NULL, ALTER COLUMN prev_hash DROP NOT NULL,
    ALTER COLUMN row_hash DROP NOT NULL;
CREATE INDEX ON wval.work_import (work_id, ord);
CREATE INDEX ON wval.work_import (work_id, run_id);

-- logins next to the person labels (null in rows written before 0.2.0)
ALTER TABLE wval.policy_versions ADD COLUMN published_by name;
ALTER TABLE wval.policy_versions ALTER COLUMN published_by SET DEFAULT session_user;
ALTER TABLE wval.overrides ADD COLUMN login name;
ALTER TABLE wval.overrides ALTER COLUMN login SET DEFAULT session_user;
ALTER TABLE wval.audit_log ADD COLUMN login name;
ALTER TABLE wval.audit_log ALTER COLUMN login SET DEFAULT session_user;
ALTER TABLE wval.deployments ADD COLUMN login name;
ALTER TABLE wval.deployments ALTER COLUMN login SET DEFAULT session_user;
-- the latest override of a run is its last decision, also within one transaction
ALTER TABLE wval.overrides ALTER COLUMN recorded_at SET DEFAULT clock_timestamp();

-- a consumer group belongs to the role that subscribed it; groups of 0.1.0
-- were subscribed by created_by (session_user), internal groups have none
ALTER TABLE wval.consumer_groups ADD COLUMN owner name;
UPDATE wval.consumer_groups SET owner = created_by WHERE NOT internal;

-- bounded storage (issue 15): retention settings of live returns, risk
-- snapshots and the outbox; range tombstones (not chained: a new column is
-- safe)
ALTER TABLE wval.retention DROP CONSTRAINT retention_table_name_check, DROP CONSTRAINT retention_minimum;
ALTER TABLE wval.retention
    ADD CONSTRAINT retention_table_name_check
        CHECK (table_name IN ('*', 'evaluation_runs', 'policy_versions', 'live_returns', 'risk_snapshots', 'events')),
    ADD CONSTRAINT retention_minimum
        CHECK (keep >= interval '90 days' OR (table_name IN ('risk_snapshots', 'events') AND keep >= interval '0')),
    ADD CONSTRAINT retention_events_global CHECK (table_name <> 'events' OR world_id = '*');
ALTER TABLE wval.chain_tombstones ADD COLUMN last_seq bigint CHECK (last_seq > chain_seq);

-- chain lanes (settings.chain_lanes): a head per lane of a world's chain;
-- the heads that exist are lane 0, so every stored link keeps its place
ALTER TABLE wval.chain_heads ADD COLUMN lane integer NOT NULL DEFAULT 0 CHECK (lane BETWEEN 0 AND 63);
ALTER TABLE wval.chain_heads DROP CONSTRAINT chain_heads_pkey, ADD PRIMARY KEY (world_id, lane);

-- lifecycle (issue 15): staged rollout (the stages of an activation, null
-- for every stage: rows of 0.1.0 keep null), revalidation runs and their
-- demotion candidates, the re-validation queue and override requests
ALTER TABLE wval.policy_activations ADD COLUMN stages text[];
ALTER TABLE wval.policy_activations ADD CONSTRAINT policy_activations_stages_check CHECK (stages IS NULL OR (cardinality(stages) > 0
        AND stages <@ wval._stages() AND array_position(stages, NULL) IS NULL));
ALTER TABLE wval.evaluation_runs DROP CONSTRAINT evaluation_runs_kind_check,
    ADD CONSTRAINT evaluation_runs_kind_check
        CHECK (kind IN ('single', 'cohort', 'live', 'portfolio', 'stress', 'revalidation'));
ALTER TABLE wval.demotion_candidates DROP CONSTRAINT demotion_candidates_trigger_check,
    ADD CONSTRAINT demotion_candidates_trigger_check CHECK (trigger IN ('blocking_fail', 'soft_fail_streak', 'revalidation'));
CREATE SEQUENCE wval.revalidation_queue_id_seq;
CREATE TABLE wval.revalidation_queue (
    item_id             bigint NOT NULL DEFAULT nextval('wval.revalidation_queue_id_seq'),
    world_id            text NOT NULL,
    strategy_id         text NOT NULL,
    deployed_stage      wval.deployment_stage NOT NULL,
    activation_id       bigint NOT NULL,
    version             integer NOT NULL,
    run_id              uuid NOT NULL,
    state               text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'skipped', 'failed')),
    attempts            integer NOT NULL DEFAULT 0,
    enqueued_at         timestamptz NOT NULL DEFAULT now(),
    processed_at        timestamptz,
    revalidation_run_id uuid,
    outcome             text CHECK (outcome IN ('unchanged', 'improved', 'worsened')),
    candidate_id        bigint,
    note                text,
    PRIMARY KEY (world_id, item_id)
);
SELECT wval._secure('wval.revalidation_queue');
ALTER SEQUENCE wval.revalidation_queue_id_seq OWNED BY wval.revalidation_queue.item_id;
CREATE INDEX ON wval.revalidation_queue (item_id) WHERE state = 'pending';
CREATE INDEX ON wval.revalidation_queue (world_id, activation_id);
CREATE SEQUENCE wval.override_requests_id_seq;
CREATE TABLE wval.override_requests (
    entry_id           bigint NOT NULL DEFAULT nextval('wval.override_requests_id_seq'),
    request_id         uuid NOT NULL,
    world_id           text NOT NULL,
    run_id             uuid NOT NULL,
    strategy_id        text NOT NULL,
    state              text NOT NULL CHECK (state IN ('requested', 'approval', 'approved', 'rejected')),
    reason             text NOT NULL,
    actor              text NOT NULL,
    login              name NOT NULL DEFAULT session_user,
    approvals_required integer NOT NULL CHECK (approvals_required BETWEEN 1 AND 3),
    due_at             timestamptz NOT NULL,
    override_id        bigint,
    recorded_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    chain_seq          bigint NOT NULL,
    prev_hash          text NOT NULL,
    row_hash           text NOT NULL,
    PRIMARY KEY (world_id, request_id, entry_id)
);
SELECT wval._secure('wval.override_requests');
ALTER SEQUENCE wval.override_requests_id_seq OWNED BY wval.override_requests.entry_id;
CREATE INDEX ON wval.override_requests (request_id, entry_id DESC);
CREATE INDEX ON wval.override_requests (run_id);

-- @routines

------------------------------------------------------------------------------
-- After the routines
------------------------------------------------------------------------------

-- 0.2.0's _protect makes the history triggers fire ALWAYS (also under
-- session_replication_role = replica): apply it to every protected table,
-- monthly partitions included
SELECT wval._protect(c.oid::regclass)
FROM pg_catalog.pg_class c
WHERE c.relnamespace = 'wval'::regnamespace
  AND EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = 'wval_append_only')
ORDER BY c.oid;
SELECT wval._protect('wval.governance_exceptions', 'governance_exceptions');

-- tables that only wval's writers change in place
SELECT wval._protect_in_place('wval.chain_heads');
SELECT wval._protect_in_place('wval.worlds');
SELECT wval._protect_in_place('wval.retention');

-- the bus: deliveries and counters by world
ALTER TABLE wval.deliveries ENABLE ROW LEVEL SECURITY;
CREATE POLICY wval_world_read ON wval.deliveries FOR ALL USING (
    (SELECT wval._visible_worlds()) IS NULL OR world_key = '' OR world_key = ANY ((SELECT wval._visible_worlds())::text[]));
ALTER TABLE wval.bus_counters ENABLE ROW LEVEL SECURITY;
CREATE POLICY wval_world_read ON wval.bus_counters FOR ALL USING ((SELECT wval._visible_worlds()) IS NULL);

-- the bus: the latest hand-out of each world per group (issue 13).  A
-- hand-out writes this row only, and each event's row is written when its
-- part of the hand-out ends (ack, nack, timeout); the table of deliveries
-- becomes wval.delivery_store, and wval.deliveries a view of it with the
-- hand-outs in progress
CREATE TABLE wval.delivery_leases (
    group_name     text NOT NULL,
    world_key      text NOT NULL,
    first_event_id bigint NOT NULL,
    last_event_id  bigint NOT NULL,
    leased_at      timestamptz NOT NULL,
    visible_at     timestamptz NOT NULL,
    event_ids      bigint[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (group_name, world_key)
);
ALTER TABLE wval.delivery_leases ENABLE ROW LEVEL SECURITY;
CREATE POLICY wval_world_read ON wval.delivery_leases FOR ALL USING (
    (SELECT wval._visible_worlds()) IS NULL OR world_key = '' OR world_key = ANY ((SELECT wval._visible_worlds())::text[]));
SELECT pg_catalog.pg_extension_config_dump('wval.delivery_leases', '');
-- The hand-outs in progress (0.1.0 wrote each event's lease on its row):
-- per world its latest one, the leased events of its latest lease time.
-- Older leased events (a hand-out that timed out and was not handed out
-- again) get their timeout written, as wval_consume writes it now; the
-- events of the latest hand-out go back to their state before it, which
-- their ack, nack or timeout writes again.
INSERT INTO wval.delivery_leases (group_name, world_key, first_event_id, last_event_id, leased_at, visible_at, event_ids)
SELECT d.group_name, d.world_key, min(d.event_id), max(d.event_id), d.leased_at, max(d.visible_at),
       array_agg(d.event_id ORDER BY d.event_id)
FROM wval.deliveries d
WHERE d.done_at IS NULL AND d.leased
  AND d.leased_at = (SELECT max(x.leased_at) FROM wval.deliveries x
                     WHERE x.group_name = d.group_name AND x.world_key = d.world_key AND x.done_at IS NULL AND x.leased)
GROUP BY d.group_name, d.world_key, d.leased_at;
UPDATE wval.deliveries d
SET errors = d.errors || jsonb_build_array(jsonb_build_object('attempt', d.attempts, 'at', now(), 'error', 'visibility timeout expired'))
WHERE d.done_at IS NULL AND d.leased
  AND NOT EXISTS (SELECT 1 FROM wval.delivery_leases l
                  WHERE l.group_name = d.group_name AND l.world_key = d.world_key AND d.event_id = ANY (l.event_ids));
UPDATE wval.deliveries d
SET attempts = d.attempts - 1, handouts = d.handouts - 1, leased = false, leased_at = NULL
FROM wval.delivery_leases l
WHERE l.group_name = d.group_name AND l.world_key = d.world_key AND d.done_at IS NULL AND d.event_id = ANY (l.event_ids);
-- every ack changes an indexed column (done_at, the queue index's
-- predicate), so it is never a HOT update and every index a finished row
-- belongs to costs an entry per ack: no B-tree covers finished deliveries
-- (but dead letters), the outstanding ones are unique in the order index,
-- and a finished delivery is found by key through a block-range index
DROP INDEX wval.deliveries_event_idx;
ALTER TABLE wval.deliveries DROP CONSTRAINT deliveries_pkey;
-- the group's outstanding events in order: wval_consume meets each world at
-- its head, oldest head first, without visiting every world (partial, so an
-- ack adds nothing to it)
CREATE UNIQUE INDEX deliveries_order_idx ON wval.deliveries (group_name, event_id) WHERE done_at IS NULL;
CREATE INDEX deliveries_dead_idx ON wval.deliveries (group_name, event_id) WHERE outcome = 'dead';
CREATE INDEX deliveries_event_brin ON wval.deliveries USING brin (event_id) WITH (pages_per_range = 32, autosummarize = on);
-- the stored deliveries, and the view that adds the hand-outs in progress
-- (wval.bus_health counts what is in flight from it)
ALTER TABLE wval.deliveries RENAME TO delivery_store;
ALTER TABLE wval.delivery_store RENAME CONSTRAINT deliveries_check TO delivery_store_check;
ALTER TABLE wval.delivery_store RENAME CONSTRAINT deliveries_outcome_check TO delivery_store_outcome_check;
-- @view wval.deliveries
-- @view wval.dead_letters
-- @view wval.bus_health

-- o.* of this view was expanded when 0.1.0 created it: take in overrides.login
-- (the last column in both install paths)
-- @view wval.current_overrides

-- imported runs justify no demotion; revalidation flags stay open until a decision
-- @view wval.open_demotion_candidates

-- dropped above for the stage domains
-- @view wval.latest_runs
-- @view wval.current_stage
-- @view wval.snapshot_freshness

-- rule results stored once, in evaluation_runs.results (the table was dropped above)
-- @view wval.rule_results

-- lifecycle (issue 15): before wval.metrics, which reads them
-- @view wval.active_policy_versions
-- @view wval.revalidation_progress
-- @view wval.current_override_requests
-- @view wval.overdue_override_requests

-- metrics: the pg_cron job is the label cron_job (a scraped job label becomes
-- exported_job in Prometheus), and wval_schedule_succeeded says whether a job
-- ever succeeded (its last-success sample is absent until then)
-- @view wval.metrics

-- DDL that weakens the store is audited; DROP EXTENSION is refused while history exists
CREATE EVENT TRIGGER wval_ddl_audit ON ddl_command_end EXECUTE FUNCTION wval._ddl_audit();
ALTER EVENT TRIGGER wval_ddl_audit ENABLE ALWAYS;
CREATE EVENT TRIGGER wval_ddl_audit_drop ON sql_drop EXECUTE FUNCTION wval._ddl_audit();
ALTER EVENT TRIGGER wval_ddl_audit_drop ENABLE ALWAYS;
CREATE EVENT TRIGGER wval_guard_drop ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION', 'DROP SCHEMA')
    EXECUTE FUNCTION wval._guard_drop();

-- world access is cached per backend (access.c): a grant written tells every backend
CREATE TRIGGER world_grants_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON wval.world_grants
    FOR EACH STATEMENT EXECUTE FUNCTION wval._grants_changed();
ALTER TABLE wval.world_grants ENABLE ALWAYS TRIGGER world_grants_changed;

SELECT pg_catalog.pg_extension_config_dump('wval.governance_exceptions', '');
SELECT pg_catalog.pg_extension_config_dump('wval.governance_exceptions_id_seq', '');

-- reproducible runs (issue 16): the returns of runs, content-addressed per
-- world; worlds that exist keep today's footprint (no store_returns key: off)
CREATE TABLE wval.run_returns (
    world_id     text NOT NULL,
    returns_hash text NOT NULL,
    n_periods    integer NOT NULL CHECK (n_periods >= 0),
    returns      bytea NOT NULL,
    stored_at    timestamptz NOT NULL DEFAULT now(),
    chain_seq    bigint NOT NULL,
    prev_hash    text NOT NULL,
    row_hash     text NOT NULL,
    PRIMARY KEY (world_id, returns_hash),
    CONSTRAINT run_returns_content CHECK (pg_catalog.length(returns) = 8 * n_periods
                                          AND 'sha256:' || pg_catalog.encode(pg_catalog.sha256(returns), 'hex') = returns_hash)
);
SELECT wval._secure('wval.run_returns');
SELECT wval._protect('wval.run_returns', 'run_returns');
SELECT pg_catalog.pg_extension_config_dump('wval.run_returns', '');
-- lifecycle (issue 15): the queue is maintained in place, requests are chained history
SELECT wval._protect_in_place('wval.revalidation_queue');
SELECT wval._protect('wval.override_requests', 'override_requests');
SELECT pg_catalog.pg_extension_config_dump('wval.revalidation_queue', '');
SELECT pg_catalog.pg_extension_config_dump('wval.revalidation_queue_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('wval.override_requests', '');
SELECT pg_catalog.pg_extension_config_dump('wval.override_requests_id_seq', '');

-- @comments

-- @grants

-- check row-level security on every world table, views with the
-- caller's rights, nothing of wval granted to PUBLIC
-- @include src/finish.sql
