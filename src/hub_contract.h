/*-------------------------------------------------------------------------
 *
 * hub_contract.h
 *	  Private to the risk hub (hub.c, hub_contract.c): the limits of the
 *	  snapshot contract and the state one publish call carries through its
 *	  checks.  Other files use hub.h.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WVAL_HUB_CONTRACT_H
#define WVAL_HUB_CONTRACT_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "utils/jsonb.h"

/* contract limits (docs/risk-hub.md) */
#define TTL_DEFAULT_SEC			10
#define TTL_MAX_SEC				86400
#define MAX_POINTS_PER_SERIES	200000
#define MAX_POINTS_TOTAL		1000000
/*
 * Size limits of a snapshot (docs/risk-hub.md, "Limits").  The portfolio
 * layer holds a dense k x k covariance (8 bytes per pair, plus two k x k
 * flag matrices), parses every covariance entry and reports every filled
 * pair.  Measured on 2 busy cores: 500 weighted strategies with a full
 * covariance (125,250 entries) take about 1 s per wval_portfolio_risk,
 * 1,000 about 4.8 s; 4,000 took 3 - 20 s and 11,600 exceeded
 * PostgreSQL's 1 GB allocation limit.  The covariance may list each
 * unordered pair of 500 strategies once: 500 * 501 / 2 entries.
 */
#define MAX_WEIGHTS				500
#define MAX_COVARIANCE_ENTRIES	(MAX_WEIGHTS * (MAX_WEIGHTS + 1) / 2)
#define WEIGHT_SUM_TOLERANCE	1e-3
/* an as_of this far ahead of the hub's clock is rejected (clock skew) */
#define AS_OF_MAX_SKEW_SEC		60
#define BLOB_REF_PREFIX			"wval-blob:sha256:"

/* the three parts that can be offloaded, and their reference fields */
typedef enum OffloadPart
{
	PART_COVARIANCE,
	PART_REALIZED_RETURNS,
	PART_STRESS,
	NUM_PARTS
} OffloadPart;

extern const char *const wval_part_field[NUM_PARTS];
extern const char *const wval_part_ref_field[NUM_PARTS];

/* One offloaded part: its content and content address. */
typedef struct OffloadBlob
{
	OffloadPart part;
	Jsonb	   *content;
	char		hash[WVAL_SHA256_REF_LEN + 1];		/* sha256:<hex> */
	int			size_bytes;
} OffloadBlob;

/* Everything one publish call learns on its way through the checks. */
typedef struct SnapshotContract
{
	bool		dry_run;		/* wval_snapshot_canonical: no counting, no writes */
	TimestampTz arrival;
	/* arguments */
	char	   *world_id;
	bool		world_known;
	char	   *stage;
	const char *count_stage;	/* stage, or "invalid" when the argument is */
	char	   *actor;
	char	   *signature;
	/* world settings */
	int			offload_threshold;
	Jsonb	   *settings;		/* the world's settings, NULL when none */
	/* the snapshot */
	Jsonb	   *snapshot;
	char	   *version;
	TimestampTz as_of;
	int			ttl_sec;
	/* size of each offloadable part (entries, points, scenarios); -1 absent */
	int64		part_size[NUM_PARTS];
	/* canonical form */
	OffloadBlob blobs[NUM_PARTS];
	int			nblobs;
	char	   *blob_refs[NUM_PARTS];	/* every wval-blob ref of the payload */
	int			nrefs;
	Jsonb	   *payload;
	char	   *canonical;
	int			canonical_len;	/* bytes, UTF-8 */
	char		hash[WVAL_SHA256_REF_LEN + 1];
	/* producer */
	bool		signed_ok;
} SnapshotContract;

/* hub.c: counts a rejected publish (see "Counting rejections" in hub.c) */
extern void wval_hub_count_rejection(SnapshotContract *c, bool expired);

/* Counts the rejection and raises the error described by rest. */
#define contract_reject(c, expired, rest) \
	do { \
		wval_hub_count_rejection((c), (expired)); \
		ereport(ERROR, rest); \
	} while (0)

/* hub_contract.c: the checks, in the order of docs/risk-hub.md (hub.c's header) */
extern void wval_contract_check_stage(SnapshotContract *c);
extern void wval_contract_check_actor(SnapshotContract *c);
extern void wval_contract_check(SnapshotContract *c);
extern void wval_contract_signed_message(SnapshotContract *c, StringInfo buf);

#endif							/* WVAL_HUB_CONTRACT_H */
