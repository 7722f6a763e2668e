/*-------------------------------------------------------------------------
 *
 * diff.c
 *	  Policy diff (docs/policy-change.md): replays runs under two policies with
 *	  the C engine and reports what would change, plus the brief outcomes
 *	  the scenario regression check needs.
 *
 * Both policies are materialised once; every run is then decided twice by
 * wval_evaluate_policy_brief(), which makes exactly the decisions of
 * wval_evaluate() without writing results text.  Stored runs never cost a
 * statement each: every run of the window comes through one SPI cursor, or
 * (the latest run per strategy) a narrow cursor finds where each strategy's
 * latest run is stored and one TID scan per partition hands those over, so
 * that no wide rows are sorted.  Runs given as JSON are walked in place.
 * Per run only the comparison survives: status, recommended stage and the
 * status of every check of the profile the run's stage applies.
 *
 * What counts (docs/policy-change.md):
 *	  - a run is affected when its status, its recommended stage or the
 *		status of any check changes; a check present in only one of the two
 *		rulesets counts as changed only where it does not pass (adding a
 *		check that everyone passes affects nobody);
 *	  - total_strategies and strategies_affected count distinct strategies
 *		(with dedupe 'none' a strategy is affected when any of its runs is),
 *		impact_ratio = affected / total (0 when there is none);
 *	  - status_changes, stage_changes and selection_changes count affected
 *		runs (one per strategy with dedupe 'strategy'); a selection change is
 *		a change of eligibility for wval_select (status fail or not);
 *		rule_status_changes counts (run, check) flips;
 *	  - a run is "tightened" when its status gets worse, else (same status)
 *		when its recommended stage gets lower, else when its checks get
 *		worse on balance (pass 0, warn 1, fail 2; an even trade counts as
 *		tightened); otherwise "relaxed".
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "storage/itemptr.h"
#include "utils/array.h"
#include "utils/lsyscache.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "evaluate.h"
#include "policy.h"
#include "wval.h"

/* How many runs one cursor fetch brings */
#define DIFF_FETCH 1000

/* How many offenders the report ranks */
#define DIFF_TOP_OFFENDERS 10

/* Key index of the virtual check "policy.no_checks" in a rule map */
#define NO_CHECKS_SIDE (-2)

/* One check that changed for a run */
typedef struct RuleFlip
{
	int			key;			/* index into DiffState.keys */
	char		old_status;		/* 'p', 'w', 'f', 0 = absent */
	char		new_status;
	uint8		old_code;
	uint8		new_code;
} RuleFlip;

/* An affected run */
typedef struct Affected
{
	char	   *strategy_id;
	char	   *run_id;
	int64		seq;			/* input order */
	char		old_status;
	char		new_status;
	int			old_stage;
	int			new_stage;
	bool		tightened;
	int			nflips;
	RuleFlip   *flips;
} Affected;

/* A strategy seen by the replay (hash entry keyed by the string pointer) */
typedef struct StrategyEntry
{
	char	   *key;
	bool		affected;
} StrategyEntry;

/* Everything one diff accumulates */
typedef struct DiffState
{
	MemoryContext cxt;			/* owns the state and what it keeps */
	MemoryContext rowcxt;		/* reset after every run */
	WvalPolicy *oldp;
	WvalPolicy *newp;
	const char *stage;
	int			own_old;		/* profile the stage applies, -1 = none */
	int			own_new;
	bool		needs_data_as_of;	/* some check compares context.data_as_of */
	bool		needs_baseline; /* some check compares with the backtest run */

	/* the union of check keys of both own profiles, plus policy.no_checks */
	int			nkeys;
	char	  **keys;
	int		   *old_idx;		/* rule index in the old own profile, -1 absent */
	int		   *new_idx;

	WvalMetricCache *cache;		/* the run's metrics, shared by both policies */
	bool		unique_strategies;	/* the input has one run per strategy */
	WvalRuleBrief *old_rules;	/* per-run scratch, sized for each profile */
	WvalRuleBrief *new_rules;
	RuleFlip   *flips;			/* per-run scratch, nkeys entries */

	HTAB	   *strategies;
	int64		nruns;
	int64		nstrategies;
	int64		nstrategies_affected;
	int64		status_changes;
	int64		stage_changes;
	int64		selection_changes;
	int64		rule_status_changes;

	Affected   *affected;
	int			naffected;
	int			maxaffected;
} DiffState;

/* Hashes a strategy id (the entry key is a pointer to the string) */
static uint32
strategy_hash(const void *key, Size keysize)
{
	const char *s = *(char *const *) key;

	(void) keysize;
	return hash_bytes((const unsigned char *) s, strlen(s));
}

/* Compares two strategy ids for the hash table */
static int
strategy_match(const void *key1, const void *key2, Size keysize)
{
	(void) keysize;
	return strcmp(*(char *const *) key1, *(char *const *) key2);
}

