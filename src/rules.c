/*-------------------------------------------------------------------------
 *
 * rules.c
 *	  Evaluation of a materialised policy against a run's metrics: one
 *	  RuleResult per check, the summary status of a profile, and the
 *	  recommended stage across profiles (docs/policy.md).
 *
 * Every check is handled the same way: obtain its value (a metric, an
 * absolute value, a difference, an age, a ratio to the baseline run); a
 * missing value follows on_missing_metric, a value that cannot be used
 * (not a number) follows on_error; otherwise the inclusive bounds decide.
 * mode "warn" turns a would-be fail into warn with details.would_fail.
 * One check never aborts the evaluation.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "jsonb.h"
#include "policy.h"
#include "wval.h"

/* The 12 v1 core metrics of validation_health (docs/metrics.md) */
static const char *const core_metrics[] = {
	"returns.sharpe", "returns.max_drawdown", "returns.gain_to_pain_ratio",
	"returns.time_under_water_ratio", "sample.effective_history_years",
	"sample.n_trades_total", "sample.n_trades_per_year", "risk.adv_utilization_p95",
	"risk.participation_rate_p95", "robustness.deflated_sharpe_ratio",
	"robustness.sharpe_first_half", "robustness.sharpe_second_half"
};

/* Outcome of obtaining a check's value */
typedef enum ValueState
{
	VS_OK,
	VS_MISSING,
	VS_ERROR
} ValueState;

/*
 * The value at a path of segments inside a jsonb document, or NULL when
 * some segment is absent.  Intermediate values must be objects.
 */
JsonbValue *
wval_json_get(Jsonb *doc, char **path, int npath)
{
	JsonbContainer *c;
	JsonbValue *v = NULL;
	int			i;

	if (doc == NULL || !JB_ROOT_IS_OBJECT(doc))
		return NULL;
	c = &doc->root;
	for (i = 0; i < npath; i++)
	{
		JsonbValue	key;

		if (!JsonContainerIsObject(c))
			return NULL;
		key.type = jbvString;
		key.val.string.val = path[i];
		key.val.string.len = strlen(path[i]);
		v = findJsonbValueFromContainer(c, JB_FOBJECT, &key);
		if (v == NULL)
			return NULL;
		if (i + 1 < npath)
		{
			if (v->type != jbvBinary)
				return NULL;
			c = v->val.binary.data;
		}
	}
	return v;
}

/* The value at a dotted path, or NULL */
JsonbValue *
wval_json_path(Jsonb *doc, const char *dotted)
{
	char	   *copy = pstrdup(dotted);
	char	   *segs[16];
	int			n = 0;
	char	   *p = copy;

	segs[n++] = p;
	for (; *p && n < 16; p++)
		if (*p == '.')
		{
			*p = '\0';
			segs[n++] = p + 1;
		}
	return wval_json_get(doc, segs, n);
}

/*
 * Converts a metric value to a double: numbers, and the strings
 * "Infinity" / "-Infinity" that wval stores for infinite metrics.
 */
static ValueState
metric_number(JsonbValue *v, double *out, char **error)
{
	if (v == NULL || v->type == jbvNull)
		return VS_MISSING;
	if (v->type == jbvNumeric)
	{
		/* a stored number beyond a double (1e400, written by a bypass) is an error of this check */
		if (wval_jbv_double(v, out))
			return VS_OK;
		*error = psprintf("the value %s is out of range for a double precision number",
						  wval_jbv_text(v, 40));
		return VS_ERROR;
	}
	if (v->type == jbvString)
	{
		if (v->val.string.len == 8 && strncmp(v->val.string.val, "Infinity", 8) == 0)
		{
			*out = get_float8_infinity();
			return VS_OK;
		}
		if (v->val.string.len == 9 && strncmp(v->val.string.val, "-Infinity", 9) == 0)
		{
			*out = -get_float8_infinity();
			return VS_OK;
		}
		if (v->val.string.len == 3 && strncmp(v->val.string.val, "n/a", 3) == 0)
			return VS_MISSING;
		*error = psprintf("the value is the string \"%.*s\", not a number",
						  Min(v->val.string.len, 60), v->val.string.val);
		return VS_ERROR;
	}
	*error = psprintf("the value is %s, not a number",
					  v->type == jbvBool ? "a boolean" :
					  (v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data)) ? "an object" :
					  "an array");
	return VS_ERROR;
}

