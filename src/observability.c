/*-------------------------------------------------------------------------
 *
 * observability.c
 *	  Facts the monitoring side of wval reads from C: the bounds of the
 *	  evaluation latency histogram (wval.evaluation_stats.buckets).  The
 *	  evaluating code files a call into a bucket with wval_latency_bucket;
 *	  SQL (the wval.metrics view, observability.sql) reads the same bounds
 *	  through wval._latency_bounds(), so there is one list.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/array.h"

#include "wval.h"

/* upper bounds (seconds) of the latency histogram; the last bucket is +Inf */
const double wval_latency_bounds_s[WVAL_NLATENCY_BOUNDS] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1
};

/* The 0-based histogram bucket of a latency (WVAL_NLATENCY_BOUNDS: above every bound). */
int
wval_latency_bucket(double seconds)
{
	int			i;

	for (i = 0; i < WVAL_NLATENCY_BOUNDS; i++)
		if (seconds <= wval_latency_bounds_s[i])
			return i;
	return WVAL_NLATENCY_BOUNDS;
}

PG_FUNCTION_INFO_V1(wval_latency_bounds);

/* wval._latency_bounds() → float8[]: the upper bounds of the latency histogram, in seconds. */
Datum
wval_latency_bounds(PG_FUNCTION_ARGS)
{
	Datum		elems[WVAL_NLATENCY_BOUNDS];
	int			i;

	for (i = 0; i < WVAL_NLATENCY_BOUNDS; i++)
		elems[i] = Float8GetDatum(wval_latency_bounds_s[i]);
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, WVAL_NLATENCY_BOUNDS, FLOAT8OID, sizeof(float8),
										  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}
