/*-------------------------------------------------------------------------
 *
 * policy_materialise.c
 *	  The materialised document of a ruleset and its hash, the per-backend
 *	  cache of built policy versions, and the SQL functions that validate a
 *	  policy or show a ruleset.  The DSL itself is policy.c's.
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
 * holds it lives.  Which version applies is looked up per call (the
 * version active at the run's stage: a staged rollout keeps several
 * versions of one world in force at once), so entries are never dropped
 * for being older; the least recently used entry makes room.  The table
 * itself can go away: DROP EXTENSION wval
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

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "jsonb.h"
#include "policy.h"
#include "spi.h"
#include "wval.h"

/* The "value" a check of this kind reads, NULL for the metric itself. */
static const char *
value_kind_name(WvalValueKind k)
{
	switch (k)
	{
		case WVAL_VAL_ABS_METRIC:
			return "abs";
		case WVAL_VAL_HALF_GAP:
			return "abs_difference";
		case WVAL_VAL_LAG:
			return "age_seconds";
		case WVAL_VAL_HISTORY:
			return "years_as_seconds";
		case WVAL_VAL_BASELINE_RATIO:
			return "ratio_to_latest_backtest";
		case WVAL_VAL_METRIC:
			break;
	}
	return NULL;
}

/*
 * Pushes a check's "op" and "threshold": between [min, max], or >, >= min,
 * or <= max (the materialised document and each RuleResult's details).
 */
void
wval_push_threshold(JsonbParseState **ps, const WvalRule *r)
{
	if (r->has_min && r->has_max)
	{
		wval_jb_kv_string(ps, "op", "between");
		wval_jb_key(ps, "threshold");
		wval_jb_begin_array(ps);
		wval_jb_float8(ps, r->min);
		wval_jb_float8(ps, r->max);
		wval_jb_end_array(ps);
	}
	else
	{
		wval_jb_kv_string(ps, "op", r->has_min ? (r->strict_min ? ">" : ">=") : "<=");
		wval_jb_kv_float8(ps, "threshold", r->has_min ? r->min : r->max);
	}
}

/* Pushes one check of the materialised document: key: {metric, [metric2], [value], op, threshold, severity, owner, mode}. */
static void
push_rule(JsonbParseState **ps, const WvalRule *r)
{
	const char *value = value_kind_name(r->vkind);

	wval_jb_key(ps, r->key);
	wval_jb_begin_object(ps);
	wval_jb_kv_string(ps, "metric", r->metric);
	if (r->metric2)
		wval_jb_kv_string(ps, "metric2", r->metric2);
	if (value != NULL)
		wval_jb_kv_string(ps, "value", value);
	wval_push_threshold(ps, r);
	wval_jb_kv_string(ps, "severity", wval_severity_name(r->severity));
	wval_jb_kv_string(ps, "owner", wval_owner_name(r->owner));
	wval_jb_kv_string(ps, "mode", wval_mode_name(r->mode));
	wval_jb_end_object(ps);
}

/*
 * Builds the materialised document of a ruleset and its hash: sha256 of
 * the document's jsonb text (policy.c's header).
 */
