/*-------------------------------------------------------------------------
 *
 * hub_contract.c
 *	  The risk snapshot contract, checked in C in the order of docs/risk-hub.md
 *	  (hub.c's header lists it): the arguments, every field of the
 *	  snapshot, the canonical form and its hash, the offloading of large
 *	  parts to wval.blobs, the provenance and the producer (registration
 *	  and HMAC signature).  A failed check counts the rejection
 *	  (contract_reject) and raises the error; storing is hub.c's.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <float.h>
#include <limits.h>
#include <math.h>

#include "catalog/pg_type.h"
#include "common/hmac.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "wval.h"
#include "hub.h"
#include "hub_contract.h"
#include "spi.h"

/* the top-level fields of a snapshot */
static const char *const snapshot_fields[] = {
	"as_of", "version", "weights", "covariance", "covariance_ref",
	"realized_returns", "realized_returns_ref", "stress", "stress_ref",
	"constraints", "ttl_sec", "hash", "provenance", NULL
};

const char *const wval_part_field[NUM_PARTS] = {"covariance", "realized_returns", "stress"};
const char *const wval_part_ref_field[NUM_PARTS] = {"covariance_ref", "realized_returns_ref", "stress_ref"};

static WvalPlan plan_blob_kind = WVAL_PLAN(
	"SELECT kind FROM wval.blobs WHERE world_id = $1 AND blob_hash = $2",
	2, TEXTOID, TEXTOID);
static WvalPlan plan_producer = WVAL_PLAN(
	"SELECT status, hmac_key FROM wval.producers WHERE world_id = $1 AND actor = $2 "
	"ORDER BY registration_id DESC LIMIT 1",
	2, TEXTOID, TEXTOID);
/* NULL when s is a valid identifier, else what is wrong with it (wval_identifier_problem). */
static const char *
identifier_problem(const char *s, int len)
{
	return wval_identifier_problem(s, (size_t) len);
}

/* The jsonb text of a jsonb value (jsonb_out). */
static char *
jsonb_text(Jsonb *jb)
{
	return JsonbToCString(NULL, &jb->root, VARSIZE(jb));
}

/* ---------------------------------------------------------------------
 * Contract checks, in the order of docs/risk-hub.md
 * ---------------------------------------------------------------------
 */

/* stage: one of backtest, paper, shadow, live. */
void
wval_contract_check_stage(SnapshotContract *c)
{
	int			s = wval_stage_index(c->stage);

	if (s >= 0)
	{
		c->count_stage = wval_stage_table[s].name;
		return;
	}
	contract_reject(c, false,
					(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
					 errmsg("invalid value for \"stage\""),
					 errdetail("stage is %s.", c->stage ? quote_literal_cstr(c->stage) : "null"),
					 errhint("Accepted values: %s.", wval_stage_list())));
}

/* actor: a non-empty identifier (its registration is checked last). */
void
wval_contract_check_actor(SnapshotContract *c)
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
							 errmsg("unknown field \"%s\" in risk snapshot", wval_jbv_cstring(&v)),
							 errdetail("The snapshot has a top-level key that is not part of the contract."),
							 errhint("Allowed fields: as_of, version, weights, covariance, covariance_ref, realized_returns, realized_returns_ref, stress, stress_ref, constraints, ttl_sec, hash, provenance.")));
	}
}

/* as_of: required ISO-8601 timestamp with an offset, not in the future. */
static void
check_as_of(SnapshotContract *c)
{
	JsonbValue *v = wval_object_get(&c->snapshot->root, "as_of");
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
	s = wval_jbv_cstring(v);
	if (!wval_parse_iso8601(s, &c->as_of))
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
	JsonbValue *v = wval_object_get(&c->snapshot->root, "version");
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
						 errdetail("version is %s.", quote_literal_cstr(wval_jbv_cstring(v))),
						 errhint("Send a non-empty version of at most 200 bytes without control characters.")));
	c->version = wval_jbv_cstring(v);
}

