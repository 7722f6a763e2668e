/*-------------------------------------------------------------------------
 *
 * hub.c
 *	  The risk hub: publishing a risk snapshot (the contract is checked by
 *	  hub_contract.c), dedupe and version collisions, storing it with its
 *	  offloaded parts, the publish counters, the risk_snapshot_updated
 *	  event and reads of stored snapshots.  Once a new snapshot is stored
 *	  the hub announces it to the hooks registered with
 *	  wval_snapshot_stored_register (the portfolio layer, risk.c, runs the
 *	  extended validation of worlds that ask for it from there); the hub
 *	  itself calls no higher layer.
 *
 * Order of checks (docs/risk-hub.md lists it for producers):
 *
 *	  arguments:  world_id exists (WV010), stage accepted, actor non-empty
 *	  snapshot:   a JSON object, no unknown top-level field
 *	  fields:     as_of, version, weights, covariance, the *_ref fields,
 *				  realized_returns, stress, constraints, ttl_sec (range, then
 *				  expiry: WV005), hash (WV006), provenance, and last the
 *				  producer: registered and not revoked, HMAC (WV009)
 *	  identity:   same (world, version) and same hash is a dedupe hit, a
 *				  different hash is WV007
 *
 * Canonical form.  The payload is the snapshot without "hash", after the
 * large parts were replaced by wval-blob references; the canonical text is
 * its jsonb text (jsonb_out), the hash 'sha256:' || hex(sha256(UTF-8 of
 * that text)), so that SQL can recheck any stored row.
 *
 * Counting rejections.  A rejected publish raises an error, which rolls
 * back everything its transaction wrote, a counter row included.  So
 * rejections (expired, failed) are counted in per-world, per-stage
 * sequences: a sequence change is never rolled back, takes no row lock and
 * is visible to every session at once.  Not with nextval(), though:
 * nextval() WAL-logs 32 values ahead, so after a crash the counter jumps
 * by up to 32.  A rejection takes a lock on its sequence that only other
 * rejections ask for (released when the failing (sub)transaction aborts,
 * which follows at once), reads the value and setval()s value + 1, which
 * WAL-logs exactly that value, and flushes the WAL before the error is
 * raised: a rejection whose error reached the client is counted, also
 * after a crash; a crash between the count and the error counts a call
 * that failed without telling its client why.  The sequences are
 * created with the world (trigger in hub.sql); rejections that cannot be
 * attributed to a world's sequence (unknown world) go to one global
 * sequence.  Accepted publishes and dedupe hits are counted
 * transactionally, together with the data, in wval.snapshot_counters, one
 * row per (world, stage, backend slot) so that concurrent publishers do
 * not queue on one row.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/backendid.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "wval.h"
#include "hub.h"
#include "hub_contract.h"
#include "jsonb.h"
#include "spi.h"

/* settings */
int			wval_snapshot_max_age_s = 900;
int			wval_offload_threshold = 100;

#define COUNTER_SHARDS			16
#define UNATTRIBUTED_SEQ		"snapshot_rejects_unattributed"
#define MAX_STORED_HOOKS		4

/* the hooks told of a newly stored snapshot (wval_snapshot_stored_register) */
static WvalSnapshotStoredHook stored_hooks[MAX_STORED_HOOKS];
static int	nstored_hooks = 0;

static WvalPlan plan_world = WVAL_PLAN(
	"SELECT settings FROM wval.worlds WHERE world_id = $1 AND wval._can_read($1)",
	1, TEXTOID);
static WvalPlan plan_existing = WVAL_PLAN(
	"SELECT * FROM wval.risk_snapshots WHERE world_id = $1 AND version = $2",
	2, TEXTOID, TEXTOID);
static WvalPlan plan_blob_insert = WVAL_PLAN(
	"INSERT INTO wval.blobs (world_id, blob_hash, kind, content, size_bytes, created_by) "
	"VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (world_id, blob_hash) DO NOTHING",
	6, TEXTOID, TEXTOID, TEXTOID, JSONBOID, INT4OID, TEXTOID);
static WvalPlan plan_insert = WVAL_PLAN(
	"INSERT INTO wval.risk_snapshots (world_id, version, hash, payload, actor, stage, "
	"as_of, ttl_sec, received_at, signed, blob_refs) "
	"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING *",
	11, TEXTOID, TEXTOID, TEXTOID, JSONBOID, TEXTOID, TEXTOID, TIMESTAMPTZOID, INT4OID, TIMESTAMPTZOID, BOOLOID, TEXTARRAYOID);
