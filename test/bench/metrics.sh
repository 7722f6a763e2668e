#!/usr/bin/env bash
# test/bench/metrics.sh: benchmark of the metrics engine (not part of the
# default test run).
#
# In one session of a throw-away cluster it times
#   1. wval_metrics() (the full C pack) on 2,520-element series,
#   2. a PL/pgSQL implementation of just Sharpe, max drawdown and 1 % VaR
#      (test/bench/metrics_plpgsql.sql) on the same series,
#   3. wval_metrics() on 25,200-element series,
# and reports the speed-up 2 / 1 (goal: at least 20) and the scaling 3 / 1
# (goal: at most 12).  The series are random returns (seeded), and every
# call gets a flat in-memory array (a materialised CTE), so the times are
# the computation, not TOAST fetches.  The machine may be shared: the
# three measurements are interleaved over TRIALS rounds, and the minimum
# and the median of the per-call times are reported.
#
# Usage: test/bench/metrics.sh [TRIALS]     (default 9)
#        WVAL_BENCH_KEEP=1 keeps the work directory.

source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

TRIALS=${1:-9}
ensure_packages
build

WORK=$(mktemp -d /tmp/wval-bench.XXXXXX)
chmod 755 "$WORK"
STAGE=$WORK/stage
BIN=$STAGE$PG_BINDIR
DATA=$WORK/cluster
cleanup() {
	stop_cluster "$BIN" "$DATA"
	if [ -z "${WVAL_BENCH_KEEP:-}" ]; then rm -rf "$WORK"; else log "kept $WORK"; fi
}
trap cleanup EXIT

stage "$STAGE"
start_cluster "$BIN" "$DATA" postgres
export PGHOST=$DATA/sock PGPORT=5432 PGUSER=postgres PGDATABASE=postgres
psql_() { "$BIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }

log "setting up (series, PL/pgSQL baseline)"
psql_ -c "SET client_min_messages = warning" -c "CREATE EXTENSION wval CASCADE"
psql_ -f "$REPO/test/bench/metrics_plpgsql.sql"
psql_ <<-'SQL'
	SELECT setseed(0.2520);
	CREATE TABLE wval_bench.series AS
	SELECT s AS id, n,
	       (SELECT array_agg((0.0004 + 0.01 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()))::float8)
	          FROM generate_series(1, n) WHERE s > 0) AS r
	FROM (VALUES (2520), (25200)) AS sizes(n), generate_series(1, 8) AS s;

	-- the baseline computes the same numbers as the C pack
	DO $$
	DECLARE
	    bad integer;
	BEGIN
	    SELECT count(*) INTO bad
	    FROM wval_bench.series,
	         LATERAL (SELECT wval_metrics(r)->'returns' AS c, wval_bench.plpgsql_metrics(r) AS p) x
	    WHERE abs((c->>'sharpe')::float8 - (p->>'sharpe')::float8) > 1e-9 * abs((p->>'sharpe')::float8)
	       OR abs((c->>'max_drawdown')::float8 - (p->>'max_drawdown')::float8) > 1e-12
	       OR abs((c->>'var_p01')::float8 - (p->>'var_p01')::float8) > 1e-12;
	    IF bad > 0 THEN
	        RAISE EXCEPTION 'the PL/pgSQL baseline disagrees with wval_metrics on % series', bad;
	    END IF;
	END
	$$;

	-- per-call time in microseconds of fn over the n-element series, reps calls each
	CREATE FUNCTION wval_bench.time_per_call(fn text, n integer, reps integer) RETURNS float8
	LANGUAGE plpgsql AS $$
	DECLARE
	    t0 timestamptz;
	    calls bigint;
	BEGIN
	    t0 := clock_timestamp();
	    EXECUTE format(
	        'WITH s AS MATERIALIZED (SELECT r || ''{}''::float8[] AS r FROM wval_bench.series WHERE n = %s)
	         SELECT count(%s(r)) FROM s, generate_series(1, %s)', n, fn, reps) INTO calls;
	    RETURN extract(epoch FROM clock_timestamp() - t0) * 1e6 / calls;
	END
	$$;
SQL

log "timing ($TRIALS interleaved rounds)"
psql_ -At -F ' ' <<-SQL | awk -v trials="$TRIALS" '
	{ c[NR] = $1; p[NR] = $2; l[NR] = $3 }
	function sort(a, n,   i, j, t) { for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t } }
	function med(a, n) { return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2 }
	END {
		n = NR; sort(c, n); sort(p, n); sort(l, n)
		printf "per call (microseconds)           min      median\n"
		printf "  wval_metrics, 2,520         %9.1f   %9.1f\n", c[1], med(c, n)
		printf "  PL/pgSQL baseline, 2,520    %9.1f   %9.1f\n", p[1], med(p, n)
		printf "  wval_metrics, 25,200        %9.1f   %9.1f\n", l[1], med(l, n)
		printf "speed-up, PL/pgSQL / C (goal >= 20):     %5.1f x (min)   %5.1f x (median)\n", p[1] / c[1], med(p, n) / med(c, n)
		printf "scaling, 25,200 / 2,520 (goal <= 12):    %5.1f x (min)   %5.1f x (median)\n", l[1] / c[1], med(l, n) / med(c, n)
	}'
	SELECT wval_bench.time_per_call('wval_metrics', 2520, 100),
	       wval_bench.time_per_call('wval_bench.plpgsql_metrics', 2520, 5),
	       wval_bench.time_per_call('wval_metrics', 25200, 20)
	FROM generate_series(1, $TRIALS);
SQL
