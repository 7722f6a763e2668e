/*-------------------------------------------------------------------------
 *
 * util.c
 *	  Small helpers shared by wval's C files: identifier checks, sha256,
 *	  and the exact text forms used for hashing (JSON strings, floats).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/cryptohash.h"
#include "common/sha2.h"
#include "common/shortest_dec.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "port/pg_bswap.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "wval.h"

/*
 * Raises 22023 unless value is a valid wval identifier: non-empty, at most
 * WVAL_MAX_IDENT_BYTES bytes, no control characters.
 */
void
wval_check_identifier(const char *field, const char *value)
{
	size_t		len;
	const unsigned char *p;

	if (value == NULL || value[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" must not be empty", field),
				 errhint("Pass a non-empty identifier of at most %d bytes.",
						 WVAL_MAX_IDENT_BYTES)));
	len = strlen(value);
	if (len > WVAL_MAX_IDENT_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" is too long", field),
				 errdetail("The value has %zu bytes.", len),
				 errhint("Identifiers have at most %d bytes.",
						 WVAL_MAX_IDENT_BYTES)));
	for (p = (const unsigned char *) value; *p; p++)
	{
		if (*p < 0x20 || *p == 0x7f)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("\"%s\" contains a control character", field),
					 errdetail("Byte 0x%02x at offset %d.", *p,
							   (int) (p - (const unsigned char *) value)),
					 errhint("Identifiers must not contain control characters.")));
	}
}

/* Writes the lowercase hex sha256 of data into out (65 bytes with NUL). */
void
wval_sha256_hex(const char *data, size_t len, char *out)
{
	pg_cryptohash_ctx *ctx;
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	static const char hex[] = "0123456789abcdef";
	int			i;

	ctx = pg_cryptohash_create(PG_SHA256);
	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) data, len) < 0 ||
		pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
	{
		pg_cryptohash_free(ctx);
		elog(ERROR, "could not compute sha256");
	}
	pg_cryptohash_free(ctx);
	for (i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
	{
		out[2 * i] = hex[digest[i] >> 4];
		out[2 * i + 1] = hex[digest[i] & 0x0f];
	}
	out[2 * PG_SHA256_DIGEST_LENGTH] = '\0';
}

/* Appends str as a JSON string literal (quoted and escaped). */
void
wval_append_json_string(StringInfo buf, const char *str)
{
	escape_json(buf, str);
}

/*
 * Appends a float8 in its shortest exact decimal form, independent of
 * extra_float_digits; non-finite values as the JSON strings wval stores.
 */
void
wval_append_float8(StringInfo buf, double value)
{
	char		tmp[DOUBLE_SHORTEST_DECIMAL_LEN];

	if (isnan(value))
		appendStringInfoString(buf, "\"NaN\"");
	else if (isinf(value))
		appendStringInfoString(buf, value > 0 ? "\"Infinity\"" : "\"-Infinity\"");
	else
	{
		double_to_shortest_decimal_buf(value, tmp);
		appendStringInfoString(buf, tmp);
	}
}

/* True when v is an object container (NULL is not). */
bool
wval_jbv_is_object(const JsonbValue *v)
{
	return v != NULL && v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}

/* What kind of JSON value v is, for error details ("a string", "an object" ...). */
const char *
wval_jbv_type_name(const JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "a string";
		case jbvNumeric:
			return "a number";
		case jbvBool:
			return "a boolean";
		case jbvArray:
			return "an array";
		case jbvObject:
			return "an object";
		case jbvBinary:
			return JsonContainerIsObject(v->val.binary.data) ? "an object" :
				JsonContainerIsArray(v->val.binary.data) ? "an array" : "a scalar";
		default:
			return "a JSON value";
	}
}

/* The JSON text of v, cut (multibyte-safe) after about maxlen bytes, for error details. */
char *
wval_jbv_text(const JsonbValue *v, int maxlen)
{
	char	   *s;

	if (v->type == jbvBinary)
		s = JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
	else
	{
		Jsonb	   *jb = JsonbValueToJsonb((JsonbValue *) v);

		s = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
	}
	if ((int) strlen(s) > maxlen)
	{
		int			cut = pg_mbcliplen(s, strlen(s), maxlen - 3);

		s[cut] = '\0';
		s = psprintf("%s...", s);
	}
	return s;
}

/* Pushes an object key onto a jsonb parse state. */
void
wval_push_key(JsonbParseState **state, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(state, WJB_KEY, &k);
}

/*
 * "sha256:" and the hex sha256 of a return series as big-endian float8 bytes,
 * recomputable in SQL: sha256(float8send(r_1) || ... || float8send(r_n)).
 */
char *
wval_returns_hash(const double *r, int n)
{
	char	   *bytes = palloc(sizeof(uint64) * Max(n, 1));
	char		hex[65];
	int			i;

	for (i = 0; i < n; i++)
	{
		uint64		u;

		memcpy(&u, &r[i], sizeof(u));
		u = pg_hton64(u);
		memcpy(bytes + i * sizeof(u), &u, sizeof(u));
	}
	wval_sha256_hex(bytes, sizeof(uint64) * n, hex);
	pfree(bytes);
	return psprintf("sha256:%s", hex);
}

/*
 * A JSON number as a double; false when v is absent, not a number, or does
 * not fit a finite double (jsonb has no NaN: a "NaN" arrives as a string).
 * The one numeric -> float8 conversion of JSON input: it never raises
 * 22003 (numeric_float8 does for 1e400; jsonb numbers are unbounded).
 */
bool
wval_jbv_double(const JsonbValue *v, double *out)
{
	if (v == NULL || v->type != jbvNumeric)
		return false;
	*out = DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow,
											  NumericGetDatum(v->val.numeric)));
	return isfinite(*out);
}

/*
 * The JSON number v (jbvNumeric) as a finite double; raises sqlerrcode
 * (WV001 for metric input, WV002 for a policy, ...) naming path when it
 * does not fit one, e.g. 1e400.
 */
double
wval_jbv_number(const JsonbValue *v, const char *path, int sqlerrcode)
{
	double		d;

	Assert(v->type == jbvNumeric);
	if (!wval_jbv_double(v, &d))
		ereport(ERROR,
				(errcode(sqlerrcode),
				 errmsg("\"%s\" is out of range for a double precision number", path),
				 errdetail("%s is %s.", path, wval_jbv_text(v, 60)),
				 errhint("Numbers must be finite and at most 1.7976931348623157e308 in magnitude.")));
	return d;
}
