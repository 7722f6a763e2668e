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

#include "catalog/pg_type.h"
#include "common/shortest_dec.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "port/pg_bswap.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#ifdef USE_OPENSSL
/* SHA256_Init/Update/Final: see wval_sha256_hex */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>
#else
#include "common/cryptohash.h"
#include "common/sha2.h"
#endif

#include "wval.h"

/*
 * Unicode characters that are whitespace (a name made only of them is
 * blank).
 */
static bool
ident_is_space(pg_wchar c)
{
	return c == ' ' || c == 0x00A0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
		c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/*
 * What is wrong with one character of an identifier, NULL when nothing:
 * control characters (C0, DEL, C1), bidirectional controls and invisible
 * (zero-width) characters make two different identifiers look the same,
 * or one look like another, in a report, a log or a terminal.
 */
static const char *
ident_bad_char(pg_wchar c)
{
	if (c < 0x20 || c == 0x7F || (c >= 0x80 && c <= 0x9F))
		return "contains a control character";
	if ((c >= 0x202A && c <= 0x202E) || (c >= 0x2066 && c <= 0x2069) ||
		c == 0x200E || c == 0x200F || c == 0x061C)
		return "contains a bidirectional control character";
	if ((c >= 0x200B && c <= 0x200D) || c == 0x2060 || c == 0xFEFF)
		return "contains a zero-width character";
	return NULL;
}

/*
 * Scans an identifier of len bytes (not NUL-terminated): NULL when it is
 * valid, else what is wrong with it as a phrase ("is blank", "contains a
 * zero-width character" ...), with the offending character and its byte
 * offset in *bad_char / *bad_offset (when the problem is a character).
 * In a database whose encoding is not UTF-8 only the single-byte controls
 * are recognised.
 */
static const char *
ident_scan(const char *value, size_t len, pg_wchar *bad_char, int *bad_offset)
{
	const unsigned char *p = (const unsigned char *) value;
	const unsigned char *end = p + len;
	bool		utf8 = GetDatabaseEncoding() == PG_UTF8;
	bool		blank = true;

	*bad_char = 0;
	*bad_offset = -1;
	if (len == 0)
		return "is empty";
	if (len > WVAL_MAX_IDENT_BYTES)
		return "is longer than 200 bytes";
	while (p < end)
	{
		pg_wchar	c;
		int			clen;
		const char *bad;

		if (utf8 && *p >= 0x80)
		{
			clen = pg_utf_mblen(p);
			if (clen > end - p || !pg_utf8_islegal(p, clen))
			{
				*bad_char = *p;
				*bad_offset = (int) (p - (const unsigned char *) value);
				return "is not valid UTF-8";
			}
			c = utf8_to_unicode(p);
		}
		else
		{
			clen = 1;
			c = *p;
			if (!utf8 && c >= 0x80)
				c = 'x';		/* C1 controls are characters only in UTF-8 */
		}
		bad = ident_bad_char(c);
		if (bad != NULL)
		{
			*bad_char = c;
			*bad_offset = (int) (p - (const unsigned char *) value);
			return bad;
		}
		if (!ident_is_space(c))
			blank = false;
		p += clen;
	}
	return blank ? "is blank" : NULL;
}

/*
 * NULL when the len bytes at value are a valid wval identifier, else what
 * is wrong ("is blank", "contains a control character" ...), for callers
 * that raise their own error class (the snapshot contract: WV004).
 */
const char *
wval_identifier_problem(const char *value, size_t len)
{
	pg_wchar	c;
	int			offset;

	return ident_scan(value, len, &c, &offset);
}

/* What a validation run may recommend, lowest first (wval.h). */
const char *const wval_stage_keys[WVAL_NSTAGE_KEYS] = {
	"backtest_only", "paper_only", "paper_ok_live_candidate"
};

/* The stages, in promotion order, and their default_profile_by_stage keys (wval.h). */
const WvalStageDef wval_stage_table[WVAL_NSTAGES] = {
	[WVAL_STAGE_BACKTEST] = {"backtest", 0, false},	/* backtest_only */
	[WVAL_STAGE_PAPER] = {"paper", 1, true},	/* paper_only */
	[WVAL_STAGE_SHADOW] = {"shadow", -1, true},
	[WVAL_STAGE_LIVE] = {"live", 2, false}, /* paper_ok_live_candidate */
};

/* A text[] of n C strings. */
static ArrayType *
text_array(const char *const *names, int n, size_t stride)
{
	Datum	   *elems = palloc(sizeof(Datum) * n);
	int			i;

	for (i = 0; i < n; i++)
		elems[i] = CStringGetTextDatum(*(const char *const *) ((const char *) names + i * stride));
	return construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT);
}

PG_FUNCTION_INFO_V1(wval_stages);

