-- pgTAP: the one run writer (src/run.c, docs/development.md): every kind of
-- run stores its results once (wval.rule_results derives one row per check
-- from them), its evaluation_run_created event (payload,
-- deliveries and dedupe exactly as wval._emit writes them) and its row,
-- linked into the world's chain; imported runs emit nothing; the chain
-- trigger still refuses a write that does not come from a wval writer.
BEGIN;
SELECT plan(23);
SET client_min_messages = warning;

SELECT wval_world_upsert('tap_run');
SELECT wval_producer_register('tap_run', 'risk');
SELECT wval_policy_publish('tap_run', '{"validation_profiles": {"backtest": {"performance": {"sharpe_min": 0.5}},
                                                            "live": {"performance": {"sharpe_min": 0.5}}},
    "default_profile_by_stage": {"backtest_only": "backtest", "paper_only": "backtest", "paper_ok_live_candidate": "live"},
    "portfolio": {"max_incremental_var_99": 0},
    "cohort": {"top_k": 1},
    "live_monitoring": {"sharpe_min": 0.5, "decay_threshold": 0.2, "demote_after": 3, "windows_days": [10, 30]}}', 'alice');
SELECT wval_policy_activate('tap_run', 1, 'bob', 'tap');
SELECT wval_subscribe('tap_run_all', ARRAY['evaluation_run_created', 'evaluation_run_updated']);

