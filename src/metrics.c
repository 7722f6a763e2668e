/*-------------------------------------------------------------------------
 *
 * metrics.c
 *	  The metrics engine: input rules for return series, the metric pack of
 *	  wval_metrics(), and the PSR / DSR / normal-distribution helpers.
 *	  The aggregates live in metrics_agg.c; definitions in docs/metrics.md.
 *
 * Everything here is plain C over double arrays.  A pack costs a handful of
 * linear passes over the series and no sort: two for the moments (of the
 * series, its halves and its folds at once), one for the wealth path, one
 * for the 1 % tail, and three for the regime coverage (rolling variances,
 * their terciles, the windows near a tercile computed exactly).  The hot
 * loops have no branch that depends on the data (returns are random, and a
 * mispredicted branch costs more than the arithmetic), and the scratch
 * memory is kept between calls (see scratch_reset).  Metrics that are null
 * by definition are carried as NaN inside this file (NULL_METRIC) and
 * written as JSON null; the engine never writes NaN.
 *
 * Floating-point order.  Two metrics compare computed values against each
 * other, so the order of the floating-point operations decides ties:
 *
 *	- time under water counts W_k < M_k.  The wealth path is the running
 *	  product W_k = W_{k-1} * (1 + r_k), exactly as the definition reads, so
 *	  that a path that returns precisely to its peak is "not under water".
 *	  W and M are rescaled together by powers of two (exact) when the peak
 *	  gets large, so ten million periods cannot overflow.
 *
 *	- regime coverage compares rolling-window standard deviations with their
 *	  terciles.  A periodic series has many windows holding the same values
 *	  in a different order; whether those tie is a matter of rounding.  The
 *	  window sums use NumPy's eight-way blocked summation order (the order of
 *	  the reference implementation the published vectors come from: the public
 *	  vector of series A needs it), and a constant window is exactly 0, as
 *	  docs/metrics.md ("Numerics") requires.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "catalog/pg_type.h"
#include "common/shortest_dec.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "metrics.h"
#include "wval.h"

#define NULL_METRIC			((double) NAN)
#define EULER_GAMMA			0.5772156649015329
#define REGIME_WINDOW		20	/* periods in a rolling volatility window */
#define CV_MAX_FOLDS		5
#define CV_MIN_FOLD_PERIODS 30
#define VAR_TAIL			0.01	/* var_p01 / es_p01 */

/* Summary statistics of one excess-return series. */
typedef struct Moments
{
	int			n;
	double		mean;			/* μ */
	double		sd;				/* s, divisor n - 1; exactly 0 when constant */
	double		m2;				/* biased central moments */
	double		m3;
	double		m4;
	double		downside;		/* √(Σ min(x, 0)² / n) */
} Moments;

/* Every value of one pack; NaN = null, max_tuw / cv_folds < 0 = null. */
typedef struct MetricsPack
{
	double		sharpe;
	double		volatility;
	double		sortino;
	double		annual_return;
	double		max_drawdown;
	double		tuw_ratio;
	int64		max_tuw;
	double		gain_to_pain;
	double		var_p01;
	double		es_p01;
	double		skew;
	double		kurtosis;
	double		beta;
	double		alpha;
	double		tracking_error;
	double		information_ratio;
	double		history_years;
	bool		has_regime;
	double		regime[3];		/* low, mid, high */
	double		sharpe_first_half;
	double		sharpe_second_half;
	double		psr;
	double		dsr;
	int			cv_folds;
	double		cv_mean;
	double		cv_std;
	double		b_sharpe;
	double		b_volatility;
	double		b_max_drawdown;
	double		vs_benchmark_sharpe;
	double		complexity;
} MetricsPack;

PG_FUNCTION_INFO_V1(wval_metrics);
PG_FUNCTION_INFO_V1(wval_psr);
PG_FUNCTION_INFO_V1(wval_dsr);
PG_FUNCTION_INFO_V1(wval_norm_cdf);
PG_FUNCTION_INFO_V1(wval_norm_ppf);
PG_FUNCTION_INFO_V1(wval_strategy_complexity);

/* ---------------------------------------------------------------------
 * Input rules
 * ---------------------------------------------------------------------
 */

/* Writes v as PostgreSQL prints a float8 (shortest exact form) into buf. */
static const char *
format_double(double v, char *buf)
{
	if (isnan(v))
		return "NaN";
	if (isinf(v))
		return v > 0 ? "Infinity" : "-Infinity";
	double_to_shortest_decimal_buf(v, buf);
	return buf;
}

/*
 * Raises WV001 for a value that breaks the input rules; `what` is "Element"
 * (arrays) or "Row" (aggregates), idx is 1-based.
 */
void
wval_reject_return_value(double v, const char *field, const char *what, int64 idx)
{
	char		buf[DOUBLE_SHORTEST_DECIMAL_LEN];

	if (isnan(v) || isinf(v))
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
				 errmsg("\"%s\" must contain only finite numbers", field),
				 errdetail("%s " INT64_FORMAT " is %s.", what, idx,
						   format_double(v, buf)),
				 errhint("Remove NaN and infinite values; a period without a return is 0.")));
	if (v <= -1.0)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
				 errmsg("\"%s\" must contain only returns greater than -1", field),
				 errdetail("%s " INT64_FORMAT " is %s.", what, idx,
						   format_double(v, buf)),
				 errhint("Returns are simple periodic returns (0.01 = +1 %%); a loss of 100 %% or more has no wealth path.")));
}

/* Raises WV001 for a null element (what = "Element" or "Row"). */
void
wval_reject_null_return(const char *field, const char *what, int64 idx)
{
	ereport(ERROR,
			(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
			 errmsg("\"%s\" must not contain nulls", field),
			 errdetail("%s " INT64_FORMAT " is null.", what, idx),
			 errhint("Pass one return per period, oldest first; a period without a return is 0.")));
}

/* Raises WV001 when a series has more than WVAL_MAX_RETURNS elements. */
void
wval_reject_too_long(const char *field, int64 n)
{
	ereport(ERROR,
			(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
			 errmsg("\"%s\" has too many elements", field),
			 errdetail("It has " INT64_FORMAT " elements; at most %d are allowed.",
					   n, WVAL_MAX_RETURNS),
			 errhint("Use coarser periods or a shorter history.")));
}

/* Raises WV001 unless r[0..n-1] satisfies the input rules. */
void
wval_check_returns(const double *r, int n, const char *field)
{
	int			i;

	if (n > WVAL_MAX_RETURNS)
		wval_reject_too_long(field, n);
	for (i = 0; i < n; i++)
	{
		/* one comparison pair catches NaN, ±Infinity and r <= -1 */
		if (unlikely(!(r[i] > -1.0 && r[i] <= DBL_MAX)))
			wval_reject_return_value(r[i], field, "Element", (int64) i + 1);
	}
}

/* Raises WV001 unless arr is a one-dimensional float8[] of an allowed size. */
static int
check_array_shape(ArrayType *arr, const char *field)
{
	int			ndim = ARR_NDIM(arr);
	int			nitems;

	if (ARR_ELEMTYPE(arr) != FLOAT8OID)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
				 errmsg("\"%s\" must be a float8 array", field),
				 errdetail("The array's element type is %s.",
						   format_type_be(ARR_ELEMTYPE(arr))),
				 errhint("Cast the array to float8[].")));
	if (ndim > 1)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
				 errmsg("\"%s\" must be a one-dimensional array", field),
				 errdetail("The array has %d dimensions.", ndim),
				 errhint("Pass one flat array of periodic returns, oldest first.")));
	nitems = ndim == 0 ? 0 : ARR_DIMS(arr)[0];
	if (nitems > WVAL_MAX_RETURNS)
		wval_reject_too_long(field, nitems);
	return nitems;
}

/*
 * A validated float8[] as a palloc'd array of *n doubles (never NULL, also
 * for an empty array).  Raises WV001 naming `field`.
 */
double *
wval_returns_from_array(ArrayType *arr, const char *field, int *n)
{
	int			nitems = check_array_shape(arr, field);
	double	   *out;

	out = (double *) palloc(Max(nitems, 1) * sizeof(double));
	if (ARR_HASNULL(arr))
	{
		bits8	   *bitmap = ARR_NULLBITMAP(arr);
		const char *p = ARR_DATA_PTR(arr);
		int			i;

		for (i = 0; i < nitems; i++)
		{
			if (!(bitmap[i / 8] & (1 << (i % 8))))
				wval_reject_null_return(field, "Element", (int64) i + 1);
			memcpy(&out[i], p, sizeof(double));
			p += sizeof(double);
		}
	}
	else if (nitems > 0)
		memcpy(out, ARR_DATA_PTR(arr), nitems * sizeof(double));

	wval_check_returns(out, nitems, field);
	*n = nitems;
	return out;
}

/*
 * Like wval_returns_from_array, but without a copy when the array has no
 * null bitmap: the result then points into arr (read only).
 */
static const double *
returns_in_place(ArrayType *arr, const char *field, int *n)
{
	int			nitems;
	const double *r;

	if (ARR_HASNULL(arr))
		return wval_returns_from_array(arr, field, n);
	nitems = check_array_shape(arr, field);
	r = (const double *) ARR_DATA_PTR(arr);
	wval_check_returns(r, nitems, field);
	*n = nitems;
	return r;
}

/* Defaults: 252 periods per year, risk-free 0, search intensity 1. */
void
wval_metrics_options_init(WvalMetricsOptions *opt)
{
	memset(opt, 0, sizeof(*opt));
	opt->periods_per_year = 252;
	opt->risk_free = 0.0;
	opt->search_intensity = 1;
	opt->benchmark = NULL;
	opt->n_benchmark = 0;
	opt->has_trials_variance = false;
	opt->trials_sharpe_variance = 0.0;
}

