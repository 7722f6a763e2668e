-- policy: the DSL, its validation (WV002), the check engine, the ruleset hash
\set SHOW_CONTEXT never

-- every published scenario case gets its expected status and stage under the sample policy
SELECT c.set_name, c.strategy_id, r->>'status' AS status, r->>'recommended_stage' AS recommended_stage,
       r->>'status' = c.expected_status AND r->>'recommended_stage' = c.expected_stage AS as_expected
FROM wval.scenario_cases c,
     LATERAL wval_check((SELECT policy FROM wval.sample_policies WHERE name = 'sample'), c.metrics) r
WHERE c.shipped
ORDER BY c.set_name, c.case_id;

-- why a soft fail keeps a strategy where it is
SELECT key, v->>'status' AS status, v->>'severity' AS severity, v->>'reason_code' AS reason_code, v->>'reason' AS reason
FROM jsonb_each(wval_check((SELECT policy FROM wval.sample_policies), (SELECT metrics FROM wval.scenario_cases WHERE strategy_id = 'bad_short_history'))->'results') AS r(key, v)
ORDER BY key;
SELECT jsonb_pretty(wval_check((SELECT policy FROM wval.sample_policies),
                               (SELECT metrics FROM wval.scenario_cases WHERE strategy_id = 'good_set_3'))->'recommendation');

-- strict validation: each problem is WV002 naming the JSON path
SELECT wval._policy_validate('{"validation_profiles": {"backtest": {"performnce": {"sharpe_min": 0.5}}}}');
\echo :LAST_ERROR_SQLSTATE
SELECT wval._policy_validate('{"validation_profiles": {"backtest": {"performance": {"sharpe_mim": 0.5}}}}');
SELECT wval._policy_validate('{"validation_profiles": {"backtest": {"performance": {"sharpe_min": "0.5"}}}}');
SELECT wval._policy_validate('{"validation_profiles": {"backtest": {"performance": {"sharpe_min": true}}}}');
SELECT wval._policy_validate('{"validation_profiles": {"backtest": {"sample": {"min_trades_total": -5}}}}');
SELECT wval._policy_validate('{"validation_profiles": {"backtest": {"sample": {"min_trades_total": 2.5}}}}');
SELECT wval._policy_validate('{"validation_profiles": {"backtest": {"performance": {"sharpe_min": {"min": 2, "max": 1}}}}}');
SELECT wval._policy_validate('{"validation_profiles": {"backtest": {"performance": {"sharpe_min": {"max": 2}}}}}');
SELECT wval._policy_validate('{"validation_profiles": {"backtest": {}}, "default_profile_by_stage": {"paper_only": "paper"}}');
SELECT wval._policy_validate('{"validation_profiles": {"backtest": {}}, "default_profile_by_stage": {"live": "backtest"}}');
SELECT wval._policy_validate('{"validation": {"on_error": "ignore"}}');
SELECT wval._policy_validate('{"validation": {"on_missing_metric": "skip"}}');
SELECT wval._policy_validate('{"validation": {"on_missing": "fail"}}');
SELECT wval._policy_validate('{"validation_profiles": {"backtest": {"risk": {"severity": "critical"}}}}');
SELECT wval._policy_validate('{"validation_profiles": {"backtest": {"risk": {"var_p01_max": {"max": 0.1, "owner": "cfo"}}}}}');
SELECT wval._policy_validate('{"validation_profiles": {"backtest": {"risk": {"mode": "shadow"}}}}');
SELECT wval._policy_validate('{"validation_profiles": {"backtest": {"data_currency": {"max_lag": 5}}}}');
SELECT wval._policy_validate('{"validation_profiles": {"backtest": {"data_currency": {"min_history": "-3d"}}}}');
SELECT wval._policy_validate('{"validation_profiles": {"backtest": {"cohort": {"top_k": 3}}}}');
SELECT wval._policy_validate('{"validation_profiles": {"backtest": {"robustness": {"cv_sharpe_gap_max": 0.5, "half_sharpe_gap_max": 0.5}}}}');
SELECT wval._policy_validate('{"validation_profiles": {"backtest": {"stress": {"scenarios": {"crash": {"dd": 0.3}}}}}}');
SELECT wval._policy_validate('{"cohort": {"top_k": -1}}');
SELECT wval._policy_validate('{"live_monitoring": {"windows_days": [30, 0]}}');
SELECT wval._policy_validate('{"live_monitoring": {"demote_afer": 2}}');
SELECT wval._policy_validate('{"hysteresis": {"metric": "sharpe", "enter": 0.4, "exit": 0.6}}');
SELECT wval._policy_validate('{"top_k": {"metric": "sharpe", "k": 3}, "selection": {"top_k": {"k": 2}}}');
SELECT wval._policy_validate('{"correlation": {"max": 1.5}}');
SELECT wval._policy_validate('{"foo": 1}');
SELECT wval._policy_validate('[]');

