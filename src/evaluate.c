/*-------------------------------------------------------------------------
 *
 * evaluate.c
 *	  The evaluation entry points: wval_check (pure) and wval_evaluate
 *	  (computes metrics, applies the active policy, stores the run), plus the
 *	  merge of supplied and computed metrics (docs/evaluate.md, step 3).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/backendid.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "common/hashfn.h"
#include "port/pg_bswap.h"
#include "utils/array.h"
#include "utils/uuid.h"

#include "access.h"
#include "evaluate.h"
#include "jsonb.h"
#include "metrics.h"
#include "policy.h"
#include "returns.h"
#include "run.h"
#include "spi.h"
#include "wval.h"

/* Metric blocks wval knows; other top-level keys go to diagnostics.extra_metrics */
static const char *const known_blocks[] = {
	"returns", "sample", "robustness", "risk", "benchmark", "portfolio", "stress",
	"diagnostics", "live", "cohort"
};

/* Supplied facts that a computed null must not hide */
static const char *const supplied_only[] = {
	"sample.n_trades_total", "sample.n_trades_per_year"
};

/* One supplied value that a computed one replaced */
typedef struct Override
{
	char	   *path;
	JsonbValue	supplied;
} Override;

typedef struct MergeState
{
	Override   *overrides;
	int			noverrides;
	int			maxoverrides;
} MergeState;

/* True when name is one of names */
static bool
in_list(const char *name, const char *const *names, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		if (strcmp(name, names[i]) == 0)
			return true;
	return false;
}

/* Raises WV001 for a supplied metric that is not a number */
static void
error_bad_metric(const char *path, const JsonbValue *v)
{
	const char *what = v->type == jbvString ? "a string" :
		v->type == jbvBool ? "a boolean" : "an array";
	char	   *text;

	if (v->type == jbvString)
		text = psprintf("\"%.*s\"", Min(v->val.string.len, 80), v->val.string.val);
	else if (v->type == jbvBool)
		text = pstrdup(v->val.boolean ? "true" : "false");
	else
		text = JsonbToCString(NULL, v->val.binary.data, 200);
	ereport(ERROR,
			(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
			 errmsg("supplied metric \"%s\" is not a number", path),
			 errdetail("Found %s: %s.", what, text),
			 errhint("Supplied metrics are finite numbers, the strings \"Infinity\" / \"-Infinity\", null, or objects of those; descriptive values belong under diagnostics.")));
}

/* True for the strings wval accepts in place of infinite numbers */
static bool
is_infinity_string(const JsonbValue *v)
{
	return v->type == jbvString &&
		((v->val.string.len == 8 && strncmp(v->val.string.val, "Infinity", 8) == 0) ||
		 (v->val.string.len == 9 && strncmp(v->val.string.val, "-Infinity", 9) == 0));
}

/* Checks a supplied metric value (recursively for objects) */
static void
check_supplied(const char *path, const JsonbValue *v, bool descriptive)
{
	if (v->type == jbvNumeric)
	{
		/* every number, descriptive or not, must fit a double (1e400 does not) */
		(void) wval_jbv_number(v, path, ERRCODE_WVAL_INVALID_METRIC_INPUT);
		return;
	}
	if (v->type == jbvNull || is_infinity_string(v))
		return;
	if (v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data))
	{
		JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
		JsonbValue	k,
					e;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
		{
			if (tok != WJB_KEY)
				continue;
			tok = JsonbIteratorNext(&it, &e, true);
			check_supplied(psprintf("%s.%.*s", path, k.val.string.len, k.val.string.val),
						   &e, descriptive);
		}
		return;
	}
	if (descriptive)
		return;
	error_bad_metric(path, v);
}

/* The double of a number or infinity string; false otherwise */
static bool
value_double(const JsonbValue *v, double *out)
{
	if (v->type == jbvNumeric)
		return wval_jbv_double(v, out);
	if (is_infinity_string(v))
	{
		*out = v->val.string.val[0] == '-' ? -get_float8_infinity() : get_float8_infinity();
		return true;
	}
	return false;
}

/* True when a supplied and a computed value agree to 1e-9 relative */
static bool
values_agree(const JsonbValue *a, const JsonbValue *b)
{
	double		x,
				y;

	if (a->type == jbvNull && b->type == jbvNull)
		return true;
	if (!value_double(a, &x) || !value_double(b, &y))
		return false;
	if (x == y)
		return true;
	return fabs(x - y) <= 1e-9 * Max(fabs(x), fabs(y)) || fabs(x - y) <= 1e-12;
}

/* Records a supplied value that a computed one replaced */
static void
add_override(MergeState *ms, const char *path, const JsonbValue *supplied)
{
	if (ms->noverrides == ms->maxoverrides)
	{
		ms->maxoverrides = ms->maxoverrides ? ms->maxoverrides * 2 : 8;
		ms->overrides = ms->overrides ?
			repalloc(ms->overrides, sizeof(Override) * ms->maxoverrides) :
			palloc(sizeof(Override) * ms->maxoverrides);
	}
	ms->overrides[ms->noverrides].path = pstrdup(path);
	ms->overrides[ms->noverrides].supplied = *supplied;
	ms->noverrides++;
}

/* Collects the key/value pairs of an object container (sorted by jsonb) */
static int
container_pairs(JsonbContainer *c, JsonbValue **keys, JsonbValue **vals)
{
	int			n = 0;
	int			max = JsonContainerSize(c);
	JsonbIterator *it = JsonbIteratorInit(c);
	JsonbValue	k;
	JsonbIteratorToken tok;

	*keys = palloc(sizeof(JsonbValue) * Max(max, 1));
	*vals = palloc(sizeof(JsonbValue) * Max(max, 1));
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		if (tok != WJB_KEY)
			continue;
		(*keys)[n] = k;
		tok = JsonbIteratorNext(&it, &(*vals)[n], true);
		n++;
	}
	return n;
}

/* Compares two jsonb string keys in jsonb's order (length, then bytes) */
static int
key_cmp(const JsonbValue *a, const JsonbValue *b)
{
	if (a->val.string.len != b->val.string.len)
		return a->val.string.len > b->val.string.len ? 1 : -1;
	return memcmp(a->val.string.val, b->val.string.val, a->val.string.len);
}

static void merge_objects(JsonbParseState **st, JsonbContainer *computed, JsonbContainer *supplied,
						  const char *path, MergeState *ms);

/* Pushes a value (scalar or container) into a parse state */
static void
push_value(JsonbParseState **st, JsonbValue *v)
{
	if (v->type == jbvBinary)
	{
		JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
		JsonbValue	e;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &e, false)) != WJB_DONE)
			pushJsonbValue(st, tok, tok < WJB_BEGIN_ARRAY ? &e : NULL);
	}
	else
		pushJsonbValue(st, WJB_VALUE, v);
}

/*
 * Merges one key present in both documents: objects recurse, leaves take
 * the computed value (keeping a disagreeing supplied one as an override),
 * except supplied-only facts where the computed value is null.
 */
static void
merge_leaf(JsonbParseState **st, JsonbValue *cv, JsonbValue *sv, const char *path, MergeState *ms)
{
	if (wval_jbv_is_object(cv) && wval_jbv_is_object(sv))
	{
		pushJsonbValue(st, WJB_BEGIN_OBJECT, NULL);
		merge_objects(st, cv->val.binary.data, sv->val.binary.data, path, ms);
		pushJsonbValue(st, WJB_END_OBJECT, NULL);
		return;
	}
	if (cv->type == jbvNull &&
		(in_list(path, supplied_only, lengthof(supplied_only)) || strncmp(path, "diagnostics.", 12) == 0 ||
		 strncmp(path, "risk.", 5) == 0))
	{
		push_value(st, sv);
		return;
	}
	if (!values_agree(sv, cv))
		add_override(ms, path, sv);
	push_value(st, cv);
}

