/*-------------------------------------------------------------------------
 *
 * policy.c
 *	  The policy DSL (docs/policy.md): strict validation of a policy
 *	  document, its materialisation per profile into a ruleset, the ruleset
 *	  hash, and a per-backend cache of materialised policy versions.
 *
 * Validation and materialisation are one pass over the document, so that
 * whatever is accepted is exactly what is evaluated.  Every problem is an
 * ERROR with SQLSTATE WV002 naming the JSON path; unknown keys list the
 * accepted ones (a typo must never silently disable a check).
 *
 * The materialised ruleset of a profile is a jsonb document
 *
 *	  {"profile": p, "on_error": .., "on_missing_metric": ..,
 *	   "checks": {key: {"metric", "op", "threshold", "severity", "owner",
 *						"mode", ...}}}
 *
 * whose text (jsonb normalises key order; thresholds are written in their
 * shortest float form) is what ruleset_hash covers: anything that can
 * change an outcome changes the hash, formatting and unrelated parts of
 * the policy do not.
 *
 * Cache.  Policy versions are immutable, so a materialised version keyed
 * by (world, version, fail_closed) never goes stale while the table that
 * holds it lives; when the active version of a world changes, its older
 * entries are dropped.  The table itself can go away: DROP EXTENSION wval
 * and CREATE EXTENSION wval in the same backend give a new
 * wval.policy_versions in which (world, 1) may be another policy.  A
 * relcache invalidation callback (the pg_cron pattern) marks the cache
 * stale when that relation (or, on a cache reset, any relation) is
 * invalidated; the next look-up empties it.  The callback only marks:
 * invalidations are processed inside SPI calls while a caller still uses
 * the policy it was handed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "policy.h"
#include "wval.h"

const char *const wval_stage_keys[WVAL_NSTAGE_KEYS] = {
	"backtest_only", "paper_only", "paper_ok_live_candidate"
};

/* How a check's threshold is written */
typedef enum CheckType
{
	CT_NUMBER,					/* any finite number */
	CT_COUNT,					/* a non-negative integer */
	CT_DURATION,				/* "1d", "180d", "12h", "30m", "45s" */
	CT_BOOL,					/* true enables the check */
	CT_FACTORS					/* {factor: number} */
} CheckType;

/* One entry of the check catalogue (docs/policy.md) */
typedef struct CheckDef
{
	const char *layer;
	const char *check;
	const char *metric;			/* dotted path */
	const char *metric2;		/* second path of a half gap */
	WvalValueKind vkind;
	char		dir;			/* 'g': value >= x, 'l': value <= x, 's': value > 0 */
	CheckType	type;
	const char *code_base;		/* reason code stem */
	const char *meaning;
	const char *code;			/* violation code when not <stem>_below_min/_above_max */
	bool		warn_mode;		/* the check defaults to mode warn */
} CheckDef;

static const CheckDef check_catalogue[] = {
	{"data_currency", "max_lag", "context.data_as_of", NULL, WVAL_VAL_LAG, 'l', CT_DURATION, "data_lag", "time since context.data_as_of", NULL, false},
	{"data_currency", "min_history", "sample.effective_history_years", NULL, WVAL_VAL_HISTORY, 'g', CT_DURATION, "history", "length of the return history", NULL, false},
	{"data_currency", "max_missing_ratio", "diagnostics.missing_ratio", NULL, WVAL_VAL_METRIC, 'l', CT_NUMBER, "missing_ratio", "share of missing data points (supplied)", NULL, false},
	{"sample", "min_effective_years", "sample.effective_history_years", NULL, WVAL_VAL_METRIC, 'g', CT_NUMBER, "effective_years", "years of history", NULL, false},
	{"sample", "min_trades_total", "sample.n_trades_total", NULL, WVAL_VAL_METRIC, 'g', CT_COUNT, "trades_total", "number of trades (supplied)", NULL, false},
	{"sample", "min_trades_per_year", "sample.n_trades_per_year", NULL, WVAL_VAL_METRIC, 'g', CT_NUMBER, "trades_per_year", "trades per year", NULL, false},
	{"sample", "require_high_vol_regime", "sample.regime_coverage.high_vol", NULL, WVAL_VAL_METRIC, 's', CT_BOOL, "high_vol_regime", "share of periods in the high-volatility regime", NULL, false},
	{"performance", "sharpe_min", "returns.sharpe", NULL, WVAL_VAL_METRIC, 'g', CT_NUMBER, "sharpe", "annualised Sharpe ratio", NULL, false},
	{"performance", "max_dd_max", "returns.max_drawdown", NULL, WVAL_VAL_METRIC, 'l', CT_NUMBER, "max_drawdown", "maximum drawdown", NULL, false},
	{"performance", "gain_to_pain_min", "returns.gain_to_pain_ratio", NULL, WVAL_VAL_METRIC, 'g', CT_NUMBER, "gain_to_pain", "gain-to-pain ratio", NULL, false},
	{"performance", "sortino_min", "returns.sortino_ratio", NULL, WVAL_VAL_METRIC, 'g', CT_NUMBER, "sortino", "annualised Sortino ratio", NULL, false},
	{"performance", "time_under_water_max", "returns.time_under_water_ratio", NULL, WVAL_VAL_METRIC, 'l', CT_NUMBER, "time_under_water", "share of periods under water", NULL, false},
	{"performance", "volatility_max", "returns.volatility", NULL, WVAL_VAL_METRIC, 'l', CT_NUMBER, "volatility", "annualised volatility", NULL, false},
	{"robustness", "dsr_min", "robustness.deflated_sharpe_ratio", NULL, WVAL_VAL_METRIC, 'g', CT_NUMBER, "dsr", "deflated Sharpe ratio", NULL, false},
	{"robustness", "psr_min", "robustness.probabilistic_sharpe_ratio", NULL, WVAL_VAL_METRIC, 'g', CT_NUMBER, "psr", "probabilistic Sharpe ratio", NULL, false},
	{"robustness", "half_sharpe_gap_max", "robustness.sharpe_first_half", "robustness.sharpe_second_half", WVAL_VAL_HALF_GAP, 'l', CT_NUMBER, "half_sharpe_gap", "gap between the Sharpe ratios of the two halves", NULL, false},
	{"robustness", "cv_sharpe_std_max", "robustness.cv_sharpe_std", NULL, WVAL_VAL_METRIC, 'l', CT_NUMBER, "cv_sharpe_std", "dispersion of cross-validated Sharpe ratios", NULL, false},
	{"robustness", "sharpe_max", "returns.sharpe", NULL, WVAL_VAL_METRIC, 'l', CT_NUMBER, "sharpe", "Sharpe ratio too good to be true", NULL, false},
	{"robustness", "complexity_max", "diagnostics.strategy_complexity", NULL, WVAL_VAL_METRIC, 'l', CT_NUMBER, "complexity", "strategy complexity", NULL, false},
	{"risk", "adv_utilization_p95_max", "risk.adv_utilization_p95", NULL, WVAL_VAL_METRIC, 'l', CT_NUMBER, "adv_utilization", "95th percentile of ADV utilisation (supplied)", NULL, false},
	{"risk", "participation_rate_p95_max", "risk.participation_rate_p95", NULL, WVAL_VAL_METRIC, 'l', CT_NUMBER, "participation_rate", "95th percentile of participation rate (supplied)", NULL, false},
	{"risk", "var_p01_max", "returns.var_p01", NULL, WVAL_VAL_METRIC, 'l', CT_NUMBER, "var_p01", "historical 1% value at risk", NULL, false},
	{"risk", "es_p01_max", "returns.es_p01", NULL, WVAL_VAL_METRIC, 'l', CT_NUMBER, "es_p01", "historical 1% expected shortfall", NULL, false},
	{"risk", "incremental_var_99_max", "risk.incremental_var_99", NULL, WVAL_VAL_METRIC, 'l', CT_NUMBER, "incremental_var_99", "incremental portfolio VaR 99%", NULL, false},
	{"risk", "incremental_es_99_max", "risk.incremental_es_99", NULL, WVAL_VAL_METRIC, 'l', CT_NUMBER, "incremental_es_99", "incremental portfolio ES 99%", NULL, false},
	{"risk", "capacity_estimate_base_min", "risk.capacity_estimate_base", NULL, WVAL_VAL_METRIC, 'g', CT_NUMBER, "capacity", "estimated capacity (supplied)", NULL, false},
	{"risk", "max_leverage", "risk.leverage_max", NULL, WVAL_VAL_METRIC, 'l', CT_NUMBER, "leverage", "maximum leverage (supplied)", NULL, false},
	{"risk", "factor_exposure_max", "risk.factor_exposures", NULL, WVAL_VAL_ABS_METRIC, 'l', CT_FACTORS, "factor_exposure", "absolute exposure to a factor (supplied)", NULL, false},
	{"portfolio", "max_incremental_var_99", "risk.incremental_var_99", NULL, WVAL_VAL_METRIC, 'l', CT_NUMBER, "incremental_var_99", "incremental portfolio VaR 99%", NULL, false},
	{"portfolio", "max_incremental_es_99", "risk.incremental_es_99", NULL, WVAL_VAL_METRIC, 'l', CT_NUMBER, "incremental_es_99", "incremental portfolio ES 99%", NULL, false},
	{"portfolio", "min_portfolio_sharpe_uplift", "portfolio.sharpe_uplift", NULL, WVAL_VAL_METRIC, 'g', CT_NUMBER, "portfolio_sharpe_uplift", "portfolio Sharpe uplift from adding the strategy", NULL, false},
	{"benchmark", "min_vs_benchmark_sharpe", "diagnostics.extra_metrics.vs_benchmark_sharpe", NULL, WVAL_VAL_METRIC, 'g', CT_NUMBER, "vs_benchmark_sharpe", "Sharpe ratio minus the benchmark's", NULL, false},
	{"paper_shadow_consistency", "min_sharpe_ratio", "returns.sharpe", NULL, WVAL_VAL_BASELINE_RATIO, 'g', CT_NUMBER, "sharpe_ratio", "Sharpe ratio relative to the latest backtest run", NULL, false},
	{"paper_shadow_consistency", "max_drawdown_ratio", "returns.max_drawdown", NULL, WVAL_VAL_BASELINE_RATIO, 'l', CT_NUMBER, "drawdown_ratio", "maximum drawdown relative to the latest backtest run", NULL, false},
	{"paper_shadow_consistency", "max_var_p01_ratio", "returns.var_p01", NULL, WVAL_VAL_BASELINE_RATIO, 'l', CT_NUMBER, "var_p01_ratio", "1% VaR relative to the latest backtest run", NULL, false},
	{"paper_shadow_consistency", "max_es_p01_ratio", "returns.es_p01", NULL, WVAL_VAL_BASELINE_RATIO, 'l', CT_NUMBER, "es_p01_ratio", "1% ES relative to the latest backtest run", NULL, false},
};

