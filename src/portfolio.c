/*-------------------------------------------------------------------------
 *
 * portfolio.c
 *	  The portfolio and stress layers (docs/risk-hub.md): a candidate run is
 *	  evaluated against the world's latest fresh risk snapshot — incremental
 *	  VaR/ES, Sharpe uplift, stress scenarios — and the outcome is stored as
 *	  a run of kind "portfolio" linked to the candidate, with the portfolio
 *	  and stress checks of the candidate's profile.
 *
 * The candidate.  With k weighted strategies w (normalised to sum 1) and
 * the filled covariance C of the snapshot (hub.c), a candidate c that is
 * not in the weights enters with weight alpha (constraints.candidate_weight,
 * else 1/(k+1)) and the others are scaled by 1 - alpha:
 *
 *	  sigma_with^2 = (1-a)^2 w'Cw + 2a(1-a) sum_i w_i C_ic + a^2 C_cc
 *
 * C_cc and C_ic come from the snapshot's covariance when it has them,
 * else from the candidate's returns (and the others' realized returns),
 * else a pair is filled with the conservative correlation like the
 * baseline.  A candidate that is already weighted in the snapshot (a
 * deployed strategy re-checked after a new snapshot) is measured by what
 * its position adds: the baseline is the portfolio without it (the others
 * renormalised), the portfolio with it is the snapshot's, and alpha is its
 * own weight — the same formula read the other way round.
 *
 * The candidate's returns.  A run stores metrics, not returns, so its
 * series comes from the caller (argument "returns") or from the snapshot's
 * realized_returns under the candidate's strategy id.  Without either, the
 * candidate's variance must be in the snapshot's covariance; otherwise the
 * incremental measures are missing metrics (on_missing_metric decides).
 *
 * Idempotency.  One portfolio run per (candidate run, snapshot version,
 * active policy version, fill correlation, caller inputs): the key is
 * stored as the run's
 * client_run_id and a second call returns the stored run without writing
 * or emitting anything.  Concurrent calls with one key serialise on an
 * advisory lock.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>
#include <math.h>

#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "port/pg_bswap.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "evaluate.h"
#include "hub.h"
#include "jsonb.h"
#include "metrics.h"
#include "policy.h"
#include "returns.h"
#include "risk.h"
#include "run.h"
#include "spi.h"
#include "wval.h"

/* the layers a portfolio run evaluates */
static const char *const portfolio_layers[] = {"portfolio", "stress"};

/* Statements of this file, kept for the life of the backend (spi.h). */
static WvalPlan plan_world = WVAL_PLAN(
	"SELECT risk_tier, client_critical, wval._world_access($2, world_id, 'read') "
	"FROM wval.worlds WHERE world_id = $1",
	2, TEXTOID, OIDOID);
static WvalPlan plan_run = WVAL_PLAN(
	"SELECT world_id, strategy_id, stage, kind, campaign_id, model_card_version, code_hash, context "
	"FROM wval.evaluation_runs WHERE run_id = $1 LIMIT 1",
	1, UUIDOID);
static WvalPlan plan_version = WVAL_PLAN(
	"SELECT version FROM wval.policy_activations WHERE world_id = $1 "
	"AND (stages IS NULL OR $2 = ANY (stages)) ORDER BY activation_id DESC LIMIT 1",
	2, TEXTOID, TEXTOID);
static WvalPlan plan_existing = WVAL_PLAN(
	"SELECT * FROM wval.evaluation_runs WHERE world_id = $1 AND strategy_id = $2 "
	"AND client_run_id = $3 AND kind = 'portfolio' ORDER BY created_at LIMIT 1",
	3, TEXTOID, TEXTOID, TEXTOID);

/* The candidate run, as stored. */
typedef struct CandidateRun
{
	Datum		run_id;			/* uuid */
	char	   *run_id_text;
	char	   *strategy_id;
	char	   *stage;
	char	   *kind;
	char	   *campaign_id;	/* NULL when none */
	char	   *model_card_version;
	char	   *code_hash;
	Jsonb	   *context;
} CandidateRun;

/* What the portfolio layer computes for one candidate. */
typedef struct PortfolioFigures
{
	bool		member;			/* the candidate is weighted in the snapshot */
	int			k_base;			/* strategies in the baseline portfolio */
	double		alpha;			/* the candidate's weight */
	const char *alpha_source;
	double		base_sigma;
	bool		has_with;		/* the with-candidate figures are known */
	double		with_variance;
	double		with_sigma;
	bool		has_candidate_variance;
	double		candidate_variance;
	const char *variance_source;	/* snapshot | returns | none */
	int			pairs_snapshot; /* candidate pairs from the snapshot */
	int			pairs_returns;	/* ... estimated from returns */
	int			pairs_filled;	/* ... filled with the correlation */
	const char *returns_source; /* argument | snapshot | none */
	double	   *cr;				/* the candidate's returns */
	int			ncr;
	bool		has_uplift;
	double		base_sharpe;
	double		with_sharpe;
	double		uplift;
	int			npoints;		/* return points the Sharpes use */
	const char *uplift_note;	/* why there is no uplift */
} PortfolioFigures;