-- every key of the DSL, scalar and object forms, aliases and stored-only blocks
SELECT jsonb_object_keys(wval._policy_validate($$
{"validation_profiles": {
   "full": {
     "data_currency": {"max_lag": "1d", "min_history": "180d", "max_missing_ratio": 0.05},
     "sample": {"min_effective_years": 2, "min_trades_total": 50, "min_trades_per_year": 10, "require_high_vol_regime": true},
     "performance": {"sharpe_min": {"min": 0.5, "severity": "soft", "owner": "risk", "mode": "warn"}, "max_dd_max": 0.25,
                     "gain_to_pain_min": 1, "sortino_min": 0.7, "time_under_water_max": 0.6, "volatility_max": 0.4},
     "robustness": {"dsr_min": 0.15, "psr_min": 0.9, "cv_sharpe_gap_max": 0.6, "cv_sharpe_std_max": 1.5,
                    "sharpe_max": 4, "complexity_max": 8, "severity": "blocking"},
     "risk": {"adv_utilization_p95_max": 0.5, "participation_rate_p95_max": 0.4, "var_p01_max": 0.05, "es_p01_max": 0.07,
              "incremental_var_99_max": 0.3, "incremental_es_99_max": 0.4, "capacity_estimate_base_min": 1e6,
              "max_leverage": 3, "factor_exposure_max": {"momentum": 0.5, "value": {"max": 0.3}}},
     "portfolio": {"max_incremental_var_99": 0.3, "max_incremental_es_99": 0.4, "min_portfolio_sharpe_uplift": 0},
     "benchmark": {"min_vs_benchmark_sharpe": 0.1},
     "stress": {"scenarios": {"crash2008": {"dd_max": 0.3, "es_99": 0.2, "var_99": 0.15}}},
     "paper_shadow_consistency": {"min_sharpe_ratio": 0.5, "max_drawdown_ratio": 1.5, "max_var_p01_ratio": 1.5, "max_es_p01_ratio": 1.5}},
   "light": {"performance": {"sharpe_min": 0.3}}},
 "default_profile_by_stage": {"backtest_only": "light", "paper_only": "full"},
 "validation": {"on_error": "warn", "on_missing_metric": "ignore"},
 "cohort": {"sharpe_median_min": 0.5, "dsr_median_min": 0.2, "top_k": 5, "sharpe_alarm": 4},
 "live_monitoring": {"sharpe_min": 0.3, "dd_max": 0.2, "es_max": 0.05, "decay_threshold": 0.5, "windows_days": [30, 60, 90], "demote_after": 2},
 "portfolio": {"max_incremental_var_99": 0.5},
 "stress": {"scenarios": {"rates_up": {"dd_max": 0.2}}},
 "thresholds": {"sharpe": {"min": 0.5}}, "top_k": {"metric": "sharpe", "k": 3},
 "correlation": {"max": 0.8}, "hysteresis": {"metric": "sharpe", "enter": 0.6, "exit": 0.4},
 "governance": {"approvers": ["risk-committee"]}, "campaign": {"id": "q4"}}
$$)) AS profile ORDER BY 1;
SELECT count(*) AS checks, count(*) FILTER (WHERE v->>'mode' = 'warn') AS warn_mode,
       count(*) FILTER (WHERE k LIKE 'stress.%') AS stress_checks
