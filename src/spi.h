/*-------------------------------------------------------------------------
 *
 * spi.h
 *	  The one SPI layer of wval: statements prepared once per backend.
 *
 * A WvalPlan holds a statement's SQL, its argument count and types and,
 * once first used, the plan.  The plan is kept with SPI_keepplan, so the
 * plan cache re-plans it by itself when a table, function or search_path
 * it depends on changes; nothing else needs to invalidate it.  Declare
 * plans as static variables with WVAL_PLAN:
 *
 *		static WvalPlan plan_world = WVAL_PLAN(
 *			"SELECT settings FROM wval.worlds WHERE world_id = $1", 1, TEXTOID);
 *
 * and run them with wval_spi_exec inside SPI_connect / SPI_finish.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WVAL_SPI_H
#define WVAL_SPI_H

#include "postgres.h"

#include "access/genam.h"
#include "executor/spi.h"
#include "utils/rel.h"

/* the most arguments a kept statement takes (the run row of run.c: 29) */
#define WVAL_PLAN_MAX_ARGS 32

/* A statement prepared once per backend (see the file header). */
typedef struct WvalPlan
{
	const char *sql;
	int			nargs;
	Oid			types[WVAL_PLAN_MAX_ARGS];
	bool		generic;		/* one plan for all arguments, built once */
	SPIPlanPtr	plan;			/* NULL until first use */
} WvalPlan;

/* initialiser of a static WvalPlan: SQL, argument count, argument types */
#define WVAL_PLAN(sql_, nargs_, ...) \
	{.sql = (sql_), .nargs = (nargs_), .types = {__VA_ARGS__}}

/*
 * The same for a statement of the evaluation's hot path whose best plan
 * does not depend on its arguments (a row by key, an INSERT): the plan cache
 * builds its generic plan once per backend instead of planning each of the
 * first five runs for their arguments (CURSOR_OPT_GENERIC_PLAN).
 */
#define WVAL_PLAN_GENERIC(sql_, nargs_, ...) \
	{.sql = (sql_), .nargs = (nargs_), .types = {__VA_ARGS__}, .generic = true}

/* wval_spi_exec's expected: any non-error result */
#define WVAL_SPI_ANY 0

extern int	wval_spi_exec(WvalPlan *p, Datum *values, const char *nulls,
						  bool read_only, long count, int expected);
extern int	wval_spi_exec_latest(WvalPlan *p, Datum *values, const char *nulls, long count);
extern bool wval_spi_isnull(int row, int col);
extern Datum wval_spi_datum(int row, int col, bool *isnull);
extern char *wval_spi_text(int row, int col);
extern int64 wval_spi_int64(int row, int col, int64 if_null);

/*
 * Primary-key look-ups without SPI: the hot path reads a few rows by key
 * (a world, its activations, a policy version) with an index scan instead
 * of a statement that is parsed and planned in every new backend.  Like a
 * SPI query run by the extension's definer code, the scan sees the rows of
 * the active snapshot and ignores row-level security: the caller checks the
 * world access first.  wval_index_scan_begin reads through another index
 * of the table, optionally from past a bound on the next key column.
 */
typedef struct WvalKeyScan
{
	Relation	rel;
	Relation	idx;
	SysScanDesc scan;
} WvalKeyScan;

extern void wval_key_scan_begin(WvalKeyScan *s, const char *table, int nkeys, const Datum *keys);
extern void wval_index_scan_begin(WvalKeyScan *s, const char *table, const char *index, int nkeys,
								  const Datum *keys, const Datum *after);
extern HeapTuple wval_key_scan_next(WvalKeyScan *s, bool backward);
extern Datum wval_key_scan_attr(WvalKeyScan *s, HeapTuple tup, const char *column, bool *isnull);
extern void wval_key_scan_end(WvalKeyScan *s);

/*
 * Key look-ups: one row per key for many keys, through one index scan
 * rescanned for each (wval_key_lookup_begin in spi.c).
 */
typedef struct WvalKeyLookup
{
	Relation	rel;
	Relation	idx;
	IndexScanDesc scan;
	struct TupleTableSlot *slot;
	int			nkeys;
} WvalKeyLookup;

extern void wval_key_lookup_begin(WvalKeyLookup *l, const char *table, const char *index, int nkeys);
extern struct TupleTableSlot *wval_key_lookup(WvalKeyLookup *l, const Datum *keys);
extern void wval_key_lookup_end(WvalKeyLookup *l);
extern struct JsonbValue *wval_world_setting(const char *world, const char *key);

#endif							/* WVAL_SPI_H */