/* Orders check keys by name */
static int
compare_keys(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/* True when some profile of a policy has a check of a value kind */
static bool
policy_has_kind(const WvalPolicy *policy, WvalValueKind kind)
{
	int			p;
	int			i;

	for (p = 0; p < policy->nprofiles; p++)
		for (i = 0; i < policy->profiles[p].nrules; i++)
			if (policy->profiles[p].rules[i].vkind == kind)
				return true;
	return false;
}

/* The index of a check key in a profile, -1 when absent */
static int
rule_index(const WvalPolicy *policy, int profile, const char *key)
{
	int			i;

	if (profile < 0)
		return -1;
	for (i = 0; i < policy->profiles[profile].nrules; i++)
		if (strcmp(policy->profiles[profile].rules[i].key, key) == 0)
			return i;
	return -1;
}

/*
 * Sets up a diff: both policies (already built in the caller's context),
 * the map of check keys between their profiles for the stage, and the
 * counters.
 */
static DiffState *
diff_begin(WvalPolicy *oldp, WvalPolicy *newp, const char *stage)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "wval policy diff",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	DiffState  *st = palloc0(sizeof(DiffState));
	HASHCTL		ctl;
	int			nold,
				nnew,
				n = 0,
				i;
	char	  **all;

	st->cxt = cxt;
	st->rowcxt = AllocSetContextCreate(cxt, "wval policy diff run", ALLOCSET_DEFAULT_SIZES);
	st->oldp = oldp;
	st->newp = newp;
	st->stage = pstrdup(stage);
	st->own_old = wval_policy_profile_for_stage(oldp, stage);
	st->own_new = wval_policy_profile_for_stage(newp, stage);
	st->needs_data_as_of = policy_has_kind(oldp, WVAL_VAL_LAG) || policy_has_kind(newp, WVAL_VAL_LAG);
	st->needs_baseline = (strcmp(stage, "paper") == 0 || strcmp(stage, "shadow") == 0) &&
		(policy_has_kind(oldp, WVAL_VAL_BASELINE_RATIO) || policy_has_kind(newp, WVAL_VAL_BASELINE_RATIO));

	nold = st->own_old >= 0 ? oldp->profiles[st->own_old].nrules : 0;
	nnew = st->own_new >= 0 ? newp->profiles[st->own_new].nrules : 0;
	all = palloc(sizeof(char *) * (nold + nnew + 1));
	for (i = 0; i < nold; i++)
		all[n++] = oldp->profiles[st->own_old].rules[i].key;
	for (i = 0; i < nnew; i++)
		all[n++] = newp->profiles[st->own_new].rules[i].key;
	if (n > 1)
		qsort(all, n, sizeof(char *), compare_keys);
	st->keys = palloc(sizeof(char *) * (n + 1));
	for (i = 0; i < n; i++)
		if (st->nkeys == 0 || strcmp(st->keys[st->nkeys - 1], all[i]) != 0)
			st->keys[st->nkeys++] = all[i];
	st->keys[st->nkeys++] = "policy.no_checks";
	st->old_idx = palloc(sizeof(int) * st->nkeys);
	st->new_idx = palloc(sizeof(int) * st->nkeys);
	for (i = 0; i < st->nkeys - 1; i++)
	{
		st->old_idx[i] = rule_index(oldp, st->own_old, st->keys[i]);
		st->new_idx[i] = rule_index(newp, st->own_new, st->keys[i]);
	}
	st->old_idx[st->nkeys - 1] = NO_CHECKS_SIDE;
	st->new_idx[st->nkeys - 1] = NO_CHECKS_SIDE;

	st->old_rules = palloc0(sizeof(WvalRuleBrief) * Max(nold, 1));
	st->new_rules = palloc0(sizeof(WvalRuleBrief) * Max(nnew, 1));
	st->flips = palloc(sizeof(RuleFlip) * st->nkeys);
	st->cache = wval_metric_cache_create();

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(char *);
	ctl.entrysize = sizeof(StrategyEntry);
	ctl.hash = strategy_hash;
	ctl.match = strategy_match;
	ctl.hcxt = cxt;
	st->strategies = hash_create("wval policy diff strategies", 1024, &ctl,
								 HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	MemoryContextSwitchTo(old);
	return st;
}

/* Severity of a check status for the tightened/relaxed balance */
static int
status_weight(char s)
{
	return s == 'f' ? 2 : s == 'w' ? 1 : 0;
}

/* The status of a key on one side of the comparison */
static char
side_status(int idx, const WvalBriefOutcome *o, uint8 *code)
{
	if (idx == NO_CHECKS_SIDE)
	{
		*code = WVAL_RC_NO_CHECKS;
		return o->nresults == 0 ? 'w' : 0;
	}
	if (idx < 0)
	{
		*code = WVAL_RC_OK;
		return 0;
	}
	*code = o->rules[idx].code;
	return o->rules[idx].status;
}

/*
 * Replays one run under both policies and records what changed.  The
 * caller's strings are copied only when the run is affected.
 */
static void
diff_run(DiffState *st, const char *strategy_id, const char *run_id, WvalEvalInput *in)
{
	MemoryContext old = MemoryContextSwitchTo(st->rowcxt);
	WvalBriefOutcome ob,
				nb;
	int			nflips = 0;
	int			net = 0;
	int			k;
	bool		affected;
	StrategyEntry *e;
	bool		found;
	char	   *key = (char *) strategy_id;

	ob.rules = st->old_rules;
	nb.rules = st->new_rules;
	ob.cache = st->cache;
	nb.cache = st->cache;
	wval_metric_cache_reset(st->cache);
	in->stage = st->stage;
	wval_evaluate_policy_brief(st->oldp, in, &ob);
	wval_evaluate_policy_brief(st->newp, in, &nb);

	for (k = 0; k < st->nkeys; k++)
	{
		uint8		oc,
					nc;
		char		os = side_status(st->old_idx[k], &ob, &oc);
		char		ns = side_status(st->new_idx[k], &nb, &nc);

		if (os == ns)
			continue;
		/* a check on one side only matters where it does not pass */
		if ((os == 0 && ns == 'p') || (ns == 0 && os == 'p'))
			continue;
		st->flips[nflips].key = k;
		st->flips[nflips].old_status = os;
		st->flips[nflips].new_status = ns;
		st->flips[nflips].old_code = oc;
		st->flips[nflips].new_code = nc;
		net += status_weight(ns) - status_weight(os);
		nflips++;
	}
	MemoryContextSwitchTo(st->cxt);

	st->nruns++;
	affected = ob.status != nb.status || ob.stage != nb.stage || nflips > 0;

	if (st->unique_strategies)
	{
		/* one run per strategy: no need to remember which were seen */
		st->nstrategies++;
		e = NULL;
		if (affected)
		{
			st->nstrategies_affected++;
			key = pstrdup(strategy_id);
		}
	}
	else
	{
		e = (StrategyEntry *) hash_search(st->strategies, &key, HASH_FIND, NULL);
		if (e == NULL)
		{
			key = pstrdup(strategy_id);
			e = (StrategyEntry *) hash_search(st->strategies, &key, HASH_ENTER, &found);
			e->affected = false;
			st->nstrategies++;
		}
		key = e->key;
		if (affected && !e->affected)
		{
			e->affected = true;
			st->nstrategies_affected++;
		}
	}

	if (affected)
	{
		Affected   *a;

		if (ob.status != nb.status)
			st->status_changes++;
		if (ob.stage != nb.stage)
			st->stage_changes++;
		if ((ob.status == 'f') != (nb.status == 'f'))
			st->selection_changes++;
		st->rule_status_changes += nflips;

		if (st->naffected == st->maxaffected)
		{
			st->maxaffected = st->maxaffected ? st->maxaffected * 2 : 64;
			st->affected = st->affected ?
				repalloc_huge(st->affected, sizeof(Affected) * st->maxaffected) :
				palloc(sizeof(Affected) * st->maxaffected);
		}
		a = &st->affected[st->naffected++];
		a->strategy_id = key;
		a->run_id = pstrdup(run_id);
		a->seq = st->nruns;
		a->old_status = ob.status;
		a->new_status = nb.status;
		a->old_stage = ob.stage;
		a->new_stage = nb.stage;
		if (status_weight(nb.status) != status_weight(ob.status))
			a->tightened = status_weight(nb.status) > status_weight(ob.status);
		else if (nb.stage != ob.stage)
			a->tightened = nb.stage < ob.stage;
		else
			a->tightened = net >= 0;
		a->nflips = nflips;
		a->flips = nflips ? palloc(sizeof(RuleFlip) * nflips) : NULL;
		if (nflips)
			memcpy(a->flips, st->flips, sizeof(RuleFlip) * nflips);
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(st->rowcxt);
}

/* Name of a brief status */
static const char *
status_name(char s)
{
	return s == 'p' ? "pass" : s == 'w' ? "warn" : s == 'f' ? "fail" : NULL;
}

/* Pushes key: string (null when s is NULL) */
static void
jb_string(JsonbParseState **ps, const char *key, const char *s)
{
	JsonbValue	v;

	wval_push_key(ps, key);
	if (s == NULL)
		v.type = jbvNull;
	else
	{
		v.type = jbvString;
		v.val.string.val = (char *) s;
		v.val.string.len = strlen(s);
	}
	pushJsonbValue(ps, WJB_VALUE, &v);
}

/* Pushes key: integer (null when isnull) */
static void
jb_int(JsonbParseState **ps, const char *key, int64 n, bool isnull)
{
	JsonbValue	v;

	wval_push_key(ps, key);
	if (isnull)
		v.type = jbvNull;
	else
	{
		v.type = jbvNumeric;
		v.val.numeric = int64_to_numeric(n);
	}
	pushJsonbValue(ps, WJB_VALUE, &v);
}

/* Pushes key: number in its shortest exact decimal form */
static void
jb_float(JsonbParseState **ps, const char *key, double d)
{
	JsonbValue	v;
	StringInfoData buf;

	initStringInfo(&buf);
	wval_append_float8(&buf, d);
	wval_push_key(ps, key);
	v.type = jbvNumeric;
	v.val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(buf.data),
														ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
	pushJsonbValue(ps, WJB_VALUE, &v);
}

/* Pushes key: boolean */
static void
jb_bool(JsonbParseState **ps, const char *key, bool b)
{
	JsonbValue	v;

	wval_push_key(ps, key);
	v.type = jbvBool;
	v.val.boolean = b;
	pushJsonbValue(ps, WJB_VALUE, &v);
}

/* The reason code of one side of a flip */
static const char *
flip_code(const WvalPolicy *policy, int own, const int *idx, int key, char status, uint8 code)
{
	if (status == 0)
		return NULL;
	if (idx[key] == NO_CHECKS_SIDE)
		return "no_checks";
	return wval_rule_code_name(&policy->profiles[own].rules[idx[key]], (WvalRuleCode) code);
}

/* Orders affected runs by strategy, then input order (diffs) */
static int
compare_affected(const void *a, const void *b)
{
	const Affected *x = (const Affected *) a;
	const Affected *y = (const Affected *) b;
	int			c = strcmp(x->strategy_id, y->strategy_id);

	if (c != 0)
		return c;
	return x->seq < y->seq ? -1 : x->seq > y->seq ? 1 : 0;
}

/*
 * Orders offenders: status change first, then stage change, then more
 * check flips; ties by strategy and input order.
 */
static int
compare_offenders(const void *a, const void *b)
{
	const Affected *x = *(Affected *const *) a;
	const Affected *y = *(Affected *const *) b;
	int			xs = x->old_status != x->new_status;
	int			ys = y->old_status != y->new_status;

	if (xs != ys)
		return ys - xs;
	xs = x->old_stage != x->new_stage;
	ys = y->old_stage != y->new_stage;
	if (xs != ys)
		return ys - xs;
	if (x->nflips != y->nflips)
		return y->nflips - x->nflips;
	return compare_affected(x, y);
}

/* The hash of the profile a policy applies at the stage, or NULL */
static const char *
ruleset_hash(const WvalPolicy *policy, int own)
{
	return own >= 0 ? policy->profiles[own].hash : NULL;
}

/* Pushes the old/new status and recommended stage of an affected run */
static void
push_outcomes(JsonbParseState **ps, const Affected *a)
{
	jb_string(ps, "old_status", status_name(a->old_status));
	jb_string(ps, "new_status", status_name(a->new_status));
	jb_string(ps, "old_recommended_stage", wval_stage_keys[a->old_stage]);
	jb_string(ps, "new_recommended_stage", wval_stage_keys[a->new_stage]);
}

/*
 * Builds the report of docs/policy-change.md in the caller's memory context:
 * {old_policy_version, new_policy_version, old_ruleset_hash,
 * new_ruleset_hash, total_strategies, strategies_affected,
 * selection_changes, stage_changes, status_changes, rule_status_changes,
 * impact_ratio, diffs, top_offenders}.  Built as a JsonbValue directly: a
 * report with many diffs costs no JSON parsing.
 */
static Jsonb *
diff_report(DiffState *st, bool old_isnull, int old_version, bool new_isnull, int new_version)
{
	JsonbParseState *ps = NULL;
	JsonbValue *res;
	Affected  **ranked;
	int			i,
				f;

	if (st->naffected > 1)
		qsort(st->affected, st->naffected, sizeof(Affected), compare_affected);

	pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	jb_int(&ps, "old_policy_version", old_version, old_isnull);
	jb_int(&ps, "new_policy_version", new_version, new_isnull);
	jb_string(&ps, "old_ruleset_hash", ruleset_hash(st->oldp, st->own_old));
	jb_string(&ps, "new_ruleset_hash", ruleset_hash(st->newp, st->own_new));
	jb_int(&ps, "total_strategies", st->nstrategies, false);
	jb_int(&ps, "strategies_affected", st->nstrategies_affected, false);
	jb_int(&ps, "selection_changes", st->selection_changes, false);
	jb_int(&ps, "stage_changes", st->stage_changes, false);
	jb_int(&ps, "status_changes", st->status_changes, false);
	jb_int(&ps, "rule_status_changes", st->rule_status_changes, false);
	jb_float(&ps, "impact_ratio", st->nstrategies == 0 ? 0.0 :
			 (double) st->nstrategies_affected / (double) st->nstrategies);

	wval_push_key(&ps, "diffs");
	pushJsonbValue(&ps, WJB_BEGIN_ARRAY, NULL);
	for (i = 0; i < st->naffected; i++)
	{
		Affected   *a = &st->affected[i];

		pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
		jb_string(&ps, "strategy_id", a->strategy_id);
		jb_string(&ps, "run_id", a->run_id);
		jb_string(&ps, "direction", a->tightened ? "tightened" : "relaxed");
		push_outcomes(&ps, a);
		wval_push_key(&ps, "rules");
		pushJsonbValue(&ps, WJB_BEGIN_ARRAY, NULL);
		for (f = 0; f < a->nflips; f++)
		{
			RuleFlip   *fl = &a->flips[f];

			pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
			jb_string(&ps, "rule", st->keys[fl->key]);
			jb_string(&ps, "old_status", status_name(fl->old_status));
			jb_string(&ps, "new_status", status_name(fl->new_status));
			jb_string(&ps, "old_reason_code", flip_code(st->oldp, st->own_old, st->old_idx, fl->key,
														fl->old_status, fl->old_code));
			jb_string(&ps, "new_reason_code", flip_code(st->newp, st->own_new, st->new_idx, fl->key,
														fl->new_status, fl->new_code));
			pushJsonbValue(&ps, WJB_END_OBJECT, NULL);
		}
		pushJsonbValue(&ps, WJB_END_ARRAY, NULL);
		pushJsonbValue(&ps, WJB_END_OBJECT, NULL);
	}
	pushJsonbValue(&ps, WJB_END_ARRAY, NULL);

	wval_push_key(&ps, "top_offenders");
	pushJsonbValue(&ps, WJB_BEGIN_ARRAY, NULL);
	ranked = palloc(sizeof(Affected *) * Max(st->naffected, 1));
	for (i = 0; i < st->naffected; i++)
		ranked[i] = &st->affected[i];
	if (st->naffected > 1)
		qsort(ranked, st->naffected, sizeof(Affected *), compare_offenders);
	for (i = 0; i < st->naffected && i < DIFF_TOP_OFFENDERS; i++)
	{
		Affected   *a = ranked[i];

		pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
		jb_int(&ps, "rank", i + 1, false);
		jb_string(&ps, "strategy_id", a->strategy_id);
		jb_string(&ps, "run_id", a->run_id);
		jb_string(&ps, "label", a->tightened ? "tightened" : "relaxed");
		jb_bool(&ps, "status_change", a->old_status != a->new_status);
		jb_bool(&ps, "stage_change", a->old_stage != a->new_stage);
		jb_int(&ps, "rule_flips", a->nflips, false);
		push_outcomes(&ps, a);
		pushJsonbValue(&ps, WJB_END_OBJECT, NULL);
	}
	pushJsonbValue(&ps, WJB_END_ARRAY, NULL);
	res = pushJsonbValue(&ps, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(res);
}

/* Raises 22023 for a dedupe mode other than strategy / none */
static bool
parse_dedupe(const char *dedupe)
{
	if (strcmp(dedupe, "strategy") == 0)
		return true;
	if (strcmp(dedupe, "none") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for \"dedupe\""),
				 errdetail("dedupe is \"%s\".", dedupe),
				 errhint("Accepted values: strategy (the latest run of each strategy), none (every run).")));
	return false;
}

/* The filter every replayed run passes ($1 world, $2 stage, $3 since, $4 until) */
#define HISTORY_FILTER \
	"r.world_id = $1 AND r.stage = $2 AND r.kind = 'single' AND r.status <> 'unvalidated' " \
	"AND r.created_at >= $3 AND r.created_at <= $4"

/* The columns a replay reads of a run (see replay_portal) */
#define HISTORY_COLUMNS "r.strategy_id, r.run_id::text, r.created_at, r.metrics, r.context"

/* The latest backtest run before a paper/shadow run, as wval_evaluate compares */
#define HISTORY_BASELINE \
	", (SELECT b.metrics FROM wval.evaluation_runs b WHERE b.world_id = $1 " \
	"AND b.strategy_id = r.strategy_id AND b.stage = 'backtest' AND b.kind = 'single' " \
	"AND b.status <> 'unvalidated' AND b.created_at <= r.created_at " \
	"ORDER BY b.created_at DESC, b.chain_seq DESC LIMIT 1)"

/* Runs every row of a portal (HISTORY_COLUMNS [, baseline]) through the diff */
static void
replay_portal(DiffState *st, Portal portal)
{
	for (;;)
	{
		uint64		i;

		SPI_cursor_fetch(portal, true, DIFF_FETCH);
		if (SPI_processed == 0)
			break;
		for (i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			MemoryContext old = MemoryContextSwitchTo(st->rowcxt);
			char	   *strategy = TextDatumGetCString(SPI_getbinval(tup, desc, 1, &isnull));
			char	   *run_id = TextDatumGetCString(SPI_getbinval(tup, desc, 2, &isnull));
			WvalEvalInput in;
			Datum		d;

			memset(&in, 0, sizeof(in));
			in.now = DatumGetTimestampTz(SPI_getbinval(tup, desc, 3, &isnull));
			in.metrics = DatumGetJsonbP(SPI_getbinval(tup, desc, 4, &isnull));
			if (st->needs_data_as_of)
			{
				d = SPI_getbinval(tup, desc, 5, &isnull);
				if (!isnull)
					in.has_data_as_of = wval_context_timestamp(DatumGetJsonbP(d), "data_as_of",
															   &in.data_as_of);
			}
			if (st->needs_baseline)
			{
				d = SPI_getbinval(tup, desc, 6, &isnull);
				in.baseline = isnull ? NULL : DatumGetJsonbP(d);
			}
			MemoryContextSwitchTo(old);
			diff_run(st, strategy, run_id, &in);
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
}

/* Where the latest run of a strategy is stored (dedupe 'strategy') */
typedef struct LatestEntry
{
	char	   *key;			/* strategy_id */
	TimestampTz created_at;
	int64		chain_seq;
	Oid			part;			/* the partition that holds it */
	ItemPointerData tid;
} LatestEntry;

/* Orders latest runs by partition, then position (one TID scan each) */
static int
compare_latest(const void *a, const void *b)
{
	const LatestEntry *x = *(LatestEntry *const *) a;
	const LatestEntry *y = *(LatestEntry *const *) b;

	if (x->part != y->part)
		return x->part < y->part ? -1 : 1;
	return ItemPointerCompare((ItemPointer) &x->tid, (ItemPointer) &y->tid);
}

/*
 * Replays the latest run of every strategy without sorting wide rows: one
 * narrow cursor finds where each strategy's latest run is stored (partition
 * and tuple id, both stable under the function's snapshot), then each
 * partition hands over its winners in one TID scan.
 */
static void
replay_latest(DiffState *st, Datum *values)
{
	Oid			types[4] = {TEXTOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID};
	HASHCTL		ctl;
	HTAB	   *latest;
	Portal		portal;
	HASH_SEQ_STATUS seq;
	LatestEntry *e;
	LatestEntry **all;
	long		n = 0;
	long		i;
	MemoryContext old;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(char *);
	ctl.entrysize = sizeof(LatestEntry);
	ctl.hash = strategy_hash;
	ctl.match = strategy_match;
	ctl.hcxt = st->cxt;
	latest = hash_create("wval policy diff latest runs", 1024, &ctl,
						 HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);

	portal = SPI_cursor_open_with_args(NULL,
									   "SELECT r.strategy_id, r.created_at, r.chain_seq, r.tableoid, r.ctid "
									   "FROM wval.evaluation_runs r WHERE " HISTORY_FILTER,
									   4, types, values, NULL, true, 0);
	for (;;)
	{
		uint64		k;

		SPI_cursor_fetch(portal, true, DIFF_FETCH * 10);
		if (SPI_processed == 0)
			break;
		for (k = 0; k < SPI_processed; k++)
		{
			HeapTuple	tup = SPI_tuptable->vals[k];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			bool		found;
			char	   *strategy;
			TimestampTz at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 2, &isnull));
			int64		cs = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));

			old = MemoryContextSwitchTo(st->rowcxt);
			strategy = TextDatumGetCString(SPI_getbinval(tup, desc, 1, &isnull));
			MemoryContextSwitchTo(st->cxt);
			e = (LatestEntry *) hash_search(latest, &strategy, HASH_FIND, NULL);
			if (e == NULL)
			{
				strategy = pstrdup(strategy);
				e = (LatestEntry *) hash_search(latest, &strategy, HASH_ENTER, &found);
				n++;
			}
			else if (at < e->created_at || (at == e->created_at && cs < e->chain_seq))
				e = NULL;
			if (e != NULL)
			{
				e->created_at = at;
				e->chain_seq = cs;
				e->part = DatumGetObjectId(SPI_getbinval(tup, desc, 4, &isnull));
				ItemPointerCopy((ItemPointer) DatumGetPointer(SPI_getbinval(tup, desc, 5, &isnull)), &e->tid);
			}
			MemoryContextSwitchTo(old);
			MemoryContextReset(st->rowcxt);
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);

	old = MemoryContextSwitchTo(st->cxt);
	all = palloc(sizeof(LatestEntry *) * Max(n, 1));
	i = 0;
	hash_seq_init(&seq, latest);
	while ((e = (LatestEntry *) hash_seq_search(&seq)) != NULL)
		all[i++] = e;
	if (n > 1)
		qsort(all, n, sizeof(LatestEntry *), compare_latest);
	MemoryContextSwitchTo(old);

	/* one TID scan per partition */
	for (i = 0; i < n;)
	{
		Oid			part = all[i]->part;
		long		j = i;
		long		k;
		Datum	   *tids;
		ArrayType  *arr;
		Oid			ptypes[5] = {TEXTOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TIDARRAYOID};
		Datum		pvalues[5];
		char	   *sql;

		old = MemoryContextSwitchTo(st->rowcxt);
		while (j < n && all[j]->part == part)
			j++;
		tids = palloc(sizeof(Datum) * (j - i));
		for (k = i; k < j; k++)
			tids[k - i] = PointerGetDatum(&all[k]->tid);
		arr = construct_array(tids, (int) (j - i), TIDOID, sizeof(ItemPointerData), false, TYPALIGN_SHORT);
		sql = psprintf("SELECT " HISTORY_COLUMNS "%s FROM ONLY %s r WHERE r.ctid = ANY ($5)",
					   st->needs_baseline ? HISTORY_BASELINE : "",
					   quote_qualified_identifier(get_namespace_name(get_rel_namespace(part)),
												  get_rel_name(part)));
		memcpy(pvalues, values, sizeof(Datum) * 4);
		pvalues[4] = PointerGetDatum(arr);
		MemoryContextSwitchTo(old);
		portal = SPI_cursor_open_with_args(NULL, sql, 5, ptypes, pvalues, NULL, true, 0);
		replay_portal(st, portal);
		MemoryContextReset(st->rowcxt);
		i = j;
	}
}