static WvalPlan plan_count = WVAL_PLAN(
	"INSERT INTO wval.snapshot_counters AS c (world_id, stage, shard, processed, dedupe) "
	"VALUES ($1, $2, $3, $4, $5) ON CONFLICT (world_id, stage, shard) DO UPDATE "
	"SET processed = c.processed + excluded.processed, dedupe = c.dedupe + excluded.dedupe, "
	"updated_at = now()",
	5, TEXTOID, TEXTOID, INT2OID, INT8OID, INT8OID);
static WvalPlan plan_emit = WVAL_PLAN(
	"SELECT wval._emit('risk_snapshot_updated', $1, $2, $3, $4, make_interval(secs => $5))",
	5, TEXTOID, TEXTOID, TEXTOID, JSONBOID, FLOAT8OID);
static WvalPlan plan_latest = WVAL_PLAN(
	"SELECT s.version, s.hash, s.stage, s.actor, s.as_of, s.payload, "
	"wval._snapshot_expand(s.world_id, s.payload) "
	"FROM wval.risk_snapshots s WHERE s.world_id = $1 AND ($2::text IS NULL OR s.stage = $2) "
	"ORDER BY s.as_of DESC, s.snapshot_id DESC LIMIT 1",
	2, TEXTOID, TEXTOID);

