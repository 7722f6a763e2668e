-- pgTAP: metrics, the Prometheus exposition and the invariants
BEGIN;
SET client_min_messages = warning;
SELECT plan(27);

SELECT lives_ok($$SELECT wval_world_upsert('tap-obs', actor => 'dba'),
                         wval_policy_publish('tap-obs', (SELECT policy FROM wval.sample_policies), 'alice'),
                         wval_policy_activate('tap-obs', 1, 'bob', 'sample')$$, 'world with the sample policy');
SELECT lives_ok($$SELECT count(*) FROM wval.scenario_cases c,
                         wval_evaluate('tap-obs', c.strategy_id, 'backtest', NULL, c.metrics) WHERE c.set_name = 'bad'$$,
                'six evaluations');

-- counters and the latency histogram
SELECT results_eq($$SELECT status, sum(runs)::int FROM wval.evaluation_stats WHERE world_id = 'tap-obs' GROUP BY 1 ORDER BY 1$$,
                  $$VALUES ('fail', 3), ('pass', 2), ('warn', 1)$$, 'evaluation_stats counts by status');
SELECT is((SELECT sum(b)::int FROM wval.evaluation_stats s, unnest(s.buckets) b WHERE world_id = 'tap-obs'), 6,
          'every evaluation is in one latency bucket');
SELECT is(wval._latency_bounds(), '{0.0005,0.001,0.0025,0.005,0.01,0.025,0.05,0.1,0.25,1}'::float8[],
          'the latency bounds come from the table in C');
SELECT is((SELECT DISTINCT cardinality(buckets) FROM wval.evaluation_stats WHERE world_id = 'tap-obs'),
          cardinality(wval._latency_bounds()) + 1,
          'the evaluating code files calls by the same bounds (one bucket per bound plus +Inf)');
SELECT is((SELECT value FROM wval.metrics WHERE name = 'wval_evaluations_total'
           AND labels = '{"world_id": "tap-obs", "stage": "backtest", "status": "fail"}'), 3::float8,
          'wval.metrics: evaluations by world, stage and status');
SELECT ok((SELECT bool_and(value >= 0) FROM wval.metrics), 'no negative sample');
SELECT is((SELECT value FROM wval.metrics WHERE name = 'wval_evaluation_duration_seconds_bucket'
           AND labels->>'stage' = 'backtest' AND labels->>'le' = '+Inf'),
          (SELECT value FROM wval.metrics WHERE name = 'wval_evaluation_duration_seconds_count' AND labels->>'stage' = 'backtest'),
          'the +Inf bucket equals the count');
SELECT is((SELECT count(*)::int FROM (
              SELECT value < lag(value) OVER (ORDER BY (CASE WHEN labels->>'le' = '+Inf' THEN 'Infinity' ELSE labels->>'le' END)::float8) AS down
              FROM wval.metrics WHERE name = 'wval_evaluation_duration_seconds_bucket' AND labels->>'stage' = 'backtest') x
           WHERE down), 0, 'histogram buckets are cumulative');

-- the Prometheus text format
SELECT matches(wval_metrics_prometheus(), E'# TYPE wval_evaluations_total counter\n', 'TYPE line');
SELECT matches(wval_metrics_prometheus(), 'wval_evaluations_total\{stage="backtest",status="fail",world_id="tap-obs"\} 3',
               'a sample with its labels');
SELECT matches(wval_metrics_prometheus(), E'# TYPE wval_evaluation_duration_seconds histogram\n', 'the histogram family');
SELECT is((SELECT count(*)::int FROM regexp_split_to_table(wval_metrics_prometheus(), E'\n') l
           WHERE l <> '' AND l !~ '^# (HELP|TYPE) ' AND l !~ '^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? -?([0-9.]+(e[-+]?[0-9]+)?|\+Inf|-Inf|NaN)$'),
          0, 'every line is valid exposition format');

-- invariants: a live strategy without a live run and without a snapshot, then a tampered run
CREATE TEMP TABLE inv AS SELECT * FROM wval_evaluate('tap-obs', 'star', 'backtest', NULL,
    (SELECT metrics FROM wval.scenario_cases WHERE strategy_id = 'good_set_1'), '{"actor": "quant"}');
