/*-------------------------------------------------------------------------
 *
 * metrics_int.h
 *	  Private to the metrics engine (metrics.c, metrics_input.c,
 *	  metrics_regime.c, metrics_dsr.c).  Other files use metrics.h.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WVAL_METRICS_INT_H
#define WVAL_METRICS_INT_H

#include "postgres.h"

#include "utils/array.h"

/* a metric that is null by definition, inside the engine (written as JSON null) */
#define NULL_METRIC			((double) NAN)
#define REGIME_WINDOW		20	/* periods in a rolling volatility window */

/* shared by the engine's files */
extern void wval_sort_float8(double *begin, size_t n);
extern double *wval_metrics_scratch_alloc(size_t count);
extern double wval_quantile7_inplace(double *a, int n, double p);
extern double wval_select_kth(double *a, int n, int k);
extern long double wval_psr_radicand(long double sr, double skew, double kurtosis);
extern const char *wval_format_double(double v, char *buf);
extern const double *wval_returns_in_place(ArrayType *arr, const char *field, int *n);
extern void wval_check_search_intensity(const char *field, int64 value);
extern void wval_check_finite_arg(const char *field, double value, bool nonneg, const char *hint);
extern bool wval_regime_coverage(const double *r, int n, double rf, double out[3]);

#endif							/* WVAL_METRICS_INT_H */