/* Pushes key: integer. */
static void
push_int(JsonbParseState **ps, const char *key, int64 n)
{
	wval_jb_key(ps, key);
	wval_jb_int64(ps, n);
}

/* Pushes key: string (null for NULL) onto an object being built. */
static void
push_string(JsonbParseState **ps, const char *key, const char *s)
{
	wval_jb_key(ps, key);
	wval_jb_string(ps, s);
}

/* ---------------------------------------------------------------------
 * Inputs
 * ---------------------------------------------------------------------
 */

/* Reads the candidate run; WV010 when unknown or of another world. */
static void
load_candidate(const char *world_id, Datum run_id, CandidateRun *cand)
{
	Datum		args[1];
	bool		isnull;
	char	   *run_world;
	Datum		ctx;

	args[0] = run_id;
	wval_spi_exec(&plan_run, args, NULL, false, 1, SPI_OK_SELECT);
	cand->run_id = run_id;
	cand->run_id_text = DatumGetCString(DirectFunctionCall1(uuid_out, run_id));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_UNKNOWN_OBJECT),
				 errmsg("evaluation run %s does not exist", cand->run_id_text),
				 errdetail("run_id is %s.", cand->run_id_text),
				 errhint("Look the run up in wval.evaluation_runs or wval.latest_runs.")));
	run_world = wval_spi_text(0, 1);
	if (strcmp(run_world, world_id) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_UNKNOWN_OBJECT),
				 errmsg("evaluation run %s is not a run of world \"%s\"", cand->run_id_text, world_id),
				 errdetail("The run belongs to world \"%s\".", run_world),
				 errhint("Evaluate a run against the snapshots of its own world.")));
	cand->strategy_id = wval_spi_text(0, 2);
	cand->stage = wval_spi_text(0, 3);
	cand->kind = wval_spi_text(0, 4);
	cand->campaign_id = wval_spi_text(0, 5);
	cand->model_card_version = wval_spi_text(0, 6);
	cand->code_hash = wval_spi_text(0, 7);
	ctx = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 8, &isnull);
	cand->context = isnull ? NULL : DatumGetJsonbPCopy(ctx);
	if (strcmp(cand->kind, "single") != 0 && strcmp(cand->kind, "live") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("evaluation run %s is a %s run, not a candidate", cand->run_id_text, cand->kind),
				 errdetail("Only runs of kind single or live can be evaluated against the portfolio."),
				 errhint("Pass the run that %s extends (its linked_run_id).", cand->run_id_text)));
}

/*
 * Checks the caller's stress results: scenario -> {measure -> number} or
 * scenario -> {strategy -> {measure -> number}} (the snapshot's shape).
 */
static void
check_stress_argument(Jsonb *stress)
{
	int			n;
	char	   *scenario = NULL;
	char	   *where;
	JsonbValue	bad;

	if (!JB_ROOT_IS_OBJECT(stress) || JB_ROOT_IS_SCALAR(stress))
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
				 errmsg("\"stress\" must be a JSON object"),
				 errhint("Pass scenario -> {\"max_drawdown\": ..., \"es_99\": ..., \"var_99\": ...}, as in a risk snapshot.")));
	switch (wval_stress_shape(&stress->root, false, &n, &scenario, &where, &bad))
	{
		case WVAL_STRESS_OK:
		case WVAL_STRESS_BAD_NAME:	/* names are not checked here */
			break;
		case WVAL_STRESS_NOT_OBJECT:
			ereport(ERROR,
					(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
					 errmsg("\"stress\" scenario \"%s\" must be an object", scenario),
					 errhint("Pass {\"max_drawdown\": ..., \"es_99\": ..., \"var_99\": ...} per scenario.")));
			break;
		case WVAL_STRESS_NOT_NUMBER:
			ereport(ERROR,
					(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
					 errmsg("\"stress\" scenario \"%s\" must hold finite numbers", scenario),
					 errdetail("stress.%s.%s is %s: %s.", scenario, where,
							   wval_jbv_type_name(&bad), wval_jbv_text(&bad, 120)),
					 errhint("Send measures as JSON numbers, per scenario or per scenario and strategy.")));
			break;
	}
}

/* A number of the candidate's context (periods_per_year, risk_free). */
static bool
context_number(Jsonb *context, const char *key, double *out)
{
	return context != NULL && wval_jbv_double(wval_json_path(context, key), out);
}

/* ---------------------------------------------------------------------
 * The portfolio figures
 * ---------------------------------------------------------------------
 */

