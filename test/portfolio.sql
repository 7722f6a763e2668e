-- pgTAP: the extended layers — portfolio / stress runs, the internal
-- consumer (deployed strategies, wval.current_stage), the synchronous
-- setting, cohorts; SQLSTATEs, roles, signs and append-only storage.
BEGIN;
SELECT plan(46);
SET client_min_messages = warning;

-- tap_pf_snap(version, extra): a fresh snapshot, weights a 0.6 / b 0.4
CREATE FUNCTION public.tap_pf_snap(v text, extra jsonb DEFAULT '{}') RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object(
        'as_of', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'version', v, 'ttl_sec', 3600, 'weights', jsonb_build_object('a', 0.6, 'b', 0.4),
        'covariance', jsonb_build_object('a,a', 0.04, 'b,b', 0.09, 'a,b', 0.006,
                                         'div,div', 0.04, 'div,a', -0.02, 'div,b', -0.03,
                                         'con,con', 0.09, 'con,a', 0.05, 'con,b', 0.08)) || extra;
$$;

SELECT wval_world_upsert('tap_pf');
SELECT wval_producer_register('tap_pf', 'risk');
SELECT wval_policy_publish('tap_pf', '{"validation_profiles": {"backtest": {}, "paper": {}},
    "default_profile_by_stage": {"backtest_only": "backtest", "paper_only": "paper"},
    "portfolio": {"max_incremental_var_99": 0},
    "stress": {"scenarios": {"crash": {"dd_max": {"max": 0.3, "severity": "blocking"}}}},
    "cohort": {"top_k": 1, "sharpe_alarm": 2}}', 'alice');
SELECT wval_policy_activate('tap_pf', 1, 'bob', 'tap');

CREATE ROLE tap_pf_gateway;  GRANT wval_producer TO tap_pf_gateway;
CREATE ROLE tap_pf_reader;   GRANT wval_analyst TO tap_pf_reader;

-- objects and their guards
SELECT function_returns('public', 'wval_evaluate_portfolio', ARRAY['text', 'uuid', 'double precision[]', 'jsonb', 'text'],
                        'wval.evaluation_runs', 'wval_evaluate_portfolio returns a run');
SELECT function_returns('public', 'wval_evaluate_cohort', ARRAY['text', 'text', 'text', 'jsonb'],
                        'setof wval.evaluation_runs', 'wval_evaluate_cohort returns runs');
SELECT ok((SELECT bool_and(prosecdef AND proconfig @> ARRAY['search_path=pg_catalog, wval, pg_temp'])
           FROM pg_proc WHERE proname IN ('wval_evaluate_portfolio', 'wval_evaluate_cohort')),
          'both entry points are SECURITY DEFINER with a pinned search_path');
SELECT is((SELECT handler FROM wval.internal_handlers WHERE group_name = 'wval:hub' AND type = 'risk_snapshot_updated'),
          '_hub_extend(events)', 'the internal consumer of risk_snapshot_updated is registered');
SELECT ok((SELECT internal FROM wval.consumer_groups WHERE group_name = 'wval:hub'), 'wval:hub is an internal group');
SELECT ok(obj_description('public.wval_evaluate_portfolio(text, uuid, float8[], jsonb, text)'::regprocedure) IS NOT NULL
          AND obj_description('public.wval_evaluate_cohort(text, text, text, jsonb)'::regprocedure) IS NOT NULL,
          'entry points are commented');

-- errors before any snapshot
CREATE TEMP TABLE tc AS
SELECT s AS name, (wval_evaluate('tap_pf', s, 'backtest', NULL, '{}')).run_id FROM unnest(ARRAY['div', 'con', 'a', 'lone']) s;
SELECT run_id AS div_run FROM tc WHERE name = 'div' \gset
SELECT run_id AS con_run FROM tc WHERE name = 'con' \gset
SELECT throws_ok(format('SELECT wval_evaluate_portfolio(%L, %L)', 'tap_pf', :'div_run'),
                 'WV010', 'world "tap_pf" has no risk snapshot', 'no snapshot: WV010');
SELECT wval_snapshot_publish('tap_pf', tap_pf_snap('t1', '{"stress": {"crash": {"div": {"max_drawdown": -0.5}}}}'), 'risk', 'paper');

-- roles: producers evaluate, analysts do not
SET ROLE tap_pf_gateway;
SELECT run_id AS p_div_run, created_by AS p_div_by FROM wval_evaluate_portfolio('tap_pf', :'div_run') \gset
SELECT is(:'p_div_by'::text, 'tap_pf_gateway', 'a producer evaluates; created_by is the calling role');
SELECT throws_ok($$UPDATE wval.evaluation_runs SET status = 'pass' WHERE kind = 'portfolio'$$, '42501', NULL,
                 'a producer cannot change runs directly');
