#!/usr/bin/env bash
# Runs the producer example of docs/risk-hub.md
# (docs/examples/risk_hub_producer.py, with Debian's python3 and its
# python3-psycopg2) against $PGDATABASE: a signed publish, an idempotent
# retry and a rejection with its SQLSTATE.
set -euo pipefail

PSQL=("$WVAL_BINDIR/psql" -X -q -t -A -v ON_ERROR_STOP=1)
W=py_hub_$$
KEY=$(printf '%064x' 0 | tr 0 7)
fail() { echo "FAIL: $*"; exit 1; }

"${PSQL[@]}" -c "SELECT wval_world_upsert('$W')" >/dev/null
"${PSQL[@]}" -c "SELECT wval_producer_register('$W', 'execution-gateway', decode('$KEY', 'hex'))" >/dev/null

out=$(WVAL_WORLD=$W WVAL_STAGE=paper WVAL_HMAC_KEY_HEX=$KEY /usr/bin/python3 "$WVAL_REPO/docs/examples/risk_hub_producer.py")
echo "$out"
grep -q '^published py-.* sha256:[0-9a-f]\{64\} signed=True$' <<<"$out" || fail "signed publish"
v1=$(echo "$out" | sed -n 's/^published \([^ ]*\) .*/\1/p')
grep -q "^retry returned $v1 " <<<"$out" || fail "retry did not return the stored version"
grep -q '^rejected WV004: weight of "trend" in "weights" must be a finite number$' <<<"$out" || fail "rejection"
n=$("${PSQL[@]}" -c "SELECT count(*) FROM wval.events WHERE world_id = '$W'")
[ "$n" = 1 ] || fail "expected one event, found $n"
echo "ok - python producer: signed publish, idempotent retry, WV004 rejection"
