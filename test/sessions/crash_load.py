"""Crash under load (run by test/sessions/crash_load.sh on a cluster of its own).

    python3 crash_load.py --pgdata DIR --bindir DIR --log FILE --user ROLE
                          [--seconds 30] [--kills 6] [--evaluators 4] [--seed 1]

Connects with the libpq environment (PGHOST, PGPORT, PGDATABASE); the database
holds wval with worlds crash-w1..crash-w4 under an active policy (crash_load.sh
sets it up) and ROLE is a login role with wval_producer.

For --seconds, --evaluators sessions call wval_evaluate, each call with a
context.run_id of its own; one session records live returns (one new day per
call) and one bus consumer consumes and acknowledges evaluation_run_created
events.  Meanwhile a killer sends SIGKILL --kills times, alternately to a
client backend (the postmaster then resets every session and recovers) and
to the postmaster itself (restarted with pg_ctl start once all its children
are gone).

A call is acknowledged when it returned to the client (autocommit: the commit
precedes the answer).  A call whose connection broke has an unknown outcome:
the session reconnects and retries the SAME call (same run_id, same day and
return) until it is acknowledged, so at the end every call is acknowledged
exactly once and the store must hold exactly one run per run_id.

Then it checks, printing one figure per line, and exits 1 when any is wrong:
acknowledged runs present with their event (their rule results are part
of the row), no
duplicate client run_ids, no run or event of the load without the other,
acknowledged live returns present once, acknowledged events never handed out
again and finished as acked, every event of the load delivered to the group,
wval_verify_chain true for every world and globally, wval_check_invariants()
empty, amcheck's bt_index_check(heapallindexed) clean on every btree index of
schema wval.
"""

import argparse
import os
import random
import signal
import subprocess
import sys
import threading
import time

import psycopg2

ap = argparse.ArgumentParser()
ap.add_argument("--pgdata", required=True)
ap.add_argument("--bindir", required=True)
ap.add_argument("--log", required=True)
ap.add_argument("--user", required=True)
ap.add_argument("--seconds", type=float, default=30)
ap.add_argument("--kills", type=int, default=6)
ap.add_argument("--evaluators", type=int, default=4)
ap.add_argument("--seed", type=int, default=1)
opt = ap.parse_args()

WORLDS = ["crash-w1", "crash-w2", "crash-w3", "crash-w4"]
RUN = "crash-%d" % os.getpid()
GROUP = "crash-load-%d" % os.getpid()
LIVE_STRATEGY = "live-crash"
# a return series whose length varies with the call (60..249 values)
RETURNS = [0.001 + 0.01 * ((i * 7919) % 13 - 6) / 6 for i in range(250)]
RETRY_DEADLINE = 180     # seconds the sessions keep retrying an unknown outcome after the load

rnd = random.Random(opt.seed)
lock = threading.Lock()
stop = threading.Event()
server_up = threading.Event()
server_up.set()

acked_runs = {}          # client run_id -> (run_id, world, strategy)
committed_before_break = 0   # unknown outcomes whose retry found the first call's run
unknown = {"eval": 0, "live": 0, "consume": 0}
unresolved = []          # calls whose outcome stayed unknown (should stay empty)
unexpected = []          # errors other than a lost connection
acked_live = {}          # day offset -> return
acked_events = {}        # event_id -> time the ack returned
handed_after_ack = set()
counts = {"evaluations": 0, "live_calls": 0, "consumed": 0, "acked_events": 0}
kills = []


def log(msg):
    print(msg, flush=True)


def connect(user=None, timeout=120):
    """A new autocommit connection; waits while the server restarts or recovers."""
    t0 = time.monotonic()
    while True:
        try:
            kw = {"connect_timeout": 3}
            if user:
                kw["user"] = user
            c = psycopg2.connect("", **kw)
            c.autocommit = True
            return c
        except psycopg2.OperationalError:
            if time.monotonic() - t0 > timeout:
                raise
            time.sleep(0.2)


def lost(e, conn):
    """Whether a psycopg2 error means the connection (and the call's outcome) was lost.

    psycopg2 reports a connection that died inside a call as OperationalError,
    but sometimes as a plain DatabaseError ("server closed the connection
    unexpectedly") with conn.closed still 0; then a ping decides."""
    if isinstance(e, (psycopg2.OperationalError, psycopg2.InterfaceError)):
        return True
    if (e.pgcode or "")[:2] in ("08", "57") or conn is None or conn.closed != 0:
        return True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
        return False
    except psycopg2.Error:
        return True


