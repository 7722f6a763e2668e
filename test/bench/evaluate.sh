#!/usr/bin/env bash
# test/bench/evaluate.sh: the cost of validation against the cost of storing a
# run at all (not part of the test suite).
#
#   A  SELECT wval_evaluate(...) on a 2,520-element daily return series with
#      the sample policy: metrics, policy, run row (results included), hash chain,
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
# (they queue on that world's hash-chain head), and all clients in one world
# with eight chain lanes (settings.chain_lanes: a writer takes a free lane of
# the world's chain instead of waiting). And the same own-world load
# with wval.notify_interval = 0 (set through PGOPTIONS): every evaluating
# transaction NOTIFYs wval_events itself, as wval did before the notifier
# worker (src/notifier.c), and queues on NOTIFY's cluster-wide commit lock;
# the default sends the wake-ups from the notifier. And the own-world load as
# the production role: a login in wval_producer (world access checked on every
# call, RLS in force) against the floor B run by the same login.
# Last, the first evaluation of a new session against a warm one (psql
# \timing, NEW_SESSIONS sessions of ten calls each; warm: the median of calls
# 6 to 10), first with the libraries loaded by each backend, then after a
# restart with shared_preload_libraries = 'pg_cron,wval,plpgsql'; each way
# also with SELECT wval_warm(world) run first in the session (what a pool's
# connect hook does), whose own time is printed too; and, for scale, the
# same for the floor B (a plain INSERT also pays for a cold backend).
#
# Usage: test/bench/evaluate.sh [seconds per run, default 10] [clients, default 1,4,16] [rounds, default 3]
#   clients: one count or a comma-separated list; each count is measured in turn
#   HUGE_PAGES=on in the environment runs the cluster with huge_pages = on (the
#   machine needs vm.nr_hugepages for shared_buffers, 512MB: e.g. 320 pages of
#   2 MB); the first call then faults in far fewer pages of shared memory

source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

SECS=${1:-10}
CLIENT_LIST=${2:-1,4,16}
CLIENTS=$(tr ',' '\n' <<<"$CLIENT_LIST" | sort -n | tail -1)     # worlds to create
ROUNDS=${3:-3}

bench_cluster postgres "max_wal_size = 4GB
shared_buffers = 512MB
huge_pages = ${HUGE_PAGES:-try}"

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
	SELECT wval_world_upsert('bench-lanes', settings => '{"store_returns": true, "chain_lanes": 8}', actor => 'bench');
	CREATE ROLE bench_producer LOGIN IN ROLE wval_producer;
	SELECT wval_policy_publish(w, (SELECT policy FROM wval.sample_policies WHERE name = 'sample'), 'alice'),
	       wval_policy_activate(w, 1, 'bob', 'bench')
	FROM (SELECT 'bench-' || c AS w FROM generate_series(0, $CLIENTS) c UNION ALL SELECT 'bench-shared'
	      UNION ALL SELECT 'bench-lanes') x;
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
	GRANT INSERT ON floor_runs TO bench_producer;
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
cat >"$WORK/a_lanes.sql" <<-SQL
	SELECT status FROM wval_evaluate('bench-lanes', 's' || :client_id, 'backtest', '$LITERAL',
	    '{"sample": {"n_trades_total": 900}, "risk": {"adv_utilization_p95": 0.1, "participation_rate_p95": 0.05}}');
SQL
cat >"$WORK/b.sql" <<-SQL
	INSERT INTO floor_runs (world_id, strategy_id, stage, status, returns, outcome)
	VALUES ('bench-' || :client_id, 's' || :client_id, 'backtest', 'pass', '$LITERAL', '$OUTCOME');
SQL

