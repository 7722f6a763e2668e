/*-------------------------------------------------------------------------
 *
 * run.c
 *	  The one writer of evaluation runs.  Storing a run is three writes in
 *	  the caller's transaction, always in this order:
 *
 *	  1. its event evaluation_run_created (unless the run is imported):
 *		 the row of wval.events, one wval.delivery_store row per consumer group
 *		 that receives it, and the wake-up of the listeners after commit;
 *	  2. the run row of wval.evaluation_runs (the only INSERT into it in
 *		 wval), RETURNING the stored row;
 *	  3. the hash chain: the BEFORE INSERT trigger wval_chain (store.c)
 *		 links the row into its world's chain and refuses any row that
 *		 does not come from one of wval's writers.
 *
 * The run's check results are stored once, in its results column; the
 * view wval.rule_results derives one row per check from it (there is no
 * second copy to write or to keep in step).
 *
 * The run comes last because its insert takes the world's chain-head lock,
 * which is then held only until commit.
 *
 * Every kind of run goes through wval_run_store: wval_evaluate (single),
 * wval_evaluate_portfolio (portfolio), and, through the SQL wrapper
 * wval._store_run(wval.evaluation_runs, emit boolean), wval_record_run
 * (bypass), wval_live_run (live), wval_evaluate_cohort (cohort) and
 * wval_import_runs (imported: chain links computed by the importer, no
 * event).
 *
 * The event.  Its data is built from the stored row alone, by
 * run_event_data: world_id, strategy_id, run_id, stage, kind, status,
 * recommended_stage, policy_version; plus linked_run_id when the run has
 * one, campaign_id for a cohort run and snapshot_version (the risk snapshot
 * of data_snapshot) for a portfolio run.  It is written by the bus's one
 * emitter, wval_emit_event (bus.c), with idempotency key
 * <type>:<world>:<subject>:<run_id>.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"
#include "utils/uuid.h"

#include "jsonb.h"
#include "policy.h"
#include "run.h"
#include "spi.h"
#include "wval.h"

/* the columns of wval.evaluation_runs, in the order of the insert's arguments */
#define RUN_NCOLUMNS 29

static WvalPlan plan_insert_run = WVAL_PLAN_GENERIC(
	"INSERT INTO wval.evaluation_runs (run_id, world_id, strategy_id, stage, kind, campaign_id, "
	"risk_tier, model_card_version, code_hash, data_snapshot, context, client_run_id, returns_hash, "
	"metrics, policy_version, ruleset_hash, profile, status, recommended_stage, recommendation, "
	"results, linked_run_id, supersedes, as_of, created_by, created_at, chain_seq, prev_hash, row_hash) "
	"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, "
	"$20, $21, $22, $23, $24, $25, $26, $27, $28, $29) RETURNING *",
	RUN_NCOLUMNS,
	UUIDOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID,
	JSONBOID, TEXTOID, TEXTOID, JSONBOID, INT4OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID,
	JSONBOID, UUIDOID, UUIDOID, DATEOID, TEXTOID, TIMESTAMPTZOID, INT8OID, TEXTOID, TEXTOID);

/* ---------------------------------------------------------------------
 * The event
 * ---------------------------------------------------------------------
 */

/* The text form of a uuid Datum. */
static char *
uuid_text(Datum uuid)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out, uuid));
}

/*
 * The data of a run's evaluation_run_created event, from the run alone
 * (the keys are listed in the file header and docs/bus.md).
 */
