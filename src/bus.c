/*-------------------------------------------------------------------------
 *
 * bus.c
 *	  The bus's emitter, its hand-out and its ack (docs/bus.md).
 *
 *	  wval_emit_event writes an event
 *	  in the caller's transaction: the shared bus lock that orders emitters
 *	  against wval_subscribe, the row of wval.events with its CloudEvents 1.0
 *	  envelope (or a dedupe hit when the idempotency key exists), one
 *	  wval.delivery_store row per consumer group that subscribed to the type and
 *	  whose owner may read the world, and the wake-up of the listeners after
 *	  commit (notifier.c).  C callers (the run writer, run.c) call it
 *	  directly; SQL calls it through wval._emit.
 *
 *	  wval_consume hands out a consumer group's next events: it walks the
 *	  group's queue in event order, and for each world met at its head
 *	  leases the visible prefix of that world's queue with one row of
 *	  wval.delivery_leases (see "The hand-out" below); wval._ack finishes
 *	  the deliveries of acknowledged events, each with the hand-out it ends
 *	  ("The ack").
 *
 * IDENTIFICATION
 *	  src/bus.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heaptoast.h"
#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "access.h"
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

/* ----------------------------------------------------------------
 * The hand-out
 *
 * wval_consume() walks the group's outstanding deliveries in event order
 * (the order index) and meets each world first at its head; for each world
 * whose head is visible it hands out (or expires, or dead-letters) the
 * visible prefix of the world's queue.  A hand-out writes one row, the
 * world's wval.delivery_leases row (its events, time and visibility), and
 * no delivery: each delivery's row is written when its part of the hand-out
 * ends (wval_ack, wval_nack, or the timeout written by the next hand-out of
 * the world), and the view wval.deliveries shows the hand-out in progress
 * meanwhile.  A delivery row whose leased_at equals the hand-out's has had
 * its part end ("is settled").  Acks, nacks, the expiry and the hand-out
 * lock the world's lease row before they change its outstanding
 * deliveries, so a hand-out reads the queue as those left it.  The
 * statements are those of the PL/pgSQL version this replaced; the rules
 * they share with the acks (wval._in_handout) stay in SQL.
 * ----------------------------------------------------------------
 */

/*
 * The advisory lock class of a world's hand-out: (class, hashtext(group ||
 * '/' || world)), taken with a try here and in wval._expire_due (bus.sql).
 */
#define WORLD_LOCK_CLASS 2004312429

/*
 * A call reads at most this many rows of the group's queue in slices (4, 8,
 * 16 ... rows); the worlds not met by then are found by a walk of the queue
 * index, one probe per world (plan_heads).
 */
#define SCAN_CAP 1024

static WvalPlan plan_group = WVAL_PLAN_GENERIC(
	"SELECT g.max_attempts, g.visibility FROM wval._group($1) g",
	1, TEXTOID);

/* one index probe when nothing has expired ("IS NOT NULL": the expiry index) */
static WvalPlan plan_expiry_probe = WVAL_PLAN_GENERIC(
	"SELECT 1 FROM wval.delivery_store x "
	"WHERE x.group_name = $1 AND x.done_at IS NULL AND x.expires_at IS NOT NULL AND x.expires_at <= $2 LIMIT 1",
	2, TEXTOID, TIMESTAMPTZOID);

static WvalPlan plan_expire = WVAL_PLAN_GENERIC(
	"SELECT wval._expire_due($1, $2)", 2, TEXTOID, TIMESTAMPTZOID);

static WvalPlan plan_lease_read = WVAL_PLAN_GENERIC(
	"SELECT l.first_event_id, l.last_event_id, l.event_ids, l.leased_at, l.visible_at "
	"FROM wval.delivery_leases l WHERE l.group_name = $1 AND l.world_key = $2",
	2, TEXTOID, TEXTOID);

/* an event of the hand-out neither finished nor settled (its id range: one descent) */
static WvalPlan plan_busy = WVAL_PLAN_GENERIC(
	"SELECT 1 FROM wval.delivery_store z "
	"WHERE z.group_name = $1 AND z.world_key = $2 AND z.event_id BETWEEN $3 AND $4 AND z.done_at IS NULL "
	"AND wval._in_handout(z.event_id, z.leased_at, $5, $6) LIMIT 1",
	6, TEXTOID, TEXTOID, INT8OID, INT8OID, INT8ARRAYOID, TIMESTAMPTZOID);

static WvalPlan plan_lease_lock = WVAL_PLAN_GENERIC(
	"SELECT 1 FROM wval.delivery_leases l WHERE l.group_name = $1 AND l.world_key = $2 "
	"FOR NO KEY UPDATE SKIP LOCKED",
	2, TEXTOID, TEXTOID);

