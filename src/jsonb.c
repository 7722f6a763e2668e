/*-------------------------------------------------------------------------
 *
 * jsonb.c
 *	  The one jsonb builder of wval (see jsonb.h).
 *
 * Numbers are written as JSON text would write them: a double in its
 * shortest exact decimal form (double_to_shortest_decimal), NaN and
 * ±Infinity, which JSON has no number for, as the strings "NaN",
 * "Infinity" and "-Infinity" (wval_append_float8 writes the same).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/shortest_dec.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "jsonb.h"

/* Pushes a scalar as the next element of an array or the value of the last key. */
void
wval_jb_value(JsonbParseState **ps, JsonbValue *v)
{
	Assert(*ps != NULL);
	pushJsonbValue(ps, (*ps)->contVal.type == jbvArray ? WJB_ELEM : WJB_VALUE, v);
}

/* Opens an object (at the top, as an element or as the value of the last key). */
void
wval_jb_begin_object(JsonbParseState **ps)
{
	pushJsonbValue(ps, WJB_BEGIN_OBJECT, NULL);
}

/* Opens an array (at the top, as an element or as the value of the last key). */
void
wval_jb_begin_array(JsonbParseState **ps)
{
	pushJsonbValue(ps, WJB_BEGIN_ARRAY, NULL);
}

/* Closes the open container; the finished document once the outermost one closes, else NULL. */
Jsonb *
wval_jb_end(JsonbParseState **ps, JsonbIteratorToken token)
{
	JsonbValue *v = pushJsonbValue(ps, token, NULL);

	return *ps == NULL ? JsonbValueToJsonb(v) : NULL;
}

/* Closes the open object (see wval_jb_end). */
Jsonb *
wval_jb_end_object(JsonbParseState **ps)
{
	return wval_jb_end(ps, WJB_END_OBJECT);
}

/* Closes the open array (see wval_jb_end). */
Jsonb *
wval_jb_end_array(JsonbParseState **ps)
{
	return wval_jb_end(ps, WJB_END_ARRAY);
}

/* Pushes an object key. */
void
wval_jb_key(JsonbParseState **ps, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(ps, WJB_KEY, &k);
}

/* Pushes a string of len bytes. */
void
wval_jb_stringn(JsonbParseState **ps, const char *s, int len)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) s;
	v.val.string.len = len;
	wval_jb_value(ps, &v);
}

/* Pushes a string; null when s is NULL. */
void
wval_jb_string(JsonbParseState **ps, const char *s)
{
	if (s == NULL)
		wval_jb_null(ps);
	else
		wval_jb_stringn(ps, s, strlen(s));
}

/* Pushes a numeric. */
void
wval_jb_numeric(JsonbParseState **ps, Numeric n)
{
	JsonbValue	v;

	v.type = jbvNumeric;
	v.val.numeric = n;
	wval_jb_value(ps, &v);
}

/* Pushes an integer. */
void
wval_jb_int64(JsonbParseState **ps, int64 n)
{
	wval_jb_numeric(ps, int64_to_numeric(n));
}

/* A finite double as a numeric of its shortest exact decimal form. */
Numeric
wval_float8_numeric(double d)
{
	char		buf[DOUBLE_SHORTEST_DECIMAL_LEN];

	Assert(isfinite(d));
	double_to_shortest_decimal_buf(d, buf);
	return DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(buf),
											   ObjectIdGetDatum(InvalidOid),
											   Int32GetDatum(-1)));
}

/* Pushes a double: shortest decimal; NaN and ±Infinity as strings (see the file header). */
void
wval_jb_float8(JsonbParseState **ps, double d)
{
	if (isnan(d))
		wval_jb_string(ps, "NaN");
	else if (isinf(d))
		wval_jb_string(ps, d > 0 ? "Infinity" : "-Infinity");
	else
		wval_jb_numeric(ps, wval_float8_numeric(d));
}

/* Pushes a boolean. */
void
wval_jb_bool(JsonbParseState **ps, bool b)
{
	JsonbValue	v;

	v.type = jbvBool;
	v.val.boolean = b;
	wval_jb_value(ps, &v);
}

/* Pushes null. */
void
wval_jb_null(JsonbParseState **ps)
{
	JsonbValue	v;

	v.type = jbvNull;
	wval_jb_value(ps, &v);
}

/* Pushes a whole jsonb document (object, array or scalar) as one value; null when j is NULL. */
void
wval_jb_jsonb(JsonbParseState **ps, const Jsonb *j)
{
	JsonbValue	v;

	if (j == NULL)
	{
		wval_jb_null(ps);
		return;
	}
	if (JB_ROOT_IS_SCALAR(j))
	{
		if (!JsonbExtractScalar((JsonbContainer *) &j->root, &v))
			elog(ERROR, "could not extract a jsonb scalar");
	}
	else
	{
		v.type = jbvBinary;
		v.val.binary.data = (JsonbContainer *) &j->root;
		v.val.binary.len = VARSIZE(j) - VARHDRSZ;
	}
	wval_jb_value(ps, &v);
}

/* Pushes key: string value (see wval_jb_string). */
void
wval_jb_kv_string(JsonbParseState **ps, const char *key, const char *s)
{
	wval_jb_key(ps, key);
	wval_jb_string(ps, s);
}

/* Pushes key: int64 value (see wval_jb_int64). */
void
wval_jb_kv_int64(JsonbParseState **ps, const char *key, int64 n)
{
	wval_jb_key(ps, key);
	wval_jb_int64(ps, n);
}

/* Pushes key: float8 value (see wval_jb_float8). */
void
wval_jb_kv_float8(JsonbParseState **ps, const char *key, double d)
{
	wval_jb_key(ps, key);
	wval_jb_float8(ps, d);
}

/* Pushes key: bool value (see wval_jb_bool). */
void
wval_jb_kv_bool(JsonbParseState **ps, const char *key, bool b)
{
	wval_jb_key(ps, key);
	wval_jb_bool(ps, b);
}

/* Pushes key: d, or key: null when d is not known or not finite. */
void
wval_jb_kv_finite(JsonbParseState **ps, const char *key, bool known, double d)
{
	if (known && isfinite(d))
		wval_jb_kv_float8(ps, key, d);
	else
		wval_jb_kv_null(ps, key);
}

/* Pushes key: jsonb value (see wval_jb_jsonb). */
void
wval_jb_kv_jsonb(JsonbParseState **ps, const char *key, const Jsonb *j)
{
	wval_jb_key(ps, key);
	wval_jb_jsonb(ps, j);
}

/* Pushes key: null. */
void
wval_jb_kv_null(JsonbParseState **ps, const char *key)
{
	wval_jb_key(ps, key);
	wval_jb_null(ps);
}

/* Pushes every top-level key: value pair of the object obj into the open object. */
void
wval_jb_merge_object(JsonbParseState **ps, const Jsonb *obj)
{
	JsonbIterator *it = JsonbIteratorInit((JsonbContainer *) &obj->root);
	JsonbValue	v;
	JsonbIteratorToken tok;

	Assert(JB_ROOT_IS_OBJECT(obj));
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			pushJsonbValue(ps, WJB_KEY, &v);
		else if (tok == WJB_VALUE)
			wval_jb_value(ps, &v);
	}
}