/* sqrt of a variance; NaN when it is negative beyond rounding. */
static double
sigma_of(double variance)
{
	if (variance < 0.0)
		return variance > -1e-14 ? 0.0 : NAN;
	return sqrt(variance);
}

/*
 * The baseline and with-candidate variances for a candidate that is not
 * weighted in the snapshot: alpha from the constraints, its covariances
 * from the snapshot, else its returns, else the correlation fill.
 */
static void
figures_newcomer(const WvalPortfolio *pf, const char *id, PortfolioFigures *f)
{
	int			k = pf->k;
	double	   *row = palloc0(sizeof(double) * k);
	bool	   *known = palloc0(sizeof(bool) * k);
	double		v = 0.0;
	bool		vknown = false;
	double		cross = 0.0;
	int			a;

	f->member = false;
	f->k_base = k;
	if (pf->candidate_weight != NULL)
	{
		f->alpha = *pf->candidate_weight;
		f->alpha_source = "constraints.candidate_weight";
	}
	else
	{
		f->alpha = 1.0 / (k + 1);
		f->alpha_source = "1/(k+1)";
	}
	f->base_sigma = sigma_of(wval_portfolio_variance(k, pf->w, pf->cov));

	wval_portfolio_candidate_covariance(pf, id, row, known, &v, &vknown);
	f->variance_source = vknown ? "snapshot" : "none";
	if (!vknown && f->ncr >= 2 && wval_sample_covariance(f->cr, f->ncr, f->cr, f->ncr, &v))
	{
		vknown = true;
		f->variance_source = "returns";
	}
	for (a = 0; a < k; a++)
	{
		if (known[a])
			f->pairs_snapshot++;
		else if (f->ncr >= 2 && pf->returns[a] != NULL &&
				 wval_sample_covariance(f->cr, f->ncr, pf->returns[a], pf->nreturns[a], &row[a]))
		{
			known[a] = true;
			f->pairs_returns++;
		}
	}
	f->has_candidate_variance = vknown;
	f->candidate_variance = v;
	if (!vknown)
		return;
	for (a = 0; a < k; a++)
	{
		if (!known[a])
		{
			row[a] = pf->rho * sqrt(v * pf->cov[a * k + a]);
			f->pairs_filled++;
		}
		cross += pf->w[a] * row[a];
	}
	f->with_variance = (1.0 - f->alpha) * (1.0 - f->alpha) * wval_portfolio_variance(k, pf->w, pf->cov) +
		2.0 * f->alpha * (1.0 - f->alpha) * cross + f->alpha * f->alpha * v;
	f->with_sigma = sigma_of(f->with_variance);
	f->has_with = !isnan(f->with_sigma);
}

/*
 * A candidate already weighted at position m: the baseline is the
 * portfolio without it, the with-candidate portfolio the snapshot's.
 */
static void
figures_member(const WvalPortfolio *pf, int m, double *u, PortfolioFigures *f)
{
	int			k = pf->k;
	double		rest = 1.0 - pf->w[m];
	int			a;

	f->member = true;
	f->alpha = pf->w[m];
	f->alpha_source = "snapshot weight";
	f->variance_source = "snapshot";
	f->has_candidate_variance = true;
	f->candidate_variance = pf->cov[m * k + m];
	f->k_base = (k > 1 && fabs(rest) > 1e-12) ? k - 1 : 0;
	for (a = 0; a < k; a++)
		u[a] = (a == m || f->k_base == 0) ? 0.0 : pf->w[a] / rest;
	f->base_sigma = sigma_of(wval_portfolio_variance(k, u, pf->cov));
	f->with_variance = wval_portfolio_variance(k, pf->w, pf->cov);
	f->with_sigma = sigma_of(f->with_variance);
	f->has_with = !isnan(f->with_sigma);
}

/*
 * Sharpe of the baseline and the with-candidate portfolio over the most
 * recent points that every involved series has (u = baseline weights).
 */
static void
figures_uplift(const WvalPortfolio *pf, const double *u, int ppy, double rf, PortfolioFigures *f)
{
	int			k = pf->k;
	int			m = f->ncr;
	int			a,
				t;
	double	   *base,
			   *with;

	f->has_uplift = false;
	if (f->k_base == 0)
	{
		f->uplift_note = "the portfolio has no other strategy to compare with";
		return;
	}
	if (f->ncr == 0)
	{
		f->uplift_note = "no returns of the candidate (argument or snapshot realized_returns)";
		return;
	}
	for (a = 0; a < k; a++)
	{
		if (u[a] == 0.0)
			continue;
		if (pf->returns[a] == NULL)
		{
			f->uplift_note = psprintf("the snapshot has no realized_returns of \"%s\"", pf->ids[a]);
			return;
		}
		m = Min(m, pf->nreturns[a]);
	}
	f->npoints = m;
	if (m < 2)
	{
		f->uplift_note = "fewer than 2 return points are shared by all series";
		return;
	}
	base = palloc0(sizeof(double) * m);
	with = palloc(sizeof(double) * m);
	for (a = 0; a < k; a++)
	{
		const double *x;

		if (u[a] == 0.0)
			continue;
		x = pf->returns[a] + (pf->nreturns[a] - m);
		for (t = 0; t < m; t++)
			base[t] += u[a] * x[t];
	}
	for (t = 0; t < m; t++)
		with[t] = (1.0 - f->alpha) * base[t] + f->alpha * f->cr[f->ncr - m + t];
	if (!wval_sharpe_annual(base, m, ppy, rf, &f->base_sharpe) ||
		!wval_sharpe_annual(with, m, ppy, rf, &f->with_sharpe) ||
		!isfinite(f->base_sharpe) || !isfinite(f->with_sharpe))
	{
		f->uplift_note = "a portfolio return series has no Sharpe (zero deviation)";
		return;
	}
	f->uplift = f->with_sharpe - f->base_sharpe;
	f->has_uplift = true;
}