FROM jsonb_each(wval._policy_ruleset($$
{"validation_profiles": {"p": {"performance": {"sharpe_min": 0.5, "mode": "warn"}, "robustness": {"dsr_min": 0.1},
  "stress": {"scenarios": {"a": {"dd_max": 0.3}}}}, "q": {"performance": {"sharpe_min": 1}}},
 "stress": {"scenarios": {"backtest": {"dd_max": 0.2}, "c": {"var_99": 0.1}}},
 "default_profile_by_stage": {"backtest_only": "p"}}$$, 'backtest', false)->'checks') AS c(k, v);
SELECT jsonb_object_keys(wval._policy_ruleset($$
{"validation_profiles": {"p": {"performance": {"sharpe_min": 0.5}}, "q": {"performance": {"sharpe_min": 1}}},
 "stress": {"scenarios": {"backtest": {"dd_max": 0.2}}},
 "default_profile_by_stage": {"backtest_only": "p"}}$$, 'paper', false)->'checks') AS profile_q_gets_top_level_stress;

-- missing metrics: fail / warn / ignore, uniformly
SELECT m AS on_missing_metric, r->>'status' AS status,
       r->'results'->'performance.sharpe_min'->>'status' AS rule_status,
       r->'results'->'performance.sharpe_min'->>'severity' AS severity,
       r->'results'->'performance.sharpe_min'->>'reason_code' AS reason_code
FROM unnest(ARRAY['fail', 'warn', 'ignore']) m,
     LATERAL wval_check(jsonb_build_object(
        'validation_profiles', jsonb_build_object('backtest', '{"performance": {"sharpe_min": 0.5}}'::jsonb),
        'default_profile_by_stage', '{"backtest_only": "backtest"}'::jsonb,
        'validation', jsonb_build_object('on_missing_metric', m)),
        '{"returns": {"max_drawdown": 0.1}}') r;
SELECT r->'results'->'performance.sharpe_min'->>'reason' AS null_is_missing
FROM wval_check('{"validation_profiles": {"backtest": {"performance": {"sharpe_min": 0.5}}}}',
                '{"returns": {"sharpe": null}}') r;

-- errors inside a check: on_error fail / warn; the evaluation goes on
SELECT e AS on_error, r->>'status' AS status,
       r->'results'->'performance.sharpe_min'->>'reason_code' AS reason_code,
       r->'results'->'performance.sharpe_min'->'details'->>'error' AS error,
       r->'results'->'performance.max_dd_max'->>'status' AS other_check,
       r->'validation_health'->>'validation_error_count' AS errors
FROM unnest(ARRAY['fail', 'warn']) e,
     LATERAL wval_check(jsonb_build_object(
        'validation_profiles', '{"backtest": {"performance": {"sharpe_min": 0.5, "max_dd_max": 0.2}}}'::jsonb,
        'validation', jsonb_build_object('on_error', e)),
        '{"returns": {"sharpe": {"annual": 1.2}, "max_drawdown": 0.1}}') r;
SELECT r->'results'->'data_currency.max_missing_ratio'->>'reason' AS descriptive_value_in_a_numeric_check
FROM wval_check('{"validation_profiles": {"backtest": {"data_currency": {"max_missing_ratio": 0.1}}}}',
                '{"diagnostics": {"missing_ratio": "about 5 percent"}}') r;

-- bad supplied metrics are the caller's error (WV001)
SELECT wval_check('{}', '{"returns": {"sharpe": "high"}}');
\echo :LAST_ERROR_SQLSTATE
SELECT wval_check('{}', '{"returns": {"sharpe": true}}');
SELECT wval_check('{}', '{"returns": 1.5}');
SELECT wval_check('{}', '[1]');
SELECT wval_check('{}', '{}', 'production');
\echo :LAST_ERROR_SQLSTATE