def call_until_acked(state, sql, args, kind):
    """Runs sql on state['conn'] until it returns; a broken connection retries the same call.

    Returns (rows, broke_at) where broke_at is the time of the first broken
    attempt (None when the first attempt returned), or (None, broke_at) when
    the outcome stayed unknown past the deadline after the load."""
    broke_at = None
    while True:
        if stop.is_set() and broke_at is not None and time.time() - stop_time[0] > RETRY_DEADLINE:
            return None, broke_at
        sent = False
        try:
            if state.get("conn") is None:
                state["conn"] = connect(opt.user)
            with state["conn"].cursor() as cur:
                sent = True
                cur.execute(sql, args)
                return cur.fetchall(), broke_at
        except psycopg2.Error as e:
            if not lost(e, state.get("conn")):
                with lock:
                    unexpected.append("%s: %s" % (kind, str(e).strip().splitlines()[0]))
                raise
            if broke_at is None and sent:
                broke_at = time.time()
                with lock:
                    unknown[kind] += 1
            try:
                if state.get("conn") is not None:
                    state["conn"].close()
            except psycopg2.Error:
                pass
            state["conn"] = None
            time.sleep(0.2)


stop_time = [0.0]


def evaluator(n):
    """Evaluates one strategy after the other, each call with a run_id of its own."""
    global committed_before_break
    state = {}
    i = 0
    while not stop.is_set():
        i += 1
        crid = "%s-%d-%d" % (RUN, n, i)
        world = WORLDS[(n + i) % len(WORLDS)]
        strategy = "cs%d" % (i % 7)
        sql = ("SELECT run_id::text, extract(epoch FROM created_at)::float8 FROM wval_evaluate(%s, %s, 'backtest', "
               "%s::float8[], '{\"sample\": {\"n_trades_total\": 500}}', jsonb_build_object('run_id', %s::text))")
        try:
            rows, broke_at = call_until_acked(state, sql, (world, strategy, RETURNS[: 60 + (i * 37) % 190], crid), "eval")
        except psycopg2.Error:
            continue
        if rows is None:
            with lock:
                unresolved.append(crid)
            continue
        run_id, created = rows[0]
        with lock:
            acked_runs[crid] = (run_id, world, strategy)
            counts["evaluations"] += 1
            if broke_at is not None and created < broke_at:
                committed_before_break += 1


def live_recorder():
    """Records one new day of live returns per call."""
    state = {}
    day = 0
    while not stop.is_set():
        day += 1
        ret = round(0.0001 * (day % 50) - 0.002, 6)
        sql = ("SELECT wval_record_live_returns('crash-w1', %s, ARRAY[date '2000-01-01' + %s], "
               "ARRAY[%s::float8], 'crash')")
        try:
            rows, _ = call_until_acked(state, sql, (LIVE_STRATEGY, day, ret), "live")
        except psycopg2.Error:
            continue
        if rows is None:
            with lock:
                unresolved.append("live day %d" % day)
            continue
        with lock:
            acked_live[day] = ret
            counts["live_calls"] += 1


def consume_once(conn, limit):
    """One consume + ack round; returns the number of events handed out."""
    with conn.cursor() as cur:
        cur.execute("SELECT event_id FROM wval_consume(%s, %s)", (GROUP, limit))
        ids = [r[0] for r in cur.fetchall()]
        with lock:
            counts["consumed"] += len(ids)
            handed_after_ack.update(e for e in ids if e in acked_events)
        if ids:
            cur.execute("SELECT wval_ack(%s, %s::bigint[])", (GROUP, ids))
            cur.fetchall()
            t = time.time()
            with lock:
                for e in ids:
                    acked_events[e] = t
                counts["acked_events"] += len(ids)
    return len(ids)


def consumer():
    """Consumes and acknowledges the group's events while the load runs."""
    conn = None
    while not stop.is_set():
        try:
            if conn is None:
                conn = connect(opt.user)
            if consume_once(conn, 50) == 0:
                time.sleep(0.2)
        except psycopg2.Error as e:
            if not lost(e, conn):
                with lock:
                    unexpected.append("consume: %s" % str(e).strip().splitlines()[0])
                time.sleep(0.5)
                continue
            with lock:
                unknown["consume"] += 1
            conn = None
            time.sleep(0.2)