/* ---------------------------------------------------------------------
 * Stress
 * ---------------------------------------------------------------------
 */

/* The number-valued measures of an object as a jsonb object; NULL when it has none. */
static Jsonb *
measures_object(JsonbContainer *c)
{
	JsonbIterator *it = JsonbIteratorInit(c);
	JsonbParseState *ps = NULL;
	JsonbValue	k,
				v;
	JsonbIteratorToken tok;
	bool		any = false;
	double		d;
	Jsonb	   *result;

	wval_jb_begin_object(&ps);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		if (tok != WJB_KEY)
			continue;
		tok = JsonbIteratorNext(&it, &v, true);
		if (!wval_jbv_double(&v, &d))
			continue;
		wval_jb_key(&ps, pnstrdup(k.val.string.val, k.val.string.len));
		wval_jb_float8(&ps, d);
		any = true;
	}
	result = wval_jb_end_object(&ps);
	return any ? result : NULL;
}

/*
 * Pushes the candidate's scenarios of one stress object onto the stress
 * block and their source onto the sources (two open objects): per
 * scenario, the candidate's own entry (source "strategy") or else the
 * scenario's portfolio-wide measures (label); a scenario with neither is
 * left out (a missing metric for a check that names it).  A scenario
 * pushed again replaces the earlier one (jsonb keeps the last of
 * duplicate keys).
 */
static void
push_scenarios(JsonbParseState **block, JsonbParseState **sources, JsonbContainer *stress,
			   const char *strategy_id, const char *label)
{
	JsonbIterator *it = JsonbIteratorInit(stress);
	JsonbValue	k,
				sc;
	JsonbIteratorToken tok;

	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		JsonbValue *own;
		Jsonb	   *m = NULL;
		const char *source = "strategy";
		char	   *name;

		if (tok != WJB_KEY)
			continue;
		tok = JsonbIteratorNext(&it, &sc, true);
		if (!wval_jbv_is_object(&sc))
			continue;
		own = getKeyJsonValueFromContainer(sc.val.binary.data, strategy_id, strlen(strategy_id), NULL);
		if (wval_jbv_is_object(own))
			m = measures_object(own->val.binary.data);
		if (m == NULL)
		{
			m = measures_object(sc.val.binary.data);
			source = label;
		}
		if (m == NULL)
			continue;
		name = pnstrdup(k.val.string.val, k.val.string.len);
		wval_jb_key(block, name);
		wval_jb_jsonb(block, m);
		push_string(sources, name, source);
	}
}

/* ---------------------------------------------------------------------
 * The run
 * ---------------------------------------------------------------------
 */

/*
 * The idempotency key of a portfolio run: candidate run, snapshot
 * version, policy version, the fill correlation and (when the caller
 * passed any) a digest of the caller's returns and stress.
 */
static char *
idempotency_key(const CandidateRun *cand, const WvalPortfolio *pf, int version,
				const double *returns, int nreturns, Jsonb *stress)
{
	StringInfoData key;

	initStringInfo(&key);
	appendStringInfo(&key, "portfolio:%s:%s:v%d:rho", cand->run_id_text, pf->version, version);
	wval_append_float8(&key, pf->rho);
	if (returns != NULL || stress != NULL)
	{
		StringInfoData inputs;
		char		hex[WVAL_SHA256_HEX_LEN + 1];

		initStringInfo(&inputs);
		appendStringInfoString(&inputs, returns ? wval_returns_hash(returns, nreturns) : "-");
		appendStringInfoChar(&inputs, '|');
		if (stress)
			appendStringInfoString(&inputs, JsonbToCString(NULL, &stress->root, VARSIZE(stress)));
		wval_sha256_hex(inputs.data, inputs.len, hex);
		hex[16] = '\0';
		appendStringInfo(&key, ":%s", hex);
	}
	return key.data;
}