/* Registers the hub's settings (called from _PG_init). */
void
wval_hub_init(void)
{
	DefineCustomIntVariable("wval.snapshot_max_age",
							"Age (now - as_of) up to which a risk snapshot counts as fresh.",
							"Reads of the latest snapshot skip older ones unless asked for stale ones.",
							&wval_snapshot_max_age_s,
							900, 1, INT_MAX / 2,
							PGC_USERSET, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("wval.offload_threshold",
							"Covariance entries, realized-return points or stress scenarios above which a snapshot part moves to wval.blobs.",
							"A world's settings->'offload_threshold' overrides it.  Changes the canonical form of new snapshots.",
							&wval_offload_threshold,
							100, 0, INT_MAX,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
}

/* ---------------------------------------------------------------------
 * Counting
 * ---------------------------------------------------------------------
 */

/*
 * Name of the sequence that counts one outcome (expired | failed) of one
 * world and stage: snapshot_rejects_<16 hex of sha256(world)>_<stage>_<outcome>.
 */
static char *
counter_sequence_name(const char *world_id, const char *stage, const char *outcome)
{
	char		hex[WVAL_SHA256_HEX_LEN + 1];

	wval_sha256_utf8_hex(world_id, strlen(world_id), hex);
	hex[16] = '\0';
	return psprintf("snapshot_rejects_%s_%s_%s", hex, stage, outcome);
}

/*
 * Adds 1 to a counter sequence exactly (see "Counting rejections"): a
 * self-conflicting lock on the sequence serialises the read and the
 * setval() of concurrent rejections; setval() logs the value itself, not
 * 32 ahead; the WAL flush makes the count durable before the caller
 * learns of its rejection.
 */
static void
increment_counter_sequence(Oid seq)
{
	LOCAL_FCINFO(fcinfo, 1);
	Datum		last;
	int64		value = 0;

	LockRelationOid(seq, ShareUpdateExclusiveLock);
	InitFunctionCallInfoData(*fcinfo, NULL, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = ObjectIdGetDatum(seq);
	fcinfo->args[0].isnull = false;
	last = pg_sequence_last_value(fcinfo);
	if (!fcinfo->isnull)
		value = DatumGetInt64(last);
	DirectFunctionCall3(setval3_oid, ObjectIdGetDatum(seq), Int64GetDatum(value + 1),
						BoolGetDatum(true));
	XLogFlush(XactLastRecEnd);
}

/*
 * Counts a rejected publish.  Runs right before the error is raised, while
 * the transaction is still healthy; the sequence survives the rollback.
 */
void
wval_hub_count_rejection(SnapshotContract *c, bool expired)
{
	Oid			nsp;
	Oid			seq = InvalidOid;

	if (c->dry_run)
		return;
	nsp = get_namespace_oid("wval", true);
	if (!OidIsValid(nsp))
		return;
	if (c->world_known)
		seq = get_relname_relid(counter_sequence_name(c->world_id, c->count_stage,
													  expired ? "expired" : "failed"),
								nsp);
	if (!OidIsValid(seq))
		seq = get_relname_relid(UNATTRIBUTED_SEQ, nsp);
	if (OidIsValid(seq))
		increment_counter_sequence(seq);
}

/* Counts an accepted publish or a dedupe hit, with the data. */
static void
count_outcome(SnapshotContract *c, bool dedupe)
{
	Datum		values[5];

	values[0] = CStringGetTextDatum(c->world_id);
	values[1] = CStringGetTextDatum(c->stage);
	values[2] = Int16GetDatum((int16) (MyBackendId % COUNTER_SHARDS));
	values[3] = Int64GetDatum(dedupe ? 0 : 1);
	values[4] = Int64GetDatum(dedupe ? 1 : 0);
	wval_spi_exec(&plan_count, values, NULL, false, 0, WVAL_SPI_ANY);
}


/* ---------------------------------------------------------------------
 * The world
 * ---------------------------------------------------------------------
 */

/* world_id: given and an existing world; reads its settings. */
static void
check_world(SnapshotContract *c)
{
	Datum		arg;
	double		threshold;
	Jsonb	   *settings = NULL;
	bool		isnull;

	if (c->world_id == NULL)
		contract_reject(c, false,
						(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
						 errmsg("\"world_id\" must not be null"),
						 errhint("Pass the world the snapshot describes.")));
	arg = CStringGetTextDatum(c->world_id);
	if (wval_spi_exec(&plan_world, &arg, NULL, true, 1, WVAL_SPI_ANY) != SPI_OK_SELECT)
		elog(ERROR, "could not read world");
	if (SPI_processed == 0)
		contract_reject(c, false,
						(errcode(ERRCODE_WVAL_UNKNOWN_OBJECT),
						 errmsg("world \"%s\" does not exist", c->world_id),
						 errdetail("world_id is '%s'.", c->world_id),
						 errhint("Create it first with wval_world_upsert(world_id).")));
	c->world_known = true;
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			settings = DatumGetJsonbP(d);
	}
	c->offload_threshold = wval_offload_threshold;
	if (wval_world_setting_double(settings, "offload_threshold", &threshold) &&
		threshold >= 0 && threshold <= INT_MAX)
		c->offload_threshold = (int) threshold;
	c->settings = settings;
}


/* ---------------------------------------------------------------------
 * Storing
 * ---------------------------------------------------------------------
 */

/*
 * Holds the world's blob lock shared until commit: the storage prune
 * (wval._storage_prune) takes it exclusively before it removes blobs no
 * snapshot references, so a blob this publish resolves or de-duplicates is
 * either still there when our snapshot commits or removed before we look.
 */
static void
lock_world_blobs_shared(const char *world_id)
{
	char	   *key = psprintf("wval:blobs:%s", world_id);

	DirectFunctionCall1(pg_advisory_xact_lock_shared_int8,
						Int64GetDatum((int64) hash_bytes_extended((const unsigned char *) key, strlen(key), 0)));
}

/* Serialises publishers of one (world, version) until commit. */
static void
lock_version(SnapshotContract *c)
{
	char	   *key = psprintf("risk_snapshot:%s:%s", c->world_id, c->version);
	char		hex[WVAL_SHA256_HEX_LEN + 1];
	uint64		k = 0;
	int			i;

	wval_sha256_hex(key, strlen(key), hex);
	for (i = 0; i < 16; i++)
		k = (k << 4) | (uint64) (hex[i] <= '9' ? hex[i] - '0' : hex[i] - 'a' + 10);
	DirectFunctionCall1(pg_advisory_xact_lock_int8, Int64GetDatum((int64) k));
}

/*
 * Looks for the stored snapshot of (world, version): NULL when there is
 * none, the stored row when the hash matches (a dedupe hit); raises WV007
 * when the hash differs.
 */
static HeapTuple
existing_snapshot(SnapshotContract *c, TupleDesc *tupdesc)
{
	Datum		args[2];
	char	   *stored;
	int			col;

	args[0] = CStringGetTextDatum(c->world_id);
	args[1] = CStringGetTextDatum(c->version);
	wval_spi_exec(&plan_existing, args, NULL, false, 1, WVAL_SPI_ANY);
	if (SPI_processed == 0)
		return NULL;
	col = SPI_fnumber(SPI_tuptable->tupdesc, "hash");
	stored = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col);
	if (strcmp(stored, c->hash) != 0)
		contract_reject(c, false,
						(errcode(ERRCODE_WVAL_VERSION_COLLISION),
						 errmsg("version \"%s\" of world \"%s\" already exists with a different hash",
								c->version, c->world_id),
						 errdetail("The stored snapshot has %s, this one has %s.", stored, c->hash),
						 errhint("Publish changed content under a new version; a retry must send the identical snapshot.")));
	*tupdesc = CreateTupleDescCopy(SPI_tuptable->tupdesc);
	return SPI_copytuple(SPI_tuptable->vals[0]);
}

/* Writes the blobs, the snapshot row, the counter and the event. */
static HeapTuple
store_snapshot(SnapshotContract *c, TupleDesc *tupdesc)
{
	Datum		args[11];
	char		nulls[11];
	Datum	   *refs;
	int			i;
	HeapTuple	row;
	JsonbParseState *ps = NULL;
	Jsonb	   *data;
	char	   *key;

	for (i = 0; i < c->nblobs; i++)
	{
		OffloadBlob *b = &c->blobs[i];

		args[0] = CStringGetTextDatum(c->world_id);
		args[1] = CStringGetTextDatum(b->hash);
		args[2] = CStringGetTextDatum(wval_part_field[b->part]);
		args[3] = JsonbPGetDatum(b->content);
		args[4] = Int32GetDatum(b->size_bytes);
		args[5] = CStringGetTextDatum(c->actor);
		wval_spi_exec(&plan_blob_insert, args, NULL, false, 0, WVAL_SPI_ANY);
	}

	refs = palloc(sizeof(Datum) * Max(c->nrefs, 1));
	for (i = 0; i < c->nrefs; i++)
		refs[i] = CStringGetTextDatum(c->blob_refs[i]);
	memset(nulls, ' ', sizeof(nulls));
	args[0] = CStringGetTextDatum(c->world_id);
	args[1] = CStringGetTextDatum(c->version);
	args[2] = CStringGetTextDatum(c->hash);
	args[3] = JsonbPGetDatum(c->payload);
	args[4] = CStringGetTextDatum(c->actor);
	args[5] = CStringGetTextDatum(c->stage);
	args[6] = TimestampTzGetDatum(c->as_of);
	args[7] = Int32GetDatum(c->ttl_sec);
	args[8] = TimestampTzGetDatum(c->arrival);
	args[9] = BoolGetDatum(c->signed_ok);
	args[10] = PointerGetDatum(construct_array(refs, c->nrefs, TEXTOID, -1, false, TYPALIGN_INT));
	if (wval_spi_exec(&plan_insert, args, nulls, false, 1, WVAL_SPI_ANY) != SPI_OK_INSERT_RETURNING ||
		SPI_processed != 1)
		elog(ERROR, "could not store risk snapshot");
	row = SPI_copytuple(SPI_tuptable->vals[0]);
	*tupdesc = CreateTupleDescCopy(SPI_tuptable->tupdesc);

	count_outcome(c, false);

	wval_jb_begin_object(&ps);
	wval_snapshot_header_push(&ps, c->world_id, c->version, c->hash, c->stage, c->actor, c->as_of);
	wval_jb_kv_int64(&ps, "ttl_sec", c->ttl_sec);
	data = wval_jb_end_object(&ps);
	key = psprintf("risk_snapshot_updated:%s:%s:%s:%s:%s",
				   c->world_id, c->version, c->hash, c->actor, c->stage);
	args[0] = CStringGetTextDatum(c->world_id);
	args[1] = CStringGetTextDatum(c->version);
	args[2] = CStringGetTextDatum(key);
	args[3] = JsonbPGetDatum(data);
	args[4] = Float8GetDatum((double) c->ttl_sec);
	wval_spi_exec(&plan_emit, args, NULL, false, 1, WVAL_SPI_ANY);
	return row;
}

/* Text argument n as a C string, NULL when null. */
static char *
text_arg(FunctionCallInfo fcinfo, int n)
{
	return PG_ARGISNULL(n) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(n));
}

