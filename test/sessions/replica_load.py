"""Evaluate load for the failover check of test/sessions/replica.sh.

    python3 replica_load.py --log FILE --seconds S --sessions N --worlds w1,w2

Connects with the libpq environment (the primary).  N sessions call
wval_evaluate in autocommit, each with a context.run_id of its own; when a
call returns (the COMMIT was acknowledged: with synchronous replication only
after the standby flushed it), the session appends the run_id to FILE and
flushes it before the next call.  A call whose connection broke has an
unknown outcome and is not logged.  The driver runs until the primary is
gone (every session's connection broken) or S seconds pass, then prints how
many calls were acknowledged and how many broke.
"""

import argparse
import os
import threading
import time

import psycopg2

ap = argparse.ArgumentParser()
ap.add_argument("--log", required=True)
ap.add_argument("--seconds", type=float, default=60)
ap.add_argument("--sessions", type=int, default=3)
ap.add_argument("--worlds", required=True)
opt = ap.parse_args()

WORLDS = opt.worlds.split(",")
lock = threading.Lock()
out = open(opt.log, "a")
acked = 0
broken = 0


def session(n):
    global acked, broken
    try:
        conn = psycopg2.connect("")
    except psycopg2.OperationalError:
        with lock:
            broken += 1
        return
    conn.autocommit = True
    cur = conn.cursor()
    deadline = time.time() + opt.seconds
    i = 0
    while time.time() < deadline:
        i += 1
        world = WORLDS[(n + i) % len(WORLDS)]
        try:
            cur.execute(
                "SELECT run_id::text, world_id FROM wval_evaluate(%s, %s, 'backtest', "
                "returns => ARRAY(SELECT 0.003 + 0.01 * sin(k * %s) FROM generate_series(1, 48) k)::float8[], "
                "context => jsonb_build_object('run_id', %s, 'periods_per_year', 12))",
                (world, "load-%d" % n, n + i, "replica-%d-%d-%d" % (os.getpid(), n, i)))
            run_id, w = cur.fetchone()
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            with lock:
                broken += 1
            return
        with lock:
            out.write("%s %s\n" % (run_id, w))
            out.flush()
            acked += 1


threads = [threading.Thread(target=session, args=(n,)) for n in range(opt.sessions)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("acknowledged %d, broken sessions %d" % (acked, broken))