/* Merges two objects key by key (both sorted in jsonb order) */
static void
merge_objects(JsonbParseState **st, JsonbContainer *computed, JsonbContainer *supplied,
			  const char *path, MergeState *ms)
{
	JsonbValue *ck = NULL,
			   *cv = NULL,
			   *sk = NULL,
			   *sv = NULL;
	int			nc = computed ? container_pairs(computed, &ck, &cv) : 0;
	int			ns = supplied ? container_pairs(supplied, &sk, &sv) : 0;
	int			i = 0,
				j = 0;

	while (i < nc || j < ns)
	{
		int			c = i >= nc ? 1 : j >= ns ? -1 : key_cmp(&ck[i], &sk[j]);

		if (c < 0)
		{
			pushJsonbValue(st, WJB_KEY, &ck[i]);
			push_value(st, &cv[i]);
			i++;
		}
		else if (c > 0)
		{
			pushJsonbValue(st, WJB_KEY, &sk[j]);
			push_value(st, &sv[j]);
			j++;
		}
		else
		{
			char	   *p = path[0] ? psprintf("%s.%.*s", path, ck[i].val.string.len, ck[i].val.string.val) :
				pnstrdup(ck[i].val.string.val, ck[i].val.string.len);

			pushJsonbValue(st, WJB_KEY, &ck[i]);
			merge_leaf(st, &cv[i], &sv[j], p, ms);
			i++;
			j++;
		}
	}
}

/* Builds a JsonbValue string */
static JsonbValue
jstr(const char *s)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) s;
	v.val.string.len = strlen(s);
	return v;
}

/* Builds a JsonbValue number */
static JsonbValue
jnum(double d)
{
	JsonbValue	v;

	v.type = jbvNumeric;
	v.val.numeric = DatumGetNumeric(DirectFunctionCall1(float8_numeric, Float8GetDatum(d)));
	return v;
}

/*
 * Normalises the metrics of a run: checks the supplied blocks (WV001),
 * merges them with the computed ones (computed wins; disagreements kept
 * under diagnostics.supplied_overridden), moves unknown top-level blocks
 * to diagnostics.extra_metrics, and derives sample.n_trades_per_year.
 */
Jsonb *
wval_merge_metrics(Jsonb *computed, Jsonb *supplied)
{
	JsonbParseState *st = NULL;
	MergeState	ms = {NULL, 0, 0};
	JsonbValue *sk = NULL,
			   *sv = NULL;
	int			ns = 0;
	int			i;
	JsonbParseState *known = NULL;
	JsonbValue *res;
	Jsonb	   *known_doc;
	Jsonb	   *merged;
	JsonbValue *years,
			   *trades,
			   *per_year;
	double		y,
				t;
	int			nextra = 0;

	if (supplied != NULL && (!JB_ROOT_IS_OBJECT(supplied) || JB_ROOT_IS_SCALAR(supplied)))
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
				 errmsg("\"metrics\" must be a JSON object"),
				 errhint("Pass metric blocks such as {\"returns\": {...}, \"sample\": {...}}.")));

	/* split the supplied document into known blocks and extras */
	if (supplied != NULL)
		ns = container_pairs(&supplied->root, &sk, &sv);
	pushJsonbValue(&known, WJB_BEGIN_OBJECT, NULL);
	for (i = 0; i < ns; i++)
	{
		char	   *name = pnstrdup(sk[i].val.string.val, sk[i].val.string.len);

		if (!in_list(name, known_blocks, lengthof(known_blocks)))
		{
			check_supplied(name, &sv[i], false);
			nextra++;
			continue;
		}
		if (!wval_jbv_is_object(&sv[i]) && sv[i].type != jbvNull)
			ereport(ERROR,
					(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
					 errmsg("supplied metric block \"%s\" must be an object", name),
					 errhint("Write metric blocks as objects, e.g. {\"returns\": {\"sharpe\": 1.2}}.")));
		if (sv[i].type == jbvNull)
			continue;
		check_supplied(name, &sv[i], strcmp(name, "diagnostics") == 0);
		pushJsonbValue(&known, WJB_KEY, &sk[i]);
		push_value(&known, &sv[i]);
	}
	res = pushJsonbValue(&known, WJB_END_OBJECT, NULL);
	known_doc = JsonbValueToJsonb(res);

	/* merge */
	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	merge_objects(&st, computed ? &computed->root : NULL, &known_doc->root, "", &ms);
	res = pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	merged = JsonbValueToJsonb(res);

	/* diagnostics additions: extra_metrics, supplied_overridden, derived facts */
	years = wval_json_path(merged, "sample.effective_history_years");
	trades = wval_json_path(merged, "sample.n_trades_total");
	per_year = wval_json_path(merged, "sample.n_trades_per_year");
	if (nextra == 0 && ms.noverrides == 0 && wval_json_path(merged, "diagnostics") != NULL &&
		!(years && trades && (per_year == NULL || per_year->type == jbvNull)))
		return merged;

	st = NULL;
	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	{
		JsonbValue *mk,
				   *mv;
		int			nm = container_pairs(&merged->root, &mk, &mv);
		bool		diag_done = false;
		JsonbValue	dkey = jstr("diagnostics");

		for (i = 0; i <= nm; i++)
		{
			bool		is_diag = i < nm && key_cmp(&mk[i], &dkey) == 0;
			bool		is_sample = i < nm && mk[i].val.string.len == 6 &&
				strncmp(mk[i].val.string.val, "sample", 6) == 0;

			if (i == nm && diag_done)
				break;
			if (is_diag || (i == nm && !diag_done))
			{
				JsonbValue *dk = NULL,
						   *dv = NULL;
				int			nd = is_diag ? container_pairs(mv[i].val.binary.data, &dk, &dv) : 0;
				int			d;
				JsonbValue	k;

				pushJsonbValue(&st, WJB_KEY, &dkey);
				pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
				for (d = 0; d < nd; d++)
				{
					if ((nextra > 0 && dk[d].val.string.len == 13 && strncmp(dk[d].val.string.val, "extra_metrics", 13) == 0) ||
						(ms.noverrides > 0 && dk[d].val.string.len == 19 && strncmp(dk[d].val.string.val, "supplied_overridden", 19) == 0))
						continue;	/* rebuilt below */
					pushJsonbValue(&st, WJB_KEY, &dk[d]);
					push_value(&st, &dv[d]);
				}
				if (nextra > 0)
				{
					JsonbValue *old = is_diag ? wval_json_path(merged, "diagnostics.extra_metrics") : NULL;
					int			s;

					k = jstr("extra_metrics");
					pushJsonbValue(&st, WJB_KEY, &k);
					pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
					if (old && wval_jbv_is_object(old))
					{
						JsonbValue *ok,
								   *ov;
						int			no = container_pairs(old->val.binary.data, &ok, &ov);
						int			o;

						for (o = 0; o < no; o++)
						{
							pushJsonbValue(&st, WJB_KEY, &ok[o]);
							push_value(&st, &ov[o]);
						}
					}
					for (s = 0; s < ns; s++)
					{
						char	   *name = pnstrdup(sk[s].val.string.val, sk[s].val.string.len);

						if (in_list(name, known_blocks, lengthof(known_blocks)))
							continue;
						pushJsonbValue(&st, WJB_KEY, &sk[s]);
						push_value(&st, &sv[s]);
					}
					pushJsonbValue(&st, WJB_END_OBJECT, NULL);
				}
				if (ms.noverrides > 0)
				{
					int			o;

					k = jstr("supplied_overridden");
					pushJsonbValue(&st, WJB_KEY, &k);
					pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
					for (o = 0; o < ms.noverrides; o++)
					{
						k = jstr(ms.overrides[o].path);
						pushJsonbValue(&st, WJB_KEY, &k);
						push_value(&st, &ms.overrides[o].supplied);
					}
					pushJsonbValue(&st, WJB_END_OBJECT, NULL);
				}
				pushJsonbValue(&st, WJB_END_OBJECT, NULL);
				diag_done = true;
				continue;
			}
			if (is_sample && years && trades && (per_year == NULL || per_year->type == jbvNull) &&
				value_double(years, &y) && value_double(trades, &t) && y > 0 && isfinite(y) && isfinite(t))
			{
				JsonbValue *xk,
						   *xv;
				int			nx = container_pairs(mv[i].val.binary.data, &xk, &xv);
				int			x;
				JsonbValue	k = jstr("n_trades_per_year");
				JsonbValue	n = jnum(t / y);

				pushJsonbValue(&st, WJB_KEY, &mk[i]);
				pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
				for (x = 0; x < nx; x++)
				{
					if (key_cmp(&xk[x], &k) == 0)
						continue;
					pushJsonbValue(&st, WJB_KEY, &xk[x]);
					push_value(&st, &xv[x]);
				}
				pushJsonbValue(&st, WJB_KEY, &k);
				pushJsonbValue(&st, WJB_VALUE, &n);
				pushJsonbValue(&st, WJB_END_OBJECT, NULL);
				continue;
			}
			if (i < nm)
			{
				pushJsonbValue(&st, WJB_KEY, &mk[i]);
				push_value(&st, &mv[i]);
			}
		}
	}
	res = pushJsonbValue(&st, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(res);
}