-- the event as wval._emit built it before run.c (bus.sql), for a stored run
CREATE FUNCTION pg_temp.tap_expected_event(r wval.evaluation_runs, event_id bigint) RETURNS jsonb
LANGUAGE sql AS $$
    SELECT jsonb_build_object(
        'specversion', '1.0', 'id', event_id::text,
        'source', '/wval/' || current_database() || '/worlds/' || r.world_id,
        'type', 'evaluation_run_created', 'subject', r.strategy_id,
        'time', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'datacontenttype', 'application/json',
        'data', jsonb_build_object('world_id', r.world_id, 'strategy_id', r.strategy_id, 'run_id', r.run_id,
                                   'stage', r.stage, 'kind', r.kind, 'status', r.status,
                                   'recommended_stage', r.recommended_stage, 'policy_version', r.policy_version)
                || CASE r.kind
                     WHEN 'portfolio' THEN jsonb_build_object('linked_run_id', r.linked_run_id,
                                               'snapshot_version', r.data_snapshot #>> '{risk_snapshot,version}')
                     WHEN 'cohort' THEN jsonb_build_object('linked_run_id', r.linked_run_id, 'campaign_id', r.campaign_id)
                     ELSE '{}' END);
$$;

-- one run of every kind
SELECT run_id AS single_run FROM wval_evaluate('tap_run', 'a', 'backtest',
    ARRAY(SELECT 0.004 + 0.01 * sin(i) FROM generate_series(1, 60) i)) \gset
SELECT wval_record_run('tap_run', 'b', 'paper', '{"returns": {"sharpe": 1}}', 'vera', 'vendor outage');
SELECT wval_record_live_returns('tap_run', 'a', ARRAY(SELECT d::date FROM generate_series('2026-05-01'::date, '2026-05-20', '1 day') d),
                                ARRAY(SELECT 0.003 + 0.004 * sin(i) FROM generate_series(1, 20) i), 'gateway');
SELECT wval_live_run('tap_run', 'a', '2026-05-20');
SELECT wval_snapshot_publish('tap_run', jsonb_build_object(
    'as_of', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    'version', 'tap-s1', 'ttl_sec', 3600, 'weights', jsonb_build_object('x', 0.5, 'y', 0.5),
    'covariance', jsonb_build_object('x,x', 0.04, 'y,y', 0.09, 'x,y', 0.006, 'a,a', 0.05)), 'risk', 'backtest');
SELECT run_id AS pf_run FROM wval_evaluate_portfolio('tap_run', :'single_run') \gset
SELECT count(*) FROM wval_evaluate_cohort('tap_run', 'tap-camp', 'backtest', '[
    {"strategy_id": "c1", "metrics": {"returns": {"sharpe": 1.0}, "robustness": {"deflated_sharpe_ratio": 0.3}}},
    {"strategy_id": "c2", "metrics": {"returns": {"sharpe": 0.5}, "robustness": {"deflated_sharpe_ratio": 0.9}}}]');
SELECT wval_import_runs(jsonb_build_array(jsonb_build_object('world_id', 'tap_run', 'strategy_id', 'old',
    'created_at', '2021-01-10T00:00:00Z', 'status', 'fail', 'metrics', '{}'::jsonb,
    'results', '{"performance.sharpe_min": {"status": "fail"}}'::jsonb)));

SELECT results_eq($$SELECT kind, count(*)::int FROM wval.evaluation_runs WHERE world_id = 'tap_run'
                    GROUP BY kind ORDER BY kind$$,
                  $$VALUES ('cohort', 2), ('live', 1), ('portfolio', 1), ('single', 5)$$,
                  'every kind of run was stored (single: evaluated, bypass, two cohort candidates, imported)');
SELECT is((SELECT count(*)::int FROM wval.evaluation_runs r
           WHERE r.world_id = 'tap_run' AND NOT wval._imported(r.context)
             AND (SELECT count(*) FROM wval.events e
                  WHERE e.idempotency_key = format('evaluation_run_created:%s:%s:%s', r.world_id, r.strategy_id, r.run_id)) = 1),
          (SELECT count(*)::int FROM wval.evaluation_runs r WHERE r.world_id = 'tap_run' AND NOT wval._imported(r.context)),
          'every run that is not imported has exactly one evaluation_run_created');
SELECT is((SELECT count(*)::int FROM wval.evaluation_runs r JOIN wval.events e
             ON e.idempotency_key = format('evaluation_run_created:%s:%s:%s', r.world_id, r.strategy_id, r.run_id)
           WHERE r.world_id = 'tap_run' AND e.payload = pg_temp.tap_expected_event(r, e.event_id)
             AND e.type = 'evaluation_run_created' AND e.world_id = r.world_id AND e.subject = r.strategy_id
             AND e.expires_at IS NULL),
          8, 'each payload is the envelope and data that wval._emit built, for every kind');
SELECT is((SELECT e.payload -> 'data' FROM wval.events e
           WHERE e.idempotency_key = format('evaluation_run_created:tap_run:a:%s', :'pf_run')),
          jsonb_build_object('world_id', 'tap_run', 'strategy_id', 'a', 'run_id', :'pf_run', 'stage', 'backtest',
                             'kind', 'portfolio', 'status', (SELECT status FROM wval.evaluation_runs WHERE run_id = :'pf_run'),
                             'recommended_stage', NULL, 'policy_version', 1, 'linked_run_id', :'single_run',
                             'snapshot_version', 'tap-s1'),
          'the portfolio run''s data, spelled out');
SELECT is((SELECT count(*)::int FROM wval.evaluation_runs r JOIN wval.events e
             ON e.idempotency_key LIKE 'evaluation_run_created:%' AND e.subject = r.strategy_id
            AND e.payload #>> '{data,run_id}' = r.run_id::text
           WHERE r.world_id = 'tap_run' AND wval._imported(r.context)), 0, 'an imported run emits nothing');
SELECT ok((SELECT bool_and(c.event_id < u.event_id) FROM wval.events c JOIN wval.events u
             ON u.type = 'evaluation_run_updated' AND u.payload #>> '{data,extended_run_id}' = c.payload #>> '{data,run_id}'
           WHERE c.type = 'evaluation_run_created' AND c.world_id = 'tap_run'),
          'the portfolio run''s evaluation_run_created comes before the candidate''s evaluation_run_updated');
SELECT is((SELECT count(*)::int FROM wval.events e
           WHERE e.world_id = 'tap_run' AND e.type IN ('evaluation_run_created', 'evaluation_run_updated')
             AND (SELECT count(*) FROM wval.deliveries d
                  WHERE d.event_id = e.event_id AND d.group_name = 'tap_run_all' AND d.type = e.type
                    AND d.world_key = 'tap_run' AND d.enqueued_at = e.created_at AND d.visible_at = e.created_at
                    AND d.expires_at IS NULL AND d.done_at IS NULL) = 1),
          9, 'every event has one delivery row for the subscribed group');
SELECT is((SELECT count(*)::int FROM wval.evaluation_runs r
           WHERE r.world_id = 'tap_run'
             AND (SELECT count(*) FROM wval.rule_results rr WHERE rr.run_id = r.run_id AND rr.world_id = r.world_id
                    AND rr.created_at = r.created_at AND rr.stage = r.stage AND rr.strategy_id = r.strategy_id)
                 = (SELECT count(*) FROM jsonb_object_keys(r.results))),
          (SELECT count(*)::int FROM wval.evaluation_runs WHERE world_id = 'tap_run'),
          'every run has one rule_results row per check of its results');
SELECT is((SELECT row(severity, owner, reason_code, tags)::text FROM wval.rule_results
           WHERE world_id = 'tap_run' AND strategy_id = 'old'),
          row('blocking', 'quant', 'imported', '{}'::text[])::text, 'an imported result gets the import defaults');
SELECT is((SELECT array_agg(row(r.rule, r.status, r.severity, r.owner, r.reason_code)::text ORDER BY r.rule)
           FROM wval.rule_results r WHERE r.run_id = :'single_run'),
          (SELECT array_agg(row(k.key, k.value ->> 'status', k.value ->> 'severity', k.value ->> 'owner',
                                k.value ->> 'reason_code')::text ORDER BY k.key)
           FROM wval.evaluation_runs e, jsonb_each(e.results) k WHERE e.run_id = :'single_run'),
          'the rule_results rows of a single run are its results');
SELECT ok(wval_verify_chain('tap_run'), 'the world''s chain verifies');

-- rule results are stored once: the view's rows are exactly the results of
-- the runs, for every case of every shipped scenario set under the sample policy
SELECT wval_world_upsert('tap_run_sc');
SELECT wval_policy_publish('tap_run_sc', (SELECT policy FROM wval.sample_policies WHERE name = 'sample'), 'alice');
SELECT wval_policy_activate('tap_run_sc', 1, 'bob', 'tap');
SELECT count(*) FROM wval.scenario_cases c, wval_evaluate('tap_run_sc', c.strategy_id, 'backtest', NULL, c.metrics,
                                                          jsonb_build_object('run_id', c.set_name || '/' || c.case_id))
WHERE c.shipped;
SELECT is((SELECT count(DISTINCT e.client_run_id)::int FROM wval.evaluation_runs e WHERE e.world_id = 'tap_run_sc'),
          (SELECT count(*)::int FROM wval.scenario_cases WHERE shipped), 'one run per shipped scenario case');
SELECT is((SELECT count(*)::int FROM wval.rule_results WHERE world_id = 'tap_run_sc'),
          (SELECT sum((SELECT count(*) FROM jsonb_object_keys(e.results)))::int FROM wval.evaluation_runs e
           WHERE e.world_id = 'tap_run_sc'),
          'as many rule_results rows as checks in the runs'' results');
SELECT is((SELECT count(*)::int FROM wval.evaluation_runs e WHERE e.world_id = 'tap_run_sc'
             AND (SELECT count(*) FROM wval.rule_results rr WHERE rr.run_id = e.run_id)
                 <> (SELECT count(*) FROM jsonb_object_keys(e.results))), 0,
          'every run has exactly one row per check');
SELECT is_empty($$SELECT rr.run_id, rr.rule FROM wval.rule_results rr JOIN wval.evaluation_runs e ON e.run_id = rr.run_id
                  WHERE rr.world_id = 'tap_run_sc'
                    AND (e.results -> rr.rule IS DISTINCT FROM
                         jsonb_build_object('status', rr.status, 'severity', rr.severity, 'owner', rr.owner,
                                            'reason_code', rr.reason_code, 'reason', rr.reason,
                                            'tags', to_jsonb(rr.tags), 'details', rr.details)
                         OR rr.layer <> split_part(rr.rule, '.', 1) OR rr.world_id <> e.world_id
                         OR rr.strategy_id <> e.strategy_id OR rr.stage <> e.stage OR rr.created_at <> e.created_at)$$,
                'every row carries exactly its run''s result (status, severity, owner, reason code, reason, tags, details) and the run''s columns');
SELECT ok((SELECT array_agg(DISTINCT status) FROM wval.rule_results WHERE world_id = 'tap_run_sc') @> ARRAY['fail', 'pass'],
          'the scenario runs have passed and failed checks');
-- an imported result is a RuleResult the view can show, else nothing is imported
SELECT throws_ok($$SELECT wval_import_runs(jsonb_build_array(jsonb_build_object('world_id', 'tap_run', 'strategy_id', 'old2',
                     'created_at', '2021-01-11T00:00:00Z', 'status', 'fail', 'metrics', '{}'::jsonb,
                     'results', '{"performance.sharpe_min": {"status": "failed"}}'::jsonb)))$$,
                 '22023', '"runs[0].results" has an invalid result "performance.sharpe_min"', 'an imported result with an unknown status: 22023');
SELECT throws_ok($$SELECT wval_import_runs(jsonb_build_array(jsonb_build_object('world_id', 'tap_run', 'strategy_id', 'old2',
                     'created_at', '2021-01-11T00:00:00Z', 'status', 'fail', 'metrics', '{}'::jsonb,
                     'results', '{"performance.sharpe_min": {"status": "fail", "tags": "risk"}}'::jsonb)))$$,
                 '22023', '"runs[0].results" has an invalid result "performance.sharpe_min"', 'an imported result with tags that are not an array: 22023');

-- the chain trigger stays the guard: only wval's writers chain a row
SELECT throws_ok($$SELECT wval._store_run(ROW(NULL, 'tap_run', 'z', 'backtest', 'single', NULL, NULL, NULL, NULL, NULL,
                     NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'pass', NULL, NULL, NULL, NULL, NULL, NULL, 'me',
                     NULL, NULL, NULL, NULL)::wval.evaluation_runs)$$,
                 'WV003', NULL, 'a direct call of wval._store_run is refused by the chain trigger');
SELECT is((SELECT count(*)::int FROM wval.evaluation_runs WHERE world_id = 'tap_run' AND strategy_id = 'z'), 0,
          'and stores nothing');
SELECT throws_ok($$SELECT wval._store_run(NULL)$$, '22023', '"run" must not be null', 'a null run: 22023');

-- an existing idempotency key: a dedupe hit, no second event, as wval._emit
CREATE FUNCTION pg_temp.tap_store(r wval.evaluation_runs) RETURNS wval.evaluation_runs
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$ SELECT wval._store_run(r) $$;
SELECT wval._emit('evaluation_run_created', 'tap_run', 'd', 'evaluation_run_created:tap_run:d:00000000-0000-4000-8000-000000000001', '{}');
SELECT coalesce(sum(hits), 0) AS hits_before FROM wval.event_dedupe_hits WHERE type = 'evaluation_run_created' \gset
SELECT lives_ok($$SELECT pg_temp.tap_store(ROW('00000000-0000-4000-8000-000000000001', 'tap_run', 'd', 'backtest', 'single',
                     NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'pass', NULL, NULL, NULL,
                     NULL, NULL, NULL, 'me', NULL, NULL, NULL, NULL)::wval.evaluation_runs)$$,
                'a run whose event key exists is stored');
SELECT is((SELECT row(count(*), min(payload #>> '{data}'), (SELECT sum(hits) FROM wval.event_dedupe_hits
                                                            WHERE type = 'evaluation_run_created') - :hits_before)::text
           FROM wval.events WHERE idempotency_key = 'evaluation_run_created:tap_run:d:00000000-0000-4000-8000-000000000001'),
          row(1, '{}', 1)::text, 'its event is a dedupe hit: the first event stays, one hit is counted');

SELECT * FROM finish();
ROLLBACK;
