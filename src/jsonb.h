/*-------------------------------------------------------------------------
 *
 * jsonb.h
 *	  The one jsonb builder of wval, over pushJsonbValue.
 *
 * Build a document straight into a JsonbParseState, without JSON text:
 *
 *		JsonbParseState *ps = NULL;
 *
 *		wval_jb_begin_object(&ps);
 *		wval_jb_key(&ps, "version");
 *		wval_jb_string(&ps, version);
 *		wval_jb_key(&ps, "n");
 *		wval_jb_int64(&ps, n);
 *		result = wval_jb_end(&ps, WJB_END_OBJECT);
 *
 * A scalar pushed inside an array is an element, inside an object the
 * value of the key pushed just before.  wval_jb_end returns the finished
 * Jsonb when the outermost container closes, NULL before.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WVAL_JSONB_H
#define WVAL_JSONB_H

#include "postgres.h"

#include "utils/jsonb.h"
#include "utils/numeric.h"

extern void wval_jb_begin_object(JsonbParseState **ps);
extern void wval_jb_begin_array(JsonbParseState **ps);
extern Jsonb *wval_jb_end(JsonbParseState **ps, JsonbIteratorToken token);
extern Jsonb *wval_jb_end_object(JsonbParseState **ps);
extern Jsonb *wval_jb_end_array(JsonbParseState **ps);
extern void wval_jb_key(JsonbParseState **ps, const char *key);
extern void wval_jb_string(JsonbParseState **ps, const char *s);
extern void wval_jb_stringn(JsonbParseState **ps, const char *s, int len);
extern void wval_jb_int64(JsonbParseState **ps, int64 n);
extern void wval_jb_float8(JsonbParseState **ps, double d);
extern void wval_jb_numeric(JsonbParseState **ps, Numeric n);
extern void wval_jb_bool(JsonbParseState **ps, bool b);
extern void wval_jb_null(JsonbParseState **ps);
extern void wval_jb_jsonb(JsonbParseState **ps, const Jsonb *j);
extern void wval_jb_value(JsonbParseState **ps, JsonbValue *v);
extern void wval_jb_merge_object(JsonbParseState **ps, const Jsonb *obj);
extern Numeric wval_float8_numeric(double d);

/* key: value in one call */
extern void wval_jb_kv_string(JsonbParseState **ps, const char *key, const char *s);
extern void wval_jb_kv_int64(JsonbParseState **ps, const char *key, int64 n);
extern void wval_jb_kv_float8(JsonbParseState **ps, const char *key, double d);
extern void wval_jb_kv_bool(JsonbParseState **ps, const char *key, bool b);
extern void wval_jb_kv_null(JsonbParseState **ps, const char *key);
extern void wval_jb_kv_finite(JsonbParseState **ps, const char *key, bool known, double d);
extern void wval_jb_kv_jsonb(JsonbParseState **ps, const char *key, const Jsonb *j);

#endif							/* WVAL_JSONB_H */
