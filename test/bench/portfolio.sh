#!/usr/bin/env bash
# test/bench/portfolio.sh: throughput of the extended layers (not part of
# the test suite).
#
#   portfolio, inline      wval_evaluate_portfolio of a new candidate run
#                          (of 5 candidate strategies) against a 10-strategy
#                          snapshot whose inline covariance also gives the
#                          candidates' rows (policy: 2 portfolio and 2 stress
#                          checks); every call stores a run
#   portfolio, returns     the same against a snapshot without covariance but
#                          with 250 realized returns per strategy (offloaded
#                          to a blob, re-verified on every load): covariance
#                          estimated, candidate from its returns, Sharpe uplift
#   portfolio, repeat      the same candidate again: the idempotent answer
#   publish + sync         wval_snapshot_publish in a world with
#                          extended_validation = sync and 10 deployed
#                          strategies: 10 portfolio runs per publish
#   cohort of 20           wval_evaluate_cohort of 20 candidates with 252
#                          returns each (20 single runs + 20 cohort runs)
#
# Each runs pgbench against a throw-away cluster (scripts/lib.sh) with the
# server's default durability (fsync and synchronous_commit on).
#
# Usage: [N_INLINE=30000] [N_RETURNS=20000] test/bench/portfolio.sh [seconds per run, default 10] [clients, default 2]
# (N_*: candidate runs prepared for the two evaluation runs; a run that
# uses them up fails loudly instead of reporting a wrong rate)

source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

SECS=${1:-10}
CLIENTS=${2:-2}
# candidate runs to evaluate (each call needs a new one)
N_INLINE=${N_INLINE:-30000}
N_RETURNS=${N_RETURNS:-20000}

bench_cluster postgres "max_wal_size = 2GB"

log "setting up (candidate runs for every call)"
"${PSQL[@]}" -d postgres -c "CREATE DATABASE bench" >/dev/null
"${PSQL[@]}" -d bench -v n_inline="$N_INLINE" -v n_returns="$N_RETURNS" >/dev/null <<-'SQL'
	SET client_min_messages = warning;
	CREATE EXTENSION wval CASCADE;
	CREATE FUNCTION now_iso() RETURNS text LANGUAGE sql AS
	$$ SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') $$;
	CREATE TABLE policy AS SELECT '{"validation_profiles": {"backtest": {}},
	    "portfolio": {"max_incremental_var_99": 0.05, "min_portfolio_sharpe_uplift": 0},
	    "stress": {"scenarios": {"crash": {"dd_max": 0.3}, "rates": {"var_99": 0.1}}},
	    "cohort": {"sharpe_median_min": 0.5, "dsr_median_min": 0.1, "top_k": 5, "sharpe_alarm": 3}}'::jsonb AS doc;
	SELECT wval_world_upsert(w) FROM unnest(ARRAY['pf_inline', 'pf_returns', 'pf_sync', 'pf_cohort']) w;
	SELECT wval_world_upsert('pf_inline', settings => '{"offload_threshold": 1000}');
	SELECT wval_producer_register(w, 'risk') FROM unnest(ARRAY['pf_inline', 'pf_returns', 'pf_sync']) w;
	SELECT wval_policy_publish(w, (SELECT doc FROM policy), 'bench'), wval_policy_activate(w, 1, 'bench-approver', 'bench')
	FROM unnest(ARRAY['pf_inline', 'pf_returns', 'pf_sync', 'pf_cohort']) w;

	-- 10 strategies s1..s10 and the rows of 5 candidate strategies c1..c5
	CREATE TABLE body_inline AS
	SELECT jsonb_build_object(
	         'ttl_sec', 3600,
	         'weights', (SELECT jsonb_object_agg('s' || i, 0.1) FROM generate_series(1, 10) i),
	         'covariance', (SELECT jsonb_object_agg('s' || i || ',s' || j, CASE WHEN i = j THEN 0.04 ELSE 0.005 END)
	                        FROM generate_series(1, 10) i, generate_series(1, 10) j WHERE i <= j)
	                       || (SELECT jsonb_object_agg('c' || c || ',' || x, CASE WHEN x = 'c' || c THEN 0.05 ELSE 0.01 END)
	                           FROM generate_series(1, 5) c,
	                                unnest(ARRAY['c' || c] || ARRAY(SELECT 's' || i FROM generate_series(1, 10) i)) x),
	         'stress', '{"crash": {"max_drawdown": -0.2}, "rates": {"var_99": 0.05}}'::jsonb) AS body;
	CREATE TABLE body_returns AS
	SELECT jsonb_build_object(
	         'ttl_sec', 3600,
	         'weights', (SELECT jsonb_object_agg('s' || i, 0.1) FROM generate_series(1, 10) i),
	         'realized_returns', (SELECT jsonb_object_agg('s' || i,
	                                 (SELECT jsonb_agg(round((0.0005 + 0.01 * sin(t * (1 + i * 0.1)))::numeric, 6) ORDER BY t)
	                                  FROM generate_series(1, 250) t))
	                              FROM generate_series(1, 10) i)) AS body;
	SELECT wval_snapshot_publish('pf_inline', body || jsonb_build_object('as_of', now_iso(), 'version', 'p0'), 'risk', 'live')
	FROM body_inline;
	SELECT wval_snapshot_publish('pf_returns', body || jsonb_build_object('as_of', now_iso(), 'version', 'p0'), 'risk', 'live')
	FROM body_returns;

	-- candidate runs, one per call (a repeated run would be answered by
	-- idempotency); the returns benchmark passes the candidate's returns
	CREATE TABLE cands (id bigint PRIMARY KEY, run_id uuid);
	CREATE SEQUENCE inline_seq; CREATE SEQUENCE returns_seq;
	INSERT INTO cands SELECT n, (wval_evaluate('pf_inline', 'c' || (n % 5 + 1), 'backtest', NULL, '{}')).run_id
	FROM generate_series(1, :n_inline) n;
	INSERT INTO cands SELECT 100000 + n, (wval_evaluate('pf_returns', 'c' || (n % 5 + 1), 'backtest', NULL, '{}')).run_id
	FROM generate_series(1, :n_returns) n;
	CREATE TABLE cand_returns AS
	SELECT ARRAY(SELECT 0.0004 + 0.012 * cos(t * 0.37) FROM generate_series(1, 250) t)::float8[] AS r;

	-- sync world: 10 deployed strategies (weighted, with a run)
	SELECT wval_evaluate('pf_sync', 's' || i, 'backtest', NULL, '{}') FROM generate_series(1, 10) i;
	SELECT wval_world_upsert('pf_sync', settings => '{"extended_validation": "sync"}');
	CREATE TABLE body_sync AS
	SELECT (body - 'covariance') || jsonb_build_object('covariance',
	           (SELECT jsonb_object_agg(e.key, e.value) FROM jsonb_each(body -> 'covariance') e WHERE e.key LIKE 's%')) AS body
	FROM body_inline;

	CREATE TABLE cohort_body AS
	SELECT (SELECT jsonb_agg(jsonb_build_object('strategy_id', 'k' || k, 'returns',
	            (SELECT jsonb_agg(round((0.0004 * k / 10 + 0.01 * sin(t * (0.5 + k * 0.05)))::numeric, 6) ORDER BY t)
	             FROM generate_series(1, 252) t)) ORDER BY k)
	        FROM generate_series(1, 20) k) AS candidates;
