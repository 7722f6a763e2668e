#!/usr/bin/env python3
"""Independent reference for wval_metrics (Debian's python3, stdlib only).

Not used by the test suite: it is the offline cross-check that produced the
expected values of the random series in test/metrics.sql.  It follows the
definitions of the metrics spec literally (lists, sorted() quantiles, the
wealth path as a cumulative product), using exact fractions where a sum is
order-sensitive and the spec does not pin the order.

    python3 test/metrics_reference.py '[0.01, -0.02, 0.005]' [P [rf [N]]]
    python3 test/metrics_reference.py --random SEED N [P]   (prints series + pack)
    python3 test/metrics_reference.py --tap   (expected values of the series
                                               that test/metrics.sql builds)
"""
import json
import math
import random
import statistics
import sys
from fractions import Fraction

EULER_GAMMA = 0.5772156649015329


def mean_exact(v):
    return float(sum(Fraction(a) for a in v) / len(v))


def moments(x):
    """mean, sample std, m2, m3, m4 (biased central moments)."""
    n = len(x)
    fx = [Fraction(a) for a in x]
    mu = sum(fx) / n
    d = [a - mu for a in fx]
    m2 = sum(a * a for a in d) / n
    m3 = sum(a ** 3 for a in d) / n
    m4 = sum(a ** 4 for a in d) / n
    s = math.sqrt(sum(a * a for a in d) / (n - 1)) if n > 1 else None
    return float(mu), s, float(m2), float(m3), float(m4)


def sharpe(x, P):
    if len(x) < 2:
        return None
    mu, s, *_ = moments(x)
    if s == 0:
        return None
    return mu / s * math.sqrt(P)


def quantile7(v, p):
    s = sorted(v)
    h = (len(s) - 1) * p
    lo = math.floor(h)
    if lo + 1 >= len(s):
        return s[lo]
    return s[lo] + (h - lo) * (s[lo + 1] - s[lo])


def wealth(r):
    w = [1.0]
    for a in r:
        w.append(w[-1] * (1.0 + a))
    peak = []
    m = -math.inf
    for a in w:
        m = max(m, a)
        peak.append(m)
    return w, peak


def max_drawdown(r):
    if not r:
        return None
    w, peak = wealth(r)
    return max(1.0 - a / b for a, b in zip(w, peak))


def norm_cdf(z):
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def norm_ppf(p):
    return statistics.NormalDist().inv_cdf(p)


def psr(sr, sr_star, n, g3, g4):
    if n < 3 or sr is None:
        return None
    rad = 1.0 - g3 * sr + (g4 - 1.0) / 4.0 * sr * sr
    if rad <= 0:
        return None
    return norm_cdf((sr - sr_star) * math.sqrt(n - 1) / math.sqrt(rad))


def sr0(V, N):
    if N <= 1:
        return 0.0
    return math.sqrt(V) * ((1 - EULER_GAMMA) * norm_ppf(1 - 1 / N)
                           + EULER_GAMMA * norm_ppf(1 - 1 / (N * math.e)))


def blocked_sum(a):
    """Eight-way blocked summation (the order the spec's reference uses for
    the rolling-window standard deviations)."""
    n = len(a)
    if n < 8:
        s = 0.0
        for v in a:
            s += v
        return s
    r = list(a[:8])
    i = 8
    while i < n - n % 8:
        for j in range(8):
            r[j] += a[i + j]
        i += 8
    s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
    while i < n:
        s += a[i]
        i += 1
    return s


def window_pstd(w):
    if min(w) == max(w):
        return 0.0
    mu = blocked_sum(w) / len(w)
    return math.sqrt(blocked_sum([(a - mu) * (a - mu) for a in w]) / len(w))