/* Most metrics one run's brief evaluations remember */
#define METRIC_CACHE_SIZE 64

/*
 * The metrics of one run already converted by brief evaluations (policy
 * diff: both policies and all their profiles read the same few metrics, and
 * a jsonb number costs a text round trip to become a double).  Keyed by the
 * dotted metric path; the caller resets it for every run.
 */
struct WvalMetricCache
{
	int			n;
	struct
	{
		const char *metric;
		ValueState	vs;
		double		value;
		char	   *error;
	}			e[METRIC_CACHE_SIZE];
};

/* Creates an empty metric cache in the current memory context */
WvalMetricCache *
wval_metric_cache_create(void)
{
	return palloc0(sizeof(WvalMetricCache));
}

/* Forgets the metrics of the previous run */
void
wval_metric_cache_reset(WvalMetricCache *cache)
{
	cache->n = 0;
}

/* The number at a metric path of the run, through the cache when there is one */
static ValueState
run_metric(const WvalEvalInput *in, WvalMetricCache *cache, char **path, int npath,
		   const char *dotted, double *out, char **error)
{
	ValueState	vs;
	int			i;

	if (cache)
		for (i = 0; i < cache->n; i++)
			if (strcmp(cache->e[i].metric, dotted) == 0)
			{
				*out = cache->e[i].value;
				if (cache->e[i].error)
					*error = cache->e[i].error;
				return cache->e[i].vs;
			}
	*out = 0;
	vs = metric_number(wval_json_get(in->metrics, path, npath), out, error);
	if (cache && cache->n < METRIC_CACHE_SIZE)
	{
		cache->e[cache->n].metric = dotted;
		cache->e[cache->n].vs = vs;
		cache->e[cache->n].value = *out;
		cache->e[cache->n].error = vs == VS_ERROR ? *error : NULL;
		cache->n++;
	}
	return vs;
}

/* Obtains the value a rule compares (see WvalValueKind) */
static ValueState
rule_value(const WvalRule *r, const WvalEvalInput *in, WvalMetricCache *cache, double *out,
		   double *baseline, char **error)
{
	double		a,
				b;
	ValueState	st;

	switch (r->vkind)
	{
		case WVAL_VAL_METRIC:
			return run_metric(in, cache, r->path, r->npath, r->metric, out, error);
		case WVAL_VAL_ABS_METRIC:
			st = run_metric(in, cache, r->path, r->npath, r->metric, &a, error);
			*out = fabs(a);
			return st;
		case WVAL_VAL_HALF_GAP:
			st = run_metric(in, cache, r->path, r->npath, r->metric, &a, error);
			if (st != VS_OK)
				return st;
			st = run_metric(in, cache, r->path2, r->npath2, r->metric2, &b, error);
			if (st != VS_OK)
				return st;
			*out = fabs(a - b);
			if (isnan(*out))
			{
				*error = pstrdup("the difference of two infinite values is undefined");
				return VS_ERROR;
			}
			return VS_OK;
		case WVAL_VAL_HISTORY:
			st = run_metric(in, cache, r->path, r->npath, r->metric, &a, error);
			*out = a * 365.25 * 86400.0;
			return st;
		case WVAL_VAL_LAG:
			if (!in->has_data_as_of)
				return VS_MISSING;
			*out = (double) (in->now - in->data_as_of) / (double) USECS_PER_SEC;
			return VS_OK;
		case WVAL_VAL_BASELINE_RATIO:
			if (in->baseline == NULL)
				return VS_MISSING;
			st = run_metric(in, cache, r->path, r->npath, r->metric, &a, error);
			if (st != VS_OK)
				return st;
			st = metric_number(wval_json_get(in->baseline, r->path, r->npath), &b, error);
			if (st != VS_OK)
				return st;
			*baseline = b;
			if (b == 0 || !isfinite(b))
				return VS_MISSING;
			*out = a / b;
			if (isnan(*out))
			{
				*error = pstrdup("the ratio is undefined");
				return VS_ERROR;
			}
			return VS_OK;
	}
	return VS_MISSING;
}

