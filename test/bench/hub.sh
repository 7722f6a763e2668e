#!/usr/bin/env bash
# test/bench/hub.sh: throughput of the risk hub (not part of the test suite).
#
#   small      wval_snapshot_publish of a 10-strategy snapshot with its full
#              55-entry covariance (stays inline)
#   offloaded  the same for 20 strategies and a 210-entry covariance, moved
#              to wval.blobs (2,000 distinct covariances, so most publishes
#              write a new blob)
#   portfolio  wval_portfolio_risk of the small and the offloaded snapshot
#              (the latter expands the blob and re-verifies its hash)
#
# Each runs pgbench against a throw-away cluster (scripts/lib.sh) with the
# server's default durability (fsync and synchronous_commit on).
#
# Usage: test/bench/hub.sh [seconds per run, default 15] [clients, default 2]

source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

SECS=${1:-15}
CLIENTS=${2:-2}

bench_cluster postgres "max_wal_size = 2GB"

"${PSQL[@]}" -d postgres -c "CREATE DATABASE bench" >/dev/null
"${PSQL[@]}" -d bench >/dev/null <<-'SQL'
	SET client_min_messages = warning;
	CREATE EXTENSION wval CASCADE;
	SELECT wval_world_upsert(w) FROM unnest(ARRAY['bench_small', 'bench_big']) w;
	SELECT wval_producer_register(w, 'gw') FROM unnest(ARRAY['bench_small', 'bench_big']) w;
	-- bodies: the snapshot without as_of and version
	CREATE TABLE bench_small AS
	SELECT jsonb_build_object(
	         'weights', (SELECT jsonb_object_agg('s' || i, 0.1) FROM generate_series(1, 10) i),
	         'covariance', (SELECT jsonb_object_agg('s' || i || ',s' || j, CASE WHEN i = j THEN 0.04 ELSE 0.005 END)
	                        FROM generate_series(1, 10) i, generate_series(1, 10) j WHERE i <= j)) AS body;
	CREATE TABLE bench_big AS
	SELECT n AS id, jsonb_build_object(
	         'weights', (SELECT jsonb_object_agg('s' || i, 0.05) FROM generate_series(1, 20) i),
	         'covariance', (SELECT jsonb_object_agg('s' || i || ',s' || j,
	                                                CASE WHEN i = j THEN 0.04 + n * 1e-6 ELSE 0.005 END)
	                        FROM generate_series(1, 20) i, generate_series(1, 20) j WHERE i <= j)) AS body
	FROM generate_series(1, 2000) n;
	ALTER TABLE bench_big ADD PRIMARY KEY (id);
	CREATE FUNCTION now_iso() RETURNS text LANGUAGE sql AS
	$$ SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') $$;
	-- one fresh snapshot per world for the portfolio runs
	SELECT wval_snapshot_publish('bench_small', body || jsonb_build_object('as_of', now_iso(), 'version', 'p0'), 'gw', 'live')
	FROM bench_small;
	SELECT wval_snapshot_publish('bench_big', body || jsonb_build_object('as_of', now_iso(), 'version', 'p0'), 'gw', 'live')
	FROM bench_big WHERE id = 1;
SQL

cat >"$WORK/small.sql" <<-'SQL'
	SELECT (wval_snapshot_publish('bench_small', body || jsonb_build_object('as_of', now_iso(), 'version', 'v' || txid_current()), 'gw', 'paper')).snapshot_id FROM bench_small;
SQL
cat >"$WORK/offloaded.sql" <<-'SQL'
	\set id random(1, 2000)
	SELECT (wval_snapshot_publish('bench_big', body || jsonb_build_object('as_of', now_iso(), 'version', 'v' || txid_current()), 'gw', 'paper')).snapshot_id FROM bench_big WHERE id = :id;
SQL
cat >"$WORK/portfolio_small.sql" <<-'SQL'
	SELECT wval_portfolio_risk('bench_small', 'live');
SQL
cat >"$WORK/portfolio_big.sql" <<-'SQL'
	SELECT wval_portfolio_risk('bench_big', 'live');
SQL

run() {
	local name=$1 file=$2
	local tps
	tps=$("$BIN/pgbench" -n -c "$CLIENTS" -j "$CLIENTS" -T "$SECS" -f "$file" bench 2>&1 |
		sed -n 's/^tps = \([0-9.]*\) .*/\1/p')
	printf '%-28s %10s per second  (%d clients, %d s)\n' "$name" "$tps" "$CLIENTS" "$SECS"
}

log "pgbench: $CLIENTS clients, $SECS s per run"
run "publish, small" "$WORK/small.sql"
run "publish, offloaded" "$WORK/offloaded.sql"
"${PSQL[@]}" -d bench -t -A -c "SELECT 'stored: ' || (SELECT count(*) FROM wval.risk_snapshots) || ' snapshots, ' ||
                                        (SELECT count(*) FROM wval.blobs) || ' blobs'"
run "portfolio_risk, small" "$WORK/portfolio_small.sql"
run "portfolio_risk, offloaded" "$WORK/portfolio_big.sql"
