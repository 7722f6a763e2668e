/*-------------------------------------------------------------------------
 *
 * metrics_agg.c
 *	  The analyst aggregates of the metrics engine: wval_sharpe,
 *	  wval_sortino, wval_max_drawdown, wval_var, wval_es and
 *	  wval_metrics_agg.
 *
 * Three kinds of transition state, all allocated in the aggregate context:
 *
 *	- MomentState (wval_sharpe, wval_sortino): Welford's running mean and
 *	  sum of squared deviations plus Σ min(r, 0)².  Constant size; can be
 *	  combined, so GROUP BY over big tables may run in parallel.
 *	- WvalDrawdown (wval_max_drawdown): the running wealth path of
 *	  metrics.h.  Constant size; path dependent, so it honours the ORDER BY
 *	  inside the call and has no combine function.
 *	- ReturnBuffer (wval_var, wval_es, wval_metrics_agg): the returns as a
 *	  growable double array (8 bytes a row, at most WVAL_MAX_RETURNS rows).
 *	  Quantiles need the values, and the full pack needs the path.
 *
 * Window use.  A final function may be called many times on one state, with
 * more rows added in between (a frame that grows), so none of them may
 * change what the state means: they are all FINALFUNC_MODIFY = READ_ONLY.
 * wval_var and wval_es select the quantile inside their buffer, which
 * reorders it; their buffer is a bag (order never matters to them, and their
 * transition function is not shared with wval_metrics_agg, whose buffer is
 * a path and is only read), so the state keeps its meaning.
 *
 * Rows follow the input rules of arrays: a null, NaN, ±Infinity or a
 * return <= -1 is WV001 naming the 1-based row of the aggregate's input.
 * The extra arguments (periods_per_year, p) must be the same in every row.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "fmgr.h"
#include "libpq/pqformat.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "metrics.h"
#include "wval.h"

#define INITIAL_BUFFER 256

/* Running moments for wval_sharpe / wval_sortino. */
typedef struct MomentState
{
	int64		n;
	double		mean;			/* running mean */
	double		m2;				/* Σ (r - mean)² (Welford) */
	double		neg2;			/* Σ min(r, 0)² */
	int32		periods_per_year;
} MomentState;

/* The rows of one group, in input order. */
typedef struct ReturnBuffer
{
	int			n;
	int			cap;
	double	   *vals;
	int32		periods_per_year;	/* wval_metrics_agg */
	double		p;				/* wval_var / wval_es */
} ReturnBuffer;

PG_FUNCTION_INFO_V1(wval_moments_step);
PG_FUNCTION_INFO_V1(wval_moments_combine);
PG_FUNCTION_INFO_V1(wval_moments_serialize);
PG_FUNCTION_INFO_V1(wval_moments_deserialize);
PG_FUNCTION_INFO_V1(wval_sharpe_final);
PG_FUNCTION_INFO_V1(wval_sortino_final);
PG_FUNCTION_INFO_V1(wval_drawdown_step);
PG_FUNCTION_INFO_V1(wval_drawdown_final);
PG_FUNCTION_INFO_V1(wval_series_step);
PG_FUNCTION_INFO_V1(wval_metrics_final);
PG_FUNCTION_INFO_V1(wval_tail_step);
PG_FUNCTION_INFO_V1(wval_var_final);
PG_FUNCTION_INFO_V1(wval_es_final);

/* The aggregate memory context, or an error outside an aggregate. */
static MemoryContext
agg_context(FunctionCallInfo fcinfo)
{
	MemoryContext aggctx;

	if (!AggCheckCallContext(fcinfo, &aggctx))
		elog(ERROR, "wval aggregate support function called outside an aggregate");
	return aggctx;
}

/* The return of the current row (argument 1), checked by the input rules. */
static inline double
row_return(FunctionCallInfo fcinfo, int64 row)
{
	double		v;

	if (PG_ARGISNULL(1))
		wval_reject_null_return("r", "Row", row);
	v = PG_GETARG_FLOAT8(1);
	if (unlikely(!(v > -1.0 && v <= DBL_MAX)))
		wval_reject_return_value(v, "r", "Row", row);
	return v;
}