/* {metric_coverage_ratio, rules_executed_ratio, validation_error_count} of an outcome */
static Jsonb *
validation_health_jsonb(const WvalOutcome *out)
{
	JsonbParseState *ps = NULL;

	wval_jb_begin_object(&ps);
	wval_jb_kv_float8(&ps, "metric_coverage_ratio", out->metric_coverage_ratio);
	wval_jb_kv_float8(&ps, "rules_executed_ratio", out->rules_executed_ratio);
	wval_jb_kv_int64(&ps, "validation_error_count", out->own.nerrors);
	return wval_jb_end_object(&ps);
}

/* Adds diagnostics.validation_health to a merged metrics document */
Jsonb *
wval_add_validation_health(Jsonb *metrics, const WvalOutcome *out)
{
	Datum		path;
	Datum		elems[2];

	elems[0] = CStringGetTextDatum("diagnostics");
	elems[1] = CStringGetTextDatum("validation_health");
	path = PointerGetDatum(construct_array(elems, 2, TEXTOID, -1, false, TYPALIGN_INT));
	return DatumGetJsonbP(DirectFunctionCall4(jsonb_set, JsonbPGetDatum(metrics), path,
											  JsonbPGetDatum(validation_health_jsonb(out)),
											  BoolGetDatum(true)));
}

/* The outcome of wval_check as a jsonb document */
Jsonb *
wval_outcome_jsonb(const WvalPolicy *policy, const WvalOutcome *out, Jsonb *metrics)
{
	JsonbParseState *ps = NULL;
	int			own = out->own.profile;

	wval_jb_begin_object(&ps);
	wval_jb_kv_string(&ps, "status", out->own.status);
	wval_jb_kv_string(&ps, "recommended_stage", out->recommended_stage);
	if (own >= 0)
	{
		wval_jb_kv_string(&ps, "ruleset_hash", policy->profiles[own].hash);
		wval_jb_kv_string(&ps, "profile", policy->profiles[own].profile);
	}
	else
	{
		wval_jb_kv_null(&ps, "ruleset_hash");
		wval_jb_kv_null(&ps, "profile");
	}
	wval_jb_kv_jsonb(&ps, "results", out->own.results);
	wval_jb_kv_jsonb(&ps, "recommendation", out->recommendation);
	wval_jb_kv_jsonb(&ps, "validation_health", validation_health_jsonb(out));
	if (metrics)
		wval_jb_kv_jsonb(&ps, "metrics", metrics);
	return wval_jb_end_object(&ps);
}

/* Checks a stage name: backtest, paper, shadow or live */
void
wval_check_stage(const char *stage)
{
	if (strcmp(stage, "backtest") != 0 && strcmp(stage, "paper") != 0 &&
		strcmp(stage, "shadow") != 0 && strcmp(stage, "live") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for \"stage\""),
				 errdetail("stage is \"%s\".", stage),
				 errhint("Accepted values: backtest, paper, shadow, live.")));
}

/*
 * Reads a timestamp of the context (e.g. data_as_of) when present; a value
 * that is not a timestamp is the caller's error (22023 naming the key).
 */
bool
wval_context_timestamp(Jsonb *context, const char *key, TimestampTz *out)
{
	JsonbValue *v = context ? wval_json_path(context, key) : NULL;
	char	   *text;
	MemoryContext cxt = CurrentMemoryContext;

	if (v == NULL || v->type == jbvNull)
		return false;
	if (v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"context.%s\" must be a timestamp string", key),
				 errhint("Pass an ISO-8601 timestamp such as \"2026-11-27T06:00:00Z\".")));
	text = pnstrdup(v->val.string.val, v->val.string.len);
	PG_TRY();
	{
		*out = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in, CStringGetDatum(text),
													   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/* re-raise at once with the field named; nothing else runs in between */
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"context.%s\" is not a valid timestamp", key),
				 errdetail("%s", edata->message),
				 errhint("Pass an ISO-8601 timestamp such as \"2026-11-27T06:00:00Z\".")));
	}
	PG_END_TRY();
	return true;
}

/*
 * Raises 22023 when the policy argument (argument 0) of wval_check or
 * wval._apply_rules is null: both are declared non-STRICT for their
 * optional arguments, so a null policy reaches the C code.
 */
static void
wval_require_policy_arg(FunctionCallInfo fcinfo)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"policy\" must not be null"),
				 errhint("Pass a policy document, e.g. (SELECT policy FROM wval.sample_policies WHERE name = 'sample').")));
}

/*
 * wval.max_clock_skew (seconds): how far context.data_as_of may lie after
 * the evaluation time before the input is refused as dishonest.
 */
static int	wval_max_clock_skew_s = 300;

/* Registers the settings of the evaluation (called from _PG_init) */
void
wval_evaluate_init(void)
{
	DefineCustomIntVariable("wval.max_clock_skew",
							"How far context.data_as_of may lie after the evaluation time.",
							"A data_as_of later than the start of the evaluating transaction plus this "
							"skew is refused (22023): data cannot be newer than the evaluation.",
							&wval_max_clock_skew_s,
							300, 0, 86400,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);
}

/*
 * Refuses a data_as_of later than the evaluation time plus the clock skew:
 * an age check (data_currency.max_lag) would pass data from the future.
 */
