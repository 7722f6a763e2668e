-- pgTAP: inputs at the edge (issue 11) — null arguments of non-STRICT entry
-- points, numbers beyond a double in JSON, identifiers (blank, control,
-- bidi, zero-width), size limits of snapshots and cohorts, PSR/DSR on
-- extreme finite input, the canonical text of a large snapshot.
BEGIN;
SELECT plan(45);
SET client_min_messages = warning;

SELECT wval_world_upsert('tap-lim', actor => 'dba');
SELECT wval_policy_publish('tap-lim', (SELECT policy FROM wval.sample_policies), 'alice');
SELECT wval_policy_activate('tap-lim', 1, 'bob', 'sample');
SELECT wval_producer_register('tap-lim', 'gw');
CREATE ROLE tap_lim_reader; GRANT wval_analyst TO tap_lim_reader;
CREATE ROLE tap_lim_gw; GRANT wval_producer TO tap_lim_gw;

-- a valid snapshot with n weights (1/n each) and its diagonal covariance
CREATE FUNCTION pg_temp.snap(v text, n int, cov jsonb DEFAULT NULL) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object(
        'as_of', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'version', v, 'ttl_sec', 3600,
        'weights', (SELECT jsonb_object_agg('s' || i, 1.0 / n) FROM generate_series(1, n) i),
        'covariance', coalesce(cov, (SELECT jsonb_object_agg('s' || i || ',s' || i, 0.04) FROM generate_series(1, n) i)))
$$;

------------------------------------------------------------------------------
-- null arguments: a clean 22023, never a backend crash
------------------------------------------------------------------------------
SET ROLE tap_lim_reader;
SELECT throws_ok($$SELECT wval_check(NULL, '{}')$$, '22023', '"policy" must not be null',
                 'wval_check with a null policy (used to crash the backend)');
SELECT throws_ok($$SELECT wval_check(NULL, NULL, NULL, NULL)$$, '22023', '"policy" must not be null',
                 'wval_check with nulls only');
RESET ROLE;
SELECT throws_ok($$SELECT wval._apply_rules(NULL, NULL, '{}', 'backtest', false, NULL, NULL)$$, '22023',
                 '"policy" must not be null', 'wval._apply_rules with a null policy');
SELECT is(wval_check((SELECT policy FROM wval.sample_policies), NULL, NULL, NULL) ->> 'status', 'fail',
          'wval_check with null metrics, stage and context evaluates (defaults)');
SELECT throws_ok($$SELECT wval_world_grant('tap_lim_reader', NULL, 'read', 'dba')$$, '22023',
                 '"world_id" must not be empty', 'wval_world_grant with a null world: 22023, not 23502');
SELECT throws_ok($$SELECT wval_world_grant(NULL, 'tap-lim', 'read', 'dba')$$, '22023',
                 '"role_name" must not be empty', 'wval_world_grant with a null role: 22023, not WV010');
SELECT throws_ok($$SELECT wval_world_revoke('tap_lim_reader', NULL, 'dba')$$, '22023',
                 '"world_id" must not be empty', 'wval_world_revoke with a null world: 22023, not false');

------------------------------------------------------------------------------
-- numbers beyond a double (1e400) in JSON: the class of the input, not 22003
------------------------------------------------------------------------------
SELECT throws_ok($$SELECT wval_evaluate('tap-lim', 'huge', 'backtest', NULL, '{"returns": {"sharpe": 1e400}}')$$,
                 'WV001', '"returns.sharpe" is out of range for a double precision number',
                 '1e400 as a supplied metric is WV001');
SELECT throws_ok($$SELECT wval_evaluate('tap-lim', 'huge', 'backtest', NULL, '{"diagnostics": {"note": -1e400}}')$$,
                 'WV001', '"diagnostics.note" is out of range for a double precision number',
                 'also under diagnostics');
SELECT throws_ok($$SELECT wval_evaluate('tap-lim', 'huge', 'backtest', '{0.01,0.02,0.03}', '{}', '{"risk_free": 1e400}')$$,
                 'WV001', '"context.risk_free" is out of range for a double precision number',
                 '1e400 in the context is WV001');
SELECT throws_ok($$SELECT wval_evaluate('tap-lim', 'huge', 'backtest', '{0.01,0.02,0.03}', '{}', '{"benchmark": [0.01, 1e400, 0]}')$$,
                 'WV001', '"context.benchmark[2]" is out of range for a double precision number',
                 '1e400 in the benchmark is WV001 naming the element');