/* Raises WV001 unless periods_per_year > 0. */
void
wval_check_periods_per_year(int periods_per_year)
{
	if (periods_per_year <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
				 errmsg("\"periods_per_year\" must be positive"),
				 errdetail("periods_per_year is %d.", periods_per_year),
				 errhint("Pass the number of return periods per year, e.g. 252 for daily returns.")));
}

/* Raises WV001 unless search_intensity >= 1. */
static void
check_search_intensity(const char *field, int64 value)
{
	if (value < 1)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
				 errmsg("\"%s\" must be at least 1", field),
				 errdetail("%s is " INT64_FORMAT ".", field, value),
				 errhint("Pass the number of strategy variants tried, counting this one.")));
}

/* Raises WV001 unless value is finite (and >= 0 when nonneg). */
static void
check_finite_arg(const char *field, double value, bool nonneg, const char *hint)
{
	char		buf[DOUBLE_SHORTEST_DECIMAL_LEN];

	if (isnan(value) || isinf(value) || (nonneg && value < 0))
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
				 errmsg(nonneg ? "\"%s\" must be a finite number of at least 0" :
						"\"%s\" must be a finite number", field),
				 errdetail("%s is %s.", field, format_double(value, buf)),
				 errhint("%s", hint)));
}

/* Raises WV001 unless the tail probability p of VaR / ES is in [0, 1]. */
void
wval_check_tail_probability(double p)
{
	char		buf[DOUBLE_SHORTEST_DECIMAL_LEN];

	if (isnan(p) || p < 0.0 || p > 1.0)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
				 errmsg("\"p\" must be a probability between 0 and 1"),
				 errdetail("p is %s.", format_double(p, buf)),
				 errhint("Pass the tail probability, e.g. 0.01 for the 1 %% tail.")));
}

/* Raises WV001 unless opt is valid for a series of n returns. */
void
wval_check_metrics_options(const WvalMetricsOptions *opt, int n)
{
	wval_check_periods_per_year(opt->periods_per_year);
	check_search_intensity("search_intensity", opt->search_intensity);
	check_finite_arg("risk_free", opt->risk_free, false,
					 "Pass the risk-free return per period, e.g. 0.0001.");
	if (opt->has_trials_variance)
		check_finite_arg("trials_sharpe_variance", opt->trials_sharpe_variance, true,
						 "Pass the variance of the annualised Sharpe ratios of the trials, or null.");
	if (opt->benchmark != NULL && opt->n_benchmark != n)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
				 errmsg("\"benchmark\" must have as many elements as \"returns\""),
				 errdetail("\"returns\" has %d elements, \"benchmark\" has %d.",
						   n, opt->n_benchmark),
				 errhint("Pass the benchmark's returns for the same periods as the strategy's.")));
}

/* ---------------------------------------------------------------------
 * Numerical building blocks
 * ---------------------------------------------------------------------
 */

/*
 * Scratch memory.  A pack needs about n doubles of scratch (the rolling
 * variances of the regime coverage, the heap of the VaR tail, the brackets
 * of the terciles).  Fresh memory is expensive (every new page is a page
 * fault), so each backend keeps its scratch between calls, up to
 * SCRATCH_KEEP doubles (8 MB), in TopMemoryContext.  Every entry point
 * calls scratch_reset() first; nothing keeps a pointer into the scratch
 * beyond its call.  A request that does not fit gets a palloc'd block in
 * the caller's (per-call) memory context instead.
 */
#define SCRATCH_KEEP (1024 * 1024)

static double *scratch_mem = NULL;
static size_t scratch_cap = 0;
static size_t scratch_used = 0;

/* Starts a computation that needs up to `need` doubles of scratch. */
static void
scratch_reset(size_t need)
{
	if (need > scratch_cap && need <= SCRATCH_KEEP)
	{
		if (scratch_mem != NULL)
			pfree(scratch_mem);
		scratch_mem = NULL;
		scratch_cap = 0;
		scratch_mem = (double *) MemoryContextAlloc(TopMemoryContext,
													need * sizeof(double));
		scratch_cap = need;
	}
	scratch_used = 0;
}

/* count doubles of scratch, valid until the next scratch_reset(). */
static double *
scratch_alloc(size_t count)
{
	double	   *p;

	count = Max(count, 1);
	if (scratch_used + count <= scratch_cap)
	{
		p = scratch_mem + scratch_used;
		scratch_used += count;
		return p;
	}
	return (double *) palloc(count * sizeof(double));
}

/* Swaps two doubles. */
static inline void
swap_double(double *a, double *b)
{
	double		t = *a;

	*a = *b;
	*b = t;
}

/* sort_float8(double *, size_t): ascending sort of doubles (no NaN here) */
#define ST_SORT sort_float8
#define ST_ELEMENT_TYPE double
#define ST_COMPARE(a, b) ((*(a) > *(b)) - (*(a) < *(b)))
#define ST_SCOPE static
#define ST_DEFINE
#include "lib/sort_template.h"

/*
 * Moves the k-th smallest (0-based) of a[0..n-1] to a[k], everything not
 * greater before it and not smaller after it; returns a[k].  Hoare
 * partitioning around a median of three, O(n) on average; if the input is
 * adversarial and the partitions keep coming out lopsided, the rest is
 * sorted (O(n log n) worst case).
 */
static double
select_kth(double *a, int n, int k)
{
	int			lo = 0;
	int			hi = n - 1;
	int			budget = 16;
	int			m;

	for (m = n; m > 1; m >>= 1)
		budget += 2;
	while (hi > lo)
	{
		int			mid;
		int			i;
		int			j;
		double		pivot;

		if (--budget < 0)
		{
			sort_float8(a + lo, hi - lo + 1);
			break;
		}
		mid = lo + (hi - lo) / 2;
		if (a[mid] < a[lo])
			swap_double(&a[mid], &a[lo]);
		if (a[hi] < a[lo])
			swap_double(&a[hi], &a[lo]);
		if (a[hi] < a[mid])
			swap_double(&a[hi], &a[mid]);
		pivot = a[mid];
		i = lo;
		j = hi;
		while (i <= j)
		{
			while (a[i] < pivot)
				i++;
			while (a[j] > pivot)
				j--;
			if (i <= j)
			{
				swap_double(&a[i], &a[j]);
				i++;
				j--;
			}
		}
		/* a[lo..j] <= pivot, a[j+1..i-1] == pivot, a[i..hi] >= pivot */
		if (k <= j)
			hi = j;
		else if (k >= i)
			lo = i;
		else
			break;
	}
	return a[k];
}

/*
 * Type-7 quantile Q(p) of a[0..n-1] (n >= 1), the same as percentile_cont:
 * h = (n - 1) p, Q = x(⌊h⌋) + (h - ⌊h⌋)(x(⌊h⌋+1) - x(⌊h⌋)).  Reorders a.
 */
static double
quantile7_inplace(double *a, int n, double p)
{
	double		h = (n - 1) * p;
	int			lo = (int) floor(h);
	double		frac = h - lo;
	double		first;
	double		second;
	int			i;

	if (lo > n - 1)
		lo = n - 1;
	first = select_kth(a, n, lo);
	if (frac <= 0.0 || lo + 1 >= n)
		return first;
	second = a[lo + 1];
	for (i = lo + 2; i < n; i++)
		if (a[i] < second)
			second = a[i];
	return first + frac * (second - first);
}

/* Adds v to the compensated sum (*sum, *comp) (Neumaier's variant of Kahan). */
static inline void
neumaier_add(double *sum, double *comp, double v)
{
	double		t = *sum + v;

	if (fabs(*sum) >= fabs(v))
		*comp += (*sum - t) + v;
	else
		*comp += (v - t) + *sum;
	*sum = t;
}

/* max(0, -v) as a loss, never -0 */
static inline double
loss_of(double v)
{
	return v < 0.0 ? -v : 0.0;
}

/*
 * ES from the tail: t[0..len-1] and `extra` more values equal to q,
 * max(0, -mean), summed with compensation; a tail of equal values has
 * exactly that mean.
 */
static double
tail_mean_loss(const double *t, int len, int64 extra, double q)
{
	double		sum = 0.0;
	double		comp = 0.0;
	double		lo = extra > 0 ? q : t[0];
	double		hi = lo;
	int64		i;

	for (i = 0; i < len; i++)
	{
		lo = t[i] < lo ? t[i] : lo;
		hi = t[i] > hi ? t[i] : hi;
	}
	if (lo == hi)
		return loss_of(lo);
	for (i = 0; i < len; i++)
		neumaier_add(&sum, &comp, t[i]);
	for (i = 0; i < extra; i++)
		neumaier_add(&sum, &comp, q);
	return loss_of((sum + comp) / (len + extra));
}

/*
 * Historical VaR and ES at tail probability p: VaR = max(0, -Q(p)),
 * ES = max(0, -mean{r_i <= Q(p)}), n >= 2.  Q needs the ⌊h⌋-th and the next
 * order statistic.  For a small tail (p = 1 %) one pass collects the
 * ⌊h⌋ + 2 smallest values; a large tail is selected in place in
 * `work`: r itself when the caller lets us reorder it, or NULL (a copy is
 * made in scratch memory).  The tail's mean is a compensated sum, so the
 * order of r hardly matters to the last bit.
 */
