//! The JSON views the dashboard draws that the rest of the admin API did not have yet:
//! drift over time, the distributions behind one feature's drift, and an experiment's
//! primary metric over time. Every number is computed on request from the store (the same
//! merged windows and reference profiles the lifecycle uses); nothing here is stored.
//!
//! Cost: a drift series of `p` points merges the stored windows of `p` drift windows and
//! compares every feature once per point; an experiment series reads the experiment's
//! windows once. Both are bounded by [`MAX_POINTS`].

use serde::{Deserialize, Serialize};

use crate::drift::Thresholds;
use crate::metrics::VariantMetrics;
use crate::sidecar::lifecycle::config::LifecycleConfig;
use crate::sidecar::lifecycle::triggers::{FeatureDriftEvidence, drift_evidence};
use crate::sidecar::store::{Store, StoreError};
use crate::sketch::FeatureProfile;
use crate::stats::{Policy, Sample, sequential};

/// Most points a series may ask for.
pub const MAX_POINTS: u32 = 200;
/// Points of a series when the query does not say.
pub const DEFAULT_POINTS: u32 = 24;
/// Points of each cumulative distribution in a [`Distributions`] answer.
pub const CDF_POINTS: usize = 41;

/// Why a dashboard view cannot be computed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// A query parameter is out of range (a 400).
    #[error("{0}")]
    BadQuery(String),
    /// The feature, experiment or model is not known (a 404).
    #[error("{0}")]
    NotFound(String),
    /// The store failed (a 503).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Query of `GET /v1/drift`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesQuery {
    /// Number of points, 1 to [`MAX_POINTS`] (default [`DEFAULT_POINTS`]).
    pub points: Option<u32>,
    /// Time between points in seconds (default: the drift window, so that windows do not
    /// overlap; for experiment series, an even split of the stored time).
    pub step_s: Option<u64>,
}

impl SeriesQuery {
    fn points(&self) -> Result<u32, DataError> {
        match self.points {
            None => Ok(DEFAULT_POINTS),
            Some(p) if (1..=MAX_POINTS).contains(&p) => Ok(p),
            Some(p) => Err(DataError::BadQuery(format!(
                "points = {p}: give 1 to {MAX_POINTS}"
            ))),
        }
    }

    fn step_ms(&self) -> Result<Option<i64>, DataError> {
        match self.step_s {
            None => Ok(None),
            Some(s) if (1..=366 * 86_400).contains(&s) => Ok(Some(1000 * s as i64)),
            Some(s) => Err(DataError::BadQuery(format!(
                "step_s = {s}: give 1 to {} seconds",
                366 * 86_400
            ))),
        }
    }
}

/// The training data a drift comparison is made against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceWindow {
    /// `model@version` (the production model now).
    pub reference: String,
    /// First training record's time, Unix ms.
    pub trained_from_ms: Option<i64>,
    /// Last training record's time, Unix ms.
    pub trained_to_ms: Option<i64>,
}

/// One look of a [`DriftSeries`]: drift over the window ending at `end_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftPoint {
    /// End of the window, Unix ms (exclusive).
    pub end_ms: i64,
    /// Feature rows the production variant reported in the window.
    pub rows: u64,
    /// Whether the rows reach the lifecycle's `min_drift_rows` (below it the lifecycle
    /// does not act on the numbers).
    pub enough_rows: bool,
    /// Per feature, in the model's feature order.
    pub features: Vec<FeatureDriftEvidence>,
}

/// `GET /v1/drift`: drift of the production variant against the production model's
/// training data, per window, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftSeries {
    /// Registry name of the model.
    pub model: String,
    /// Its experiment.
    pub experiment: String,
    /// The variant whose inputs are compared.
    pub variant: String,
    /// What the windows are compared with; `None` before the first promotion.
    pub reference: Option<ReferenceWindow>,
    /// The features, in order.
    pub features: Vec<String>,
    /// Length of each window, seconds (the lifecycle's `drift_window_s`).
    pub window_s: u64,
    /// Time between points, seconds.
    pub step_s: u64,
    /// Rows a window needs before the lifecycle acts on it.
    pub min_rows: u64,
    /// The verdict thresholds (KS minimum effect, PSI warning and drift levels).
    pub thresholds: Thresholds,
    /// Windows with at least one row, oldest first.
    pub points: Vec<DriftPoint>,
}