/* wval._stages() → text[]: the evaluation stages, lowest first (the domain wval.stage). */
Datum
wval_stages(PG_FUNCTION_ARGS)
{
	PG_RETURN_ARRAYTYPE_P(text_array(&wval_stage_table[0].name, WVAL_NSTAGES, sizeof(WvalStageDef)));
}

PG_FUNCTION_INFO_V1(wval_recommended_stages);

/* wval._recommended_stages() → text[]: what a run may recommend, lowest first (the domain wval.recommended_stage). */
Datum
wval_recommended_stages(PG_FUNCTION_ARGS)
{
	PG_RETURN_ARRAYTYPE_P(text_array(wval_stage_keys, WVAL_NSTAGE_KEYS, sizeof(const char *)));
}

/* The WvalStage of a stage name, -1 when it names none. */
int
wval_stage_index(const char *name)
{
	int			i;

	for (i = 0; name != NULL && i < WVAL_NSTAGES; i++)
		if (strcmp(wval_stage_table[i].name, name) == 0)
			return i;
	return -1;
}

/* True when runs of the stage are compared with the latest backtest run (wval.h). */
bool
wval_stage_vs_backtest(const char *name)
{
	int			s = wval_stage_index(name);

	return s >= 0 && wval_stage_table[s].vs_backtest;
}

/* The stage names, comma-separated in promotion order, for messages. */
const char *
wval_stage_list(void)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < WVAL_NSTAGES; i++)
		appendStringInfo(&buf, "%s%s", i > 0 ? ", " : "", wval_stage_table[i].name);
	return buf.data;
}

/*
 * Raises 22023 unless value is a valid wval identifier (world, strategy,
 * actor, producer, consumer group, ...): not null, not blank (empty or only
 * whitespace), at most WVAL_MAX_IDENT_BYTES bytes, and without control,
 * bidirectional-control or zero-width characters (docs/store.md,
 * "Identifiers").  Every identifier wval takes goes through here, from C
 * directly and from SQL through wval._ident().
 */
void
wval_check_identifier(const char *field, const char *value)
{
	const char *problem;
	pg_wchar	c;
	int			offset;
	size_t		len;

	if (value == NULL || value[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" must not be %s", field, value == NULL ? "null" : "empty"),
				 errhint("Pass a non-empty identifier of at most %d bytes.",
						 WVAL_MAX_IDENT_BYTES)));
	len = strlen(value);
	problem = ident_scan(value, len, &c, &offset);
	if (problem == NULL)
		return;
	if (len > WVAL_MAX_IDENT_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" is too long", field),
				 errdetail("The value has %zu bytes.", len),
				 errhint("Identifiers have at most %d bytes.",
						 WVAL_MAX_IDENT_BYTES)));
	if (offset < 0)				/* blank */
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" must not be blank", field),
				 errdetail("%s is '%s'.", field, value),
				 errhint("Pass a non-blank identifier of at most %d bytes.",
						 WVAL_MAX_IDENT_BYTES)));
	if (c < 0x80)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" %s", field, problem),
				 errdetail("Byte 0x%02x at offset %d.", (unsigned int) c, offset),
				 errhint("Identifiers must not contain control characters.")));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("\"%s\" %s", field, problem),
			 errdetail("Character U+%04X at byte offset %d.", (unsigned int) c, offset),
			 errhint("Identifiers must not contain control, bidirectional-control or zero-width characters.")));
}

/*
 * Writes the lowercase hex sha256 of data into out (65 bytes with NUL).
 *
 * With an OpenSSL build of PostgreSQL, pg_cryptohash goes through OpenSSL's
 * EVP layer, whose first digest in a backend fetches the implementation
 * from OpenSSL's provider (3 to 4 ms, measured on a fresh process: a sizeable
 * part of the first evaluation of a new session), and every digest
 * allocates a context.  OpenSSL's low-level SHA256_* functions (deprecated
 * in OpenSSL 3 but present) run the same CPU-specific code without the
 * provider.  Without OpenSSL, pg_cryptohash is PostgreSQL's own sha2.c,
 * which has no such cost.  The digests are the same (test/evaluate.sql
 * compares them with sha256()).
 */
void
wval_sha256_hex(const char *data, size_t len, char *out)
{
	static const char hex[] = "0123456789abcdef";
	uint8		digest[32];
	int			i;
#ifdef USE_OPENSSL
	SHA256_CTX	ctx;

	if (!SHA256_Init(&ctx) || !SHA256_Update(&ctx, data, len) || !SHA256_Final(digest, &ctx))
		elog(ERROR, "could not compute sha256");
#else
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);

	if (ctx == NULL || pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) data, len) < 0 ||
		pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
		elog(ERROR, "could not compute sha256");
	pg_cryptohash_free(ctx);
#endif
	for (i = 0; i < 32; i++)
	{
		out[2 * i] = hex[digest[i] >> 4];
		out[2 * i + 1] = hex[digest[i] & 0x0f];
	}
	out[64] = '\0';
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

