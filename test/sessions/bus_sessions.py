"""Multi-session tests of the event bus (run by test/sessions/bus_*.sh).

    python3 bus_sessions.py notify|late_commit|concurrent|concurrent_busy

Each test connects with the libpq environment that scripts/test.sh exports
(PGHOST, PGPORT, PGUSER, PGDATABASE), prints what it checks, and exits
non-zero on the first failed check.  Names (groups, types, worlds) carry a
per-run suffix so that the tests can share the database with the others.
"""

import json
import random
import select
import sys
import threading
import time
import uuid

import psycopg2

RUN = uuid.uuid4().hex[:8]


def connect(dbname=None, autocommit=True):
    """A connection from the libpq environment, to dbname when given."""
    conn = psycopg2.connect("" if dbname is None else "dbname=" + dbname)
    conn.autocommit = autocommit
    return conn


def check(cond, what):
    print(("ok - " if cond else "not ok - ") + what, flush=True)
    if not cond:
        sys.exit(1)


def one(conn, sql, args=()):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()[0]


def notifies(conn, wait):
    """Payloads of the wake-ups on wval_events that arrive on conn within wait seconds."""
    got = []
    end = time.monotonic() + wait
    while True:
        left = end - time.monotonic()
        if left <= 0:
            break
        if select.select([conn], [], [], left) != ([], [], []):
            conn.poll()
            got += [n.payload for n in conn.notifies if n.channel == "wval_events"]
            conn.notifies.clear()
    return got


def test_notify():
    """A wake-up arrives only after commit and carries nothing; rollback sends nothing."""
    typ = "s.notify." + RUN
    listener = connect()
    listener.cursor().execute("LISTEN wval_events")
    writer = connect(autocommit=False)

    big = "x" * 20000    # far above NOTIFY's 8000-byte limit: must not travel
    eid = one(writer, "SELECT wval._emit(%s, 'nw', 's1', %s, jsonb_build_object('big', %s::text))",
              (typ, typ + ":1", big))
    check(notifies(listener, 1.0) == [], "no wake-up while the emitting transaction is open")
    check(one(listener, "SELECT count(*) FROM wval.events WHERE event_id = %s", (eid,)) == 0,
          "the uncommitted event is invisible to other sessions")
    writer.commit()
    got = notifies(listener, 5.0)
    check(got == [""], "after commit one wake-up with an empty payload (any role may LISTEN): %r" % (got,))
    check(one(listener, "SELECT payload->'data'->>'big' FROM wval.events WHERE event_id = %s", (eid,)) == big,
          "the outbox holds the committed event with its full data")

    one(writer, "SELECT wval._emit(%s, 'nw', 's2', %s, '{}')", (typ, typ + ":2"))
    writer.rollback()
    check(notifies(listener, 1.0) == [], "a rolled-back emit sends no wake-up")
    check(one(listener, "SELECT count(*) FROM wval.events WHERE idempotency_key = %s", (typ + ":2",)) == 0,
          "and leaves no event")

    # a real write path: publishing a policy wakes listeners the same way
    world = "nw-" + RUN
    one(writer, "SELECT world_id FROM wval_world_upsert(%s, actor => 'tester')", (world,))
    version = one(writer, "SELECT wval_policy_publish(%s, '{\"validation_profiles\": {}}', 'alice')", (world,))
    check(notifies(listener, 0.5) == [], "wval_policy_publish: no wake-up before commit")
    writer.commit()
    got = notifies(listener, 5.0)
    check(got and set(got) == {""}, "wval_policy_publish: a wake-up after commit, empty: %r" % (got,))
    check(one(listener, "SELECT subject FROM wval.events WHERE world_id = %s AND type = 'policy_version_published'",
              (world,)) == "v%d" % version,
          "and the outbox has policy_version_published v%d" % version)