RESET ROLE;
SET ROLE tap_pf_reader;
SELECT throws_ok(format('SELECT wval_evaluate_portfolio(%L, %L)', 'tap_pf', :'con_run'),
                 '42501', NULL, 'an analyst cannot evaluate portfolios');
SELECT throws_ok($$SELECT wval_evaluate_cohort('tap_pf', 'c', 'backtest', '[{"strategy_id": "x"}]')$$,
                 '42501', NULL, 'an analyst cannot evaluate cohorts');
SELECT is((SELECT kind FROM wval.evaluation_runs WHERE run_id = :'p_div_run'), 'portfolio',
          'an analyst reads portfolio runs');
RESET ROLE;
-- a role that may evaluate but not see the world: it does not exist for it
CREATE ROLE tap_pf_outsider;
GRANT EXECUTE ON FUNCTION wval_evaluate_portfolio(text, uuid, float8[], jsonb, text) TO tap_pf_outsider;
SELECT wval_world_upsert('tap_pf_elsewhere');
SELECT wval_world_grant('tap_pf_outsider', 'tap_pf_elsewhere', 'write');
SET ROLE tap_pf_outsider;
SELECT throws_ok(format('SELECT wval_evaluate_portfolio(%L, %L)', 'tap_pf', :'p_div_run'),
                 'WV010', 'world "tap_pf" does not exist', 'a world the caller may not read does not exist (row-level security)');
RESET ROLE;
CREATE TEMP TABLE p_div AS SELECT * FROM wval.evaluation_runs WHERE run_id = :'p_div_run';

