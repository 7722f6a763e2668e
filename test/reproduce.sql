-- pgTAP: reproducible runs (issue 16, point 1): wval.run_returns (store_returns,
-- content addressing, chain, append-only, retention, access) and
-- wval_run_reproduce on the scenario sets and on random series
BEGIN;
SET client_min_messages = warning;
SELECT plan(55);

-- the SQLSTATE, message and hint of the error a statement raises
-- returns_hash as the docs define it: sha256 of the float8send bytes
CREATE FUNCTION pg_temp.rhash(r float8[]) RETURNS text LANGUAGE sql AS $$
    SELECT 'sha256:' || encode(sha256(coalesce((SELECT string_agg(float8send(v), ''::bytea ORDER BY o)
                                                FROM unnest(r) WITH ORDINALITY u(v, o)), ''::bytea)), 'hex')
$$;
CREATE FUNCTION pg_temp.error_of(stmt text) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    s text; m text; h text;
BEGIN
    EXECUTE stmt;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS s = RETURNED_SQLSTATE, m = MESSAGE_TEXT, h = PG_EXCEPTION_HINT;
    RETURN ARRAY[s, m, h];
END
$$;

------------------------------------------------------------------------------
-- the setting
------------------------------------------------------------------------------
SELECT is((wval_world_upsert('tap-rep', actor => 'dba')).settings, '{"store_returns": true}'::jsonb,
          'a new world stores returns by default');
SELECT is((wval_world_upsert('tap-rep-off', settings => '{"store_returns": false, "fail_impact_ratio": 0.5}', actor => 'dba')).settings,
          '{"store_returns": false, "fail_impact_ratio": 0.5}'::jsonb, 'a new world can opt out');
SELECT lives_ok($$SELECT wval_world_upsert('tap-rep-b', actor => 'dba'),
                         wval_world_upsert('tap-rep-old', actor => 'dba'),
                         wval_world_upsert('tap-rep-old', settings => '{}', actor => 'dba')$$,
                'world B, and a world without the key (as worlds are after the upgrade)');
SELECT lives_ok($$SELECT wval_policy_publish(w, (SELECT policy FROM wval.sample_policies WHERE name = 'sample'), 'alice'),
                         wval_policy_activate(w, 1, 'bob', 'sample')
                  FROM unnest(ARRAY['tap-rep', 'tap-rep-off', 'tap-rep-b', 'tap-rep-old']) w$$, 'the sample policy everywhere');

------------------------------------------------------------------------------
-- the scenario sets: each case evaluated from a return series of its own,
-- with the case's metrics supplied (computed ones win, supplied facts stay)
------------------------------------------------------------------------------
SELECT setseed(0.16);
CREATE TEMP TABLE rep_cases AS
SELECT c.set_name, c.case_id, c.strategy_id, c.metrics,
       ARRAY(SELECT round(((random() - 0.47) * 0.03)::numeric, 6)::float8 FROM generate_series(1, 200 + 40 * c.k)) AS r
FROM (SELECT x.*, row_number() OVER (ORDER BY x.set_name, x.case_id) AS k FROM wval.scenario_cases x WHERE x.shipped) c
ORDER BY c.set_name, c.case_id;
SELECT is((SELECT count(DISTINCT set_name)::int FROM rep_cases), 4, 'the four scenario sets');
CREATE TEMP TABLE rep_runs AS
SELECT 'scenario'::text AS origin, c.case_id AS label, c.r, e.*
FROM rep_cases c, LATERAL wval_evaluate('tap-rep', c.strategy_id, 'backtest', c.r, c.metrics,
                                        jsonb_build_object('run_id', c.case_id, 'search_intensity', 4)) e;
SELECT is((SELECT count(*) FROM rep_runs), (SELECT count(*) FROM rep_cases), 'every case evaluated');

