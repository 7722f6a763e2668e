/*-------------------------------------------------------------------------
 *
 * metrics_dsr.c
 *	  The normal distribution (Φ, Φ⁻¹), the probabilistic and the deflated
 *	  Sharpe ratio (PSR, DSR and its threshold SR₀) and their SQL
 *	  functions.  docs/metrics.md.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "catalog/pg_type.h"
#include "common/shortest_dec.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "metrics.h"
#include "metrics_int.h"
#include "wval.h"

#define EULER_GAMMA			0.5772156649015329

PG_FUNCTION_INFO_V1(wval_psr);
PG_FUNCTION_INFO_V1(wval_dsr);
PG_FUNCTION_INFO_V1(wval_norm_cdf);
PG_FUNCTION_INFO_V1(wval_norm_ppf);

/* Standard normal CDF Φ(z), from the complementary error function. */
double
wval_norm_cdf_value(double z)
{
	return 0.5 * erfc(-z / M_SQRT2);
}

/* Evaluates c[0] + c[1] r + ... + c[7] r^7 (Horner). */
static inline double
poly7(const double *c, double r)
{
	return ((((((c[7] * r + c[6]) * r + c[5]) * r + c[4]) * r + c[3]) * r +
			 c[2]) * r + c[1]) * r + c[0];
}

/*
 * Inverse standard normal CDF Φ⁻¹(p): Wichura's algorithm AS 241 (PPND16,
 * about 1e-16 relative), rational approximations in q = p - 1/2 near the
 * centre and in r = √(-ln min(p, 1 - p)) in the tails.  0 and 1 map to
 * -Infinity / Infinity, anything outside [0, 1] to NaN.
 */
double
wval_norm_ppf_value(double p)
{
	static const double a[8] = {
		3.3871328727963666080e0, 1.3314166789178437745e+2,
		1.9715909503065514427e+3, 1.3731693765509461125e+4,
		4.5921953931549871457e+4, 6.7265770927008700853e+4,
		3.3430575583588128105e+4, 2.5090809287301226727e+3
	};
	static const double b[8] = {
		1.0, 4.2313330701600911252e+1,
		6.8718700749205790830e+2, 5.3941960214247511077e+3,
		2.1213794301586595867e+4, 3.9307895800092710610e+4,
		2.8729085735721942674e+4, 5.2264952788528545610e+3
	};
	static const double c[8] = {
		1.42343711074968357734e0, 4.63033784615654529590e0,
		5.76949722146069140550e0, 3.64784832476320460504e0,
		1.27045825245236838258e0, 2.41780725177450611770e-1,
		2.27238449892691845833e-2, 7.74545014278341407640e-4
	};
	static const double d[8] = {
		1.0, 2.05319162663775882187e0,
		1.67638483018380384940e0, 6.89767334985100004550e-1,
		1.48103976427480074590e-1, 1.51986665636164571966e-2,
		5.47593808499534494600e-4, 1.05075007164441684324e-9
	};
	static const double e[8] = {
		6.65790464350110377720e0, 5.46378491116411436990e0,
		1.78482653991729133580e0, 2.96560571828504891230e-1,
		2.65321895265761230930e-2, 1.24266094738807843860e-3,
		2.71155556874348757815e-5, 2.01033439929228813265e-7
	};
	static const double f[8] = {
		1.0, 5.99832206555887937690e-1,
		1.36929880922735805310e-1, 1.48753612908506148525e-2,
		7.86869131145613259100e-4, 1.84631831751005468180e-5,
		1.42151175831644588870e-7, 2.04426310338993978564e-15
	};
	double		q;
	double		r;
	double		x;

	if (isnan(p) || p < 0.0 || p > 1.0)
		return NAN;
	if (p == 0.0)
		return -INFINITY;
	if (p == 1.0)
		return INFINITY;
	q = p - 0.5;
	if (fabs(q) <= 0.425)
	{
		r = 0.180625 - q * q;
		return q * poly7(a, r) / poly7(b, r);
	}
	r = sqrt(-log(q < 0 ? p : 1.0 - p));
	if (r <= 5.0)
	{
		r -= 1.6;
		x = poly7(c, r) / poly7(d, r);
	}
	else
	{
		r -= 5.0;
		x = poly7(e, r) / poly7(f, r);
	}
	return q < 0 ? -x : x;
}

