/*-------------------------------------------------------------------------
 *
 * hub.c
 *	  The risk hub: the risk snapshot contract (checked here, in C, in the
 *	  order of docs/risk-hub.md), its canonical form and hash, offloading of large
 *	  parts to wval.blobs, producer authentication (registration + HMAC),
 *	  dedupe and version collisions, the publish counters, and the
 *	  portfolio baseline (sigma, VaR_99, ES_99) of the latest snapshot.
 *	  A world whose settings say extended_validation = sync gets the
 *	  portfolio layer (portfolio.sql) run inside the publishing transaction.
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

#include <float.h>
#include <limits.h>
#include <math.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "common/hashfn.h"
#include "common/hmac.h"
#include "common/sha2.h"
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
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "wval.h"
#include "hub.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* settings */
int			wval_snapshot_max_age_s = 900;
int			wval_offload_threshold = 100;
double		wval_missing_correlation = 0.5;

/* contract limits (docs/risk-hub.md) */
#define TTL_DEFAULT_SEC			10
#define TTL_MAX_SEC				86400
#define MAX_POINTS_PER_SERIES	200000
#define MAX_POINTS_TOTAL		1000000
/*
 * Size limits of a snapshot (docs/risk-hub.md, "Limits").  The portfolio
 * layer holds a dense k x k covariance (8 bytes per pair, plus two k x k
 * flag matrices), parses every covariance entry and reports every filled
 * pair.  Measured on 2 busy cores: 500 weighted strategies with a full
 * covariance (125,250 entries) take about 1 s per wval_portfolio_risk,
 * 1,000 about 4.8 s; 4,000 took 3 - 20 s and 11,600 exceeded
 * PostgreSQL's 1 GB allocation limit.  The covariance may list each
 * unordered pair of 500 strategies once: 500 * 501 / 2 entries.
 */
#define MAX_WEIGHTS				500
#define MAX_COVARIANCE_ENTRIES	(MAX_WEIGHTS * (MAX_WEIGHTS + 1) / 2)
#define WEIGHT_SUM_TOLERANCE	1e-3
/* an as_of this far ahead of the hub's clock is rejected (clock skew) */
#define AS_OF_MAX_SKEW_SEC		60
#define COUNTER_SHARDS			16
#define BLOB_REF_PREFIX			"wval-blob:sha256:"
#define UNATTRIBUTED_SEQ		"snapshot_rejects_unattributed"

static const char *const snapshot_fields[] = {
	"as_of", "version", "weights", "covariance", "covariance_ref",
	"realized_returns", "realized_returns_ref", "stress", "stress_ref",
	"constraints", "ttl_sec", "hash", "provenance", NULL
};

static const char *const stages[] = {"backtest", "paper", "shadow", "live", NULL};

/* the three parts that can be offloaded, and their reference fields */
typedef enum OffloadPart
{
	PART_COVARIANCE,
	PART_REALIZED_RETURNS,
	PART_STRESS,
	NUM_PARTS
} OffloadPart;

static const char *const part_field[NUM_PARTS] = {"covariance", "realized_returns", "stress"};
static const char *const part_ref_field[NUM_PARTS] = {"covariance_ref", "realized_returns_ref", "stress_ref"};

/* One offloaded part: its content and content address. */
typedef struct OffloadBlob
{
	OffloadPart part;
	Jsonb	   *content;
	char		hash[72];		/* sha256:<hex> */
	int			size_bytes;
} OffloadBlob;

/* Everything one publish call learns on its way through the checks. */
typedef struct SnapshotContract
{
	bool		dry_run;		/* wval_snapshot_canonical: no counting, no writes */
	TimestampTz arrival;
	/* arguments */
	char	   *world_id;
	bool		world_known;
	char	   *stage;
	const char *count_stage;	/* stage, or "invalid" when the argument is */
	char	   *actor;
	char	   *signature;
	/* world settings */
	int			offload_threshold;
	bool		extended_sync;	/* settings->>'extended_validation' = 'sync' */
	/* the snapshot */
	Jsonb	   *snapshot;
	char	   *version;
	TimestampTz as_of;
	int			ttl_sec;
	/* size of each offloadable part (entries, points, scenarios); -1 absent */
	int64		part_size[NUM_PARTS];
	/* canonical form */
	OffloadBlob blobs[NUM_PARTS];
	int			nblobs;
	char	   *blob_refs[NUM_PARTS];	/* every wval-blob ref of the payload */
	int			nrefs;
	Jsonb	   *payload;
	char	   *canonical;
	int			canonical_len;	/* bytes, UTF-8 */
	char		hash[72];
	/* producer */
	bool		signed_ok;
} SnapshotContract;

/* A prepared statement of this file, kept for the life of the backend. */
typedef struct HubPlan
{
	const char *sql;
	int			nargs;
	Oid			types[11];
	SPIPlanPtr	plan;
} HubPlan;

static HubPlan plan_world = {
	"SELECT settings FROM wval.worlds WHERE world_id = $1 AND wval._can_read($1)",
	1, {TEXTOID},
	NULL
};
static HubPlan plan_blob_kind = {
	"SELECT kind FROM wval.blobs WHERE world_id = $1 AND blob_hash = $2",
	2, {TEXTOID, TEXTOID},
	NULL
};
static HubPlan plan_producer = {
	"SELECT status, hmac_key FROM wval.producers WHERE world_id = $1 AND actor = $2 "
	"ORDER BY registration_id DESC LIMIT 1",
	2, {TEXTOID, TEXTOID},
	NULL
};
static HubPlan plan_existing = {
	"SELECT * FROM wval.risk_snapshots WHERE world_id = $1 AND version = $2",
	2, {TEXTOID, TEXTOID},
	NULL
};
static HubPlan plan_blob_insert = {
	"INSERT INTO wval.blobs (world_id, blob_hash, kind, content, size_bytes, created_by) "
	"VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (world_id, blob_hash) DO NOTHING",
	6, {TEXTOID, TEXTOID, TEXTOID, JSONBOID, INT4OID, TEXTOID},
	NULL
};
static HubPlan plan_insert = {
	"INSERT INTO wval.risk_snapshots (world_id, version, hash, payload, actor, stage, "
	"as_of, ttl_sec, received_at, signed, blob_refs) "
	"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING *",
	11, {TEXTOID, TEXTOID, TEXTOID, JSONBOID, TEXTOID, TEXTOID, TIMESTAMPTZOID,
	INT4OID, TIMESTAMPTZOID, BOOLOID, TEXTARRAYOID},
	NULL
};
static HubPlan plan_count = {
	"INSERT INTO wval.snapshot_counters AS c (world_id, stage, shard, processed, dedupe) "
	"VALUES ($1, $2, $3, $4, $5) ON CONFLICT (world_id, stage, shard) DO UPDATE "
	"SET processed = c.processed + excluded.processed, dedupe = c.dedupe + excluded.dedupe, "
	"updated_at = now()",
	5, {TEXTOID, TEXTOID, INT2OID, INT8OID, INT8OID},
	NULL
};
static HubPlan plan_emit = {
	"SELECT wval._emit('risk_snapshot_updated', $1, $2, $3, $4, make_interval(secs => $5))",
	5, {TEXTOID, TEXTOID, TEXTOID, JSONBOID, FLOAT8OID},
	NULL
};
static HubPlan plan_extended = {
	"SELECT wval._extended_validation($1, $2, $3, true)",
	3, {TEXTOID, TEXTOID, TEXTOID},
	NULL
};
static HubPlan plan_latest = {
	"SELECT s.version, s.hash, s.stage, s.actor, s.as_of, s.payload, "
	"wval._snapshot_expand(s.world_id, s.payload) "
	"FROM wval.risk_snapshots s WHERE s.world_id = $1 AND ($2::text IS NULL OR s.stage = $2) "
	"ORDER BY s.as_of DESC, s.snapshot_id DESC LIMIT 1",
	2, {TEXTOID, TEXTOID},
	NULL
};

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
	DefineCustomRealVariable("wval.missing_correlation",
							 "Correlation assumed for covariance pairs a snapshot does not give.",
							 "A world's settings->'missing_correlation' overrides it.",
							 &wval_missing_correlation,
							 0.5, -1.0, 1.0,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);
}

/* ---------------------------------------------------------------------
 * Normal-distribution and portfolio formulas (exported in hub.h)
 * ---------------------------------------------------------------------
 */

/* Standard normal density. */
double
wval_normal_pdf(double x)
{
	return exp(-0.5 * x * x) / sqrt(2.0 * M_PI);
}

/* VaR_99 = z * sigma. */
double
wval_normal_var99(double sigma)
{
	return WVAL_Z_99 * sigma;
}

/* ES_99 = sigma * phi(z) / (1 - 0.99). */
double
wval_normal_es99(double sigma)
{
	return sigma * wval_normal_pdf(WVAL_Z_99) / WVAL_TAIL_99;
}

/* w' C w over k assets. */
double
wval_portfolio_variance(int k, const double *w, const double *cov)
{
	double		var = 0.0;
	int			a,
				b;

	for (a = 0; a < k; a++)
	{
		double		row = 0.0;

		for (b = 0; b < k; b++)
			row += cov[a * k + b] * w[b];
		var += w[a] * row;
	}
	return var;
}

/* sqrt(w' C w); NaN when the variance is negative beyond rounding. */
double
wval_portfolio_sigma(int k, const double *w, const double *cov)
{
	double		var = wval_portfolio_variance(k, w, cov);

	if (var < 0.0)
	{
		if (var > -1e-14)
			return 0.0;
		return NAN;
	}
	return sqrt(var);
}