static void
check_data_as_of(const WvalEvalInput *in)
{
	if (!in->has_data_as_of)
		return;
	if (in->data_as_of > in->now + (TimestampTz) wval_max_clock_skew_s * USECS_PER_SEC)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"context.data_as_of\" is in the future"),
				 errdetail("data_as_of is %s; the evaluation time is %s and wval.max_clock_skew is %d s.",
						   timestamptz_to_str(in->data_as_of), timestamptz_to_str(in->now),
						   wval_max_clock_skew_s),
				 errhint("Pass the time the data was current, at or before the evaluation.")));
}

PG_FUNCTION_INFO_V1(wval_check);

/*
 * wval_check(policy jsonb, metrics jsonb, stage text, context jsonb) →
 * jsonb: the evaluation of wval_evaluate without storage or events.
 */
Datum
wval_check(PG_FUNCTION_ARGS)
{
	Jsonb	   *policy_doc;
	Jsonb	   *supplied = PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1);
	char	   *stage = PG_ARGISNULL(2) ? "backtest" : text_to_cstring(PG_GETARG_TEXT_PP(2));
	Jsonb	   *context = PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3);
	WvalPolicy *policy;
	WvalEvalInput in;
	WvalOutcome out;
	Jsonb	   *metrics;
	JsonbValue *baseline;

	wval_require_policy_arg(fcinfo);
	policy_doc = PG_GETARG_JSONB_P(0);
	wval_check_stage(stage);
	policy = wval_policy_build(policy_doc, false, CurrentMemoryContext);
	metrics = wval_merge_metrics(NULL, supplied);

	memset(&in, 0, sizeof(in));
	in.metrics = metrics;
	in.stage = stage;
	in.now = GetCurrentTransactionStartTimestamp();
	in.has_data_as_of = wval_context_timestamp(context, "data_as_of", &in.data_as_of);
	check_data_as_of(&in);
	baseline = context ? wval_json_path(context, "baseline_metrics") : NULL;
	if (baseline && wval_jbv_is_object(baseline))
		in.baseline = JsonbValueToJsonb(baseline);

	wval_evaluate_policy(policy, &in, &out);
	PG_RETURN_JSONB_P(wval_outcome_jsonb(policy, &out, NULL));
}

/* ---------------------------------------------------------------------
 * wval_evaluate
 * ---------------------------------------------------------------------
 */

/* Statements of wval_evaluate, kept for the life of the backend (spi.h) */
static WvalPlan plan_find_client_run = WVAL_PLAN_GENERIC(
	"SELECT * FROM wval.evaluation_runs WHERE world_id = $1 AND strategy_id = $2 "
	"AND client_run_id = $3 AND wval._can_read($1) ORDER BY created_at LIMIT 1",
	3, TEXTOID, TEXTOID, TEXTOID);
static WvalPlan plan_baseline = WVAL_PLAN_GENERIC(
	"SELECT run_id, metrics FROM wval.evaluation_runs WHERE world_id = $1 "
	"AND strategy_id = $2 AND stage = 'backtest' AND kind = 'single' "
	"AND status <> 'unvalidated' AND NOT wval._imported(context) "
	"ORDER BY created_at DESC LIMIT 1",
	2, TEXTOID, TEXTOID);
static WvalPlan plan_stats_update = WVAL_PLAN_GENERIC(
	"UPDATE wval.evaluation_stats AS s SET runs = s.runs + 1, seconds_sum = s.seconds_sum + $5, "
	"buckets[$6] = s.buckets[$6] + 1 "
	"WHERE s.world_id = $1 AND s.stage = $2 AND s.status = $3 AND s.shard = $4",
	6, TEXTOID, TEXTOID, TEXTOID, INT2OID, FLOAT8OID, INT4OID);
static WvalPlan plan_stats = WVAL_PLAN_GENERIC(
	"INSERT INTO wval.evaluation_stats AS s (world_id, stage, status, shard, runs, seconds_sum, buckets) "
	"VALUES ($1, $2, $3, $4, 1, $5, $7) ON CONFLICT (world_id, stage, status, shard) DO UPDATE "
	"SET runs = s.runs + 1, seconds_sum = s.seconds_sum + excluded.seconds_sum, "
	"buckets[$6] = s.buckets[$6] + 1",
	7, TEXTOID, TEXTOID, TEXTOID, INT2OID, FLOAT8OID, INT4OID, INT8ARRAYOID);

/* buckets of the latency histogram: one per bound (observability.c) plus +Inf */
#define NLATENCY_BUCKETS (WVAL_NLATENCY_BOUNDS + 1)

/* counter rows per world, stage and status: one per backend slot, modulo this */
#define EVALUATION_STATS_SHARDS 64

/*
 * Counts one evaluation and its latency in wval.evaluation_stats, in the
 * evaluating transaction (a rolled back evaluation is not counted).  The
 * row is the backend's own: shard = the backend's slot number (MyBackendId,
 * unique among the backends alive at a time, the lowest free one given to a
 * new connection) modulo 64, so concurrent evaluations of a world never
 * update the same counter row, up to 64 concurrent backends (pid % 8 made
 * two of four concurrent backends share a row more often than not).  A
 * plain UPDATE of that row; the upsert (safe should two backends share a
 * shard) only when the row does not exist yet: no tuple lock record.
 */
static void
record_evaluation_stats(const char *world, const char *stage, const char *status, double seconds)
{
	Datum		args[7];
	Datum		onehot[NLATENCY_BUCKETS];
	int			bucket = wval_latency_bucket(seconds);
	int			i;

	args[0] = CStringGetTextDatum(world);
	args[1] = CStringGetTextDatum(stage);
	args[2] = CStringGetTextDatum(status);
	args[3] = Int16GetDatum((int16) (MyBackendId % EVALUATION_STATS_SHARDS));
	args[4] = Float8GetDatum(seconds);
	args[5] = Int32GetDatum(bucket + 1);
	/* the backend's row exists but for its first evaluation of the world, stage and status */
	wval_spi_exec(&plan_stats_update, args, NULL, false, 0, SPI_OK_UPDATE);
	if (SPI_processed == 1)
		return;
	for (i = 0; i < NLATENCY_BUCKETS; i++)
		onehot[i] = Int64GetDatum(i == bucket ? 1 : 0);
	args[6] = PointerGetDatum(construct_array(onehot, NLATENCY_BUCKETS, INT8OID, sizeof(int64),
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	wval_spi_exec(&plan_stats, args, NULL, false, 0, SPI_OK_INSERT);
}

/* A string of the context, checked as an identifier when asked */
static char *
context_string(Jsonb *context, const char *key, bool ident)
{
	JsonbValue *v = context ? wval_json_path(context, key) : NULL;
	char	   *s;

	if (v == NULL || v->type == jbvNull)
		return NULL;
	if (v->type == jbvNumeric)
		return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	if (v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"context.%s\" must be a string", key),
				 errhint("See docs/evaluate.md for the context keys.")));
	s = pnstrdup(v->val.string.val, v->val.string.len);
	if (ident)
		wval_check_identifier(psprintf("context.%s", key), s);
	return s;
}

/* A number of the context (WV001 when it is not one) */
static bool
context_number(Jsonb *context, const char *key, double *out)
{
	JsonbValue *v = context ? wval_json_path(context, key) : NULL;

	if (v == NULL || v->type == jbvNull)
		return false;
	if (v->type != jbvNumeric)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
				 errmsg("\"context.%s\" must be a number", key),
				 errhint("See docs/evaluate.md for the context keys.")));
	*out = wval_jbv_number(v, psprintf("context.%s", key), ERRCODE_WVAL_INVALID_METRIC_INPUT);
	return true;
}

