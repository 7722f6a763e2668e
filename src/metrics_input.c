/*-------------------------------------------------------------------------
 *
 * metrics_input.c
 *	  The input rules of the metrics engine: what a return series, a
 *	  benchmark and the options of a pack must satisfy (WV001), and the
 *	  conversion of SQL arrays to double arrays.  docs/metrics.md.
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

/* ---------------------------------------------------------------------
 * Input rules
 * ---------------------------------------------------------------------
 */

/* Writes v as PostgreSQL prints a float8 (shortest exact form) into buf. */
const char *
wval_format_double(double v, char *buf)
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
						   wval_format_double(v, buf)),
				 errhint("Remove NaN and infinite values; a period without a return is 0.")));
	if (v <= -1.0)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
				 errmsg("\"%s\" must contain only returns greater than -1", field),
				 errdetail("%s " INT64_FORMAT " is %s.", what, idx,
						   wval_format_double(v, buf)),
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
const double *
wval_returns_in_place(ArrayType *arr, const char *field, int *n)
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
void
wval_check_search_intensity(const char *field, int64 value)
{
	if (value < 1)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
				 errmsg("\"%s\" must be at least 1", field),
				 errdetail("%s is " INT64_FORMAT ".", field, value),
				 errhint("Pass the number of strategy variants tried, counting this one.")));
}

/* Raises WV001 unless value is finite (and >= 0 when nonneg). */
void
wval_check_finite_arg(const char *field, double value, bool nonneg, const char *hint)
{
	char		buf[DOUBLE_SHORTEST_DECIMAL_LEN];

	if (isnan(value) || isinf(value) || (nonneg && value < 0))
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
				 errmsg(nonneg ? "\"%s\" must be a finite number of at least 0" :
						"\"%s\" must be a finite number", field),
				 errdetail("%s is %s.", field, wval_format_double(value, buf)),
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
				 errdetail("p is %s.", wval_format_double(p, buf)),
				 errhint("Pass the tail probability, e.g. 0.01 for the 1 %% tail.")));
}

/* Raises WV001 unless opt is valid for a series of n returns. */
void
wval_check_metrics_options(const WvalMetricsOptions *opt, int n)
{
	wval_check_periods_per_year(opt->periods_per_year);
	wval_check_search_intensity("search_intensity", opt->search_intensity);
	wval_check_finite_arg("risk_free", opt->risk_free, false,
					 "Pass the risk-free return per period, e.g. 0.0001.");
	if (opt->has_trials_variance)
		wval_check_finite_arg("trials_sharpe_variance", opt->trials_sharpe_variance, true,
						 "Pass the variance of the annualised Sharpe ratios of the trials, or null.");
	if (opt->benchmark != NULL && opt->n_benchmark != n)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
				 errmsg("\"benchmark\" must have as many elements as \"returns\""),
				 errdetail("\"returns\" has %d elements, \"benchmark\" has %d.",
						   n, opt->n_benchmark),
				 errhint("Pass the benchmark's returns for the same periods as the strategy's.")));
}