/* the timed-out hand-out written where its events not settled are: one more, the time, the error */
static WvalPlan plan_timeout = WVAL_PLAN_GENERIC(
	"UPDATE wval.delivery_store d "
	"SET attempts = d.attempts + 1, handouts = d.handouts + 1, leased = true, leased_at = $6, visible_at = $7, "
	"errors = d.errors || jsonb_build_array(jsonb_build_object("
	"'attempt', d.attempts + 1, 'at', $8, 'error', 'visibility timeout expired')) "
	"WHERE d.group_name = $1 AND d.world_key = $2 AND d.event_id BETWEEN $3 AND $4 AND d.done_at IS NULL "
	"AND wval._in_handout(d.event_id, d.leased_at, $5, $6)",
	8, TEXTOID, TEXTOID, INT8OID, INT8OID, INT8ARRAYOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID);

/* expired, or dead (handed out max_attempts times, the last one timed out): finished in place */
static WvalPlan plan_finish = WVAL_PLAN_GENERIC(
	"UPDATE wval.delivery_store d "
	"SET done_at = $4, leased = false, "
	"outcome = CASE WHEN d.expires_at <= $4 THEN 'expired' ELSE 'dead' END, "
	"dead_count = CASE WHEN d.expires_at <= $4 THEN d.dead_count ELSE d.dead_count + 1 END "
	"WHERE d.ctid = ANY ($1) AND d.group_name = $2 AND d.world_key = $3 AND d.done_at IS NULL "
	"RETURNING d.event_id, d.outcome = 'dead'",
	4, TIDARRAYOID, TEXTOID, TEXTOID, TIMESTAMPTZOID);

static WvalPlan plan_lease_write = WVAL_PLAN_GENERIC(
	"INSERT INTO wval.delivery_leases AS l "
	"(group_name, world_key, first_event_id, last_event_id, leased_at, visible_at, event_ids) "
	"VALUES ($1, $2, $3, $4, $5, $5 + $6, $7) ON CONFLICT (group_name, world_key) DO UPDATE "
	"SET first_event_id = excluded.first_event_id, last_event_id = excluded.last_event_id, "
	"leased_at = excluded.leased_at, visible_at = excluded.visible_at, event_ids = excluded.event_ids",
	7, TEXTOID, TEXTOID, INT8OID, INT8OID, TIMESTAMPTZOID, INTERVALOID, INT8ARRAYOID);

static WvalPlan plan_dead_lettered = WVAL_PLAN_GENERIC(
	"SELECT wval._dead_lettered($1, $2)", 2, TEXTOID, INT8OID);

/*
 * The worlds not met by the slices, each found by one probe of the queue
 * index that lands on the world's head, visible heads only, oldest first.
 */
static WvalPlan plan_heads = WVAL_PLAN_GENERIC(
	"WITH RECURSIVE heads AS ("
	" (SELECT x.world_key, x.event_id, x.visible_at FROM wval.delivery_store x"
	"  WHERE x.group_name = $1 AND x.done_at IS NULL ORDER BY x.world_key, x.event_id LIMIT 1)"
	" UNION ALL"
	" SELECT n.world_key, n.event_id, n.visible_at FROM heads hs CROSS JOIN LATERAL ("
	"  SELECT x.world_key, x.event_id, x.visible_at FROM wval.delivery_store x"
	"  WHERE x.group_name = $1 AND x.done_at IS NULL AND x.world_key > hs.world_key"
	"  ORDER BY x.world_key, x.event_id LIMIT 1) n) "
	"SELECT hs.world_key FROM heads hs WHERE hs.visible_at <= $2 AND NOT (hs.world_key = ANY ($3)) "
	"ORDER BY hs.event_id LIMIT $4",
	4, TEXTOID, TIMESTAMPTZOID, TEXTARRAYOID, INT4OID);

/* One call of wval_consume. */
typedef struct Handout
{
	Datum		group;			/* text */
	int32		max_attempts;
	Datum		visibility;		/* interval */
	TimestampTz t;				/* the call's clock_timestamp() */
	Oid			me;				/* the role that called into wval */
	int			budget;			/* events the call may still take */
	int64	   *handed;			/* the events handed out, world after world */
	int			nhanded;
	/* a world's read, sized for the whole budget, reused world after world */
	int64	   *got;			/* events to hand out */
	ItemPointerData *fin;		/* rows to finish in place (expired, dead) */
	int64	   *died;			/* of those, the dead letters */
} Handout;

/* An index scan of the group's outstanding deliveries in event order. */
typedef struct QueueScan
{
	WvalKeyScan scan;
	AttrNumber	world_key;
	AttrNumber	event_id;
	AttrNumber	visible_at;
} QueueScan;

/* A column's number in wval.delivery_store, checked. */
static AttrNumber
store_column(Relation rel, const char *name)
{
	AttrNumber	att = SPI_fnumber(RelationGetDescr(rel), name);

	if (att <= 0)
		elog(ERROR, "column \"%s\" of \"wval.delivery_store\" does not exist", name);
	return att;
}

/*
 * Starts a read of the group's outstanding deliveries after event_id after,
 * through the order index (deliveries_order_idx, done_at IS NULL) with the
 * active snapshot, so that the read does not depend on statistics (a
 * statement was planned on the primary key the table had, which has the
 * same order and walks every finished delivery of the group too).
 */