/* An integer of the context (WV001 when it is not a whole number) */
static bool
context_int(Jsonb *context, const char *key, int *out)
{
	double		d;

	if (!context_number(context, key, &d))
		return false;
	if (d != floor(d) || d < PG_INT32_MIN || d > PG_INT32_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
				 errmsg("\"context.%s\" must be a whole number", key),
				 errdetail("context.%s is %g.", key, d),
				 errhint("See docs/evaluate.md for the context keys.")));
	*out = (int) d;
	return true;
}

/* The benchmark series of the context, validated like returns */
static double *
context_benchmark(Jsonb *context, int *n)
{
	JsonbValue *v = context ? wval_json_path(context, "benchmark") : NULL;
	JsonbIterator *it;
	JsonbValue	e;
	JsonbIteratorToken tok;
	double	   *b;
	int			k = 0;

	*n = 0;
	if (v == NULL || v->type == jbvNull)
		return NULL;
	if (v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
				 errmsg("\"context.benchmark\" must be an array of numbers"),
				 errhint("Pass the benchmark's periodic returns, aligned with the strategy's returns.")));
	b = palloc(sizeof(double) * Max(JsonContainerSize(v->val.binary.data), 1));
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
	{
		if (tok != WJB_ELEM)
			continue;
		if (e.type != jbvNumeric)
			ereport(ERROR,
					(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
					 errmsg("\"context.benchmark\" element %d is not a number", k + 1),
					 errhint("Every benchmark element must be a finite number greater than -1.")));
		b[k] = wval_jbv_number(&e, psprintf("context.benchmark[%d]", k + 1),
							   ERRCODE_WVAL_INVALID_METRIC_INPUT);
		k++;
	}
	wval_check_returns(b, k, "context.benchmark");
	*n = k;
	return b;
}

/* Sets one key of a jsonb document (jsonb_set with create_missing) */
static Jsonb *
jsonb_set_path(Jsonb *doc, const char *k1, const char *k2, Jsonb *value)
{
	Datum		elems[2];

	elems[0] = CStringGetTextDatum(k1);
	elems[1] = CStringGetTextDatum(k2);
	return DatumGetJsonbP(DirectFunctionCall4(jsonb_set, JsonbPGetDatum(doc),
											  PointerGetDatum(construct_array(elems, 2, TEXTOID, -1, false, TYPALIGN_INT)),
											  JsonbPGetDatum(value), BoolGetDatum(true)));
}

/* A jsonb number (non-finite values as strings, as the jsonb builder writes them) */
static Jsonb *
jsonb_number(double d)
{
	JsonbParseState *ps = NULL;

	wval_jb_begin_array(&ps);
	wval_jb_float8(&ps, d);
	return DatumGetJsonbP(DirectFunctionCall2(jsonb_array_element, JsonbPGetDatum(wval_jb_end_array(&ps)),
											  Int32GetDatum(0)));
}

/* An empty jsonb object */
static Jsonb *
jsonb_empty_object(void)
{
	JsonbParseState *ps = NULL;

	wval_jb_begin_object(&ps);
	return wval_jb_end_object(&ps);
}

/* The context as stored with the run: without bulky arrays */
static Jsonb *
stored_context(Jsonb *context)
{
	if (context == NULL)
		return jsonb_empty_object();
	if (wval_json_path(context, "benchmark") == NULL)
		return context;
	return DatumGetJsonbP(DirectFunctionCall2(jsonb_delete, JsonbPGetDatum(context),
											  CStringGetTextDatum("benchmark")));
}

/* "sha256:<hex>" of a jsonb document's text; NULL for null and for {} */
static char *
jsonb_digest(Jsonb *doc)
{
	char	   *text;
	char		hex[WVAL_SHA256_HEX_LEN + 1];

	if (doc == NULL || (JB_ROOT_IS_OBJECT(doc) && JB_ROOT_COUNT(doc) == 0))
		return NULL;
	text = JsonbToCString(NULL, &doc->root, VARSIZE(doc));
	wval_sha256_hex(text, strlen(text), hex);
	return psprintf("sha256:%s", hex);
}

/* The digest of context.benchmark (not stored with the run); NULL without one */
static char *
benchmark_digest(Jsonb *context)
{
	JsonbValue *v = context ? wval_json_path(context, "benchmark") : NULL;

	if (v == NULL || v->type == jbvNull)
		return NULL;
	return jsonb_digest(JsonbValueToJsonb(v));
}

/*
 * The context stored with a run that has a client run_id: without bulky
 * arrays, plus request_digest {metrics, benchmark}, the digests of the request
 * parts the run does not keep verbatim (the supplied metrics are merged with
 * the computed ones, the benchmark is dropped), so that a retry can be
 * compared with the request that stored the run.
 */
static Jsonb *
context_with_digest(Jsonb *context, const char *metrics_digest, const char *bench_digest)
{
	JsonbParseState *ps = NULL;

	wval_jb_begin_object(&ps);
	wval_jb_key(&ps, "request_digest");
	wval_jb_begin_object(&ps);
	wval_jb_key(&ps, "metrics");
	wval_jb_string(&ps, metrics_digest);
	wval_jb_key(&ps, "benchmark");
	wval_jb_string(&ps, bench_digest);
	wval_jb_end_object(&ps);
	return DatumGetJsonbP(DirectFunctionCall2(jsonb_concat, JsonbPGetDatum(stored_context(context)),
											  JsonbPGetDatum(wval_jb_end_object(&ps))));
}

/* Are a stored digest (a JSON string or null) and a computed one the same? */
static bool
same_digest(Jsonb *stored_ctx, const char *path, const char *digest)
{
	JsonbValue *v = wval_json_path(stored_ctx, path);

	if (v == NULL || v->type != jbvString)
		return digest == NULL;
	return digest != NULL && strlen(digest) == (size_t) v->val.string.len &&
		memcmp(digest, v->val.string.val, v->val.string.len) == 0;
}

/* A jsonb document without one top-level key */
static Jsonb *
jsonb_without(Jsonb *doc, const char *key)
{
	return DatumGetJsonbP(DirectFunctionCall2(jsonb_delete, JsonbPGetDatum(doc), CStringGetTextDatum(key)));
}

/*
 * Compares a request with the run stored under its context.run_id and
 * raises WV007 naming what differs: the stage, the returns (returns_hash),
 * the supplied metrics and context.benchmark (request_digest; runs stored
 * without one, imported or from 0.1.0, are not compared on these) and the
 * rest of the context (request_digest and imported aside).  An identical
 * retry passes.
 */
static void
check_same_request(HeapTuple tup, TupleDesc desc, const char *client_run_id, const char *stage,
				   const char *rhash, const char *metrics_digest, const char *bench_digest, Jsonb *context)
{
	char	   *s_stage = SPI_getvalue(tup, desc, SPI_fnumber(desc, "stage"));
	char	   *s_rhash = SPI_getvalue(tup, desc, SPI_fnumber(desc, "returns_hash"));
	char	   *s_run = SPI_getvalue(tup, desc, SPI_fnumber(desc, "run_id"));
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, SPI_fnumber(desc, "context"), &isnull);
	Jsonb	   *s_ctx = isnull ? stored_context(NULL) : DatumGetJsonbP(d);
	StringInfoData diff;

	initStringInfo(&diff);
	if (strcmp(s_stage, stage) != 0)
		appendStringInfo(&diff, "%sstage (stored %s, given %s)", diff.len ? ", " : "", s_stage, stage);
	if ((s_rhash == NULL) != (rhash == NULL) || (rhash != NULL && strcmp(s_rhash, rhash) != 0))
		appendStringInfo(&diff, "%sreturns", diff.len ? ", " : "");
	if (wval_json_path(s_ctx, "request_digest") != NULL)
	{
		if (!same_digest(s_ctx, "request_digest.metrics", metrics_digest))
			appendStringInfo(&diff, "%smetrics", diff.len ? ", " : "");
		if (!same_digest(s_ctx, "request_digest.benchmark", bench_digest))
			appendStringInfo(&diff, "%scontext.benchmark", diff.len ? ", " : "");
	}
	if (!DatumGetBool(DirectFunctionCall2(jsonb_eq,
										  JsonbPGetDatum(jsonb_without(jsonb_without(s_ctx, "request_digest"), "imported")),
										  JsonbPGetDatum(stored_context(context)))))
		appendStringInfo(&diff, "%scontext", diff.len ? ", " : "");
	if (diff.len > 0)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_VERSION_COLLISION),
				 errmsg("context.run_id \"%s\" was already used for a different request", client_run_id),
				 errdetail("These differ from stored run %s: %s.", s_run, diff.data),
				 errhint("A retry must repeat the request exactly (it then returns the stored run); a new evaluation needs a new run_id.")));
}

