/*-------------------------------------------------------------------------
 *
 * risk.c
 *	  The portfolio/risk layer's base: the normal-distribution and
 *	  portfolio formulas, the portfolio baseline of a world's latest fresh
 *	  risk snapshot (weights, covariance filled with the conservative
 *	  correlation or estimated from realized returns), wval_portfolio_risk,
 *	  and the extended validation that runs when a world asks for it on
 *	  every new snapshot.  portfolio.c builds the portfolio/stress/cohort
 *	  layers on top.  Snapshots come from the hub (hub.h), below this layer:
 *	  the hub announces a stored snapshot to the hook registered here.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <float.h>
#include <limits.h>
#include <math.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "wval.h"
#include "hub.h"
#include "jsonb.h"
#include "risk.h"
#include "spi.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* settings */
double		wval_missing_correlation = 0.5;

/* the portfolio layer of a world whose settings say extended_validation = sync (portfolio.sql) */
static WvalPlan plan_extended = WVAL_PLAN(
	"SELECT wval._extended_validation($1, $2, $3, true)",
	3, TEXTOID, TEXTOID, TEXTOID);

/*
 * Runs the portfolio layer inside the publishing transaction when the
 * world's settings say extended_validation = sync (hub.h: told of every
 * newly stored snapshot, connected to SPI).
 */
static void
extended_validation_on_store(const WvalSnapshotStored *s)
{
	JsonbValue *ev;
	Datum		args[3];

	if (s->world_settings == NULL || !JB_ROOT_IS_OBJECT(s->world_settings))
		return;
	ev = wval_object_get(&s->world_settings->root, "extended_validation");
	if (ev == NULL || ev->type != jbvString ||
		ev->val.string.len != 4 || strncmp(ev->val.string.val, "sync", 4) != 0)
		return;
	args[0] = CStringGetTextDatum(s->world_id);
	args[1] = CStringGetTextDatum(s->version);
	args[2] = CStringGetTextDatum(s->stage);
	wval_spi_exec(&plan_extended, args, NULL, false, 1, SPI_OK_SELECT);
}

/* Registers the risk layer's setting and its snapshot hook (called from _PG_init). */
void
wval_risk_init(void)
{
	DefineCustomRealVariable("wval.missing_correlation",
							 "Correlation assumed for covariance pairs a snapshot does not give.",
							 "A world's settings->'missing_correlation' overrides it.",
							 &wval_missing_correlation,
							 0.5, -1.0, 1.0,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);
	wval_snapshot_stored_register(extended_validation_on_store);
}

/* ---------------------------------------------------------------------
 * Normal-distribution and portfolio formulas (exported in risk.h)
 * ---------------------------------------------------------------------
 */

/* Standard normal density. */
double
wval_normal_pdf(double x)
{
	return exp(-0.5 * x * x) / sqrt(2.0 * M_PI);
}

/* VaR_99 = z * sigma. */
double
wval_normal_var99(double sigma)
{
	return WVAL_Z_99 * sigma;
}

/* ES_99 = sigma * phi(z) / (1 - 0.99). */
double
wval_normal_es99(double sigma)
{
	return sigma * wval_normal_pdf(WVAL_Z_99) / WVAL_TAIL_99;
}

/* w' C w over k assets. */
double
wval_portfolio_variance(int k, const double *w, const double *cov)
{
	double		var = 0.0;
	int			a,
				b;

	for (a = 0; a < k; a++)
	{
		double		row = 0.0;

		for (b = 0; b < k; b++)
			row += cov[a * k + b] * w[b];
		var += w[a] * row;
	}
	return var;
}

/* sqrt(w' C w); NaN when the variance is negative beyond rounding. */
double
wval_portfolio_sigma(int k, const double *w, const double *cov)
{
	double		var = wval_portfolio_variance(k, w, cov);

	if (var < 0.0)
	{
		if (var > -1e-14)
			return 0.0;
		return NAN;
	}
	return sqrt(var);
}

/* Fills missing off-diagonal pairs with rho * sqrt(C_aa C_bb). */
int
wval_fill_missing_covariance(int k, double *cov, const bool *known,
							 double rho, bool *filled)
{
	int			n = 0;
	int			a,
				b;

	for (a = 0; a < k; a++)
		for (b = a + 1; b < k; b++)
		{
			if (known[a * k + b])
				continue;
			cov[a * k + b] = cov[b * k + a] =
				rho * sqrt(Max(cov[a * k + a], 0.0) * Max(cov[b * k + b], 0.0));
			if (filled)
				filled[a * k + b] = filled[b * k + a] = true;
			n++;
		}
	return n;
}