def as_server_user(cmd):
    """cmd, run as the postgres user when we are root (the server refuses root)."""
    return (["runuser", "-u", "postgres", "--"] + cmd) if os.geteuid() == 0 else cmd


def postmaster_pid():
    with open(os.path.join(opt.pgdata, "postmaster.pid")) as f:
        return int(f.readline())


def children(ppid):
    """(pid, command line) of the processes whose parent is ppid."""
    out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(ppid)], capture_output=True, text=True).stdout
    return [(int(line.split()[0]), line.split(None, 1)[1]) for line in out.splitlines() if line.strip()]


def wait_gone(pids, timeout=90):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if not [p for p in pids if os.path.exists("/proc/%d" % p)]:
            return True
        time.sleep(0.1)
    return False


def wait_ready(timeout=120):
    """Waits until the server accepts connections again (after a reset or a restart)."""
    c = connect(timeout=timeout)
    c.close()


def killer():
    """SIGKILLs a client backend and the postmaster, alternately, spread over the load."""
    gap = opt.seconds / (opt.kills + 1)
    while len(kills) < opt.kills:
        time.sleep(gap * (0.6 + 0.8 * rnd.random()))
        pm = postmaster_pid()
        if len(kills) % 2 == 0:
            backends = [(p, a) for p, a in children(pm) if (" %s " % opt.user) in a]
            busy = [p for p, a in backends if not a.rstrip().endswith("idle")]
            victims = busy or [p for p, _ in backends]
            if not victims:
                log("no client backend to kill")
                continue
            victim = rnd.choice(victims)
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:      # it ended (its session reconnects): next one
                continue
            kills.append("backend")
            wait_ready()
        else:
            kids = [p for p, _ in children(pm)]
            os.kill(pm, signal.SIGKILL)
            kills.append("postmaster")
            if not wait_gone([pm] + kids):
                log("the postmaster's children did not exit")
                return
            # pg_ctl warns that "another server might be running" (the stale
            # postmaster.pid): expected, shown only when the start fails
            p = subprocess.run(as_server_user([os.path.join(opt.bindir, "pg_ctl"), "-D", opt.pgdata, "-l", opt.log,
                                               "-w", "-t", "120", "start"]), capture_output=True, text=True)
            if p.returncode != 0:
                log("pg_ctl start failed: %s %s" % (p.stdout, p.stderr))
                return
            wait_ready()


def one(cur, sql, args=()):
    cur.execute(sql, args)
    return cur.fetchone()[0]


def rejection_count(cur, register=False):
    """crash-w4's count of expired snapshot publishes (first, three of them are made).

    Information only, kept apart from the checks: the rejection counters
    live in sequences, which WAL-log 32 values ahead, so crash recovery
    inflates them (issue 11, item 6, fixed on another branch)."""
    try:
        if register:
            cur.execute("SELECT wval_producer_register('crash-w4', 'crash-engine')")
            for i in range(3):
                try:
                    cur.execute("""SELECT wval_snapshot_publish('crash-w4', jsonb_build_object('as_of', '2000-01-01T00:00:00Z',
                                   'version', %s, 'weights', '{"a": 1}'::jsonb), 'crash-engine', 'paper')""",
                                ("old-%d" % i,))
                except psycopg2.Error:
                    pass
        return one(cur, "SELECT coalesce(sum(expired), 0) FROM wval_snapshot_stats('crash-w4')")
    except psycopg2.Error as e:
        return "unavailable (%s)" % str(e).strip().splitlines()[0]


