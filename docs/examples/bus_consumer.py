#!/usr/bin/python3
"""A wval event-bus consumer: LISTEN for wake-ups, drain the group, ack or nack.

Uses only Debian's python3-psycopg2.  Connection settings come from the usual
libpq environment (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD) or --dsn.

    /usr/bin/python3 docs/examples/bus_consumer.py --group my-app \
        --types evaluation_run_created,stage_changed

The loop (see docs/bus.md, "Writing a consumer"):

1. LISTEN wval_events *before* the first wval_consume(), so that no wake-up
   between an empty wval_consume() and the wait is lost;
2. wval_consume(group, batch) and handle each event; wval_ack() on success,
   wval_nack(group, event_id, error) on failure (wval retries it after
   backoff x attempt and dead-letters it after max_attempts);
3. when a batch comes back empty, wait on the socket until a NOTIFY arrives
   or --poll seconds pass.  NOTIFY is only a wake-up call with an empty
   payload (any role may LISTEN, so it carries nothing); the events come
   from wval_consume().  The poll interval picks up what arrives without a NOTIFY:
   retries after a backoff, redeliveries after a visibility timeout, and
   anything emitted while the listener was disconnected.

Delivery is at-least-once: handle() must be idempotent (use the event's
idempotency_key).  Replace handle() with your own processing; this one
prints one JSON line per event.
"""

import argparse
import json
import select
import sys
import time

import psycopg2
import psycopg2.extras


def handle(event):
    """Processes one event (a dict of the wval.events row); raise to nack."""
    print(json.dumps({"event_id": event["event_id"], "type": event["type"],
                      "world_id": event["world_id"], "subject": event["subject"],
                      "idempotency_key": event["idempotency_key"],
                      "data": event["payload"].get("data")}), flush=True)


def log(**fields):
    """Writes one JSON line about the consumer itself to stderr."""
    print(json.dumps(fields, default=str), file=sys.stderr, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dsn", default="", help="libpq connection string (default: environment)")
    ap.add_argument("--group", required=True, help="consumer group name")
    ap.add_argument("--types", help="comma-separated event types: subscribe (or change) the group first")
    ap.add_argument("--batch", type=int, default=100, help="events per wval_consume() call")
    ap.add_argument("--poll", type=float, default=30.0,
                    help="seconds to wait for a NOTIFY before looking anyway")
    ap.add_argument("--max-events", type=int, default=0, help="stop after this many events (0: run for ever)")
    ap.add_argument("--idle-exit", type=float, default=0,
                    help="stop after this many seconds without an event (0: never)")
    args = ap.parse_args()

    conn = psycopg2.connect(args.dsn)
    conn.autocommit = True          # every call is its own transaction
    cur = conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor)
    cur.execute("LISTEN wval_events")
    if args.types:
        cur.execute("SELECT group_name, types FROM wval_subscribe(%s, %s)",
                    (args.group, args.types.split(",")))
        log(subscribed=cur.fetchone())
    else:
        log(listening=args.group)

    done = 0
    last_event = time.monotonic()
    while True:
        cur.execute("SELECT * FROM wval_consume(%s, %s)", (args.group, args.batch))
        events = cur.fetchall()
        for ev in events:
            try:
                handle(ev)
            except Exception as exc:        # the handler's failure: nack, go on
                cur.execute("SELECT wval_nack(%s, %s, %s) AS outcome",
                            (args.group, ev["event_id"], str(exc) or type(exc).__name__))
                log(nacked=ev["event_id"], outcome=cur.fetchone()["outcome"])
            else:
                cur.execute("SELECT wval_ack(%s, %s)", (args.group, ev["event_id"]))
            done += 1
            if args.max_events and done >= args.max_events:
                log(stopped="max-events", events=done)
                return 0
        if events:
            last_event = time.monotonic()
            continue

        if args.idle_exit and time.monotonic() - last_event >= args.idle_exit:
            log(stopped="idle", events=done)
            return 0
        wait = args.poll
        if args.idle_exit:
            wait = min(wait, max(0.0, args.idle_exit - (time.monotonic() - last_event)))
        if select.select([conn], [], [], wait) == ([], [], []):
            continue                        # poll interval passed: look anyway
        conn.poll()
        if conn.notifies:
            log(wakeups=len(conn.notifies))     # the payload is empty: read the outbox
        conn.notifies.clear()


if __name__ == "__main__":
    sys.exit(main())