static Jsonb *
run_event_data(const WvalRun *run)
{
	JsonbParseState *ps = NULL;

	wval_jb_begin_object(&ps);
	wval_jb_kv_string(&ps, "world_id", run->world_id);
	wval_jb_kv_string(&ps, "strategy_id", run->strategy_id);
	wval_jb_kv_string(&ps, "run_id", uuid_text(run->run_id));
	wval_jb_kv_string(&ps, "stage", run->stage);
	wval_jb_kv_string(&ps, "kind", run->kind);
	wval_jb_kv_string(&ps, "status", run->status);
	wval_jb_kv_string(&ps, "recommended_stage", run->recommended_stage);
	wval_jb_key(&ps, "policy_version");
	if (run->has_policy_version)
		wval_jb_int64(&ps, run->policy_version);
	else
		wval_jb_null(&ps);
	if (run->linked_run_id != (Datum) 0)
		wval_jb_kv_string(&ps, "linked_run_id", uuid_text(run->linked_run_id));
	if (strcmp(run->kind, "cohort") == 0)
		wval_jb_kv_string(&ps, "campaign_id", run->campaign_id);
	if (strcmp(run->kind, "portfolio") == 0)
	{
		JsonbValue *v = run->data_snapshot ? wval_json_path(run->data_snapshot, "risk_snapshot.version") : NULL;

		wval_jb_kv_string(&ps, "snapshot_version", v && v->type == jbvString ?
					pnstrdup(v->val.string.val, v->val.string.len) : NULL);
	}
	return wval_jb_end_object(&ps);
}

/* ---------------------------------------------------------------------
 * The run
 * ---------------------------------------------------------------------
 */

/* A run with every column null or at its default (see run.h). */
void
wval_run_init(WvalRun *run)
{
	memset(run, 0, sizeof(WvalRun));
	run->kind = "single";
	run->emit = true;
}

/* An empty jsonb object. */
static Jsonb *
empty_object(void)
{
	JsonbParseState *ps = NULL;

	wval_jb_begin_object(&ps);
	return wval_jb_end_object(&ps);
}

/* Gives the columns with a default their value, so the row can be inserted. */
static void
run_fill_defaults(WvalRun *run)
{
	if (run->run_id == (Datum) 0)
		run->run_id = DirectFunctionCall1(gen_random_uuid, (Datum) 0);
	if (run->kind == NULL)
		run->kind = "single";
	if (run->context == NULL)
		run->context = empty_object();
	if (run->metrics == NULL)
		run->metrics = empty_object();
	if (run->results == NULL)
		run->results = empty_object();
	if (!run->has_created_at)
	{
		run->created_at = GetCurrentTransactionStartTimestamp();
		run->has_created_at = true;
	}
}

/* The run's evaluation_run_created event. */
static void
emit_run_created(const WvalRun *run)
{
	WvalEvent	event;

	event.type = "evaluation_run_created";
	event.world_id = run->world_id;
	event.subject = run->strategy_id;
	event.idempotency_key = psprintf("evaluation_run_created:%s:%s:%s", run->world_id, run->strategy_id,
									 uuid_text(run->run_id));
	event.data = run_event_data(run);
	event.ttl = NULL;
	(void) wval_emit_event(&event);
}

