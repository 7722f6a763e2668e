/*-------------------------------------------------------------------------
 *
 * bus.c
 *	  The bus's one emitter (docs/bus.md).  wval_emit_event writes an event
 *	  in the caller's transaction: the shared bus lock that orders emitters
 *	  against wval_subscribe, the row of wval.events with its CloudEvents 1.0
 *	  envelope (or a dedupe hit when the idempotency key exists), one
 *	  wval.delivery_store row per consumer group that subscribed to the type and
 *	  whose owner may read the world, and the wake-up of the listeners after
 *	  commit (notifier.c).  C callers (the run writer, run.c) call it
 *	  directly; SQL calls it through wval._emit.
 *
 * IDENTIFICATION
 *	  src/bus.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "bus.h"
#include "jsonb.h"
#include "spi.h"
#include "wval.h"

/* the bus's advisory lock class: emitters share (BUS_LOCK_CLASS, 0), see bus.sql */
#define BUS_LOCK_CLASS 2004312428

static WvalPlan plan_insert_event = WVAL_PLAN_GENERIC(
	"INSERT INTO wval.events (event_id, type, world_id, subject, idempotency_key, payload, expires_at) "
	"VALUES ($1, $2, $3, $4, $5, $6, now() + $7) ON CONFLICT (idempotency_key) DO NOTHING "
	"RETURNING event_id",
	7, INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID, INTERVALOID);

static WvalPlan plan_dedupe_hit = WVAL_PLAN_GENERIC(
	"INSERT INTO wval.event_dedupe_hits AS h (type, shard, hits, last_key, last_hit_at) "
	"VALUES ($1, $2, 1, $3, now()) ON CONFLICT (type, shard) DO UPDATE "
	"SET hits = h.hits + 1, last_key = excluded.last_key, last_hit_at = excluded.last_hit_at",
	3, TEXTOID, INT2OID, TEXTOID);

/* a group receives only events of worlds its owner may read */
static WvalPlan plan_insert_deliveries = WVAL_PLAN_GENERIC(
	"INSERT INTO wval.delivery_store (group_name, event_id, type, world_key, enqueued_at, expires_at, visible_at) "
	"SELECT g.group_name, $1, $2, coalesce($3, ''), now(), now() + $4, now() "
	"FROM wval.consumer_groups g "
	"WHERE $2 = ANY (g.types) "
	"AND (g.owner IS NULL OR $3 IS NULL "
	"OR wval._world_access((SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = g.owner), $3, 'read'))",
	4, INT8OID, TEXTOID, TEXTOID, INTERVALOID);

/* The CloudEvents 1.0 envelope of an event. */
static Jsonb *
event_payload(int64 event_id, const char *type, const char *world_id, const char *subject, Jsonb *data)
{
	JsonbParseState *ps = NULL;

	wval_jb_begin_object(&ps);
	wval_jb_kv_string(&ps, "specversion", "1.0");
	wval_jb_kv_string(&ps, "id", psprintf(INT64_FORMAT, event_id));
	wval_jb_kv_string(&ps, "source", psprintf("/wval/%s/worlds/%s", get_database_name(MyDatabaseId),
										world_id ? world_id : "-"));
	wval_jb_kv_string(&ps, "type", type);
	wval_jb_kv_string(&ps, "subject", subject);
	wval_jb_kv_string(&ps, "time", wval_iso_utc(GetCurrentTransactionStartTimestamp()));
	wval_jb_kv_string(&ps, "datacontenttype", "application/json");
	wval_jb_key(&ps, "data");
	if (data != NULL)
		wval_jb_jsonb(&ps, data);
	else
	{
		wval_jb_begin_object(&ps);
		wval_jb_end_object(&ps);
	}
	return wval_jb_end_object(&ps);
}

/*
 * True when a consumer group subscribes to the type: a filter before the
 * statement that writes the deliveries, which stays the authority (owner's
 * world access, the snapshot).  The scan uses a snapshot taken now, at
 * least as new as the statement's, so it sees every group the statement
 * can; with no such group (a type nobody consumes) the statement is not run.
 */
static bool
any_group_for_type(const char *type)
{
	WvalKeyScan scan;
	HeapTuple	tup;
	bool		found = false;

	PushActiveSnapshot(GetLatestSnapshot());
	wval_key_scan_begin(&scan, "consumer_groups", 0, NULL);
	while (!found && (tup = wval_key_scan_next(&scan, false)) != NULL)
	{
		bool		isnull;
		Datum		d = wval_key_scan_attr(&scan, tup, "types", &isnull);
		Datum	   *elems;
		bool	   *elem_nulls;
		int			n;
		int			i;

		if (isnull)
			continue;
		deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, &elem_nulls, &n);
		for (i = 0; i < n && !found; i++)
			found = !elem_nulls[i] && strcmp(TextDatumGetCString(elems[i]), type) == 0;
	}
	wval_key_scan_end(&scan);
	PopActiveSnapshot();
	return found;
}

/*
 * Writes one event with its deliveries in the caller's transaction and
 * wakes the listeners after commit; returns the event_id, or 0 (and counts
 * a dedupe hit) when the idempotency key exists.  The caller is connected
 * to SPI.
 */