# run NAME SCRIPT [PGOPTIONS [USER]]: one pgbench run with $CLIENTS clients; prints "tps p95_ms"
run() {
	local name=$1 script=$2 opts=${3:-} user=${4:-postgres} dir="$WORK/log-$1-$RANDOM"
	mkdir -p "$dir"
	(cd "$dir" && PGOPTIONS="$opts" "$BIN/pgbench" -n -M prepared -U "$user" -c "$CLIENTS" -j "$CLIENTS" -T "$SECS" -l \
		-f "$script" bench >"$dir/out" 2>&1) || { cat "$dir/out" >&2; exit 1; }
	local tps p95
	tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$dir/out" | head -1)
	p95=$(cat "$dir"/pgbench_log.* | awk '{print $3}' | sort -n |
		awk '{a[NR] = $1} END {i = int(NR * 0.95); if (i < 1) i = 1; printf "%.2f", a[i] / 1000}')
	echo "$tps $p95"
}

median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

SUMMARY=()
PAIRS=()
for CLIENTS in ${CLIENT_LIST//,/ }; do
	A_OWN=() A_SELF=() A_SHARED=() A_LANES=() B=() P95_OWN=() P95_SELF=() P95_SHARED=() A_PROD=() B_PROD=() PAIR=()
	echo "clients $CLIENTS (load average before: $(cut -d' ' -f1-3 /proc/loadavg))"
	for ((i = 1; i <= ROUNDS; i++)); do
		read -r t p < <(run b "$WORK/b.sql"); B+=("$t")
		read -r t p < <(run a_own "$WORK/a_own.sql"); A_OWN+=("$t"); P95_OWN+=("$p")
		read -r t p < <(run a_self "$WORK/a_own.sql" "-c wval.notify_interval=0"); A_SELF+=("$t"); P95_SELF+=("$p")
		read -r t p < <(run a_shared "$WORK/a_shared.sql"); A_SHARED+=("$t"); P95_SHARED+=("$p")
		read -r t p < <(run a_lanes "$WORK/a_lanes.sql"); A_LANES+=("$t")
		read -r t p < <(run b_prod "$WORK/b.sql" "" bench_producer); B_PROD+=("$t")
		read -r t p < <(run a_prod "$WORK/a_own.sql" "" bench_producer); A_PROD+=("$t")
		PAIR+=("$(ratio "${A_PROD[-1]}" "${B_PROD[-1]}")")
		echo "  round $i: B ${B[-1]} tps, A(own world) ${A_OWN[-1]} tps p95 ${P95_OWN[-1]} ms," \
			"A(own world, NOTIFY in transaction) ${A_SELF[-1]} tps p95 ${P95_SELF[-1]} ms," \
			"A(one world) ${A_SHARED[-1]} tps p95 ${P95_SHARED[-1]} ms, A(one world, 8 lanes) ${A_LANES[-1]} tps," \
			"B(producer) ${B_PROD[-1]} tps, A(own world, producer) ${A_PROD[-1]} tps"
	done
	b=$(printf '%s\n' "${B[@]}" | median)
	a1=$(printf '%s\n' "${A_OWN[@]}" | median)
	a0=$(printf '%s\n' "${A_SELF[@]}" | median)
	a2=$(printf '%s\n' "${A_SHARED[@]}" | median)
	bp=$(printf '%s\n' "${B_PROD[@]}" | median)
	ap=$(printf '%s\n' "${A_PROD[@]}" | median)
	al=$(printf '%s\n' "${A_LANES[@]}" | median)
	PAIRS+=("$(printf '%7s  %s  median %s' "$CLIENTS" "${PAIR[*]}" "$(printf '%s\n' "${PAIR[@]}" | median)")")
	SUMMARY+=("$(printf '%7s %12.1f %12.1f %5s %6s %12.1f %5s %6s %12.1f %5s %6s %12.1f %12.1f %5s %8s %12.1f %10s' "$CLIENTS" \
		"$b" "$a1" "$(ratio "$a1" "$b")" "$(printf '%s\n' "${P95_OWN[@]}" | median)" \
		"$a0" "$(ratio "$a0" "$b")" "$(printf '%s\n' "${P95_SELF[@]}" | median)" \
		"$a2" "$(ratio "$a2" "$b")" "$(printf '%s\n' "${P95_SHARED[@]}" | median)" \
		"$bp" "$ap" "$(ratio "$ap" "$bp")" "$(ratio "$a2" "$a1")" "$al" "$(ratio "$al" "$a1")")")
done

runs=$("$BIN/psql" -X -At -d bench -c "SELECT count(*) FROM wval.evaluation_runs")
echo
echo "$SECS s per run, $ROUNDS rounds (medians, TPS and ratio to the floor B, p95 in ms); $runs runs stored"
echo "A own: each client its own world, wake-ups from the notifier; A own/self-NOTIFY: the same with"
echo "wval.notify_interval = 0 (every transaction NOTIFYs, as before the notifier); A one: all in one world"
echo "B prod / A prod: the floor and the own-world load as a wval_producer login; one/own: A one ÷ A own"
echo "A lanes: all in one world with settings.chain_lanes = 8; lanes/own: A lanes ÷ A own"
printf '%7s %12s %12s %5s %6s %12s %5s %6s %12s %5s %6s %12s %12s %5s %8s %12s %10s\n' clients "B floor" "A own" A/B p95 \
	"A own/self" A/B p95 "A one" A/B p95 "B prod" "A prod" A/B one/own "A lanes" lanes/own
printf '%s\n' "${SUMMARY[@]}"
echo
echo "A prod ÷ B prod per round (the two runs back to back, so drift of the machine between rounds cancels out):"
printf '%s\n' "${PAIRS[@]}"

# the first evaluation of a new session against a warm one, with
# the libraries loaded by each backend (the default) and preloaded by the
# server (docs/install.md, "The first call of a session")
NEW_SESSIONS=${NEW_SESSIONS:-10}
CALL="SELECT status FROM wval_evaluate('bench-0', 'first-call', 'backtest', '$LITERAL',
    '{\"sample\": {\"n_trades_total\": 900}, \"risk\": {\"adv_utilization_p95\": 0.1, \"participation_rate_p95\": 0.05}}');"