/*
 * Fills a contract from the SQL arguments (world_id, snapshot[, actor, stage
 * [, signature]]) that a publish and its dry-run helpers share; nargs says
 * how many the function takes.
 */
static void
contract_from_args(SnapshotContract *c, FunctionCallInfo fcinfo, int nargs, bool dry_run)
{
	memset(c, 0, sizeof(*c));
	c->dry_run = dry_run;
	c->arrival = GetCurrentTimestamp();
	c->world_id = text_arg(fcinfo, 0);
	c->snapshot = PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1);
	if (nargs >= 4)
	{
		c->actor = text_arg(fcinfo, 2);
		c->stage = text_arg(fcinfo, 3);
	}
	if (nargs >= 5)
		c->signature = text_arg(fcinfo, 4);
	c->count_stage = "invalid";
}

/* Tells the registered hooks of the snapshot just stored (see hub.h). */
static void
announce_stored(SnapshotContract *c)
{
	WvalSnapshotStored s;
	int			i;

	s.world_id = c->world_id;
	s.version = c->version;
	s.stage = c->stage;
	s.world_settings = c->settings;
	for (i = 0; i < nstored_hooks; i++)
		stored_hooks[i] (&s);
}

PG_FUNCTION_INFO_V1(wval_snapshot_publish);