/* Fills missing off-diagonal pairs with rho * sqrt(C_aa C_bb). */
int
wval_fill_missing_covariance(int k, double *cov, const bool *known,
							 double rho, bool *filled)
{
	int			n = 0;
	int			a,
				b;

	for (a = 0; a < k; a++)
		for (b = a + 1; b < k; b++)
		{
			if (known[a * k + b])
				continue;
			cov[a * k + b] = cov[b * k + a] =
				rho * sqrt(Max(cov[a * k + a], 0.0) * Max(cov[b * k + b], 0.0));
			if (filled)
				filled[a * k + b] = filled[b * k + a] = true;
			n++;
		}
	return n;
}

/* ---------------------------------------------------------------------
 * Small helpers
 * ---------------------------------------------------------------------
 */

/* Prepares a statement of this file once per backend and runs it. */
static int
exec_plan(HubPlan *p, Datum *values, const char *nulls, bool read_only, long count)
{
	int			ret;

	if (p->plan == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(p->sql, p->nargs, p->types);

		if (plan == NULL)
			elog(ERROR, "could not prepare hub statement: %s",
				 SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "could not keep hub statement");
		p->plan = plan;
	}
	ret = SPI_execute_plan(p->plan, values, nulls, read_only, count);
	if (ret < 0)
		elog(ERROR, "hub statement failed: %s", SPI_result_code_string(ret));
	return ret;
}

/* A NUL-terminated copy of a jsonb string value. */
static char *
jbv_cstring(const JsonbValue *v)
{
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* True when v is an array container. */
static bool
jbv_is_array(const JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data);
}

/* Looks up a top-level key of an object container; NULL when absent. */
static JsonbValue *
object_get(JsonbContainer *c, const char *key)
{
	return getKeyJsonValueFromContainer(c, key, strlen(key), NULL);
}

/* NULL when s is a valid identifier, else what is wrong with it (wval_identifier_problem). */
static const char *
identifier_problem(const char *s, int len)
{
	return wval_identifier_problem(s, (size_t) len);
}

/* Lowercase hex sha256 of the UTF-8 form of a server-encoded string. */
static void
sha256_utf8(const char *s, int len, char *hex)
{
	char	   *utf8 = pg_server_to_any(s, len, PG_UTF8);

	wval_sha256_hex(utf8, strlen(utf8), hex);
}

/* The jsonb text of a jsonb value (jsonb_out). */
static char *
jsonb_text(Jsonb *jb)
{
	return JsonbToCString(NULL, &jb->root, VARSIZE(jb));
}

/* Formats a timestamptz as ISO-8601 UTC with microseconds (hub.h). */
char *
wval_iso_utc(TimestampTz ts)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		return pstrdup("?");
	return psprintf("%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
					tm.tm_year, tm.tm_mon, tm.tm_mday,
					tm.tm_hour, tm.tm_min, tm.tm_sec, (int) fsec);
}

/* Reads an integer or number setting of a world's settings object. */
static bool
world_setting_double(Jsonb *settings, const char *key, double *out)
{
	JsonbValue *v;

	if (settings == NULL || !JB_ROOT_IS_OBJECT(settings))
		return false;
	v = object_get(&settings->root, key);
	return v != NULL && wval_jbv_double(v, out);
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
	char		hex[65];

	sha256_utf8(world_id, strlen(world_id), hex);
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
static void
count_rejection(SnapshotContract *c, bool expired)
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
	exec_plan(&plan_count, values, NULL, false, 0);
}

/* Counts the rejection and raises the error described by rest. */
#define contract_reject(c, expired, rest) \
	do { \
		count_rejection((c), (expired)); \
		ereport(ERROR, rest); \
	} while (0)

/* ---------------------------------------------------------------------
 * ISO-8601 timestamps
 * ---------------------------------------------------------------------
 */

/* Reads exactly n decimal digits at *p into *out. */
static bool
read_digits(const char **p, int n, int *out)
{
	int			v = 0;
	int			i;

	for (i = 0; i < n; i++)
	{
		if ((*p)[i] < '0' || (*p)[i] > '9')
			return false;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return true;
}

/*
 * Parses YYYY-MM-DD(T| )HH:MM[:SS[.fraction]](Z|+HH[:MM]|-HH[:MM]).  The
 * offset is required: a timestamp without one would mean different
 * instants under different TimeZone settings.
 */
static bool
parse_iso8601(const char *s, TimestampTz *result)
{
	const char *p = s;
	int			y,
				mo,
				d,
				h,
				mi,
				sec = 0,
				oh = 0,
				om = 0,
				sign;
	int64		usec = 0;
	int			jd;

	if (!read_digits(&p, 4, &y) || *p++ != '-' ||
		!read_digits(&p, 2, &mo) || *p++ != '-' ||
		!read_digits(&p, 2, &d))
		return false;
	if (*p != 'T' && *p != 't' && *p != ' ')
		return false;
	p++;
	if (!read_digits(&p, 2, &h) || *p++ != ':' || !read_digits(&p, 2, &mi))
		return false;
	if (*p == ':')
	{
		p++;
		if (!read_digits(&p, 2, &sec))
			return false;
		if (*p == '.' || *p == ',')
		{
			int			ndigits = 0;
			int64		scale = 100000;

			p++;
			while (*p >= '0' && *p <= '9')
			{
				if (ndigits < 6)
				{
					usec += (*p - '0') * scale;
					scale /= 10;
				}
				ndigits++;
				p++;
			}
			if (ndigits == 0 || ndigits > 9)
				return false;
		}
	}
	if (*p == 'Z' || *p == 'z')
	{
		sign = 1;
		p++;
	}
	else if (*p == '+' || *p == '-')
	{
		sign = (*p == '+') ? 1 : -1;
		p++;
		if (!read_digits(&p, 2, &oh))
			return false;
		if (*p == ':')
			p++;
		if (*p != '\0' && !read_digits(&p, 2, &om))
			return false;
	}
	else
		return false;
	if (*p != '\0')
		return false;

	if (y < 1 || mo < 1 || mo > 12 || d < 1 ||
		d > day_tab[isleap(y) ? 1 : 0][mo - 1] ||
		h > 23 || mi > 59 || sec > 59 || oh > 15 || om > 59)
		return false;

	jd = date2j(y, mo, d) - POSTGRES_EPOCH_JDATE;
	*result = (TimestampTz) jd * USECS_PER_DAY +
		((int64) ((h * 60 + mi) * 60 + sec)) * USECS_PER_SEC + usec -
		sign * ((int64) (oh * 60 + om) * 60) * USECS_PER_SEC;
	return true;
}

/* ---------------------------------------------------------------------
 * Contract checks, in the order of docs/risk-hub.md
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
	if (exec_plan(&plan_world, &arg, NULL, true, 1) != SPI_OK_SELECT)
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
	if (world_setting_double(settings, "offload_threshold", &threshold) &&
		threshold >= 0 && threshold <= INT_MAX)
		c->offload_threshold = (int) threshold;
	if (settings != NULL && JB_ROOT_IS_OBJECT(settings))
	{
		JsonbValue *ev = object_get(&settings->root, "extended_validation");

		c->extended_sync = ev != NULL && ev->type == jbvString &&
			ev->val.string.len == 4 && strncmp(ev->val.string.val, "sync", 4) == 0;
	}
}

/* stage: one of backtest, paper, shadow, live. */
static void
check_stage_argument(SnapshotContract *c)
{
	int			i;

	for (i = 0; c->stage != NULL && stages[i] != NULL; i++)
		if (strcmp(c->stage, stages[i]) == 0)
		{
			c->count_stage = stages[i];
			return;
		}
	contract_reject(c, false,
					(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
					 errmsg("invalid value for \"stage\""),
					 errdetail("stage is %s.", c->stage ? quote_literal_cstr(c->stage) : "null"),
					 errhint("Accepted values: backtest, paper, shadow, live.")));
}

/* actor: a non-empty identifier (its registration is checked last). */
static void
check_actor_argument(SnapshotContract *c)
{
	const char *problem = c->actor ? identifier_problem(c->actor, strlen(c->actor)) : "is null";

	if (problem != NULL)
		contract_reject(c, false,
						(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
						 errmsg("\"actor\" %s", problem),
						 errdetail("actor is %s.", c->actor ? quote_literal_cstr(c->actor) : "null"),
						 errhint("Pass the producer's registered name (not blank, at most 200 bytes, no control, bidi-control or zero-width characters).")));
}

/* The snapshot is a JSON object with only contract fields. */
static void
check_known_fields(SnapshotContract *c)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (c->snapshot == NULL)
		contract_reject(c, false,
						(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
						 errmsg("\"snapshot\" must not be null"),
						 errhint("Pass the snapshot as a jsonb object (docs/risk-hub.md).")));
	if (!JB_ROOT_IS_OBJECT(c->snapshot) || JB_ROOT_IS_SCALAR(c->snapshot))
		contract_reject(c, false,
						(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
						 errmsg("\"snapshot\" must be a JSON object"),
						 errdetail("snapshot is %s.", JB_ROOT_IS_ARRAY(c->snapshot) && !JB_ROOT_IS_SCALAR(c->snapshot) ? "an array" : "a scalar"),
						 errhint("Pass the snapshot as a jsonb object (docs/risk-hub.md).")));

	it = JsonbIteratorInit(&c->snapshot->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		int			i;
		bool		known = false;

		if (tok != WJB_KEY)
			continue;
		for (i = 0; snapshot_fields[i] != NULL; i++)
			if (v.val.string.len == (int) strlen(snapshot_fields[i]) &&
				memcmp(v.val.string.val, snapshot_fields[i], v.val.string.len) == 0)
				known = true;
		if (!known)
			contract_reject(c, false,
							(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
							 errmsg("unknown field \"%s\" in risk snapshot", jbv_cstring(&v)),
							 errdetail("The snapshot has a top-level key that is not part of the contract."),
							 errhint("Allowed fields: as_of, version, weights, covariance, covariance_ref, realized_returns, realized_returns_ref, stress, stress_ref, constraints, ttl_sec, hash, provenance.")));
	}
}

