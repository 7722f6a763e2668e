#!/usr/bin/env bash
# test/bench/revalidate.sh: what an activation costs with many deployed
# strategies, and how fast the re-validation job works the queue off (not
# part of the test suite).
#
#   1. N strategies evaluated at backtest and promoted to paper (set-up);
#   2. a stricter version activated (force: every strategy flips): the
#      activating transaction only queues the N strategies;
#   3. wval_revalidate(N, 600000) as the pg_cron job would call it, once:
#      N revalidation runs, N demotion candidates; items per second;
#   4. for scale, the same N strategies evaluated once more with
#      wval_evaluate (metrics only) in one transaction.
#
# Usage: test/bench/revalidate.sh [strategies, default 2000]

source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

N=${1:-2000}

bench_cluster postgres
"${PSQL[@]}" -d postgres -c "CREATE DATABASE bench" >/dev/null
log "set-up: $N strategies evaluated and deployed at paper"
"${PSQL[@]}" -d bench >/dev/null <<-SQL
	SET client_min_messages = warning;
	CREATE EXTENSION wval CASCADE;
	SELECT wval_world_upsert('bench', actor => 'bench');
	SELECT wval_policy_publish('bench', (SELECT policy FROM wval.sample_policies WHERE name = 'sample'), 'alice');
	SELECT wval_policy_activate('bench', 1, 'bob', 'bench');
	SELECT count(wval_evaluate('bench', 's' || i, 'backtest', NULL,
	                           (SELECT metrics FROM wval.scenario_cases WHERE strategy_id = 'good_set_1')))
	FROM generate_series(1, $N) i;
	SELECT count(wval_set_stage('bench', 's' || i, 'paper', 'vera', 'bench')) FROM generate_series(1, $N) i;
	SELECT wval_policy_publish('bench', jsonb_set((SELECT policy FROM wval.sample_policies WHERE name = 'sample'),
	       '{validation_profiles,backtest,performance,sharpe_min}', '50'), 'alice');
SQL
"${PSQL[@]}" -d bench -At <<-SQL
	\timing on
	SELECT 'activate: version ' || version FROM wval_policy_activate('bench', 2, 'bob', 'stricter', force => true);
	SELECT 'queued: ' || count(*) FROM wval.revalidation_queue;
	SELECT 'revalidate: ' || wval_revalidate($N, 600000)::text;
	SELECT 'evaluate again (metrics only, for scale): ' || count(wval_evaluate('bench', 's' || i, 'backtest', NULL,
	       (SELECT metrics FROM wval.scenario_cases WHERE strategy_id = 'good_set_1')))
	FROM generate_series(1, $N) i;
	SELECT 'open demotion candidates: ' || count(*) FROM wval.open_demotion_candidates;
SQL
