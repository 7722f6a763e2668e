/*-------------------------------------------------------------------------
 *
 * store.c
 *	  The append-only evaluation store: the trigger that refuses UPDATE,
 *	  DELETE and TRUNCATE on history tables, the transaction-local guard
 *	  that only the retention path can raise, and the per-world hash chain.
 *
 * Hash chain.  Every row of a chained table gets (chain_seq, prev_hash,
 * row_hash) from a BEFORE INSERT trigger:
 *
 *	  row_hash = 'sha256:' || hex(sha256(prev_hash || '\n' || table || '\n' ||
 *									   chain_seq || '\n' || canonical(row)))
 *
 * where canonical(row) is a JSON object of the row's non-null columns in
 * column-name order, without the three chain columns, with every value in a form
 * that no session setting can change (timestamps in UTC, floats in their
 * shortest exact form, bytea in hex, jsonb in its normalised text).  Null
 * columns are left out so that a column added by an upgrade does not change
 * the hash of older rows.  The head of each world's chain lives in
 * wval.chain_heads; the row lock taken there orders concurrent writers of
 * one world.  A world whose settings allow several chain lanes has a head
 * per lane, and concurrent writers take different lanes (see "Chain lanes"
 * below).
 *
 * A row that arrives with row_hash already set is a restore (pg_dump data)
 * and is accepted as is from a superuser (the chain heads come from the same
 * dump); wval_verify_chain() then proves or disproves it like any other row.
 *
 * Writers.  Any other row is chained only when it comes from one of wval's
 * own writers: a SECURITY DEFINER function owned by the extension owner
 * (every wval_* entry point that writes is one) or the extension script.
 * The test looks at the backend's security context (InLocalUserIdChange()
 * and the current user), which no SQL statement, GUC or SET can change; a
 * plain INSERT, also by a superuser and also under session_replication_role
 * = replica (the wval triggers fire ALWAYS), gets WV003.  What a superuser
 * can still do, and what shows it, is listed in docs/store.md.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/partition.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "datatype/timestamp.h"
#include "commands/event_trigger.h"
#include "tcop/deparse_utility.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"
#include "utils/uuid.h"

#include "access.h"
#include "spi.h"
#include "wval.h"

#define GENESIS_HASH "sha256:0000000000000000000000000000000000000000000000000000000000000000"

/*
 * The retention guard: set by wval._purge_guard() (executable only by the
 * extension owner, called from wval_purge) for the rest of the current top
 * transaction; cleared at commit or abort.
 */
static bool purge_guard = false;

/*
 * Chain lanes.  A world's chain is one lane (0) unless its settings allow
 * more (settings.chain_lanes, 1 .. CHAIN_MAX_LANES): then a writer that
 * finds the lanes in use by other transactions takes a free one instead of
 * waiting for their commits.  Each lane is a chain of its own (it starts
 * from the genesis hash and has its head row in wval.chain_heads); lane k
 * numbers its links from k * 2^CHAIN_LANE_SHIFT + 1, so that chain_seq stays
 * unique per world and lane 0 is numbered 1, 2, 3 ... as a one-lane chain.
 */
#define CHAIN_LANE_SHIFT 40
#define CHAIN_MAX_LANES 64

/*
 * The statements that move a chain head.  The head moves in one UPDATE that
 * also computes the new row hash, so that every insert leaves one dead
 * version of the head row, not two (the head row of a busy world is the
 * hottest row of the store).
 */
static WvalPlan plan_chain_advance = WVAL_PLAN_GENERIC(
	"UPDATE wval.chain_heads h SET seq = h.seq + 1, prev_hash = h.head_hash, "
	"head_hash = wval._chain_link(h.head_hash, $2, h.seq + 1, $3), updated_at = now() "
	"WHERE h.world_id = $1 AND h.lane = $4 RETURNING h.seq, h.prev_hash, h.head_hash",
	4, TEXTOID, TEXTOID, TEXTOID, INT4OID);
static WvalPlan plan_chain_start = WVAL_PLAN_GENERIC(
	"INSERT INTO wval.chain_heads (world_id, lane, seq, prev_hash, head_hash) "
	"VALUES ($1, $4, ($4::bigint << " CppAsString2(CHAIN_LANE_SHIFT) ") + 1, '" GENESIS_HASH "', "
	"wval._chain_link('" GENESIS_HASH "', $2, ($4::bigint << " CppAsString2(CHAIN_LANE_SHIFT) ") + 1, $3)) "
	"ON CONFLICT (world_id, lane) DO NOTHING RETURNING seq, prev_hash, head_hash",
	4, TEXTOID, TEXTOID, TEXTOID, INT4OID);
