-- pgTAP tests of the metrics engine: properties (drawdown in [0, 1), Sharpe
-- scales with √P, DSR falls with the number of trials, a pack is well
-- formed), aggregates equal the array form (GROUP BY, ORDER BY inside the
-- call, window frames, parallel partial aggregation), SQLSTATEs, privileges,
-- and four series cross-checked against the independent Python reference
-- (test/metrics_reference.py --tap printed the expected values).
BEGIN;
SELECT plan(47);

CREATE FUNCTION pg_temp.close(actual float8, expected float8, tol float8 DEFAULT 1e-9) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT (actual IS NULL AND expected IS NULL)
        OR (actual = expected)
        OR abs(actual - expected) <= greatest(tol * abs(expected), 1e-12)
$$;

-- random series: 200 of 2 to 400 periods, some with wild returns
SELECT setseed(0.42);
CREATE TEMP TABLE rnd AS
SELECT id, array_agg(CASE WHEN id % 10 = 0 THEN (random() * 1.8 - 0.9)
                          ELSE 0.0005 + 0.02 * (random() - 0.5) END::float8 ORDER BY g) AS r
FROM generate_series(1, 200) AS id, LATERAL generate_series(1, 2 + (id * 37) % 399) AS g
GROUP BY id;
CREATE TEMP TABLE rnd_pack AS SELECT id, r, wval_metrics(r) AS m FROM rnd;

-- long series by rows, three groups in scrambled physical order
CREATE TEMP TABLE rows3 AS
SELECT g % 3 AS grp, g AS t, (((g * 7919) % 2003 - 1000)::float8 / 50000) AS r
FROM generate_series(1, 3000) AS g ORDER BY (g * 48271) % 3001;

-- the cross-check series (same integer formulas as the Python reference)
CREATE TEMP TABLE xs(name text, r float8[], ppy int, rf float8, n int);
INSERT INTO xs
SELECT 's1', array_agg(((t * 7919 + 13) % 2003 - 1000)::float8 / 50000 ORDER BY t), 252, 0, 1
FROM generate_series(1, 300) AS t;
INSERT INTO xs
SELECT 's2', array_agg(((t::bigint * t * 31 + t * 17) % 1009 - 500)::float8 / 40000
                       + CASE WHEN t % 50 = 0 THEN -0.05::float8 ELSE 0 END ORDER BY t), 252, 0, 20
