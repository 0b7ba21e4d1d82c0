//! Sample ratio mismatch: are the observed counts per variant what the configured weights
//! predict? A mismatch means the assignment or the logging is broken, and no comparison of
//! the variants can be trusted.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, ContinuousCDF};

use super::StatsError;

/// p-value below which an experiment is flagged (the usual, deliberately strict, 0.001).
pub const SRM_THRESHOLD: f64 = 0.001;

/// The outcome of the SRM check.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SrmResult {
    /// Pearson's chi-square statistic.
    pub statistic: f64,
    /// Its upper-tail p-value with `k − 1` degrees of freedom (1 when there are no
    /// observations yet).
    pub p_value: f64,
    /// `p_value < SRM_THRESHOLD`.
    pub flagged: bool,
}

/// Chi-square goodness of fit of `counts` against `weights` (normalised to sum 1), as SciPy
/// `chisquare(counts, total · weights / sum(weights))`. O(k).
pub fn srm_test(counts: &[u64], weights: &[f64]) -> Result<SrmResult, StatsError> {
    if counts.len() != weights.len() {
        return Err(StatsError::InvalidWeights(format!(
            "{} counts but {} weights",
            counts.len(),
            weights.len()
        )));
    }
    if counts.len() < 2 {
        return Err(StatsError::InvalidWeights(
            "need at least two variants".into(),
        ));
    }
    if let Some(w) = weights.iter().find(|w| !(w.is_finite() && **w > 0.0)) {
        return Err(StatsError::InvalidWeights(format!(
            "weights must be positive and finite, got {w}"
        )));
    }
    let total: f64 = counts.iter().map(|&c| c as f64).sum();
    if total == 0.0 {
        return Ok(SrmResult {
            statistic: 0.0,
            p_value: 1.0,
            flagged: false,
        });
    }
    let weight_sum: f64 = weights.iter().sum();
    let statistic: f64 = counts
        .iter()
        .zip(weights)
        .map(|(&c, &w)| {
            let expected = total * w / weight_sum;
            (c as f64 - expected).powi(2) / expected
        })
        .sum();
    let chi = ChiSquared::new((counts.len() - 1) as f64)
        .map_err(|_| StatsError::InvalidWeights("degrees of freedom".into()))?;
    let p_value = chi.sf(statistic);
    Ok(SrmResult {
        statistic,
        p_value,
        flagged: p_value < SRM_THRESHOLD,
    })
}