/*
 * wval_snapshot_publish(world_id, snapshot, actor, stage, signature)
 * → wval.risk_snapshots: checks the contract, stores the snapshot (or
 * returns the stored one on an identical retry) and emits
 * risk_snapshot_updated, all in the caller's transaction.
 */
Datum
wval_snapshot_publish(PG_FUNCTION_ARGS)
{
	SnapshotContract c;
	HeapTuple	row;
	TupleDesc	tupdesc;
	Datum		result;

	contract_from_args(&c, fcinfo, 5, false);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	check_world(&c);
	lock_world_blobs_shared(c.world_id);
	wval_contract_check_stage(&c);
	wval_contract_check_actor(&c);
	wval_contract_check(&c);

	lock_version(&c);
	row = existing_snapshot(&c, &tupdesc);
	if (row != NULL)
		count_outcome(&c, true);
	else
	{
		row = store_snapshot(&c, &tupdesc);
		announce_stored(&c);
	}

	result = PointerGetDatum(SPI_returntuple(row, tupdesc));
	SPI_finish();
	PG_RETURN_DATUM(result);
}

PG_FUNCTION_INFO_V1(wval_snapshot_canonical);

/*
 * wval_snapshot_canonical(world_id, snapshot) → text: the canonical text a
 * publish of this snapshot would hash and a producer signs (contract
 * checks run; as_of freshness, provenance and the producer are not
 * checked; nothing is stored or counted).
 */
Datum
wval_snapshot_canonical(PG_FUNCTION_ARGS)
{
	SnapshotContract c;
	MemoryContext outer = CurrentMemoryContext;
	MemoryContext spicxt;
	text	   *result;

	contract_from_args(&c, fcinfo, 2, true);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	check_world(&c);
	wval_contract_check(&c);
	/* c.canonical lives in SPI's memory: copy it out before SPI_finish frees it */
	spicxt = MemoryContextSwitchTo(outer);
	result = cstring_to_text(c.canonical);
	MemoryContextSwitchTo(spicxt);
	SPI_finish();
	PG_RETURN_TEXT_P(result);
}

PG_FUNCTION_INFO_V1(wval_snapshot_signed_message);

/*
 * wval_snapshot_signed_message(world_id, snapshot, actor, stage) → text: the
 * message a producer signs for this publish (see build_signed_message);
 * checks the arguments and the contract fields like a publish, stores and
 * counts nothing.
 */
Datum
wval_snapshot_signed_message(PG_FUNCTION_ARGS)
{
	SnapshotContract c;
	StringInfoData message;
	text	   *result;

	contract_from_args(&c, fcinfo, 4, true);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	check_world(&c);
	wval_contract_check_stage(&c);
	wval_contract_check_actor(&c);
	wval_contract_check(&c);
	wval_contract_signed_message(&c, &message);
	/* back to the server encoding, copied out of SPI's memory before SPI_finish */
	{
		char	   *server = pg_any_to_server(message.data, message.len, PG_UTF8);
		size_t		len = strlen(server);

		result = (text *) SPI_palloc(VARHDRSZ + len);
		SET_VARSIZE(result, VARHDRSZ + len);
		memcpy(VARDATA(result), server, len);
	}
	SPI_finish();
	PG_RETURN_TEXT_P(result);
}

PG_FUNCTION_INFO_V1(wval_snapshot_counter_name);

/* wval._snapshot_counter_name(world_id, stage, outcome) → text. */
Datum
wval_snapshot_counter_name(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(counter_sequence_name(text_to_cstring(PG_GETARG_TEXT_PP(0)),
														   text_to_cstring(PG_GETARG_TEXT_PP(1)),
														   text_to_cstring(PG_GETARG_TEXT_PP(2)))));
}

