/*-------------------------------------------------------------------------
 *
 * access.c
 *	  World access checks with a per-backend cache (docs/security.md).
 *
 * Every read path asks "may the calling role read this world?" and every
 * history write asks "may it write it?".  The answer comes from
 * wval.current_world_grants (the latest grant per role and world, membership
 * counting).  Asking SQL each time planned a SECURITY DEFINER SQL function
 * on every call (a sixth of wval_evaluate's CPU for a non-superuser); here
 * the grants in force for a role are loaded once, by an index scan of
 * wval.world_grants (no statement to plan: a sixth of the first call of a
 * new session was planning one), and kept until something that can change
 * the answer happens:
 *
 *	 - a row of wval.world_grants is written: the table's statement trigger
 *	   wval._grants_changed() sends a relcache invalidation of the table,
 *	   delivered to every backend at commit (and to this one at the next
 *	   command, so a grant is seen by the statements after it and forgotten
 *	   again if its transaction rolls back);
 *	 - role membership or a role itself changes (GRANT role, DROP ROLE,
 *	   ALTER ROLE ... SUPERUSER, a rename): syscache callbacks on
 *	   pg_auth_members and pg_authid;
 *	 - the table is dropped and created again (DROP/CREATE EXTENSION): its
 *	   relcache invalidation, or a cache reset.
 *
 * Callbacks only mark the cache stale; the next look-up rebuilds it, so no
 * memory a caller still uses is freed inside an invalidation.  A cache miss
 * reads the table directly (spi.h, key scans): no privilege check and no
 * row-level security apply, and no caller's search_path steers anything.
 *
 * IDENTIFICATION
 *	  src/access.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "access.h"
#include "spi.h"
#include "wval.h"

/* The grants in force for one role: world → write? ('*' = every world). */
typedef struct AccessGrant
{
	char	   *world_id;
	bool		write;
} AccessGrant;

typedef struct AccessRole
{
	Oid			role;
	bool		superuser;
	int			ngrants;
	AccessGrant *grants;
} AccessRole;

/* A few roles per backend at most (a login, the roles it SETs). */
#define ACCESS_CACHE_ROLES 8

static MemoryContext access_cxt = NULL;
static AccessRole access_roles[ACCESS_CACHE_ROLES];
static int	access_nroles = 0;
static int	access_next_victim = 0;
static bool access_stale = false;
static bool access_callbacks_registered = false;
static Oid	access_grants_relid = InvalidOid;
/* Relcache callback: wval.world_grants changed (or every relation did). */
static void
access_relcache_callback(Datum arg, Oid relid)
{
	(void) arg;
	if (relid == InvalidOid || relid == access_grants_relid)
		access_stale = true;
}

/* Syscache callback: a role or a membership changed. */
static void
access_syscache_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	(void) arg;
	(void) cacheid;
	(void) hashvalue;
	access_stale = true;
}

