/*-------------------------------------------------------------------------
 *
 * live.c
 *	  Live monitoring (docs/live.md): the input rules of recorded live
 *	  returns, the realized metrics of the calendar windows of a live run,
 *	  and the live_monitoring checks of a policy version.
 *
 * The orchestration (reading the latest return per day, storing the run,
 * flagging demotion candidates) is SQL in live.sql; what is here is the
 * arithmetic and the access to the cached, materialised policy, so that
 * a run of wval_live_run_all() over many strategies of one world builds
 * the world's policy once per backend.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "jsonb.h"
#include "metrics.h"
#include "policy.h"
#include "wval.h"

/* docs/live.md: realized Sharpe is annualised with P = 252 */
#define LIVE_PERIODS_PER_YEAR 252

/* ES at 97.5 %: the mean of the worst 2.5 % */
#define LIVE_ES_TAIL 0.025

/* A day array as a palloc'd DateADT array; raises WV001 naming `field` */
static DateADT *
days_from_array(ArrayType *arr, const char *field, int *n)
{
	int			ndim = ARR_NDIM(arr);
	int			nitems;
	Datum	   *elems;
	bool	   *nulls;
	DateADT    *out;
	int			i;

	if (ndim > 1)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
				 errmsg("\"%s\" must be a one-dimensional array", field),
				 errdetail("The array has %d dimensions.", ndim),
				 errhint("Pass one flat array of days, aligned with the returns.")));
	deconstruct_array(arr, DATEOID, sizeof(DateADT), true, TYPALIGN_INT, &elems, &nulls, &nitems);
	out = palloc(sizeof(DateADT) * Max(nitems, 1));
	for (i = 0; i < nitems; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
					 errmsg("\"%s\" must not contain nulls", field),
					 errdetail("Element %d is null.", i + 1),
					 errhint("Pass one day per return, in the same order as the returns.")));
		out[i] = DatumGetDateADT(elems[i]);
		if (DATE_NOT_FINITE(out[i]))
			ereport(ERROR,
					(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
					 errmsg("\"%s\" must contain only finite dates", field),
					 errdetail("Element %d is %s.", i + 1,
							   DATE_IS_NOBEGIN(out[i]) ? "-infinity" : "infinity"),
					 errhint("Pass calendar days such as '2026-11-27'.")));
	}
	*n = nitems;
	return out;
}

/* The ISO text form of a finite date (for messages, whatever DateStyle is) */
static char *
date_text(DateADT d)
{
	int			year,
				month,
				day;

	j2date(d + POSTGRES_EPOCH_JDATE, &year, &month, &day);
	return psprintf("%04d-%02d-%02d", year, month, day);
}

/* A day and its 1-based position, for finding repeated days */
typedef struct DayPos
{
	DateADT		day;
	int			pos;
} DayPos;

/* Orders DayPos by day, then position */
static int
daypos_cmp(const void *a, const void *b)
{
	const DayPos *x = (const DayPos *) a;
	const DayPos *y = (const DayPos *) b;

	if (x->day != y->day)
		return x->day < y->day ? -1 : 1;
	return x->pos < y->pos ? -1 : x->pos > y->pos ? 1 : 0;
}

/*
 * Raises WV001 when a day occurs twice, naming the first such pair of
 * positions (the lowest second position).
 */
static void
check_distinct_days(const DateADT *days, int n)
{
	DayPos	   *s = palloc(sizeof(DayPos) * Max(n, 1));
	int			i;
	int			first = -1,
				second = -1;

	for (i = 0; i < n; i++)
	{
		s[i].day = days[i];
		s[i].pos = i + 1;
	}
	qsort(s, n, sizeof(DayPos), daypos_cmp);
	for (i = 1; i < n; i++)
		if (s[i].day == s[i - 1].day && (second < 0 || s[i].pos < second))
		{
			int			j = i - 1;

			/* the earliest occurrence of this day */
			while (j > 0 && s[j - 1].day == s[i].day)
				j--;
			first = s[j].pos;
			second = s[i].pos;
		}
	if (second > 0)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
				 errmsg("\"days\" must not repeat a day"),
				 errdetail("Elements %d and %d are both %s.", first, second,
						   date_text(days[first - 1])),
				 errhint("Pass each day once per call; a correction of a day is a later call for that day (the latest row counts).")));
	pfree(s);
}