/* True when a rule applies at the run's stage */
static bool
rule_applies(const WvalRule *r, const WvalEvalInput *in)
{
	if (r->vkind == WVAL_VAL_BASELINE_RATIO)
		return wval_stage_vs_backtest(in->stage);
	return true;
}

/* Appends a number in a human form for reasons (durations as days/hours) */
static void
append_human(StringInfo buf, double d, const char *unit)
{
	if (unit[0] == 's' && isfinite(d))
	{
		if (fabs(d) >= 86400)
			appendStringInfo(buf, "%.4gd", d / 86400.0);
		else if (fabs(d) >= 3600)
			appendStringInfo(buf, "%.4gh", d / 3600.0);
		else
			appendStringInfo(buf, "%.4gs", d);
		return;
	}
	if (isinf(d))
		appendStringInfoString(buf, d > 0 ? "Infinity" : "-Infinity");
	else
		appendStringInfo(buf, "%.6g", d);
}

/* The text a rule's value is described by in reasons */
static char *
rule_subject(const WvalRule *r)
{
	switch (r->vkind)
	{
		case WVAL_VAL_ABS_METRIC:
			return psprintf("|%s|", r->metric);
		case WVAL_VAL_HALF_GAP:
			return psprintf("|%s - %s|", r->metric, r->metric2);
		case WVAL_VAL_LAG:
			return pstrdup("the age of context.data_as_of");
		case WVAL_VAL_HISTORY:
			return pstrdup("the history (sample.effective_history_years)");
		case WVAL_VAL_BASELINE_RATIO:
			return psprintf("%s relative to the latest backtest run", r->metric);
		default:
			return pstrdup(r->metric);
	}
}

/* Pushes one RuleResult ("key": {...}) into the results object being built */
static void
push_result(JsonbParseState **ps, const WvalRule *r, const char *status, WvalSeverity sev,
			const char *code, const char *reason, ValueState vs, double value,
			bool has_baseline, double baseline, bool would_fail, const char *error)
{
	wval_jb_key(ps, r->key);
	wval_jb_begin_object(ps);
	wval_jb_kv_string(ps, "status", status);
	wval_jb_kv_string(ps, "severity", wval_severity_name(sev));
	wval_jb_kv_string(ps, "owner", wval_owner_name(r->owner));
	wval_jb_kv_string(ps, "reason_code", code);
	wval_jb_kv_string(ps, "reason", reason);
	wval_jb_key(ps, "tags");
	wval_jb_begin_array(ps);
	wval_jb_string(ps, r->layer);
	wval_jb_end_array(ps);
	wval_jb_key(ps, "details");
	wval_jb_begin_object(ps);
	wval_jb_kv_string(ps, "metric", r->metric);
	if (vs == VS_OK)
		wval_jb_kv_float8(ps, "value", value);
	else
		wval_jb_kv_null(ps, "value");
	wval_push_threshold(ps, r);
	wval_jb_kv_string(ps, "mode", wval_mode_name(r->mode));
	if (r->unit[0])
		wval_jb_kv_string(ps, "unit", r->unit);
	if (r->metric2)
		wval_jb_kv_string(ps, "metric2", r->metric2);
	if (has_baseline)
		wval_jb_kv_float8(ps, "baseline_value", baseline);
	if (would_fail)
		wval_jb_kv_bool(ps, "would_fail", true);
	if (error)
		wval_jb_kv_string(ps, "error", error);
	wval_jb_end_object(ps);
	wval_jb_end_object(ps);
}

/* True when a rule belongs to one of the layers (all when nlayers is 0) */
static bool
rule_in_layers(const WvalRule *r, const char *const *layers, int nlayers)
{
	int			i;

	if (nlayers == 0)
		return true;
	for (i = 0; i < nlayers; i++)
		if (strcmp(r->layer, layers[i]) == 0)
			return true;
	return false;
}

/* What one check decided, before any text is written */
typedef struct RuleDecision
{
	ValueState	vs;
	double		value;
	double		baseline;		/* NaN when the check has no baseline */
	char	   *error;
	const char *status;			/* pass | warn | fail */
	WvalSeverity severity;
	WvalRuleCode code;
	bool		would_fail;
} RuleDecision;