/* as_of: required ISO-8601 timestamp with an offset, not in the future. */
static void
check_as_of(SnapshotContract *c)
{
	JsonbValue *v = object_get(&c->snapshot->root, "as_of");
	char	   *s;

	if (v == NULL)
		contract_reject(c, false,
						(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
						 errmsg("\"as_of\" is required"),
						 errhint("Add \"as_of\": the ISO-8601 time the snapshot describes, e.g. \"2024-05-01T12:00:00Z\".")));
	if (v->type != jbvString)
		contract_reject(c, false,
						(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
						 errmsg("\"as_of\" must be an ISO-8601 timestamp string"),
						 errdetail("as_of is %s: %s.", wval_jbv_type_name(v), wval_jbv_text(v, 120)),
						 errhint("Send e.g. \"2024-05-01T12:00:00Z\" or \"2024-05-01T14:00:00+02:00\".")));
	s = jbv_cstring(v);
	if (!parse_iso8601(s, &c->as_of))
		contract_reject(c, false,
						(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
						 errmsg("\"as_of\" is not an ISO-8601 timestamp with a UTC offset"),
						 errdetail("as_of is %s.", quote_literal_cstr(s)),
						 errhint("Send YYYY-MM-DDTHH:MM:SS[.ffffff] followed by Z or +HH:MM, e.g. \"2024-05-01T12:00:00Z\".")));
	if (!c->dry_run && c->as_of > c->arrival + (int64) AS_OF_MAX_SKEW_SEC * USECS_PER_SEC)
		contract_reject(c, false,
						(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
						 errmsg("\"as_of\" is in the future"),
						 errdetail("as_of is %s, the hub's clock says %s.", s, wval_iso_utc(c->arrival)),
						 errhint("Check the producer's clock; at most %d seconds of skew are accepted.",
								 AS_OF_MAX_SKEW_SEC)));
}

/* version: required non-empty string (the identity with world_id). */
static void
check_version(SnapshotContract *c)
{
	JsonbValue *v = object_get(&c->snapshot->root, "version");
	const char *problem;

	if (v == NULL)
		contract_reject(c, false,
						(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
						 errmsg("\"version\" is required"),
						 errhint("Add \"version\": a non-empty string that identifies this snapshot within the world.")));
	if (v->type != jbvString)
		contract_reject(c, false,
						(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
						 errmsg("\"version\" must be a string"),
						 errdetail("version is %s: %s.", wval_jbv_type_name(v), wval_jbv_text(v, 120)),
						 errhint("Send the version as a JSON string, e.g. \"v42\".")));
	problem = identifier_problem(v->val.string.val, v->val.string.len);
	if (problem != NULL)
		contract_reject(c, false,
						(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
						 errmsg("\"version\" %s", problem),
						 errdetail("version is %s.", quote_literal_cstr(jbv_cstring(v))),
						 errhint("Send a non-empty version of at most 200 bytes without control characters.")));
	c->version = jbv_cstring(v);
}

/* weights: object strategy -> finite number, sum within 1 +- 1e-3 and > 0. */
static void
check_weights(SnapshotContract *c)
{
	JsonbValue *v = object_get(&c->snapshot->root, "weights");
	JsonbIterator *it;
	JsonbValue	k,
				val;
	JsonbIteratorToken tok;
	double		sum = 0.0;
	int			n = 0;

	if (v == NULL)
		contract_reject(c, false,
						(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
						 errmsg("\"weights\" is required"),
						 errhint("Add \"weights\": an object strategy_id -> weight whose weights sum to 1.")));
	if (!wval_jbv_is_object(v))
		contract_reject(c, false,
						(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
						 errmsg("\"weights\" must be an object"),
						 errdetail("weights is %s: %s.", wval_jbv_type_name(v), wval_jbv_text(v, 120)),
						 errhint("Send an object strategy_id -> weight, e.g. {\"s1\": 0.6, \"s2\": 0.4}.")));
	if (JsonContainerSize(v->val.binary.data) > MAX_WEIGHTS)
		contract_reject(c, false,
						(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
						 errmsg("\"weights\" has more than %d strategies", MAX_WEIGHTS),
						 errdetail("weights has %d entries.", (int) JsonContainerSize(v->val.binary.data)),
						 errhint("A snapshot weights at most %d strategies; aggregate smaller ones into sleeves.", MAX_WEIGHTS)));

	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		const char *problem;
		double		w;

		if (tok != WJB_KEY)
			continue;
		tok = JsonbIteratorNext(&it, &val, true);
		problem = identifier_problem(k.val.string.val, k.val.string.len);
		if (problem != NULL)
			contract_reject(c, false,
							(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
							 errmsg("strategy id in \"weights\" %s", problem),
							 errdetail("The key is %s.", quote_literal_cstr(jbv_cstring(&k))),
							 errhint("Strategy ids are non-empty, at most 200 bytes, without control characters.")));
		if (!wval_jbv_double(&val, &w))
			contract_reject(c, false,
							(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
							 errmsg("weight of \"%s\" in \"weights\" must be a finite number", jbv_cstring(&k)),
							 errdetail("weights.%s is %s: %s.", jbv_cstring(&k), wval_jbv_type_name(&val), wval_jbv_text(&val, 120)),
							 errhint("Send every weight as a JSON number; strings, booleans, null and NaN are rejected.")));
		sum += w;
		n++;
	}
	if (!(sum > 0.0) || fabs(sum - 1.0) > WEIGHT_SUM_TOLERANCE + 1e-12)
	{
		char		sumbuf[64];

		snprintf(sumbuf, sizeof(sumbuf), "%.17g", sum);
		contract_reject(c, false,
						(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
						 errmsg("\"weights\" must sum to 1 within 1e-3"),
						 errdetail("The %d weights sum to %s.", n, sumbuf),
						 errhint("Normalise the weights so that they sum to 1 (tolerance 0.001 either way).")));
	}
}

/* One parsed covariance entry. */
typedef struct CovEntry
{
	char	   *a;				/* the smaller id of the pair */
	char	   *b;
	double		value;
	char	   *key;			/* as published, for messages */
} CovEntry;

/* Orders covariance entries by pair. */
static int
cov_entry_cmp(const void *x, const void *y)
{
	const CovEntry *p = (const CovEntry *) x;
	const CovEntry *q = (const CovEntry *) y;
	int			r = strcmp(p->a, q->a);

	return r != 0 ? r : strcmp(p->b, q->b);
}

/*
 * Splits a covariance key "a,b" (or "a:b") into its two ids; NULL when
 * the key is well formed, else what is wrong with it.
 */
static const char *
split_cov_key(const char *key, char **a, char **b)
{
	const char *sep = strchr(key, ',');

	if (sep != NULL)
	{
		if (strchr(sep + 1, ',') != NULL)
			return "has more than one comma";
	}
	else
	{
		sep = strchr(key, ':');
		if (sep == NULL)
			return "is not of the form \"a,b\" or \"a:b\"";
		if (strchr(sep + 1, ':') != NULL)
			return "has more than one colon and no comma";
	}
	if (identifier_problem(key, sep - key) != NULL ||
		identifier_problem(sep + 1, strlen(sep + 1)) != NULL)
		return "does not name two valid strategy ids";
	*a = pnstrdup(key, sep - key);
	*b = pstrdup(sep + 1);
	return NULL;
}

/*
 * Parses a covariance object into entries sorted by pair.  Returns NULL
 * when it is valid, else a message; *bad_key / *bad_value describe the
 * offending entry.
 */
static const char *
parse_covariance(JsonbContainer *cont, CovEntry **out, int *nout,
				 char **bad_key, char **bad_value)
{
	JsonbIterator *it = JsonbIteratorInit(cont);
	JsonbValue	k,
				val;
	JsonbIteratorToken tok;
	int			cap = Max(JsonContainerSize(cont), 1);
	CovEntry   *e = palloc(sizeof(CovEntry) * cap);
	int			n = 0;
	int			i;

	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char	   *a,
				   *b;
		const char *problem;
		double		x;

		if (tok != WJB_KEY)
			continue;
		tok = JsonbIteratorNext(&it, &val, true);
		*bad_key = jbv_cstring(&k);
		problem = split_cov_key(*bad_key, &a, &b);
		if (problem != NULL)
		{
			*bad_value = wval_jbv_text(&val, 120);
			return psprintf("key %s", problem);
		}
		if (!wval_jbv_double(&val, &x))
		{
			*bad_value = psprintf("%s: %s", wval_jbv_type_name(&val), wval_jbv_text(&val, 120));
			return "value must be a finite number";
		}
		if (strcmp(a, b) == 0 && x < 0.0)
		{
			*bad_value = wval_jbv_text(&val, 120);
			return "variance (diagonal entry) must not be negative";
		}
		e[n].a = strcmp(a, b) <= 0 ? a : b;
		e[n].b = strcmp(a, b) <= 0 ? b : a;
		e[n].value = x;
		e[n].key = *bad_key;
		n++;
	}
	qsort(e, n, sizeof(CovEntry), cov_entry_cmp);
	for (i = 1; i < n; i++)
		if (cov_entry_cmp(&e[i - 1], &e[i]) == 0 && e[i - 1].value != e[i].value)
		{
			*bad_key = psprintf("%s and %s", e[i - 1].key, e[i].key);
			*bad_value = psprintf("%.17g and %.17g", e[i - 1].value, e[i].value);
			return "lists the same pair twice with different values";
		}
	*out = e;
	*nout = n;
	return NULL;
}

