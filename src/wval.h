/*-------------------------------------------------------------------------
 *
 * wval.h
 *	  Declarations shared by the C files of the wval extension.
 *
 * Error classes (README.md, "Errors"): every error a caller can trigger carries
 * one of the WVxxx SQLSTATEs below, or a standard code where one fits
 * (22023 invalid parameter, 42501 insufficient privilege).
 *
 *-------------------------------------------------------------------------
 */
#ifndef WVAL_H
#define WVAL_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "utils/jsonb.h"

#define ERRCODE_WVAL_INVALID_METRIC_INPUT	MAKE_SQLSTATE('W','V','0','0','1')
#define ERRCODE_WVAL_INVALID_POLICY			MAKE_SQLSTATE('W','V','0','0','2')
#define ERRCODE_WVAL_APPEND_ONLY			MAKE_SQLSTATE('W','V','0','0','3')
#define ERRCODE_WVAL_CONTRACT_VIOLATION		MAKE_SQLSTATE('W','V','0','0','4')
#define ERRCODE_WVAL_SNAPSHOT_EXPIRED		MAKE_SQLSTATE('W','V','0','0','5')
#define ERRCODE_WVAL_HASH_MISMATCH			MAKE_SQLSTATE('W','V','0','0','6')
#define ERRCODE_WVAL_VERSION_COLLISION		MAKE_SQLSTATE('W','V','0','0','7')
#define ERRCODE_WVAL_IMPACT_EXCEEDED		MAKE_SQLSTATE('W','V','0','0','8')
#define ERRCODE_WVAL_GOVERNANCE				MAKE_SQLSTATE('W','V','0','0','9')
#define ERRCODE_WVAL_UNKNOWN_OBJECT			MAKE_SQLSTATE('W','V','0','1','0')
#define ERRCODE_WVAL_RETENTION				MAKE_SQLSTATE('W','V','0','1','1')

/*
 * identifiers (world_id, strategy_id, actor, producer, group ...): not
 * blank, <= 200 bytes, no control, bidi-control or zero-width characters
 */
#define WVAL_MAX_IDENT_BYTES 200

/* hex digits of a sha256 digest, and the length of "sha256:<hex>" */
#define WVAL_SHA256_HEX_LEN	64
#define WVAL_SHA256_REF_LEN	(7 + WVAL_SHA256_HEX_LEN)

/*
 * The stages a run or a snapshot is evaluated at, in promotion order
 * (util.c, wval_stage_table), with the default_profile_by_stage key of each
 * (docs/policy.md: wval_stage_keys; -1: none, the stage uses the profile of its
 * own name).  The same four stages are the CHECK of evaluation_runs.stage
 * and risk_snapshots.stage and the lists the SQL functions accept.  One
 * list differs on purpose: a strategy's deployment stage
 * (wval.deployments, live.sql) has no shadow (a shadow run evaluates a
 * strategy without deploying it) and adds retired.  SQL reads both lists
 * from here: wval._stages() and wval._recommended_stages() (wval.sql) are
 * these tables, and the domains wval.stage and wval.recommended_stage check
 * against them.  The hub's publish
 * counters add the pseudo-stage "invalid" for a publish whose stage
 * argument is none of these.
 */
/* what a validation run may recommend, lowest first (default_profile_by_stage keys) */
#define WVAL_NSTAGE_KEYS 3
extern const char *const wval_stage_keys[WVAL_NSTAGE_KEYS];

typedef enum WvalStage
{
	WVAL_STAGE_BACKTEST,
	WVAL_STAGE_PAPER,
	WVAL_STAGE_SHADOW,
	WVAL_STAGE_LIVE,
	WVAL_NSTAGES
} WvalStage;

typedef struct WvalStageDef
{
	const char *name;
	int			profile_key;	/* index into wval_stage_keys, -1 when none */
	bool		vs_backtest;	/* runs are compared with the latest backtest run
								 * (paper_shadow_consistency checks apply) */
} WvalStageDef;

extern const WvalStageDef wval_stage_table[WVAL_NSTAGES];
extern int	wval_stage_index(const char *name);
extern const char *wval_stage_list(void);
extern bool wval_stage_vs_backtest(const char *name);

/* uninstall.c */
extern void wval_uninstall_init(void);
extern void wval_evaluate_init(void);

/* util.c */
extern void wval_check_identifier(const char *field, const char *value);
extern const char *wval_identifier_problem(const char *value, size_t len);
extern void wval_sha256_hex(const char *data, size_t len, char *out);	/* out: WVAL_SHA256_HEX_LEN + 1 bytes */
extern void wval_append_json_string(StringInfo buf, const char *str);
extern void wval_append_float8(StringInfo buf, double value);
extern bool wval_jbv_is_object(const JsonbValue *v);
extern bool wval_jbv_double(const JsonbValue *v, double *out);
extern double wval_jbv_number(const JsonbValue *v, const char *path, int sqlerrcode);
extern const char *wval_jbv_type_name(const JsonbValue *v);
extern char *wval_jbv_text(const JsonbValue *v, int maxlen);
extern char *wval_returns_hash(const double *r, int n);
extern char *wval_jbv_cstring(const JsonbValue *v);
extern bool wval_jbv_is_array(const JsonbValue *v);
extern JsonbValue *wval_object_get(JsonbContainer *c, const char *key);
extern bool wval_world_setting_double(Jsonb *settings, const char *key, double *out);
extern void wval_sha256_utf8_hex(const char *s, int len, char *hex);
extern char *wval_iso_utc(TimestampTz ts);
extern bool wval_parse_iso8601(const char *s, TimestampTz *result);

/* observability.c: the evaluation latency histogram */
#define WVAL_NLATENCY_BOUNDS	10
#define WVAL_NLATENCY_BUCKETS	(WVAL_NLATENCY_BOUNDS + 1)	/* the last is +Inf */
extern const double wval_latency_bounds_s[WVAL_NLATENCY_BOUNDS];
extern int	wval_latency_bucket(double seconds);

/* notifier.c */
extern void wval_notifier_init(void);
extern void wval_wake_listeners(void);

/* schedule.c */
extern void wval_schedule_init(void);

/* store.c */
extern void wval_store_init(void);
extern bool wval_purge_guard_active(void);

#endif							/* WVAL_H */