def regime(x):
    n = len(x)
    if n < 3:
        return None
    v = [window_pstd(x[max(0, t - 19):t + 1]) for t in range(1, n)]
    q33 = quantile7(v, 1 / 3)
    q66 = quantile7(v, 2 / 3)
    lo = sum(1 for a in v if a <= q33)
    hi = sum(1 for a in v if a > q66)
    m = len(v)
    return {"low_vol": lo / m, "mid_vol": (m - lo - hi) / m, "high_vol": hi / m}


def pack(r, P=252, rf=0.0, N=1, bench=None, tv=None):
    n = len(r)
    x = [a - rf for a in r]
    out = {"returns": {}, "sample": {}, "robustness": {}, "diagnostics": {}}
    R, S, B, D = out["returns"], out["sample"], out["robustness"], out["diagnostics"]
    mu = s = g3 = g4 = None
    if n >= 2:
        mu, s, m2, m3, m4 = moments(x)
        if m2 > 0:
            g3, g4 = m3 / m2 ** 1.5, m4 / m2 ** 2
    R["sharpe"] = sharpe(x, P)
    R["volatility"] = s * math.sqrt(P) if n >= 2 else None
    if n >= 2:
        d = math.sqrt(sum(min(a, 0.0) ** 2 for a in x) / n)
        R["sortino_ratio"] = (mu / d * math.sqrt(P) if d > 0
                              else ("Infinity" if mu > 0 else None))
    else:
        R["sortino_ratio"] = None
    if n:
        w, peak = wealth(r)
        R["annual_return"] = w[-1] ** (P / n) - 1
        R["max_drawdown"] = max_drawdown(r)
        under = [w[k] < peak[k] for k in range(1, n + 1)]
        R["time_under_water_ratio"] = sum(under) / n
        best = run = 0
        for u in under:
            run = run + 1 if u else 0
            best = max(best, run)
        R["max_time_under_water_days"] = best
        neg = [a for a in r if a < 0]
        tot = math.fsum(r)
        if neg:
            R["gain_to_pain_ratio"] = tot / abs(math.fsum(neg))
        else:
            R["gain_to_pain_ratio"] = "Infinity" if tot > 0 else None
    else:
        for k in ("annual_return", "max_drawdown", "time_under_water_ratio",
                  "max_time_under_water_days", "gain_to_pain_ratio"):
            R[k] = None
    if n >= 2:
        q = quantile7(r, 0.01)
        R["var_p01"] = max(0.0, -q)
        R["es_p01"] = max(0.0, -mean_exact([a for a in r if a <= q]))
    else:
        R["var_p01"] = R["es_p01"] = None
    R["skew"], R["kurtosis"] = g3, g4
    S["effective_history_years"] = n / P if n else None
    S["regime_coverage"] = regime(x)
    h = n // 2
    B["sharpe_first_half"] = sharpe(x[:h], P)
    B["sharpe_second_half"] = sharpe(x[h:], P)
    sr = R["sharpe"] / math.sqrt(P) if R["sharpe"] is not None else None
    if sr is not None and n >= 3 and g3 is not None:
        rad = 1.0 - g3 * sr + (g4 - 1.0) / 4.0 * sr * sr
        V = tv / P if tv is not None else rad / (n - 1)
        B["probabilistic_sharpe_ratio"] = psr(sr, 0.0, n, g3, g4)
        B["deflated_sharpe_ratio"] = psr(sr, sr0(V, N), n, g3, g4) if rad > 0 else None
    else:
        B["probabilistic_sharpe_ratio"] = B["deflated_sharpe_ratio"] = None
    K = min(5, n // 30)
    B["cv_folds"] = B["cv_sharpe_mean"] = B["cv_sharpe_std"] = None
    if K >= 2:
        L = n // K
        folds = [x[k * L:(k + 1) * L] if k < K - 1 else x[k * L:] for k in range(K)]
        sh = [v for v in (sharpe(f, P) for f in folds) if v is not None]
        if len(sh) >= 2:
            B["cv_folds"] = len(sh)
            B["cv_sharpe_mean"] = statistics.fmean(sh)
            B["cv_sharpe_std"] = statistics.pstdev(sh)
    if bench is not None:
        b = list(bench)
        bx = [a - rf for a in b]
        out["benchmark"] = {"sharpe": sharpe(bx, P),
                            "volatility": (moments(b)[1] * math.sqrt(P) if n >= 2 else None),
                            "max_drawdown": max_drawdown(b)}
        if n >= 2:
            fb = [Fraction(a) for a in b]
            fx = [Fraction(a) for a in x]
            mb, mx = sum(fb) / n, sum(fx) / n
            cov = sum((p - mx) * (q - mb) for p, q in zip(fx, fb)) / (n - 1)
            vb = sum((q - mb) ** 2 for q in fb) / (n - 1)
            beta = float(cov / vb) if vb else None
            R["beta"] = beta
            R["alpha"] = float((mx - Fraction(beta) * mb) * P) if beta is not None else None
            act = [p - q for p, q in zip(x, b)]
            _, sa, *_ = moments(act)
            R["tracking_error"] = sa * math.sqrt(P)
            R["information_ratio"] = (mean_exact(act) / sa * math.sqrt(P)) if sa else None
        else:
            R["beta"] = R["alpha"] = R["tracking_error"] = R["information_ratio"] = None
        bs = out["benchmark"]["sharpe"]
        D["extra_metrics"] = {"vs_benchmark_sharpe":
                              (R["sharpe"] - bs) if R["sharpe"] is not None and bs is not None else None}
    D["search_intensity"] = N
    D["n_periods"] = n
    D["periods_per_year"] = P
    D["strategy_complexity"] = 1 + math.log(1 + N)
    if tv is not None:
        D["trials_sharpe_variance"] = tv
    return out


# The cross-check series of test/metrics.sql, built from integers the same
# way in SQL (one IEEE division each, so both sides get the same doubles).
TAP_SERIES = {
    "s1": ([((t * 7919 + 13) % 2003 - 1000) / 50000 for t in range(1, 301)], {}),
    "s2": ([((t * t * 31 + t * 17) % 1009 - 500) / 40000 + (-0.05 if t % 50 == 0 else 0.0)
            for t in range(1, 778)], {"N": 20}),
    "s3": ([((t * 104729) % 30011 - 15000) / 1000000 for t in range(1, 2521)], {"P": 52, "rf": 0.0001}),
    "s4": ([((t * 37) % 7 - 3) / 1000 for t in range(1, 401)], {}),
}


def tap_rows():
    rows = []
    for name, (r, kw) in TAP_SERIES.items():
        p = pack(r, kw.get("P", 252), kw.get("rf", 0.0), kw.get("N", 1))
        for block in ("returns", "sample", "robustness"):
            for key, v in p[block].items():
                if isinstance(v, dict):
                    for k2, v2 in v.items():
                        rows.append((name, "{%s,%s,%s}" % (block, key, k2), v2))
                else:
                    rows.append((name, "{%s,%s}" % (block, key), v))
    out = []
    for name, path, v in rows:
        val = "NULL" if v is None else ("'Infinity'" if v == "Infinity" else repr(float(v)))
        out.append("    ('%s', '%s', %s)" % (name, path, val))
    print(",\n".join(out))


def main(argv):
    if argv and argv[0] == "--tap":
        tap_rows()
        return
    if argv and argv[0] == "--random":
        seed, n = int(argv[1]), int(argv[2])
        P = int(argv[3]) if len(argv) > 3 else 252
        rng = random.Random(seed)
        r = [round(rng.gauss(0.0004, 0.01), 6) for _ in range(n)]
        print(json.dumps(r))
        print(json.dumps(pack(r, P), sort_keys=True))
        return
    r = json.loads(argv[0])
    P = int(argv[1]) if len(argv) > 1 else 252
    rf = float(argv[2]) if len(argv) > 2 else 0.0
    N = int(argv[3]) if len(argv) > 3 else 1
    print(json.dumps(pack(r, P, rf, N), sort_keys=True, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
