-- pgTAP: retention for roles, policy versions, held worlds in a global purge,
-- partitions of a month the default partition already holds, the maintenance job
BEGIN;
SET client_min_messages = warning;
SELECT plan(48);

CREATE ROLE tap_ret_admin;     GRANT wval_admin TO tap_ret_admin;
CREATE ROLE tap_ret_validator; GRANT wval_validator TO tap_ret_validator;

-- fixtures: two worlds with old history
SELECT lives_ok($$SELECT wval_world_upsert('tap-ret', actor => 'dba'), wval_world_upsert('tap-held', actor => 'dba')$$, 'worlds');
SELECT is(wval_import_runs(jsonb_build_array(
    jsonb_build_object('world_id', 'tap-ret', 'strategy_id', 's1', 'created_at', '2021-01-10T00:00:00Z', 'status', 'pass',
                       'policy_version', 1, 'metrics', '{}'::jsonb),
    jsonb_build_object('world_id', 'tap-ret', 'strategy_id', 's1', 'created_at', '2021-02-10T00:00:00Z', 'status', 'pass',
                       'policy_version', 2, 'metrics', '{}'::jsonb),
    jsonb_build_object('world_id', 'tap-held', 'strategy_id', 's1', 'created_at', '2021-01-11T00:00:00Z', 'status', 'pass',
                       'metrics', '{}'::jsonb),
    jsonb_build_object('world_id', 'tap-held', 'strategy_id', 's1', 'created_at', '2021-02-11T00:00:00Z', 'status', 'pass',
                       'metrics', '{}'::jsonb))), 4, 'four old runs imported');
