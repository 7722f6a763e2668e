-- pgTAP: policy diff replay semantics (stage, baseline, data_as_of, fail-closed,
-- dedupe), the gate and its event, governance, roles, the regression job
BEGIN;
SET client_min_messages = warning;
SELECT plan(45);

CREATE TEMP TABLE sample AS SELECT policy FROM wval.sample_policies WHERE name = 'sample';

-- fixtures: a world with the sample policy active and the scenario sets as runs
SELECT lives_ok($$SELECT wval_world_upsert('tap-diff', actor => 'dba')$$, 'world');
SELECT is(wval_policy_publish('tap-diff', (SELECT policy FROM sample), 'alice'), 1, 'sample published');
SELECT throws_ok($$SELECT wval_policy_activate('tap-diff', 1, 'alice', 'mine')$$, 'WV009', NULL,
                 'two-person rule: the publisher cannot activate');
SELECT is((wval_policy_activate('tap-diff', 1, 'bob', 'adopt')).version, 1, 'a second person activates');
SELECT is((SELECT count(*)::int FROM wval.scenario_cases c,
                  LATERAL wval_evaluate('tap-diff', c.strategy_id, 'backtest', NULL, c.metrics,
                                        jsonb_build_object('actor', 'quant-bot')) e
           WHERE c.shipped), 32, '32 scenario runs stored');
SELECT is(wval_policy_publish('tap-diff', jsonb_set((SELECT policy FROM sample),
          '{validation_profiles,backtest,performance,sharpe_min}', '0.65'), 'alice'), 2, 'sharpe_min 0.65 published');

-- the acceptance numbers
SELECT is((wval_policy_diff('tap-diff', 1, 2) ->> 'impact_ratio')::float8, 3.0::float8 / 32, 'impact 3/32');
SELECT is((SELECT array_agg(x ->> 'strategy_id' ORDER BY x ->> 'strategy_id')
           FROM jsonb_array_elements(wval_policy_diff('tap-diff', 1, 2) -> 'diffs') x),
          ARRAY['borderline_close', 'borderline_floor', 'borderline_hysteresis_blocked'], 'exactly the three borderline strategies');
SELECT throws_ok($$SELECT wval_policy_diff_gate('tap-diff', 1, 2)$$, 'WV008', NULL, 'the gate raises WV008');
SELECT throws_ok($$SELECT wval_policy_activate('tap-diff', 2, 'bob', 'tighten')$$, 'WV008', NULL,
                 'activation without force: WV008');
SELECT is((wval_policy_activate('tap-diff', 2, 'bob', 'committee decision', force => true)).forced, true,
          'activation with force and a reason');
SELECT is((SELECT details #>> '{impact_gate,impact_ratio}' FROM wval.policy_activations
           WHERE world_id = 'tap-diff' ORDER BY activation_id DESC LIMIT 1), '0.09375', 'the forced activation records the impact');
