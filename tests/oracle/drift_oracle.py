"""SciPy as the oracle for modelgate's drift statistics.

Reads one JSON object per line on stdin and writes one JSON object per line:
  numeric:     {"kind": "numeric", "a": [...], "b": [...], "edges": [...]}
               -> ks (scipy.stats.ks_2samp, method="asymp"), p_value, psi (right-closed bins
                  at the given edges, shares floored at 1e-4), wasserstein
  kstwo:       {"kind": "kstwo", "points": [[n, x], ...]} -> sf (scipy.stats.kstwo.sf)
  categorical: {"kind": "categorical", "a": [counts], "b": [counts]}
               -> chi2, dof, p_value (chi2_contingency, correction=False), js (base 2)
  missing:     {"kind": "missing", "csv": "text"} -> per column (pandas.read_csv defaults):
               {"name": {"missing": isna().sum(), "float": dtype is float64}}
  proportions: {"kind": "proportions", "count": [a, b], "nobs": [n, m]}
               -> p_value (statsmodels proportions_ztest, two-sided, pooled)
"""
import json
import sys

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon


def psi(a, b, edges, eps=1e-4):
    bins = np.concatenate(([-np.inf], np.asarray(edges, dtype=float), [np.inf]))
    # Right-closed bins: (e_i, e_{i+1}]; count with searchsorted(side="left") on the edges.
    ia = np.searchsorted(np.asarray(edges, dtype=float), a, side="left")
    ib = np.searchsorted(np.asarray(edges, dtype=float), b, side="left")
    sa = np.bincount(ia, minlength=len(bins) - 1) / len(a)
    sb = np.bincount(ib, minlength=len(bins) - 1) / len(b)
    sa, sb = np.maximum(sa, eps), np.maximum(sb, eps)
    return float(np.sum((sb - sa) * np.log(sb / sa)))


def main():
    for line in sys.stdin:
        case = json.loads(line)
        if case["kind"] == "missing":
            import io

            import pandas as pd

            frame = pd.read_csv(io.StringIO(case["csv"]))
            out = {
                name: {
                    "missing": int(frame[name].isna().sum()),
                    "float": frame[name].dtype == np.float64,
                }
                for name in frame.columns
            }
        elif case["kind"] == "proportions":
            from statsmodels.stats.proportion import proportions_ztest

            _, p = proportions_ztest(case["count"], case["nobs"])
            out = {"p_value": float(p)}
        elif case["kind"] == "kstwo":
            out = {"sf": [float(stats.kstwo.sf(x, n)) for n, x in case["points"]]}
        elif case["kind"] == "numeric":
            a, b = np.asarray(case["a"], dtype=float), np.asarray(case["b"], dtype=float)
            r = stats.ks_2samp(a, b, method="asymp")
            out = {
                "ks": float(r.statistic),
                "p_value": float(r.pvalue),
                "psi": psi(a, b, case["edges"]),
                "wasserstein": float(stats.wasserstein_distance(a, b)),
            }
        else:
            table = np.asarray([case["a"], case["b"]], dtype=float)
            table = table[:, table.sum(axis=0) > 0]
            chi2, p, dof, _ = stats.chi2_contingency(table, correction=False)
            out = {
                "chi2": float(chi2),
                "dof": int(dof),
                "p_value": float(p),
                "js": float(jensenshannon(table[0], table[1], base=2)),
            }
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
