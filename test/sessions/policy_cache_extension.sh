#!/usr/bin/env bash
# The per-backend policy cache does not outlive the extension: in one
# backend, a world's version 1 is evaluated, the extension is dropped and
# created again, and a new version 1 of a world of the same name (a
# stricter policy) must decide the next evaluation — not the cached one.
set -euo pipefail
psql() { "$WVAL_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -At "$@"; }
db="wval_cache_$$"
psql -d postgres -c "CREATE DATABASE $db"
trap 'psql -d postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true' EXIT

out=$(psql -d "$db" <<'SQL'
SET client_min_messages = error;
CREATE EXTENSION wval CASCADE;
SELECT wval_world_upsert('cw', actor => 'dba') IS NULL;
SELECT wval_policy_publish('cw', '{"validation_profiles": {"backtest": {"performance": {"sharpe_min": 0.5}}}, "default_profile_by_stage": {"backtest_only": "backtest"}}', 'alice') IS NULL;
SELECT (wval_policy_activate('cw', 1, 'bob', 'x')).version IS NULL;
SELECT 'first: ' || status FROM wval_evaluate('cw', 's', 'backtest', NULL, '{"returns": {"sharpe": 1.0}}');
SET wval.allow_drop = on;
DROP EXTENSION wval CASCADE;
CREATE EXTENSION wval CASCADE;
SELECT wval_world_upsert('cw', actor => 'dba') IS NULL;
SELECT wval_policy_publish('cw', '{"validation_profiles": {"backtest": {"performance": {"sharpe_min": 100}}}, "default_profile_by_stage": {"backtest_only": "backtest"}}', 'alice') IS NULL;
SELECT (wval_policy_activate('cw', 1, 'bob', 'x')).version IS NULL;
SELECT 'second: ' || status FROM wval_evaluate('cw', 's', 'backtest', NULL, '{"returns": {"sharpe": 1.0}}');
SQL
)
echo "$out" | grep -E "^(first|second):" || true
grep -qx 'first: pass' <<<"$out" || { echo "FAIL: the first policy (sharpe_min 0.5) should pass"; exit 1; }
grep -qx 'second: fail' <<<"$out" || { echo "FAIL: the re-created extension's version 1 (sharpe_min 100) was not used"; exit 1; }
echo "ok - the policy cache is emptied when wval.policy_versions is dropped"