/* weights: object strategy -> finite number, sum within 1 +- 1e-3 and > 0. */
static void
check_weights(SnapshotContract *c)
{
	JsonbValue *v = wval_object_get(&c->snapshot->root, "weights");
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
							 errdetail("The key is %s.", quote_literal_cstr(wval_jbv_cstring(&k))),
							 errhint("Strategy ids are non-empty, at most 200 bytes, without control characters.")));
		if (!wval_jbv_double(&val, &w))
			contract_reject(c, false,
							(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
							 errmsg("weight of \"%s\" in \"weights\" must be a finite number", wval_jbv_cstring(&k)),
							 errdetail("weights.%s is %s: %s.", wval_jbv_cstring(&k), wval_jbv_type_name(&val), wval_jbv_text(&val, 120)),
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

/* Orders covariance entries by pair. */
static int
cov_entry_cmp(const void *x, const void *y)
{
	const WvalCovEntry *p = (const WvalCovEntry *) x;
	const WvalCovEntry *q = (const WvalCovEntry *) y;
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

/* Parses a covariance object into entries sorted by pair (hub.h). */
const char *
wval_parse_covariance(JsonbContainer *cont, WvalCovEntry **out, int *nout,
				 char **bad_key, char **bad_value)
{
	JsonbIterator *it = JsonbIteratorInit(cont);
	JsonbValue	k,
				val;
	JsonbIteratorToken tok;
	int			cap = Max(JsonContainerSize(cont), 1);
	WvalCovEntry   *e = palloc(sizeof(WvalCovEntry) * cap);
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
		*bad_key = wval_jbv_cstring(&k);
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
	qsort(e, n, sizeof(WvalCovEntry), cov_entry_cmp);
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
	JsonbValue *v = wval_object_get(&c->snapshot->root, "covariance");
	WvalCovEntry   *entries;
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
	problem = wval_parse_covariance(v->val.binary.data, &entries, &n, &bad_key, &bad_value);
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
	const char *field = wval_part_ref_field[part];
	JsonbValue *v = wval_object_get(&c->snapshot->root, field);
	char	   *s;

	if (v == NULL)
		return;
	if (wval_object_get(&c->snapshot->root, wval_part_field[part]) != NULL)
		contract_reject(c, false,
						(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
						 errmsg("\"%s\" and \"%s\" are both given", field, wval_part_field[part]),
						 errdetail("A snapshot carries a part either inline or by reference."),
						 errhint("Drop one of the two fields.")));
	if (v->type != jbvString)
		contract_reject(c, false,
						(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
						 errmsg("\"%s\" must be a string", field),
						 errdetail("%s is %s: %s.", field, wval_jbv_type_name(v), wval_jbv_text(v, 120)),
						 errhint("Send a wval-blob:sha256:<hex>, s3:// or file:// reference.")));
	s = wval_jbv_cstring(v);
	if (strncmp(s, BLOB_REF_PREFIX, strlen(BLOB_REF_PREFIX)) == 0)
	{
		const char *hex = s + strlen(BLOB_REF_PREFIX);
		Datum		args[2];
		bool		ok = strlen(hex) == WVAL_SHA256_HEX_LEN && strspn(hex, "0123456789abcdef") == WVAL_SHA256_HEX_LEN;
		char	   *kind = NULL;

		if (ok)
		{
			args[0] = CStringGetTextDatum(c->world_id);
			args[1] = CStringGetTextDatum(psprintf("sha256:%s", hex));
			wval_spi_exec(&plan_blob_kind, args, NULL, true, 1, WVAL_SPI_ANY);
			if (SPI_processed == 1)
				kind = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		}
		if (kind == NULL)
			contract_reject(c, false,
							(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
							 errmsg("\"%s\" names no blob of world \"%s\"", field, c->world_id),
							 errdetail("%s is %s.", field, quote_literal_cstr(s)),
							 errhint("Reference a blob stored by an earlier snapshot of this world (wval.blobs), or send the part inline.")));
		if (strcmp(kind, wval_part_field[part]) != 0)
			contract_reject(c, false,
							(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
							 errmsg("\"%s\" names a %s blob", field, kind),
							 errdetail("%s is %s.", field, quote_literal_cstr(s)),
							 errhint("Reference a blob of kind %s.", wval_part_field[part])));
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
	JsonbValue *v = wval_object_get(&c->snapshot->root, "realized_returns");
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
		id = wval_jbv_cstring(&k);
		problem = identifier_problem(k.val.string.val, k.val.string.len);
		if (problem != NULL)
			contract_reject(c, false,
							(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
							 errmsg("strategy id in \"realized_returns\" %s", problem),
							 errdetail("The key is %s.", quote_literal_cstr(id)),
							 errhint("Strategy ids are non-empty, at most 200 bytes, without control characters.")));
		if (!wval_jbv_is_array(&series))
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
			*bad_key = wval_jbv_cstring(&k);
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
		*scenario = wval_jbv_cstring(&k);
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
			*where = bad_key ? psprintf("%s.%s", wval_jbv_cstring(&mk), bad_key) : wval_jbv_cstring(&mk);
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
	JsonbValue *v = wval_object_get(&c->snapshot->root, "stress");
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
	JsonbValue *v = wval_object_get(&c->snapshot->root, "constraints");
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
	x = wval_object_get(v->val.binary.data, "candidate_weight");
	if (x != NULL && !(wval_jbv_double(x, &d) && d > 0.0 && d < 1.0))
		contract_reject(c, false,
						(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
						 errmsg("\"constraints.candidate_weight\" must be a number between 0 and 1"),
						 errdetail("candidate_weight is %s: %s.", wval_jbv_type_name(x), wval_jbv_text(x, 120)),
						 errhint("Send the weight a candidate would get, strictly between 0 and 1.")));
	x = wval_object_get(v->val.binary.data, "max_leverage");
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
	JsonbValue *v = wval_object_get(&c->snapshot->root, "ttl_sec");
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
			if (k.val.string.len == (int) strlen(wval_part_field[p]) &&
				memcmp(k.val.string.val, wval_part_field[p], k.val.string.len) == 0)
				part = p;
		if (part >= 0 && offload[part])
		{
			OffloadBlob *b = &c->blobs[c->nblobs++];
			char	   *text;
			char		hex[WVAL_SHA256_HEX_LEN + 1];
			JsonbValue	rk,
						rv;

			b->part = part;
			b->content = JsonbValueToJsonb(&v);
			text = jsonb_text(b->content);
			b->size_bytes = strlen(text);
			wval_sha256_utf8_hex(text, b->size_bytes, hex);
			snprintf(b->hash, sizeof(b->hash), "sha256:%s", hex);

			rk.type = jbvString;
			rk.val.string.val = (char *) wval_part_ref_field[part];
			rk.val.string.len = strlen(wval_part_ref_field[part]);
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
		char		hex[WVAL_SHA256_HEX_LEN + 1];

		c->canonical_len = strlen(utf8);
		wval_sha256_hex(utf8, c->canonical_len, hex);
		snprintf(c->hash, sizeof(c->hash), "sha256:%s", hex);
	}
}

/* hash: when given, equal to the canonical hash (WV006). */
static void
check_hash(SnapshotContract *c)
{
	JsonbValue *v = wval_object_get(&c->snapshot->root, "hash");

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
	JsonbValue *v = wval_object_get(&c->snapshot->root, "provenance");
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
		JsonbValue *x = wval_object_get(v->val.binary.data, names[i]);

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
void
wval_contract_signed_message(SnapshotContract *c, StringInfo buf)
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
	char		expected[WVAL_SHA256_HEX_LEN + 1];
	char		given[WVAL_SHA256_HEX_LEN + 1];
	size_t		siglen;
	size_t		i;
	StringInfoData message;

	args[0] = CStringGetTextDatum(c->world_id);
	args[1] = CStringGetTextDatum(c->actor);
	wval_spi_exec(&plan_producer, args, NULL, true, 1, WVAL_SPI_ANY);
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
	for (i = 0; i < siglen && i < WVAL_SHA256_HEX_LEN; i++)
		given[i] = pg_ascii_tolower(c->signature[i]);
	given[Min(siglen, WVAL_SHA256_HEX_LEN)] = '\0';
	wval_contract_signed_message(c, &message);
	hmac_sha256_hex((const uint8 *) VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key),
					message.data, message.len, expected);
	pfree(message.data);
	if (siglen != WVAL_SHA256_HEX_LEN || !equal_constant_time(given, expected, WVAL_SHA256_HEX_LEN))
		contract_reject(c, false,
						(errcode(ERRCODE_WVAL_GOVERNANCE),
						 errmsg("signature of the risk snapshot of actor \"%s\" is not valid", c->actor),
						 errdetail("The signature does not match HMAC-SHA256 under the producer's key of the signed message for world \"%s\", actor \"%s\", stage \"%s\".",
								   c->world_id, c->actor, c->stage),
						 errhint("Sign wval_snapshot_signed_message(world_id, snapshot, actor, stage) with the registered key; send 64 hex digits.")));
	c->signed_ok = true;
}

/* Runs the snapshot's contract checks, in the order of docs/risk-hub.md. */
void
wval_contract_check(SnapshotContract *c)
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

