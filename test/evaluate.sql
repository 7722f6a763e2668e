-- pgTAP: wval_evaluate for roles, reports, explain, and what must never happen
BEGIN;
SET client_min_messages = warning;
SELECT plan(26);

SELECT lives_ok($$SELECT wval_world_upsert('tap-eval', actor => 'dba')$$, 'world');
SELECT lives_ok($$SELECT wval_policy_publish('tap-eval', (SELECT policy FROM wval.sample_policies), 'alice'),
                         wval_policy_activate('tap-eval', 1, 'bob', 'sample')$$, 'sample policy active');

CREATE ROLE tap_gateway;  GRANT wval_producer TO tap_gateway;
CREATE ROLE tap_reader;   GRANT wval_analyst TO tap_reader;

-- producers evaluate through the SECURITY DEFINER entry point; they cannot forge runs
SET ROLE tap_gateway;
SELECT is((wval_evaluate('tap-eval', 'g1', 'backtest', NULL,
                         (SELECT metrics FROM wval.scenario_cases WHERE strategy_id = 'good_set_1'),
                         '{"run_id": "tap-g1"}')).status, 'pass', 'producer evaluates good_set_1: pass');
SELECT is((SELECT created_by FROM wval.evaluation_runs WHERE client_run_id = 'tap-g1'), 'tap_gateway',
          'created_by is the calling role when context.actor is absent');
SELECT throws_ok($$INSERT INTO wval.evaluation_runs (world_id, strategy_id, stage, status, created_by)
                   VALUES ('tap-eval', 'forged', 'live', 'pass', 'x')$$, '42501', NULL, 'producer cannot insert runs directly');
SELECT throws_ok($$SELECT wval_record_run('tap-eval', 'x', 'live', '{}', 'x', 'because')$$, '42501', NULL,
                 'the emergency bypass is admin only');
SELECT throws_ok($$SELECT wval_policy_activate('tap-eval', 1, 'mallory', 'self-service')$$, '42501', NULL,
                 'producer cannot activate policies');
RESET ROLE;

SET ROLE tap_reader;
SELECT throws_ok($$SELECT wval_evaluate('tap-eval', 'g2', 'backtest', NULL, '{}')$$, '42501', NULL,
                 'analyst cannot evaluate');
SELECT ok(wval_check((SELECT policy FROM wval.sample_policies), '{"returns": {"sharpe": 1}}') ? 'status',
          'analyst may use wval_check');
SELECT matches(wval_run_explain((SELECT run_id FROM wval.evaluation_runs WHERE client_run_id = 'tap-g1')),
               'status PASS, recommended stage paper_only', 'explain states the outcome');
RESET ROLE;

-- explain says why the climb stopped
CREATE TEMP TABLE g3 AS SELECT * FROM wval_evaluate('tap-eval', 'g3', 'backtest', NULL,
    (SELECT metrics FROM wval.scenario_cases WHERE strategy_id = 'good_set_3'));
SELECT matches(wval_run_explain((SELECT run_id FROM g3)),
               'paper_only +profile paper NOT cleared, stopped by performance.sharpe_min',
               'explain: good_set_3 stops at paper because of paper sharpe_min');

-- the report has the sections of operations.md, failures first
CREATE TEMP TABLE bad AS SELECT * FROM wval_evaluate('tap-eval', 'bad-dd', 'backtest', NULL,
    (SELECT metrics FROM wval.scenario_cases WHERE strategy_id = 'bad_high_drawdown'),
    '{"model_card_version": "mc-7", "code_hash": "git:abc"}');
SELECT ok(wval_report((SELECT run_id FROM bad)) ~ '^# Validation report: bad-dd / tap-eval', 'markdown title');
SELECT is((SELECT count(*)::int FROM regexp_matches(wval_report((SELECT run_id FROM bad)),
           '^## (Summary|Scope|Rules|Metrics|Overrides|Benchmark|Limitations and recommendations)$', 'gn')), 7,
          'seven sections');
SELECT matches(wval_report((SELECT run_id FROM bad)), '\| status \| FAIL \|', 'summary: status');
SELECT matches(wval_report((SELECT run_id FROM bad)), '\| model card version \| mc-7 \|', 'summary: model card version');
SELECT matches(wval_report((SELECT run_id FROM bad)),
               '\| --- \| --- \| --- \| --- \| --- \| --- \| --- \| --- \|\n\| performance.max_dd_max \| fail \| blocking',
               'rules table starts with the failure');
SELECT matches(wval_report((SELECT run_id FROM bad), 'html'), '<td class="fail">fail</td>', 'html report marks failures');
SELECT ok(wval_report((SELECT run_id FROM bad), 'html') !~ '<script', 'html report has no script');
SELECT throws_ok($$SELECT wval_report((SELECT run_id FROM bad), 'pdf')$$, '22023', NULL, 'unknown format: 22023');
SELECT throws_ok($$SELECT wval_report('00000000-0000-0000-0000-000000000000')$$, 'WV010', NULL, 'unknown run: WV010');
SELECT lives_ok($$SELECT wval_override((SELECT run_id FROM bad), 'approved', 'drawdown from a known data error', 'carol')$$,
                'override recorded');
SELECT matches(wval_report((SELECT run_id FROM bad)), '\| approved \| carol \|', 'report lists the override');
SELECT matches(wval_run_explain((SELECT run_id FROM bad)), 'override: approved by carol', 'explain shows the override');

-- analysts query the outcome in SQL
SELECT is((SELECT status FROM wval.latest_runs WHERE world_id = 'tap-eval' AND strategy_id = 'bad-dd'), 'fail',
          'latest_runs shows the run');
SELECT is((SELECT override_status FROM wval.latest_runs WHERE world_id = 'tap-eval' AND strategy_id = 'bad-dd'), 'approved',
          'latest_runs folds in the override');
SELECT is((SELECT count(*)::int FROM wval.rule_results WHERE world_id = 'tap-eval' AND rule = 'performance.max_dd_max' AND status = 'fail'),
          1, 'rule_results by world, rule, status');

SELECT * FROM finish();
ROLLBACK;
