#!/usr/bin/env bash
# Multi-session behaviour of the portfolio layer:
#   two sessions evaluate the same candidate against the same snapshot at
#   once: one stores the portfolio run, the other waits on the key's lock
#   and gets that run back (one run, one evaluation_run_updated).
# Runs against $PGDATABASE (wval created) with the PG* variables of the driver.
set -euo pipefail

PSQL=("$WVAL_BINDIR/psql" -X -q -t -A -v ON_ERROR_STOP=1)
W=sess_pf_$$
fail() { echo "FAIL: $*"; exit 1; }

"${PSQL[@]}" >/dev/null <<-SQL
	SELECT wval_world_upsert('$W');
	SELECT wval_producer_register('$W', 'risk');
	SELECT wval_policy_publish('$W', '{"validation_profiles": {"backtest": {"portfolio": {"max_incremental_var_99": 0}}}}', 'alice');
	SELECT wval_policy_activate('$W', 1, 'bob', 'session test');
	SELECT wval_snapshot_publish('$W', jsonb_build_object(
	    'as_of', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
	    'version', 's1', 'ttl_sec', 600, 'weights', '{"a": 0.6, "b": 0.4}'::jsonb,
	    'covariance', '{"a,a": 0.04, "b,b": 0.09, "c,c": 0.04}'::jsonb), 'risk', 'paper');
SQL
run=$("${PSQL[@]}" -c "SELECT run_id FROM wval_evaluate('$W', 'c', 'backtest', NULL, '{}')")

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# A holds its evaluation open for 2 s; B starts while A is still open.
"${PSQL[@]}" >"$tmp/a" 2>&1 <<-SQL &
	BEGIN;
	SELECT run_id FROM wval_evaluate_portfolio('$W', '$run');
	SELECT pg_sleep(2);
	COMMIT;
SQL
pa=$!
sleep 0.7
"${PSQL[@]}" -c "SELECT run_id FROM wval_evaluate_portfolio('$W', '$run')" >"$tmp/b" 2>&1 &
pb=$!
wait $pa || fail "session A failed: $(cat "$tmp/a")"
wait $pb || fail "session B failed: $(cat "$tmp/b")"
a_id=$(grep -E '^[0-9a-f-]{36}$' "$tmp/a" | head -1)
b_id=$(grep -E '^[0-9a-f-]{36}$' "$tmp/b" | head -1)
[ -n "$a_id" ] && [ "$a_id" = "$b_id" ] || fail "A stored $a_id, B got $b_id (expected the same run)"
echo "ok - concurrent identical evaluations: one run ($a_id), the waiter got it back"

n=$("${PSQL[@]}" -c "SELECT count(*) FROM wval.evaluation_runs WHERE world_id = '$W' AND kind = 'portfolio'")
[ "$n" = 1 ] || fail "expected 1 portfolio run, found $n"
e=$("${PSQL[@]}" -c "SELECT count(*) FROM wval.events WHERE world_id = '$W' AND type = 'evaluation_run_updated'")
[ "$e" = 1 ] || fail "expected 1 evaluation_run_updated, found $e"
echo "ok - one portfolio run, one evaluation_run_updated"