FROM generate_series(1, 777) AS t;
INSERT INTO xs
SELECT 's3', array_agg(((t::bigint * 104729) % 30011 - 15000)::float8 / 1000000 ORDER BY t), 52, 0.0001, 1
FROM generate_series(1, 2520) AS t;
INSERT INTO xs
SELECT 's4', array_agg(((t * 37) % 7 - 3)::float8 / 1000 ORDER BY t), 252, 0, 1
FROM generate_series(1, 400) AS t;
CREATE TEMP TABLE xs_expected(name text, path text[], expected float8);
INSERT INTO xs_expected VALUES
    ('s1', '{returns,sharpe}', 0.15464411033483322),
    ('s1', '{returns,volatility}', 0.1830525581524439),
    ('s1', '{returns,sortino_ratio}', 0.22087554725401604),
    ('s1', '{returns,annual_return}', 0.011677341959562604),
    ('s1', '{returns,max_drawdown}', 0.1234494110676212),
    ('s1', '{returns,time_under_water_ratio}', 0.93),
    ('s1', '{returns,max_time_under_water_days}', 96.0),
    ('s1', '{returns,gain_to_pain_ratio}', 0.02279645538794562),
    ('s1', '{returns,var_p01}', 0.0194614),
    ('s1', '{returns,es_p01}', 0.019753333333333335),
    ('s1', '{returns,skew}', -0.001614712471951628),
    ('s1', '{returns,kurtosis}', 1.8022955719100058),
    ('s1', '{sample,effective_history_years}', 1.1904761904761905),
    ('s1', '{sample,regime_coverage,low_vol}', 0.34782608695652173),
    ('s1', '{sample,regime_coverage,mid_vol}', 0.3411371237458194),
    ('s1', '{sample,regime_coverage,high_vol}', 0.3110367892976589),
    ('s1', '{robustness,sharpe_first_half}', 0.09627711100546969),
    ('s1', '{robustness,sharpe_second_half}', 0.21240885909209722),
    ('s1', '{robustness,probabilistic_sharpe_ratio}', 0.5668838585445329),
    ('s1', '{robustness,deflated_sharpe_ratio}', 0.5668838585445329),
    ('s1', '{robustness,cv_folds}', 5.0),
    ('s1', '{robustness,cv_sharpe_mean}', 0.15095874370441037),
    ('s1', '{robustness,cv_sharpe_std}', 1.0198992125776434),
    ('s2', '{returns,sharpe}', -0.8053275230143366),
    ('s2', '{returns,volatility}', 0.16027388768466963),
    ('s2', '{returns,sortino_ratio}', -0.9438123840068496),
    ('s2', '{returns,annual_return}', -0.13251919484086505),
    ('s2', '{returns,max_drawdown}', 0.3709183305906393),
    ('s2', '{returns,time_under_water_ratio}', 1.0),
    ('s2', '{returns,max_time_under_water_days}', 777.0),
    ('s2', '{returns,gain_to_pain_ratio}', -0.1341202439928555),
    ('s2', '{returns,var_p01}', 0.049437),
    ('s2', '{returns,es_p01}', 0.055515625000000006),
    ('s2', '{returns,skew}', -2.3857818244296753),
    ('s2', '{returns,kurtosis}', 13.491815370641408),
    ('s2', '{sample,effective_history_years}', 3.0833333333333335),
    ('s2', '{sample,regime_coverage,low_vol}', 0.3337628865979381),
    ('s2', '{sample,regime_coverage,mid_vol}', 0.3324742268041237),
    ('s2', '{sample,regime_coverage,high_vol}', 0.3337628865979381),
    ('s2', '{robustness,sharpe_first_half}', -1.4592834661770824),
    ('s2', '{robustness,sharpe_second_half}', -0.19883407962552638),
    ('s2', '{robustness,probabilistic_sharpe_ratio}', 0.06674058183126697),
    ('s2', '{robustness,deflated_sharpe_ratio}', 0.0003354259852212768),
    ('s2', '{robustness,cv_folds}', 5.0),
    ('s2', '{robustness,cv_sharpe_mean}', -0.829933368345469),
    ('s2', '{robustness,cv_sharpe_std}', 1.0660345129775954),
    ('s3', '{returns,sharpe}', -0.07337388987430196),
    ('s3', '{returns,volatility}', 0.06247828227490716),
    ('s3', '{returns,sortino_ratio}', -0.10287946329912719),
    ('s3', '{returns,annual_return}', -0.0013344655706248876),
    ('s3', '{returns,max_drawdown}', 0.15411244515968803),
    ('s3', '{returns,time_under_water_ratio}', 0.9904761904761905),
    ('s3', '{returns,max_time_under_water_days}', 2059.0),
    ('s3', '{returns,gain_to_pain_ratio}', 0.0031614016370125238),
    ('s3', '{returns,var_p01}', 0.014684009999999999),
    ('s3', '{returns,es_p01}', 0.014833153846153847),
    ('s3', '{returns,skew}', 3.4433688521178514e-05),
    ('s3', '{returns,kurtosis}', 1.7995956496808452),
    ('s3', '{sample,effective_history_years}', 48.46153846153846),
    ('s3', '{sample,regime_coverage,low_vol}', 0.42715363239380705),
    ('s3', '{sample,regime_coverage,mid_vol}', 0.24732036522429535),
    ('s3', '{sample,regime_coverage,high_vol}', 0.3255260023818976),
    ('s3', '{robustness,sharpe_first_half}', -0.07596944350664234),
    ('s3', '{robustness,sharpe_second_half}', -0.0707492478318752),
    ('s3', '{robustness,probabilistic_sharpe_ratio}', 0.3047873531881252),
    ('s3', '{robustness,deflated_sharpe_ratio}', 0.3047873531881252),
    ('s3', '{robustness,cv_folds}', 5.0),
    ('s3', '{robustness,cv_sharpe_mean}', -0.07325298377433533),
    ('s3', '{robustness,cv_sharpe_std}', 0.1127990280775707),
    ('s4', '{returns,sharpe}', -0.019836936758545243),
    ('s4', '{returns,volatility}', 0.031758935750430935),
    ('s4', '{returns,sortino_ratio}', -0.028079985879782075),
    ('s4', '{returns,annual_return}', -0.0011324153030884965),
    ('s4', '{returns,max_drawdown}', 0.004781543953034428),
    ('s4', '{returns,time_under_water_ratio}', 0.9975),
    ('s4', '{returns,max_time_under_water_days}', 397.0),
    ('s4', '{returns,gain_to_pain_ratio}', -0.0029154518950437317),
    ('s4', '{returns,var_p01}', 0.003),
    ('s4', '{returns,es_p01}', 0.003),
    ('s4', '{returns,skew}', 0.00344014376660083),
    ('s4', '{returns,kurtosis}', 1.7523596989982766),
    ('s4', '{sample,effective_history_years}', 1.5873015873015872),
    ('s4', '{sample,regime_coverage,low_vol}', 0.5839598997493735),
    ('s4', '{sample,regime_coverage,mid_vol}', 0.2807017543859649),
    ('s4', '{sample,regime_coverage,high_vol}', 0.13533834586466165),
    ('s4', '{robustness,sharpe_first_half}', 0.0396118186539377),
    ('s4', '{robustness,sharpe_second_half}', -0.07927400601252543),
    ('s4', '{robustness,probabilistic_sharpe_ratio}', 0.49004308592915197),
    ('s4', '{robustness,deflated_sharpe_ratio}', 0.49004308592915197),
    ('s4', '{robustness,cv_folds}', 5.0),
    ('s4', '{robustness,cv_sharpe_mean}', -0.019629465794364885),
    ('s4', '{robustness,cv_sharpe_std}', 0.21071051496376395)
