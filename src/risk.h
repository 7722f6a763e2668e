/*-------------------------------------------------------------------------
 *
 * risk.h
 *	  The portfolio/risk layer's C API: the normal-distribution constants
 *	  and formulas of the 99 % VaR/ES, the portfolio variance, and the
 *	  portfolio baseline (weights + filled covariance) of a world's latest
 *	  fresh risk snapshot, read through the hub (risk.h).  portfolio.c
 *	  (incremental VaR/ES, Sharpe uplift, stress) builds on these.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WVAL_RISK_H
#define WVAL_RISK_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "utils/jsonb.h"

/*
 * z = Phi^-1(0.99).  A constant here (the metrics file has a general
 * inverse normal CDF); checked against Python's statistics.NormalDist.
 */
#define WVAL_Z_99			2.3263478740408408
/* tail probability of the 99 % measures */
#define WVAL_TAIL_99		0.01

/* Standard normal density phi(x); phi(WVAL_Z_99) = 0.02665214220345808. */
extern double wval_normal_pdf(double x);

/* Parametric VaR_99 = z * sigma. */
extern double wval_normal_var99(double sigma);

/* Normal ES_99 = sigma * phi(z) / (1 - 0.99). */
extern double wval_normal_es99(double sigma);

/*
 * Portfolio variance w' C w of k assets; cov is k*k row-major.  The caller
 * normalises w.  Returns the variance (may be slightly negative when cov
 * is not positive semi-definite); sigma is sqrt of a non-negative result.
 */
extern double wval_portfolio_variance(int k, const double *w, const double *cov);

/* sqrt(wval_portfolio_variance), NaN when the variance is negative. */
extern double wval_portfolio_sigma(int k, const double *w, const double *cov);

/*
 * Fills every off-diagonal pair that known[] marks as missing with
 * C_ab = rho * sqrt(C_aa * C_bb) (both triangles), records it in filled[]
 * (k*k, may be NULL) and returns the number of unordered pairs filled.
 * The diagonal must be known.
 */
extern int	wval_fill_missing_covariance(int k, double *cov, const bool *known,
										 double rho, bool *filled);

/* The portfolio of a snapshot, ready for the formulas above. */
typedef struct WvalPortfolio
{
	char	   *world_id;
	char	   *version;
	char	   *hash;
	char	   *stage;
	char	   *actor;
	TimestampTz as_of;
	int			k;				/* number of strategies (weights) */
	char	  **ids;			/* strategy ids, in jsonb key order */
	double	   *w;				/* weights normalised to sum 1 */
	double		raw_sum;		/* sum of the weights as published */
	double	   *cov;			/* k*k, missing pairs filled */
	bool	   *filled;			/* k*k, true where filled with rho */
	int			nfilled;		/* unordered pairs filled */
	double		rho;			/* correlation used for the fill */
	const char *cov_source;		/* "snapshot", "blob" or "realized_returns" */
	double	   *candidate_weight;	/* constraints.candidate_weight or NULL */
	double	  **returns;		/* k realized-return series (NULL when absent) */
	int		   *nreturns;		/* their lengths (0 when absent) */
	Jsonb	   *payload;		/* the snapshot, wval-blob references expanded */
} WvalPortfolio;

/*
 * Loads the portfolio of the world's latest fresh snapshot (of one stage
 * when stage is not NULL).  Raises WV010 when the world has no snapshot,
 * WV005 when the latest one is older than wval.snapshot_max_age.  Opens
 * its own SPI connection (nested when the caller has one); the result is
 * allocated in the caller's memory context.
 */
extern WvalPortfolio *wval_portfolio_load(const char *world_id, const char *stage);

/*
 * Sample covariance (divisor n - 1) of two series aligned at their ends
 * (the most recent points), over the points they share; false when they
 * share fewer than 2.
 */
extern bool wval_sample_covariance(const double *x, int nx, const double *y, int ny,
								   double *out);

/* Position of a strategy among pf->ids, -1 when it has no weight. */
extern int	wval_portfolio_position(const WvalPortfolio *pf, const char *id);

/*
 * What the snapshot's covariance (inline or wval blob) says about a
 * strategy that is not in the weights: cov_row[a] / row_known[a] for each
 * of the pf->k strategies, and its own variance.  Nothing is filled or
 * estimated here.  Returns the number of entries found.
 */
extern int	wval_portfolio_candidate_covariance(const WvalPortfolio *pf, const char *id,
												double *cov_row, bool *row_known,
												double *variance, bool *variance_known);

/*
 * The realized returns of any strategy in the snapshot (also one without
 * weight) as a palloc'd array; NULL and *n = 0 when the snapshot has none.
 */
extern double *wval_portfolio_series(const WvalPortfolio *pf, const char *id, int *n);

/* settings (risk.c) */
extern double wval_missing_correlation;

extern void wval_risk_init(void);

#endif							/* WVAL_RISK_H */
