-- observability.sql: what wval exposes to monitoring (docs/monitoring.md,
-- including "Invariants").
--
--   wval.metrics                 one row per sample: name, labels, value
--   wval_metrics_prometheus()    the same in the Prometheus text format
--   wval_check_invariants()      the invariants, violations as rows
--   wval.invariant_reports       what the daily job found (the metrics read it)
--
-- requires: store bus hub live schedule lifecycle

------------------------------------------------------------------------------
-- Evaluation counters and latency (written by wval_evaluate, evaluate.c)
------------------------------------------------------------------------------

CREATE TABLE wval.evaluation_stats (
    world_id    text NOT NULL,
    stage       wval.stage NOT NULL,
    status      text NOT NULL,
    shard       smallint NOT NULL,
    runs        bigint NOT NULL DEFAULT 0,
    seconds_sum float8 NOT NULL DEFAULT 0,
    buckets     bigint[] NOT NULL,
    PRIMARY KEY (world_id, stage, status, shard)
);
SELECT wval._secure('wval.evaluation_stats');
COMMENT ON TABLE wval.evaluation_stats IS 'counters of wval_evaluate per world, stage and status: runs, total seconds and a latency histogram (buckets of wval._latency_bounds(), not cumulative); sharded by backend so that concurrent evaluations do not queue on one row; updated in the evaluating transaction';
COMMENT ON COLUMN wval.evaluation_stats.world_id IS 'the world (wval.worlds.world_id)';
COMMENT ON COLUMN wval.evaluation_stats.stage IS 'backtest | paper | shadow | live: the stage argument of the evaluations';
COMMENT ON COLUMN wval.evaluation_stats.status IS 'pass | warn | fail | unvalidated: the stored status of the evaluations';
COMMENT ON COLUMN wval.evaluation_stats.shard IS 'the evaluating backend''s slot number modulo 64 (concurrent backends have different slots); sum over shards';
COMMENT ON COLUMN wval.evaluation_stats.runs IS 'evaluations counted (counter; wval_evaluations_total)';
COMMENT ON COLUMN wval.evaluation_stats.seconds_sum IS 'total wval_evaluate time of those evaluations, in seconds';
COMMENT ON COLUMN wval.evaluation_stats.buckets IS 'latency histogram: evaluations per bucket of wval._latency_bounds() (seconds; the last element is +Inf), not cumulative';

-- wval._latency_bounds(): upper bounds (seconds) of the latency histogram,
-- served from the one table in C (observability.c) that the evaluating code
-- files its calls by
CREATE FUNCTION wval._latency_bounds() RETURNS float8[]
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'wval_latency_bounds';
COMMENT ON FUNCTION wval._latency_bounds() IS 'upper bounds in seconds of the evaluation latency histogram (the last bucket of evaluation_stats.buckets is +Inf), from the table in C (observability.c) the evaluations are filed by';

-- non-single runs (live, portfolio, cohort) of the last day, for the metrics
INSERT INTO wval.partition_indexes (parent, spec) VALUES
    ('evaluation_runs', '(created_at) WHERE kind <> ''single''');
