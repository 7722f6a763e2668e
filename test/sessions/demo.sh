#!/usr/bin/env bash
# The README's main job: scripts/demo.sql runs to the end in a fresh database
# and prints the outcome it promises (five strategies with their statuses,
# the idempotent retry, the refused changed retry, the impact gate, the
# refused UPDATE and an intact chain).  scripts/demo.sh adds only the set-up
# around it (packages, make install, a throw-away cluster).
set -euo pipefail
psql() { "$WVAL_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }

db="demo_$$" out=$(mktemp)
# the demo creates the logins alice and bob when missing; drop only what it created
had_roles=$(psql -At -d postgres -c "SELECT count(*) FROM pg_roles WHERE rolname IN ('alice', 'bob')")
cleanup() {
	rm -f "$out"
	psql -d postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
	[ "$had_roles" != 0 ] || psql -d postgres -c "DROP ROLE IF EXISTS alice, bob" >/dev/null 2>&1 || true
}
trap cleanup EXIT

psql -d postgres -c "CREATE DATABASE $db"
psql -d "$db" -f "$(dirname "${BASH_SOURCE[0]}")/../../scripts/demo.sql" >"$out" 2>&1 ||
	{ cat "$out"; echo "FAIL: scripts/demo.sql stopped with an error"; exit 1; }

fail=0
expect() {  # expect DESCRIPTION EXTENDED-REGEX: one line of the output matches
	if grep -Eq -- "$2" "$out"; then echo "ok: $1"; else echo "FAIL: $1 (no line matches /$2/)"; fail=1; fi
}
expect "blowup fails on drawdown"          '^ blowup +\|.*\| fail +\| backtest_only +\| performance\.max_dd_max \(fail, blocking\)'
expect "crowded_trade fails on capacity"   '^ crowded_trade +\|.*\| fail +\| backtest_only +\| risk\.adv_utilization_p95_max'
expect "fresh_idea warns on sample depth"  '^ fresh_idea +\|.*\| warn +\| backtest_only +\| sample\.min_effective_years \(fail, soft\)'
expect "steady_carry passes to paper"      '^ steady_carry +\|.*\| pass +\| paper_only +\| -'
expect "the retry returns the stored run"  '^ t +\| +5$'
expect "a changed retry is refused"        'ERROR: +context\.run_id "steady_carry-bt-1" was already used for a different request'
expect "the impact gate stops version 2"   'ERROR: .*impact'
expect "the superuser UPDATE is refused"   'ERROR: +UPDATE on history table wval\.evaluation_runs is not allowed'
expect "the chain verifies (17 links)"     '^ t +\| +17$'
expect "the demo reached its last step"    '^=== 7\.'
[ "$fail" = 0 ] || { echo "--- demo output"; cat "$out"; exit 1; }