;

-- 1-4: the cross-check series, every metric of the returns, sample and robustness blocks
SELECT is(array_agg(e.path::text || ': ' || coalesce(m #>> e.path, 'null') || ' <> ' || coalesce(e.expected::text, 'null')
                    ORDER BY e.path) FILTER (WHERE NOT pg_temp.close((m #>> e.path)::float8, e.expected)),
          NULL, 'cross-check ' || x.name || ' (' || count(*) || ' metrics) matches the Python reference')
FROM xs x
JOIN LATERAL (SELECT wval_metrics(x.r, x.ppy, x.rf, x.n) AS m) AS p ON true
JOIN xs_expected e ON e.name = x.name
GROUP BY x.name ORDER BY x.name;

-- 5-7: maximum drawdown in [0, 1)
SELECT ok(bool_and((m #>> '{returns,max_drawdown}')::float8 >= 0 AND (m #>> '{returns,max_drawdown}')::float8 < 1),
          'max drawdown is in [0, 1) for 200 random series')
FROM rnd_pack;
SELECT is((wval_metrics(array_fill(-0.5::float8, ARRAY[2000])) #>> '{returns,max_drawdown}')::float8,
          0.9999999999999999::float8, 'a drawdown too close to 1 for a double is the largest double below 1');
SELECT ok(wval_max_drawdown(r) >= 0 AND wval_max_drawdown(r) < 1, 'the aggregate too')
FROM unnest(array_fill(-0.5::float8, ARRAY[2000])) AS r;

-- 8: no overflow on a long winning streak (W_n = 1.9^10000)
SELECT ok(pg_temp.close((m #>> '{returns,annual_return}')::float8, power(1.9::float8, 252) - 1, 1e-9)
          AND (m #>> '{returns,max_drawdown}')::float8 = 0,
          'wealth beyond the range of a double: annual return 1.9^252 - 1, no drawdown')
FROM wval_metrics(array_fill(0.9::float8, ARRAY[10000])) AS m;

-- 9-10: Sharpe and volatility scale with √P
SELECT ok(bool_and(pg_temp.close((wval_metrics(r, p) #>> '{returns,sharpe}')::float8,
                                 (m #>> '{returns,sharpe}')::float8 * sqrt(p / 252.0), 1e-12)),
          'Sharpe scales with √P (P = 1, 4, 12, 52, 365, 8760)')
FROM rnd_pack, unnest('{1, 4, 12, 52, 365, 8760}'::int[]) AS p
WHERE m #> '{returns,sharpe}' <> 'null';
SELECT ok(bool_and(pg_temp.close((wval_metrics(r, p) #>> '{returns,volatility}')::float8,
                                 (m #>> '{returns,volatility}')::float8 * sqrt(p / 252.0), 1e-12)),
          'volatility scales with √P')
FROM rnd_pack, unnest('{1, 12, 8760}'::int[]) AS p
WHERE m #> '{returns,volatility}' <> 'null';

-- 11-13: DSR falls as the number of trials grows
SELECT ok(bool_and(d_next <= d), 'wval_dsr is non-increasing in n_trials = 1 .. 2000')
FROM (SELECT wval_dsr(2.5, 1250, -3, 10, n, 0.5, 250) AS d,
             lead(wval_dsr(2.5, 1250, -3, 10, n, 0.5, 250)) OVER (ORDER BY n) AS d_next
      FROM generate_series(1, 2000) AS n) AS s
WHERE d_next IS NOT NULL;
SELECT ok(bool_and(d_next <= d) AND min(d) < max(d), 'wval_dsr with the estimator variance is non-increasing and does fall')
FROM (SELECT wval_dsr(1.5, 500, -0.5, 4, n) AS d, lead(wval_dsr(1.5, 500, -0.5, 4, n)) OVER (ORDER BY n) AS d_next
      FROM generate_series(1, 500) AS n) AS s
WHERE d_next IS NOT NULL;
SELECT ok(bool_and(d_next <= d), 'the pack''s deflated Sharpe is non-increasing in search_intensity')
FROM (SELECT (wval_metrics(xs.r, search_intensity => k) #>> '{robustness,deflated_sharpe_ratio}')::float8 AS d,
             lead((wval_metrics(xs.r, search_intensity => k) #>> '{robustness,deflated_sharpe_ratio}')::float8) OVER (ORDER BY k) AS d_next
      FROM xs, generate_series(1, 100) AS k WHERE xs.name = 's1') AS s
WHERE d_next IS NOT NULL;

-- 14-18: every pack is well formed
SELECT ok(bool_and(m::text NOT LIKE '%NaN%'), 'no pack holds NaN') FROM rnd_pack;
SELECT ok(bool_and(m ?& '{returns,sample,robustness,diagnostics}' AND NOT m ? 'benchmark'),
          'every pack has the four blocks, and no benchmark block without a benchmark')
FROM rnd_pack;
SELECT ok(bool_and(pg_temp.close((m #>> '{sample,regime_coverage,low_vol}')::float8
                                 + (m #>> '{sample,regime_coverage,mid_vol}')::float8
                                 + (m #>> '{sample,regime_coverage,high_vol}')::float8, 1, 1e-12)),
          'regime shares sum to 1')
FROM rnd_pack WHERE cardinality(r) >= 3;
SELECT ok(bool_and((m #>> '{robustness,deflated_sharpe_ratio}')::float8 = (m #>> '{robustness,probabilistic_sharpe_ratio}')::float8),
          'with one trial DSR = PSR')
FROM rnd_pack WHERE m #> '{robustness,probabilistic_sharpe_ratio}' <> 'null';
SELECT ok(bool_and((m #>> '{diagnostics,n_periods}')::int = cardinality(r)
                   AND (m #>> '{sample,effective_history_years}')::float8 = cardinality(r)::float8 / 252),
          'n_periods and effective history')
FROM rnd_pack;

-- 19-24: aggregates with GROUP BY equal the array form of each group
CREATE TEMP TABLE by_group AS
SELECT grp, wval_metrics(array_agg(r ORDER BY t)) AS m,
       wval_metrics_agg(r ORDER BY t) AS agg,
       wval_sharpe(r) AS sharpe, wval_sharpe(r, 12) AS sharpe_12, wval_sortino(r) AS sortino,
       wval_max_drawdown(r ORDER BY t) AS mdd, wval_var(r, 0.01) AS var, wval_es(r, 0.01) AS es,
       wval_metrics(array_agg(r ORDER BY t), 12) #>> '{returns,sharpe}' AS array_sharpe_12
FROM rows3 GROUP BY grp;
SELECT is(count(*) FILTER (WHERE agg = m), 3::bigint, 'wval_metrics_agg(r ORDER BY t) = wval_metrics(array_agg(r ORDER BY t)) per group') FROM by_group;
SELECT ok(bool_and(pg_temp.close(sharpe, (m #>> '{returns,sharpe}')::float8, 1e-12)
                   AND pg_temp.close(sharpe_12, array_sharpe_12::float8, 1e-12)), 'wval_sharpe per group') FROM by_group;
SELECT ok(bool_and(pg_temp.close(sortino, (m #>> '{returns,sortino_ratio}')::float8, 1e-12)), 'wval_sortino per group') FROM by_group;
SELECT ok(bool_and(mdd = (m #>> '{returns,max_drawdown}')::float8), 'wval_max_drawdown per group (to the bit)') FROM by_group;
SELECT ok(bool_and(var = (m #>> '{returns,var_p01}')::float8), 'wval_var per group (to the bit)') FROM by_group;
SELECT ok(bool_and(pg_temp.close(es, (m #>> '{returns,es_p01}')::float8, 1e-12)), 'wval_es per group') FROM by_group;

-- 25-26: the ORDER BY inside the call is honoured
SELECT ok(wval_max_drawdown(r ORDER BY t DESC) = (wval_metrics(array_agg(r ORDER BY t DESC)) #>> '{returns,max_drawdown}')::float8
          AND wval_max_drawdown(r ORDER BY t DESC) <> wval_max_drawdown(r ORDER BY t),
          'wval_max_drawdown follows the ORDER BY of the call')
FROM rows3 WHERE grp = 0;
SELECT ok(wval_metrics_agg(r ORDER BY t DESC) <> wval_metrics_agg(r ORDER BY t)
          AND wval_metrics_agg(r ORDER BY t DESC) = wval_metrics(array_agg(r ORDER BY t DESC)),
          'wval_metrics_agg follows the ORDER BY of the call')
FROM rows3 WHERE grp = 1;

-- 27-30: as window functions (growing and moving frames)
CREATE TEMP TABLE win AS
SELECT t, r,
       wval_sharpe(r) OVER w AS sharpe, wval_sortino(r) OVER w AS sortino,
       wval_max_drawdown(r) OVER w AS mdd, wval_var(r, 0.05) OVER w AS var,
       wval_es(r, 0.05) OVER w AS es, wval_metrics_agg(r) OVER w AS pack,
       wval_max_drawdown(r) OVER (ORDER BY t ROWS BETWEEN 19 PRECEDING AND CURRENT ROW) AS mdd20,
       wval_sharpe(r) OVER (ORDER BY t ROWS BETWEEN 19 PRECEDING AND CURRENT ROW) AS sharpe20
FROM rows3 WHERE grp = 2
WINDOW w AS (ORDER BY t ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW);
CREATE TEMP TABLE win_prefix AS
SELECT w.t, p.prefix, p.last20, wval_metrics(p.prefix) AS m
FROM win AS w,
     LATERAL (SELECT array_agg(x.r ORDER BY x.t) AS prefix,
                     (array_agg(x.r ORDER BY x.t DESC))[1:20] AS last20
              FROM win AS x WHERE x.t <= w.t) AS p
WHERE w.t <= 600;
SELECT ok(bool_and(w.pack = p.m), 'wval_metrics_agg over a growing frame = the pack of each prefix')
FROM win AS w JOIN win_prefix AS p USING (t);
SELECT ok(bool_and(pg_temp.close(w.sharpe, (p.m #>> '{returns,sharpe}')::float8, 1e-12)
                   AND pg_temp.close(w.sortino, (p.m #>> '{returns,sortino_ratio}')::float8, 1e-12)
                   AND w.mdd = (p.m #>> '{returns,max_drawdown}')::float8),
          'wval_sharpe, wval_sortino and wval_max_drawdown over a growing frame')
FROM win AS w JOIN win_prefix AS p USING (t);
SELECT ok(bool_and(pg_temp.close(w.var, v.var, 1e-12) AND pg_temp.close(w.es, v.es, 1e-12)),
          'wval_var and wval_es (5 %) over a growing frame, the final function leaving its state usable')
FROM win AS w JOIN win_prefix AS p USING (t),
     LATERAL (SELECT percentile_cont(0.05) WITHIN GROUP (ORDER BY x) AS q FROM unnest(p.prefix) AS x) AS qq,
     LATERAL (SELECT CASE WHEN cardinality(p.prefix) < 2 THEN NULL ELSE greatest(0, -qq.q) END AS var,
                     CASE WHEN cardinality(p.prefix) < 2 THEN NULL
                          ELSE greatest(0, -(SELECT avg(x) FROM unnest(p.prefix) AS x WHERE x <= qq.q)) END AS es) AS v;
SELECT ok(bool_and(w.mdd20 = recent.mdd AND pg_temp.close(w.sharpe20, recent.sharpe, 1e-12)),
          'moving frames (20 rows) restart the aggregate correctly')
FROM win AS w JOIN win_prefix AS p USING (t),
     LATERAL (SELECT (wval_metrics(array_agg(x ORDER BY i DESC)) #>> '{returns,max_drawdown}')::float8 AS mdd,
                     (wval_metrics(array_agg(x ORDER BY i DESC)) #>> '{returns,sharpe}')::float8 AS sharpe
              FROM unnest(p.last20) WITH ORDINALITY AS u(x, i)) AS recent;

-- 31: partial (parallel) aggregation combines Sharpe states correctly
-- (a plain table: parallel workers cannot read temporary ones; rolled back)
CREATE TABLE wval_metrics_tap_big AS
SELECT g % 4 AS grp, (((g * 7919) % 2003 - 1000)::float8 / 50000) AS r FROM generate_series(1, 200000) AS g;
ANALYZE wval_metrics_tap_big;
SET LOCAL parallel_setup_cost = 0;
SET LOCAL parallel_tuple_cost = 0;
SET LOCAL min_parallel_table_scan_size = 0;
SET LOCAL max_parallel_workers_per_gather = 2;
SELECT ok(bool_and(pg_temp.close(s, (SELECT (wval_metrics(array_agg(b2.r)) #>> '{returns,sharpe}')::float8 FROM wval_metrics_tap_big AS b2 WHERE b2.grp = b.grp), 1e-11)
                   AND pg_temp.close(so, (SELECT (wval_metrics(array_agg(b2.r)) #>> '{returns,sortino_ratio}')::float8 FROM wval_metrics_tap_big AS b2 WHERE b2.grp = b.grp), 1e-11)),
          'wval_sharpe and wval_sortino with partial aggregation (combine, serialize) equal the array form')
FROM (SELECT grp, wval_sharpe(r) AS s, wval_sortino(r) AS so FROM wval_metrics_tap_big GROUP BY grp) AS b;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;

-- 32-33: empty groups and nulls
SELECT ok(wval_sharpe(r) IS NULL AND wval_max_drawdown(r) IS NULL AND wval_var(r, 0.01) IS NULL
          AND wval_metrics_agg(r) IS NULL, 'aggregates over no rows are null')
FROM rows3 WHERE false;
SELECT ok(wval_sharpe(r) IS NULL AND wval_var(r, 0.01) IS NULL AND wval_max_drawdown(r) = 0,
          'one row: no Sharpe, no VaR, drawdown 0')
FROM (VALUES (0.01::float8)) AS v(r);

-- 34-43: SQLSTATEs
SELECT throws_ok($$SELECT wval_metrics('{0.01, NaN}')$$, 'WV001', '"returns" must contain only finite numbers', 'NaN is WV001');
SELECT throws_ok($$SELECT wval_metrics('{0.01, NULL}')$$, 'WV001', '"returns" must not contain nulls', 'a null element is WV001');
SELECT throws_ok($$SELECT wval_metrics('{-1}')$$, 'WV001', '"returns" must contain only returns greater than -1', 'a return of -100 % is WV001');
SELECT throws_ok($$SELECT wval_metrics('{{0.01}}')$$, 'WV001', '"returns" must be a one-dimensional array', 'a 2-D array is WV001');
SELECT throws_ok($$SELECT wval_metrics('{0.01}', benchmark => '{}')$$, 'WV001', '"benchmark" must have as many elements as "returns"', 'benchmark length mismatch is WV001');
SELECT throws_ok($$SELECT wval_metrics('{0.01}', 0)$$, 'WV001', '"periods_per_year" must be positive', 'periods_per_year 0 is WV001');
SELECT throws_ok($$SELECT wval_metrics('{0.01}', search_intensity => 0)$$, 'WV001', '"search_intensity" must be at least 1', 'search_intensity 0 is WV001');
SELECT throws_ok($$SELECT wval_sharpe(r) FROM (VALUES (0.01::float8), (NULL)) AS v(r)$$, 'WV001', '"r" must not contain nulls', 'a null row in an aggregate is WV001');
SELECT throws_ok($$SELECT wval_es(r, 0.01) FROM (VALUES ('Infinity'::float8)) AS v(r)$$, 'WV001', '"r" must contain only finite numbers', 'an infinite row is WV001');
SELECT throws_ok($$SELECT wval_norm_ppf(-0.1)$$, 'WV001', '"p" must be a probability between 0 and 1', 'wval_norm_ppf outside [0, 1] is WV001');

-- 44-47: privileges and labels
SELECT ok(has_function_privilege('wval_analyst', 'wval_metrics(float8[], integer, float8, integer, float8[], float8)', 'EXECUTE')
          AND has_function_privilege('wval_analyst', 'wval_max_drawdown(float8)', 'EXECUTE')
          AND has_function_privilege('wval_analyst', 'wval_dsr(float8, integer, float8, float8, integer, float8, integer)', 'EXECUTE'),
          'wval_analyst may compute metrics');
SELECT ok(NOT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e'
                      JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'wval'
                      WHERE p.proname LIKE ANY ('{wval_metrics%, wval_sharpe, wval_sortino, wval_max_drawdown, wval_var, wval_es, wval_psr, wval_dsr, wval_norm_%, wval_strategy_complexity, \_moments%, \_drawdown%, \_series%, \_tail%, \_sharpe%, \_sortino%, \_var%, \_es%, \_metrics%}')
                        AND (p.proacl IS NULL OR aclcontains(p.proacl, makeaclitem(0, p.proowner, 'EXECUTE', false)))),
          'no metrics function is executable by PUBLIC');
SELECT ok(NOT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e'
                      JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'wval'
                      WHERE (p.proname LIKE 'wval\_%' AND p.proname IN ('wval_metrics', 'wval_sharpe', 'wval_sortino', 'wval_max_drawdown',
                                                                  'wval_var', 'wval_es', 'wval_metrics_agg', 'wval_psr', 'wval_dsr',
                                                                  'wval_norm_cdf', 'wval_norm_ppf', 'wval_strategy_complexity'))
                        AND (p.provolatile <> 'i' OR p.proparallel <> 's')),
          'metrics entry points are IMMUTABLE PARALLEL SAFE');
SELECT ok(NOT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e'
                      JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'wval'
                      WHERE p.proname IN ('wval_metrics', 'wval_sharpe', 'wval_sortino', 'wval_max_drawdown', 'wval_var', 'wval_es',
                                          'wval_metrics_agg', 'wval_psr', 'wval_dsr', 'wval_norm_cdf', 'wval_norm_ppf',
                                          'wval_strategy_complexity')
                        AND obj_description(p.oid, 'pg_proc') IS NULL),
          'every metrics entry point has a comment');

SELECT * FROM finish();
ROLLBACK;
