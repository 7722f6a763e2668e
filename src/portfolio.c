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
#include "metrics.h"
#include "policy.h"
#include "returns.h"
#include "wval.h"

/* the layers a portfolio run evaluates */
static const char *const portfolio_layers[] = {"portfolio", "stress"};

/* A prepared statement of this file, kept for the life of the backend. */
typedef struct PortfolioPlan
{
	const char *sql;
	int			nargs;
	Oid			types[22];
	SPIPlanPtr	plan;
} PortfolioPlan;

static PortfolioPlan plan_world = {
	"SELECT risk_tier, client_critical, wval._world_access($2, world_id, 'read') "
	"FROM wval.worlds WHERE world_id = $1",
	2, {TEXTOID, OIDOID}, NULL
};
static PortfolioPlan plan_run = {
	"SELECT world_id, strategy_id, stage, kind, campaign_id, model_card_version, code_hash, context "
	"FROM wval.evaluation_runs WHERE run_id = $1 LIMIT 1",
	1, {UUIDOID}, NULL
};
static PortfolioPlan plan_version = {
	"SELECT version FROM wval.policy_activations WHERE world_id = $1 "
	"ORDER BY activation_id DESC LIMIT 1",
	1, {TEXTOID}, NULL
};
static PortfolioPlan plan_existing = {
	"SELECT * FROM wval.evaluation_runs WHERE world_id = $1 AND strategy_id = $2 "
	"AND client_run_id = $3 AND kind = 'portfolio' ORDER BY created_at LIMIT 1",
	3, {TEXTOID, TEXTOID, TEXTOID}, NULL
};
static PortfolioPlan plan_results = {
	"INSERT INTO wval.rule_results (run_id, world_id, strategy_id, stage, rule, layer, status, "
	"severity, owner, reason_code, reason, tags, details, created_at) "
	"SELECT $1, $2, $3, $4, r.key, split_part(r.key, '.', 1), r.value->>'status', "
	"r.value->>'severity', r.value->>'owner', r.value->>'reason_code', r.value->>'reason', "
	"ARRAY(SELECT jsonb_array_elements_text(r.value->'tags')), coalesce(r.value->'details', '{}'), $6 "
	"FROM jsonb_each($5) r",
	6, {UUIDOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID, TIMESTAMPTZOID}, NULL
};
static PortfolioPlan plan_emit = {
	"SELECT wval._emit($1, $2, $3, $4, $5)",
	5, {TEXTOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID}, NULL
};
static PortfolioPlan plan_insert = {
	"INSERT INTO wval.evaluation_runs (world_id, strategy_id, stage, kind, campaign_id, risk_tier, "
	"model_card_version, code_hash, data_snapshot, context, client_run_id, returns_hash, metrics, "
	"policy_version, ruleset_hash, profile, status, results, linked_run_id, created_by, run_id, created_at) "
	"VALUES ($1, $2, $3, 'portfolio', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, "
	"$18, $19, $20, $21) RETURNING *",
	21, {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, JSONBOID, JSONBOID,
		TEXTOID, TEXTOID, JSONBOID, INT4OID, TEXTOID, TEXTOID, TEXTOID, JSONBOID, UUIDOID,
	TEXTOID, UUIDOID, TIMESTAMPTZOID}, NULL
};

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

/* Prepares a statement of this file once per backend and runs it. */
static int
exec_plan(PortfolioPlan *p, Datum *values, const char *nulls, bool read_only, long count)
{
	int			ret;

	if (p->plan == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(p->sql, p->nargs, p->types);

		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "could not prepare portfolio statement: %s",
				 SPI_result_code_string(SPI_result));
		p->plan = plan;
	}
	ret = SPI_execute_plan(p->plan, values, nulls, read_only, count);
	if (ret < 0)
		elog(ERROR, "portfolio statement failed: %s", SPI_result_code_string(ret));
	return ret;
}

/* A text column of the current SPI row, NULL when null. */
static char *
spi_text(int col)
{
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col);
}

