#!/usr/bin/env bash
# test/bench/evaluate.sh: the cost of validation against the cost of storing a
# run at all (not part of the test suite).
#
#   A  SELECT wval_evaluate(...) on a 2,520-element daily return series with
#      the sample policy: metrics, policy, run row, rule rows, hash chain,
#      event, in one transaction
#   B  the floor: a plain INSERT of a run-sized row (the same array literal,
#      parsed and stored, plus a jsonb of the size of a run's metrics and
#      results) into a table with the same kind of indexes
#
# A and B run alternately, ROUNDS times each, with pgbench against one
# throw-away cluster at the server's default durability (fsync and
# synchronous_commit on). Reported: median TPS of each, TPS(A)/TPS(B), and
# the p95 latency of A from pgbench's per-transaction log. Two layouts of A:
# every client in its own world (the usual production shape: writers of
# different worlds never wait for each other), and all clients in one world
# (they queue on that world's hash-chain head).
#
# Usage: test/bench/evaluate.sh [seconds per run, default 10] [clients, default 2] [rounds, default 3]

source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

SECS=${1:-10}
CLIENTS=${2:-2}
ROUNDS=${3:-3}

bench_cluster postgres "max_wal_size = 4GB
shared_buffers = 512MB"

# the series: 2,520 daily returns, as a literal both scripts parse
LITERAL=$("$BIN/psql" -X -At -d postgres -c \
	"SELECT array_agg(round((0.0005 + 0.011 * sin(i * 1.37) + 0.004 * cos(i * 0.05))::numeric, 6) ORDER BY i)::text
	 FROM generate_series(1, 2520) i")

"${PSQL[@]}" -d postgres -c "CREATE DATABASE bench" >/dev/null
"${PSQL[@]}" -d bench >/dev/null <<-SQL
	SET client_min_messages = warning;
	CREATE EXTENSION wval CASCADE;
	SELECT wval_maintain(1);
	SELECT wval_world_upsert('bench-' || c, actor => 'bench') FROM generate_series(0, $CLIENTS) c;
	SELECT wval_world_upsert('bench-shared', actor => 'bench');
	SELECT wval_policy_publish(w, (SELECT policy FROM wval.sample_policies WHERE name = 'sample'), 'alice'),
	       wval_policy_activate(w, 1, 'bob', 'bench')
	FROM (SELECT 'bench-' || c AS w FROM generate_series(0, $CLIENTS) c UNION ALL SELECT 'bench-shared') x;
	-- the floor table: a run-sized row with the same kind of indexes as wval.evaluation_runs
	CREATE TABLE floor_runs (
	    run_id uuid NOT NULL DEFAULT gen_random_uuid(),
	    world_id text NOT NULL, strategy_id text NOT NULL, stage text NOT NULL,
	    status text NOT NULL, returns float8[] NOT NULL, outcome jsonb NOT NULL,
	    created_at timestamptz NOT NULL DEFAULT now(),
	    PRIMARY KEY (world_id, run_id, created_at));
	CREATE INDEX ON floor_runs (run_id);
	CREATE INDEX ON floor_runs (world_id, strategy_id, stage, created_at DESC);
	CREATE INDEX ON floor_runs (world_id, status, created_at DESC);
	-- an outcome document of the size of a stored run's metrics + results
	CREATE TABLE floor_outcome AS
	SELECT metrics || jsonb_build_object('results', results) AS doc
	FROM wval_evaluate('bench-0', 'probe', 'backtest', '$LITERAL'::float8[],
	                   '{"sample": {"n_trades_total": 900}, "risk": {"adv_utilization_p95": 0.1, "participation_rate_p95": 0.05}}');
SQL
OUTCOME=$("$BIN/psql" -X -At -d bench -c "SELECT doc FROM floor_outcome")

cat >"$WORK/a_own.sql" <<-SQL
	SELECT status FROM wval_evaluate('bench-' || :client_id, 's' || :client_id, 'backtest', '$LITERAL',
	    '{"sample": {"n_trades_total": 900}, "risk": {"adv_utilization_p95": 0.1, "participation_rate_p95": 0.05}}');
SQL
cat >"$WORK/a_shared.sql" <<-SQL
	SELECT status FROM wval_evaluate('bench-shared', 's' || :client_id, 'backtest', '$LITERAL',
	    '{"sample": {"n_trades_total": 900}, "risk": {"adv_utilization_p95": 0.1, "participation_rate_p95": 0.05}}');
SQL
cat >"$WORK/b.sql" <<-SQL
	INSERT INTO floor_runs (world_id, strategy_id, stage, status, returns, outcome)
	VALUES ('bench-' || :client_id, 's' || :client_id, 'backtest', 'pass', '$LITERAL', '$OUTCOME');
SQL

# run NAME SCRIPT: one pgbench run; prints "tps p95_ms"
run() {
	local name=$1 script=$2 dir="$WORK/log-$1-$RANDOM"
	mkdir -p "$dir"
	(cd "$dir" && "$BIN/pgbench" -n -M prepared -c "$CLIENTS" -j "$CLIENTS" -T "$SECS" -l -f "$script" bench \
		>"$dir/out" 2>&1) || { cat "$dir/out" >&2; exit 1; }
	local tps p95
	tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$dir/out" | head -1)
	p95=$(cat "$dir"/pgbench_log.* | awk '{print $3}' | sort -n |
		awk '{a[NR] = $1} END {i = int(NR * 0.95); if (i < 1) i = 1; printf "%.2f", a[i] / 1000}')
	echo "$tps $p95"
}

median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

declare -a A_OWN A_SHARED B P95_OWN P95_SHARED
for ((i = 1; i <= ROUNDS; i++)); do
	read -r t p < <(run b "$WORK/b.sql"); B+=("$t")
	read -r t p < <(run a_own "$WORK/a_own.sql"); A_OWN+=("$t"); P95_OWN+=("$p")
	read -r t p < <(run a_shared "$WORK/a_shared.sql"); A_SHARED+=("$t"); P95_SHARED+=("$p")
	echo "round $i: B ${B[-1]} tps, A(own world) ${A_OWN[-1]} tps p95 ${P95_OWN[-1]} ms, A(one world) ${A_SHARED[-1]} tps p95 ${P95_SHARED[-1]} ms"
done

b=$(printf '%s\n' "${B[@]}" | median)
a1=$(printf '%s\n' "${A_OWN[@]}" | median)
a2=$(printf '%s\n' "${A_SHARED[@]}" | median)
p1=$(printf '%s\n' "${P95_OWN[@]}" | median)
p2=$(printf '%s\n' "${P95_SHARED[@]}" | median)
runs=$("$BIN/psql" -X -At -d bench -c "SELECT count(*) FROM wval.evaluation_runs")
echo
echo "clients $CLIENTS, $SECS s per run, $ROUNDS rounds (medians); $runs runs stored"
printf 'B  floor INSERT              %8.1f tps\n' "$b"
printf 'A  wval_evaluate, own world  %8.1f tps  ratio A/B %.2f  p95 %s ms\n' "$a1" "$(awk -v a="$a1" -v b="$b" 'BEGIN {print a / b}')" "$p1"
printf 'A  wval_evaluate, one world  %8.1f tps  ratio A/B %.2f  p95 %s ms\n' "$a2" "$(awk -v a="$a2" -v b="$b" 'BEGIN {print a / b}')" "$p2"
