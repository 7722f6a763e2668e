#!/usr/bin/env bash
# pg_dump / pg_restore keeps the whole history, and the hash chain still
# verifies in the restored database (also for rows in monthly partitions).
set -euo pipefail
psql() { "$WVAL_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -At "$@"; }

src="dump_src_$$" dst="dump_dst_$$"
dump=$(mktemp)
trap 'rm -f "$dump"; psql -d postgres -c "DROP DATABASE IF EXISTS $src" -c "DROP DATABASE IF EXISTS $dst" >/dev/null 2>&1 || true' EXIT

psql -d postgres -c "CREATE DATABASE $src"
psql -d "$src" <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION wval CASCADE;
SELECT wval_maintain(2);
SELECT wval_world_upsert('w-dump', 'high', true, actor => 'dba');
SELECT wval_world_upsert('w-two', actor => 'dba');
SELECT wval_policy_publish('w-dump', '{"validation_profiles": {}}', 'alice');
SELECT wval_policy_activate('w-dump', 1, 'bob', 'rollout');
-- runs written as wval's writers do (a plain INSERT is refused, also for a superuser)
CREATE FUNCTION pg_temp.as_writer(q text) RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $$ BEGIN EXECUTE q; END $$;
SELECT pg_temp.as_writer($q$INSERT INTO wval.evaluation_runs (run_id, world_id, strategy_id, stage, status, metrics, created_by)
SELECT gen_random_uuid(), 'w-dump', 's' || i, 'backtest', 'fail',
       jsonb_build_object('returns', jsonb_build_object('sharpe', i / 7.0)), 'bot'
FROM generate_series(1, 20) i$q$);
SELECT wval_override(run_id, 'approved', 'reviewed', 'carol') FROM wval.evaluation_runs WHERE strategy_id = 's3';
SELECT wval_record_failure(run_id, 'data_issue', 'stale_prices', 'low', 'dave') FROM wval.evaluation_runs WHERE strategy_id = 's4';
SQL

snapshot() {
	psql -d "$1" -c "
	SELECT (SELECT count(*) FROM wval.evaluation_runs) || ' runs, ' ||
	       (SELECT count(*) FROM wval.policy_versions) || ' versions, ' ||
	       (SELECT count(*) FROM wval.overrides) || ' overrides, ' ||
	       (SELECT count(*) FROM wval.ex_post_failures) || ' failures, ' ||
	       (SELECT count(*) FROM wval.audit_log) || ' audit rows, ' ||
	       (SELECT count(*) FROM wval.events) || ' events, heads ' ||
	       (SELECT string_agg(world_id || '=' || seq || ':' || head_hash, ' ' ORDER BY world_id, lane) FROM wval.chain_heads) || ', runs hash ' ||
	       (SELECT md5(string_agg(row_hash, ',' ORDER BY chain_seq)) FROM wval.evaluation_runs)"
}
before=$(snapshot "$src")
partitioned=$(psql -d "$src" -c "SELECT count(*) FROM wval.evaluation_runs r WHERE tableoid <> 'wval.evaluation_runs_default'::regclass")

"$WVAL_BINDIR/pg_dump" -Fc -d "$src" -f "$dump"
psql -d postgres -c "CREATE DATABASE $dst"
"$WVAL_BINDIR/pg_restore" --exit-on-error -d "$dst" "$dump"
after=$(snapshot "$dst")

echo "before:  $before"
echo "after:   $after"
echo "rows in monthly partitions: $partitioned"
[ "$before" = "$after" ] || { echo "FAIL: restored history differs"; exit 1; }
[ "$partitioned" -gt 0 ] || { echo "FAIL: the test did not exercise a monthly partition"; exit 1; }
for w in w-dump w-two; do
	[ "$(psql -d "$dst" -c "SELECT wval_verify_chain('$w')")" = t ] || { echo "FAIL: chain of $w broken after restore"; exit 1; }
done
[ "$(psql -d "$dst" -c "SELECT wval_verify_chain(NULL)")" = t ] || { echo "FAIL: global chain broken after restore"; exit 1; }

# the restored store is still append-only and keeps chaining new rows
psql -d "$dst" -c "SELECT wval_policy_publish('w-dump', '{}', 'alice')" >/dev/null
[ "$(psql -d "$dst" -c "SELECT wval_verify_chain('w-dump')")" = t ] || { echo "FAIL: chain broken after a new row"; exit 1; }
if psql -d "$dst" -c "DELETE FROM wval.policy_versions" 2>/dev/null; then echo "FAIL: restored table accepts DELETE"; exit 1; fi
echo "ok: history restored identically, chains verify"
