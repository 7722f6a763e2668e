/*-------------------------------------------------------------------------
 *
 * notifier.c
 *	  Wake-ups of the event bus without NOTIFY in the writing transactions.
 *
 * A transaction that has issued NOTIFY takes the cluster-wide NotifyQueueLock
 * at commit (PreCommit_Notify), so when every evaluating transaction
 * NOTIFYs, concurrent commits queue on that one lock (issue 13: 67-93 % of
 * backend time at 4-16 clients).  Instead, one background worker per
 * database, the notifier, sends the wake-up: wval._emit() calls
 * wval._wake(), which only marks the transaction; after the transaction has
 * committed (XACT_EVENT_COMMIT runs after ProcArrayEndTransaction, so the
 * event is visible to every new snapshot) the backend sets the notifier's
 * process latch.  The notifier sends NOTIFY wval_events (empty payload) in a
 * transaction of its own, at most once per wval.notify_interval: the first
 * commit after a quiet interval is announced at once, later ones within the
 * interval are folded into one NOTIFY at its end.  So a wake-up never comes
 * before the commit and at most one interval (plus scheduling) after it, and
 * only the notifier ever takes the NOTIFY lock.
 *
 * Life cycle.  wval is not in shared_preload_libraries, so the notifier is a
 * dynamic background worker (RegisterDynamicBackgroundWorker), started on
 * demand by the first _emit() of a backend that finds none running in its
 * database (looked up in the backend status array by bgw_type "wval
 * notifier"; loaded through shared_preload_libraries it works the same way).
 * Two backends may start one each at the same moment: a notifier holds the
 * session advisory lock (2004312428, 1) of its database, and one that cannot
 * get it exits at once.  The notifier exits
 *   - after NOTIFIER_IDLE_MS without any commit to announce, so that it never
 *     keeps DROP DATABASE (or CREATE DATABASE ... TEMPLATE) waiting: those
 *     need a database without other sessions, hence without emitters, and
 *     wait 5 s for sessions to leave;
 *   - when wval is no longer installed in its database (checked when idle);
 *   - when wval.notify_interval is set to 0;
 *   - on SIGTERM (pg_terminate_backend, DROP DATABASE ... WITH (FORCE),
 *     shutdown) and when the postmaster dies.
 *
 * Fallback.  When no notifier runs and none can be started (no free slot
 * in max_worker_processes, single-user mode), while one is starting, when
 * the notifier has gone away before the commit, or with
 * wval.notify_interval = 0, the writing transaction NOTIFYs itself, as
 * before: correct, but back on the commit lock.
 *
 * Savepoints: a wake mark set inside a subtransaction that rolls back is
 * dropped (like a NOTIFY would be); the mark records the outermost nesting
 * level that emitted.  A prepared transaction (PREPARE TRANSACTION) wakes
 * nobody: its events are found by the consumers' poll.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "commands/async.h"
#include "commands/extension.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "tcop/tcopprot.h"
#include "utils/backend_status.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "wval.h"

/* the channel consumers LISTEN on; the payload is always empty */
#define WVAL_CHANNEL "wval_events"
/* bgw_type of the notifier (pg_stat_activity.backend_type) */
#define NOTIFIER_TYPE "wval notifier"
/* advisory lock (class, key) a running notifier holds in its database */
#define NOTIFIER_LOCK_CLASS 2004312428
#define NOTIFIER_LOCK_KEY 1
/* a notifier with nothing to announce for this long exits */
#define NOTIFIER_IDLE_MS 2000
/* how often an idle notifier checks that wval is still installed */
#define NOTIFIER_CHECK_MS 500
/* a backend that found no notifier and could not start one retries after */
#define START_RETRY_MS 1000

PGDLLEXPORT void wval_notifier_main(Datum main_arg);

/* wval.notify_interval: ms between two NOTIFYs of the notifier; 0: none */
static int	notify_interval = 10;

/* backend side: the notifier of this database as far as we know it */
static pid_t notifier_pid = 0;
/* the worker this backend registered, until it has started or stopped */
static BackgroundWorkerHandle *started_handle = NULL;
/* no new look-up or start before this time */
static TimestampTz next_attempt = 0;

/*
 * Nesting level of the outermost (sub)transaction that emitted an event to
 * be announced by the notifier; 0 when there is none.
 */
static int	wake_level = 0;

/* The PGPROC of the notifier we know of, if it still runs in our database. */
static PGPROC *
notifier_proc(void)
{
	PGPROC	   *proc;

	if (notifier_pid == 0)
		return NULL;
	proc = BackendPidGetProc(notifier_pid);
	if (proc == NULL || proc->databaseId != MyDatabaseId)
		return NULL;
	return proc;
}