static void
tail_risk(const double *r, double *work, int n, double p, double *var, double *es)
{
	double		h = (n - 1) * p;
	int			lo = Min((int) floor(h), n - 1);
	double		frac = h - lo;
	int			c = Min(lo + 2, n);
	double		first;
	double		second;
	double		q;
	int64		extra = 0;
	int			i;

	if (c <= n / 8 + 2)
	{
		/*
		 * The c smallest values: values below the c-th smallest so far go
		 * to a buffer of 4c, cut back to its c smallest when full.  Every
		 * value is stored and only the count depends on the test, so no
		 * branch depends on the data.
		 */
		double	   *buf = scratch_alloc(4 * c + 1);
		double		thr = INFINITY;
		int			len = 0;
		int			le = 0;

		for (i = 0; i < n; i++)
		{
			buf[len] = r[i];
			len += r[i] < thr;
			if (unlikely(len == 4 * c))
			{
				thr = select_kth(buf, len, c - 1);
				len = c;
			}
		}
		first = select_kth(buf, len, lo);
		second = first;
		if (lo + 1 < c)
		{
			second = buf[lo + 1];
			for (i = lo + 2; i < len; i++)
				second = buf[i] < second ? buf[i] : second;
		}
		q = frac > 0.0 && lo + 1 < n ? first + frac * (second - first) : first;
		/* values <= Q beyond the ⌊h⌋ + 1 smallest all equal Q */
		for (i = lo + 1; i < len; i++)
			extra += buf[i] <= q;
		if (second <= q && len < n)
		{
			for (i = 0; i < n; i++)
				le += r[i] <= q;
			extra = le - (lo + 1);
		}
		*var = loss_of(q);
		*es = tail_mean_loss(buf, lo + 1, extra, q);
		return;
	}

	if (work == NULL)
		work = scratch_alloc(n);
	if (work != r)
		memcpy(work, r, n * sizeof(double));
	first = select_kth(work, n, lo);
	second = first;
	if (lo + 1 < n)
	{
		second = work[lo + 1];
		for (i = lo + 2; i < n; i++)
			if (work[i] < second)
				second = work[i];
	}
	q = frac > 0.0 && lo + 1 < n ? first + frac * (second - first) : first;
	for (i = lo + 1; i < n; i++)
		if (work[i] <= q)
			extra++;
	*var = loss_of(q);
	*es = tail_mean_loss(work, lo + 1, extra, q);
}

/* qsort comparator for ints. */
static int
cmp_int(const void *a, const void *b)
{
	int			x = *(const int *) a;
	int			y = *(const int *) b;

	return (x > y) - (x < y);
}

/* Pass-one and pass-two sums of one set of periods (a series or a part). */
typedef struct MomentAcc
{
	int			n;
	double		sum;			/* Σ x */
	double		lo;				/* min x */
	double		hi;				/* max x */
	double		s1;				/* Σ d, d = x - sum/n */
	double		s2;				/* Σ d² */
	double		s3;				/* Σ d³ (whole series only) */
	double		s4;				/* Σ d⁴ (whole series only) */
	double		neg;			/* Σ min(x, 0)² (whole series only) */
} MomentAcc;

/* Turns the sums of a set into its Moments (constant: exactly 0 deviation). */
static void
moments_finish(const MomentAcc *a, Moments *m)
{
	int			n = a->n;
	double		s2;

	memset(m, 0, sizeof(*m));
	m->n = n;
	if (n == 0)
		return;
	if (a->lo == a->hi)
	{
		m->mean = a->lo;
		m->downside = a->lo < 0 ? -a->lo : 0.0;
		return;
	}
	m->mean = a->sum / n + a->s1 / n;
	s2 = Max(0.0, a->s2 - a->s1 * a->s1 / n);
	m->m2 = s2 / n;
	m->m3 = a->s3 / n;
	m->m4 = a->s4 / n;
	m->sd = n > 1 ? sqrt(s2 / (n - 1)) : 0.0;
	m->downside = sqrt(a->neg / n);
}

/*
 * Moments of x_i = r_i - rf over the whole series, and the mean and
 * deviation of each half (split at `half`) and of each of `nfolds`
 * contiguous folds of `fold_len` periods (the last takes the remainder),
 * all in two passes: sums, minimum and maximum first, then the deviations
 * from each set's mean (Chan, Golub & LeVeque's corrected two-pass).  The
 * whole-series sums run in series order, whatever the parts, so that the
 * pack and wval_sharpe_annual() agree to the bit.
 */
static void
series_moments(const double *r, int n, double rf, int half, int nfolds,
			   int fold_len, Moments *full, Moments *halves, Moments *folds)
{
	MomentAcc	f;
	MomentAcc	h[2];
	MomentAcc	k[CV_MAX_FOLDS];
	MomentAcc	dummy;
	int			bounds[CV_MAX_FOLDS + 3];
	int			nb = 0;
	int			a;
	int			pass;
	int			i;

	memset(&f, 0, sizeof(f));
	memset(h, 0, sizeof(h));
	memset(k, 0, sizeof(k));
	memset(&dummy, 0, sizeof(dummy));
	f.n = n;
	if (n == 0)
	{
		moments_finish(&f, full);
		if (halves != NULL)
		{
			moments_finish(&h[0], &halves[0]);
			moments_finish(&h[1], &halves[1]);
		}
		return;
	}

	/* atoms: maximal runs of periods in the same half and the same fold */
	bounds[nb++] = 0;
	bounds[nb++] = n;
	for (i = 1; i < nfolds; i++)
		bounds[nb++] = i * fold_len;
	if (halves != NULL && half > 0 && half < n)
		bounds[nb++] = half;
	qsort(bounds, nb, sizeof(int), cmp_int);
	for (i = 1, a = 1; i < nb; i++)
		if (bounds[i] != bounds[a - 1])
			bounds[a++] = bounds[i];
	nb = a;

	f.lo = f.hi = r[0] - rf;
	for (pass = 1; pass <= 2; pass++)
	{
		double		muf = f.sum / n;

		for (a = 0; a + 1 < nb; a++)
		{
			int			start = bounds[a];
			int			end = bounds[a + 1];
			MomentAcc  *ha = halves != NULL ? &h[start < half ? 0 : 1] : &dummy;
			MomentAcc  *ka = &dummy;
			double		muh;
			double		muk;

			if (nfolds > 0)
				ka = &k[Min(start / fold_len, nfolds - 1)];
			if (pass == 1)
			{
				double		sum = f.sum,
							lo = f.lo,
							hi = f.hi,
							hs = 0.0,
							hl = r[start] - rf,
							hh = hl;

				for (i = start; i < end; i++)
				{
					double		x = r[i] - rf;

					sum += x;
					lo = x < lo ? x : lo;
					hi = x > hi ? x : hi;
					hs += x;
					hl = x < hl ? x : hl;
					hh = x > hh ? x : hh;
				}
				f.sum = sum;
				f.lo = lo;
				f.hi = hi;
				/* a part is one or more whole atoms: merge */
				if (ha != &dummy)
				{
					ha->lo = ha->n == 0 || hl < ha->lo ? hl : ha->lo;
					ha->hi = ha->n == 0 || hh > ha->hi ? hh : ha->hi;
					ha->sum += hs;
					ha->n += end - start;
				}
				if (ka != &dummy)
				{
					ka->lo = ka->n == 0 || hl < ka->lo ? hl : ka->lo;
					ka->hi = ka->n == 0 || hh > ka->hi ? hh : ka->hi;
					ka->sum += hs;
					ka->n += end - start;
				}
				continue;
			}

			muh = ha->n > 0 ? ha->sum / ha->n : 0.0;
			muk = ka->n > 0 ? ka->sum / ka->n : 0.0;
			{
				double		s1 = f.s1,
							s2 = f.s2,
							s3 = f.s3,
							s4 = f.s4,
							neg = f.neg,
							h1 = 0.0,
							h2 = 0.0,
							k1 = 0.0,
							k2 = 0.0;

				for (i = start; i < end; i++)
				{
					double		x = r[i] - rf;
					double		d = x - muf;
					double		d2 = d * d;
					double		xn = 0.5 * (x - fabs(x));	/* min(x, 0), no branch */
					double		e = x - muh;
					double		g = x - muk;

					s1 += d;
					s2 += d2;
					s3 += d2 * d;
					s4 += d2 * d2;
					neg += xn * xn;
					h1 += e;
					h2 += e * e;
					k1 += g;
					k2 += g * g;
				}
				f.s1 = s1;
				f.s2 = s2;
				f.s3 = s3;
				f.s4 = s4;
				f.neg = neg;
				ha->s1 += h1;
				ha->s2 += h2;
				ka->s1 += k1;
				ka->s2 += k2;
			}
		}
	}

	moments_finish(&f, full);
	if (halves != NULL)
	{
		moments_finish(&h[0], &halves[0]);
		moments_finish(&h[1], &halves[1]);
	}
	for (i = 0; i < nfolds; i++)
		moments_finish(&k[i], &folds[i]);
}

/* Moments of x_i = r_i - rf (see series_moments). */
static void
moments_of(const double *r, int n, double rf, Moments *m)
{
	series_moments(r, n, rf, 0, 0, 0, m, NULL, NULL);
}

/* Annualised Sharpe of a summary, NaN when n < 2 or s = 0. */
static double
sharpe_of_moments(const Moments *m, int periods_per_year)
{
	if (m->n < 2 || m->sd == 0.0)
		return NULL_METRIC;
	return m->mean / m->sd * sqrt((double) periods_per_year);
}

