/*-------------------------------------------------------------------------
 *
 * schedule.c
 *	  A small cron-expression evaluator for the schedule watchdog (docs/live.md,
 *	  "Schedules"): which minutes a pg_cron schedule is expected to
 *	  fire, so that wval can compare them with cron.job_run_details.
 *
 * The accepted language is the one of pg_cron (vixie cron): five fields
 * minute (0-59), hour (0-23), day of month (1-31), month (1-12 or jan-dec)
 * and day of week (0-7 or sun-sat, 0 and 7 both Sunday), each a comma list
 * of "*", a value, or a range "a-b", optionally followed by a step "/s";
 * "a/s" is read as "a-max/s".  The macros @yearly, @annually, @monthly,
 * @weekly, @daily, @midnight and @hourly stand for their five fields.
 *
 * Day of month and day of week combine as in vixie cron: when either field
 * starts with "*", a day must match both; otherwise it must match one of
 * them ("0 0 1 * mon" fires on the first of the month and on Mondays).
 *
 * Times are evaluated on the wall clock of a time zone (pg_cron 1.4 uses
 * GMT; later versions read cron.timezone) by converting to and from
 * timestamp without time zone, so PostgreSQL's own zone rules apply.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "datatype/timestamp.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "wval.h"

/* wval.schedule_grace: seconds a run may start late before it counts as missed */
static int	wval_schedule_grace_s = 120;

/* The minutes a schedule matches, one bit per allowed value */
typedef struct CronSpec
{
	uint64		minutes;		/* bits 0-59 */
	uint32		hours;			/* bits 0-23 */
	uint32		days;			/* bits 1-31 */
	uint32		months;			/* bits 1-12 */
	uint32		weekdays;		/* bits 0-6, 0 = Sunday */
	bool		days_star;		/* day-of-month field starts with '*' */
	bool		weekdays_star;	/* day-of-week field starts with '*' */
} CronSpec;

/* One field of the five: its name, range and value names */
typedef struct CronField
{
	const char *name;
	int			lo;
	int			hi;
	const char *const *names;	/* NULL, or names of lo .. lo + nnames - 1 */
	int			nnames;
} CronField;

static const char *const month_names[] = {
	"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"
};
static const char *const weekday_names[] = {
	"sun", "mon", "tue", "wed", "thu", "fri", "sat"
};

static const CronField cron_fields[5] = {
	{"minute", 0, 59, NULL, 0},
	{"hour", 0, 23, NULL, 0},
	{"day of month", 1, 31, NULL, 0},
	{"month", 1, 12, month_names, 12},
	{"day of week", 0, 7, weekday_names, 7},
};

/* Macros and the five fields they stand for */
static const struct
{
	const char *macro;
	const char *fields;
}			cron_macros[] = {
	{"@yearly", "0 0 1 1 *"},
	{"@annually", "0 0 1 1 *"},
	{"@monthly", "0 0 1 * *"},
	{"@weekly", "0 0 * * 0"},
	{"@daily", "0 0 * * *"},
	{"@midnight", "0 0 * * *"},
	{"@hourly", "0 * * * *"},
};

/* A match is searched at most this many years ahead ("0 0 30 2 *" never fires) */
#define CRON_MAX_YEARS 10

/* Most expected times one call of wval._cron_times returns */
#define CRON_MAX_TIMES 100000

/*
 * Reads one value (a number, or a name of the field) at *p; advances *p.
 * Returns false with *error set when there is none or it is out of range.
 */
static bool
cron_value(const char **p, const CronField *f, int *out, char **error)
{
	const char *s = *p;

	if (isdigit((unsigned char) *s))
	{
		int			v = 0;

		while (isdigit((unsigned char) *s))
		{
			if (v > 1000)
				break;
			v = v * 10 + (*s - '0');
			s++;
		}
		if (isdigit((unsigned char) *s) || v < f->lo || v > f->hi)
		{
			*error = psprintf("The %s value %.*s is outside %d-%d", f->name,
							  (int) strspn(*p, "0123456789"), *p, f->lo, f->hi);
			return false;
		}
		*out = v;
		*p = s;
		return true;
	}
	if (f->names != NULL && isalpha((unsigned char) *s))
	{
		int			i;

		for (i = 0; i < f->nnames; i++)
		{
			if (pg_strncasecmp(s, f->names[i], 3) == 0 && !isalpha((unsigned char) s[3]))
			{
				*out = f->lo + i;
				*p = s + 3;
				return true;
			}
		}
	}
	if (strcspn(s, ",-/") == 0)
		*error = psprintf("The %s field has an empty item", f->name);
	else
		*error = psprintf("The %s field has \"%.*s\" where a value was expected", f->name,
						  (int) strcspn(s, ",-/"), s);
	return false;
}