def test_late_commit():
    """A smaller event_id that commits after a larger one is delivered, not skipped."""
    typ = "s.late." + RUN
    group = "late-" + RUN
    admin = connect()
    one(admin, "SELECT group_name FROM wval_subscribe(%s, %s)", (group, [typ]))
    t1 = connect(autocommit=False)
    t2 = connect(autocommit=False)
    small = one(t1, "SELECT wval._emit(%s, 'lw', 'a', %s, '{}')", (typ, typ + ":a"))
    large = one(t2, "SELECT wval._emit(%s, 'lw', 'b', %s, '{}')", (typ, typ + ":b"))
    check(small < large, "the open transaction holds the smaller event_id (%d < %d)" % (small, large))
    t2.commit()

    consumer = connect()
    with consumer.cursor() as cur:
        cur.execute("SELECT event_id FROM wval_consume(%s, 100)", (group,))
        first = [r[0] for r in cur.fetchall()]
    check(first == [large], "the consumer sees only the committed larger id: %r" % first)
    check(one(consumer, "SELECT wval_ack(%s, %s)", (group, large)), "and acks it")

    t1.commit()
    with consumer.cursor() as cur:
        cur.execute("SELECT event_id FROM wval_consume(%s, 100)", (group,))
        second = [r[0] for r in cur.fetchall()]
    check(second == [small], "after the late commit the smaller id is handed out: %r" % second)
    check(one(consumer, "SELECT wval_ack(%s, %s)", (group, small)), "and acked")
    check(one(consumer, "SELECT count(*) FILTER (WHERE outcome = 'acked' AND attempts = 1) = 2 AND count(*) = 2 "
                        "FROM wval.deliveries WHERE group_name = %s", (group,)),
          "both events acked exactly once")

    # a subscription waits for transactions that are emitting: the group gets
    # exactly the events that commit after it
    typ2 = "s.sub." + RUN
    group2 = "sub-" + RUN
    t1 = connect(autocommit=False)
    before = one(t1, "SELECT wval._emit(%s, 'sw', 'before', %s, '{}')", (typ2, typ2 + ":before"))
    result = {}

    def subscribe():
        c = connect()
        one(c, "SELECT group_name FROM wval_subscribe(%s, %s)", (group2, [typ2]))
        result["done"] = time.monotonic()
    th = threading.Thread(target=subscribe)
    th.start()
    time.sleep(1.0)
    check("done" not in result, "wval_subscribe waits while a transaction is emitting")
    t1.commit()
    th.join(10)
    check("done" in result, "and completes when it commits")
    after = one(admin, "SELECT wval._emit(%s, 'sw', 'after', %s, '{}')", (typ2, typ2 + ":after"))
    got = [r for r in (one(admin, "SELECT array_agg(event_id ORDER BY event_id) FROM wval.deliveries "
                                  "WHERE group_name = %s", (group2,)) or [])]
    check(got == [after], "the new group gets the event emitted after it (%d), not the one before (%d): %r"
          % (after, before, got))


def test_concurrent():
    """3 concurrent consumers drain 2,400 events: each acked once, per-world order kept."""
    typ = "s.conc." + RUN
    group = "conc-" + RUN
    n_events, n_worlds = 2400, 6
    admin = connect()
    one(admin, "SELECT group_name FROM wval_subscribe(%s, %s, 3, '500ms', '5min')", (group, [typ]))
    for chunk in range(4):     # four publishing transactions, worlds interleaved
        one(admin, """SELECT count(wval._emit(%s, 'cw' || (i %% %s), 's' || i, %s || i,
                                             jsonb_build_object('i', i)))
                      FROM generate_series(%s, %s) i""",
            (typ, n_worlds, typ + ":", chunk * 600 + 1, chunk * 600 + 600))
    drain_concurrently(admin, group, n_events)


def test_concurrent_busy():
    """3 concurrent consumers drain a world of 1,500 events emitted before 10 worlds of 30:
    while one consumer holds the big world, the others read past more of its events than
    wval_consume reads in event order (1,024) and find the small worlds by the walk."""
    typ = "s.busy." + RUN
    group = "busy-" + RUN
    admin = connect()
    one(admin, "SELECT group_name FROM wval_subscribe(%s, %s, 3, '500ms', '5min')", (group, [typ]))
    one(admin, """SELECT count(wval._emit(%s, CASE WHEN i <= 1500 THEN 'big' ELSE 'small' || (i %% 10) END,
                                         's' || i, %s || i, jsonb_build_object('i', i)))
                  FROM generate_series(1, 1800) i""", (typ, typ + ":"))
    drain_concurrently(admin, group, 1800)


