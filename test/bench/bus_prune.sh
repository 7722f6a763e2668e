#!/usr/bin/env bash
# test/bench/bus_prune.sh: lookups of finished deliveries by key after many
# prune cycles (not part of scripts/test.sh).
#
#   test/bench/bus_prune.sh [cycles 8] [events per cycle 20000]
#
# wval.delivery_store has no B-tree over finished deliveries: a second ack or a
# late nack finds its delivery through the block-range index on event_id
# (docs/bus.md, "Throughput").  Each cycle publishes EVENTS events of 50
# worlds to one group, drains them (one consumer, ack per batch), prunes
# what is older than the cycle before (wval_bus_prune('8 seconds'), so the
# table holds about two cycles) and vacuums, as autovacuum would.  The
# freed space takes the next cycle's rows.
#
# Two databases run the same cycles: one with wval_bus_prune as shipped,
# which takes the summary from the block ranges it emptied, the baseline
# with a copy that keeps them (the one call removed).  Printed: the pages of
# the table and the heap pages a lookup by (group, event_id) reads, for an
# event of the newest cycle, the oldest kept and one in between.

source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
cycles=${1:-8}
events=${2:-20000}

bench_cluster postgres
py=python3; [ -x /usr/bin/python3 ] && py=/usr/bin/python3
drain=$(dirname "$0")/bus_drain.py

for db in shipped baseline; do
	"${PSQL[@]}" -d postgres -c "CREATE DATABASE $db"
	# autovacuum stays off on the deliveries: each cycle vacuums and analyzes them itself
	"${PSQL[@]}" -d $db >/dev/null <<-'SQL'
	SET client_min_messages = warning;
	CREATE EXTENSION wval CASCADE;
	ALTER TABLE wval.delivery_store SET (autovacuum_enabled = off);
	SELECT wval_subscribe('g', ARRAY['c.e']);
	SQL
done
# the baseline's prune keeps the summaries: the same function without the
# brin_desummarize_range call
"$BIN/psql" -X -At -d baseline -c "SELECT pg_get_functiondef('public.wval_bus_prune(interval,boolean)'::regprocedure)" |
	sed 's/PERFORM pg_catalog.brin_desummarize_range(.*$/PERFORM 1;/; /FROM (SELECT DISTINCT ((t.tid::text::point)/d' >"$WORK/prune.sql"
grep -q brin_desummarize_range "$WORK/prune.sql" && die "could not take the summary call out of the baseline's prune"
"${PSQL[@]}" -d baseline -f "$WORK/prune.sql" >/dev/null

for c in $(seq 1 "$cycles"); do
	for db in shipped baseline; do
		"${PSQL[@]}" -d $db -c "SELECT count(wval._emit('c.e', 'w' || (i % 50), 's' || i, 'c.e:$c:' || i, '{}'))
		                        FROM generate_series(1, $events) i" >/dev/null
		PGDATABASE=$db "$py" "$drain" g batch 1 >/dev/null
		"${PSQL[@]}" -d $db -c "SELECT wval_bus_prune('8 seconds')" -c "VACUUM ANALYZE wval.delivery_store" >/dev/null
	done
	sleep 5
done

# heap pages a lookup of one finished delivery reads (Bitmap Heap Scan)
lookup() {
	"$BIN/psql" -X -At -d "$1" -c "EXPLAIN (ANALYZE, TIMING OFF, COSTS OFF)
	    SELECT * FROM wval.delivery_store WHERE group_name = 'g' AND event_id = $2" |
		sed -n 's/.*Heap Blocks: \(.*\)$/\1/p'
}
printf '%-9s %7s %8s  %s\n' database pages rows "heap pages read by a lookup: newest / in between / oldest kept"
for db in shipped baseline; do
	read -r lo hi < <("$BIN/psql" -X -At -F' ' -d $db -c "SELECT min(event_id), max(event_id) FROM wval.deliveries")
	printf '%-9s %7s %8s  %s / %s / %s\n' $db \
		"$("$BIN/psql" -X -At -d $db -c "SELECT pg_relation_size('wval.delivery_store') / 8192")" \
		"$("$BIN/psql" -X -At -d $db -c "SELECT count(*) FROM wval.deliveries")" \
		"$(lookup $db $((hi - 5)))" "$(lookup $db $(((lo + hi) / 2)))" "$(lookup $db $((lo + 100)))"
done