/// The production model and its decoded reference profile.
struct Reference {
    window: ReferenceWindow,
    profiles: Vec<(String, FeatureProfile)>,
}

fn production_reference(
    store: &Store,
    config: &LifecycleConfig,
) -> Result<Option<Reference>, DataError> {
    let Some(production) = store.alias(&config.model, "production")? else {
        return Ok(None);
    };
    let Some(bytes) = store.reference_profile(&config.model, production.version)? else {
        return Ok(None);
    };
    let profiles = postcard::from_bytes::<Vec<(String, FeatureProfile)>>(&bytes).map_err(|e| {
        StoreError::Corrupt {
            table: "models",
            reason: format!(
                "the reference profile of {} does not decode: {e}",
                production.reference
            ),
        }
    })?;
    Ok(Some(Reference {
        window: ReferenceWindow {
            reference: production.reference,
            trained_from_ms: production.trained_from_ms,
            trained_to_ms: production.trained_to_ms,
        },
        profiles,
    }))
}

/// The production variant's merged metrics over `[from, to)`.
fn production_window(
    store: &Store,
    config: &LifecycleConfig,
    from: i64,
    to: i64,
) -> Result<Option<VariantMetrics>, DataError> {
    Ok(store
        .totals(Some(&config.experiment), from, to)?
        .into_iter()
        .find(|t| t.variant == config.production_variant)
        .map(|t| t.metrics))
}

/// Drift per window, the `points` windows ending at `now_ms` and `step` apart.
///
/// # Errors
/// [`DataError::BadQuery`] for out-of-range parameters, [`DataError::Store`].
pub fn drift_series(
    store: &Store,
    config: &LifecycleConfig,
    query: &SeriesQuery,
    now_ms: i64,
) -> Result<DriftSeries, DataError> {
    let points = query.points()?;
    let window_ms = 1000 * config.triggers.drift_window_s as i64;
    let step_ms = query.step_ms()?.unwrap_or(window_ms).max(1);
    let reference = production_reference(store, config)?;
    let mut out = Vec::new();
    if let Some(reference) = &reference {
        for k in (0..i64::from(points)).rev() {
            let end = now_ms
                .saturating_sub(k.saturating_mul(step_ms))
                .saturating_add(1);
            let Some(metrics) = production_window(store, config, end - window_ms, end)? else {
                continue;
            };
            if metrics.feature_rows == 0 || metrics.features.is_empty() {
                continue;
            }
            out.push(DriftPoint {
                end_ms: end,
                rows: metrics.feature_rows,
                enough_rows: metrics.feature_rows >= config.triggers.min_drift_rows,
                features: drift_evidence(&reference.profiles, &metrics.features, &config.drift),
            });
        }
    }
    Ok(DriftSeries {
        model: config.model.clone(),
        experiment: config.experiment.clone(),
        variant: config.production_variant.clone(),
        features: match &reference {
            Some(r) => r.profiles.iter().map(|(n, _)| n.clone()).collect(),
            None => config.features.clone(),
        },
        reference: reference.map(|r| r.window),
        window_s: config.triggers.drift_window_s,
        step_s: (step_ms / 1000) as u64,
        min_rows: config.triggers.min_drift_rows,
        thresholds: config.drift,
        points: out,
    })
}

/// Query of `GET /v1/drift/features/{feature}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistributionQuery {
    /// End of the current window, Unix ms (default: now).
    pub end_ms: Option<i64>,
}

/// One side of a [`Distributions`] answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    /// Values counted (missing ones excluded).
    pub count: u64,
    /// Numeric: `(x, F(x))` pairs of the empirical CDF from the sketch, at evenly spaced
    /// ranks, increasing.
    pub cdf: Vec<(f64, f64)>,
    /// Categorical: `(value, share)` pairs, largest first (`"(other)"` holds the rest).
    pub shares: Vec<(String, f64)>,
}

