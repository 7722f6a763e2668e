/*-------------------------------------------------------------------------
 *
 * spi.c
 *	  The one SPI layer of wval: kept plans, one exec function, getters.
 *
 * See spi.h.  Every C statement wval runs through SPI is a WvalPlan run
 * by wval_spi_exec; the getters read the current SPI_tuptable.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "utils/builtins.h"

#include "spi.h"

/* Prepares p once per backend and keeps the plan (re-planned by the plan cache when invalidated). */
static void
spi_prepare_kept(WvalPlan *p)
{
	SPIPlanPtr	plan;

	Assert(p->nargs >= 0 && p->nargs <= WVAL_PLAN_MAX_ARGS);
	plan = SPI_prepare(p->sql, p->nargs, p->types);
	if (plan == NULL)
		elog(ERROR, "could not prepare statement \"%s\": %s",
			 p->sql, SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "could not keep statement \"%s\"", p->sql);
	p->plan = plan;
}

/*
 * Runs a kept statement; prepares it on first use.  nulls as for
 * SPI_execute_plan (NULL: no argument is null).  expected is the SPI_OK_*
 * code the statement must return, or WVAL_SPI_ANY; any other result is an
 * internal error.  Returns the SPI result code.
 */
int
wval_spi_exec(WvalPlan *p, Datum *values, const char *nulls,
			  bool read_only, long count, int expected)
{
	int			ret;

	if (p->plan == NULL)
		spi_prepare_kept(p);
	ret = SPI_execute_plan(p->plan, values, nulls, read_only, count);
	if (ret < 0)
		elog(ERROR, "statement \"%s\" failed: %s", p->sql, SPI_result_code_string(ret));
	if (expected != WVAL_SPI_ANY && ret != expected)
		elog(ERROR, "statement \"%s\" returned %s, expected %s", p->sql,
			 SPI_result_code_string(ret), SPI_result_code_string(expected));
	return ret;
}

/* True when column col (1-based) of result row row is null. */
bool
wval_spi_isnull(int row, int col)
{
	bool		isnull;

	(void) SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, &isnull);
	return isnull;
}

/* Column col (1-based) of result row row as a Datum (in SPI memory). */
Datum
wval_spi_datum(int row, int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, isnull);
}

/* Column col of row row in its text form, palloc'd in the current context; NULL when null. */
char *
wval_spi_text(int row, int col)
{
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);
}

/* A boolean column; if_null when null. */
bool
wval_spi_bool(int row, int col, bool if_null)
{
	bool		isnull;
	Datum		d = wval_spi_datum(row, col, &isnull);

	return isnull ? if_null : DatumGetBool(d);
}

/* A bigint column; if_null when null. */
int64
wval_spi_int64(int row, int col, int64 if_null)
{
	bool		isnull;
	Datum		d = wval_spi_datum(row, col, &isnull);

	return isnull ? if_null : DatumGetInt64(d);
}

/* A double precision column; if_null when null. */
double
wval_spi_float8(int row, int col, double if_null)
{
	bool		isnull;
	Datum		d = wval_spi_datum(row, col, &isnull);

	return isnull ? if_null : DatumGetFloat8(d);
}