/* A text Datum, or a null flag when s is NULL. */
static Datum
text_or_null(const char *s, char *nullflag)
{
	*nullflag = s ? ' ' : 'n';
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

/* Appends a number, or null when it is not known. */
static void
append_number_or_null(StringInfo buf, bool known, double d)
{
	if (known && isfinite(d))
		wval_append_float8(buf, d);
	else
		appendStringInfoString(buf, "null");
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
	exec_plan(&plan_run, args, NULL, false, 1);
	cand->run_id = run_id;
	cand->run_id_text = DatumGetCString(DirectFunctionCall1(uuid_out, run_id));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_UNKNOWN_OBJECT),
				 errmsg("evaluation run %s does not exist", cand->run_id_text),
				 errdetail("run_id is %s.", cand->run_id_text),
				 errhint("Look the run up in wval.evaluation_runs or wval.latest_runs.")));
	run_world = spi_text(1);
	if (strcmp(run_world, world_id) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_UNKNOWN_OBJECT),
				 errmsg("evaluation run %s is not a run of world \"%s\"", cand->run_id_text, world_id),
				 errdetail("The run belongs to world \"%s\".", run_world),
				 errhint("Evaluate a run against the snapshots of its own world.")));
	cand->strategy_id = spi_text(2);
	cand->stage = spi_text(3);
	cand->kind = spi_text(4);
	cand->campaign_id = spi_text(5);
	cand->model_card_version = spi_text(6);
	cand->code_hash = spi_text(7);
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

/* Appends the number-valued measures of an object as a JSON object. */
static bool
append_measures(StringInfo buf, JsonbContainer *c)
{
	JsonbIterator *it = JsonbIteratorInit(c);
	JsonbValue	k,
				v;
	JsonbIteratorToken tok;
	bool		any = false;
	double		d;

	appendStringInfoChar(buf, '{');
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		if (tok != WJB_KEY)
			continue;
		tok = JsonbIteratorNext(&it, &v, true);
		if (!wval_jbv_double(&v, &d))
			continue;
		if (any)
			appendStringInfoString(buf, ", ");
		wval_append_json_string(buf, pnstrdup(k.val.string.val, k.val.string.len));
		appendStringInfoString(buf, ": ");
		wval_append_float8(buf, d);
		any = true;
	}
	appendStringInfoChar(buf, '}');
	return any;
}

/*
 * Appends the candidate's scenarios of one stress object to the stress
 * block and their source to the sources: per scenario, the candidate's
 * own entry (source "strategy") or else the scenario's portfolio-wide
 * measures (label); a scenario with neither is left out (a missing
 * metric for a check that names it).
 */