CREATE INDEX ON wval.evaluation_runs_default (created_at) WHERE kind <> 'single';

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
                  AND (a.stages IS NULL OR r.stage = ANY (a.stages))
                ORDER BY a.activation_id DESC LIMIT 1) AS active_then
        FROM live l
        LEFT JOIN LATERAL (
            SELECT e.run_id, e.stage, e.status, e.policy_version, e.created_at FROM wval.evaluation_runs e
            WHERE e.world_id = l.world_id AND e.strategy_id = l.strategy_id AND e.kind = 'live'
              AND NOT wval._imported(e.context)
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

    -- 3b. every override and ex-post failure row refers to a stored run
    --     (a purge removes a run together with them; an orphan means a run
    --     went while one was being recorded)
    RETURN QUERY
    SELECT 'run_exists', o.world_id, o.strategy_id, o.run_id,
           format('override %s (%s) refers to run %s, which does not exist', o.override_id, o.status, o.run_id)
    FROM wval.overrides o
    WHERE (wval_check_invariants.world_id IS NULL OR o.world_id = wval_check_invariants.world_id)
      AND NOT EXISTS (SELECT 1 FROM wval.evaluation_runs e WHERE e.run_id = o.run_id AND e.world_id = o.world_id);
    RETURN QUERY
    SELECT 'run_exists', f.world_id, f.strategy_id, f.run_id,
           format('ex-post failure case %s (%s) refers to run %s, which does not exist', f.case_id, f.status, f.run_id)
    FROM wval.ex_post_failures f
    WHERE (wval_check_invariants.world_id IS NULL OR f.world_id = wval_check_invariants.world_id)
      AND NOT EXISTS (SELECT 1 FROM wval.evaluation_runs e WHERE e.run_id = f.run_id AND e.world_id = f.world_id);

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
COMMENT ON FUNCTION public.wval_check_invariants(text) IS 'the invariants of docs/monitoring.md as violation rows (invariant, world, strategy, run, detail): live strategies validated, fail-closed worlds, overrides in order, overrides and ex-post cases refer to stored runs, validation_health recomputable, fresh snapshots for live worlds, hash chains intact';

CREATE SEQUENCE wval.invariant_reports_id_seq;
CREATE TABLE wval.invariant_reports (
    report_id  bigint NOT NULL DEFAULT nextval('wval.invariant_reports_id_seq') PRIMARY KEY,
    checked_at timestamptz NOT NULL DEFAULT now(),
    violations jsonb NOT NULL,
    counts     jsonb NOT NULL
);
ALTER SEQUENCE wval.invariant_reports_id_seq OWNED BY wval.invariant_reports.report_id;
COMMENT ON TABLE wval.invariant_reports IS 'each run of wval_run_invariants(): the violations found and their count per invariant (append-only)';
COMMENT ON COLUMN wval.invariant_reports.report_id IS 'number of the report (sequence wval.invariant_reports_id_seq); the latest feeds wval.metrics';
COMMENT ON COLUMN wval.invariant_reports.checked_at IS 'when wval_run_invariants() ran';
COMMENT ON COLUMN wval.invariant_reports.violations IS 'array of the violation rows of wval_check_invariants(): {invariant, world, strategy, run, detail}; [] when none';
COMMENT ON COLUMN wval.invariant_reports.counts IS 'invariant name -> number of violations, every invariant listed (0 when it holds)';
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
                              'run_exists', count(*) FILTER (WHERE v.invariant = 'run_exists'),
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
-- the lifecycle loops: re-validation after activations, override requests
SELECT 'wval_revalidation_backlog', 'gauge', 'deployed strategies queued for re-validation after a policy activation and not yet re-checked',
       jsonb_build_object('world_id', q.world_id), count(*) FILTER (WHERE q.state = 'pending')::float8
FROM wval.revalidation_queue q GROUP BY q.world_id
UNION ALL
SELECT 'wval_revalidation_oldest_pending_seconds', 'gauge', 'age of the oldest pending re-validation item (0 when none is pending)',
       jsonb_build_object('world_id', q.world_id),
       coalesce(extract(epoch FROM now() - min(q.enqueued_at) FILTER (WHERE q.state = 'pending')), 0)::float8
FROM wval.revalidation_queue q GROUP BY q.world_id
UNION ALL
SELECT 'wval_revalidation_failed', 'gauge', 're-validation items that failed three times (kept 30 days)',
       jsonb_build_object('world_id', q.world_id), count(*) FILTER (WHERE q.state = 'failed')::float8
FROM wval.revalidation_queue q GROUP BY q.world_id
UNION ALL
SELECT 'wval_override_requests_open', 'gauge', 'override requests waiting for a decision',
       jsonb_build_object('world_id', r.world_id), count(*) FILTER (WHERE r.open)::float8
FROM wval.current_override_requests r GROUP BY r.world_id
UNION ALL
SELECT 'wval_override_requests_overdue', 'gauge', 'open override requests past their SLA (wval.overdue_override_requests)',
       jsonb_build_object('world_id', r.world_id), count(*) FILTER (WHERE r.overdue)::float8
FROM wval.current_override_requests r GROUP BY r.world_id
UNION ALL
SELECT 'wval_invariant_violations', 'gauge', 'violations found by the latest invariant check (wval_run_invariants)',
       jsonb_build_object('invariant', c.key), c.value::text::float8
FROM (SELECT r.counts FROM wval.invariant_reports r ORDER BY r.report_id DESC LIMIT 1) r, jsonb_each(r.counts) c
UNION ALL
SELECT 'wval_invariant_check_age_seconds', 'gauge', 'seconds since the latest invariant check', '{}'::jsonb,
       extract(epoch FROM now() - max(r.checked_at))::float8
FROM wval.invariant_reports r HAVING count(*) > 0;
COMMENT ON VIEW wval.metrics IS 'every metric wval exposes, one row per sample (name, type, help, labels, value); wval_metrics_prometheus() renders it in the Prometheus text format';
COMMENT ON COLUMN wval.metrics.name IS 'sample name in Prometheus form (wval_*); histogram samples end in _bucket, _sum or _count';
COMMENT ON COLUMN wval.metrics.type IS 'counter | gauge | histogram: the type of the metric family';
COMMENT ON COLUMN wval.metrics.help IS 'one-line description of the family (the # HELP text)';
COMMENT ON COLUMN wval.metrics.labels IS 'label name -> value (jsonb object, {} for none); histogram buckets carry le, the bucket''s upper bound in seconds or +Inf';
COMMENT ON COLUMN wval.metrics.value IS 'sample value (counters only grow; durations in seconds)';

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
GRANT EXECUTE ON FUNCTION public.wval_metrics_prometheus(), wval._latency_bounds(), public.wval_check_invariants(text) TO wval_analyst;
GRANT EXECUTE ON FUNCTION public.wval_run_invariants(), public.wval_schedule_invariants(text) TO wval_admin;
