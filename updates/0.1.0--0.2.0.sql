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
CREATE INDEX ON wval.work_purge_runs (work_id, run_id);
CREATE UNLOGGED TABLE wval.work_purge_results (
    work_id    bigint NOT NULL,
    part       oid NOT NULL,
    world_id   text NOT NULL,
    run_id     uuid NOT NULL,
    rule       text NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX ON wval.work_purge_results (work_id, run_id);
CREATE UNLOGGED TABLE wval.work_purge_overrides (
    work_id     bigint NOT NULL,
    world_id    text NOT NULL,
    override_id bigint NOT NULL,
    recorded_at timestamptz NOT NULL,
    chain_seq   bigint NOT NULL,
    prev_hash   text NOT NULL,
    row_hash    text NOT NULL
);
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
CREATE UNLOGGED TABLE wval.work_purge_activations (
    work_id       bigint NOT NULL,
    world_id      text NOT NULL,
    activation_id bigint NOT NULL,
    activated_at  timestamptz NOT NULL,
    chain_seq     bigint NOT NULL,
    prev_hash     text NOT NULL,
    row_hash      text NOT NULL
);
CREATE INDEX ON wval.work_purge_activations (work_id, activation_id);
CREATE UNLOGGED TABLE wval.work_import (work_id bigint NOT NULL, LIKE wval.evaluation_runs INCLUDING DEFAULTS, ord bigint NOT NULL);
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

-- o.* of this view was expanded when 0.1.0 created it: take in overrides.login
-- (last, where the update added the column; a fresh install has it before recorded_at)
CREATE OR REPLACE VIEW wval.current_overrides AS
SELECT DISTINCT ON (o.run_id) o.*
FROM wval.overrides o
ORDER BY o.run_id, o.recorded_at DESC, o.override_id DESC;

-- imported runs justify no demotion
CREATE OR REPLACE VIEW wval.open_demotion_candidates AS
SELECT c.*
FROM (SELECT DISTINCT ON (dc.world_id, dc.strategy_id) dc.*
      FROM wval.demotion_candidates dc
      ORDER BY dc.world_id, dc.strategy_id, dc.as_of DESC, dc.candidate_id DESC) c
WHERE c.run_id = (SELECT e.run_id FROM wval.evaluation_runs e
                  WHERE e.world_id = c.world_id AND e.strategy_id = c.strategy_id AND e.kind = 'live'
                    AND NOT wval._imported(e.context)
                  ORDER BY e.as_of DESC, e.created_at DESC LIMIT 1)
  AND NOT EXISTS (SELECT 1 FROM wval.deployments d
                  WHERE d.world_id = c.world_id AND d.strategy_id = c.strategy_id AND d.recorded_at > c.flagged_at);

-- metrics: the pg_cron job is the label cron_job (a scraped job label becomes
-- exported_job in Prometheus), and wval_schedule_succeeded says whether a job
-- ever succeeded (its last-success sample is absent until then); same text
-- as src/observability.sql
CREATE OR REPLACE VIEW wval.metrics AS
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
-- schedules: the label is cron_job, not job (Prometheus renames a scraped
-- job label to exported_job, and alert rules on job would never match); a job
-- that never succeeded has no last_success sample (not NaN), only
-- wval_schedule_succeeded 0
SELECT 'wval_schedule_late_seconds', 'gauge', 'how late the next expected run of a wval pg_cron job is',
       jsonb_build_object('cron_job', h.job), coalesce(extract(epoch FROM h.late_by), 0)::float8
FROM wval.schedule_health h
UNION ALL
SELECT 'wval_schedule_last_success_timestamp_seconds', 'gauge', 'when a wval pg_cron job last succeeded (unix time); absent until it has',
       jsonb_build_object('cron_job', h.job), extract(epoch FROM h.last_success)::float8
FROM wval.schedule_health h WHERE h.last_success IS NOT NULL
UNION ALL
SELECT 'wval_schedule_succeeded', 'gauge', '1 when a wval pg_cron job has succeeded at least once (in cron.job_run_details), else 0',
       jsonb_build_object('cron_job', h.job), (h.last_success IS NOT NULL)::int::float8
FROM wval.schedule_health h
UNION ALL
SELECT 'wval_schedule_missed_last_day', 'gauge', 'missed or failed runs of a wval pg_cron job in 24 hours',
       jsonb_build_object('cron_job', h.job), coalesce(h.missed_24h, 0)::float8
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

-- DDL that weakens the store is audited; DROP EXTENSION is refused while history exists
CREATE EVENT TRIGGER wval_ddl_audit ON ddl_command_end EXECUTE FUNCTION wval._ddl_audit();
ALTER EVENT TRIGGER wval_ddl_audit ENABLE ALWAYS;
CREATE EVENT TRIGGER wval_ddl_audit_drop ON sql_drop EXECUTE FUNCTION wval._ddl_audit();
ALTER EVENT TRIGGER wval_ddl_audit_drop ENABLE ALWAYS;
CREATE EVENT TRIGGER wval_guard_drop ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION', 'DROP SCHEMA')
    EXECUTE FUNCTION wval._guard_drop();

SELECT pg_catalog.pg_extension_config_dump('wval.governance_exceptions', '');
SELECT pg_catalog.pg_extension_config_dump('wval.governance_exceptions_id_seq', '');

-- @comments

-- @grants

-- row-level security on the new tables and partitions, views with the
-- caller's rights, nothing of wval granted to PUBLIC
-- @include src/finish.sql