/*
 * The radicand of PSR, 1 - γ3 ŝ + (γ4 - 1)/4 ŝ² (n - 1 times the variance
 * of the Sharpe estimator).  In long double: with finite but extreme
 * arguments (ŝ = 1e308) the terms overflow a double, the radicand becomes
 * Infinity and PSR comes out as Φ(0) = 0.5 or, for the DSR, NaN; the
 * products of three doubles fit the range of long double (x86-64: 1e4932,
 * aarch64: quad precision).
 */
long double
wval_psr_radicand(long double sr, double skew, double kurtosis)
{
	return 1.0L - (long double) skew * sr + ((long double) kurtosis - 1.0L) / 4.0L * sr * sr;
}

/* PSR for a threshold SR* computed in long double (see psr_radicand); false as wval_psr_value. */
static bool
psr_value_ld(double sr, long double sr_star, int n, double skew, double kurtosis,
			 double *out)
{
	long double rad = wval_psr_radicand(sr, skew, kurtosis);
	double		z;

	if (n < 3 || !(rad > 0.0L) || isnan(sr) || isnan((double) sr_star))
		return false;
	z = (double) (((long double) sr - sr_star) * sqrtl((long double) (n - 1)) / sqrtl(rad));
	if (isnan(z))
		return false;
	*out = wval_norm_cdf_value(z);
	return true;
}

/*
 * PSR(SR*) = Φ((ŝ - SR*) √(n - 1) / √(1 - γ3 ŝ + (γ4 - 1)/4 ŝ²)), both
 * Sharpe ratios per period; false when n < 3 or the radicand is not
 * positive.  Never NaN for finite arguments.
 */
bool
wval_psr_value(double sharpe_per_period, double sharpe_star_per_period,
			   int n, double skew, double kurtosis, double *out)
{
	return psr_value_ld(sharpe_per_period, sharpe_star_per_period, n, skew, kurtosis, out);
}

/*
 * The DSR threshold SR₀ = √V ((1 - γ) Φ⁻¹(1 - 1/N) + γ Φ⁻¹(1 - 1/(N e))),
 * per period; 0 when N <= 1.  Both quantiles grow with N, so SR₀ does and
 * DSR = PSR(SR₀) falls.
 */
double
wval_sr0_value(double trials_variance_per_period, double n_trials)
{
	if (n_trials <= 1.0)
		return 0.0;
	return sqrt(trials_variance_per_period) *
		((1.0 - EULER_GAMMA) * wval_norm_ppf_value(1.0 - 1.0 / n_trials) +
		 EULER_GAMMA * wval_norm_ppf_value(1.0 - 1.0 / (n_trials * M_E)));
}


/* ---------------------------------------------------------------------
 * SQL functions
 * ---------------------------------------------------------------------
 */

/* Raises WV001 unless n_obs >= 0. */
static void
check_n_obs(int n_obs)
{
	if (n_obs < 0)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
				 errmsg("\"n_obs\" must not be negative"),
				 errdetail("n_obs is %d.", n_obs),
				 errhint("Pass the number of return periods behind the Sharpe ratio.")));
}

/*
 * wval_psr(sharpe_annual, n_obs, skew, kurtosis, benchmark_sharpe_annual,
 * periods_per_year) → float8; null when n_obs < 3 or the radicand is not
 * positive.
 */
Datum
wval_psr(PG_FUNCTION_ARGS)
{
	double		sharpe = PG_GETARG_FLOAT8(0);
	int32		n_obs = PG_GETARG_INT32(1);
	double		skew = PG_GETARG_FLOAT8(2);
	double		kurtosis = PG_GETARG_FLOAT8(3);
	double		star = PG_GETARG_FLOAT8(4);
	int32		ppy = PG_GETARG_INT32(5);
	double		sqrt_p;
	double		out;

	wval_check_finite_arg("sharpe_annual", sharpe, false, "Pass the annualised Sharpe ratio.");
	check_n_obs(n_obs);
	wval_check_finite_arg("skew", skew, false, "Pass the skewness of the returns.");
	wval_check_finite_arg("kurtosis", kurtosis, false, "Pass the (raw, not excess) kurtosis of the returns.");
	wval_check_finite_arg("benchmark_sharpe_annual", star, false, "Pass the annualised Sharpe ratio to beat, e.g. 0.");
	wval_check_periods_per_year(ppy);
	sqrt_p = sqrt((double) ppy);
	if (!wval_psr_value(sharpe / sqrt_p, star / sqrt_p, n_obs, skew, kurtosis, &out))
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(out);
}

