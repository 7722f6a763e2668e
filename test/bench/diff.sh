#!/usr/bin/env bash
# test/bench/diff.sh: the cost of replaying a policy diff over stored history
# against the cost of merely reading the same rows' metrics (not part of the
# test suite).
#
#   A  wval_policy_diff(world, 1, 2, dedupe => 'none'): every stored run of the
#      window replayed under the sample policy and under backtest sharpe_min
#      0.65, the full report (diffs and top offenders) built
#   B  the floor, over exactly the same rows:
#        B1  SELECT sum(length(metrics::text))          (every metric read)
#        B2  SELECT sum((metrics #>> '{returns,sharpe}')::float8)   (one metric)
#   and the default dedupe 'strategy' (the latest run of each strategy) against
#   the same DISTINCT ON rows read with sum(length(metrics::text)).
#
# The runs are loaded through wval_import_runs (monthly partitions, hash
# chain) from the metrics of a real wval_evaluate run, varied per run so that
# the tightened policy changes a share of them. Parallel query is off so that
# both sides use one backend. Each measurement is the median of ROUNDS,
# A and B alternating.
#
# Usage: test/bench/diff.sh [runs, default 200000] [strategies, default runs/10] [rounds, default 5]

source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

RUNS=${1:-200000}
STRATEGIES=${2:-$((RUNS / 10))}
ROUNDS=${3:-5}
BATCH=20000

bench_cluster postgres "max_wal_size = 4GB
shared_buffers = 512MB
work_mem = 16MB"

"${PSQL[@]}" -d postgres -c "CREATE DATABASE bench" >/dev/null
log "loading $RUNS runs of $STRATEGIES strategies"
start=$(date +%s)
"${PSQL[@]}" -d bench >/dev/null <<-SQL
	SET client_min_messages = warning;
	CREATE EXTENSION wval CASCADE;
	SELECT wval_world_upsert('bench', actor => 'bench');
	SELECT wval_policy_publish('bench', (SELECT policy FROM wval.sample_policies WHERE name = 'sample'), 'alice');
	SELECT wval_policy_activate('bench', 1, 'bob', 'bench');
	SELECT wval_policy_publish('bench', jsonb_set((SELECT policy FROM wval.sample_policies WHERE name = 'sample'),
	       '{validation_profiles,backtest,performance,sharpe_min}', '0.65'), 'alice');
	-- the metrics of a real run (ten years of daily returns), evaluated in a world of its own
	SELECT wval_world_upsert('bench-template', actor => 'bench');
	SELECT wval_policy_publish('bench-template', (SELECT policy FROM wval.sample_policies WHERE name = 'sample'), 'alice');
	SELECT wval_policy_activate('bench-template', 1, 'bob', 'bench');
	CREATE TABLE template AS
	SELECT metrics FROM wval_evaluate('bench-template', 'template', 'backtest',
	    (SELECT array_agg(0.0006 + 0.01 * sin(i * 1.3) + 0.004 * cos(i * 0.07) ORDER BY i) FROM generate_series(1, 2520) i),
	    '{"sample": {"n_trades_total": 900}, "risk": {"adv_utilization_p95": 0.12, "participation_rate_p95": 0.04}}');
	CREATE FUNCTION bench_batch(first bigint, n bigint, strategies bigint, runs bigint) RETURNS integer
	LANGUAGE sql AS \$\$
	    SELECT wval_import_runs(jsonb_agg(jsonb_build_object(
	        'world_id', 'bench', 'strategy_id', 's' || (i % strategies), 'status', 'pass',
	        'created_at', now() - interval '330 days' * (1 - i::float8 / runs),
	        'metrics', jsonb_set(jsonb_set(jsonb_set(t.metrics,
	            '{returns,sharpe}', to_jsonb(0.3 + (i % 97) / 120.0)),
	            '{returns,gain_to_pain_ratio}', to_jsonb(0.8 + (i % 7) / 5.0)),
	            '{sample,effective_history_years}', to_jsonb(1.5 + (i % 13) / 4.0))) ORDER BY i))
	    FROM generate_series(first, first + n - 1) i, template t
	\$\$;
SQL
for ((b = 0; b < RUNS; b += BATCH)); do
	n=$((RUNS - b < BATCH ? RUNS - b : BATCH))
	"${PSQL[@]}" -d bench -c "SELECT bench_batch($b, $n, $STRATEGIES, $RUNS)" >/dev/null
