-- pgTAP: wval_evaluate for roles, reports, explain, and what must never happen
BEGIN;
SET client_min_messages = warning;
SELECT plan(65);

SELECT lives_ok($$SELECT wval_world_upsert('tap-eval', actor => 'dba')$$, 'world');
SELECT lives_ok($$SELECT wval_policy_publish('tap-eval', (SELECT policy FROM wval.sample_policies), 'alice'),
                         wval_policy_activate('tap-eval', 1, 'bob', 'sample')$$, 'sample policy active');

CREATE ROLE tap_gateway;  GRANT wval_producer TO tap_gateway;
CREATE ROLE tap_reader;   GRANT wval_analyst TO tap_reader;

-- producers evaluate through the SECURITY DEFINER entry point; they cannot forge runs
SET ROLE tap_gateway;
SELECT is((wval_evaluate('tap-eval', 'g1', 'backtest', NULL,
                         (SELECT metrics FROM wval.scenario_cases WHERE strategy_id = 'good_set_1'),
                         '{"run_id": "tap-g1"}')).status, 'pass', 'producer evaluates good_set_1: pass');
SELECT is((SELECT created_by FROM wval.evaluation_runs WHERE client_run_id = 'tap-g1'), 'tap_gateway',
          'created_by is the calling role when context.actor is absent');
SELECT throws_ok($$INSERT INTO wval.evaluation_runs (world_id, strategy_id, stage, status, created_by)
                   VALUES ('tap-eval', 'forged', 'live', 'pass', 'x')$$, '42501', NULL, 'producer cannot insert runs directly');
SELECT throws_ok($$SELECT wval_record_run('tap-eval', 'x', 'live', '{}', 'x', 'because')$$, '42501', NULL,
                 'the emergency bypass is admin only');
SELECT throws_ok($$SELECT wval_policy_activate('tap-eval', 1, 'mallory', 'self-service')$$, '42501', NULL,
                 'producer cannot activate policies');
RESET ROLE;

SET ROLE tap_reader;
SELECT throws_ok($$SELECT wval_evaluate('tap-eval', 'g2', 'backtest', NULL, '{}')$$, '42501', NULL,
                 'analyst cannot evaluate');
SELECT ok(wval_check((SELECT policy FROM wval.sample_policies), '{"returns": {"sharpe": 1}}') ? 'status',
          'analyst may use wval_check');
SELECT matches(wval_run_explain((SELECT run_id FROM wval.evaluation_runs WHERE client_run_id = 'tap-g1')),
               'status PASS, recommended stage paper_only', 'explain states the outcome');
RESET ROLE;

-- explain says why the climb stopped
CREATE TEMP TABLE g3 AS SELECT * FROM wval_evaluate('tap-eval', 'g3', 'backtest', NULL,
    (SELECT metrics FROM wval.scenario_cases WHERE strategy_id = 'good_set_3'));
SELECT matches(wval_run_explain((SELECT run_id FROM g3)),
               'paper_only +profile paper NOT cleared, stopped by performance.sharpe_min',
               'explain: good_set_3 stops at paper because of paper sharpe_min');

-- the report has the sections of operations.md, failures first
CREATE TEMP TABLE bad AS SELECT * FROM wval_evaluate('tap-eval', 'bad-dd', 'backtest', NULL,
    (SELECT metrics FROM wval.scenario_cases WHERE strategy_id = 'bad_high_drawdown'),
    '{"model_card_version": "mc-7", "code_hash": "git:abc"}');
SELECT ok(wval_report((SELECT run_id FROM bad)) ~ '^# Validation report: bad-dd / tap-eval', 'markdown title');
SELECT is((SELECT count(*)::int FROM regexp_matches(wval_report((SELECT run_id FROM bad)),
           '^## (Summary|Scope|Rules|Metrics|Overrides|Benchmark|Limitations and recommendations)$', 'gn')), 7,
          'seven sections');