/* covariance: optional object "a,b" -> finite number, diagonal >= 0. */
static void
check_covariance(SnapshotContract *c)
{
	JsonbValue *v = object_get(&c->snapshot->root, "covariance");
	CovEntry   *entries;
	int			n;
	char	   *bad_key = NULL;
	char	   *bad_value = NULL;
	const char *problem;

	c->part_size[PART_COVARIANCE] = -1;
	if (v == NULL)
		return;
	if (!wval_jbv_is_object(v))
		contract_reject(c, false,
						(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
						 errmsg("\"covariance\" must be an object"),
						 errdetail("covariance is %s: %s.", wval_jbv_type_name(v), wval_jbv_text(v, 120)),
						 errhint("Send an object \"a,b\" -> covariance, e.g. {\"s1,s1\": 0.04, \"s1,s2\": 0.006}; omit the field when there is none.")));
	if (JsonContainerSize(v->val.binary.data) > MAX_COVARIANCE_ENTRIES)
		contract_reject(c, false,
						(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
						 errmsg("\"covariance\" has more than %d entries", MAX_COVARIANCE_ENTRIES),
						 errdetail("covariance has %d entries.", (int) JsonContainerSize(v->val.binary.data)),
						 errhint("Send each pair of the (at most %d) weighted strategies once.", MAX_WEIGHTS)));
	problem = parse_covariance(v->val.binary.data, &entries, &n, &bad_key, &bad_value);
	if (problem != NULL)
		contract_reject(c, false,
						(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
						 errmsg("\"covariance\" entry %s", problem),
						 errdetail("covariance[%s] is %s.", quote_literal_cstr(bad_key), bad_value),
						 errhint("Keys are \"a,b\" or \"a:b\" of two strategy ids, values finite numbers, variances not negative.")));
	c->part_size[PART_COVARIANCE] = n;
}

/* One *_ref field: a stored wval blob of this world, or s3:// / file://. */
static void
check_ref(SnapshotContract *c, OffloadPart part)
{
	const char *field = part_ref_field[part];
	JsonbValue *v = object_get(&c->snapshot->root, field);
	char	   *s;

	if (v == NULL)
		return;
	if (object_get(&c->snapshot->root, part_field[part]) != NULL)
		contract_reject(c, false,
						(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
						 errmsg("\"%s\" and \"%s\" are both given", field, part_field[part]),
						 errdetail("A snapshot carries a part either inline or by reference."),
						 errhint("Drop one of the two fields.")));
	if (v->type != jbvString)
		contract_reject(c, false,
						(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
						 errmsg("\"%s\" must be a string", field),
						 errdetail("%s is %s: %s.", field, wval_jbv_type_name(v), wval_jbv_text(v, 120)),
						 errhint("Send a wval-blob:sha256:<hex>, s3:// or file:// reference.")));
	s = jbv_cstring(v);
	if (strncmp(s, BLOB_REF_PREFIX, strlen(BLOB_REF_PREFIX)) == 0)
	{
		const char *hex = s + strlen(BLOB_REF_PREFIX);
		Datum		args[2];
		bool		ok = strlen(hex) == 64 && strspn(hex, "0123456789abcdef") == 64;
		char	   *kind = NULL;

		if (ok)
		{
			args[0] = CStringGetTextDatum(c->world_id);
			args[1] = CStringGetTextDatum(psprintf("sha256:%s", hex));
			exec_plan(&plan_blob_kind, args, NULL, true, 1);
			if (SPI_processed == 1)
				kind = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		}
		if (kind == NULL)
			contract_reject(c, false,
							(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
							 errmsg("\"%s\" names no blob of world \"%s\"", field, c->world_id),
							 errdetail("%s is %s.", field, quote_literal_cstr(s)),
							 errhint("Reference a blob stored by an earlier snapshot of this world (wval.blobs), or send the part inline.")));
		if (strcmp(kind, part_field[part]) != 0)
			contract_reject(c, false,
							(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
							 errmsg("\"%s\" names a %s blob", field, kind),
							 errdetail("%s is %s.", field, quote_literal_cstr(s)),
							 errhint("Reference a blob of kind %s.", part_field[part])));
		c->blob_refs[c->nrefs++] = s;
	}
	else if (!((strncmp(s, "s3://", 5) == 0 && s[5] != '\0') ||
			   (strncmp(s, "file://", 7) == 0 && s[7] != '\0')) ||
			 strlen(s) > 2048)
		contract_reject(c, false,
						(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
						 errmsg("\"%s\" is not a supported reference", field),
						 errdetail("%s is %s.", field, quote_literal_cstr(s)),
						 errhint("Use wval-blob:sha256:<64 hex digits>, s3://bucket/key or file:///path (at most 2048 bytes).")));
}

/* covariance_ref, realized_returns_ref, stress_ref. */
static void
check_refs(SnapshotContract *c)
{
	check_ref(c, PART_COVARIANCE);
	check_ref(c, PART_REALIZED_RETURNS);
	check_ref(c, PART_STRESS);
}

/* realized_returns: strategy -> non-empty array of finite numbers, sizes capped. */
static void
check_realized_returns(SnapshotContract *c)
{
	JsonbValue *v = object_get(&c->snapshot->root, "realized_returns");
	JsonbIterator *it;
	JsonbValue	k,
				series;
	JsonbIteratorToken tok;
	int64		total = 0;

	c->part_size[PART_REALIZED_RETURNS] = -1;
	if (v == NULL)
		return;
	if (!wval_jbv_is_object(v))
		contract_reject(c, false,
						(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
						 errmsg("\"realized_returns\" must be an object"),
						 errdetail("realized_returns is %s: %s.", wval_jbv_type_name(v), wval_jbv_text(v, 120)),
						 errhint("Send an object strategy_id -> array of returns; omit the field when there is none.")));

	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char	   *id;
		const char *problem;
		int			npoints;
		JsonbIterator *ait;
		JsonbValue	x;
		JsonbIteratorToken atok;
		int			i = 0;

		if (tok != WJB_KEY)
			continue;
		tok = JsonbIteratorNext(&it, &series, true);
		id = jbv_cstring(&k);
		problem = identifier_problem(k.val.string.val, k.val.string.len);
		if (problem != NULL)
			contract_reject(c, false,
							(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
							 errmsg("strategy id in \"realized_returns\" %s", problem),
							 errdetail("The key is %s.", quote_literal_cstr(id)),
							 errhint("Strategy ids are non-empty, at most 200 bytes, without control characters.")));
		if (!jbv_is_array(&series))
			contract_reject(c, false,
							(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
							 errmsg("\"realized_returns\" of \"%s\" must be an array", id),
							 errdetail("realized_returns.%s is %s: %s.", id, wval_jbv_type_name(&series), wval_jbv_text(&series, 120)),
							 errhint("Send an array of returns, e.g. [0.01, -0.003].")));
		npoints = JsonContainerSize(series.val.binary.data);
		if (npoints == 0)
			contract_reject(c, false,
							(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
							 errmsg("\"realized_returns\" of \"%s\" is empty", id),
							 errhint("Send at least one return, or leave the strategy out.")));
		if (npoints > MAX_POINTS_PER_SERIES)
			contract_reject(c, false,
							(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
							 errmsg("\"realized_returns\" of \"%s\" has too many points", id),
							 errdetail("The series has %d points.", npoints),
							 errhint("Send at most %d points per series.", MAX_POINTS_PER_SERIES)));
		total += npoints;
		if (total > MAX_POINTS_TOTAL)
			contract_reject(c, false,
							(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
							 errmsg("\"realized_returns\" has too many points"),
							 errdetail("The series hold more than %d points together.", MAX_POINTS_TOTAL),
							 errhint("Send at most %d points in total, or reference the returns with realized_returns_ref.",
									 MAX_POINTS_TOTAL)));

		ait = JsonbIteratorInit(series.val.binary.data);
		while ((atok = JsonbIteratorNext(&ait, &x, true)) != WJB_DONE)
		{
			double		d;

			if (atok != WJB_ELEM)
				continue;
			if (!wval_jbv_double(&x, &d))
				contract_reject(c, false,
								(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
								 errmsg("\"realized_returns\" of \"%s\" must hold finite numbers", id),
								 errdetail("Element %d is %s: %s.", i, wval_jbv_type_name(&x), wval_jbv_text(&x, 120)),
								 errhint("Send every return as a JSON number; strings, booleans, null and NaN are rejected.")));
			i++;
		}
	}
	c->part_size[PART_REALIZED_RETURNS] = total;
}

/* True when every value of an object container is a finite number. */
static bool
object_of_numbers(JsonbContainer *cont, char **bad_key, JsonbValue *bad)
{
	JsonbIterator *it = JsonbIteratorInit(cont);
	JsonbValue	k;
	JsonbIteratorToken tok;

	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		double		d;

		if (tok != WJB_KEY)
			continue;
		tok = JsonbIteratorNext(&it, bad, true);
		if (!wval_jbv_double(bad, &d))
		{
			*bad_key = jbv_cstring(&k);
			return false;
		}
	}
	return true;
}

/*
 * Walks stress results, scenario -> {measure -> number} or scenario ->
 * {strategy -> {measure -> number}} (the snapshot's shape, also what callers
 * of the portfolio layer pass).  Returns WVAL_STRESS_OK and the number of
 * scenarios in *n, or the first problem in walking order: a scenario name
 * that is not an identifier (only when check_names), a scenario that is not
 * an object, a measure that is not a number (nor an object of numbers).
 * *scenario names the scenario, *where the measure path inside it
 * ("es_99" or "es_99.s1"), *bad the offending value.
 */
