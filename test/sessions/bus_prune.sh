#!/usr/bin/env bash
# wval_bus_prune over a table of many pages: wval.delivery_store has no B-tree
# over finished deliveries, so the prune reads the old part of the table
# once (block-range index on event_id) and deletes each delivery where it
# found it.  Checks what goes and what stays (an event some group still
# owes keeps all its deliveries, dead letters stay unless asked), that the
# counters of wval.bus_health do not move, that finished deliveries are
# still found by key afterwards, and that the block ranges the prune emptied
# lose their summary (the next vacuum summarizes them afresh).
set -euo pipefail
psql() { "$WVAL_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -At "$@"; }
fail() { echo "not ok - $*"; exit 1; }
ok() { echo "ok - $*"; }

db="bus_prune_$$"
trap 'psql -d postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true' EXIT
psql -d postgres -c "CREATE DATABASE $db"
q() { psql -d "$db" -c "$1"; }

# two groups get every event: 3,000 events in 5 worlds, 6,000 deliveries
# over some 260 pages (block ranges of 32 pages); autovacuum stays out of
# the way so that the summaries are the test's to check
psql -d "$db" >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION wval CASCADE;
ALTER TABLE wval.delivery_store SET (autovacuum_enabled = off);
SELECT wval_subscribe('pa', ARRAY['p.e']);
SELECT wval_subscribe('pb', ARRAY['p.e'], 1);
SELECT wval._emit('p.e', 'w' || (i % 5), 's' || i, 'p.e:' || i, jsonb_build_object('i', i))
FROM generate_series(1, 3000) i;
SQL
# pa finishes everything; pb everything but world w4 (handed out, not
# acked: outstanding), and one event of w3 dies (max_attempts 1)
first=$(q "SELECT min(event_id) FROM wval.events WHERE type = 'p.e'")
dead=$(q "SELECT min(event_id) FROM wval.events WHERE type = 'p.e' AND world_id = 'w3'")
q "DO \$\$
DECLARE got bigint[]; ids bigint[];
BEGIN
    LOOP
        got := ARRAY(SELECT event_id FROM wval_consume('pa', 1000));
        EXIT WHEN cardinality(got) = 0;
        PERFORM wval_ack('pa', got);
    END LOOP;
    LOOP
        SELECT array_agg(c.event_id), coalesce(array_agg(c.event_id) FILTER (WHERE c.world_id <> 'w4'), '{}')
        INTO got, ids FROM wval_consume('pb', 1000) c;
        EXIT WHEN got IS NULL;
        IF $dead = ANY (ids) THEN
            PERFORM wval_nack('pb', $dead, 'refused');
            ids := array_remove(ids, $dead);
        END IF;
        PERFORM wval_ack('pb', ids);
    END LOOP;
END \$\$" >/dev/null
# w4's events were handed out to pb too (the loop above skips them): they are outstanding
[ "$(q "SELECT count(*) FILTER (WHERE outcome = 'acked') || ' ' || count(*) FILTER (WHERE done_at IS NULL) || ' ' ||
        count(*) FILTER (WHERE outcome = 'dead') FROM wval.delivery_store")" = "5399 600 1" ] ||
	fail "setup: acked, outstanding, dead: $(q "SELECT count(*) FILTER (WHERE outcome = 'acked'), count(*) FILTER (WHERE done_at IS NULL) FROM wval.delivery_store")"
q "VACUUM wval.delivery_store"
q "SELECT brin_summarize_new_values('wval.deliveries_event_brin')" >/dev/null	# the last, partial range
pages=$(q "SELECT pg_relation_size('wval.delivery_store') / 8192")
[ "$pages" -ge 64 ] || fail "the deliveries fill $pages pages, fewer than two block ranges"
[ "$(q "SELECT brin_summarize_new_values('wval.deliveries_event_brin')")" = 0 ] || fail "vacuum left ranges unsummarized"
health() { q "SELECT string_agg(group_name || ':' || processed || '/' || dead_lettered, ' ' ORDER BY group_name) FROM wval.bus_health WHERE type = 'p.e'"; }
before=$(health)
ok "setup: 3,000 events, $pages pages of deliveries, health $before"

# prune and count the ranges it took the summary from, in one transaction
# (nothing else summarizes them in between)
out=$(psql -d "$db" -c "BEGIN" -c "SELECT r->>'events_deleted', r->>'deliveries_deleted' FROM wval_bus_prune('0') r" \
	-c "SELECT brin_summarize_new_values('wval.deliveries_event_brin')" -c "COMMIT")
report=$(sed -n 1p <<<"$out")
resummarized=$(sed -n 2p <<<"$out")
# events of w0..w3 but the dead one go with both deliveries (2,399), and
# the event_dead_lettered event, which no group receives
[ "$report" = "2400|4798" ] || fail "prune: events, deliveries deleted: $report"
ok "the prune removes the 2,399 events both groups finished with their 4,798 deliveries, and one event no group received"
[ "$(q "SELECT count(*) FROM wval.events WHERE type = 'p.e'") $(q "SELECT count(*) FROM wval.delivery_store")" = "601 1202" ] ||
	fail "left: $(q "SELECT count(*) FROM wval.events WHERE type = 'p.e'") events, $(q "SELECT count(*) FROM wval.delivery_store") deliveries"
[ "$(q "SELECT count(*) FROM wval.delivery_store d JOIN wval.events e USING (event_id)
        WHERE e.world_id = 'w4' AND d.group_name = 'pa' AND d.outcome = 'acked'")" = 600 ] ||
	fail "the events pb still owes lost pa's finished deliveries"
ok "the 600 events pb still owes stay with both deliveries, and the dead letter with its two"
[ "$(health)" = "$before" ] || fail "health moved: $before -> $(health)"
ok "bus_health's counters do not move ($before)"
[ "$resummarized" -ge 2 ] || fail "the prune left the summaries of the ranges it emptied ($resummarized summarized afterwards)"
ok "the prune took the summary of the $resummarized block ranges it emptied"

# finished deliveries are still found by key
w4=$(q "SELECT min(event_id) FROM wval.events WHERE world_id = 'w4'")
[ "$(q "SELECT wval_ack('pa', $w4)")" = f ] || fail "a second ack of a kept acked delivery"
[ "$(q "SELECT wval_nack('pa', $w4, 'late')")" = ignored ] || fail "a nack of a kept acked delivery"
err=$(psql -d "$db" -c '\set VERBOSITY verbose' -c "SELECT wval_ack('pa', $first)" 2>&1 || true)
grep -q 'ERROR:  WV010' <<<"$err" || fail "an ack of a pruned event: $err"
ok "after the prune an acked delivery is still found by key (ack false, nack ignored), a pruned one is WV010"

# dead letters go when asked
report=$(q "SELECT r->>'events_deleted', r->>'deliveries_deleted' FROM wval_bus_prune('0', include_dead_letters => true) r")
[ "$report" = "1|2" ] || fail "prune with dead letters: events, deliveries deleted: $report"
[ "$(q "SELECT count(*) FROM wval.delivery_store WHERE event_id = $dead")" = 0 ] || fail "the dead letter stayed"
ok "with include_dead_letters the dead letter goes with its event"