/* Checks of a stress scenario: stress.<scenario>.<check> */
static const CheckDef stress_checks[] = {
	{"stress", "dd_max", "max_drawdown", NULL, WVAL_VAL_ABS_METRIC, 'l', CT_NUMBER, "stress_max_drawdown", "scenario drawdown", NULL, false},
	{"stress", "es_99", "es_99", NULL, WVAL_VAL_ABS_METRIC, 'l', CT_NUMBER, "stress_es_99", "scenario ES 99%", NULL, false},
	{"stress", "var_99", "var_99", NULL, WVAL_VAL_ABS_METRIC, 'l', CT_NUMBER, "stress_var_99", "scenario VaR 99%", NULL, false},
};

/* Checks of the top-level live_monitoring block (docs/live.md); values filled by live runs */
static const CheckDef live_checks[] = {
	{"live_monitoring", "sharpe_min", "live.sharpe", NULL, WVAL_VAL_METRIC, 'g', CT_NUMBER, "live_sharpe", "realized annualised Sharpe over the shortest window with data", "live_sharpe_below_min", false},
	{"live_monitoring", "dd_max", "live.max_drawdown", NULL, WVAL_VAL_METRIC, 'l', CT_NUMBER, "live_drawdown", "realized maximum drawdown over the shortest window with data", "live_drawdown_above_max", false},
	{"live_monitoring", "es_max", "live.es_p025", NULL, WVAL_VAL_METRIC, 'l', CT_NUMBER, "live_es", "realized 97.5% expected shortfall over the shortest window with data", "live_es_above_max", false},
	{"live_monitoring", "decay_threshold", "live.decay", NULL, WVAL_VAL_METRIC, 'g', CT_NUMBER, "decay", "realized Sharpe over the longest window / Sharpe of the latest backtest run", "decay_below_threshold", false},
};

/* Checks of the top-level cohort block (docs/risk-hub.md); values filled by campaign evaluations */
static const CheckDef cohort_checks[] = {
	{"cohort", "sharpe_median_min", "cohort.sharpe_median", NULL, WVAL_VAL_METRIC, 'g', CT_NUMBER, "cohort_median_sharpe", "median Sharpe of the campaign", "cohort_median_sharpe_below_min", false},
	{"cohort", "dsr_median_min", "cohort.dsr_median", NULL, WVAL_VAL_METRIC, 'g', CT_NUMBER, "cohort_median_dsr", "median deflated Sharpe of the campaign", "cohort_median_dsr_below_min", false},
	{"cohort", "top_k", "cohort.dsr_rank", NULL, WVAL_VAL_METRIC, 'l', CT_COUNT, "cohort_top_k", "the candidate's rank by deflated Sharpe in the campaign (1 = best)", "cohort_top_k_exceeded", false},
	{"cohort", "sharpe_alarm", "cohort.max_sharpe", NULL, WVAL_VAL_METRIC, 'l', CT_NUMBER, "cohort_sharpe_alarm", "highest Sharpe in the campaign (a multiple-testing smell above the alarm)", "cohort_sharpe_alarm", true},
};

/* Layers of a profile (docs/policy.md), with their default severity and owner */
typedef struct LayerDef
{
	const char *name;
	WvalSeverity severity;
	WvalOwner	owner;
} LayerDef;

static const LayerDef profile_layers[] = {
	{"data_currency", WVAL_SEV_BLOCKING, WVAL_OWNER_OPS},
	{"sample", WVAL_SEV_SOFT, WVAL_OWNER_QUANT},
	{"performance", WVAL_SEV_BLOCKING, WVAL_OWNER_QUANT},
	{"robustness", WVAL_SEV_SOFT, WVAL_OWNER_QUANT},
	{"risk", WVAL_SEV_BLOCKING, WVAL_OWNER_RISK},
	{"portfolio", WVAL_SEV_SOFT, WVAL_OWNER_RISK},
	{"benchmark", WVAL_SEV_SOFT, WVAL_OWNER_QUANT},
	{"stress", WVAL_SEV_INFO, WVAL_OWNER_OPS},
	{"paper_shadow_consistency", WVAL_SEV_SOFT, WVAL_OWNER_OPS},
};

#define lengthof_array(a) ((int) (sizeof(a) / sizeof((a)[0])))

static const char *const top_level_keys[] = {
	"validation_profiles", "default_profile_by_stage", "validation", "cohort",
	"live_monitoring", "selection", "portfolio", "stress", "thresholds", "top_k",
	"correlation", "hysteresis", "governance", "campaign"
};
static const char *const severity_names[] = {"blocking", "soft", "info"};
static const char *const owner_names[] = {"quant", "risk", "ops"};
static const char *const mode_names[] = {"enforce", "warn"};
static const char *const on_names[] = {"fail", "warn", "ignore"};

/* Layer-level settings that checks inherit */
typedef struct LayerSettings
{
	WvalSeverity severity;
	WvalOwner	owner;
	WvalMode	mode;
	bool		mode_set;		/* mode given explicitly (layer or check) */
} LayerSettings;

/* A key and its value inside an object */
typedef struct Pair
{
	char	   *key;
	JsonbValue	val;
} Pair;

/* Growable list of rules while a profile is built */
typedef struct RuleList
{
	WvalRule   *rules;
	int			n;
	int			max;
} RuleList;

/* Name of a severity */
const char *
wval_severity_name(WvalSeverity s)
{
	return severity_names[s];
}

/* Name of an owner */
const char *
wval_owner_name(WvalOwner o)
{
	return owner_names[o];
}

/* Name of a mode */
const char *
wval_mode_name(WvalMode m)
{
	return mode_names[m];
}

/* Name of an on_error / on_missing_metric policy */
const char *
wval_on_name(WvalOnPolicy p)
{
	return on_names[p];
}

/* A comma-separated list of names */
static char *
name_list(const char *const *names, int n)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < n; i++)
		appendStringInfo(&buf, "%s%s", i > 0 ? ", " : "", names[i]);
	return buf.data;
}

/* Joins a JSON path and a key */
static char *
path_join(const char *path, const char *key)
{
	return path[0] ? psprintf("%s.%s", path, key) : pstrdup(key);
}

