//! Population stability index, with bins at the reference's quantiles, and its no-drift
//! quantile.

use statrs::distribution::{ChiSquared, ContinuousCDF};

use super::distribution::Distribution1d;

/// Default number of bins.
pub const DEFAULT_BINS: usize = 10;
/// Default floor for a bin share, so that empty bins give a finite PSI (as Evidently and
/// most tools do; the reference statistics shipped in `data/` use the same 1e-4).
pub const DEFAULT_EPSILON: f64 = 1e-4;

/// PSI of two share vectors: `Σ (b − a) · ln(b / a)`, each share floored at `epsilon`.
#[must_use]
pub fn psi_from_shares(reference: &[f64], current: &[f64], epsilon: f64) -> f64 {
    reference
        .iter()
        .zip(current)
        .map(|(&a, &b)| {
            let (a, b) = (a.max(epsilon), b.max(epsilon));
            (b - a) * (b / a).ln()
        })
        .sum()
}

/// Inner bin edges: the distinct reference quantiles at `1/bins, 2/bins, …, (bins−1)/bins`
/// (inverted-CDF quantiles). Bins are right-closed: `(-inf, e1], (e1, e2], …, (ek, +inf)`.
#[must_use]
pub fn quantile_edges(reference: &dyn Distribution1d, bins: usize) -> Vec<f64> {
    let mut edges: Vec<f64> = (1..bins)
        .filter_map(|i| reference.quantile(i as f64 / bins as f64))
        .filter(|e| e.is_finite())
        .collect();
    edges.dedup();
    edges
}

/// Shares of a distribution in the right-closed bins defined by `edges`.
#[must_use]
pub fn shares(distribution: &dyn Distribution1d, edges: &[f64]) -> Vec<f64> {
    let mut out = Vec::with_capacity(edges.len() + 1);
    let mut previous = 0.0;
    for &e in edges {
        let c = distribution.cdf(e);
        out.push((c - previous).max(0.0));
        previous = c;
    }
    out.push((1.0 - previous).max(0.0));
    out
}

/// PSI of a numeric feature, with the edges it used.
#[must_use]
pub fn psi(
    reference: &dyn Distribution1d,
    current: &dyn Distribution1d,
    bins: usize,
    epsilon: f64,
) -> (f64, Vec<f64>) {
    let edges = quantile_edges(reference, bins);
    let value = psi_from_shares(
        &shares(reference, &edges),
        &shares(current, &edges),
        epsilon,
    );
    (value, edges)
}

/// The `1 − alpha` quantile of PSI when nothing drifted: PSI then behaves like
/// `(1/n + 1/m) · χ²` with `bins − 1` degrees of freedom, so small samples exceed the usual
/// 0.1 and 0.2 thresholds by chance. A PSI verdict requires PSI above this too.
#[must_use]
pub fn psi_no_drift_quantile(bins: usize, n: u64, m: u64, alpha: f64) -> f64 {
    if n == 0 || m == 0 || bins < 2 {
        return f64::INFINITY;
    }
    match ChiSquared::new((bins - 1) as f64) {
        Ok(chi2) => (1.0 / n as f64 + 1.0 / m as f64) * chi2.inverse_cdf(1.0 - alpha),
        Err(_) => f64::INFINITY,
    }
}
