-- pgTAP: live monitoring for roles, guards, streak rules, decay edge cases
-- and the HTML report
BEGIN;
SET client_min_messages = warning;
SELECT plan(65);

-- the DETAIL of the error a statement raises
CREATE FUNCTION pg_temp.detail_of(stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    d text;
BEGIN
    EXECUTE stmt;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
    RETURN d;
END
$$;

SELECT lives_ok($$SELECT wval_world_upsert('tap-live', actor => 'dba')$$, 'world');
SELECT lives_ok($$SELECT wval_policy_publish('tap-live', '{
    "validation_profiles": {"backtest": {"performance": {"sharpe_min": 0.5}}, "live": {"performance": {"sharpe_min": 0.5}}},
    "default_profile_by_stage": {"backtest_only": "backtest", "paper_only": "backtest", "paper_ok_live_candidate": "live"},
    "live_monitoring": {"sharpe_min": 0.5, "decay_threshold": 0.2, "demote_after": 3, "windows_days": [10, 30]}}', 'alice'),
                         wval_policy_activate('tap-live', 1, 'bob', 'tap')$$, 'policy with demote_after 3');

CREATE ROLE tap_live_gw;   GRANT wval_producer TO tap_live_gw;
CREATE ROLE tap_live_val;  GRANT wval_validator TO tap_live_val;
CREATE ROLE tap_live_read; GRANT wval_analyst TO tap_live_read;

-- backtests: 'good' recommends live, 'neg' has a negative Sharpe
SELECT is((wval_evaluate('tap-live', s, 'backtest', '{0.01, 0.02, -0.005, 0.015, 0.012, 0.008, -0.003, 0.02, 0.01, 0.005}')).recommended_stage,
          'paper_ok_live_candidate', 'backtest of ' || s || ' recommends live')
FROM unnest(ARRAY['good', '<b>&"x']) s;
SELECT is((wval_evaluate('tap-live', 'neg', 'backtest', '{-0.01, 0.002, -0.004, 0.001}')).recommended_stage,
          'backtest_only', 'a losing backtest recommends backtest only');

------------------------------------------------------------------------------
-- roles
------------------------------------------------------------------------------

SET ROLE tap_live_gw;
SELECT is(wval_record_live_returns('tap-live', 'good',
              ARRAY(SELECT d::date FROM generate_series('2026-05-01'::date, '2026-05-30', '1 day') d),
              ARRAY(SELECT 0.003 + 0.004 * sin(i) FROM generate_series(1, 30) i), 'gateway'),
          30, 'a producer records live returns');
SELECT is((SELECT DISTINCT recorded_by FROM wval.live_returns WHERE world_id = 'tap-live'), 'tap_live_gw',
          'recorded_by is the calling role');
SELECT throws_ok($$INSERT INTO wval.live_returns (world_id, strategy_id, day, ret, source, recorded_by)
                   VALUES ('tap-live', 'good', '2026-06-01', 0.5, 'forged', 'x')$$, '42501', NULL,
                 'a producer cannot insert live returns directly');
SELECT throws_ok($$SELECT wval_set_stage('tap-live', 'good', 'live', 'mallory', 'self-service')$$, '42501', NULL,
                 'a producer cannot set stages');
SELECT throws_ok($$SELECT wval_schedule_live_monitoring()$$, '42501', NULL, 'a producer cannot schedule');
SELECT is((wval_live_run('tap-live', 'good', '2026-05-30')).status, 'pass', 'a producer runs a live run');
RESET ROLE;

SET ROLE tap_live_val;
SELECT is((wval_set_stage('tap-live', 'good', 'live', 'vera', 'clears the live profile')).stage, 'live',
          'a validator promotes');
SELECT is((SELECT actor FROM wval.current_stage WHERE world_id = 'tap-live' AND strategy_id = 'good'), 'vera',
          'the decision names the actor');
SELECT throws_ok($$SELECT wval_record_live_returns('tap-live', 'good', '{2026-06-01}', '{0.01}')$$, '42501', NULL,
                 'a validator does not record live returns');
SELECT throws_ok($$INSERT INTO wval.deployments (world_id, strategy_id, stage, previous_stage, change, actor, reason)
                   VALUES ('tap-live', 'neg', 'live', 'backtest', 'promotion', 'x', 'x')$$, '42501', NULL,
                 'nobody writes stage decisions directly');
RESET ROLE;

SET ROLE tap_live_read;
SELECT is((SELECT count(*)::int FROM wval.live_returns_current WHERE world_id = 'tap-live'), 30, 'an analyst reads live returns');
SELECT is((SELECT stage FROM wval.current_stage WHERE world_id = 'tap-live' AND strategy_id = 'good'), 'live',
          'an analyst reads the current stage');
SELECT ok(wval_live_report('tap-live', '2026-05-30') LIKE '# Live monitoring report: tap-live as of 2026-05-30%',
          'an analyst reads the live report');
SELECT lives_ok($$SELECT * FROM wval.demotion_candidates, wval.open_demotion_candidates, wval.schedule_health LIMIT 1$$,
                'an analyst reads candidates and schedule health');
SELECT throws_ok($$SELECT wval_live_run('tap-live', 'good', '2026-05-29')$$, '42501', NULL, 'an analyst cannot run live runs');
SELECT throws_ok($$SELECT wval_live_run_all('2026-05-29')$$, '42501', NULL, 'an analyst cannot run all live runs');
RESET ROLE;

------------------------------------------------------------------------------
-- append-only, chained
------------------------------------------------------------------------------

SELECT throws_ok($$UPDATE wval.live_returns SET ret = 0.5 WHERE world_id = 'tap-live'$$, 'WV003', NULL,
                 'live returns are append-only (UPDATE)');
SELECT throws_ok($$DELETE FROM wval.deployments WHERE world_id = 'tap-live'$$, 'WV003', NULL,
                 'stage decisions are append-only (DELETE)');
SELECT throws_ok($$TRUNCATE wval.demotion_candidates$$, 'WV003', NULL, 'demotion candidates are append-only (TRUNCATE)');
SELECT ok(wval_verify_chain('tap-live'), 'the world''s chain covers the new tables and verifies');
SELECT ok((SELECT bool_and(row_hash LIKE 'sha256:%') FROM wval.live_returns WHERE world_id = 'tap-live'), 'live returns are chained');

------------------------------------------------------------------------------
-- the run's stage, decay edge cases
------------------------------------------------------------------------------

SELECT is((wval_live_run('tap-live', 'good', '2026-05-31')).stage, 'live', 'the run of a live strategy has stage live');
SELECT lives_ok($$SELECT wval_override((SELECT run_id FROM wval.evaluation_runs WHERE world_id = 'tap-live' AND strategy_id = 'neg'),
                                       'approved', 'paper test', 'olga'),
                         wval_set_stage('tap-live', 'neg', 'paper', 'vera', 'paper test under override'),
                         wval_record_live_returns('tap-live', 'neg', '{2026-05-28,2026-05-29,2026-05-30}', '{0.01,0.012,0.008}')$$,
                'neg deployed at paper under an override');
CREATE TEMP TABLE neg AS SELECT * FROM wval_live_run('tap-live', 'neg', '2026-05-30');
SELECT is((SELECT stage FROM neg), 'paper', 'the run of a paper strategy has stage paper');
SELECT is((SELECT metrics #> '{live,decay}' FROM neg), 'null'::jsonb, 'decay is null when the backtest Sharpe is not positive');
SELECT ok((SELECT (metrics #>> '{live,backtest_sharpe}')::float8 < 0 FROM neg), '... the backtest Sharpe is recorded');
SELECT is((SELECT results #>> '{live_monitoring.decay_threshold,reason_code}' FROM neg), 'missing_metric',
          '... and the decay check reports a missing metric');

------------------------------------------------------------------------------
-- demotion streaks: demote_after = 3, a passing run breaks a streak, a new
-- stage starts a new one
------------------------------------------------------------------------------

-- 'good' loses money from 2026-06-01: each window of 10 days sees only losses
SET ROLE tap_live_gw;
SELECT lives_ok($$SELECT wval_record_live_returns('tap-live', 'good',
                    ARRAY(SELECT d::date FROM generate_series('2026-06-01'::date, '2026-06-20', '1 day') d),
                    ARRAY(SELECT CASE WHEN i % 2 = 0 THEN -0.006 ELSE 0.002 END FROM generate_series(1, 20) i))$$,
                'losing June');
RESET ROLE;
CREATE TEMP TABLE streak AS
SELECT r.as_of, r.status, r.run_id FROM unnest('{2026-06-10,2026-06-11,2026-06-12,2026-06-13}'::date[]) d,
     LATERAL wval_live_run('tap-live', 'good', d) r;
SELECT results_eq($$SELECT s.status, (SELECT count(*)::int FROM wval.demotion_candidates c WHERE c.run_id = s.run_id)
                    FROM streak s ORDER BY s.as_of$$,
                  $$VALUES ('warn', 0), ('warn', 0), ('warn', 1), ('warn', 1)$$,
                  'soft fails flag from the third run in a row on (demote_after 3)');
SELECT results_eq($$SELECT consecutive_runs, trigger FROM wval.demotion_candidates
                    WHERE world_id = 'tap-live' AND strategy_id = 'good' ORDER BY as_of$$,
                  $$VALUES (3, 'soft_fail_streak'), (4, 'soft_fail_streak')$$, 'the streak is counted');
SELECT is((SELECT count(*)::int FROM wval.events WHERE world_id = 'tap-live' AND type = 'demotion_candidate_flagged'), 2,
          'one demotion_candidate_flagged per flagging run');
SELECT is((SELECT as_of FROM wval.open_demotion_candidates WHERE world_id = 'tap-live' AND strategy_id = 'good'),
          '2026-06-13'::date, 'the latest flag is open');

-- a confirmation (same stage, with a reason) is a decision: it closes the candidate
SELECT is((wval_set_stage('tap-live', 'good', 'live', 'vera', 'reviewed: keep it live for now')).change, 'confirmation',
          'keeping the stage is recorded as a confirmation');
SELECT is((SELECT count(*)::int FROM wval.open_demotion_candidates WHERE world_id = 'tap-live'), 0, 'no open candidate after a decision');
SELECT is((SELECT count(*)::int FROM wval.events WHERE world_id = 'tap-live' AND type = 'stage_changed' AND subject = 'good'), 1,
          'a confirmation emits no stage_changed');

-- an earlier day filled in later: the streak counts runs by as_of, not by creation
CREATE TEMP TABLE jun14 AS SELECT * FROM wval_live_run('tap-live', 'good', '2026-06-14');
SELECT is((SELECT consecutive_runs FROM wval.demotion_candidates WHERE run_id = (SELECT run_id FROM jun14)), 5,
          'the streak goes on');
SELECT is((wval_live_run('tap-live', 'good', '2026-05-29')).status, 'pass', 'a backfilled earlier run passes');
SELECT is((SELECT count(*)::int FROM wval.demotion_candidates WHERE world_id = 'tap-live' AND as_of = '2026-05-29'), 0,
          '... and flags nothing');

------------------------------------------------------------------------------
-- the override path to live
------------------------------------------------------------------------------

-- neg is at paper under an approved override; revoked, it justifies nothing
SELECT lives_ok($$SELECT wval_override((SELECT run_id FROM wval.evaluation_runs WHERE world_id = 'tap-live' AND strategy_id = 'neg'
                                        AND kind = 'single'), 'revoked', 'paper test over', 'olga')$$, 'the paper override is revoked');
SELECT throws_like($$SELECT wval_set_stage('tap-live', 'neg', 'live', 'vera', 'more capital')$$,
                   'promotion of strategy "neg" to live is not justified by its latest run %',
                   'without an override a losing run does not justify live (WV009 names the run)');
SELECT throws_ok($$SELECT wval_set_stage('tap-live', 'neg', 'live', 'vera', 'more capital')$$, 'WV009', NULL,
                 '... SQLSTATE WV009');
SELECT lives_ok($$SELECT wval_override((SELECT run_id FROM wval.evaluation_runs WHERE world_id = 'tap-live' AND strategy_id = 'neg'
                                        AND kind = 'single'), 'approved', 'small live allocation, reviewed', 'olga')$$,
                'a validator approves again');
SELECT results_eq($$SELECT stage::text, change, justification->>'basis', justification->>'override_actor'
                    FROM wval_set_stage('tap-live', 'neg', 'live', 'vera', 'approved override')$$,
                  $$VALUES ('live', 'promotion', 'override', 'olga')$$, 'an approved, not overdue override justifies live');
SELECT lives_ok($$SELECT wval_override((SELECT run_id FROM wval.evaluation_runs WHERE world_id = 'tap-live' AND strategy_id = 'neg'
                                        AND kind = 'single'), 'revoked', 'allocation ended', 'olga'),
                         wval_set_stage('tap-live', 'neg', 'paper', 'vera', 'allocation ended')$$, 'revoked and demoted');
SELECT throws_like($$SELECT wval_set_stage('tap-live', 'neg', 'live', 'vera', 'once more')$$,
                   'promotion of strategy "neg" to live is not justified%', 'a revoked override justifies nothing');
-- an approval past its review date (written by hand: time cannot pass in a test)
CREATE FUNCTION pg_temp.as_writer(q text) RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $$ BEGIN EXECUTE q; END $$;
SELECT pg_temp.as_writer($$INSERT INTO wval.overrides (run_id, world_id, strategy_id, status, reason, actor, review_due_at)
SELECT run_id, world_id, strategy_id, 'approved', 'old approval', 'olga', now() - interval '1 day'
FROM wval.evaluation_runs WHERE world_id = 'tap-live' AND strategy_id = 'neg' AND kind = 'single'$$);
SELECT matches(pg_temp.detail_of($$SELECT wval_set_stage('tap-live', 'neg', 'live', 'vera', 'once more')$$),
               'recommends backtest_only; live needs at least paper_ok_live_candidate. Override: approved but overdue since ',
               'an overdue approval justifies nothing, and the detail says so');

------------------------------------------------------------------------------
-- wval_live_run_all: a failing strategy does not stop the others
------------------------------------------------------------------------------

-- a world without an active policy whose strategy was deployed through the
-- emergency bypass and an approved override: its live run fails
SELECT lives_ok($$SELECT wval_world_upsert('tap-live-nopolicy', actor => 'dba'),
                         wval_override((wval_record_run('tap-live-nopolicy', 'bypassed', 'backtest', '{"returns": {"sharpe": 2}}',
                                                        'dba', 'vendor outage')).run_id, 'approved', 'reviewed by hand', 'olga'),
                         wval_set_stage('tap-live-nopolicy', 'bypassed', 'paper', 'vera', 'bypass reviewed')$$,
                'a deployed strategy in a world without an active policy');
SET client_min_messages = error;
CREATE TEMP TABLE run_all AS SELECT * FROM wval_live_run_all('2026-06-15') a WHERE a.world_id LIKE 'tap-live%';
SET client_min_messages = warning;
SELECT results_eq($$SELECT world_id, strategy_id, stage, status, error FROM run_all ORDER BY 1, 2$$,
                  $$VALUES ('tap-live', 'good', 'live', 'warn', NULL), ('tap-live', 'neg', 'paper', 'warn', NULL),
                           ('tap-live-nopolicy', 'bypassed', 'paper', NULL,
                            'WV010: world "tap-live-nopolicy" has no active policy version')$$,
                  'every deployed strategy has a row; the failure is reported, the others ran');
SELECT is((SELECT count(*)::int FROM wval.evaluation_runs WHERE world_id LIKE 'tap-live%' AND kind = 'live' AND as_of = '2026-06-15'), 2,
          'both live runs were stored');
SELECT results_eq($$SELECT details->>'strategy_id', details->>'sqlstate' FROM wval.audit_log
                    WHERE world_id = 'tap-live-nopolicy' AND action = 'live_run_failed'$$,
                  $$VALUES ('bypassed', 'WV010')$$, 'the failure is audited');

-- the hub's extended validation takes the deployed strategies from here
SELECT set_eq($$SELECT strategy_id, deployed_stage FROM wval._deployed_candidates('tap-live', '{"weights": {"good": 0.5, "other": 0.5}}')$$,
              $$VALUES ('good', 'live'), ('neg', 'paper')$$,
              'a world with stage decisions: the deployed set is current_stage paper/live, not the snapshot weights');

-- row-level security per world: a producer restricted to tap-live
SELECT lives_ok($$SELECT wval_world_revoke('wval_producer', '*', 'dba'), wval_world_grant('tap_live_gw', 'tap-live', 'write', 'dba')$$,
                'producers may write only the worlds granted to them');
SET ROLE tap_live_gw;
SET client_min_messages = error;
CREATE TEMP TABLE run_mine AS SELECT * FROM wval_live_run_all('2026-06-16') a WHERE a.world_id LIKE 'tap-live%';
SET client_min_messages = warning;
SELECT results_eq($$SELECT world_id, strategy_id, error FROM run_mine ORDER BY 1, 2$$,
                  $$VALUES ('tap-live', 'good', NULL::text), ('tap-live', 'neg', NULL)$$,
                  'wval_live_run_all runs only the worlds the caller may write');
SELECT throws_ok($$SELECT wval_record_live_returns('tap-live-nopolicy', 'bypassed', '{2026-06-16}', '{0.01}')$$, '42501', NULL,
                 'and cannot record live returns elsewhere');
RESET ROLE;

------------------------------------------------------------------------------
-- the HTML report: self-contained, escaped, three charts
------------------------------------------------------------------------------

SELECT lives_ok($$SELECT wval_set_stage('tap-live', '<b>&"x', 'paper', 'vera', 'escaping test'),
                         wval_record_live_returns('tap-live', '<b>&"x',
                             ARRAY(SELECT d::date FROM generate_series('2026-05-11'::date, '2026-06-19', '1 day') d),
                             ARRAY(SELECT 0.002 + 0.01 * sin(i * 0.7) FROM generate_series(1, 40) i)),
                         wval_live_run('tap-live', '<b>&"x', '2026-06-20')$$, 'a strategy with markup in its name');
CREATE TEMP TABLE html AS SELECT wval_live_report('tap-live', '2026-06-20', 'html') AS h;
SELECT ok((SELECT h LIKE '<!DOCTYPE html>%</html>' FROM html), 'a complete HTML page');
SELECT is((SELECT count(*)::int FROM html, regexp_matches(h, '<svg ', 'g')), 8, 'three charts for the strategies with enough data, two for neg');
SELECT ok((SELECT h LIKE '%Equity curve%' AND h LIKE '%Drawdown%' AND h LIKE '%Rolling Sharpe%' FROM html), 'equity, drawdown and rolling Sharpe');
SELECT ok((SELECT h !~* '<script|<link|<img|src=|href=|url\(' FROM html), 'no scripts and no external assets');
SELECT ok((SELECT h LIKE '%&lt;b&gt;&amp;&quot;x%' AND h NOT LIKE '%<b>&"x%' FROM html), 'text is escaped');

SELECT * FROM finish();
ROLLBACK;