SELECT matches(wval_report((SELECT run_id FROM bad)), '\| status \| FAIL \|', 'summary: status');
SELECT matches(wval_report((SELECT run_id FROM bad)), '\| model card version \| mc-7 \|', 'summary: model card version');
SELECT matches(wval_report((SELECT run_id FROM bad)),
               '\| --- \| --- \| --- \| --- \| --- \| --- \| --- \| --- \|\n\| performance.max_dd_max \| fail \| blocking',
               'rules table starts with the failure');
SELECT matches(wval_report((SELECT run_id FROM bad), 'html'), '<td class="fail">fail</td>', 'html report marks failures');
SELECT ok(wval_report((SELECT run_id FROM bad), 'html') !~ '<script', 'html report has no script');
SELECT throws_ok($$SELECT wval_report((SELECT run_id FROM bad), 'pdf')$$, '22023', NULL, 'unknown format: 22023');
SELECT throws_ok($$SELECT wval_report('00000000-0000-0000-0000-000000000000')$$, 'WV010', NULL, 'unknown run: WV010');
SELECT lives_ok($$SELECT wval_override((SELECT run_id FROM bad), 'approved', 'drawdown from a known data error', 'carol')$$,
                'override recorded');
SELECT matches(wval_report((SELECT run_id FROM bad)), '\| approved \| carol \|', 'report lists the override');
SELECT matches(wval_run_explain((SELECT run_id FROM bad)), 'override: approved by carol', 'explain shows the override');

-- analysts query the outcome in SQL
SELECT is((SELECT status FROM wval.latest_runs WHERE world_id = 'tap-eval' AND strategy_id = 'bad-dd'), 'fail',
          'latest_runs shows the run');
SELECT is((SELECT override_status FROM wval.latest_runs WHERE world_id = 'tap-eval' AND strategy_id = 'bad-dd'), 'approved',
          'latest_runs folds in the override');
SELECT is((SELECT count(*)::int FROM wval.rule_results WHERE world_id = 'tap-eval' AND rule = 'performance.max_dd_max' AND status = 'fail'),
          1, 'rule_results by world, rule, status');

-- honest inputs (issue 15 item 5): data_as_of from the future, run_id re-used for another request
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE d text;
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN others THEN
    GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
    RETURN SQLSTATE || ' ' || regexp_replace(d, 'run [0-9a-f-]{36}', 'run <id>');
END
$f$;
CREATE TEMP TABLE honest_in AS
SELECT (SELECT array_agg(0.001 + 0.01 * sin(i)) FROM generate_series(1, 120) i)::float8[] AS rets,
       (SELECT jsonb_agg(0.0005 + 0.008 * cos(i)) FROM generate_series(1, 120) i) AS bench;
SELECT throws_ok($$SELECT wval_evaluate('tap-eval', 'h1', 'backtest', NULL, '{}', '{"data_as_of": "2099-01-01T00:00:00Z"}')$$,
                 '22023', '"context.data_as_of" is in the future', 'data_as_of in 2099: 22023');
SELECT throws_ok($$SELECT wval_check((SELECT policy FROM wval.sample_policies WHERE name = 'sample'), '{}', 'backtest',
                                     '{"data_as_of": "2099-01-01T00:00:00Z"}')$$,
                 '22023', '"context.data_as_of" is in the future', 'wval_check refuses it too');
SELECT lives_ok(format($$SELECT wval_evaluate('tap-eval', 'h1', 'backtest', NULL, '{}', '{"data_as_of": "%s"}')$$,
                       now() + interval '2 minutes'), 'data_as_of 2 minutes ahead: within wval.max_clock_skew (5 min)');
SET LOCAL wval.max_clock_skew = 0;
SELECT throws_ok(format($$SELECT wval_evaluate('tap-eval', 'h1', 'backtest', NULL, '{}', '{"data_as_of": "%s"}')$$,
                        now() + interval '2 minutes'), '22023', NULL, 'with wval.max_clock_skew = 0 the same is refused');
RESET wval.max_clock_skew;
SELECT is(pg_temp.err($$SELECT wval_evaluate('tap-eval', 'h2', 'backtest', NULL, '{}', '{"request_digest": "x"}')$$),
          '22023 wval_evaluate() stores the digests of the request under context.request_digest.', 'context.request_digest is reserved');

