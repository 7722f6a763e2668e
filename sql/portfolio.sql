--
-- portfolio: the extended layers of hub.md — the portfolio layer
-- (incremental VaR/ES, Sharpe uplift) and the stress layer against the
-- latest fresh risk snapshot, the internal bus consumer and the synchronous
-- setting, and the cohort (campaign) layer.
--
-- Expected numbers were computed independently with Python
-- (statistics.NormalDist, covariance, variance, stdev); the comments give
-- the inputs and the results.  z = 2.3263478740408408, phi(z)/0.01 =
-- 2.665214220345808.
--
SET client_min_messages = warning;

-- try(sql): runs a statement, returns 'ok' or 'SQLSTATE: message' (run ids
-- shown as <run>)
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, '[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}', '<run>', 'g');
END
$$;

-- snap(version, extra): a snapshot as of now (ttl one hour), weights a 0.6 / b 0.4
CREATE FUNCTION pg_temp.snap(v text, extra jsonb DEFAULT '{}') RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object(
        'as_of', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'version', v, 'ttl_sec', 3600,
        'weights', jsonb_build_object('a', 0.6, 'b', 0.4)) || extra;
$$;

-- n(x, digits): a jsonb number rounded for display
CREATE FUNCTION pg_temp.n(x jsonb, d integer DEFAULT 10) RETURNS numeric LANGUAGE sql AS $$
    SELECT round((x #>> '{}')::numeric, d);
$$;

-- the candidate runs, by name
CREATE TEMP TABLE cand (name text PRIMARY KEY, run_id uuid);
-- the portfolio runs, by name
CREATE TEMP TABLE pr (name text PRIMARY KEY, r wval.evaluation_runs);

SELECT world_id FROM wval_world_upsert('pf_w');
SELECT actor FROM wval_producer_register('pf_w', 'risk');
-- the profiles' own checks are not what this file is about; the portfolio
-- and stress blocks are top-level (every profile without its own), the
-- paper profile has its own portfolio block
SELECT wval_policy_publish('pf_w', '{
    "validation_profiles": {
        "backtest": {"performance": {"sharpe_min": 0}},
        "paper": {"performance": {"sharpe_min": 0}, "portfolio": {"max_incremental_var_99": 0.5}}},
    "default_profile_by_stage": {"backtest_only": "backtest", "paper_only": "paper"},
    "portfolio": {"max_incremental_var_99": 0, "max_incremental_es_99": {"max": 0, "mode": "warn"},
                  "min_portfolio_sharpe_uplift": 0},
    "stress": {"scenarios": {"crash": {"dd_max": {"max": 0.3, "severity": "blocking"}},
                             "rates": {"var_99": 0.1}}}}', 'alice') AS version;
SELECT version FROM wval_policy_activate('pf_w', 1, 'bob', 'portfolio tests');

INSERT INTO cand
SELECT s, (wval_evaluate('pf_w', s, 'backtest', NULL, '{"returns": {"sharpe": 1.0}}')).run_id
FROM unnest(ARRAY['c', 'd', 'e', 'f', 'g']) s;
INSERT INTO cand VALUES ('c_paper', (wval_evaluate('pf_w', 'c', 'paper', NULL, '{"returns": {"sharpe": 1.0}}')).run_id);

------------------------------------------------------------------------------
-- No snapshot yet: WV010 (as wval_portfolio_risk)
------------------------------------------------------------------------------
SELECT pg_temp.try(format('SELECT wval_evaluate_portfolio(%L, %L)', 'pf_w', (SELECT run_id FROM cand WHERE name = 'c'))) AS no_snapshot;

------------------------------------------------------------------------------
-- A diversifying and a concentrating candidate, weights and covariances
-- from the snapshot (candidate_weight 0.2)
--   baseline w = (0.6, 0.4), C_aa 0.04, C_bb 0.09, C_ab 0.006:
--     sigma 0.177988763690, VaR 0.414063782014, ES 0.474378184049
--   c: C_cc 0.04, C_ca -0.02, C_cb -0.03:
--     sigma_with^2 = 0.64*0.03168 + 0.32*(-0.024) + 0.04*0.04 = 0.0141952,
--     sigma 0.119143610823, incremental VaR -0.136894296270, ES -0.156834938220
--   d: C_dd 0.09, C_da 0.05, C_db 0.08: sigma_with^2 0.0437152,
--     sigma 0.209081802173, incremental VaR 0.072333223972, ES 0.082869608318
------------------------------------------------------------------------------
SELECT version FROM wval_snapshot_publish('pf_w', pg_temp.snap('s1', '{
    "covariance": {"a,a": 0.04, "b,b": 0.09, "a,b": 0.006, "c,c": 0.04, "c,a": -0.02, "b:c": -0.03,
                   "d,d": 0.09, "d,a": 0.05, "d,b": 0.08},
    "constraints": {"candidate_weight": 0.2},
    "stress": {"crash": {"max_drawdown": -0.25, "c": {"max_drawdown": -0.45, "es_99": 0.2}},
               "rates": {"a": {"var_99": 0.05}}}}'), 'risk', 'paper');

INSERT INTO pr SELECT 'c', wval_evaluate_portfolio('pf_w', (SELECT run_id FROM cand WHERE name = 'c'));
INSERT INTO pr SELECT 'd', wval_evaluate_portfolio('pf_w', (SELECT run_id FROM cand WHERE name = 'd'));

SELECT name, (r).kind, (r).stage, (r).strategy_id, (r).linked_run_id = c.run_id AS linked_to_candidate,
       (r).profile, (r).policy_version, (r).recommended_stage,
       (r).ruleset_hash = wval_ruleset('pf_w', 'backtest')->>'ruleset_hash' AS ruleset_hash_of_profile,
       (r).data_snapshot #>> '{risk_snapshot,version}' AS snapshot_version,
       (r).data_snapshot #>> '{risk_snapshot,hash}' = (SELECT hash FROM wval.risk_snapshots WHERE world_id = 'pf_w' AND version = 's1') AS snapshot_hash
FROM pr JOIN cand c USING (name) ORDER BY name;

SELECT name, pg_temp.n((r).metrics #> '{portfolio,baseline_sigma}', 12) AS base_sigma,
       pg_temp.n((r).metrics #> '{portfolio,baseline_var_99}', 12) AS base_var,
       pg_temp.n((r).metrics #> '{portfolio,baseline_es_99}', 12) AS base_es,
       pg_temp.n((r).metrics #> '{portfolio,sigma}', 12) AS sigma,
       pg_temp.n((r).metrics #> '{risk,incremental_var_99}', 12) AS incr_var,
       pg_temp.n((r).metrics #> '{risk,incremental_es_99}', 12) AS incr_es,
       (r).metrics #> '{portfolio,candidate_weight}' AS alpha,
       (r).metrics #>> '{diagnostics,candidate_weight_source}' AS alpha_source,
       (r).metrics #> '{diagnostics,candidate_pairs}' AS pairs
FROM pr WHERE name IN ('c', 'd') ORDER BY name;

-- the portfolio checks: negative = diversifies; the ES check is in mode warn;
-- no returns anywhere, so the Sharpe uplift is a missing metric
SELECT name, e.key, e.value ->> 'status' AS status, e.value ->> 'severity' AS severity,
       e.value ->> 'reason_code' AS reason_code, e.value #> '{details,would_fail}' AS would_fail
FROM pr, jsonb_each((r).results) e WHERE name IN ('c', 'd') AND e.key LIKE 'portfolio.%' ORDER BY name, e.key;

------------------------------------------------------------------------------
-- Stress from the snapshot: c has its own crash entry (|-0.45| > 0.3,
-- blocking: the run fails); d takes the portfolio-wide crash measures
-- (0.25 passes); "rates" has no entry for either: a missing metric
-- (on_missing_metric fail, severity info)
------------------------------------------------------------------------------
SELECT name, (r).status, (r).metrics -> 'stress' AS stress, (r).metrics #> '{diagnostics,stress_source}' AS source
FROM pr WHERE name IN ('c', 'd') ORDER BY name;
SELECT name, e.key, e.value ->> 'status' AS status, e.value ->> 'severity' AS severity,
       e.value ->> 'reason_code' AS reason_code, e.value #> '{details,value}' AS value
FROM pr, jsonb_each((r).results) e WHERE name IN ('c', 'd') AND e.key LIKE 'stress.%' ORDER BY name, e.key;

-- the caller's scenario results replace the snapshot's (and name another key)
INSERT INTO pr SELECT 'c_caller', wval_evaluate_portfolio('pf_w', (SELECT run_id FROM cand WHERE name = 'c'),
    stress => '{"crash": {"max_drawdown": -0.2}, "rates": {"var_99": 0.12}}');
SELECT (r).status, (r).metrics -> 'stress' AS stress, (r).metrics #> '{diagnostics,stress_source}' AS source,
       (r).results #>> '{stress.crash.dd_max,status}' AS crash, (r).results #>> '{stress.rates.var_99,reason_code}' AS rates,
       (r).context ->> 'stress_supplied' AS stress_supplied, (r).run_id <> (SELECT (r).run_id FROM pr WHERE name = 'c') AS new_run
FROM pr WHERE name = 'c_caller';

-- a paper candidate uses the paper profile: its own portfolio block (0.5), top-level stress
INSERT INTO pr SELECT 'c_paper', wval_evaluate_portfolio('pf_w', (SELECT run_id FROM cand WHERE name = 'c_paper'));
SELECT (r).stage, (r).profile, (r).ruleset_hash = wval_ruleset('pf_w', 'paper')->>'ruleset_hash' AS paper_hash,
       ARRAY(SELECT jsonb_object_keys((r).results) ORDER BY 1) AS checks,
       (r).results #> '{portfolio.max_incremental_var_99,details,threshold}' AS threshold
FROM pr WHERE name = 'c_paper';

-- rule rows mirror the results; the runs are chained and append-only
SELECT name, count(*) AS rule_rows,
       bool_and(rr.details = (p.r).results -> rr.rule -> 'details' AND rr.status = (p.r).results -> rr.rule ->> 'status') AS same,
       array_agg(DISTINCT rr.layer ORDER BY rr.layer) AS layers
FROM pr p JOIN wval.rule_results rr ON rr.run_id = (p.r).run_id
WHERE name IN ('c', 'd') GROUP BY name ORDER BY name;
SELECT pg_temp.try(format('UPDATE wval.evaluation_runs SET status = %L WHERE run_id = %L', 'pass',
                          (SELECT (r).run_id FROM pr WHERE name = 'c'))) AS update_run;

------------------------------------------------------------------------------
-- Events: evaluation_run_created for the portfolio run,
-- evaluation_run_updated (extended_validation) for the candidate
------------------------------------------------------------------------------
SELECT e.type, e.subject = c.name AS subject_is_strategy, e.subject = c.run_id::text AS subject_is_candidate,
       e.payload #>> '{data,kind}' AS kind, e.payload #>> '{data,change_type}' AS change_type,
       e.payload #>> '{data,status}' AS status, e.payload #>> '{data,snapshot_version}' AS snapshot,
       coalesce(e.payload #>> '{data,run_id}', '') IN (c.run_id::text, (p.r).run_id::text) AS run_id_ok,
       coalesce(e.payload #>> '{data,extended_run_id}', e.payload #>> '{data,run_id}') = (p.r).run_id::text AS points_to_portfolio_run
FROM pr p JOIN cand c USING (name)
JOIN wval.events e ON e.world_id = 'pf_w' AND (e.payload #>> '{data,run_id}' = (p.r).run_id::text
                                               OR e.payload #>> '{data,extended_run_id}' = (p.r).run_id::text)
WHERE p.name = 'c' ORDER BY e.event_id;

------------------------------------------------------------------------------
-- Idempotency: the same candidate, snapshot, policy version and inputs
-- return the stored run without writing or emitting anything
------------------------------------------------------------------------------
CREATE TEMP TABLE counts AS
SELECT (SELECT count(*) FROM wval.evaluation_runs WHERE world_id = 'pf_w') AS runs,
       (SELECT count(*) FROM wval.events WHERE world_id = 'pf_w') AS events;
SELECT (wval_evaluate_portfolio('pf_w', (SELECT run_id FROM cand WHERE name = 'c'))).run_id = (SELECT (r).run_id FROM pr WHERE name = 'c') AS same_run,
       (wval_evaluate_portfolio('pf_w', (SELECT run_id FROM cand WHERE name = 'c'),
            stress => '{"crash": {"max_drawdown": -0.2}, "rates": {"var_99": 0.12}}')).run_id = (SELECT (r).run_id FROM pr WHERE name = 'c_caller') AS same_caller_run;
SELECT (SELECT count(*) FROM wval.evaluation_runs WHERE world_id = 'pf_w') - runs AS new_runs,
       (SELECT count(*) FROM wval.events WHERE world_id = 'pf_w') - events AS new_events
FROM counts;
SELECT (r).client_run_id = format('portfolio:%s:s1:v1:rho0.5', c.run_id) AS key_format
FROM pr JOIN cand c USING (name) WHERE name = 'c';

------------------------------------------------------------------------------
-- The correlation fill and alpha = 1/(k+1) (no candidate_weight)
--   C_ab missing -> 0.5*sqrt(0.04*0.09) = 0.03: baseline sigma^2 0.0432,
--     sigma 0.207846096908, VaR 0.483522325670, ES 0.553954373123
--   e: only C_ee 0.01 -> C_ea 0.01, C_eb 0.015 filled; alpha 1/3:
--     sigma_with^2 0.025644444444, sigma 0.160138828660,
--     incremental VaR -0.110983702067, ES -0.127150089750
------------------------------------------------------------------------------
SELECT version FROM wval_snapshot_publish('pf_w', pg_temp.snap('s2', '{
    "covariance": {"a,a": 0.04, "b,b": 0.09, "e,e": 0.01}}'), 'risk', 'paper');
INSERT INTO pr SELECT 'e', wval_evaluate_portfolio('pf_w', (SELECT run_id FROM cand WHERE name = 'e'));
SELECT pg_temp.n((r).metrics #> '{portfolio,baseline_sigma}', 12) AS base_sigma,
       pg_temp.n((r).metrics #> '{portfolio,baseline_var_99}', 12) AS base_var,
       pg_temp.n((r).metrics #> '{portfolio,baseline_es_99}', 12) AS base_es,
       (r).metrics #> '{portfolio,filled_pairs}' AS base_filled,
       pg_temp.n((r).metrics #> '{portfolio,sigma}', 12) AS sigma,
       pg_temp.n((r).metrics #> '{risk,incremental_var_99}', 12) AS incr_var,
       pg_temp.n((r).metrics #> '{risk,incremental_es_99}', 12) AS incr_es,
       pg_temp.n((r).metrics #> '{portfolio,candidate_weight}', 12) AS alpha,
       (r).metrics #>> '{diagnostics,candidate_weight_source}' AS alpha_source,
       (r).metrics #> '{diagnostics,candidate_pairs}' AS pairs
FROM pr WHERE name = 'e';
-- the fill correlation is the hub's setting (and part of the idempotency
-- key): with 0, sigma^2 = 0.6^2*0.04 + 0.4^2*0.09 = 0.0288, sigma
-- 0.169705627485; e's pairs are 0 too: sigma_with^2 = (4/9)*0.0288 +
-- (1/9)*0.01 = 0.0139111..., sigma 0.117945373420
SET wval.missing_correlation = 0;
SELECT pg_temp.n((r).metrics #> '{portfolio,baseline_sigma}', 12) AS base_sigma_rho_0,
       pg_temp.n((r).metrics #> '{portfolio,sigma}', 12) AS sigma_rho_0,
       (r).metrics #> '{diagnostics,missing_correlation}' AS rho,
       (r).run_id <> (SELECT (r).run_id FROM pr WHERE name = 'e') AS new_run
FROM (SELECT wval_evaluate_portfolio('pf_w', (SELECT run_id FROM cand WHERE name = 'e')) AS r) x;
RESET wval.missing_correlation;
-- a candidate the snapshot knows nothing about, without returns: no variance,
-- so the incremental measures are missing metrics (the checks fail)
SELECT (x.r).status, (x.r).metrics -> 'risk' AS risk, (x.r).metrics #>> '{diagnostics,note}' AS note,
       (x.r).results #>> '{portfolio.max_incremental_var_99,reason_code}' AS var_check
FROM (SELECT wval_evaluate_portfolio('pf_w', (SELECT run_id FROM cand WHERE name = 'g')) AS r) x;

------------------------------------------------------------------------------
-- Everything from realized returns, the candidate's returns as argument
-- (series aligned at their ends):
--   a = [0.01, 0.02, -0.01, 0.03, 0.0, 0.01]
--   b = [0.0, 0.01, 0.02, -0.01, 0.005, 0.0, 0.004]
--   f = [0.02, -0.01, 0.015, 0.0, 0.01] (argument), alpha 1/3
--   baseline sigma 0.011571064074; C_ff 0.000145, C_fa 0.000175, C_fb 0.0001205
--   sigma_with 0.011987762720, incremental VaR 0.000969386008, ES 0.001110591156
--   Sharpe (252 periods) over the last 5 points: baseline 9.189537337262,
--   with f 9.243104471039, uplift 0.053567133777
------------------------------------------------------------------------------
SELECT version FROM wval_snapshot_publish('pf_w', pg_temp.snap('s3', '{
    "realized_returns": {"a": [0.01, 0.02, -0.01, 0.03, 0.0, 0.01],
                         "b": [0.0, 0.01, 0.02, -0.01, 0.005, 0.0, 0.004]}}'), 'risk', 'paper');
INSERT INTO pr SELECT 'f', wval_evaluate_portfolio('pf_w', (SELECT run_id FROM cand WHERE name = 'f'),
                                                   returns => '{0.02, -0.01, 0.015, 0.0, 0.01}');
SELECT pg_temp.n((r).metrics #> '{portfolio,baseline_sigma}', 12) AS base_sigma,
       pg_temp.n((r).metrics #> '{portfolio,candidate_variance}', 12) AS c_ff,
       pg_temp.n((r).metrics #> '{portfolio,sigma}', 12) AS sigma,
       pg_temp.n((r).metrics #> '{risk,incremental_var_99}', 12) AS incr_var,
       pg_temp.n((r).metrics #> '{risk,incremental_es_99}', 12) AS incr_es,
       (r).metrics #> '{diagnostics,candidate_pairs}' AS pairs,
       (r).metrics #>> '{diagnostics,candidate_variance_source}' AS var_source,
       (r).metrics #>> '{diagnostics,covariance_source}' AS cov_source
FROM pr WHERE name = 'f';
SELECT pg_temp.n((r).metrics #> '{portfolio,baseline_sharpe}', 12) AS base_sharpe,
       pg_temp.n((r).metrics #> '{portfolio,sharpe}', 12) AS sharpe,
       pg_temp.n((r).metrics #> '{portfolio,sharpe_uplift}', 12) AS uplift,
       (r).metrics #> '{portfolio,return_points}' AS points,
       (r).results #>> '{portfolio.min_portfolio_sharpe_uplift,status}' AS uplift_check,
       (r).metrics #>> '{diagnostics,candidate_returns_source}' AS returns_source,
       (r).returns_hash = 'sha256:' || encode(sha256((SELECT string_agg(float8send(x), ''::bytea ORDER BY o)
                                        FROM unnest('{0.02, -0.01, 0.015, 0.0, 0.01}'::float8[]) WITH ORDINALITY u(x, o))), 'hex') AS returns_hash
FROM pr WHERE name = 'f';

-- a deployed strategy (weighted in the snapshot) is measured by what its
-- position adds: a against the portfolio without it (b alone, sigma
-- 0.009317162863), with it the snapshot's portfolio; alpha = its weight;
-- its returns come from the snapshot.  incremental VaR 0.005243358292,
-- ES 0.006007129560; Sharpe over 6 points: b 7.666292884375, with a
-- 10.798015457301, uplift 3.131722572926
INSERT INTO cand VALUES ('a', (wval_evaluate('pf_w', 'a', 'backtest', NULL, '{"returns": {"sharpe": 1.0}}')).run_id);
INSERT INTO pr SELECT 'a', wval_evaluate_portfolio('pf_w', (SELECT run_id FROM cand WHERE name = 'a'));
SELECT pg_temp.n((r).metrics #> '{portfolio,baseline_sigma}', 12) AS base_sigma,
       pg_temp.n((r).metrics #> '{portfolio,sigma}', 12) AS sigma,
       pg_temp.n((r).metrics #> '{risk,incremental_var_99}', 12) AS incr_var,
       pg_temp.n((r).metrics #> '{risk,incremental_es_99}', 12) AS incr_es,
       (r).metrics #> '{portfolio,candidate_weight}' AS alpha,
       (r).metrics #> '{portfolio,n_strategies}' AS n_base,
       (r).metrics #>> '{diagnostics,candidate_weight_source}' AS alpha_source,
       (r).metrics #> '{diagnostics,candidate_in_snapshot}' AS member,
       pg_temp.n((r).metrics #> '{portfolio,baseline_sharpe}', 12) AS base_sharpe,
       pg_temp.n((r).metrics #> '{portfolio,sharpe}', 12) AS sharpe,
       pg_temp.n((r).metrics #> '{portfolio,sharpe_uplift}', 12) AS uplift,
       (r).metrics #>> '{diagnostics,candidate_returns_source}' AS returns_source
FROM pr WHERE name = 'a';

------------------------------------------------------------------------------
-- Offloaded parts (world setting offload_threshold 0): the covariance and
-- the stress are read back from their blobs
------------------------------------------------------------------------------
SELECT world_id FROM wval_world_upsert('pf_blob', settings => '{"offload_threshold": 0}');
SELECT actor FROM wval_producer_register('pf_blob', 'risk');
SELECT wval_policy_publish('pf_blob', (SELECT policy FROM wval.policy_versions WHERE world_id = 'pf_w'), 'alice') AS version;
SELECT version FROM wval_policy_activate('pf_blob', 1, 'bob', 'same policy');
SELECT version, payload ? 'covariance_ref' AS cov_offloaded, payload ? 'stress_ref' AS stress_offloaded
FROM wval_snapshot_publish('pf_blob', pg_temp.snap('b1', '{
    "covariance": {"a,a": 0.04, "b,b": 0.09, "a,b": 0.006, "c,c": 0.04, "c,a": -0.02, "c,b": -0.03},
    "constraints": {"candidate_weight": 0.2},
    "stress": {"crash": {"c": {"max_drawdown": -0.1}}, "rates": {"var_99": 0.02}}}'), 'risk', 'paper');
SELECT pg_temp.n((x.r).metrics #> '{risk,incremental_var_99}', 12) AS incr_var, (x.r).status,
       (x.r).metrics -> 'stress' AS stress, (x.r).metrics #>> '{diagnostics,covariance_source}' AS cov_source
FROM (SELECT wval_evaluate_portfolio('pf_blob', (wval_evaluate('pf_blob', 'c', 'backtest', NULL, '{}')).run_id) AS r) x;

------------------------------------------------------------------------------
-- Errors
------------------------------------------------------------------------------
SELECT pg_temp.try($$SELECT wval_evaluate_portfolio('pf_w', '00000000-0000-0000-0000-000000000000')$$) AS unknown_run;
SELECT pg_temp.try(format('SELECT wval_evaluate_portfolio(%L, %L)', 'pf_blob', (SELECT run_id FROM cand WHERE name = 'c'))) AS run_of_another_world;
SELECT pg_temp.try(format('SELECT wval_evaluate_portfolio(%L, %L)', 'pf_nowhere', (SELECT run_id FROM cand WHERE name = 'c'))) AS unknown_world;
SELECT pg_temp.try(format('SELECT wval_evaluate_portfolio(%L, %L)', 'pf_w', (SELECT (r).run_id FROM pr WHERE name = 'c'))) AS portfolio_run_as_candidate;
SELECT pg_temp.try(format('SELECT wval_evaluate_portfolio(%L, %L, returns => %L)', 'pf_w', (SELECT run_id FROM cand WHERE name = 'f'), '{0.01, NaN}')) AS nan_return;
SELECT pg_temp.try(format('SELECT wval_evaluate_portfolio(%L, %L, stress => %L)', 'pf_w', (SELECT run_id FROM cand WHERE name = 'f'), '{"crash": {"max_drawdown": "deep"}}')) AS stress_string;
SELECT pg_temp.try(format('SELECT wval_evaluate_portfolio(%L, %L, stress => %L)', 'pf_w', (SELECT run_id FROM cand WHERE name = 'f'), '[1]')) AS stress_array;
SELECT pg_temp.try(format('SELECT wval_evaluate_portfolio(%L, %L, snapshot_stage => %L)', 'pf_w', (SELECT run_id FROM cand WHERE name = 'f'), 'prod')) AS bad_stage;
SELECT pg_temp.try(format('SELECT wval_evaluate_portfolio(%L, %L, snapshot_stage => %L)', 'pf_w', (SELECT run_id FROM cand WHERE name = 'f'), 'live')) AS no_live_snapshot;
SELECT pg_temp.try($$SELECT wval_evaluate_portfolio(NULL, NULL)$$) AS null_world;
-- only a stale snapshot: WV005
SELECT version FROM wval_snapshot_publish('pf_w', pg_temp.snap('old', jsonb_build_object(
    'as_of', to_char((now() - interval '1 hour') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), 'ttl_sec', 86400,
    'covariance', '{"a,a": 0.04, "b,b": 0.09}'::jsonb)), 'risk', 'backtest');
SELECT pg_temp.try(format('SELECT wval_evaluate_portfolio(%L, %L, snapshot_stage => %L)', 'pf_w', (SELECT run_id FROM cand WHERE name = 'f'), 'backtest')) AS stale;
-- no active policy: WV010, nothing recorded
SELECT world_id FROM wval_world_upsert('pf_nopol');
SELECT actor FROM wval_producer_register('pf_nopol', 'risk');
SELECT version FROM wval_snapshot_publish('pf_nopol', pg_temp.snap('n1', '{"covariance": {"a,a": 0.04, "b,b": 0.09}}'), 'risk', 'paper');
SELECT pg_temp.try(format('SELECT wval_evaluate_portfolio(%L, %L)', 'pf_nopol',
    (SELECT run_id FROM wval_record_run('pf_nopol', 'a', 'backtest', '{}', 'dba', 'no policy yet')))) AS no_policy;

------------------------------------------------------------------------------
-- The internal consumer: risk_snapshot_updated -> wval:hub -> CALL wval_work
-- -> a portfolio run per deployed strategy (wval.current_stage in a world
-- with stage decisions, else the strategies weighted in the snapshot)
------------------------------------------------------------------------------
SELECT group_name, type, handler FROM wval.internal_handlers WHERE group_name = 'wval:hub';
SELECT world_id FROM wval_world_upsert('pf_bus');
SELECT actor FROM wval_producer_register('pf_bus', 'risk');
SELECT wval_policy_publish('pf_bus', '{"validation_profiles": {"backtest": {"portfolio": {"max_incremental_var_99": 0}}},
    "default_profile_by_stage": {"backtest_only": "backtest"}}', 'alice') AS version;
SELECT version FROM wval_policy_activate('pf_bus', 1, 'bob', 'bus tests');
SELECT count(*) AS runs FROM (SELECT wval_evaluate('pf_bus', s, 'backtest', NULL, '{}') FROM unnest(ARRAY['a', 'b', 'x']) s) x;
-- two snapshots: the first is superseded by the time the consumer runs
SELECT version FROM wval_snapshot_publish('pf_bus', pg_temp.snap('v1', '{"covariance": {"a,a": 0.04, "b,b": 0.09, "a,b": 0.006}}'), 'risk', 'live');
SELECT version FROM wval_snapshot_publish('pf_bus', pg_temp.snap('v2', '{"covariance": {"a,a": 0.04, "b,b": 0.09, "a,b": 0.006}}'), 'risk', 'live');
SELECT count(*) AS waiting FROM wval.deliveries WHERE group_name = 'wval:hub' AND world_key = 'pf_bus' AND done_at IS NULL;
SELECT count(*) AS portfolio_runs_before FROM wval.evaluation_runs WHERE world_id = 'pf_bus' AND kind = 'portfolio';
CALL wval_work(1000, 30000);
SELECT d.outcome, e.subject AS snapshot, d.errors FROM wval.deliveries d JOIN wval.events e USING (event_id)
WHERE d.group_name = 'wval:hub' AND d.world_key = 'pf_bus' ORDER BY d.event_id;
-- a and b (weighted) get a run against v2; x (not deployed) none
SELECT r.strategy_id, r.kind, r.status, r.data_snapshot #>> '{risk_snapshot,version}' AS snapshot,
       r.linked_run_id = (SELECT l.run_id FROM wval.latest_runs l WHERE l.world_id = 'pf_bus' AND l.strategy_id = r.strategy_id AND l.stage = 'backtest') AS linked_to_latest,
       pg_temp.n(r.metrics #> '{risk,incremental_var_99}', 12) AS incr_var,
       r.metrics #> '{portfolio,candidate_weight}' AS alpha
FROM wval.evaluation_runs r WHERE r.world_id = 'pf_bus' AND r.kind = 'portfolio' ORDER BY r.strategy_id;
-- a second pass finds nothing to do
CALL wval_work(1000, 30000);
SELECT count(*) AS portfolio_runs_after FROM wval.evaluation_runs WHERE world_id = 'pf_bus' AND kind = 'portfolio';

------------------------------------------------------------------------------
-- The synchronous setting: the portfolio runs are written by the
-- publishing transaction; what fails there (no active policy yet) is left
-- to the consumer, and the snapshot is stored all the same
------------------------------------------------------------------------------
SELECT world_id, settings FROM wval_world_upsert('pf_sync', settings => '{"extended_validation": "sync"}');
SELECT actor FROM wval_producer_register('pf_sync', 'risk');
SELECT count(*) AS runs FROM (SELECT wval_record_run('pf_sync', s, 'backtest', '{}', 'dba', 'no policy yet') FROM unnest(ARRAY['a', 'b']) s) x;
SET client_min_messages = error;	-- the WARNINGs name random run ids
SELECT version FROM wval_snapshot_publish('pf_sync', pg_temp.snap('y1', '{"covariance": {"a,a": 0.04, "b,b": 0.09, "a,b": 0.006}}'), 'risk', 'paper');
SET client_min_messages = warning;
SELECT count(*) AS portfolio_runs_without_policy FROM wval.evaluation_runs WHERE world_id = 'pf_sync' AND kind = 'portfolio';
SELECT wval_policy_publish('pf_sync', '{"portfolio": {"max_incremental_var_99": 1}, "validation_profiles": {"backtest": {}}}', 'alice') AS version;
SELECT version FROM wval_policy_activate('pf_sync', 1, 'bob', 'sync tests');
-- the consumer does what the publish could not
CALL wval_work(1000, 30000);
SELECT strategy_id, status, data_snapshot #>> '{risk_snapshot,version}' AS snapshot
FROM wval.evaluation_runs WHERE world_id = 'pf_sync' AND kind = 'portfolio' ORDER BY strategy_id;
-- with a policy, the publish itself writes them: visible inside its transaction
BEGIN;
SELECT version FROM wval_snapshot_publish('pf_sync', pg_temp.snap('y2', '{"covariance": {"a,a": 0.04, "b,b": 0.09}}'), 'risk', 'paper');
SELECT strategy_id, status, data_snapshot #>> '{risk_snapshot,version}' AS snapshot
FROM wval.evaluation_runs WHERE world_id = 'pf_sync' AND kind = 'portfolio' AND created_at = now() ORDER BY strategy_id;
COMMIT;
-- the consumer then finds them done (idempotent) and writes nothing
CALL wval_work(1000, 30000);
SELECT count(*) AS portfolio_runs, count(DISTINCT client_run_id) AS keys
FROM wval.evaluation_runs WHERE world_id = 'pf_sync' AND kind = 'portfolio';
SELECT d.outcome, e.subject AS snapshot FROM wval.deliveries d JOIN wval.events e USING (event_id)
WHERE d.group_name = 'wval:hub' AND d.world_key = 'pf_sync' ORDER BY d.event_id;

------------------------------------------------------------------------------
-- Cohort (campaign) layer
--   Sharpe 1.0, 4.0, 0.2, 0.3, -: median of 4 = (0.3 + 1.0) / 2 = 0.65
--   DSR 0.5, 0.5, 0.5, 0.1, -: median of 4 = 0.5; ranks by DSR with ties
--   in input order: k1 1, k2 2, k3 3, k4 4; k5 has no DSR (missing)
--   max Sharpe 4.0 > alarm 3: every candidate warns
------------------------------------------------------------------------------
SELECT world_id FROM wval_world_upsert('pf_cohort');
SELECT wval_policy_publish('pf_cohort', '{"validation_profiles": {"backtest": {"performance": {"sharpe_min": 0}}},
    "default_profile_by_stage": {"backtest_only": "backtest"},
    "cohort": {"sharpe_median_min": 0.5, "dsr_median_min": 0.6, "top_k": 2, "sharpe_alarm": 3}}', 'alice') AS version;
SELECT version FROM wval_policy_activate('pf_cohort', 1, 'bob', 'cohort tests');
CREATE TEMP TABLE co AS
SELECT * FROM wval_evaluate_cohort('pf_cohort', 'camp-1', 'backtest', '[
    {"strategy_id": "k1", "metrics": {"returns": {"sharpe": 1.0}, "robustness": {"deflated_sharpe_ratio": 0.5}}, "context": {"run_id": "k1-1"}},
    {"strategy_id": "k2", "metrics": {"returns": {"sharpe": 4.0}, "robustness": {"deflated_sharpe_ratio": 0.5}}, "context": {"run_id": "k2-1"}},
    {"strategy_id": "k3", "metrics": {"returns": {"sharpe": 0.2}, "robustness": {"deflated_sharpe_ratio": 0.5}}, "context": {"run_id": "k3-1"}},
    {"strategy_id": "k4", "metrics": {"returns": {"sharpe": 0.3}, "robustness": {"deflated_sharpe_ratio": 0.1}}, "context": {"run_id": "k4-1"}},
    {"strategy_id": "k5", "metrics": {"returns": {"sharpe": null}}, "context": {"run_id": "k5-1"}}]');
SELECT strategy_id, kind, stage, status, campaign_id, profile, policy_version,
       ruleset_hash = wval._apply_rules((SELECT policy FROM wval.policy_versions WHERE world_id = 'pf_cohort'), 'cohort', '{}')->>'ruleset_hash' AS cohort_hash,
       metrics -> 'cohort' AS cohort
FROM co ORDER BY context ->> 'cohort_position';
SELECT co.strategy_id, e.key, e.value ->> 'status' AS status, e.value ->> 'severity' AS severity,
       e.value ->> 'reason_code' AS reason_code, e.value #> '{details,would_fail}' AS would_fail
FROM co, jsonb_each(co.results) e ORDER BY co.strategy_id, e.key;
-- each candidate got its normal run, with the campaign, linked from its cohort run
SELECT c.strategy_id, s.kind, s.campaign_id, s.client_run_id, s.stage
FROM co c JOIN wval.evaluation_runs s ON s.run_id = c.linked_run_id ORDER BY c.strategy_id;
SELECT type, count(*) AS events, count(*) FILTER (WHERE payload #>> '{data,kind}' = 'cohort') AS cohort_kind
FROM wval.events WHERE world_id = 'pf_cohort' AND type = 'evaluation_run_created' GROUP BY type;
SELECT count(*) AS rule_rows FROM wval.rule_results WHERE world_id = 'pf_cohort' AND layer = 'cohort';
-- a retry of the same candidates returns the same cohort runs, writes nothing
SELECT array_agg(r.run_id ORDER BY r.context ->> 'cohort_position') = (SELECT array_agg(run_id ORDER BY context ->> 'cohort_position') FROM co) AS same_runs
FROM wval_evaluate_cohort('pf_cohort', 'camp-1', 'backtest', '[
    {"strategy_id": "k1", "metrics": {"returns": {"sharpe": 1.0}, "robustness": {"deflated_sharpe_ratio": 0.5}}, "context": {"run_id": "k1-1"}},
    {"strategy_id": "k2", "metrics": {"returns": {"sharpe": 4.0}, "robustness": {"deflated_sharpe_ratio": 0.5}}, "context": {"run_id": "k2-1"}},
    {"strategy_id": "k3", "metrics": {"returns": {"sharpe": 0.2}, "robustness": {"deflated_sharpe_ratio": 0.5}}, "context": {"run_id": "k3-1"}},
    {"strategy_id": "k4", "metrics": {"returns": {"sharpe": 0.3}, "robustness": {"deflated_sharpe_ratio": 0.1}}, "context": {"run_id": "k4-1"}},
    {"strategy_id": "k5", "metrics": {"returns": {"sharpe": null}}, "context": {"run_id": "k5-1"}}]') r;
-- ... the same run_ids without the metrics are another request: WV007
\set VERBOSITY terse
SELECT count(*) FROM wval_evaluate_cohort('pf_cohort', 'camp-1', 'backtest', '[
    {"strategy_id": "k1", "context": {"run_id": "k1-1"}}, {"strategy_id": "k2", "context": {"run_id": "k2-1"}}]');
\set VERBOSITY default
SELECT count(*) AS runs FROM wval.evaluation_runs WHERE world_id = 'pf_cohort';
-- a cohort of one from returns: the medians and the maximum are its own
-- Sharpe and DSR, rank 1 passes top_k; its Sharpe (8.81) sounds the alarm
CREATE TEMP TABLE solo AS
SELECT * FROM wval_evaluate_cohort('pf_cohort', 'camp-2', 'backtest', '[{"strategy_id": "solo",
    "returns": [0.01, -0.005, 0.007, 0.002, -0.001, 0.004, 0.003, -0.002, 0.006, 0.001]}]');
SELECT o.strategy_id, o.status, o.metrics #> '{cohort,size}' AS size, o.metrics #> '{cohort,dsr_rank}' AS dsr_rank,
       o.metrics #> '{cohort,sharpe_median}' = s.metrics #> '{returns,sharpe}' AS median_is_own_sharpe,
       o.metrics #> '{cohort,max_sharpe}' = s.metrics #> '{returns,sharpe}' AS max_is_own_sharpe,
       o.metrics #> '{cohort,dsr_median}' = s.metrics #> '{robustness,deflated_sharpe_ratio}' AS median_is_own_dsr,
       pg_temp.n(s.metrics #> '{returns,sharpe}', 6) AS sharpe,
       ARRAY(SELECT e.key || ' ' || (e.value ->> 'status') FROM jsonb_each(o.results) e ORDER BY e.key) AS checks
FROM solo o JOIN wval.evaluation_runs s ON s.run_id = o.linked_run_id;
-- bad candidates: 22023, returns / metrics of the wrong type WV001; nothing recorded
SELECT pg_temp.try($$SELECT wval_evaluate_cohort('pf_cohort', 'camp-3', 'backtest', '[]')$$) AS empty;
SELECT pg_temp.try($$SELECT wval_evaluate_cohort('pf_cohort', 'camp-3', 'backtest', '{"strategy_id": "k1"}')$$) AS not_array;
SELECT pg_temp.try($$SELECT wval_evaluate_cohort('pf_cohort', 'camp-3', 'backtest', '[{"strategy_id": "k1"}, 7]')$$) AS not_object;
SELECT pg_temp.try($$SELECT wval_evaluate_cohort('pf_cohort', 'camp-3', 'backtest', '[{"strategy": "k1"}]')$$) AS unknown_key;
SELECT pg_temp.try($$SELECT wval_evaluate_cohort('pf_cohort', 'camp-3', 'backtest', '[{"returns": [0.1]}]')$$) AS no_strategy;
SELECT pg_temp.try($$SELECT wval_evaluate_cohort('pf_cohort', 'camp-3', 'backtest', '[{"strategy_id": "k1"}, {"strategy_id": "k1"}]')$$) AS duplicate;
SELECT pg_temp.try($$SELECT wval_evaluate_cohort('pf_cohort', 'camp-3', 'backtest', '[{"strategy_id": "k1", "context": {"campaign_id": "other"}}]')$$) AS other_campaign;
SELECT pg_temp.try($$SELECT wval_evaluate_cohort('pf_cohort', 'camp-3', 'backtest', '[{"strategy_id": "k1", "returns": [0.01, "x"]}]')$$) AS returns_string;
SELECT pg_temp.try($$SELECT wval_evaluate_cohort('pf_cohort', 'camp-3', 'backtest', '[{"strategy_id": "k1", "metrics": [1]}]')$$) AS metrics_array;
SELECT pg_temp.try($$SELECT wval_evaluate_cohort('pf_cohort', 'camp-3', 'backtest', '[{"strategy_id": "k1", "returns": [0.01, -2]}]')$$) AS return_below_minus_1;
SELECT pg_temp.try($$SELECT wval_evaluate_cohort('pf_cohort', 'camp-3', 'prod', '[{"strategy_id": "k1"}]')$$) AS bad_stage;
SELECT pg_temp.try($$SELECT wval_evaluate_cohort('pf_cohort', '', 'backtest', '[{"strategy_id": "k1"}]')$$) AS empty_campaign;
SELECT pg_temp.try($$SELECT wval_evaluate_cohort('pf_nowhere', 'camp-3', 'backtest', '[{"strategy_id": "k1"}]')$$) AS unknown_world;
SELECT pg_temp.try($$SELECT wval_evaluate_cohort('pf_nopol', 'camp-3', 'backtest', '[{"strategy_id": "k1"}]')$$) AS no_policy;
SELECT count(*) AS camp_3_runs FROM wval.evaluation_runs WHERE campaign_id = 'camp-3';

-- every world of this file still verifies its chain
SELECT w, wval_verify_chain(w) FROM unnest(ARRAY['pf_w', 'pf_blob', 'pf_bus', 'pf_sync', 'pf_cohort']) w;