static void
queue_scan_begin(QueueScan *q, Datum group, int64 after)
{
	Datum		bound = Int64GetDatum(after);

	wval_index_scan_begin(&q->scan, "delivery_store", "deliveries_order_idx", 1, &group, &bound);
	q->world_key = store_column(q->scan.rel, "world_key");
	q->event_id = store_column(q->scan.rel, "event_id");
	q->visible_at = store_column(q->scan.rel, "visible_at");
}

/*
 * The next outstanding delivery: false at the end.  No check of done_at:
 * an ack is not a HOT update (done_at is in the index's predicate), so an
 * entry leads only to outstanding versions.  *world points into the row
 * (valid until the scan moves on).
 */
static bool
queue_scan_next(QueueScan *q, Datum *world, int64 *event_id, TimestampTz *visible_at)
{
	HeapTuple	tup = wval_key_scan_next(&q->scan, false);
	TupleDesc	desc = RelationGetDescr(q->scan.rel);
	bool		isnull;

	if (tup == NULL)
		return false;
	*world = heap_getattr(tup, q->world_key, desc, &isnull);
	*event_id = DatumGetInt64(heap_getattr(tup, q->event_id, desc, &isnull));
	*visible_at = DatumGetTimestampTz(heap_getattr(tup, q->visible_at, desc, &isnull));
	return true;
}

/* Takes the world's hand-out lock unless another consumer holds it. */
static bool
world_lock(Datum group, const char *world)
{
	char	   *key = psprintf("%s/%s", TextDatumGetCString(group), world);
	Datum		hash = DirectFunctionCall1Coll(hashtext, DEFAULT_COLLATION_OID, CStringGetTextDatum(key));

	return DatumGetBool(DirectFunctionCall2(pg_try_advisory_xact_lock_int4,
											Int32GetDatum(WORLD_LOCK_CLASS), hash));
}