/* Raises WV002 for an unknown key, listing the accepted ones */
static void
error_unknown_key(const char *path, const char *key, const char *accepted)
{
	ereport(ERROR,
			(errcode(ERRCODE_WVAL_INVALID_POLICY),
			 errmsg("unknown key \"%s\" in policy", path_join(path, key)),
			 errdetail("Accepted keys at %s: %s.", path[0] ? path : "the top level", accepted),
			 errhint("Fix the spelling or remove the key: unknown keys are rejected so that a typo cannot disable a check.")));
}

/* Raises WV002 for a value of the wrong type */
static void
error_type(const char *path, const char *expected, const JsonbValue *v)
{
	ereport(ERROR,
			(errcode(ERRCODE_WVAL_INVALID_POLICY),
			 errmsg("policy key \"%s\" must be %s", path, expected),
			 errdetail("Found %s: %s.", wval_jbv_type_name(v), wval_jbv_text(v, 200)),
			 errhint("See docs/policy.md for the form of each key.")));
}

/* The key/value pairs of an object value (nested values stay binary) */
static int
object_pairs(const JsonbValue *obj, const char *path, Pair **pairs)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			n = 0;
	int			max;
	Pair	   *result;

	if (!wval_jbv_is_object(obj))
		error_type(path, "an object", obj);
	max = JsonContainerSize(obj->val.binary.data);
	result = palloc(sizeof(Pair) * Max(max, 1));
	it = JsonbIteratorInit(obj->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			result[n].key = pnstrdup(v.val.string.val, v.val.string.len);
			tok = JsonbIteratorNext(&it, &result[n].val, true);
			Assert(tok == WJB_VALUE);
			n++;
		}
	}
	*pairs = result;
	return n;
}

/* The value of a number (WV002 unless it is a finite JSON number) */
static double
get_number(const char *path, const JsonbValue *v)
{
	double		d;

	if (v->type != jbvNumeric)
		error_type(path, "a number", v);
	d = wval_jbv_number(v, path, ERRCODE_WVAL_INVALID_POLICY);
	return d;
}

/* The value of a count: a non-negative integer */
static double
get_count(const char *path, const JsonbValue *v)
{
	double		d = get_number(path, v);

	if (d < 0)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_INVALID_POLICY),
				 errmsg("policy key \"%s\" must not be negative", path),
				 errdetail("Found %s.", wval_jbv_text(v, 200)),
				 errhint("Counts are whole numbers >= 0.")));
	if (d != floor(d))
		error_type(path, "a whole number", v);
	return d;
}

/*
 * The value of a duration in seconds: "45s", "30m", "12h", "1d", "2w"
 * (decimals allowed, optional space, long unit names too).
 */
static double
get_duration(const char *path, const JsonbValue *v)
{
	char	   *s;
	char	   *end;
	double		n;
	double		unit = -1;

	if (v->type != jbvString)
		error_type(path, "a duration such as \"1d\", \"12h\" or \"180d\"", v);
	s = pnstrdup(v->val.string.val, v->val.string.len);
	n = strtod(s, &end);
	if (end == s || !isfinite(n))
		error_type(path, "a duration such as \"1d\", \"12h\" or \"180d\"", v);
	while (*end == ' ')
		end++;
	if (strcmp(end, "ms") == 0)
		unit = 0.001;
	else if (strcmp(end, "s") == 0 || strcmp(end, "sec") == 0 || strcmp(end, "second") == 0 || strcmp(end, "seconds") == 0)
		unit = 1;
	else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0 || strcmp(end, "minute") == 0 || strcmp(end, "minutes") == 0)
		unit = 60;
	else if (strcmp(end, "h") == 0 || strcmp(end, "hour") == 0 || strcmp(end, "hours") == 0)
		unit = 3600;
	else if (strcmp(end, "d") == 0 || strcmp(end, "day") == 0 || strcmp(end, "days") == 0)
		unit = 86400;
	else if (strcmp(end, "w") == 0 || strcmp(end, "week") == 0 || strcmp(end, "weeks") == 0)
		unit = 7 * 86400;
	if (unit < 0)
		error_type(path, "a duration such as \"1d\", \"12h\" or \"180d\"", v);
	if (n <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_INVALID_POLICY),
				 errmsg("policy key \"%s\" must be a positive duration", path),
				 errdetail("Found %s.", wval_jbv_text(v, 200)),
				 errhint("Use a positive duration such as \"1d\".")));
	return n * unit;
}

/* The index of a string value among names (WV002 when absent) */
static int
get_enum(const char *path, const JsonbValue *v, const char *const *names, int n)
{
	int			i;

	if (v->type == jbvString)
	{
		for (i = 0; i < n; i++)
			if (strlen(names[i]) == (size_t) v->val.string.len &&
				strncmp(names[i], v->val.string.val, v->val.string.len) == 0)
				return i;
	}
	ereport(ERROR,
			(errcode(ERRCODE_WVAL_INVALID_POLICY),
			 errmsg("invalid value for policy key \"%s\"", path),
			 errdetail("Found %s: %s.", wval_jbv_type_name(v), wval_jbv_text(v, 200)),
			 errhint("Accepted values: %s.", name_list(names, n))));
	return -1;					/* not reached */
}

/* True when key is one of severity / owner / mode */
static bool
is_setting_key(const char *key)
{
	return strcmp(key, "severity") == 0 || strcmp(key, "owner") == 0 ||
		strcmp(key, "mode") == 0;
}

/* Applies one severity / owner / mode setting */
static void
apply_setting(LayerSettings *s, const char *path, const char *key, const JsonbValue *v)
{
	char	   *p = path_join(path, key);

	if (strcmp(key, "severity") == 0)
		s->severity = (WvalSeverity) get_enum(p, v, severity_names, lengthof_array(severity_names));
	else if (strcmp(key, "owner") == 0)
		s->owner = (WvalOwner) get_enum(p, v, owner_names, lengthof_array(owner_names));
	else
	{
		s->mode = (WvalMode) get_enum(p, v, mode_names, lengthof_array(mode_names));
		s->mode_set = true;
	}
}

/* Splits a dotted path into segments */
static char **
split_path(const char *dotted, int *n)
{
	char	   *copy = pstrdup(dotted);
	char	  **segs = palloc(sizeof(char *) * (strlen(dotted) + 1));
	char	   *p = copy;
	int			k = 0;

	segs[k++] = p;
	for (; *p; p++)
	{
		if (*p == '.')
		{
			*p = '\0';
			segs[k++] = p + 1;
		}
	}
	*n = k;
	return segs;
}

/* Appends a rule to the list */
static WvalRule *
add_rule(RuleList *list)
{
	if (list->n == list->max)
	{
		list->max = list->max ? list->max * 2 : 16;
		list->rules = list->rules ? repalloc(list->rules, sizeof(WvalRule) * list->max) :
			palloc(sizeof(WvalRule) * list->max);
	}
	memset(&list->rules[list->n], 0, sizeof(WvalRule));
	return &list->rules[list->n++];
}

/* Reads a threshold in the form the check type expects */
static double
get_threshold(const char *path, const CheckDef *def, const JsonbValue *v)
{
	switch (def->type)
	{
		case CT_COUNT:
			return get_count(path, v);
		case CT_DURATION:
			return get_duration(path, v);
		default:
			return get_number(path, v);
	}
}

/*
 * Materialises one check: a number (or duration) is the threshold in the
 * check's direction; an object {"min"|"max": x, "severity", "owner",
 * "mode"} may give both bounds (a range) and its own settings.
 */