/*
 * Decides one check: obtains its value and applies on_missing_metric,
 * on_error, the bounds and mode "warn".  Writes no text, so that the brief
 * evaluation of a policy diff pays only for the comparison.
 */
static void
decide_rule(const WvalRuleset *rs, const WvalRule *r, const WvalEvalInput *in,
			WvalMetricCache *cache, RuleDecision *d)
{
	d->value = 0;
	d->baseline = get_float8_nan();
	d->error = NULL;
	d->severity = r->severity;
	d->would_fail = false;
	d->vs = rule_value(r, in, cache, &d->value, &d->baseline, &d->error);

	if (d->vs == VS_MISSING)
	{
		WvalOnPolicy on = rs->on_missing;

		d->status = on == WVAL_ON_FAIL ? "fail" : on == WVAL_ON_WARN ? "warn" : "pass";
		d->code = on == WVAL_ON_IGNORE ? WVAL_RC_MISSING_IGNORED : WVAL_RC_MISSING;
		if (on == WVAL_ON_IGNORE)
			d->severity = WVAL_SEV_INFO;
	}
	else if (d->vs == VS_ERROR)
	{
		d->status = rs->on_error == WVAL_ON_FAIL ? "fail" : "warn";
		d->code = WVAL_RC_ERROR;
	}
	else if (r->has_min && (r->strict_min ? !(d->value > r->min) : !(d->value >= r->min)))
	{
		d->status = "fail";
		d->code = WVAL_RC_BELOW;
	}
	else if (r->has_max && !(d->value <= r->max))
	{
		d->status = "fail";
		d->code = WVAL_RC_ABOVE;
	}
	else
	{
		d->status = "pass";
		d->code = WVAL_RC_OK;
	}

	if (d->status[0] == 'f' && r->mode == WVAL_MODE_WARN)
	{
		d->status = "warn";
		d->would_fail = true;
	}
}

/* The reason_code a check reports for a decision (docs/policy.md, "Outcome of a check") */
const char *
wval_rule_code_name(const WvalRule *r, WvalRuleCode code)
{
	switch (code)
	{
		case WVAL_RC_OK:
			return "ok";
		case WVAL_RC_BELOW:
			return r->violation_code ? r->violation_code : psprintf("%s_below_min", r->code_base);
		case WVAL_RC_ABOVE:
			return r->violation_code ? r->violation_code : psprintf("%s_above_max", r->code_base);
		case WVAL_RC_MISSING:
			return "missing_metric";
		case WVAL_RC_MISSING_IGNORED:
			return "missing_metric_ignored";
		case WVAL_RC_ERROR:
			return "rule_error";
		case WVAL_RC_NO_CHECKS:
			return "no_checks";
	}
	return "rule_error";
}

/* Writes the human reason of a decision */
static void
describe_rule(StringInfo reason, const WvalRuleset *rs, const WvalRule *r,
			  const WvalEvalInput *in, const RuleDecision *d)
{
	char	   *subject = rule_subject(r);

	if (d->vs == VS_MISSING)
	{
		if (r->vkind == WVAL_VAL_BASELINE_RATIO && in->baseline == NULL)
			appendStringInfo(reason, "%s: the strategy has no backtest run to compare with", subject);
		else
			appendStringInfo(reason, "%s is missing", subject);
		if (rs->on_missing == WVAL_ON_IGNORE)
			appendStringInfoString(reason, " (ignored: on_missing_metric = ignore)");
	}
	else if (d->vs == VS_ERROR)
		appendStringInfo(reason, "%s could not be evaluated: %s", subject, d->error);
	else
	{
		appendStringInfo(reason, "%s ", subject);
		append_human(reason, d->value, r->unit);
		if (d->code == WVAL_RC_BELOW)
		{
			appendStringInfo(reason, " is %s the minimum ", r->strict_min ? "not above" : "below");
			append_human(reason, r->min, r->unit);
		}
		else if (d->code == WVAL_RC_ABOVE)
		{
			appendStringInfoString(reason, " is above the maximum ");
			append_human(reason, r->max, r->unit);
		}
		else if (r->has_min && r->has_max)
		{
			appendStringInfoString(reason, " is within [");
			append_human(reason, r->min, r->unit);
			appendStringInfoString(reason, ", ");
			append_human(reason, r->max, r->unit);
			appendStringInfoChar(reason, ']');
		}
		else if (r->has_min)
		{
			appendStringInfo(reason, " %s the minimum ", r->strict_min ? "is above" : "meets");
			append_human(reason, r->min, r->unit);
		}
		else
		{
			appendStringInfoString(reason, " is within the maximum ");
			append_human(reason, r->max, r->unit);
		}
	}
	if (d->would_fail)
		appendStringInfoString(reason, " (mode warn: would fail once enforced)");
}