PG_FUNCTION_INFO_V1(wval_policy_diff_history);

/*
 * wval._policy_diff(world_id, old_policy, new_policy, stage, since, until,
 * dedupe, fail_closed, old_version, new_version) → jsonb: replays the
 * world's stored single runs of a stage (not unvalidated, created within
 * [since, until]; null bounds are open) under both policies, never with a
 * statement per run.  Called by the SQL wrappers that look the versions up.
 */
Datum
wval_policy_diff_history(PG_FUNCTION_ARGS)
{
	char	   *world;
	char	   *stage = PG_ARGISNULL(3) ? "backtest" : text_to_cstring(PG_GETARG_TEXT_PP(3));
	TimestampTz since = PG_ARGISNULL(4) ? DT_NOBEGIN : PG_GETARG_TIMESTAMPTZ(4);
	TimestampTz until = PG_ARGISNULL(5) ? DT_NOEND : PG_GETARG_TIMESTAMPTZ(5);
	bool		latest_only = parse_dedupe(PG_ARGISNULL(6) ? "strategy" : text_to_cstring(PG_GETARG_TEXT_PP(6)));
	bool		fail_closed = PG_ARGISNULL(7) ? false : PG_GETARG_BOOL(7);
	WvalPolicy *oldp;
	WvalPolicy *newp;
	DiffState  *st;
	Oid			types[4] = {TEXTOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		values[4];
	Jsonb	   *report;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" must not be null",
						PG_ARGISNULL(0) ? "world_id" : PG_ARGISNULL(1) ? "old_policy" : "new_policy"),
				 errhint("Pass the world and the two policies to compare.")));
	world = text_to_cstring(PG_GETARG_TEXT_PP(0));
	wval_check_stage(stage);
	if (since > until)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"since\" is later than \"until\""),
				 errdetail("since is %s, until is %s.", pstrdup(timestamptz_to_str(since)),
						   pstrdup(timestamptz_to_str(until))),
				 errhint("Pass a window whose start is not after its end.")));

	oldp = wval_policy_build(PG_GETARG_JSONB_P(1), fail_closed, CurrentMemoryContext);
	newp = wval_policy_build(PG_GETARG_JSONB_P(2), fail_closed, CurrentMemoryContext);
	st = diff_begin(oldp, newp, stage);
	st->unique_strategies = latest_only;
	values[0] = CStringGetTextDatum(world);
	values[1] = CStringGetTextDatum(stage);
	values[2] = TimestampTzGetDatum(since);
	values[3] = TimestampTzGetDatum(until);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (latest_only)
		replay_latest(st, values);
	else
		replay_portal(st, SPI_cursor_open_with_args(NULL,
													psprintf("SELECT " HISTORY_COLUMNS "%s FROM wval.evaluation_runs r WHERE " HISTORY_FILTER,
															 st->needs_baseline ? HISTORY_BASELINE : ""),
													4, types, values, NULL, true, 0));
	SPI_finish();

	report = diff_report(st, PG_ARGISNULL(8), PG_ARGISNULL(8) ? 0 : PG_GETARG_INT32(8),
						 PG_ARGISNULL(9), PG_ARGISNULL(9) ? 0 : PG_GETARG_INT32(9));
	MemoryContextDelete(st->cxt);
	PG_RETURN_JSONB_P(report);
}