SELECT is((SELECT (wval_evaluate('tap-eval', 'h2', 'backtest', rets, '{"sample": {"n_trades": 40}}',
                                 jsonb_build_object('run_id', 'h-r1', 'model_card_version', 'mc-1', 'benchmark', bench))).status
           FROM honest_in) IS NOT NULL, true, 'first evaluation under run_id h-r1');
SELECT is((SELECT (wval_evaluate('tap-eval', 'h2', 'backtest', rets, '{"sample": {"n_trades": 40}}',
                                 jsonb_build_object('benchmark', bench, 'model_card_version', 'mc-1', 'run_id', 'h-r1'))).run_id
           FROM honest_in),
          (SELECT run_id FROM wval.evaluation_runs WHERE world_id = 'tap-eval' AND client_run_id = 'h-r1'),
          'an identical retry returns the stored run');
SELECT is(pg_temp.err($$SELECT wval_evaluate('tap-eval', 'h2', 'backtest', (SELECT rets[1:119] || 0.03::float8 FROM honest_in), '{"sample": {"n_trades": 40}}',
                                              (SELECT jsonb_build_object('run_id', 'h-r1', 'model_card_version', 'mc-1', 'benchmark', bench) FROM honest_in))$$),
          'WV007 These differ from stored run <id>: returns.', 'other returns: WV007 naming the returns');
SELECT is(pg_temp.err($$SELECT wval_evaluate('tap-eval', 'h2', 'backtest', (SELECT rets FROM honest_in), '{"sample": {"n_trades": 41}}',
                                              (SELECT jsonb_build_object('run_id', 'h-r1', 'model_card_version', 'mc-1', 'benchmark', jsonb_set(bench, '{0}', '0.5')) FROM honest_in))$$),
          'WV007 These differ from stored run <id>: metrics, context.benchmark.', 'other metrics and benchmark: WV007 naming both');
SELECT is(pg_temp.err($$SELECT wval_evaluate('tap-eval', 'h2', 'backtest', (SELECT rets FROM honest_in), '{"sample": {"n_trades": 41}}',
                                              (SELECT jsonb_build_object('run_id', 'h-r1', 'model_card_version', 'mc-1', 'benchmark', bench) FROM honest_in))$$),
          'WV007 These differ from stored run <id>: metrics.', 'other supplied metrics: WV007 naming the metrics');
SELECT is(pg_temp.err($$SELECT wval_evaluate('tap-eval', 'h2', 'backtest', (SELECT rets FROM honest_in), NULL,
                                              (SELECT jsonb_build_object('run_id', 'h-r1', 'model_card_version', 'mc-1', 'benchmark', bench) FROM honest_in))$$),
          'WV007 These differ from stored run <id>: metrics.', 'metrics left out: WV007 naming the metrics');
SELECT is(pg_temp.err($$SELECT wval_evaluate('tap-eval', 'h2', 'paper', (SELECT rets FROM honest_in), '{"sample": {"n_trades": 40}}',
                                              (SELECT jsonb_build_object('run_id', 'h-r1', 'model_card_version', 'mc-1', 'benchmark', bench) FROM honest_in))$$),
          'WV007 These differ from stored run <id>: stage (stored backtest, given paper).', 'another stage: WV007 naming the stage');
SELECT is(pg_temp.err($$SELECT wval_evaluate('tap-eval', 'h2', 'backtest', (SELECT rets FROM honest_in), '{"sample": {"n_trades": 40}}',
                                              (SELECT jsonb_build_object('run_id', 'h-r1', 'model_card_version', 'mc-2', 'benchmark', bench) FROM honest_in))$$),
          'WV007 These differ from stored run <id>: context.', 'another context: WV007 naming the context');
SELECT is(pg_temp.err($$SELECT wval_evaluate('tap-eval', 'h2', 'backtest', (SELECT rets FROM honest_in), '{"sample": {"n_trades": 40}}',
                                              (SELECT jsonb_build_object('run_id', 'h-r1', 'model_card_version', 'mc-1', 'benchmark', bench || '[]'::jsonb) FROM honest_in))$$),
          'ok', 'the same benchmark (jsonb equal) is the same request');