/*
 * Which lane a writer takes is decided with transaction-level advisory locks
 * (class CHAIN_LANE_LOCK_CLASS, key: the world's hash and the lane), taken
 * with a try first: no statement, no WAL, nothing to wait for.  The head
 * row's lock, taken by the UPDATE that follows, still orders the writers of
 * a lane; the advisory lock only steers writers to different lanes.
 */
#define CHAIN_LANE_LOCK_CLASS 2004312430

/*
 * The lane this transaction last appended to, per world (one world is
 * remembered: a transaction writes one world).  Its head row stays locked
 * until the transaction ends, so the transaction's next rows of the world
 * go to the same lane instead of holding a second one.  The world's name
 * lives in TopTransactionContext; store_xact_callback forgets it when the
 * transaction ends, store_subxact_callback when the subtransaction that
 * took the lane (or one it belongs to) rolls back and so releases the lane.
 */
static char *lane_memo_world = NULL;
static int	lane_memo = 0;
static int	lane_memo_level = 0;	/* transaction nesting level that took it */

static void append_canonical_value(StringInfo buf, Datum value, Oid typid);

/* Clears the retention guard when the transaction that raised it ends. */
static void
store_xact_callback(XactEvent event, void *arg)
{
	(void) arg;
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			purge_guard = false;
			/* the lane memo lives in TopTransactionContext */
			lane_memo_world = NULL;
			break;
		default:
			break;
	}
}

/* Forgets the lane memo when the subtransaction that holds its lane rolls back. */
static void
store_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	(void) mySubid;
	(void) parentSubid;
	(void) arg;
	if (event == SUBXACT_EVENT_ABORT_SUB && lane_memo_world != NULL &&
		lane_memo_level >= GetCurrentTransactionNestLevel())
		lane_memo_world = NULL;
	else if (event == SUBXACT_EVENT_COMMIT_SUB && lane_memo_level >= GetCurrentTransactionNestLevel())
		lane_memo_level = GetCurrentTransactionNestLevel() - 1;	/* the parent holds it now */
}

/* Registers the store's transaction callbacks (called from _PG_init). */
void
wval_store_init(void)
{
	RegisterXactCallback(store_xact_callback, NULL);
	RegisterSubXactCallback(store_subxact_callback, NULL);
}

/* True while the retention path may remove history rows. */
bool
wval_purge_guard_active(void)
{
	return purge_guard;
}

PG_FUNCTION_INFO_V1(wval_purge_guard);

/* Raises the retention guard for the current transaction. */
Datum
wval_purge_guard(PG_FUNCTION_ARGS)
{
	purge_guard = PG_GETARG_BOOL(0);
	PG_RETURN_BOOL(purge_guard);
}

/*
 * The role that owns the wval extension (InvalidOid while it is not
 * installed); looked up once per transaction.
 */
static Oid
extension_owner(void)
{
	static LocalTransactionId cached_lxid = InvalidLocalTransactionId;
	static Oid	owner = InvalidOid;
	Oid			extoid;
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;

	if (cached_lxid == MyProc->lxid)
		return owner;
	owner = InvalidOid;
	extoid = get_extension_oid("wval", true);
	if (OidIsValid(extoid))
	{
		rel = table_open(ExtensionRelationId, AccessShareLock);
		ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
					ObjectIdGetDatum(extoid));
		scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
		tup = systable_getnext(scan);
		if (HeapTupleIsValid(tup))
			owner = ((Form_pg_extension) GETSTRUCT(tup))->extowner;
		systable_endscan(scan);
		table_close(rel, AccessShareLock);
	}
	cached_lxid = MyProc->lxid;
	return owner;
}

/*
 * True when the current statement runs inside one of wval's writers: a
 * SECURITY DEFINER function owned by the extension owner (the backend's
 * security context says so; SQL cannot set it), or the extension script.
 */
static bool
in_wval_writer(void)
{
	if (creating_extension)
		return true;
	return InLocalUserIdChange() && GetUserId() == extension_owner();
}

