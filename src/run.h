/*-------------------------------------------------------------------------
 *
 * run.h
 *	  The one writer of evaluation runs (run.c): every kind of run —
 *	  single, live, portfolio, cohort, bypass and imported — is stored by
 *	  wval_run_store, in C, or through its SQL wrapper wval._store_run.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WVAL_RUN_H
#define WVAL_RUN_H

#include "postgres.h"

#include "bus.h"

#include "datatype/timestamp.h"
#include "utils/date.h"
#include "utils/jsonb.h"


/*
 * A run to store: the columns of wval.evaluation_runs.  A NULL pointer (or
 * a false has_* flag) is SQL null, except where a column has a default:
 * run_id (a new uuid), kind ("single"), context, metrics and results ({}),
 * created_at (the transaction's start).  The chain columns are set only for
 * an imported run whose links the importer computed; otherwise the chain
 * trigger (store.c) assigns them.
 */
typedef struct WvalRun
{
	Datum		run_id;			/* uuid Datum; (Datum) 0: a new one */
	const char *world_id;
	const char *strategy_id;
	const char *stage;
	const char *kind;
	const char *campaign_id;
	const char *risk_tier;
	const char *model_card_version;
	const char *code_hash;
	Jsonb	   *data_snapshot;
	Jsonb	   *context;
	const char *client_run_id;
	const char *returns_hash;
	Jsonb	   *metrics;
	bool		has_policy_version;
	int32		policy_version;
	const char *ruleset_hash;
	const char *profile;
	const char *status;
	const char *recommended_stage;
	Jsonb	   *recommendation;
	Jsonb	   *results;		/* check key -> RuleResult (wval.rule_results derives its rows) */
	Datum		linked_run_id;	/* uuid Datum or (Datum) 0 */
	Datum		supersedes;		/* uuid Datum or (Datum) 0 */
	bool		has_as_of;
	DateADT		as_of;
	const char *created_by;
	bool		has_created_at;
	TimestampTz created_at;
	bool		has_chain;		/* imported: chain_seq, prev_hash, row_hash given */
	int64		chain_seq;
	const char *prev_hash;
	const char *row_hash;
	bool		emit;			/* emit evaluation_run_created (imports do not) */
	const WvalEvent *followup;	/* emitted right after it (portfolio: the
								 * candidate's evaluation_run_updated), or NULL */
} WvalRun;

extern void wval_run_init(WvalRun *run);
extern Datum wval_run_store(WvalRun *run);

#endif							/* WVAL_RUN_H */
