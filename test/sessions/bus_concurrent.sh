#!/usr/bin/env bash
# 3 concurrent consumers drain 2,400 events: each acked once, per-world order kept
# (test/sessions/bus_sessions.py concurrent; libpq settings from scripts/test.sh).
set -euo pipefail
py=python3; [ -x /usr/bin/python3 ] && py=/usr/bin/python3     # Debian's, with python3-psycopg2
exec "$py" "$(dirname "$0")/bus_sessions.py" concurrent
