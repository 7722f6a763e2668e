#!/usr/bin/env bash
# Rejection counters are exact across a crash: three rejected publishes
# (WV005), then the cluster stops in immediate mode (no shutdown checkpoint,
# crash recovery at start-up) and the expired counter still reads 3 — not
# 33, as when the counters used nextval(), which WAL-logs 32 values ahead.
# Restarts the test cluster: keep this script free of other sessions.
set -euo pipefail
psql() { "$WVAL_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -At "$@"; }
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pgdata=$WVAL_WORK/cluster/pgdata

world="ctr-crash-$$"
psql -c "SELECT wval_world_upsert('$world', actor => 'test')" >/dev/null
psql -c "SELECT wval_producer_register('$world', 'gw')" >/dev/null
for i in 1 2 3; do
	# as_of an hour ago with the default ttl_sec of 10: WV005, counted as expired
	out=$(psql -c "SELECT wval_snapshot_publish('$world', jsonb_build_object(
	        'as_of', to_char((now() - interval '1 hour') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
	        'version', 'v$i', 'weights', '{\"a\": 1}'::jsonb), 'gw', 'paper')" 2>&1 || true)
	grep -q 'stale\|expired\|older' <<<"$out" || { echo "FAIL: publish $i was not rejected as expired: $out"; exit 1; }
done
before=$(psql -c "SELECT expired FROM wval_snapshot_stats('$world') WHERE stage = 'paper'")
[ "$before" = 3 ] || { echo "FAIL: expected 3 expired before the crash, saw $before"; exit 1; }
sleep 1		# let the WAL writer write what it would (nextval's pre-logged value included)

as_pg "$WVAL_BINDIR/pg_ctl" -D "$pgdata" -m immediate -w stop >/dev/null
as_pg "$WVAL_BINDIR/pg_ctl" -D "$pgdata" -l "$WVAL_WORK/cluster/server.log" -w start >/dev/null

after=$(psql -c "SELECT expired FROM wval_snapshot_stats('$world') WHERE stage = 'paper'")
echo "expired before the crash: $before, after crash recovery: $after"
[ "$after" = 3 ] || { echo "FAIL: the rejection counter changed across the crash"; exit 1; }
psql -c "SELECT wval_snapshot_publish('$world', jsonb_build_object(
        'as_of', to_char((now() - interval '1 hour') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
        'version', 'v4', 'weights', '{\"a\": 1}'::jsonb), 'gw', 'paper')" >/dev/null 2>&1 || true
next=$(psql -c "SELECT expired FROM wval_snapshot_stats('$world') WHERE stage = 'paper'")
[ "$next" = 4 ] || { echo "FAIL: the next rejection after recovery counts $next, expected 4"; exit 1; }
echo "ok - rejection counters exact across a crash"