/* A string member of a JSON run, checked as an identifier; NULL when absent */
static char *
run_string(JsonbContainer *run, int pos, const char *key, bool required)
{
	JsonbValue	k;
	JsonbValue *v;
	char	   *s;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v = findJsonbValueFromContainer(run, JB_FOBJECT, &k);
	if (v == NULL || v->type == jbvNull)
	{
		if (required)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("\"runs[%d].%s\" is missing", pos, key),
					 errhint("Each run is an object {\"strategy_id\", \"run_id\", \"metrics\"} as in the scenario files.")));
		return NULL;
	}
	if (v->type == jbvNumeric)
		return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	if (v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"runs[%d].%s\" must be a string", pos, key),
				 errhint("Each run is an object {\"strategy_id\", \"run_id\", \"metrics\"} as in the scenario files.")));
	s = pnstrdup(v->val.string.val, v->val.string.len);
	wval_check_identifier(psprintf("runs[%d].%s", pos, key), s);
	return s;
}

/* A member of a JSON run as a jsonb document, or NULL when absent or null */
static Jsonb *
run_object(JsonbContainer *run, int pos, const char *key)
{
	JsonbValue	k;
	JsonbValue *v;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v = findJsonbValueFromContainer(run, JB_FOBJECT, &k);
	if (v == NULL || v->type == jbvNull)
		return NULL;
	if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"runs[%d].%s\" must be an object", pos, key),
				 errhint("Each run is an object {\"strategy_id\", \"run_id\", \"metrics\": {...}} as in the scenario files.")));
	return JsonbValueToJsonb(v);
}

