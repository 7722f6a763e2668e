-- scenarios.sql: the published scenario sets (policy-regression fixtures) and
-- the sample policy they were published with (docs/policy-change.md, "Scenario sets").
-- The sample policy and the four sets come from data/scenarios/*.json:
-- scripts/scenario-sets.py prints the statements that load them, and the
-- install script has them right after this file.
--
-- requires: store
-- then: scripts/scenario-sets.py data/scenarios

CREATE TABLE wval.scenario_cases (
    set_name        text NOT NULL,
    case_id         text NOT NULL,
    strategy_id     text NOT NULL,
    metrics         jsonb NOT NULL CHECK (jsonb_typeof(metrics) = 'object'),
    expected_status text NOT NULL CHECK (expected_status IN ('pass', 'warn', 'fail')),
    expected_stage  wval.recommended_stage,
    note            text,
    shipped         boolean NOT NULL DEFAULT false,
    added_by        text NOT NULL DEFAULT wval._invoker(),
    added_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (set_name, case_id)
);
COMMENT ON TABLE wval.scenario_cases IS 'policy-regression fixtures: the four published sets (good, borderline, bad, known_bad; shipped = true, expected outcomes under the sample policy) and a site''s own cases';
COMMENT ON COLUMN wval.scenario_cases.expected_status IS 'the status the case must get (under the sample policy for shipped cases)';
COMMENT ON COLUMN wval.scenario_cases.shipped IS 'true for cases that ship with wval (re-created by CREATE EXTENSION, not dumped)';
COMMENT ON COLUMN wval.scenario_cases.set_name IS 'good | borderline | bad | known_bad for shipped cases, or a site''s own set';
COMMENT ON COLUMN wval.scenario_cases.case_id IS 'identifier of the case in its set';
COMMENT ON COLUMN wval.scenario_cases.strategy_id IS 'strategy name the case is evaluated as';
COMMENT ON COLUMN wval.scenario_cases.metrics IS 'metric blocks in the scenario shape (evaluated as given, no returns)';
COMMENT ON COLUMN wval.scenario_cases.expected_stage IS 'backtest_only | paper_only | paper_ok_live_candidate; null when the stage is not checked';
COMMENT ON COLUMN wval.scenario_cases.note IS 'why the case is in the set; null when none';
COMMENT ON COLUMN wval.scenario_cases.added_by IS 'wval for shipped cases, else the role that added the case';
COMMENT ON COLUMN wval.scenario_cases.added_at IS 'when the case was added';

CREATE TABLE wval.sample_policies (
    name   text PRIMARY KEY,
    policy jsonb NOT NULL
);
COMMENT ON TABLE wval.sample_policies IS 'policy documents that ship with wval: "sample" is the policy the scenario sets were published with';
COMMENT ON COLUMN wval.sample_policies.name IS 'name of the shipped policy (sample)';
COMMENT ON COLUMN wval.sample_policies.policy IS 'the policy document, ready for wval_policy_publish';

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

------------------------------------------------------------------------------
-- Scenario regression check (docs/policy-change.md, "Scenario sets")
------------------------------------------------------------------------------

-- wval._scenario_check(policy, set, stage, fail_closed): the check of one
-- set under a policy.  Gates: good -> every case passes; known_bad -> pass
-- ratio <= 5 %; bad -> fail ratio >= 50 %; borderline -> mixed (the policy
-- does not decide the whole set one way, 0 < pass ratio < 1, unless that is
-- what the cases expect); any other set -> every case gets its expected
-- status.
CREATE FUNCTION wval._scenario_check(p_policy jsonb, p_set text, p_stage text, p_fail_closed boolean)
RETURNS jsonb
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    runs jsonb;
    n integer;
    res jsonb;
    npass integer;
    nwarn integer;
    nfail integer;
    off jsonb;
    pass_ratio float8;
    fail_ratio float8;
    rule text;
    ok boolean;
BEGIN
    PERFORM wval._one_of('stage', p_stage, wval._stages());
    SELECT jsonb_agg(jsonb_build_object('strategy_id', c.strategy_id, 'run_id', c.case_id, 'metrics', c.metrics)
                     ORDER BY c.case_id), count(*)
    INTO runs, n
    FROM wval.scenario_cases c WHERE c.set_name = p_set;
    IF n = 0 THEN
        RAISE EXCEPTION 'scenario set "%" does not exist', p_set
            USING ERRCODE = 'WV010',
                  DETAIL = format('set_name is %s.', coalesce(quote_literal(p_set), 'null')),
                  HINT = 'The shipped sets are good, borderline, bad and known_bad; add your own cases with wval_scenario_add().';
    END IF;
    WITH o AS (
        SELECT x ->> 'run_id' AS case_id, x ->> 'status' AS status, x ->> 'recommended_stage' AS stage
        FROM jsonb_array_elements(wval._scenario_outcomes(p_policy, runs, p_stage, p_fail_closed)) x)
    SELECT count(*) FILTER (WHERE o.status = 'pass'), count(*) FILTER (WHERE o.status = 'warn'),
           count(*) FILTER (WHERE o.status = 'fail'),
           coalesce(jsonb_agg(jsonb_build_object('case_id', c.case_id, 'strategy_id', c.strategy_id,
                                                 'expected_status', c.expected_status, 'status', o.status,
                                                 'expected_stage', c.expected_stage, 'recommended_stage', o.stage,
                                                 'note', c.note)
                              ORDER BY c.case_id) FILTER (WHERE o.status <> c.expected_status), '[]')
    INTO npass, nwarn, nfail, off
    FROM o JOIN wval.scenario_cases c ON c.set_name = p_set AND c.case_id = o.case_id;

    pass_ratio := npass::float8 / n;
    fail_ratio := nfail::float8 / n;
    CASE p_set
        WHEN 'good' THEN
            rule := 'every case passes';
            ok := npass = n;
        WHEN 'known_bad' THEN
            rule := 'pass ratio <= 0.05';
            ok := pass_ratio <= 0.05;
        WHEN 'bad' THEN
            rule := 'fail ratio >= 0.5';
            ok := fail_ratio >= 0.5;
        WHEN 'borderline' THEN
            rule := 'mixed: 0 < pass ratio < 1, or every case gets its expected status';
            ok := (npass > 0 AND npass < n) OR jsonb_array_length(off) = 0;
        ELSE
            rule := 'every case gets its expected status';
            ok := jsonb_array_length(off) = 0;
    END CASE;
    RETURN jsonb_build_object('set_name', p_set, 'stage', p_stage, 'cases', n,
                              'pass', npass, 'warn', nwarn, 'fail', nfail,
                              'pass_ratio', pass_ratio, 'warn_ratio', nwarn::float8 / n, 'fail_ratio', fail_ratio,
                              'off_expected', off, 'gate', rule, 'ok', ok);
END
$$;
COMMENT ON FUNCTION wval._scenario_check(jsonb, text, text, boolean) IS 'the scenario regression check of one set under a policy (optionally fail-closed)';

CREATE FUNCTION public.wval_scenario_check(policy jsonb, set_name text, stage text DEFAULT 'backtest')
RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
    SELECT wval._scenario_check(policy, set_name, stage, false);
$$;
COMMENT ON FUNCTION public.wval_scenario_check(jsonb, text, text) IS 'evaluates every case of a scenario set under a policy: {set_name, stage, cases, pass, warn, fail, pass_ratio, warn_ratio, fail_ratio, off_expected (cases that did not get their expected status), gate, ok}; gates: good all pass, known_bad pass ratio <= 5 %, bad fail ratio >= 50 %, borderline mixed, site sets as expected';

CREATE FUNCTION public.wval_scenario_add(set_name text, case_id text, metrics jsonb, expected_status text,
                                         note text DEFAULT NULL)
RETURNS wval.scenario_cases
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    p_set text := wval._ident('set_name', set_name);
    p_case text := wval._ident('case_id', case_id);
    c wval.scenario_cases;
BEGIN
    PERFORM wval._one_of('expected_status', expected_status, ARRAY['pass', 'warn', 'fail']);
    IF metrics IS NULL OR jsonb_typeof(metrics) <> 'object' THEN
        RAISE EXCEPTION '"metrics" must be a JSON object' USING ERRCODE = 'WV001',
            DETAIL = format('metrics is %s.', coalesce(metrics::text, 'null')),
            HINT = 'Pass metric blocks such as {"returns": {"sharpe": 0.4}, "sample": {...}}.';
    END IF;
    PERFORM public.wval_check('{}', metrics);     -- the metric input rules (WV001)
    INSERT INTO wval.scenario_cases AS sc (set_name, case_id, strategy_id, metrics, expected_status, note, shipped, added_by)
    VALUES (p_set, p_case, p_case, metrics, expected_status, note, false, wval._invoker())
    ON CONFLICT ON CONSTRAINT scenario_cases_pkey DO NOTHING
    RETURNING * INTO c;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'scenario case "%" already exists in set "%"', p_case, p_set
            USING ERRCODE = '22023',
                  DETAIL = format('case_id is %L.', p_case),
                  HINT = 'Case ids are unique per set (the shipped cases cannot be replaced); pick another case_id.';
    END IF;
    PERFORM wval._audit(NULL, 'scenario_case_added', wval._invoker(),
                        jsonb_build_object('set_name', p_set, 'case_id', p_case, 'expected_status', expected_status));
    RETURN c;
END
$$;
COMMENT ON FUNCTION public.wval_scenario_add(text, text, jsonb, text, text) IS 'adds a site''s own regression case (metrics in the scenario shape, the status it must get) to a scenario set; shipped cases cannot be replaced; audited';

------------------------------------------------------------------------------
-- The weekly regression (docs/policy-change.md, "The weekly regression")
------------------------------------------------------------------------------

CREATE SEQUENCE wval.regression_reports_id_seq;
CREATE TABLE wval.regression_reports (
    report_id        bigint NOT NULL DEFAULT nextval('wval.regression_reports_id_seq'),
    world_id         text NOT NULL,
    policy_version   integer NOT NULL,
    previous_version integer,
    scenarios        jsonb NOT NULL,
    impact           jsonb,
    breached         boolean NOT NULL,
    breaches         text[] NOT NULL DEFAULT '{}',
    created_by       text NOT NULL DEFAULT wval._invoker(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    chain_seq        bigint NOT NULL,
    prev_hash        text NOT NULL,
    row_hash         text NOT NULL,
    PRIMARY KEY (world_id, report_id)
);
SELECT wval._secure('wval.regression_reports');
ALTER SEQUENCE wval.regression_reports_id_seq OWNED BY wval.regression_reports.report_id;
COMMENT ON TABLE wval.regression_reports IS 'reports of the policy regression (wval_run_regression, weekly job wval:regression): scenario checks of the active policy and the impact of the active version against its predecessor; append-only, hash-chained';
COMMENT ON COLUMN wval.regression_reports.policy_version IS 'the active version that was checked';
COMMENT ON COLUMN wval.regression_reports.previous_version IS 'its predecessor (the version active before its latest activation); null when there is none';
COMMENT ON COLUMN wval.regression_reports.scenarios IS 'set_name -> wval_scenario_check report (stage backtest, the world''s fail-closed rule applied)';
COMMENT ON COLUMN wval.regression_reports.impact IS 'the diff of previous_version -> policy_version over every stage (12 months, latest run per strategy) with the world''s gate threshold; null without a predecessor';
COMMENT ON COLUMN wval.regression_reports.breaches IS 'what failed: scenario:<set> for a scenario gate, impact:<stage> for the impact gate';
COMMENT ON COLUMN wval.regression_reports.report_id IS 'number of the report (sequence wval.regression_reports_id_seq)';
COMMENT ON COLUMN wval.regression_reports.world_id IS 'the world (wval.worlds.world_id)';
COMMENT ON COLUMN wval.regression_reports.breached IS 'true when a scenario gate or the impact gate failed (then impact_threshold_exceeded is emitted)';
COMMENT ON COLUMN wval.regression_reports.created_by IS 'the database role that ran the regression';
COMMENT ON COLUMN wval.regression_reports.created_at IS 'when the regression ran';
COMMENT ON COLUMN wval.regression_reports.chain_seq IS 'position of the row in its world''s hash chain, shared by every chained table of the world (1, 2, 3 ... without gaps; in a world with settings.chain_lanes > 1, lane k counts from k * 2^40 + 1); set by the chain trigger';
COMMENT ON COLUMN wval.regression_reports.prev_hash IS 'row_hash of the previous link of the same world''s chain (in any table; in the same lane); ''sha256:'' and 64 zeros for a world''s first link';
COMMENT ON COLUMN wval.regression_reports.row_hash IS '''sha256:'' || hex of sha256 over prev_hash, table name, chain_seq and the row''s canonical text, newline-separated (docs/store.md); recomputed by wval_verify_chain';
SELECT wval._protect('wval.regression_reports', 'regression_reports');

CREATE FUNCTION public.wval_run_regression(world_id text DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
DECLARE
    w wval.worlds;
    act wval.policy_activations;
    doc jsonb;
    set_name text;
    scen jsonb;
    chk jsonb;
    impact jsonb;
    breaches text[];
    st text;
    prevs jsonb;
    rep wval.regression_reports;
    out jsonb := '[]';
BEGIN
    IF world_id IS NOT NULL THEN
        PERFORM wval._world(world_id);
        PERFORM wval._require_world_access(world_id, 'write');
    END IF;
    -- every world means every world the calling role may write (the reports are written)
    FOR w IN SELECT * FROM wval.worlds x
             WHERE (wval_run_regression.world_id IS NULL OR x.world_id = wval_run_regression.world_id)
               AND wval._world_access((SELECT oid FROM pg_roles WHERE rolname = wval._invoker()), x.world_id, 'write')
             ORDER BY x.world_id
    LOOP
        SELECT * INTO act FROM wval.policy_activations a WHERE a.world_id = w.world_id
        ORDER BY a.activation_id DESC LIMIT 1;
        CONTINUE WHEN NOT FOUND;
        doc := wval._policy_doc(w.world_id, act.version);
        scen := '{}';
        breaches := '{}';
        FOR set_name IN SELECT DISTINCT c.set_name FROM wval.scenario_cases c ORDER BY 1 LOOP
            chk := wval._scenario_check(doc, set_name, 'backtest', wval._fail_closed(w));
            scen := scen || jsonb_build_object(set_name, chk);
            IF NOT (chk ->> 'ok')::boolean THEN
                breaches := breaches || ('scenario:' || set_name);
            END IF;
        END LOOP;
        -- the impact of the latest activation at each of its stages against
        -- the version active there before (still stored)
        SELECT jsonb_object_agg(p.key, p.value) INTO prevs
        FROM jsonb_each(coalesce(act.details -> 'previous_versions',
                                 (SELECT jsonb_object_agg(x, act.previous_version) FROM unnest(wval._stages()) x))) p
        WHERE EXISTS (SELECT 1 FROM wval.policy_versions pv
                      WHERE pv.world_id = w.world_id AND pv.version = (p.value #>> '{}')::integer);
        impact := wval._activation_impact(w, act.version, coalesce(prevs, '{}'));
        IF impact IS NOT NULL THEN
            FOR st IN SELECT s.key FROM jsonb_each(impact -> 'stages') s
                      WHERE (s.value ->> 'impact_ratio')::float8 >= (impact ->> 'fail_impact_ratio')::float8
                      ORDER BY array_position(wval._stages(), s.key) LOOP
                breaches := breaches || ('impact:' || st);
            END LOOP;
        END IF;
        INSERT INTO wval.regression_reports (world_id, policy_version, previous_version, scenarios, impact,
                                             breached, breaches)
        VALUES (w.world_id, act.version, act.previous_version, scen, impact, cardinality(breaches) > 0, breaches)
        RETURNING * INTO rep;
        IF rep.breached THEN
            PERFORM wval._impact_event(w.world_id,
                                       jsonb_build_object('world_id', w.world_id, 'source', 'regression',
                                                          'report_id', rep.report_id, 'breaches', to_jsonb(breaches),
                                                          'old_policy_version', act.previous_version,
                                                          'new_policy_version', act.version,
                                                          'impact_ratio', impact -> 'impact_ratio',
                                                          'fail_impact_ratio', coalesce(impact -> 'fail_impact_ratio',
                                                                                        to_jsonb(wval._impact_threshold(w)))),
                                       'regression-' || rep.report_id);
        END IF;
        out := out || jsonb_build_object('world_id', w.world_id, 'report_id', rep.report_id,
                                         'policy_version', rep.policy_version, 'previous_version', rep.previous_version,
                                         'breached', rep.breached, 'breaches', to_jsonb(rep.breaches));
    END LOOP;
    RETURN out;
END
$$;
COMMENT ON FUNCTION public.wval_run_regression(text) IS 'the policy regression of one world (null: every world with an active policy): scenario checks of the active policy and the impact of the active version against its predecessor, stored in wval.regression_reports; a breach emits impact_threshold_exceeded; returns [{world_id, report_id, policy_version, previous_version, breached, breaches}]';

CREATE FUNCTION public.wval_schedule_regression(schedule text DEFAULT '0 6 * * 1') RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, wval, pg_temp AS $$
BEGIN
    RETURN wval._cron_schedule('regression', schedule, 'SELECT public.wval_run_regression()');
END
$$;
COMMENT ON FUNCTION public.wval_schedule_regression(text) IS 'schedules (or reschedules) the pg_cron job wval:regression (default Mondays 06:00) that runs wval_run_regression(); WV010 with set-up instructions when pg_cron is missing';

SELECT pg_catalog.pg_extension_config_dump('wval.regression_reports', '');
SELECT pg_catalog.pg_extension_config_dump('wval.regression_reports_id_seq', '');

GRANT SELECT ON wval.regression_reports TO wval_analyst;
GRANT EXECUTE ON FUNCTION public.wval_scenario_check(jsonb, text, text) TO wval_analyst;
GRANT EXECUTE ON FUNCTION public.wval_scenario_add(text, text, jsonb, text, text),
      public.wval_run_regression(text)
   TO wval_validator;
GRANT EXECUTE ON FUNCTION public.wval_schedule_regression(text) TO wval_admin;