SELECT is((SELECT count(*)::int FROM wval.evaluation_runs WHERE world_id = 'tap-eval' AND client_run_id = 'h-r1'), 1,
          'one run under run_id h-r1');
SELECT ok((SELECT context -> 'request_digest' ->> 'metrics' ~ '^sha256:[0-9a-f]{64}$'
                  AND context -> 'request_digest' ->> 'benchmark' ~ '^sha256:[0-9a-f]{64}$' AND NOT context ? 'benchmark'
           FROM wval.evaluation_runs WHERE world_id = 'tap-eval' AND client_run_id = 'h-r1'),
          'the run keeps the digests of its supplied metrics and benchmark, not the benchmark');
SELECT is(pg_temp.err($$SELECT wval_evaluate('tap-eval', 'h3', 'backtest', NULL, '{}', '{"run_id": "h-r3"}')$$ ||
                      $$; SELECT wval_evaluate('tap-eval', 'h3', 'backtest', NULL, NULL, '{"run_id": "h-r3"}')$$),
          'ok', 'metrics {} and null are the same request');

-- look-ups by primary key (src/spi.c key scans): the world, the version active at the
-- run's stage (the latest activation naming the stage or no stages), the policy version
SELECT lives_ok($$SELECT wval_policy_publish('tap-eval', (SELECT policy FROM wval.sample_policies), 'alice', 'v2'),
                         wval_policy_activate('tap-eval', 2, 'bob', 'paper first', stages => '{paper}')$$,
                'version 2 activated for paper only');
SELECT is(ARRAY[(wval_evaluate('tap-eval', 'ks', 'backtest', NULL, '{}')).policy_version,
                (wval_evaluate('tap-eval', 'ks', 'paper', NULL, '{}')).policy_version,
                (wval_evaluate('tap-eval', 'ks', 'live', NULL, '{}')).policy_version], ARRAY[1, 2, 1],
          'each stage is evaluated with the version active for it');
SELECT lives_ok($$SELECT wval_policy_activate('tap-eval', 1, 'bob', 'back to one')$$, 'version 1 activated for every stage');
SELECT is((wval_evaluate('tap-eval', 'ks', 'paper', NULL, '{}')).policy_version, 1,
          'the latest activation wins over an earlier stage-specific one');
SELECT throws_ok($$SELECT wval_evaluate('tap-no-such-world', 'ks', 'backtest', NULL, '{}')$$, 'WV010',
                 'world "tap-no-such-world" does not exist', 'an unknown world is WV010');

-- wval's sha256 (util.c, no OpenSSL) is sha256(): chain links over 0..300 bytes and multibyte text
SELECT is((SELECT count(*)::int FROM generate_series(0, 300) n
           WHERE wval._chain_link('sha256:p', 't', n, repeat('é', n % 5) || repeat('x', n))
                 <> 'sha256:' || encode(sha256(convert_to('sha256:p' || E'\n' || 't' || E'\n' || n || E'\n' ||
                                                          repeat('é', n % 5) || repeat('x', n), 'UTF8')), 'hex')), 0,
          'chain links hash as sha256() does, at every length');

-- wval_warm (docs/install.md, "The first call of a session"): the first evaluation of a
-- session done ahead, store included, in a subtransaction that is rolled back
SELECT lives_ok($$SELECT wval_world_upsert('tap-warm', settings => '{"store_returns": true}', actor => 'dba'),
                         wval_policy_publish('tap-warm', (SELECT policy FROM wval.sample_policies), 'alice'),
                         wval_policy_activate('tap-warm', 1, 'bob', 'sample'),
                         wval_subscribe('tap-warm-group', '{evaluation_run_created}')$$,
                'a world that stores returns, a group that receives its runs');
