-- pgTAP: the store's behaviour for roles, privileges, guards, audit and dump registration
BEGIN;
SET client_min_messages = warning;
SELECT plan(50);

-- the tables and views of spec store.md
SELECT has_table('wval', t, 'table wval.' || t) FROM unnest(ARRAY['worlds', 'policy_versions',
    'policy_activations', 'evaluation_runs', 'rule_results', 'overrides', 'ex_post_failures',
    'audit_log', 'events']) AS t;
SELECT has_view('wval', v, 'view wval.' || v) FROM unnest(ARRAY['latest_runs', 'override_queue',
    'current_overrides', 'ex_post_cases']) AS v;

-- the four roles exist and cannot log in
SELECT is((SELECT count(*)::int FROM pg_roles WHERE rolname IN ('wval_admin', 'wval_validator',
          'wval_producer', 'wval_analyst') AND NOT rolcanlogin), 4, 'four NOLOGIN roles');

-- PUBLIC gets nothing: no function and no table of the extension
SELECT is((SELECT count(*)::int FROM pg_proc p
           JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
           JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'wval'
           WHERE has_function_privilege('public', p.oid, 'EXECUTE')), 0,
          'no wval function is executable by PUBLIC');
SELECT is((SELECT count(*)::int FROM pg_class c WHERE c.relnamespace = 'wval'::regnamespace
           AND c.relkind IN ('r', 'p', 'v') AND has_table_privilege('public', c.oid, 'SELECT')), 0,
          'no wval table or view is readable by PUBLIC');

-- every data table is dumped with the database
SELECT ok((SELECT bool_and(to_regclass('wval.' || t) = ANY (e.extconfig))
           FROM pg_extension e, unnest(ARRAY['worlds', 'policy_versions', 'policy_activations',
                'evaluation_runs_default', 'rule_results_default', 'overrides', 'ex_post_failures',
                'audit_log', 'events', 'chain_heads', 'chain_tombstones']) AS t
           WHERE e.extname = 'wval'), 'data tables are registered with pg_extension_config_dump');

-- fixtures: a world, a policy, a run
SELECT lives_ok($$SELECT wval_world_upsert('tap-store', 'high', true, actor => 'dba')$$, 'world created');
SELECT is(wval_policy_publish('tap-store', '{"validation_profiles": {}}', 'alice'), 1, 'first version is 1');
INSERT INTO wval.evaluation_runs (run_id, world_id, strategy_id, stage, status, created_by)
VALUES ('00000000-0000-0000-0000-0000000000aa', 'tap-store', 's1', 'backtest', 'fail', 'quant-bot');

CREATE ROLE tap_analyst;   GRANT wval_analyst TO tap_analyst;
CREATE ROLE tap_validator; GRANT wval_validator TO tap_validator;
CREATE ROLE tap_admin;     GRANT wval_admin TO tap_admin;
CREATE ROLE tap_careless;  GRANT wval_analyst TO tap_careless;
GRANT ALL ON wval.evaluation_runs, wval.evaluation_runs_default, wval.audit_log TO tap_careless;

-- analysts read, nothing else
SET ROLE tap_analyst;
SELECT is((SELECT count(*)::int FROM wval.evaluation_runs WHERE world_id = 'tap-store'), 1, 'analyst reads runs');
SELECT ok(wval_verify_chain('tap-store'), 'analyst verifies the chain');
SELECT throws_ok($$SELECT wval_policy_publish('tap-store', '{}', 'mallory')$$, '42501', NULL,
                 'analyst cannot publish');
SELECT throws_ok($$INSERT INTO wval.evaluation_runs (world_id, strategy_id, stage, status, created_by)
                   VALUES ('tap-store', 'forged', 'live', 'pass', 'mallory')$$, '42501', NULL,
                 'analyst cannot insert a run');
SELECT throws_ok($$UPDATE wval.evaluation_runs SET status = 'pass'$$, '42501', NULL,
                 'analyst has no UPDATE privilege');
SELECT throws_ok($$SELECT wval._purge_guard(true)$$, '42501', NULL, 'analyst cannot raise the retention guard');
RESET ROLE;

-- a role granted every privilege by a careless DBA still cannot rewrite history
SET ROLE tap_careless;
SELECT throws_ok($$UPDATE wval.evaluation_runs SET status = 'pass' WHERE world_id = 'tap-store'$$, 'WV003', NULL,
                 'UPDATE by a non-owner with privileges: WV003');