/* Pushes the portfolio block: the baseline and with-candidate figures. */
static void
push_portfolio_block(JsonbParseState **ps, const WvalPortfolio *pf, const PortfolioFigures *f)
{
	bool		base_ok = !isnan(f->base_sigma);

	wval_jb_key(ps, "portfolio");
	wval_jb_begin_object(ps);
	wval_jb_kv_finite(ps, "baseline_sigma", base_ok, f->base_sigma);
	wval_jb_kv_finite(ps, "baseline_var_99", base_ok, wval_normal_var99(f->base_sigma));
	wval_jb_kv_finite(ps, "baseline_es_99", base_ok, wval_normal_es99(f->base_sigma));
	wval_jb_kv_finite(ps, "sigma", f->has_with, f->with_sigma);
	wval_jb_kv_finite(ps, "var_99", f->has_with, wval_normal_var99(f->with_sigma));
	wval_jb_kv_finite(ps, "es_99", f->has_with, wval_normal_es99(f->with_sigma));
	wval_jb_key(ps, "candidate_weight");
	wval_jb_float8(ps, f->alpha);
	wval_jb_kv_finite(ps, "candidate_variance", f->has_candidate_variance, f->candidate_variance);
	push_int(ps, "n_strategies", f->k_base);
	push_int(ps, "filled_pairs", pf->nfilled);
	push_int(ps, "candidate_filled_pairs", f->pairs_filled);
	wval_jb_kv_finite(ps, "baseline_sharpe", f->has_uplift, f->base_sharpe);
	wval_jb_kv_finite(ps, "sharpe", f->has_uplift, f->with_sharpe);
	wval_jb_kv_finite(ps, "sharpe_uplift", f->has_uplift, f->uplift);
	wval_jb_kv_finite(ps, "return_points", f->npoints > 0, f->npoints);
	wval_jb_end_object(ps);
}

/* Pushes the diagnostics block: where each input came from, and notes. */
static void
push_diagnostics_block(JsonbParseState **ps, const WvalPortfolio *pf, const PortfolioFigures *f,
					   Jsonb *stress_sources)
{
	wval_jb_key(ps, "diagnostics");
	wval_jb_begin_object(ps);
	wval_jb_key(ps, "candidate_in_snapshot");
	wval_jb_bool(ps, f->member);
	push_string(ps, "candidate_weight_source", f->alpha_source);
	push_string(ps, "candidate_variance_source", f->variance_source);
	wval_jb_key(ps, "candidate_pairs");
	wval_jb_begin_object(ps);
	push_int(ps, "snapshot", f->pairs_snapshot);
	push_int(ps, "returns", f->pairs_returns);
	push_int(ps, "filled", f->pairs_filled);
	wval_jb_end_object(ps);
	push_string(ps, "candidate_returns_source", f->returns_source);
	push_string(ps, "covariance_source", pf->cov_source);
	wval_jb_key(ps, "missing_correlation");
	wval_jb_float8(ps, pf->rho);
	if ((f->member || f->has_candidate_variance) && !f->has_with)
	{
		wval_jb_key(ps, "with_candidate_variance");
		wval_jb_float8(ps, f->with_variance);
		push_string(ps, "note", "the covariance with the candidate is not positive semi-definite: no incremental VaR/ES");
	}
	else if (!f->member && !f->has_candidate_variance)
		push_string(ps, "note", "no variance of the candidate: neither in the snapshot's covariance nor from 2 or more returns");
	if (!f->has_uplift && f->uplift_note)
		push_string(ps, "sharpe_uplift_note", f->uplift_note);
	wval_jb_key(ps, "stress_source");
	wval_jb_jsonb(ps, stress_sources);
	wval_jb_end_object(ps);
}

/* The metrics document of the run (portfolio, risk, stress, diagnostics). */
static Jsonb *
portfolio_metrics(const WvalPortfolio *pf, const PortfolioFigures *f, Jsonb *stress, Jsonb *stress_sources)
{
	JsonbParseState *ps = NULL;
	bool		incremental = f->has_with && !isnan(f->base_sigma);

	wval_jb_begin_object(&ps);
	push_portfolio_block(&ps, pf, f);
	wval_jb_key(&ps, "risk");
	wval_jb_begin_object(&ps);
	wval_jb_kv_finite(&ps, "incremental_var_99", incremental, WVAL_Z_99 * (f->with_sigma - f->base_sigma));
	wval_jb_kv_finite(&ps, "incremental_es_99", incremental,
				wval_normal_es99(1.0) * (f->with_sigma - f->base_sigma));
	wval_jb_end_object(&ps);
	wval_jb_key(&ps, "stress");
	wval_jb_jsonb(&ps, stress);
	push_diagnostics_block(&ps, pf, f, stress_sources);
	return wval_jb_end_object(&ps);
}