/* ---------------------------------------------------------------------
 * Portfolio baseline
 * ---------------------------------------------------------------------
 */

/* An entry of the strategy id -> position index of a portfolio. */
typedef struct IdSlot
{
	char		id[WVAL_MAX_IDENT_BYTES + 1];
	int			pos;
} IdSlot;

/* Position of a strategy id among the portfolio's ids, -1 when absent. */
static int
portfolio_index(HTAB *index, const char *id)
{
	bool		found;
	char		key[WVAL_MAX_IDENT_BYTES + 1];
	IdSlot	   *slot;

	if (strlen(id) > WVAL_MAX_IDENT_BYTES)
		return -1;
	memset(key, 0, sizeof(key));
	strcpy(key, id);
	slot = hash_search(index, key, HASH_FIND, &found);
	return found ? slot->pos : -1;
}

/* One realized-return series as doubles. */
typedef struct ReturnSeries
{
	int			n;
	double	   *x;
} ReturnSeries;

/* Reads realized returns of the portfolio's strategies into series[]. */
static bool
load_returns(HTAB *index, JsonbValue *rr, ReturnSeries *series)
{
	JsonbIterator *it;
	JsonbValue	k,
				v;
	JsonbIteratorToken tok;
	bool		any = false;

	if (rr == NULL || !wval_jbv_is_object(rr))
		return false;
	it = JsonbIteratorInit(rr->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		int			a;
		JsonbIterator *ait;
		JsonbValue	x;
		int			n = 0;

		if (tok != WJB_KEY)
			continue;
		tok = JsonbIteratorNext(&it, &v, true);
		a = portfolio_index(index, wval_jbv_cstring(&k));
		if (a < 0 || !wval_jbv_is_array(&v))
			continue;
		series[a].x = palloc(sizeof(double) * Max(JsonContainerSize(v.val.binary.data), 1));
		ait = JsonbIteratorInit(v.val.binary.data);
		while ((tok = JsonbIteratorNext(&ait, &x, true)) != WJB_DONE)
			if (tok == WJB_ELEM && wval_jbv_double(&x, &series[a].x[n]))
				n++;
		series[a].n = n;
		any = true;
	}
	return any;
}

/* Sample covariance of two series aligned at their ends (risk.h). */
bool
wval_sample_covariance(const double *x, int nx, const double *y, int ny, double *out)
{
	int			m = Min(nx, ny);
	double		mx = 0.0,
				my = 0.0,
				s = 0.0;
	int			i;

	if (m < 2)
		return false;
	x += nx - m;
	y += ny - m;
	for (i = 0; i < m; i++)
	{
		mx += x[i];
		my += y[i];
	}
	mx /= m;
	my /= m;
	for (i = 0; i < m; i++)
		s += (x[i] - mx) * (y[i] - my);
	*out = s / (m - 1);
	return true;
}

/* wval_sample_covariance of two loaded series. */
static bool
sample_covariance(const ReturnSeries *p, const ReturnSeries *q, double *out)
{
	return wval_sample_covariance(p->x, p->n, q->x, q->n, out);
}

/*
 * Loading a portfolio (wval_portfolio_load): read the snapshot, then its
 * weights, constraints, covariance (inline, blob, or estimated from the
 * realized returns), the missing variances, the correlation fill, and the
 * return series the portfolio layer reads.  Each step fills a part of the
 * WvalPortfolio; PortfolioLoad holds what the steps share.
 */
typedef struct PortfolioLoad
{
	WvalPortfolio *pf;
	const char *world_id;		/* as the caller gave it */
	Jsonb	   *stored;			/* the snapshot as stored (covariance_ref) */
	Jsonb	   *expanded;		/* blobs expanded */
	HTAB	   *index;			/* strategy id -> position */
	bool	   *known;			/* k x k: covariance entries given or estimated */
	ReturnSeries *series;		/* realized returns per position */
	bool		have_returns;
} PortfolioLoad;

/* The snapshot's header and the correlation that fills missing pairs. */
static void
portfolio_load_header(const char *world_id, const char *stage, PortfolioLoad *ld)
{
	WvalPortfolio *pf = ld->pf;
	WvalStoredSnapshot snap;
	double		rho;

	wval_snapshot_read_latest(world_id, stage, &snap);
	rho = wval_missing_correlation;
	if (wval_world_setting_double(snap.world_settings, "missing_correlation", &rho) &&
		(rho < -1.0 || rho > 1.0))
		rho = wval_missing_correlation;
	pf->world_id = snap.world_id;
	pf->version = snap.version;
	pf->hash = snap.hash;
	pf->stage = snap.stage;
	pf->actor = snap.actor;
	pf->as_of = snap.as_of;
	ld->stored = snap.stored;
	ld->expanded = snap.expanded;
	pf->rho = rho;
}

