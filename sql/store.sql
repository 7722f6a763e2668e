-- store: the append-only evaluation store (tables, writes, guards, chain)
\set SHOW_CONTEXT never
SET client_min_messages = notice;

-- the tables analysts query, with their columns
SELECT table_name, string_agg(column_name, ', ' ORDER BY ordinal_position) AS columns
FROM information_schema.columns
WHERE table_schema = 'wval'
  AND table_name IN ('worlds', 'policy_versions', 'policy_activations', 'evaluation_runs',
                     'rule_results', 'overrides', 'ex_post_failures', 'audit_log')
GROUP BY table_name ORDER BY table_name;

-- worlds
SELECT world_id, risk_tier, client_critical, legal_hold, created_by
FROM wval_world_upsert('w-store', 'low', false, actor => 'dba');
SELECT world_id, risk_tier, client_critical FROM wval_world_upsert('w-store', risk_tier => 'medium');
SELECT world_id, risk_tier, client_critical
FROM wval_world_upsert('w-crit', 'high', true, actor => 'dba');
SELECT wval_world_upsert('w-bad', 'extreme');
\echo :LAST_ERROR_SQLSTATE
SELECT wval_world_upsert('');
\echo :LAST_ERROR_SQLSTATE
SELECT wval_world_upsert(repeat('x', 201));
\echo :LAST_ERROR_SQLSTATE
SELECT wval_world_upsert(E'tab\there');
\echo :LAST_ERROR_SQLSTATE

-- policy versions: 1, 2, 3 per world; publishing does not activate
SELECT wval_policy_publish('w-store', '{"validation_profiles": {}}', 'alice', 'first');
SELECT wval_policy_publish('w-store', '{"validation_profiles": {}}', 'alice');
SELECT wval_policy_publish('w-crit', '{}', 'alice');
SELECT world_id, version, author, note FROM wval.policy_versions WHERE world_id IN ('w-store', 'w-crit') ORDER BY world_id, version;
SELECT wval_active_policy_version('w-store') IS NULL AS nothing_active_yet;
SELECT wval_policy_publish('w-store', '[1, 2]', 'alice');
\echo :LAST_ERROR_SQLSTATE
SELECT wval_policy_publish('w-nowhere', '{}', 'alice');
\echo :LAST_ERROR_SQLSTATE

-- activation
SELECT world_id, version, previous_version, activated_by, reason, forced
FROM wval_policy_activate('w-store', 1, 'bob', 'initial rollout');
SELECT world_id, version, previous_version FROM wval_policy_activate('w-store', 2, 'bob', 'tighten');
SELECT wval_active_policy_version('w-store');
SELECT wval_policy_activate('w-store', 7, 'bob', 'no such version');
\echo :LAST_ERROR_SQLSTATE
SELECT wval_policy_activate('w-store', 1, 'bob', '  ');
\echo :LAST_ERROR_SQLSTATE

-- a run to override (the evaluation engine has its own tests).  A plain
-- INSERT, also by a superuser, is refused: rows join the chain only from
-- wval's writers (SECURITY DEFINER functions of the extension owner) ...
INSERT INTO wval.evaluation_runs (run_id, world_id, strategy_id, stage, status, created_by)
VALUES ('00000000-0000-0000-0000-000000000009', 'w-store', 'forged', 'live', 'pass', 'mallory');
\echo :LAST_ERROR_SQLSTATE
-- ... which a superuser can still imitate with a function of his own
-- (docs/store.md, "What a superuser can still do"); the fixtures do that
CREATE FUNCTION pg_temp.as_writer(q text) RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $$ BEGIN EXECUTE q; END $$;
SELECT pg_temp.as_writer($$
INSERT INTO wval.evaluation_runs (run_id, world_id, strategy_id, stage, status, created_by)
VALUES ('00000000-0000-0000-0000-000000000001', 'w-store', 's1', 'backtest', 'fail', 'quant-bot'),
       ('00000000-0000-0000-0000-000000000002', 'w-store', 's2', 'live', 'fail', 'quant-bot'),
       ('00000000-0000-0000-0000-000000000003', 'w-crit', 's3', 'backtest', 'fail', 'quant-bot')$$);