------------------------------------------------------------------------------
-- 50 random series with varied options: lengths 1 .. 2000, fat tails,
-- periods per year, risk-free rate, trials variance, extra metrics
------------------------------------------------------------------------------
SELECT setseed(0.42);
CREATE TEMP TABLE rep_random AS
SELECT i,
       ARRAY(SELECT ((random() - 0.5) * 0.04 + CASE WHEN random() < 0.02 THEN -0.2 ELSE 0.0005 * (i % 5) END)::float8
             FROM generate_series(1, CASE WHEN i <= 5 THEN i ELSE (i * 37) % 2000 + 1 END)) AS r,
       jsonb_strip_nulls(jsonb_build_object(
           'periods_per_year', (ARRAY[252, 52, 12, 365])[1 + i % 4],
           'risk_free', CASE WHEN i % 3 = 0 THEN 0.0001 END,
           'search_intensity', 1 + i % 7,
           'trials_sharpe_variance', CASE WHEN i % 4 = 1 THEN 0.25 END)) AS ctx,
       CASE WHEN i % 5 = 2 THEN '{"alt_data": {"signal_decay": 0.3, "turnover": 2.5}}'::jsonb END AS supplied
FROM generate_series(1, 50) i;
INSERT INTO rep_runs
SELECT 'random', 'random-' || x.i, x.r, e.*
FROM rep_random x, LATERAL wval_evaluate('tap-rep', 'rnd' || x.i, 'backtest', x.r, x.supplied, x.ctx) e;
SELECT is((SELECT count(*)::int FROM rep_runs WHERE origin = 'random'), 50, '50 random series evaluated');
SELECT is((SELECT count(*)::int FROM wval.evaluation_runs WHERE world_id = 'tap-rep' AND strategy_id LIKE 'rnd%'), 50,
          'one run each');

CREATE TEMP TABLE rep_rows AS
SELECT x.origin, x.label, p.* FROM rep_runs x, wval_run_reproduce(x.run_id) p;
SELECT is((SELECT count(*)::int FROM rep_rows WHERE equal IS NOT TRUE), 0,
          'wval_run_reproduce agrees on every metric of every run');
SELECT is((SELECT array_agg(DISTINCT n) FROM (SELECT count(*) AS n FROM rep_rows WHERE origin = 'scenario' GROUP BY label) s),
          ARRAY[27::bigint], 'scenario runs: the 27 fields of a pack without benchmark, each');
SELECT ok((SELECT bool_and(n >= 20) FROM (SELECT count(*) AS n FROM rep_rows WHERE origin = 'random' GROUP BY label) s),
          'every random run has at least 20 fields compared');
SELECT ok((SELECT count(*) FROM rep_rows WHERE stored = 'null' AND recomputed = 'null') > 0,
          'null metrics (short series) are compared too');