/* The weights, in jsonb key order, normalised; the index of their ids. */
static void
portfolio_load_weights(PortfolioLoad *ld)
{
	WvalPortfolio *pf = ld->pf;
	JsonbValue *weights = wval_object_get(&ld->expanded->root, "weights");
	JsonbIterator *it;
	JsonbValue	k,
				v;
	JsonbIteratorToken tok;
	HASHCTL		ctl;
	int			a = 0;

	pf->k = JsonContainerSize(weights->val.binary.data);
	pf->ids = palloc(sizeof(char *) * pf->k);
	pf->w = palloc(sizeof(double) * pf->k);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = WVAL_MAX_IDENT_BYTES + 1;
	ctl.entrysize = sizeof(IdSlot);
	ctl.hcxt = CurrentMemoryContext;
	ld->index = hash_create("wval portfolio ids", Max(pf->k, 4), &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	it = JsonbIteratorInit(weights->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char		key[WVAL_MAX_IDENT_BYTES + 1];
		IdSlot	   *slot;
		bool		found;

		if (tok != WJB_KEY)
			continue;
		tok = JsonbIteratorNext(&it, &v, true);
		pf->ids[a] = wval_jbv_cstring(&k);
		(void) wval_jbv_double(&v, &pf->w[a]);
		pf->raw_sum += pf->w[a];
		memset(key, 0, sizeof(key));
		strcpy(key, pf->ids[a]);
		slot = hash_search(ld->index, key, HASH_ENTER, &found);
		slot->pos = a;
		a++;
	}
	for (a = 0; a < pf->k; a++)
		pf->w[a] /= pf->raw_sum;
}

/* constraints.candidate_weight, when the snapshot gives one. */
static void
portfolio_load_constraints(PortfolioLoad *ld)
{
	JsonbValue *cw;
	JsonbValue *cons = wval_object_get(&ld->expanded->root, "constraints");
	double		d;

	if (cons != NULL && wval_jbv_is_object(cons) &&
		(cw = wval_object_get(cons->val.binary.data, "candidate_weight")) != NULL &&
		wval_jbv_double(cw, &d))
	{
		ld->pf->candidate_weight = palloc(sizeof(double));
		*ld->pf->candidate_weight = d;
	}
}

/* The covariance entries the snapshot gives, among weighted strategies. */
static void
portfolio_load_given_covariance(PortfolioLoad *ld, JsonbValue *cov)
{
	WvalPortfolio *pf = ld->pf;
	int			k_ = pf->k;
	WvalCovEntry *e;
	int			n,
				i,
				a,
				b;
	char	   *bad_key,
			   *bad_value;

	if (wval_parse_covariance(cov->val.binary.data, &e, &n, &bad_key, &bad_value) != NULL)
		elog(ERROR, "stored covariance of snapshot \"%s\" does not parse", pf->version);
	for (i = 0; i < n; i++)
	{
		a = portfolio_index(ld->index, e[i].a);
		b = portfolio_index(ld->index, e[i].b);
		if (a < 0 || b < 0)
			continue;			/* a strategy without weight does not matter */
		pf->cov[a * k_ + b] = pf->cov[b * k_ + a] = e[i].value;
		ld->known[a * k_ + b] = ld->known[b * k_ + a] = true;
	}
}

/*
 * The covariance: inline or from a blob, else estimated from the realized
 * returns; a reference outside the database (22023) or neither (WV004)
 * is an error.
 */
static void
portfolio_load_covariance(PortfolioLoad *ld)
{
	WvalPortfolio *pf = ld->pf;
	int			k_ = pf->k;
	JsonbValue *cov = wval_object_get(&ld->expanded->root, "covariance");
	JsonbValue *ref = wval_object_get(&ld->stored->root, "covariance_ref");
	int			a,
				b;

	if (cov != NULL && wval_jbv_is_object(cov))
	{
		portfolio_load_given_covariance(ld, cov);
		pf->cov_source = ref != NULL ? "blob" : "snapshot";
	}
	else if (ld->have_returns)
	{
		for (a = 0; a < k_; a++)
			for (b = a; b < k_; b++)
				if (sample_covariance(&ld->series[a], &ld->series[b], &pf->cov[a * k_ + b]))
				{
					pf->cov[b * k_ + a] = pf->cov[a * k_ + b];
					ld->known[a * k_ + b] = ld->known[b * k_ + a] = true;
				}
		pf->cov_source = "realized_returns";
	}
	else if (ref != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the covariance of risk snapshot \"%s\" is stored outside the database", pf->version),
				 errdetail("covariance_ref is %s.", wval_jbv_text(ref, 120)),
				 errhint("Resolve the reference in the consumer, or publish the covariance inline or as a wval blob.")));
	else
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
				 errmsg("risk snapshot \"%s\" of world \"%s\" has neither covariance nor realized returns",
						pf->version, ld->world_id),
				 errhint("Producers send \"covariance\" (or realized_returns to estimate it from) for the portfolio layer.")));
}