PG_FUNCTION_INFO_V1(wval_live_check_input);

/*
 * wval._live_check_input(days date[], rets float8[]) → integer: checks a
 * batch of live returns against the input rules of docs/metrics.md (WV001
 * naming the index) and returns its length.
 */
Datum
wval_live_check_input(PG_FUNCTION_ARGS)
{
	DateADT    *days;
	int			ndays;
	int			nrets;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
				 errmsg("\"%s\" must not be null", PG_ARGISNULL(0) ? "days" : "rets"),
				 errhint("Pass two arrays of the same length: the days and their returns.")));
	(void) wval_returns_from_array(PG_GETARG_ARRAYTYPE_P(1), "rets", &nrets);
	days = days_from_array(PG_GETARG_ARRAYTYPE_P(0), "days", &ndays);
	if (ndays != nrets)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
				 errmsg("\"days\" and \"rets\" must have the same length"),
				 errdetail("days has %d elements, rets has %d.", ndays, nrets),
				 errhint("Pass one return per day, in the same order.")));
	check_distinct_days(days, ndays);
	PG_RETURN_INT32(ndays);
}

PG_FUNCTION_INFO_V1(wval_live_windows);

/*
 * wval._live_windows(days date[], rets float8[], as_of date, windows
 * integer[]) → jsonb: for each window W the realized metrics of the
 * returns whose day is in (as_of - W, as_of]: {"W": {"sharpe",
 * "max_drawdown", "es_p025", "n_obs"}, ...}.  A window with fewer than 2
 * observations has null metrics.  days must be ascending and distinct
 * (one return per day, as wval.live_returns_current gives them).
 */
Datum
wval_live_windows(PG_FUNCTION_ARGS)
{
	int			ndays,
				nrets,
				nwin;
	DateADT    *days = days_from_array(PG_GETARG_ARRAYTYPE_P(0), "days", &ndays);
	double	   *r = wval_returns_from_array(PG_GETARG_ARRAYTYPE_P(1), "rets", &nrets);
	DateADT		as_of = PG_GETARG_DATEADT(2);
	Datum	   *welems;
	bool	   *wnulls;
	JsonbParseState *ps = NULL;
	int			i,
				k;

	if (ndays != nrets)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
				 errmsg("\"days\" and \"rets\" must have the same length"),
				 errdetail("days has %d elements, rets has %d.", ndays, nrets),
				 errhint("Pass one return per day, in the same order.")));
	for (i = 1; i < ndays; i++)
		if (days[i] <= days[i - 1])
			ereport(ERROR,
					(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
					 errmsg("\"days\" must be ascending and distinct"),
					 errdetail("Element %d (%s) does not follow element %d (%s).", i + 1,
							   date_text(days[i]), i, date_text(days[i - 1])),
					 errhint("Pass the latest return of each day, ordered by day.")));
	if (DATE_NOT_FINITE(as_of))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"as_of\" must be a finite date"),
				 errhint("Pass the day the windows end, e.g. current_date.")));
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(3), INT4OID, sizeof(int32), true, TYPALIGN_INT,
					  &welems, &wnulls, &nwin);

	wval_jb_begin_object(&ps);
	for (k = 0; k < nwin; k++)
	{
		int			w;
		int			lo = 0,
					hi = 0,
					n;
		double		sharpe = 0,
					dd = 0,
					es = 0;
		bool		has_sharpe = false,
					has_dd = false,
					has_es = false;

		if (wnulls[k] || DatumGetInt32(welems[k]) < 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("\"windows\" must contain positive numbers of days"),
					 errdetail("Element %d is %s.", k + 1,
							   wnulls[k] ? "null" : psprintf("%d", DatumGetInt32(welems[k]))),
					 errhint("Pass the windows of live_monitoring.windows_days, e.g. {30,60,90}.")));
		w = DatumGetInt32(welems[k]);

		/* the days in (as_of - w, as_of] form the slice [lo, hi) */
		while (lo < ndays && days[lo] <= as_of - w)
			lo++;
		hi = lo;
		while (hi < ndays && days[hi] <= as_of)
			hi++;
		n = hi - lo;
		if (n >= 2)
		{
			has_sharpe = wval_sharpe_annual(r + lo, n, LIVE_PERIODS_PER_YEAR, 0.0, &sharpe);
			has_dd = wval_max_drawdown_of(r + lo, n, &dd);
			has_es = wval_es_historical(r + lo, n, LIVE_ES_TAIL, &es);
		}
		wval_jb_key(&ps, psprintf("%d", w));
		wval_jb_begin_object(&ps);
		wval_jb_kv_finite(&ps, "sharpe", has_sharpe, sharpe);
		wval_jb_kv_finite(&ps, "max_drawdown", has_dd, dd);
		wval_jb_kv_finite(&ps, "es_p025", has_es, es);
		wval_jb_kv_int64(&ps, "n_obs", n);
		wval_jb_end_object(&ps);
	}
	PG_RETURN_JSONB_P(wval_jb_end_object(&ps));
}