/* Raises WV003 for a write to a wval table that bypasses wval's writers. */
static void
refuse_direct_write(Relation rel, const char *op)
{
	Oid			relid = RelationGetRelid(rel);

	if (get_rel_relispartition(relid))
		relid = llast_oid(get_partition_ancestors(relid));
	ereport(ERROR,
			(errcode(ERRCODE_WVAL_APPEND_ONLY),
			 errmsg("direct %s on %s is not allowed", op,
					quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
											   get_rel_name(relid))),
			 errdetail("Rows of wval tables are written only by the wval_* functions (for every role, superusers included)."),
			 errhint("Use the wval_* function that records this change; see docs/store.md, \"What a superuser can still do\".")));
}

PG_FUNCTION_INFO_V1(wval_writer_only);

/*
 * BEFORE INSERT/UPDATE/DELETE row trigger on wval tables that wval's
 * writers maintain in place (wval.worlds, wval.chain_heads): refuses the
 * change (WV003) unless it comes from one of wval's writers.
 */
Datum
wval_writer_only(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		elog(ERROR, "wval_writer_only must be a row trigger");
	if (!in_wval_writer())
		refuse_direct_write(trigdata->tg_relation,
							TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ? "INSERT" :
							TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ? "UPDATE" : "DELETE");
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		return PointerGetDatum(trigdata->tg_newtuple);
	return PointerGetDatum(trigdata->tg_trigtuple);
}

PG_FUNCTION_INFO_V1(wval_ddl_audit);

/*
 * Event trigger (ddl_command_end, sql_drop; enabled ALWAYS): DDL on objects
 * of schema wval that does not come from one of wval's writers (wval_maintain
 * creating partitions does) is written to the audit log by
 * wval._ddl_audit_record(), e.g. ALTER TABLE ... DISABLE TRIGGER.
 */
Datum
wval_ddl_audit(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata = (EventTriggerData *) fcinfo->context;
	Oid			save_userid;
	int			save_sec_context;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		elog(ERROR, "wval_ddl_audit: not called by the event trigger manager");
	/* wval's own DDL, or the extension being dropped */
	if (in_wval_writer() || !OidIsValid(get_extension_oid("wval", true)))
		PG_RETURN_NULL();

	/*
	 * Act as one of wval's writers, as a SECURITY DEFINER function of the
	 * extension owner would: any role's DDL reaches this trigger, and the
	 * audit row must be chained.  An error restores the user at abort.
	 */
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(extension_owner(), save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute(strcmp(trigdata->event, "sql_drop") == 0 ?
					"SELECT wval._ddl_audit_record(true)" :
					"SELECT wval._ddl_audit_record(false)", false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not audit DDL on schema wval");
	SPI_finish();
	SetUserIdAndSecContext(save_userid, save_sec_context);
	PG_RETURN_NULL();
}

PG_FUNCTION_INFO_V1(wval_ddl_weakens);

/*
 * wval._ddl_weakens(command pg_ddl_command) → text: for an ALTER TABLE that
 * disables (or demotes from ALWAYS) triggers, rules or row-level security,
 * the names of those subcommands; null for any other command.
 */
Datum
wval_ddl_weakens(PG_FUNCTION_ARGS)
{
	CollectedCommand *cmd = (CollectedCommand *) PG_GETARG_POINTER(0);
	StringInfoData buf;
	ListCell   *lc;

	if (cmd->type != SCT_AlterTable)
		PG_RETURN_NULL();
	initStringInfo(&buf);
	foreach(lc, cmd->d.alterTable.subcmds)
	{
		CollectedATSubcmd *sub = (CollectedATSubcmd *) lfirst(lc);
		AlterTableCmd *at = (AlterTableCmd *) sub->parsetree;
		const char *what = NULL;

		if (!IsA(at, AlterTableCmd))
			continue;
		switch (at->subtype)
		{
			case AT_DisableTrig:
			case AT_DisableTrigAll:
			case AT_DisableTrigUser:
				what = "DISABLE TRIGGER";
				break;
			case AT_EnableTrig:
			case AT_EnableReplicaTrig:
			case AT_EnableTrigAll:
			case AT_EnableTrigUser:
				what = "ENABLE TRIGGER (not ALWAYS)";
				break;
			case AT_DisableRule:
			case AT_EnableReplicaRule:
				what = "DISABLE RULE";
				break;
			case AT_DisableRowSecurity:
			case AT_NoForceRowSecurity:
				what = "DISABLE ROW LEVEL SECURITY";
				break;
			default:
				break;
		}
		if (what == NULL)
			continue;
		if (buf.len > 0)
			appendStringInfoString(&buf, ", ");
		appendStringInfoString(&buf, what);
		if (at->name)
			appendStringInfo(&buf, " %s", at->name);
	}
	if (buf.len == 0)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(buf.data));
}

PG_FUNCTION_INFO_V1(wval_append_only);

/*
 * Trigger on every history table: UPDATE is always refused, DELETE and
 * TRUNCATE unless the retention guard is up.  Installed as a row trigger
 * for UPDATE/DELETE (so that it is cloned onto partitions) and as a
 * statement trigger for TRUNCATE.
 */
Datum
wval_append_only(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	const char *op;
	char	   *relname;
	Oid			relid;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "wval_append_only: not called by trigger manager");

	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		op = "UPDATE";
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		op = "DELETE";
	else if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		op = "TRUNCATE";
	else
		op = "INSERT";

	if (purge_guard && !TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) &&
		!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
	{
		if (TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
			return PointerGetDatum(trigdata->tg_trigtuple);
		return PointerGetDatum(NULL);
	}

	/* name the table the user knows: the root of a partition tree */
	relid = RelationGetRelid(trigdata->tg_relation);
	if (get_rel_relispartition(relid))
		relid = llast_oid(get_partition_ancestors(relid));
	relname = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
										 get_rel_name(relid));
	ereport(ERROR,
			(errcode(ERRCODE_WVAL_APPEND_ONLY),
			 errmsg("%s on history table %s is not allowed", op, relname),
			 errdetail("wval history tables are append-only for every role, including the table owner and superusers."),
			 errhint("Record a correction as a new row (an override, a new run that supersedes the old one, a later case state); rows leave only through wval_purge().")));
	PG_RETURN_NULL();			/* not reached */
}