/* The request of wval_evaluate_portfolio, parsed and checked (pf_parse). */
typedef struct PortfolioRequest
{
	char	   *world;
	Datum		run_id;			/* the candidate run (uuid) */
	double	   *returns;		/* the caller's returns, or NULL */
	int			nreturns;
	Jsonb	   *stress;			/* the caller's stress results, or NULL */
	char	   *snapshot_stage; /* or NULL: the latest snapshot of any stage */
	char	   *actor;
} PortfolioRequest;

/* What wval_evaluate_portfolio reads (pf_load). */
typedef struct PortfolioInputs
{
	char	   *risk_tier;
	bool		fail_closed;
	int			version;		/* the active policy version */
	CandidateRun cand;
	WvalPortfolio *pf;			/* the latest fresh snapshot */
	char	   *key;			/* idempotency key, stored as client_run_id */
} PortfolioInputs;

/* What wval_evaluate_portfolio computes (pf_compute). */
typedef struct PortfolioOutcome
{
	PortfolioFigures f;
	int			ppy;
	double		rf;
	Jsonb	   *metrics;
	WvalRuleset *rs;			/* the candidate's profile, or NULL */
	WvalProfileOutcome out;
} PortfolioOutcome;

/* Parses and checks the arguments of wval_evaluate_portfolio. */
static void
pf_parse(FunctionCallInfo fcinfo, PortfolioRequest *req)
{
	memset(req, 0, sizeof(PortfolioRequest));
	req->stress = PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3);
	req->snapshot_stage = PG_ARGISNULL(4) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(4));
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" must not be null", PG_ARGISNULL(0) ? "world_id" : "run_id"),
				 errhint("Pass the world and the candidate run to evaluate against its portfolio.")));
	req->world = text_to_cstring(PG_GETARG_TEXT_PP(0));
	req->run_id = PG_GETARG_DATUM(1);
	wval_check_identifier("world_id", req->world);
	if (!PG_ARGISNULL(2))
		req->returns = wval_returns_from_array(PG_GETARG_ARRAYTYPE_P(2), "returns", &req->nreturns);
	if (req->stress != NULL)
		check_stress_argument(req->stress);
	if (req->snapshot_stage != NULL)
		wval_check_stage(req->snapshot_stage);
	req->actor = GetUserNameFromId(GetOuterUserId(), false);
}

/*
 * Reads the world (one the caller may not see does not exist for it), the
 * candidate, the active policy version and the snapshot (WV010 none, WV005
 * stale), and makes the idempotency key.
 */
static void
pf_load(const PortfolioRequest *req, PortfolioInputs *in)
{
	Datum		args[2];
	bool		isnull;

	args[0] = CStringGetTextDatum(req->world);
	args[1] = ObjectIdGetDatum(GetOuterUserId());
	wval_spi_exec(&plan_world, args, NULL, false, 1, SPI_OK_SELECT);
	if (SPI_processed == 0 ||
		!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull)))
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_UNKNOWN_OBJECT),
				 errmsg("world \"%s\" does not exist", req->world),
				 errdetail("world_id is '%s'.", req->world),
				 errhint("Create it first with wval_world_upsert(world_id).")));
	in->risk_tier = wval_spi_text(0, 1);
	in->fail_closed = strcmp(in->risk_tier, "high") == 0 &&
		DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	load_candidate(req->world, req->run_id, &in->cand);
	/* the version active at the candidate's stage (the stage of the run) */
	args[1] = CStringGetTextDatum(in->cand.stage);
	wval_spi_exec(&plan_version, args, NULL, false, 1, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_UNKNOWN_OBJECT),
				 errmsg("world \"%s\" has no active policy version", req->world),
				 errdetail("Nothing was evaluated and nothing was recorded."),
				 errhint("Publish a policy with wval_policy_publish() and activate it with wval_policy_activate().")));
	in->version = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	in->pf = wval_portfolio_load(req->world, req->snapshot_stage);
	in->key = idempotency_key(&in->cand, in->pf, in->version, req->returns, req->nreturns, req->stress);
}

/*
 * Idempotency: the run stored under the key, if any (then *stored is it).
 * The look-up after the lock takes a new snapshot, so a run committed while
 * we waited counts.
 */
static bool
pf_find_stored(const PortfolioRequest *req, const PortfolioInputs *in, Datum *stored)
{
	Datum		args[3];

	DirectFunctionCall1(pg_advisory_xact_lock_int8,
						Int64GetDatum((int64) hash_bytes_extended((const unsigned char *) in->key,
																  strlen(in->key), 0)));
	args[0] = CStringGetTextDatum(req->world);
	args[1] = CStringGetTextDatum(in->cand.strategy_id);
	args[2] = CStringGetTextDatum(in->key);
	wval_spi_exec(&plan_existing, args, NULL, false, 1, SPI_OK_SELECT);
	if (SPI_processed != 1)
		return false;
	*stored = PointerGetDatum(SPI_returntuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc));
	return true;
}

