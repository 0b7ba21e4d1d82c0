//! Drift statistics on sketches or exact samples, with the sketches' error inside the
//! verdict.
//!
//! * **KS** ([`kolmogorov`]): `D` between two CDFs, its error bound (the sum of the sketches'
//!   rank-error bounds), and an asymptotic p-value from the Kolmogorov distribution with the
//!   effective size `n·m/(n+m)` rounded half to even as SciPy does (p = 1 when it rounds to
//!   0: one value against one value is no evidence).
//! * **PSI** ([`psi`]): bins at the reference's quantiles (10 by default), shares floored
//!   at 1e-4, plus the PSI that no-drift samples of these sizes reach by chance (none when a
//!   bin expects fewer than 10 values, a category fewer than 5: PSI then gives no verdict).
//! * **Categorical** ([`categorical`]): chi-square test of homogeneity, PSI over
//!   categories, Jensen-Shannon distance. Counts from a category summary that passed its
//!   limit of distinct values are estimates: drift is then claimed only on the table closest
//!   to no drift that the summaries' error bounds allow, else the verdict is `inconclusive`.
//! * **Wasserstein-1** ([`distance`]), normalised by the reference's standard deviation.
//! * **Verdicts** ([`assess`]): `drift`, `warning`, `none` or `inconclusive`. KS p-values
//!   are adjusted for the number of features (Benjamini-Hochberg, [`multiple`]). A sketch
//!   error never raises an alarm by itself: KS says drift only when `D − bound` is both
//!   significant and at least the minimum effect size, and says no drift only when `D +
//!   bound` is not significant or below the minimum effect; in between the verdict is
//!   `inconclusive`, with the hint to raise the sketch's `k`.

pub mod categorical;
pub mod csv;
pub mod distance;
pub mod distribution;
pub mod kolmogorov;
pub mod multiple;
pub mod profiles;
pub mod psi;
pub mod table;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use distribution::{Distribution1d, ExactSample};

use crate::sketch::CategoricalProfile;

/// Thresholds of the verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Thresholds {
    /// Significance level, after Benjamini-Hochberg over the features (default 0.05).
    pub alpha: f64,
    /// Smallest KS `D` that counts as drift (default 0.1), so that huge samples do not
    /// raise alarms for negligible shifts.
    pub ks_min_effect: f64,
    /// PSI at or above which a feature drifted (default 0.2).
    pub psi_drift: f64,
    /// PSI at or above which a feature gets a warning (default 0.1).
    pub psi_warning: f64,
    /// PSI bins (default 10).
    pub psi_bins: usize,
    /// Floor of a PSI bin share (default 1e-4).
    pub psi_epsilon: f64,
    /// Smallest Jensen-Shannon distance that counts as categorical drift (default 0.1).
    pub js_min_effect: f64,
}

impl Thresholds {
    /// Checks every field's range: `alpha` in `(0, 1)`, the minimum effects in `[0, 1]`,
    /// PSI thresholds finite and at least 0 with the warning no higher than drift, 2 to 100
    /// bins, and a bin floor in `(0, 1)`. A config (the sidecar's `[lifecycle.drift]`) is
    /// checked with this when it loads; the comparisons themselves never panic on other
    /// values (they clamp bins and the floor, and treat an `alpha` outside `(0, 1)` as
    /// "never significant" or "always").
    ///
    /// # Errors
    /// A message naming the field and its allowed range.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return Err(format!("alpha must be in (0, 1), got {}", self.alpha));
        }
        for (name, value) in [
            ("ks_min_effect", self.ks_min_effect),
            ("js_min_effect", self.js_min_effect),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(format!("{name} must be in [0, 1], got {value}"));
            }
        }
        for (name, value) in [
            ("psi_drift", self.psi_drift),
            ("psi_warning", self.psi_warning),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(format!("{name} must be finite and at least 0, got {value}"));
            }
        }
        if self.psi_warning > self.psi_drift {
            return Err(format!(
                "psi_warning ({}) must not be above psi_drift ({})",
                self.psi_warning, self.psi_drift
            ));
        }
        if !(2..=100).contains(&self.psi_bins) {
            return Err(format!("psi_bins must be 2 to 100, got {}", self.psi_bins));
        }
        if !(self.psi_epsilon > 0.0 && self.psi_epsilon < 1.0) {
            return Err(format!(
                "psi_epsilon must be in (0, 1), got {}",
                self.psi_epsilon
            ));
        }
        Ok(())
    }

    /// The floor of a PSI bin share in use: `psi_epsilon` when it is in `(0, 1)`, else
    /// the default (a floor of 0 makes PSI infinite for any category one side lacks).
    fn psi_floor(&self) -> f64 {
        if self.psi_epsilon > 0.0 && self.psi_epsilon < 1.0 {
            self.psi_epsilon
        } else {
            psi::DEFAULT_EPSILON
        }
    }
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            alpha: 0.05,
            ks_min_effect: 0.1,
            psi_drift: 0.2,
            psi_warning: 0.1,
            psi_bins: psi::DEFAULT_BINS,
            psi_epsilon: psi::DEFAULT_EPSILON,
            js_min_effect: 0.1,
        }
    }
}

