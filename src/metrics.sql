-- metrics.sql: the metrics engine (metrics.c, metrics_agg.c): wval_metrics,
-- the analyst aggregates and the PSR / DSR / normal-distribution helpers.
-- Everything here is pure: IMMUTABLE PARALLEL SAFE.  Definitions and null
-- rules: docs/metrics.md.  Bad input raises WV001.
--
-- requires: wval

-- ---------------------------------------------------------------------
-- The pack
-- ---------------------------------------------------------------------

CREATE FUNCTION public.wval_metrics(
    returns float8[],
    periods_per_year integer DEFAULT 252,
    risk_free float8 DEFAULT 0,
    search_intensity integer DEFAULT 1,
    benchmark float8[] DEFAULT NULL,
    trials_sharpe_variance float8 DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'wval_metrics'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION public.wval_metrics(float8[], integer, float8, integer, float8[], float8) IS
'metric pack of a return series (oldest first): blocks returns, sample, robustness, diagnostics, and benchmark when a benchmark series is given; null when returns or a scalar option is null';

-- ---------------------------------------------------------------------
-- Scalar helpers
-- ---------------------------------------------------------------------

CREATE FUNCTION public.wval_psr(
    sharpe_annual float8,
    n_obs integer,
    skew float8,
    kurtosis float8,
    benchmark_sharpe_annual float8 DEFAULT 0,
    periods_per_year integer DEFAULT 252)
RETURNS float8
AS 'MODULE_PATHNAME', 'wval_psr'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION public.wval_psr(float8, integer, float8, float8, float8, integer) IS
'probabilistic Sharpe ratio PSR(SR*) from an annualised Sharpe, the number of periods, skewness and (raw) kurtosis; null when n_obs < 3 or the variance term is not positive';

CREATE FUNCTION public.wval_dsr(
    sharpe_annual float8,
    n_obs integer,
    skew float8,
    kurtosis float8,
    n_trials integer,
    trials_sharpe_variance_annual float8 DEFAULT NULL,
    periods_per_year integer DEFAULT 252)
RETURNS float8
AS 'MODULE_PATHNAME', 'wval_dsr'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION public.wval_dsr(float8, integer, float8, float8, integer, float8, integer) IS
'deflated Sharpe ratio (Bailey & Lopez de Prado): PSR against the expected maximum Sharpe of n_trials trials; a null trials variance uses the estimator variance; falls as n_trials grows';

CREATE FUNCTION public.wval_norm_cdf(z float8)
RETURNS float8
AS 'MODULE_PATHNAME', 'wval_norm_cdf'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION public.wval_norm_cdf(float8) IS
'standard normal cumulative distribution function';

CREATE FUNCTION public.wval_norm_ppf(p float8)
RETURNS float8
AS 'MODULE_PATHNAME', 'wval_norm_ppf'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION public.wval_norm_ppf(float8) IS
'inverse standard normal CDF (Wichura AS 241, accurate in both tails); -Infinity at 0, Infinity at 1';

CREATE FUNCTION public.wval_strategy_complexity(search_intensity integer, extra_metrics jsonb DEFAULT NULL)
RETURNS float8
AS 'MODULE_PATHNAME', 'wval_strategy_complexity'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION public.wval_strategy_complexity(integer, jsonb) IS
'diagnostics.strategy_complexity: 1 + ln(1 + search_intensity) plus weighted ln(1 + v) of n_features, feature_dim, n_parameters, code_cc and nodes in extra_metrics';

-- ---------------------------------------------------------------------
-- Aggregates (support functions in schema wval; see metrics_agg.c)
-- ---------------------------------------------------------------------

CREATE FUNCTION wval._moments_step(internal, float8) RETURNS internal
    AS 'MODULE_PATHNAME', 'wval_moments_step' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._moments_step(internal, float8) IS 'transition of wval_sharpe / wval_sortino: running mean, squared deviations and downside';
CREATE FUNCTION wval._moments_step(internal, float8, integer) RETURNS internal
    AS 'MODULE_PATHNAME', 'wval_moments_step' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._moments_step(internal, float8, integer) IS 'transition of wval_sharpe / wval_sortino with periods_per_year';
CREATE FUNCTION wval._moments_combine(internal, internal) RETURNS internal
    AS 'MODULE_PATHNAME', 'wval_moments_combine' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._moments_combine(internal, internal) IS 'combines two partial wval_sharpe / wval_sortino states';
CREATE FUNCTION wval._moments_serialize(internal) RETURNS bytea
    AS 'MODULE_PATHNAME', 'wval_moments_serialize' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION wval._moments_serialize(internal) IS 'serializes a wval_sharpe / wval_sortino state for parallel aggregation';
CREATE FUNCTION wval._moments_deserialize(bytea, internal) RETURNS internal
    AS 'MODULE_PATHNAME', 'wval_moments_deserialize' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION wval._moments_deserialize(bytea, internal) IS 'deserializes a wval_sharpe / wval_sortino state';
CREATE FUNCTION wval._sharpe_final(internal) RETURNS float8
    AS 'MODULE_PATHNAME', 'wval_sharpe_final' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._sharpe_final(internal) IS 'final of wval_sharpe';
CREATE FUNCTION wval._sortino_final(internal) RETURNS float8
    AS 'MODULE_PATHNAME', 'wval_sortino_final' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._sortino_final(internal) IS 'final of wval_sortino';
CREATE FUNCTION wval._drawdown_step(internal, float8) RETURNS internal
    AS 'MODULE_PATHNAME', 'wval_drawdown_step' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._drawdown_step(internal, float8) IS 'transition of wval_max_drawdown: advances the wealth path';
CREATE FUNCTION wval._drawdown_final(internal) RETURNS float8
    AS 'MODULE_PATHNAME', 'wval_drawdown_final' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._drawdown_final(internal) IS 'final of wval_max_drawdown';
CREATE FUNCTION wval._series_step(internal, float8) RETURNS internal
    AS 'MODULE_PATHNAME', 'wval_series_step' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._series_step(internal, float8) IS 'transition of wval_metrics_agg: buffers the returns in call order';
CREATE FUNCTION wval._series_step(internal, float8, integer) RETURNS internal
    AS 'MODULE_PATHNAME', 'wval_series_step' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._series_step(internal, float8, integer) IS 'transition of wval_metrics_agg with periods_per_year';
CREATE FUNCTION wval._metrics_final(internal) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'wval_metrics_final' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._metrics_final(internal) IS 'final of wval_metrics_agg: the metric pack of the buffered series';
CREATE FUNCTION wval._tail_step(internal, float8, float8) RETURNS internal
    AS 'MODULE_PATHNAME', 'wval_tail_step' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._tail_step(internal, float8, float8) IS 'transition of wval_var / wval_es: buffers the returns';
CREATE FUNCTION wval._var_final(internal) RETURNS float8
    AS 'MODULE_PATHNAME', 'wval_var_final' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._var_final(internal) IS 'final of wval_var';
CREATE FUNCTION wval._es_final(internal) RETURNS float8
    AS 'MODULE_PATHNAME', 'wval_es_final' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION wval._es_final(internal) IS 'final of wval_es';

CREATE AGGREGATE public.wval_sharpe(r float8) (
    SFUNC = wval._moments_step, STYPE = internal, SSPACE = 40,
    FINALFUNC = wval._sharpe_final, FINALFUNC_MODIFY = READ_ONLY,
    COMBINEFUNC = wval._moments_combine,
    SERIALFUNC = wval._moments_serialize, DESERIALFUNC = wval._moments_deserialize,
    PARALLEL = SAFE);
COMMENT ON AGGREGATE public.wval_sharpe(float8) IS
'annualised Sharpe ratio (252 periods a year) of the returns of a group; null with fewer than 2 rows or zero deviation';

CREATE AGGREGATE public.wval_sharpe(r float8, periods_per_year integer) (
    SFUNC = wval._moments_step, STYPE = internal, SSPACE = 40,
    FINALFUNC = wval._sharpe_final, FINALFUNC_MODIFY = READ_ONLY,
    COMBINEFUNC = wval._moments_combine,
    SERIALFUNC = wval._moments_serialize, DESERIALFUNC = wval._moments_deserialize,
    PARALLEL = SAFE);
COMMENT ON AGGREGATE public.wval_sharpe(float8, integer) IS
'annualised Sharpe ratio of the returns of a group; periods_per_year must be the same in every row';

CREATE AGGREGATE public.wval_sortino(r float8) (
    SFUNC = wval._moments_step, STYPE = internal, SSPACE = 40,
    FINALFUNC = wval._sortino_final, FINALFUNC_MODIFY = READ_ONLY,
    COMBINEFUNC = wval._moments_combine,
    SERIALFUNC = wval._moments_serialize, DESERIALFUNC = wval._moments_deserialize,
    PARALLEL = SAFE);
COMMENT ON AGGREGATE public.wval_sortino(float8) IS
'annualised Sortino ratio (252 periods a year) of the returns of a group; Infinity without losses and a positive mean';

CREATE AGGREGATE public.wval_sortino(r float8, periods_per_year integer) (
    SFUNC = wval._moments_step, STYPE = internal, SSPACE = 40,
    FINALFUNC = wval._sortino_final, FINALFUNC_MODIFY = READ_ONLY,
    COMBINEFUNC = wval._moments_combine,
    SERIALFUNC = wval._moments_serialize, DESERIALFUNC = wval._moments_deserialize,
    PARALLEL = SAFE);
COMMENT ON AGGREGATE public.wval_sortino(float8, integer) IS
'annualised Sortino ratio of the returns of a group; periods_per_year must be the same in every row';

CREATE AGGREGATE public.wval_max_drawdown(r float8) (
    SFUNC = wval._drawdown_step, STYPE = internal, SSPACE = 56,
    FINALFUNC = wval._drawdown_final, FINALFUNC_MODIFY = READ_ONLY,
    PARALLEL = SAFE);
COMMENT ON AGGREGATE public.wval_max_drawdown(float8) IS
'maximum drawdown of the wealth path of the returns in call order (use ORDER BY inside the call), a fraction in [0, 1)';

CREATE AGGREGATE public.wval_var(r float8, p float8) (
    SFUNC = wval._tail_step, STYPE = internal,
    FINALFUNC = wval._var_final, FINALFUNC_MODIFY = READ_ONLY,
    PARALLEL = SAFE);
COMMENT ON AGGREGATE public.wval_var(float8, float8) IS
'historical value at risk max(0, -Q(p)) of the returns of a group (type-7 quantile, p = tail probability, e.g. 0.01)';

CREATE AGGREGATE public.wval_es(r float8, p float8) (
    SFUNC = wval._tail_step, STYPE = internal,
    FINALFUNC = wval._es_final, FINALFUNC_MODIFY = READ_ONLY,
    PARALLEL = SAFE);
COMMENT ON AGGREGATE public.wval_es(float8, float8) IS
'historical expected shortfall max(0, -mean{r <= Q(p)}) of the returns of a group (p = tail probability, e.g. 0.01)';

CREATE AGGREGATE public.wval_metrics_agg(r float8) (
    SFUNC = wval._series_step, STYPE = internal,
    FINALFUNC = wval._metrics_final, FINALFUNC_MODIFY = READ_ONLY,
    PARALLEL = SAFE);
COMMENT ON AGGREGATE public.wval_metrics_agg(float8) IS
'metric pack of the returns in call order (use ORDER BY inside the call): wval_metrics(array_agg(r ORDER BY t))';

CREATE AGGREGATE public.wval_metrics_agg(r float8, periods_per_year integer) (
    SFUNC = wval._series_step, STYPE = internal,
    FINALFUNC = wval._metrics_final, FINALFUNC_MODIFY = READ_ONLY,
    PARALLEL = SAFE);
COMMENT ON AGGREGATE public.wval_metrics_agg(float8, integer) IS
'metric pack of the returns in call order with periods_per_year (the same in every row)';

-- Every role may compute metrics (all four wval roles inherit wval_analyst).
GRANT EXECUTE ON FUNCTION
    public.wval_metrics(float8[], integer, float8, integer, float8[], float8),
    public.wval_psr(float8, integer, float8, float8, float8, integer),
    public.wval_dsr(float8, integer, float8, float8, integer, float8, integer),
    public.wval_norm_cdf(float8),
    public.wval_norm_ppf(float8),
    public.wval_strategy_complexity(integer, jsonb),
    public.wval_sharpe(float8),
    public.wval_sharpe(float8, integer),
    public.wval_sortino(float8),
    public.wval_sortino(float8, integer),
    public.wval_max_drawdown(float8),
    public.wval_var(float8, float8),
    public.wval_es(float8, float8),
    public.wval_metrics_agg(float8),
    public.wval_metrics_agg(float8, integer)
TO wval_analyst;
