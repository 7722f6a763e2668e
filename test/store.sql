-- pgTAP: the store's behaviour for roles, privileges, guards, audit and dump registration
BEGIN;
SET client_min_messages = warning;
SELECT plan(78);

-- the tables and views of spec store.md
SELECT has_table('wval', t, 'table wval.' || t) FROM unnest(ARRAY['worlds', 'policy_versions',
    'policy_activations', 'evaluation_runs', 'overrides', 'ex_post_failures',
    'audit_log', 'events']) AS t;
SELECT has_view('wval', v, 'view wval.' || v) FROM unnest(ARRAY['latest_runs', 'override_queue',
    'current_overrides', 'ex_post_cases', 'rule_results']) AS v;

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
                'evaluation_runs_default', 'overrides', 'ex_post_failures',
                'audit_log', 'events', 'chain_heads', 'chain_tombstones']) AS t
           WHERE e.extname = 'wval'), 'data tables are registered with pg_extension_config_dump');

-- fixtures: a world, a policy, a run
SELECT lives_ok($$SELECT wval_world_upsert('tap-store', 'high', true, actor => 'dba')$$, 'world created');
SELECT is(wval_policy_publish('tap-store', '{"validation_profiles": {}}', 'alice'), 1, 'first version is 1');
-- (a plain INSERT is refused even for a superuser: the fixture imitates wval's writers)
CREATE FUNCTION pg_temp.as_writer(q text) RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $$ BEGIN EXECUTE q; END $$;
SELECT pg_temp.as_writer($$INSERT INTO wval.evaluation_runs (run_id, world_id, strategy_id, stage, status, created_by)
VALUES ('00000000-0000-0000-0000-0000000000aa', 'tap-store', 's1', 'backtest', 'fail', 'quant-bot')$$);

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

-- forgery by a superuser (this session): what is refused, what the chain check shows
SELECT throws_ok($$INSERT INTO wval.evaluation_runs (world_id, strategy_id, stage, status, recommended_stage, created_by)
                   VALUES ('tap-store', 'forged', 'live', 'pass', 'paper_ok_live_candidate', 'quant-bot')$$, 'WV003', NULL,
                 'a plain superuser INSERT of a run is not chained: WV003');
SELECT throws_ok($$SET LOCAL session_replication_role = replica;
                   INSERT INTO wval.evaluation_runs (world_id, strategy_id, stage, status, created_by)
                   VALUES ('tap-store', 'forged', 'live', 'pass', 'quant-bot')$$, 'WV003', NULL,
                 'replica mode does not switch the chain trigger off: WV003');
RESET session_replication_role;
SELECT is(wval_policy_publish('tap-store', '{"validation_profiles": {}}', 'alice'), 3, 'a publish (and its event)');
SELECT throws_ok($$SET LOCAL session_replication_role = replica; UPDATE wval.events SET payload = '{}' WHERE world_id = 'tap-store'$$,
                 'WV003', NULL, 'replica + UPDATE of the outbox: WV003');
RESET session_replication_role;
SELECT throws_ok($$UPDATE wval.worlds SET risk_tier = 'low' WHERE world_id = 'tap-store'$$, 'WV003', NULL,
                 'a plain UPDATE of a world (outside wval_world_upsert, unaudited): WV003');
SELECT throws_ok($$UPDATE wval.chain_heads SET seq = seq WHERE world_id = 'tap-store'$$, 'WV003', NULL,
                 'a chain head moves only with the chain: WV003');
SELECT ok(wval_verify_chain('tap-store'), 'nothing of it reached the store');
-- a row that arrives with its chain columns set is a restore (accepted from a superuser): the check shows a forged one
SELECT lives_ok($$SELECT wval_world_upsert('tap-store-r', actor => 'dba')$$, 'a world for the forged restore');
INSERT INTO wval.evaluation_runs (world_id, strategy_id, stage, status, recommended_stage, created_by, chain_seq, prev_hash, row_hash)
SELECT 'tap-store-r', 'forged', 'backtest', 'pass', 'paper_ok_live_candidate', 'quant-bot', h.seq + 1, h.head_hash, 'sha256:' || repeat('1', 64)
FROM wval.chain_heads h WHERE h.world_id = 'tap-store-r';
SELECT results_eq($$SELECT table_name, problem FROM wval_chain_problems('tap-store-r')$$,
                  $$VALUES ('evaluation_runs'::text, 'row content does not match its row_hash'::text)$$,
                  'a forged "restored" run is a chain problem');
-- rule results are derived from the run's results (wval.rule_results is a
-- view): there is no row to forge or change, so nothing can disagree
SELECT throws_ok($$INSERT INTO wval.rule_results (run_id, world_id, strategy_id, stage, rule, layer, status, severity, owner, reason_code, created_at)
                   SELECT run_id, world_id, strategy_id, stage, 'performance.sharpe_min', 'performance', 'pass', 'blocking', 'quant', 'ok', created_at
                   FROM wval.evaluation_runs WHERE run_id = '00000000-0000-0000-0000-0000000000aa'$$,
                 '55000', NULL, 'a rule result cannot be inserted: it is derived from its run');
