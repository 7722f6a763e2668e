#!/usr/bin/env bash
# test/bench/bus.sh: event-bus throughput (not part of scripts/test.sh).
#
#   test/bench/bus.sh [seconds]       (default 20 s of publishing)
#
# On a throw-away cluster (PostgreSQL defaults: fsync and synchronous_commit
# on; BUS_BENCH_FAST=1 turns them off):
#   1. publish: pgbench, 4 clients, each transaction inserts a row into a
#      table and emits its event with wval._emit (a consumer group is
#      subscribed, so every event also gets its delivery row) -> events/s,
#      with the notifier's wake-ups and with wval.notify_interval = 0 (each
#      transaction NOTIFYs, as before the notifier), as a ratio;
#   2. drain: 3 consumer threads (test/bench/bus_drain.py), wval_consume 100
#      at a time, once acknowledging each event with wval_ack(group, id)
#      and once with one wval_ack(group, ids[]) per batch; then 1 consumer
#      (ack per batch) -> events/s.
# The baseline, in the same cluster: a pgmq-style queue table. Publish: the
# same row insert plus an insert into the queue and a pg_notify in the same
# transaction; drain: 3 threads, then 1, reading 100 at a time (UPDATE ...
# FOR UPDATE SKIP LOCKED setting a visibility timeout) and deleting what they
# read.
# Both tables are vacuumed before each drain (wval's groups share
# wval.deliveries: a drain would otherwise prune what the one before left).
# Printed as ratios wval / queue.
# Prints the numbers; keep the machine otherwise idle for comparable runs.

source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
secs=${1:-20}

extra=""
[ "${BUS_BENCH_FAST:-0}" = 1 ] && extra="fsync = off
synchronous_commit = off"
bench_cluster bench "$extra
shared_buffers = 256MB"
export PGDATABASE=bench
"$BIN/psql" -q -X -d postgres -c "CREATE DATABASE bench"
"$BIN/psql" -q -X -v ON_ERROR_STOP=1 <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION wval CASCADE;
CREATE TABLE bench_runs (id bigserial PRIMARY KEY, world_id text NOT NULL, metrics jsonb NOT NULL,
                         created_at timestamptz NOT NULL DEFAULT now());
SELECT group_name FROM wval_subscribe('bench-per-event', ARRAY['bench.run_created'], 3, '500ms', '5min');
SELECT group_name FROM wval_subscribe('bench-batch', ARRAY['bench.run_created'], 3, '500ms', '5min');
CREATE TABLE bench_queue (id bigserial PRIMARY KEY, vt timestamptz NOT NULL DEFAULT clock_timestamp(),
                          read_ct integer NOT NULL DEFAULT 0, enqueued_at timestamptz NOT NULL DEFAULT clock_timestamp(),
                          payload jsonb NOT NULL);
CREATE INDEX ON bench_queue (vt);
SQL

cat >"$WORK/publish.sql" <<'EOF2'
\set w random(1, 50)
BEGIN;
INSERT INTO bench_runs (world_id, metrics) VALUES ('w' || :w, '{"sharpe": 1.25, "max_drawdown": -0.12}') RETURNING id \gset
SELECT wval._emit('bench.run_created', 'w' || :w, :id::text, 'bench.run_created:w' || :w || ':' || :id,
                  jsonb_build_object('run_id', :id, 'world', 'w' || :w, 'status', 'pass', 'stage', 'backtest',
                                     'recommended_stage', 'paper_only', 'policy_version', 3));
END;
EOF2
cat >"$WORK/queue.sql" <<'EOF2'
\set w random(1, 50)
BEGIN;
INSERT INTO bench_runs (world_id, metrics) VALUES ('w' || :w, '{"sharpe": 1.25, "max_drawdown": -0.12}') RETURNING id \gset
INSERT INTO bench_queue (payload)
VALUES (jsonb_build_object('type', 'bench.run_created', 'world_id', 'w' || :w, 'subject', :id::text,
                           'data', jsonb_build_object('run_id', :id, 'world', 'w' || :w, 'status', 'pass', 'stage', 'backtest',
                                                      'recommended_stage', 'paper_only', 'policy_version', 3)));