/* The pid of a running notifier of our database in the status array, or 0. */
static pid_t
lookup_notifier(void)
{
	int			n = pgstat_fetch_stat_numbackends();
	int			i;

	for (i = 1; i <= n; i++)
	{
		LocalPgBackendStatus *local = pgstat_fetch_stat_local_beentry(i);
		PgBackendStatus *be;
		const char *type;

		if (local == NULL)
			continue;
		be = &local->backendStatus;
		if (be->st_backendType != B_BG_WORKER || be->st_databaseid != MyDatabaseId)
			continue;
		type = GetBackgroundWorkerTypeByPid(be->st_procpid);
		if (type != NULL && strcmp(type, NOTIFIER_TYPE) == 0)
			return be->st_procpid;
	}
	return 0;
}

/*
 * Registers a notifier for our database; false when no slot is free.  With
 * announce, it sends one NOTIFY as soon as it runs (for a commit that found
 * no notifier to wake).
 */
static bool
start_notifier(bool announce)
{
	BackgroundWorker worker;
	MemoryContext old;
	bool		ok;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "wval");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "wval_notifier_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "wval notifier for database %u", MyDatabaseId);
	snprintf(worker.bgw_type, BGW_MAXLEN, NOTIFIER_TYPE);
	worker.bgw_main_arg = ObjectIdGetDatum(MyDatabaseId);
	worker.bgw_notify_pid = 0;
	worker.bgw_extra[0] = announce ? 1 : 0;

	if (announce)
	{
		/*
		 * Called after commit, where an error would be a PANIC: no handle,
		 * so nothing is allocated (the next emit finds the worker by pid).
		 */
		return RegisterDynamicBackgroundWorker(&worker, NULL);
	}
	old = MemoryContextSwitchTo(TopMemoryContext);
	ok = RegisterDynamicBackgroundWorker(&worker, &started_handle);
	MemoryContextSwitchTo(old);
	if (!ok)
		started_handle = NULL;
	return ok;
}

/*
 * True when a running notifier will announce this transaction's commit;
 * otherwise looks one up or starts one (at most once per START_RETRY_MS)
 * for later transactions and returns false.
 */
static bool
ensure_notifier(void)
{
	TimestampTz now;

	if (notifier_proc() != NULL)
		return true;
	notifier_pid = 0;
	if (started_handle != NULL)
	{
		pid_t		pid;
		BgwHandleStatus status = GetBackgroundWorkerPid(started_handle, &pid);

		if (status == BGWH_STARTED)
		{
			notifier_pid = pid;
			if (notifier_proc() != NULL)
				return true;
			notifier_pid = 0;
		}
		if (status == BGWH_NOT_YET_STARTED)
			return false;
		/* stopped (idle, or it lost the race to another one): look again */
		pfree(started_handle);
		started_handle = NULL;
	}
	now = GetCurrentTimestamp();
	if (now < next_attempt)
		return false;
	next_attempt = TimestampTzPlusMilliseconds(now, START_RETRY_MS);
	notifier_pid = lookup_notifier();
	if (notifier_proc() != NULL)
		return true;
	notifier_pid = 0;
	(void) start_notifier(false);
	return false;
}

PG_FUNCTION_INFO_V1(wval_wake);

/*
 * Asks for a wake-up of wval_events listeners once the calling transaction
 * commits: through the notifier, or by NOTIFY in this transaction when none
 * is running (see the file header).
 */
Datum
wval_wake(PG_FUNCTION_ARGS)
{
	int			level = GetCurrentTransactionNestLevel();

	(void) fcinfo;
	if (notify_interval > 0 && !IsInParallelMode() && ensure_notifier())
	{
		if (wake_level == 0 || level < wake_level)
			wake_level = level;
	}
	else
		Async_Notify(WVAL_CHANNEL, "");
	PG_RETURN_VOID();
}

/* Hands the wake-up to the notifier after commit (or NOTIFYs before it). */
static void
notifier_xact_callback(XactEvent event, void *arg)
{
	PGPROC	   *proc;

	(void) arg;
	if (wake_level == 0)
		return;
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			/* the notifier went away since _emit: NOTIFY ourselves */
			if (notifier_proc() == NULL)
			{
				wake_level = 0;
				Async_Notify(WVAL_CHANNEL, "");
			}
			break;
		case XACT_EVENT_COMMIT:
			/*
			 * Committed and visible: wake the notifier.  If it has exited
			 * since PRE_COMMIT (idle), start one that announces at once.
			 */
			wake_level = 0;
			proc = notifier_proc();
			if (proc != NULL)
				SetLatch(&proc->procLatch);
			else if (started_handle == NULL)
				(void) start_notifier(true);
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			wake_level = 0;
			break;
		default:
			break;
	}
}