/// `GET /v1/drift/features/{feature}`: the reference and current distributions of one
/// feature, as drawn from their sketches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Distributions {
    /// The feature.
    pub feature: String,
    /// `numeric` or `categorical`.
    pub kind: String,
    /// The reference window.
    pub reference_window: ReferenceWindow,
    /// Start of the current window, Unix ms.
    pub current_from_ms: i64,
    /// End of the current window, Unix ms (exclusive).
    pub current_to_ms: i64,
    /// The training data's distribution.
    pub reference: Distribution,
    /// The production variant's distribution over the current window.
    pub current: Distribution,
}

fn distribution(profile: &FeatureProfile) -> Distribution {
    let mut d = Distribution {
        count: profile.count(),
        cdf: Vec::new(),
        shares: Vec::new(),
    };
    if let Some(numeric) = profile.as_numeric() {
        let sketch = numeric.sketch();
        for i in 0..CDF_POINTS {
            let q = i as f64 / (CDF_POINTS - 1) as f64;
            if let Some(x) = sketch.quantile(q).filter(|x| x.is_finite()) {
                d.cdf.push((x, sketch.cdf(x)));
            }
        }
        d.cdf.dedup_by(|b, a| b.0 == a.0);
    } else if let Some(categorical) = profile.as_categorical() {
        let total = categorical.count().max(1) as f64;
        let mut shares: Vec<(String, f64)> = categorical
            .frequencies()
            .into_iter()
            .map(|(v, n)| (v, n as f64 / total))
            .collect();
        shares.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        if categorical.other() > 0 {
            shares.push(("(other)".into(), categorical.other() as f64 / total));
        }
        d.shares = shares;
    }
    d
}

/// The reference and current distributions of `feature`, for the drift window ending at
/// `end_ms`.
///
/// # Errors
/// [`DataError::NotFound`] for an unknown feature or before the first promotion,
/// [`DataError::Store`].
pub fn distributions(
    store: &Store,
    config: &LifecycleConfig,
    feature: &str,
    end_ms: i64,
) -> Result<Distributions, DataError> {
    let Some(reference) = production_reference(store, config)? else {
        return Err(DataError::NotFound(format!(
            "{} has no production model with a reference profile yet",
            config.model
        )));
    };
    let Some(index) = reference.profiles.iter().position(|(n, _)| n == feature) else {
        return Err(DataError::NotFound(format!(
            "{} has no feature `{feature}`",
            reference.window.reference
        )));
    };
    let window_ms = 1000 * config.triggers.drift_window_s as i64;
    let from = end_ms.saturating_sub(window_ms);
    let profile = &reference.profiles[index].1;
    let current = production_window(store, config, from, end_ms)?
        .and_then(|m| m.features.get(index).cloned())
        .map_or(
            Distribution {
                count: 0,
                cdf: Vec::new(),
                shares: Vec::new(),
            },
            |p| distribution(&p),
        );
    Ok(Distributions {
        feature: feature.to_owned(),
        kind: profile.kind().to_owned(),
        reference_window: reference.window.clone(),
        current_from_ms: from,
        current_to_ms: end_ms,
        reference: distribution(profile),
        current,
    })
}

/// One look of a [`VariantSeries`]: everything recorded up to `end_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantPoint {
    /// End of the cumulated time, Unix ms (exclusive).
    pub end_ms: i64,
    /// Calls so far.
    pub requests: u64,
    /// Failed calls so far.
    pub errors: u64,
    /// Observations of the primary metric so far.
    pub n: u64,
    /// The primary metric (success rate or outcome mean), when observed.
    pub mean: Option<f64>,
    /// Its always-valid interval (mixture sequential, level 1 − alpha); `None` while
    /// unbounded.
    pub lower: Option<f64>,
    /// Upper end of the interval.
    pub upper: Option<f64>,
}

/// One variant's cumulative looks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantSeries {
    /// Variant name.
    pub variant: String,
    /// Looks, oldest first.
    pub points: Vec<VariantPoint>,
}

/// `GET /v1/experiments/{name}/series`: every variant's primary metric over time, with the
/// always-valid interval of its mean, cumulated from the first stored window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentSeries {
    /// The experiment.
    pub experiment: String,
    /// Level of the intervals is `1 − alpha`.
    pub alpha: f64,
    /// The relative effect the mixing variance is scaled to (τ = effect × the pooled mean).
    pub relative_effect: f64,
    /// Per variant, in the configured order.
    pub variants: Vec<VariantSeries>,
}