/* A missing variance may come from the strategy's own returns; else WV004. */
static void
portfolio_load_variances(PortfolioLoad *ld)
{
	WvalPortfolio *pf = ld->pf;
	int			k_ = pf->k;
	int			a;

	for (a = 0; a < k_; a++)
	{
		if (ld->known[a * k_ + a])
			continue;
		if (ld->series[a].n >= 2 &&
			sample_covariance(&ld->series[a], &ld->series[a], &pf->cov[a * k_ + a]))
		{
			ld->known[a * k_ + a] = true;
			continue;
		}
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
				 errmsg("risk snapshot \"%s\" gives no variance for strategy \"%s\"", pf->version, pf->ids[a]),
				 errdetail("covariance has no \"%s,%s\" entry and realized_returns has fewer than 2 points of it.",
						   pf->ids[a], pf->ids[a]),
				 errhint("Send the diagonal entry of every weighted strategy.")));
	}
}

/* Loads the portfolio of the world's latest fresh snapshot (risk.h). */
WvalPortfolio *
wval_portfolio_load(const char *world_id, const char *stage)
{
	PortfolioLoad ld;
	WvalPortfolio *pf;
	int			a;

	memset(&ld, 0, sizeof(ld));
	ld.pf = pf = palloc0(sizeof(WvalPortfolio));
	ld.world_id = world_id;
	portfolio_load_header(world_id, stage, &ld);
	portfolio_load_weights(&ld);
	portfolio_load_constraints(&ld);
	pf->cov = palloc0(sizeof(double) * pf->k * pf->k);
	pf->filled = palloc0(sizeof(bool) * pf->k * pf->k);
	ld.known = palloc0(sizeof(bool) * pf->k * pf->k);
	ld.series = palloc0(sizeof(ReturnSeries) * pf->k);
	ld.have_returns = load_returns(ld.index, wval_object_get(&ld.expanded->root, "realized_returns"), ld.series);
	portfolio_load_covariance(&ld);
	portfolio_load_variances(&ld);
	pf->nfilled = wval_fill_missing_covariance(pf->k, pf->cov, ld.known, pf->rho, pf->filled);

	/* what the portfolio layer reads besides the matrix */
	pf->returns = palloc0(sizeof(double *) * pf->k);
	pf->nreturns = palloc0(sizeof(int) * pf->k);
	for (a = 0; a < pf->k; a++)
	{
		pf->returns[a] = ld.series[a].n > 0 ? ld.series[a].x : NULL;
		pf->nreturns[a] = ld.series[a].n;
	}
	pf->payload = ld.expanded;
	return pf;
}

/* Position of a strategy among the portfolio's weighted ids (risk.h). */
int
wval_portfolio_position(const WvalPortfolio *pf, const char *id)
{
	int			a;

	for (a = 0; a < pf->k; a++)
		if (strcmp(pf->ids[a], id) == 0)
			return a;
	return -1;
}

/* The snapshot's covariance entries of a strategy without weight (risk.h). */
int
wval_portfolio_candidate_covariance(const WvalPortfolio *pf, const char *id,
									double *cov_row, bool *row_known,
									double *variance, bool *variance_known)
{
	JsonbValue *cov = wval_object_get(&pf->payload->root, "covariance");
	WvalCovEntry   *e;
	int			n,
				i;
	int			found = 0;
	char	   *bad_key,
			   *bad_value;

	memset(row_known, 0, sizeof(bool) * pf->k);
	*variance_known = false;
	if (cov == NULL || !wval_jbv_is_object(cov))
		return 0;
	if (wval_parse_covariance(cov->val.binary.data, &e, &n, &bad_key, &bad_value) != NULL)
		elog(ERROR, "stored covariance of snapshot \"%s\" does not parse", pf->version);
	for (i = 0; i < n; i++)
	{
		const char *other;
		int			a;

		if (strcmp(e[i].a, id) == 0)
			other = e[i].b;
		else if (strcmp(e[i].b, id) == 0)
			other = e[i].a;
		else
			continue;
		if (strcmp(other, id) == 0)
		{
			*variance = e[i].value;
			*variance_known = true;
			found++;
			continue;
		}
		a = wval_portfolio_position(pf, other);
		if (a < 0)
			continue;
		cov_row[a] = e[i].value;
		row_known[a] = true;
		found++;
	}
	return found;
}