/* Appends a timestamptz in UTC ISO-8601 with microseconds. */
static void
append_canonical_timestamp(StringInfo buf, TimestampTz ts)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (TIMESTAMP_NOT_FINITE(ts))
	{
		appendStringInfoString(buf, TIMESTAMP_IS_NOBEGIN(ts) ? "\"-infinity\"" : "\"infinity\"");
		return;
	}
	if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0 ||
		tm.tm_year < 1 || tm.tm_year > 9999)
	{
		appendStringInfo(buf, "\"@" INT64_FORMAT "\"", (int64) ts);
		return;
	}
	appendStringInfo(buf, "\"%04d-%02d-%02dT%02d:%02d:%02d.%06dZ\"",
					 tm.tm_year, tm.tm_mon, tm.tm_mday,
					 tm.tm_hour, tm.tm_min, tm.tm_sec, (int) fsec);
}

/* Appends a one-dimensional view of an array, each element canonical. */
static void
append_canonical_array(StringInfo buf, ArrayType *arr)
{
	Oid			elemtype = ARR_ELEMTYPE(arr);
	int16		typlen;
	bool		typbyval;
	char		typalign;
	Datum	   *elems;
	bool	   *nulls;
	int			nelems;
	int			i;

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	deconstruct_array(arr, elemtype, typlen, typbyval, typalign,
					  &elems, &nulls, &nelems);
	appendStringInfoChar(buf, '[');
	for (i = 0; i < nelems; i++)
	{
		if (i > 0)
			appendStringInfoChar(buf, ',');
		if (nulls[i])
			appendStringInfoString(buf, "null");
		else
			append_canonical_value(buf, elems[i], elemtype);
	}
	appendStringInfoChar(buf, ']');
}

