#!/usr/bin/env bash
# The documented example consumer (docs/examples/bus_consumer.py) receives
# the wake-ups: it LISTENs, waits on its socket with a 10-minute poll
# interval, and still handles each event as it is committed, because the
# NOTIFY pointer wakes it up.  Checks what it printed and the database.
set -euo pipefail
py=python3; [ -x /usr/bin/python3 ] && py=/usr/bin/python3     # Debian's, with python3-psycopg2
psql() { "$WVAL_BINDIR/psql" -X -q -At -v ON_ERROR_STOP=1 "$@"; }
repo=$(cd "$(dirname "$0")/../.." && pwd)
run=$$
group=example-$run
type=s.example.$run
out=$(mktemp); err=$(mktemp)
trap 'kill $pid 2>/dev/null || true; rm -f "$out" "$err"' EXIT

"$py" "$repo/docs/examples/bus_consumer.py" --group "$group" --types "$type" \
	--poll 600 --max-events 5 >"$out" 2>"$err" &
pid=$!
for _ in $(seq 100); do     # wait until the consumer has subscribed and listens
	[ "$(psql -c "SELECT count(*) FROM wval.consumer_groups WHERE group_name = '$group'")" = 1 ] && break
	sleep 0.1
done
grep -q '"subscribed"' "$err" || { echo "consumer did not subscribe"; cat "$err"; exit 1; }
sleep 0.5

ids=()
for i in 1 2 3 4 5; do      # one event per transaction, the consumer idle in between
	ids+=("$(psql -c "SELECT wval._emit('$type', 'xw$((i % 2))', 's$i', '$type:$i', '{\"n\": $i}')")")
	sleep 0.3
done
for _ in $(seq 300); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
if kill -0 $pid 2>/dev/null; then echo "not ok - consumer still running after 30 s"; cat "$err"; exit 1; fi
wait $pid || { echo "not ok - consumer failed"; cat "$err"; exit 1; }

fail=0
check() { if eval "$1"; then echo "ok - $2"; else echo "not ok - $2"; fail=1; fi; }
printed=$(sed -n 's/.*"event_id": \([0-9]*\).*/\1/p' "$out" | tr '\n' ' ')
check '[ "$printed" = "${ids[*]} " ]' "the consumer handled the 5 events in order: $printed"
check '[ "$(grep -c "\"n\": " "$out")" = 5 ]' "with their data"
woken=$(grep -c '"wakeups": [0-9]' "$err" || true)
check '[ "$woken" -ge 1 ]' "it was woken by NOTIFY ($woken wake-ups)"
check '[ "$(psql -c "SELECT count(*) FROM wval.deliveries WHERE group_name = '"'$group'"' AND outcome = '"'acked'"' AND attempts = 1")" = 5 ]' \
	"the database has all 5 acked once"
[ $fail = 0 ] || { echo "--- consumer stderr"; cat "$err"; echo "--- stdout"; cat "$out"; }
exit $fail
