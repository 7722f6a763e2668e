#!/usr/bin/env bash
# test/bench/bus.sh: event-bus throughput (not part of scripts/test.sh).
#
#   test/bench/bus.sh [seconds]       (default 20 s of publishing)
#
# On a throw-away cluster (PostgreSQL defaults: fsync and synchronous_commit
# on; BUS_BENCH_FAST=1 turns them off), one consumer group against one queue
# (each group of wval is a queue of its own; a pgmq deployment with two
# groups would keep two queue tables):
#   1. publish: pgbench, 4 clients, each transaction inserts a row into a
#      table and emits its event with wval._emit (one consumer group is
#      subscribed, so every event also gets its delivery row) -> events/s,
#      with the notifier's wake-ups and with wval.notify_interval = 0 (each
#      transaction NOTIFYs, as before the notifier), as a ratio;
#   2. drain, 3 consumer threads (test/bench/bus_drain.py), wval_consume 100
#      at a time and one wval_ack(group, ids[]) per batch, against the queue
#      (both fetch each message's id and payload, the payload as text):
#      BUS_BENCH_ROUNDS rounds (default 3), wval first in odd rounds, the
#      queue first in even ones.  Round 1 drains the group that publishing
#      filled; each later round a new group whose deliveries are written in
#      event order (the layout one group's publishing leaves);
#   3. once each: 3 consumers acknowledging each event with
#      wval_ack(group, id); 1 consumer (ack per batch) against the queue;
#      and 3 consumers of one of two groups whose deliveries alternate in
#      the table (as two groups' publishing leaves them: each batch spans
#      twice the pages) against the queue.
# The baseline, in the same cluster: a pgmq-style queue table. Publish: the
# same row insert plus an insert into the queue and a pg_notify in the same
# transaction; drain: reading 100 at a time (UPDATE ... FOR UPDATE SKIP
# LOCKED setting a visibility timeout) and deleting what they read.
# Both tables are vacuumed before each drain (wval's groups share
# wval.delivery_store: a drain would otherwise prune what the one before left),
# and a checkpoint follows.
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
# versions an earlier drain left (wval's groups share wval.delivery_store), and
# a checkpoint follows, so that every drain writes the full-page images of
# the pages it changes (a checkpoint falling inside one drain and not the
# other moved single ratios by 10-15 %)
fill_queue() {
	"$BIN/psql" -q -X -v ON_ERROR_STOP=1 -c "DELETE FROM bench_queue" -c "INSERT INTO bench_queue (payload)
	    SELECT e.payload FROM wval.events e ORDER BY e.event_id" -c "VACUUM ANALYZE bench_queue" -c "VACUUM ANALYZE wval.delivery_store" \
		-c "CHECKPOINT"
}
rate() { sed -n 's/.*, \([0-9]*\) events\/s.*/\1/p' <<<"$1"; }
ratio() { awk -v a="$(rate "$1")" -v b="$(rate "$2")" 'BEGIN {printf "%.2f", a / b}'; }
# deliveries GROUP...: subscribes the groups now and writes their deliveries
# of every event, in event order (groups alternating within an event), as
# the emitter would have written them had they been subscribed
deliveries() {
	local values="" g
	for g in "$@"; do values="$values${values:+, }('$g')"; done
	"$BIN/psql" -q -X -v ON_ERROR_STOP=1 >/dev/null <<-SQL
	SELECT wval_subscribe(g, ARRAY['bench.run_created'], 3, '500ms', '5min') FROM (VALUES $values) v(g);
	INSERT INTO wval.delivery_store (group_name, event_id, type, world_key, enqueued_at, expires_at, visible_at)
	SELECT v.g, e.event_id, e.type, coalesce(e.world_id, ''), e.created_at, e.expires_at, e.created_at
	FROM wval.events e CROSS JOIN (VALUES $values) v(g)
	WHERE e.type = 'bench.run_created' ORDER BY e.event_id, v.g;
	SQL
}
# pair GROUP CONSUMERS QUEUE_FIRST: one drain of the group and one of the
# queue (refilled), each on vacuumed tables; prints both lines, then the ratio
pair() {
	local w q
	if [ "$3" = yes ]; then
		fill_queue; q=$("$py" "$drain" bench_queue queue "$2")
		fill_queue; w=$("$py" "$drain" "$1" batch "$2")
	else
		fill_queue; w=$("$py" "$drain" "$1" batch "$2")
		fill_queue; q=$("$py" "$drain" bench_queue queue "$2")
	fi
	echo "$w"; echo "$q"; echo "ratio $(ratio "$w" "$q")"
}
rounds=${BUS_BENCH_ROUNDS:-3}
r3=()
for r in $(seq 1 "$rounds"); do
	g=bench-batch
	[ "$r" -gt 1 ] && { g=bench-batch-$r; deliveries "$g"; }
	out=$(pair "$g" 3 "$([ $((r % 2)) = 0 ] && echo yes || echo no)")
	sed '$d' <<<"$out"
	r3+=("$(tail -1 <<<"$out" | cut -d' ' -f2)")
done
median=$(printf '%s\n' "${r3[@]}" | sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}')

deliveries bench-per-event
fill_queue
"$py" "$drain" bench-per-event one
deliveries bench-single
out1=$(pair bench-single 1 no); sed '$d' <<<"$out1"
deliveries bench-x bench-y
outx=$(pair bench-x 3 no); sed '$d' <<<"$outx"

printf 'drain, 3 consumers, wval (ack per batch) / queue, per round: %s; median %s\n' "${r3[*]}" "$median"
printf 'drain, 1 consumer, wval / queue: %s\n' "$(tail -1 <<<"$out1" | cut -d' ' -f2)"
printf 'drain, 3 consumers, one of two groups whose deliveries alternate, wval / queue: %s\n' "$(tail -1 <<<"$outx" | cut -d' ' -f2)"
"$BIN/psql" -X -c "SELECT group_name, backlog, processed, retried, latency_p95_ms FROM wval.bus_health ORDER BY 1"
printf 'load average (1, 5, 15 min): %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