/* The request of wval_evaluate, parsed and checked (eval_parse). */
typedef struct EvalRequest
{
	char	   *world;
	char	   *strategy;
	char	   *stage;
	Jsonb	   *supplied;		/* the caller's metrics, or NULL */
	Jsonb	   *context;		/* the caller's context, or NULL */
	WvalMetricsOptions opt;
	bool		have_returns;
	double	   *r;
	int			n;
	char	   *rhash;			/* returns_hash, NULL without returns */
	char	   *client_run_id;	/* context.run_id, or NULL */
	char	   *actor;
	char	   *metrics_digest; /* request digests, with a client run_id */
	char	   *bench_digest;
	bool		has_data_as_of;
	TimestampTz data_as_of;
	TimestampTz started;		/* for the latency histogram */
	TimestampTz now;			/* the "now" of time-dependent checks */
	const char *kind;			/* single; revalidation for wval._evaluate_linked */
	Datum		linked_run_id;	/* uuid Datum or (Datum) 0 */
} EvalRequest;

/* What wval_evaluate reads (eval_load): the world and its active policy. */
typedef struct EvalWorld
{
	char	   *risk_tier;
	int			version;		/* the active policy version */
	WvalPolicy *policy;
} EvalWorld;

/* What wval_evaluate computes (eval_compute). */
typedef struct EvalOutcome
{
	Jsonb	   *metrics;		/* merged, with validation_health */
	WvalOutcome out;
} EvalOutcome;

/* Raises 22023 for a key of the context that wval itself sets. */
static void
check_reserved_context(Jsonb *context)
{
	/* context.imported marks runs of wval_import_runs, which justify nothing */
	if (context && wval_json_path(context, "imported") != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"context.imported\" is reserved"),
				 errdetail("wval_import_runs() marks the runs it imports with context.imported."),
				 errhint("Leave the key out of the context of an evaluation.")));
	if (context && wval_json_path(context, "request_digest") != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"context.request_digest\" is reserved"),
				 errdetail("wval_evaluate() stores the digests of the request under context.request_digest."),
				 errhint("Leave the key out of the context of an evaluation.")));
}

/* Reads the metric options of the context and the returns (WV001 checks). */
static void
parse_metric_inputs(FunctionCallInfo fcinfo, EvalRequest *req)
{
	Jsonb	   *context = req->context;

	wval_metrics_options_init(&req->opt);
	context_int(context, "periods_per_year", &req->opt.periods_per_year);
	context_number(context, "risk_free", &req->opt.risk_free);
	context_int(context, "search_intensity", &req->opt.search_intensity);
	req->opt.has_trials_variance = context_number(context, "trials_sharpe_variance",
												  &req->opt.trials_sharpe_variance);
	req->opt.benchmark = context_benchmark(context, &req->opt.n_benchmark);
	req->have_returns = !PG_ARGISNULL(3);
	if (req->have_returns)
	{
		req->r = wval_returns_from_array(PG_GETARG_ARRAYTYPE_P(3), "returns", &req->n);
		wval_check_metrics_options(&req->opt, req->n);
		req->rhash = wval_returns_hash(req->r, req->n);
	}
}

/*
 * Parses and checks the arguments of wval_evaluate, in the order the errors
 * are documented: identifiers and stage, the context's shape, the metric
 * inputs, run_id and actor, reserved keys, data_as_of.
 */
static void
eval_parse(FunctionCallInfo fcinfo, EvalRequest *req, TimestampTz now)
{
	WvalEvalInput in;

	memset(req, 0, sizeof(EvalRequest));
	req->started = GetCurrentTimestamp();
	req->now = now;
	req->kind = "single";
	req->supplied = PG_ARGISNULL(4) ? NULL : PG_GETARG_JSONB_P(4);
	req->context = PG_ARGISNULL(5) ? NULL : PG_GETARG_JSONB_P(5);
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" must not be null", PG_ARGISNULL(0) ? "world_id" : "strategy_id"),
				 errhint("Pass the world and the strategy the run belongs to.")));
	req->world = text_to_cstring(PG_GETARG_TEXT_PP(0));
	req->strategy = text_to_cstring(PG_GETARG_TEXT_PP(1));
	req->stage = PG_ARGISNULL(2) ? "backtest" : text_to_cstring(PG_GETARG_TEXT_PP(2));
	wval_check_identifier("world_id", req->world);
	wval_check_identifier("strategy_id", req->strategy);
	wval_check_stage(req->stage);
	if (req->context != NULL && (!JB_ROOT_IS_OBJECT(req->context) || JB_ROOT_IS_SCALAR(req->context)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"context\" must be a JSON object"),
				 errhint("Pass provenance and options such as {\"model_card_version\": \"1.2\", \"run_id\": \"bt-42\"}.")));
	parse_metric_inputs(fcinfo, req);
	req->client_run_id = context_string(req->context, "run_id", true);
	req->actor = context_string(req->context, "actor", true);
	check_reserved_context(req->context);
	if (req->actor == NULL)
		req->actor = GetUserNameFromId(GetOuterUserId(), false);
	in.has_data_as_of = wval_context_timestamp(req->context, "data_as_of", &in.data_as_of);
	in.now = req->now;
	check_data_as_of(&in);
	req->has_data_as_of = in.has_data_as_of;
	req->data_as_of = in.data_as_of;
	if (req->client_run_id != NULL)
	{
		req->metrics_digest = jsonb_digest(req->supplied);
		req->bench_digest = benchmark_digest(req->context);
	}
}

/*
 * Idempotency: the run stored under the same world/strategy/run_id, if any
 * (then *stored is it, checked to be the same request).  The look-up runs
 * after the advisory lock with a new snapshot (read_only = false): at READ
 * COMMITTED it then sees a run that a concurrent caller committed while we
 * waited.  At REPEATABLE READ and SERIALIZABLE the transaction snapshot
 * cannot see it: a look-up with a snapshot taken now finds it, and the call
 * fails with 40001 (the retried transaction returns the run).  The world's
 * chain head does not tell: with chain lanes the other run may be on a lane
 * this transaction does not touch.
 */