static void
build_check(RuleList *list, const char *path, const char *key, const CheckDef *def,
			const char *metric, const char *metric2, const JsonbValue *v,
			const LayerSettings *layer)
{
	WvalRule   *r;
	LayerSettings s = *layer;
	bool		has_min = false,
				has_max = false;
	double		min = 0,
				max = 0;

	if (def->warn_mode && !layer->mode_set)
		s.mode = WVAL_MODE_WARN;
	if (def->type == CT_BOOL)
	{
		if (v->type != jbvBool)
			error_type(path, "true or false", v);
		if (!v->val.boolean)
			return;				/* false: the check is off */
		has_min = true;
		min = 0;
	}
	else if (wval_jbv_is_object(v))
	{
		Pair	   *pairs;
		int			n = object_pairs(v, path, &pairs);
		int			i;
		static const char *const accepted_g = "min, max, severity, owner, mode";

		for (i = 0; i < n; i++)
		{
			char	   *p = path_join(path, pairs[i].key);

			if (strcmp(pairs[i].key, "min") == 0)
			{
				has_min = true;
				min = get_threshold(p, def, &pairs[i].val);
			}
			else if (strcmp(pairs[i].key, "max") == 0)
			{
				has_max = true;
				max = get_threshold(p, def, &pairs[i].val);
			}
			else if (is_setting_key(pairs[i].key))
				apply_setting(&s, path, pairs[i].key, &pairs[i].val);
			else
				error_unknown_key(path, pairs[i].key, accepted_g);
		}
		if ((def->dir == 'g' && !has_min) || (def->dir == 'l' && !has_max))
			ereport(ERROR,
					(errcode(ERRCODE_WVAL_INVALID_POLICY),
					 errmsg("policy key \"%s\" needs \"%s\"", path, def->dir == 'g' ? "min" : "max"),
					 errdetail("Found %s.", wval_jbv_text(v, 200)),
					 errhint("Write the threshold as {\"%s\": x}, optionally with severity, owner and mode.",
							 def->dir == 'g' ? "min" : "max")));
		if (has_min && has_max && min > max)
			ereport(ERROR,
					(errcode(ERRCODE_WVAL_INVALID_POLICY),
					 errmsg("policy key \"%s\" has a minimum above its maximum", path),
					 errdetail("Found %s.", wval_jbv_text(v, 200)),
					 errhint("Make min <= max.")));
	}
	else
	{
		double		x = get_threshold(path, def, v);

		if (def->dir == 'g')
		{
			has_min = true;
			min = x;
		}
		else
		{
			has_max = true;
			max = x;
		}
	}

	r = add_rule(list);
	r->key = pstrdup(key);
	r->layer = pstrdup(def->layer);
	r->metric = pstrdup(metric);
	r->path = split_path(metric, &r->npath);
	if (metric2)
	{
		r->metric2 = pstrdup(metric2);
		r->path2 = split_path(metric2, &r->npath2);
	}
	r->vkind = def->vkind;
	r->has_min = has_min;
	r->has_max = has_max;
	r->strict_min = def->dir == 's';
	r->min = min;
	r->max = max;
	r->code_base = def->code_base;
	r->violation_code = def->code;
	r->unit = def->type == CT_DURATION ? "s" : "";
	r->severity = s.severity;
	r->owner = s.owner;
	r->mode = s.mode;
}

/* Materialises a factor_exposure_max block: one rule per factor */
static void
build_factor_checks(RuleList *list, const char *path, const CheckDef *def,
					const JsonbValue *v, const LayerSettings *layer)
{
	Pair	   *pairs;
	int			n = object_pairs(v, path, &pairs);
	int			i;
	LayerSettings s = *layer;

	/* settings for all factors first, so that their order does not matter */
	for (i = 0; i < n; i++)
		if (is_setting_key(pairs[i].key))
			apply_setting(&s, path, pairs[i].key, &pairs[i].val);
	for (i = 0; i < n; i++)
	{
		char	   *key;
		char	   *metric;

		if (is_setting_key(pairs[i].key))
			continue;
		if (pairs[i].key[0] == '\0' || strchr(pairs[i].key, '.') != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_WVAL_INVALID_POLICY),
					 errmsg("invalid factor name \"%s\" in policy key \"%s\"", pairs[i].key, path),
					 errhint("Factor names are non-empty and contain no dot.")));
		key = psprintf("%s.%s.%s", def->layer, def->check, pairs[i].key);
		metric = psprintf("%s.%s", def->metric, pairs[i].key);
		build_check(list, path_join(path, pairs[i].key), key, def, metric, NULL,
					&pairs[i].val, &s);
	}
}

/* Materialises a stress block: {"scenarios": {name: {dd_max, es_99, var_99}}} */
static void
build_stress(RuleList *list, const char *path, const JsonbValue *v, const LayerSettings *layer)
{
	Pair	   *pairs;
	int			n = object_pairs(v, path, &pairs);
	int			i;
	LayerSettings s = *layer;
	static const char *const accepted = "scenarios, severity, owner, mode";

	for (i = 0; i < n; i++)
	{
		if (is_setting_key(pairs[i].key))
			apply_setting(&s, path, pairs[i].key, &pairs[i].val);
		else if (strcmp(pairs[i].key, "scenarios") != 0)
			error_unknown_key(path, pairs[i].key, accepted);
	}
	for (i = 0; i < n; i++)
	{
		Pair	   *scen;
		int			ns;
		int			j;
		char	   *spath;

		if (strcmp(pairs[i].key, "scenarios") != 0)
			continue;
		spath = path_join(path, "scenarios");
		ns = object_pairs(&pairs[i].val, spath, &scen);
		for (j = 0; j < ns; j++)
		{
			Pair	   *checks;
			int			nc;
			int			k;
			char	   *cpath = path_join(spath, scen[j].key);
			LayerSettings ss = s;

			if (scen[j].key[0] == '\0' || strchr(scen[j].key, '.') != NULL)
				ereport(ERROR,
						(errcode(ERRCODE_WVAL_INVALID_POLICY),
						 errmsg("invalid scenario name \"%s\" in policy key \"%s\"", scen[j].key, spath),
						 errhint("Scenario names are non-empty and contain no dot.")));
			nc = object_pairs(&scen[j].val, cpath, &checks);
			for (k = 0; k < nc; k++)
				if (is_setting_key(checks[k].key))
					apply_setting(&ss, cpath, checks[k].key, &checks[k].val);
			for (k = 0; k < nc; k++)
			{
				int			c;
				const CheckDef *def = NULL;

				if (is_setting_key(checks[k].key))
					continue;
				for (c = 0; c < lengthof_array(stress_checks); c++)
					if (strcmp(stress_checks[c].check, checks[k].key) == 0)
						def = &stress_checks[c];
				if (def == NULL)
					error_unknown_key(cpath, checks[k].key, "dd_max, es_99, var_99, severity, owner, mode");
				build_check(list, path_join(cpath, checks[k].key),
							psprintf("stress.%s.%s", scen[j].key, def->check), def,
							psprintf("stress.%s.%s", scen[j].key, def->metric), NULL,
							&checks[k].val, &ss);
			}
		}
	}
}

/* The accepted check keys of a layer, for error messages */
static char *
layer_accepted_keys(const char *layer)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < lengthof_array(check_catalogue); i++)
		if (strcmp(check_catalogue[i].layer, layer) == 0)
			appendStringInfo(&buf, "%s, ", check_catalogue[i].check);
	if (strcmp(layer, "robustness") == 0)
		appendStringInfoString(&buf, "cv_sharpe_gap_max, ");
	appendStringInfoString(&buf, "severity, owner, mode");
	return buf.data;
}

/* Materialises one layer of a profile (or a top-level portfolio/stress) */
static void
build_layer(RuleList *list, const char *path, const LayerDef *layer, const JsonbValue *v)
{
	LayerSettings s;
	Pair	   *pairs;
	int			n;
	int			i;

	s.severity = layer->severity;
	s.owner = layer->owner;
	s.mode = WVAL_MODE_ENFORCE;
	s.mode_set = false;

	if (strcmp(layer->name, "stress") == 0)
	{
		build_stress(list, path, v, &s);
		return;
	}
	n = object_pairs(v, path, &pairs);
	for (i = 0; i < n; i++)
		if (is_setting_key(pairs[i].key))
			apply_setting(&s, path, pairs[i].key, &pairs[i].val);
	for (i = 0; i < n; i++)
	{
		const char *check = pairs[i].key;
		const CheckDef *def = NULL;
		int			c;

		if (is_setting_key(check))
			continue;
		if (strcmp(layer->name, "robustness") == 0 && strcmp(check, "cv_sharpe_gap_max") == 0)
			check = "half_sharpe_gap_max";
		for (c = 0; c < lengthof_array(check_catalogue); c++)
			if (strcmp(check_catalogue[c].layer, layer->name) == 0 &&
				strcmp(check_catalogue[c].check, check) == 0)
				def = &check_catalogue[c];
		if (def == NULL)
			error_unknown_key(path, pairs[i].key, layer_accepted_keys(layer->name));
		if (def->type == CT_FACTORS)
			build_factor_checks(list, path_join(path, pairs[i].key), def, &pairs[i].val, &s);
		else
		{
			char	   *key = psprintf("%s.%s", def->layer, def->check);
			int			k;

			for (k = 0; k < list->n; k++)
				if (strcmp(list->rules[k].key, key) == 0)
					ereport(ERROR,
							(errcode(ERRCODE_WVAL_INVALID_POLICY),
							 errmsg("check \"%s\" is configured twice", key),
							 errdetail("At %s.", path_join(path, pairs[i].key)),
							 errhint("cv_sharpe_gap_max is an alias of half_sharpe_gap_max; keep one of them.")));
			build_check(list, path_join(path, pairs[i].key), key, def,
						def->metric, def->metric2, &pairs[i].val, &s);
		}
	}
}