/* Drops the wake mark of a rolled-back savepoint; merges a released one. */
static void
notifier_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						  SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();

	(void) mySubid;
	(void) parentSubid;
	(void) arg;
	if (wake_level == 0 || wake_level < level)
		return;
	if (event == SUBXACT_EVENT_ABORT_SUB)
		wake_level = 0;
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
		wake_level = level - 1;
}

/* Registers wval.notify_interval and the callbacks (from _PG_init). */
void
wval_notifier_init(void)
{
	DefineCustomIntVariable("wval.notify_interval",
							"Interval between two wake-ups (NOTIFY wval_events) sent by the notifier.",
							"The notifier background worker announces committed events at most once per "
							"interval; 0 makes every writing transaction NOTIFY itself (the commit lock "
							"of NOTIFY is then taken by every writer).",
							&notify_interval,
							10, 0, 1000,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);
	RegisterXactCallback(notifier_xact_callback, NULL);
	RegisterSubXactCallback(notifier_subxact_callback, NULL);
}

/* Sends one NOTIFY wval_events in a transaction of its own. */
static void
send_notify(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	pgstat_report_activity(STATE_RUNNING, "NOTIFY " WVAL_CHANNEL);
	Async_Notify(WVAL_CHANNEL, "");
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Exits; a commit that set our latch after we last looked (a backend found
 * us in the proc array a moment ago: we were idle, or we lost the start-up
 * race to another notifier) is announced first, so that it is not lost.
 * What remains is the instant between this look and leaving the proc array;
 * consumers' polls cover it, as they cover any lost wake-up.
 */
static void
notifier_exit(void)
{
	pg_memory_barrier();
	if (MyLatch->is_set)
		send_notify();
	proc_exit(0);
}

/* True while wval is installed in the notifier's database. */
static bool
wval_installed(void)
{
	bool		installed;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	installed = OidIsValid(get_extension_oid("wval", true));
	CommitTransactionCommand();
	return installed;
}

/* Takes the notifier lock of the database; false when another one holds it. */
static bool
lock_database_notifier(void)
{
	LOCKTAG		tag;
	LockAcquireResult res;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, NOTIFIER_LOCK_CLASS, NOTIFIER_LOCK_KEY, 2);
	StartTransactionCommand();
	res = LockAcquire(&tag, ExclusiveLock, true, true);
	CommitTransactionCommand();
	return res != LOCKACQUIRE_NOT_AVAIL;
}

/*
 * Main loop of the notifier of one database (main_arg: its oid).  Waits on
 * its latch; a set latch means "a transaction with events has committed".
 */
void
wval_notifier_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);
	bool		pending = false;
	TimestampTz last_notify = 0;
	TimestampTz last_activity;
	TimestampTz last_check;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	/*
	 * Process start-up sets the latch (SwitchToSharedLatch); forget that
	 * before backends can find us in the proc array, so that every later
	 * set is a commit to announce.
	 */
	ResetLatch(MyLatch);
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname(NOTIFIER_TYPE);
	/*
	 * NOTIFY assigns an xid, so each of our transactions writes a commit
	 * record; notifications are not durable anyway, so do not wait for the
	 * WAL flush (listeners are signalled at commit either way).
	 */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);

	if (!lock_database_notifier() || !wval_installed())
		notifier_exit();

	/* started by a commit that found no notifier: announce it at once */
	pending = (MyBgworkerEntry->bgw_extra[0] == 1);
	last_activity = last_check = GetCurrentTimestamp();
	for (;;)
	{
		TimestampTz now = GetCurrentTimestamp();
		long		timeout;
		int			rc;

		if (notify_interval <= 0)
		{
			/* writers NOTIFY themselves from now on; announce what we hold */
			if (pending)
				send_notify();
			break;
		}
		if (pending && now >= TimestampTzPlusMilliseconds(last_notify, notify_interval))
		{
			send_notify();
			pending = false;
			last_notify = last_activity = now = GetCurrentTimestamp();
		}
		if (pending)
			timeout = TimestampDifferenceMilliseconds(now,
													  TimestampTzPlusMilliseconds(last_notify, notify_interval));
		else
		{
			if (now >= TimestampTzPlusMilliseconds(last_activity, NOTIFIER_IDLE_MS))
				break;
			if (now >= TimestampTzPlusMilliseconds(last_check, NOTIFIER_CHECK_MS))
			{
				if (!wval_installed())
					break;
				last_check = now;
			}
			timeout = NOTIFIER_CHECK_MS;
		}

		rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					   Max(timeout, 1), PG_WAIT_EXTENSION);
		/*
		 * Reset only a latch we saw set: one set after a timeout woke us is
		 * seen by the next wait (or by notifier_exit), not cleared unseen.
		 */
		if (rc & WL_LATCH_SET)
			ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (rc & WL_LATCH_SET)
		{
			pending = true;
			last_activity = GetCurrentTimestamp();
		}
	}
	notifier_exit();
}
