-- evaluate: wval_evaluate end to end (metrics, policy, storage, provenance, idempotency)
\set SHOW_CONTEXT never

SELECT world_id FROM wval_world_upsert('w-eval', 'medium', false, actor => 'dba');
SELECT wval_policy_publish('w-eval', (SELECT policy FROM wval.sample_policies WHERE name = 'sample'), 'alice', 'sample policy') AS version;
SELECT version FROM wval_policy_activate('w-eval', 1, 'bob', 'adopt the sample policy');

-- a deterministic ten-year daily series: drift plus a seasonal wave
CREATE TEMP TABLE series AS
SELECT array_agg(0.0006 + 0.01 * sin(i * 1.3) + 0.004 * cos(i * 0.07) ORDER BY i) AS r
FROM generate_series(1, 2520) i;

CREATE TEMP TABLE run1 AS
SELECT * FROM wval_evaluate('w-eval', 'alpha', 'backtest', (SELECT r FROM series),
    '{"sample": {"n_trades_total": 900}, "risk": {"adv_utilization_p95": 0.12, "participation_rate_p95": 0.04}}',
    '{"run_id": "alpha-bt-1", "model_card_version": "mc-3.1", "code_hash": "git:4f2a9c1",
      "data_snapshot": {"vendor": "acme", "as_of": "2026-11-26"}, "actor": "backtester"}');

-- the outcome and its provenance
SELECT world_id, strategy_id, stage, kind, status, recommended_stage, profile, policy_version,
       model_card_version, code_hash, data_snapshot, client_run_id, created_by, risk_tier
FROM run1;
SELECT ruleset_hash = wval_ruleset('w-eval', 'backtest')->>'ruleset_hash' AS hash_is_the_rulesets,
       ruleset_hash = (SELECT ruleset_hashes->>'backtest' FROM wval.policy_versions WHERE world_id = 'w-eval') AS hash_as_published,
       returns_hash = 'sha256:' || encode(sha256((SELECT string_agg(float8send(x), ''::bytea ORDER BY o)
                                                  FROM series, unnest(r) WITH ORDINALITY u(x, o))), 'hex') AS returns_hash_recomputed
FROM run1;

-- metrics were computed from the returns (they match wval_metrics) and supplied facts kept
SELECT (metrics->'returns') = (wval_metrics((SELECT r FROM series))->'returns') AS returns_block_computed,
       metrics #>> '{diagnostics,n_periods}' AS n_periods,
       metrics #>> '{sample,n_trades_total}' AS trades_supplied,
       metrics #>> '{sample,n_trades_per_year}' AS trades_per_year_derived,
       metrics #> '{diagnostics,validation_health}' AS validation_health
FROM run1;

-- one rule_results row per result, the same content
SELECT rr.rule, rr.layer, rr.status, rr.severity, rr.owner, rr.reason_code, rr.tags,
       rr.details = (SELECT results->rr.rule->'details' FROM run1) AS same_details
FROM wval.rule_results rr WHERE rr.run_id = (SELECT run_id FROM run1) ORDER BY rr.rule;
SELECT (SELECT count(*) FROM jsonb_object_keys((SELECT results FROM run1))) =
       (SELECT count(*) FROM wval.rule_results WHERE run_id = (SELECT run_id FROM run1)) AS one_row_per_result;

-- the event
SELECT type, subject, payload->'data'->>'status' AS status, payload->'data'->>'stage' AS stage,
       payload->'data'->>'policy_version' AS policy_version,
       payload->'data'->>'run_id' = (SELECT run_id::text FROM run1) AS run_id_matches
FROM wval.events WHERE world_id = 'w-eval' AND type = 'evaluation_run_created';