-- overrides: approval needs reason and actor; review in 30 or 90 days
SELECT wval_override('00000000-0000-0000-0000-000000000001', 'approved', '', 'carol');
\echo :LAST_ERROR_SQLSTATE
SELECT wval_override('00000000-0000-0000-0000-000000000001', 'approved', 'fine', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT wval_override('00000000-0000-0000-0000-000000000001', 'approved', NULL, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT wval_override('00000000-0000-0000-0000-000000000001', 'maybe', 'x', 'carol');
\echo :LAST_ERROR_SQLSTATE
SELECT wval_override('00000000-0000-0000-0000-0000000000ff', 'approved', 'x', 'carol');
\echo :LAST_ERROR_SQLSTATE
SELECT status, actor, review_due_at - recorded_at AS review_in
FROM wval_override('00000000-0000-0000-0000-000000000001', 'approved', 'known data gap', 'carol');
SELECT status, actor, review_due_at - recorded_at AS review_in
FROM wval_override('00000000-0000-0000-0000-000000000002', 'approved', 'live exception', 'carol');
SELECT status, actor, review_due_at - recorded_at AS review_in
FROM wval_override('00000000-0000-0000-0000-000000000003', 'approved', 'critical world', 'carol');
SELECT status, review_due_at IS NULL AS no_review
FROM wval_override('00000000-0000-0000-0000-000000000003', 'revoked', 'changed our mind', 'carol');
SELECT strategy_id, status FROM wval.current_overrides WHERE world_id IN ('w-store', 'w-crit') ORDER BY strategy_id;
SELECT strategy_id, overdue, missing_fields FROM wval.override_queue WHERE world_id IN ('w-store', 'w-crit') ORDER BY strategy_id;

-- ex-post failures: a case and its next state
SELECT status, category, severity, source
FROM wval_record_failure('00000000-0000-0000-0000-000000000001', 'risk_breach', 'var_breach', 'high', 'dave');
SELECT status FROM wval_record_failure('00000000-0000-0000-0000-000000000001', 'risk_breach', 'var_breach', 'high',
       'dave', notes => 'confirmed by risk', status => 'confirmed',
       case_id => (SELECT case_id FROM wval.ex_post_failures WHERE world_id = 'w-store' LIMIT 1));
SELECT count(*) AS entries, count(DISTINCT case_id) AS cases FROM wval.ex_post_failures WHERE world_id = 'w-store';
SELECT status FROM wval.ex_post_cases WHERE world_id = 'w-store';
SELECT wval_record_failure('00000000-0000-0000-0000-000000000001', 'bad_luck', 'x', 'high', 'dave');
\echo :LAST_ERROR_SQLSTATE
SELECT wval_record_failure('00000000-0000-0000-0000-000000000001', 'risk_breach', 'x', 'high', 'dave',
       case_id => '00000000-0000-0000-0000-00000000abcd');
\echo :LAST_ERROR_SQLSTATE

-- every administrative act is audited
SELECT world_id, action, actor FROM wval.audit_log WHERE world_id IN ('w-store', 'w-crit') ORDER BY id;

-- events announced in the same transactions
SELECT type, world_id, subject, payload->>'specversion' AS specversion, payload->'data'->>'change_type' AS change_type
FROM wval.events WHERE world_id IN ('w-store', 'w-crit') ORDER BY event_id;

-- history is append-only, also for the owner (this session is a superuser)
UPDATE wval.evaluation_runs SET status = 'pass' WHERE world_id = 'w-store';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM wval.overrides WHERE world_id = 'w-store';
\echo :LAST_ERROR_SQLSTATE
TRUNCATE wval.audit_log;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE wval.evaluation_runs;
\echo :LAST_ERROR_SQLSTATE
TRUNCATE wval.evaluation_runs_default;
\echo :LAST_ERROR_SQLSTATE
-- rule results are derived from the runs' results (a view): nothing to change
UPDATE wval.rule_results SET status = 'pass' WHERE world_id = 'w-store';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM wval.policy_versions;
\echo :LAST_ERROR_SQLSTATE
-- the retention guard cannot be raised by a client without the owner's rights:
-- it is no setting, and wval.* is a reserved prefix, so the SET itself fails
SET wval.purge_guard = on;
\echo :LAST_ERROR_SQLSTATE
DELETE FROM wval.policy_versions;
\echo :LAST_ERROR_SQLSTATE

-- the hash chain verifies, and catches an edit made with triggers disabled
SELECT wval_verify_chain('w-store') AS store_ok, wval_verify_chain('w-crit') AS crit_ok;
SELECT seq, head_hash = (SELECT row_hash FROM wval.audit_log WHERE world_id = 'w-store' ORDER BY chain_seq DESC LIMIT 1) AS head_is_last
FROM wval.chain_heads WHERE world_id = 'w-store';
-- session_replication_role = replica no longer stops wval's triggers
SET session_replication_role = replica;
UPDATE wval.evaluation_runs SET status = 'pass' WHERE run_id = '00000000-0000-0000-0000-000000000001';
\echo :LAST_ERROR_SQLSTATE
RESET session_replication_role;
ALTER TABLE wval.evaluation_runs DISABLE TRIGGER wval_append_only;
UPDATE wval.evaluation_runs SET status = 'pass' WHERE run_id = '00000000-0000-0000-0000-000000000001';
ALTER TABLE wval.evaluation_runs ENABLE ALWAYS TRIGGER wval_append_only;
\set VERBOSITY terse
SELECT wval_verify_chain('w-store') AS store_ok;
\set VERBOSITY default
SELECT table_name, problem FROM wval_chain_problems('w-store');
SELECT wval_verify_chain('w-crit') AS crit_still_ok;
-- a deleted row is a gap
ALTER TABLE wval.overrides DISABLE TRIGGER wval_append_only;
DELETE FROM wval.overrides WHERE world_id = 'w-crit' AND status = 'revoked';
ALTER TABLE wval.overrides ENABLE ALWAYS TRIGGER wval_append_only;
-- the DDL that made both edits possible is in the audit log (global chain)
SELECT action, details->>'command' AS command, details->>'object' AS object
FROM wval.audit_log WHERE world_id IS NULL AND action = 'ddl_on_wval' ORDER BY id;
SELECT table_name, problem FROM wval_chain_problems('w-crit');