SELECT lives_ok($$SELECT wval_override((SELECT run_id FROM inv), 'approved', 'committee approval RC-1', 'carol')$$,
                'an approved override lets the strategy go live');
SELECT lives_ok($$SELECT wval_set_stage('tap-obs', 'star', 'live', 'dave', 'go live under RC-1')$$, 'deployed live');
SELECT results_eq($$SELECT invariant, strategy FROM wval_check_invariants('tap-obs') ORDER BY 1$$,
                  $$VALUES ('live_strategy_validated', 'star'), ('snapshot_fresh', NULL)$$,
                  'live without a live run, live world without a fresh snapshot');
SELECT is((SELECT count(*)::int FROM wval_check_invariants('tap-obs') WHERE invariant = 'hash_chain'), 0, 'chain intact');

ALTER TABLE wval.evaluation_runs DISABLE TRIGGER wval_append_only;
UPDATE wval.evaluation_runs SET metrics = jsonb_set(metrics, '{diagnostics,validation_health,metric_coverage_ratio}', '0.5')
WHERE run_id = (SELECT run_id FROM inv);
ALTER TABLE wval.evaluation_runs ENABLE ALWAYS TRIGGER wval_append_only;
SELECT is((SELECT run FROM wval_check_invariants('tap-obs') WHERE invariant = 'validation_health'),
          (SELECT run_id FROM inv), 'a recorded validation_health that does not recompute is found');
SELECT is((SELECT count(*)::int FROM wval_check_invariants('tap-obs') WHERE invariant = 'hash_chain'), 1,
          'and the edit breaks the chain');

-- an override and an ex-post case whose run is gone (what a purge racing an
-- approval used to leave): the chain still verifies, the invariant finds them
SELECT wval_world_upsert('tap-obs-orphan', actor => 'dba');
SELECT wval_import_runs(jsonb_build_array(jsonb_build_object(
    'world_id', 'tap-obs-orphan', 'strategy_id', 'gone', 'created_at', '2024-01-10T00:00:00Z', 'status', 'fail',
    'metrics', '{}'::jsonb, 'run_id', '0b0b0b0b-0000-0000-0000-000000000001', 'created_by', 'quant')));
SELECT lives_ok($$SELECT wval_override('0b0b0b0b-0000-0000-0000-000000000001', 'approved', 'keep it', 'carol'),
                         wval_record_failure('0b0b0b0b-0000-0000-0000-000000000001', 'data_issue', 'bad_feed', 'low', 'erin')$$,
                'an override and an ex-post case on the run');
ALTER TABLE wval.evaluation_runs DISABLE TRIGGER wval_append_only;
DELETE FROM wval.evaluation_runs WHERE run_id = '0b0b0b0b-0000-0000-0000-000000000001';
ALTER TABLE wval.evaluation_runs ENABLE ALWAYS TRIGGER wval_append_only;
SELECT results_eq($$SELECT invariant, strategy, run, detail ~ '^(override \d+ \(approved\)|ex-post failure case \S+ \(candidate\)) refers to run'
                    FROM wval_check_invariants('tap-obs-orphan') WHERE invariant = 'run_exists' ORDER BY detail$$,
                  $$VALUES ('run_exists', 'gone', '0b0b0b0b-0000-0000-0000-000000000001'::uuid, true),
                           ('run_exists', 'gone', '0b0b0b0b-0000-0000-0000-000000000001'::uuid, true)$$,
                  'an override and an ex-post case whose run does not exist are violations');
SELECT is((SELECT count(*)::int FROM wval_check_invariants('tap-obs') WHERE invariant = 'run_exists'), 0,
          'none in a world whose overrides refer to stored runs');

-- the daily report and its metrics
SELECT is(((wval_run_invariants()).counts->>'validation_health')::int >= 1, true, 'wval_run_invariants stores a report');
SELECT ok((SELECT value FROM wval.metrics WHERE name = 'wval_invariant_violations' AND labels->>'invariant' = 'hash_chain') >= 1,
          'the metrics show the latest report');
SELECT ok(wval_schedule_invariants() > 0, 'daily job scheduled');
SELECT is((SELECT schedule FROM cron.job WHERE jobname = 'wval:invariants'), '30 3 * * *', 'as wval:invariants');

SELECT * FROM finish();
ROLLBACK;