/* The realized returns of one strategy in the snapshot (risk.h). */
double *
wval_portfolio_series(const WvalPortfolio *pf, const char *id, int *n)
{
	JsonbValue *rr = wval_object_get(&pf->payload->root, "realized_returns");
	JsonbValue *v;
	JsonbIterator *it;
	JsonbValue	x;
	JsonbIteratorToken tok;
	double	   *out;

	*n = 0;
	if (rr == NULL || !wval_jbv_is_object(rr) ||
		(v = wval_object_get(rr->val.binary.data, id)) == NULL || !wval_jbv_is_array(v))
		return NULL;
	out = palloc(sizeof(double) * Max(JsonContainerSize(v->val.binary.data), 1));
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &x, true)) != WJB_DONE)
		if (tok == WJB_ELEM && wval_jbv_double(&x, &out[*n]))
			(*n)++;
	if (*n == 0)
	{
		pfree(out);
		return NULL;
	}
	return out;
}

PG_FUNCTION_INFO_V1(wval_portfolio_risk);

/*
 * wval_portfolio_risk(world_id, stage) → jsonb: sigma, VaR_99 and ES_99
 * of the latest fresh snapshot's portfolio, the weights used and the pairs
 * filled with the conservative correlation.
 */
Datum
wval_portfolio_risk(PG_FUNCTION_ARGS)
{
	WvalPortfolio *pf;
	double		var,
				sigma;
	JsonbParseState *ps = NULL;
	int			a,
				b;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"world_id\" must not be null")));
	pf = wval_portfolio_load(text_to_cstring(PG_GETARG_TEXT_PP(0)),
							 PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1)));
	var = wval_portfolio_variance(pf->k, pf->w, pf->cov);
	sigma = wval_portfolio_sigma(pf->k, pf->w, pf->cov);
	if (isnan(sigma))
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
				 errmsg("the covariance of risk snapshot \"%s\" gives a negative portfolio variance", pf->version),
				 errdetail("w'Cw is %.17g (%d pairs filled with correlation %g).", var, pf->nfilled, pf->rho),
				 errhint("Send a positive semi-definite covariance, or all of its pairs.")));

	wval_jb_begin_object(&ps);
	wval_snapshot_header_push(&ps, pf->world_id, pf->version, pf->hash, pf->stage, pf->actor,
							  pf->as_of);
	wval_jb_kv_float8(&ps, "variance", Max(var, 0.0));
	wval_jb_kv_float8(&ps, "sigma", sigma);
	wval_jb_kv_float8(&ps, "var_99", wval_normal_var99(sigma));
	wval_jb_kv_float8(&ps, "es_99", wval_normal_es99(sigma));
	wval_jb_kv_float8(&ps, "z_99", WVAL_Z_99);
	wval_jb_kv_float8(&ps, "weights_sum", pf->raw_sum);
	wval_jb_key(&ps, "weights");
	wval_jb_begin_object(&ps);
	for (a = 0; a < pf->k; a++)
		wval_jb_kv_float8(&ps, pf->ids[a], pf->w[a]);
	wval_jb_end_object(&ps);
	wval_jb_kv_string(&ps, "covariance_source", pf->cov_source);
	wval_jb_kv_float8(&ps, "missing_correlation", pf->rho);
	wval_jb_key(&ps, "filled_pairs");
	wval_jb_begin_array(&ps);
	for (a = 0; a < pf->k; a++)
		for (b = a + 1; b < pf->k; b++)
			if (pf->filled[a * pf->k + b])
			{
				const char *x = strcmp(pf->ids[a], pf->ids[b]) <= 0 ? pf->ids[a] : pf->ids[b];
				const char *y = x == pf->ids[a] ? pf->ids[b] : pf->ids[a];

				wval_jb_begin_array(&ps);
				wval_jb_string(&ps, x);
				wval_jb_string(&ps, y);
				wval_jb_end_array(&ps);
			}
	wval_jb_end_array(&ps);
	PG_RETURN_JSONB_P(wval_jb_end_object(&ps));
}

