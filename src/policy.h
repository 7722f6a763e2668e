/*-------------------------------------------------------------------------
 *
 * policy.h
 *	  The policy engine: a validated, materialised policy version (policy.c)
 *	  and the evaluation of its rules against a run's metrics (rules.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef WVAL_POLICY_H
#define WVAL_POLICY_H

#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/jsonb.h"

#include "wval.h"

typedef enum WvalSeverity
{
	WVAL_SEV_BLOCKING,
	WVAL_SEV_SOFT,
	WVAL_SEV_INFO
} WvalSeverity;

typedef enum WvalOwner
{
	WVAL_OWNER_QUANT,
	WVAL_OWNER_RISK,
	WVAL_OWNER_OPS
} WvalOwner;

typedef enum WvalMode
{
	WVAL_MODE_ENFORCE,
	WVAL_MODE_WARN
} WvalMode;

/* on_error / on_missing_metric */
typedef enum WvalOnPolicy
{
	WVAL_ON_FAIL,
	WVAL_ON_WARN,
	WVAL_ON_IGNORE
} WvalOnPolicy;

/* How a rule obtains the value it compares */
typedef enum WvalValueKind
{
	WVAL_VAL_METRIC,			/* the number at metric */
	WVAL_VAL_ABS_METRIC,		/* |number at metric| */
	WVAL_VAL_LAG,				/* now - context.data_as_of, seconds */
	WVAL_VAL_HISTORY,			/* sample.effective_history_years, in seconds */
	WVAL_VAL_HALF_GAP,			/* |metric - metric2| */
	WVAL_VAL_BASELINE_RATIO		/* metric / the baseline run's metric */
} WvalValueKind;

/* One materialised check of a profile */
typedef struct WvalRule
{
	char	   *key;			/* result key: "performance.sharpe_min" */
	char	   *layer;			/* "performance" */
	char	   *metric;			/* metric path for display: "returns.sharpe" */
	char	  **path;			/* the same path as segments */
	int			npath;
	char	   *metric2;		/* second path (half gap), else NULL */
	char	  **path2;
	int			npath2;
	WvalValueKind vkind;
	bool		has_min;		/* value >= min (or > min when strict_min) */
	bool		has_max;		/* value <= max */
	bool		strict_min;
	double		min;
	double		max;
	const char *code_base;		/* reason code stem: "sharpe" */
	const char *violation_code; /* fixed violation code, or NULL: <stem>_below_min / _above_max */
	const char *unit;			/* "", "s" (durations) */
	WvalSeverity severity;
	WvalOwner	owner;
	WvalMode	mode;
} WvalRule;

/* The materialised ruleset of one profile */
typedef struct WvalRuleset
{
	char	   *profile;
	WvalOnPolicy on_error;
	WvalOnPolicy on_missing;
	int			nrules;
	WvalRule   *rules;
	Jsonb	   *materialised;	/* the canonical document the hash covers */
	char		hash[WVAL_SHA256_REF_LEN + 1];		/* "sha256:<hex>" */
} WvalRuleset;

/* Most windows of live_monitoring.windows_days */
#define WVAL_MAX_LIVE_WINDOWS 16

/* Stage keys of default_profile_by_stage, in climbing order */

/* A validated policy version, every profile materialised */
typedef struct WvalPolicy
{
	int			nprofiles;
	WvalRuleset *profiles;
	int			stage_profile[WVAL_NSTAGE_KEYS];	/* index into profiles, -1 = absent */
	WvalOnPolicy on_error;
	WvalOnPolicy on_missing;
	bool		fail_closed;	/* on_error/on_missing forced to fail */
	WvalRuleset *live;			/* top-level live_monitoring checks (live.* metrics) */
	WvalRuleset *cohort;		/* top-level cohort checks (cohort.* metrics) */
	int			live_windows[WVAL_MAX_LIVE_WINDOWS];	/* live_monitoring.windows_days */
	int			nlive_windows;
	int			demote_after;	/* live_monitoring.demote_after */
	MemoryContext cxt;			/* owns everything above */
} WvalPolicy;

/* policy.c */
extern WvalPolicy *wval_policy_build(Jsonb *doc, bool fail_closed, MemoryContext parent);
extern void wval_policy_free(WvalPolicy *policy);
extern void wval_policy_materialise(WvalRuleset *rs);
extern WvalPolicy *wval_policy_for_version(const char *world_id, int version, bool fail_closed);
extern bool wval_policy_active_version(const char *world_id, const char *stage, int *version);
extern int	wval_policy_profile_for_stage(const WvalPolicy *policy, const char *stage);
extern WvalRuleset *wval_policy_ruleset_by_name(const WvalPolicy *policy, const char *name);
extern const char *wval_severity_name(WvalSeverity s);
extern const char *wval_owner_name(WvalOwner o);
extern const char *wval_mode_name(WvalMode m);
extern const char *wval_on_name(WvalOnPolicy p);