def main():
    log_start = os.path.getsize(opt.log)
    # the consumer's role subscribes: a group is used by the role that owns it
    sub = connect(opt.user)
    sub.cursor().execute("SELECT wval_subscribe(%s, ARRAY['evaluation_run_created'], 100, '100ms', '3s')", (GROUP,))
    sub.close()
    admin = connect()
    cur = admin.cursor()
    # three rejected (expired) snapshot publishes before the load: a crash
    # must not change the rejection counter (reported, see below)
    rejected_before = rejection_count(cur, register=True)
    admin.close()

    threads = [threading.Thread(target=evaluator, args=(n,)) for n in range(opt.evaluators)]
    threads += [threading.Thread(target=live_recorder)]
    consumer_thread = threading.Thread(target=consumer)
    kill_thread = threading.Thread(target=killer)
    t0 = time.monotonic()
    for t in threads + [consumer_thread, kill_thread]:
        t.start()
    time.sleep(opt.seconds)
    kill_thread.join()
    stop_time[0] = time.time()
    stop.set()
    for t in threads + [consumer_thread]:
        t.join()
    load_seconds = time.monotonic() - t0

    # drain: every event of the load is handed out and acknowledged
    admin = connect()
    cur = admin.cursor()
    drain_end = time.monotonic() + 60
    while time.monotonic() < drain_end:
        if consume_once(admin, 500) == 0:
            if one(cur, "SELECT count(*) FROM wval.deliveries WHERE group_name = %s AND done_at IS NULL", (GROUP,)) == 0:
                break
            time.sleep(0.5)

    # ------------------------------------------------------------------ checks
    failures = []
    t_checks = time.monotonic()

    def figure(what, value, ok):
        log("%-4s %-62s %s" % ("ok" if ok else "FAIL", what, value))
        if not ok:
            failures.append(what)

    crids = list(acked_runs)
    rids = [acked_runs[c][0] for c in crids]
    like = RUN + "-%"
    log("kills: %d (%s)" % (len(kills), ", ".join(kills)))
    log("load: %.0f s, %d evaluators; calls acknowledged: %d evaluations, %d live returns, %d events consumed, "
        "%d acked" % (load_seconds, opt.evaluators, counts["evaluations"], counts["live_calls"],
                      counts["consumed"], counts["acked_events"]))
    log("unknown outcomes retried with the same key: %d evaluations (%d had committed before the break), "
        "%d live calls; consumer connections lost: %d" % (unknown["eval"], committed_before_break,
                                                         unknown["live"], unknown["consume"]))
    figure("kills done (backend, postmaster alternately)", "%d of %d" % (len(kills), opt.kills),
           len(kills) == opt.kills and ("postmaster" in kills or opt.kills < 2))
    figure("evaluations acknowledged", len(crids), len(crids) >= 10)
    figure("calls whose outcome stayed unknown", len(unresolved), not unresolved)
    figure("errors other than a lost connection", "%d %s" % (len(unexpected), unexpected[:3]), not unexpected)

    n = one(cur, """SELECT count(*) FROM unnest(%s::uuid[], %s::text[]) a(run_id, crid) WHERE NOT EXISTS
                    (SELECT 1 FROM wval.evaluation_runs r WHERE r.run_id = a.run_id AND r.client_run_id = a.crid)""",
            (rids, crids))
    figure("acknowledged runs missing", n, n == 0)
    n = one(cur, """SELECT count(*) FROM unnest(%s::uuid[]) a(run_id) WHERE NOT EXISTS
                    (SELECT 1 FROM wval.events e WHERE e.type = 'evaluation_run_created'
                     AND e.payload->'data'->>'run_id' = a.run_id::text)""", (rids,))
    figure("acknowledged runs without their event", n, n == 0)
    n = one(cur, "SELECT count(*) FROM wval.evaluation_runs WHERE client_run_id LIKE %s", (like,))
    figure("runs of the load stored (one per acknowledged run_id)", "%d for %d" % (n, len(crids)), n == len(crids))
    n = one(cur, """SELECT count(*) FROM (SELECT 1 FROM wval.evaluation_runs WHERE client_run_id LIKE %s
                    GROUP BY world_id, strategy_id, client_run_id HAVING count(*) > 1) d""", (like,))
    figure("duplicate client run_ids", n, n == 0)
    n = one(cur, """SELECT count(*) FROM wval.evaluation_runs r WHERE r.client_run_id LIKE %s AND NOT EXISTS
                    (SELECT 1 FROM wval.events e WHERE e.type = 'evaluation_run_created'
                     AND e.payload->'data'->>'run_id' = r.run_id::text)""", (like,))
    figure("runs of the load without their event", n, n == 0)
    n = one(cur, """SELECT count(*) FROM wval.events e WHERE e.type = 'evaluation_run_created'
                    AND e.world_id = ANY(%s) AND NOT EXISTS
                    (SELECT 1 FROM wval.evaluation_runs r WHERE r.run_id::text = e.payload->'data'->>'run_id')""", (WORLDS,))
    figure("events without their run", n, n == 0)
    # (rule results are part of the run row: wval.rule_results derives them)

    cur.execute("""SELECT day - date '2000-01-01', ret FROM wval.live_returns_current
                   WHERE world_id = 'crash-w1' AND strategy_id = %s""", (LIVE_STRATEGY,))
    stored = dict(cur.fetchall())
    n = sum(1 for d, r in acked_live.items() if d not in stored or abs(stored[d] - r) > 1e-12)
    figure("acknowledged live returns missing or different", "%d of %d" % (n, len(acked_live)), n == 0 and acked_live)
    n = one(cur, """SELECT count(*) FROM (SELECT day FROM wval.live_returns WHERE world_id = 'crash-w1'
                    AND strategy_id = %s GROUP BY day HAVING count(*) > 1) d""", (LIVE_STRATEGY,))
    figure("live return days stored more than once", n, n == 0)

    figure("acked events handed out again", len(handed_after_ack), not handed_after_ack)
    n = one(cur, """SELECT count(*) FROM wval.deliveries WHERE group_name = %s AND event_id = ANY(%s)
                    AND outcome IS DISTINCT FROM 'acked'""", (GROUP, list(acked_events)))
    figure("acked events not finished as acked", n, n == 0)
    n = one(cur, """SELECT count(*) FROM wval.evaluation_runs r JOIN wval.events e ON e.type = 'evaluation_run_created'
                    AND e.payload->'data'->>'run_id' = r.run_id::text
                    WHERE r.client_run_id LIKE %s AND NOT EXISTS (SELECT 1 FROM wval.deliveries d
                    WHERE d.group_name = %s AND d.event_id = e.event_id AND d.outcome = 'acked')""", (like, GROUP))
    figure("events of the load not delivered and acked", n, n == 0)
    n = one(cur, "SELECT count(*) FROM wval.deliveries WHERE group_name = %s AND done_at IS NULL", (GROUP,))
    figure("deliveries still open after the drain", n, n == 0)

    cur.execute("SELECT w FROM (SELECT world_id AS w FROM wval.worlds UNION ALL SELECT NULL) x "
                "WHERE NOT wval_verify_chain(w)")
    broken = [r[0] for r in cur.fetchall()]
    figure("chains failing wval_verify_chain (worlds, NULL = global)", broken, not broken)
    cur.execute("SELECT invariant || ' ' || coalesce(world, '') || ': ' || detail FROM wval_check_invariants()")
    inv = [r[0] for r in cur.fetchall()]
    figure("wval_check_invariants() rows", "%d %s" % (len(inv), inv[:3]), not inv)

    cur.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
    cur.execute("""SELECT c.oid::regclass::text FROM pg_class c JOIN pg_am a ON a.oid = c.relam
                   WHERE c.relkind = 'i' AND a.amname = 'btree' AND c.relnamespace = 'wval'::regnamespace
                   ORDER BY 1""")
    indexes = [r[0] for r in cur.fetchall()]
    bad = []
    for idx in indexes:
        try:
            cur.execute("SELECT bt_index_check(%s::regclass, true)", (idx,))
        except psycopg2.Error as e:
            bad.append("%s: %s" % (idx, str(e).strip().splitlines()[0]))
    figure("amcheck bt_index_check(heapallindexed) errors", "%d in %d indexes %s" % (len(bad), len(indexes), bad[:3]),
           not bad and len(indexes) > 10)

    with open(opt.log, errors="replace") as f:
        f.seek(log_start)
        signalled = [line.strip() for line in f if "terminated by signal" in line]
    other = [line for line in signalled if "signal 9" not in line]
    figure("backends terminated by a signal other than our SIGKILL", "%d %s" % (len(other), other[:3]), not other)
    figure("backend SIGKILLs seen by the postmaster", "%d for %d" % (len(signalled), kills.count("backend")),
           len(signalled) >= kills.count("backend"))

    # information, not (yet) a check: see rejection_count
    log("info snapshot rejection counter (3 expired publishes, none during the load): %s before, %s after"
        % (rejected_before, rejection_count(cur)))
    log("drain and checks took %.0f s" % (time.monotonic() - t_checks))
    if failures:
        log("FAILED: %s" % "; ".join(failures))
        sys.exit(1)
    log("all checks passed")


main()