/* The portfolio figures of the candidate (WV004 for a negative baseline variance). */
static void
compute_figures(const PortfolioRequest *req, const PortfolioInputs *in, PortfolioOutcome *res)
{
	PortfolioFigures *f = &res->f;
	const WvalPortfolio *pf = in->pf;
	double		ppy_d = 252;
	double	   *u;
	int			m;

	/* the candidate's returns: the argument, else the snapshot's realized returns */
	memset(f, 0, sizeof(PortfolioFigures));
	if (req->returns != NULL)
	{
		f->cr = req->returns;
		f->ncr = req->nreturns;
		f->returns_source = "argument";
	}
	else
	{
		f->cr = wval_portfolio_series(pf, in->cand.strategy_id, &f->ncr);
		f->returns_source = f->cr ? "snapshot" : "none";
	}
	if (context_number(in->cand.context, "periods_per_year", &ppy_d) && ppy_d >= 1 && ppy_d <= INT_MAX)
		res->ppy = (int) ppy_d;
	else
		res->ppy = 252;
	res->rf = 0.0;
	(void) context_number(in->cand.context, "risk_free", &res->rf);

	u = palloc0(sizeof(double) * pf->k);
	m = wval_portfolio_position(pf, in->cand.strategy_id);
	if (m >= 0)
		figures_member(pf, m, u, f);
	else
	{
		figures_newcomer(pf, in->cand.strategy_id, f);
		memcpy(u, pf->w, sizeof(double) * pf->k);
	}
	if (isnan(f->base_sigma))
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
				 errmsg("the covariance of risk snapshot \"%s\" gives a negative portfolio variance", pf->version),
				 errdetail("%d pairs were filled with correlation %g.", pf->nfilled, pf->rho),
				 errhint("Send a positive semi-definite covariance, or all of its pairs.")));
	figures_uplift(pf, u, res->ppy, res->rf, f);
}

/*
 * Computes the figures and the stress block (the snapshot's scenarios, then
 * the caller's, which win), and applies the portfolio and stress checks of
 * the candidate's profile.
 */
static void
pf_compute(const PortfolioRequest *req, const PortfolioInputs *in, PortfolioOutcome *res)
{
	JsonbParseState *block = NULL;
	JsonbParseState *sources = NULL;
	JsonbValue *snap_stress;
	WvalPolicy *policy;
	int			p;
	WvalEvalInput ein;

	compute_figures(req, in, res);
	wval_jb_begin_object(&block);
	wval_jb_begin_object(&sources);
	snap_stress = getKeyJsonValueFromContainer(&in->pf->payload->root, "stress", 6, NULL);
	if (wval_jbv_is_object(snap_stress))
		push_scenarios(&block, &sources, snap_stress->val.binary.data, in->cand.strategy_id, "portfolio");
	/* a caller's scenario replaces the snapshot's */
	if (req->stress != NULL)
		push_scenarios(&block, &sources, &req->stress->root, in->cand.strategy_id, "caller");
	res->metrics = portfolio_metrics(in->pf, &res->f, wval_jb_end_object(&block), wval_jb_end_object(&sources));

	policy = wval_policy_for_version(req->world, in->version, in->fail_closed);
	p = wval_policy_profile_for_stage(policy, in->cand.stage);
	res->rs = p >= 0 ? &policy->profiles[p] : NULL;
	memset(&ein, 0, sizeof(ein));
	ein.metrics = res->metrics;
	ein.stage = in->cand.stage;
	ein.now = GetCurrentTransactionStartTimestamp();
	wval_evaluate_ruleset(res->rs, &ein, portfolio_layers, lengthof(portfolio_layers), &res->out);
}

/* The data_snapshot of a portfolio run: the risk snapshot it used. */
static Jsonb *
portfolio_data_snapshot(const char *world, const WvalPortfolio *pf)
{
	JsonbParseState *ps = NULL;

	wval_jb_begin_object(&ps);
	wval_jb_key(&ps, "risk_snapshot");
	wval_jb_begin_object(&ps);
	push_string(&ps, "world_id", world);
	push_string(&ps, "version", pf->version);
	push_string(&ps, "hash", pf->hash);
	push_string(&ps, "stage", pf->stage);
	push_string(&ps, "actor", pf->actor);
	push_string(&ps, "as_of", wval_iso_utc(pf->as_of));
	wval_jb_end_object(&ps);
	return wval_jb_end_object(&ps);
}

