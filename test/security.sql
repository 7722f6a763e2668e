-- pgTAP: row-level security per world (wval.world_grants)
BEGIN;
SET client_min_messages = warning;
SELECT plan(29);

-- two worlds with a run each
SELECT lives_ok($$SELECT wval_world_upsert(w, actor => 'dba'),
                         wval_policy_publish(w, (SELECT policy FROM wval.sample_policies), 'alice'),
                         wval_policy_activate(w, 1, 'bob', 'sample')
                  FROM unnest(ARRAY['tap-sec-a', 'tap-sec-b']) w$$, 'worlds A and B');
CREATE TEMP TABLE sec_runs AS
SELECT w AS world_id, (wval_evaluate(w, 's1', 'backtest', NULL,
                        (SELECT metrics FROM wval.scenario_cases WHERE strategy_id = 'good_set_1'))).run_id
FROM unnest(ARRAY['tap-sec-a', 'tap-sec-b']) w;
GRANT SELECT ON sec_runs TO PUBLIC;
SELECT wval_producer_register('tap-sec-b', 'risk-engine');
SELECT wval_snapshot_publish('tap-sec-b', jsonb_build_object(
    'as_of', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), 'version', 'v1',
    'weights', '{"s1": 0.5, "s2": 0.5}'::jsonb, 'covariance', '{"s1,s1": 0.04, "s2,s2": 0.01}'::jsonb,
    'ttl_sec', 600), 'risk-engine', 'paper');

CREATE ROLE tap_sec_reader; GRANT wval_analyst TO tap_sec_reader;
CREATE ROLE tap_sec_gw;     GRANT wval_producer TO tap_sec_gw;

-- the defaults: the four roles see and write every world
SELECT is((SELECT count(*)::int FROM wval.current_world_grants WHERE world_id = '*' AND privilege <> 'none'), 4,
          'four default grants of every world');
SET ROLE tap_sec_reader;
SELECT is((SELECT count(DISTINCT world_id)::int FROM wval.evaluation_runs WHERE world_id LIKE 'tap-sec-%'), 2,
          'by default an analyst sees both worlds');
RESET ROLE;

-- narrow it: analysts and producers lose every world; the reader gets A, the gateway writes A
SELECT ok(wval_world_revoke('wval_analyst', '*', 'dba'), 'revoke analysts'' * grant');
SELECT ok(wval_world_revoke('wval_producer', '*', 'dba'), 'revoke producers'' * grant');
SELECT ok(NOT wval_world_revoke('wval_producer', '*', 'dba'), 'revoking again changes nothing');
SELECT is((wval_world_grant('tap_sec_reader', 'tap-sec-a', 'read', 'dba')).privilege, 'read', 'reader gets A');
SELECT is((wval_world_grant('tap_sec_gw', 'tap-sec-a', 'write', 'dba')).privilege, 'write', 'gateway writes A');

SET ROLE tap_sec_reader;
SELECT results_eq($$SELECT DISTINCT world_id FROM wval.evaluation_runs WHERE world_id LIKE 'tap-sec-%'$$,
                  ARRAY['tap-sec-a'], 'runs: only world A');
SELECT results_eq($$SELECT DISTINCT world_id FROM wval.rule_results WHERE world_id LIKE 'tap-sec-%'$$,
                  ARRAY['tap-sec-a'], 'rule results: only world A');
SELECT results_eq($$SELECT DISTINCT world_id FROM wval.latest_runs WHERE world_id LIKE 'tap-sec-%'$$,
                  ARRAY['tap-sec-a'], 'latest_runs (a view): only world A');
SELECT is((SELECT count(*)::int FROM wval.audit_log WHERE world_id = 'tap-sec-b'), 0, 'audit log: nothing of B');
SELECT is((SELECT count(*)::int FROM wval.policy_versions WHERE world_id = 'tap-sec-b'), 0, 'policy versions: nothing of B');
SELECT is((SELECT count(*)::int FROM wval.evaluation_runs_default WHERE world_id = 'tap-sec-b'), 0,
          'a partition read directly: nothing of B');
SELECT ok(wval_run_explain((SELECT run_id FROM sec_runs WHERE world_id = 'tap-sec-a')) ~ 'world tap-sec-a',
          'explain a run of A');
SELECT throws_ok($$SELECT wval_run_explain((SELECT run_id FROM sec_runs WHERE world_id = 'tap-sec-b'))$$,
                 'WV010', NULL, 'a run of B does not exist for this reader');
SELECT throws_ok($$SELECT wval_ruleset('tap-sec-b')$$, 'WV010', NULL, 'world B does not exist for this reader');
SELECT throws_ok($$SELECT wval_snapshot_latest('tap-sec-b')$$, 'WV010', NULL, 'nor its risk snapshots');
SELECT throws_ok($$SELECT wval_portfolio_risk('tap-sec-b')$$, 'WV010', NULL, 'nor its portfolio risk');
SELECT is((SELECT count(*)::int FROM wval.risk_snapshots WHERE world_id = 'tap-sec-b'), 0, 'snapshot rows of B are hidden');
RESET ROLE;

SET ROLE tap_sec_gw;
SELECT is((wval_evaluate('tap-sec-a', 's2', 'backtest', NULL, '{"returns": {"sharpe": 1}}')).world_id, 'tap-sec-a',
          'the gateway evaluates in A');
SELECT throws_ok($$SELECT wval_evaluate('tap-sec-b', 's2', 'backtest', NULL, '{"returns": {"sharpe": 1}}')$$,
                 'WV010', 'world "tap-sec-b" does not exist', 'the gateway may not write B: for it, B does not exist');
RESET ROLE;
SELECT is((SELECT count(*)::int FROM wval.evaluation_runs WHERE world_id = 'tap-sec-b' AND strategy_id = 's2'), 0,
          'nothing of the refused evaluation was stored');

-- administration
SELECT throws_ok($$SELECT wval_world_grant('no_such_role', 'tap-sec-a')$$, 'WV010', NULL, 'unknown role: WV010');
SELECT throws_ok($$SELECT wval_world_grant('tap_sec_reader', 'tap-sec-a', 'admin')$$, '22023', NULL, 'unknown privilege: 22023');
SET ROLE tap_sec_reader;
SELECT throws_ok($$SELECT wval_world_grant('tap_sec_reader', 'tap-sec-b')$$, '42501', NULL, 'analysts cannot grant');
RESET ROLE;
SELECT is((SELECT array_agg(action ORDER BY id) FROM wval.audit_log WHERE action IN ('world_granted', 'world_revoked')
           AND details->>'role' IN ('tap_sec_reader', 'tap_sec_gw', 'wval_analyst', 'wval_producer')),
          ARRAY['world_revoked', 'world_revoked', 'world_granted', 'world_granted'], 'grants and revocations are audited');

-- a grant of a role dropped since must not break the checks of everybody else
CREATE ROLE tap_sec_gone; GRANT wval_analyst TO tap_sec_gone;
SELECT wval_world_grant('tap_sec_gone', 'tap-sec-b', 'read', 'dba');
DROP ROLE tap_sec_gone;
SET ROLE tap_sec_reader;
SELECT lives_ok($$SELECT count(*) FROM wval.evaluation_runs$$,
                'a reader''s row-level security still works after a granted role was dropped');
SELECT throws_ok($$SELECT wval_run_explain((SELECT run_id FROM sec_runs WHERE world_id = 'tap-sec-b'))$$, 'WV010', NULL,
                 'and the hidden world stays hidden');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