/* What walk_json_runs calls for each run */
typedef void (*RunCallback) (void *arg, int pos, const char *strategy_id, const char *run_id,
							 WvalEvalInput *in);

/*
 * Walks a JSON array of runs ({strategy_id, run_id, metrics, context}) and
 * calls back for each with the evaluation input; metrics are merged like
 * wval_check merges them.  Returns the number of runs.
 */
static int
walk_json_runs(Jsonb *runs, const char *what, RunCallback cb, void *arg, MemoryContext rowcxt)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			pos = 0;

	if (!JB_ROOT_IS_ARRAY(runs) || JB_ROOT_IS_SCALAR(runs))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" must be a JSON array", what),
				 errhint("Pass [{\"strategy_id\": ..., \"run_id\": ..., \"metrics\": {...}}, ...] as in the scenario files.")));
	it = JsonbIteratorInit(&runs->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		MemoryContext old;
		WvalEvalInput in;
		char	   *strategy;
		char	   *run_id;
		Jsonb	   *context;
		JsonbValue *baseline;

		if (tok != WJB_ELEM)
			continue;
		if (v.type != jbvBinary || !JsonContainerIsObject(v.val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("\"%s[%d]\" must be an object", what, pos),
					 errhint("Each run is an object {\"strategy_id\", \"run_id\", \"metrics\"} as in the scenario files.")));
		old = MemoryContextSwitchTo(rowcxt);
		strategy = run_string(v.val.binary.data, pos, "strategy_id", true);
		run_id = run_string(v.val.binary.data, pos, "run_id", false);
		context = run_object(v.val.binary.data, pos, "context");
		memset(&in, 0, sizeof(in));
		in.metrics = wval_merge_metrics(NULL, run_object(v.val.binary.data, pos, "metrics"));
		in.now = GetCurrentTransactionStartTimestamp();
		in.has_data_as_of = wval_context_timestamp(context, "data_as_of", &in.data_as_of);
		baseline = context ? wval_json_path(context, "baseline_metrics") : NULL;
		if (baseline && baseline->type == jbvBinary && JsonContainerIsObject(baseline->val.binary.data))
			in.baseline = JsonbValueToJsonb(baseline);
		MemoryContextSwitchTo(old);
		cb(arg, pos, strategy, run_id ? run_id : psprintf("runs[%d]", pos), &in);
		MemoryContextReset(rowcxt);
		pos++;
	}
	return pos;
}

