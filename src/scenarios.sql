-- scenarios.sql: the published scenario sets (policy-regression fixtures) and
-- the sample policy they were published with (spec operations.md).
-- The Makefile appends the four sets from data/scenarios/*.json after this file.

CREATE TABLE wval.scenario_cases (
    set_name        text NOT NULL,
    case_id         text NOT NULL,
    strategy_id     text NOT NULL,
    metrics         jsonb NOT NULL CHECK (jsonb_typeof(metrics) = 'object'),
    expected_status text NOT NULL CHECK (expected_status IN ('pass', 'warn', 'fail')),
    expected_stage  text CHECK (expected_stage IN ('backtest_only', 'paper_only', 'paper_ok_live_candidate')),
    note            text,
    shipped         boolean NOT NULL DEFAULT false,
    added_by        text NOT NULL DEFAULT wval._invoker(),
    added_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (set_name, case_id)
);
COMMENT ON TABLE wval.scenario_cases IS 'policy-regression fixtures: the four published sets (good, borderline, bad, known_bad; shipped = true, expected outcomes under the sample policy) and a site''s own cases';
COMMENT ON COLUMN wval.scenario_cases.expected_status IS 'the status the case must get (under the sample policy for shipped cases)';
COMMENT ON COLUMN wval.scenario_cases.shipped IS 'true for cases that ship with wval (re-created by CREATE EXTENSION, not dumped)';

CREATE TABLE wval.sample_policies (
    name   text PRIMARY KEY,
    policy jsonb NOT NULL
);
COMMENT ON TABLE wval.sample_policies IS 'policy documents that ship with wval: "sample" is the policy the scenario sets were published with';

-- wval._load_scenario_set(set, runs, expected): loads a published set given
-- in the reference's evaluation-run JSON shape, with the expected outcome
-- of each strategy.
CREATE FUNCTION wval._load_scenario_set(p_set text, p_runs jsonb, p_expected jsonb) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    INSERT INTO wval.scenario_cases (set_name, case_id, strategy_id, metrics, expected_status,
                                     expected_stage, note, shipped, added_by)
    SELECT p_set, r->>'run_id', r->>'strategy_id', r->'metrics',
           p_expected -> (r->>'strategy_id') ->> 0, p_expected -> (r->>'strategy_id') ->> 1,
           p_expected -> (r->>'strategy_id') ->> 2, true, 'wval'
    FROM jsonb_array_elements(p_runs) r;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
COMMENT ON FUNCTION wval._load_scenario_set(text, jsonb, jsonb) IS 'loads a shipped scenario set (install script only)';

-- Expected outcomes under the sample policy, stage backtest
-- (data/scenarios/README.md): strategy -> [status, recommended stage, note].
CREATE TABLE wval._scenario_expectations (set_name text PRIMARY KEY, expected jsonb NOT NULL);
INSERT INTO wval._scenario_expectations VALUES
('good', '{"good_set_1": ["pass", "paper_only", null],
           "good_set_2": ["pass", "paper_only", null],
           "good_set_3": ["pass", "backtest_only", "paper sharpe_min 0.8 > 0.7"]}'),
('borderline', '{"borderline_floor": ["pass", "backtest_only", "sits exactly on every backtest threshold"],
                 "borderline_hysteresis_blocked": ["pass", "backtest_only", "sharpe 0.59: stopped later by selection hysteresis enter 0.6"],
                 "borderline_close": ["pass", "backtest_only", "just inside every backtest threshold"]}'),
('bad', '{"good_stable_1": ["pass", "paper_only", "control"],
          "good_stable_2": ["pass", "paper_only", "control"],
          "bad_short_history": ["warn", "backtest_only", "sample is soft"],
          "bad_high_drawdown": ["fail", "backtest_only", null],
          "bad_low_sharpe": ["fail", "backtest_only", null],
          "bad_liquidity_risk": ["fail", "backtest_only", null]}'),
('known_bad', '{"known_bad_short_history_01": ["warn", "backtest_only", "sample is soft"],
                "known_bad_short_history_02": ["warn", "backtest_only", "sample is soft"],
                "known_bad_low_trades_01": ["warn", "backtest_only", "sample is soft"],
                "known_bad_low_sharpe_01": ["fail", "backtest_only", null],
                "known_bad_low_sharpe_02": ["fail", "backtest_only", null],
                "known_bad_extreme_drawdown_01": ["fail", "backtest_only", null],
                "known_bad_extreme_drawdown_02": ["fail", "backtest_only", null],
                "known_bad_low_gain_to_pain_01": ["fail", "backtest_only", null],
                "known_bad_low_gain_to_pain_02": ["fail", "backtest_only", null],
                "known_bad_liquidity_adv_01": ["fail", "backtest_only", null],
                "known_bad_liquidity_adv_02": ["fail", "backtest_only", null],
                "known_bad_liquidity_participation_01": ["fail", "backtest_only", null],
                "known_bad_liquidity_participation_02": ["fail", "backtest_only", null],
                "known_bad_low_dsr_01": ["warn", "backtest_only", "robustness is soft"],
                "known_bad_low_dsr_02": ["warn", "backtest_only", "robustness is soft"],
                "known_bad_compound_01": ["fail", "backtest_only", null],
                "known_bad_compound_02": ["fail", "backtest_only", null],
                "known_bad_compound_03": ["fail", "backtest_only", null],
                "known_bad_compound_04": ["fail", "backtest_only", null],
                "known_bad_compound_05": ["fail", "backtest_only", null]}');

-- shipped rows are re-created by CREATE EXTENSION; only a site's own cases are dumped
SELECT pg_catalog.pg_extension_config_dump('wval.scenario_cases', 'WHERE NOT shipped');

GRANT SELECT ON wval.scenario_cases, wval.sample_policies TO wval_analyst;