static void
append_scenarios(StringInfo block, StringInfo sources, JsonbContainer *stress,
				 const char *strategy_id, const char *label)
{
	JsonbIterator *it = JsonbIteratorInit(stress);
	JsonbValue	k,
				sc;
	JsonbIteratorToken tok;

	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		JsonbValue *own;
		StringInfoData m;
		const char *source;

		if (tok != WJB_KEY)
			continue;
		tok = JsonbIteratorNext(&it, &sc, true);
		if (!wval_jbv_is_object(&sc))
			continue;
		initStringInfo(&m);
		own = getKeyJsonValueFromContainer(sc.val.binary.data, strategy_id, strlen(strategy_id), NULL);
		if (wval_jbv_is_object(own) && append_measures(&m, own->val.binary.data))
			source = "strategy";
		else
		{
			resetStringInfo(&m);
			if (!append_measures(&m, sc.val.binary.data))
				continue;
			source = label;
		}
		if (block->len > 1)
			appendStringInfoString(block, ", ");
		wval_append_json_string(block, pnstrdup(k.val.string.val, k.val.string.len));
		appendStringInfo(block, ": %s", m.data);
		if (sources->len > 1)
			appendStringInfoString(sources, ", ");
		wval_append_json_string(sources, pnstrdup(k.val.string.val, k.val.string.len));
		appendStringInfoString(sources, ": ");
		wval_append_json_string(sources, source);
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
		char		hex[65];

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

/* The metrics document of the run (portfolio, risk, stress, diagnostics). */
static Jsonb *
portfolio_metrics(const WvalPortfolio *pf, const PortfolioFigures *f, const char *stress_block,
				  const char *stress_sources)
{
	StringInfoData b;
	double		z_es = wval_normal_es99(1.0);
	bool		base_ok = !isnan(f->base_sigma);

	initStringInfo(&b);
	appendStringInfoString(&b, "{\"portfolio\": {\"baseline_sigma\": ");
	append_number_or_null(&b, base_ok, f->base_sigma);
	appendStringInfoString(&b, ", \"baseline_var_99\": ");
	append_number_or_null(&b, base_ok, wval_normal_var99(f->base_sigma));
	appendStringInfoString(&b, ", \"baseline_es_99\": ");
	append_number_or_null(&b, base_ok, wval_normal_es99(f->base_sigma));
	appendStringInfoString(&b, ", \"sigma\": ");
	append_number_or_null(&b, f->has_with, f->with_sigma);
	appendStringInfoString(&b, ", \"var_99\": ");
	append_number_or_null(&b, f->has_with, wval_normal_var99(f->with_sigma));
	appendStringInfoString(&b, ", \"es_99\": ");
	append_number_or_null(&b, f->has_with, wval_normal_es99(f->with_sigma));
	appendStringInfoString(&b, ", \"candidate_weight\": ");
	wval_append_float8(&b, f->alpha);
	appendStringInfoString(&b, ", \"candidate_variance\": ");
	append_number_or_null(&b, f->has_candidate_variance, f->candidate_variance);
	appendStringInfo(&b, ", \"n_strategies\": %d, \"filled_pairs\": %d, \"candidate_filled_pairs\": %d",
					 f->k_base, pf->nfilled, f->pairs_filled);
	appendStringInfoString(&b, ", \"baseline_sharpe\": ");
	append_number_or_null(&b, f->has_uplift, f->base_sharpe);
	appendStringInfoString(&b, ", \"sharpe\": ");
	append_number_or_null(&b, f->has_uplift, f->with_sharpe);
	appendStringInfoString(&b, ", \"sharpe_uplift\": ");
	append_number_or_null(&b, f->has_uplift, f->uplift);
	appendStringInfoString(&b, ", \"return_points\": ");
	if (f->npoints > 0)
		appendStringInfo(&b, "%d", f->npoints);
	else
		appendStringInfoString(&b, "null");

	appendStringInfoString(&b, "}, \"risk\": {\"incremental_var_99\": ");
	append_number_or_null(&b, f->has_with && base_ok,
						  WVAL_Z_99 * (f->with_sigma - f->base_sigma));
	appendStringInfoString(&b, ", \"incremental_es_99\": ");
	append_number_or_null(&b, f->has_with && base_ok, z_es * (f->with_sigma - f->base_sigma));
	appendStringInfo(&b, "}, \"stress\": %s, \"diagnostics\": {\"candidate_in_snapshot\": %s",
					 stress_block, f->member ? "true" : "false");
	appendStringInfoString(&b, ", \"candidate_weight_source\": ");
	wval_append_json_string(&b, f->alpha_source);
	appendStringInfoString(&b, ", \"candidate_variance_source\": ");
	wval_append_json_string(&b, f->variance_source);
	appendStringInfo(&b, ", \"candidate_pairs\": {\"snapshot\": %d, \"returns\": %d, \"filled\": %d}",
					 f->pairs_snapshot, f->pairs_returns, f->pairs_filled);
	appendStringInfoString(&b, ", \"candidate_returns_source\": ");
	wval_append_json_string(&b, f->returns_source);
	appendStringInfoString(&b, ", \"covariance_source\": ");
	wval_append_json_string(&b, pf->cov_source);
	appendStringInfoString(&b, ", \"missing_correlation\": ");
	wval_append_float8(&b, pf->rho);
	if (f->member || f->has_candidate_variance)
	{
		if (!f->has_with)
		{
			appendStringInfoString(&b, ", \"with_candidate_variance\": ");
			wval_append_float8(&b, f->with_variance);
			appendStringInfoString(&b, ", \"note\": \"the covariance with the candidate is not positive semi-definite: no incremental VaR/ES\"");
		}
	}
	else
		appendStringInfoString(&b, ", \"note\": \"no variance of the candidate: neither in the snapshot's covariance nor from 2 or more returns\"");
	if (!f->has_uplift && f->uplift_note)
	{
		appendStringInfoString(&b, ", \"sharpe_uplift_note\": ");
		wval_append_json_string(&b, f->uplift_note);
	}
	appendStringInfo(&b, ", \"stress_source\": %s}}", stress_sources);
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(b.data)));
}

PG_FUNCTION_INFO_V1(wval_evaluate_portfolio);

/*
 * wval_evaluate_portfolio(world_id, run_id, returns, stress, snapshot_stage)
 * → wval.evaluation_runs: the portfolio and stress layers of a candidate
 * run against the world's latest fresh snapshot, stored as a linked run of
 * kind portfolio (see the file header), with evaluation_run_created for it
 * and evaluation_run_updated (extended_validation) for the candidate.
 */