/*
 * "sha256:" and the hex sha256 of a return series as big-endian float8 bytes,
 * recomputable in SQL: sha256(float8send(r_1) || ... || float8send(r_n)).
 */
char *
wval_returns_hash(const double *r, int n)
{
	char	   *bytes = palloc(sizeof(uint64) * Max(n, 1));
	char		hex[WVAL_SHA256_HEX_LEN + 1];
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

/* A NUL-terminated copy of a jsonb string value. */
char *
wval_jbv_cstring(const JsonbValue *v)
{
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* True when v is an array container. */
bool
wval_jbv_is_array(const JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data);
}

/* Looks up a top-level key of an object container; NULL when absent. */
JsonbValue *
wval_object_get(JsonbContainer *c, const char *key)
{
	return getKeyJsonValueFromContainer(c, key, strlen(key), NULL);
}

/* Reads an integer or number setting of a world's settings object (NULL: none). */
bool
wval_world_setting_double(Jsonb *settings, const char *key, double *out)
{
	JsonbValue *v;

	if (settings == NULL || !JB_ROOT_IS_OBJECT(settings))
		return false;
	v = wval_object_get(&settings->root, key);
	return v != NULL && wval_jbv_double(v, out);
}

/* Lowercase hex sha256 of the UTF-8 form of a server-encoded string; hex: WVAL_SHA256_HEX_LEN + 1 bytes. */
void
wval_sha256_utf8_hex(const char *s, int len, char *hex)
{
	char	   *utf8 = pg_server_to_any(s, len, PG_UTF8);

	wval_sha256_hex(utf8, strlen(utf8), hex);
}

/* Formats a timestamptz as ISO-8601 UTC with microseconds: 2024-05-01T12:00:00.000000Z. */
char *
wval_iso_utc(TimestampTz ts)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		return pstrdup("?");
	return psprintf("%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
					tm.tm_year, tm.tm_mon, tm.tm_mday,
					tm.tm_hour, tm.tm_min, tm.tm_sec, (int) fsec);
}

/* ---------------------------------------------------------------------
 * ISO-8601 timestamps (the risk hub's as_of)
 * ---------------------------------------------------------------------
 */

/* Reads exactly n decimal digits at *p into *out. */
static bool
read_digits(const char **p, int n, int *out)
{
	int			v = 0;
	int			i;

	for (i = 0; i < n; i++)
	{
		if ((*p)[i] < '0' || (*p)[i] > '9')
			return false;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return true;
}

/*
 * Parses YYYY-MM-DD(T| )HH:MM[:SS[.fraction]](Z|+HH[:MM]|-HH[:MM]).  The
 * offset is required: a timestamp without one would mean different
 * instants under different TimeZone settings.
 */
bool
wval_parse_iso8601(const char *s, TimestampTz *result)
{
	const char *p = s;
	int			y,
				mo,
				d,
				h,
				mi,
				sec = 0,
				oh = 0,
				om = 0,
				sign;
	int64		usec = 0;
	int			jd;

	if (!read_digits(&p, 4, &y) || *p++ != '-' ||
		!read_digits(&p, 2, &mo) || *p++ != '-' ||
		!read_digits(&p, 2, &d))
		return false;
	if (*p != 'T' && *p != 't' && *p != ' ')
		return false;
	p++;
	if (!read_digits(&p, 2, &h) || *p++ != ':' || !read_digits(&p, 2, &mi))
		return false;
	if (*p == ':')
	{
		p++;
		if (!read_digits(&p, 2, &sec))
			return false;
		if (*p == '.' || *p == ',')
		{
			int			ndigits = 0;
			int64		scale = 100000;

			p++;
			while (*p >= '0' && *p <= '9')
			{
				if (ndigits < 6)
				{
					usec += (*p - '0') * scale;
					scale /= 10;
				}
				ndigits++;
				p++;
			}
			if (ndigits == 0 || ndigits > 9)
				return false;
		}
	}
	if (*p == 'Z' || *p == 'z')
	{
		sign = 1;
		p++;
	}
	else if (*p == '+' || *p == '-')
	{
		sign = (*p == '+') ? 1 : -1;
		p++;
		if (!read_digits(&p, 2, &oh))
			return false;
		if (*p == ':')
			p++;
		if (*p != '\0' && !read_digits(&p, 2, &om))
			return false;
	}
	else
		return false;
	if (*p != '\0')
		return false;

	if (y < 1 || mo < 1 || mo > 12 || d < 1 ||
		d > day_tab[isleap(y) ? 1 : 0][mo - 1] ||
		h > 23 || mi > 59 || sec > 59 || oh > 15 || om > 59)
		return false;

	jd = date2j(y, mo, d) - POSTGRES_EPOCH_JDATE;
	*result = (TimestampTz) jd * USECS_PER_DAY +
		((int64) ((h * 60 + mi) * 60 + sec)) * USECS_PER_SEC + usec -
		sign * ((int64) (oh * 60 + om) * 60) * USECS_PER_SEC;
	return true;
}