SELECT throws_ok($$SELECT wval_check('{"validation_profiles": {"backtest": {"performance": {"sharpe_min": 1e400}}}}', '{}')$$,
                 'WV002', '"validation_profiles.backtest.performance.sharpe_min" is out of range for a double precision number',
                 '1e400 in a policy is WV002');
SELECT throws_ok($$SELECT wval_policy_publish('tap-lim', '{"validation_profiles": {"backtest": {"performance": {"sharpe_min": 1e400}}}}', 'alice')$$,
                 'WV002', NULL, 'and publishing it is WV002');
SELECT throws_ok($$SELECT wval_strategy_complexity(1, '{"n_features": 1e400}')$$, 'WV001', NULL,
                 'wval_strategy_complexity: 1e400 is WV001');
SELECT throws_ok($$SELECT * FROM wval_evaluate_cohort('tap-lim', 'c-huge', 'backtest', '[{"strategy_id": "a", "returns": [0.01, 1e400]}]')$$,
                 'WV001', NULL, 'a cohort candidate''s returns with 1e400: WV001');
-- the bypass stores what it is given; the read paths must not break on it
CREATE TEMP TABLE huge_run AS
SELECT run_id FROM wval_record_run('tap-lim', 'huge-bypass', 'backtest', '{"returns": {"sharpe": 1e400}}', 'dba', 'vendor outage');
SELECT ok(wval_run_explain((SELECT run_id FROM huge_run)) LIKE '%returns.sharpe = 1.000e+400%',
          'wval_run_explain of a stored 1e400 metric works');
SELECT ok(wval_report((SELECT run_id FROM huge_run)) LIKE '%1.000e+400%', 'wval_report shows it');
SELECT is(wval._metric_number('1e400'), NULL::float8, 'wval._metric_number: beyond a double is missing');

------------------------------------------------------------------------------
-- identifiers
------------------------------------------------------------------------------
SELECT throws_ok($$SELECT wval_evaluate('tap-lim', ' ', 'backtest', '{0.01,0.02}')$$, '22023',
                 '"strategy_id" must not be blank', 'a blank strategy_id');
SELECT throws_ok($$SELECT wval_evaluate('tap-lim', E'\u3000\u00a0', 'backtest', '{0.01,0.02}')$$, '22023',
                 '"strategy_id" must not be blank', 'Unicode whitespace only is blank');
SELECT throws_ok($$SELECT wval_world_upsert(E'w\u200bx', actor => 'dba')$$, '22023',
                 '"world_id" contains a zero-width character', 'a zero-width space in a world');
SELECT throws_ok($$SELECT wval_world_upsert(E'w\ufeffx', actor => 'dba')$$, '22023',
                 '"world_id" contains a zero-width character', 'a BOM in a world');
SELECT throws_ok($$SELECT wval_policy_activate('tap-lim', 1, E'bo\u202eb', 'x', true)$$, '22023',
                 '"actor" contains a bidirectional control character', 'a right-to-left override in an actor');
SELECT throws_ok($$SELECT wval_policy_activate('tap-lim', 1, E'\u200b', 'x', true)$$, '22023',
                 '"actor" contains a zero-width character', 'an invisible actor');
SELECT throws_ok($$SELECT wval_evaluate('tap-lim', E's\u2066x', 'backtest', '{0.01}')$$, '22023',
                 '"strategy_id" contains a bidirectional control character', 'an isolate in a strategy');
SELECT throws_ok($$SELECT wval_evaluate('tap-lim', E's\u0085x', 'backtest', '{0.01}')$$, '22023',
                 '"strategy_id" contains a control character', 'a C1 control in a strategy');
SELECT throws_ok($$SELECT wval_subscribe(E'g\u061c', ARRAY['run_evaluated'])$$, '22023',
                 '"group_name" contains a bidirectional control character', 'an Arabic letter mark in a consumer group');
SELECT throws_ok($$SELECT wval_producer_register('tap-lim', E'gw\u200d')$$, '22023',
                 '"actor" contains a zero-width character', 'a zero-width joiner in a producer');
SELECT throws_ok($$SELECT wval_snapshot_publish('tap-lim', pg_temp.snap('id1', 2), E'\u2060gw', 'paper')$$, 'WV004',
                 '"actor" contains a zero-width character', 'the snapshot contract uses the same rule (WV004)');
SELECT throws_ok($$SELECT wval_snapshot_publish('tap-lim', pg_temp.snap('id2', 1, '{" ,s1": 0.04}') || '{"weights": {"s1": 1}}', 'gw', 'paper')$$,
                 'WV004', NULL, 'a blank strategy id in a covariance key');