CREATE TEMP VIEW warm_state AS SELECT
    (SELECT count(*) FROM wval.evaluation_runs WHERE world_id = 'tap-warm') AS runs,
    (SELECT count(*) FROM wval.events) AS events,
    (SELECT count(*) FROM wval.deliveries) AS deliveries,
    (SELECT count(*) FROM wval.chain_heads WHERE world_id = 'tap-warm') AS heads,
    (SELECT count(*) FROM wval.evaluation_stats WHERE world_id = 'tap-warm') AS counters,
    (SELECT count(*) FROM wval.run_returns WHERE world_id = 'tap-warm') AS returns,
    (SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype IN ('advisory', 'tuple')) AS locks;
CREATE TEMP TABLE warm_before AS SELECT * FROM warm_state;
-- this transaction's write counters (they count rolled back writes too)
CREATE TEMP VIEW warm_writes AS
    SELECT regexp_replace(relname, '_(p[0-9]+|default)$', '') AS tbl, sum(n_tup_ins + n_tup_upd) AS n
    FROM pg_stat_xact_user_tables WHERE schemaname = 'wval' GROUP BY 1;
CREATE TEMP TABLE warm_writes_before AS SELECT * FROM warm_writes;
SET ROLE tap_gateway;
SELECT lives_ok($$SELECT wval_warm('tap-warm')$$, 'a producer warms its session for a world');
SELECT lives_ok($$SELECT wval_warm('tap-warm', 2)$$, 'with a series of two returns');
RESET ROLE;
SELECT is((SELECT array_agg(w.tbl || ' +' || (w.n - coalesce(b.n, 0)) ORDER BY w.tbl)
           FROM warm_writes w LEFT JOIN warm_writes_before b USING (tbl) WHERE w.n > coalesce(b.n, 0)),
          ARRAY['chain_heads +4', 'delivery_store +2', 'evaluation_runs +2', 'evaluation_stats +2', 'events +2',
                'run_returns +2'],
          'each warm-up went through the whole store: series, event, delivery, run, two chain links, counter');
SELECT is((SELECT w::text FROM warm_state w), (SELECT b::text FROM warm_before b),
          'nothing stays: runs, events, deliveries, chain heads, counters, stored returns, advisory locks');
SELECT is((wval_evaluate('tap-warm', 'w1', 'backtest', '{0.01, -0.02, 0.015}')).chain_seq,
          (SELECT max(seq) + 2 FROM wval.chain_heads WHERE world_id = 'tap-warm'),
          'the first real run takes the next links of the world''s chain (the stored series, then the run)');
SELECT ok(wval_verify_chain('tap-warm'), 'and the chain is intact');
SELECT is((SELECT count(*)::int FROM wval.deliveries WHERE group_name = 'tap-warm-group'), 1,
          'the group receives that one event');
SELECT throws_ok($$SELECT wval_warm(NULL)$$, '22023', '"world_id" must not be null', 'a null world: 22023');
SELECT throws_ok($$SELECT wval_warm('tap-warm', 1)$$, '22023', NULL, 'a series of one return: 22023');
SELECT throws_ok($$SELECT wval_warm('tap-no-such-world')$$, 'WV010', 'world "tap-no-such-world" does not exist',
                 'an unknown world is WV010, as for wval_evaluate');
SET ROLE tap_reader;
SELECT throws_ok($$SELECT wval_warm('tap-warm')$$, '42501', NULL, 'an analyst may not warm an evaluation');
RESET ROLE;
-- an error inside the evaluation is raised after the rollback: a producer that may only read
SELECT ok(wval_world_revoke('wval_producer', '*', 'dba'), 'producers lose their grant of every world');
SELECT is((wval_world_grant('tap_gateway', 'tap-warm', 'read', 'dba')).privilege, 'read', 'the gateway may read tap-warm');
TRUNCATE warm_before;
INSERT INTO warm_before SELECT * FROM warm_state;
SET ROLE tap_gateway;
SELECT throws_ok($$SELECT wval_warm('tap-warm')$$, '42501', 'role "tap_gateway" may not write world "tap-warm"',
                 'a reader of the world gets the evaluation''s 42501');
RESET ROLE;
SELECT is((SELECT w::text FROM warm_state w), (SELECT b::text FROM warm_before b), 'and nothing stays of it');

SELECT * FROM finish();
ROLLBACK;
