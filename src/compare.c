/*-------------------------------------------------------------------------
 *
 * compare.c
 *	  Comparisons for analysts (docs/reports.md, "Comparisons"): every
 *	  materialised ruleset of a policy document, which wval_policy_compare
 *	  diffs check by check.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "jsonb.h"
#include "policy.h"
#include "wval.h"

PG_FUNCTION_INFO_V1(wval_policy_rulesets);

/* Pushes "name": <materialised ruleset> into the object being built */
static void
push_ruleset(JsonbParseState **ps, const WvalRuleset *rs)
{
	wval_jb_kv_jsonb(ps, rs->profile, rs->materialised);
}

/*
 * wval._policy_rulesets(policy jsonb, fail_closed boolean) → jsonb: every
 * ruleset of a (valid) policy document as the engine materialises it, by
 * name: each validation profile, and live_monitoring and cohort when they
 * have checks.  WV002 for an invalid document.
 */
Datum
wval_policy_rulesets(PG_FUNCTION_ARGS)
{
	Jsonb	   *doc = PG_GETARG_JSONB_P(0);
	bool		fail_closed = PG_GETARG_BOOL(1);
	WvalPolicy *policy = wval_policy_build(doc, fail_closed, CurrentMemoryContext);
	JsonbParseState *ps = NULL;
	int			i;

	wval_jb_begin_object(&ps);
	for (i = 0; i < policy->nprofiles; i++)
		push_ruleset(&ps, &policy->profiles[i]);
	if (policy->live != NULL && policy->live->nrules > 0)
		push_ruleset(&ps, policy->live);
	if (policy->cohort != NULL && policy->cohort->nrules > 0)
		push_ruleset(&ps, policy->cohort);
	PG_RETURN_JSONB_P(wval_jb_end_object(&ps));
}