/* Appends one non-null value in the canonical form of its type. */
static void
append_canonical_value(StringInfo buf, Datum value, Oid typid)
{
	Oid			basetype = getBaseType(typid);

	switch (basetype)
	{
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
			wval_append_json_string(buf, TextDatumGetCString(value));
			break;
		case NAMEOID:
			wval_append_json_string(buf, NameStr(*DatumGetName(value)));
			break;
		case INT2OID:
			appendStringInfo(buf, "%d", (int) DatumGetInt16(value));
			break;
		case INT4OID:
			appendStringInfo(buf, "%d", DatumGetInt32(value));
			break;
		case INT8OID:
			appendStringInfo(buf, INT64_FORMAT, DatumGetInt64(value));
			break;
		case OIDOID:
			appendStringInfo(buf, "%u", DatumGetObjectId(value));
			break;
		case BOOLOID:
			appendStringInfoString(buf, DatumGetBool(value) ? "true" : "false");
			break;
		case FLOAT4OID:
			wval_append_float8(buf, (double) DatumGetFloat4(value));
			break;
		case FLOAT8OID:
			wval_append_float8(buf, DatumGetFloat8(value));
			break;
		case NUMERICOID:
			appendStringInfoString(buf, DatumGetCString(DirectFunctionCall1(numeric_out, value)));
			break;
		case UUIDOID:
			wval_append_json_string(buf, DatumGetCString(DirectFunctionCall1(uuid_out, value)));
			break;
		case JSONBOID:
			{
				Jsonb	   *jb = DatumGetJsonbP(value);

				appendStringInfoString(buf, JsonbToCString(NULL, &jb->root, VARSIZE(jb)));
				break;
			}
		case TIMESTAMPTZOID:
		case TIMESTAMPOID:
			append_canonical_timestamp(buf, DatumGetTimestampTz(value));
			break;
		case DATEOID:
			{
				DateADT		d = DatumGetDateADT(value);
				int			y,
							m,
							dd;

				if (DATE_NOT_FINITE(d))
					appendStringInfoString(buf, DATE_IS_NOBEGIN(d) ? "\"-infinity\"" : "\"infinity\"");
				else
				{
					j2date(d + POSTGRES_EPOCH_JDATE, &y, &m, &dd);
					appendStringInfo(buf, "\"%04d-%02d-%02d\"", y, m, dd);
				}
				break;
			}
		case INTERVALOID:
			{
				Interval   *iv = DatumGetIntervalP(value);

				appendStringInfo(buf, "\"%dm%dd" INT64_FORMAT "us\"",
								 iv->month, iv->day, iv->time);
				break;
			}
		case BYTEAOID:
			{
				bytea	   *b = DatumGetByteaPP(value);
				const unsigned char *p = (const unsigned char *) VARDATA_ANY(b);
				int			n = VARSIZE_ANY_EXHDR(b);

				appendStringInfoString(buf, "\"\\\\x");
				/* lower-case hex as "%02x" per byte, without a call per byte */
				enlargeStringInfo(buf, 2 * n + 2);
				buf->len += (int) hex_encode((const char *) p, n, buf->data + buf->len);
				buf->data[buf->len] = '\0';
				appendStringInfoChar(buf, '"');
				break;
			}
		default:
			if (type_is_array(basetype))
			{
				append_canonical_array(buf, DatumGetArrayTypeP(value));
				break;
			}
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("type %s has no canonical form for the wval hash chain",
							format_type_be(typid))));
	}
}

/* True for the three columns the chain itself maintains. */
static bool
is_chain_column(const char *name)
{
	return strcmp(name, "chain_seq") == 0 ||
		strcmp(name, "prev_hash") == 0 ||
		strcmp(name, "row_hash") == 0;
}

/* Orders attribute numbers by column name (see append_canonical_row). */
static int
compare_attnames(const void *a, const void *b, void *arg)
{
	TupleDesc	tupdesc = (TupleDesc) arg;

	return strcmp(NameStr(TupleDescAttr(tupdesc, *(const int *) a)->attname),
				  NameStr(TupleDescAttr(tupdesc, *(const int *) b)->attname));
}

/*
 * Builds the canonical JSON text of a row (see the file header).  Columns
 * are taken in name order, so that a partition or a restored table whose
 * physical column order differs still hashes the same.
 */
static void
append_canonical_row(StringInfo buf, HeapTuple tuple, TupleDesc tupdesc)
{
	int		   *order = palloc(sizeof(int) * Max(tupdesc->natts, 1));
	int			n = 0;
	int			i;
	bool		first = true;

	for (i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i);

		if (!att->attisdropped && !is_chain_column(NameStr(att->attname)))
			order[n++] = i;
	}
	qsort_arg(order, n, sizeof(int), compare_attnames, tupdesc);

	appendStringInfoChar(buf, '{');
	for (i = 0; i < n; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, order[i]);
		Datum		value;
		bool		isnull;

		value = heap_getattr(tuple, order[i] + 1, tupdesc, &isnull);
		if (isnull)
			continue;
		if (!first)
			appendStringInfoChar(buf, ',');
		first = false;
		wval_append_json_string(buf, NameStr(att->attname));
		appendStringInfoChar(buf, ':');
		append_canonical_value(buf, value, att->atttypid);
	}
	appendStringInfoChar(buf, '}');
	pfree(order);
}