/* Appends a threshold number in its shortest form */
static void
append_number(StringInfo buf, double d)
{
	wval_append_float8(buf, d);
}

/* Builds the materialised document of a ruleset and its hash */
static void
materialise(WvalRuleset *rs)
{
	StringInfoData buf;
	int			i;
	char		hex[65];
	char	   *text;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"profile\":");
	wval_append_json_string(&buf, rs->profile);
	appendStringInfo(&buf, ",\"on_error\":\"%s\",\"on_missing_metric\":\"%s\",\"checks\":{",
					 wval_on_name(rs->on_error), wval_on_name(rs->on_missing));
	for (i = 0; i < rs->nrules; i++)
	{
		WvalRule   *r = &rs->rules[i];

		if (i > 0)
			appendStringInfoChar(&buf, ',');
		wval_append_json_string(&buf, r->key);
		appendStringInfoString(&buf, ":{\"metric\":");
		wval_append_json_string(&buf, r->metric);
		if (r->metric2)
		{
			appendStringInfoString(&buf, ",\"metric2\":");
			wval_append_json_string(&buf, r->metric2);
		}
		switch (r->vkind)
		{
			case WVAL_VAL_ABS_METRIC:
				appendStringInfoString(&buf, ",\"value\":\"abs\"");
				break;
			case WVAL_VAL_HALF_GAP:
				appendStringInfoString(&buf, ",\"value\":\"abs_difference\"");
				break;
			case WVAL_VAL_LAG:
				appendStringInfoString(&buf, ",\"value\":\"age_seconds\"");
				break;
			case WVAL_VAL_HISTORY:
				appendStringInfoString(&buf, ",\"value\":\"years_as_seconds\"");
				break;
			case WVAL_VAL_BASELINE_RATIO:
				appendStringInfoString(&buf, ",\"value\":\"ratio_to_latest_backtest\"");
				break;
			case WVAL_VAL_METRIC:
				break;
		}
		if (r->has_min && r->has_max)
		{
			appendStringInfoString(&buf, ",\"op\":\"between\",\"threshold\":[");
			append_number(&buf, r->min);
			appendStringInfoChar(&buf, ',');
			append_number(&buf, r->max);
			appendStringInfoChar(&buf, ']');
		}
		else
		{
			appendStringInfo(&buf, ",\"op\":\"%s\",\"threshold\":",
							 r->has_min ? (r->strict_min ? ">" : ">=") : "<=");
			append_number(&buf, r->has_min ? r->min : r->max);
		}
		appendStringInfo(&buf, ",\"severity\":\"%s\",\"owner\":\"%s\",\"mode\":\"%s\"}",
						 wval_severity_name(r->severity), wval_owner_name(r->owner),
						 wval_mode_name(r->mode));
	}
	appendStringInfoString(&buf, "}}");

	rs->materialised = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
	text = JsonbToCString(NULL, &rs->materialised->root, VARSIZE(rs->materialised));
	wval_sha256_hex(text, strlen(text), hex);
	snprintf(rs->hash, sizeof(rs->hash), "sha256:%s", hex);
}

/* Validates the validation block: on_error / on_missing_metric */
static void
build_validation(WvalPolicy *policy, const JsonbValue *v)
{
	Pair	   *pairs;
	int			n = object_pairs(v, "validation", &pairs);
	int			i;

	for (i = 0; i < n; i++)
	{
		char	   *p = path_join("validation", pairs[i].key);

		if (strcmp(pairs[i].key, "on_error") == 0)
			policy->on_error = (WvalOnPolicy) get_enum(p, &pairs[i].val, on_names, 2);
		else if (strcmp(pairs[i].key, "on_missing_metric") == 0)
			policy->on_missing = (WvalOnPolicy) get_enum(p, &pairs[i].val, on_names, 3);
		else
			error_unknown_key("validation", pairs[i].key, "on_error, on_missing_metric");
	}
}

/* Orders rules by key, so that the policy's key order does not matter */
static int
compare_rules(const void *a, const void *b)
{
	return strcmp(((const WvalRule *) a)->key, ((const WvalRule *) b)->key);
}

/*
 * Materialises a top-level block of checks (cohort, live_monitoring) into
 * its own ruleset; live_monitoring's windows_days and demote_after are
 * settings of the live runs, kept on the policy.
 */
static void
build_block(WvalPolicy *policy, WvalRuleset *rs, const char *path, const JsonbValue *v,
			const CheckDef *checks, int nchecks)
{
	Pair	   *pairs;
	int			n = object_pairs(v, path, &pairs);
	int			i;
	int			k;
	LayerSettings s = {WVAL_SEV_SOFT, WVAL_OWNER_RISK, WVAL_MODE_ENFORCE, false};
	StringInfoData accepted;
	RuleList	list = {NULL, 0, 0};
	bool		live = strcmp(path, "live_monitoring") == 0;

	initStringInfo(&accepted);
	for (k = 0; k < nchecks; k++)
		appendStringInfo(&accepted, "%s, ", checks[k].check);
	if (live)
		appendStringInfoString(&accepted, "windows_days, demote_after, ");
	appendStringInfoString(&accepted, "severity, owner, mode");

	for (i = 0; i < n; i++)
		if (is_setting_key(pairs[i].key))
			apply_setting(&s, path, pairs[i].key, &pairs[i].val);
	for (i = 0; i < n; i++)
	{
		char	   *p = path_join(path, pairs[i].key);
		const CheckDef *def = NULL;

		if (is_setting_key(pairs[i].key))
			continue;
		if (live && strcmp(pairs[i].key, "windows_days") == 0)
		{
			JsonbIterator *it;
			JsonbValue	e;
			JsonbIteratorToken tok;
			int			count = 0;

			if (pairs[i].val.type != jbvBinary || !JsonContainerIsArray(pairs[i].val.val.binary.data))
				error_type(p, "an array of positive whole numbers of days", &pairs[i].val);
			it = JsonbIteratorInit(pairs[i].val.val.binary.data);
			while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
			{
				double		d;
				int			j;

				if (tok != WJB_ELEM)
					continue;
				d = get_count(p, &e);
				if (d < 1 || d > 3660 || count >= WVAL_MAX_LIVE_WINDOWS)
					error_type(p, psprintf("an array of at most %d whole numbers of days between 1 and 3660",
										   WVAL_MAX_LIVE_WINDOWS), &pairs[i].val);
				for (j = 0; j < count; j++)
					if (policy->live_windows[j] == (int) d)
						error_type(p, "an array of distinct numbers of days", &pairs[i].val);
				policy->live_windows[count++] = (int) d;
			}
			if (count == 0)
				error_type(p, "a non-empty array of positive whole numbers of days", &pairs[i].val);
			policy->nlive_windows = count;
			continue;
		}
		if (live && strcmp(pairs[i].key, "demote_after") == 0)
		{
			double		d = get_count(p, &pairs[i].val);

			if (d < 1 || d > 1000)
				error_type(p, "a whole number of runs between 1 and 1000", &pairs[i].val);
			policy->demote_after = (int) d;
			continue;
		}
		for (k = 0; k < nchecks; k++)
			if (strcmp(checks[k].check, pairs[i].key) == 0)
				def = &checks[k];
		if (def == NULL)
			error_unknown_key(path, pairs[i].key, accepted.data);
		build_check(&list, p, psprintf("%s.%s", path, def->check), def, def->metric, NULL,
					&pairs[i].val, &s);
	}
	if (list.n > 1)
		qsort(list.rules, list.n, sizeof(WvalRule), compare_rules);
	rs->profile = pstrdup(path);
	rs->nrules = list.n;
	rs->rules = list.rules;
}