int64
wval_emit_event(const WvalEvent *event)
{
	const char *type = event->type;
	const char *world_id = event->world_id;
	const char *subject = event->subject;
	Datum		args[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', 'n'};
	int64		event_id;

	/* shared with other emitters, exclusive for wval_subscribe (bus.sql) */
	DirectFunctionCall2(pg_advisory_xact_lock_shared_int4,
						Int32GetDatum(BUS_LOCK_CLASS), Int32GetDatum(0));
	event_id = nextval_internal(get_relname_relid("events_id_seq", get_namespace_oid("wval", false)), true);

	args[0] = Int64GetDatum(event_id);
	args[1] = CStringGetTextDatum(type);
	args[2] = world_id ? CStringGetTextDatum(world_id) : (Datum) 0;
	nulls[2] = world_id ? ' ' : 'n';
	args[3] = subject ? CStringGetTextDatum(subject) : (Datum) 0;
	nulls[3] = subject ? ' ' : 'n';
	args[4] = CStringGetTextDatum(event->idempotency_key);
	args[5] = JsonbPGetDatum(event_payload(event_id, type, world_id, subject, event->data));
	args[6] = event->ttl ? IntervalPGetDatum(event->ttl) : (Datum) 0;
	nulls[6] = event->ttl ? ' ' : 'n';
	wval_spi_exec(&plan_insert_event, args, nulls, false, 1, SPI_OK_INSERT_RETURNING);
	if (SPI_processed == 0)
	{
		args[0] = CStringGetTextDatum(type);
		args[1] = Int16GetDatum((int16) (MyProcPid % 16));
		args[2] = CStringGetTextDatum(event->idempotency_key);
		wval_spi_exec(&plan_dedupe_hit, args, NULL, false, 0, SPI_OK_INSERT);
		return 0;
	}
	/* deliveries: event_id, type, world, ttl */
	args[3] = args[6];
	nulls[3] = nulls[6];
	if (any_group_for_type(type))
		wval_spi_exec(&plan_insert_deliveries, args, nulls, false, 0, SPI_OK_INSERT);
	wval_wake_listeners();
	return event_id;
}

PG_FUNCTION_INFO_V1(wval_emit);

/*
 * wval._emit(type, world_id, subject, idempotency_key, data jsonb, ttl
 * interval) → bigint: the event_id, or null (and a dedupe hit) when the
 * idempotency key exists.  22023 for an empty type or key.
 */
Datum
wval_emit(PG_FUNCTION_ARGS)
{
	WvalEvent	event;
	char	   *type = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *key = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));
	bool		bad_type = type == NULL || strspn(type, " ") == strlen(type);
	int64		id;

	if (bad_type || key == NULL || strspn(key, " ") == strlen(key))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" must not be empty", bad_type ? "type" : "idempotency_key"),
				 errdetail("type is %s, idempotency_key is %s.",
						   type ? quote_literal_cstr(type) : "null",
						   key ? quote_literal_cstr(key) : "null"),
				 errhint("Events need a type and an idempotency key <type>:<world_id>:<subject>:<discriminator>.")));
	event.type = type;
	event.world_id = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	event.subject = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	event.idempotency_key = key;
	event.data = PG_ARGISNULL(4) ? NULL : PG_GETARG_JSONB_P(4);
	event.ttl = PG_ARGISNULL(5) ? NULL : PG_GETARG_INTERVAL_P(5);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	id = wval_emit_event(&event);
	SPI_finish();
	if (id == 0)
		PG_RETURN_NULL();
	PG_RETURN_INT64(id);
}

PG_FUNCTION_INFO_V1(wval_queue_scan);

/*
 * wval._queue_scan(group_name, after, n) → (world_key, event_id,
 * visible_at): the group's next n outstanding deliveries after event_id
 * after, in event_id order, read through the order index
 * (deliveries_order_idx, done_at IS NULL) with the active snapshot, so
 * that the read does not depend on statistics (a statement was planned on
 * the primary key the table had, which has the same order and walks every
 * finished delivery of the group too).  wval_consume reads the queue in
 * these slices.
 */
Datum
wval_queue_scan(PG_FUNCTION_ARGS)
{
	Datum		group = PointerGetDatum(PG_GETARG_TEXT_PP(0));	/* STRICT: no nulls */
	Datum		after = Int64GetDatum(PG_GETARG_INT64(1));
	int32		n = PG_GETARG_INT32(2);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	static const char *const columns[3] = {"world_key", "event_id", "visible_at"};
	AttrNumber	attnums[3];
	WvalKeyScan scan;
	HeapTuple	tup;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	if (n <= 0)
		return (Datum) 0;
	wval_index_scan_begin(&scan, "delivery_store", "deliveries_order_idx", 1, &group, &after);
	/* the columns by name once, not for every row */
	for (i = 0; i < 3; i++)
		if ((attnums[i] = SPI_fnumber(RelationGetDescr(scan.rel), columns[i])) <= 0)
			elog(ERROR, "column \"%s\" of \"wval.delivery_store\" does not exist", columns[i]);
	while (n > 0 && (tup = wval_key_scan_next(&scan, false)) != NULL)
	{
		Datum		values[3];
		bool		nulls[3];

		/*
		 * No check of done_at: an ack is not a HOT update (done_at is in the
		 * index's predicate), so an entry leads only to outstanding versions.
		 */
		for (i = 0; i < 3; i++)
			values[i] = heap_getattr(tup, attnums[i], RelationGetDescr(scan.rel), &nulls[i]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		n--;
	}
	wval_key_scan_end(&scan);
	return (Datum) 0;
}
