"""Drains one consumer group with N threads (default 3) and prints events/s (test/bench/bus.sh).

    python3 bus_drain.py GROUP one|batch|queue [N]

one: wval_ack(group, event_id) per event; batch: wval_ack(group, ids[]) per batch;
queue: the baseline, a pgmq-style queue table (GROUP names it): read 100 with
UPDATE ... FOR UPDATE SKIP LOCKED (visibility timeout), then DELETE them by id.
Both sides fetch the id and the payload of each message, the payload as text.
"""
import sys
import threading
import time

import psycopg2
import psycopg2.extras

# payloads arrive as text on both sides: parsing JSON in Python (under the
# GIL of this one process) would measure the client, not the server
psycopg2.extras.register_default_jsonb(globally=True, loads=lambda text: text)

group, mode = sys.argv[1], sys.argv[2]
consumers = int(sys.argv[3]) if len(sys.argv) > 3 else 3
counts = [0] * consumers


def work(i):
    conn = psycopg2.connect("")
    conn.autocommit = True
    cur = conn.cursor()
    while True:
        if mode == "queue":
            cur.execute("UPDATE " + group + " q SET vt = clock_timestamp() + interval '5 min', read_ct = read_ct + 1 "
                        "WHERE q.id IN (SELECT id FROM " + group + " WHERE vt <= clock_timestamp() "
                        "ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED) RETURNING q.id, q.payload")
            ids = [r[0] for r in cur.fetchall()]
            if not ids:
                return
            cur.execute("DELETE FROM " + group + " WHERE id = ANY(%s)", (ids,))
            counts[i] += len(ids)
            continue
        cur.execute("SELECT event_id, payload FROM wval_consume(%s, 100)", (group,))
        ids = [r[0] for r in cur.fetchall()]
        if not ids:
            # nothing visible: the group is drained, or its other worlds are
            # in the other consumers' hands for now
            if sum(counts) >= backlog:
                return
            time.sleep(0.002)
            continue
        if mode == "batch":
            cur.execute("SELECT wval_ack(%s, %s::bigint[])", (group, ids))
        else:
            for eid in ids:
                cur.execute("SELECT wval_ack(%s, %s)", (group, eid))
        counts[i] += len(ids)


# the group's backlog, counted before the clock starts (the queue ends at an empty read)
backlog = 0
if mode != "queue":
    conn0 = psycopg2.connect("")
    cur0 = conn0.cursor()
    cur0.execute("SELECT count(*) FROM wval.deliveries WHERE group_name = %s AND done_at IS NULL", (group,))
    backlog = cur0.fetchone()[0]
    conn0.close()

t0 = time.monotonic()
threads = [threading.Thread(target=work, args=(i,)) for i in range(consumers)]
for t in threads:
    t.start()
for t in threads:
    t.join()
dt = time.monotonic() - t0
n = sum(counts)
print("drain (%s, %d consumer%s, ack %s): %d events in %.1fs, %.0f events/s (per consumer %s)"
      % (group, consumers, "s" if consumers > 1 else "", {"one": "per event", "batch": "per batch", "queue": "by delete"}[mode], n, dt, n / dt, counts),
      flush=True)