/// The verdict on one feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The feature drifted.
    Drift,
    /// PSI between the warning and drift thresholds.
    Warning,
    /// No drift.
    None,
    /// The sketches are too coarse to tell: raise `k`.
    Inconclusive,
}

impl Verdict {
    /// The verdict's name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Drift => "drift",
            Verdict::Warning => "warning",
            Verdict::None => "none",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// Numeric statistics of one feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumericComparison {
    /// Values in the reference window.
    pub n_reference: u64,
    /// Values in the current window.
    pub n_current: u64,
    /// KS statistic `D`.
    pub ks: f64,
    /// Bound on `|D − D_exact|`: the sum of the two sketches' rank-error bounds, each of which
    /// holds at every point with 99% confidence (0 for exact samples).
    pub ks_error_bound: f64,
    /// Asymptotic two-sided p-value of `D`.
    pub p_value: f64,
    /// p-values of `D + bound` and `D − bound`: the true p-value lies between.
    pub p_value_range: (f64, f64),
    /// Smallest significant `D` at level alpha for these sizes (before adjustment).
    pub ks_critical_value: f64,
    /// PSI.
    pub psi: f64,
    /// PSI that no-drift samples of these sizes stay below with probability about
    /// `1 − alpha` ([`psi::psi_no_drift_quantile_of_shares`]); infinite (JSON `null`) when a
    /// bin expects fewer than 10 values, and then PSI alone gives no verdict.
    pub psi_no_drift_quantile: f64,
    /// Wasserstein-1 distance.
    pub wasserstein: Option<f64>,
    /// Wasserstein-1 divided by the reference's standard deviation.
    pub wasserstein_normalized: Option<f64>,
}

/// Categorical statistics of one feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoricalComparison {
    /// Values in the reference window.
    pub n_reference: u64,
    /// Values in the current window.
    pub n_current: u64,
    /// Chi-square statistic of homogeneity.
    pub chi_square: f64,
    /// Its degrees of freedom.
    pub degrees_of_freedom: usize,
    /// Its p-value.
    pub p_value: f64,
    /// PSI over categories.
    pub psi: f64,
    /// PSI that no-drift samples stay below with probability about `1 − alpha`
    /// ([`psi::psi_no_drift_quantile_of_shares`]); infinite (JSON `null`) when a category
    /// expects fewer than 5 values, and then PSI alone gives no verdict.
    pub psi_no_drift_quantile: f64,
    /// Jensen-Shannon distance (base 2).
    pub jensen_shannon: f64,
    /// Whether the counts are estimates: a category summary passed its limit of distinct
    /// values (Misra-Gries), undercounting values and pooling the rarer ones as `(other)`.
    #[serde(default)]
    pub approximate: bool,
    /// For estimated counts, the statistics of the table closest to no drift that the
    /// summaries' error bounds allow, found greedily ([`categorical::least_drift_table`]):
    /// drift is claimed only when these show it too, so a summary's error does not raise an
    /// alarm by itself (up to that approximation). `None` for exact counts.
    #[serde(default)]
    pub least_drift: Option<CategoricalStatistics>,
    /// For estimated counts, the share of the reference's values plus the share of the
    /// current's that their summaries do not attribute to a category (their `(other)`
    /// mass); 0 for exact counts. A shift among those values cannot be seen, so no-drift is
    /// claimed only when this is below the square of the Jensen-Shannon minimum effect
    /// (the JS distance is at most the square root of the total variation distance).
    #[serde(default)]
    pub untracked_share: f64,
}