/* The link hash: sha256 over the previous hash, table, position and content. */
static char *
chain_link(const char *prev_hash, const char *table, int64 seq, const char *canonical, int len)
{
	StringInfoData buf;
	char		hex[WVAL_SHA256_HEX_LEN + 1];

	initStringInfo(&buf);
	appendStringInfo(&buf, "%s\n%s\n" INT64_FORMAT "\n", prev_hash, table, seq);
	appendBinaryStringInfo(&buf, canonical, len);
	wval_sha256_hex(buf.data, buf.len, hex);
	pfree(buf.data);
	return psprintf("sha256:%s", hex);
}

/* Computes the row hash of a row at a given chain position. */
static char *
compute_row_hash(const char *prev_hash, const char *table, int64 seq,
				 HeapTuple tuple, TupleDesc tupdesc)
{
	StringInfoData buf;
	char	   *hash;

	initStringInfo(&buf);
	append_canonical_row(&buf, tuple, tupdesc);
	hash = chain_link(prev_hash, table, seq, buf.data, buf.len);
	pfree(buf.data);
	return hash;
}

PG_FUNCTION_INFO_V1(wval_chain_link);

/* wval._chain_link(prev_hash, table, seq, canonical) → the row hash. */
Datum
wval_chain_link(PG_FUNCTION_ARGS)
{
	text	   *canonical = PG_GETARG_TEXT_PP(3);

	PG_RETURN_TEXT_P(cstring_to_text(chain_link(text_to_cstring(PG_GETARG_TEXT_PP(0)),
												text_to_cstring(PG_GETARG_TEXT_PP(1)),
												PG_GETARG_INT64(2),
												VARDATA_ANY(canonical),
												VARSIZE_ANY_EXHDR(canonical))));
}

/* Returns the column number of a chain column, or errors out. */
static int
chain_attnum(TupleDesc tupdesc, const char *name, const char *relname)
{
	int			attnum = SPI_fnumber(tupdesc, name);

	if (attnum <= 0)
		elog(ERROR, "chained table \"%s\" has no column \"%s\"", relname, name);
	return attnum;
}

/*
 * Raises 42501 unless the role that called into wval (outside SECURITY
 * DEFINER) may write the world (wval.world_grants, access.c caches the
 * answer per backend).  World "" (acts of no world) is always writable.
 */
static void
check_world_write(const char *world)
{
	Oid			role = GetOuterUserId();

	if (world[0] == '\0' || wval_access_allowed(role, world, true))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("role \"%s\" may not write world \"%s\"", GetUserNameFromId(role, false), world),
			 errhint("A wval_admin grants worlds with wval_world_grant(role, world_id, 'write').")));
}

/*
 * The world's settings.chain_lanes (1 .. CHAIN_MAX_LANES; anything else, and
 * the global chain "", is one lane), read by primary key.
 */
static int
chain_lanes_setting(const char *world)
{
	JsonbValue *v;
	int32		n;

	if (world[0] == '\0')
		return 1;
	v = wval_world_setting(world, "chain_lanes");
	if (v == NULL || v->type != jbvNumeric)
		return 1;
	n = DatumGetInt32(DirectFunctionCall1(numeric_int4, NumericGetDatum(v->val.numeric)));
	return n >= 1 && n <= CHAIN_MAX_LANES ? n : 1;
}

/* The advisory lock key of a lane of a world (collisions only share a lane). */
static Datum
lane_lock_key(const char *world, int lane)
{
	uint32		h = hash_bytes((const unsigned char *) world, strlen(world));

	return Int32GetDatum((int32) ((h << 6) | (uint32) lane));
}

/*
 * Appends a link to the world's chain: moves the head of a lane and leaves
 * the statement's row (seq, prev_hash, head_hash) in SPI_tuptable.  args are
 * world, table, canonical text and (set here) the lane.  With one lane this
 * waits for the transaction that holds the head.  With more, the writer
 * takes the first lane no other transaction holds (opening it when it does
 * not exist yet), and waits only when every lane is held, on the lane its
 * process id picks.
 */