/*
 * Evaluates every check of a ruleset (optionally only those of some
 * layers).  Fills out->results (JSON object text), the summary status and
 * whether the ruleset is cleared.
 */
void
wval_evaluate_ruleset(const WvalRuleset *rs, const WvalEvalInput *in,
					  const char *const *layers, int nlayers, WvalProfileOutcome *out)
{
	bool		any_blocking_fail = false;
	bool		any_warn = false;
	int			i;

	JsonbParseState *results = NULL;
	JsonbParseState *stoppers = NULL;

	out->profile = -1;
	out->cleared = true;
	out->nresults = 0;
	out->nerrors = 0;
	wval_jb_begin_object(&results);
	wval_jb_begin_array(&stoppers);

	for (i = 0; rs != NULL && i < rs->nrules; i++)
	{
		const WvalRule *r = &rs->rules[i];
		RuleDecision d;
		StringInfoData reason;

		if (!rule_applies(r, in) || !rule_in_layers(r, layers, nlayers))
			continue;
		decide_rule(rs, r, in, NULL, &d);
		initStringInfo(&reason);
		describe_rule(&reason, rs, r, in, &d);
		if (d.vs == VS_ERROR)
			out->nerrors++;

		push_result(&results, r, d.status, d.severity, wval_rule_code_name(r, d.code),
					reason.data, d.vs, d.value, !isnan(d.baseline), d.baseline,
					d.would_fail, d.error);
		out->nresults++;

		if (strcmp(d.status, "fail") == 0)
		{
			if (d.severity == WVAL_SEV_BLOCKING)
				any_blocking_fail = true;
			else
				any_warn = true;
			if (d.severity != WVAL_SEV_INFO)
			{
				wval_jb_string(&stoppers, r->key);
				out->cleared = false;
			}
		}
		else if (strcmp(d.status, "warn") == 0)
			any_warn = true;
	}

	if (out->nresults == 0)
	{
		/* nothing was validated, so nothing may be called a pass */
		wval_jb_key(&results, "policy.no_checks");
		wval_jb_begin_object(&results);
		wval_jb_kv_string(&results, "status", "warn");
		wval_jb_kv_string(&results, "severity", "info");
		wval_jb_kv_string(&results, "owner", "ops");
		wval_jb_kv_string(&results, "reason_code", "no_checks");
		wval_jb_kv_string(&results, "reason",
						  rs ? psprintf("profile \"%s\" configures no check for this stage: nothing was validated", rs->profile) :
						  "the policy has no profile for this stage: nothing was validated");
		wval_jb_key(&results, "tags");
		wval_jb_begin_array(&results);
		wval_jb_string(&results, "policy");
		wval_jb_end_array(&results);
		wval_jb_key(&results, "details");
		wval_jb_begin_object(&results);
		wval_jb_end_object(&results);
		wval_jb_end_object(&results);
		out->status = "warn";
	}
	else
		out->status = any_blocking_fail ? "fail" : any_warn ? "warn" : "pass";
	out->results = wval_jb_end_object(&results);
	out->stoppers = wval_jb_end_array(&stoppers);
}

/*
 * A ruleset's outcome in the shape of wval._apply_rules and wval._live_rules:
 * {status, cleared, profile, ruleset_hash, results, stopped_by,
 * validation_error_count}.
 */