-- signs and the stored run
CREATE TEMP TABLE p_con AS SELECT * FROM wval_evaluate_portfolio('tap_pf', (SELECT run_id FROM tc WHERE name = 'con'));
SELECT cmp_ok((SELECT (metrics #>> '{risk,incremental_var_99}')::float8 FROM p_div), '<', 0::float8,
              'a diversifying candidate has a negative incremental VaR');
SELECT cmp_ok((SELECT (metrics #>> '{risk,incremental_es_99}')::float8 FROM p_div), '<', 0::float8,
              '... and a negative incremental ES');
SELECT cmp_ok((SELECT (metrics #>> '{risk,incremental_var_99}')::float8 FROM p_con), '>', 0::float8,
              'a concentrating candidate has a positive incremental VaR');
SELECT ok((SELECT abs((metrics #>> '{risk,incremental_es_99}')::float8 / (metrics #>> '{risk,incremental_var_99}')::float8
                      - 2.665214220345808 / 2.3263478740408408) < 1e-12 FROM p_con),
          'incremental ES / incremental VaR = (phi(z)/0.01) / z');
SELECT is((SELECT results #>> '{portfolio.max_incremental_var_99,status}' FROM p_div), 'pass', 'max_incremental_var_99 passes the diversifier');
SELECT is((SELECT results #>> '{portfolio.max_incremental_var_99,reason_code}' FROM p_con), 'incremental_var_99_above_max',
          'and fails the concentrator with its reason code');
SELECT is((SELECT status FROM p_div), 'fail', 'the diversifier fails on its own blocking crash scenario (|-0.5| > 0.3)');
SELECT is((SELECT results #>> '{stress.crash.dd_max,reason_code}' FROM p_con), 'missing_metric',
          'a scenario without data for the candidate is a missing metric');
SELECT ok((SELECT linked_run_id = (SELECT run_id FROM tc WHERE name = 'con') AND kind = 'portfolio' AND stage = 'backtest'
                  AND strategy_id = 'con' AND policy_version = 1 FROM p_con),
          'the portfolio run is linked to the candidate, same stage and strategy');
SELECT is((SELECT count(*)::int FROM wval.events WHERE world_id = 'tap_pf' AND type = 'evaluation_run_updated'
             AND subject = (SELECT run_id::text FROM tc WHERE name = 'con')
             AND payload #>> '{data,change_type}' = 'extended_validation'), 1,
          'evaluation_run_updated (extended_validation) for the candidate');
SELECT throws_ok(format('DELETE FROM wval.evaluation_runs WHERE run_id = %L', (SELECT run_id FROM p_con)), 'WV003', NULL,
                 'portfolio runs are append-only');

-- idempotency and SQLSTATEs
SELECT is((wval_evaluate_portfolio('tap_pf', (SELECT run_id FROM tc WHERE name = 'con'))).run_id, (SELECT run_id FROM p_con),
          'the same candidate against the same snapshot returns the stored run');
SELECT throws_ok($$SELECT wval_evaluate_portfolio('tap_pf', '00000000-0000-0000-0000-000000000001')$$, 'WV010', NULL, 'unknown run: WV010');
SELECT throws_ok(format('SELECT wval_evaluate_portfolio(%L, %L)', 'tap_nowhere', (SELECT run_id FROM tc WHERE name = 'con')),
                 'WV010', NULL, 'unknown world: WV010');
SELECT throws_ok(format('SELECT wval_evaluate_portfolio(%L, %L)', 'tap_pf', (SELECT run_id FROM p_con)),
                 '22023', NULL, 'a portfolio run is no candidate: 22023');
SELECT throws_ok(format('SELECT wval_evaluate_portfolio(%L, %L, returns => %L)', 'tap_pf', (SELECT run_id FROM tc WHERE name = 'con'), '{0.1, -1.5}'),
                 'WV001', NULL, 'returns below -1: WV001');
SELECT throws_ok(format('SELECT wval_evaluate_portfolio(%L, %L, stress => %L)', 'tap_pf', (SELECT run_id FROM tc WHERE name = 'con'), '{"crash": 1}'),
                 'WV001', NULL, 'a scenario that is not an object: WV001');
SELECT wval_snapshot_publish('tap_pf', tap_pf_snap('t_old', jsonb_build_object('ttl_sec', 86400,
    'as_of', to_char((clock_timestamp() - interval '1 hour') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))), 'risk', 'backtest');
SELECT throws_ok(format('SELECT wval_evaluate_portfolio(%L, %L, snapshot_stage => %L)', 'tap_pf', (SELECT run_id FROM tc WHERE name = 'con'), 'backtest'),
                 'WV005', NULL, 'only a stale snapshot: WV005');

-- the internal consumer, with deployed strategies from wval.current_stage
-- (a stand-in view while the live-monitoring work has not created it)
CREATE TEMP TABLE tap_fake AS SELECT to_regclass('wval.current_stage') IS NULL AS fake;
DO $$
BEGIN
    IF (SELECT fake FROM tap_fake) THEN
        CREATE VIEW wval.current_stage AS
        SELECT * FROM (VALUES ('tap_pf', 'a', 'live'), ('tap_pf', 'div', 'paper'), ('tap_pf', 'con', 'retired'))
            v(world_id, strategy_id, stage);
    END IF;
END
$$;
SELECT wval_evaluate('tap_pf', 'div', 'paper', NULL, '{}');
SELECT CASE WHEN fake THEN set_eq($$SELECT strategy_id, deployed_stage FROM wval._deployed_candidates('tap_pf', '{}')$$,
                                  $$VALUES ('a', 'live'), ('div', 'paper')$$,
                                  'deployed: current_stage paper or live, not retired, whatever the snapshot weights')
            ELSE skip('wval.current_stage exists: its own tests cover the deployed set', 1) END FROM tap_fake;
SELECT CASE WHEN fake THEN is((SELECT d.run_id FROM wval._deployed_candidates('tap_pf', '{}') d WHERE d.strategy_id = 'div'),
                              (SELECT run_id FROM wval.latest_runs WHERE world_id = 'tap_pf' AND strategy_id = 'div' AND stage = 'paper'),
                              'the candidate run is the latest run at the deployed stage')
            ELSE skip('wval.current_stage exists', 1) END FROM tap_fake;
SELECT wval_snapshot_publish('tap_pf', tap_pf_snap('t2'), 'risk', 'paper');
CALL wval_work(1000, 30000);
SELECT CASE WHEN fake THEN set_eq($$SELECT strategy_id, stage FROM wval.evaluation_runs
                                    WHERE world_id = 'tap_pf' AND kind = 'portfolio' AND data_snapshot #>> '{risk_snapshot,version}' = 't2'$$,
                                  $$VALUES ('a', 'backtest'), ('div', 'paper')$$,
                                  'CALL wval_work: one portfolio run per deployed strategy against the new snapshot')
            ELSE skip('wval.current_stage exists', 1) END FROM tap_fake;
SELECT is((SELECT count(*)::int FROM wval.deliveries d JOIN wval.events e USING (event_id)
           WHERE d.group_name = 'wval:hub' AND e.world_id = 'tap_pf' AND d.outcome = 'acked'), 3,
          'the consumer acked every risk_snapshot_updated of the world (superseded and stale ones without work)');
DO $$
BEGIN
    IF (SELECT fake FROM tap_fake) THEN
        DROP VIEW wval.current_stage;
    END IF;
END
$$;
-- a world without stage decisions (or without the view): the strategies weighted in the snapshot
SELECT set_eq($$SELECT strategy_id FROM wval._deployed_candidates('tap_pf', '{"weights": {"a": 0.5, "lone": 0.5, "nobody": 0}}')$$,
              $$VALUES ('a'), ('lone')$$, 'fallback: the weighted strategies that have a run');

-- the synchronous setting: the runs are written by the publishing transaction
SELECT wval_world_upsert('tap_pf', settings => '{"extended_validation": "sync"}');
SELECT wval_snapshot_publish('tap_pf', tap_pf_snap('t3', '{"weights": {"a": 0.5, "lone": 0.5}, "covariance": {"a,a": 0.04, "lone,lone": 0.01}}'), 'risk', 'paper');
SELECT set_eq($$SELECT strategy_id FROM wval.evaluation_runs WHERE world_id = 'tap_pf' AND kind = 'portfolio'
                AND data_snapshot #>> '{risk_snapshot,version}' = 't3'$$,
              $$VALUES ('a'), ('lone')$$, 'sync: the publish wrote a portfolio run per weighted strategy');
SELECT is((SELECT count(*)::int FROM wval.evaluation_runs WHERE world_id = 'tap_pf' AND kind = 'portfolio'
             AND data_snapshot #>> '{risk_snapshot,version}' = 't3'
             AND (metrics #>> '{diagnostics,candidate_in_snapshot}')::boolean
             AND (metrics #>> '{portfolio,candidate_weight}')::float8 = 0.5), 2,
          'deployed strategies enter with their own weight');
CALL wval_work(1000, 30000);
SELECT is((SELECT count(*)::int FROM wval.evaluation_runs WHERE world_id = 'tap_pf' AND kind = 'portfolio'
             AND data_snapshot #>> '{risk_snapshot,version}' = 't3'), 2, 'the consumer adds nothing afterwards');

-- cohorts: ties keep input order, the alarm warns everyone
CREATE TEMP TABLE tco AS SELECT * FROM wval_evaluate_cohort('tap_pf', 'tap-camp', 'backtest', '[
    {"strategy_id": "t1", "metrics": {"returns": {"sharpe": 1.0}, "robustness": {"deflated_sharpe_ratio": 0.3}}},
    {"strategy_id": "t2", "metrics": {"returns": {"sharpe": 2.5}, "robustness": {"deflated_sharpe_ratio": 0.3}}},
    {"strategy_id": "t3", "metrics": {"returns": {"sharpe": 0.5}, "robustness": {"deflated_sharpe_ratio": 0.9}}}]');
SELECT results_eq($$SELECT strategy_id, (metrics #>> '{cohort,dsr_rank}')::int FROM tco ORDER BY strategy_id$$,
                  $$VALUES ('t1', 2), ('t2', 3), ('t3', 1)$$, 'DSR ranks: ties in input order');
SELECT results_eq($$SELECT strategy_id, results #>> '{cohort.top_k,status}' FROM tco ORDER BY strategy_id$$,
                  $$VALUES ('t1', 'fail'), ('t2', 'fail'), ('t3', 'pass')$$, 'top_k 1 keeps only the best DSR');
SELECT is((SELECT count(*)::int FROM tco WHERE results #>> '{cohort.sharpe_alarm,status}' = 'warn'
             AND results #>> '{cohort.sharpe_alarm,reason_code}' = 'cohort_sharpe_alarm'), 3,
          'a Sharpe above the alarm warns every candidate');
SELECT is((SELECT count(*)::int FROM tco t JOIN wval.evaluation_runs s ON s.run_id = t.linked_run_id
             WHERE s.kind = 'single' AND s.campaign_id = 'tap-camp' AND t.kind = 'cohort' AND t.campaign_id = 'tap-camp'), 3,
          'each candidate has its normal run in the campaign, linked from its cohort run');
SELECT throws_ok($$SELECT wval_evaluate_cohort('tap_pf', 'tap-camp', 'backtest', '[{"strategy_id": 7}]')$$,
                 '22023', NULL, 'a candidate without a strategy_id string: 22023');
SELECT throws_ok($$SELECT wval_evaluate_cohort('tap_pf', 'tap-camp', 'backtest', '[{"strategy_id": "t9", "returns": "0.1"}]')$$,
                 'WV001', NULL, 'returns that are not an array of numbers: WV001');

SELECT ok(wval_verify_chain('tap_pf'), 'the world''s hash chain verifies');

SELECT * FROM finish();
ROLLBACK;