/* A text argument, or null. */
static Datum
text_arg(const char *s, char *nullflag)
{
	*nullflag = s ? ' ' : 'n';
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

/* A pointer-type argument (jsonb, uuid), or null. */
static Datum
ptr_arg(Datum d, char *nullflag)
{
	*nullflag = d != (Datum) 0 ? ' ' : 'n';
	return d;
}

/* Inserts the run row; SPI_tuptable then holds the stored row. */
static void
insert_run_row(const WvalRun *run)
{
	Datum		a[RUN_NCOLUMNS];
	char		n[RUN_NCOLUMNS];

	memset(n, ' ', sizeof(n));
	a[0] = run->run_id;
	a[1] = text_arg(run->world_id, &n[1]);
	a[2] = text_arg(run->strategy_id, &n[2]);
	a[3] = text_arg(run->stage, &n[3]);
	a[4] = text_arg(run->kind, &n[4]);
	a[5] = text_arg(run->campaign_id, &n[5]);
	a[6] = text_arg(run->risk_tier, &n[6]);
	a[7] = text_arg(run->model_card_version, &n[7]);
	a[8] = text_arg(run->code_hash, &n[8]);
	a[9] = ptr_arg(PointerGetDatum(run->data_snapshot), &n[9]);
	a[10] = JsonbPGetDatum(run->context);
	a[11] = text_arg(run->client_run_id, &n[11]);
	a[12] = text_arg(run->returns_hash, &n[12]);
	a[13] = JsonbPGetDatum(run->metrics);
	a[14] = Int32GetDatum(run->policy_version);
	n[14] = run->has_policy_version ? ' ' : 'n';
	a[15] = text_arg(run->ruleset_hash, &n[15]);
	a[16] = text_arg(run->profile, &n[16]);
	a[17] = text_arg(run->status, &n[17]);
	a[18] = text_arg(run->recommended_stage, &n[18]);
	a[19] = ptr_arg(PointerGetDatum(run->recommendation), &n[19]);
	a[20] = JsonbPGetDatum(run->results);
	a[21] = ptr_arg(run->linked_run_id, &n[21]);
	a[22] = ptr_arg(run->supersedes, &n[22]);
	a[23] = DateADTGetDatum(run->as_of);
	n[23] = run->has_as_of ? ' ' : 'n';
	a[24] = text_arg(run->created_by, &n[24]);
	a[25] = TimestampTzGetDatum(run->created_at);
	a[26] = Int64GetDatum(run->chain_seq);
	n[26] = run->has_chain ? ' ' : 'n';
	a[27] = text_arg(run->has_chain ? run->prev_hash : NULL, &n[27]);
	a[28] = text_arg(run->has_chain ? run->row_hash : NULL, &n[28]);
	wval_spi_exec(&plan_insert_run, a, n, false, 1, SPI_OK_INSERT_RETURNING);
	if (SPI_processed != 1)
		elog(ERROR, "could not store the evaluation run");
}

/*
 * Stores a run (the file header): event (and the follow-up event of the
 * caller), row, chain.  The caller is connected to SPI; returns the stored
 * row as a composite Datum of wval.evaluation_runs in the caller's memory
 * context.
 */
Datum
wval_run_store(WvalRun *run)
{
	if (run->world_id == NULL || run->strategy_id == NULL || run->stage == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a run needs \"%s\"", run->world_id == NULL ? "world_id" :
						run->strategy_id == NULL ? "strategy_id" : "stage"),
				 errhint("Give the run its world, strategy and stage.")));
	run_fill_defaults(run);
	if (run->emit)
		emit_run_created(run);
	if (run->followup != NULL)
		(void) wval_emit_event(run->followup);
	insert_run_row(run);
	return PointerGetDatum(SPI_returntuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc));
}

/* ---------------------------------------------------------------------
 * The SQL wrapper
 * ---------------------------------------------------------------------
 */

/* A text column of the record, NULL when null. */
static const char *
record_text(Datum d, bool isnull)
{
	return isnull ? NULL : TextDatumGetCString(d);
}

/* A jsonb column of the record, NULL when null. */
static Jsonb *
record_jsonb(Datum d, bool isnull)
{
	return isnull ? NULL : DatumGetJsonbP(d);
}

