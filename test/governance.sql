-- pgTAP: separation of duties by database login (docs/roles.md, "People and logins").
-- SET SESSION AUTHORIZATION changes session_user, so one test session can act
-- as several logins.
BEGIN;
SET client_min_messages = warning;
SELECT plan(25);

CREATE ROLE gv_val1 LOGIN;  GRANT wval_validator TO gv_val1;
CREATE ROLE gv_val2 LOGIN;  GRANT wval_validator TO gv_val2;
CREATE ROLE gv_both LOGIN;  GRANT wval_validator, wval_producer TO gv_both;
CREATE ROLE gv_admin1 LOGIN; GRANT wval_admin TO gv_admin1;
SELECT wval_world_upsert('tap-gov', actor => 'dba');
CREATE TEMP TABLE gv (k text PRIMARY KEY, v text);
GRANT ALL ON gv TO PUBLIC;

-- the two-person rule: one login, two actor names, is still one person
SET SESSION AUTHORIZATION gv_val1;
SELECT is(wval_policy_publish('tap-gov', (SELECT policy FROM wval.sample_policies), 'val1'), 1, 'gv_val1 publishes v1 as "val1"');
SELECT throws_ok($$SELECT wval_policy_activate('tap-gov', 1, 'val2', 'forged second person')$$, 'WV009',
                 'login "gv_val1" published policy version 1 of world "tap-gov" and cannot also activate it',
                 'the same login activating under another actor name is WV009');
SELECT throws_ok($$SELECT wval_policy_activate('tap-gov', 1, 'val1', 'same name')$$, 'WV009', NULL,
                 'and under the same actor name too');
SELECT is(wval_active_policy_version('tap-gov'), NULL, 'nothing was activated');
SET SESSION AUTHORIZATION gv_val2;
SELECT is((wval_policy_activate('tap-gov', 1, 'val2', 'second person')).approved_by, 'gv_val2',
          'another login activates; approved_by is its login');
RESET SESSION AUTHORIZATION;
SELECT is((SELECT published_by::text FROM wval.policy_versions WHERE world_id = 'tap-gov' AND version = 1), 'gv_val1',
          'the version records the publishing login');
SELECT is((SELECT login::text FROM wval.audit_log WHERE world_id = 'tap-gov' AND action = 'policy_activated'), 'gv_val2',
          'the audit row records the acting login');
SELECT is((SELECT actor FROM wval.audit_log WHERE world_id = 'tap-gov' AND action = 'policy_activated'), 'val2',
          'and keeps the actor as a label');

-- overrides: the login that created a run does not approve an override on it
SET SESSION AUTHORIZATION gv_both;
INSERT INTO gv SELECT 'run', (wval_evaluate('tap-gov', 'gv-s1', 'backtest', NULL,
                                (SELECT metrics FROM wval.scenario_cases WHERE strategy_id = 'bad_low_sharpe'))).run_id;
SELECT is((SELECT created_by FROM wval.evaluation_runs WHERE run_id = (SELECT v::uuid FROM gv WHERE k = 'run')), 'gv_both',
          'the run records its creating role');
SELECT throws_ok($$SELECT wval_override((SELECT v::uuid FROM gv WHERE k = 'run'), 'approved', 'looks fine', 'someone-else')$$,
                 'WV009', NULL, 'its author''s login cannot approve an override on it, whatever actor it names');
SELECT lives_ok($$SELECT wval_override((SELECT v::uuid FROM gv WHERE k = 'run'), 'rejected', 'on second thought', 'both')$$,
                'rejecting is not approving');
SET SESSION AUTHORIZATION gv_val2;
SELECT is((wval_override((SELECT v::uuid FROM gv WHERE k = 'run'), 'approved', 'data error, checked', 'carol')).login::text,
          'gv_val2', 'another login approves; the override records its login');

-- promotions: the run's author does not promote the strategy on it
SET SESSION AUTHORIZATION gv_both;
INSERT INTO gv SELECT 'good', (wval_evaluate('tap-gov', 'gv-s2', 'backtest', NULL,
                                 (SELECT metrics FROM wval.scenario_cases WHERE strategy_id = 'good_set_1'))).run_id;
SELECT throws_ok($$SELECT wval_set_stage('tap-gov', 'gv-s2', 'paper', 'a reviewer', 'recommended')$$, 'WV009',
                 format('login "gv_both" created run %s and cannot also promote strategy "gv-s2" on it', (SELECT v FROM gv WHERE k = 'good')),
                 'the run''s author cannot promote on it');
SET SESSION AUTHORIZATION gv_val1;
SELECT is((wval_set_stage('tap-gov', 'gv-s2', 'paper', 'vera', 'recommended')).login::text, 'gv_val1',
          'another login promotes; the decision records its login');

-- a governance exception lets one login play both parts, for a while
SET SESSION AUTHORIZATION gv_val1;
SELECT is(wval_policy_publish('tap-gov', (SELECT policy FROM wval.sample_policies), 'val1'), 2, 'gv_val1 publishes v2');
SET SESSION AUTHORIZATION gv_admin1;
SELECT throws_ok($$SELECT wval_governance_exception('tap-gov', 'gv_admin1', 'two_person', 'myself')$$, 'WV009', NULL,
                 'an admin cannot record an exception for its own login');
SELECT throws_ok($$SELECT wval_governance_exception('tap-gov', 'gv_val1', 'three_person', 'typo')$$, '22023', NULL,
                 'unknown rule is 22023');
SELECT throws_ok($$SELECT wval_governance_exception('tap-gov', 'gv_val1', 'two_person', 'too long', interval '90 days')$$, '22023', NULL,
                 'exceptions last 30 days at most');
SELECT is((wval_governance_exception('tap-gov', 'gv_val1', 'two_person', 'second validator on leave', interval '1 hour', 'ada')).granted_by::text,
          'gv_admin1', 'another admin records the exception');
SET SESSION AUTHORIZATION gv_val1;
SELECT lives_ok($$SELECT wval_policy_activate('tap-gov', 2, 'val1 as deputy', 'covered by the exception')$$,
                'with the exception the same login activates');
RESET SESSION AUTHORIZATION;
SELECT is((SELECT details -> 'governance_exceptions' -> 0 ->> 'rule' FROM wval.policy_activations
           WHERE world_id = 'tap-gov' AND version = 2), 'two_person', 'the activation records the exception it used');
SELECT ok((SELECT v.row_hash IS NOT NULL FROM wval.governance_exceptions v WHERE world_id = 'tap-gov'),
          'exceptions are chained history');
SELECT ok(wval_verify_chain('tap-gov'), 'the world''s chain verifies');

-- a superuser session is let through, and the audit row says so
SELECT is(wval_policy_publish('tap-gov', (SELECT policy FROM wval.sample_policies), 'dba'), 3, 'a superuser publishes v3');
SELECT wval_policy_activate('tap-gov', 3, 'dba2', 'superuser session');
SELECT ok((SELECT (details -> 'separation_of_duties' ->> 'superuser')::boolean FROM wval.audit_log
           WHERE world_id = 'tap-gov' AND action = 'policy_activated' ORDER BY id DESC LIMIT 1),
          'the audit row of a superuser''s own activation records it');

SELECT * FROM finish();
ROLLBACK;
