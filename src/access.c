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
 * the grants in force for a role are loaded once and kept until something
 * that can change the answer happens:
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
 * reads the grants as the owner of wval.world_grants with search_path
 * pg_catalog, pg_temp (the table is not readable by every role, and a
 * caller's search_path must not steer the query).
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
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
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
/* the grants in force for a role: membership counts, a grant of a dropped role names no role */
static WvalPlan access_load_plan =
WVAL_PLAN("SELECT g.world_id, bool_or(g.privilege OPERATOR(pg_catalog.=) 'write') "
		  "FROM wval.current_world_grants g "
		  "JOIN pg_catalog.pg_roles gr ON gr.rolname OPERATOR(pg_catalog.=) g.role_name "
		  "WHERE g.privilege OPERATOR(pg_catalog.<>) 'none' "
		  "AND pg_catalog.pg_has_role($1, gr.oid, 'MEMBER') "
		  "GROUP BY g.world_id", 1, OIDOID);

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

/* The owner of wval.world_grants: the role the grants are read as. */
static Oid
access_grants_owner(void)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(access_grants_relid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", access_grants_relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * Loads the grants in force for role into slot (the caller has validated
 * the cache and names the slot's role once this returns).  Runs as the
 * table's owner with a fixed search_path.
 */
static void
access_load(AccessRole *slot, Oid role)
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
	Datum		args[1];
	uint64		i;
	MemoryContext oldcxt;

	slot->superuser = superuser_arg(role);
	slot->ngrants = 0;
	slot->grants = NULL;
	if (slot->superuser)
		return;

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(access_grants_owner(),
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
	save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	args[0] = ObjectIdGetDatum(role);
	(void) wval_spi_exec(&access_load_plan, args, NULL, true, 0, SPI_OK_SELECT);

	oldcxt = MemoryContextSwitchTo(access_cxt);
	slot->grants = palloc0(sizeof(AccessGrant) * Max(SPI_processed, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		if (wval_spi_isnull(i, 1))
			continue;
		slot->grants[slot->ngrants].world_id = wval_spi_text(i, 1);
		slot->grants[slot->ngrants].write = wval_spi_bool(i, 2, false);
		slot->ngrants++;
	}
	MemoryContextSwitchTo(oldcxt);
	SPI_finish();

	AtEOXact_GUC(true, save_nestlevel);
	SetUserIdAndSecContext(save_userid, save_sec_context);
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