WvalStressProblem
wval_stress_shape(JsonbContainer *stress, bool check_names, int *n, char **scenario,
				  char **where, JsonbValue *bad)
{
	JsonbIterator *it = JsonbIteratorInit(stress);
	JsonbValue	k,
				sc;
	JsonbIteratorToken tok;

	*n = 0;
	*where = NULL;
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		JsonbIterator *mit;
		JsonbValue	mk,
					mv;
		JsonbIteratorToken mtok;

		if (tok != WJB_KEY)
			continue;
		tok = JsonbIteratorNext(&it, &sc, true);
		*scenario = jbv_cstring(&k);
		(*n)++;
		if (check_names && identifier_problem(k.val.string.val, k.val.string.len) != NULL)
			return WVAL_STRESS_BAD_NAME;
		if (!wval_jbv_is_object(&sc))
		{
			*bad = sc;
			return WVAL_STRESS_NOT_OBJECT;
		}
		mit = JsonbIteratorInit(sc.val.binary.data);
		while ((mtok = JsonbIteratorNext(&mit, &mk, true)) != WJB_DONE)
		{
			double		d;
			char	   *bad_key = NULL;

			if (mtok != WJB_KEY)
				continue;
			mtok = JsonbIteratorNext(&mit, &mv, true);
			if (wval_jbv_double(&mv, &d))
				continue;
			if (wval_jbv_is_object(&mv) && object_of_numbers(mv.val.binary.data, &bad_key, bad))
				continue;
			if (bad_key == NULL)
				*bad = mv;
			*where = bad_key ? psprintf("%s.%s", jbv_cstring(&mk), bad_key) : jbv_cstring(&mk);
			return WVAL_STRESS_NOT_NUMBER;
		}
	}
	return WVAL_STRESS_OK;
}

/*
 * stress: scenario -> {measure -> number}, or per strategy
 * scenario -> {strategy -> {measure -> number}}.
 */
static void
check_stress(SnapshotContract *c)
{
	JsonbValue *v = object_get(&c->snapshot->root, "stress");
	int			n;
	char	   *scenario = NULL;
	char	   *where;
	JsonbValue	bad;

	c->part_size[PART_STRESS] = -1;
	if (v == NULL)
		return;
	if (!wval_jbv_is_object(v))
		contract_reject(c, false,
						(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
						 errmsg("\"stress\" must be an object"),
						 errdetail("stress is %s: %s.", wval_jbv_type_name(v), wval_jbv_text(v, 120)),
						 errhint("Send an object scenario -> {max_drawdown, es_99, var_99, ...}; omit the field when there is none.")));
	switch (wval_stress_shape(v->val.binary.data, true, &n, &scenario, &where, &bad))
	{
		case WVAL_STRESS_OK:
			break;
		case WVAL_STRESS_BAD_NAME:
			contract_reject(c, false,
							(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
							 errmsg("scenario name in \"stress\" is not a valid identifier"),
							 errdetail("The key is %s.", quote_literal_cstr(scenario)),
							 errhint("Scenario names are non-empty, at most 200 bytes, without control characters.")));
			break;
		case WVAL_STRESS_NOT_OBJECT:
			contract_reject(c, false,
							(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
							 errmsg("\"stress\" scenario \"%s\" must be an object", scenario),
							 errdetail("stress.%s is %s: %s.", scenario, wval_jbv_type_name(&bad), wval_jbv_text(&bad, 120)),
							 errhint("Send {\"max_drawdown\": ..., \"es_99\": ..., \"var_99\": ...} per scenario.")));
			break;
		case WVAL_STRESS_NOT_NUMBER:
			contract_reject(c, false,
							(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
							 errmsg("\"stress\" scenario \"%s\" must hold finite numbers", scenario),
							 errdetail("stress.%s.%s is %s: %s.", scenario, where,
									   wval_jbv_type_name(&bad), wval_jbv_text(&bad, 120)),
							 errhint("Send measures as JSON numbers, per scenario or per scenario and strategy.")));
			break;
	}
	c->part_size[PART_STRESS] = n;
}

/* constraints: optional object; candidate_weight in (0, 1), max_leverage > 0. */
static void
check_constraints(SnapshotContract *c)
{
	JsonbValue *v = object_get(&c->snapshot->root, "constraints");
	JsonbValue *x;
	double		d;

	if (v == NULL)
		return;
	if (!wval_jbv_is_object(v))
		contract_reject(c, false,
						(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
						 errmsg("\"constraints\" must be an object"),
						 errdetail("constraints is %s: %s.", wval_jbv_type_name(v), wval_jbv_text(v, 120)),
						 errhint("Send e.g. {\"candidate_weight\": 0.1, \"max_leverage\": 2}; omit the field when there is none.")));
	x = object_get(v->val.binary.data, "candidate_weight");
	if (x != NULL && !(wval_jbv_double(x, &d) && d > 0.0 && d < 1.0))
		contract_reject(c, false,
						(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
						 errmsg("\"constraints.candidate_weight\" must be a number between 0 and 1"),
						 errdetail("candidate_weight is %s: %s.", wval_jbv_type_name(x), wval_jbv_text(x, 120)),
						 errhint("Send the weight a candidate would get, strictly between 0 and 1.")));
	x = object_get(v->val.binary.data, "max_leverage");
	if (x != NULL && !(wval_jbv_double(x, &d) && d > 0.0))
		contract_reject(c, false,
						(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
						 errmsg("\"constraints.max_leverage\" must be a positive number"),
						 errdetail("max_leverage is %s: %s.", wval_jbv_type_name(x), wval_jbv_text(x, 120)),
						 errhint("Send the gross leverage limit as a number above 0.")));
}

/* ttl_sec: integer 1 ... 86400 (default 10); as_of not older than it (WV005). */
static void
check_ttl(SnapshotContract *c)
{
	JsonbValue *v = object_get(&c->snapshot->root, "ttl_sec");
	double		d;
	int64		age_us;

	c->ttl_sec = TTL_DEFAULT_SEC;
	if (v != NULL)
	{
		if (!wval_jbv_double(v, &d) || d != floor(d) || d < 1 || d > TTL_MAX_SEC)
			contract_reject(c, false,
							(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
							 errmsg("\"ttl_sec\" must be an integer between 1 and %d", TTL_MAX_SEC),
							 errdetail("ttl_sec is %s: %s.", wval_jbv_type_name(v), wval_jbv_text(v, 120)),
							 errhint("Send the number of seconds the snapshot stays valid, or omit it for %d.",
									 TTL_DEFAULT_SEC)));
		c->ttl_sec = (int) d;
	}
	if (c->dry_run)
		return;
	age_us = c->arrival - c->as_of;
	if (age_us > (int64) c->ttl_sec * USECS_PER_SEC)
		contract_reject(c, true,
						(errcode(ERRCODE_WVAL_SNAPSHOT_EXPIRED),
						 errmsg("risk snapshot \"%s\" of world \"%s\" has expired", c->version, c->world_id),
						 errdetail("as_of is %s, it arrived at %s: %.3f s old, ttl_sec is %d.",
								   wval_iso_utc(c->as_of), wval_iso_utc(c->arrival),
								   (double) age_us / USECS_PER_SEC, c->ttl_sec),
						 errhint("Publish snapshots within ttl_sec of as_of, or send a larger ttl_sec (at most %d).",
								 TTL_MAX_SEC)));
}

/* Decides what to offload and builds the payload, its text and hash. */
static void
build_canonical(SnapshotContract *c)
{
	JsonbParseState *state = NULL;
	JsonbIterator *it;
	JsonbValue	k,
				v;
	JsonbIteratorToken tok;
	JsonbValue *res = NULL;
	bool		offload[NUM_PARTS];
	int			p;

	for (p = 0; p < NUM_PARTS; p++)
		offload[p] = c->part_size[p] > c->offload_threshold;

	res = pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	it = JsonbIteratorInit(&c->snapshot->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		int			part = -1;

		if (tok != WJB_KEY)
			continue;
		tok = JsonbIteratorNext(&it, &v, true);
		if (k.val.string.len == 4 && memcmp(k.val.string.val, "hash", 4) == 0)
			continue;
		for (p = 0; p < NUM_PARTS; p++)
			if (k.val.string.len == (int) strlen(part_field[p]) &&
				memcmp(k.val.string.val, part_field[p], k.val.string.len) == 0)
				part = p;
		if (part >= 0 && offload[part])
		{
			OffloadBlob *b = &c->blobs[c->nblobs++];
			char	   *text;
			char		hex[65];
			JsonbValue	rk,
						rv;

			b->part = part;
			b->content = JsonbValueToJsonb(&v);
			text = jsonb_text(b->content);
			b->size_bytes = strlen(text);
			sha256_utf8(text, b->size_bytes, hex);
			snprintf(b->hash, sizeof(b->hash), "sha256:%s", hex);

			rk.type = jbvString;
			rk.val.string.val = (char *) part_ref_field[part];
			rk.val.string.len = strlen(part_ref_field[part]);
			rv.type = jbvString;
			rv.val.string.val = psprintf("wval-blob:%s", b->hash);
			rv.val.string.len = strlen(rv.val.string.val);
			c->blob_refs[c->nrefs++] = rv.val.string.val;
			(void) pushJsonbValue(&state, WJB_KEY, &rk);
			(void) pushJsonbValue(&state, WJB_VALUE, &rv);
			continue;
		}
		(void) pushJsonbValue(&state, WJB_KEY, &k);
		(void) pushJsonbValue(&state, WJB_VALUE, &v);
	}
	res = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	c->payload = JsonbValueToJsonb(res);
	c->canonical = jsonb_text(c->payload);
	{
		char	   *utf8 = pg_server_to_any(c->canonical, strlen(c->canonical), PG_UTF8);
		char		hex[65];

		c->canonical_len = strlen(utf8);
		wval_sha256_hex(utf8, c->canonical_len, hex);
		snprintf(c->hash, sizeof(c->hash), "sha256:%s", hex);
	}
}

