-- scripts/demo.sql: what the README's demo command runs in the throw-away cluster.
\set ON_ERROR_STOP on
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_cron;
CREATE EXTENSION IF NOT EXISTS wval CASCADE;
RESET client_min_messages;

\echo '--- a world, a policy (published, then activated by a second person)'
SELECT world_id, risk_tier, client_critical
FROM wval_world_upsert('demo-world', risk_tier => 'medium', client_critical => false, actor => 'dba');
SELECT wval_policy_publish('demo-world',
    '{"validation_profiles": {"backtest": {"performance": {"sharpe_min": 0.5}}},
      "default_profile_by_stage": {"backtest_only": "backtest"}}', 'alice', 'first policy') AS version;
SELECT world_id, version, activated_by, reason
FROM wval_policy_activate('demo-world', 1, 'bob', 'initial rollout');

\echo '--- the audit log and the event outbox'
SELECT id, action, actor FROM wval.audit_log WHERE world_id = 'demo-world' ORDER BY id;
SELECT event_id, type, subject FROM wval.events WHERE world_id = 'demo-world' ORDER BY event_id;

\echo '--- history is append-only, even for the superuser'
\set ON_ERROR_STOP off
UPDATE wval.policy_versions SET note = 'rewritten' WHERE world_id = 'demo-world';
\set ON_ERROR_STOP on
SELECT wval_verify_chain('demo-world') AS chain_intact;