static void
chain_append(Datum *args, const char *world, int lanes)
{
	int			lane = 0;

	if (lanes > 1 && lane_memo_world != NULL && strcmp(lane_memo_world, world) == 0 &&
		lane_memo < lanes)
		lane = lane_memo;
	else if (lanes > 1)
	{
		int			k;

		lane = -1;
		for (k = 0; k < lanes && lane < 0; k++)
			if (DatumGetBool(DirectFunctionCall2(pg_try_advisory_xact_lock_int4,
												 Int32GetDatum(CHAIN_LANE_LOCK_CLASS),
												 lane_lock_key(world, k))))
				lane = k;
		if (lane < 0)
		{
			lane = MyProcPid % lanes;
			DirectFunctionCall2(pg_advisory_xact_lock_int4, Int32GetDatum(CHAIN_LANE_LOCK_CLASS),
								lane_lock_key(world, lane));
		}
		/* this (sub)transaction holds the lane now: remember it */
		if (lane_memo_world == NULL || strcmp(lane_memo_world, world) != 0)
			lane_memo_world = MemoryContextStrdup(TopTransactionContext, world);
		lane_memo = lane;
		lane_memo_level = GetCurrentTransactionNestLevel();
	}

	args[3] = Int32GetDatum(lane);
	wval_spi_exec(&plan_chain_advance, args, NULL, false, 1, SPI_OK_UPDATE_RETURNING);
	if (SPI_processed == 0)
	{
		/* the lane's first row; a concurrent first row makes us update after all */
		wval_spi_exec(&plan_chain_start, args, NULL, false, 1, SPI_OK_INSERT_RETURNING);
		if (SPI_processed == 0)
			wval_spi_exec(&plan_chain_advance, args, NULL, false, 1, SPI_OK_UPDATE_RETURNING);
		if (SPI_processed != 1)
			elog(ERROR, "could not advance the hash chain of world \"%s\"", world);
	}
}

PG_FUNCTION_INFO_V1(wval_chain);

/*
 * BEFORE INSERT FOR EACH ROW on chained tables; tgargs[0] is the logical
 * table name that enters the hash (a partition reports its parent's name).
 */
Datum
wval_chain(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	tupdesc;
	HeapTuple	tuple;
	const char *table;
	int			att_world,
				att_seq,
				att_prev,
				att_hash;
	bool		isnull;
	Datum		d;
	char	   *world;
	Datum		args[4];
	StringInfoData canonical;
	int64		seq;
	char	   *prev_hash;
	char	   *row_hash;
	int			cols[3];
	Datum		vals[3];
	bool		nulls[3] = {false, false, false};
	MemoryContext caller_cxt = CurrentMemoryContext;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ||
		trigdata->tg_trigger->tgnargs != 1)
		elog(ERROR, "wval_chain must be a BEFORE INSERT row trigger with one argument");

	rel = trigdata->tg_relation;
	tupdesc = RelationGetDescr(rel);
	tuple = trigdata->tg_trigtuple;
	table = trigdata->tg_trigger->tgargs[0];

	att_world = chain_attnum(tupdesc, "world_id", table);
	att_seq = chain_attnum(tupdesc, "chain_seq", table);
	att_prev = chain_attnum(tupdesc, "prev_hash", table);
	att_hash = chain_attnum(tupdesc, "row_hash", table);

	d = heap_getattr(tuple, att_world, tupdesc, &isnull);
	world = isnull ? "" : TextDatumGetCString(d);

	(void) heap_getattr(tuple, att_hash, tupdesc, &isnull);
	if (!isnull)
	{
		/*
		 * Restore of dumped rows: keep their chain values.  wval.chain_heads
		 * is restored from the same dump, so the head is not touched here.
		 */
		bool		seqnull,
					prevnull;

		(void) heap_getattr(tuple, att_seq, tupdesc, &seqnull);
		(void) heap_getattr(tuple, att_prev, tupdesc, &prevnull);
		if (!superuser() || seqnull || prevnull)
			ereport(ERROR,
					(errcode(ERRCODE_WVAL_APPEND_ONLY),
					 errmsg("chain columns of \"%s\" are assigned by wval", table),
					 errdetail("The row arrived with row_hash set."),
					 errhint("Insert rows through the wval_* functions; only a superuser restoring a dump may supply chain_seq, prev_hash and row_hash.")));
		return PointerGetDatum(tuple);
	}

	/* a new row joins the chain only when one of wval's writers wrote it */
	if (!in_wval_writer())
		refuse_direct_write(rel, "INSERT");

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	check_world_write(world);

	initStringInfo(&canonical);
	append_canonical_row(&canonical, tuple, tupdesc);
	args[0] = CStringGetTextDatum(world);
	args[1] = CStringGetTextDatum(table);
	args[2] = PointerGetDatum(cstring_to_text_with_len(canonical.data, canonical.len));
	chain_append(args, world, chain_lanes_setting(world));
	seq = wval_spi_int64(0, 1, 0);
	prev_hash = MemoryContextStrdup(caller_cxt, wval_spi_text(0, 2));
	row_hash = MemoryContextStrdup(caller_cxt, wval_spi_text(0, 3));

	SPI_finish();

	/* the outgoing tuple is built in the caller's context, not SPI's */
	cols[0] = att_seq;
	cols[1] = att_prev;
	cols[2] = att_hash;
	vals[0] = Int64GetDatum(seq);
	vals[1] = CStringGetTextDatum(prev_hash);
	vals[2] = CStringGetTextDatum(row_hash);
	tuple = heap_modify_tuple_by_cols(tuple, tupdesc, 3, cols, vals, nulls);
	return PointerGetDatum(tuple);
}