-- idempotency: the same world / strategy / run_id returns the first run and records nothing
SELECT (e).run_id = (SELECT run_id FROM run1) AS same_run
FROM (SELECT wval_evaluate('w-eval', 'alpha', 'backtest', (SELECT r FROM series),
    '{"sample": {"n_trades_total": 900}, "risk": {"adv_utilization_p95": 0.12, "participation_rate_p95": 0.04}}',
    '{"run_id": "alpha-bt-1", "model_card_version": "mc-3.1", "code_hash": "git:4f2a9c1",
      "data_snapshot": {"vendor": "acme", "as_of": "2026-11-26"}, "actor": "backtester"}') AS e) x;
-- ... but the same run_id with other returns, metrics or context is WV007 (the DETAIL names the run)
\set VERBOSITY terse
SELECT wval_evaluate('w-eval', 'alpha', 'backtest', '{0.5, 0.5}', '{}', '{"run_id": "alpha-bt-1"}');
\set VERBOSITY default
SELECT count(*) AS runs FROM wval.evaluation_runs WHERE world_id = 'w-eval';
SELECT count(*) AS events FROM wval.events WHERE world_id = 'w-eval' AND type = 'evaluation_run_created';

-- wval_check on the stored metrics agrees with wval_evaluate
SELECT c->>'status' = r.status AS same_status, c->>'recommended_stage' = r.recommended_stage AS same_stage,
       c->>'ruleset_hash' = r.ruleset_hash AS same_hash, c->'results' = r.results AS same_results,
       c->'recommendation' = r.recommendation AS same_recommendation
FROM run1 r, wval_check((SELECT policy FROM wval.sample_policies WHERE name = 'sample'), r.metrics) c;

-- supplied values that disagree with the computed ones are kept aside; unknown blocks are extras
SELECT status, metrics #>> '{returns,sharpe}' = (wval_metrics((SELECT r FROM series))) #>> '{returns,sharpe}' AS computed_sharpe_wins,
       metrics #> '{diagnostics,supplied_overridden}' AS supplied_overridden,
       metrics #> '{diagnostics,extra_metrics}' AS extra_metrics
FROM wval_evaluate('w-eval', 'alpha', 'backtest', (SELECT r FROM series),
    '{"returns": {"sharpe": 9.9, "max_drawdown": 0.0}, "sample": {"n_trades_total": 900},
      "risk": {"adv_utilization_p95": 0.12, "participation_rate_p95": 0.04}, "execution": {"slippage_bps": 1.5}}');

-- metrics only (no returns): the scenario shape; every scenario case as a stored run
SELECT c.set_name, count(*) AS runs,
       count(*) FILTER (WHERE e.status = c.expected_status AND e.recommended_stage = c.expected_stage) AS as_expected
FROM wval.scenario_cases c,
     LATERAL wval_evaluate('w-eval', c.strategy_id, 'backtest', NULL, c.metrics, jsonb_build_object('run_id', c.case_id)) e
WHERE c.shipped GROUP BY c.set_name ORDER BY c.set_name;

-- paper runs are compared with the latest backtest run of the same strategy
SELECT wval_policy_publish('w-eval', '{"validation_profiles": {
    "backtest": {"performance": {"sharpe_min": 0.5}},
    "paper": {"performance": {"sharpe_min": 0.5}, "paper_shadow_consistency": {"min_sharpe_ratio": 0.5, "max_drawdown_ratio": 2}}},
  "default_profile_by_stage": {"backtest_only": "backtest", "paper_only": "paper"}}', 'alice') AS version;
-- (the new policy changes most outcomes of the stored runs: the impact gate needs force)
SELECT version FROM wval_policy_activate('w-eval', 2, 'bob', 'paper consistency', force => true);
SELECT status, recommended_stage,
       results->'paper_shadow_consistency.min_sharpe_ratio'->>'status' AS sharpe_ratio,
       results->'paper_shadow_consistency.min_sharpe_ratio'->'details'->>'baseline_value' AS baseline_sharpe
FROM wval_evaluate('w-eval', 'good_set_1', 'paper', NULL, '{"returns": {"sharpe": 0.9, "max_drawdown": 0.1}}');
SELECT status, results->'paper_shadow_consistency.min_sharpe_ratio'->>'status' AS sharpe_ratio,
       results->'paper_shadow_consistency.min_sharpe_ratio'->>'reason_code' AS reason_code
FROM wval_evaluate('w-eval', 'good_set_1', 'paper', NULL, '{"returns": {"sharpe": 0.5, "max_drawdown": 0.1}}');
SELECT status, results->'paper_shadow_consistency.min_sharpe_ratio'->>'reason' AS reason
FROM wval_evaluate('w-eval', 'never-backtested', 'paper', NULL, '{"returns": {"sharpe": 0.9, "max_drawdown": 0.1}}');

-- fail-closed: a high-tier client-critical world fails a missing metric whatever the policy says
SELECT world_id FROM wval_world_upsert('w-eval-crit', 'high', true, actor => 'dba');
SELECT wval_policy_publish('w-eval-crit', '{"validation": {"on_missing_metric": "ignore"},
    "validation_profiles": {"backtest": {"performance": {"sharpe_min": 0.5, "sortino_min": 1}}}}', 'alice') AS version;
SELECT version FROM wval_policy_activate('w-eval-crit', 1, 'bob', 'exception RC-9', force => true);
SELECT status, results->'performance.sortino_min'->>'status' AS sortino, results->'performance.sortino_min'->>'reason_code' AS reason_code
FROM wval_evaluate('w-eval-crit', 's', 'backtest', NULL, '{"returns": {"sharpe": 1.2}}');
-- ... while the same policy in a medium world ignores it
SELECT wval_policy_publish('w-eval', '{"validation": {"on_missing_metric": "ignore"},
    "validation_profiles": {"backtest": {"performance": {"sharpe_min": 0.5, "sortino_min": 1}}}}', 'alice') AS version;