/*
 * Parses one field (a comma list of items) into a bit set; false with
 * *error set on the first problem.
 */
static bool
cron_field(const char *text, const CronField *f, uint64 *bits, char **error)
{
	const char *p = text;

	*bits = 0;
	for (;;)
	{
		int			a,
					b,
					step = 1,
					v;
		bool		star = false;

		if (*p == '*')
		{
			a = f->lo;
			b = f->hi;
			star = true;
			p++;
		}
		else
		{
			if (!cron_value(&p, f, &a, error))
				return false;
			b = a;
			if (*p == '-')
			{
				p++;
				if (!cron_value(&p, f, &b, error))
					return false;
				if (b < a)
				{
					*error = psprintf("The %s range %d-%d runs backwards", f->name, a, b);
					return false;
				}
			}
		}
		if (*p == '/')
		{
			const char *s = ++p;

			step = 0;
			while (isdigit((unsigned char) *p) && step <= 1000)
				step = step * 10 + (*p++ - '0');
			if (p == s || step < 1 || step > f->hi)
			{
				*error = psprintf("The %s step \"%.*s\" is not a whole number between 1 and %d",
								  f->name, (int) strcspn(s, ","), s, f->hi);
				return false;
			}
			if (!star && b == a)
				b = f->hi;		/* "a/s" = "a-max/s" */
		}
		for (v = a; v <= b; v += step)
			*bits |= UINT64CONST(1) << v;
		if (*p == '\0')
			return true;
		if (*p != ',' || p[1] == '\0')
		{
			*error = psprintf("The %s field has an unexpected \"%s\"", f->name, p);
			return false;
		}
		p++;
	}
}

/*
 * Parses a cron expression; false with *error set (a sentence naming the
 * field) when it is not one.
 */
static bool
cron_parse(const char *expr, CronSpec *spec, char **error)
{
	char	   *copy;
	char	   *fields[5];
	int			n = 0;
	char	   *p;
	uint64		bits[5];
	int			i;

	while (isspace((unsigned char) *expr))
		expr++;
	if (*expr == '@')
	{
		size_t		len = strcspn(expr, " \t\r\n");

		for (i = 0; i < (int) lengthof(cron_macros); i++)
			if (strlen(cron_macros[i].macro) == len &&
				pg_strncasecmp(expr, cron_macros[i].macro, len) == 0 &&
				expr[len + strspn(expr + len, " \t\r\n")] == '\0')
				return cron_parse(cron_macros[i].fields, spec, error);
		*error = psprintf("Unknown macro \"%.*s\"", (int) len, expr);
		return false;
	}

	copy = pstrdup(expr);
	p = copy;
	for (;;)
	{
		while (isspace((unsigned char) *p))
			*p++ = '\0';
		if (*p == '\0')
			break;
		if (n < 5)
			fields[n] = p;
		n++;
		while (*p != '\0' && !isspace((unsigned char) *p))
			p++;
	}
	if (n != 5)
	{
		*error = psprintf("The expression has %d field%s; a cron expression has 5 (minute hour day-of-month month day-of-week)",
						  n, n == 1 ? "" : "s");
		return false;
	}
	for (i = 0; i < 5; i++)
		if (!cron_field(fields[i], &cron_fields[i], &bits[i], error))
			return false;

	spec->minutes = bits[0];
	spec->hours = (uint32) bits[1];
	spec->days = (uint32) bits[2];
	spec->months = (uint32) bits[3];
	/* 7 is Sunday too */
	spec->weekdays = (uint32) ((bits[4] | (bits[4] >> 7)) & 0x7f);
	spec->days_star = fields[2][0] == '*';
	spec->weekdays_star = fields[4][0] == '*';
	return true;
}

/* Parses a cron expression or raises 22023 naming what is wrong */
static void
cron_parse_or_error(const char *expr, CronSpec *spec)
{
	char	   *error = NULL;

	if (!cron_parse(expr, spec, &error))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid cron expression \"%s\"", expr),
				 errdetail("%s.", error),
				 errhint("Use five fields: minute hour day-of-month month day-of-week, e.g. '15 2 * * *' (each a list of *, values, ranges a-b and steps /s), or @hourly, @daily, @weekly, @monthly, @yearly.")));
}