def drain_concurrently(admin, group, n_events):
    """3 threads consume (uneven small batches) and ack one by one until the group is
    drained; checks that every event was handed out once, in order per world, and that
    no world was in two consumers' hands at once."""
    check(one(admin, "SELECT count(*) FROM wval.deliveries WHERE group_name = %s", (group,)) == n_events,
          "%d deliveries queued" % n_events)

    log = []                 # (consumer, world, [event_ids], t_got, time of the world's last ack)
    bad_acks = []
    lock = threading.Lock()
    stop = threading.Event()

    def consume(tid):
        conn = connect()
        cur = conn.cursor()
        rnd = random.Random(tid)
        empty = 0
        while not stop.is_set():
            # small, uneven batches: runs of a world are often cut by the
            # batch size, so consumers race for the rest of the same world
            cur.execute("SELECT event_id, world_id FROM wval_consume(%s, %s)", (group, rnd.randint(1, 12)))
            rows = cur.fetchall()
            t_got = time.monotonic()
            if not rows:
                empty += 1
                cur.execute("SELECT count(*) FROM wval.deliveries WHERE group_name = %s AND done_at IS NULL",
                            (group,))
                if cur.fetchone()[0] == 0:
                    return
                time.sleep(0.005 * min(empty, 10))
                continue
            empty = 0
            per_world = {}
            last_ack = {}
            for eid, world in rows:
                if rnd.random() < 0.02:
                    time.sleep(0.002)          # uneven processing times
                per_world.setdefault(world, []).append(eid)
                # taken before the ack is sent: another consumer that got this
                # world's events before this moment certainly overlapped (the ack
                # commits somewhere between sending and the answer, so a time taken
                # after the answer would flag a slow thread, not an overlap)
                last_ack[world] = time.monotonic()
                cur.execute("SELECT wval_ack(%s, %s)", (group, eid))
                if not cur.fetchone()[0]:
                    with lock:
                        bad_acks.append(eid)
            with lock:
                for world, ids in per_world.items():
                    log.append((tid, world, ids, t_got, last_ack[world]))

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(300)
    stop.set()

    handed = [eid for _, _, ids, _, _ in log for eid in ids]
    check(len(handed) == n_events and len(set(handed)) == n_events,
          "every event handed out exactly once (%d hand-outs, %d distinct)" % (len(handed), len(set(handed))))
    check(not bad_acks, "every ack acknowledged a pending event")
    per_consumer = [sum(len(ids) for t, _, ids, _, _ in log if t == i) for i in range(3)]
    check(all(c > 0 for c in per_consumer), "all three consumers did work: %r" % per_consumer)
    check(one(admin, """SELECT count(*) FILTER (WHERE outcome = 'acked' AND attempts = 1) FROM wval.deliveries
                        WHERE group_name = %s""", (group,)) == n_events,
          "the database has every delivery acked after one attempt")

    overlaps = 0
    disorder = 0
    worlds = {}
    for entry in sorted(log, key=lambda e: e[3]):
        worlds.setdefault(entry[1], []).append(entry)
    for world, entries in worlds.items():
        seq = [eid for e in entries for eid in e[2]]
        disorder += sum(1 for a, b in zip(seq, seq[1:]) if a > b)
        for a, b in zip(entries, entries[1:]):
            if a[0] != b[0] and b[3] < a[4]:
                overlaps += 1
    check(disorder == 0, "per world, events were handed out in event_id order")
    check(overlaps == 0, "a world was never in the hands of two consumers at once")
    check(one(admin, """SELECT count(*) FROM (
                            SELECT event_id < lag(event_id) OVER (PARTITION BY world_key ORDER BY done_at) AS back
                            FROM wval.deliveries WHERE group_name = %s) x WHERE back""", (group,)) == 0,
          "per world, the acks in the database follow event_id order")
    switches = sum(1 for es in worlds.values() for a, b in zip(es, es[1:]) if a[0] != b[0])
    print("# %d hand-overs of a world between consumers" % switches)


if __name__ == "__main__":
    {"notify": test_notify, "late_commit": test_late_commit, "concurrent": test_concurrent,
     "concurrent_busy": test_concurrent_busy}[sys.argv[1]]()