/* Sets the field of a run that a column of wval.evaluation_runs names. */
static void
run_set_column(WvalRun *run, const char *col, Datum d, bool isnull)
{
	if (strcmp(col, "run_id") == 0)
		run->run_id = isnull ? (Datum) 0 : d;
	else if (strcmp(col, "world_id") == 0)
		run->world_id = record_text(d, isnull);
	else if (strcmp(col, "strategy_id") == 0)
		run->strategy_id = record_text(d, isnull);
	else if (strcmp(col, "stage") == 0)
		run->stage = record_text(d, isnull);
	else if (strcmp(col, "kind") == 0)
		run->kind = record_text(d, isnull);
	else if (strcmp(col, "campaign_id") == 0)
		run->campaign_id = record_text(d, isnull);
	else if (strcmp(col, "risk_tier") == 0)
		run->risk_tier = record_text(d, isnull);
	else if (strcmp(col, "model_card_version") == 0)
		run->model_card_version = record_text(d, isnull);
	else if (strcmp(col, "code_hash") == 0)
		run->code_hash = record_text(d, isnull);
	else if (strcmp(col, "data_snapshot") == 0)
		run->data_snapshot = record_jsonb(d, isnull);
	else if (strcmp(col, "context") == 0)
		run->context = record_jsonb(d, isnull);
	else if (strcmp(col, "client_run_id") == 0)
		run->client_run_id = record_text(d, isnull);
	else if (strcmp(col, "returns_hash") == 0)
		run->returns_hash = record_text(d, isnull);
	else if (strcmp(col, "metrics") == 0)
		run->metrics = record_jsonb(d, isnull);
	else if (strcmp(col, "policy_version") == 0)
	{
		run->has_policy_version = !isnull;
		run->policy_version = isnull ? 0 : DatumGetInt32(d);
	}
	else if (strcmp(col, "ruleset_hash") == 0)
		run->ruleset_hash = record_text(d, isnull);
	else if (strcmp(col, "profile") == 0)
		run->profile = record_text(d, isnull);
	else if (strcmp(col, "status") == 0)
		run->status = record_text(d, isnull);
	else if (strcmp(col, "recommended_stage") == 0)
		run->recommended_stage = record_text(d, isnull);
	else if (strcmp(col, "recommendation") == 0)
		run->recommendation = record_jsonb(d, isnull);
	else if (strcmp(col, "results") == 0)
		run->results = record_jsonb(d, isnull);
	else if (strcmp(col, "linked_run_id") == 0)
		run->linked_run_id = isnull ? (Datum) 0 : d;
	else if (strcmp(col, "supersedes") == 0)
		run->supersedes = isnull ? (Datum) 0 : d;
	else if (strcmp(col, "as_of") == 0)
	{
		run->has_as_of = !isnull;
		run->as_of = isnull ? 0 : DatumGetDateADT(d);
	}
	else if (strcmp(col, "created_by") == 0)
		run->created_by = record_text(d, isnull);
	else if (strcmp(col, "created_at") == 0)
	{
		run->has_created_at = !isnull;
		run->created_at = isnull ? 0 : DatumGetTimestampTz(d);
	}
	else if (strcmp(col, "chain_seq") == 0)
	{
		run->has_chain = !isnull;
		run->chain_seq = isnull ? 0 : DatumGetInt64(d);
	}
	else if (strcmp(col, "prev_hash") == 0)
		run->prev_hash = record_text(d, isnull);
	else if (strcmp(col, "row_hash") == 0)
		run->row_hash = record_text(d, isnull);
}

/* Reads a wval.evaluation_runs record into a run, column by name. */
static void
run_from_record(HeapTupleHeader rec, WvalRun *run)
{
	TupleDesc	desc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(rec),
											  HeapTupleHeaderGetTypMod(rec));
	HeapTupleData tuple;
	Datum	   *values = palloc(sizeof(Datum) * desc->natts);
	bool	   *nulls = palloc(sizeof(bool) * desc->natts);
	int			i;

	tuple.t_len = HeapTupleHeaderGetDatumLength(rec);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = rec;
	heap_deform_tuple(&tuple, desc, values, nulls);
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped)
			run_set_column(run, NameStr(att->attname), values[i], nulls[i]);
	}
	ReleaseTupleDesc(desc);
	if (run->has_chain && (run->prev_hash == NULL || run->row_hash == NULL))
		run->has_chain = false;
}

PG_FUNCTION_INFO_V1(wval_store_run);

/*
 * wval._store_run(run wval.evaluation_runs, emit boolean) →
 * wval.evaluation_runs: the SQL callers' way into wval_run_store.  Null
 * columns with a default get it (run_id, kind, context, metrics, results,
 * created_at); emit false stores no event (imported runs).
 */
Datum
wval_store_run(PG_FUNCTION_ARGS)
{
	WvalRun		run;
	Datum		result;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"run\" must not be null"),
				 errhint("Pass the run to store as a wval.evaluation_runs record.")));
	wval_run_init(&run);
	run_from_record(PG_GETARG_HEAPTUPLEHEADER(0), &run);
	run.emit = PG_ARGISNULL(1) || PG_GETARG_BOOL(1);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	result = wval_run_store(&run);
	SPI_finish();
	PG_RETURN_DATUM(result);
}