SQL
cat >"$WORK/inline.sql" <<-'SQL'
	SELECT (wval_evaluate_portfolio('pf_inline', (SELECT run_id FROM cands WHERE id = (SELECT nextval('inline_seq'))))).status;
SQL
cat >"$WORK/returns.sql" <<-'SQL'
	SELECT (wval_evaluate_portfolio('pf_returns', (SELECT run_id FROM cands WHERE id = 100000 + (SELECT nextval('returns_seq'))),
	                                (SELECT r FROM cand_returns))).status;
SQL
cat >"$WORK/repeat.sql" <<-'SQL'
	SELECT (wval_evaluate_portfolio('pf_inline', (SELECT run_id FROM cands WHERE id = 1))).status;
SQL
cat >"$WORK/sync.sql" <<-'SQL'
	SELECT (wval_snapshot_publish('pf_sync', body || jsonb_build_object('as_of', now_iso(), 'version', 'v' || txid_current()),
	        'risk', 'paper')).snapshot_id FROM body_sync;
SQL
cat >"$WORK/cohort.sql" <<-'SQL'
	SELECT count(*) FROM wval_evaluate_cohort('pf_cohort', 'camp-' || txid_current(), 'backtest', (SELECT candidates FROM cohort_body));
SQL

run() {
	local name=$1 file=$2 unit=$3
	local out tps
	out=$("$BIN/pgbench" -n -c "$CLIENTS" -j "$CLIENTS" -T "$SECS" -f "$file" bench 2>&1) ||
		{ printf '%s\n' "$out" >&2; die "pgbench failed: $name"; }
	tps=$(printf '%s\n' "$out" | sed -n 's/^tps = \([0-9.]*\) .*/\1/p')
	printf '%-26s %10s %s per second  (%d clients, %d s)\n' "$name" "$tps" "$unit" "$CLIENTS" "$SECS"
}

log "pgbench: $CLIENTS clients, $SECS s per run"
"${PSQL[@]}" -d bench -c "SELECT setval('inline_seq', 1); SELECT wval_evaluate_portfolio('pf_inline', run_id) FROM cands WHERE id = 1" >/dev/null
run "portfolio, inline" "$WORK/inline.sql" "evaluations"
run "portfolio, returns" "$WORK/returns.sql" "evaluations"
run "portfolio, repeat" "$WORK/repeat.sql" "answers"
run "publish + sync (10)" "$WORK/sync.sql" "publishes"
run "cohort of 20" "$WORK/cohort.sql" "cohorts"
"${PSQL[@]}" -d bench -t -A -c "SELECT 'stored: ' || count(*) FILTER (WHERE kind = 'portfolio') || ' portfolio runs, ' ||
                                        count(*) FILTER (WHERE kind = 'cohort') || ' cohort runs' FROM wval.evaluation_runs"