SELECT is((SELECT count(*)::int FROM rep_rows r JOIN rep_runs x ON x.label = r.label
           WHERE x.origin = 'scenario' AND r.field = 'returns.sharpe'
             AND r.stored = x.metrics #> '{diagnostics,supplied_overridden,returns.sharpe}'), 0,
          'the stored Sharpe is the computed one, not the supplied one');
SELECT ok((SELECT bool_and(p.stored = p.recomputed) FROM rep_rows p WHERE p.field = 'diagnostics.strategy_complexity'
           AND p.label IN (SELECT 'random-' || i FROM rep_random WHERE supplied IS NOT NULL)),
          'the strategy complexity over supplied extra metrics is reproduced');

-- a run with a benchmark: the benchmark is not kept, its fields are listed with equal null
SELECT lives_ok($$SELECT wval_world_upsert('tap-rep-bm', actor => 'dba'),
                         wval_policy_publish('tap-rep-bm', (SELECT policy FROM wval.sample_policies WHERE name = 'sample'), 'alice'),
                         wval_policy_activate('tap-rep-bm', 1, 'bob', 'sample')$$, 'a world for a benchmark run');
CREATE TEMP TABLE rep_bench AS
SELECT (wval_evaluate('tap-rep-bm', 'bench', 'backtest', ARRAY(SELECT 0.004 + 0.01 * sin(i) FROM generate_series(1, 100) i),
                      '{"alt_data": {"x": 1}}',
                      jsonb_build_object('benchmark', ARRAY(SELECT 0.003 + 0.008 * cos(i) FROM generate_series(1, 100) i)))).run_id;
SELECT results_eq($$SELECT field FROM rep_bench, wval_run_reproduce(rep_bench.run_id) p WHERE p.equal IS NULL$$,
    $$VALUES ('benchmark.max_drawdown'), ('benchmark.sharpe'), ('benchmark.volatility'),
             ('diagnostics.extra_metrics.vs_benchmark_sharpe'), ('returns.alpha'), ('returns.beta'),
             ('returns.information_ratio'), ('returns.tracking_error')$$,
    'benchmark run: the eight benchmark-relative fields are not recomputed (recomputed and equal null)');
SELECT is((SELECT count(*) FILTER (WHERE p.equal) || '/' || count(*) FILTER (WHERE p.equal IS NOT NULL)
           FROM rep_bench, wval_run_reproduce(rep_bench.run_id) p), '27/27',
          'and every other field agrees, the strategy complexity over its extra metrics included');

-- a tampered metric shows: the comparison is real
SELECT is((SELECT count(*)::int FROM rep_runs x,
           LATERAL (SELECT l.path FROM wval._jsonb_leaves(wval._recompute_metrics(x.r, x.context, x.metrics)) l
                    WHERE (jsonb_set(x.metrics, '{returns,sharpe}', to_jsonb(1.5)) #> l.path) IS DISTINCT FROM l.value) d
           WHERE x.label = 'random-30'), 1, 'a changed Sharpe would differ in exactly one field');

------------------------------------------------------------------------------
-- storage: content-addressed, returned as evaluated, chained, append-only
------------------------------------------------------------------------------
SELECT is((SELECT count(*)::int FROM wval.run_returns WHERE world_id = 'tap-rep'),
          (SELECT count(DISTINCT returns_hash)::int FROM rep_runs), 'one row per distinct series');
SELECT ok((SELECT bool_and(wval._run_returns(x.run_id) = x.r) FROM rep_runs x), 'wval._run_returns gives back each run''s series');
SELECT lives_ok($$CREATE TEMP TABLE rep_twice AS
                  SELECT (wval_evaluate('tap-rep', s, 'backtest', (SELECT r FROM rep_random WHERE i = 20))).run_id
                  FROM unnest(ARRAY['twice-a', 'twice-b']) s$$, 'the same series evaluated twice more');
SELECT is((SELECT count(*)::int FROM wval.run_returns rr JOIN rep_runs x ON x.returns_hash = rr.returns_hash
           WHERE rr.world_id = 'tap-rep' AND x.label = 'random-20'), 1, 'the same returns are stored once');
SELECT is((SELECT count(DISTINCT returns_hash)::int FROM wval.evaluation_runs
           WHERE run_id IN (SELECT run_id FROM rep_twice UNION SELECT run_id FROM rep_runs WHERE label = 'random-20')), 1,
          'three runs share the one row');
SELECT ok((SELECT bool_and(rr.n_periods = cardinality(wval._returns_array(rr.returns))
                           AND rr.returns_hash = pg_temp.rhash(wval._returns_array(rr.returns))
                           AND rr.returns = (SELECT string_agg(float8send(v), ''::bytea ORDER BY o)
                                             FROM unnest(wval._returns_array(rr.returns)) WITH ORDINALITY u(v, o)))
           FROM wval.run_returns rr WHERE rr.world_id = 'tap-rep' AND rr.n_periods > 0),
          'each row holds the float8send bytes of its series and is addressed by their sha256');
SELECT throws_ok($$SELECT wval._returns_array('\x0102')$$, '22023', '"returns" is not a stored return series', 'bytes that are no series: 22023');
SELECT ok((SELECT bool_and(EXISTS (SELECT 1 FROM wval.evaluation_runs e WHERE e.world_id = rr.world_id
                                    AND e.returns_hash = rr.returns_hash AND e.chain_seq = rr.chain_seq + 1))
           FROM wval.run_returns rr WHERE rr.world_id = 'tap-rep'),
          'each series is the chain link right before the run that stored it');
SELECT is((SELECT count(*)::int FROM wval_chain_problems('tap-rep')), 0, 'the chain with the returns verifies');
SELECT ok(wval_verify_chain('tap-rep'), 'wval_verify_chain is true');
SELECT throws_ok($$UPDATE wval.run_returns SET n_periods = n_periods WHERE world_id = 'tap-rep'$$, 'WV003', NULL,
                 'UPDATE is refused (WV003)');
SELECT throws_ok($$DELETE FROM wval.run_returns WHERE world_id = 'tap-rep'$$, 'WV003', NULL, 'DELETE is refused (WV003)');
SELECT throws_ok($$TRUNCATE wval.run_returns$$, 'WV003', NULL, 'TRUNCATE is refused (WV003)');
CREATE FUNCTION pg_temp.as_writer(q text) RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $$ BEGIN EXECUTE q; END $$;
SELECT throws_ok($$SELECT pg_temp.as_writer('INSERT INTO wval.run_returns (world_id, returns_hash, n_periods, returns)
                   VALUES (''tap-rep'', ''sha256:00'', 2, float8send(0.01) || float8send(0.02))')$$, '23514', NULL,
                 'a row whose hash is not the sha256 of its series is refused');

------------------------------------------------------------------------------
-- the setting off: nothing stored, a clear error
------------------------------------------------------------------------------
CREATE TEMP TABLE rep_off AS
SELECT w, (wval_evaluate(w, 's1', 'backtest', '{0.01, -0.02, 0.015, 0.003}')).run_id FROM unnest(ARRAY['tap-rep-off', 'tap-rep-old']) w;
SELECT is((SELECT count(*)::int FROM wval.run_returns WHERE world_id IN ('tap-rep-off', 'tap-rep-old')), 0,
          'store_returns false, or absent: nothing is stored');
SELECT ok((SELECT bool_and(wval._run_returns(run_id) IS NULL) FROM rep_off), 'wval._run_returns is null there');
SELECT is(pg_temp.error_of(format('SELECT * FROM wval_run_reproduce(%L)', (SELECT run_id FROM rep_off WHERE w = 'tap-rep-off')))::text,
          ARRAY['WV010', format('the returns of run %s are not stored', (SELECT run_id FROM rep_off WHERE w = 'tap-rep-off')),
                'Turn on the world setting store_returns (wval_world_upsert(world_id, settings => ... || ''{"store_returns": true}'')); runs evaluated from then on can be reproduced.']::text,
          'not stored: WV010 with a hint about the setting');
CREATE TEMP TABLE rep_mo AS SELECT (wval_evaluate('tap-rep', 'metrics-only', 'backtest', NULL, (SELECT metrics FROM rep_cases LIMIT 1))).run_id;
SELECT is((pg_temp.error_of(format('SELECT * FROM wval_run_reproduce(%L)', (SELECT run_id FROM rep_mo))))[1:2],
          ARRAY['WV010', 'run ' || (SELECT run_id FROM rep_mo) || ' has no returns to reproduce its metrics from'],
          'a run evaluated from metrics only: WV010');
SELECT throws_ok($$SELECT * FROM wval_run_reproduce('00000000-0000-0000-0000-00000000dead')$$, 'WV010',
                 'evaluation run 00000000-0000-0000-0000-00000000dead does not exist', 'an unknown run: WV010');

------------------------------------------------------------------------------
-- live runs store the window's returns; their returns block is reproduced
------------------------------------------------------------------------------
SELECT is(wval_record_live_returns('tap-rep', 'live-s',
              ARRAY(SELECT d::date FROM generate_series('2026-05-01'::date, '2026-05-30', '1 day') d),
              ARRAY(SELECT 0.002 + 0.006 * sin(i * 1.7) FROM generate_series(1, 30) i), 'gateway'),
          30, 'live returns recorded');
CREATE TEMP TABLE rep_live AS SELECT * FROM wval_live_run('tap-rep', 'live-s', '2026-05-30');
SELECT is((SELECT cardinality(wval._run_returns(run_id)) FROM rep_live), 30, 'the live run''s window is stored');
SELECT is((SELECT count(*)::int FROM rep_live, wval_run_reproduce(rep_live.run_id) p WHERE p.field LIKE 'returns.%' AND p.equal), 12,
          'the 12 fields of its returns block are reproduced');
SELECT is((SELECT count(*)::int FROM rep_live, wval_run_reproduce(rep_live.run_id) p WHERE p.equal IS NOT TRUE), 0, 'and nothing differs');

------------------------------------------------------------------------------
-- access: another world's analyst sees neither the returns nor the reproduction
------------------------------------------------------------------------------
CREATE TEMP TABLE rep_b AS SELECT (wval_evaluate('tap-rep-b', 's1', 'backtest', '{0.01, -0.02, 0.015, 0.003, 0.007}')).run_id;
GRANT SELECT ON rep_b, rep_runs TO PUBLIC;
CREATE ROLE tap_rep_reader; GRANT wval_analyst TO tap_rep_reader;
SELECT ok(wval_world_revoke('wval_analyst', '*', 'dba'), 'analysts lose every world');
SELECT is((wval_world_grant('tap_rep_reader', 'tap-rep', 'read', 'dba')).privilege, 'read', 'the reader gets world tap-rep');
SET ROLE tap_rep_reader;
SELECT is((SELECT count(*)::int FROM wval_run_reproduce((SELECT run_id FROM rep_runs WHERE label = 'random-7')) WHERE equal), 
          (SELECT count(*)::int FROM wval_run_reproduce((SELECT run_id FROM rep_runs WHERE label = 'random-7'))),
          'the reader reproduces a run of its world');
SELECT throws_ok($$SELECT * FROM wval_run_reproduce((SELECT run_id FROM rep_b))$$, 'WV010', NULL,
                 'a run of world B does not exist for the reader');
SELECT throws_ok($$SELECT wval._run_returns((SELECT run_id FROM rep_b))$$, 'WV010', NULL, 'nor do its returns');
SELECT is((SELECT count(*)::int FROM wval.run_returns WHERE world_id = 'tap-rep-b'), 0, 'the rows of world B are hidden');
RESET ROLE;
SELECT is((SELECT count(*)::int FROM wval.run_returns WHERE world_id = 'tap-rep-b'), 1, '(world B did store its series)');

------------------------------------------------------------------------------
-- retention: a series goes with the last kept run that references it
------------------------------------------------------------------------------
SELECT lives_ok($$SELECT wval_world_upsert('tap-rep-ret', actor => 'dba')$$, 'a world with old history');
SELECT pg_temp.as_writer(format($q$INSERT INTO wval.run_returns (world_id, returns_hash, n_periods, returns, stored_at) VALUES
    ('tap-rep-ret', %L, 3, float8send(0.01) || float8send(0.02) || float8send(0.03), '2021-01-01'),
    ('tap-rep-ret', %L, 3, float8send(0.04) || float8send(0.05) || float8send(0.06), '2021-01-01')$q$,
    pg_temp.rhash('{0.01, 0.02, 0.03}'), pg_temp.rhash('{0.04, 0.05, 0.06}')));
SELECT is(wval_import_runs(jsonb_build_array(
    jsonb_build_object('world_id', 'tap-rep-ret', 'strategy_id', 's1', 'created_at', '2021-01-10T00:00:00Z', 'status', 'pass',
                       'returns_hash', pg_temp.rhash('{0.01, 0.02, 0.03}'), 'metrics', '{}'::jsonb),
    jsonb_build_object('world_id', 'tap-rep-ret', 'strategy_id', 's1', 'created_at', '2021-02-10T00:00:00Z', 'status', 'pass',
                       'returns_hash', pg_temp.rhash('{0.04, 0.05, 0.06}'), 'metrics', '{}'::jsonb),
    jsonb_build_object('world_id', 'tap-rep-ret', 'strategy_id', 's1', 'created_at', '2021-03-10T00:00:00Z', 'status', 'pass',
                       'returns_hash', pg_temp.rhash('{0.04, 0.05, 0.06}'), 'metrics', '{}'::jsonb))), 3,
          'three old runs: the first alone on series A, two on series B (the last one is kept)');
SELECT is(wval_purge('2021-06-01', 'tap-rep-ret') #> '{worlds,tap-rep-ret,tables,run_returns}',
          '{"candidates": 1, "deleted": 0, "oldest_kept": "2021-01-01T00:00:00+00:00"}'::jsonb,
          'dry run: series A is the one candidate');
SELECT is(wval_purge('2021-06-01', 'tap-rep-ret', dry_run => false) #>> '{worlds,tap-rep-ret,tables,run_returns,deleted}', '1',
          'the purge removes it');
SELECT is((SELECT array_agg(wval._returns_array(returns)::text ORDER BY returns_hash) FROM wval.run_returns WHERE world_id = 'tap-rep-ret'),
          '{"{0.04,0.05,0.06}"}', 'series B stays: a kept run references it');
SELECT is((SELECT count(*)::int FROM wval.chain_tombstones WHERE world_id = 'tap-rep-ret' AND table_name = 'run_returns'), 1,
          'series A left its tombstone');
SELECT ok(wval_verify_chain('tap-rep-ret'), 'the chain still verifies');

SELECT * FROM finish();
ROLLBACK;
