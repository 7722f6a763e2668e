#!/usr/bin/env bash
# a late-committing smaller event_id is delivered, not skipped; subscriptions wait for emitters
# (test/sessions/bus_sessions.py late_commit; libpq settings from scripts/test.sh).
set -euo pipefail
py=python3; [ -x /usr/bin/python3 ] && py=/usr/bin/python3     # Debian's, with python3-psycopg2
exec "$py" "$(dirname "$0")/bus_sessions.py" late_commit
