/*-------------------------------------------------------------------------
 *
 * returns.c
 *	  The stored return series of runs (wval.run_returns) and the
 *	  recomputation of a run's metrics from them (wval_run_reproduce).
 *
 * A world whose settings say store_returns = true keeps the returns of each
 * run, content-addressed by the run's returns_hash: one row per (world,
 * series), written in the evaluating transaction just before the run (both
 * are links of the world's hash chain).  Nothing else writes the table.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "port/pg_bswap.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/snapmgr.h"

#include "metrics.h"
#include "policy.h"
#include "jsonb.h"
#include "returns.h"
#include "spi.h"
#include "wval.h"

PG_FUNCTION_INFO_V1(wval_store_returns);
PG_FUNCTION_INFO_V1(wval_recompute_metrics);
PG_FUNCTION_INFO_V1(wval_returns_array);

/* the series, unless the world has it already */
static WvalPlan plan_store = WVAL_PLAN_GENERIC(
	"INSERT INTO wval.run_returns (world_id, returns_hash, n_periods, returns) "
	"SELECT $1, $2, pg_catalog.length($3) / 8, $3 WHERE NOT EXISTS "
	"(SELECT 1 FROM wval.run_returns x WHERE x.world_id = $1 AND x.returns_hash = $2)",
	3, TEXTOID, TEXTOID, BYTEAOID);

/*
 * r[0..n-1] as stored: float8send of each return (8 bytes, big-endian),
 * the bytes returns_hash is the sha256 of (util.c, wval_returns_hash)
 */
static bytea *
returns_bytes(const double *r, int n)
{
	bytea	   *b = palloc(VARHDRSZ + sizeof(uint64) * (Size) n);
	char	   *p = VARDATA(b);
	int			i;

	SET_VARSIZE(b, VARHDRSZ + sizeof(uint64) * (Size) n);
	for (i = 0; i < n; i++)
	{
		uint64		u;

		memcpy(&u, &r[i], sizeof(u));
		u = pg_hton64(u);
		memcpy(p + (Size) i * sizeof(u), &u, sizeof(u));
	}
	return b;
}

/*
 * The world's store_returns setting (settings.store_returns is true), read
 * by primary key (spi.h): no statement to plan on every evaluation.
 */
static bool
store_returns_setting(const char *world)
{
	JsonbValue *v = wval_world_setting(world, "store_returns");

	return v != NULL && v->type == jbvBool && v->val.boolean;
}

/*
 * True when the world's copy of the series is stored (a primary-key probe):
 * as the statement's snapshot sees it, or with latest, as a snapshot taken
 * now sees it (rows committed after this transaction's snapshot too).
 */
static bool
run_returns_visible(const char *world, const char *rhash, bool latest)
{
	Datum		keys[2];
	WvalKeyScan scan;
	bool		found;

	keys[0] = CStringGetTextDatum(world);
	keys[1] = CStringGetTextDatum(rhash);
	if (latest)
		PushActiveSnapshot(GetLatestSnapshot());
	wval_key_scan_begin(&scan, "run_returns", 2, keys);
	found = wval_key_scan_next(&scan, false) != NULL;
	wval_key_scan_end(&scan);
	if (latest)
		PopActiveSnapshot();
	return found;
}

/*
 * Stores a run's returns (see returns.h).  A series the snapshot already
 * sees stored is not written again, and nothing is locked for it: the
 * common case of a series evaluated again (another stage, another policy
 * version) does not queue behind other evaluations of the same series.
 * Otherwise concurrent evaluations of the same series in a world serialise
 * on an advisory lock of (world, hash), and the existence check runs after
 * it with a snapshot taken then: the second one sees the first one's row and
 * stores nothing, also at REPEATABLE READ and SERIALIZABLE, where the
 * transaction's snapshot cannot see that row (the run only names the series
 * by its hash).  Before chain lanes the conflict on the world's chain head
 * stopped that case with 40001; two transactions on different lanes do not
 * meet there.
 */
bool
wval_store_run_returns(const char *world, const char *rhash, const double *r, int n)
{
	Datum		args[3];
	StringInfoData key;

	if (world == NULL || rhash == NULL)
		return false;
	if (!store_returns_setting(world) || run_returns_visible(world, rhash, false))
		return false;

	args[0] = CStringGetTextDatum(world);
	initStringInfo(&key);
	appendStringInfo(&key, "wval:run_returns:%s:%s", world, rhash);
	DirectFunctionCall1(pg_advisory_xact_lock_int8,
						Int64GetDatum((int64) hash_bytes_extended((const unsigned char *) key.data, key.len, 0)));
	if (run_returns_visible(world, rhash, true))
		return false;
	args[1] = CStringGetTextDatum(rhash);
	args[2] = PointerGetDatum(returns_bytes(r, n));
	wval_spi_exec(&plan_store, args, NULL, false, 0, SPI_OK_INSERT);
	return SPI_processed == 1;
}

/*
 * wval._store_returns(world_id, returns_hash, returns float8[]) → boolean:
 * the same for the SQL writers (live runs).  Executable only by the
 * extension owner (their SECURITY DEFINER code).
 */