/// The statistics of one categorical count table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoricalStatistics {
    /// Chi-square statistic of homogeneity.
    pub chi_square: f64,
    /// Its degrees of freedom.
    pub degrees_of_freedom: usize,
    /// Its p-value.
    pub p_value: f64,
    /// PSI over the cells.
    pub psi: f64,
    /// Jensen-Shannon distance (base 2).
    pub jensen_shannon: f64,
}

impl CategoricalStatistics {
    /// The statistics of two aligned count vectors.
    #[must_use]
    pub fn of(reference: &[f64], current: &[f64], epsilon: f64) -> Self {
        let (chi_square, degrees_of_freedom, p_value) = categorical::chi_square(reference, current);
        CategoricalStatistics {
            chi_square,
            degrees_of_freedom,
            p_value,
            psi: categorical::categorical_psi(reference, current, epsilon),
            jensen_shannon: categorical::jensen_shannon(reference, current),
        }
    }
}

/// The statistics of one feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Comparison {
    /// A numeric feature.
    Numeric(NumericComparison),
    /// A categorical feature.
    Categorical(CategoricalComparison),
}

/// One feature's statistics and verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDrift {
    /// Feature name.
    pub feature: String,
    /// Its statistics.
    pub comparison: Comparison,
    /// Its test's p-value after Benjamini-Hochberg (for sketches: of the most favourable
    /// `D − bound`; for estimated category counts: of the table closest to no drift).
    pub adjusted_p_value: f64,
    /// The verdict.
    pub verdict: Verdict,
    /// What to do when the verdict is `inconclusive`.
    pub hint: Option<String>,
}

/// Compares two numeric distributions. `reference_std` normalises the Wasserstein distance.
/// When either side holds no values the statistics are NaN (their bounds infinite) and
/// Wasserstein is `None`: nothing is computed from no data ([`table::compare`] and
/// [`profiles::compare_profiles`] report such features apart).
#[must_use]
pub fn compare_numeric(
    reference: &dyn Distribution1d,
    current: &dyn Distribution1d,
    reference_std: Option<f64>,
    thresholds: &Thresholds,
) -> NumericComparison {
    let (n, m) = (reference.count(), current.count());
    if n == 0 || m == 0 {
        return NumericComparison {
            n_reference: n,
            n_current: m,
            ks: f64::NAN,
            ks_error_bound: f64::INFINITY,
            p_value: f64::NAN,
            p_value_range: (f64::NAN, f64::NAN),
            ks_critical_value: f64::INFINITY,
            psi: f64::NAN,
            psi_no_drift_quantile: f64::INFINITY,
            wasserstein: None,
            wasserstein_normalized: None,
        };
    }
    let (d, bound) = kolmogorov::ks_statistic(reference, current);
    // Out-of-range settings are clamped: 2 to 100 bins, a positive floor.
    let bins = thresholds.psi_bins.clamp(2, 100);
    let epsilon = thresholds.psi_floor();
    let edges = psi::quantile_edges(reference, bins);
    let (shares_ref, shares_cur) = (psi::shares(reference, &edges), psi::shares(current, &edges));
    let psi = psi::psi_from_shares(&shares_ref, &shares_cur, epsilon);
    let wasserstein = distance::wasserstein(reference, current);
    NumericComparison {
        n_reference: n,
        n_current: m,
        ks: d,
        ks_error_bound: bound,
        p_value: kolmogorov::ks_p_value(d, n, m),
        p_value_range: (
            kolmogorov::ks_p_value(d + bound, n, m),
            kolmogorov::ks_p_value((d - bound).max(0.0), n, m),
        ),
        ks_critical_value: kolmogorov::ks_critical_value(thresholds.alpha, n, m),
        psi,
        // Repeated quantiles (a 0/1 flag, a 1-5 rating) leave fewer bins than asked for, and
        // some may hold nothing: the quantile counts the bins that hold values.
        psi_no_drift_quantile: psi::psi_no_drift_quantile_of_shares(
            &shares_ref,
            &shares_cur,
            n,
            m,
            thresholds.alpha,
            psi::SmallSampleRule::ReferenceBins,
        ),
        wasserstein,
        wasserstein_normalized: match (wasserstein, reference_std) {
            (Some(w), Some(s)) if s > 0.0 && s.is_finite() => Some(w / s),
            _ => None,
        },
    }
}

