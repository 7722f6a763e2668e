-- pgTAP: the lifecycle loops (docs/lifecycle.md): staged rollout of a policy
-- version, re-validation of deployed strategies after an activation (the
-- queue and the job's command), override requests.
BEGIN;
SET client_min_messages = warning;
SELECT plan(64);

CREATE ROLE lc_val1 LOGIN;  GRANT wval_validator TO lc_val1;
CREATE ROLE lc_val2 LOGIN;  GRANT wval_validator TO lc_val2;
CREATE ROLE lc_val3 LOGIN;  GRANT wval_validator TO lc_val3;
CREATE ROLE lc_owner LOGIN; GRANT wval_producer TO lc_owner;
CREATE ROLE lc_both LOGIN;  GRANT wval_producer, wval_validator TO lc_both;
SELECT wval_world_upsert('tap-life', actor => 'dba');
SELECT wval_world_upsert('tap-life-hi', risk_tier => 'high', actor => 'dba');
CREATE TEMP TABLE lc (k text PRIMARY KEY, v text);
GRANT ALL ON lc TO PUBLIC;

-- a passing case that recommends paper under the sample policy, a stricter policy
INSERT INTO lc SELECT 'good', c.strategy_id FROM wval.scenario_cases c
WHERE wval_check((SELECT policy FROM wval.sample_policies WHERE name = 'sample'), c.metrics, 'backtest') ->> 'recommended_stage'
      IN ('paper_only', 'paper_ok_live_candidate')
  AND wval_check((SELECT policy FROM wval.sample_policies WHERE name = 'sample'), c.metrics, 'backtest') ->> 'status' = 'pass'
ORDER BY c.set_name, c.strategy_id LIMIT 1;
INSERT INTO lc VALUES ('strict', jsonb_set((SELECT policy FROM wval.sample_policies WHERE name = 'sample'),
                                           '{validation_profiles,backtest,performance,sharpe_min}', '50')::text);

SET SESSION AUTHORIZATION lc_val1;
SELECT wval_policy_publish(w, (SELECT policy FROM wval.sample_policies WHERE name = 'sample'), 'val1')
FROM unnest(ARRAY['tap-life', 'tap-life-hi']) w;
SET SESSION AUTHORIZATION lc_val2;
SELECT wval_policy_activate(w, 1, 'val2', 'first') FROM unnest(ARRAY['tap-life', 'tap-life-hi']) w;
RESET SESSION AUTHORIZATION;

-- history: the deployed strategy (paper) and one that stays at backtest
INSERT INTO lc SELECT 'run', (wval_evaluate('tap-life', 'lc-deployed', 'backtest', NULL,
                              (SELECT metrics FROM wval.scenario_cases WHERE strategy_id = (SELECT v FROM lc WHERE k = 'good')),
                              '{"run_id": "lc-deployed-1"}')).run_id;
SELECT wval_evaluate('tap-life', 'lc-idle', 'backtest', NULL,
                     (SELECT metrics FROM wval.scenario_cases WHERE strategy_id = (SELECT v FROM lc WHERE k = 'good')));
SET SESSION AUTHORIZATION lc_val1;
SELECT is((wval_set_stage('tap-life', 'lc-deployed', 'paper', 'val1', 'good backtest')).stage, 'paper',
          'the strategy is promoted to paper on its run');
SELECT is(wval_policy_publish('tap-life', (SELECT v::jsonb FROM lc WHERE k = 'strict'), 'val1', 'sharpe_min 50'), 2,
          'a stricter version 2 is published');
RESET SESSION AUTHORIZATION;

------------------------------------------------------------------------------
-- 2. staged rollout
------------------------------------------------------------------------------
SET SESSION AUTHORIZATION lc_val2;
SELECT throws_ok($$SELECT wval_policy_activate('tap-life', 2, 'val2', 'bad stages', stages => ARRAY['backtest', 'prod'])$$,
                 '22023', 'invalid value for "stages"', 'an unknown stage is 22023');
SELECT throws_ok($$SELECT wval_policy_activate('tap-life', 2, 'val2', 'no stages', stages => '{}')$$,
                 '22023', 'invalid value for "stages"', 'an empty list of stages is 22023');
SELECT throws_ok($$SELECT wval_policy_activate('tap-life', 2, 'val2', '2-D', stages => '{{backtest},{paper}}')$$,
                 '22023', 'invalid value for "stages"', 'a two-dimensional list of stages is 22023');
SELECT throws_ok($$SELECT wval_policy_activate('tap-life', 2, 'val2', 'backtest first', stages => ARRAY['backtest'])$$,
                 'WV008', NULL, 'the impact gate applies to a staged activation (its stage''s history flips)');
SELECT is((wval_policy_activate('tap-life', 2, 'val2', 'backtest first', true, ARRAY['backtest', 'backtest'])).stages,
          ARRAY['backtest'], 'forced through the gate, version 2 is active at backtest only (duplicates folded)');
RESET SESSION AUTHORIZATION;
SELECT is((SELECT details #> '{impact_gate,stage}' FROM wval.policy_activations WHERE world_id = 'tap-life' AND version = 2),
          '"backtest"', 'the gate was computed at the activation''s stage');
SELECT is((SELECT array_agg(k ORDER BY k) FROM wval.policy_activations a, jsonb_object_keys(a.details #> '{impact_gate,stages}') k
           WHERE a.world_id = 'tap-life' AND a.version = 2), ARRAY['backtest'],
          'and only there: the other stages keep version 1');
SELECT is((SELECT details -> 'previous_versions' FROM wval.policy_activations WHERE world_id = 'tap-life' AND version = 2),
          '{"backtest": 1}'::jsonb, 'the activation records the version each of its stages had');
SELECT is(wval_active_policy_version('tap-life', 'backtest'), 2, 'active at backtest: 2');
SELECT is(wval_active_policy_version('tap-life', 'paper'), 1, 'active at paper: still 1');
SELECT is(wval_active_policy_version('tap-life'), 2, 'without a stage: the latest activation');
SELECT throws_ok($$SELECT wval_active_policy_version('tap-life', 'prod')$$, '22023', NULL, 'an unknown stage is 22023');
SELECT results_eq($$SELECT stage::text, version FROM wval.active_policy_versions WHERE world_id = 'tap-life' ORDER BY stage$$,
                  $$VALUES ('backtest', 2), ('live', 1), ('paper', 1), ('shadow', 1)$$,
                  'wval.active_policy_versions answers per stage');
SELECT is(wval_ruleset('tap-life', 'backtest') #>> '{checks,performance.sharpe_min,threshold}', '50',
          'wval_ruleset of backtest is version 2''s');
-- evaluate uses the version of the run's stage, alternating in one backend (the cache keeps both)
SELECT is((wval_evaluate('tap-life', 'lc-x', 'backtest', NULL, (SELECT metrics FROM wval.scenario_cases WHERE strategy_id = (SELECT v FROM lc WHERE k = 'good')))).policy_version,
          2, 'a backtest run is evaluated under version 2');
SELECT is((wval_evaluate('tap-life', 'lc-x', 'paper', NULL, (SELECT metrics FROM wval.scenario_cases WHERE strategy_id = (SELECT v FROM lc WHERE k = 'good')))).policy_version,
          1, 'a paper run under version 1');
SELECT is((wval_evaluate('tap-life', 'lc-x', 'backtest', NULL, (SELECT metrics FROM wval.scenario_cases WHERE strategy_id = (SELECT v FROM lc WHERE k = 'good')))).status,
          'fail', 'and a backtest run again under version 2 (fails its sharpe_min 50)');
SELECT is((SELECT payload #> '{data,stages}' FROM wval.events WHERE world_id = 'tap-life' AND type = 'validation_profile_changed'
           ORDER BY event_id DESC LIMIT 1), '["backtest"]'::jsonb, 'validation_profile_changed names the stages');
SET SESSION AUTHORIZATION lc_val1;
SELECT throws_ok($$SELECT wval_policy_activate('tap-life', 2, 'someone', 'paper next', stages => ARRAY['paper'])$$,
                 'WV009', NULL, 'the two-person rule holds for every staged activation (the publisher''s login)');
RESET SESSION AUTHORIZATION;

------------------------------------------------------------------------------
-- 1. re-validation after the activation
------------------------------------------------------------------------------
SELECT results_eq($$SELECT strategy_id, deployed_stage::text, state, run_id::text FROM wval.revalidation_queue WHERE world_id = 'tap-life'$$,
                  $$SELECT 'lc-deployed', 'paper', 'pending', v FROM lc WHERE k = 'run'$$,
                  'the activation queued the deployed strategy with its latest run (not the strategy at backtest)');
SELECT is((SELECT count(*)::int FROM wval.evaluation_runs WHERE world_id = 'tap-life' AND kind = 'revalidation'), 0,
          'nothing was re-checked in the activating transaction');
SELECT results_eq($$SELECT items, pending, done FROM wval.revalidation_progress WHERE world_id = 'tap-life'$$,
                  $$VALUES (1::bigint, 1::bigint, 0::bigint)$$, 'wval.revalidation_progress shows the backlog');
SELECT is((SELECT value FROM wval.metrics WHERE name = 'wval_revalidation_backlog' AND labels ->> 'world_id' = 'tap-life'),
          1::float8, 'and so does the metric wval_revalidation_backlog');
SELECT matches(wval_metrics_prometheus(), 'wval_revalidation_backlog\{world_id="tap-life"\} 1',
               'in the Prometheus exposition too');

-- the scheduled job, run as pg_cron runs it: its command
SELECT ok(wval_schedule_revalidation('* * * * *', 50) > 0, 'wval_schedule_revalidation registers the job');
SELECT is((SELECT command FROM cron.job WHERE jobname = 'wval:revalidate'), 'SELECT public.wval_revalidate(50, 50000)',
          'as wval:revalidate, with a bounded batch');
SELECT throws_ok($$SELECT wval_revalidate(0)$$, '22023', 'invalid value for "max_items"', 'max_items is bounded');
DO $$ BEGIN EXECUTE (SELECT command FROM cron.job WHERE jobname = 'wval:revalidate'); END $$;
SELECT results_eq($$SELECT state, outcome, attempts FROM wval.revalidation_queue WHERE world_id = 'tap-life'$$,
                  $$VALUES ('done', 'worsened', 1)$$, 'the job re-checked the strategy: worsened');
SELECT results_eq($$SELECT r.kind, r.stage::text, r.policy_version, r.status, r.linked_run_id::text
                    FROM wval.evaluation_runs r JOIN wval.revalidation_queue q ON q.revalidation_run_id = r.run_id
                    WHERE q.world_id = 'tap-life'$$,
                  $$SELECT 'revalidation', 'backtest', 2, 'fail', v FROM lc WHERE k = 'run'$$,
                  'as a recorded run of kind revalidation under version 2, linked to the run it re-checked');
SELECT is((SELECT r.metrics #> '{returns,sharpe}' FROM wval.evaluation_runs r JOIN wval.revalidation_queue q
           ON q.revalidation_run_id = r.run_id WHERE q.world_id = 'tap-life'),
          (SELECT metrics #> '{returns,sharpe}' FROM wval.evaluation_runs WHERE run_id = (SELECT v::uuid FROM lc WHERE k = 'run')),
          'from the stored metrics of that run');
SELECT results_eq($$SELECT strategy_id, stage::text, trigger FROM wval.open_demotion_candidates WHERE world_id = 'tap-life'$$,
                  $$VALUES ('lc-deployed', 'paper', 'revalidation')$$,
                  'the strategy is an open demotion candidate at its deployed stage');
SELECT is((SELECT payload #>> '{data,trigger}' FROM wval.events WHERE world_id = 'tap-life' AND type = 'demotion_candidate_flagged'),
          'revalidation', 'demotion_candidate_flagged was emitted');
SELECT is((SELECT payload #>> '{data,linked_run_id}' FROM wval.events WHERE world_id = 'tap-life' AND type = 'demotion_candidate_flagged'),
          (SELECT v FROM lc WHERE k = 'run'), 'naming the run re-checked');
SELECT is((SELECT value FROM wval.metrics WHERE name = 'wval_revalidation_backlog' AND labels ->> 'world_id' = 'tap-life'),
          0::float8, 'the backlog is empty');
SELECT is((wval_revalidate()) ->> 'done', '0', 'a second run of the job finds nothing to do');
SELECT ok(wval_verify_chain('tap-life'), 'the chain holds');
-- a decision closes the candidate
SET SESSION AUTHORIZATION lc_val1;
SELECT wval_set_stage('tap-life', 'lc-deployed', 'backtest', 'val1', 'demoted after the re-validation');
RESET SESSION AUTHORIZATION;
SELECT is((SELECT count(*)::int FROM wval.open_demotion_candidates WHERE world_id = 'tap-life'), 0,
          'a stage decision closes the candidate');
SELECT wval_unschedule('revalidate');

------------------------------------------------------------------------------
-- 3. override requests
------------------------------------------------------------------------------
INSERT INTO lc SELECT 'bad', (wval_evaluate('tap-life', 'lc-bad', 'backtest', NULL,
                              (SELECT metrics FROM wval.scenario_cases WHERE strategy_id = 'bad_low_sharpe'))).run_id;
INSERT INTO lc SELECT 'bad2', (wval_evaluate('tap-life', 'lc-bad2', 'backtest', NULL,
                               (SELECT metrics FROM wval.scenario_cases WHERE strategy_id = 'bad_low_sharpe'))).run_id;
INSERT INTO lc SELECT 'badhi', (wval_evaluate('tap-life-hi', 'lc-badhi', 'backtest', NULL,
                                (SELECT metrics FROM wval.scenario_cases WHERE strategy_id = 'bad_low_sharpe'))).run_id;

SET SESSION AUTHORIZATION lc_owner;
SELECT throws_ok($$SELECT wval_override_request((SELECT v::uuid FROM lc WHERE k = 'bad'), ' ', 'owner')$$,
                 '22023', NULL, 'a request needs a reason');
INSERT INTO lc SELECT 'req', (wval_override_request((SELECT v::uuid FROM lc WHERE k = 'bad'), 'vendor data gap', 'owner')).request_id;
SELECT results_eq($$SELECT state, approvals_required, open, overdue FROM wval.current_override_requests
                    WHERE request_id = (SELECT v::uuid FROM lc WHERE k = 'req')$$,
                  $$VALUES ('requested', 1::integer, true, false)$$, 'the owner''s request is open, one approval needed');
SELECT ok((SELECT due_at - requested_at BETWEEN interval '2 days' - interval '1 second' AND interval '2 days' + interval '1 second'
           FROM wval.current_override_requests WHERE request_id = (SELECT v::uuid FROM lc WHERE k = 'req')),
          'due in two days (the default SLA)');
SELECT throws_ok($$SELECT wval_override_request((SELECT v::uuid FROM lc WHERE k = 'bad'), 'again', 'owner')$$,
                 'WV009', NULL, 'one open request per run');
SELECT throws_ok($$SELECT wval_override_approve((SELECT v::uuid FROM lc WHERE k = 'req'), 'fine', 'owner')$$,
                 '42501', NULL, 'a producer cannot approve');
RESET SESSION AUTHORIZATION;
SELECT is((SELECT count(*)::int FROM wval.events WHERE world_id = 'tap-life' AND type = 'override_requested'), 1,
          'override_requested was emitted');

SET SESSION AUTHORIZATION lc_val1;
SELECT is((wval_override_approve((SELECT v::uuid FROM lc WHERE k = 'req'), 'data gap confirmed', 'val1')).state, 'approved',
          'a validator approves');
SELECT throws_ok($$SELECT wval_override_reject((SELECT v::uuid FROM lc WHERE k = 'req'), 'too late', 'val1')$$,
                 'WV009', NULL, 'a decided request takes no further decision');
RESET SESSION AUTHORIZATION;
SELECT is((SELECT format('%s %s %s', o.status, o.login, o.override_id) FROM wval.current_overrides o
           WHERE o.run_id = (SELECT v::uuid FROM lc WHERE k = 'bad')),
          (SELECT format('approved lc_val1 %s', override_id) FROM wval.current_override_requests
           WHERE request_id = (SELECT v::uuid FROM lc WHERE k = 'req')),
          'the approval recorded the override through the override path (its id is in the request)');
SELECT is((SELECT payload #>> '{data,final}' FROM wval.events WHERE world_id = 'tap-life' AND type = 'override_request_approved'),
          'true', 'override_request_approved was emitted');

-- the requester's login does not decide, whatever roles it has
SET SESSION AUTHORIZATION lc_both;
INSERT INTO lc SELECT 'req2', (wval_override_request((SELECT v::uuid FROM lc WHERE k = 'bad2'), 'please', 'both')).request_id;
SELECT throws_ok($$SELECT wval_override_approve((SELECT v::uuid FROM lc WHERE k = 'req2'), 'self', 'someone-else')$$,
                 'WV009', NULL, 'the requester''s login cannot approve its own request');
SELECT throws_ok($$SELECT wval_override_reject((SELECT v::uuid FROM lc WHERE k = 'req2'), 'self', 'someone-else')$$,
                 'WV009', NULL, 'nor reject it');
SET SESSION AUTHORIZATION lc_val2;
SELECT is((wval_override_reject((SELECT v::uuid FROM lc WHERE k = 'req2'), 'not a data issue', 'val2')).state, 'rejected',
          'another validator rejects');
RESET SESSION AUTHORIZATION;
SELECT is((SELECT count(*)::int FROM wval.current_overrides WHERE run_id = (SELECT v::uuid FROM lc WHERE k = 'bad2')), 0,
          'a rejection records no override');
SELECT is((SELECT count(*)::int FROM wval.events WHERE world_id = 'tap-life' AND type = 'override_request_rejected'), 1,
          'override_request_rejected was emitted');

-- a high-tier world needs two approvers, two logins
SET SESSION AUTHORIZATION lc_owner;
INSERT INTO lc SELECT 'reqhi', (wval_override_request((SELECT v::uuid FROM lc WHERE k = 'badhi'), 'model change pending', 'owner')).request_id;
SET SESSION AUTHORIZATION lc_val1;
SELECT is((wval_override_approve((SELECT v::uuid FROM lc WHERE k = 'reqhi'), 'ok by me', 'val1')).state, 'approval',
          'high tier: the first approval keeps the request open');
SELECT throws_ok($$SELECT wval_override_approve((SELECT v::uuid FROM lc WHERE k = 'reqhi'), 'ok twice', 'val1b')$$,
                 'WV009', NULL, 'the same login cannot give the second approval');
RESET SESSION AUTHORIZATION;
SELECT is((SELECT count(*)::int FROM wval.current_overrides WHERE run_id = (SELECT v::uuid FROM lc WHERE k = 'badhi')), 0,
          'no override yet');
SET SESSION AUTHORIZATION lc_val3;
SELECT is((wval_override_approve((SELECT v::uuid FROM lc WHERE k = 'reqhi'), 'ok by me too', 'val3')).state, 'approved',
          'a second login approves: approved');
RESET SESSION AUTHORIZATION;
SELECT is((SELECT approvals || ': ' || array_to_string(approver_logins, ', ') FROM wval.current_override_requests
           WHERE request_id = (SELECT v::uuid FROM lc WHERE k = 'reqhi')),
          '2: lc_val1, lc_val3', 'with both approvers recorded');
SELECT is((SELECT status FROM wval.current_overrides WHERE run_id = (SELECT v::uuid FROM lc WHERE k = 'badhi')), 'approved',
          'and the override recorded');

-- the SLA: a world setting; an overdue request shows in the view and the metric
SELECT wval_world_upsert('tap-life', settings => '{"override_request_sla": "1s"}', actor => 'dba');
SET SESSION AUTHORIZATION lc_owner;
INSERT INTO lc SELECT 'req3', (wval_override_request((SELECT v::uuid FROM lc WHERE k = 'bad2'), 'asked again', 'owner')).request_id;
RESET SESSION AUTHORIZATION;
SELECT is((SELECT count(*)::int FROM wval.overdue_override_requests WHERE world_id = 'tap-life'), 0, 'not overdue at first');
SELECT pg_sleep(1.2);
SELECT is((SELECT request_id::text FROM wval.overdue_override_requests WHERE world_id = 'tap-life'),
          (SELECT v FROM lc WHERE k = 'req3'), 'past its SLA of one second it is overdue');
SELECT is((SELECT value FROM wval.metrics WHERE name = 'wval_override_requests_overdue' AND labels ->> 'world_id' = 'tap-life'),
          1::float8, 'wval_override_requests_overdue counts it');
SELECT ok(wval_verify_chain('tap-life') AND wval_verify_chain('tap-life-hi'), 'the chains hold');

SELECT * FROM finish();
ROLLBACK;
