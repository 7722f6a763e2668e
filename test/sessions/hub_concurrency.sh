#!/usr/bin/env bash
# Multi-session behaviour of wval_snapshot_publish:
#   - two sessions publish the same new (world, version) at once: one stores
#     it, the other waits and gets the stored row back (a dedupe hit, not a
#     unique violation), and only one event is written;
#   - a third session with the same version but other content gets WV007;
#   - a rejected publish in its own top-level transaction is still counted.
# Runs against $PGDATABASE (wval created) with the PG* variables of the driver.
set -euo pipefail

PSQL=("$WVAL_BINDIR/psql" -X -q -t -A -v ON_ERROR_STOP=1)
W=sess_hub_$$
fail() { echo "FAIL: $*"; exit 1; }

"${PSQL[@]}" -c "SELECT wval_world_upsert('$W')" >/dev/null
"${PSQL[@]}" -c "SELECT wval_producer_register('$W', 'gw')" >/dev/null

snap=$("${PSQL[@]}" -c "SELECT jsonb_build_object('as_of', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
        'version', 'c1', 'ttl_sec', 120, 'weights', '{\"a\": 1}'::jsonb)")
other=$("${PSQL[@]}" -c "SELECT '$snap'::jsonb || '{\"weights\": {\"b\": 1}}'")

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# A holds its publish open for 2 s; B (same snapshot) and C (same version,
# other content) start while A is still open.
"${PSQL[@]}" >"$tmp/a" 2>&1 <<-SQL &
	BEGIN;
	SELECT snapshot_id FROM wval_snapshot_publish('$W', '$snap', 'gw', 'paper');
	SELECT pg_sleep(2);
	COMMIT;
SQL
pa=$!
sleep 0.7
"${PSQL[@]}" -c "SELECT snapshot_id FROM wval_snapshot_publish('$W', '$snap', 'gw', 'paper')" >"$tmp/b" 2>&1 &
pb=$!
"${PSQL[@]}" -c "SELECT snapshot_id FROM wval_snapshot_publish('$W', '$other', 'gw', 'paper')" >"$tmp/c" 2>&1 &
pc=$!
wait $pa || fail "session A failed: $(cat "$tmp/a")"
wait $pb || fail "session B failed: $(cat "$tmp/b")"
if wait $pc; then fail "session C should have been refused: $(cat "$tmp/c")"; fi
grep -q 'already exists with a different hash' "$tmp/c" || fail "session C: expected WV007, got: $(cat "$tmp/c")"
a_id=$(grep -E '^[0-9]+$' "$tmp/a" | head -1)
b_id=$(grep -E '^[0-9]+$' "$tmp/b" | head -1)
[ -n "$a_id" ] && [ "$a_id" = "$b_id" ] || fail "A stored $a_id, B got $b_id (expected the same row)"
echo "ok - concurrent identical publishes: one row ($a_id), the waiter got it back"

n=$("${PSQL[@]}" -c "SELECT count(*) FROM wval.risk_snapshots WHERE world_id = '$W'")
[ "$n" = 1 ] || fail "expected 1 stored snapshot, found $n"
e=$("${PSQL[@]}" -c "SELECT count(*) FROM wval.events WHERE world_id = '$W' AND type = 'risk_snapshot_updated'")
[ "$e" = 1 ] || fail "expected 1 event, found $e"
echo "ok - one snapshot, one event"

stats=$("${PSQL[@]}" -c "SELECT processed || ' ' || dedupe || ' ' || failed FROM wval_snapshot_stats('$W') WHERE stage = 'paper'")
[ "$stats" = "1 1 1" ] || fail "expected processed 1, dedupe 1, failed 1; got $stats"
echo "ok - counters: processed 1, dedupe 1, failed 1 (the collision)"

# a rejected publish in a top-level transaction that rolls back is counted
if "${PSQL[@]}" -c "SELECT wval_snapshot_publish('$W', '{\"as_of\": \"2020-01-01T00:00:00Z\", \"version\": \"old\", \"weights\": {\"a\": 1}}', 'gw', 'live')" >"$tmp/d" 2>&1; then
	fail "an expired snapshot was accepted"
fi
grep -q 'has expired' "$tmp/d" || fail "expected WV005, got: $(cat "$tmp/d")"
x=$("${PSQL[@]}" -c "SELECT expired FROM wval_snapshot_stats('$W') WHERE stage = 'live'")
[ "$x" = 1 ] || fail "expected expired 1 for live after the rollback, got $x"
echo "ok - an expired publish is counted although its transaction rolled back"