/// Compares two categorical count tables (category → count), taken as exact. When either
/// side holds no values the statistics are NaN (nothing is computed from no data).
#[must_use]
pub fn compare_categorical(
    reference: &BTreeMap<String, f64>,
    current: &BTreeMap<String, f64>,
    thresholds: &Thresholds,
) -> CategoricalComparison {
    let (_, r, c) = categorical::align(reference, current);
    let (n, m) = (r.iter().sum::<f64>() as u64, c.iter().sum::<f64>() as u64);
    let s = if n == 0 || m == 0 {
        CategoricalStatistics {
            chi_square: f64::NAN,
            degrees_of_freedom: 0,
            p_value: f64::NAN,
            psi: f64::NAN,
            jensen_shannon: f64::NAN,
        }
    } else {
        CategoricalStatistics::of(&r, &c, thresholds.psi_floor())
    };
    CategoricalComparison {
        n_reference: n,
        n_current: m,
        chi_square: s.chi_square,
        degrees_of_freedom: s.degrees_of_freedom,
        p_value: s.p_value,
        psi: s.psi,
        psi_no_drift_quantile: psi::psi_no_drift_quantile_of_shares(
            &categorical::shares(&r),
            &categorical::shares(&c),
            n,
            m,
            thresholds.alpha,
            psi::SmallSampleRule::PooledCategories,
        ),
        jensen_shannon: s.jensen_shannon,
        approximate: false,
        least_drift: None,
        untracked_share: 0.0,
    }
}

/// The counts of a category summary, with the mass it does not attribute to any value
/// pooled in one [`profiles::OTHER`] cell.
#[must_use]
pub fn summary_counts(profile: &CategoricalProfile) -> BTreeMap<String, f64> {
    let mut counts: BTreeMap<String, f64> = profile
        .frequencies()
        .into_iter()
        .map(|(k, v)| (k, v as f64))
        .collect();
    if profile.other() > 0 {
        *counts.entry(profiles::OTHER.to_owned()).or_default() += profile.other() as f64;
    }
    counts
}

/// Compares two category summaries. While both are exact this is [`compare_categorical`]
/// on their counts. Once either passed its limit of distinct values, the statistics shown
/// are those of the estimated counts (rest pooled as [`profiles::OTHER`]), flagged
/// `approximate`, and `least_drift` holds those of the table closest to no drift within
/// the summaries' error bounds, on which [`assess`] decides a drift claim.
#[must_use]
pub fn compare_categorical_profiles(
    reference: &CategoricalProfile,
    current: &CategoricalProfile,
    thresholds: &Thresholds,
) -> CategoricalComparison {
    let mut comparison = compare_categorical(
        &summary_counts(reference),
        &summary_counts(current),
        thresholds,
    );
    if !(reference.is_exact() && current.is_exact()) {
        let (r, c) = categorical::least_drift_table(
            (
                &reference.frequencies(),
                reference.count(),
                reference.max_error(),
            ),
            (&current.frequencies(), current.count(), current.max_error()),
        );
        comparison.approximate = true;
        comparison.least_drift = Some(CategoricalStatistics::of(&r, &c, thresholds.psi_floor()));
        let untracked = |p: &CategoricalProfile| {
            let tracked: u64 = p.frequencies().values().sum();
            if p.count() == 0 {
                0.0
            } else {
                p.count().saturating_sub(tracked) as f64 / p.count() as f64
            }
        };
        comparison.untracked_share = untracked(reference) + untracked(current);
    }
    comparison
}