PG_FUNCTION_INFO_V1(wval_row_hash);

/*
 * wval._row_hash(table text, chain_seq bigint, prev_hash text, row record)
 * recomputes the hash of a stored row for wval_verify_chain().
 */
Datum
wval_row_hash(PG_FUNCTION_ARGS)
{
	text	   *table = PG_GETARG_TEXT_PP(0);
	int64		seq = PG_GETARG_INT64(1);
	text	   *prev = PG_GETARG_TEXT_PP(2);
	HeapTupleHeader rec = PG_GETARG_HEAPTUPLEHEADER(3);
	TupleDesc	tupdesc;
	HeapTupleData tuple;
	char	   *hash;

	tupdesc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(rec),
									 HeapTupleHeaderGetTypMod(rec));
	tuple.t_len = HeapTupleHeaderGetDatumLength(rec);
	ItemPointerSetInvalid(&(tuple.t_self));
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = rec;

	hash = compute_row_hash(text_to_cstring(prev), text_to_cstring(table), seq,
							&tuple, tupdesc);
	ReleaseTupleDesc(tupdesc);
	PG_RETURN_TEXT_P(cstring_to_text(hash));
}

PG_FUNCTION_INFO_V1(wval_canonical);

/* wval._canonical(row record): the canonical text a row hash covers. */
Datum
wval_canonical(PG_FUNCTION_ARGS)
{
	HeapTupleHeader rec = PG_GETARG_HEAPTUPLEHEADER(0);
	TupleDesc	tupdesc;
	HeapTupleData tuple;
	StringInfoData buf;

	tupdesc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(rec),
									 HeapTupleHeaderGetTypMod(rec));
	tuple.t_len = HeapTupleHeaderGetDatumLength(rec);
	ItemPointerSetInvalid(&(tuple.t_self));
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = rec;

	initStringInfo(&buf);
	append_canonical_row(&buf, &tuple, tupdesc);
	ReleaseTupleDesc(tupdesc);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf.data, buf.len));
}

PG_FUNCTION_INFO_V1(wval_ident);

/* wval._ident(field text, value text) → text: checks and returns value. */
Datum
wval_ident(PG_FUNCTION_ARGS)
{
	char	   *field = PG_ARGISNULL(0) ? "identifier" : text_to_cstring(PG_GETARG_TEXT_PP(0));

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" must not be null", field),
				 errhint("Pass a non-empty identifier of at most %d bytes.",
						 WVAL_MAX_IDENT_BYTES)));
	wval_check_identifier(field, text_to_cstring(PG_GETARG_TEXT_PP(1)));
	PG_RETURN_DATUM(PG_GETARG_DATUM(1));
}

PG_FUNCTION_INFO_V1(wval_invoker);

/*
 * wval._invoker(): the role that called into wval, i.e. current_user outside
 * any SECURITY DEFINER function (SET ROLE is honoured, unlike session_user).
 */
Datum
wval_invoker(PG_FUNCTION_ARGS)
{
	(void) fcinfo;
	PG_RETURN_TEXT_P(cstring_to_text(GetUserNameFromId(GetOuterUserId(), false)));
}