/* A bigint[] of n values. */
static Datum
int8_array(const int64 *values, int n)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
		elems[i] = Int64GetDatum(values[i]);
	return PointerGetDatum(construct_array(elems, n, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

static int
int64_cmp(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return (x > y) - (x < y);
}

/*
 * The world's latest hand-out, if any (a new statement, so a new snapshot:
 * it sees every hand-out committed before the world lock was granted).
 * Returns false when the world is to be skipped: some of the hand-out is
 * still in a consumer's hands (visibility not passed, an event neither
 * finished nor settled), or an ack or nack of the world holds its lease row
 * right now.  Otherwise the lease row is locked, the events of a timed-out
 * hand-out not settled have that hand-out written (the timeout), and *lt is
 * the time of the new hand-out: later than the last one's even if the clock
 * did not move on, since a hand-out's time tells its settled events from
 * the others.
 */
static bool
claim_world(Handout *h, Datum world, TimestampTz *lt)
{
	Datum		args[8];
	bool		isnull;
	TimestampTz leased_at;
	TimestampTz visible_at;

	args[0] = h->group;
	args[1] = world;
	wval_spi_exec(&plan_lease_read, args, NULL, false, 1, SPI_OK_SELECT);
	*lt = h->t;
	if (SPI_processed == 0)
		return true;			/* never handed out */
	args[2] = wval_spi_datum(0, 1, &isnull);
	args[3] = wval_spi_datum(0, 2, &isnull);
	args[4] = datumCopy(wval_spi_datum(0, 3, &isnull), false, -1);
	args[5] = wval_spi_datum(0, 4, &isnull);
	args[6] = wval_spi_datum(0, 5, &isnull);
	args[7] = TimestampTzGetDatum(h->t);
	leased_at = DatumGetTimestampTz(args[5]);
	visible_at = DatumGetTimestampTz(args[6]);
	if (visible_at > h->t)
	{
		wval_spi_exec(&plan_busy, args, NULL, false, 1, SPI_OK_SELECT);
		if (SPI_processed > 0)
			return false;
	}

	/*
	 * Nothing but a hand-out changes the row, and only under the world lock
	 * held, so what was read is what is locked.
	 */
	wval_spi_exec(&plan_lease_lock, args, NULL, false, 1, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return false;
	if (visible_at <= h->t)
		wval_spi_exec(&plan_timeout, args, NULL, false, 0, SPI_OK_UPDATE);
	*lt = Max(h->t, leased_at + 1);
	return true;
}

/*
 * Hands out one world: unless the caller may not read it (its grant was
 * revoked after the events were emitted: they stay for others) or another
 * consumer holds it, the visible prefix of its queue, at most the budget's
 * events, is handed out, or expired or dead-lettered in place.  What the
 * call took counts against the budget.
 */
static void
consume_world(Handout *h, const char *world_key)
{
	Datum		world = CStringGetTextDatum(world_key);
	Datum		keys[2] = {h->group, world};
	int64	   *got = h->got;
	ItemPointerData *fin = h->fin;
	int64	   *died = h->died;
	int			ngot = 0;
	int			nfin = 0;
	int			ndied = 0;
	int			taken = 0;
	TimestampTz lt;
	WvalKeyScan scan;
	HeapTuple	tup;
	AttrNumber	a_event_id;
	AttrNumber	a_attempts;
	AttrNumber	a_expires_at;
	AttrNumber	a_visible_at;
	AttrNumber	a_done_at;
	Datum		args[7];
	int			i;

	if (world_key[0] != '\0' && !wval_access_allowed(h->me, world_key, false))
		return;
	if (!world_lock(h->group, world_key) || !claim_world(h, world, &lt))
		return;

	/*
	 * The visible prefix of the world's queue in event order, at most budget
	 * events, with a snapshot taken now that also sees the timeout just
	 * written.  The lease row is locked (or, for a world never handed out,
	 * nothing of it can be acked or nacked), so no ack or nack changes these
	 * rows before this transaction ends.
	 */
	CommandCounterIncrement();
	PushCopiedSnapshot(GetTransactionSnapshot());
	UpdateActiveSnapshotCommandId();
	wval_index_scan_begin(&scan, "delivery_store", "deliveries_queue_idx", 2, keys, NULL);
	a_event_id = store_column(scan.rel, "event_id");
	a_attempts = store_column(scan.rel, "attempts");
	a_expires_at = store_column(scan.rel, "expires_at");
	a_visible_at = store_column(scan.rel, "visible_at");
	a_done_at = store_column(scan.rel, "done_at");
	while (taken < h->budget && (tup = wval_key_scan_next(&scan, false)) != NULL)
	{
		TupleDesc	desc = RelationGetDescr(scan.rel);
		bool		isnull;
		bool		no_expiry;
		TimestampTz expires_at;

		if (!heap_attisnull(tup, a_done_at, desc))
			continue;
		if (DatumGetTimestampTz(heap_getattr(tup, a_visible_at, desc, &isnull)) > h->t)
			break;				/* the prefix ends at an event not visible */
		taken++;
		expires_at = DatumGetTimestampTz(heap_getattr(tup, a_expires_at, desc, &no_expiry));
		if ((!no_expiry && expires_at <= h->t) ||
			DatumGetInt32(heap_getattr(tup, a_attempts, desc, &isnull)) >= h->max_attempts)
			fin[nfin++] = tup->t_self;
		else
			got[ngot++] = DatumGetInt64(heap_getattr(tup, a_event_id, desc, &isnull));
	}
	wval_key_scan_end(&scan);
	PopActiveSnapshot();

	if (nfin > 0)
	{
		Datum	   *tids = palloc(sizeof(Datum) * nfin);

		for (i = 0; i < nfin; i++)
			tids[i] = PointerGetDatum(&fin[i]);
		args[0] = PointerGetDatum(construct_array(tids, nfin, TIDOID, sizeof(ItemPointerData), false, TYPALIGN_SHORT));
		args[1] = h->group;
		args[2] = world;
		args[3] = TimestampTzGetDatum(h->t);
		wval_spi_exec(&plan_finish, args, NULL, false, 0, SPI_OK_UPDATE_RETURNING);
		for (i = 0; i < (int) SPI_processed; i++)
		{
			bool		isnull;

			if (DatumGetBool(wval_spi_datum(i, 2, &isnull)))
				died[ndied++] = wval_spi_int64(i, 1, 0);
		}
		qsort(died, ndied, sizeof(int64), int64_cmp);
	}
	if (ngot > 0)
	{
		args[0] = h->group;
		args[1] = world;
		args[2] = Int64GetDatum(got[0]);
		args[3] = Int64GetDatum(got[ngot - 1]);
		args[4] = TimestampTzGetDatum(lt);
		args[5] = h->visibility;
		args[6] = int8_array(got, ngot);
		wval_spi_exec(&plan_lease_write, args, NULL, false, 0, SPI_OK_INSERT);
		memcpy(h->handed + h->nhanded, got, sizeof(int64) * ngot);
		h->nhanded += ngot;
	}
	for (i = 0; i < ndied; i++)
	{
		args[0] = h->group;
		args[1] = Int64GetDatum(died[i]);
		wval_spi_exec(&plan_dead_lettered, args, NULL, false, 0, SPI_OK_SELECT);
	}
	h->budget -= taken;
}

/* Is world among the n worlds seen? */
static bool
seen_world(char **seen, int n, const char *world)
{
	int			i;

	for (i = 0; i < n; i++)
		if (strcmp(seen[i], world) == 0)
			return true;
	return false;
}

/*
 * Hands out the worlds whose queue head may be handed out, oldest head
 * first, until the budget is spent.  The group's outstanding events in
 * event order meet each world first at its head: they are read in growing
 * slices, and the worlds whose head is visible are taken as they come
 * (stored visibility: a head in backoff is skipped here, a head in a
 * hand-out by claim_world).  In a queue spread over worlds the budget is
 * spent within the first slice or two.  A backlog dominated by a world in a
 * consumer's hands (or in backoff) could make that read long, so it stops
 * after SCAN_CAP rows, and the worlds not met by then come from plan_heads.
 */
static void
consume_worlds(Handout *h, int max)
{
	char	  **seen = palloc(sizeof(char *) * SCAN_CAP);
	int			nseen = 0;
	int			scanned = 0;
	int			slice = 4;
	int64		last_id = 0;

	for (;;)
	{
		char	  **worlds;
		TimestampTz *visible;
		int			sliced = 0;
		int			i;
		QueueScan	q;
		Datum		w;
		int64		id;
		TimestampTz vis;

		/* a slice is read whole: a first slice of 32 cost 0.04 ms more per call (measured) */
		slice = Min(slice, SCAN_CAP - scanned);
		worlds = palloc(sizeof(char *) * slice);
		visible = palloc(sizeof(TimestampTz) * slice);
		PushCopiedSnapshot(GetTransactionSnapshot());
		UpdateActiveSnapshotCommandId();
		queue_scan_begin(&q, h->group, last_id);
		while (sliced < slice && queue_scan_next(&q, &w, &id, &vis))
		{
			worlds[sliced] = TextDatumGetCString(w);
			visible[sliced] = vis;
			last_id = id;
			sliced++;
		}
		wval_key_scan_end(&q.scan);
		PopActiveSnapshot();
		for (i = 0; i < sliced; i++)
		{
			if (h->budget <= 0)
				return;
			if (seen_world(seen, nseen, worlds[i]))
				continue;
			seen[nseen++] = worlds[i];
			if (visible[i] <= h->t)
				consume_world(h, worlds[i]);
		}
		scanned += sliced;
		if (h->budget <= 0 || sliced < slice || scanned >= SCAN_CAP)
			break;
		slice *= 2;
	}
	if (h->budget > 0 && scanned >= SCAN_CAP)
	{
		Datum	   *elems = palloc(sizeof(Datum) * Max(nseen, 1));
		Datum		args[4];
		char	  **heads;
		int			nheads;
		int			i;

		for (i = 0; i < nseen; i++)
			elems[i] = CStringGetTextDatum(seen[i]);
		args[0] = h->group;
		args[1] = TimestampTzGetDatum(h->t);
		args[2] = PointerGetDatum(construct_array(elems, nseen, TEXTOID, -1, false, TYPALIGN_INT));
		args[3] = Int32GetDatum(max);
		wval_spi_exec(&plan_heads, args, NULL, false, 0, SPI_OK_SELECT);
		nheads = (int) SPI_processed;
		heads = palloc(sizeof(char *) * Max(nheads, 1));
		for (i = 0; i < nheads; i++)
			heads[i] = wval_spi_text(i, 1);
		for (i = 0; i < nheads && h->budget > 0; i++)
			consume_world(h, heads[i]);
	}
}

/*
 * The events handed out, oldest first, into the call's result: each read
 * through wval.events' primary key with a snapshot taken now, one index
 * scan rescanned for each (a statement would build each row as a composite
 * value and sort them).  The rows go out as stored, their external values
 * inlined: the table's row type is what the function returns.
 */
static void
put_events(ReturnSetInfo *rsinfo, int64 *ids, int n)
{
	WvalKeyLookup events;
	int			i;

	if (n == 0)
		return;
	qsort(ids, n, sizeof(int64), int64_cmp);
	PushCopiedSnapshot(GetTransactionSnapshot());
	UpdateActiveSnapshotCommandId();
	wval_key_lookup_begin(&events, "events", NULL, 1);
	for (i = 0; i < n; i++)
	{
		Datum		key = Int64GetDatum(ids[i]);
		TupleTableSlot *slot = wval_key_lookup(&events, &key);

		if (slot != NULL)
		{
			HeapTuple	tup = ExecFetchSlotHeapTuple(slot, false, NULL);

			if (HeapTupleHasExternal(tup))
				tup = toast_flatten_tuple(tup, RelationGetDescr(events.rel));
			tuplestore_puttuple(rsinfo->setResult, tup);
		}
	}
	wval_key_lookup_end(&events);
	PopActiveSnapshot();
}

PG_FUNCTION_INFO_V1(wval_consume);

/*
 * wval_consume(group_name, max) → SETOF wval.events: hands out up to max
 * events the group has not finished, oldest first, per-world order kept (a
 * world's events go to one consumer at a time); concurrent callers never
 * get the same event.  WV010 for a group that does not exist for the
 * caller, 22023 for max outside 1..1000.
 */
Datum
wval_consume(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Handout		h;
	Datum		args[2];
	char		nulls[2] = {' ', ' '};
	bool		isnull;
	int32		max;

	InitMaterializedSRF(fcinfo, 0);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/* a group the caller may not use does not exist for it (WV010) */
	args[0] = PG_ARGISNULL(0) ? (Datum) 0 : PG_GETARG_DATUM(0);
	nulls[0] = PG_ARGISNULL(0) ? 'n' : ' ';
	wval_spi_exec(&plan_group, args, nulls, false, 1, SPI_OK_SELECT);
	if (SPI_processed != 1)
		elog(ERROR, "wval._group returned %d rows", (int) SPI_processed);
	h.group = PG_GETARG_DATUM(0);
	h.max_attempts = DatumGetInt32(wval_spi_datum(0, 1, &isnull));
	h.visibility = datumCopy(wval_spi_datum(0, 2, &isnull), false, sizeof(Interval));
	h.t = GetCurrentTimestamp();
	h.me = GetOuterUserId();
	max = PG_ARGISNULL(1) ? 0 : PG_GETARG_INT32(1);
	if (PG_ARGISNULL(1) || max < 1 || max > 1000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for \"max\""),
				 errdetail("max is %s.", PG_ARGISNULL(1) ? "null" : psprintf("%d", max)),
				 errhint("Ask for between 1 and 1000 events per call.")));
	h.budget = max;
	h.handed = palloc(sizeof(int64) * max);
	h.nhanded = 0;
	h.got = palloc(sizeof(int64) * max);
	h.fin = palloc(sizeof(ItemPointerData) * max);
	h.died = palloc(sizeof(int64) * max);

	/* expired events nobody holds: counted as expired and acknowledged */
	args[0] = h.group;
	args[1] = TimestampTzGetDatum(h.t);
	wval_spi_exec(&plan_expiry_probe, args, NULL, false, 1, SPI_OK_SELECT);
	if (SPI_processed > 0)
		wval_spi_exec(&plan_expire, args, NULL, false, 0, SPI_OK_SELECT);

	consume_worlds(&h, max);

	put_events(rsinfo, h.handed, h.nhanded);
	SPI_finish();
	return (Datum) 0;
}

/* ----------------------------------------------------------------
 * The ack
 *
 * wval._ack(group, ids) finishes the group's outstanding deliveries of ids
 * as acked, each with the hand-out in progress it ends written into its row
 * (one more attempt and hand-out, the hand-out's time and visibility).
 * The lease rows of their worlds are read locked first (FOR SHARE: a
 * hand-out of one of these worlds being written is waited for, and its
 * latest version read), once per world, so the updates that follow know
 * for each event the hand-out that is in progress and no hand-out can
 * change it before this transaction ends.  An update decides per row
 * version whether the event's part of that hand-out has ended (its stored
 * leased_at is the hand-out's), so a row a hand-out or a nack changed while
 * the ack waited for it is judged as it is now.
 * ----------------------------------------------------------------
 */

static WvalPlan plan_ack_leases = WVAL_PLAN_GENERIC(
	"SELECT l.world_key, l.event_ids, l.leased_at, l.visible_at FROM wval.delivery_leases l "
	"WHERE l.group_name = $1 AND l.world_key = ANY ($2) FOR SHARE",
	2, TEXTOID, TEXTARRAYOID);

/*
 * The ack's updates.  The events of one world listed in its hand-out ($3:
 * its time, $4: its visibility): an event whose part of it has not ended
 * (its leased_at is not the hand-out's: wval._in_handout's rule, the
 * listing decided by the caller) gets the hand-out written.  Events in no
 * hand-out are acknowledged as they are.  Each update comes twice: by the
 * rows the read of the worlds found ($2 tid[], a TID scan), and by event_id
 * ($2 bigint[]) for the events whose row changed since (a hand-out the lock
 * waited for wrote their timeout, or a nack).  By row, "outstanding" is
 * spelled "outcome IS NULL" (the same, by the table's check): with "done_at
 * IS NULL" the planner may prefer a scan of the group's queue through a
 * partial index when the statistics say the queue is empty, as they do
 * after a drain, and keep that generic plan through the next backlog.
 */
#define ACK_LISTED_SET \
	"SET done_at = clock_timestamp(), outcome = 'acked', leased = false, " \
	"attempts = d.attempts + (d.leased_at IS DISTINCT FROM $3)::integer, " \
	"handouts = d.handouts + (d.leased_at IS DISTINCT FROM $3)::integer, " \
	"leased_at = $3, " \
	"visible_at = CASE WHEN d.leased_at IS DISTINCT FROM $3 THEN $4 ELSE d.visible_at END "
#define ACK_UNLISTED_SET \
	"SET done_at = clock_timestamp(), outcome = 'acked', leased = false "
#define ACK_BY_ROW "WHERE d.ctid = ANY ($2) AND d.group_name = $1 AND d.outcome IS NULL RETURNING d.event_id, d.attempts"
#define ACK_BY_ID "WHERE d.group_name = $1 AND d.event_id = ANY ($2) AND d.done_at IS NULL RETURNING d.event_id, d.attempts"

static WvalPlan plan_ack_listed_rows = WVAL_PLAN_GENERIC(
	"UPDATE wval.delivery_store d " ACK_LISTED_SET ACK_BY_ROW,
	4, TEXTOID, TIDARRAYOID, TIMESTAMPTZOID, TIMESTAMPTZOID);
static WvalPlan plan_ack_listed_ids = WVAL_PLAN_GENERIC(
	"UPDATE wval.delivery_store d " ACK_LISTED_SET ACK_BY_ID,
	4, TEXTOID, INT8ARRAYOID, TIMESTAMPTZOID, TIMESTAMPTZOID);
static WvalPlan plan_ack_unlisted_rows = WVAL_PLAN_GENERIC(
	"UPDATE wval.delivery_store d " ACK_UNLISTED_SET ACK_BY_ROW,
	2, TEXTOID, TIDARRAYOID);
static WvalPlan plan_ack_unlisted_ids = WVAL_PLAN_GENERIC(
	"UPDATE wval.delivery_store d " ACK_UNLISTED_SET ACK_BY_ID,
	2, TEXTOID, INT8ARRAYOID);

/* An event to acknowledge: its world and the hand-out that lists it. */
typedef struct AckItem
{
	int64		event_id;
	char	   *world;			/* NULL: no outstanding delivery */
	ItemPointerData row;		/* where the read of the worlds found it */
	bool		acked;			/* by this call */
	bool		listed;			/* listed in its world's latest hand-out */
	TimestampTz at;
	TimestampTz until;
} AckItem;

/* The distinct, non-null ids of a bigint[], sorted; returns how many. */
static int
sorted_ids(ArrayType *arr, AckItem **items)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;
	int			k = 0;
	int64	   *ids;

	deconstruct_array(arr, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &elems, &nulls, &n);
	ids = palloc(sizeof(int64) * Max(n, 1));
	for (i = 0; i < n; i++)
		if (!nulls[i])
			ids[k++] = DatumGetInt64(elems[i]);
	qsort(ids, k, sizeof(int64), int64_cmp);
	*items = palloc0(sizeof(AckItem) * Max(k, 1));
	n = 0;
	for (i = 0; i < k; i++)
		if (i == 0 || ids[i] != ids[i - 1])
			(*items)[n++].event_id = ids[i];
	return n;
}