/*
 * periods_per_year of the current row (argument 2 when present, else 252),
 * which must equal the group's (first row: current = 0).
 */
static int32
row_periods_per_year(FunctionCallInfo fcinfo, int64 row, int32 current)
{
	int32		ppy;

	if (PG_NARGS() < 3)
		return 252;
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
				 errmsg("\"periods_per_year\" must not be null"),
				 errdetail("Row " INT64_FORMAT " has a null periods_per_year.", row),
				 errhint("Pass the number of return periods per year, e.g. 252 for daily returns.")));
	ppy = PG_GETARG_INT32(2);
	if (current == 0)
		wval_check_periods_per_year(ppy);
	else if (ppy != current)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
				 errmsg("\"periods_per_year\" must be the same in every row"),
				 errdetail("Row " INT64_FORMAT " has %d, earlier rows %d.",
						   row, ppy, current),
				 errhint("Aggregate series of one frequency at a time.")));
	return ppy;
}


/* ---------------------------------------------------------------------
 * wval_sharpe, wval_sortino
 * ---------------------------------------------------------------------
 */

/* Transition: adds one return to the running moments. */
Datum
wval_moments_step(PG_FUNCTION_ARGS)
{
	MomentState *st = PG_ARGISNULL(0) ? NULL : (MomentState *) PG_GETARG_POINTER(0);
	MemoryContext aggctx = agg_context(fcinfo);
	int64		row = st ? st->n + 1 : 1;
	double		x = row_return(fcinfo, row);
	int32		ppy = row_periods_per_year(fcinfo, row, st ? st->periods_per_year : 0);
	double		delta;

	if (st == NULL)
	{
		st = (MomentState *) MemoryContextAllocZero(aggctx, sizeof(MomentState));
		st->periods_per_year = ppy;
	}
	st->n++;
	delta = x - st->mean;
	st->mean += delta / st->n;
	st->m2 += delta * (x - st->mean);
	if (x < 0)
		st->neg2 += x * x;
	PG_RETURN_POINTER(st);
}

/* Combine: merges two partial states (Chan et al.'s pairwise update). */
Datum
wval_moments_combine(PG_FUNCTION_ARGS)
{
	MomentState *a = PG_ARGISNULL(0) ? NULL : (MomentState *) PG_GETARG_POINTER(0);
	MomentState *b = PG_ARGISNULL(1) ? NULL : (MomentState *) PG_GETARG_POINTER(1);
	MemoryContext aggctx = agg_context(fcinfo);
	int64		n;
	double		delta;

	if (b == NULL || b->n == 0)
	{
		if (a == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(a);
	}
	if (a == NULL)
	{
		a = (MomentState *) MemoryContextAlloc(aggctx, sizeof(MomentState));
		*a = *b;
		PG_RETURN_POINTER(a);
	}
	if (a->periods_per_year != b->periods_per_year)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
				 errmsg("\"periods_per_year\" must be the same in every row"),
				 errdetail("Rows have %d and %d.", a->periods_per_year, b->periods_per_year),
				 errhint("Aggregate series of one frequency at a time.")));
	n = a->n + b->n;
	delta = b->mean - a->mean;
	a->mean += delta * ((double) b->n / n);
	a->m2 += b->m2 + delta * delta * ((double) a->n * (double) b->n / n);
	a->neg2 += b->neg2;
	a->n = n;
	PG_RETURN_POINTER(a);
}