Datum
wval_evaluate_portfolio(PG_FUNCTION_ARGS)
{
	char	   *world;
	Datum		run_id;
	double	   *arg_returns = NULL;
	int			n_arg_returns = 0;
	Jsonb	   *arg_stress = PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3);
	char	   *snapshot_stage = PG_ARGISNULL(4) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(4));
	CandidateRun cand;
	WvalPortfolio *pf;
	PortfolioFigures f;
	double	   *u;
	int			m;
	double		ppy_d = 252,
				rf = 0.0;
	int			ppy;
	Datum		args[21];
	char		nulls[21];
	bool		isnull;
	char	   *risk_tier;
	bool		fail_closed;
	int			version;
	char	   *key;
	WvalPolicy *policy;
	int			p;
	WvalRuleset *rs;
	WvalEvalInput in;
	WvalProfileOutcome out;
	StringInfoData stress_block,
				stress_sources,
				buf;
	JsonbValue *snap_stress;
	Jsonb	   *metrics;
	Datum		results;
	Datum		new_run;
	char	   *new_run_text;
	Datum		created_at;
	char	   *actor;
	Datum		result;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" must not be null", PG_ARGISNULL(0) ? "world_id" : "run_id"),
				 errhint("Pass the world and the candidate run to evaluate against its portfolio.")));
	world = text_to_cstring(PG_GETARG_TEXT_PP(0));
	run_id = PG_GETARG_DATUM(1);
	wval_check_identifier("world_id", world);
	if (!PG_ARGISNULL(2))
		arg_returns = wval_returns_from_array(PG_GETARG_ARRAYTYPE_P(2), "returns", &n_arg_returns);
	if (arg_stress != NULL)
		check_stress_argument(arg_stress);
	if (snapshot_stage != NULL)
		wval_check_stage(snapshot_stage);
	actor = GetUserNameFromId(GetOuterUserId(), false);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/* the world (one the caller may not see does not exist for it), the candidate, the policy */
	args[0] = CStringGetTextDatum(world);
	args[1] = ObjectIdGetDatum(GetOuterUserId());
	exec_plan(&plan_world, args, NULL, false, 1);
	if (SPI_processed == 0 ||
		!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull)))
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_UNKNOWN_OBJECT),
				 errmsg("world \"%s\" does not exist", world),
				 errdetail("world_id is '%s'.", world),
				 errhint("Create it first with wval_world_upsert(world_id).")));
	risk_tier = spi_text(1);
	fail_closed = strcmp(risk_tier, "high") == 0 &&
		DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	load_candidate(world, run_id, &cand);
	exec_plan(&plan_version, args, NULL, false, 1);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_UNKNOWN_OBJECT),
				 errmsg("world \"%s\" has no active policy version", world),
				 errdetail("Nothing was evaluated and nothing was recorded."),
				 errhint("Publish a policy with wval_policy_publish() and activate it with wval_policy_activate().")));
	version = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

	/* the snapshot (WV010 none, WV005 stale) */
	pf = wval_portfolio_load(world, snapshot_stage);

	/* idempotency: the same key returns the stored run */
	key = idempotency_key(&cand, pf, version, arg_returns, n_arg_returns, arg_stress);
	DirectFunctionCall1(pg_advisory_xact_lock_int8,
						Int64GetDatum((int64) hash_bytes_extended((const unsigned char *) key, strlen(key), 0)));
	args[0] = CStringGetTextDatum(world);
	args[1] = CStringGetTextDatum(cand.strategy_id);
	args[2] = CStringGetTextDatum(key);
	/* a new snapshot: a run committed while we waited for the lock counts */
	exec_plan(&plan_existing, args, NULL, false, 1);
	if (SPI_processed == 1)
	{
		result = PointerGetDatum(SPI_returntuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc));
		SPI_finish();
		PG_RETURN_DATUM(result);
	}

	/* the candidate's returns: the argument, else the snapshot's realized returns */
	memset(&f, 0, sizeof(f));
	if (arg_returns != NULL)
	{
		f.cr = arg_returns;
		f.ncr = n_arg_returns;
		f.returns_source = "argument";
	}
	else
	{
		f.cr = wval_portfolio_series(pf, cand.strategy_id, &f.ncr);
		f.returns_source = f.cr ? "snapshot" : "none";
	}
	if (context_number(cand.context, "periods_per_year", &ppy_d) && ppy_d >= 1 && ppy_d <= INT_MAX)
		ppy = (int) ppy_d;
	else
		ppy = 252;
	(void) context_number(cand.context, "risk_free", &rf);

	/* the figures */
	u = palloc0(sizeof(double) * pf->k);
	m = wval_portfolio_position(pf, cand.strategy_id);
	if (m >= 0)
		figures_member(pf, m, u, &f);
	else
	{
		figures_newcomer(pf, cand.strategy_id, &f);
		memcpy(u, pf->w, sizeof(double) * pf->k);
	}
	if (isnan(f.base_sigma))
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_CONTRACT_VIOLATION),
				 errmsg("the covariance of risk snapshot \"%s\" gives a negative portfolio variance", pf->version),
				 errdetail("%d pairs were filled with correlation %g.", pf->nfilled, pf->rho),
				 errhint("Send a positive semi-definite covariance, or all of its pairs.")));
	figures_uplift(pf, u, ppy, rf, &f);

	/* stress: the snapshot's scenarios, then the caller's (which win) */
	initStringInfo(&stress_block);
	initStringInfo(&stress_sources);
	appendStringInfoChar(&stress_block, '{');
	appendStringInfoChar(&stress_sources, '{');
	snap_stress = getKeyJsonValueFromContainer(&pf->payload->root, "stress", 6, NULL);
	if (wval_jbv_is_object(snap_stress))
		append_scenarios(&stress_block, &stress_sources, snap_stress->val.binary.data,
						 cand.strategy_id, "portfolio");
	/* jsonb keeps the last of duplicate keys: a caller's scenario replaces the snapshot's */
	if (arg_stress != NULL)
		append_scenarios(&stress_block, &stress_sources, &arg_stress->root, cand.strategy_id, "caller");
	appendStringInfoChar(&stress_block, '}');
	appendStringInfoChar(&stress_sources, '}');
	metrics = portfolio_metrics(pf, &f, stress_block.data, stress_sources.data);

	/* the portfolio and stress checks of the candidate's profile */
	policy = wval_policy_for_version(world, version, fail_closed);
	p = wval_policy_profile_for_stage(policy, cand.stage);
	rs = p >= 0 ? &policy->profiles[p] : NULL;
	memset(&in, 0, sizeof(in));
	in.metrics = metrics;
	in.stage = cand.stage;
	in.now = GetCurrentTransactionStartTimestamp();
	wval_evaluate_ruleset(rs, &in, portfolio_layers, lengthof(portfolio_layers), &out);

	/* rule results and events first, the run last (it takes the chain lock) */
	new_run = DirectFunctionCall1(gen_random_uuid, (Datum) 0);
	new_run_text = DatumGetCString(DirectFunctionCall1(uuid_out, new_run));
	created_at = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	results = DirectFunctionCall1(jsonb_in, CStringGetDatum(out.results.data));
	args[0] = new_run;
	args[1] = CStringGetTextDatum(world);
	args[2] = CStringGetTextDatum(cand.strategy_id);
	args[3] = CStringGetTextDatum(cand.stage);
	args[4] = results;
	args[5] = created_at;
	if (exec_plan(&plan_results, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not store the rule results");

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"world_id\": ");
	wval_append_json_string(&buf, world);
	appendStringInfoString(&buf, ", \"strategy_id\": ");
	wval_append_json_string(&buf, cand.strategy_id);
	appendStringInfo(&buf, ", \"run_id\": \"%s\", \"stage\": \"%s\", \"kind\": \"portfolio\", "
					 "\"status\": \"%s\", \"recommended_stage\": null, \"policy_version\": %d, "
					 "\"linked_run_id\": \"%s\", \"snapshot_version\": ",
					 new_run_text, cand.stage, out.status, version, cand.run_id_text);
	wval_append_json_string(&buf, pf->version);
	appendStringInfoChar(&buf, '}');
	args[0] = CStringGetTextDatum("evaluation_run_created");
	args[1] = CStringGetTextDatum(world);
	args[2] = CStringGetTextDatum(cand.strategy_id);
	args[3] = CStringGetTextDatum(psprintf("evaluation_run_created:%s:%s:%s", world, cand.strategy_id, new_run_text));
	args[4] = DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
	exec_plan(&plan_emit, args, NULL, false, 1);

	resetStringInfo(&buf);
	appendStringInfo(&buf, "{\"run_id\": \"%s\", \"world_id\": ", cand.run_id_text);
	wval_append_json_string(&buf, world);
	appendStringInfoString(&buf, ", \"strategy_id\": ");
	wval_append_json_string(&buf, cand.strategy_id);
	appendStringInfo(&buf, ", \"change_type\": \"extended_validation\", \"layers\": [\"portfolio\", \"stress\"], "
					 "\"extended_run_id\": \"%s\", \"kind\": \"portfolio\", \"status\": \"%s\", "
					 "\"policy_version\": %d, \"snapshot_version\": ",
					 new_run_text, out.status, version);
	wval_append_json_string(&buf, pf->version);
	appendStringInfoChar(&buf, '}');
	args[0] = CStringGetTextDatum("evaluation_run_updated");
	args[2] = CStringGetTextDatum(cand.run_id_text);
	args[3] = CStringGetTextDatum(psprintf("evaluation_run_updated:%s:%s:extended_validation:%s",
										   world, cand.run_id_text, new_run_text));
	args[4] = DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
	exec_plan(&plan_emit, args, NULL, false, 1);

	/* the candidate's returns (world setting store_returns), then the run */
	if (f.cr != NULL)
		wval_store_run_returns(world, wval_returns_hash(f.cr, f.ncr), f.cr, f.ncr);
	memset(nulls, ' ', sizeof(nulls));
	resetStringInfo(&buf);
	appendStringInfoString(&buf, "{\"risk_snapshot\": {\"world_id\": ");
	wval_append_json_string(&buf, world);
	appendStringInfoString(&buf, ", \"version\": ");
	wval_append_json_string(&buf, pf->version);
	appendStringInfoString(&buf, ", \"hash\": ");
	wval_append_json_string(&buf, pf->hash);
	appendStringInfoString(&buf, ", \"stage\": ");
	wval_append_json_string(&buf, pf->stage);
	appendStringInfoString(&buf, ", \"actor\": ");
	wval_append_json_string(&buf, pf->actor);
	appendStringInfoString(&buf, ", \"as_of\": ");
	wval_append_json_string(&buf, wval_iso_utc(pf->as_of));
	appendStringInfoString(&buf, "}}");
	args[0] = CStringGetTextDatum(world);
	args[1] = CStringGetTextDatum(cand.strategy_id);
	args[2] = CStringGetTextDatum(cand.stage);
	args[3] = text_or_null(cand.campaign_id, &nulls[3]);
	args[4] = CStringGetTextDatum(risk_tier);
	args[5] = text_or_null(cand.model_card_version, &nulls[5]);
	args[6] = text_or_null(cand.code_hash, &nulls[6]);
	args[7] = DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
	resetStringInfo(&buf);
	appendStringInfo(&buf, "{\"candidate_run_id\": \"%s\", \"snapshot_stage\": ", cand.run_id_text);
	if (snapshot_stage)
		wval_append_json_string(&buf, snapshot_stage);
	else
		appendStringInfoString(&buf, "null");
	appendStringInfo(&buf, ", \"returns_supplied\": %s, \"stress_supplied\": %s, \"periods_per_year\": %d, "
					 "\"risk_free\": ", arg_returns ? "true" : "false", arg_stress ? "true" : "false", ppy);
	wval_append_float8(&buf, rf);
	appendStringInfoChar(&buf, '}');
	args[8] = DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
	args[9] = CStringGetTextDatum(key);
	args[10] = text_or_null(f.cr ? wval_returns_hash(f.cr, f.ncr) : NULL, &nulls[10]);
	args[11] = JsonbPGetDatum(metrics);
	args[12] = Int32GetDatum(version);
	args[13] = text_or_null(rs ? rs->hash : NULL, &nulls[13]);
	args[14] = text_or_null(rs ? rs->profile : NULL, &nulls[14]);
	args[15] = CStringGetTextDatum(out.status);
	args[16] = results;
	args[17] = cand.run_id;
	args[18] = CStringGetTextDatum(actor);
	args[19] = new_run;
	args[20] = created_at;
	if (exec_plan(&plan_insert, args, nulls, false, 1) != SPI_OK_INSERT_RETURNING || SPI_processed != 1)
		elog(ERROR, "could not store the portfolio run");
	result = PointerGetDatum(SPI_returntuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc));

	SPI_finish();
	PG_RETURN_DATUM(result);
}
