-- scripts/demo.sql: what the README's demo command runs in the throw-away cluster.
\set ON_ERROR_STOP on
\pset footer off
\set SHOW_CONTEXT never
\set QUIET on
SET client_min_messages = warning;
-- pg_cron lives in the database cron.database_name names (the demo cluster's is this one)
SELECT current_setting('cron.database_name', true) = current_database() AS cron_here \gset
\if :cron_here
CREATE EXTENSION IF NOT EXISTS pg_cron;
\endif
CREATE EXTENSION IF NOT EXISTS wval CASCADE;
SELECT wval_maintain() \gset
RESET client_min_messages;

\echo
\echo '=== 1. a world, and the sample policy: published by login alice, activated by login bob'
-- one login per person: the two-person rule compares logins, not the actor names
SET client_min_messages = warning;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'alice') THEN CREATE ROLE alice LOGIN; END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bob') THEN CREATE ROLE bob LOGIN; END IF;
    GRANT wval_validator TO alice, bob;
END
$$;
RESET client_min_messages;
SELECT world_id, risk_tier, client_critical
FROM wval_world_upsert('demo-fund', risk_tier => 'medium', client_critical => false, actor => 'dba');
SET SESSION AUTHORIZATION alice;
SELECT wval_policy_publish('demo-fund', (SELECT policy FROM wval.sample_policies WHERE name = 'sample'),
                           'alice', 'sample policy of the published scenario sets') AS published_version;
-- alice cannot be her own second person, whatever name she gives
DO $$
BEGIN
    PERFORM wval_policy_activate('demo-fund', 1, 'bob', 'alice signing as bob');
EXCEPTION WHEN SQLSTATE 'WV009' THEN
    RAISE NOTICE 'refused (WV009): %', SQLERRM;
END
$$;
SET SESSION AUTHORIZATION bob;
SELECT world_id, version, activated_by, approved_by, reason
FROM wval_policy_activate('demo-fund', 1, 'bob', 'initial rollout');
RESET SESSION AUTHORIZATION;
SELECT key AS profile, value AS ruleset_hash FROM jsonb_each_text(
    (SELECT ruleset_hashes FROM wval.policy_versions WHERE world_id = 'demo-fund' AND version = 1));

\echo
\echo '=== 2. five strategies evaluated from their monthly returns (deterministic pseudo-random series)'
-- monthly returns = drift + volatility * N(0,1) (Box-Muller over a seeded random stream),
-- with a crash for "blowup"; trading facts that cannot be derived from returns are supplied
SELECT setseed(0.42);
CREATE TEMP TABLE demo_strategies AS
SELECT * FROM (VALUES
    ('steady_carry',   120, 0.0110, 0.025, 0.0,  1400, 0.08, 0.04),
    ('trend_follower',  90, 0.0035, 0.030, 0.0,   600, 0.15, 0.07),
    ('fresh_idea',       5, 0.0250, 0.012, 0.0,    30, 0.05, 0.02),
    ('blowup',          60, 0.0120, 0.030, 0.35,  800, 0.10, 0.05),
    ('crowded_trade',   96, 0.0100, 0.025, 0.0,  2500, 0.75, 0.55)
) AS t(strategy_id, n_months, drift, vol, crash, n_trades, adv_p95, participation_p95);
CREATE TEMP TABLE demo_returns AS
SELECT s.strategy_id,
       array_agg(greatest(-0.5, s.drift + s.vol * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())
                 - CASE WHEN i = s.n_months / 2 THEN s.crash ELSE 0 END) ORDER BY i) AS returns
FROM demo_strategies s, generate_series(1, s.n_months) i
GROUP BY s.strategy_id;