/* The item of an event_id (items sorted by event_id), or NULL. */
static AckItem *
ack_item(AckItem *items, int n, int64 id)
{
	int			lo = 0;
	int			hi = n - 1;

	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;

		if (items[mid].event_id < id)
			lo = mid + 1;
		else if (items[mid].event_id > id)
			hi = mid - 1;
		else
			return &items[mid];
	}
	return NULL;
}

/*
 * The world of each item's outstanding delivery and where its row is, read
 * through the order index (group_name, event_id; done_at IS NULL) with a
 * snapshot taken now.
 */
static void
ack_worlds(Datum group, AckItem *items, int n)
{
	WvalKeyLookup deliveries;
	AttrNumber	a_world;
	int			i;

	PushCopiedSnapshot(GetTransactionSnapshot());
	UpdateActiveSnapshotCommandId();
	wval_key_lookup_begin(&deliveries, "delivery_store", "deliveries_order_idx", 2);
	a_world = store_column(deliveries.rel, "world_key");
	for (i = 0; i < n; i++)
	{
		Datum		keys[2] = {group, Int64GetDatum(items[i].event_id)};
		TupleTableSlot *slot = wval_key_lookup(&deliveries, keys);
		bool		isnull;

		if (slot == NULL)
			continue;
		items[i].world = TextDatumGetCString(slot_getattr(slot, a_world, &isnull));
		items[i].row = slot->tts_tid;
	}
	wval_key_lookup_end(&deliveries);
	PopActiveSnapshot();
}