/*
 * The cached, materialised policy version of a world (SPI connected only
 * for the load); raises WV010 when the version does not exist.
 */
static WvalPolicy *
live_policy(FunctionCallInfo fcinfo)
{
	char	   *world;
	WvalPolicy *policy;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" must not be null", PG_ARGISNULL(0) ? "world_id" : "version"),
				 errhint("Pass the world and its policy version.")));
	world = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	policy = wval_policy_for_version(world, PG_GETARG_INT32(1),
									 PG_ARGISNULL(2) ? false : PG_GETARG_BOOL(2));
	SPI_finish();
	return policy;
}

/* Orders ints ascending */
static int
int_cmp(const void *a, const void *b)
{
	int			x = *(const int *) a;
	int			y = *(const int *) b;

	return x < y ? -1 : x > y ? 1 : 0;
}

PG_FUNCTION_INFO_V1(wval_live_policy);

/*
 * wval._live_policy(world_id text, version integer, fail_closed boolean)
 * → jsonb: the live-monitoring settings of a policy version:
 * {"windows_days": [ascending], "demote_after", "ruleset_hash", "checks"}.
 */
Datum
wval_live_policy(PG_FUNCTION_ARGS)
{
	WvalPolicy *policy = live_policy(fcinfo);
	int			windows[WVAL_MAX_LIVE_WINDOWS];
	JsonbParseState *ps = NULL;
	int			i;

	memcpy(windows, policy->live_windows, sizeof(int) * policy->nlive_windows);
	qsort(windows, policy->nlive_windows, sizeof(int), int_cmp);
	wval_jb_begin_object(&ps);
	wval_jb_key(&ps, "windows_days");
	wval_jb_begin_array(&ps);
	for (i = 0; i < policy->nlive_windows; i++)
		wval_jb_int64(&ps, windows[i]);
	wval_jb_end_array(&ps);
	wval_jb_kv_int64(&ps, "demote_after", policy->demote_after);
	wval_jb_kv_string(&ps, "ruleset_hash", policy->live->hash);
	wval_jb_kv_int64(&ps, "checks", policy->live->nrules);
	PG_RETURN_JSONB_P(wval_jb_end_object(&ps));
}

PG_FUNCTION_INFO_V1(wval_live_rules);

/*
 * wval._live_rules(world_id text, version integer, fail_closed boolean,
 * metrics jsonb, stage text) → jsonb: the live_monitoring checks of the
 * policy version applied to {"live": {...}} metrics, in the shape of
 * wval._apply_rules: {status, cleared, profile, ruleset_hash, results,
 * stopped_by, validation_error_count}.
 */
Datum
wval_live_rules(PG_FUNCTION_ARGS)
{
	WvalPolicy *policy = live_policy(fcinfo);
	WvalEvalInput in;
	WvalProfileOutcome out;

	memset(&in, 0, sizeof(in));
	in.metrics = PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3);
	in.stage = PG_ARGISNULL(4) ? "live" : text_to_cstring(PG_GETARG_TEXT_PP(4));
	in.now = GetCurrentTransactionStartTimestamp();
	wval_evaluate_ruleset(policy->live, &in, NULL, 0, &out);
	PG_RETURN_JSONB_P(wval_ruleset_outcome_jsonb(policy->live, &out));
}