/* Validates one part of the selection block (or its QMTL alias) */
static void
validate_selection_part(const char *path, const char *key, const JsonbValue *v)
{
	Pair	   *pairs;
	int			n;
	int			i;
	double		enter = 0,
				exit_ = 0;
	bool		has_enter = false,
				has_exit = false;

	if (strcmp(key, "correlation") == 0 && v->type == jbvNumeric)
	{
		(void) get_number(path, v);
		return;
	}
	if (strcmp(key, "top_k") == 0 && v->type == jbvNumeric)
	{
		(void) get_count(path, v);
		return;
	}
	n = object_pairs(v, path, &pairs);
	for (i = 0; i < n; i++)
	{
		char	   *p = path_join(path, pairs[i].key);
		const char *k = pairs[i].key;

		if (strcmp(key, "thresholds") == 0)
		{
			/* metric -> number or {min, max, metric} */
			if (pairs[i].val.type == jbvNumeric)
				(void) get_number(p, &pairs[i].val);
			else
			{
				Pair	   *tp;
				int			tn = object_pairs(&pairs[i].val, p, &tp);
				int			j;
				bool		hmin = false,
							hmax = false;
				double		tmin = 0,
							tmax = 0;

				for (j = 0; j < tn; j++)
				{
					char	   *pp = path_join(p, tp[j].key);

					if (strcmp(tp[j].key, "min") == 0)
					{
						hmin = true;
						tmin = get_number(pp, &tp[j].val);
					}
					else if (strcmp(tp[j].key, "max") == 0)
					{
						hmax = true;
						tmax = get_number(pp, &tp[j].val);
					}
					else if (strcmp(tp[j].key, "metric") == 0)
					{
						if (tp[j].val.type != jbvString)
							error_type(pp, "a metric name", &tp[j].val);
					}
					else
						error_unknown_key(p, tp[j].key, "min, max, metric");
				}
				if (hmin && hmax && tmin > tmax)
					ereport(ERROR,
							(errcode(ERRCODE_WVAL_INVALID_POLICY),
							 errmsg("policy key \"%s\" has a minimum above its maximum", p),
							 errhint("Make min <= max.")));
			}
		}
		else if (strcmp(key, "top_k") == 0)
		{
			if (strcmp(k, "metric") == 0)
			{
				if (pairs[i].val.type != jbvString)
					error_type(p, "a metric name", &pairs[i].val);
			}
			else if (strcmp(k, "k") == 0)
				(void) get_count(p, &pairs[i].val);
			else
				error_unknown_key(path, k, "metric, k");
		}
		else if (strcmp(key, "correlation") == 0)
		{
			if (strcmp(k, "max") == 0)
			{
				double		m = get_number(p, &pairs[i].val);

				if (m < 0 || m > 1)
					ereport(ERROR,
							(errcode(ERRCODE_WVAL_INVALID_POLICY),
							 errmsg("policy key \"%s\" must be between 0 and 1", p),
							 errdetail("Found %s.", wval_jbv_text(&pairs[i].val, 200)),
							 errhint("An absolute correlation bound lies in [0, 1].")));
			}
			else if (strcmp(k, "source") == 0)
				(void) get_enum(p, &pairs[i].val, (const char *const[]) {"realized_returns", "snapshot"}, 2);
			else
				error_unknown_key(path, k, "max, source");
		}
		else
		{
			/* hysteresis */
			if (strcmp(k, "metric") == 0)
			{
				if (pairs[i].val.type != jbvString)
					error_type(p, "a metric name", &pairs[i].val);
			}
			else if (strcmp(k, "enter") == 0)
			{
				enter = get_number(p, &pairs[i].val);
				has_enter = true;
			}
			else if (strcmp(k, "exit") == 0)
			{
				exit_ = get_number(p, &pairs[i].val);
				has_exit = true;
			}
			else
				error_unknown_key(path, k, "metric, enter, exit");
		}
	}
	if (has_enter && has_exit && exit_ > enter)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_INVALID_POLICY),
				 errmsg("policy key \"%s\" has exit above enter", path),
				 errdetail("enter is %g, exit is %g.", enter, exit_),
				 errhint("Hysteresis keeps a strategy while the metric >= exit and admits one when it >= enter: exit <= enter.")));
}

/* Validates the selection block */
static void
validate_selection(const JsonbValue *v, bool *seen)
{
	Pair	   *pairs;
	int			n = object_pairs(v, "selection", &pairs);
	int			i;
	static const char *const parts[] = {"thresholds", "top_k", "correlation", "hysteresis"};

	for (i = 0; i < n; i++)
	{
		int			k;
		bool		found = false;

		for (k = 0; k < 4; k++)
		{
			if (strcmp(parts[k], pairs[i].key) == 0)
			{
				found = true;
				seen[k] = true;
				validate_selection_part(path_join("selection", pairs[i].key), pairs[i].key, &pairs[i].val);
			}
		}
		if (!found)
			error_unknown_key("selection", pairs[i].key, name_list(parts, 4));
	}
}

/*
 * Validates a policy document and materialises every profile.  Raises
 * WV002 on the first problem.  The result lives in its own memory context
 * under parent.
 */