static bool
eval_find_retry(const EvalRequest *req, Datum *stored)
{
	StringInfoData key;
	Datum		args[3];

	if (req->client_run_id == NULL)
		return false;
	initStringInfo(&key);
	appendStringInfo(&key, "wval:run:%s:%s:%s", req->world, req->strategy, req->client_run_id);
	DirectFunctionCall1(pg_advisory_xact_lock_int8,
						Int64GetDatum((int64) hash_bytes_extended((const unsigned char *) key.data, key.len, 0)));
	args[0] = CStringGetTextDatum(req->world);
	args[1] = CStringGetTextDatum(req->strategy);
	args[2] = CStringGetTextDatum(req->client_run_id);
	wval_spi_exec(&plan_find_client_run, args, NULL, false, 1, SPI_OK_SELECT);
	if (SPI_processed != 1)
	{
		if (IsolationUsesXactSnapshot())
		{
			wval_spi_exec_latest(&plan_find_client_run, args, NULL, 1);
			if (SPI_processed == 1)
				ereport(ERROR,
						(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
						 errmsg("could not serialize access due to concurrent update"),
						 errdetail("Run \"%s\" of strategy \"%s\" in world \"%s\" was stored by a transaction that committed after this transaction's snapshot.",
								   req->client_run_id, req->strategy, req->world),
						 errhint("Retry the transaction: the retry returns the stored run.")));
		}
		return false;
	}
	check_same_request(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, req->client_run_id, req->stage,
					   req->rhash, req->metrics_digest, req->bench_digest, req->context);
	*stored = PointerGetDatum(SPI_returntuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc));
	return true;
}

/*
 * Reads the world and its active policy version (WV010 when either is
 * missing; a world the caller may not read does not exist).  By primary
 * key, not by SQL: nothing to parse or plan, in a new backend either.
 */
static void
eval_load(const EvalRequest *req, EvalWorld *w)
{
	Datum		key = CStringGetTextDatum(req->world);
	WvalKeyScan scan;
	HeapTuple	tup = NULL;
	bool		isnull;
	bool		fail_closed = false;

	if (wval_access_allowed(GetOuterUserId(), req->world, false))
	{
		wval_key_scan_begin(&scan, "worlds", 1, &key);
		tup = wval_key_scan_next(&scan, false);
		if (tup != NULL)
		{
			w->risk_tier = TextDatumGetCString(wval_key_scan_attr(&scan, tup, "risk_tier", &isnull));
			fail_closed = strcmp(w->risk_tier, "high") == 0 &&
				DatumGetBool(wval_key_scan_attr(&scan, tup, "client_critical", &isnull));
		}
		wval_key_scan_end(&scan);
	}
	if (tup == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_UNKNOWN_OBJECT),
				 errmsg("world \"%s\" does not exist", req->world),
				 errhint("Create it first with wval_world_upsert(world_id, risk_tier, client_critical).")));
	/* the version active at the run's stage (a staged rollout) */
	if (!wval_policy_active_version(req->world, req->stage, &w->version))
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_UNKNOWN_OBJECT),
				 errmsg("world \"%s\" has no active policy version", req->world),
				 errdetail("Nothing was evaluated and nothing was recorded."),
				 errhint("Publish a policy with wval_policy_publish() and activate it with wval_policy_activate().")));
	w->policy = wval_policy_for_version(req->world, w->version, fail_closed);
}

/* Paper and shadow runs compare with the strategy's latest backtest run. */
static Jsonb *
load_baseline(const EvalRequest *req)
{
	Datum		args[2];
	bool		isnull;

	if (strcmp(req->stage, "paper") != 0 && strcmp(req->stage, "shadow") != 0)
		return NULL;
	args[0] = CStringGetTextDatum(req->world);
	args[1] = CStringGetTextDatum(req->strategy);
	wval_spi_exec(&plan_baseline, args, NULL, true, 1, SPI_OK_SELECT);
	if (SPI_processed != 1)
		return NULL;
	return DatumGetJsonbP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
}

/* The run's metrics: computed from returns win over supplied ones. */
static Jsonb *
compute_metrics(EvalRequest *req)
{
	Jsonb	   *computed = NULL;
	Jsonb	   *metrics;
	JsonbValue *extra;

	if (req->have_returns)
		computed = wval_compute_metrics(req->r, req->n, &req->opt);
	metrics = wval_merge_metrics(computed, req->supplied);
	if (!req->have_returns)
		return metrics;
	extra = wval_json_path(metrics, "diagnostics.extra_metrics");
	if (extra != NULL && extra->type == jbvBinary)
		metrics = jsonb_set_path(metrics, "diagnostics", "strategy_complexity",
								 jsonb_number(wval_strategy_complexity_value(req->opt.search_intensity,
																			 JsonbValueToJsonb(extra))));
	return metrics;
}

/* Computes the metrics and applies the world's policy to them. */
static void
eval_compute(EvalRequest *req, const EvalWorld *w, EvalOutcome *res)
{
	WvalEvalInput in;

	in.metrics = compute_metrics(req);
	in.baseline = load_baseline(req);
	in.has_data_as_of = req->has_data_as_of;
	in.data_as_of = req->data_as_of;
	in.stage = req->stage;
	in.now = req->now;
	wval_evaluate_policy(w->policy, &in, &res->out);
	res->metrics = wval_add_validation_health(in.metrics, &res->out);
}

/* Stores the run with its rule results and event (run.c) and counts it. */
static Datum
eval_store(const EvalRequest *req, const EvalWorld *w, const EvalOutcome *res)
{
	JsonbValue *snapshot = req->context ? wval_json_path(req->context, "data_snapshot") : NULL;
	int			own = res->out.own.profile;
	WvalRun		run;
	Datum		result;

	wval_run_init(&run);
	run.world_id = req->world;
	run.strategy_id = req->strategy;
	run.stage = req->stage;
	run.campaign_id = context_string(req->context, "campaign_id", true);
	run.risk_tier = w->risk_tier;
	run.model_card_version = context_string(req->context, "model_card_version", false);
	run.code_hash = context_string(req->context, "code_hash", false);
	if (snapshot != NULL && snapshot->type != jbvNull)
		run.data_snapshot = JsonbValueToJsonb(snapshot);
	run.context = req->client_run_id != NULL ?
		context_with_digest(req->context, req->metrics_digest, req->bench_digest) :
		stored_context(req->context);
	run.client_run_id = req->client_run_id;
	run.returns_hash = req->rhash;
	run.metrics = res->metrics;
	run.has_policy_version = true;
	run.policy_version = w->version;
	run.ruleset_hash = own >= 0 ? w->policy->profiles[own].hash : NULL;
	run.profile = own >= 0 ? w->policy->profiles[own].profile : NULL;
	run.status = res->out.own.status;
	run.recommended_stage = res->out.recommended_stage;
	run.recommendation = res->out.recommendation;
	run.results = res->out.own.results;
	run.created_by = req->actor;
	run.kind = req->kind;
	run.linked_run_id = req->linked_run_id;
	/* the returns (world setting store_returns, returns.c), then the run */
	if (req->rhash != NULL)
		wval_store_run_returns(req->world, req->rhash, req->r, req->n);
	result = wval_run_store(&run);
	record_evaluation_stats(req->world, req->stage, res->out.own.status,
							(double) (GetCurrentTimestamp() - req->started) / (double) USECS_PER_SEC);
	return result;
}

static Datum evaluate_request(EvalRequest *req);

PG_FUNCTION_INFO_V1(wval_evaluate);

/*
 * wval_evaluate(world_id, strategy_id, stage, returns, metrics, context)
 * → wval.evaluation_runs: computes the metrics from returns, applies the
 * world's active policy version, and stores the run with its provenance,
 * its rule results and its event in the caller's transaction.  Parse, then
 * (a retry returns the stored run) load, compute, store.
 */