/* True when the day of tm matches the day-of-month and day-of-week fields */
static bool
cron_day_matches(const CronSpec *s, const struct pg_tm *tm)
{
	int			wday = j2day(date2j(tm->tm_year, tm->tm_mon, tm->tm_mday));
	bool		dom = (s->days & (((uint32) 1) << tm->tm_mday)) != 0;
	bool		dow = (s->weekdays & (((uint32) 1) << wday)) != 0;

	if (s->days_star || s->weekdays_star)
		return dom && dow;
	return dom || dow;
}

/* A wall-clock timestamp of a calendar minute */
static Timestamp
cron_wall(int year, int mon, int mday, int hour, int min)
{
	struct pg_tm tm;
	Timestamp	t;

	memset(&tm, 0, sizeof(tm));
	tm.tm_year = year;
	tm.tm_mon = mon;
	tm.tm_mday = mday;
	tm.tm_hour = hour;
	tm.tm_min = min;
	if (tm2timestamp(&tm, 0, NULL, &t) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	return t;
}

/*
 * The first wall-clock minute strictly after `after` that the schedule
 * matches; false when there is none within CRON_MAX_YEARS.
 */
static bool
cron_next_wall(const CronSpec *s, Timestamp after, Timestamp *result)
{
	struct pg_tm tm;
	fsec_t		fsec;
	Timestamp	t;
	int			limit_year;

	/* the next whole minute */
	t = after - after % USECS_PER_MINUTE;
	if (after % USECS_PER_MINUTE < 0)
		t -= USECS_PER_MINUTE;
	t += USECS_PER_MINUTE;
	if (timestamp2tm(t, NULL, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	limit_year = tm.tm_year + CRON_MAX_YEARS;

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (timestamp2tm(t, NULL, &tm, &fsec, NULL, NULL) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
					 errmsg("timestamp out of range")));
		if (tm.tm_year > limit_year)
			return false;
		if ((s->months & (((uint32) 1) << tm.tm_mon)) == 0)
		{
			/* first minute of the next month */
			t = tm.tm_mon == 12 ? cron_wall(tm.tm_year + 1, 1, 1, 0, 0) :
				cron_wall(tm.tm_year, tm.tm_mon + 1, 1, 0, 0);
			continue;
		}
		if (!cron_day_matches(s, &tm))
		{
			t = cron_wall(tm.tm_year, tm.tm_mon, tm.tm_mday, 0, 0) + USECS_PER_DAY;
			continue;
		}
		if ((s->hours & (((uint32) 1) << tm.tm_hour)) == 0)
		{
			t = cron_wall(tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, 0) + USECS_PER_HOUR;
			continue;
		}
		if ((s->minutes & (UINT64CONST(1) << tm.tm_min)) == 0)
		{
			t += USECS_PER_MINUTE;
			continue;
		}
		*result = t;
		return true;
	}
}

/* timestamptz -> wall clock of zone tz */
static Timestamp
to_wall(TimestampTz t, text *tz)
{
	return DatumGetTimestamp(DirectFunctionCall2(timestamptz_zone, PointerGetDatum(tz),
												 TimestampTzGetDatum(t)));
}

/* wall clock of zone tz -> timestamptz */
static TimestampTz
from_wall(Timestamp t, text *tz)
{
	return DatumGetTimestampTz(DirectFunctionCall2(timestamp_zone, PointerGetDatum(tz),
												   TimestampGetDatum(t)));
}

/*
 * The first instant strictly after `after` at which the schedule fires in
 * zone tz; false when it never does.  Around a daylight-saving change a
 * wall-clock minute can map to an instant that is not later than `after`;
 * the search then goes on from the next minute.
 */
static bool
cron_next(const CronSpec *s, TimestampTz after, text *tz, TimestampTz *result)
{
	Timestamp	wall = to_wall(after, tz);
	int			guard;

	for (guard = 0; guard < 240; guard++)
	{
		Timestamp	next;
		TimestampTz instant;

		if (!cron_next_wall(s, wall, &next))
			return false;
		instant = from_wall(next, tz);
		if (instant > after)
		{
			*result = instant;
			return true;
		}
		wall = next;
	}
	return false;
}

/* Rejects non-finite timestamps (22023, naming the argument) */
static void
check_finite(TimestampTz t, const char *field)
{
	if (TIMESTAMP_NOT_FINITE(t))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" must be a finite timestamp", field),
				 errhint("Pass a point in time such as now().")));
}