/// Verdicts for a set of features compared together (p-values are adjusted across them).
#[must_use]
pub fn assess(features: Vec<(String, Comparison)>, thresholds: &Thresholds) -> Vec<FeatureDrift> {
    // For a drift claim, the least significant p-value the error bound allows; for a
    // no-drift claim, the most significant.
    let p_claim: Vec<f64> = features
        .iter()
        .map(|(_, c)| match c {
            Comparison::Numeric(n) => n.p_value_range.1,
            Comparison::Categorical(c) => c.least_drift.as_ref().map_or(c.p_value, |l| l.p_value),
        })
        .collect();
    let p_clear: Vec<f64> = features
        .iter()
        .map(|(_, c)| match c {
            Comparison::Numeric(n) => n.p_value_range.0,
            Comparison::Categorical(c) => c.p_value,
        })
        .collect();
    let adjusted_claim = multiple::benjamini_hochberg(&p_claim);
    let adjusted_clear = multiple::benjamini_hochberg(&p_clear);
    features
        .into_iter()
        .enumerate()
        .map(|(i, (feature, comparison))| {
            let t = thresholds;
            let (verdict, hint) = match &comparison {
                Comparison::Numeric(n) => {
                    let ks_drift = adjusted_claim[i] < t.alpha && n.ks - n.ks_error_bound >= t.ks_min_effect;
                    let ks_clear = adjusted_clear[i] >= t.alpha || n.ks + n.ks_error_bound < t.ks_min_effect;
                    let psi_above = n.psi > n.psi_no_drift_quantile;
                    if ks_drift || (psi_above && n.psi >= t.psi_drift) {
                        (Verdict::Drift, None)
                    } else if psi_above && n.psi >= t.psi_warning {
                        (Verdict::Warning, None)
                    } else if !ks_clear {
                        (
                            Verdict::Inconclusive,
                            Some(format!(
                                "KS D = {:.4} ± {:.4} straddles the decision: raise the sketch's k (or use exact statistics)",
                                n.ks, n.ks_error_bound
                            )),
                        )
                    } else {
                        (Verdict::None, None)
                    }
                }
                Comparison::Categorical(c) => {
                    let q = c.psi_no_drift_quantile;
                    let drifts = |p: f64, js: f64, psi: f64| {
                        (p < t.alpha && js >= t.js_min_effect) || (psi > q && psi >= t.psi_drift)
                    };
                    let warns = |psi: f64| psi > q && psi >= t.psi_warning;
                    // Estimated counts: claims rest on the table closest to no drift.
                    let (claim_js, claim_psi) = c
                        .least_drift
                        .as_ref()
                        .map_or((c.jensen_shannon, c.psi), |l| (l.jensen_shannon, l.psi));
                    if drifts(adjusted_claim[i], claim_js, claim_psi) {
                        (Verdict::Drift, None)
                    } else if warns(claim_psi) {
                        (Verdict::Warning, None)
                    } else if c.least_drift.is_some()
                        && (drifts(adjusted_clear[i], c.jensen_shannon, c.psi) || warns(c.psi))
                    {
                        (
                            Verdict::Inconclusive,
                            Some(
                                "the estimated category counts differ, but no more than the summaries' error can explain: compare exact counts (`--exact`, or a larger max_distinct)"
                                    .to_owned(),
                            ),
                        )
                    } else if c.untracked_share >= t.js_min_effect * t.js_min_effect {
                        (
                            Verdict::Inconclusive,
                            Some(format!(
                                "the category summaries leave {:.1}% of the values unattributed (reference and current shares added), so a shift among the rarer categories cannot be ruled out: compare exact counts (`--exact`, or a larger max_distinct)",
                                100.0 * c.untracked_share
                            )),
                        )
                    } else {
                        (Verdict::None, None)
                    }
                }
            };
            FeatureDrift { feature, comparison, adjusted_p_value: adjusted_claim[i], verdict, hint }
        })
        .collect()
}