/// Relative effect size the intervals' mixing variance is scaled to (as the policy's
/// default minimum detectable effect).
pub const RELATIVE_EFFECT: f64 = 0.05;

fn primary_sample(m: &VariantMetrics) -> Option<Sample> {
    if m.binary.trials > 0 {
        Sample::binary(m.binary.trials, m.binary.successes).ok()
    } else if m.outcome.count > 1 {
        Sample::continuous(m.outcome.count, m.outcome.mean, m.outcome.variance()?).ok()
    } else {
        None
    }
}

/// The cumulative primary metric of every variant of `experiment`, at `points` looks
/// spread evenly over the stored time (or `step_s` apart, ending at `now_ms`).
///
/// # Errors
/// [`DataError::BadQuery`], [`DataError::NotFound`] for an experiment not configured,
/// [`DataError::Store`].
pub fn experiment_series(
    store: &Store,
    experiment: &str,
    variants: &[String],
    query: &SeriesQuery,
    alpha: f64,
    now_ms: i64,
) -> Result<ExperimentSeries, DataError> {
    if variants.is_empty() {
        return Err(DataError::NotFound(format!(
            "no experiment `{experiment}` is configured"
        )));
    }
    let points = i64::from(query.points()?);
    let mut windows = Vec::with_capacity(variants.len());
    let mut first = i64::MAX;
    let mut last = i64::MIN;
    for v in variants {
        let rows = store.windows(experiment, v, i64::MIN, i64::MAX)?;
        if let (Some(a), Some(b)) = (rows.first(), rows.last()) {
            first = first.min(a.bucket_start_ms);
            last = last.max(b.bucket_start_ms.saturating_add(b.resolution_ms));
        }
        windows.push(rows);
    }
    let ends: Vec<i64> = match query.step_ms()? {
        Some(step) => (0..points)
            .rev()
            .map(|k| now_ms.saturating_sub(k.saturating_mul(step)))
            .collect(),
        None if first <= last => evenly_spaced_ends(first, last, points),
        None => Vec::new(),
    };
    // One mixing variance for all looks and variants (it must not change between looks):
    // scaled to everything recorded, as the policy scales it to the control.
    let mut pooled = VariantMetrics::default();
    for rows in &windows {
        for w in rows {
            add_outcomes(&mut pooled, &w.metrics);
        }
    }
    let tau2 =
        primary_sample(&pooled).and_then(|s| Policy::mixing_variance_for(&s, RELATIVE_EFFECT));
    let mut out = Vec::with_capacity(variants.len());
    for (variant, rows) in variants.iter().zip(&windows) {
        let mut acc = VariantMetrics::default();
        let mut next = 0;
        let mut series = Vec::with_capacity(ends.len());
        for &end in &ends {
            while let Some(w) = rows.get(next).filter(|w| w.bucket_start_ms < end) {
                add_outcomes(&mut acc, &w.metrics);
                next += 1;
            }
            let sample = primary_sample(&acc);
            let interval = match (&sample, tau2) {
                (Some(s), Some(t)) => sequential::mean_sequence(s, t, alpha).ok(),
                _ => None,
            };
            series.push(VariantPoint {
                end_ms: end,
                requests: acc.requests,
                errors: acc.errors.total(),
                n: sample.as_ref().map_or(0, Sample::n),
                mean: sample.as_ref().map(Sample::mean),
                lower: interval.map(|i| i.lower).filter(|x| x.is_finite()),
                upper: interval.map(|i| i.upper).filter(|x| x.is_finite()),
            });
        }
        out.push(VariantSeries {
            variant: variant.clone(),
            points: series,
        });
    }
    Ok(ExperimentSeries {
        experiment: experiment.to_owned(),
        alpha,
        relative_effect: RELATIVE_EFFECT,
        variants: out,
    })
}

