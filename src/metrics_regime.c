/*-------------------------------------------------------------------------
 *
 * metrics_regime.c
 *	  Regime coverage of the metric pack: the share of periods whose
 *	  rolling 20-period volatility falls in the low, middle and high
 *	  tercile of all of them, with the window sums in NumPy's blocked order
 *	  (see "Floating-point order" in metrics.c).
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
#include "utils/jsonb.h"

#include "metrics.h"
#include "metrics_int.h"
#include "wval.h"

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

	*first = wval_select_kth(a, n, k);
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
	double	   *sample = wval_metrics_scratch_alloc(s);
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
		buf[i] = wval_metrics_scratch_alloc(cap[i]);
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
			*dest = wval_select_kth(sample + base, s - base, rank[o] - base);
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
		double	   *copy = wval_metrics_scratch_alloc(m);

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
		double	   *grown = wval_metrics_scratch_alloc(tc->cap * 2 + 16);

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
	wval_sort_float8(tc->exact, tc->nexact);
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
	double	   *work = wval_metrics_scratch_alloc(m);
	int			low = 0;
	int			high = 0;
	double		q33;
	double		q66;
	int			t;

	for (t = 1; t < n; t++)
		work[t - 1] = window_std(r, t, rf);
	q33 = wval_quantile7_inplace(work, m, 1.0 / 3.0);
	q66 = wval_quantile7_inplace(work, m, 2.0 / 3.0);
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
bool
wval_regime_coverage(const double *r, int n, double rf, double out[3])
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
	v = wval_metrics_scratch_alloc(m);
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

