#!/usr/bin/env bash
# NOTIFY wval_events arrives only after commit and carries only the pointer
# (test/sessions/bus_sessions.py notify; libpq settings from scripts/test.sh).
set -euo pipefail
py=python3; [ -x /usr/bin/python3 ] && py=/usr/bin/python3     # Debian's, with python3-psycopg2
exec "$py" "$(dirname "$0")/bus_sessions.py" notify