/* Annualised Sharpe of r[0..n-1] - rf, NaN when null. */
static double
sharpe_range(const double *r, int n, double rf, int periods_per_year)
{
	Moments		m;

	moments_of(r, n, rf, &m);
	return sharpe_of_moments(&m, periods_per_year);
}

/* Annualised Sortino of a summary: NaN when null, +Inf when d = 0 < μ. */
static double
sortino_of_moments(const Moments *m, int periods_per_year)
{
	if (m->n < 2)
		return NULL_METRIC;
	if (m->downside == 0.0)
		return m->mean > 0 ? INFINITY : NULL_METRIC;
	return m->mean / m->downside * sqrt((double) periods_per_year);
}

/*
 * Sum of v[0..k-1] in NumPy's order for short vectors: sequential below
 * eight elements, else eight interleaved accumulators combined pairwise and
 * the remainder added in sequence (valid for k <= 128).
 */
static inline double
blocked_sum(const double *v, int k)
{
	double		a0,
				a1,
				a2,
				a3,
				a4,
				a5,
				a6,
				a7,
				s;
	int			i;

	if (k < 8)
	{
		s = 0.0;
		for (i = 0; i < k; i++)
			s += v[i];
		return s;
	}
	a0 = v[0];
	a1 = v[1];
	a2 = v[2];
	a3 = v[3];
	a4 = v[4];
	a5 = v[5];
	a6 = v[6];
	a7 = v[7];
	for (i = 8; i + 8 <= k; i += 8)
	{
		a0 += v[i];
		a1 += v[i + 1];
		a2 += v[i + 2];
		a3 += v[i + 3];
		a4 += v[i + 4];
		a5 += v[i + 5];
		a6 += v[i + 6];
		a7 += v[i + 7];
	}
	s = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
	for (; i < k; i++)
		s += v[i];
	return s;
}

/*
 * v_t of the regime coverage, the population deviation of x over the
 * window ending at t (0-based, t >= 1), computed by the definition: mean
 * and squared deviations summed in NumPy's order (blocked_sum), exactly 0
 * for a constant window.
 */
static double
window_std(const double *r, int t, double rf)
{
	double		w[REGIME_WINDOW];
	int			start = t >= REGIME_WINDOW ? t - REGIME_WINDOW + 1 : 0;
	int			k = t - start + 1;
	bool		constant = true;
	double		mu;
	int			j;

	for (j = 0; j < k; j++)
	{
		w[j] = r[start + j] - rf;
		if (w[j] != w[0])
			constant = false;
	}
	if (constant)
		return 0.0;
	mu = blocked_sum(w, k) / k;
	for (j = 0; j < k; j++)
	{
		double		d = w[j] - mu;

		w[j] = d * d;
	}
	return sqrt(blocked_sum(w, k) / k);
}

/* x(k) and, when want_next, x(k+1) of a[0..n-1] by selection (reorders a). */
static void
select_pair(double *a, int n, int k, bool want_next, double *first, double *second)
{
	int			j;

	*first = select_kth(a, n, k);
	*second = *first;
	if (want_next && k + 1 < n)
	{
		*second = a[k + 1];
		for (j = k + 2; j < n; j++)
			if (a[j] < *second)
				*second = a[j];
	}
}

/*
 * Order statistics of v[0..m-1] (0-based ranks) for two targets at once,
 * leaving v as it is: x(k[i]) into first[i] and, when want_next[i], x(k[i]+1)
 * into second[i] (else the same value).
 *
 * A sample of evenly spaced values gives each target a bracket [lo, hi]
 * that should hold its ranks; one pass counts the values below each bracket
 * and collects the values inside, and a selection among the few collected
 * finishes.  A bracket that misses its ranks or holds far more values than
 * expected (a sample that misrepresents v) is redone by a selection on a
 * full copy, so the result never depends on the sample.
 */
static void
order_stats(const double *v, int m, const int k[2], const bool want_next[2],
			double first[2], double second[2])
{
	int			s = Min(m, 64 + 4 * (int) sqrt((double) m));
	double	   *sample = scratch_alloc(s);
	double		lo[2];
	double		hi[2];
	int			below[2] = {0, 0};
	int			above[2] = {0, 0};
	int			count[2] = {0, 0};
	int			cap[2];
	double	   *buf[2];
	bool		ok = true;
	int			i;
	int			t;

	int			rank[4];		/* sample ranks of lo[0], hi[0], lo[1], hi[1] */
	int			order[4] = {0, 1, 2, 3};
	int			base = 0;

	for (i = 0; i < s; i++)
		sample[i] = v[(int64) i * m / s];
	for (i = 0; i < 2; i++)
	{
		double		p = (double) k[i] / m;
		double		g = 3.0 * sqrt(s * p * (1.0 - p)) + 3.0;
		int			lr = (int) floor((double) k[i] * s / m - g);
		int			ur = (int) ceil((double) (k[i] + 1) * s / m + g);

		rank[2 * i] = lr <= 0 ? -1 : lr;
		rank[2 * i + 1] = ur >= s - 1 ? s : ur;
		cap[i] = (int) Min((int64) m + 1,
						   (int64) (Min(ur, s - 1) - Max(lr, 0) + 1) * m / s * 2 + 128);
		buf[i] = scratch_alloc(cap[i]);
	}

	/*
	 * The bracket values, ranks in ascending order: after selecting rank r
	 * everything beyond it is no smaller, so the next rank is selected in
	 * what follows r only.
	 */
	for (i = 1; i < 4; i++)
	{
		int			j;
		int			o = order[i];

		for (j = i; j > 0 && rank[order[j - 1]] > rank[o]; j--)
			order[j] = order[j - 1];
		order[j] = o;
	}
	for (i = 0; i < 4; i++)
	{
		int			o = order[i];
		double	   *dest = o % 2 == 0 ? &lo[o / 2] : &hi[o / 2];

		if (rank[o] < 0)
			*dest = -INFINITY;
		else if (rank[o] >= s)
			*dest = INFINITY;
		else if (rank[o] < base)
			*dest = sample[rank[o]];	/* the same rank as the one before */
		else
		{
			*dest = select_kth(sample + base, s - base, rank[o] - base);
			base = rank[o] + 1;
		}
	}
	/* no branch on the data: every value is stored, kept when inside */
	{
		double		lo0 = lo[0],
					hi0 = hi[0],
					lo1 = lo[1],
					hi1 = hi[1];
		double	   *buf0 = buf[0],
				   *buf1 = buf[1];
		int			below0 = 0,
					above0 = 0,
					count0 = 0,
					below1 = 0,
					above1 = 0,
					count1 = 0;

		for (t = 0; t < m && ok; t += 64)
		{
			int			end = Min(t + 64, m);
			int			j;

			/* room for a whole block, or give up on the sample */
			if (count0 + 64 > cap[0] || count1 + 64 > cap[1])
			{
				ok = false;
				break;
			}
			for (j = t; j < end; j++)
			{
				double		x = v[j];

				below0 += x < lo0;
				above0 += x > hi0;
				buf0[count0] = x;
				count0 += (x >= lo0) & (x <= hi0);
				below1 += x < lo1;
				above1 += x > hi1;
				buf1[count1] = x;
				count1 += (x >= lo1) & (x <= hi1);
			}
		}
		below[0] = below0;
		above[0] = above0;
		count[0] = count0;
		below[1] = below1;
		above[1] = above1;
		count[1] = count1;
	}

	for (i = 0; i < 2 && ok; i++)
	{
		int			last = want_next[i] && k[i] + 1 < m ? k[i] + 1 : k[i];

		if (below[i] > k[i] || m - above[i] <= last)
			ok = false;
	}
	if (ok)
	{
		for (i = 0; i < 2; i++)
			select_pair(buf[i], count[i], k[i] - below[i], want_next[i] && k[i] + 1 < m,
						&first[i], &second[i]);
	}
	else
	{
		double	   *copy = scratch_alloc(m);

		memcpy(copy, v, m * sizeof(double));
		for (i = 0; i < 2; i++)
			select_pair(copy, m, k[i], want_next[i], &first[i], &second[i]);
	}
}

/* One tercile of the regime coverage being resolved. */
typedef struct Tercile
{
	int			k;				/* ⌊h⌋, h = (m - 1) p */
	double		frac;			/* h - ⌊h⌋ */
	double		band_lo;		/* variance below: certainly below x(k) */
	double		band_hi;		/* variance above: certainly above x(k+1) */
	int			below;			/* windows certainly below the band */
	int			nexact;			/* exact deviations of the windows in the band */
	int			cap;
	double	   *exact;
	double		q;				/* the tercile */
} Tercile;

/* Appends an exact window deviation to a tercile's band. */
static void
band_add(Tercile *tc, double v)
{
	if (tc->nexact == tc->cap)
	{
		double	   *grown = scratch_alloc(tc->cap * 2 + 16);

		if (tc->nexact > 0)
			memcpy(grown, tc->exact, tc->nexact * sizeof(double));
		tc->exact = grown;
		tc->cap = tc->cap * 2 + 16;
	}
	tc->exact[tc->nexact++] = v;
}

/*
 * The tercile value from its band: the k-th order statistic overall is the
 * (k - below)-th of the sorted exact values in the band.  False when the
 * band does not hold the ranks (the error bound failed), so that the caller
 * falls back to computing every window exactly.
 */
static bool
tercile_resolve(Tercile *tc, int m)
{
	int			i = tc->k - tc->below;
	bool		want_next = tc->frac > 0.0 && tc->k + 1 < m;
	double		first;
	double		second;

	if (i < 0 || i >= tc->nexact || (want_next && i + 1 >= tc->nexact))
		return false;
	sort_float8(tc->exact, tc->nexact);
	first = tc->exact[i];
	second = want_next ? tc->exact[i + 1] : first;
	tc->q = want_next ? first + tc->frac * (second - first) : first;
	return true;
}

