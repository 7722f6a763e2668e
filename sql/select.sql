-- select: selection after validation (thresholds, top_k, correlation, hysteresis)
\set SHOW_CONTEXT never
SELECT world_id FROM wval_world_upsert('w-sel', actor => 'dba');
SELECT wval_policy_publish('w-sel', (SELECT policy FROM wval.sample_policies), 'alice') AS version;
SELECT version FROM wval_policy_activate('w-sel', 1, 'bob', 'sample policy');
SELECT count(*) AS runs FROM wval.scenario_cases c, wval_evaluate('w-sel', c.strategy_id, 'backtest', NULL, c.metrics)
WHERE c.set_name IN ('good', 'borderline', 'bad');

-- the sample policy: top 3 by sharpe among the runs that did not fail, then hysteresis (enter 0.6)
SELECT * FROM wval_select('w-sel', 'backtest', 'selector');

-- without top_k, hysteresis keeps borderline_hysteresis_blocked (sharpe 0.59) out: enter is 0.6
SELECT wval_policy_publish('w-sel', (SELECT policy FROM wval.sample_policies) - 'selection'
       || '{"selection": {"thresholds": {"max_drawdown": {"max": 0.2}}, "hysteresis": {"metric": "sharpe", "enter": 0.6, "exit": 0.4}}}',
       'alice') AS version;
SELECT version FROM wval_policy_activate('w-sel', 2, 'bob', 'no top_k');
SELECT * FROM wval_select('w-sel', 'backtest', 'selector');
SELECT selected, entered, left_ FROM wval.selections WHERE world_id = 'w-sel' ORDER BY selection_id DESC LIMIT 1;

-- a selected strategy stays while its sharpe >= exit (0.4); a new one needs enter (0.6)
SELECT status FROM wval_evaluate('w-sel', 'good_set_3', 'backtest', NULL,
    '{"returns": {"sharpe": 0.55, "max_drawdown": 0.2, "gain_to_pain_ratio": 1.2},
      "sample": {"effective_history_years": 2.5, "n_trades_total": 120},
      "risk": {"adv_utilization_p95": 0.3, "participation_rate_p95": 0.2}, "robustness": {"deflated_sharpe_ratio": 0.2}}');
SELECT status FROM wval_evaluate('w-sel', 'borderline_hysteresis_blocked', 'backtest', NULL,
    '{"returns": {"sharpe": 0.58, "max_drawdown": 0.2, "gain_to_pain_ratio": 1.2},
      "sample": {"effective_history_years": 3.0, "n_trades_total": 100},
      "risk": {"adv_utilization_p95": 0.2, "participation_rate_p95": 0.1}, "robustness": {"deflated_sharpe_ratio": 0.2}}');
SELECT strategy_id, selected, reason_code FROM wval_select('w-sel', 'backtest')
WHERE strategy_id IN ('good_set_3', 'borderline_hysteresis_blocked');

-- correlation: with a snapshot covariance, good_set_2 (0.9 correlated with good_set_1) is dropped
SELECT wval_policy_publish('w-sel', (SELECT policy FROM wval.sample_policies) - 'selection'
       || '{"selection": {"correlation": {"max": 0.8}}}', 'alice') AS version;
SELECT version FROM wval_policy_activate('w-sel', 3, 'bob', 'correlation only');
SELECT actor FROM wval_producer_register('w-sel', 'risk-engine');
SELECT version FROM wval_snapshot_publish('w-sel', jsonb_build_object(
    'as_of', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), 'version', 'v1',
    'weights', '{"good_set_1": 0.5, "good_set_2": 0.5}'::jsonb,
    'covariance', '{"good_set_1,good_set_1": 0.04, "good_set_2,good_set_2": 0.01, "good_set_1,good_set_2": 0.018}'::jsonb,
    'ttl_sec', 600), 'risk-engine', 'backtest');
SELECT a, b, round(corr::numeric, 3) AS corr, source FROM wval._correlations('w-sel');
SELECT strategy_id, selected, rank, reason_code FROM wval_select('w-sel', 'backtest')
WHERE strategy_id IN ('good_set_1', 'good_set_2', 'good_stable_1');

-- each change of the selected set is an event; errors
SELECT count(*) AS selection_changed_events FROM wval.events WHERE world_id = 'w-sel' AND type = 'selection_changed';
SELECT * FROM wval_select('w-sel', 'production');
\echo :LAST_ERROR_SQLSTATE
SELECT world_id FROM wval_world_upsert('w-sel-empty', actor => 'dba');
SELECT * FROM wval_select('w-sel-empty', 'backtest');
\echo :LAST_ERROR_SQLSTATE
SELECT wval_verify_chain('w-sel') AS chain_ok;
