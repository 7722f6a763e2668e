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

/* uninstall.c */
extern void wval_uninstall_init(void);
extern void wval_evaluate_init(void);

/* util.c */
extern void wval_check_identifier(const char *field, const char *value);
extern const char *wval_identifier_problem(const char *value, size_t len);
extern void wval_sha256_hex(const char *data, size_t len, char *out);	/* out: 65 bytes */
extern void wval_append_json_string(StringInfo buf, const char *str);
extern void wval_append_float8(StringInfo buf, double value);
extern bool wval_jbv_is_object(const JsonbValue *v);
extern bool wval_jbv_double(const JsonbValue *v, double *out);
extern double wval_jbv_number(const JsonbValue *v, const char *path, int sqlerrcode);
extern const char *wval_jbv_type_name(const JsonbValue *v);
extern char *wval_jbv_text(const JsonbValue *v, int maxlen);
extern void wval_push_key(JsonbParseState **state, const char *key);
extern char *wval_returns_hash(const double *r, int n);

/* notifier.c */
extern void wval_notifier_init(void);

/* schedule.c */
extern void wval_schedule_init(void);

/* store.c */
extern void wval_store_init(void);
extern bool wval_purge_guard_active(void);

#endif							/* WVAL_H */