WvalPolicy *
wval_policy_build(Jsonb *doc, bool fail_closed, MemoryContext parent)
{
	MemoryContext cxt;
	MemoryContext old;
	WvalPolicy *policy;
	JsonbValue	root;
	Pair	   *top;
	int			ntop;
	int			i;
	JsonbValue *profiles_v = NULL;
	JsonbValue *dpbs_v = NULL;
	JsonbValue *top_portfolio = NULL;
	JsonbValue *top_stress = NULL;
	JsonbValue *cohort_v = NULL;
	JsonbValue *live_v = NULL;
	bool		selection_seen[4] = {false, false, false, false};
	bool		alias_seen[4] = {false, false, false, false};
	Pair	   *profs = NULL;

	if (doc == NULL || !JB_ROOT_IS_OBJECT(doc) || JB_ROOT_IS_SCALAR(doc))
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_INVALID_POLICY),
				 errmsg("policy must be a JSON object"),
				 errhint("Pass a jsonb object with validation_profiles and default_profile_by_stage (docs/policy.md).")));

	cxt = AllocSetContextCreate(parent, "wval policy", ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(cxt);

	policy = palloc0(sizeof(WvalPolicy));
	policy->cxt = cxt;
	policy->on_error = WVAL_ON_FAIL;
	policy->on_missing = WVAL_ON_FAIL;
	for (i = 0; i < WVAL_NSTAGE_KEYS; i++)
		policy->stage_profile[i] = -1;
	policy->live_windows[0] = 30;
	policy->live_windows[1] = 60;
	policy->live_windows[2] = 90;
	policy->nlive_windows = 3;
	policy->demote_after = 2;

	root.type = jbvBinary;
	root.val.binary.data = &doc->root;
	root.val.binary.len = VARSIZE(doc) - VARHDRSZ;
	ntop = object_pairs(&root, "", &top);

	for (i = 0; i < ntop; i++)
	{
		const char *k = top[i].key;
		JsonbValue *v = &top[i].val;

		if (strcmp(k, "validation_profiles") == 0)
			profiles_v = v;
		else if (strcmp(k, "default_profile_by_stage") == 0)
			dpbs_v = v;
		else if (strcmp(k, "validation") == 0)
			build_validation(policy, v);
		else if (strcmp(k, "portfolio") == 0)
			top_portfolio = v;
		else if (strcmp(k, "stress") == 0)
			top_stress = v;
		else if (strcmp(k, "cohort") == 0)
			cohort_v = v;
		else if (strcmp(k, "live_monitoring") == 0)
			live_v = v;
		else if (strcmp(k, "selection") == 0)
			validate_selection(v, selection_seen);
		else if (strcmp(k, "thresholds") == 0 || strcmp(k, "top_k") == 0 ||
				 strcmp(k, "correlation") == 0 || strcmp(k, "hysteresis") == 0)
		{
			int			idx = strcmp(k, "thresholds") == 0 ? 0 : strcmp(k, "top_k") == 0 ? 1 :
				strcmp(k, "correlation") == 0 ? 2 : 3;

			alias_seen[idx] = true;
			validate_selection_part(k, k, v);
		}
		else if (strcmp(k, "governance") == 0 || strcmp(k, "campaign") == 0)
		{
			/* stored with the version, not evaluated */
		}
		else
			error_unknown_key("", k, name_list(top_level_keys, lengthof_array(top_level_keys)));
	}
	for (i = 0; i < 4; i++)
		if (selection_seen[i] && alias_seen[i])
			ereport(ERROR,
					(errcode(ERRCODE_WVAL_INVALID_POLICY),
					 errmsg("selection part is given twice"),
					 errdetail("Both \"selection.%s\" and the top-level alias \"%s\" are present.",
							   i == 0 ? "thresholds" : i == 1 ? "top_k" : i == 2 ? "correlation" : "hysteresis",
							   i == 0 ? "thresholds" : i == 1 ? "top_k" : i == 2 ? "correlation" : "hysteresis"),
					 errhint("Keep one of them.")));

	if (fail_closed)
	{
		policy->on_error = WVAL_ON_FAIL;
		policy->on_missing = WVAL_ON_FAIL;
		policy->fail_closed = true;
	}

	/* the top-level check blocks, materialised like profiles */
	policy->live = palloc0(sizeof(WvalRuleset));
	policy->cohort = palloc0(sizeof(WvalRuleset));
	policy->live->profile = "live_monitoring";
	policy->cohort->profile = "cohort";
	if (live_v != NULL)
		build_block(policy, policy->live, "live_monitoring", live_v, live_checks, lengthof_array(live_checks));
	if (cohort_v != NULL)
		build_block(policy, policy->cohort, "cohort", cohort_v, cohort_checks, lengthof_array(cohort_checks));
	policy->live->on_error = policy->cohort->on_error = policy->on_error;
	policy->live->on_missing = policy->cohort->on_missing = policy->on_missing;
	materialise(policy->live);
	materialise(policy->cohort);

	/* profiles */
	if (profiles_v != NULL)
		policy->nprofiles = object_pairs(profiles_v, "validation_profiles", &profs);
	policy->profiles = palloc0(sizeof(WvalRuleset) * Max(policy->nprofiles, 1));
	for (i = 0; i < policy->nprofiles; i++)
	{
		WvalRuleset *rs = &policy->profiles[i];
		RuleList	list = {NULL, 0, 0};
		char	   *ppath = path_join("validation_profiles", profs[i].key);
		Pair	   *layers;
		int			nl = object_pairs(&profs[i].val, ppath, &layers);
		bool		has_portfolio = false,
					has_stress = false;
		int			l;

		if (profs[i].key[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_WVAL_INVALID_POLICY),
					 errmsg("profile names in validation_profiles must not be empty"),
					 errhint("Name each profile, e.g. \"backtest\", \"paper\", \"live\".")));
		for (l = 0; l < nl; l++)
		{
			const LayerDef *layer = NULL;
			int			d;

			for (d = 0; d < lengthof_array(profile_layers); d++)
				if (strcmp(profile_layers[d].name, layers[l].key) == 0)
					layer = &profile_layers[d];
			if (layer == NULL)
			{
				StringInfoData acc;

				initStringInfo(&acc);
				for (d = 0; d < lengthof_array(profile_layers); d++)
					appendStringInfo(&acc, "%s%s", d ? ", " : "", profile_layers[d].name);
				if (strcmp(layers[l].key, "cohort") == 0 || strcmp(layers[l].key, "live_monitoring") == 0)
					ereport(ERROR,
							(errcode(ERRCODE_WVAL_INVALID_POLICY),
							 errmsg("\"%s\" is a top-level block, not a layer of a profile", layers[l].key),
							 errdetail("Found at %s.", path_join(ppath, layers[l].key)),
							 errhint("Move it to the top level of the policy.")));
				error_unknown_key(ppath, layers[l].key, acc.data);
			}
			if (strcmp(layer->name, "portfolio") == 0)
				has_portfolio = true;
			if (strcmp(layer->name, "stress") == 0)
				has_stress = true;
			build_layer(&list, path_join(ppath, layers[l].key), layer, &layers[l].val);
		}
		/* top-level portfolio / stress apply to every profile without its own */
		if (top_portfolio != NULL && !has_portfolio)
			build_layer(&list, "portfolio", &profile_layers[5], top_portfolio);
		if (top_stress != NULL && !has_stress)
			build_layer(&list, "stress", &profile_layers[7], top_stress);

		if (list.n > 1)
			qsort(list.rules, list.n, sizeof(WvalRule), compare_rules);
		rs->profile = pstrdup(profs[i].key);
		rs->on_error = policy->on_error;
		rs->on_missing = policy->on_missing;
		rs->nrules = list.n;
		rs->rules = list.rules;
		materialise(rs);
	}
	/* a policy without profiles still validates its top-level blocks */
	if (profiles_v == NULL)
	{
		RuleList	list = {NULL, 0, 0};

		if (top_portfolio != NULL)
			build_layer(&list, "portfolio", &profile_layers[5], top_portfolio);
		if (top_stress != NULL)
			build_layer(&list, "stress", &profile_layers[7], top_stress);
	}

	/* default_profile_by_stage */
	if (dpbs_v != NULL)
	{
		Pair	   *pairs;
		int			n = object_pairs(dpbs_v, "default_profile_by_stage", &pairs);

		for (i = 0; i < n; i++)
		{
			int			s;
			int			p;
			int			stage = -1;
			char	   *path = path_join("default_profile_by_stage", pairs[i].key);

			for (s = 0; s < WVAL_NSTAGE_KEYS; s++)
				if (strcmp(wval_stage_keys[s], pairs[i].key) == 0)
					stage = s;
			if (stage < 0)
				error_unknown_key("default_profile_by_stage", pairs[i].key,
								  name_list(wval_stage_keys, WVAL_NSTAGE_KEYS));
			if (pairs[i].val.type != jbvString)
				error_type(path, "the name of a profile", &pairs[i].val);
			for (p = 0; p < policy->nprofiles; p++)
				if (strlen(policy->profiles[p].profile) == (size_t) pairs[i].val.val.string.len &&
					strncmp(policy->profiles[p].profile, pairs[i].val.val.string.val,
							pairs[i].val.val.string.len) == 0)
					policy->stage_profile[stage] = p;
			if (policy->stage_profile[stage] < 0)
			{
				StringInfoData names;
				int			q;

				initStringInfo(&names);
				for (q = 0; q < policy->nprofiles; q++)
					appendStringInfo(&names, "%s%s", q ? ", " : "", policy->profiles[q].profile);
				ereport(ERROR,
						(errcode(ERRCODE_WVAL_INVALID_POLICY),
						 errmsg("%s names unknown profile \"%.*s\"", path,
								pairs[i].val.val.string.len, pairs[i].val.val.string.val),
						 errdetail("Profiles defined in validation_profiles: %s.",
								   policy->nprofiles ? names.data : "none"),
						 errhint("Name a profile of validation_profiles, or add the profile.")));
			}
		}
	}

	MemoryContextSwitchTo(old);
	return policy;
}

/* Releases a policy built by wval_policy_build */
void
wval_policy_free(WvalPolicy *policy)
{
	if (policy)
		MemoryContextDelete(policy->cxt);
}

/* The index of a profile by name, -1 when absent */
static int
profile_by_name(const WvalPolicy *policy, const char *name)
{
	int			i;

	for (i = 0; i < policy->nprofiles; i++)
		if (strcmp(policy->profiles[i].profile, name) == 0)
			return i;
	return -1;
}

/*
 * The profile that applies to a run's own stage (docs/policy.md): backtest ->
 * backtest_only's profile, paper -> paper_only's, live ->
 * paper_ok_live_candidate's; a stage without a mapping uses a profile of
 * the same name, else the backtest profile.  -1 when there is none.
 */
int
wval_policy_profile_for_stage(const WvalPolicy *policy, const char *stage)
{
	int			p = -1;

	if (strcmp(stage, "backtest") == 0)
		p = policy->stage_profile[0];
	else if (strcmp(stage, "paper") == 0)
		p = policy->stage_profile[1];
	else if (strcmp(stage, "live") == 0)
		p = policy->stage_profile[2];
	if (p < 0)
		p = profile_by_name(policy, stage);
	if (p < 0)
		p = policy->stage_profile[0];
	if (p < 0)
		p = profile_by_name(policy, "backtest");
	return p;
}

/*
 * A ruleset by name: "live_monitoring", "cohort" or a profile name; NULL
 * when the policy has none of that name.
 */
WvalRuleset *
wval_policy_ruleset_by_name(const WvalPolicy *policy, const char *name)
{
	int			p;

	if (strcmp(name, "live_monitoring") == 0)
		return policy->live;
	if (strcmp(name, "cohort") == 0)
		return policy->cohort;
	p = profile_by_name(policy, name);
	return p >= 0 ? &policy->profiles[p] : NULL;
}

/* ---------------------------------------------------------------------
 * Per-backend cache of materialised policy versions
 * ---------------------------------------------------------------------
 */
#define POLICY_CACHE_SIZE 32

typedef struct PolicyCacheEntry
{
	char		world_id[WVAL_MAX_IDENT_BYTES + 1];
	int			version;
	bool		fail_closed;
	uint64		last_used;
	WvalPolicy *policy;
} PolicyCacheEntry;

static PolicyCacheEntry policy_cache[POLICY_CACHE_SIZE];
static uint64 policy_cache_clock = 0;
static MemoryContext policy_cache_cxt = NULL;
static SPIPlanPtr policy_load_plan = NULL;

/* OID of the wval.policy_versions the entries were loaded from (InvalidOid: not known) */
static Oid	policy_cache_relid = InvalidOid;
static bool policy_cache_stale = false;
static bool policy_cache_callback_registered = false;

/* Relcache callback: marks the cache stale when wval.policy_versions changes or goes away. */
static void
policy_cache_relcache_callback(Datum arg, Oid relid)
{
	(void) arg;
	if (relid == InvalidOid || relid == policy_cache_relid)
		policy_cache_stale = true;
}