/*
 * Locks the lease rows of the items' worlds (FOR SHARE) and marks each item
 * listed in its world's hand-out with that hand-out's time and visibility.
 */
static void
ack_handouts(Datum group, AckItem *items, int n)
{
	Datum	   *worlds = palloc(sizeof(Datum) * Max(n, 1));
	int			nworlds = 0;
	Datum		args[2];
	int			r;
	int			i;
	char	  **names = palloc(sizeof(char *) * Max(n, 1));

	for (i = 0; i < n; i++)
		if (items[i].world != NULL && !seen_world(names, nworlds, items[i].world))
		{
			names[nworlds] = items[i].world;
			worlds[nworlds++] = CStringGetTextDatum(items[i].world);
		}
	if (nworlds == 0)
		return;
	args[0] = group;
	args[1] = PointerGetDatum(construct_array(worlds, nworlds, TEXTOID, -1, false, TYPALIGN_INT));
	wval_spi_exec(&plan_ack_leases, args, NULL, false, 0, SPI_OK_SELECT);
	for (r = 0; r < (int) SPI_processed; r++)
	{
		char	   *world = wval_spi_text(r, 1);
		bool		isnull;
		ArrayType  *listed = DatumGetArrayTypeP(wval_spi_datum(r, 2, &isnull));
		TimestampTz at = DatumGetTimestampTz(wval_spi_datum(r, 3, &isnull));
		TimestampTz until = DatumGetTimestampTz(wval_spi_datum(r, 4, &isnull));
		Datum	   *elems;
		bool	   *nulls;
		int			nlisted;
		int			j;

		deconstruct_array(listed, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
						  &elems, &nulls, &nlisted);
		for (j = 0; j < nlisted; j++)
		{
			AckItem    *item = ack_item(items, n, DatumGetInt64(elems[j]));

			if (item != NULL && item->world != NULL && strcmp(item->world, world) == 0)
			{
				item->listed = true;
				item->at = at;
				item->until = until;
			}
		}
	}
}