-- each request (returns, supplied metrics, context with the caller's run_id), kept for step 5
CREATE TEMP TABLE demo_requests AS
SELECT s.strategy_id, r.returns,
       jsonb_build_object('sample', jsonb_build_object('n_trades_total', s.n_trades),
                          'risk', jsonb_build_object('adv_utilization_p95', s.adv_p95,
                                                     'participation_rate_p95', s.participation_p95)) AS metrics,
       jsonb_build_object('run_id', s.strategy_id || '-bt-1', 'periods_per_year', 12, 'model_card_version', 'mc-1.0',
                          'code_hash', 'git:demo', 'actor', 'backtester') AS context
FROM demo_strategies s JOIN demo_returns r USING (strategy_id);
CREATE TEMP TABLE demo_runs AS
SELECT e.*
FROM demo_requests q,
LATERAL wval_evaluate('demo-fund', q.strategy_id, 'backtest', q.returns, q.metrics, q.context) e;

\echo
\echo '=== 3. the outcome: status, recommended stage and the checks that did not pass'
SELECT r.strategy_id,
       round((r.metrics #>> '{returns,sharpe}')::numeric, 2) AS sharpe,
       round((r.metrics #>> '{returns,max_drawdown}')::numeric, 3) AS max_dd,
       round((r.metrics #>> '{sample,effective_history_years}')::numeric, 1) AS years,
       r.status, r.recommended_stage,
       coalesce((SELECT string_agg(rr.rule || ' (' || rr.status || ', ' || rr.severity || ')', '; ' ORDER BY rr.rule)
                 FROM wval.rule_results rr WHERE rr.run_id = r.run_id AND rr.status <> 'pass'), '-') AS checks_not_passed
FROM demo_runs r ORDER BY r.strategy_id;

\echo
\echo '=== 4. why: the explanation of one run'
SELECT wval_run_explain(run_id) AS explain FROM demo_runs WHERE strategy_id = 'trend_follower' \g (format=unaligned tuples_only)

\echo
\echo '=== 5. repeating a request with the same run_id records nothing new (idempotent)'
SELECT (SELECT e.run_id FROM demo_requests q,
        LATERAL wval_evaluate('demo-fund', q.strategy_id, 'backtest', q.returns, q.metrics, q.context) e
        WHERE q.strategy_id = 'steady_carry')
       = (SELECT run_id FROM demo_runs WHERE strategy_id = 'steady_carry') AS same_run,
       (SELECT count(*) FROM wval.evaluation_runs WHERE world_id = 'demo-fund') AS runs_stored;
\set ON_ERROR_STOP off
\echo 'trying: the same run_id with other returns (a retry must repeat the request exactly)'
SELECT wval_evaluate('demo-fund', 'steady_carry', 'backtest', '{0.01, 0.02}', '{}', '{"run_id": "steady_carry-bt-1"}');
\set ON_ERROR_STOP on

\echo
\echo '=== 6. a stricter policy (backtest sharpe_min 0.5 -> 1.2): replayed over history before it may go live'
SET SESSION AUTHORIZATION alice;
SELECT wval_policy_publish('demo-fund',
    jsonb_set((SELECT policy FROM wval.sample_policies WHERE name = 'sample'),
              '{validation_profiles,backtest,performance,sharpe_min}', '1.2'),
    'alice', 'tighter sharpe') AS published_version;
RESET SESSION AUTHORIZATION;
SELECT d->>'total_strategies' AS strategies, d->>'strategies_affected' AS affected, d->>'impact_ratio' AS impact_ratio,
       (SELECT string_agg(o->>'strategy_id' || ' ' || (o->>'old_status') || '->' || (o->>'new_status') || ' (' || (o->>'label') || ')', ', ')
        FROM jsonb_array_elements(d->'top_offenders') o) AS top_offenders
FROM wval_policy_diff('demo-fund', 1, 2) d;
\set ON_ERROR_STOP off
\echo 'trying: activate version 2 (the impact gate stops anything at or above 5 % of strategies)'
SET SESSION AUTHORIZATION bob;
SELECT wval_policy_activate('demo-fund', 2, 'bob', 'tighten sharpe');
RESET SESSION AUTHORIZATION;
\set ON_ERROR_STOP on

\echo
\echo '=== 7. the record: events in the outbox, the audit log, append-only history, the hash chain'
SELECT type, count(*) AS events FROM wval.events WHERE world_id = 'demo-fund' GROUP BY type ORDER BY type;
SELECT id, action, actor, login FROM wval.audit_log WHERE world_id = 'demo-fund' ORDER BY id;
\set ON_ERROR_STOP off
\echo 'trying: UPDATE wval.evaluation_runs SET status = ''pass'' ... (as the superuser)'
UPDATE wval.evaluation_runs SET status = 'pass' WHERE world_id = 'demo-fund' AND strategy_id = 'blowup';
\set ON_ERROR_STOP on
SELECT wval_verify_chain('demo-fund') AS chain_intact,
       (SELECT seq FROM wval.chain_heads WHERE world_id = 'demo-fund') AS chain_length;