-- warn mode: a violation reports warn with would_fail
SELECT r->>'status' AS status, r->'results'->'performance.sharpe_min'->>'status' AS rule_status,
       r->'results'->'performance.sharpe_min'->'details'->>'would_fail' AS would_fail,
       r->'results'->'performance.sharpe_min'->>'reason' AS reason
FROM wval_check('{"validation_profiles": {"backtest": {"performance": {"sharpe_min": {"min": 0.5, "mode": "warn"}}}}}',
                '{"returns": {"sharpe": 0.41}}') r;
SELECT r->>'status' AS layer_warn_mode
FROM wval_check('{"validation_profiles": {"backtest": {"performance": {"mode": "warn", "sharpe_min": 0.5, "max_dd_max": 0.1}}}}',
                '{"returns": {"sharpe": 0.41, "max_drawdown": 0.3}}') r;

-- summary status: blocking fail -> fail; soft fail, info fail or warn -> warn; no checks -> warn
SELECT sev, r->>'status' AS status, r->>'recommended_stage' AS recommended_stage
FROM unnest(ARRAY['blocking', 'soft', 'info']) sev,
     LATERAL wval_check(jsonb_build_object(
        'validation_profiles', jsonb_build_object('backtest', jsonb_build_object('performance', jsonb_build_object('sharpe_min', 0.5, 'severity', sev)),
                                                  'p', '{}'::jsonb),
        'default_profile_by_stage', '{"backtest_only": "backtest", "paper_only": "p"}'::jsonb),
        '{"returns": {"sharpe": 0.1}}') r;
SELECT r->>'status' AS status, r->'results'->'policy.no_checks'->>'reason_code' AS reason_code
FROM wval_check('{"validation_profiles": {"empty": {}}}', '{"returns": {"sharpe": 1}}') r;
SELECT r->>'status' AS status, r->'results'->'policy.no_checks'->>'reason' AS reason
FROM wval_check('{}', '{"returns": {"sharpe": 1}}') r;

-- recommended stage: the climb stops at the first profile that is not cleared
SELECT s AS sharpe, r->>'recommended_stage' AS recommended_stage, r->'recommendation'->>'stopped_at' AS stopped_at
FROM unnest(ARRAY[0.2, 0.6, 0.9, 1.5]) s,
     LATERAL wval_check('{"validation_profiles": {"bt": {"performance": {"sharpe_min": 0.5}},
                                                  "pp": {"performance": {"sharpe_min": 0.8}},
                                                  "lv": {"performance": {"sharpe_min": 1.2}}},
                          "default_profile_by_stage": {"backtest_only": "bt", "paper_only": "pp", "paper_ok_live_candidate": "lv"}}',
                        jsonb_build_object('returns', jsonb_build_object('sharpe', s))) r
ORDER BY s;
SELECT r->>'recommended_stage' AS without_backtest_key
FROM wval_check('{"validation_profiles": {"pp": {"performance": {"sharpe_min": 0.8}}},
                  "default_profile_by_stage": {"paper_only": "pp"}}', '{"returns": {"sharpe": 1}}') r;
-- the stored status is the one of the run's own stage
SELECT st AS stage, r->>'profile' AS profile, r->>'status' AS status
FROM unnest(ARRAY['backtest', 'paper', 'shadow', 'live']) st,
     LATERAL wval_check('{"validation_profiles": {"bt": {"performance": {"sharpe_min": 0.5}},
                                                  "pp": {"performance": {"sharpe_min": 0.8}},
                                                  "shadow": {"performance": {"sharpe_min": 0.7}}},
                          "default_profile_by_stage": {"backtest_only": "bt", "paper_only": "pp"}}',
                        '{"returns": {"sharpe": 0.75}}', st) r;

-- special values: data lag, history, half gap, factors, stress, baseline ratios
SELECT r->'results'->'data_currency.max_lag'->>'status' AS fresh,
       r2->'results'->'data_currency.max_lag'->>'status' AS stale,
       r2->'results'->'data_currency.max_lag'->>'reason_code' AS stale_code,
       r->'results'->'data_currency.min_history'->>'status' AS history
