/*-------------------------------------------------------------------------
 *
 * hub.h
 *	  The risk hub's C API for other wval files: the snapshot contract's
 *	  shapes (stress results, covariance entries), reads of stored
 *	  snapshots, the header every snapshot report carries, and the
 *	  announcement of a newly stored snapshot.
 *
 * The hub is a lower layer: it knows nothing of portfolios.  The
 * portfolio layer (risk.c, portfolio.c) reads snapshots through this API
 * and learns of new ones by registering a hook (wval_snapshot_stored_hook)
 * at load time; the hub never calls up.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WVAL_HUB_H
#define WVAL_HUB_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "utils/jsonb.h"

/* the shape of stress results (hub_contract.c, wval_stress_shape) */
typedef enum WvalStressProblem
{
	WVAL_STRESS_OK,
	WVAL_STRESS_BAD_NAME,
	WVAL_STRESS_NOT_OBJECT,
	WVAL_STRESS_NOT_NUMBER
} WvalStressProblem;

extern WvalStressProblem wval_stress_shape(JsonbContainer *stress, bool check_names, int *n,
										   char **scenario, char **where, JsonbValue *bad);

/* One covariance entry of a snapshot ("a,b" or "a:b" -> number). */
typedef struct WvalCovEntry
{
	char	   *a;				/* the smaller id of the pair */
	char	   *b;
	double		value;
	char	   *key;			/* as published, for messages */
} WvalCovEntry;

/*
 * Parses a covariance object into entries sorted by pair.  Returns NULL
 * when it is valid, else a message; *bad_key / *bad_value describe the
 * offending entry.
 */
extern const char *wval_parse_covariance(JsonbContainer *cont, WvalCovEntry **out, int *nout,
										 char **bad_key, char **bad_value);

/* A stored snapshot as the hub reads it back. */
typedef struct WvalStoredSnapshot
{
	char	   *world_id;
	char	   *version;
	char	   *hash;
	char	   *stage;
	char	   *actor;
	TimestampTz as_of;
	Jsonb	   *stored;			/* the payload as stored (wval-blob references) */
	Jsonb	   *expanded;		/* the payload, references expanded */
	Jsonb	   *world_settings; /* the world's settings, NULL when none */
} WvalStoredSnapshot;

/*
 * Reads the world's latest fresh snapshot (of one stage when stage is not
 * NULL) into *out, allocated in the caller's memory context.  Raises
 * WV010 when the world does not exist (or the caller may not read it) or
 * has no snapshot, WV005 when the latest one is older than
 * wval.snapshot_max_age.  Opens its own SPI connection (nested when the
 * caller has one).
 */
extern void wval_snapshot_read_latest(const char *world_id, const char *stage,
									  WvalStoredSnapshot *out);

/*
 * Pushes the keys every snapshot report starts with (world_id, version,
 * hash, stage, actor, as_of) into an open jsonb object.
 */
extern void wval_snapshot_header_push(JsonbParseState **ps, const char *world_id,
									  const char *version, const char *hash,
									  const char *stage, const char *actor,
									  TimestampTz as_of);

/* What the hub announces once it stored a new snapshot (not on a dedupe hit). */
typedef struct WvalSnapshotStored
{
	const char *world_id;
	const char *version;
	const char *stage;
	Jsonb	   *world_settings; /* NULL when the world has none */
} WvalSnapshotStored;

/*
 * A function told of every newly stored snapshot, inside the publishing
 * transaction, connected to SPI, after risk_snapshot_updated was emitted.
 * An error it raises fails the publish.
 */
typedef void (*WvalSnapshotStoredHook) (const WvalSnapshotStored *s);

/* Registers a hook (at _PG_init); hooks run in the order registered. */
extern void wval_snapshot_stored_register(WvalSnapshotStoredHook hook);

/* settings (hub.c) */
extern int	wval_snapshot_max_age_s;
extern int	wval_offload_threshold;

extern void wval_hub_init(void);

#endif							/* WVAL_HUB_H */