/*
 * wval_dsr(sharpe_annual, n_obs, skew, kurtosis, n_trials,
 * trials_sharpe_variance_annual, periods_per_year) → float8.  A null
 * trials variance means the estimator variance of the Sharpe ratio; null
 * in any other argument gives null.
 */
Datum
wval_dsr(PG_FUNCTION_ARGS)
{
	double		sharpe;
	int32		n_obs;
	double		skew;
	double		kurtosis;
	int32		n_trials;
	int32		ppy;
	double		sr;
	long double rad;
	long double v;
	double		out;
	int			i;

	for (i = 0; i < PG_NARGS(); i++)
		if (i != 5 && PG_ARGISNULL(i))
			PG_RETURN_NULL();
	sharpe = PG_GETARG_FLOAT8(0);
	n_obs = PG_GETARG_INT32(1);
	skew = PG_GETARG_FLOAT8(2);
	kurtosis = PG_GETARG_FLOAT8(3);
	n_trials = PG_GETARG_INT32(4);
	ppy = PG_GETARG_INT32(6);

	wval_check_finite_arg("sharpe_annual", sharpe, false, "Pass the annualised Sharpe ratio.");
	check_n_obs(n_obs);
	wval_check_finite_arg("skew", skew, false, "Pass the skewness of the returns.");
	wval_check_finite_arg("kurtosis", kurtosis, false, "Pass the (raw, not excess) kurtosis of the returns.");
	wval_check_search_intensity("n_trials", n_trials);
	wval_check_periods_per_year(ppy);

	sr = sharpe / sqrt((double) ppy);
	rad = wval_psr_radicand(sr, skew, kurtosis);
	if (n_obs < 3 || !(rad > 0.0L))
		PG_RETURN_NULL();
	if (PG_ARGISNULL(5))
		v = rad / (n_obs - 1);
	else
	{
		double		tv = PG_GETARG_FLOAT8(5);

		wval_check_finite_arg("trials_sharpe_variance_annual", tv, true,
						 "Pass the variance of the annualised Sharpe ratios of the trials, or null.");
		v = (long double) tv / ppy;
	}
	/* SR₀ = √V · q(N); wval_sr0_value(1, N) is q(N), √V stays in long double */
	if (!psr_value_ld(sr, sqrtl(v) * (long double) wval_sr0_value(1.0, n_trials),
					  n_obs, skew, kurtosis, &out))
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(out);
}

/* wval_norm_cdf(z) → Φ(z); WV001 for NaN. */
Datum
wval_norm_cdf(PG_FUNCTION_ARGS)
{
	double		z = PG_GETARG_FLOAT8(0);

	if (isnan(z))
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
				 errmsg("\"z\" must be a number"),
				 errdetail("z is NaN."),
				 errhint("Pass a finite number or ±Infinity.")));
	PG_RETURN_FLOAT8(wval_norm_cdf_value(z));
}

/* wval_norm_ppf(p) → Φ⁻¹(p); ±Infinity at 1 and 0, WV001 outside [0, 1]. */
Datum
wval_norm_ppf(PG_FUNCTION_ARGS)
{
	double		p = PG_GETARG_FLOAT8(0);
	char		buf[DOUBLE_SHORTEST_DECIMAL_LEN];

	if (isnan(p) || p < 0.0 || p > 1.0)
		ereport(ERROR,
				(errcode(ERRCODE_WVAL_INVALID_METRIC_INPUT),
				 errmsg("\"p\" must be a probability between 0 and 1"),
				 errdetail("p is %s.", wval_format_double(p, buf)),
				 errhint("Pass a probability in [0, 1].")));
	PG_RETURN_FLOAT8(wval_norm_ppf_value(p));
}