FROM wval_check('{"validation_profiles": {"backtest": {"data_currency": {"max_lag": "1d", "min_history": "180d"}}}}',
                '{"sample": {"effective_history_years": 0.5}}', 'backtest',
                jsonb_build_object('data_as_of', now() - interval '2 hours')) r,
     wval_check('{"validation_profiles": {"backtest": {"data_currency": {"max_lag": "1d"}}}}',
                '{}', 'backtest', jsonb_build_object('data_as_of', now() - interval '3 days')) r2;
SELECT wval_check('{}', '{}', 'backtest', '{"data_as_of": "last tuesday"}');
SELECT key, v->>'status' AS status, v->>'reason_code' AS reason_code, v->'details'->>'value' AS value
FROM jsonb_each(wval_check('{"validation_profiles": {"backtest": {
        "robustness": {"half_sharpe_gap_max": 0.6},
        "risk": {"factor_exposure_max": {"momentum": 0.5, "value": 0.3}},
        "stress": {"scenarios": {"crash": {"dd_max": 0.3, "es_99": 0.2}}},
        "sample": {"require_high_vol_regime": true}}}}',
     '{"robustness": {"sharpe_first_half": 1.5, "sharpe_second_half": 0.7},
       "risk": {"factor_exposures": {"momentum": -0.7, "value": 0.1}},
       "stress": {"crash": {"max_drawdown": -0.25, "es_99": -0.31}},
       "sample": {"regime_coverage": {"low_vol": 0.5, "mid_vol": 0.5, "high_vol": 0}}}')->'results') AS e(key, v)
ORDER BY key;
SELECT st AS stage, r->'results'->'paper_shadow_consistency.min_sharpe_ratio'->>'status' AS status,
       r->'results'->'paper_shadow_consistency.min_sharpe_ratio'->'details'->>'value' AS ratio
FROM unnest(ARRAY['backtest', 'paper']) st,
     LATERAL wval_check('{"validation_profiles": {"p": {"paper_shadow_consistency": {"min_sharpe_ratio": 0.5}}},
                          "default_profile_by_stage": {"backtest_only": "p", "paper_only": "p"}}',
                        '{"returns": {"sharpe": 0.6}}', st,
                        '{"baseline_metrics": {"returns": {"sharpe": 1.5}}}') r;
SELECT r->'results'->'paper_shadow_consistency.min_sharpe_ratio'->>'reason' AS no_backtest_run
FROM wval_check('{"validation_profiles": {"paper": {"paper_shadow_consistency": {"min_sharpe_ratio": 0.5}}}}',
                '{"returns": {"sharpe": 0.6}}', 'paper') r;
SELECT r->'results'->'performance.sortino_min'->>'status' AS infinite_sortino
FROM wval_check('{"validation_profiles": {"backtest": {"performance": {"sortino_min": 2}}}}',
                '{"returns": {"sortino_ratio": "Infinity"}}') r;