/* RunCallback of the JSON diff: replays one run */
static void
diff_json_run(void *arg, int pos, const char *strategy_id, const char *run_id, WvalEvalInput *in)
{
	(void) pos;
	diff_run((DiffState *) arg, strategy_id, run_id, in);
}

PG_FUNCTION_INFO_V1(wval_policy_diff);

/*
 * wval_policy_diff(old_policy jsonb, new_policy jsonb, runs jsonb, stage
 * text) → jsonb: the same report for runs given as JSON (the scenario
 * files' shape [{world_id, strategy_id, run_id, metrics}], optionally with
 * context.data_as_of / context.baseline_metrics as wval_check takes them).
 */
Datum
wval_policy_diff(PG_FUNCTION_ARGS)
{
	char	   *stage = PG_ARGISNULL(3) ? "backtest" : text_to_cstring(PG_GETARG_TEXT_PP(3));
	WvalPolicy *oldp;
	WvalPolicy *newp;
	DiffState  *st;
	MemoryContext rowcxt;
	Jsonb	   *report;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" must not be null",
						PG_ARGISNULL(0) ? "old_policy" : PG_ARGISNULL(1) ? "new_policy" : "runs"),
				 errhint("Pass two policy documents and an array of runs.")));
	wval_check_stage(stage);
	oldp = wval_policy_build(PG_GETARG_JSONB_P(0), false, CurrentMemoryContext);
	newp = wval_policy_build(PG_GETARG_JSONB_P(1), false, CurrentMemoryContext);
	st = diff_begin(oldp, newp, stage);
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "wval policy diff input", ALLOCSET_DEFAULT_SIZES);
	walk_json_runs(PG_GETARG_JSONB_P(2), "runs", diff_json_run, st, rowcxt);
	report = diff_report(st, true, 0, true, 0);
	MemoryContextDelete(st->cxt);
	MemoryContextDelete(rowcxt);
	PG_RETURN_JSONB_P(report);
}