Datum
wval_evaluate(PG_FUNCTION_ARGS)
{
	EvalRequest req;

	eval_parse(fcinfo, &req, GetCurrentTransactionStartTimestamp());
	return evaluate_request(&req);
}

PG_FUNCTION_INFO_V1(wval_evaluate_linked);

/*
 * wval._evaluate_linked(world_id, strategy_id, stage, returns, metrics,
 * context, kind, linked_run_id, evaluated_at) → wval.evaluation_runs: the
 * same evaluation, stored as a run of another kind (revalidation) that
 * references the run it re-checks; time-dependent checks (data currency)
 * use evaluated_at instead of the transaction time.  Internal: only
 * wval_revalidate() calls it.
 */
Datum
wval_evaluate_linked(PG_FUNCTION_ARGS)
{
	EvalRequest req;
	char	   *kind;

	if (PG_ARGISNULL(6) || PG_ARGISNULL(7))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" must not be null", PG_ARGISNULL(6) ? "kind" : "linked_run_id"),
				 errhint("Name the kind of run and the run it refers to.")));
	kind = text_to_cstring(PG_GETARG_TEXT_PP(6));
	if (strcmp(kind, "revalidation") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for \"kind\""),
				 errdetail("kind is \"%s\".", kind),
				 errhint("Only revalidation runs are stored this way.")));
	eval_parse(fcinfo, &req, PG_ARGISNULL(8) ? GetCurrentTransactionStartTimestamp() : PG_GETARG_TIMESTAMPTZ(8));
	req.kind = kind;
	req.linked_run_id = PG_GETARG_DATUM(7);
	return evaluate_request(&req);
}

/* Parsed request to stored run: a retry returns the stored run, else load, compute, store. */
static Datum
evaluate_request(EvalRequest *req)
{
	EvalWorld	w;
	EvalOutcome res;
	Datum		result;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (!eval_find_retry(req, &result))
	{
		eval_load(req, &w);
		eval_compute(req, &w, &res);
		result = eval_store(req, &w, &res);
	}
	SPI_finish();
	return result;
}

PG_FUNCTION_INFO_V1(wval_warm);

/*
 * wval_warm(world_id, periods) → void: the first wval_evaluate of a session
 * done ahead, for a connection pool's connect hook (docs/install.md, "The
 * first call of a session").  It evaluates a synthetic series of periods
 * returns in the world (strategy "wval_warm", a fresh context.run_id, so the
 * idempotency look-up runs too) through the whole path, store included, in
 * a subtransaction it then rolls back: the backend keeps what the call
 * loaded (library, catalogue caches, plans), the database keeps nothing.
 * An error of the evaluation (no such world, no active policy, no write
 * access) is raised after the rollback, as wval_evaluate would raise it.
 */
Datum
wval_warm(PG_FUNCTION_ARGS)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	int			periods = PG_ARGISNULL(1) ? 0 : PG_GETARG_INT32(1);
	Datum	   *r;
	char	   *context;
	EvalRequest req;
	int			i;

	LOCAL_FCINFO(args, 6);

	if (periods < 2 || periods > WVAL_MAX_RETURNS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"periods\" must be between 2 and %d", WVAL_MAX_RETURNS),
				 errhint("Pass the length of the series the session will evaluate.")));
	/* a deterministic series of daily-like returns */
	r = palloc(sizeof(Datum) * periods);
	for (i = 0; i < periods; i++)
		r[i] = Float8GetDatum(0.0005 + 0.011 * sin(i * 1.37) + 0.004 * cos(i * 0.05));
	context = psprintf("{\"run_id\": \"%s\"}",
					   DatumGetCString(DirectFunctionCall1(uuid_out,
														   DirectFunctionCall1(gen_random_uuid, (Datum) 0))));
	InitFunctionCallInfoData(*args, NULL, 6, InvalidOid, NULL, NULL);
	args->args[0].value = PG_GETARG_DATUM(0);
	args->args[1].value = CStringGetTextDatum("wval_warm");
	args->args[2].value = CStringGetTextDatum("backtest");
	args->args[3].value = PointerGetDatum(construct_array(r, periods, FLOAT8OID, sizeof(float8),
													FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args->args[4].value = DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"));
	args->args[5].value = DirectFunctionCall1(jsonb_in, CStringGetDatum(context));
	for (i = 0; i < 6; i++)
		args->args[i].isnull = false;
	args->args[0].isnull = PG_ARGISNULL(0);	/* eval_parse raises 22023 for it */

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		eval_parse(args, &req, GetCurrentTransactionStartTimestamp());
		(void) evaluate_request(&req);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		ReThrowError(edata);
	}
	PG_END_TRY();
	RollbackAndReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(wval_apply_rules);

/*
 * wval._apply_rules(policy jsonb, ruleset text, metrics jsonb, stage text,
 * fail_closed boolean, layers text[], context jsonb) → jsonb: the engine
 * for other kinds of runs (live, cohort, portfolio, stress).  ruleset is
 * "live_monitoring", "cohort", a profile name, or null for the profile of
 * the stage; layers (when not null) restricts the checks to those layers.
 * Returns {status, cleared, profile, ruleset_hash, results, stopped_by,
 * validation_error_count}.
 */
Datum
wval_apply_rules(PG_FUNCTION_ARGS)
{
	Jsonb	   *policy_doc;
	char	   *name = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	Jsonb	   *supplied = PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2);
	char	   *stage = PG_ARGISNULL(3) ? "backtest" : text_to_cstring(PG_GETARG_TEXT_PP(3));
	bool		fail_closed = PG_ARGISNULL(4) ? false : PG_GETARG_BOOL(4);
	Jsonb	   *context = PG_ARGISNULL(6) ? NULL : PG_GETARG_JSONB_P(6);
	const char **layers = NULL;
	int			nlayers = 0;
	WvalPolicy *policy;
	WvalRuleset *rs;
	WvalEvalInput in;
	WvalProfileOutcome out;
	JsonbValue *baseline;

	wval_require_policy_arg(fcinfo);
	policy_doc = PG_GETARG_JSONB_P(0);
	wval_check_stage(stage);
	if (!PG_ARGISNULL(5))
	{
		Datum	   *elems;
		bool	   *nulls;
		int			i;

		deconstruct_array(PG_GETARG_ARRAYTYPE_P(5), TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, &nulls, &nlayers);
		layers = palloc(sizeof(char *) * Max(nlayers, 1));
		for (i = 0; i < nlayers; i++)
			layers[i] = nulls[i] ? "" : TextDatumGetCString(elems[i]);
	}
	policy = wval_policy_build(policy_doc, fail_closed, CurrentMemoryContext);
	if (name != NULL)
		rs = wval_policy_ruleset_by_name(policy, name);
	else
	{
		int			p = wval_policy_profile_for_stage(policy, stage);

		rs = p >= 0 ? &policy->profiles[p] : NULL;
	}

	memset(&in, 0, sizeof(in));
	in.metrics = wval_merge_metrics(NULL, supplied);
	in.stage = stage;
	in.now = GetCurrentTransactionStartTimestamp();
	in.has_data_as_of = wval_context_timestamp(context, "data_as_of", &in.data_as_of);
	baseline = context ? wval_json_path(context, "baseline_metrics") : NULL;
	if (baseline && wval_jbv_is_object(baseline))
		in.baseline = JsonbValueToJsonb(baseline);
	/* a selection of layers without checks is "nothing to check", not a warning */
	wval_evaluate_ruleset(rs, &in, layers, nlayers, &out);
	PG_RETURN_JSONB_P(wval_ruleset_outcome_jsonb(rs, &out));
}