SELECT version FROM wval_policy_activate('w-eval', 3, 'bob', 'ignore missing', force => true);
SELECT status, results->'performance.sortino_min'->>'status' AS sortino, results->'performance.sortino_min'->>'reason_code' AS reason_code
FROM wval_evaluate('w-eval', 's', 'backtest', NULL, '{"returns": {"sharpe": 1.2}}');

-- errors: nothing is recorded
CREATE TEMP TABLE before AS SELECT count(*) AS n FROM wval.evaluation_runs;
SELECT wval_evaluate('w-eval', 's', 'backtest', '{0.01, NULL, 0.02}');
\echo :LAST_ERROR_SQLSTATE
SELECT wval_evaluate('w-eval', 's', 'backtest', '{0.01, -1.5}');
\echo :LAST_ERROR_SQLSTATE
SELECT wval_evaluate('w-eval', 's', 'backtest', '{0.01, 0.02}', '{"returns": {"sharpe": "great"}}');
\echo :LAST_ERROR_SQLSTATE
SELECT wval_evaluate('w-eval', 's', 'backtest', '{0.01, 0.02}', '{}', '{"periods_per_year": 0}');
\echo :LAST_ERROR_SQLSTATE
SELECT wval_evaluate('w-eval', 's', 'backtest', '{0.01, 0.02}', '{}', '{"benchmark": [0.01]}');
\echo :LAST_ERROR_SQLSTATE
SELECT wval_evaluate('w-eval', 's', 'research', '{0.01, 0.02}');
\echo :LAST_ERROR_SQLSTATE
SELECT wval_evaluate('w-eval', '', 'backtest', '{0.01, 0.02}');
\echo :LAST_ERROR_SQLSTATE
SELECT wval_evaluate('w-eval', 's', 'backtest', '{0.01, 0.02}', '{}', '[]');
\echo :LAST_ERROR_SQLSTATE
SELECT wval_evaluate('w-eval', 's', 'backtest', '{0.01, 0.02}', '{}', '{"data_as_of": "yesterday-ish"}');
\echo :LAST_ERROR_SQLSTATE
SELECT wval_evaluate('w-missing', 's', 'backtest', '{0.01, 0.02}');
\echo :LAST_ERROR_SQLSTATE
SELECT world_id FROM wval_world_upsert('w-eval-nopolicy', actor => 'dba');
SELECT wval_evaluate('w-eval-nopolicy', 's', 'backtest', '{0.01, 0.02}');
\echo :LAST_ERROR_SQLSTATE
SELECT (SELECT count(*) FROM wval.evaluation_runs) - n AS runs_recorded_by_failed_calls FROM before;

-- the emergency bypass records without validation and says so
SELECT status, recommended_stage, policy_version, results
FROM wval_record_run('w-eval', 'hotfix', 'paper', '{"returns": {"sharpe": 0.1}}', 'dba', 'exchange outage, validated by hand');
SELECT action, details->>'reason' AS reason FROM wval.audit_log WHERE world_id = 'w-eval' AND action = 'validation_bypassed';
SELECT wval_record_run('w-eval', 'hotfix', 'paper', '{}', 'dba', '');
\echo :LAST_ERROR_SQLSTATE

SELECT wval_verify_chain('w-eval') AS chain_ok, wval_verify_chain('w-eval-crit') AS crit_chain_ok;

-- reads over outcomes: rule statistics (since this file's first run: the statistics cover
-- every world, and earlier files store runs too), validation SLO, ex-post failure rate
SELECT rule, reason_code, results, failed, warned, missing, errored
FROM wval_rule_failure_stats(since => (SELECT min(created_at) FROM wval.evaluation_runs WHERE world_id LIKE 'w-eval%'))
WHERE rule LIKE 'performance.%' ORDER BY rule, reason_code;
SELECT world_id, stage, runs, coverage_p95, rules_executed_p95, round(missing_metric_run_ratio::numeric, 3) AS missing,
       rule_error_run_ratio AS errors, coverage_ok, rules_ok, missing_ok, errors_ok, slo_met
FROM wval_validation_slo() WHERE world_id LIKE 'w-eval%' ORDER BY 1, 2;
SELECT run_id AS live_run FROM wval_evaluate('w-eval', 'live-one', 'live', NULL, '{"returns": {"sharpe": 1.2}}') \gset
SELECT (wval_record_failure(:'live_run', 'risk_breach', 'var_breach', 'high', 'dave', status => 'confirmed')).status;
SELECT risk_tier, strategies_passed_live, strategies_failed_ex_post, failure_rate FROM wval_failure_rate();