-- ruleset hash: key order, number formatting and unrelated parts do not change it
SELECT count(DISTINCT h) AS distinct_hashes FROM (VALUES
  (wval._policy_validate('{"validation_profiles": {"backtest": {"performance": {"sharpe_min": 0.5, "max_dd_max": 0.25}}}}')->>'backtest'),
  (wval._policy_validate('{"validation_profiles": {"backtest": {"performance": {"max_dd_max": 0.250, "sharpe_min": 5e-1}}}}')->>'backtest'),
  (wval._policy_validate('{"validation_profiles": {"backtest": {"performance": {"max_dd_max": {"max": 0.25}, "sharpe_min": {"min": 0.50}}}}}')->>'backtest'),
  (wval._policy_validate('{"selection": {"top_k": {"metric": "sharpe", "k": 9}}, "governance": {"x": 1},
                           "validation_profiles": {"backtest": {"performance": {"sharpe_min": 0.5, "max_dd_max": 0.25, "severity": "blocking"}}}}')->>'backtest')) v(h);
-- ... while anything that can change an outcome does
SELECT count(DISTINCT h) AS distinct_hashes FROM (VALUES
  (wval._policy_validate('{"validation_profiles": {"backtest": {"performance": {"sharpe_min": 0.5}}}}')->>'backtest'),
  (wval._policy_validate('{"validation_profiles": {"backtest": {"performance": {"sharpe_min": 0.6}}}}')->>'backtest'),
  (wval._policy_validate('{"validation_profiles": {"backtest": {"performance": {"sharpe_min": 0.5, "severity": "soft"}}}}')->>'backtest'),
  (wval._policy_validate('{"validation_profiles": {"backtest": {"performance": {"sharpe_min": {"min": 0.5, "mode": "warn"}}}}}')->>'backtest'),
  (wval._policy_validate('{"validation_profiles": {"backtest": {"performance": {"sharpe_min": {"min": 0.5, "owner": "risk"}}}}}')->>'backtest'),
  (wval._policy_validate('{"validation": {"on_missing_metric": "warn"}, "validation_profiles": {"backtest": {"performance": {"sharpe_min": 0.5}}}}')->>'backtest'),
  (wval._policy_validate('{"validation": {"on_error": "warn"}, "validation_profiles": {"backtest": {"performance": {"sharpe_min": 0.5}}}}')->>'backtest'),
  (wval._policy_validate('{"validation_profiles": {"c": {"performance": {"sharpe_min": 0.5}}}}')->>'c')) v(h);
-- the hash is sha256 over the materialised ruleset, recomputable in SQL
SELECT rs->>'ruleset_hash' = 'sha256:' || encode(sha256(convert_to((rs - 'ruleset_hash')::text, 'UTF8')), 'hex') AS recomputed
FROM wval._policy_ruleset((SELECT policy FROM wval.sample_policies), 'backtest', false) rs;

-- fail-closed: high-tier client-critical worlds force on_error / on_missing_metric to fail
SELECT world_id FROM wval_world_upsert('w-policy-crit', 'high', true, actor => 'dba');
SELECT wval_policy_publish('w-policy-crit', '{"validation": {"on_missing_metric": "ignore", "on_error": "warn"},
    "validation_profiles": {"backtest": {"performance": {"sharpe_min": 0.5}}}}', 'alice') AS version;
SELECT wval_policy_activate('w-policy-crit', 1, 'bob', 'relaxed rollout');
\echo :LAST_ERROR_SQLSTATE
SELECT version, forced, details->'governance_exceptions'->0->>'rule' AS exception
FROM wval_policy_activate('w-policy-crit', 1, 'bob', 'risk committee exception RC-17', force => true);
SELECT rs->>'on_error' AS on_error, rs->>'on_missing_metric' AS on_missing_metric,
       rs->>'ruleset_hash' = (SELECT ruleset_hashes->>'backtest' FROM wval.policy_versions WHERE world_id = 'w-policy-crit') AS hash_as_published
FROM wval_ruleset('w-policy-crit', 'backtest') rs;
SELECT wval_ruleset('w-policy-crit', 'backtest', 7);
\echo :LAST_ERROR_SQLSTATE
SELECT wval_ruleset('w-nowhere', 'backtest');
\echo :LAST_ERROR_SQLSTATE

-- publishing validates the full DSL
SELECT wval_policy_publish('w-policy-crit', '{"validation_profiles": {"backtest": {"performance": {"sharpe_minimum": 0.5}}}}', 'alice');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS versions FROM wval.policy_versions WHERE world_id = 'w-policy-crit';

-- reason codes
SELECT count(*) > 40 AS many, count(DISTINCT (code, layer)) = count(*) AS unique_per_layer FROM wval.reason_codes;
SELECT code, layer FROM wval.reason_codes
WHERE code IN ('ok', 'missing_metric', 'missing_metric_ignored', 'rule_error', 'no_checks', 'sharpe_below_min',
               'max_drawdown_above_max', 'dsr_below_min', 'cohort_top_k_exceeded', 'decay_below_threshold')
ORDER BY code, layer;