/* Serializes a MomentState for parallel aggregation. */
Datum
wval_moments_serialize(PG_FUNCTION_ARGS)
{
	MomentState *st = (MomentState *) PG_GETARG_POINTER(0);
	StringInfoData buf;

	agg_context(fcinfo);
	pq_begintypsend(&buf);
	pq_sendint64(&buf, st->n);
	pq_sendfloat8(&buf, st->mean);
	pq_sendfloat8(&buf, st->m2);
	pq_sendfloat8(&buf, st->neg2);
	pq_sendint32(&buf, st->periods_per_year);
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

/* Deserializes a MomentState. */
Datum
wval_moments_deserialize(PG_FUNCTION_ARGS)
{
	bytea	   *data = PG_GETARG_BYTEA_PP(0);
	StringInfoData buf;
	MomentState *st;

	agg_context(fcinfo);
	buf.data = VARDATA_ANY(data);
	buf.len = VARSIZE_ANY_EXHDR(data);
	buf.maxlen = buf.len;
	buf.cursor = 0;
	st = (MomentState *) palloc(sizeof(MomentState));
	st->n = pq_getmsgint64(&buf);
	st->mean = pq_getmsgfloat8(&buf);
	st->m2 = pq_getmsgfloat8(&buf);
	st->neg2 = pq_getmsgfloat8(&buf);
	st->periods_per_year = pq_getmsgint(&buf, 4);
	pq_getmsgend(&buf);
	PG_RETURN_POINTER(st);
}

/* Final: annualised Sharpe ratio; null when n < 2 or the deviation is 0. */
Datum
wval_sharpe_final(PG_FUNCTION_ARGS)
{
	MomentState *st = PG_ARGISNULL(0) ? NULL : (MomentState *) PG_GETARG_POINTER(0);

	if (st == NULL || st->n < 2 || !(st->m2 > 0.0))
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(st->mean / sqrt(st->m2 / (st->n - 1)) *
					 sqrt((double) st->periods_per_year));
}

/* Final: annualised Sortino ratio; Infinity when no loss and a positive mean. */
Datum
wval_sortino_final(PG_FUNCTION_ARGS)
{
	MomentState *st = PG_ARGISNULL(0) ? NULL : (MomentState *) PG_GETARG_POINTER(0);
	double		d;

	if (st == NULL || st->n < 2)
		PG_RETURN_NULL();
	d = sqrt(st->neg2 / st->n);
	if (d == 0.0)
	{
		if (st->mean > 0)
			PG_RETURN_FLOAT8(INFINITY);
		PG_RETURN_NULL();
	}
	PG_RETURN_FLOAT8(st->mean / d * sqrt((double) st->periods_per_year));
}


/* ---------------------------------------------------------------------
 * wval_max_drawdown
 * ---------------------------------------------------------------------
 */

/* Transition: advances the wealth path by one return. */
Datum
wval_drawdown_step(PG_FUNCTION_ARGS)
{
	WvalDrawdown *d = PG_ARGISNULL(0) ? NULL : (WvalDrawdown *) PG_GETARG_POINTER(0);
	MemoryContext aggctx = agg_context(fcinfo);
	double		r = row_return(fcinfo, d ? d->n + 1 : 1);

	if (d == NULL)
	{
		d = (WvalDrawdown *) MemoryContextAlloc(aggctx, sizeof(WvalDrawdown));
		wval_drawdown_init(d);
	}
	wval_dd_step(d, r);
	PG_RETURN_POINTER(d);
}

/* Final: the maximum drawdown (a fraction in [0, 1)). */
Datum
wval_drawdown_final(PG_FUNCTION_ARGS)
{
	WvalDrawdown *d = PG_ARGISNULL(0) ? NULL : (WvalDrawdown *) PG_GETARG_POINTER(0);

	if (d == NULL || d->n == 0)
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(wval_drawdown_result(d));
}


/* ---------------------------------------------------------------------
 * wval_metrics_agg, wval_var, wval_es
 * ---------------------------------------------------------------------
 */

/* Appends one row to a buffer, creating it on the first row. */
static ReturnBuffer *
buffer_append(FunctionCallInfo fcinfo, ReturnBuffer *buf, double v)
{
	MemoryContext aggctx = agg_context(fcinfo);

	if (buf == NULL)
	{
		buf = (ReturnBuffer *) MemoryContextAllocZero(aggctx, sizeof(ReturnBuffer));
		buf->cap = INITIAL_BUFFER;
		buf->vals = (double *) MemoryContextAlloc(aggctx, buf->cap * sizeof(double));
	}
	if (buf->n == buf->cap)
	{
		if (buf->n >= WVAL_MAX_RETURNS)
			wval_reject_too_long("r", (int64) buf->n + 1);
		buf->cap = Min(buf->cap * 2, WVAL_MAX_RETURNS);
		buf->vals = (double *) repalloc(buf->vals, buf->cap * sizeof(double));
	}
	buf->vals[buf->n++] = v;
	return buf;
}

/* Transition of wval_metrics_agg: appends one return (in call order). */
Datum
wval_series_step(PG_FUNCTION_ARGS)
{
	ReturnBuffer *buf = PG_ARGISNULL(0) ? NULL : (ReturnBuffer *) PG_GETARG_POINTER(0);
	int64		row = buf ? (int64) buf->n + 1 : 1;
	double		r = row_return(fcinfo, row);
	int32		ppy = row_periods_per_year(fcinfo, row, buf ? buf->periods_per_year : 0);

	buf = buffer_append(fcinfo, buf, r);
	buf->periods_per_year = ppy;
	PG_RETURN_POINTER(buf);
}

/* Final of wval_metrics_agg: the pack of the buffered series. */
Datum
wval_metrics_final(PG_FUNCTION_ARGS)
{
	ReturnBuffer *buf = PG_ARGISNULL(0) ? NULL : (ReturnBuffer *) PG_GETARG_POINTER(0);
	WvalMetricsOptions opt;

	if (buf == NULL)
		PG_RETURN_NULL();
	wval_metrics_options_init(&opt);
	opt.periods_per_year = buf->periods_per_year;
	PG_RETURN_JSONB_P(wval_compute_metrics(buf->vals, buf->n, &opt));
}

/* Transition of wval_var / wval_es: adds one return to the bag. */
Datum
wval_tail_step(PG_FUNCTION_ARGS)
{
	ReturnBuffer *buf = PG_ARGISNULL(0) ? NULL : (ReturnBuffer *) PG_GETARG_POINTER(0);
	int64		row = buf ? (int64) buf->n + 1 : 1;
	double		r = row_return(fcinfo, row);
	double		p;

	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
				 errmsg("\"p\" must not be null"),
				 errdetail("Row " INT64_FORMAT " has a null p.", row),
				 errhint("Pass the tail probability, e.g. 0.01 for the 1 %% tail.")));
	p = PG_GETARG_FLOAT8(2);
	if (buf == NULL)
		wval_check_tail_probability(p);
	else if (p != buf->p)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
				 errmsg("\"p\" must be the same in every row"),
				 errdetail("Row " INT64_FORMAT " has %g, earlier rows %g.", row, p, buf->p),
				 errhint("Pass the tail probability as a constant.")));
	buf = buffer_append(fcinfo, buf, r);
	buf->p = p;
	PG_RETURN_POINTER(buf);
}

/* Final of wval_var: max(0, -Q(p)); null with fewer than 2 rows. */
Datum
wval_var_final(PG_FUNCTION_ARGS)
{
	ReturnBuffer *buf = PG_ARGISNULL(0) ? NULL : (ReturnBuffer *) PG_GETARG_POINTER(0);
	double		var;
	double		es;

	if (buf == NULL || buf->n < 2)
		PG_RETURN_NULL();
	wval_tail_risk_inplace(buf->vals, buf->n, buf->p, &var, &es);
	PG_RETURN_FLOAT8(var);
}

/* Final of wval_es: max(0, -mean{r <= Q(p)}); null with fewer than 2 rows. */
Datum
wval_es_final(PG_FUNCTION_ARGS)
{
	ReturnBuffer *buf = PG_ARGISNULL(0) ? NULL : (ReturnBuffer *) PG_GETARG_POINTER(0);
	double		var;
	double		es;

	if (buf == NULL || buf->n < 2)
		PG_RETURN_NULL();
	wval_tail_risk_inplace(buf->vals, buf->n, buf->p, &var, &es);
	PG_RETURN_FLOAT8(es);
}
