-- pgTAP: DROP EXTENSION wval is refused while history exists (WV003) unless a
-- superuser sets wval.allow_drop; an allowed drop removes wval's pg_cron jobs.
BEGIN;
SET client_min_messages = warning;
SELECT plan(12);

-- some history of our own (the other files may have left more)
SELECT lives_ok($$SELECT wval_world_upsert('tap-drop', actor => 'dba'),
                         wval_policy_publish('tap-drop', (SELECT policy FROM wval.sample_policies), 'alice'),
                         wval_policy_activate('tap-drop', 1, 'bob', 'sample')$$, 'a world with a policy');
SELECT lives_ok($$SELECT wval_evaluate('tap-drop', 's1', 'backtest', NULL,
                    (SELECT metrics FROM wval.scenario_cases WHERE strategy_id = 'good_set_1'))$$, 'one run');
CREATE TEMP TABLE drop_before AS SELECT count(*) AS runs FROM wval.evaluation_runs;

SELECT throws_ok('DROP EXTENSION wval', 'WV003',
                 'wval holds history: dropping the extension would delete it',
                 'DROP EXTENSION wval is refused while history exists');
SELECT throws_ok('DROP EXTENSION wval CASCADE', 'WV003', NULL, 'CASCADE does not help');
SELECT throws_ok('DROP SCHEMA wval CASCADE', 'WV003', NULL, 'nor does dropping the schema');
SELECT throws_ok('DROP EXTENSION IF EXISTS pgtap_nothing, wval', 'WV003', NULL,
                 'nor naming wval among other extensions');
SELECT is((SELECT count(*) FROM wval.evaluation_runs), (SELECT runs FROM drop_before),
          'the history is intact after the refusals');

-- only a superuser may confirm
CREATE ROLE tap_drop_admin; GRANT wval_admin TO tap_drop_admin;
SET ROLE tap_drop_admin;
SELECT throws_ok('SET wval.allow_drop = on', '42501', NULL, 'a non-superuser cannot set wval.allow_drop');
RESET ROLE;
-- other drops are not wval's business, whoever runs them
DO $$ BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO tap_drop_admin', current_database()); END $$;
SET ROLE tap_drop_admin;
CREATE SCHEMA tap_drop_own;
SELECT lives_ok('DROP SCHEMA tap_drop_own', 'a non-superuser drops a schema of its own');
RESET ROLE;

-- an allowed drop (rolled back with the test) takes the pg_cron jobs with it
SELECT wval_schedule_watchdog('*/5 * * * *');
SELECT is((SELECT count(*)::int FROM cron.job WHERE jobname = 'wval:watchdog'), 1, 'a wval job is scheduled');
SET wval.allow_drop = on;
SELECT lives_ok('DROP EXTENSION wval CASCADE', 'with wval.allow_drop = on the superuser may drop');
SELECT is((SELECT count(*)::int FROM cron.job WHERE jobname LIKE 'wval:%' AND database = current_database()), 0,
          'the drop removed wval''s pg_cron jobs');

SELECT * FROM finish();
ROLLBACK;