/*
 * One pass of the ack's updates over the items not acked yet: for each
 * world, those its hand-out lists, then those in no hand-out; by their rows
 * (by_row) or by event_id.  Marks what was acknowledged, adds it to *acked
 * and keeps in *unsent the least event never handed out (0: none; event ids
 * start at 1).  Returns how many items it tried.
 */
static int
ack_pass(Datum group, AckItem *items, int n, bool by_row, int *acked, int64 *unsent)
{
	Datum	   *elems = palloc(sizeof(Datum) * n);
	bool	   *taken = palloc0(sizeof(bool) * n);
	int			tried = 0;
	int			i;

	for (i = 0; i < n; i++)
	{
		AckItem    *first = &items[i];
		Datum		args[4];
		int			k = 0;
		int			j;
		int			r;

		if (taken[i] || first->world == NULL || first->acked)
			continue;
		/* the items of first's kind: listed in the same world's hand-out, or in none */
		for (j = i; j < n; j++)
			if (!taken[j] && items[j].world != NULL && !items[j].acked && items[j].listed == first->listed &&
				(!first->listed || strcmp(items[j].world, first->world) == 0))
			{
				elems[k++] = by_row ? PointerGetDatum(&items[j].row) : Int64GetDatum(items[j].event_id);
				taken[j] = true;
			}
		args[0] = group;
		args[1] = by_row ?
			PointerGetDatum(construct_array(elems, k, TIDOID, sizeof(ItemPointerData), false, TYPALIGN_SHORT)) :
			PointerGetDatum(construct_array(elems, k, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		args[2] = TimestampTzGetDatum(first->at);
		args[3] = TimestampTzGetDatum(first->until);
		wval_spi_exec(first->listed ? (by_row ? &plan_ack_listed_rows : &plan_ack_listed_ids) :
					  (by_row ? &plan_ack_unlisted_rows : &plan_ack_unlisted_ids),
					  args, NULL, false, 0, SPI_OK_UPDATE_RETURNING);
		tried += k;
		*acked += (int) SPI_processed;
		for (r = 0; r < (int) SPI_processed; r++)
		{
			bool		isnull;
			int64		id = wval_spi_int64(r, 1, 0);
			AckItem    *item = ack_item(items, n, id);

			if (item != NULL)
				item->acked = true;
			if (DatumGetInt32(wval_spi_datum(r, 2, &isnull)) == 0 && (*unsent == 0 || id < *unsent))
				*unsent = id;
		}
	}
	return tried;
}

PG_FUNCTION_INFO_V1(wval_ack);

/*
 * wval._ack(group_name, event_ids) → (acked integer, unsent bigint): how
 * many outstanding deliveries of these events were acknowledged, and one
 * of them that had never been handed out (the caller raises an error,
 * which undoes the acks); see "The ack".
 */
Datum
wval_ack(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		result[2];
	bool		result_null[2] = {false, true};
	AckItem    *items;
	int			n;
	int			acked = 0;
	int64		unsent = 0;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "wval._ack must return a record");
	desc = BlessTupleDesc(desc);
	n = PG_ARGISNULL(0) || PG_ARGISNULL(1) ? 0 : sorted_ids(PG_GETARG_ARRAYTYPE_P(1), &items);
	if (n > 0)
	{
		Datum		group = PG_GETARG_DATUM(0);

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		ack_worlds(group, items, n);
		ack_handouts(group, items, n);
		/* rows changed since the read (or finished meanwhile): again by event_id */
		if (ack_pass(group, items, n, true, &acked, &unsent) > acked)
			ack_pass(group, items, n, false, &acked, &unsent);
		SPI_finish();
	}
	result[0] = Int32GetDatum(acked);
	result[1] = Int64GetDatum(unsent);
	result_null[1] = unsent == 0;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, result, result_null)));
}

PG_FUNCTION_INFO_V1(wval_queue_scan);

/*
 * wval._queue_scan(group_name, after, n) → (world_key, event_id,
 * visible_at): the group's next n outstanding deliveries after event_id
 * after, in event_id order: the slices wval_consume reads (queue_scan_begin),
 * for tests and inspection.
 */
Datum
wval_queue_scan(PG_FUNCTION_ARGS)
{
	Datum		group = PointerGetDatum(PG_GETARG_TEXT_PP(0));	/* STRICT: no nulls */
	int64		after = PG_GETARG_INT64(1);
	int32		n = PG_GETARG_INT32(2);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	QueueScan	q;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
	int64		id;
	TimestampTz vis;

	InitMaterializedSRF(fcinfo, 0);
	if (n <= 0)
		return (Datum) 0;
	queue_scan_begin(&q, group, after);
	while (n > 0 && queue_scan_next(&q, &values[0], &id, &vis))
	{
		values[1] = Int64GetDatum(id);
		values[2] = TimestampTzGetDatum(vis);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		n--;
	}
	wval_key_scan_end(&q.scan);
	return (Datum) 0;
}