SELECT throws_ok($$SET LOCAL session_replication_role = replica; UPDATE wval.rule_results SET status = 'fail' WHERE world_id = 'tap-store'$$,
                 '55000', NULL, 'replica + UPDATE of rule results: refused, nothing to update');
RESET session_replication_role;
SELECT is_empty($$SELECT * FROM wval_chain_problems('tap-store')$$, 'no chain problem in the world');
SELECT ok(wval_verify_chain('tap-store'), 'and wval_verify_chain says true');
-- a world changed with its trigger disabled: shown, and the DDL is audited
SELECT lives_ok($$SELECT wval_world_upsert('tap-store-w', 'medium', actor => 'dba')$$, 'second world');
ALTER TABLE wval.worlds DISABLE TRIGGER wval_writer_only;
UPDATE wval.worlds SET risk_tier = 'low' WHERE world_id = 'tap-store-w';
ALTER TABLE wval.worlds ENABLE ALWAYS TRIGGER wval_writer_only;
SELECT results_eq($$SELECT table_name, problem FROM wval_chain_problems('tap-store-w')$$,
                  $$VALUES ('worlds'::text, 'the world row differs from its latest audited change'::text)$$,
                  'a world row that differs from its audited state is a chain problem');
SELECT results_eq($$SELECT details->>'command', details->>'object' FROM wval.audit_log
                    WHERE world_id IS NULL AND action = 'ddl_on_wval' ORDER BY id DESC LIMIT 1$$,
                  $$VALUES ('ALTER TABLE DISABLE TRIGGER wval_writer_only', 'wval.worlds')$$,
                  'DISABLE TRIGGER on a wval table is audited');
-- a world grant written past wval_world_grant: shown
SELECT lives_ok($$SELECT wval_world_upsert('tap-store-g', actor => 'dba')$$, 'third world');
INSERT INTO wval.world_grants (role_name, world_id, privilege, granted_by) VALUES ('tap_analyst', 'tap-store-g', 'write', 'nobody');
SELECT results_eq($$SELECT table_name, problem FROM wval_chain_problems('tap-store-g')$$,
                  $$VALUES ('world_grants'::text, '1 grant row(s) of role tap_analyst (write) without their audit row'::text)$$,
                  'a grant without its audit row is a chain problem');
SELECT lives_ok($$SELECT wval_world_upsert('tap-store-ok', actor => 'dba');
                  SELECT wval_world_grant('tap_analyst', 'tap-store-ok', 'read', actor => 'dba');
                  SELECT wval_world_revoke('tap_analyst', 'tap-store-ok', actor => 'dba')$$, 'a world, a grant and a revoke through wval');
SELECT ok(wval_verify_chain('tap-store-ok'), 'the chain check accounts for rows written by wval');

-- settings.chain_lanes: a whole number of lanes from 1 to 64; alone, a
-- writer stays on lane 0 (chain_seq 1, 2, 3 ...)
SELECT throws_ok(format($$SELECT wval_world_upsert('tap-store-l', settings => %L, actor => 'dba')$$, s), '22023',
                 'invalid value for "settings.chain_lanes"', 'chain_lanes ' || s || ': 22023')
FROM unnest(ARRAY['{"chain_lanes": 0}', '{"chain_lanes": 65}', '{"chain_lanes": 2.5}', '{"chain_lanes": "4"}']) s;
SELECT is((wval_world_upsert('tap-store-l', settings => '{"chain_lanes": 4}', actor => 'dba')).settings -> 'chain_lanes',
          '4'::jsonb, 'chain_lanes 4 is kept');
SELECT results_eq($$SELECT lane, seq FROM wval.chain_heads WHERE world_id = 'tap-store-l'$$,
                  $$VALUES (0, 1::bigint)$$, 'one writer: one lane, its first link');
-- a row cut from the end of a chain shows against the recorded head
SELECT lives_ok($$SELECT wval_world_upsert('tap-store-l', 'low', actor => 'dba')$$, 'a second link (world_updated)');
ALTER TABLE wval.audit_log DISABLE TRIGGER wval_append_only;
DELETE FROM wval.audit_log WHERE world_id = 'tap-store-l' AND chain_seq = 2;
ALTER TABLE wval.audit_log ENABLE ALWAYS TRIGGER wval_append_only;
SELECT results_eq($$SELECT table_name, chain_seq, problem, split_part(expected, ' ', 1) FROM wval_chain_problems('tap-store-l')$$,
                  $$VALUES ('audit_log'::text, 1::bigint, 'the chain ends before its recorded head (rows missing at the end)'::text, '2'::text)$$,
                  'the last link deleted: the chain ends before its head');

SELECT * FROM finish();
ROLLBACK;