PG_FUNCTION_INFO_V1(wval_cron_valid);

/* wval._cron_valid(schedule text) → boolean: true for a cron expression wval can evaluate */
Datum
wval_cron_valid(PG_FUNCTION_ARGS)
{
	CronSpec	spec;
	char	   *error = NULL;

	PG_RETURN_BOOL(cron_parse(text_to_cstring(PG_GETARG_TEXT_PP(0)), &spec, &error));
}

PG_FUNCTION_INFO_V1(wval_cron_check);

/* wval._cron_check(schedule text) → text: the schedule, or 22023 naming the broken field */
Datum
wval_cron_check(PG_FUNCTION_ARGS)
{
	CronSpec	spec;

	cron_parse_or_error(text_to_cstring(PG_GETARG_TEXT_PP(0)), &spec);
	PG_RETURN_TEXT_P(PG_GETARG_TEXT_PP(0));
}

PG_FUNCTION_INFO_V1(wval_cron_next);

/*
 * wval._cron_next(schedule text, after timestamptz, tz text) → timestamptz:
 * the first time strictly after `after` at which the schedule fires; null
 * when it never fires (e.g. "0 0 30 2 *").
 */
Datum
wval_cron_next(PG_FUNCTION_ARGS)
{
	CronSpec	spec;
	TimestampTz after = PG_GETARG_TIMESTAMPTZ(1);
	TimestampTz next;

	cron_parse_or_error(text_to_cstring(PG_GETARG_TEXT_PP(0)), &spec);
	check_finite(after, "after");
	if (!cron_next(&spec, after, PG_GETARG_TEXT_PP(2), &next))
		PG_RETURN_NULL();
	PG_RETURN_TIMESTAMPTZ(next);
}

/* State of wval._cron_times across calls */
typedef struct CronTimesState
{
	CronSpec	spec;
	TimestampTz last;
	TimestampTz until;
	text	   *tz;
	int			max_rows;
} CronTimesState;

PG_FUNCTION_INFO_V1(wval_cron_times);

/*
 * wval._cron_times(schedule text, after timestamptz, until timestamptz,
 * tz text, max_rows integer) → setof timestamptz: the times in
 * (after, until] at which the schedule fires, oldest first, at most
 * max_rows of them.
 */
Datum
wval_cron_times(PG_FUNCTION_ARGS)
{
	FuncCallContext *fctx;
	CronTimesState *st;
	TimestampTz next;

	if (SRF_IS_FIRSTCALL())
	{
		MemoryContext old;
		int			max_rows = PG_GETARG_INT32(4);

		fctx = SRF_FIRSTCALL_INIT();
		old = MemoryContextSwitchTo(fctx->multi_call_memory_ctx);
		st = palloc0(sizeof(CronTimesState));
		cron_parse_or_error(text_to_cstring(PG_GETARG_TEXT_PP(0)), &st->spec);
		st->last = PG_GETARG_TIMESTAMPTZ(1);
		st->until = PG_GETARG_TIMESTAMPTZ(2);
		check_finite(st->last, "after");
		check_finite(st->until, "until");
		st->tz = PG_GETARG_TEXT_P_COPY(3);
		if (max_rows < 0 || max_rows > CRON_MAX_TIMES)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid value for \"max_rows\""),
					 errdetail("max_rows is %d.", max_rows),
					 errhint("Pass a number between 0 and %d.", CRON_MAX_TIMES)));
		st->max_rows = max_rows;
		fctx->user_fctx = st;
		MemoryContextSwitchTo(old);
	}
	fctx = SRF_PERCALL_SETUP();
	st = (CronTimesState *) fctx->user_fctx;
	if ((int) fctx->call_cntr < st->max_rows && st->last < st->until &&
		cron_next(&st->spec, st->last, st->tz, &next) && next <= st->until)
	{
		st->last = next;
		SRF_RETURN_NEXT(fctx, TimestampTzGetDatum(next));
	}
	SRF_RETURN_DONE(fctx);
}

/* Registers the watchdog's setting (called from _PG_init). */
void
wval_schedule_init(void)
{
	DefineCustomIntVariable("wval.schedule_grace",
							"How late a pg_cron run of a wval job may start before the watchdog calls it missed.",
							"Read by wval_watchdog() and wval.schedule_health.",
							&wval_schedule_grace_s,
							120, 0, 86400,
							PGC_USERSET, GUC_UNIT_S,
							NULL, NULL, NULL);
}
