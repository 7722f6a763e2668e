#!/usr/bin/env bash
# The upgrade path: wval 0.1.0 (kept as updates/wval--0.1.0.sql) installed
# into a fresh database and filled with history (worlds, policy publish and
# activate, evaluations, overrides, ex-post failures, live returns and stage
# decisions, risk snapshots, bus deliveries), then ALTER EXTENSION wval
# UPDATE.  Checks that
#   - the updated catalogue equals a fresh install of the default version
#     (test/sessions/upgrade_catalog.sql: routines with their definitions,
#     relations, columns, defaults, constraints, indexes, triggers with their
#     enabled state, policies, event triggers, comments, ACLs, extension
#     membership, config-dump registrations); the differences are printed;
#   - the history is intact: row counts, chain heads and row hashes as before,
#     wval_verify_chain true for every world and for the global chain;
#   - the updated database keeps working: a new evaluation, a publish and an
#     activation by two logins, chains still verify.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
psql() { "$WVAL_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -At "$@"; }

old_version=0.1.0
old_commit=b90bcc1      # the commit of release 0.1.0
# the git history to read the old release from (scripts/sanitize.sh runs a copy
# of the tree without it and points here at the original)
repo=${WVAL_GIT_DIR:-$(cd "$here/../.." && pwd)}
new_version=$(sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$here/../../wval.control")
upd="upg_updated_$$" fresh="upg_fresh_$$"
alice="upg_alice_$$" bob="upg_bob_$$"
work=$(mktemp -d)
libdir=$("$WVAL_BINDIR/pg_config" --pkglibdir)
extdir=$("$WVAL_BINDIR/pg_config" --sharedir)/extension
cleanup() {
	rm -f "$libdir/wval-$old_version.so" "$extdir/wval--$old_version.control"
	for db in "$upd" "$fresh"; do
		psql -d "$db" -c "SET wval.allow_drop = on" -c "DROP EXTENSION IF EXISTS wval CASCADE" >/dev/null 2>&1 || true
		psql -d postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
	done
	psql -d postgres -c "DROP ROLE IF EXISTS $alice" -c "DROP ROLE IF EXISTS $bob" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

# History is written by the release's own library, as it was in production:
# the current library expects the current schema (wval_evaluate of 0.2.0
# calls wval._can_read, which 0.1.0 lacks).  The library of $old_commit goes
# into the private installation as wval-$old_version.so, and a secondary
# control file points the $old_version install script at it; the update
# re-creates every C function with the current module_pathname.
echo "== the library of $old_version, built from $old_commit"
git -C "$repo" cat-file -e "$old_commit^{commit}" 2>/dev/null ||
	fail "commit $old_commit (release $old_version) is not in the repository (a shallow clone?); fetch it"
mkdir "$work/old"
git -C "$repo" archive "$old_commit" | tar -x -C "$work/old"
make -C "$work/old" -s -j2 PG_CONFIG="${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}" wval.so "wval--$old_version.sql" >"$work/old/build.log" 2>&1 ||
	{ cat "$work/old/build.log"; fail "building $old_commit"; }
cmp -s "$work/old/wval--$old_version.sql" "$repo/updates/wval--$old_version.sql" ||
	fail "updates/wval--$old_version.sql is not the install script of $old_commit"
cp "$work/old/wval.so" "$libdir/wval-$old_version.so"
echo "module_pathname = '\$libdir/wval-$old_version'" >"$extdir/wval--$old_version.control"

echo "== $old_version installed and filled with history"
psql -d postgres -c "CREATE DATABASE $upd"
psql -d postgres -c "CREATE ROLE $alice LOGIN IN ROLE wval_validator" -c "CREATE ROLE $bob LOGIN IN ROLE wval_validator" 2>/dev/null ||
	true   # the wval roles exist once any database created the extension
psql -d "$upd" >/dev/null <<SQL
SET client_min_messages = warning;
CREATE EXTENSION wval VERSION '$old_version' CASCADE;
SELECT wval_maintain(2);
SELECT wval_world_upsert('w-up', 'high', true, actor => 'dba');
SELECT wval_world_upsert('w-two', actor => 'dba');
SELECT wval_policy_publish(w, '{
    "validation_profiles": {"backtest": {"performance": {"sharpe_min": 0.5}}, "live": {"performance": {"sharpe_min": 0.5}}},
    "default_profile_by_stage": {"backtest_only": "backtest", "paper_only": "backtest", "paper_ok_live_candidate": "live"},
    "live_monitoring": {"sharpe_min": 0.5, "decay_threshold": 0.2, "demote_after": 3, "windows_days": [10, 30]}}', 'alice')
FROM unnest(ARRAY['w-up', 'w-two']) w;
SELECT wval_policy_activate(w, 1, 'bob', 'rollout') FROM unnest(ARRAY['w-up', 'w-two']) w;
SELECT wval_subscribe('upg-group', ARRAY['evaluation_run_created'], 3, '0s', '1 hour');
SELECT wval_evaluate(w, s, 'backtest',
                     ARRAY(SELECT 0.004 + 0.01 * sin(i * k) FROM generate_series(1, 40) i))
FROM unnest(ARRAY['w-up', 'w-two']) w, generate_series(1, 4) k, LATERAL (SELECT 'strat-' || k) AS t(s);
SELECT wval_evaluate('w-up', 'neg', 'backtest', '{-0.01, 0.002, -0.004, 0.001}');
SELECT wval_override(run_id, 'approved', 'reviewed', 'carol') FROM wval.evaluation_runs WHERE strategy_id = 'neg';
SELECT wval_record_failure(run_id, 'data_issue', 'stale_prices', 'low', 'dave')
FROM wval.evaluation_runs WHERE strategy_id = 'strat-2' AND world_id = 'w-two';
SELECT wval_record_live_returns('w-up', 'strat-1',
           ARRAY(SELECT d::date FROM generate_series('2026-05-01'::date, '2026-05-30', '1 day') d),
           ARRAY(SELECT 0.003 + 0.004 * sin(i) FROM generate_series(1, 30) i), 'gateway');
SELECT wval_set_stage('w-up', 'strat-1', 'live', 'vera', 'clears the live profile');
SELECT wval_live_run('w-up', 'strat-1', '2026-05-30');
SELECT wval_producer_register('w-up', 'gw');
SELECT wval_snapshot_publish('w-up', jsonb_build_object(
           'as_of', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'version', 'v1', 'weights', jsonb_build_object('a', 0.5, 'b', 0.5),
           'covariance', jsonb_build_object('a,a', 0.01, 'b,b', 0.04)), 'gw', 'paper');
SELECT count(*) FROM wval_consume('upg-group', 5);
-- the first of them is nacked (no backoff: visible again at once), the
-- other four stay in the consumer's hands, so their world is busy
SELECT wval_nack('upg-group', (SELECT min(event_id) FROM wval.deliveries WHERE group_name = 'upg-group' AND leased), 'retry');
SELECT wval_policy_publish('w-up', '{"validation_profiles": {"backtest": {"performance": {"sharpe_min": 0.7}}}}', 'alice', 'stricter');
SQL

# history: rows of every table of schema wval that 0.1.0 has (monthly
# partitions counted in their parents), chain heads, row hashes
tables=$(psql -d "$upd" -c "SELECT string_agg(quote_literal(c.oid::regclass::text), ',' ORDER BY c.oid::regclass::text)
                            FROM pg_class c WHERE c.relnamespace = 'wval'::regnamespace AND c.relkind IN ('r', 'p')
                              AND c.relpersistence = 'p' AND NOT c.relispartition
                              AND c.oid <> 'wval.partition_indexes'::regclass")
# (partition_indexes is configuration: 0.2.0 drops the two rows of rule_results,
# which became a view; the rows of rule_results themselves are compared below)
history() {
	psql -d "$1" <<-SQL
		SELECT string_agg(format('%s=%s', t, (xpath('/row/c/text()',
		           query_to_xml(format('SELECT count(*) AS c FROM %s', t), false, true, '')))[1]::text), ' ' ORDER BY t)
		FROM unnest(ARRAY[$tables]) t;
		SELECT string_agg(world_id || '=' || seq || ':' || head_hash, ' ' ORDER BY world_id) FROM wval.chain_heads;
		SELECT md5(string_agg(row_hash, ',' ORDER BY world_id, chain_seq)) FROM wval.evaluation_runs;
		SELECT md5(string_agg(row_hash, ',' ORDER BY world_id, chain_seq)) FROM wval.audit_log;
		-- every rule result, column by column (0.1.0's table, 0.2.0's view over the runs' results)
		SELECT count(*) || ':' || md5(string_agg(r::text, ',' ORDER BY r::text)) FROM wval.rule_results r;
	SQL
}
verify_chains() {
	local db=$1 w
	for w in $(psql -d "$db" -c "SELECT world_id FROM wval.worlds ORDER BY 1"); do
		[ "$(psql -d "$db" -c "SELECT wval_verify_chain('$w')")" = t ] || fail "chain of $w broken in $db"
	done
	[ "$(psql -d "$db" -c "SELECT wval_verify_chain(NULL)")" = t ] || fail "global chain broken in $db"
}
verify_chains "$upd"
before=$(history "$upd")

echo "== a rule_results row that no run's results record stops the update (then rolled back)"
out=$(psql -d "$upd" 2>&1 <<'SQL' || true
BEGIN;
INSERT INTO wval.rule_results (run_id, world_id, strategy_id, stage, rule, layer, status, severity, owner, reason_code, created_at)
SELECT run_id, world_id, strategy_id, stage, 'performance.forged_min', 'performance', 'fail', 'blocking', 'quant', 'forged', created_at
FROM wval.evaluation_runs WHERE strategy_id = 'neg';
ALTER EXTENSION wval UPDATE;
ROLLBACK;
SQL
)
grep -q 'wval.rule_results holds 1 row(s) that the results of their runs do not record' <<<"$out" ||
	{ echo "$out"; fail "the update did not refuse a rule_results row it would lose"; }
[ "$(psql -d "$upd" -c "SELECT extversion FROM pg_extension WHERE extname = 'wval'")" = "$old_version" ] ||
	fail "the refused update changed the version"

echo "== ALTER EXTENSION wval UPDATE ($old_version -> $new_version)"
psql -d "$upd" -c "ALTER EXTENSION wval UPDATE"
[ "$(psql -d "$upd" -c "SELECT extversion FROM pg_extension WHERE extname = 'wval'")" = "$new_version" ] ||
	fail "the extension is not at $new_version after the update"

echo "== the history is intact"
after=$(history "$upd")
if [ "$before" != "$after" ]; then
	diff <(echo "$before" | tr ' ' '\n') <(echo "$after" | tr ' ' '\n') || true
	fail "the update changed the history"
fi
tr ' ' '\n' <<<"${after%%$'\n'*}" | grep -E 'evaluation_runs=|overrides=|policy_versions=|audit_log=|events='

verify_chains "$upd"

echo "== events handed out before the update stay in the consumer's hands"
# 0.1.0 has no wval.delivery_leases; the update records the worlds in hands,
# and a later wval_consume hands out none of their events, not even the
# nacked head that is visible again
out=$(psql -d "$upd" <<'SQL'
SELECT count(*) || ' ' || count(DISTINCT world_key) FROM wval.deliveries
WHERE group_name = 'upg-group' AND leased AND done_at IS NULL AND visible_at > now();
SELECT count(*) FROM wval.delivery_leases l
WHERE l.group_name = 'upg-group'
  AND l.world_key IN (SELECT d.world_key FROM wval.deliveries d
                      WHERE d.group_name = 'upg-group' AND d.leased AND d.done_at IS NULL);
CREATE TEMP TABLE in_hands AS
SELECT DISTINCT world_key FROM wval.deliveries WHERE group_name = 'upg-group' AND leased AND done_at IS NULL;
CREATE TEMP TABLE handed AS SELECT event_id, world_id FROM wval_consume('upg-group', 1000);
SELECT (SELECT count(*) FROM handed) || ' ' || (SELECT count(*) FROM handed h JOIN in_hands i ON i.world_key = coalesce(h.world_id, ''));
SQL
)
read -r held held_worlds leases handed again <<<"$(tr '\n' ' ' <<<"$out")"
echo "in hands: $held events of $held_worlds world(s); lease rows: $leases; handed out now: $handed, of those worlds: $again"
[ "$held" = 4 ] && [ "$held_worlds" = 1 ] && [ "$leases" = 1 ] && [ "$handed" -gt 0 ] && [ "$again" = 0 ] ||
	fail "the update lost the leases of the events in hands"

echo "== the catalogue equals a fresh $new_version install"
psql -d postgres -c "CREATE DATABASE $fresh"
psql -d "$fresh" -c "SET client_min_messages = warning" -c "CREATE EXTENSION wval CASCADE" -c "SELECT wval_maintain(2)" >/dev/null
# partitions that the fresh database lacks (months the history reached) come from wval_maintain
psql -d "$upd" -c "SELECT c.oid::regclass FROM pg_class c WHERE c.relnamespace = 'wval'::regnamespace AND c.relispartition ORDER BY 1" >"$work/parts.upd"
psql -d "$fresh" -c "SELECT c.oid::regclass FROM pg_class c WHERE c.relnamespace = 'wval'::regnamespace AND c.relispartition ORDER BY 1" >"$work/parts.fresh"
diff "$work/parts.fresh" "$work/parts.upd" >/dev/null || { diff "$work/parts.fresh" "$work/parts.upd" || true; fail "the partitions differ"; }
psql -d "$upd" -f "$here/upgrade_catalog.sql" >"$work/catalog.updated"
psql -d "$fresh" -f "$here/upgrade_catalog.sql" >"$work/catalog.fresh"
echo "$(wc -l <"$work/catalog.fresh") catalogue facts in a fresh install"
# Facts that are data, not schema: the rejection counters of the worlds of
# the history (sequences wval.snapshot_rejects_<world hash>_<stage>_<kind>).
data_facts='wval\.snapshot_rejects_[0-9a-f]{16}_'
# column order: a column an update adds comes last; a difference in order
# alone is expected (the chain hashes name columns, not positions) and shown
grep -Ev "^column_order\||$data_facts" "$work/catalog.fresh" >"$work/facts.fresh"
grep -Ev "^column_order\||$data_facts" "$work/catalog.updated" >"$work/facts.updated"
diff <(grep '^column_order|' "$work/catalog.fresh") <(grep '^column_order|' "$work/catalog.updated") |
	sed -n 's/^> column_order|/column order after the update (added columns last): /p' || true
# The differences the update cannot avoid are listed, with their reasons, in
# upgrade_<old>--<new>.expected (lines "-fact" only in a fresh install,
# "+fact" only in the updated database); any other difference fails.
expected="$here/upgrade_$old_version--$new_version.expected"
diff -u "$work/facts.fresh" "$work/facts.updated" >"$work/catalog.diff" || true
grep -E '^[-+]' "$work/catalog.diff" | grep -Ev '^(\+\+\+|---) ' | sort >"$work/differences" || true
grep -E '^[-+]' "$expected" | sort >"$work/expected" || true
if ! cmp -s "$work/differences" "$work/expected"; then
	echo "the updated catalogue differs from a fresh install (- fresh, + updated):"
	cat "$work/catalog.diff"
	echo "differences not listed in $(basename "$expected") (>), listed ones not found (<):"
	diff "$work/expected" "$work/differences" || true
	[ -n "${WVAL_WORK:-}" ] && cp "$work/catalog.diff" "$WVAL_WORK/upgrade-catalog.diff"
	fail "the updated catalogue differs from a fresh install"
fi
echo "expected differences ($(basename "$expected")):"
sed 's/^/    /' "$work/differences"
echo "ok: $(wc -l <"$work/facts.updated") catalogue facts compared, $(wc -l <"$work/differences") lines differ, all listed"

echo "== the updated database keeps working"
psql -d "$upd" <<SQL
SET client_min_messages = warning;
SELECT (wval_evaluate('w-up', 'after-upgrade', 'backtest', ARRAY(SELECT 0.004 + 0.01 * sin(i) FROM generate_series(1, 40) i))).status;
SQL
[ "$(psql -d "$upd" -c "SELECT count(*) FROM wval.evaluation_runs WHERE strategy_id = 'after-upgrade'")" = 1 ] ||
	fail "no run recorded after the update"
# separation of duties by login (new in 0.2.0) works in the updated database:
# the login that published may not activate, another login may
psql -d "$upd" -c "GRANT CONNECT ON DATABASE $upd TO $alice, $bob" >/dev/null
v=$(psql -d "$upd" -U "$alice" -c "SELECT wval_policy_publish('w-two', policy, 'alice', 'after the update')
                                   FROM wval.policy_versions WHERE world_id = 'w-two' AND version = 1")
[ "$(psql -d "$upd" -c "SELECT published_by FROM wval.policy_versions WHERE world_id = 'w-two' AND version = $v")" = "$alice" ] ||
	fail "published_by is not the publishing login after the update"
state=$(psql -d "$upd" -U "$alice" -v VERBOSITY=sqlstate -c "SELECT wval_policy_activate('w-two', $v, 'bob', 'same login')" 2>&1 || true)
[ "$state" = "ERROR:  WV009" ] || fail "the publishing login activated its own version after the update: $state"
psql -d "$upd" -U "$bob" -c "SELECT wval_policy_activate('w-two', $v, 'bob', 'after the update')" >/dev/null
[ "$(psql -d "$upd" -c "SELECT wval_active_policy_version('w-two')")" = "$v" ] || fail "activation after the update"
verify_chains "$upd"
echo "ok: $old_version -> $new_version keeps the history, equals a fresh install, and works"
