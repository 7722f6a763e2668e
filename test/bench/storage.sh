#!/usr/bin/env bash
# test/bench/storage.sh: bounded storage under the default snapshot cadence
# (not part of the test suite; issue 15 item 4).
#
# A producer publishes risk snapshots of one world at the default cadence
# (one every CADENCE simulated seconds, default 5, TTL 10 s) for SIM_DAYS
# simulated days (default 9) while the bus worker drains the outbox (as its
# pg_cron job does every minute) and the maintenance job's storage prune
# runs once per simulated day (the job's default schedule is daily).
#
# Time is compressed: one simulated day lasts DAY_SECS real seconds
# (default 40), and the retention settings are scaled by the same factor
# (risk_snapshots: the default 1 day -> DAY_SECS s; events: the default
# 7 days -> 7 x DAY_SECS s; wval.snapshot_max_age 10 s so it does not hold
# the snapshot cut back).  pgbench publishes at the rate that gives the
# cadence (86400 / CADENCE / DAY_SECS per second, 2 clients); the achieved
# simulated cadence is printed.  Every snapshot is a real wval_snapshot_publish
# of 20 strategies with a 210-entry covariance (offloaded to wval.blobs), a
# new covariance every simulated hour (so 24 new blobs a day, the rest
# deduplicated).
#
# Printed: for each simulated day, after that day's prune, the rows and the
# on-disk size (pg_total_relation_size, after a plain VACUUM so freed space
# is reused) of risk_snapshots, blobs, events, delivery_store and
# chain_tombstones, the deliveries not yet finished (backlog), plus what the
# prune removed.  Bounded storage shows as
# rows and sizes that stop growing once the retention periods are reached
# (snapshots after day 1, events after day 7).
#
# Usage: test/bench/storage.sh [SIM_DAYS 9] [DAY_SECS 40] [CADENCE 5]

source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

SIM_DAYS=${1:-9}
DAY_SECS=${2:-40}
CADENCE=${3:-5}
RATE=$(( 86400 / CADENCE / DAY_SECS ))

bench_cluster postgres "max_wal_size = 2GB"

"${PSQL[@]}" -d postgres -c "CREATE DATABASE bench" >/dev/null
"${PSQL[@]}" -d bench >/dev/null <<-SQL
	SET client_min_messages = warning;
	CREATE EXTENSION wval CASCADE;
	SELECT wval_world_upsert('bench_sto');
	SELECT wval_producer_register('bench_sto', 'gw');
	SELECT wval_retention_set('risk_snapshots', interval '$DAY_SECS seconds');
	SELECT wval_retention_set('events', interval '$DAY_SECS seconds' * 7);
	-- a consumer group of the snapshot events (acks whatever it is handed)
	SELECT wval_subscribe('bench_risk', ARRAY['risk_snapshot_updated']);
	CREATE TABLE bench_clock AS SELECT clock_timestamp() AS started;
	CREATE FUNCTION now_iso() RETURNS text LANGUAGE sql AS
	\$\$ SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') \$\$;
	-- the simulated hour of the clock
	CREATE FUNCTION sim_hour() RETURNS integer LANGUAGE sql AS
	\$\$ SELECT floor(extract(epoch FROM clock_timestamp() - started) / ($DAY_SECS / 24.0))::integer FROM bench_clock \$\$;
	CREATE TABLE bench_body AS
	SELECT jsonb_build_object('weights', (SELECT jsonb_object_agg('s' || i, 0.05) FROM generate_series(1, 20) i)) AS weights;
	CREATE FUNCTION body(h integer) RETURNS jsonb LANGUAGE sql AS \$\$
	    SELECT weights || jsonb_build_object('ttl_sec', 10, 'covariance',
	           (SELECT jsonb_object_agg('s' || i || ',s' || j, CASE WHEN i = j THEN 0.04 + h * 1e-6 ELSE 0.005 END)
	            FROM generate_series(1, 20) i, generate_series(1, 20) j WHERE i <= j))
	    FROM bench_body \$\$;
SQL

cat >"$WORK/publish.sql" <<-'SQL'
	SELECT (wval_snapshot_publish('bench_sto', body(sim_hour()) || jsonb_build_object('as_of', now_iso(), 'version', 'v' || txid_current()), 'gw', 'paper')).snapshot_id;
