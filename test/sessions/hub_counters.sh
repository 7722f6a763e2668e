#!/usr/bin/env bash
# Counters of wval_snapshot_publish across transactions:
#   - a stored publish, an identical retry (a dedupe hit) and a collision
#     (WV007) are counted processed 1, dedupe 1, failed 1;
#   - a rejected publish in its own top-level transaction is still counted.
# (Concurrent publishes of one version: test/isolation/specs/snapshot_race.spec.)
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

# (concurrent publishes of one version are test/isolation/specs/snapshot_race.spec)
# stored, an identical retry (a dedupe hit), the same version with other content (WV007)
"${PSQL[@]}" -c "SELECT snapshot_id FROM wval_snapshot_publish('$W', '$snap', 'gw', 'paper')" >"$tmp/a"
"${PSQL[@]}" -c "SELECT snapshot_id FROM wval_snapshot_publish('$W', '$snap', 'gw', 'paper')" >"$tmp/b"
if "${PSQL[@]}" -c "SELECT snapshot_id FROM wval_snapshot_publish('$W', '$other', 'gw', 'paper')" >"$tmp/c" 2>&1; then
	fail "the same version with other content should have been refused: $(cat "$tmp/c")"
fi
grep -q 'already exists with a different hash' "$tmp/c" || fail "expected WV007, got: $(cat "$tmp/c")"
[ "$(cat "$tmp/a")" = "$(cat "$tmp/b")" ] || fail "the retry got $(cat "$tmp/b"), expected the stored $(cat "$tmp/a")"
echo "ok - a retry gets the stored row back, other content under the same version is WV007"

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