/*
 * Regime coverage with every v_t computed exactly (window_std), then
 * Q(1/3) and Q(2/3) by selection.
 */
static void
regime_exact(const double *r, int n, double rf, double out[3])
{
	int			m = n - 1;
	double	   *work = scratch_alloc(m);
	int			low = 0;
	int			high = 0;
	double		q33;
	double		q66;
	int			t;

	for (t = 1; t < n; t++)
		work[t - 1] = window_std(r, t, rf);
	q33 = quantile7_inplace(work, m, 1.0 / 3.0);
	q66 = quantile7_inplace(work, m, 2.0 / 3.0);
	for (t = 0; t < m; t++)
	{
		low += work[t] <= q33;
		high += work[t] > q66;
	}
	out[0] = (double) low / m;
	out[1] = (double) (m - low - high) / m;
	out[2] = (double) high / m;
}

/*
 * Regime coverage: v_t = population deviation of the last (up to) 20
 * excess returns for t = 2..n; the shares of v at or below Q(1/3), between,
 * and above Q(2/3).
 *
 * Computing every v_t by the definition costs two 20-term sums a period.
 * Instead, a rolling pair of sums about an anchor inside the window (reset
 * every 16 periods) gives each window's variance to within a bound B, far
 * below any real difference between windows (a relative 1e-10, more than
 * 1000 times the rounding either way); only the windows whose rolling
 * variance lies within 2B of an order statistic the terciles need are
 * computed exactly.  The result is the same as computing every window
 * exactly (regime_exact, also the fallback should a band miss its rank):
 * a window outside a band is on the same side of the tercile either way,
 * and the deviation orders windows as the variance does.
 */
static bool
regime_coverage(const double *r, int n, double rf, double out[3])
{
	int			m = n - 1;
	double	   *v;
	double		bound = 0.0;
	int			ranks[2];
	bool		want_next[2];
	double		first[2];
	double		second[2];
	double		c = 0.0;
	double		s1 = 0.0;
	double		s2 = 0.0;
	double		u = 0.0;
	double		prev;
	int			run = 1;
	int			age = 16;
	int			low;
	int			high;
	int			above1 = 0;
	Tercile		tc[2];
	double		inv_k[REGIME_WINDOW + 1];
	int			i;
	int			t;

	if (n < 3)
		return false;
	if (m < 64)
	{
		regime_exact(r, n, rf, out);
		return true;
	}
	for (i = 1; i <= REGIME_WINDOW; i++)
		inv_k[i] = 1.0 / i;

	/* rolling variances, v[t - 1] for the window ending at t */
	v = scratch_alloc(m);
	prev = r[0] - rf;
	for (t = 1; t < n; t++)
	{
		double		xt = r[t] - rf;
		int			start = t >= REGIME_WINDOW ? t - REGIME_WINDOW + 1 : 0;
		int			k = t - start + 1;
		double		bvar;

		if (age >= 16)
		{
			/* re-anchor on the newest value: sums from scratch */
			c = xt;
			s1 = s2 = 0.0;
			for (i = start; i <= t; i++)
			{
				double		y = (r[i] - rf) - c;

				s1 += y;
				s2 += y * y;
			}
			u = s2;
			age = 0;
		}
		else
		{
			double		y = xt - c;

			s1 += y;
			s2 += y * y;
			u += y * y;
			if (start > 0)
			{
				double		z = (r[start - 1] - rf) - c;

				s1 -= z;
				s2 -= z * z;
				u += z * z;
			}
			age++;
		}
		run = xt == prev ? run + 1 : 1;
		prev = xt;
		if (run >= k)
		{
			v[t - 1] = 0.0;		/* constant window: exactly 0 */
			continue;
		}
		v[t - 1] = (s2 - s1 * s1 * inv_k[k]) * inv_k[k];

		/*
		 * How far v may be from the variance behind the definition's v_t:
		 * the rolling sums and the two-pass definition each err by a few
		 * dozen roundings of u/k (u >= k var as the anchor is inside the
		 * window), the definition's mean by some k² ulps of max |x|, and
		 * max x² <= 2 (c² + u).
		 */
		bvar = 1e-10 * u * inv_k[k] + 1e-24 * (c * c + u);
		bound = bvar > bound ? bvar : bound;
	}

	/* the order statistics of the rolling variances the terciles need */
	memset(tc, 0, sizeof(tc));
	for (i = 0; i < 2; i++)
	{
		double		h = (m - 1) * (i == 0 ? 1.0 / 3.0 : 2.0 / 3.0);

		tc[i].k = Min((int) floor(h), m - 1);
		tc[i].frac = h - tc[i].k;
		ranks[i] = tc[i].k;
		want_next[i] = tc[i].frac > 0.0;
	}
	order_stats(v, m, ranks, want_next, first, second);
	for (i = 0; i < 2; i++)
	{
		tc[i].band_lo = first[i] - 2.0 * bound;
		tc[i].band_hi = second[i] + 2.0 * bound;
	}

	/* place every window; compute the ones in a band exactly */
	{
		double		lo0 = tc[0].band_lo,
					hi0 = tc[0].band_hi,
					lo1 = tc[1].band_lo,
					hi1 = tc[1].band_hi;
		int			below0 = 0,
					below1 = 0;

		for (t = 0; t < m; t++)
		{
			double		x = v[t];
			int			in0 = (x >= lo0) & (x <= hi0);
			int			in1 = (x >= lo1) & (x <= hi1);

			below0 += x < lo0;
			below1 += x < lo1;
			above1 += x > hi1;
			if (unlikely(in0 | in1))
			{
				double		e = window_std(r, t + 1, rf);

				if (in0)
					band_add(&tc[0], e);
				if (in1)
					band_add(&tc[1], e);
			}
		}
		tc[0].below = below0;
		tc[1].below = below1;
	}
	if (!tercile_resolve(&tc[0], m) || !tercile_resolve(&tc[1], m))
	{
		regime_exact(r, n, rf, out);
		return true;
	}

	low = tc[0].below;
	for (i = 0; i < tc[0].nexact; i++)
		low += tc[0].exact[i] <= tc[0].q;
	high = above1;
	for (i = 0; i < tc[1].nexact; i++)
		high += tc[1].exact[i] > tc[1].q;
	out[0] = (double) low / m;
	out[1] = (double) (m - low - high) / m;
	out[2] = (double) high / m;
	return true;
}

/*
 * Cross-validated Sharpe from the folds' moments: folds whose Sharpe is
 * null are dropped; false when fewer than 2 remain.
 */
static bool
cv_sharpe(const Moments *folds, int k, int periods_per_year,
		  int *used_out, double *mean, double *std)
{
	double		sh[CV_MAX_FOLDS];
	int			used = 0;
	double		sum = 0.0;
	double		ss = 0.0;
	bool		same = true;
	int			i;

	for (i = 0; i < k; i++)
	{
		double		s = sharpe_of_moments(&folds[i], periods_per_year);

		if (!isnan(s))
			sh[used++] = s;
	}
	if (used < 2)
		return false;
	for (i = 0; i < used; i++)
	{
		sum += sh[i];
		if (sh[i] != sh[0])
			same = false;
	}
	*used_out = used;
	*mean = same ? sh[0] : sum / used;
	if (same)
		*std = 0.0;
	else
	{
		for (i = 0; i < used; i++)
			ss += (sh[i] - *mean) * (sh[i] - *mean);
		*std = sqrt(ss / used);
	}
	return true;
}

/* Standard normal CDF Φ(z), from the complementary error function. */
double
wval_norm_cdf_value(double z)
{
	return 0.5 * erfc(-z / M_SQRT2);
}

/* Evaluates c[0] + c[1] r + ... + c[7] r^7 (Horner). */
static inline double
poly7(const double *c, double r)
{
	return ((((((c[7] * r + c[6]) * r + c[5]) * r + c[4]) * r + c[3]) * r +
			 c[2]) * r + c[1]) * r + c[0];
}

/*
 * Inverse standard normal CDF Φ⁻¹(p): Wichura's algorithm AS 241 (PPND16,
 * about 1e-16 relative), rational approximations in q = p - 1/2 near the
 * centre and in r = √(-ln min(p, 1 - p)) in the tails.  0 and 1 map to
 * -Infinity / Infinity, anything outside [0, 1] to NaN.
 */