SQL

sizes() {
	"${PSQL[@]}" -d bench -t -A -F ' ' <<-'SQL'
		VACUUM wval.risk_snapshots, wval.blobs, wval.events, wval.delivery_store, wval.chain_tombstones;
		SELECT string_agg(format('%s=%s/%s', t, n, pg_size_pretty(pg_total_relation_size(('wval.' || t)::regclass))), '  ' ORDER BY o)
		FROM (VALUES (1, 'risk_snapshots', (SELECT count(*) FROM wval.risk_snapshots)),
		             (2, 'blobs', (SELECT count(*) FROM wval.blobs)),
		             (3, 'events', (SELECT count(*) FROM wval.events)),
		             (4, 'delivery_store', (SELECT count(*) FROM wval.delivery_store)),
		             (5, 'chain_tombstones', (SELECT count(*) FROM wval.chain_tombstones))) x(o, t, n)
		UNION ALL SELECT 'backlog=' || count(*) FROM wval.deliveries WHERE done_at IS NULL;
	SQL
}

log "publishing at $RATE/s for $SIM_DAYS simulated days of $DAY_SECS s (cadence $CADENCE s simulated)"
"$BIN/pgbench" -n -c 2 -j 2 -R "$RATE" -T $(( SIM_DAYS * DAY_SECS )) -f "$WORK/publish.sql" bench >"$WORK/pgbench.out" 2>&1 &
PGB=$!

# the bus worker and the consumer group: every simulated hour
( while kill -0 "$PGB" 2>/dev/null; do
	"${PSQL[@]}" -d bench -c "CALL wval_work(100000, 2000)" -c "DO \$\$
		DECLARE n integer;
		BEGIN
		    LOOP
		        SELECT wval_ack('bench_risk', ARRAY(SELECT event_id FROM wval_consume('bench_risk', 1000))) INTO n;
		        EXIT WHEN n = 0;
		    END LOOP;
		END \$\$" >/dev/null 2>>"$WORK/worker.err" || echo failed >>"$WORK/worker.err"
	sleep "$(awk "BEGIN {print $DAY_SECS / 24}")"
done ) &
WORKER=$!

printf '%-4s %-8s %s\n' day published "rows/size after the day's prune      [removed: snapshots blobs events]"
start=$(date +%s.%N)
for day in $(seq 1 "$SIM_DAYS"); do
	sleep "$(awk -v s="$start" -v d="$day" -v l="$DAY_SECS" -v n="$(date +%s.%N)" 'BEGIN {w = s + d * l - n; print (w > 0 ? w : 0)}')"
	report=$("${PSQL[@]}" -d bench -t -A -c "SET wval.snapshot_max_age = 10; SELECT wval._storage_prune(now())")
	removed=$(printf '%s' "$report" | python3 -c 'import json,sys; r=json.load(sys.stdin)["tables"]; print(r["risk_snapshots"]["deleted"], r["blobs"]["deleted"], r["events"]["deleted"])')
	published=$("${PSQL[@]}" -d bench -t -A -c "SELECT last_value FROM wval.risk_snapshots_id_seq")
	printf '%-4s %-8s %s   [removed: %s]\n' "$day" "$published" "$(sizes | tr "\n" " ")" "$removed"
done
wait "$PGB" || true
kill "$WORKER" 2>/dev/null || true; wait "$WORKER" 2>/dev/null || true

[ ! -s "$WORK/worker.err" ] || { echo "bus worker errors:"; sort "$WORK/worker.err" | uniq -c | head; }
published=$("${PSQL[@]}" -d bench -t -A -c "SELECT last_value FROM wval.risk_snapshots_id_seq")
awk -v p="$published" -v d="$SIM_DAYS" 'BEGIN {printf "published %d snapshots: %.0f per simulated day, a simulated cadence of %.2f s\n", p, p / d, 86400 * d / p}'
sed -n 's/^\(number of failed transactions.*\|latency average.*\|tps = .*\)/pgbench: \1/p' "$WORK/pgbench.out"
"${PSQL[@]}" -d bench -t -A -c "SELECT 'chain verifies: ' || wval_verify_chain('bench_sto')"