/*
 * Empties the cache when it was marked stale, and learns the OID of the
 * current wval.policy_versions (the relation the next entries come from).
 */
static void
policy_cache_validate(void)
{
	int			i;

	if (!policy_cache_callback_registered)
	{
		CacheRegisterRelcacheCallback(policy_cache_relcache_callback, (Datum) 0);
		policy_cache_callback_registered = true;
	}
	if (policy_cache_stale || policy_cache_relid == InvalidOid)
	{
		Oid			relid;

		relid = get_relname_relid("policy_versions", get_namespace_oid("wval", false));
		if (relid != policy_cache_relid || policy_cache_stale)
		{
			for (i = 0; i < POLICY_CACHE_SIZE; i++)
			{
				if (policy_cache[i].policy != NULL)
					wval_policy_free(policy_cache[i].policy);
				policy_cache[i].policy = NULL;
			}
		}
		policy_cache_relid = relid;
		policy_cache_stale = false;
	}
}

/*
 * The materialised policy version (world, version), from the cache or
 * loaded with SPI (the caller must be connected).  Entries of the same
 * world with another version are dropped: the active version moved on.
 */
WvalPolicy *
wval_policy_for_version(const char *world_id, int version, bool fail_closed)
{
	int			i;
	int			victim = 0;
	Datum		args[2];
	bool		isnull;
	Jsonb	   *doc;
	WvalPolicy *policy;

	policy_cache_validate();
	for (i = 0; i < POLICY_CACHE_SIZE; i++)
	{
		PolicyCacheEntry *e = &policy_cache[i];

		if (e->policy == NULL || strcmp(e->world_id, world_id) != 0)
			continue;
		if (e->version == version && e->fail_closed == fail_closed)
		{
			e->last_used = ++policy_cache_clock;
			return e->policy;
		}
		if (e->version < version)
		{
			wval_policy_free(e->policy);
			e->policy = NULL;
		}
	}

	if (policy_cache_cxt == NULL)
		policy_cache_cxt = AllocSetContextCreate(TopMemoryContext, "wval policy cache",
												 ALLOCSET_DEFAULT_SIZES);
	if (policy_load_plan == NULL)
	{
		Oid			types[2] = {TEXTOID, INT4OID};

		policy_load_plan = SPI_prepare("SELECT policy FROM wval.policy_versions "
									   "WHERE world_id = $1 AND version = $2", 2, types);
		if (policy_load_plan == NULL || SPI_keepplan(policy_load_plan) != 0)
			elog(ERROR, "could not prepare the policy loader");
	}
	args[0] = CStringGetTextDatum(world_id);
	args[1] = Int32GetDatum(version);
	if (SPI_execute_plan(policy_load_plan, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not load policy version %d of world \"%s\"", version, world_id);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_UNKNOWN_OBJECT),
				 errmsg("policy version %d of world \"%s\" does not exist", version, world_id),
				 errhint("See wval.policy_versions for the published versions.")));
	doc = DatumGetJsonbP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

	policy = wval_policy_build(doc, fail_closed, policy_cache_cxt);

	for (i = 0; i < POLICY_CACHE_SIZE; i++)
	{
		if (policy_cache[i].policy == NULL)
		{
			victim = i;
			break;
		}
		if (policy_cache[i].last_used < policy_cache[victim].last_used)
			victim = i;
	}
	if (policy_cache[victim].policy)
		wval_policy_free(policy_cache[victim].policy);
	strlcpy(policy_cache[victim].world_id, world_id, sizeof(policy_cache[victim].world_id));
	policy_cache[victim].version = version;
	policy_cache[victim].fail_closed = fail_closed;
	policy_cache[victim].last_used = ++policy_cache_clock;
	policy_cache[victim].policy = policy;
	return policy;
}

/* ---------------------------------------------------------------------
 * SQL-callable functions
 * ---------------------------------------------------------------------
 */

PG_FUNCTION_INFO_V1(wval_policy_validate);

/*
 * wval._policy_validate(policy jsonb, fail_closed boolean) → jsonb:
 * validates a policy (WV002) and returns {profile: ruleset_hash}.
 */
Datum
wval_policy_validate(PG_FUNCTION_ARGS)
{
	Jsonb	   *doc = PG_ARGISNULL(0) ? NULL : PG_GETARG_JSONB_P(0);
	bool		fail_closed = PG_ARGISNULL(1) ? false : PG_GETARG_BOOL(1);
	WvalPolicy *policy;
	StringInfoData buf;
	int			i;
	Jsonb	   *result;

	policy = wval_policy_build(doc, fail_closed, CurrentMemoryContext);
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (i = 0; i < policy->nprofiles; i++)
	{
		if (i > 0)
			appendStringInfoChar(&buf, ',');
		wval_append_json_string(&buf, policy->profiles[i].profile);
		appendStringInfoChar(&buf, ':');
		wval_append_json_string(&buf, policy->profiles[i].hash);
	}
	appendStringInfoChar(&buf, '}');
	result = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
	wval_policy_free(policy);
	PG_RETURN_JSONB_P(result);
}

PG_FUNCTION_INFO_V1(wval_policy_ruleset);

/*
 * wval._policy_ruleset(policy jsonb, stage text, fail_closed boolean) →
 * jsonb: the materialised ruleset applied at a stage, with its hash.
 */
Datum
wval_policy_ruleset(PG_FUNCTION_ARGS)
{
	Jsonb	   *doc = PG_GETARG_JSONB_P(0);
	char	   *stage = text_to_cstring(PG_GETARG_TEXT_PP(1));
	bool		fail_closed = PG_GETARG_BOOL(2);
	WvalPolicy *policy;
	int			p;
	char	   *text;
	StringInfoData buf;

	policy = wval_policy_build(doc, fail_closed, CurrentMemoryContext);
	p = wval_policy_profile_for_stage(policy, stage);
	if (p < 0)
		PG_RETURN_NULL();

	/* the materialised document plus its "ruleset_hash" */
	text = JsonbToCString(NULL, &policy->profiles[p].materialised->root,
						  VARSIZE(policy->profiles[p].materialised));
	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, text, strlen(text) - 1);
	appendStringInfo(&buf, ", \"ruleset_hash\": \"%s\"}", policy->profiles[p].hash);
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

PG_FUNCTION_INFO_V1(wval_reason_codes);

/*
 * wval._reason_codes() → setof (code, layer, meaning): every reason code a
 * RuleResult can carry, from the check catalogue.
 */
Datum
wval_reason_codes(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
	int			i;
	static const char *const fixed[][3] = {
		{"ok", "*", "the check passed"},
		{"missing_metric", "*", "the metric the check needs is absent, null or undefined (too little data); on_missing_metric decides fail or warn"},
		{"missing_metric_ignored", "*", "the metric is missing and the policy says on_missing_metric = ignore (pass, severity info)"},
		{"rule_error", "*", "the check could not be evaluated (details.error); on_error decides fail or warn"},
		{"no_checks", "policy", "no check is configured for the applied profile: nothing was validated (warn)"},
	};

	InitMaterializedSRF(fcinfo, 0);
	for (i = 0; i < lengthof_array(fixed); i++)
	{
		values[0] = CStringGetTextDatum(fixed[i][0]);
		values[1] = CStringGetTextDatum(fixed[i][1]);
		values[2] = CStringGetTextDatum(fixed[i][2]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	for (i = 0; i < lengthof_array(check_catalogue) + lengthof_array(stress_checks) +
		 lengthof_array(live_checks) + lengthof_array(cohort_checks); i++)
	{
		int			j = i;
		const CheckDef *d;
		const char *suffix;
		const char *verb;

		if (j < lengthof_array(check_catalogue))
			d = &check_catalogue[j];
		else if ((j -= lengthof_array(check_catalogue)) < lengthof_array(stress_checks))
			d = &stress_checks[j];
		else if ((j -= lengthof_array(stress_checks)) < lengthof_array(live_checks))
			d = &live_checks[j];
		else
			d = &cohort_checks[j - lengthof_array(live_checks)];
		suffix = d->dir == 'l' ? "above_max" : "below_min";
		verb = d->dir == 'l' ? "above the maximum" : "below the minimum";

		values[0] = CStringGetTextDatum(d->code ? pstrdup(d->code) : psprintf("%s_%s", d->code_base, suffix));
		values[1] = CStringGetTextDatum(d->layer);
		values[2] = CStringGetTextDatum(psprintf("%s (%s) is %s of %s.%s", d->meaning, d->metric, verb,
												 d->layer, d->check));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