double
wval_norm_ppf_value(double p)
{
	static const double a[8] = {
		3.3871328727963666080e0, 1.3314166789178437745e+2,
		1.9715909503065514427e+3, 1.3731693765509461125e+4,
		4.5921953931549871457e+4, 6.7265770927008700853e+4,
		3.3430575583588128105e+4, 2.5090809287301226727e+3
	};
	static const double b[8] = {
		1.0, 4.2313330701600911252e+1,
		6.8718700749205790830e+2, 5.3941960214247511077e+3,
		2.1213794301586595867e+4, 3.9307895800092710610e+4,
		2.8729085735721942674e+4, 5.2264952788528545610e+3
	};
	static const double c[8] = {
		1.42343711074968357734e0, 4.63033784615654529590e0,
		5.76949722146069140550e0, 3.64784832476320460504e0,
		1.27045825245236838258e0, 2.41780725177450611770e-1,
		2.27238449892691845833e-2, 7.74545014278341407640e-4
	};
	static const double d[8] = {
		1.0, 2.05319162663775882187e0,
		1.67638483018380384940e0, 6.89767334985100004550e-1,
		1.48103976427480074590e-1, 1.51986665636164571966e-2,
		5.47593808499534494600e-4, 1.05075007164441684324e-9
	};
	static const double e[8] = {
		6.65790464350110377720e0, 5.46378491116411436990e0,
		1.78482653991729133580e0, 2.96560571828504891230e-1,
		2.65321895265761230930e-2, 1.24266094738807843860e-3,
		2.71155556874348757815e-5, 2.01033439929228813265e-7
	};
	static const double f[8] = {
		1.0, 5.99832206555887937690e-1,
		1.36929880922735805310e-1, 1.48753612908506148525e-2,
		7.86869131145613259100e-4, 1.84631831751005468180e-5,
		1.42151175831644588870e-7, 2.04426310338993978564e-15
	};
	double		q;
	double		r;
	double		x;

	if (isnan(p) || p < 0.0 || p > 1.0)
		return NAN;
	if (p == 0.0)
		return -INFINITY;
	if (p == 1.0)
		return INFINITY;
	q = p - 0.5;
	if (fabs(q) <= 0.425)
	{
		r = 0.180625 - q * q;
		return q * poly7(a, r) / poly7(b, r);
	}
	r = sqrt(-log(q < 0 ? p : 1.0 - p));
	if (r <= 5.0)
	{
		r -= 1.6;
		x = poly7(c, r) / poly7(d, r);
	}
	else
	{
		r -= 5.0;
		x = poly7(e, r) / poly7(f, r);
	}
	return q < 0 ? -x : x;
}

/*
 * The radicand of PSR, 1 - γ3 ŝ + (γ4 - 1)/4 ŝ² (n - 1 times the variance
 * of the Sharpe estimator).  In long double: with finite but extreme
 * arguments (ŝ = 1e308) the terms overflow a double, the radicand becomes
 * Infinity and PSR comes out as Φ(0) = 0.5 or, for the DSR, NaN; the
 * products of three doubles fit the range of long double (x86-64: 1e4932,
 * aarch64: quad precision).
 */
static inline long double
psr_radicand(long double sr, double skew, double kurtosis)
{
	return 1.0L - (long double) skew * sr + ((long double) kurtosis - 1.0L) / 4.0L * sr * sr;
}

/* PSR for a threshold SR* computed in long double (see psr_radicand); false as wval_psr_value. */
static bool
psr_value_ld(double sr, long double sr_star, int n, double skew, double kurtosis,
			 double *out)
{
	long double rad = psr_radicand(sr, skew, kurtosis);
	double		z;

	if (n < 3 || !(rad > 0.0L) || isnan(sr) || isnan((double) sr_star))
		return false;
	z = (double) (((long double) sr - sr_star) * sqrtl((long double) (n - 1)) / sqrtl(rad));
	if (isnan(z))
		return false;
	*out = wval_norm_cdf_value(z);
	return true;
}

/*
 * PSR(SR*) = Φ((ŝ - SR*) √(n - 1) / √(1 - γ3 ŝ + (γ4 - 1)/4 ŝ²)), both
 * Sharpe ratios per period; false when n < 3 or the radicand is not
 * positive.  Never NaN for finite arguments.
 */
bool
wval_psr_value(double sharpe_per_period, double sharpe_star_per_period,
			   int n, double skew, double kurtosis, double *out)
{
	return psr_value_ld(sharpe_per_period, sharpe_star_per_period, n, skew, kurtosis, out);
}

/*
 * The DSR threshold SR₀ = √V ((1 - γ) Φ⁻¹(1 - 1/N) + γ Φ⁻¹(1 - 1/(N e))),
 * per period; 0 when N <= 1.  Both quantiles grow with N, so SR₀ does and
 * DSR = PSR(SR₀) falls.
 */
double
wval_sr0_value(double trials_variance_per_period, double n_trials)
{
	if (n_trials <= 1.0)
		return 0.0;
	return sqrt(trials_variance_per_period) *
		((1.0 - EULER_GAMMA) * wval_norm_ppf_value(1.0 - 1.0 / n_trials) +
		 EULER_GAMMA * wval_norm_ppf_value(1.0 - 1.0 / (n_trials * M_E)));
}

/* Annualised Sharpe of x_i - rf; false when n < 2 or s = 0. */
bool
wval_sharpe_annual(const double *x, int n, int periods_per_year, double rf,
				   double *out)
{
	double		v = sharpe_range(x, n, rf, periods_per_year);

	if (isnan(v))
		return false;
	*out = v;
	return true;
}

/* Annualised Sortino of x_i - rf (may be +Infinity); false when null. */
bool
wval_sortino_annual(const double *x, int n, int periods_per_year, double rf,
					double *out)
{
	Moments		m;
	double		v;

	moments_of(x, n, rf, &m);
	v = sortino_of_moments(&m, periods_per_year);
	if (isnan(v))
		return false;
	*out = v;
	return true;
}

/* Maximum drawdown of the wealth path of r; false when n = 0. */
bool
wval_max_drawdown_of(const double *r, int n, double *out)
{
	WvalDrawdown d;
	int			i;

	if (n == 0)
		return false;
	wval_drawdown_init(&d);
	for (i = 0; i < n; i++)
		wval_dd_step(&d, r[i]);
	*out = wval_drawdown_result(&d);
	return true;
}

/* Historical VaR max(0, -Q(p)) of r; false when n < 2. */
bool
wval_var_historical(const double *r, int n, double p, double *out)
{
	double		es;

	if (n < 2)
		return false;
	scratch_reset((size_t) n + 16);
	tail_risk(r, NULL, n, p, out, &es);
	return true;
}

/* Historical ES max(0, -mean{r_i <= Q(p)}) of r; false when n < 2. */
bool
wval_es_historical(const double *r, int n, double p, double *out)
{
	double		var;

	if (n < 2)
		return false;
	scratch_reset((size_t) n + 16);
	tail_risk(r, NULL, n, p, &var, out);
	return true;
}

/*
 * VaR and ES of an aggregate's buffer (n >= 2), which may be reordered
 * (see metrics_agg.c).
 */
void
wval_tail_risk_inplace(double *a, int n, double p, double *var, double *es)
{
	scratch_reset((size_t) n / 2 + 64);
	tail_risk(a, a, n, p, var, es);
}

/*
 * 1 + ln(1 + N) + Σ w_k ln(1 + v_k) over the numeric, non-negative keys
 * n_features (0.2), feature_dim (0.2), n_parameters (0.2), code_cc (0.1)
 * and nodes (0.1) of extra_metrics (an object; anything else is ignored).
 */
double
wval_strategy_complexity_value(int search_intensity, Jsonb *extra_metrics)
{
	static const struct
	{
		const char *key;
		double		weight;
	}			terms[] = {
		{"n_features", 0.2},
		{"feature_dim", 0.2},
		{"n_parameters", 0.2},
		{"code_cc", 0.1},
		{"nodes", 0.1},
	};
	double		c = 1.0 + log1p((double) search_intensity);
	int			i;

	if (extra_metrics == NULL || !JB_ROOT_IS_OBJECT(extra_metrics))
		return c;
	for (i = 0; i < (int) lengthof(terms); i++)
	{
		JsonbValue *v;
		double		x;

		v = getKeyJsonValueFromContainer(&extra_metrics->root, terms[i].key,
										 strlen(terms[i].key), NULL);
		if (v == NULL || v->type != jbvNumeric)
			continue;
		x = wval_jbv_number(v, psprintf("extra_metrics.%s", terms[i].key),
							ERRCODE_WVAL_INVALID_METRIC_INPUT);
		if (x >= 0.0)
			c += terms[i].weight * log1p(x);
	}
	return c;
}

/* ---------------------------------------------------------------------
 * The pack
 * ---------------------------------------------------------------------
 */

/*
 * Adds v to the compensated sum (*sum, *comp): Knuth's TwoSum puts the
 * exact rounding error of each addition into *comp, without a branch and
 * with only the one addition on the dependency chain of *sum.
 */
static inline void
twosum_add(double *sum, double *comp, double v)
{
	double		t = *sum + v;
	double		bv = t - *sum;

	*comp += (*sum - (t - bv)) + (v - bv);
	*sum = t;
}

/*
 * Wealth path of r: max drawdown, time under water, annual return and
 * gain to pain (n >= 1).  Gains and losses are summed apart (no
 * cancellation inside either sum), with compensation.
 */
static void
path_metrics(const double *r, int n, int periods_per_year, MetricsPack *pk)
{
	WvalDrawdown d;
	double		gain = 0.0;
	double		gain_c = 0.0;
	double		pain = 0.0;
	double		pain_c = 0.0;
	double		total;
	double		ppy_n = (double) periods_per_year / n;
	int			i;

	wval_drawdown_init(&d);
	for (i = 0; i < n; i++)
	{
		double		v = r[i];
		double		loss = 0.5 * (v - fabs(v));	/* min(v, 0), no branch */

		wval_dd_step(&d, v);
		twosum_add(&gain, &gain_c, v - loss);
		twosum_add(&pain, &pain_c, loss);
	}
	gain += gain_c;
	pain += pain_c;
	total = gain + pain;

	pk->max_drawdown = wval_drawdown_result(&d);
	pk->tuw_ratio = (double) d.under / n;
	pk->max_tuw = d.longest;
	/* W_n = wealth * 2^(512 scale) */
	if (d.scale == 0)
		pk->annual_return = pow(d.wealth, ppy_n) - 1.0;
	else
		pk->annual_return = exp(ppy_n * (log(d.wealth) + 512.0 * d.scale * M_LN2)) - 1.0;
	if (pain < 0.0)
		pk->gain_to_pain = total / -pain;
	else
		pk->gain_to_pain = total > 0 ? INFINITY : NULL_METRIC;
}