first_calls() {
	local label=$1 pre=${2:-} call=${3:-$CALL} f w u i FIRST=() WARM=() WARMUP=() ms
	for ((i = 1; i <= NEW_SESSIONS; i++)); do
		# ten calls: the first, and the median of the sixth to the tenth (warm: by
		# then the plan cache has settled its plans, after five custom plans);
		# with pre, its own time first
		mapfile -t ms < <({ echo '\timing on'; [ -z "$pre" ] || echo "$pre"
		                    for _ in 1 2 3 4 5 6 7 8 9 10; do echo "$call"; done; } |
			"$BIN/psql" -X -At -U bench_producer -d bench 2>&1 | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p')
		if [ -n "$pre" ]; then WARMUP+=("${ms[0]}"); ms=("${ms[@]:1}"); fi
		FIRST+=("${ms[0]}"); WARM+=("$(printf '%s\n' "${ms[@]:5:5}" | median)")
	done
	f=$(printf '%s\n' "${FIRST[@]}" | median); w=$(printf '%s\n' "${WARM[@]}" | median)
	[ -z "$pre" ] || u="; ${pre%;} itself: $(printf '%s\n' "${WARMUP[@]}" | median) ms"
	echo "first call of a new session, $label (bench_producer, median of $NEW_SESSIONS): ${f} ms; warm (calls 6-10): ${w} ms; first/warm $(ratio "$f" "$w")${u:-}"
}
echo
first_calls "the floor B: a plain INSERT of a run-sized row" "" "$(sed "s/:client_id/0/g" "$WORK/b.sql")"
first_calls "libraries loaded by the backend"
first_calls "after wval_warm at connect" "SELECT wval_warm('bench-0');"
"${PSQL[@]}" -d postgres -c "ALTER SYSTEM SET shared_preload_libraries = 'pg_cron', 'wval', 'plpgsql'" >/dev/null
as_pg "$BIN/pg_ctl" -D "$WORK/cluster/pgdata" -l "$WORK/cluster/server.log" -w restart >/dev/null
first_calls "shared_preload_libraries = 'pg_cron,wval,plpgsql'"
first_calls "preloaded, after wval_warm at connect" "SELECT wval_warm('bench-0');"