/* State of the scenario outcomes: the policy and the JSON array being built */
typedef struct OutcomeState
{
	WvalPolicy *policy;
	const char *stage;
	StringInfoData buf;
	WvalRuleBrief *rules;
	WvalMetricCache *cache;
} OutcomeState;

/* RunCallback of the scenario outcomes: decides one case */
static void
outcome_json_run(void *arg, int pos, const char *strategy_id, const char *run_id, WvalEvalInput *in)
{
	OutcomeState *os = (OutcomeState *) arg;
	WvalBriefOutcome o;

	(void) strategy_id;
	in->stage = os->stage;
	o.rules = os->rules;
	o.cache = os->cache;
	wval_metric_cache_reset(os->cache);
	wval_evaluate_policy_brief(os->policy, in, &o);
	if (pos > 0)
		appendStringInfoChar(&os->buf, ',');
	appendStringInfoString(&os->buf, "{\"run_id\":");
	wval_append_json_string(&os->buf, run_id);
	appendStringInfo(&os->buf, ",\"status\":\"%s\",\"recommended_stage\":\"%s\"}",
					 status_name(o.status), wval_stage_keys[o.stage]);
}

PG_FUNCTION_INFO_V1(wval_scenario_outcomes);

/*
 * wval._scenario_outcomes(policy jsonb, runs jsonb, stage text, fail_closed
 * boolean) → jsonb: [{run_id, status, recommended_stage}] for runs in the
 * scenario shape, the policy materialised once (scenario regression check).
 */