SELECT throws_ok($$DELETE FROM wval.evaluation_runs WHERE world_id = 'tap-store'$$, 'WV003', NULL,
                 'DELETE by a non-owner with privileges: WV003');
SELECT throws_ok($$TRUNCATE wval.audit_log$$, 'WV003', NULL, 'TRUNCATE by a non-owner with privileges: WV003');
SELECT throws_ok($$TRUNCATE wval.evaluation_runs$$, 'WV003', NULL, 'TRUNCATE of a partitioned table: WV003');
RESET ROLE;

-- the owner (this superuser session) cannot either
SELECT throws_ok($$UPDATE wval.policy_versions SET note = 'x'$$, 'WV003', NULL, 'owner UPDATE: WV003');
SELECT throws_ok($$DELETE FROM wval.policy_versions$$, 'WV003', NULL, 'owner DELETE: WV003');
SELECT throws_ok($$TRUNCATE wval.overrides$$, 'WV003', NULL, 'owner TRUNCATE: WV003');
SELECT throws_ok($$UPDATE wval.events SET type = 'x'$$, 'WV003', NULL, 'outbox UPDATE: WV003');

-- validators publish, activate and approve; they do not administer worlds
SET ROLE tap_validator;
SELECT is(wval_policy_publish('tap-store', '{"validation_profiles": {}}', 'alice'), 2, 'validator publishes version 2');
SELECT is((wval_policy_activate('tap-store', 2, 'bob', 'rollout')).version, 2, 'validator activates');
SELECT is((wval_override('00000000-0000-0000-0000-0000000000aa', 'approved', 'data gap', 'carol')).status,
          'approved', 'validator approves an override');
SELECT throws_ok($$SELECT wval_world_upsert('tap-other')$$, '42501', NULL, 'validator cannot create worlds');
SELECT throws_ok($$SELECT wval_override('00000000-0000-0000-0000-0000000000aa', 'approved', ' ', 'carol')$$,
                 'WV009', 'an approved override needs reason', 'approval without reason: WV009');
RESET ROLE;

SET ROLE tap_admin;
SELECT lives_ok($$SELECT wval_world_upsert('tap-store', legal_hold => true, actor => 'dba')$$, 'admin changes a world');
SELECT throws_ok($$SELECT wval._purge_guard(true)$$, '42501', NULL, 'admin cannot raise the retention guard directly');
RESET ROLE;

-- review dates: high-tier client-critical world -> 30 days
SELECT is((SELECT review_due_at - recorded_at FROM wval.overrides WHERE world_id = 'tap-store'),
          interval '30 days', 'high-tier critical world: review in 30 days');

-- every administrative act is in the audit log, with the database user
SELECT results_eq(
    $$SELECT action, actor FROM wval.audit_log WHERE world_id = 'tap-store' ORDER BY id$$,
    $$VALUES ('world_created', 'dba'), ('policy_published', 'alice'), ('policy_published', 'alice'),
             ('policy_activated', 'bob'), ('override_approved', 'carol'), ('world_updated', 'dba')$$,
    'audit rows for create, publish x2, activate, approve, change');
SELECT is((SELECT db_user FROM wval.audit_log WHERE world_id = 'tap-store' AND action = 'policy_activated'),
          'tap_validator', 'audit keeps the database user next to the actor');
SELECT is((SELECT details->'new'->>'legal_hold' FROM wval.audit_log WHERE world_id = 'tap-store' AND action = 'world_updated'),
          'true', 'world changes are audited with old and new values');

-- the guarded retention path: only while the guard is up, and only DELETE
SELECT lives_ok($$SELECT wval._purge_guard(true)$$, 'owner raises the guard');
SELECT throws_ok($$UPDATE wval.events SET type = 'x' WHERE world_id = 'tap-store'$$, 'WV003', NULL,
                 'UPDATE is refused even under the guard');
SELECT lives_ok($$DELETE FROM wval.events WHERE world_id = 'tap-store'$$, 'DELETE passes under the guard');
SELECT is((SELECT count(*)::int FROM wval.events WHERE world_id = 'tap-store'), 0, 'the rows are gone');
SELECT lives_ok($$SELECT wval._purge_guard(false)$$, 'guard lowered');
SELECT throws_ok($$DELETE FROM wval.audit_log WHERE world_id = 'tap-store'$$, 'WV003', NULL,
                 'DELETE refused again once the guard is down');

SELECT * FROM finish();
ROLLBACK;