/* hash: when given, equal to the canonical hash (WV006). */
static void
check_hash(SnapshotContract *c)
{
	JsonbValue *v = object_get(&c->snapshot->root, "hash");

	if (v == NULL)
		return;
	if (v->type != jbvString ||
		v->val.string.len != (int) strlen(c->hash) ||
		memcmp(v->val.string.val, c->hash, v->val.string.len) != 0)
		contract_reject(c, false,
						(errcode(ERRCODE_WVAL_HASH_MISMATCH),
						 errmsg("\"hash\" does not match the canonical hash of the snapshot"),
						 errdetail("hash is %s, the canonical hash is %s.", wval_jbv_text(v, 120), c->hash),
						 errhint("Hash the jsonb text of the contract fields without \"hash\", after offloading: 'sha256:' || hex(sha256(text)); wval_snapshot_canonical() returns that text.")));
}

/* provenance: optional object; its actor / stage equal the arguments. */
static void
check_provenance(SnapshotContract *c)
{
	JsonbValue *v = object_get(&c->snapshot->root, "provenance");
	const char *const names[2] = {"actor", "stage"};
	const char *args[2];
	int			i;

	if (v == NULL)
		return;
	if (!wval_jbv_is_object(v))
		contract_reject(c, false,
						(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
						 errmsg("\"provenance\" must be an object"),
						 errdetail("provenance is %s: %s.", wval_jbv_type_name(v), wval_jbv_text(v, 120)),
						 errhint("Send e.g. {\"actor\": \"gateway\", \"stage\": \"live\", \"source\": \"rebalance\"}.")));
	if (c->dry_run)
		return;
	args[0] = c->actor;
	args[1] = c->stage;
	for (i = 0; i < 2; i++)
	{
		JsonbValue *x = object_get(v->val.binary.data, names[i]);

		if (x == NULL)
			continue;
		if (x->type != jbvString ||
			x->val.string.len != (int) strlen(args[i]) ||
			memcmp(x->val.string.val, args[i], x->val.string.len) != 0)
			contract_reject(c, false,
							(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
							 errmsg("\"provenance.%s\" does not match the %s argument", names[i], names[i]),
							 errdetail("provenance.%s is %s, the argument is %s.", names[i], wval_jbv_text(x, 120),
									   quote_literal_cstr(args[i])),
							 errhint("Publish with the same %s as the snapshot's provenance, or leave provenance.%s out.",
									 names[i], names[i])));
	}
}

/* Compares two equally long strings in time independent of their content. */
static bool
equal_constant_time(const char *a, const char *b, size_t len)
{
	volatile unsigned char diff = 0;
	size_t		i;

	for (i = 0; i < len; i++)
		diff |= (unsigned char) a[i] ^ (unsigned char) b[i];
	return diff == 0;
}

/* Hex HMAC-SHA256 of data under key. */
static void
hmac_sha256_hex(const uint8 *key, int keylen, const char *data, int len, char *out)
{
	pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA256);
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	static const char hex[] = "0123456789abcdef";
	int			i;

	if (ctx == NULL || pg_hmac_init(ctx, key, keylen) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) data, len) < 0 ||
		pg_hmac_final(ctx, digest, sizeof(digest)) < 0)
	{
		pg_hmac_free(ctx);
		elog(ERROR, "could not compute HMAC-SHA256");
	}
	pg_hmac_free(ctx);
	for (i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
	{
		out[2 * i] = hex[digest[i] >> 4];
		out[2 * i + 1] = hex[digest[i] & 0x0f];
	}
	out[2 * PG_SHA256_DIGEST_LENGTH] = '\0';
}

/*
 * The message a producer signs (UTF-8): a fixed first line naming the
 * format, then world_id, actor and stage, one line each, then the canonical
 * text.  Identifiers and stages contain no line break, so the message names
 * one (world, actor, stage, snapshot) only: a signature made for world A,
 * stage paper or another actor does not verify anywhere else.
 */
static void
build_signed_message(SnapshotContract *c, StringInfo buf)
{
	const char *parts[3];
	int			i;

	parts[0] = c->world_id;
	parts[1] = c->actor;
	parts[2] = c->stage;
	initStringInfo(buf);
	appendStringInfoString(buf, "wval-snapshot-signature-v1\n");
	for (i = 0; i < 3; i++)
	{
		appendStringInfoString(buf, pg_server_to_any(parts[i], strlen(parts[i]), PG_UTF8));
		appendStringInfoChar(buf, '\n');
	}
	appendBinaryStringInfo(buf, pg_server_to_any(c->canonical, strlen(c->canonical), PG_UTF8),
						   c->canonical_len);
}

/* actor: registered and not revoked; with a key, a valid HMAC (WV009). */
static void
check_producer(SnapshotContract *c)
{
	Datum		args[2];
	char	   *status;
	bool		isnull;
	Datum		keyd;
	bytea	   *key;
	char		expected[65];
	char		given[65];
	size_t		siglen;
	size_t		i;
	StringInfoData message;

	args[0] = CStringGetTextDatum(c->world_id);
	args[1] = CStringGetTextDatum(c->actor);
	exec_plan(&plan_producer, args, NULL, true, 1);
	status = SPI_processed == 1 ?
		SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1) : NULL;
	if (status == NULL || strcmp(status, "active") != 0)
		contract_reject(c, false,
						(errcode(ERRCODE_WVAL_GOVERNANCE),
						 errmsg("actor \"%s\" is not a registered producer of world \"%s\"", c->actor, c->world_id),
						 errdetail("%s", status ? "The producer's registration was revoked." :
								   "wval.producers has no registration for this world and actor."),
						 errhint("An administrator registers producers with wval_producer_register(world_id, actor, hmac_key).")));

	keyd = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	if (isnull)
		return;					/* no key: signatures are not required */
	key = DatumGetByteaPP(keyd);

	if (c->signature == NULL)
		contract_reject(c, false,
						(errcode(ERRCODE_WVAL_GOVERNANCE),
						 errmsg("risk snapshot of actor \"%s\" must be signed", c->actor),
						 errdetail("The producer is registered with an HMAC key and no signature was given."),
						 errhint("Pass signature => hex(HMAC-SHA256(key, message)); wval_snapshot_signed_message(world_id, snapshot, actor, stage) returns the message.")));
	siglen = strlen(c->signature);
	for (i = 0; i < siglen && i < 64; i++)
		given[i] = pg_ascii_tolower(c->signature[i]);
	given[Min(siglen, 64)] = '\0';
	build_signed_message(c, &message);
	hmac_sha256_hex((const uint8 *) VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key),
					message.data, message.len, expected);
	pfree(message.data);
	if (siglen != 64 || !equal_constant_time(given, expected, 64))
		contract_reject(c, false,
						(errcode(ERRCODE_WVAL_GOVERNANCE),
						 errmsg("signature of the risk snapshot of actor \"%s\" is not valid", c->actor),
						 errdetail("The signature does not match HMAC-SHA256 under the producer's key of the signed message for world \"%s\", actor \"%s\", stage \"%s\".",
								   c->world_id, c->actor, c->stage),
						 errhint("Sign wval_snapshot_signed_message(world_id, snapshot, actor, stage) with the registered key; send 64 hex digits.")));
	c->signed_ok = true;
}