void
wval_policy_materialise(WvalRuleset *rs)
{
	JsonbParseState *ps = NULL;
	int			i;
	char		hex[WVAL_SHA256_HEX_LEN + 1];
	char	   *text;

	wval_jb_begin_object(&ps);
	wval_jb_kv_string(&ps, "profile", rs->profile);
	wval_jb_kv_string(&ps, "on_error", wval_on_name(rs->on_error));
	wval_jb_kv_string(&ps, "on_missing_metric", wval_on_name(rs->on_missing));
	wval_jb_key(&ps, "checks");
	wval_jb_begin_object(&ps);
	for (i = 0; i < rs->nrules; i++)
		push_rule(&ps, &rs->rules[i]);
	wval_jb_end_object(&ps);
	rs->materialised = wval_jb_end_object(&ps);
	text = JsonbToCString(NULL, &rs->materialised->root, VARSIZE(rs->materialised));
	wval_sha256_hex(text, strlen(text), hex);
	snprintf(rs->hash, sizeof(rs->hash), "sha256:%s", hex);
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
 * read by primary key (the caller has checked the world access).  Other versions of the
 * same world stay: during a staged rollout stages apply different ones.
 */
WvalPolicy *
wval_policy_for_version(const char *world_id, int version, bool fail_closed)
{
	int			i;
	int			victim = 0;
	Datum		keys[2];
	WvalKeyScan scan;
	HeapTuple	tup;
	bool		isnull;
	Jsonb	   *doc = NULL;
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
	}

	if (policy_cache_cxt == NULL)
		policy_cache_cxt = AllocSetContextCreate(TopMemoryContext, "wval policy cache",
												 ALLOCSET_DEFAULT_SIZES);
	/* by primary key (spi.h): nothing to parse or plan in a new backend */
	keys[0] = CStringGetTextDatum(world_id);
	keys[1] = Int32GetDatum(version);
	wval_key_scan_begin(&scan, "policy_versions", 2, keys);
	tup = wval_key_scan_next(&scan, false);
	if (tup != NULL)
		doc = DatumGetJsonbPCopy(wval_key_scan_attr(&scan, tup, "policy", &isnull));
	wval_key_scan_end(&scan);
	if (tup == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_UNKNOWN_OBJECT),
				 errmsg("policy version %d of world \"%s\" does not exist", version, world_id),
				 errhint("See wval.policy_versions for the published versions.")));

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

/*
 * The policy version active for a stage of a world: the latest activation
 * (highest activation_id) that names the stage or names no stages (a
 * staged rollout, docs/policy.md).  False when there is none.  Read by
 * primary key, newest first; the caller has checked the world access.
 */
bool
wval_policy_active_version(const char *world_id, const char *stage, int *version)
{
	Datum		key = CStringGetTextDatum(world_id);
	WvalKeyScan scan;
	HeapTuple	tup;
	bool		found = false;

	wval_key_scan_begin(&scan, "policy_activations", 1, &key);
	while (!found && (tup = wval_key_scan_next(&scan, true)) != NULL)
	{
		bool		isnull;
		Datum		stages = wval_key_scan_attr(&scan, tup, "stages", &isnull);

		if (!isnull)
		{
			Datum	   *elems;
			bool	   *nulls;
			int			n,
						i;

			deconstruct_array(DatumGetArrayTypeP(stages), TEXTOID, -1, false, TYPALIGN_INT,
							  &elems, &nulls, &n);
			for (i = 0; i < n && !found; i++)
			{
				text	   *t = DatumGetTextPP(elems[i]);

				found = !nulls[i] && VARSIZE_ANY_EXHDR(t) == strlen(stage) &&
					memcmp(VARDATA_ANY(t), stage, VARSIZE_ANY_EXHDR(t)) == 0;
			}
			if (!found)
				continue;
		}
		found = true;
		*version = DatumGetInt32(wval_key_scan_attr(&scan, tup, "version", &isnull));
	}
	wval_key_scan_end(&scan);
	return found;
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
	JsonbParseState *ps = NULL;
	int			i;
	Jsonb	   *result;

	policy = wval_policy_build(doc, fail_closed, CurrentMemoryContext);
	wval_jb_begin_object(&ps);
	for (i = 0; i < policy->nprofiles; i++)
		wval_jb_kv_string(&ps, policy->profiles[i].profile, policy->profiles[i].hash);
	result = wval_jb_end_object(&ps);
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
	JsonbParseState *ps = NULL;

	policy = wval_policy_build(doc, fail_closed, CurrentMemoryContext);
	p = wval_policy_profile_for_stage(policy, stage);
	if (p < 0)
		PG_RETURN_NULL();

	/* the materialised document plus its "ruleset_hash" */
	wval_jb_begin_object(&ps);
	wval_jb_merge_object(&ps, policy->profiles[p].materialised);
	wval_jb_kv_string(&ps, "ruleset_hash", policy->profiles[p].hash);
	PG_RETURN_JSONB_P(wval_jb_end_object(&ps));

}

