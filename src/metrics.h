/*-------------------------------------------------------------------------
 *
 * metrics.h
 *	  The C API of wval's metrics engine (metrics.c), for the evaluation,
 *	  live monitoring and portfolio code.
 *
 * Returns are simple periodic returns, oldest first.  Every array handed to
 * these functions must satisfy the input rules of docs/metrics.md (finite,
 * greater than -1, at most WVAL_MAX_RETURNS elements); the safe way to get
 * one from SQL is wval_returns_from_array().  Functions that return bool
 * report a metric that is null by definition (too few periods, zero
 * deviation) as false and leave *out untouched.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WVAL_METRICS_H
#define WVAL_METRICS_H

#include "postgres.h"

#include <math.h>

#include "utils/array.h"
#include "utils/jsonb.h"

/* most periods a return series (or an aggregate's input) may have */
#define WVAL_MAX_RETURNS 10000000

/* Options of one metrics pack; wval_metrics_options_init sets the defaults. */
typedef struct WvalMetricsOptions
{
	int			periods_per_year;	/* > 0 */
	double		risk_free;		/* per period */
	int			search_intensity;	/* >= 1 */
	const double *benchmark;	/* NULL when none */
	int			n_benchmark;
	bool		has_trials_variance;
	double		trials_sharpe_variance; /* annualised */
} WvalMetricsOptions;

/* defaults: 252 periods per year, risk-free 0, search intensity 1, no benchmark */
extern void wval_metrics_options_init(WvalMetricsOptions *opt);

/*
 * A validated float8[] as a palloc'd array of *n doubles (never NULL, also
 * when n = 0).  Raises WV001 naming `field`, the 1-based index and the value.
 */
extern double *wval_returns_from_array(ArrayType *arr, const char *field, int *n);

/* Raises WV001 unless r[0..n-1] satisfies the input rules. */
extern void wval_check_returns(const double *r, int n, const char *field);

/* Raises WV001 unless opt is valid for a series of n returns. */
extern void wval_check_metrics_options(const WvalMetricsOptions *opt, int n);

/* The full metrics pack, exactly what wval_metrics() returns. */
extern Jsonb *wval_compute_metrics(const double *r, int n,
								   const WvalMetricsOptions *opt);

/*
 * Pushes the pack (WJB_BEGIN_OBJECT ... WJB_END_OBJECT) onto *state, for
 * embedding it in a larger document without a round trip through Jsonb;
 * returns what the last pushJsonbValue returned (the root when *state was
 * empty).
 */
extern JsonbValue *wval_push_metrics(JsonbParseState **state,
									 const double *r, int n,
									 const WvalMetricsOptions *opt);

/*
 * Building blocks for live monitoring and portfolio code, by the formulas of
 * docs/metrics.md.  x / r are raw periodic returns (rf, per period, is
 * subtracted inside); p is a tail probability (0.025 for ES at 97.5 %).
 */
/* returns.sharpe: (mean / sample std of x - rf) * sqrt(P); false: n < 2 or std 0 */
extern bool wval_sharpe_annual(const double *x, int n, int periods_per_year,
							   double rf, double *out);
/* returns.sortino_ratio (may be +Infinity); false when null */
extern bool wval_sortino_annual(const double *x, int n, int periods_per_year,
								double rf, double *out);
/* returns.max_drawdown, in [0, 1); false when n = 0 */
extern bool wval_max_drawdown_of(const double *r, int n, double *out);
/* max(0, -Q(p)), type-7 quantile; false when n < 2 */
extern bool wval_var_historical(const double *r, int n, double p, double *out);
/* max(0, -mean{r_i <= Q(p)}); false when n < 2 */
extern bool wval_es_historical(const double *r, int n, double p, double *out);
/* PSR(SR*) with both Sharpe ratios per period; false: n < 3 or radicand <= 0 */
extern bool wval_psr_value(double sharpe_per_period, double sharpe_star_per_period,
						   int n, double skew, double kurtosis, double *out);
/* the DSR threshold SR0 per period (0 when n_trials <= 1) */
extern double wval_sr0_value(double trials_variance_per_period, double n_trials);
/* standard normal CDF */
extern double wval_norm_cdf_value(double z);
/* its inverse (AS 241): -Inf / +Inf at 0 / 1, NaN outside [0, 1] */
extern double wval_norm_ppf_value(double p);
/* 1 + ln(1 + N) + weighted ln(1 + v) of extra_metrics (an object, or NULL) */
extern double wval_strategy_complexity_value(int search_intensity,
											 Jsonb *extra_metrics);

/*
 * Streaming wealth path W_0 = 1, W_k = W_{k-1} (1 + r_k), peak M_k, shared
 * by the array form and the aggregates so that both give the same bits.
 * W and M are kept divided by a common power of two (exact) so that no
 * series overflows them; W underflows only when it falls below 2^-1074 of
 * its peak.
 */
typedef struct WvalDrawdown
{
	double		wealth;			/* W_k / 2^s */
	double		peak;			/* M_k / 2^s */
	double		max_drawdown;	/* max (1 - W/M) so far */
	int64		under;			/* #k with W_k < M_k */
	int64		run;			/* current run under water */
	int64		longest;		/* longest run under water */
	int64		n;
	int64		scale;			/* s: how often W and M were divided by 2^512 */
} WvalDrawdown;

/* Starts a wealth path at W_0 = M_0 = 1. */
static inline void
wval_drawdown_init(WvalDrawdown *d)
{
	d->wealth = 1.0;
	d->peak = 1.0;
	d->max_drawdown = 0.0;
	d->under = 0;
	d->run = 0;
	d->longest = 0;
	d->n = 0;
	d->scale = 0;
}

/*
 * Advances the wealth path by one return.  No branch on the data (new
 * peaks come and go at random): the peak is a maximum, the drawdown at a
 * peak is 1 - W/W = 0, and the run under water is reset by a mask.
 */
static inline void
wval_dd_step(WvalDrawdown *d, double r)
{
	double		w = d->wealth * (1.0 + r);
	double		peak = w >= d->peak ? w : d->peak;
	double		dd = 1.0 - w / peak;
	int64		under = w < peak;

	d->max_drawdown = dd > d->max_drawdown ? dd : d->max_drawdown;
	d->under += under;
	d->run = (d->run + 1) & -under;
	d->longest = d->run > d->longest ? d->run : d->longest;
	d->n++;
	if (unlikely(peak > 0x1p+512))
	{
		w = ldexp(w, -512);
		peak = ldexp(peak, -512);
		d->scale++;
	}
	d->wealth = w;
	d->peak = peak;
}

/*
 * The maximum drawdown so far.  It is below 1 by definition (r > -1); a
 * drawdown closer to 1 than a double can hold is returned as the largest
 * double below 1.
 */
static inline double
wval_drawdown_result(const WvalDrawdown *d)
{
	return d->max_drawdown < 1.0 ? d->max_drawdown : nextafter(1.0, 0.0);
}

/* internal to metrics.c / metrics_agg.c */
extern void wval_reject_return_value(double v, const char *field,
									 const char *what, int64 idx);
extern void wval_reject_null_return(const char *field, const char *what,
									int64 idx);
extern void wval_reject_too_long(const char *field, int64 n);
extern void wval_check_periods_per_year(int periods_per_year);
extern void wval_check_tail_probability(double p);
extern void wval_tail_risk_inplace(double *a, int n, double p,
								   double *var, double *es);

#endif							/* WVAL_METRICS_H */