PG_FUNCTION_INFO_V1(wval_snapshot_max_age);

/* wval._snapshot_max_age() → interval: the setting wval.snapshot_max_age. */
Datum
wval_snapshot_max_age(PG_FUNCTION_ARGS)
{
	Interval   *iv = palloc0(sizeof(Interval));

	iv->time = (int64) wval_snapshot_max_age_s * USECS_PER_SEC;
	PG_RETURN_INTERVAL_P(iv);
}

/* Registers a hook told of every newly stored snapshot (hub.h). */
void
wval_snapshot_stored_register(WvalSnapshotStoredHook hook)
{
	int			i;

	for (i = 0; i < nstored_hooks; i++)
		if (stored_hooks[i] == hook)
			return;
	if (nstored_hooks >= MAX_STORED_HOOKS)
		elog(ERROR, "too many snapshot hooks");
	stored_hooks[nstored_hooks++] = hook;
}

/* ---------------------------------------------------------------------
 * Reads
 * ---------------------------------------------------------------------
 */

/* Pushes the keys every snapshot report starts with (hub.h). */
void
wval_snapshot_header_push(JsonbParseState **ps, const char *world_id, const char *version,
						  const char *hash, const char *stage, const char *actor,
						  TimestampTz as_of)
{
	wval_jb_kv_string(ps, "world_id", world_id);
	wval_jb_kv_string(ps, "version", version);
	wval_jb_kv_string(ps, "hash", hash);
	wval_jb_kv_string(ps, "stage", stage);
	wval_jb_kv_string(ps, "actor", actor);
	wval_jb_kv_string(ps, "as_of", wval_iso_utc(as_of));
}

/* Reads the world's latest fresh snapshot (hub.h). */
void
wval_snapshot_read_latest(const char *world_id, const char *stage, WvalStoredSnapshot *out)
{
	MemoryContext outer = CurrentMemoryContext;
	Datum		args[2];
	char		nulls[2] = {' ', ' '};
	bool		isnull;
	TimestampTz now = GetCurrentTransactionStartTimestamp();

	memset(out, 0, sizeof(*out));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	args[0] = CStringGetTextDatum(world_id);
	wval_spi_exec(&plan_world, args, NULL, true, 1, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_UNKNOWN_OBJECT),
				 errmsg("world \"%s\" does not exist", world_id),
				 errdetail("world_id is '%s'.", world_id),
				 errhint("Create it first with wval_world_upsert(world_id).")));
	if (!wval_spi_isnull(0, 1))
	{
		MemoryContext spicxt = MemoryContextSwitchTo(outer);

		out->world_settings = DatumGetJsonbPCopy(wval_spi_datum(0, 1, &isnull));
		MemoryContextSwitchTo(spicxt);
	}

	args[1] = stage ? CStringGetTextDatum(stage) : (Datum) 0;
	nulls[1] = stage ? ' ' : 'n';
	wval_spi_exec(&plan_latest, args, nulls, true, 1, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_UNKNOWN_OBJECT),
				 errmsg("world \"%s\" has no risk snapshot%s%s", world_id,
						stage ? " of stage " : "", stage ? stage : ""),
				 errhint("Producers publish snapshots with wval_snapshot_publish().")));

	{
		MemoryContext spicxt = MemoryContextSwitchTo(outer);

		out->world_id = pstrdup(world_id);
		out->version = wval_spi_text(0, 1);
		out->hash = wval_spi_text(0, 2);
		out->stage = wval_spi_text(0, 3);
		out->actor = wval_spi_text(0, 4);
		out->as_of = DatumGetTimestampTz(wval_spi_datum(0, 5, &isnull));
		out->stored = DatumGetJsonbPCopy(wval_spi_datum(0, 6, &isnull));
		out->expanded = DatumGetJsonbPCopy(wval_spi_datum(0, 7, &isnull));
		MemoryContextSwitchTo(spicxt);
	}

	if (now - out->as_of > (int64) wval_snapshot_max_age_s * USECS_PER_SEC)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_SNAPSHOT_EXPIRED),
				 errmsg("the latest risk snapshot of world \"%s\" is stale", world_id),
				 errdetail("Version \"%s\" has as_of %s, older than wval.snapshot_max_age (%d s).",
						   out->version, wval_iso_utc(out->as_of), wval_snapshot_max_age_s),
				 errhint("Producers must publish a fresh snapshot; wval_snapshot_latest(..., include_stale => true) shows the stale one.")));
	SPI_finish();
}
