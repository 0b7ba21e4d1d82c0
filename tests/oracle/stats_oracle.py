"""Oracle for tests/stats_oracle.rs: fixed-horizon A/B statistics from statsmodels and SciPy.

Reads one JSON case per line on stdin, writes one JSON answer per line on stdout.
Cases (effect = candidate b minus control a):
  {"kind": "binary", "a": [n, successes], "b": [n, successes], "alpha": 0.05}
  {"kind": "continuous", "a": [n, mean, variance], "b": [...], "alpha": 0.05}
  {"kind": "srm", "counts": [...], "weights": [...]}
  {"kind": "quantiles", "alpha": 1e-16, "df": 10}
  {"kind": "proportion", "n": 10, "successes": 1, "alpha": 0.05}
"""
import json
import sys

import numpy as np
from scipy import stats
from statsmodels.stats.proportion import (confint_proportions_2indep, proportion_confint,
                                          proportions_ztest)


def delta_relative(ma, va, mb, vb, alpha):
    """Delta-method interval of (mb - ma) / |ma| (mb/ma - 1 when ma > 0), va and vb the
    squared standard errors; the delta-method variance is the same for either sign of ma."""
    r = (mb - ma) / abs(ma)
    se = np.sqrt(vb / ma**2 + mb**2 * va / ma**4)
    z = stats.norm.ppf(1 - alpha / 2)
    return r, [r - z * se, r + z * se]


def answer(case):
    kind = case["kind"]
    if kind == "srm":
        counts = np.asarray(case["counts"], dtype=float)
        w = np.asarray(case["weights"], dtype=float)
        res = stats.chisquare(counts, counts.sum() * w / w.sum())
        return {"statistic": float(res.statistic), "p_value": float(res.pvalue)}
    alpha = case["alpha"]
    if kind == "quantiles":
        # Upper alpha/2 quantiles, from the tail (isf), of the normal and of Student's t.
        # SciPy fails (-inf) for a few far tails at small df (alpha 1e-300, df 5): null.
        t = float(stats.t.isf(alpha / 2, case["df"]))
        return {"z": float(stats.norm.isf(alpha / 2)),
                "t": t if np.isfinite(t) and t > 0 else None}
    if kind == "proportion":
        # One variant's Wald interval, clipped to [0, 1] by statsmodels.
        lo, hi = proportion_confint(case["successes"], case["n"], alpha=alpha, method="normal")
        return {"ci": [float(lo), float(hi)]}
    if kind == "binary":
        (na, sa), (nb, sb) = case["a"], case["b"]
        # As floats: counts near 2^64 would wrap in NumPy's uint64 sums.
        z, p = proportions_ztest(np.array([sb, sa], dtype=float), np.array([nb, na], dtype=float))
        lo, hi = confint_proportions_2indep(sb, nb, sa, na, method="wald", compare="diff", alpha=alpha)
        pa, pb = sa / na, sb / nb
        r, rel = delta_relative(pa, pa * (1 - pa) / na, pb, pb * (1 - pb) / nb, alpha)
        return {"statistic": float(z), "p_value": float(p), "ci": [float(lo), float(hi)],
                "relative": float(r), "relative_ci": [float(x) for x in rel]}
    (na, ma, va), (nb, mb, vb) = case["a"], case["b"]
    res = stats.ttest_ind_from_stats(mb, np.sqrt(vb), nb, ma, np.sqrt(va), na, equal_var=False)
    sa2, sb2 = va / na, vb / nb
    df = (sa2 + sb2) ** 2 / (sa2**2 / (na - 1) + sb2**2 / (nb - 1))
    q = stats.t.ppf(1 - alpha / 2, df)
    d = mb - ma
    se = np.sqrt(sa2 + sb2)
    r, rel = delta_relative(ma, sa2, mb, sb2, alpha)
    return {"statistic": float(res.statistic), "p_value": float(res.pvalue), "df": float(df),
            "ci": [float(d - q * se), float(d + q * se)],
            "relative": float(r), "relative_ci": [float(x) for x in rel]}


for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    print(json.dumps(answer(json.loads(line))), flush=True)
