#!/usr/bin/env bash
# Bus wake-ups through the notifier worker: after commit only, folded per
# interval, latency p50/p99 printed and bounded, replacement after a
# termination, the in-transaction fallback, DROP DATABASE not blocked
# (test/sessions/bus_wakeup.py; libpq settings from scripts/test.sh).
set -euo pipefail
py=python3; [ -x /usr/bin/python3 ] && py=/usr/bin/python3     # Debian's, with python3-psycopg2
exec "$py" "$(dirname "$0")/bus_wakeup.py"
