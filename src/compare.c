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

#include "policy.h"
#include "wval.h"

PG_FUNCTION_INFO_V1(wval_policy_rulesets);

/* Appends "name": <materialised ruleset> to a JSON object being written */
static void
append_ruleset(StringInfo buf, const WvalRuleset *rs, bool *first)
{
	if (!*first)
		appendStringInfoChar(buf, ',');
	*first = false;
	wval_append_json_string(buf, rs->profile);
	appendStringInfoChar(buf, ':');
	appendStringInfoString(buf, JsonbToCString(NULL, &rs->materialised->root,
											   VARSIZE(rs->materialised)));
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
	StringInfoData buf;
	bool		first = true;
	int			i;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (i = 0; i < policy->nprofiles; i++)
		append_ruleset(&buf, &policy->profiles[i], &first);
	if (policy->live != NULL && policy->live->nrules > 0)
		append_ruleset(&buf, policy->live, &first);
	if (policy->cohort != NULL && policy->cohort->nrules > 0)
		append_ruleset(&buf, policy->cohort, &first);
	appendStringInfoChar(&buf, '}');
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}
