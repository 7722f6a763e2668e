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
#      and once with one wval_ack(group, ids[]) per batch -> events/s.
# The baseline, in the same cluster: a pgmq-style queue table. Publish: the
# same row insert plus an insert into the queue and a pg_notify in the same
# transaction; drain: 3 threads reading 100 at a time (UPDATE ... FOR UPDATE
# SKIP LOCKED setting a visibility timeout) and deleting what they read.
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
# the queue gets as many messages as each group has events
"$BIN/psql" -q -X -v ON_ERROR_STOP=1 -c "DELETE FROM bench_queue" -c "INSERT INTO bench_queue (payload)
    SELECT e.payload FROM wval.events e ORDER BY e.event_id" -c "VACUUM ANALYZE bench_queue" -c "ANALYZE wval.deliveries"
"$py" "$(dirname "$0")/bus_drain.py" bench-per-event one
b=$("$py" "$(dirname "$0")/bus_drain.py" bench-batch batch); echo "$b"
q=$("$py" "$(dirname "$0")/bus_drain.py" bench_queue queue); echo "$q"
rate() { sed -n 's/.*, \([0-9]*\) events\/s.*/\1/p' <<<"$1"; }
printf 'drain, wval (ack per batch) / queue: %.2f\n' "$(awk -v a="$(rate "$b")" -v b="$(rate "$q")" 'BEGIN {print a / b}')"
"$BIN/psql" -X -c "SELECT group_name, backlog, processed, retried, latency_p95_ms FROM wval.bus_health ORDER BY 1"