SELECT pg_notify('bench_queue', '');
END;
EOF2
# publish OPTS [SCRIPT]: one pgbench run of publish.sql (PGOPTIONS=OPTS); prints "tps latency"
publish() {
	PGOPTIONS="$1" "$BIN/pgbench" -n -c 4 -j 2 -T "$secs" -f "${2:-$WORK/publish.sql}" >"$WORK/pgbench.out" 2>&1 ||
		{ cat "$WORK/pgbench.out" >&2; die "pgbench failed"; }
	echo "$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$WORK/pgbench.out")" \
		"$(sed -n 's/^latency average = \(.*\)$/\1/p' "$WORK/pgbench.out")"
}
# wake-ups from the notifier worker (the default), then with
# wval.notify_interval = 0: every publishing transaction NOTIFYs itself, as
# before the notifier, and queues on NOTIFY's cluster-wide commit lock
log "publish: pgbench -c 4 -j 2 -T $secs (insert a row + wval._emit per transaction), twice"
read -r tps lat < <(publish "")
read -r tps0 lat0 < <(publish "-c wval.notify_interval=0")
read -r tpsq latq < <(publish "" "$WORK/queue.sql")
events=$("$BIN/psql" -X -At -c "SELECT count(*) FROM wval.events")
printf 'publish, wake-ups from the notifier:         %.0f events/s (latency average %s)\n' "$tps" "$lat"
printf 'publish, NOTIFY in each transaction (before): %.0f events/s (latency average %s); ratio %.2f\n' \
	"$tps0" "$lat0" "$(awk -v a="$tps" -v b="$tps0" 'BEGIN {print a / b}')"
printf 'publish, queue baseline (insert + pg_notify): %.0f events/s (latency average %s); wval/queue %.2f\n' \
	"$tpsq" "$latq" "$(awk -v a="$tps" -v b="$tpsq" 'BEGIN {print a / b}')"
printf '%s events published in 2 x %ss\n' "$events" "$secs"

py=python3; [ -x /usr/bin/python3 ] && py=/usr/bin/python3
drain=$(dirname "$0")/bus_drain.py
# fill_queue: the queue gets as many messages as each group has events; both
# tables are vacuumed, so that neither drain starts by pruning the row
# versions an earlier drain left (wval's groups share wval.deliveries)
fill_queue() {
	"$BIN/psql" -q -X -v ON_ERROR_STOP=1 -c "DELETE FROM bench_queue" -c "INSERT INTO bench_queue (payload)
	    SELECT e.payload FROM wval.events e ORDER BY e.event_id" -c "VACUUM ANALYZE bench_queue" -c "VACUUM ANALYZE wval.deliveries"
}
rate() { sed -n 's/.*, \([0-9]*\) events\/s.*/\1/p' <<<"$1"; }
ratio() { awk -v a="$(rate "$1")" -v b="$(rate "$2")" 'BEGIN {printf "%.2f", a / b}'; }
fill_queue
"$py" "$drain" bench-per-event one
"$BIN/psql" -q -X -c "VACUUM ANALYZE wval.deliveries"
b3=$("$py" "$drain" bench-batch batch 3); echo "$b3"
q3=$("$py" "$drain" bench_queue queue 3); echo "$q3"
# one consumer: the group bench-single gets the deliveries the emitter
# would have written (it is subscribed only now, so that publishing above
# wrote two delivery rows per event, not three), the queue its messages again
"$BIN/psql" -q -X -v ON_ERROR_STOP=1 <<'SQL'
SELECT group_name FROM wval_subscribe('bench-single', ARRAY['bench.run_created'], 3, '500ms', '5min') \gset
INSERT INTO wval.deliveries (group_name, event_id, type, world_key, enqueued_at, expires_at, visible_at)
SELECT 'bench-single', e.event_id, e.type, coalesce(e.world_id, ''), e.created_at, e.expires_at, e.created_at
FROM wval.events e WHERE e.type = 'bench.run_created' ORDER BY e.event_id;
SQL
fill_queue
b1=$("$py" "$drain" bench-single batch 1); echo "$b1"
q1=$("$py" "$drain" bench_queue queue 1); echo "$q1"
printf 'drain, wval (ack per batch) / queue: 3 consumers %s, 1 consumer %s\n' "$(ratio "$b3" "$q3")" "$(ratio "$b1" "$q1")"
"$BIN/psql" -X -c "SELECT group_name, backlog, processed, retried, latency_p95_ms FROM wval.bus_health ORDER BY 1"
printf 'load average (1, 5, 15 min): %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