/* rules.c: what the rules of a profile see */
typedef struct WvalEvalInput
{
	Jsonb	   *metrics;		/* merged metric blocks */
	Jsonb	   *baseline;		/* latest backtest run's metrics, or NULL */
	bool		has_data_as_of;
	TimestampTz data_as_of;
	TimestampTz now;
	const char *stage;			/* the run's stage */
} WvalEvalInput;

/* The outcome of one profile */
typedef struct WvalProfileOutcome
{
	int			profile;		/* index into policy->profiles, -1 = none */
	const char *status;			/* pass | warn | fail */
	bool		cleared;		/* no blocking or soft fail */
	int			nresults;
	int			nerrors;		/* results with reason_code rule_error */
	Jsonb	   *results;		/* object: key -> RuleResult */
	Jsonb	   *stoppers;		/* array of the keys that stop the climb */
} WvalProfileOutcome;

/* The outcome of a run: its own profile plus the recommendation */
typedef struct WvalOutcome
{
	WvalProfileOutcome own;
	const char *recommended_stage;
	Jsonb	   *recommendation; /* {stages, recommended_stage, stopped_at} */
	double		metric_coverage_ratio;
	double		rules_executed_ratio;
} WvalOutcome;

/* The reason code of a check's decision (see wval_rule_code_name) */
typedef enum WvalRuleCode
{
	WVAL_RC_OK,
	WVAL_RC_BELOW,				/* <stem>_below_min or the check's own code */
	WVAL_RC_ABOVE,				/* <stem>_above_max or the check's own code */
	WVAL_RC_MISSING,
	WVAL_RC_MISSING_IGNORED,
	WVAL_RC_ERROR,
	WVAL_RC_NO_CHECKS
} WvalRuleCode;

/* One check of a brief evaluation: status 'p', 'w', 'f' (0: did not apply) */
typedef struct WvalRuleBrief
{
	char		status;
	uint8		code;			/* WvalRuleCode */
} WvalRuleBrief;

/* Metrics of one run remembered across brief evaluations (rules.c) */
typedef struct WvalMetricCache WvalMetricCache;

/*
 * The brief outcome of a run (policy diff): what wval_evaluate_policy
 * decides, without results text.  rules is supplied by the caller with room
 * for the rules of the own profile; cache (optional) is reset by the caller
 * for every run.
 */
typedef struct WvalBriefOutcome
{
	int			profile;		/* own profile, -1 = none */
	char		status;			/* 'p', 'w', 'f' */
	int			stage;			/* recommended stage: index into wval_stage_keys */
	int			nresults;		/* 0: the run reports policy.no_checks */
	WvalRuleBrief *rules;
	WvalMetricCache *cache;
} WvalBriefOutcome;

extern void wval_evaluate_ruleset(const WvalRuleset *rs, const WvalEvalInput *in,
								  const char *const *layers, int nlayers,
								  WvalProfileOutcome *out);
extern void wval_evaluate_profile(const WvalPolicy *policy, int profile,
								  const WvalEvalInput *in, WvalProfileOutcome *out);
extern void wval_evaluate_policy(const WvalPolicy *policy, const WvalEvalInput *in,
								 WvalOutcome *out);
extern void wval_evaluate_policy_brief(const WvalPolicy *policy, const WvalEvalInput *in,
									   WvalBriefOutcome *out);
extern const char *wval_rule_code_name(const WvalRule *r, WvalRuleCode code);
extern WvalMetricCache *wval_metric_cache_create(void);
extern void wval_metric_cache_reset(WvalMetricCache *cache);
extern double wval_coverage_ratio(Jsonb *metrics);
/* Pushes a check's "op" and "threshold" into an object being built (policy_materialise.c) */
extern void wval_push_threshold(JsonbParseState **ps, const WvalRule *r);
/* A ruleset's outcome as {status, cleared, profile, ruleset_hash, results, stopped_by, validation_error_count} */
extern Jsonb *wval_ruleset_outcome_jsonb(const WvalRuleset *rs, const WvalProfileOutcome *out);

/* jsonb access helpers (rules.c) */
extern JsonbValue *wval_json_get(Jsonb *doc, char **path, int npath);
extern JsonbValue *wval_json_path(Jsonb *doc, const char *dotted);

#endif							/* WVAL_POLICY_H */
