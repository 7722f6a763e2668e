#!/usr/bin/env bash
# test/bench/run_write.sh: what storing one evaluation writes, and what the
# analyst's rule_results query costs per run (not part of the test suite;
# issue 13 goal 2, "one write per fact").
#
# One client calls wval_evaluate (2,520 daily returns, the sample policy, its
# own world), each call its own transaction, on a throw-away cluster at the
# server's default durability.  Printed, per evaluation:
#   - WAL records, WAL bytes and full-page images (pg_stat_wal over N calls
#     of pgbench -t, after a checkpoint and a warm-up, so that the pages the
#     load touches have had their first full-page image);
#   - backend CPU (utime + stime of /proc/self/stat, 10 ms ticks, over N calls
#     in one procedure that commits after each call) and wall time;
# and, over the runs stored by then (one world), the typical analyst query of
# docs/store.md ("Rule results": failed checks of one world in a time range,
# fastest of five, one process) in ms and in µs per run read.
#
# Compare two builds by running the script in each checkout one after the
# other (or alternately) on the same idle machine; the figures are per call,
# so other load changes them less than it changes TPS.
#
# Usage: test/bench/run_write.sh [calls per measurement, default 2000]

source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

N=${1:-2000}

bench_cluster postgres "max_wal_size = 4GB
shared_buffers = 512MB"

LITERAL=$("$BIN/psql" -X -At -d postgres -c \
	"SELECT array_agg(round((0.0005 + 0.011 * sin(i * 1.37) + 0.004 * cos(i * 0.05))::numeric, 6) ORDER BY i)::text
	 FROM generate_series(1, 2520) i")
METRICS='{"sample": {"n_trades_total": 900}, "risk": {"adv_utilization_p95": 0.1, "participation_rate_p95": 0.05}}'

"${PSQL[@]}" -d postgres -c "CREATE DATABASE bench" >/dev/null
"${PSQL[@]}" -d bench >/dev/null <<-SQL
	SET client_min_messages = warning;
	CREATE EXTENSION wval CASCADE;
	SELECT wval_maintain(1);
	SELECT wval_world_upsert('bench-w', actor => 'bench');
	SELECT wval_policy_publish('bench-w', (SELECT policy FROM wval.sample_policies WHERE name = 'sample'), 'alice'),
	       wval_policy_activate('bench-w', 1, 'bob', 'bench');
	CREATE PROCEDURE bench_calls(n integer) LANGUAGE plpgsql AS \$\$
	DECLARE
	    r float8[] := '$LITERAL';
	BEGIN
	    FOR i IN 1..n LOOP
	        PERFORM wval_evaluate('bench-w', 'p', 'backtest', r, '$METRICS');
	        COMMIT;
	    END LOOP;
	END
	\$\$;
	-- CPU ticks (utime + stime) of this backend: fields 14 and 15 of /proc/self/stat
	CREATE FUNCTION bench_ticks() RETURNS bigint LANGUAGE sql AS \$\$
	    SELECT f[12]::bigint + f[13]::bigint
	    FROM (SELECT string_to_array(split_part(pg_read_file('/proc/self/stat'), ') ', 2), ' ') AS f) x
	\$\$;
SQL

cat >"$WORK/a.sql" <<-SQL
	SELECT status FROM wval_evaluate('bench-w', 's' || :client_id, 'backtest', '$LITERAL', '$METRICS');
SQL
pgb() { (cd "$WORK" && "$BIN/pgbench" -n -M prepared -c 1 -j 1 -t "$1" -f "$WORK/a.sql" bench >/dev/null 2>&1) ||
	die "pgbench failed"; }

pgb 200
"${PSQL[@]}" -d bench -c "CHECKPOINT" >/dev/null
pgb 200
wal() { "$BIN/psql" -X -At -F' ' -d bench -c "SELECT wal_records, wal_fpi, wal_bytes FROM pg_stat_wal"; }
read -r r0 f0 b0 < <(wal)
pgb "$N"
sleep 1   # a backend reports its WAL counters when it exits
read -r r1 f1 b1 < <(wal)
awk -v n="$N" -v r="$((r1 - r0))" -v f="$((f1 - f0))" -v b="$((b1 - b0))" 'BEGIN {
	printf "WAL per evaluation (%d calls): %.1f records, %.0f bytes, %.2f full-page images\n", n, r / n, b / n, f / n }'

"${PSQL[@]}" -At -d bench <<-SQL
	CALL bench_calls(50);
	SELECT bench_ticks() AS t0, clock_timestamp() AS c0 \gset
	CALL bench_calls($N);
	SELECT format('backend CPU per evaluation (%s calls): %s us, wall %s us', $N,
	              round((bench_ticks() - :t0) * 10000.0 / $N), round(extract(epoch FROM clock_timestamp() - :'c0') * 1e6 / $N));
SQL

"${PSQL[@]}" -At -d bench <<-'SQL'
	SET max_parallel_workers_per_gather = 0;
	SELECT count(*) AS runs FROM wval.evaluation_runs WHERE world_id = 'bench-w' \gset
	CREATE TEMP TABLE t (ms float8);
	DO $$
	DECLARE
	    c0 timestamptz;
	BEGIN
	    FOR i IN 1..5 LOOP
	        c0 := clock_timestamp();
	        PERFORM rule, reason_code, count(*)
	        FROM wval.rule_results
	        WHERE world_id = 'bench-w' AND status = 'fail' AND created_at >= date_trunc('quarter', now())
	        GROUP BY 1, 2;
	        INSERT INTO t VALUES (extract(epoch FROM clock_timestamp() - c0) * 1000);
	    END LOOP;
	END
	$$;
	SELECT format('failed checks of one world this quarter over %s runs: %s ms (%s us per run)', :runs,
	              round(min(ms)::numeric, 1), round((min(ms) * 1000 / :runs)::numeric, 1)) FROM t;
SQL