/* Benchmark block and the benchmark-relative return metrics. */
static void
benchmark_metrics(const double *r, const double *b, int n,
				  const WvalMetricsOptions *opt, const Moments *mx,
				  MetricsPack *pk)
{
	int			ppy = opt->periods_per_year;
	double		rf = opt->risk_free;
	double		sqrt_p = sqrt((double) ppy);
	Moments		mb;
	double		bsum = 0.0;
	double		bmean;
	double		asum = 0.0;
	double		amean;
	double		cov = 0.0;
	double		vb = 0.0;
	double		va = 0.0;
	double		a_first;
	bool		a_const = true;
	int			i;

	moments_of(b, n, rf, &mb);
	pk->b_sharpe = sharpe_of_moments(&mb, ppy);
	pk->b_volatility = n >= 2 ? mb.sd * sqrt_p : NULL_METRIC;
	pk->b_max_drawdown = NULL_METRIC;
	if (n > 0)
		wval_max_drawdown_of(b, n, &pk->b_max_drawdown);
	pk->vs_benchmark_sharpe = pk->sharpe - pk->b_sharpe;	/* NaN if either is */

	pk->beta = pk->alpha = pk->tracking_error = pk->information_ratio = NULL_METRIC;
	if (n < 2)
		return;

	/* means of b and of the active returns a = x - b */
	a_first = (r[0] - rf) - b[0];
	for (i = 0; i < n; i++)
	{
		double		a = (r[i] - rf) - b[i];

		bsum += b[i];
		asum += a;
		if (a != a_first)
			a_const = false;
	}
	bmean = bsum / n;
	amean = a_const ? a_first : asum / n;
	for (i = 0; i < n; i++)
	{
		double		dx = (r[i] - rf) - mx->mean;
		double		db = b[i] - bmean;
		double		da = ((r[i] - rf) - b[i]) - amean;

		cov += dx * db;
		vb += db * db;
		va += da * da;
	}
	if (mb.sd > 0.0 && vb > 0.0)
	{
		pk->beta = cov / vb;
		pk->alpha = (mx->mean - pk->beta * bmean) * ppy;
	}
	if (a_const)
		va = 0.0;
	pk->tracking_error = sqrt(va / (n - 1)) * sqrt_p;
	if (va > 0.0)
		pk->information_ratio = amean / sqrt(va / (n - 1)) * sqrt_p;
}

/* Computes every metric of the pack into *pk. */
static void
compute_pack(const double *r, int n, const WvalMetricsOptions *opt, MetricsPack *pk)
{
	int			ppy = opt->periods_per_year;
	double		rf = opt->risk_free;
	double		sqrt_p = sqrt((double) ppy);
	Moments		m;
	Moments		halves[2];
	Moments		folds[CV_MAX_FOLDS];
	int			cv_folds;
	int			half = n / 2;

	pk->sharpe = pk->volatility = pk->sortino = NULL_METRIC;
	pk->annual_return = pk->max_drawdown = pk->tuw_ratio = NULL_METRIC;
	pk->gain_to_pain = pk->var_p01 = pk->es_p01 = NULL_METRIC;
	pk->skew = pk->kurtosis = pk->history_years = NULL_METRIC;
	pk->max_tuw = -1;
	pk->has_regime = false;
	pk->psr = pk->dsr = NULL_METRIC;
	pk->cv_folds = -1;
	pk->cv_mean = pk->cv_std = NULL_METRIC;

	scratch_reset((size_t) 3 * n + 4096);
	cv_folds = Min(CV_MAX_FOLDS, n / CV_MIN_FOLD_PERIODS);
	if (cv_folds < 2)
		cv_folds = 0;
	series_moments(r, n, rf, half, cv_folds, cv_folds ? n / cv_folds : 0,
				   &m, halves, folds);
	pk->sharpe = sharpe_of_moments(&m, ppy);
	pk->sortino = sortino_of_moments(&m, ppy);
	if (n >= 2)
	{
		pk->volatility = m.sd * sqrt_p;
		if (m.m2 > 0.0)
		{
			pk->skew = m.m3 / pow(m.m2, 1.5);
			pk->kurtosis = m.m4 / (m.m2 * m.m2);
		}
	}
	if (n >= 1)
	{
		path_metrics(r, n, ppy, pk);
		pk->history_years = (double) n / ppy;
	}
	if (n >= 2)
	{
		tail_risk(r, NULL, n, VAR_TAIL, &pk->var_p01, &pk->es_p01);
		pk->has_regime = regime_coverage(r, n, rf, pk->regime);
	}

	pk->sharpe_first_half = sharpe_of_moments(&halves[0], ppy);
	pk->sharpe_second_half = sharpe_of_moments(&halves[1], ppy);

	/* PSR and DSR: per-period Sharpe, moments of x */
	if (n >= 3 && !isnan(pk->sharpe) && !isnan(pk->skew))
	{
		double		sr = m.mean / m.sd;
		double		rad = psr_radicand(sr, pk->skew, pk->kurtosis);
		double		v;
		double		out;

		if (wval_psr_value(sr, 0.0, n, pk->skew, pk->kurtosis, &out))
			pk->psr = out;
		v = opt->has_trials_variance ?
			opt->trials_sharpe_variance / ppy : rad / (n - 1);
		if (rad > 0.0 &&
			wval_psr_value(sr, wval_sr0_value(v, opt->search_intensity), n,
						   pk->skew, pk->kurtosis, &out))
			pk->dsr = out;
	}

	if (!cv_sharpe(folds, cv_folds, ppy, &pk->cv_folds, &pk->cv_mean, &pk->cv_std))
		pk->cv_folds = -1;

	if (opt->benchmark != NULL)
		benchmark_metrics(r, opt->benchmark, n, opt, &m, pk);

	pk->complexity = wval_strategy_complexity_value(opt->search_intensity, NULL);
}

/* A double as a numeric in its shortest exact decimal form. */
static Numeric
numeric_from_double(double v)
{
	char		buf[DOUBLE_SHORTEST_DECIMAL_LEN];

	double_to_shortest_decimal_buf(v, buf);
	return DatumGetNumeric(DirectFunctionCall3(numeric_in,
											   CStringGetDatum(buf),
											   ObjectIdGetDatum(InvalidOid),
											   Int32GetDatum(-1)));
}

/* Pushes key: v (NaN as null, ±Infinity as the strings wval stores). */
static void
push_double(JsonbParseState **st, const char *key, double v)
{
	JsonbValue	jv;

	wval_push_key(st, key);
	if (isnan(v))
		jv.type = jbvNull;
	else if (isinf(v))
	{
		jv.type = jbvString;
		jv.val.string.val = v > 0 ? "Infinity" : "-Infinity";
		jv.val.string.len = strlen(jv.val.string.val);
	}
	else
	{
		jv.type = jbvNumeric;
		jv.val.numeric = numeric_from_double(v);
	}
	pushJsonbValue(st, WJB_VALUE, &jv);
}

/* Pushes key: v as an integer (negative v as null). */
static void
push_int(JsonbParseState **st, const char *key, int64 v)
{
	JsonbValue	jv;

	wval_push_key(st, key);
	if (v < 0)
		jv.type = jbvNull;
	else
	{
		jv.type = jbvNumeric;
		jv.val.numeric = int64_to_numeric(v);
	}
	pushJsonbValue(st, WJB_VALUE, &jv);
}

/* Pushes key: { and returns after the caller's values need a push_end. */
static void
push_object(JsonbParseState **st, const char *key)
{
	wval_push_key(st, key);
	pushJsonbValue(st, WJB_BEGIN_OBJECT, NULL);
}

