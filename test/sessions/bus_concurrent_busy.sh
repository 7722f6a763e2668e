#!/usr/bin/env bash
# 3 concurrent consumers drain a world of 1,500 events queued before 10 small
# worlds: the others find the small worlds past the busy one (through the walk
# once more than 1,024 of its events lie in front); each event acked once,
# per-world order kept (test/sessions/bus_sessions.py concurrent_busy).
set -euo pipefail
py=python3; [ -x /usr/bin/python3 ] && py=/usr/bin/python3     # Debian's, with python3-psycopg2
exec "$py" "$(dirname "$0")/bus_sessions.py" concurrent_busy