Jsonb *
wval_ruleset_outcome_jsonb(const WvalRuleset *rs, const WvalProfileOutcome *out)
{
	JsonbParseState *ps = NULL;

	wval_jb_begin_object(&ps);
	wval_jb_kv_string(&ps, "status", out->status);
	wval_jb_kv_bool(&ps, "cleared", out->cleared);
	if (rs)
	{
		wval_jb_kv_string(&ps, "profile", rs->profile);
		wval_jb_kv_string(&ps, "ruleset_hash", rs->hash);
	}
	else
	{
		wval_jb_kv_null(&ps, "profile");
		wval_jb_kv_null(&ps, "ruleset_hash");
	}
	wval_jb_kv_jsonb(&ps, "results", out->results);
	wval_jb_kv_jsonb(&ps, "stopped_by", out->stoppers);
	wval_jb_kv_int64(&ps, "validation_error_count", out->nerrors);
	return wval_jb_end_object(&ps);
}

/*
 * The brief evaluation of a ruleset: per check only status and reason code
 * (into rules[i] for rs->rules[i] when rules is not NULL; status 0 for a
 * check that does not apply), the summary status ('p', 'w', 'f') and
 * whether the ruleset is cleared.  The same decisions as
 * wval_evaluate_ruleset, without any text.  Returns the number of results.
 */
static int
evaluate_ruleset_brief(const WvalRuleset *rs, const WvalEvalInput *in, WvalMetricCache *cache,
					   WvalRuleBrief *rules, char *status, bool *cleared)
{
	bool		any_blocking_fail = false;
	bool		any_warn = false;
	int			nresults = 0;
	int			i;

	*cleared = true;
	for (i = 0; rs != NULL && i < rs->nrules; i++)
	{
		const WvalRule *r = &rs->rules[i];
		RuleDecision d;

		if (!rule_applies(r, in))
		{
			if (rules)
				rules[i].status = 0;
			continue;
		}
		decide_rule(rs, r, in, cache, &d);
		nresults++;
		if (rules)
		{
			rules[i].status = d.status[0];
			rules[i].code = (uint8) d.code;
		}
		if (d.status[0] == 'f')
		{
			if (d.severity == WVAL_SEV_BLOCKING)
				any_blocking_fail = true;
			else
				any_warn = true;
			if (d.severity != WVAL_SEV_INFO)
				*cleared = false;
		}
		else if (d.status[0] == 'w')
			any_warn = true;
	}
	*status = nresults == 0 ? 'w' : any_blocking_fail ? 'f' : any_warn ? 'w' : 'p';
	return nresults;
}

/*
 * The brief evaluation of a run (policy diff): the status and per-check
 * outcome of its own profile and the recommended stage, decided exactly as
 * wval_evaluate_policy decides them, without building results or reasons.
 * out->rules must have room for the own profile's rules; out->cache, when
 * not NULL, remembers the run's metrics across calls (reset it per run).
 */
void
wval_evaluate_policy_brief(const WvalPolicy *policy, const WvalEvalInput *in,
						   WvalBriefOutcome *out)
{
	int			own = wval_policy_profile_for_stage(policy, in->stage);
	bool		own_cleared = true;
	int			s;
	int			reached = -1;

	out->profile = own;
	out->nresults = evaluate_ruleset_brief(own >= 0 ? &policy->profiles[own] : NULL, in,
										   out->cache, out->rules, &out->status, &own_cleared);
	for (s = 0; s < WVAL_NSTAGE_KEYS; s++)
	{
		int			p = policy->stage_profile[s];
		bool		cleared;
		char		st;

		if (p < 0)
			cleared = (s == 0); /* see wval_evaluate_policy */
		else if (p == own)
			cleared = own_cleared;
		else
			(void) evaluate_ruleset_brief(&policy->profiles[p], in, out->cache, NULL, &st, &cleared);
		if (!cleared)
			break;
		reached = s;
	}
	out->stage = reached < 0 ? 0 : reached;
}

/* Evaluates every check of one profile of a policy (-1: none) */
void
wval_evaluate_profile(const WvalPolicy *policy, int profile, const WvalEvalInput *in,
					  WvalProfileOutcome *out)
{
	wval_evaluate_ruleset(profile >= 0 ? &policy->profiles[profile] : NULL, in, NULL, 0, out);
	out->profile = profile;
}