Datum
wval_store_returns(PG_FUNCTION_ARGS)
{
	char	   *world;
	char	   *rhash;
	double	   *r;
	int			n;
	bool		stored;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_BOOL(false);
	world = text_to_cstring(PG_GETARG_TEXT_PP(0));
	rhash = text_to_cstring(PG_GETARG_TEXT_PP(1));
	r = wval_returns_from_array(PG_GETARG_ARRAYTYPE_P(2), "returns", &n);
	if (strcmp(wval_returns_hash(r, n), rhash) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_HASH_MISMATCH),
				 errmsg("\"returns_hash\" does not match the returns"),
				 errdetail("returns_hash is %s; the returns hash to %s.", rhash, wval_returns_hash(r, n)),
				 errhint("Pass the sha256 of the series as big-endian float8 bytes.")));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	stored = wval_store_run_returns(world, rhash, r, n);
	SPI_finish();
	PG_RETURN_BOOL(stored);
}

/*
 * wval._returns_array(returns bytea) → float8[]: a stored series
 * (wval.run_returns.returns) as an array; 22023 when its length is not a
 * multiple of 8.
 */
Datum
wval_returns_array(PG_FUNCTION_ARGS)
{
	bytea	   *b = PG_GETARG_BYTEA_PP(0);
	Size		len = VARSIZE_ANY_EXHDR(b);
	const char *p = VARDATA_ANY(b);
	Datum	   *d;
	int			n;
	int			i;

	if (len % sizeof(uint64) != 0 || len / sizeof(uint64) > WVAL_MAX_RETURNS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"returns\" is not a stored return series"),
				 errdetail("It has %zu bytes; a series has 8 bytes per return and at most %d returns.",
						   len, WVAL_MAX_RETURNS),
				 errhint("Pass wval.run_returns.returns.")));
	n = (int) (len / sizeof(uint64));
	d = palloc(sizeof(Datum) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		uint64		u;
		double		v;

		memcpy(&u, p + (Size) i * sizeof(u), sizeof(u));
		u = pg_ntoh64(u);
		memcpy(&v, &u, sizeof(v));
		d[i] = Float8GetDatum(v);
	}
	PG_RETURN_ARRAYTYPE_P(construct_array(d, n, FLOAT8OID, sizeof(float8), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/* An option of a run's stored context as a double; false when absent */
static bool
context_double(Jsonb *context, const char *key, double *out)
{
	JsonbValue *v = context ? wval_json_path(context, key) : NULL;

	return v != NULL && wval_jbv_double(v, out);
}

/*
 * wval._recompute_metrics(returns float8[], context jsonb, stored jsonb)
 * → jsonb: the metrics pack of a single run recomputed the way
 * wval_evaluate computed it: the metric options of the run's stored context
 * (periods_per_year, risk_free, search_intensity, trials_sharpe_variance)
 * and, when the stored metrics carry diagnostics.extra_metrics, the
 * strategy complexity over them.  The benchmark is not stored with a run:
 * the pack has no benchmark-relative fields.
 */
Datum
wval_recompute_metrics(PG_FUNCTION_ARGS)
{
	Jsonb	   *context = PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1);
	Jsonb	   *stored = PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2);
	WvalMetricsOptions opt;
	double	   *r;
	int			n;
	double		d;
	Jsonb	   *pack;
	JsonbValue *extra;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	r = wval_returns_from_array(PG_GETARG_ARRAYTYPE_P(0), "returns", &n);
	wval_metrics_options_init(&opt);
	if (context_double(context, "periods_per_year", &d))
		opt.periods_per_year = (int) d;
	if (context_double(context, "risk_free", &d))
		opt.risk_free = d;
	if (context_double(context, "search_intensity", &d))
		opt.search_intensity = (int) d;
	opt.has_trials_variance = context_double(context, "trials_sharpe_variance", &opt.trials_sharpe_variance);
	pack = wval_compute_metrics(r, n, &opt);

	extra = stored ? wval_json_path(stored, "diagnostics.extra_metrics") : NULL;
	if (extra != NULL && extra->type == jbvBinary)
	{
		JsonbParseState *ps = NULL;
		Datum		path[2];

		/* a scalar document: the builder's array form, taken as its element */
		wval_jb_begin_array(&ps);
		wval_jb_float8(&ps, wval_strategy_complexity_value(opt.search_intensity, JsonbValueToJsonb(extra)));
		path[0] = CStringGetTextDatum("diagnostics");
		path[1] = CStringGetTextDatum("strategy_complexity");
		pack = DatumGetJsonbP(DirectFunctionCall4(jsonb_set, JsonbPGetDatum(pack),
												  PointerGetDatum(construct_array(path, 2, TEXTOID, -1, false, TYPALIGN_INT)),
												  DirectFunctionCall2(jsonb_array_element, JsonbPGetDatum(wval_jb_end_array(&ps)),
																	  Int32GetDatum(0)),
												  BoolGetDatum(true)));
	}
	PG_RETURN_JSONB_P(pack);
}