-- old policy versions and activations (a migration would bring them like this)
-- (written as wval's writers do: a plain INSERT is refused, also for a superuser)
CREATE FUNCTION pg_temp.as_writer(q text) RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $$ BEGIN EXECUTE q; END $$;
SELECT pg_temp.as_writer($$INSERT INTO wval.policy_versions (world_id, version, policy, author, created_at) VALUES
    ('tap-ret', 1, '{}', 'alice', '2021-01-01T00:00:00Z'),
    ('tap-ret', 2, '{}', 'alice', '2021-01-15T00:00:00Z'),
    ('tap-ret', 3, '{}', 'alice', '2021-01-20T00:00:00Z'),
    ('tap-ret', 4, '{}', 'alice', '2021-03-01T00:00:00Z')$$);
SELECT pg_temp.as_writer($$INSERT INTO wval.policy_activations (world_id, version, previous_version, activated_by, reason, activated_at) VALUES
    ('tap-ret', 1, NULL, 'bob', 'start', '2021-01-02T00:00:00Z'),
    ('tap-ret', 3, 1, 'bob', 'next', '2021-01-21T00:00:00Z'),
    ('tap-ret', 4, 3, 'bob', 'current', '2021-03-02T00:00:00Z')$$);
SELECT lives_ok($$SELECT wval_world_upsert('tap-held', legal_hold => true, actor => 'dba')$$, 'tap-held under legal hold');

-- an imported run is history: its recommendation justifies no promotion
SELECT wval_world_upsert('tap-ret-f', actor => 'dba');
SELECT is(wval_import_runs(jsonb_build_array(jsonb_build_object('world_id', 'tap-ret-f', 'strategy_id', 'fabricated',
              'created_at', to_char(now() - interval '1 minute', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), 'status', 'pass',
              'recommended_stage', 'paper_ok_live_candidate', 'metrics', '{}'::jsonb, 'created_by', 'quant-team'))),
          1, 'a recent pass run recommending live is imported');
SELECT ok((SELECT wval._imported(context) FROM wval.evaluation_runs WHERE world_id = 'tap-ret-f' AND strategy_id = 'fabricated'),
          'and marked imported');
SELECT throws_like($$SELECT wval_set_stage('tap-ret-f', 'fabricated', 'live', 'carol', 'run recommends live')$$,
                   'promotion of strategy "fabricated" to live is not justified%', 'it does not justify a promotion to live (WV009)');
SELECT throws_ok($$SELECT wval_set_stage('tap-ret-f', 'fabricated', 'paper', 'carol', 'run recommends paper')$$,
                 'WV009', NULL, 'nor to paper');
SELECT throws_ok($$SELECT wval_evaluate('tap-ret-f', 'fabricated', 'backtest', NULL, '{}', '{"imported": true}')$$,
                 '22023', '"context.imported" is reserved', 'an evaluation cannot pass itself off as imported');

-- roles: only admins set retention, purge and import
SET ROLE tap_ret_validator;
SELECT throws_ok($$SELECT wval_purge('2021-06-01', 'tap-ret')$$, '42501', NULL, 'validator cannot purge');
SELECT throws_ok($$SELECT wval_import_runs('[]')$$, '42501', NULL, 'validator cannot import');
SELECT throws_ok($$SELECT wval_retention_set('*', '1 year')$$, '42501', NULL, 'validator cannot set retention');
RESET ROLE;
SET ROLE tap_ret_admin;
SELECT is((wval_purge('2021-06-01', 'tap-ret') #>> '{worlds,tap-ret,tables,evaluation_runs,candidates}'), '1',
          'admin runs a dry purge');
SELECT throws_ok($$SELECT wval._purge_guard(true)$$, '42501', NULL, 'admin still cannot raise the guard directly');
RESET ROLE;

-- a global purge skips held worlds; policy versions go unless active or referenced by a kept run
CREATE TEMP TABLE dry AS SELECT wval_purge('2021-06-01') AS r;
SELECT ok((SELECT r -> 'legal_hold_skipped' ? 'tap-held' AND NOT r -> 'worlds' ? 'tap-held' FROM dry), 'held world skipped');
SELECT is((SELECT r #>> '{worlds,tap-ret,tables,policy_versions,candidates}' FROM dry), '2',
          'versions 1 and 3 are candidates (unreferenced by kept runs, not active)');
SELECT is((SELECT r #>> '{worlds,tap-ret,tables,policy_versions,protected}' FROM dry), '2',
          'version 2 (referenced by the kept run) and 4 (active) are protected');
SELECT is((SELECT r #>> '{worlds,tap-ret,tables,policy_activations,candidates}' FROM dry), '2',
          'the activations of versions 1 and 3 go with them');
-- a longer retention of policy versions in one world cuts them earlier in a global purge
SELECT lives_ok($$SELECT wval_retention_set('policy_versions', '20 years', 'tap-ret', actor => 'dba')$$, '20 years for versions');
SELECT is((wval_purge('2021-06-01') #>> '{worlds,tap-ret,tables,policy_versions,candidates}'), '0',
          'no version is old enough for 20 years');
SELECT throws_ok($$SELECT wval_purge('2021-06-01', 'tap-ret')$$, 'WV011', NULL, '... and a purge of that world refuses the cut');
SELECT lives_ok($$SELECT wval_retention_set('policy_versions', NULL, 'tap-ret', actor => 'dba')$$, 'setting removed');
SELECT is((SELECT (r #>> '{worlds,tap-ret,tables,policy_versions,deleted}')::int
                + (r #>> '{worlds,tap-ret,tables,evaluation_runs,deleted}')::int
           FROM wval_purge('2021-06-01', 'tap-ret', dry_run => false) r), 3, 'real purge: two versions and one run');
SELECT is((SELECT array_agg(version ORDER BY version) FROM wval.policy_versions WHERE world_id = 'tap-ret'), ARRAY[2, 4],
          'versions 2 (referenced) and 4 (active) remain');
SELECT is((SELECT array_agg(version ORDER BY activation_id) FROM wval.policy_activations WHERE world_id = 'tap-ret'), ARRAY[4],
          'the activation of version 4 remains');
SELECT ok(wval_verify_chain('tap-ret'), 'the chain verifies over the tombstones');
SELECT is((SELECT count(*)::int FROM wval.evaluation_runs WHERE world_id = 'tap-held'), 2, 'the held world kept everything');

-- the run a strategy's current stage decision relied on stays, although no longer its latest
SELECT is(wval_import_runs('[{"world_id": "tap-ret", "strategy_id": "s9", "created_at": "2021-01-05T00:00:00Z", "status": "pass",
                              "recommended_stage": "paper_only", "metrics": {}, "run_id": "s9-old"}]'), 1, 's9: a 2021 run');
-- (an imported recommendation justifies nothing: a validator approves the promotion, then withdraws the approval)
SELECT lives_ok($$SELECT wval_override((SELECT run_id FROM wval.evaluation_runs WHERE client_run_id = 's9-old'), 'approved',
                                       'migrated decision', 'olga')$$, 's9: the 2021 run approved');
SELECT is((wval_set_stage('tap-ret', 's9', 'paper', 'carol', 'promoted on the 2021 run')).run_id,
          (SELECT run_id FROM wval.evaluation_runs WHERE client_run_id = 's9-old'), 'the promotion relies on it');
SELECT lives_ok($$SELECT wval_override((SELECT run_id FROM wval.evaluation_runs WHERE client_run_id = 's9-old'), 'revoked',
                                       'decision recorded', 'olga')$$, 's9: the approval withdrawn');
SELECT is(wval_import_runs('[{"world_id": "tap-ret", "strategy_id": "s9", "created_at": "2021-02-05T00:00:00Z", "status": "pass",
                              "metrics": {}, "run_id": "s9-new"}]'), 1, 'a later run of s9');
SELECT is((wval_purge('2021-06-01', 'tap-ret') #>> '{worlds,tap-ret,tables,evaluation_runs,candidates}'), '0',
          'the run of the current stage decision is not a candidate');

-- a month whose rows already sit in the default partition: the import moves them into the new partition
SELECT lives_ok($$SELECT wval_policy_publish('tap-ret', '{"validation_profiles": {"backtest": {"performance": {"sharpe_min": 0.5}}}}', 'alice'),
                         wval_policy_activate('tap-ret', 5, 'bob', 'now')$$, 'a policy for today');
CREATE TEMP TABLE month AS
SELECT 'evaluation_runs_p' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMM') AS part,
       to_regclass('wval.evaluation_runs_p' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMM')) IS NULL AS absent;
SELECT lives_ok($$SELECT wval_evaluate('tap-ret', 'today', 'backtest', NULL, '{"returns": {"sharpe": 1}}')$$, 'a run of today');
SELECT is((SELECT CASE WHEN m.absent THEN r.tableoid::regclass::text ELSE 'wval.evaluation_runs_default' END
           FROM wval.evaluation_runs r, month m WHERE r.world_id = 'tap-ret' AND r.strategy_id = 'today'),
          'wval.evaluation_runs_default', 'without a partition for this month it lands in the default partition');
SELECT is(wval_import_runs(jsonb_build_array(jsonb_build_object('world_id', 'tap-ret', 'strategy_id', 'earlier-today',
          'created_at', greatest(date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', now() - interval '1 minute'),
          'status', 'pass', 'metrics', '{}'::jsonb))), 1, 'import into the current month');
SELECT is((SELECT r.tableoid::regclass::text FROM wval.evaluation_runs r WHERE r.world_id = 'tap-ret' AND r.strategy_id = 'today'),
          (SELECT 'wval.' || part FROM month), 'the earlier run moved into the month''s new partition');
SELECT ok(wval_verify_chain('tap-ret'), 'moved rows keep their chain');

-- the maintenance job
SELECT is(wval_schedule_maintenance() > 0, true, 'wval_schedule_maintenance registers a job');
SELECT results_eq($$SELECT schedule, command FROM cron.job WHERE jobname = 'wval:maintenance'$$,
                  $$VALUES ('30 3 * * *'::text, 'SELECT wval._maintenance(3)'::text)$$, 'daily job wval:maintenance');
DO $$
BEGIN
    -- live monitoring ships wval._trim_cron_history(keep default '14 days'); a stub where it does not
    IF NOT EXISTS (SELECT 1 FROM pg_proc WHERE pronamespace = 'wval'::regnamespace AND proname = '_trim_cron_history') THEN
        CREATE FUNCTION wval._trim_cron_history() RETURNS integer LANGUAGE sql AS 'SELECT 7';
    END IF;
END
$$;
SELECT ok(wval._maintenance(1) ? 'cron_history', 'the job trims pg_cron''s history when wval._trim_cron_history exists');

-- row-level security: an admin limited to one world purges and imports only there
CREATE ROLE tap_ret_limited; GRANT wval_admin TO tap_ret_limited;
SELECT lives_ok($$SELECT wval_world_revoke(r, '*', actor => 'dba')
                  FROM unnest(ARRAY['wval_admin', 'wval_validator', 'wval_producer', 'wval_analyst']::name[]) r;
                  SELECT wval_world_grant('tap_ret_limited', 'tap-ret', 'write', actor => 'dba')$$,
                'the * grants revoked; tap_ret_limited may write tap-ret');
SET ROLE tap_ret_limited;
SELECT throws_ok($$SELECT wval_purge('2021-06-01', 'tap-held')$$, 'WV010', NULL, 'a world it may not see does not exist');
SELECT throws_ok($$SELECT wval_import_runs('[{"world_id": "tap-held", "strategy_id": "x", "created_at": "2021-01-01",
                                               "status": "pass", "metrics": {}}]')$$, '42501', NULL,
                 'no import into a world it may not write');
SELECT ok((SELECT array_agg(k) = ARRAY['tap-ret'] FROM jsonb_object_keys(wval_purge('2021-06-01') -> 'worlds') k),
          'a purge of every world covers the worlds it may write');
RESET ROLE;

-- settings change only through wval_retention_set (audited), also for a superuser
SELECT lives_ok($$SELECT wval_retention_set('evaluation_runs', '3 years', 'tap-ret', actor => 'dba')$$, 'a setting to tamper with');
SELECT throws_ok($$UPDATE wval.retention SET keep = interval '91 days' WHERE world_id = 'tap-ret'$$, 'WV003', NULL,
                 'a direct UPDATE of a retention setting is refused, also for a superuser');
SELECT throws_ok($$DELETE FROM wval.retention WHERE world_id = 'tap-ret'$$, 'WV003', NULL,
                 'a direct DELETE of a retention setting is refused');

SELECT * FROM finish();
ROLLBACK;
