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

#include "jsonb.h"
#include "metrics.h"
#include "metrics_int.h"
#include "wval.h"

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
PG_FUNCTION_INFO_V1(wval_strategy_complexity);

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
double *
wval_metrics_scratch_alloc(size_t count)
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

/* wval_sort_float8(double *, size_t): ascending sort of doubles (no NaN here) */
#define ST_SORT wval_sort_float8
#define ST_ELEMENT_TYPE double
#define ST_COMPARE(a, b) ((*(a) > *(b)) - (*(a) < *(b)))
#define ST_SCOPE
#define ST_DEFINE
#include "lib/sort_template.h"

/*
 * Moves the k-th smallest (0-based) of a[0..n-1] to a[k], everything not
 * greater before it and not smaller after it; returns a[k].  Hoare
 * partitioning around a median of three, O(n) on average; if the input is
 * adversarial and the partitions keep coming out lopsided, the rest is
 * sorted (O(n log n) worst case).
 */
double
wval_select_kth(double *a, int n, int k)
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
			wval_sort_float8(a + lo, hi - lo + 1);
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
double
wval_quantile7_inplace(double *a, int n, double p)
{
	double		h = (n - 1) * p;
	int			lo = (int) floor(h);
	double		frac = h - lo;
	double		first;
	double		second;
	int			i;

	if (lo > n - 1)
		lo = n - 1;
	first = wval_select_kth(a, n, lo);
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
		double	   *buf = wval_metrics_scratch_alloc(4 * c + 1);
		double		thr = INFINITY;
		int			len = 0;
		int			le = 0;

		for (i = 0; i < n; i++)
		{
			buf[len] = r[i];
			len += r[i] < thr;
			if (unlikely(len == 4 * c))
			{
				thr = wval_select_kth(buf, len, c - 1);
				len = c;
			}
		}
		first = wval_select_kth(buf, len, lo);
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
		work = wval_metrics_scratch_alloc(n);
	if (work != r)
		memcpy(work, r, n * sizeof(double));
	first = wval_select_kth(work, n, lo);
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
		pk->has_regime = wval_regime_coverage(r, n, rf, pk->regime);
	}

	pk->sharpe_first_half = sharpe_of_moments(&halves[0], ppy);
	pk->sharpe_second_half = sharpe_of_moments(&halves[1], ppy);

	/* PSR and DSR: per-period Sharpe, moments of x */
	if (n >= 3 && !isnan(pk->sharpe) && !isnan(pk->skew))
	{
		double		sr = m.mean / m.sd;
		double		rad = wval_psr_radicand(sr, pk->skew, pk->kurtosis);
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

/* Pushes key: v; NaN (a metric that is not defined) as null, ±Infinity as the strings wval stores. */
static void
push_double(JsonbParseState **st, const char *key, double v)
{
	if (isnan(v))
		wval_jb_kv_null(st, key);
	else
		wval_jb_kv_float8(st, key, v);
}

/* Pushes key: v as an integer (negative v, a count that is not defined, as null). */
static void
push_int(JsonbParseState **st, const char *key, int64 v)
{
	if (v < 0)
		wval_jb_kv_null(st, key);
	else
		wval_jb_kv_int64(st, key, v);
}

/* Pushes key: { and returns after the caller's values need a push_end. */
static void
push_object(JsonbParseState **st, const char *key)
{
	wval_jb_key(st, key);
	wval_jb_begin_object(st);
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
	r = wval_returns_in_place(PG_GETARG_ARRAYTYPE_P(0), "returns", &n);
	wval_metrics_options_init(&opt);
	opt.periods_per_year = PG_GETARG_INT32(1);
	opt.risk_free = PG_GETARG_FLOAT8(2);
	opt.search_intensity = PG_GETARG_INT32(3);
	if (!PG_ARGISNULL(4))
		opt.benchmark = wval_returns_in_place(PG_GETARG_ARRAYTYPE_P(4),
										 "benchmark", &opt.n_benchmark);
	if (!PG_ARGISNULL(5))
	{
		opt.has_trials_variance = true;
		opt.trials_sharpe_variance = PG_GETARG_FLOAT8(5);
	}
	PG_RETURN_JSONB_P(wval_compute_metrics(r, n, &opt));
}

/* wval_strategy_complexity(search_intensity, extra_metrics) → float8. */
Datum
wval_strategy_complexity(PG_FUNCTION_ARGS)
{
	int32		n;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	n = PG_GETARG_INT32(0);
	wval_check_search_intensity("search_intensity", n);
	PG_RETURN_FLOAT8(wval_strategy_complexity_value(n,
													PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1)));
}
