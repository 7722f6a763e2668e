-- Regression tests of the metrics engine (src/metrics.c, src/metrics_agg.c):
-- every public vector of the metrics spec to 1e-9 relative (1e-12 absolute
-- near zero), the edge cases, the helpers and each WV001 error.
-- Numbers are compared, not printed, where the last digits could depend on
-- the platform's libm.

-- close(actual, expected): the spec's tolerance
CREATE FUNCTION pg_temp.close(actual float8, expected float8) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT actual IS NOT NULL
       AND abs(actual - expected) <= greatest(1e-9 * abs(expected), 1e-12)
$$;

-- err(statement): SQLSTATE, message, detail and hint of the error it raises
CREATE FUNCTION pg_temp.err(statement text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    st text;
    msg text;
    det text;
    hin text;
BEGIN
    EXECUTE statement;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
                            det = PG_EXCEPTION_DETAIL, hin = PG_EXCEPTION_HINT;
    RETURN st || ': ' || msg || E'\n  DETAIL: ' || coalesce(det, '') || E'\n  HINT: ' || coalesce(hin, '');
END
$$;

\set good '{0.01, 0.02, -0.005, 0.015, 0.012, 0.008, -0.003, 0.02, 0.01, 0.005}'

CREATE TEMP TABLE series_a AS
SELECT array_agg(CASE WHEN i % 7 <> 0 THEN 0.01 ELSE -0.03 END::float8 ORDER BY i) AS r
FROM generate_series(0, 119) AS i;

-- GOOD
WITH pack AS (SELECT wval_metrics(:'good') AS m)
SELECT path, pg_temp.close((m #>> path)::float8, expected) AS ok
FROM pack, (VALUES
    ('{returns,sharpe}'::text[], 17.243586168211078::float8),
    ('{returns,volatility}', 0.1344499907028632),
    ('{returns,sortino_ratio}', 79.2042779593301),
    ('{returns,max_drawdown}', 0.004999999999999893),
    ('{returns,time_under_water_ratio}', 0.2),
    ('{returns,max_time_under_water_days}', 1),
    ('{returns,gain_to_pain_ratio}', 11.5),
    ('{returns,var_p01}', 0.00482),
    ('{returns,es_p01}', 0.005),
    ('{returns,skew}', -0.3889155830719246),
    ('{returns,kurtosis}', 2.1959964621826678),
    ('{robustness,sharpe_first_half}', 17.569251426753763),
    ('{robustness,sharpe_second_half}', 15.233435395761346),
    ('{robustness,probabilistic_sharpe_ratio}', 0.9927731490541105),
    ('{sample,regime_coverage,low_vol}', 1.0 / 3),
    ('{sample,regime_coverage,mid_vol}', 1.0 / 3),
    ('{sample,regime_coverage,high_vol}', 1.0 / 3)
) AS v(path, expected);

SELECT pg_temp.close((wval_metrics(:'good', search_intensity => 10) #>> '{robustness,deflated_sharpe_ratio}')::float8,
                     0.8081739874992779) AS dsr_n10,
       pg_temp.close((wval_metrics(:'good', risk_free => 0.001) #>> '{returns,sharpe}')::float8,
                     15.369283323840314) AS sharpe_rf;

-- the layout of a pack: every path and the JSON type of its value
WITH RECURSIVE leaf(path, v) AS (
    SELECT k, v FROM jsonb_each(wval_metrics(:'good')) AS e(k, v)
    UNION ALL
    SELECT leaf.path || '.' || e.k, e.v FROM leaf, jsonb_each(leaf.v) AS e(k, v)
    WHERE jsonb_typeof(leaf.v) = 'object'
)
SELECT path, jsonb_typeof(v) AS type FROM leaf WHERE jsonb_typeof(v) <> 'object' ORDER BY path;

-- A = [0.01 if i % 7 else -0.03 for i in 0..119]
WITH pack AS (SELECT wval_metrics(r) AS m FROM series_a)
SELECT path, pg_temp.close((m #>> path)::float8, expected) AS ok
FROM pack, (VALUES
    ('{returns,sharpe}'::text[], 4.427188724235732::float8),
    ('{returns,max_drawdown}', 0.030000000000000138),
    ('{returns,time_under_water_ratio}', 0.575),
    ('{returns,max_time_under_water_days}', 4),
    ('{returns,gain_to_pain_ratio}', 0.888888888888889),
    ('{robustness,cv_folds}', 4),
    ('{robustness,cv_sharpe_mean}', 4.423297768459294),
    ('{robustness,cv_sharpe_std}', 0.9333120951362642),
    ('{sample,regime_coverage,low_vol}', 0.3865546218487395),
    ('{sample,regime_coverage,mid_vol}', 0.4789915966386555),
    ('{sample,regime_coverage,high_vol}', 0.13445378151260504)
) AS v(path, expected);

SELECT pg_temp.close((wval_metrics(r, search_intensity => 50) #>> '{robustness,deflated_sharpe_ratio}')::float8,
                     0.5449357909530304) AS dsr_n50
FROM series_a;

-- edge cases: [] has every data metric null
SELECT block, jsonb_object_agg(k, v) FILTER (WHERE v <> 'null') AS not_null, count(*) FILTER (WHERE v = 'null') AS nulls
FROM jsonb_each(wval_metrics('{}')) AS b(block, m), jsonb_each(m) AS e(k, v)
GROUP BY block ORDER BY block;
-- [0.01]: max drawdown 0, Sharpe null, gain to pain "Infinity"
SELECT m -> 'returns' -> 'max_drawdown' AS max_drawdown, m -> 'returns' -> 'sharpe' AS sharpe,
       m -> 'returns' -> 'gain_to_pain_ratio' AS gain_to_pain,
       (m -> 'returns' ->> 'gain_to_pain_ratio')::float8 AS as_float8,
       m -> 'sample' -> 'regime_coverage' AS regime
FROM wval_metrics('{0.01}') AS m;
-- ten times 0.01: volatility exactly 0, Sharpe null, Sortino "Infinity", all low volatility
SELECT m -> 'returns' -> 'volatility' AS volatility, m -> 'returns' -> 'sharpe' AS sharpe,
       m -> 'returns' -> 'sortino_ratio' AS sortino, m -> 'returns' -> 'skew' AS skew,
       m -> 'sample' -> 'regime_coverage' AS regime,
       m -> 'robustness' -> 'probabilistic_sharpe_ratio' AS psr
FROM wval_metrics(array_fill(0.01::float8, ARRAY[10])) AS m;
-- a constant loss: Sortino -√P (μ = -d), gain to pain -1, VaR = ES = the loss
SELECT m -> 'returns' -> 'sortino_ratio' AS sortino, m -> 'returns' -> 'gain_to_pain_ratio' AS gain_to_pain,
       m -> 'returns' -> 'var_p01' AS var_p01, m -> 'returns' -> 'es_p01' AS es_p01
FROM wval_metrics(array_fill(-0.01::float8, ARRAY[10])) AS m;
-- no loss and no gain: gain to pain null
SELECT wval_metrics('{0, 0, 0}') -> 'returns' -> 'gain_to_pain_ratio' AS gain_to_pain;
-- two periods: no PSR (n < 3), no regime coverage (n < 3), halves of one period
SELECT m -> 'robustness' AS robustness, m -> 'sample' AS sample
FROM wval_metrics('{0.01, -0.02}') AS m;
-- null in, null out; any lower bound works
SELECT wval_metrics(NULL) IS NULL AS null_returns,
       wval_metrics(:'good', NULL) IS NULL AS null_periods,
       wval_metrics('[0:2]={0.01,0.02,0.03}') = wval_metrics('{0.01,0.02,0.03}') AS lower_bound;
-- periods per year, search intensity, trials variance in diagnostics
SELECT wval_metrics('{0.01,0.02,-0.01}', 12, 0, 5, NULL, 0.25) -> 'diagnostics' AS diagnostics;
-- Sharpe is ŝ √P
SELECT pg_temp.close((wval_metrics(:'good', 12) #>> '{returns,sharpe}')::float8,
                     17.243586168211078 * sqrt(12.0 / 252)) AS monthly;

-- benchmark: against itself beta 1, no tracking error, no information ratio
SELECT m -> 'benchmark' AS benchmark,
       pg_temp.close((m #>> '{returns,beta}')::float8, 1) AS beta_1,
       abs((m #>> '{returns,alpha}')::float8) < 1e-12 AS alpha_0,
       m #> '{returns,tracking_error}' AS tracking_error,
       m #> '{returns,information_ratio}' AS information_ratio,
       m #> '{diagnostics,extra_metrics}' AS extra_metrics
FROM wval_metrics(:'good', benchmark => :'good') AS m;
-- against a constant benchmark: no beta, no benchmark Sharpe
SELECT m #> '{returns,beta}' AS beta, m #> '{benchmark,sharpe}' AS benchmark_sharpe,
       m #> '{diagnostics,extra_metrics,vs_benchmark_sharpe}' AS vs_benchmark
FROM wval_metrics(:'good', benchmark => array_fill(0.001::float8, ARRAY[10])) AS m;
-- a benchmark series: beta = cov / var, tracking error = std(x - b) √P
WITH s(r, b) AS (VALUES ('{0.01, 0.02, -0.01, 0.005}'::float8[], '{0.005, 0.01, -0.02, 0.0}'::float8[])),
     m AS (SELECT wval_metrics(r, benchmark => b) AS m FROM s)
SELECT pg_temp.close((m #>> '{returns,beta}')::float8, 0.927710843373494) AS beta,
       pg_temp.close((m #>> '{returns,alpha}')::float8, 1.8672289156626507) AS alpha,
       pg_temp.close((m #>> '{returns,tracking_error}')::float8, 0.002886751345948129 * sqrt(252.0)) AS tracking_error,
       pg_temp.close((m #>> '{returns,information_ratio}')::float8, 0.0075 / 0.002886751345948129 * sqrt(252.0)) AS information_ratio
FROM m;

-- helpers
SELECT round(wval_dsr(2.5, 1250, -3, 10, 100, 0.5, 250)::numeric, 4) AS dsr_paper,
       round((sqrt(0.5 / 250) * ((1 - 0.5772156649015329) * wval_norm_ppf(1 - 1.0 / 100)
             + 0.5772156649015329 * wval_norm_ppf(1 - 1 / (100 * exp(1.0)))))::numeric, 4) AS sr0_paper;
SELECT wval_dsr(2.5, 1250, -3, 10, 1, 0.5, 250) = wval_psr(2.5, 1250, -3, 10, 0, 250) AS one_trial_is_psr,
       wval_dsr(2.5, 1250, -3, 10, 10, 0.5, 250) > wval_dsr(2.5, 1250, -3, 10, 100, 0.5, 250) AS falls_with_trials,
       wval_dsr(2.5, 1250, -3, 10, 2) IS NOT NULL AS estimator_variance,
       wval_psr(2.5, 2, 0, 3) IS NULL AS psr_needs_3,
       wval_psr(30, 100, 5, 3) IS NULL AS psr_radicand_not_positive,
       wval_dsr(NULL, 1250, -3, 10, 100) IS NULL AS null_in_null_out;
-- the pack's PSR is the helper's PSR of the pack's numbers
SELECT pg_temp.close(wval_psr((m #>> '{returns,sharpe}')::float8, 10, (m #>> '{returns,skew}')::float8,
                              (m #>> '{returns,kurtosis}')::float8),
                     (m #>> '{robustness,probabilistic_sharpe_ratio}')::float8) AS psr_consistent
FROM wval_metrics(:'good') AS m;
SELECT wval_norm_cdf(0) AS cdf_0, wval_norm_ppf(0.5) AS ppf_half,
       wval_norm_ppf(0) AS ppf_0, wval_norm_ppf(1) AS ppf_1,
       wval_norm_cdf('Infinity') AS cdf_inf, wval_norm_cdf('-Infinity') AS cdf_minus_inf;
SELECT p, pg_temp.close(wval_norm_ppf(p), x) AS ppf, pg_temp.close(wval_norm_cdf(x), p) AS cdf
FROM (VALUES (0.975::float8, 1.9599639845400536::float8),
             (0.025, -1.9599639845400538),
             (0.9, 1.2815515655446008),
             (1e-10, -6.361340902404056),
             (1 - 1e-10, 6.361340889697421),
             (1e-300, -37.0470962993612)) AS v(p, x);
SELECT wval_strategy_complexity(1) = 1 + ln(2) AS default_complexity,
       pg_temp.close(wval_strategy_complexity(9, '{"n_features": 10, "code_cc": -1, "nodes": "x", "other": 5}'),
                     1 + ln(10) + 0.2 * ln(11)) AS extra_metrics,
       wval_metrics('{0.01, 0.02}', search_intensity => 9) #>> '{diagnostics,strategy_complexity}' = (1 + ln(10))::text AS in_pack;

-- aggregates: the array form, by group
CREATE TEMP TABLE returns_by_group AS
SELECT g % 3 AS grp, g AS t, ((g * 7919 % 401) - 195)::float8 / 10000 AS r
FROM generate_series(1, 600) AS g;
SELECT grp,
       pg_temp.close(wval_sharpe(r), (m #>> '{returns,sharpe}')::float8) AS sharpe,
       pg_temp.close(wval_sharpe(r, 52), (wval_metrics(array_agg(r ORDER BY t), 52) #>> '{returns,sharpe}')::float8) AS sharpe_52,
       pg_temp.close(wval_sortino(r), (m #>> '{returns,sortino_ratio}')::float8) AS sortino,
       wval_max_drawdown(r ORDER BY t) = (m #>> '{returns,max_drawdown}')::float8 AS max_drawdown,
       wval_var(r, 0.01) = (m #>> '{returns,var_p01}')::float8 AS var,
       pg_temp.close(wval_es(r, 0.01), (m #>> '{returns,es_p01}')::float8) AS es,
       wval_metrics_agg(r ORDER BY t) = m AS metrics_agg
FROM returns_by_group,
     LATERAL (SELECT wval_metrics(array_agg(x.r ORDER BY x.t)) AS m FROM returns_by_group x WHERE x.grp = returns_by_group.grp) AS p
GROUP BY grp, m ORDER BY grp;
SELECT wval_sharpe(r) IS NULL AS no_rows, wval_metrics_agg(r) IS NULL AS no_rows_pack
FROM returns_by_group WHERE false;

-- errors: WV001 names the field, the 1-based index and the value
SELECT pg_temp.err($$SELECT wval_metrics('{0.01, NULL, 0.02}')$$);
SELECT pg_temp.err($$SELECT wval_metrics('{0.01, 0.02, NaN}')$$);
SELECT pg_temp.err($$SELECT wval_metrics('{Infinity}')$$);
SELECT pg_temp.err($$SELECT wval_metrics('{0.01, -Infinity}')$$);
SELECT pg_temp.err($$SELECT wval_metrics('{0.01, -1}')$$);
SELECT pg_temp.err($$SELECT wval_metrics('{0.01, 0.02, -1.5}')$$);
SELECT pg_temp.err($$SELECT wval_metrics('{{0.01, 0.02}, {0.03, 0.04}}')$$);
SELECT pg_temp.err($$SELECT wval_metrics(array_fill(0.0::float8, ARRAY[10000001]))$$);
SELECT pg_temp.err($$SELECT wval_metrics('{0.01, 0.02}', benchmark => '{0.01}')$$);
SELECT pg_temp.err($$SELECT wval_metrics('{0.01, 0.02}', benchmark => '{0.01, NaN}')$$);
SELECT pg_temp.err($$SELECT wval_metrics('{0.01, 0.02}', periods_per_year => 0)$$);
SELECT pg_temp.err($$SELECT wval_metrics('{0.01, 0.02}', periods_per_year => -12)$$);
SELECT pg_temp.err($$SELECT wval_metrics('{0.01, 0.02}', search_intensity => 0)$$);
SELECT pg_temp.err($$SELECT wval_metrics('{0.01, 0.02}', risk_free => 'NaN')$$);
SELECT pg_temp.err($$SELECT wval_metrics('{0.01, 0.02}', trials_sharpe_variance => -0.1)$$);
SELECT pg_temp.err($$SELECT wval_dsr(1, 100, 0, 3, 0)$$);
SELECT pg_temp.err($$SELECT wval_dsr(1, 100, 0, 3, 10, 0.5, 0)$$);
SELECT pg_temp.err($$SELECT wval_psr(1, -1, 0, 3)$$);
SELECT pg_temp.err($$SELECT wval_psr('NaN', 100, 0, 3)$$);
SELECT pg_temp.err($$SELECT wval_norm_ppf(1.5)$$);
SELECT pg_temp.err($$SELECT wval_norm_cdf('NaN')$$);
SELECT pg_temp.err($$SELECT wval_strategy_complexity(0)$$);
SELECT pg_temp.err($$SELECT wval_sharpe(r) FROM unnest('{0.01, 0.02, NULL}'::float8[]) AS r$$);
SELECT pg_temp.err($$SELECT wval_max_drawdown(r) FROM unnest('{0.01, -2}'::float8[]) AS r$$);
SELECT pg_temp.err($$SELECT wval_sharpe(r, 0) FROM unnest('{0.01}'::float8[]) AS r$$);
SELECT pg_temp.err($$SELECT wval_sharpe(r, p) FROM (VALUES (0.01::float8, 252), (0.02, 12)) AS v(r, p)$$);
SELECT pg_temp.err($$SELECT wval_var(r, 1.5) FROM unnest('{0.01, 0.02}'::float8[]) AS r$$);
SELECT pg_temp.err($$SELECT wval_es(r, p) FROM (VALUES (0.01::float8, 0.01::float8), (0.02, 0.05)) AS v(r, p)$$);
SELECT pg_temp.err($$SELECT wval_metrics_agg(r) FROM unnest('{0.01, NaN}'::float8[]) AS r$$);
