-- live: realized returns, stage decisions, live runs (windows, decay, checks,
-- idempotency), demotion candidates, wval_live_run_all and the live report.
-- Expected numbers were computed independently (python, statistics.stdev,
-- type-7 quantile) and the 30-day window also by hand (see docs/live.md).
\set SHOW_CONTEXT never
SET timezone = 'UTC';

-- errors that name a run (a random uuid) are shown with the uuid masked
CREATE FUNCTION pg_temp.err(stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    s text; m text; d text; h text;
BEGIN
    EXECUTE stmt;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS s = RETURNED_SQLSTATE, m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL, h = PG_EXCEPTION_HINT;
    RETURN regexp_replace(s || ': ' || m || E'\nDETAIL: ' || d || E'\nHINT: ' || h,
                          '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<run>', 'g');
END
$$;

SELECT world_id FROM wval_world_upsert('w-live', 'medium', false, actor => 'dba');
-- profiles for the recommendation; live_monitoring with one blocking check
SELECT wval_policy_publish('w-live', '{
  "validation_profiles": {"backtest": {"performance": {"sharpe_min": 0.5}},
                          "paper":    {"performance": {"sharpe_min": 0.8}},
                          "live":     {"performance": {"sharpe_min": 1.0}}},
  "default_profile_by_stage": {"backtest_only": "backtest", "paper_only": "paper", "paper_ok_live_candidate": "live"},
  "live_monitoring": {"sharpe_min": 0.5, "dd_max": {"max": 0.05, "severity": "blocking"}, "es_max": 0.03,
                      "decay_threshold": 0.5, "windows_days": [90, 30, 60]}}', 'alice') AS version;
SELECT version FROM wval_policy_activate('w-live', 1, 'bob', 'live monitoring');

------------------------------------------------------------------------------
-- recording realized returns
------------------------------------------------------------------------------

-- 'steady': two days outside the 90-day window of 2026-03-31 (2025-12-31 is
-- as_of - 90, excluded; 2026-04-01 is after as_of)
SELECT wval_record_live_returns('w-live', 'steady',
    '{2025-12-31,2026-01-10,2026-01-20,2026-02-05,2026-02-15,2026-03-05,2026-03-10,2026-03-20,2026-03-31,2026-04-01}',
    '{0.05,0.01,0.02,-0.01,0.015,0.01,0.03,0.02,0.005,0.3}', 'gateway') AS recorded;
-- a correction of 2026-03-10 is a later row; the latest row of a day counts
SELECT wval_record_live_returns('w-live', 'steady', '{2026-03-10}', '{-0.005}', 'broker-statement') AS recorded;
-- an identical retry records nothing; the same value from another source is a new row
SELECT wval_record_live_returns('w-live', 'steady', '{2026-03-10}', '{-0.005}', 'broker-statement') AS recorded;
SELECT wval_record_live_returns('w-live', 'steady', '{2026-03-10,2026-03-20}', '{-0.005,0.02}', 'broker-statement') AS recorded;
SELECT day, ret, source FROM wval.live_returns_current
WHERE world_id = 'w-live' AND strategy_id = 'steady' AND day BETWEEN '2026-03-01' AND '2026-03-31' ORDER BY day;
SELECT count(*) AS rows_kept FROM wval.live_returns WHERE world_id = 'w-live' AND strategy_id = 'steady';

-- input rules (WV001 naming the element), identifiers, unknown world
SELECT wval_record_live_returns('w-live', 'steady', '{2026-03-01,2026-03-02}', '{0.01,NULL}');
SELECT wval_record_live_returns('w-live', 'steady', '{2026-03-01,2026-03-02}', '{0.01,Infinity}');
SELECT wval_record_live_returns('w-live', 'steady', '{2026-03-01,2026-03-02}', '{0.01,NaN}');
SELECT wval_record_live_returns('w-live', 'steady', '{2026-03-01,2026-03-02}', '{-1,0.01}');
SELECT wval_record_live_returns('w-live', 'steady', '{2026-03-01,2026-03-02,2026-03-03}', '{0.01,0.02}');
SELECT wval_record_live_returns('w-live', 'steady', '{2026-03-01,2026-03-02,2026-03-01}', '{0.01,0.02,0.03}');
SELECT wval_record_live_returns('w-live', 'steady', '{2026-03-01,NULL}', '{0.01,0.02}');
SELECT wval_record_live_returns('w-live', 'steady', '{2026-03-01,infinity}', '{0.01,0.02}');
SELECT wval_record_live_returns('w-live', 'steady', '{{2026-03-01},{2026-03-02}}', '{0.01,0.02}');
SELECT wval_record_live_returns('w-live', 'steady', NULL, '{0.01}');
SELECT wval_record_live_returns('w-live', '', '{2026-03-01}', '{0.01}');
SELECT wval_record_live_returns('w-live', 'steady', '{2026-03-01}', '{0.01}', E'bad\tsource');
SELECT wval_record_live_returns('w-nowhere', 'steady', '{2026-03-01}', '{0.01}');
SELECT wval_record_live_returns('w-live', 'steady', '{}', '{}') AS empty_batch;
SELECT count(*) AS rows_kept FROM wval.live_returns WHERE world_id = 'w-live' AND strategy_id = 'steady';

------------------------------------------------------------------------------
-- the window metrics, directly
------------------------------------------------------------------------------

SELECT k AS window_days, (v->>'n_obs')::int AS n_obs,
       round((v->>'sharpe')::numeric, 10) AS sharpe, round((v->>'max_drawdown')::numeric, 12) AS max_drawdown,
       round((v->>'es_p025')::numeric, 12) AS es_p025
FROM jsonb_each(wval._live_windows('{2026-03-05,2026-03-10,2026-03-20,2026-03-31}',
                                   '{0.01,-0.005,0.02,0.005}', '2026-03-31', '{30,2,1,10}')) AS w(k, v)
ORDER BY k::int;
SELECT wval._live_windows('{2026-03-10,2026-03-05}', '{0.01,0.02}', '2026-03-31', '{30}');

------------------------------------------------------------------------------
-- stage decisions
------------------------------------------------------------------------------

-- backtest runs: the GOOD vector of metrics.md (Sharpe 17.243586168211078)
-- recommends live; a weak series recommends nothing beyond backtest
CREATE TEMP TABLE bt AS
SELECT e.*
FROM unnest(ARRAY['steady', 'fading', 'loser', 'sparse']) s,
     LATERAL wval_evaluate('w-live', s, 'backtest', '{0.01, 0.02, -0.005, 0.015, 0.012, 0.008, -0.003, 0.02, 0.01, 0.005}') e;
SELECT strategy_id, status, recommended_stage, metrics #>> '{returns,sharpe}' AS sharpe FROM bt ORDER BY 1;
CREATE TEMP TABLE weak AS SELECT * FROM wval_evaluate('w-live', 'weak', 'backtest', '{0.01,-0.012,0.002,-0.001}');
SELECT status, recommended_stage FROM weak;

-- promotions justified by the latest run's recommendation
SELECT strategy_id, stage, previous_stage, change, actor, run_id = (SELECT b.run_id FROM bt b WHERE b.strategy_id = d.strategy_id) AS relied_on_latest_run,
       justification->>'basis' AS basis, justification->>'recommended_stage' AS recommended
FROM (VALUES ('steady', 'live'), ('fading', 'paper'), ('loser', 'live'), ('sparse', 'paper')) v(s, st),
     LATERAL wval_set_stage('w-live', s, st, 'carol', 'backtest clears the live profile') d
ORDER BY strategy_id;

-- an unjustified promotion is refused (WV009 naming the run and what it lacks)
SELECT pg_temp.err($$SELECT wval_set_stage('w-live', 'weak', 'paper', 'carol', 'looks fine to me')$$);
SELECT wval_set_stage('w-live', 'never-evaluated', 'paper', 'carol', 'trust me');
-- ... as are decisions without actor or reason, and unknown stages
SELECT wval_set_stage('w-live', 'steady', 'paper', 'carol', ' ');
SELECT wval_set_stage('w-live', 'steady', 'paper', NULL, NULL);
SELECT wval_set_stage('w-live', 'steady', 'shadow', 'carol', 'x');

-- (the override path to live is in test/live.sql: overrides are not
-- filtered by world in other regression files)

-- what is deployed now; the stage_changed events and audit rows
SELECT strategy_id, stage, previous_stage, change, actor FROM wval.current_stage WHERE world_id = 'w-live' ORDER BY 1;
SELECT subject, payload->'data'->>'from' AS "from", payload->'data'->>'to' AS "to", payload->'data'->>'actor' AS actor,
       payload->'data'->>'run_id' IS NOT NULL AS has_run
FROM wval.events WHERE world_id = 'w-live' AND type = 'stage_changed' ORDER BY event_id;
SELECT action, details->>'strategy_id' AS strategy, details->>'to' AS "to"
FROM wval.audit_log WHERE world_id = 'w-live' AND action LIKE 'stage_%' ORDER BY id;

------------------------------------------------------------------------------
-- live runs
------------------------------------------------------------------------------

CREATE TEMP TABLE steady AS SELECT * FROM wval_live_run('w-live', 'steady', '2026-03-31');
SELECT kind, stage, status, as_of, profile, policy_version,
       ruleset_hash = wval._apply_rules((SELECT policy FROM wval.policy_versions WHERE world_id = 'w-live'),
                                        'live_monitoring', '{}')->>'ruleset_hash' AS hash_of_policy_doc,
       ruleset_hash = wval._live_policy('w-live', 1, false)->>'ruleset_hash' AS hash_of_live_ruleset,
       recommended_stage, context
FROM steady;
-- the windows (as_of - W, as_of] of 2026-03-31: 4, 6 and 8 observations
SELECT k AS window_days, (v->>'n_obs')::int AS n_obs,
       round((v->>'sharpe')::numeric, 10) AS sharpe, round((v->>'max_drawdown')::numeric, 12) AS max_drawdown,
       round((v->>'es_p025')::numeric, 12) AS es_p025
FROM steady, jsonb_each(metrics #> '{live,windows}') AS w(k, v) ORDER BY k::int;
-- decay = Sharpe over 90 days / Sharpe of the latest backtest run
SELECT metrics #>> '{live,as_of}' AS as_of, metrics #>> '{live,check_window}' AS check_window,
       round((metrics #>> '{live,decay}')::numeric, 10) AS decay,
       metrics #>> '{live,backtest_sharpe}' AS backtest_sharpe,
       metrics #>> '{live,backtest_run_id}' = (SELECT run_id::text FROM bt WHERE strategy_id = 'steady') AS backtest_run
FROM steady;
-- the returns block is the metrics engine's over the longest window
SELECT metrics->'returns' = wval_metrics('{0.01,0.02,-0.01,0.015,0.01,-0.005,0.02,0.005}')->'returns' AS returns_block,
       returns_hash = 'sha256:' || encode(sha256((SELECT string_agg(float8send(x), ''::bytea ORDER BY o)
           FROM unnest('{0.01,0.02,-0.01,0.015,0.01,-0.005,0.02,0.005}'::float8[]) WITH ORDINALITY u(x, o))), 'hex') AS returns_hash
FROM steady;
-- the checks ran on the 30-day window, one rule_results row each
SELECT rule, status, severity, owner, reason_code, round((details->>'value')::numeric, 6) AS value, details->>'threshold' AS threshold
FROM wval.rule_results WHERE run_id = (SELECT run_id FROM steady) ORDER BY rule;
SELECT (SELECT count(*) FROM jsonb_object_keys(results)) AS results,
       (SELECT count(*) FROM wval.rule_results rr WHERE rr.run_id = steady.run_id
          AND rr.status = steady.results #>> ARRAY[rr.rule, 'status']
          AND rr.reason = steady.results #>> ARRAY[rr.rule, 'reason']) AS matching_rows
FROM steady;
-- events: evaluation_run_created (kind live) and live_run_created
SELECT type, payload->'data'->>'kind' AS kind, payload->'data'->>'status' AS status,
       payload->'data'->>'as_of' AS as_of, payload->'data'->>'check_window' AS check_window,
       payload->'data' #>> '{windows,30,n_obs}' AS n_obs_30, payload->'data'->>'run_id' = (SELECT run_id::text FROM steady) AS run_matches
FROM wval.events WHERE world_id = 'w-live' AND subject = 'steady'
  AND type IN ('evaluation_run_created', 'live_run_created') AND payload->'data'->>'kind' IS DISTINCT FROM 'single'
ORDER BY event_id;

-- idempotent: the same day again returns the stored run and records nothing
SELECT (wval_live_run('w-live', 'steady', '2026-03-31')).run_id = (SELECT run_id FROM steady) AS same_run;
SELECT count(*) AS live_runs FROM wval.evaluation_runs WHERE world_id = 'w-live' AND strategy_id = 'steady' AND kind = 'live';
SELECT count(*) AS events FROM wval.events WHERE world_id = 'w-live' AND subject = 'steady' AND type = 'live_run_created';
-- later corrections do not change a stored run; a new day sees them
SELECT wval_record_live_returns('w-live', 'steady', '{2026-03-31}', '{0.006}', 'correction') AS recorded;
SELECT (wval_live_run('w-live', 'steady', '2026-03-31')).metrics #>> '{live,windows,30,sharpe}' = (SELECT metrics #>> '{live,windows,30,sharpe}' FROM steady) AS unchanged;
SELECT r.as_of, r.status, r.metrics #>> '{live,windows,30,n_obs}' AS n_obs_30,
       r.metrics #>> '{live,windows,30,sharpe}' <> (SELECT metrics #>> '{live,windows,30,sharpe}' FROM steady) AS sees_correction
FROM wval_live_run('w-live', 'steady', '2026-04-01') r;

-- 'sparse': one observation in 30 days (null metrics), three in 60: the
-- checks use the 60-day window
SELECT wval_record_live_returns('w-live', 'sparse', '{2026-02-10,2026-02-20,2026-03-25}', '{0.01,-0.002,0.004}') AS recorded;
SELECT status, metrics #>> '{live,check_window}' AS check_window, metrics #> '{live,windows,30}' AS w30,
       (metrics #>> '{live,windows,60,n_obs}')::int AS n_obs_60,
       round((results #>> '{live_monitoring.sharpe_min,details,value}')::numeric, 10) AS checked_sharpe,
       round((metrics #>> '{live,windows,60,sharpe}')::numeric, 10) AS sharpe_60
FROM wval_live_run('w-live', 'sparse', '2026-03-31');

-- 'loser': a 6.9 % drawdown in March breaks the blocking dd_max: the run
-- fails and the strategy is a demotion candidate at once
SELECT wval_record_live_returns('w-live', 'loser',
    '{2026-03-02,2026-03-03,2026-03-04,2026-03-05,2026-03-06}', '{0.01,-0.04,-0.03,0.002,0.001}') AS recorded;
CREATE TEMP TABLE loser AS SELECT * FROM wval_live_run('w-live', 'loser', '2026-03-31');
SELECT status, results #>> '{live_monitoring.dd_max,status}' AS dd_check,
       results #>> '{live_monitoring.dd_max,reason_code}' AS reason_code,
       round((metrics #>> '{live,windows,30,max_drawdown}')::numeric, 12) AS max_drawdown
FROM loser;
SELECT strategy_id, as_of, stage, trigger, consecutive_runs, demote_after,
       (SELECT jsonb_agg(b->>'check') FROM jsonb_array_elements(breached) b) AS breached
FROM wval.demotion_candidates WHERE world_id = 'w-live' AND run_id = (SELECT run_id FROM loser);

-- 'fading': soft fails (Sharpe and decay) make a run warn; the second
-- failing run in a row (demote_after = 2) flags the strategy
SELECT wval_record_live_returns('w-live', 'fading',
    ARRAY(SELECT d::date FROM generate_series('2026-03-02'::date, '2026-03-31', '1 day') d),
    ARRAY(SELECT CASE WHEN i % 2 = 0 THEN -0.004 ELSE 0.003 END FROM generate_series(0, 29) i)) AS recorded;
CREATE TEMP TABLE fading AS
SELECT r.* FROM unnest('{2026-03-30,2026-03-31}'::date[]) d, LATERAL wval_live_run('w-live', 'fading', d) r;
SELECT as_of, status, results #>> '{live_monitoring.sharpe_min,status}' AS sharpe_check,
       results #>> '{live_monitoring.decay_threshold,reason_code}' AS decay_check,
       (SELECT count(*) FROM wval.demotion_candidates dc WHERE dc.run_id = f.run_id) AS flagged
FROM fading f ORDER BY as_of;
SELECT trigger, consecutive_runs, breached->0->>'check' AS first_breach, breached->0->>'severity' AS severity
FROM wval.demotion_candidates WHERE world_id = 'w-live' AND strategy_id = 'fading';
SELECT subject, payload->'data'->>'trigger' AS trigger, payload->'data'->'breached' AS breached,
       payload->'data'->>'consecutive_runs' AS consecutive_runs
FROM wval.events WHERE world_id = 'w-live' AND type = 'demotion_candidate_flagged' ORDER BY event_id;
SELECT strategy_id, trigger FROM wval.open_demotion_candidates WHERE world_id = 'w-live' ORDER BY 1;

-- wval never demotes by itself; a person does, which closes the candidate
SELECT strategy_id, stage FROM wval.current_stage WHERE world_id = 'w-live' AND strategy_id IN ('fading', 'loser') ORDER BY 1;
SELECT stage, previous_stage, change, justification->>'open_demotion_candidate' IS NOT NULL AS closes_candidate
FROM wval_set_stage('w-live', 'loser', 'retired', 'carol', 'drawdown limit breached in March');
SELECT strategy_id FROM wval.open_demotion_candidates WHERE world_id = 'w-live' ORDER BY 1;

-- a strategy that is not deployed is measured but never a candidate; with
-- no returns every metric is missing (on_missing_metric = fail)
CREATE TEMP TABLE undeployed AS SELECT * FROM wval_live_run('w-live', 'never-deployed', '2026-03-31');
SELECT stage, status, metrics #>> '{live,check_window}' AS check_window,
       results #>> '{live_monitoring.dd_max,reason_code}' AS dd_check,
       results #>> '{live_monitoring.dd_max,severity}' AS dd_severity,
       (SELECT count(*) FROM wval.demotion_candidates dc WHERE dc.run_id = u.run_id) AS flagged
FROM undeployed u;

-- a policy without live_monitoring: the run records its metrics and warns
SELECT world_id FROM wval_world_upsert('w-live-nochecks', actor => 'dba');
SELECT wval_policy_publish('w-live-nochecks', '{}', 'alice') AS version;
SELECT version FROM wval_policy_activate('w-live-nochecks', 1, 'bob', 'nothing configured');
SELECT wval_record_live_returns('w-live-nochecks', 'x', '{2026-03-30,2026-03-31}', '{0.01,0.02}') AS recorded;
SELECT status, jsonb_object_keys(results) AS result, metrics #>> '{live,windows,30,n_obs}' AS n_obs_30,
       context->'windows_days' AS windows
FROM wval_live_run('w-live-nochecks', 'x', '2026-03-31');

-- errors
SELECT wval_live_run('w-nowhere', 'x', '2026-03-31');
SELECT wval_live_run('w-live', 'x', NULL);
SELECT world_id FROM wval_world_upsert('w-live-nopolicy', actor => 'dba');
SELECT wval_live_run('w-live-nopolicy', 'x', '2026-03-31');

------------------------------------------------------------------------------
-- wval_live_run_all: every deployed strategy, one failure does not stop the rest
------------------------------------------------------------------------------

-- (a strategy whose live run fails is in test/live.sql)
CREATE TEMP TABLE run_all AS SELECT * FROM wval_live_run_all('2026-04-01') a WHERE a.world_id LIKE 'w-live%';
SELECT a.world_id, a.strategy_id, a.stage, a.status, a.flagged, a.error,
       a.run_id = (SELECT e.run_id FROM wval.evaluation_runs e WHERE e.world_id = a.world_id AND e.strategy_id = a.strategy_id
                   AND e.kind = 'live' AND e.as_of = '2026-04-01') AS stored
FROM run_all a ORDER BY 1, 2;
-- the second call the same day returns the same runs
SELECT count(*) AS live_runs_2026_04_01 FROM wval.evaluation_runs WHERE world_id LIKE 'w-live%' AND kind = 'live' AND as_of = '2026-04-01';
SELECT count(*) FILTER (WHERE a.run_id IS NOT NULL) AS runs FROM wval_live_run_all('2026-04-01') a WHERE a.world_id LIKE 'w-live%';
SELECT count(*) AS live_runs_2026_04_01 FROM wval.evaluation_runs WHERE world_id LIKE 'w-live%' AND kind = 'live' AND as_of = '2026-04-01';

------------------------------------------------------------------------------
-- the live report
------------------------------------------------------------------------------

-- (run ids masked; the date of the stage decision is today)
\pset format unaligned
SELECT replace(regexp_replace(wval_live_report('w-live', '2026-03-31'), '[0-9a-f]{8}-[0-9a-f-]{27}', '<run>', 'g'),
               to_char(current_date, 'YYYY-MM-DD'), '<today>') AS report;
-- trend: the 2026-04-01 report compares with the 2026-03-31 runs
SELECT line FROM regexp_split_to_table(wval_live_report('w-live', '2026-04-01'), E'\n') line
WHERE line LIKE '| steady |%' OR line LIKE '| fading |%' OR line LIKE '| 30 days |%';
SELECT wval_live_report('w-live', '2025-01-01') AS nothing_yet;
\pset format aligned
-- tiny and huge values (chart labels, ES of a calm strategy) print in E notation
SELECT wval._fmt('0.00001') AS tiny, wval._fmt('-0.0000123456') AS tiny_negative, wval._fmt('12345678') AS huge;
SELECT wval_live_report('w-live', '2026-03-31', 'pdf');
SELECT wval_live_report('w-nowhere');

-- the hash chains of the worlds still verify
SELECT wval_verify_chain('w-live') AS chain_ok, wval_verify_chain('w-live-nochecks') AS chain_ok_2,
       wval_verify_chain('w-live-nopolicy') AS chain_ok_3;
