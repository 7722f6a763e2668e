/*-------------------------------------------------------------------------
 *
 * uninstall.c
 *	  Uninstalling wval is a deliberate act.
 *
 * DROP EXTENSION wval removes every table of the extension, and with them
 * the append-only history that wval promises never to lose.  An event
 * trigger on ddl_command_start (wval._guard_drop) sees the parse tree of
 * DROP EXTENSION / DROP SCHEMA before anything is removed and refuses the
 * drop with WV003 while history exists, unless a superuser has set
 * wval.allow_drop = on.  An allowed drop also removes wval's pg_cron jobs
 * (they would otherwise fail every minute in a database without wval).
 *
 * The trigger belongs to the extension, so it is still there when DROP
 * EXTENSION starts; it is gone once the drop has happened.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/event_trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "nodes/parsenodes.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "wval.h"

/* wval.allow_drop: a superuser's confirmation that the history may go */
static bool allow_drop = false;

/* Registers the wval.allow_drop setting. */
void
wval_uninstall_init(void)
{
	DefineCustomBoolVariable("wval.allow_drop",
							 "Allows DROP EXTENSION wval (and DROP SCHEMA wval) while history exists.",
							 "Set it to on, as a superuser, in the session that drops the extension, "
							 "after the history has been exported (pg_dump --format=custom of the database).",
							 &allow_drop,
							 false,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);
}

/* True when a DROP statement names wval's extension or schema. */
static bool
drop_names_wval(DropStmt *stmt)
{
	ListCell   *lc;

	if (stmt->removeType != OBJECT_EXTENSION && stmt->removeType != OBJECT_SCHEMA)
		return false;
	foreach(lc, stmt->objects)
	{
		Node	   *name = lfirst(lc);

		if (IsA(name, String) && strcmp(strVal(name), "wval") == 0)
			return true;
	}
	return false;
}

/* Number of rows of the history tables (runs, policy versions, audit log). */
static int64
history_rows(void)
{
	int64		n = 0;
	bool		isnull;

	if (SPI_execute("SELECT (SELECT count(*) FROM (SELECT 1 FROM wval.evaluation_runs LIMIT 1) r)"
					" + (SELECT count(*) FROM (SELECT 1 FROM wval.policy_versions LIMIT 1) v)"
					" + (SELECT count(*) FROM (SELECT 1 FROM wval.audit_log LIMIT 1) a)",
					true, 1) == SPI_OK_SELECT && SPI_processed == 1)
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			n = DatumGetInt64(d);
	}
	return n;
}

/* Removes wval's pg_cron jobs of this database (when pg_cron is installed). */
static void
unschedule_jobs(void)
{
	SPI_execute("DO $unschedule$ BEGIN"
				" IF to_regclass('cron.job') IS NOT NULL THEN"
				"  PERFORM cron.unschedule(j.jobid) FROM cron.job j"
				"   WHERE j.jobname LIKE 'wval:%' AND j.database = current_database();"
				" END IF;"
				" END $unschedule$",
				false, 0);
}

PG_FUNCTION_INFO_V1(wval_guard_drop);

/*
 * Event trigger (ddl_command_start, DROP EXTENSION / DROP SCHEMA): refuses
 * to drop wval while history exists unless wval.allow_drop is on; removes
 * the pg_cron jobs of an allowed drop.
 */
Datum
wval_guard_drop(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata;
	int64		rows;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("wval._guard_drop() is an event trigger function")));
	trigdata = (EventTriggerData *) fcinfo->context;
	if (trigdata->parsetree == NULL || !IsA(trigdata->parsetree, DropStmt) ||
		!drop_names_wval((DropStmt *) trigdata->parsetree))
		PG_RETURN_NULL();

	SPI_connect();
	rows = history_rows();
	if (rows > 0 && !allow_drop)
	{
		SPI_finish();
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_APPEND_ONLY),
				 errmsg("wval holds history: dropping the extension would delete it"),
				 errdetail("Schema wval has evaluation runs, policy versions or audit rows; DROP EXTENSION removes them with their tables."),
				 errhint("Export the history first (pg_dump --format=custom of the whole database), then, as a superuser, "
						 "SET wval.allow_drop = on in the same session and drop again.")));
	}
	unschedule_jobs();
	SPI_finish();
	PG_RETURN_NULL();
}