/* Runs the snapshot's contract checks, in the order of docs/risk-hub.md. */
static void
check_contract(SnapshotContract *c)
{
	check_known_fields(c);
	check_as_of(c);
	check_version(c);
	check_weights(c);
	check_covariance(c);
	check_refs(c);
	check_realized_returns(c);
	check_stress(c);
	check_constraints(c);
	check_ttl(c);
	build_canonical(c);
	check_hash(c);
	check_provenance(c);
	if (!c->dry_run)
		check_producer(c);
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
	char		hex[65];
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
	exec_plan(&plan_existing, args, NULL, false, 1);
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
	StringInfoData data;
	char	   *key;

	for (i = 0; i < c->nblobs; i++)
	{
		OffloadBlob *b = &c->blobs[i];

		args[0] = CStringGetTextDatum(c->world_id);
		args[1] = CStringGetTextDatum(b->hash);
		args[2] = CStringGetTextDatum(part_field[b->part]);
		args[3] = JsonbPGetDatum(b->content);
		args[4] = Int32GetDatum(b->size_bytes);
		args[5] = CStringGetTextDatum(c->actor);
		exec_plan(&plan_blob_insert, args, NULL, false, 0);
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
	if (exec_plan(&plan_insert, args, nulls, false, 1) != SPI_OK_INSERT_RETURNING ||
		SPI_processed != 1)
		elog(ERROR, "could not store risk snapshot");
	row = SPI_copytuple(SPI_tuptable->vals[0]);
	*tupdesc = CreateTupleDescCopy(SPI_tuptable->tupdesc);

	count_outcome(c, false);

	initStringInfo(&data);
	appendStringInfoString(&data, "{\"world_id\": ");
	wval_append_json_string(&data, c->world_id);
	appendStringInfoString(&data, ", \"version\": ");
	wval_append_json_string(&data, c->version);
	appendStringInfoString(&data, ", \"hash\": ");
	wval_append_json_string(&data, c->hash);
	appendStringInfoString(&data, ", \"actor\": ");
	wval_append_json_string(&data, c->actor);
	appendStringInfoString(&data, ", \"stage\": ");
	wval_append_json_string(&data, c->stage);
	appendStringInfoString(&data, ", \"as_of\": ");
	wval_append_json_string(&data, wval_iso_utc(c->as_of));
	appendStringInfo(&data, ", \"ttl_sec\": %d}", c->ttl_sec);
	key = psprintf("risk_snapshot_updated:%s:%s:%s:%s:%s",
				   c->world_id, c->version, c->hash, c->actor, c->stage);
	args[0] = CStringGetTextDatum(c->world_id);
	args[1] = CStringGetTextDatum(c->version);
	args[2] = CStringGetTextDatum(key);
	args[3] = DirectFunctionCall1(jsonb_in, CStringGetDatum(data.data));
	args[4] = Float8GetDatum((double) c->ttl_sec);
	exec_plan(&plan_emit, args, NULL, false, 1);
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
	check_stage_argument(&c);
	check_actor_argument(&c);
	check_contract(&c);

	lock_version(&c);
	row = existing_snapshot(&c, &tupdesc);
	if (row != NULL)
		count_outcome(&c, true);
	else
	{
		row = store_snapshot(&c, &tupdesc);
		/* the portfolio layer inside this transaction (portfolio.sql) */
		if (c.extended_sync)
		{
			Datum		args[3];

			args[0] = CStringGetTextDatum(c.world_id);
			args[1] = CStringGetTextDatum(c.version);
			args[2] = CStringGetTextDatum(c.stage);
			exec_plan(&plan_extended, args, NULL, false, 1);
		}
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
	check_contract(&c);
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
	check_stage_argument(&c);
	check_actor_argument(&c);
	check_contract(&c);
	build_signed_message(&c, &message);
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

/* ---------------------------------------------------------------------
 * Portfolio baseline
 * ---------------------------------------------------------------------
 */

/* An entry of the strategy id -> position index of a portfolio. */
typedef struct IdSlot
{
	char		id[WVAL_MAX_IDENT_BYTES + 1];
	int			pos;
} IdSlot;

/* Position of a strategy id among the portfolio's ids, -1 when absent. */
static int
portfolio_index(HTAB *index, const char *id)
{
	bool		found;
	char		key[WVAL_MAX_IDENT_BYTES + 1];
	IdSlot	   *slot;

	if (strlen(id) > WVAL_MAX_IDENT_BYTES)
		return -1;
	memset(key, 0, sizeof(key));
	strcpy(key, id);
	slot = hash_search(index, key, HASH_FIND, &found);
	return found ? slot->pos : -1;
}

/* One realized-return series as doubles. */
typedef struct ReturnSeries
{
	int			n;
	double	   *x;
} ReturnSeries;

/* Reads realized returns of the portfolio's strategies into series[]. */
static bool
load_returns(HTAB *index, JsonbValue *rr, ReturnSeries *series)
{
	JsonbIterator *it;
	JsonbValue	k,
				v;
	JsonbIteratorToken tok;
	bool		any = false;

	if (rr == NULL || !wval_jbv_is_object(rr))
		return false;
	it = JsonbIteratorInit(rr->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		int			a;
		JsonbIterator *ait;
		JsonbValue	x;
		int			n = 0;

		if (tok != WJB_KEY)
			continue;
		tok = JsonbIteratorNext(&it, &v, true);
		a = portfolio_index(index, jbv_cstring(&k));
		if (a < 0 || !jbv_is_array(&v))
			continue;
		series[a].x = palloc(sizeof(double) * Max(JsonContainerSize(v.val.binary.data), 1));
		ait = JsonbIteratorInit(v.val.binary.data);
		while ((tok = JsonbIteratorNext(&ait, &x, true)) != WJB_DONE)
			if (tok == WJB_ELEM && wval_jbv_double(&x, &series[a].x[n]))
				n++;
		series[a].n = n;
		any = true;
	}
	return any;
}

/* Sample covariance of two series aligned at their ends (hub.h). */
bool
wval_sample_covariance(const double *x, int nx, const double *y, int ny, double *out)
{
	int			m = Min(nx, ny);
	double		mx = 0.0,
				my = 0.0,
				s = 0.0;
	int			i;

	if (m < 2)
		return false;
	x += nx - m;
	y += ny - m;
	for (i = 0; i < m; i++)
	{
		mx += x[i];
		my += y[i];
	}
	mx /= m;
	my /= m;
	for (i = 0; i < m; i++)
		s += (x[i] - mx) * (y[i] - my);
	*out = s / (m - 1);
	return true;
}

/* wval_sample_covariance of two loaded series. */
static bool
sample_covariance(const ReturnSeries *p, const ReturnSeries *q, double *out)
{
	return wval_sample_covariance(p->x, p->n, q->x, q->n, out);
}

/* Loads the portfolio of the world's latest fresh snapshot (hub.h). */
WvalPortfolio *
wval_portfolio_load(const char *world_id, const char *stage)
{
	WvalPortfolio *pf = palloc0(sizeof(WvalPortfolio));
	MemoryContext outer = CurrentMemoryContext;
	MemoryContext spicxt;
	Datum		args[2];
	char		nulls[2] = {' ', ' '};
	bool		isnull;
	Jsonb	   *settings = NULL;
	Jsonb	   *stored;
	Jsonb	   *expanded;
	JsonbValue *weights;
	JsonbValue *cov;
	JsonbValue *ref;
	JsonbIterator *it;
	JsonbValue	k,
				v;
	JsonbIteratorToken tok;
	HASHCTL		ctl;
	HTAB	   *index;
	bool	   *known;
	ReturnSeries *series;
	bool		have_returns;
	int			k_,
				a,
				b;
	double		rho;
	TimestampTz now = GetCurrentTransactionStartTimestamp();

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	spicxt = CurrentMemoryContext;

	args[0] = CStringGetTextDatum(world_id);
	exec_plan(&plan_world, args, NULL, true, 1);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_UNKNOWN_OBJECT),
				 errmsg("world \"%s\" does not exist", world_id),
				 errdetail("world_id is '%s'.", world_id),
				 errhint("Create it first with wval_world_upsert(world_id).")));
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			settings = DatumGetJsonbP(d);
	}
	rho = wval_missing_correlation;
	if (world_setting_double(settings, "missing_correlation", &rho) && (rho < -1.0 || rho > 1.0))
		rho = wval_missing_correlation;

	args[1] = stage ? CStringGetTextDatum(stage) : (Datum) 0;
	nulls[1] = stage ? ' ' : 'n';
	exec_plan(&plan_latest, args, nulls, true, 1);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_UNKNOWN_OBJECT),
				 errmsg("world \"%s\" has no risk snapshot%s%s", world_id,
						stage ? " of stage " : "", stage ? stage : ""),
				 errhint("Producers publish snapshots with wval_snapshot_publish().")));

	MemoryContextSwitchTo(outer);
	pf->world_id = pstrdup(world_id);
	pf->version = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	pf->hash = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	pf->stage = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
	pf->actor = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4);
	pf->as_of = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5, &isnull));
	stored = DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 6, &isnull));
	expanded = DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 7, &isnull));
	pf->rho = rho;

	if (now - pf->as_of > (int64) wval_snapshot_max_age_s * USECS_PER_SEC)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_SNAPSHOT_EXPIRED),
				 errmsg("the latest risk snapshot of world \"%s\" is stale", world_id),
				 errdetail("Version \"%s\" has as_of %s, older than wval.snapshot_max_age (%d s).",
						   pf->version, wval_iso_utc(pf->as_of), wval_snapshot_max_age_s),
				 errhint("Producers must publish a fresh snapshot; wval_snapshot_latest(..., include_stale => true) shows the stale one.")));

	/* weights, in jsonb key order, normalised */
	weights = object_get(&expanded->root, "weights");
	pf->k = k_ = JsonContainerSize(weights->val.binary.data);
	pf->ids = palloc(sizeof(char *) * k_);
	pf->w = palloc(sizeof(double) * k_);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = WVAL_MAX_IDENT_BYTES + 1;
	ctl.entrysize = sizeof(IdSlot);
	ctl.hcxt = CurrentMemoryContext;
	index = hash_create("wval portfolio ids", Max(k_, 4), &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	a = 0;
	it = JsonbIteratorInit(weights->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char		key[WVAL_MAX_IDENT_BYTES + 1];
		IdSlot	   *slot;
		bool		found;

		if (tok != WJB_KEY)
			continue;
		tok = JsonbIteratorNext(&it, &v, true);
		pf->ids[a] = jbv_cstring(&k);
		(void) wval_jbv_double(&v, &pf->w[a]);
		pf->raw_sum += pf->w[a];
		memset(key, 0, sizeof(key));
		strcpy(key, pf->ids[a]);
		slot = hash_search(index, key, HASH_ENTER, &found);
		slot->pos = a;
		a++;
	}
	for (a = 0; a < k_; a++)
		pf->w[a] /= pf->raw_sum;

	{
		JsonbValue *cw;
		JsonbValue *cons = object_get(&expanded->root, "constraints");
		double		d;

		if (cons != NULL && wval_jbv_is_object(cons) &&
			(cw = object_get(cons->val.binary.data, "candidate_weight")) != NULL &&
			wval_jbv_double(cw, &d))
		{
			pf->candidate_weight = palloc(sizeof(double));
			*pf->candidate_weight = d;
		}
	}

	pf->cov = palloc0(sizeof(double) * k_ * k_);
	pf->filled = palloc0(sizeof(bool) * k_ * k_);
	known = palloc0(sizeof(bool) * k_ * k_);
	series = palloc0(sizeof(ReturnSeries) * k_);
	have_returns = load_returns(index, object_get(&expanded->root, "realized_returns"), series);

	cov = object_get(&expanded->root, "covariance");
	ref = object_get(&stored->root, "covariance_ref");
	if (cov != NULL && wval_jbv_is_object(cov))
	{
		CovEntry   *e;
		int			n,
					i;
		char	   *bad_key,
				   *bad_value;

		if (parse_covariance(cov->val.binary.data, &e, &n, &bad_key, &bad_value) != NULL)
			elog(ERROR, "stored covariance of snapshot \"%s\" does not parse", pf->version);
		for (i = 0; i < n; i++)
		{
			a = portfolio_index(index, e[i].a);
			b = portfolio_index(index, e[i].b);
			if (a < 0 || b < 0)
				continue;		/* a strategy without weight does not matter */
			pf->cov[a * k_ + b] = pf->cov[b * k_ + a] = e[i].value;
			known[a * k_ + b] = known[b * k_ + a] = true;
		}
		pf->cov_source = ref != NULL ? "blob" : "snapshot";
	}
	else if (have_returns)
	{
		for (a = 0; a < k_; a++)
			for (b = a; b < k_; b++)
				if (sample_covariance(&series[a], &series[b], &pf->cov[a * k_ + b]))
				{
					pf->cov[b * k_ + a] = pf->cov[a * k_ + b];
					known[a * k_ + b] = known[b * k_ + a] = true;
				}
		pf->cov_source = "realized_returns";
	}
	else if (ref != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the covariance of risk snapshot \"%s\" is stored outside the database", pf->version),
				 errdetail("covariance_ref is %s.", wval_jbv_text(ref, 120)),
				 errhint("Resolve the reference in the consumer, or publish the covariance inline or as a wval blob.")));
	else
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
				 errmsg("risk snapshot \"%s\" of world \"%s\" has neither covariance nor realized returns",
						pf->version, world_id),
				 errhint("Producers send \"covariance\" (or realized_returns to estimate it from) for the portfolio layer.")));

	/* a missing variance may come from the strategy's own returns */
	for (a = 0; a < k_; a++)
	{
		if (known[a * k_ + a])
			continue;
		if (series[a].n >= 2 && sample_covariance(&series[a], &series[a], &pf->cov[a * k_ + a]))
		{
			known[a * k_ + a] = true;
			continue;
		}
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
				 errmsg("risk snapshot \"%s\" gives no variance for strategy \"%s\"", pf->version, pf->ids[a]),
				 errdetail("covariance has no \"%s,%s\" entry and realized_returns has fewer than 2 points of it.",
						   pf->ids[a], pf->ids[a]),
				 errhint("Send the diagonal entry of every weighted strategy.")));
	}
	pf->nfilled = wval_fill_missing_covariance(k_, pf->cov, known, rho, pf->filled);

	/* what the portfolio layer reads besides the matrix */
	pf->returns = palloc0(sizeof(double *) * k_);
	pf->nreturns = palloc0(sizeof(int) * k_);
	for (a = 0; a < k_; a++)
	{
		pf->returns[a] = series[a].n > 0 ? series[a].x : NULL;
		pf->nreturns[a] = series[a].n;
	}
	pf->payload = expanded;

	MemoryContextSwitchTo(spicxt);
	SPI_finish();
	return pf;
}