SELECT is(wval._ident('world_id', 'Zürich 東京 desk-1'), 'Zürich 東京 desk-1', 'letters of any script and inner spaces are fine');

------------------------------------------------------------------------------
-- size limits
------------------------------------------------------------------------------
SELECT throws_ok($$SELECT wval_snapshot_publish('tap-lim', pg_temp.snap('big', 501), 'gw', 'paper')$$, 'WV004',
                 '"weights" has more than 500 strategies', '501 weights are refused at publish');
SELECT is((wval_snapshot_publish('tap-lim', pg_temp.snap('max', 500), 'gw', 'paper')).version, 'max', '500 weights are accepted');
SELECT is(jsonb_array_length(wval_portfolio_risk('tap-lim', 'paper') -> 'filled_pairs'), 500 * 499 / 2,
          'and their portfolio risk computes (every off-diagonal pair filled)');
SELECT throws_ok($$SELECT wval_snapshot_publish('tap-lim', pg_temp.snap('bigcov', 2,
                     (SELECT jsonb_object_agg('s' || i || ',t' || j, 0.001) FROM generate_series(1, 355) i, generate_series(1, 355) j)), 'gw', 'paper')$$,
                 'WV004', '"covariance" has more than 125250 entries', 'a covariance above 125,250 entries is refused');
SELECT throws_ok($$SELECT * FROM wval_evaluate_cohort('tap-lim', 'c-big', 'backtest',
                     (SELECT jsonb_agg(jsonb_build_object('strategy_id', 'c' || i)) FROM generate_series(1, 1001) i))$$,
                 '22023', '"candidates" has more than 1000 strategies', 'a cohort of 1,001 candidates is refused');

------------------------------------------------------------------------------
-- PSR / DSR never NaN (nor a wrong 0.5) for finite input
------------------------------------------------------------------------------
SELECT ok(wval_dsr(1e308, 10, 1, 3, 5) > 0.99, 'wval_dsr(1e308, ...) is close to 1, not NaN');
SELECT ok(wval_psr(1e308, 10, 0, 3, 0) > 0.99, 'wval_psr(1e308, ...) is close to 1, not 0.5');
SELECT is(round(wval_dsr(2.5, 1250, -3, 10, 100, 0.5, 250)::numeric, 4), 0.9004, 'the worked DSR example is unchanged');

------------------------------------------------------------------------------
-- the canonical text of a large snapshot (was read from memory SPI had freed)
------------------------------------------------------------------------------
SET ROLE tap_lim_gw;
SELECT is(md5(wval_snapshot_canonical('tap-lim', jsonb_build_object('as_of', '2026-01-01T00:00:00Z', 'version', 'v',
              'weights', '{"a": 1}'::jsonb, 'constraints', jsonb_build_object('note', repeat('x', 200000))))),
          md5(jsonb_build_object('as_of', '2026-01-01T00:00:00Z', 'version', 'v',
              'weights', '{"a": 1}'::jsonb, 'constraints', jsonb_build_object('note', repeat('x', 200000)))::text),
          'the canonical text of a 200 kB snapshot is its jsonb text');
RESET ROLE;

-- points in time that cannot be computed with (found by the fuzz harness): 22023, not 22008
SELECT throws_ok($$SELECT wval_snapshot_as_of('tap-lim', 'infinity')$$, '22023', 'invalid value for "ts"',
                 'snapshot as of infinity is 22023');
SELECT throws_ok($$SELECT wval_snapshot_as_of('tap-lim', '-infinity')$$, '22023', 'invalid value for "ts"',
                 'snapshot as of -infinity is 22023');
SELECT throws_ok($$SELECT wval_live_run('tap-lim', 's', '4713-01-01 BC')$$, '22023', 'invalid value for "as_of"',
                 'a live run as of 4713 BC is 22023 (its windows would start before the first date)');
SELECT throws_ok($$SELECT wval_live_run('tap-lim', 's', '5874897-12-31')$$, '22023', 'invalid value for "as_of"',
                 'a live run as of the last representable date is 22023');
SELECT ok((SELECT abs((r.metrics #>> '{cohort,sharpe_median}')::float8 / 1.65e308 - 1) < 1e-12 FROM wval_evaluate_cohort('tap-lim', 'c-edge', 'backtest',
             '[{"strategy_id": "edge-a", "metrics": {"returns": {"sharpe": 1.7e308}}},
               {"strategy_id": "edge-b", "metrics": {"returns": {"sharpe": 1.6e308}}}]') r LIMIT 1),
          'the cohort median of two Sharpes near the float8 range is computed (was 22003, found by the long fuzz pass)');

SELECT * FROM finish();
ROLLBACK;