/* The context of a portfolio run: the candidate and the caller's inputs. */
static Jsonb *
portfolio_context(const PortfolioRequest *req, const PortfolioInputs *in, const PortfolioOutcome *res)
{
	JsonbParseState *ps = NULL;

	wval_jb_begin_object(&ps);
	push_string(&ps, "candidate_run_id", in->cand.run_id_text);
	push_string(&ps, "snapshot_stage", req->snapshot_stage);
	wval_jb_key(&ps, "returns_supplied");
	wval_jb_bool(&ps, req->returns != NULL);
	wval_jb_key(&ps, "stress_supplied");
	wval_jb_bool(&ps, req->stress != NULL);
	wval_jb_key(&ps, "periods_per_year");
	wval_jb_int64(&ps, res->ppy);
	wval_jb_key(&ps, "risk_free");
	wval_jb_float8(&ps, res->rf);
	return wval_jb_end_object(&ps);
}

/* The candidate's evaluation_run_updated (extended_validation) for a new portfolio run. */
static void
candidate_updated_event(const char *world, const PortfolioInputs *in, const PortfolioOutcome *res,
						const char *new_run_text, WvalEvent *ev)
{
	JsonbParseState *ps = NULL;

	wval_jb_begin_object(&ps);
	push_string(&ps, "run_id", in->cand.run_id_text);
	push_string(&ps, "world_id", world);
	push_string(&ps, "strategy_id", in->cand.strategy_id);
	push_string(&ps, "change_type", "extended_validation");
	wval_jb_key(&ps, "layers");
	wval_jb_begin_array(&ps);
	wval_jb_string(&ps, "portfolio");
	wval_jb_string(&ps, "stress");
	wval_jb_end_array(&ps);
	push_string(&ps, "extended_run_id", new_run_text);
	push_string(&ps, "kind", "portfolio");
	push_string(&ps, "status", res->out.status);
	wval_jb_key(&ps, "policy_version");
	wval_jb_int64(&ps, in->version);
	push_string(&ps, "snapshot_version", in->pf->version);
	ev->type = "evaluation_run_updated";
	ev->world_id = world;
	ev->subject = in->cand.run_id_text;
	ev->idempotency_key = psprintf("evaluation_run_updated:%s:%s:extended_validation:%s",
								   world, in->cand.run_id_text, new_run_text);
	ev->data = wval_jb_end_object(&ps);
	ev->ttl = NULL;
}

/*
 * Stores the portfolio run with its rule results and evaluation_run_created,
 * followed by the candidate's evaluation_run_updated (run.c).
 */
static Datum
pf_store(const PortfolioRequest *req, const PortfolioInputs *in, const PortfolioOutcome *res)
{
	WvalRun		run;
	WvalEvent	updated;

	wval_run_init(&run);
	run.run_id = DirectFunctionCall1(gen_random_uuid, (Datum) 0);
	run.world_id = req->world;
	run.strategy_id = in->cand.strategy_id;
	run.stage = in->cand.stage;
	run.kind = "portfolio";
	run.campaign_id = in->cand.campaign_id;
	run.risk_tier = in->risk_tier;
	run.model_card_version = in->cand.model_card_version;
	run.code_hash = in->cand.code_hash;
	run.data_snapshot = portfolio_data_snapshot(req->world, in->pf);
	run.context = portfolio_context(req, in, res);
	run.client_run_id = in->key;
	run.returns_hash = res->f.cr ? wval_returns_hash(res->f.cr, res->f.ncr) : NULL;
	run.metrics = res->metrics;
	run.has_policy_version = true;
	run.policy_version = in->version;
	run.ruleset_hash = res->rs ? res->rs->hash : NULL;
	run.profile = res->rs ? res->rs->profile : NULL;
	run.status = res->out.status;
	run.results = res->out.results;
	run.linked_run_id = in->cand.run_id;
	run.created_by = req->actor;
	candidate_updated_event(req->world, in, res, DatumGetCString(DirectFunctionCall1(uuid_out, run.run_id)),
							&updated);
	run.followup = &updated;
	/* the candidate's returns (world setting store_returns, returns.c), then the run */
	if (res->f.cr != NULL)
		wval_store_run_returns(req->world, run.returns_hash, res->f.cr, res->f.ncr);
	return wval_run_store(&run);
}

PG_FUNCTION_INFO_V1(wval_evaluate_portfolio);

/*
 * wval_evaluate_portfolio(world_id, run_id, returns, stress, snapshot_stage)
 * → wval.evaluation_runs: the portfolio and stress layers of a candidate
 * run against the world's latest fresh snapshot, stored as a linked run of
 * kind portfolio (see the file header), with evaluation_run_created for it
 * and evaluation_run_updated (extended_validation) for the candidate.
 * Parse, load, (a stored run for the key is returned) compute, store.
 */
Datum
wval_evaluate_portfolio(PG_FUNCTION_ARGS)
{
	PortfolioRequest req;
	PortfolioInputs in;
	PortfolioOutcome res;
	Datum		result;

	pf_parse(fcinfo, &req);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	pf_load(&req, &in);
	if (!pf_find_stored(&req, &in, &result))
	{
		pf_compute(&req, &in, &res);
		result = pf_store(&req, &in, &res);
	}
	SPI_finish();
	PG_RETURN_DATUM(result);
}