SELECT is((SELECT count(*)::int FROM wval.events WHERE world_id = 'tap-diff' AND type = 'impact_threshold_exceeded'
           AND payload #>> '{data,source}' = 'activation'), 1, 'the forced breach is announced');

-- the non-raising gate keeps its event; the raising one leaves nothing (its transaction aborts)
SELECT is((wval_policy_diff_gate('tap-diff', 1, 2, raise_on_breach => false) #>> '{gate,breached}'), 'true',
          'raise_on_breach => false returns the report');
SELECT is((SELECT count(*)::int FROM wval.events WHERE world_id = 'tap-diff' AND type = 'impact_threshold_exceeded'
           AND payload #>> '{data,source}' = 'gate'), 1, 'and emits impact_threshold_exceeded');
SELECT is((wval_policy_diff_gate('tap-diff', 1, 2, fail_impact_ratio => 0.1) #>> '{gate,breached}'), 'false',
          'below the threshold the gate passes');

-- dedupe: the latest run of a strategy (ties in created_at broken by chain order)
SELECT lives_ok($$SELECT wval_evaluate('tap-diff', 'twice', 'backtest', NULL, '{"returns": {"sharpe": 0.6}}'),
                         wval_evaluate('tap-diff', 'twice', 'backtest', NULL, '{"returns": {"sharpe": 0.7}}')$$,
                'two runs of one strategy in one transaction');
SELECT is((SELECT count(*)::int FROM jsonb_array_elements(wval_policy_diff('tap-diff', 2, 1, dedupe => 'strategy') -> 'diffs') x
           WHERE x ->> 'strategy_id' = 'twice'), 0, 'dedupe strategy: the later run (0.7) is not affected');
SELECT is((SELECT count(*)::int FROM jsonb_array_elements(wval_policy_diff('tap-diff', 2, 1, dedupe => 'none') -> 'diffs') x
           WHERE x ->> 'strategy_id' = 'twice'), 1, 'dedupe none: the earlier run (0.6) is');
SELECT is((SELECT x ->> 'direction' FROM jsonb_array_elements(wval_policy_diff('tap-diff', 2, 1, dedupe => 'none') -> 'diffs') x
           WHERE x ->> 'strategy_id' = 'twice'), 'relaxed', 'going back to 0.5 relaxes');

-- paper runs are replayed against the latest backtest run before them
SELECT lives_ok($$SELECT wval_world_upsert('tap-paper', actor => 'dba'),
                         wval_policy_publish('tap-paper', '{"validation_profiles": {"backtest": {"performance": {"sharpe_min": 0.5}},
                             "paper": {"performance": {"sharpe_min": 0.5}}},
                             "default_profile_by_stage": {"backtest_only": "backtest", "paper_only": "paper"}}', 'alice'),
                         wval_policy_activate('tap-paper', 1, 'bob', 'start'),
                         wval_policy_publish('tap-paper', '{"validation_profiles": {"backtest": {"performance": {"sharpe_min": 0.5}},
                             "paper": {"performance": {"sharpe_min": 0.5}, "paper_shadow_consistency": {"min_sharpe_ratio": 0.9}}},
                             "default_profile_by_stage": {"backtest_only": "backtest", "paper_only": "paper"}}', 'alice')$$,
                'paper world with a consistency check in version 2');
SELECT lives_ok($$SELECT wval_import_runs(jsonb_build_array(
    jsonb_build_object('world_id', 'tap-paper', 'strategy_id', 'p', 'created_at', now() - interval '20 days', 'status', 'pass',
                       'metrics', '{"returns": {"sharpe": 1.0}}'::jsonb),
    jsonb_build_object('world_id', 'tap-paper', 'strategy_id', 'p', 'stage', 'paper', 'created_at', now() - interval '10 days',
                       'status', 'pass', 'metrics', '{"returns": {"sharpe": 0.8}}'::jsonb),
    jsonb_build_object('world_id', 'tap-paper', 'strategy_id', 'p', 'created_at', now() - interval '5 days', 'status', 'pass',
                       'metrics', '{"returns": {"sharpe": 0.85}}'::jsonb)))$$,
    'backtest 1.0, then paper 0.8, then backtest 0.85');
SELECT is((SELECT y ->> 'new_reason_code' FROM jsonb_array_elements(wval_policy_diff('tap-paper', 1, 2, 'paper') -> 'diffs') x,
                  jsonb_array_elements(x -> 'rules') y),
          'sharpe_ratio_below_min', 'ratio 0.8 / 1.0 (the backtest before the paper run, not the later 0.85)');

-- context.data_as_of is replayed as of the run's own time
SELECT lives_ok($$SELECT wval_world_upsert('tap-lag', actor => 'dba'),
                         wval_policy_publish('tap-lag', '{"validation_profiles": {"backtest": {"performance": {"sharpe_min": 0.5}}}}', 'alice'),
                         wval_policy_publish('tap-lag', '{"validation_profiles": {"backtest": {"performance": {"sharpe_min": 0.5},
                                                          "data_currency": {"max_lag": "1d"}}}}', 'alice'),
                         wval_import_runs(jsonb_build_array(
                             jsonb_build_object('world_id', 'tap-lag', 'strategy_id', 'fresh', 'created_at', now() - interval '30 days',
                                                'status', 'pass', 'metrics', '{"returns": {"sharpe": 1}}'::jsonb,
                                                'context', jsonb_build_object('data_as_of', now() - interval '30 days 12 hours')),
                             jsonb_build_object('world_id', 'tap-lag', 'strategy_id', 'stale', 'created_at', now() - interval '30 days',
                                                'status', 'pass', 'metrics', '{"returns": {"sharpe": 1}}'::jsonb,
                                                'context', jsonb_build_object('data_as_of', now() - interval '33 days'))))$$,
                'two imported runs, data 12 hours and 3 days old when they were evaluated');
SELECT is((SELECT array_agg(x ->> 'strategy_id') FROM jsonb_array_elements(wval_policy_diff('tap-lag', 1, 2) -> 'diffs') x),
          ARRAY['stale'], 'max_lag 1d fails only the run whose data was stale at its time');

-- the world's fail-closed rule applies to the replay
SELECT lives_ok($$SELECT wval_world_upsert('tap-crit', 'high', true, actor => 'dba'),
                         wval_world_upsert('tap-mid', actor => 'dba')$$, 'a critical and a medium world');
SELECT lives_ok($$SELECT wval_policy_publish(w, '{"validation": {"on_missing_metric": "ignore"},
                             "validation_profiles": {"backtest": {"performance": {"sharpe_min": 0.5}}}}', 'alice'),
                         wval_policy_publish(w, '{"validation": {"on_missing_metric": "ignore"},
                             "validation_profiles": {"backtest": {"performance": {"sharpe_min": 0.5, "sortino_min": 1}}}}', 'alice'),
                         wval_import_runs(jsonb_build_array(jsonb_build_object('world_id', w, 'strategy_id', 's',
                             'created_at', now() - interval '1 day', 'status', 'pass', 'metrics', '{"returns": {"sharpe": 1}}'::jsonb)))
                  FROM unnest(ARRAY['tap-crit', 'tap-mid']) w$$, 'same policies and run in both');
SELECT is((wval_policy_diff('tap-crit', 1, 2) ->> 'impact_ratio')::float8, 1.0::float8,
          'critical world: the missing sortino fails (fail-closed)');
SELECT is((wval_policy_diff('tap-mid', 1, 2) ->> 'impact_ratio')::float8, 0.0::float8,
          'medium world: ignored, so nobody is affected');

-- roles: analysts diff and check; validators gate, add cases and run the regression
CREATE ROLE tap_diff_analyst;   GRANT wval_analyst TO tap_diff_analyst;
CREATE ROLE tap_diff_validator; GRANT wval_validator TO tap_diff_validator;
SET ROLE tap_diff_analyst;
SELECT is((wval_policy_diff('tap-diff', 1, 2) ->> 'strategies_affected')::int, 3, 'analyst runs the diff');
SELECT is((wval_scenario_check((SELECT policy FROM wval.sample_policies WHERE name = 'sample'), 'known_bad') ->> 'warn_ratio')::float8,
          0.25::float8, 'analyst runs a scenario check');
SELECT throws_ok($$SELECT wval_policy_diff_gate('tap-diff', 1, 2, raise_on_breach => false)$$, '42501', NULL,
                 'analyst cannot run the gate (it emits events)');
SELECT throws_ok($$SELECT wval_scenario_add('mine', 'c1', '{}', 'fail')$$, '42501', NULL, 'analyst cannot add cases');
SELECT throws_ok($$SELECT wval_run_regression('tap-diff')$$, '42501', NULL, 'analyst cannot run the regression');
RESET ROLE;
SET ROLE tap_diff_validator;
SELECT is((wval_policy_diff_gate('tap-diff', 1, 2, fail_impact_ratio => 0.5) #>> '{gate,breached}'), 'false',
          'validator runs the gate');
SELECT is((wval_scenario_add('tap-site', 'c1', '{"returns": {"sharpe": 0.1}}', 'fail')).added_by, 'tap_diff_validator',
          'validator adds a case');
SELECT throws_ok($$SELECT wval_schedule_regression()$$, '42501', NULL, 'scheduling is for admins');
SELECT throws_ok($$SELECT wval_override((SELECT run_id FROM wval.evaluation_runs WHERE world_id = 'tap-diff' AND strategy_id = 'bad_low_sharpe'),
                                        'approved', 'mine', 'quant-bot')$$, 'WV009', NULL,
                 'the author of a run cannot approve an override on it');
RESET ROLE;

-- the regression job: a report per world with an active policy, chained and append-only
SELECT is((SELECT count(*)::int FROM jsonb_array_elements(wval_run_regression()) r
           WHERE r ->> 'world_id' IN ('tap-diff', 'tap-paper', 'tap-lag', 'tap-crit', 'tap-mid')), 2,
          'worlds without an active policy are skipped');
SELECT is((SELECT breaches FROM wval.regression_reports WHERE world_id = 'tap-diff'),
          ARRAY['scenario:borderline', 'impact:backtest'], 'tap-diff: the borderline set and the impact breach');
SELECT is((SELECT (impact IS NULL, breaches) FROM wval.regression_reports WHERE world_id = 'tap-paper'),
          (true, ARRAY['scenario:bad', 'scenario:known_bad']),
          'tap-paper: no predecessor (impact null); a sharpe-only policy fails the bad and known_bad gates');
SELECT ok(wval_verify_chain('tap-diff'), 'the chain, regression reports included, verifies');
SELECT throws_ok($$DELETE FROM wval.regression_reports$$, 'WV003', NULL, 'regression reports are append-only');
SELECT is(wval_schedule_regression() > 0, true, 'wval_schedule_regression registers a job');
SELECT results_eq($$SELECT schedule, command FROM cron.job WHERE jobname = 'wval:regression'$$,
                  $$VALUES ('0 6 * * 1'::text, 'SELECT public.wval_run_regression()'::text)$$,
                  'weekly job wval:regression');

SELECT * FROM finish();
ROLLBACK;