/* Share of the 12 core metrics present (validation_health) */
double
wval_coverage_ratio(Jsonb *metrics)
{
	int			i;
	int			present = 0;

	for (i = 0; i < (int) lengthof(core_metrics); i++)
	{
		double		d;
		char	   *err = NULL;

		if (metric_number(wval_json_path(metrics, core_metrics[i]), &d, &err) == VS_OK)
			present++;
	}
	return (double) present / (double) lengthof(core_metrics);
}

PG_FUNCTION_INFO_V1(wval_metric_coverage);

/* wval._metric_coverage(metrics jsonb) → float8 */
Datum
wval_metric_coverage(PG_FUNCTION_ARGS)
{
	PG_RETURN_FLOAT8(wval_coverage_ratio(PG_GETARG_JSONB_P(0)));
}

/*
 * Evaluates a run: the profile of its own stage (stored status and
 * results) and the profiles of default_profile_by_stage (the recommended
 * stage and why the climb stopped).
 */
void
wval_evaluate_policy(const WvalPolicy *policy, const WvalEvalInput *in, WvalOutcome *out)
{
	int			own = wval_policy_profile_for_stage(policy, in->stage);
	WvalProfileOutcome stage_out[WVAL_NSTAGE_KEYS];
	bool		cleared[WVAL_NSTAGE_KEYS];
	int			s;
	int			reached = -1;
	int			applicable = 0;
	JsonbParseState *rec = NULL;

	wval_evaluate_profile(policy, own, in, &out->own);

	for (s = 0; s < WVAL_NSTAGE_KEYS; s++)
	{
		int			p = policy->stage_profile[s];

		if (p < 0)
		{
			/* an absent backtest_only key counts as cleared, others cannot be reached */
			cleared[s] = (s == 0);
			continue;
		}
		if (p == own)
			stage_out[s] = out->own;
		else
			wval_evaluate_profile(policy, p, in, &stage_out[s]);
		cleared[s] = stage_out[s].cleared;
	}

	/* climb while every profile up to here is cleared */
	for (s = 0; s < WVAL_NSTAGE_KEYS; s++)
	{
		if (!cleared[s])
			break;
		reached = s;
	}
	out->recommended_stage = wval_stage_keys[reached < 0 ? 0 : reached];

	wval_jb_begin_object(&rec);
	wval_jb_key(&rec, "stages");
	wval_jb_begin_array(&rec);
	for (s = 0; s < WVAL_NSTAGE_KEYS; s++)
	{
		int			p = policy->stage_profile[s];

		wval_jb_begin_object(&rec);
		wval_jb_kv_string(&rec, "stage", wval_stage_keys[s]);
		if (p < 0)
		{
			wval_jb_kv_null(&rec, "profile");
			wval_jb_kv_bool(&rec, "cleared", cleared[s]);
			wval_jb_kv_string(&rec, "note", s == 0 ? "no profile mapped: counts as cleared" :
							  "no profile mapped: this stage cannot be recommended");
			wval_jb_end_object(&rec);
			continue;
		}
		wval_jb_kv_string(&rec, "profile", policy->profiles[p].profile);
		wval_jb_kv_string(&rec, "status", stage_out[s].status);
		wval_jb_kv_bool(&rec, "cleared", cleared[s]);
		wval_jb_kv_jsonb(&rec, "stopped_by", stage_out[s].stoppers);
		wval_jb_end_object(&rec);
	}
	wval_jb_end_array(&rec);
	wval_jb_kv_string(&rec, "recommended_stage", out->recommended_stage);
	if (reached + 1 < WVAL_NSTAGE_KEYS)
		wval_jb_kv_string(&rec, "stopped_at", wval_stage_keys[reached + 1]);
	else
		wval_jb_kv_null(&rec, "stopped_at");
	out->recommendation = wval_jb_end_object(&rec);

	/* validation_health */
	out->metric_coverage_ratio = wval_coverage_ratio(in->metrics);
	if (own >= 0)
	{
		int			i;

		for (i = 0; i < policy->profiles[own].nrules; i++)
			if (rule_applies(&policy->profiles[own].rules[i], in))
				applicable++;
	}
	out->rules_executed_ratio = applicable == 0 ? 1.0 :
		(double) out->own.nresults / (double) applicable;
}
