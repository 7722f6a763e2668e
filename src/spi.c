/*-------------------------------------------------------------------------
 *
 * spi.c
 *	  The one SPI layer of wval: kept plans, one exec function, getters.
 *
 * See spi.h.  Every C statement wval runs through SPI is a WvalPlan run
 * by wval_spi_exec; the getters read the current SPI_tuptable.  The key
 * scans (wval_key_scan_*) read rows of wval's tables by primary key
 * without SPI, for the look-ups of the evaluation's hot path.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"

#include "spi.h"

/* Prepares p once per backend and keeps the plan (re-planned by the plan cache when invalidated). */
static void
spi_prepare_kept(WvalPlan *p)
{
	SPIPlanPtr	plan;

	Assert(p->nargs >= 0 && p->nargs <= WVAL_PLAN_MAX_ARGS);
	plan = SPI_prepare_cursor(p->sql, p->nargs, p->types,
							  p->generic ? CURSOR_OPT_GENERIC_PLAN : 0);
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

/*
 * Runs a kept read-only statement with a snapshot taken now instead of the
 * transaction's: at REPEATABLE READ and SERIALIZABLE it shows rows that
 * transactions committed after this one's snapshot (as the foreign-key
 * checks look for them).  Returns the SPI result code.
 */
int
wval_spi_exec_latest(WvalPlan *p, Datum *values, const char *nulls, long count)
{
	int			ret;

	if (p->plan == NULL)
		spi_prepare_kept(p);
	ret = SPI_execute_snapshot(p->plan, values, nulls, GetLatestSnapshot(), InvalidSnapshot,
							   true, false, count);
	if (ret < 0)
		elog(ERROR, "statement \"%s\" failed: %s", p->sql, SPI_result_code_string(ret));
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

/* A bigint column; if_null when null. */
int64
wval_spi_int64(int row, int col, int64 if_null)
{
	bool		isnull;
	Datum		d = wval_spi_datum(row, col, &isnull);

	return isnull ? if_null : DatumGetInt64(d);
}

/*
 * Opens wval.<table> and its primary key and starts an ordered scan of the
 * rows whose leading key columns equal keys (text, integer or bigint
 * Datums, in the key's column order; no keys: every row).  The text keys
 * compare with the index's collation, as the index orders them.  The scan
 * sees what a statement would: the active snapshot.
 */
void
wval_key_scan_begin(WvalKeyScan *s, const char *table, int nkeys, const Datum *keys)
{
	wval_index_scan_begin(s, table, NULL, nkeys, keys, NULL);
}

/*
 * wval_key_scan_begin through the index wval.<index> of the table (NULL:
 * its primary key).  With after, the scan starts past it: only the rows
 * whose next key column (the one after the nkeys equal ones) is greater
 * than *after.  A partial index yields only the rows of its predicate.
 */
/*
 * Opens wval.<table> and its index wval.<index> (NULL: the primary key),
 * checked: an index of that table, valid, with at least nkeys key columns.
 */
static void
open_indexed(const char *table, const char *index, int nkeys, Relation *rel, Relation *idx)
{
	Oid			nsp = get_namespace_oid("wval", false);
	Oid			relid = get_relname_relid(table, nsp);
	Oid			idxid;

	if (!OidIsValid(relid))
		elog(ERROR, "relation \"wval.%s\" does not exist", table);
	*rel = table_open(relid, AccessShareLock);
	idxid = index != NULL ? get_relname_relid(index, nsp) : RelationGetPrimaryKeyIndex(*rel);
	if (!OidIsValid(idxid))
		elog(ERROR, "index \"wval.%s\" of \"wval.%s\" does not exist", index != NULL ? index : "(primary key)", table);
	*idx = index_open(idxid, AccessShareLock);
	if ((*idx)->rd_index->indrelid != relid)
		elog(ERROR, "\"wval.%s\" is not an index of \"wval.%s\"", RelationGetRelationName(*idx), table);
	/* an index left invalid (a failed concurrent build) may lack rows */
	if (!(*idx)->rd_index->indisvalid)
		elog(ERROR, "index \"wval.%s\" is not valid; REINDEX it", RelationGetRelationName(*idx));
	if (nkeys < 0 || nkeys > IndexRelationGetNumberOfKeyAttributes(*idx))
		elog(ERROR, "wrong number of keys (%d) for the index \"wval.%s\"", nkeys, RelationGetRelationName(*idx));
}

/*
 * The scan key of the index's column i (0-based): equal to value, or
 * greater than it (bound); text compares with the index's collation.  attno
 * is the column's number as the scan wants it (systable scans: the heap's).
 */
static void
key_entry(ScanKey key, Relation idx, int i, AttrNumber attno, bool bound, Datum value)
{
	Oid			type = TupleDescAttr(RelationGetDescr(idx), i)->atttypid;
	RegProcedure op = type == TEXTOID ? (bound ? F_TEXT_GT : F_TEXTEQ) :
		type == INT4OID ? (bound ? F_INT4GT : F_INT4EQ) :
		type == INT8OID ? (bound ? F_INT8GT : F_INT8EQ) : InvalidOid;

	if (op == InvalidOid)
		elog(ERROR, "unsupported key type %u in the index \"wval.%s\"", type, RelationGetRelationName(idx));
	ScanKeyEntryInitialize(key, 0, attno, bound ? BTGreaterStrategyNumber : BTEqualStrategyNumber,
						   InvalidOid, idx->rd_indcollation[i], op, value);
}

void
wval_index_scan_begin(WvalKeyScan *s, const char *table, const char *index, int nkeys, const Datum *keys,
					  const Datum *after)
{
	ScanKeyData sk[INDEX_MAX_KEYS];
	int			nsk = nkeys + (after != NULL ? 1 : 0);
	int			i;

	open_indexed(table, index, nsk, &s->rel, &s->idx);
	/* systable scans take heap attribute numbers and map them to the index's */
	for (i = 0; i < nsk; i++)
		key_entry(&sk[i], s->idx, i, s->idx->rd_index->indkey.values[i], i == nkeys,
				  i == nkeys ? *after : keys[i]);
	s->scan = systable_beginscan_ordered(s->rel, s->idx,
										 ActiveSnapshotSet() ? GetActiveSnapshot() : GetTransactionSnapshot(),
										 nsk, sk);
}

/* The next row of a key scan (in key order, or backwards); NULL at the end. */
HeapTuple
wval_key_scan_next(WvalKeyScan *s, bool backward)
{
	return systable_getnext_ordered(s->scan, backward ? BackwardScanDirection : ForwardScanDirection);
}

/* A column of a row of a key scan, by name (valid until the scan moves on). */
Datum
wval_key_scan_attr(WvalKeyScan *s, HeapTuple tup, const char *column, bool *isnull)
{
	TupleDesc	desc = RelationGetDescr(s->rel);
	int			att = SPI_fnumber(desc, column);

	if (att <= 0)
		elog(ERROR, "column \"%s\" of \"wval.%s\" does not exist", column, RelationGetRelationName(s->rel));
	return heap_getattr(tup, att, desc, isnull);
}

/* Ends a key scan and closes its relations (the locks stay until the end of the transaction). */
void
wval_key_scan_end(WvalKeyScan *s)
{
	systable_endscan_ordered(s->scan);
	index_close(s->idx, AccessShareLock);
	table_close(s->rel, AccessShareLock);
}

/*
 * Key look-ups: one row per key, for many keys, through one index scan
 * rescanned for each (no scan, relation or key set up per key).  nkeys
 * leading columns of wval.<index> of the table (NULL: its primary key),
 * compared as wval_key_scan_begin compares them; the active snapshot.
 */
void
wval_key_lookup_begin(WvalKeyLookup *l, const char *table, const char *index, int nkeys)
{
	open_indexed(table, index, nkeys, &l->rel, &l->idx);
	l->nkeys = nkeys;
	l->slot = table_slot_create(l->rel, NULL);
	l->scan = index_beginscan(l->rel, l->idx, GetActiveSnapshot(), nkeys, 0);
}

/* The row of these keys (valid until the next look-up), or NULL. */
TupleTableSlot *
wval_key_lookup(WvalKeyLookup *l, const Datum *keys)
{
	ScanKeyData sk[INDEX_MAX_KEYS];
	int			i;

	for (i = 0; i < l->nkeys; i++)
		key_entry(&sk[i], l->idx, i, i + 1, false, keys[i]);
	index_rescan(l->scan, sk, l->nkeys, NULL, 0);
	return index_getnext_slot(l->scan, ForwardScanDirection, l->slot) ? l->slot : NULL;
}

/* Ends the look-ups and closes the relations (the locks stay until the end of the transaction). */
void
wval_key_lookup_end(WvalKeyLookup *l)
{
	index_endscan(l->scan);
	ExecDropSingleTupleTableSlot(l->slot);
	index_close(l->idx, AccessShareLock);
	table_close(l->rel, AccessShareLock);
}

/*
 * A scalar of a world's settings (wval.worlds.settings -> key), read by
 * primary key like the other look-ups of the hot path: NULL when the world
 * or the key is missing, or the value is an array or object.  The value is
 * copied into the current memory context.
 */
JsonbValue *
wval_world_setting(const char *world, const char *key)
{
	Datum		k = CStringGetTextDatum(world);
	WvalKeyScan scan;
	HeapTuple	tup;
	JsonbValue *res = NULL;

	wval_key_scan_begin(&scan, "worlds", 1, &k);
	tup = wval_key_scan_next(&scan, false);
	if (tup != NULL)
	{
		bool		isnull;
		Datum		d = wval_key_scan_attr(&scan, tup, "settings", &isnull);
		JsonbValue	name;
		JsonbValue *v;

		name.type = jbvString;
		name.val.string.val = (char *) key;
		name.val.string.len = strlen(key);
		v = isnull ? NULL : findJsonbValueFromContainer(&DatumGetJsonbP(d)->root, JB_FOBJECT, &name);
		if (v != NULL && v->type != jbvBinary)
		{
			res = v;
			if (v->type == jbvString)
				res->val.string.val = pnstrdup(v->val.string.val, v->val.string.len);
			else if (v->type == jbvNumeric)
				res->val.numeric = DatumGetNumericCopy(NumericGetDatum(v->val.numeric));
		}
	}
	wval_key_scan_end(&scan);
	return res;
}