/// `points` look ends spread evenly over `(first, last]`, the last one at `last` (at
/// `first + 1` for an empty span). Computed in `i128`, so no span between two `i64` times
/// overflows and every end stays within `[first, last.max(first + 1)]`.
fn evenly_spaced_ends(first: i64, last: i64, points: i64) -> Vec<i64> {
    let span = (i128::from(last) - i128::from(first)).max(1);
    let points = points.max(1);
    (1..=points)
        .map(|k| {
            let end = i128::from(first) + span * i128::from(k) / i128::from(points);
            i64::try_from(end).unwrap_or(i64::MAX)
        })
        .collect()
}

/// Adds the counters and outcomes of `from` to `into` (sketches are not needed here, so
/// they are not merged).
fn add_outcomes(into: &mut VariantMetrics, from: &VariantMetrics) {
    into.requests = into.requests.saturating_add(from.requests);
    into.errors.add(&from.errors);
    into.binary.successes = into.binary.successes.saturating_add(from.binary.successes);
    into.binary.trials = into.binary.trials.saturating_add(from.binary.trials);
    into.outcome = into.outcome.merge(&from.outcome);
}

/// One variant's configured share of an experiment's exposed traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantShare {
    /// Variant name.
    pub variant: String,
    /// Percent of the exposed traffic; `None` when the strategy leaves it to the other
    /// variants together (canary and gradual: everything but the candidate's percent).
    pub percent: Option<f64>,
    /// The model the variant serves, when named.
    pub model: Option<String>,
}

/// An experiment's configured traffic split now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentSplit {
    /// The experiment.
    pub experiment: String,
    /// `ab`, `immediate`, `canary` or `gradual`.
    pub strategy: String,
    /// Fraction of keys that enter the experiment.
    pub coverage: f64,
    /// Per variant, in the configured order.
    pub variants: Vec<VariantShare>,
}

/// The split every experiment of `config` applies at the clock's time (an empty list for
/// a config that does not compile, which the control plane never publishes).
#[must_use]
pub fn traffic_split(
    config: &crate::route::RouterConfig,
    clock: std::sync::Arc<dyn crate::route::Clock>,
) -> Vec<ExperimentSplit> {
    let Ok(router) = crate::route::Router::with_clock(config.clone(), clock.clone()) else {
        return Vec::new();
    };
    let compiled = router.current();
    config
        .experiments
        .iter()
        .filter_map(|e| {
            let c = compiled.experiment_by_name(&e.name)?;
            let strategy = c.strategy();
            let names: Vec<&str> = e.variants.iter().map(|v| v.name.as_str()).collect();
            let percent_of: Vec<Option<f64>> = match strategy.as_str() {
                "immediate" => {
                    let target = e.target.as_deref().or(names.last().copied());
                    names
                        .iter()
                        .map(|n| Some(if Some(*n) == target { 100.0 } else { 0.0 }))
                        .collect()
                }
                "canary" | "gradual" => {
                    let candidate = e.candidate.as_deref().or(names.get(1).copied());
                    let p = c.candidate_percent(clock.as_ref());
                    let others = names.len().saturating_sub(1);
                    names
                        .iter()
                        .map(|n| {
                            if Some(*n) == candidate {
                                p
                            } else if others == 1 {
                                p.map(|p| 100.0 - p)
                            } else {
                                None
                            }
                        })
                        .collect()
                }
                _ => {
                    let weights: Vec<f64> = if e.variants.iter().all(|v| v.weight.is_none()) {
                        vec![1.0; names.len()]
                    } else {
                        e.variants.iter().map(|v| v.weight.unwrap_or(0.0)).collect()
                    };
                    let total: f64 = weights.iter().sum();
                    weights
                        .iter()
                        .map(|w| (total > 0.0).then(|| 100.0 * w / total))
                        .collect()
                }
            };
            Some(ExperimentSplit {
                experiment: e.name.clone(),
                strategy: strategy.as_str().to_owned(),
                coverage: e.coverage.unwrap_or(1.0),
                variants: e
                    .variants
                    .iter()
                    .zip(percent_of)
                    .map(|(v, percent)| VariantShare {
                        variant: v.name.clone(),
                        percent,
                        model: v.model.clone(),
                    })
                    .collect(),
            })
        })
        .collect()
}