/* Position of a strategy among the portfolio's weighted ids (hub.h). */
int
wval_portfolio_position(const WvalPortfolio *pf, const char *id)
{
	int			a;

	for (a = 0; a < pf->k; a++)
		if (strcmp(pf->ids[a], id) == 0)
			return a;
	return -1;
}

/* The snapshot's covariance entries of a strategy without weight (hub.h). */
int
wval_portfolio_candidate_covariance(const WvalPortfolio *pf, const char *id,
									double *cov_row, bool *row_known,
									double *variance, bool *variance_known)
{
	JsonbValue *cov = object_get(&pf->payload->root, "covariance");
	CovEntry   *e;
	int			n,
				i;
	int			found = 0;
	char	   *bad_key,
			   *bad_value;

	memset(row_known, 0, sizeof(bool) * pf->k);
	*variance_known = false;
	if (cov == NULL || !wval_jbv_is_object(cov))
		return 0;
	if (parse_covariance(cov->val.binary.data, &e, &n, &bad_key, &bad_value) != NULL)
		elog(ERROR, "stored covariance of snapshot \"%s\" does not parse", pf->version);
	for (i = 0; i < n; i++)
	{
		const char *other;
		int			a;

		if (strcmp(e[i].a, id) == 0)
			other = e[i].b;
		else if (strcmp(e[i].b, id) == 0)
			other = e[i].a;
		else
			continue;
		if (strcmp(other, id) == 0)
		{
			*variance = e[i].value;
			*variance_known = true;
			found++;
			continue;
		}
		a = wval_portfolio_position(pf, other);
		if (a < 0)
			continue;
		cov_row[a] = e[i].value;
		row_known[a] = true;
		found++;
	}
	return found;
}

/* The realized returns of one strategy in the snapshot (hub.h). */
double *
wval_portfolio_series(const WvalPortfolio *pf, const char *id, int *n)
{
	JsonbValue *rr = object_get(&pf->payload->root, "realized_returns");
	JsonbValue *v;
	JsonbIterator *it;
	JsonbValue	x;
	JsonbIteratorToken tok;
	double	   *out;

	*n = 0;
	if (rr == NULL || !wval_jbv_is_object(rr) ||
		(v = object_get(rr->val.binary.data, id)) == NULL || !jbv_is_array(v))
		return NULL;
	out = palloc(sizeof(double) * Max(JsonContainerSize(v->val.binary.data), 1));
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &x, true)) != WJB_DONE)
		if (tok == WJB_ELEM && wval_jbv_double(&x, &out[*n]))
			(*n)++;
	if (*n == 0)
	{
		pfree(out);
		return NULL;
	}
	return out;
}

PG_FUNCTION_INFO_V1(wval_portfolio_risk);

/*
 * wval_portfolio_risk(world_id, stage) → jsonb: sigma, VaR_99 and ES_99
 * of the latest fresh snapshot's portfolio, the weights used and the pairs
 * filled with the conservative correlation.
 */
Datum
wval_portfolio_risk(PG_FUNCTION_ARGS)
{
	WvalPortfolio *pf;
	double		var,
				sigma;
	StringInfoData out;
	int			a,
				b;
	bool		first = true;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"world_id\" must not be null")));
	pf = wval_portfolio_load(text_to_cstring(PG_GETARG_TEXT_PP(0)),
							 PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1)));
	var = wval_portfolio_variance(pf->k, pf->w, pf->cov);
	sigma = wval_portfolio_sigma(pf->k, pf->w, pf->cov);
	if (isnan(sigma))
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
				 errmsg("the covariance of risk snapshot \"%s\" gives a negative portfolio variance", pf->version),
				 errdetail("w'Cw is %.17g (%d pairs filled with correlation %g).", var, pf->nfilled, pf->rho),
				 errhint("Send a positive semi-definite covariance, or all of its pairs.")));

	initStringInfo(&out);
	appendStringInfoString(&out, "{\"world_id\": ");
	wval_append_json_string(&out, pf->world_id);
	appendStringInfoString(&out, ", \"version\": ");
	wval_append_json_string(&out, pf->version);
	appendStringInfoString(&out, ", \"hash\": ");
	wval_append_json_string(&out, pf->hash);
	appendStringInfoString(&out, ", \"stage\": ");
	wval_append_json_string(&out, pf->stage);
	appendStringInfoString(&out, ", \"actor\": ");
	wval_append_json_string(&out, pf->actor);
	appendStringInfoString(&out, ", \"as_of\": ");
	wval_append_json_string(&out, wval_iso_utc(pf->as_of));
	appendStringInfoString(&out, ", \"variance\": ");
	wval_append_float8(&out, Max(var, 0.0));
	appendStringInfoString(&out, ", \"sigma\": ");
	wval_append_float8(&out, sigma);
	appendStringInfoString(&out, ", \"var_99\": ");
	wval_append_float8(&out, wval_normal_var99(sigma));
	appendStringInfoString(&out, ", \"es_99\": ");
	wval_append_float8(&out, wval_normal_es99(sigma));
	appendStringInfoString(&out, ", \"z_99\": ");
	wval_append_float8(&out, WVAL_Z_99);
	appendStringInfoString(&out, ", \"weights_sum\": ");
	wval_append_float8(&out, pf->raw_sum);
	appendStringInfoString(&out, ", \"weights\": {");
	for (a = 0; a < pf->k; a++)
	{
		if (a > 0)
			appendStringInfoString(&out, ", ");
		wval_append_json_string(&out, pf->ids[a]);
		appendStringInfoString(&out, ": ");
		wval_append_float8(&out, pf->w[a]);
	}
	appendStringInfoString(&out, "}, \"covariance_source\": ");
	wval_append_json_string(&out, pf->cov_source);
	appendStringInfoString(&out, ", \"missing_correlation\": ");
	wval_append_float8(&out, pf->rho);
	appendStringInfoString(&out, ", \"filled_pairs\": [");
	for (a = 0; a < pf->k; a++)
		for (b = a + 1; b < pf->k; b++)
			if (pf->filled[a * pf->k + b])
			{
				const char *x = strcmp(pf->ids[a], pf->ids[b]) <= 0 ? pf->ids[a] : pf->ids[b];
				const char *y = x == pf->ids[a] ? pf->ids[b] : pf->ids[a];

				if (!first)
					appendStringInfoString(&out, ", ");
				first = false;
				appendStringInfoChar(&out, '[');
				wval_append_json_string(&out, x);
				appendStringInfoString(&out, ", ");
				wval_append_json_string(&out, y);
				appendStringInfoChar(&out, ']');
			}
	appendStringInfoString(&out, "]}");
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(out.data)));
}