/* Writes the pack as JSON (see docs/metrics.md for the layout). */
static JsonbValue *
push_pack(JsonbParseState **st, const MetricsPack *pk, int n,
		  const WvalMetricsOptions *opt)
{
	bool		bench = opt->benchmark != NULL;

	pushJsonbValue(st, WJB_BEGIN_OBJECT, NULL);

	push_object(st, "returns");
	push_double(st, "sharpe", pk->sharpe);
	push_double(st, "volatility", pk->volatility);
	push_double(st, "sortino_ratio", pk->sortino);
	push_double(st, "annual_return", pk->annual_return);
	push_double(st, "max_drawdown", pk->max_drawdown);
	push_double(st, "time_under_water_ratio", pk->tuw_ratio);
	push_int(st, "max_time_under_water_days", pk->max_tuw);
	push_double(st, "gain_to_pain_ratio", pk->gain_to_pain);
	push_double(st, "var_p01", pk->var_p01);
	push_double(st, "es_p01", pk->es_p01);
	push_double(st, "skew", pk->skew);
	push_double(st, "kurtosis", pk->kurtosis);
	if (bench)
	{
		push_double(st, "beta", pk->beta);
		push_double(st, "alpha", pk->alpha);
		push_double(st, "tracking_error", pk->tracking_error);
		push_double(st, "information_ratio", pk->information_ratio);
	}
	pushJsonbValue(st, WJB_END_OBJECT, NULL);

	push_object(st, "sample");
	push_double(st, "effective_history_years", pk->history_years);
	if (pk->has_regime)
	{
		push_object(st, "regime_coverage");
		push_double(st, "low_vol", pk->regime[0]);
		push_double(st, "mid_vol", pk->regime[1]);
		push_double(st, "high_vol", pk->regime[2]);
		pushJsonbValue(st, WJB_END_OBJECT, NULL);
	}
	else
		push_double(st, "regime_coverage", NULL_METRIC);
	pushJsonbValue(st, WJB_END_OBJECT, NULL);

	push_object(st, "robustness");
	push_double(st, "sharpe_first_half", pk->sharpe_first_half);
	push_double(st, "sharpe_second_half", pk->sharpe_second_half);
	push_double(st, "probabilistic_sharpe_ratio", pk->psr);
	push_double(st, "deflated_sharpe_ratio", pk->dsr);
	push_int(st, "cv_folds", pk->cv_folds);
	push_double(st, "cv_sharpe_mean", pk->cv_folds < 0 ? NULL_METRIC : pk->cv_mean);
	push_double(st, "cv_sharpe_std", pk->cv_folds < 0 ? NULL_METRIC : pk->cv_std);
	pushJsonbValue(st, WJB_END_OBJECT, NULL);

	if (bench)
	{
		push_object(st, "benchmark");
		push_double(st, "sharpe", pk->b_sharpe);
		push_double(st, "volatility", pk->b_volatility);
		push_double(st, "max_drawdown", pk->b_max_drawdown);
		pushJsonbValue(st, WJB_END_OBJECT, NULL);
	}

	push_object(st, "diagnostics");
	push_int(st, "search_intensity", opt->search_intensity);
	push_int(st, "n_periods", n);
	push_int(st, "periods_per_year", opt->periods_per_year);
	push_double(st, "strategy_complexity", pk->complexity);
	if (opt->has_trials_variance)
		push_double(st, "trials_sharpe_variance", opt->trials_sharpe_variance);
	if (bench)
	{
		push_object(st, "extra_metrics");
		push_double(st, "vs_benchmark_sharpe", pk->vs_benchmark_sharpe);
		pushJsonbValue(st, WJB_END_OBJECT, NULL);
	}
	pushJsonbValue(st, WJB_END_OBJECT, NULL);

	return pushJsonbValue(st, WJB_END_OBJECT, NULL);
}

/* Pushes the metrics pack of r onto *state (see metrics.h). */
JsonbValue *
wval_push_metrics(JsonbParseState **state, const double *r, int n,
				  const WvalMetricsOptions *opt)
{
	MetricsPack pk;

	wval_check_metrics_options(opt, n);
	compute_pack(r, n, opt, &pk);
	return push_pack(state, &pk, n, opt);
}

/* The metrics pack of r as a Jsonb (what wval_metrics() returns). */
Jsonb *
wval_compute_metrics(const double *r, int n, const WvalMetricsOptions *opt)
{
	JsonbParseState *state = NULL;

	return JsonbValueToJsonb(wval_push_metrics(&state, r, n, opt));
}

/* ---------------------------------------------------------------------
 * SQL functions
 * ---------------------------------------------------------------------
 */

/*
 * wval_metrics(returns, periods_per_year, risk_free, search_intensity,
 * benchmark, trials_sharpe_variance) → jsonb.  Null when returns or one of
 * the three scalar options is null.
 */
Datum
wval_metrics(PG_FUNCTION_ARGS)
{
	WvalMetricsOptions opt;
	const double *r;
	int			n;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		PG_RETURN_NULL();
	r = returns_in_place(PG_GETARG_ARRAYTYPE_P(0), "returns", &n);
	wval_metrics_options_init(&opt);
	opt.periods_per_year = PG_GETARG_INT32(1);
	opt.risk_free = PG_GETARG_FLOAT8(2);
	opt.search_intensity = PG_GETARG_INT32(3);
	if (!PG_ARGISNULL(4))
		opt.benchmark = returns_in_place(PG_GETARG_ARRAYTYPE_P(4),
										 "benchmark", &opt.n_benchmark);
	if (!PG_ARGISNULL(5))
	{
		opt.has_trials_variance = true;
		opt.trials_sharpe_variance = PG_GETARG_FLOAT8(5);
	}
	PG_RETURN_JSONB_P(wval_compute_metrics(r, n, &opt));
}

/* Raises WV001 unless n_obs >= 0. */
static void
check_n_obs(int n_obs)
{
	if (n_obs < 0)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
				 errmsg("\"n_obs\" must not be negative"),
				 errdetail("n_obs is %d.", n_obs),
				 errhint("Pass the number of return periods behind the Sharpe ratio.")));
}

/*
 * wval_psr(sharpe_annual, n_obs, skew, kurtosis, benchmark_sharpe_annual,
 * periods_per_year) → float8; null when n_obs < 3 or the radicand is not
 * positive.
 */
Datum
wval_psr(PG_FUNCTION_ARGS)
{
	double		sharpe = PG_GETARG_FLOAT8(0);
	int32		n_obs = PG_GETARG_INT32(1);
	double		skew = PG_GETARG_FLOAT8(2);
	double		kurtosis = PG_GETARG_FLOAT8(3);
	double		star = PG_GETARG_FLOAT8(4);
	int32		ppy = PG_GETARG_INT32(5);
	double		sqrt_p;
	double		out;

	check_finite_arg("sharpe_annual", sharpe, false, "Pass the annualised Sharpe ratio.");
	check_n_obs(n_obs);
	check_finite_arg("skew", skew, false, "Pass the skewness of the returns.");
	check_finite_arg("kurtosis", kurtosis, false, "Pass the (raw, not excess) kurtosis of the returns.");
	check_finite_arg("benchmark_sharpe_annual", star, false, "Pass the annualised Sharpe ratio to beat, e.g. 0.");
	wval_check_periods_per_year(ppy);
	sqrt_p = sqrt((double) ppy);
	if (!wval_psr_value(sharpe / sqrt_p, star / sqrt_p, n_obs, skew, kurtosis, &out))
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(out);
}

/*
 * wval_dsr(sharpe_annual, n_obs, skew, kurtosis, n_trials,
 * trials_sharpe_variance_annual, periods_per_year) → float8.  A null
 * trials variance means the estimator variance of the Sharpe ratio; null
 * in any other argument gives null.
 */
Datum
wval_dsr(PG_FUNCTION_ARGS)
{
	double		sharpe;
	int32		n_obs;
	double		skew;
	double		kurtosis;
	int32		n_trials;
	int32		ppy;
	double		sr;
	long double rad;
	long double v;
	double		out;
	int			i;

	for (i = 0; i < PG_NARGS(); i++)
		if (i != 5 && PG_ARGISNULL(i))
			PG_RETURN_NULL();
	sharpe = PG_GETARG_FLOAT8(0);
	n_obs = PG_GETARG_INT32(1);
	skew = PG_GETARG_FLOAT8(2);
	kurtosis = PG_GETARG_FLOAT8(3);
	n_trials = PG_GETARG_INT32(4);
	ppy = PG_GETARG_INT32(6);

	check_finite_arg("sharpe_annual", sharpe, false, "Pass the annualised Sharpe ratio.");
	check_n_obs(n_obs);
	check_finite_arg("skew", skew, false, "Pass the skewness of the returns.");
	check_finite_arg("kurtosis", kurtosis, false, "Pass the (raw, not excess) kurtosis of the returns.");
	check_search_intensity("n_trials", n_trials);
	wval_check_periods_per_year(ppy);

	sr = sharpe / sqrt((double) ppy);
	rad = psr_radicand(sr, skew, kurtosis);
	if (n_obs < 3 || !(rad > 0.0L))
		PG_RETURN_NULL();
	if (PG_ARGISNULL(5))
		v = rad / (n_obs - 1);
	else
	{
		double		tv = PG_GETARG_FLOAT8(5);

		check_finite_arg("trials_sharpe_variance_annual", tv, true,
						 "Pass the variance of the annualised Sharpe ratios of the trials, or null.");
		v = (long double) tv / ppy;
	}
	/* SR₀ = √V · q(N); wval_sr0_value(1, N) is q(N), √V stays in long double */
	if (!psr_value_ld(sr, sqrtl(v) * (long double) wval_sr0_value(1.0, n_trials),
					  n_obs, skew, kurtosis, &out))
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(out);
}

/* wval_norm_cdf(z) → Φ(z); WV001 for NaN. */
Datum
wval_norm_cdf(PG_FUNCTION_ARGS)
{
	double		z = PG_GETARG_FLOAT8(0);

	if (isnan(z))
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
				 errmsg("\"z\" must be a number"),
				 errdetail("z is NaN."),
				 errhint("Pass a finite number or ±Infinity.")));
	PG_RETURN_FLOAT8(wval_norm_cdf_value(z));
}

/* wval_norm_ppf(p) → Φ⁻¹(p); ±Infinity at 1 and 0, WV001 outside [0, 1]. */
Datum
wval_norm_ppf(PG_FUNCTION_ARGS)
{
	double		p = PG_GETARG_FLOAT8(0);
	char		buf[DOUBLE_SHORTEST_DECIMAL_LEN];

	if (isnan(p) || p < 0.0 || p > 1.0)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
				 errmsg("\"p\" must be a probability between 0 and 1"),
				 errdetail("p is %s.", format_double(p, buf)),
				 errhint("Pass a probability in [0, 1].")));
	PG_RETURN_FLOAT8(wval_norm_ppf_value(p));
}

/* wval_strategy_complexity(search_intensity, extra_metrics) → float8. */
Datum
wval_strategy_complexity(PG_FUNCTION_ARGS)
{
	int32		n;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	n = PG_GETARG_INT32(0);
	check_search_intensity("search_intensity", n);
	PG_RETURN_FLOAT8(wval_strategy_complexity_value(n,
													PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1)));
}