Datum
wval_scenario_outcomes(PG_FUNCTION_ARGS)
{
	char	   *stage = PG_ARGISNULL(2) ? "backtest" : text_to_cstring(PG_GETARG_TEXT_PP(2));
	bool		fail_closed = PG_ARGISNULL(3) ? false : PG_GETARG_BOOL(3);
	OutcomeState os;
	MemoryContext rowcxt;
	int			own;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" must not be null", PG_ARGISNULL(0) ? "policy" : "runs"),
				 errhint("Pass a policy document and an array of runs.")));
	wval_check_stage(stage);
	os.policy = wval_policy_build(PG_GETARG_JSONB_P(0), fail_closed, CurrentMemoryContext);
	os.stage = stage;
	own = wval_policy_profile_for_stage(os.policy, stage);
	os.rules = palloc0(sizeof(WvalRuleBrief) * Max(own >= 0 ? os.policy->profiles[own].nrules : 0, 1));
	os.cache = wval_metric_cache_create();
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "wval scenario outcomes", ALLOCSET_DEFAULT_SIZES);
	initStringInfo(&os.buf);
	appendStringInfoChar(&os.buf, '[');
	walk_json_runs(PG_GETARG_JSONB_P(1), "runs", outcome_json_run, &os, rowcxt);
	appendStringInfoChar(&os.buf, ']');
	MemoryContextDelete(rowcxt);
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(os.buf.data)));
}