/* Empties the cache when it was marked stale; registers the callbacks once. */
static void
access_validate(void)
{
	if (!access_callbacks_registered)
	{
		CacheRegisterRelcacheCallback(access_relcache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(AUTHMEMROLEMEM, access_syscache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(AUTHOID, access_syscache_callback, (Datum) 0);
		access_callbacks_registered = true;
	}
	if (access_cxt == NULL)
		access_cxt = AllocSetContextCreate(CacheMemoryContext, "wval world access",
										   ALLOCSET_SMALL_SIZES);
	if (access_stale || access_grants_relid == InvalidOid)
	{
		MemoryContextReset(access_cxt);
		access_nroles = 0;
		access_next_victim = 0;
		access_grants_relid = get_relname_relid("world_grants", get_namespace_oid("wval", false));
		access_stale = false;
	}
}

/*
 * Adds to slot the grant in force for one (role_name, world_id): the latest
 * row of the pair, when it grants something to a role that exists and that
 * role is a member of (membership counts; a grant of a dropped role names
 * no role).
 */
static void
access_add_in_force(AccessRole *slot, Oid role, HeapTuple latest, TupleDesc desc, int *max)
{
	bool		isnull;
	char	   *privilege = TextDatumGetCString(heap_getattr(latest, 3, desc, &isnull));
	Oid			grantee;

	if (strcmp(privilege, "none") == 0)
		return;
	grantee = get_role_oid(NameStr(*DatumGetName(heap_getattr(latest, 1, desc, &isnull))), true);
	if (!OidIsValid(grantee) || !is_member_of_role(role, grantee))
		return;
	if (slot->ngrants == *max)
	{
		*max *= 2;
		slot->grants = repalloc(slot->grants, sizeof(AccessGrant) * *max);
	}
	slot->grants[slot->ngrants].world_id = TextDatumGetCString(heap_getattr(latest, 2, desc, &isnull));
	slot->grants[slot->ngrants].write = strcmp(privilege, "write") == 0;
	slot->ngrants++;
}

/*
 * Loads the grants in force for role into slot (the caller has validated
 * the cache and names the slot's role once this returns).  Reads
 * wval.world_grants in primary-key order (role_name, world_id, granted_at):
 * the last row of each (role_name, world_id) is the one in force, as in
 * the view wval.current_world_grants.  No statement: nothing to parse or
 * plan in a new backend, and no caller's search_path involved.
 */
static void
access_load(AccessRole *slot, Oid role)
{
	WvalKeyScan scan;
	HeapTuple	tup;
	HeapTuple	prev = NULL;
	TupleDesc	desc;
	int			max = 8;
	MemoryContext oldcxt;

	slot->superuser = superuser_arg(role);
	slot->ngrants = 0;
	slot->grants = NULL;
	if (slot->superuser)
		return;

	oldcxt = MemoryContextSwitchTo(access_cxt);
	slot->grants = palloc0(sizeof(AccessGrant) * max);
	MemoryContextSwitchTo(oldcxt);
	wval_key_scan_begin(&scan, "world_grants", 0, NULL);
	desc = RelationGetDescr(scan.rel);
	if (SPI_fnumber(desc, "role_name") != 1 || SPI_fnumber(desc, "world_id") != 2 ||
		SPI_fnumber(desc, "privilege") != 3)
		elog(ERROR, "unexpected columns of wval.world_grants");
	while ((tup = wval_key_scan_next(&scan, false)) != NULL)
	{
		bool		isnull;

		if (prev != NULL &&
			(strcmp(NameStr(*DatumGetName(heap_getattr(prev, 1, desc, &isnull))),
					NameStr(*DatumGetName(heap_getattr(tup, 1, desc, &isnull)))) != 0 ||
			 !DatumGetBool(DirectFunctionCall2Coll(texteq, C_COLLATION_OID,
												   heap_getattr(prev, 2, desc, &isnull),
												   heap_getattr(tup, 2, desc, &isnull)))))
		{
			oldcxt = MemoryContextSwitchTo(access_cxt);
			access_add_in_force(slot, role, prev, desc, &max);
			MemoryContextSwitchTo(oldcxt);
		}
		if (prev != NULL)
			heap_freetuple(prev);
		prev = heap_copytuple(tup);
	}
	if (prev != NULL)
	{
		oldcxt = MemoryContextSwitchTo(access_cxt);
		access_add_in_force(slot, role, prev, desc, &max);
		MemoryContextSwitchTo(oldcxt);
	}
	wval_key_scan_end(&scan);
}

/* The cached grants of role, loaded on first use. */
static AccessRole *
access_role(Oid role)
{
	int			i;
	AccessRole *slot;

	access_validate();
	for (i = 0; i < access_nroles; i++)
		if (access_roles[i].role == role)
			return &access_roles[i];
	if (access_nroles < ACCESS_CACHE_ROLES)
		slot = &access_roles[access_nroles];
	else
	{
		slot = &access_roles[access_next_victim];
		access_next_victim = (access_next_victim + 1) % ACCESS_CACHE_ROLES;
	}
	/* invisible until loaded: an error while loading leaves no half entry */
	slot->role = InvalidOid;
	access_load(slot, role);
	slot->role = role;
	if (slot == &access_roles[access_nroles])
		access_nroles++;
	return slot;
}

/*
 * May role read (write = false) or write the world?  world NULL asks about
 * every world: only a '*' grant answers yes.  Superusers may do everything.
 */
bool
wval_access_allowed(Oid role, const char *world_id, bool write)
{
	AccessRole *r = access_role(role);
	int			i;

	if (r->superuser)
		return true;
	for (i = 0; i < r->ngrants; i++)
	{
		const AccessGrant *g = &r->grants[i];

		if ((g->write || !write) &&
			(strcmp(g->world_id, "*") == 0 || (world_id != NULL && strcmp(g->world_id, world_id) == 0)))
			return true;
	}
	return false;
}

PG_FUNCTION_INFO_V1(wval_world_access);

/*
 * wval._world_access(role oid, world_id text, privilege text) → boolean:
 * privilege 'read' asks for read or write, anything else for write; a null
 * role gives null, a null world asks about every world.
 */
Datum
wval_world_access(PG_FUNCTION_ARGS)
{
	char	   *world = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	bool		write = PG_ARGISNULL(2) || strcmp(text_to_cstring(PG_GETARG_TEXT_PP(2)), "read") != 0;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	PG_RETURN_BOOL(wval_access_allowed(PG_GETARG_OID(0), world, write));
}

PG_FUNCTION_INFO_V1(wval_can_read);

/*
 * wval._can_read(world_id text) → boolean: may the role that called into
 * wval (current_user outside SECURITY DEFINER functions) read the world?
 */
Datum
wval_can_read(PG_FUNCTION_ARGS)
{
	char	   *world = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));

	PG_RETURN_BOOL(wval_access_allowed(GetOuterUserId(), world, false));
}

PG_FUNCTION_INFO_V1(wval_grants_changed);

/*
 * wval._grants_changed(): statement trigger of wval.world_grants; every
 * backend forgets the grants it cached when the writing transaction commits.
 */
Datum
wval_grants_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("wval._grants_changed() must be called as a trigger")));
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	return PointerGetDatum(NULL);
}
