#!/usr/bin/env python3
"""A risk-snapshot producer for wval (docs/risk-hub.md), with psycopg2.

Builds a snapshot, asks the hub for its canonical text, signs the message
(world, actor, stage and canonical text) with the producer's HMAC key, publishes it, and checks the stored hash against its
own sha256 of the canonical text.  Connection settings come from the usual
libpq variables (PGHOST, PGDATABASE, ...); the world, actor, stage and key
from WVAL_WORLD, WVAL_ACTOR, WVAL_STAGE and WVAL_HMAC_KEY_HEX.
"""
import hashlib
import hmac
import json
import os
import sys
from datetime import datetime, timezone

import psycopg2


def publish(conn, world, actor, stage, key, snapshot):
    """Publishes one snapshot; returns (version, hash, signed)."""
    body = json.dumps(snapshot)
    with conn.cursor() as cur:
        # The canonical text is the jsonb text of the contract fields after
        # offloading; letting the hub produce it avoids re-implementing
        # jsonb's key order and number formatting in the client.
        cur.execute("SELECT wval_snapshot_canonical(%s, %s::jsonb)", (world, body))
        canonical = cur.fetchone()[0].encode("utf-8")
        # The signed message binds the snapshot to this world, actor and stage
        # (docs/risk-hub.md): a fixed first line, then world, actor and stage
        # one line each, then the canonical text.  The hub returns the same
        # bytes from wval_snapshot_signed_message(world, snapshot, actor, stage).
        message = b"\n".join([b"wval-snapshot-signature-v1", world.encode("utf-8"),
                               actor.encode("utf-8"), stage.encode("utf-8"), canonical])
        cur.execute("SELECT wval_snapshot_signed_message(%s, %s::jsonb, %s, %s)", (world, body, actor, stage))
        if cur.fetchone()[0].encode("utf-8") != message:
            raise RuntimeError("the hub signs a different message than this client builds")
        signature = hmac.new(key, message, hashlib.sha256).hexdigest()
        cur.execute(
            "SELECT version, hash, signed FROM wval_snapshot_publish(%s, %s::jsonb, %s, %s, %s)",
            (world, body, actor, stage, signature),
        )
        version, stored_hash, signed = cur.fetchone()
    conn.commit()
    if stored_hash != "sha256:" + hashlib.sha256(canonical).hexdigest():
        raise RuntimeError("hub stored a different hash than the canonical text gives")
    return version, stored_hash, signed


def main():
    world = os.environ.get("WVAL_WORLD", "demo")
    actor = os.environ.get("WVAL_ACTOR", "execution-gateway")
    stage = os.environ.get("WVAL_STAGE", "paper")
    key = bytes.fromhex(os.environ["WVAL_HMAC_KEY_HEX"])
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    snapshot = {
        "as_of": now,
        "version": "py-" + now,
        "weights": {"trend": 0.6, "carry": 0.4},
        "covariance": {"trend,trend": 0.04, "carry,carry": 0.09, "trend,carry": 0.006},
        "ttl_sec": 30,
        "provenance": {"actor": actor, "stage": stage, "source": "rebalance"},
    }
    conn = psycopg2.connect("")
    try:
        version, digest, signed = publish(conn, world, actor, stage, key, snapshot)
        print(f"published {version} {digest} signed={signed}")
        # An identical retry is answered with the stored row (no new event).
        again = publish(conn, world, actor, stage, key, snapshot)
        print(f"retry returned {again[0]} {again[1]}")
        # A rejected snapshot: the SQLSTATE says why (docs/risk-hub.md).
        bad = dict(snapshot, version=snapshot["version"] + "-bad", weights={"trend": "0.6", "carry": 0.4})
        try:
            publish(conn, world, actor, stage, key, bad)
        except psycopg2.Error as e:
            conn.rollback()
            print(f"rejected {e.pgcode}: {e.diag.message_primary}")
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