done
"${PSQL[@]}" -d bench >/dev/null <<-'SQL'
	VACUUM ANALYZE;
	CREATE FUNCTION bench_ms(q text) RETURNS float8 LANGUAGE plpgsql AS $$
	DECLARE
	    t timestamptz := clock_timestamp();
	BEGIN
	    EXECUTE q;
	    RETURN extract(epoch FROM clock_timestamp() - t) * 1000;
	END
	$$;
SQL
log "loaded in $(( $(date +%s) - start )) s"

FILTER="r.world_id = 'bench' AND r.stage = 'backtest' AND r.kind = 'single' AND r.status <> 'unvalidated'
        AND r.created_at >= now() - interval '12 months' AND r.created_at <= now()"
LATEST="SELECT DISTINCT ON (r.strategy_id) r.metrics FROM wval.evaluation_runs r WHERE $FILTER
        ORDER BY r.strategy_id, r.created_at DESC, r.chain_seq DESC"

"${PSQL[@]}" -d bench -At <<-SQL
	SET max_parallel_workers_per_gather = 0;
	CREATE TEMP TABLE t (what text, ms float8);
	\o /dev/null
	SELECT bench_ms(\$q\$SELECT sum(length(r.metrics::text)) FROM wval.evaluation_runs r WHERE $FILTER\$q\$);   -- warm the cache
	\o
	DO \$\$
	BEGIN
	    FOR i IN 1 .. $ROUNDS LOOP
	        INSERT INTO t SELECT 'A  diff, dedupe none', bench_ms(\$q\$SELECT wval_policy_diff('bench', 1, 2, dedupe => 'none')\$q\$);
	        INSERT INTO t SELECT 'B1 sum(length(metrics::text))', bench_ms(\$q\$SELECT sum(length(r.metrics::text)) FROM wval.evaluation_runs r WHERE $FILTER\$q\$);
	        INSERT INTO t SELECT 'B2 sum(metrics #>> returns.sharpe)', bench_ms(\$q\$SELECT sum((r.metrics #>> '{returns,sharpe}')::float8) FROM wval.evaluation_runs r WHERE $FILTER\$q\$);
	        INSERT INTO t SELECT 'C  diff, dedupe strategy', bench_ms(\$q\$SELECT wval_policy_diff('bench', 1, 2)\$q\$);
	        INSERT INTO t SELECT 'D  sum(length(metrics::text)) of the latest runs', bench_ms(\$q\$SELECT sum(length(x.metrics::text)) FROM ($LATEST) x\$q\$);
	    END LOOP;
	END
	\$\$;
	\echo
	\echo 'rows replayed:'
	SELECT format('  dedupe none:     %s runs (%s strategies), %s affected strategies, %s rule flips',
	              (SELECT count(*) FROM wval.evaluation_runs r WHERE $FILTER),
	              d->>'total_strategies', d->>'strategies_affected', d->>'rule_status_changes')
	FROM wval_policy_diff('bench', 1, 2, dedupe => 'none') d;
	SELECT format('  dedupe strategy: %s latest runs, impact ratio %s', d->>'total_strategies', d->>'impact_ratio')
	FROM wval_policy_diff('bench', 1, 2) d;
	\echo
	\echo 'median of $ROUNDS rounds (ms):'
	CREATE TEMP TABLE m AS SELECT what, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS ms FROM t GROUP BY what;
	SELECT format('  %-52s %s', what, to_char(ms, '999990.0')) FROM m ORDER BY what;
	\echo
	SELECT format('replay, dedupe none:     %s runs/s; %sx B1 (text), %sx B2 (one metric)',
	              round((SELECT count(*) FROM wval.evaluation_runs r WHERE $FILTER) / (a.ms / 1000)),
	              round((a.ms / b1.ms)::numeric, 2), round((a.ms / b2.ms)::numeric, 2))
	FROM m a, m b1, m b2 WHERE a.what LIKE 'A%' AND b1.what LIKE 'B1%' AND b2.what LIKE 'B2%';
	SELECT format('replay, dedupe strategy: %s latest runs/s; %sx D (the same rows read as text)',
	              round((SELECT count(DISTINCT r.strategy_id) FROM wval.evaluation_runs r WHERE $FILTER) / (c.ms / 1000)),
	              round((c.ms / d.ms)::numeric, 2))
	FROM m c, m d WHERE c.what LIKE 'C%' AND d.what LIKE 'D%';
SQL
