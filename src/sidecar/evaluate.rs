//! Offline evaluation on a holdout: metrics of a model, and the comparison of a candidate
//! with the production model on one primary metric.
//!
//! Binary labels (a logistic model's probability `p` of class 1):
//!
//! * **accuracy**: share of rows where `p ≥ 0.5` predicts the label;
//! * **AUC**: ROC AUC as the Mann-Whitney statistic, `U / (n₁·n₀)` where `U` counts the
//!   (positive, negative) pairs the model ranks correctly and ties count ½;
//! * **log loss**: `−mean(y·ln p + (1 − y)·ln(1 − p))` with `p` clipped to
//!   `[1e-15, 1 − 1e-15]`;
//! * **F1** of class 1 (threshold 0.5): `2·TP / (2·TP + FP + FN)`.
//!
//! Continuous labels: **RMSE** `sqrt(mean((y − ŷ)²))` and **MAE** `mean|y − ŷ|`.
//!
//! A metric that is undefined on the holdout is `None`, never NaN: AUC when the holdout
//! has one class, F1 when there are neither positive labels nor positive predictions. An
//! empty holdout is an error.
//!
//! [`compare`] gives the candidate's improvement over production in the metric's good
//! direction, relative to production's value: `(cand − prod) / |prod|` when higher is
//! better, `(prod − cand) / |prod|` when lower is better, so a positive improvement is
//! always better and `0.05` means "5 % better". When production's value is 0 the relative
//! change is undefined; the improvement is then the absolute difference in the good
//! direction (`cand − prod` or `prod − cand`) and [`Comparison::relative`] is `false`.
//!
//! Cost: one prediction per holdout row, then O(n log n) for the AUC's sort.
//!
//! ```
//! use modelgate::sidecar::evaluate::{Metric, binary_metrics, compare};
//!
//! let labels = [1.0, 0.0, 1.0, 0.0];
//! let production = binary_metrics(&labels, &[0.6, 0.4, 0.3, 0.7])?;
//! let candidate = binary_metrics(&labels, &[0.9, 0.2, 0.6, 0.4])?;
//! assert_eq!(production.auc, Some(0.25));
//! assert_eq!(candidate.auc, Some(1.0));
//! let c = compare(&candidate, &production, Metric::Auc)?;
//! assert_eq!(c.improvement, 3.0); // (1.0 − 0.25) / 0.25
//! # Ok::<(), modelgate::sidecar::evaluate::EvalError>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::artifact::{ArtifactError, DataRange, LabelKind, ModelArtifact};
use crate::sidecar::train::TrainingData;
use crate::stats::Direction;

/// Probabilities are clipped to `[LOG_LOSS_EPS, 1 − LOG_LOSS_EPS]` for the log loss.
pub const LOG_LOSS_EPS: f64 = 1e-15;

/// Probability at or above which a row is predicted positive (accuracy, F1).
pub const THRESHOLD: f64 = 0.5;

/// Largest share of holdout rows [`EvaluationReport::evaluate`] may leave out because a
/// model's prediction for them is not a finite number (finite inputs so large that the
/// score overflows): 1 %. More than that fails the evaluation.
pub const MAX_UNUSABLE_FRACTION: f64 = 0.01;

/// An offline metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Share of correct predictions at threshold 0.5 (binary).
    Accuracy,
    /// ROC AUC (binary).
    Auc,
    /// Mean log loss (binary).
    LogLoss,
    /// F1 of class 1 at threshold 0.5 (binary).
    F1,
    /// Root mean squared error (continuous).
    Rmse,
    /// Mean absolute error (continuous).
    Mae,
}

impl Metric {
    /// Every metric.
    pub const ALL: [Metric; 6] = [
        Metric::Accuracy,
        Metric::Auc,
        Metric::LogLoss,
        Metric::F1,
        Metric::Rmse,
        Metric::Mae,
    ];

    /// Which way is better.
    #[must_use]
    pub fn direction(self) -> Direction {
        match self {
            Metric::Accuracy | Metric::Auc | Metric::F1 => Direction::HigherIsBetter,
            Metric::LogLoss | Metric::Rmse | Metric::Mae => Direction::LowerIsBetter,
        }
    }

    /// The metric's name: `accuracy`, `auc`, `log_loss`, `f1`, `rmse`, `mae`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::Auc => "auc",
            Metric::LogLoss => "log_loss",
            Metric::F1 => "f1",
            Metric::Rmse => "rmse",
            Metric::Mae => "mae",
        }
    }

    /// The metric called `name` (see [`Metric::name`]).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Whether the metric is for binary labels (accuracy, AUC, log loss, F1).
    #[must_use]
    pub fn is_binary(self) -> bool {
        self.label_kind() == LabelKind::Binary
    }

    /// The label kind the metric is computed for.
    #[must_use]
    pub fn label_kind(self) -> LabelKind {
        match self {
            Metric::Accuracy | Metric::Auc | Metric::LogLoss | Metric::F1 => LabelKind::Binary,
            Metric::Rmse | Metric::Mae => LabelKind::Continuous,
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Metric {
    type Err = EvalError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Metric::from_name(s).ok_or_else(|| EvalError::UnknownMetric(s.to_owned()))
    }
}

/// Why an evaluation or comparison cannot be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// The holdout has no rows.
    #[error("the holdout is empty")]
    Empty,
    /// Labels and predictions differ in number.
    #[error("{labels} labels but {predictions} predictions")]
    LengthMismatch {
        /// Labels.
        labels: usize,
        /// Predictions.
        predictions: usize,
    },
    /// A label is not valid for its kind (binary: 0 or 1; continuous: finite).
    #[error("label {index} is {value}: not a valid {kind} label", kind = kind.as_str())]
    InvalidLabel {
        /// Row.
        index: usize,
        /// The value.
        value: f64,
        /// The label kind.
        kind: LabelKind,
    },
    /// A prediction is not valid (binary: a probability in [0, 1]; continuous: finite).
    #[error("prediction {index} is {value}: not a valid {kind} prediction", kind = kind.as_str())]
    InvalidPrediction {
        /// Row.
        index: usize,
        /// The value.
        value: f64,
        /// The label kind.
        kind: LabelKind,
    },
    /// The model needs a feature the holdout does not have.
    #[error("the holdout has no feature `{0}` that the model needs")]
    MissingFeature(String),
    /// The model's label does not match the holdout's.
    #[error("label mismatch: {0}")]
    LabelMismatch(String),
    /// More than [`MAX_UNUSABLE_FRACTION`] of the holdout rows have no finite prediction.
    #[error(
        "{unusable} of {rows} holdout rows have no finite prediction (at most 1 % may be left out); the first, row {row}: {source}"
    )]
    TooManyUnusable {
        /// Rows left out.
        unusable: usize,
        /// Holdout rows.
        rows: usize,
        /// The first such row.
        row: usize,
        /// Why.
        #[source]
        source: ArtifactError,
    },
    /// The holdout's usable rows do not form valid data.
    #[error("the holdout's usable rows: {0}")]
    Holdout(String),
    /// The model could not predict a holdout row.
    #[error("holdout row {row}: {source}")]
    Predict {
        /// Row.
        row: usize,
        /// Why.
        #[source]
        source: ArtifactError,
    },
    /// A compared metric is undefined for one of the models (AUC on a one-class holdout,
    /// a continuous metric of a binary model, ...).
    #[error("metric {metric} is undefined for the {model} model")]
    Undefined {
        /// The metric.
        metric: Metric,
        /// `"candidate"` or `"production"`.
        model: &'static str,
    },
    /// No metric has this name.
    #[error("unknown metric `{0}` (expected accuracy, auc, log_loss, f1, rmse or mae)")]
    UnknownMetric(String),
}

/// A model's metrics on a holdout; the ones that do not apply or are undefined are `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// The label kind the metrics are for.
    pub kind: LabelKind,
    /// Holdout rows.
    pub rows: u64,
    /// Rows with label 1 (binary only).
    pub positives: Option<u64>,
    /// Accuracy at threshold 0.5.
    pub accuracy: Option<f64>,
    /// ROC AUC; `None` when the holdout has one class.
    pub auc: Option<f64>,
    /// Mean log loss.
    pub log_loss: Option<f64>,
    /// F1 of class 1; `None` when there are no positive labels and no positive predictions.
    pub f1: Option<f64>,
    /// Root mean squared error.
    pub rmse: Option<f64>,
    /// Mean absolute error.
    pub mae: Option<f64>,
}

impl Metrics {
    /// The value of `metric`, when defined.
    #[must_use]
    pub fn get(&self, metric: Metric) -> Option<f64> {
        match metric {
            Metric::Accuracy => self.accuracy,
            Metric::Auc => self.auc,
            Metric::LogLoss => self.log_loss,
            Metric::F1 => self.f1,
            Metric::Rmse => self.rmse,
            Metric::Mae => self.mae,
        }
    }

    /// The defined metrics by name (the shape of an artifact's or registry entry's
    /// `metrics` object).
    #[must_use]
    pub fn to_map(&self) -> BTreeMap<String, f64> {
        Metric::ALL
            .into_iter()
            .filter_map(|m| Some((m.name().to_owned(), self.get(m)?)))
            .collect()
    }
}

/// Binary metrics of probabilities `probabilities` (of class 1) against labels 0/1.
///
/// # Errors
/// [`EvalError::Empty`], [`EvalError::LengthMismatch`], a label other than 0 or 1, or a
/// probability outside [0, 1] or NaN.
pub fn binary_metrics(labels: &[f64], probabilities: &[f64]) -> Result<Metrics, EvalError> {
    check_lengths(labels, probabilities)?;
    for (index, (&y, &p)) in labels.iter().zip(probabilities).enumerate() {
        if y != 0.0 && y != 1.0 {
            return Err(EvalError::InvalidLabel {
                index,
                value: y,
                kind: LabelKind::Binary,
            });
        }
        if !(0.0..=1.0).contains(&p) {
            return Err(EvalError::InvalidPrediction {
                index,
                value: p,
                kind: LabelKind::Binary,
            });
        }
    }
    let n = labels.len();
    let (mut tp, mut fp, mut fn_, mut correct) = (0u64, 0u64, 0u64, 0u64);
    let mut loss = 0.0;
    for (&y, &p) in labels.iter().zip(probabilities) {
        let positive = y == 1.0;
        let predicted = p >= THRESHOLD;
        correct += u64::from(positive == predicted);
        tp += u64::from(positive && predicted);
        fp += u64::from(!positive && predicted);
        fn_ += u64::from(positive && !predicted);
        let p = p.clamp(LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS);
        loss -= if positive { p.ln() } else { (1.0 - p).ln() };
    }
    let f1_denominator = 2 * tp + fp + fn_;
    Ok(Metrics {
        kind: LabelKind::Binary,
        rows: n as u64,
        positives: Some(tp + fn_),
        accuracy: Some(correct as f64 / n as f64),
        auc: auc(labels, probabilities),
        log_loss: Some(loss / n as f64),
        f1: (f1_denominator > 0).then(|| (2 * tp) as f64 / f1_denominator as f64),
        rmse: None,
        mae: None,
    })
}

/// ROC AUC as the Mann-Whitney statistic (ties ½); `None` without both classes. Inputs are
/// checked by the caller.
fn auc(labels: &[f64], scores: &[f64]) -> Option<f64> {
    let mut pairs: Vec<(f64, bool)> = scores
        .iter()
        .zip(labels)
        .map(|(&s, &y)| (s, y == 1.0))
        .collect();
    let positives = pairs.iter().filter(|p| p.1).count();
    let negatives = pairs.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    // u counts correctly ranked (positive, negative) pairs, ties ½; doubled to stay integer.
    let mut twice_u: u128 = 0;
    let mut negatives_below: u128 = 0;
    let mut i = 0;
    while i < pairs.len() {
        let score = pairs[i].0;
        let (mut pos, mut neg) = (0u128, 0u128);
        while i < pairs.len() && pairs[i].0 == score {
            if pairs[i].1 {
                pos += 1;
            } else {
                neg += 1;
            }
            i += 1;
        }
        twice_u += pos * (2 * negatives_below + neg);
        negatives_below += neg;
    }
    Some(twice_u as f64 / 2.0 / (positives as f64 * negatives as f64))
}

/// Continuous metrics (RMSE, MAE) of `predictions` against `targets`.
///
/// # Errors
/// [`EvalError::Empty`], [`EvalError::LengthMismatch`], or a non-finite target or
/// prediction.
pub fn regression_metrics(targets: &[f64], predictions: &[f64]) -> Result<Metrics, EvalError> {
    check_lengths(targets, predictions)?;
    let (mut squared, mut absolute) = (0.0, 0.0);
    for (index, (&y, &p)) in targets.iter().zip(predictions).enumerate() {
        if !y.is_finite() {
            return Err(EvalError::InvalidLabel {
                index,
                value: y,
                kind: LabelKind::Continuous,
            });
        }
        if !p.is_finite() {
            return Err(EvalError::InvalidPrediction {
                index,
                value: p,
                kind: LabelKind::Continuous,
            });
        }
        let e = y - p;
        squared += e * e;
        absolute += e.abs();
    }
    let n = targets.len() as f64;
    Ok(Metrics {
        kind: LabelKind::Continuous,
        rows: targets.len() as u64,
        positives: None,
        accuracy: None,
        auc: None,
        log_loss: None,
        f1: None,
        rmse: Some((squared / n).sqrt()).filter(|v| v.is_finite()),
        mae: Some(absolute / n).filter(|v| v.is_finite()),
    })
}

fn check_lengths(labels: &[f64], predictions: &[f64]) -> Result<(), EvalError> {
    if labels.len() != predictions.len() {
        return Err(EvalError::LengthMismatch {
            labels: labels.len(),
            predictions: predictions.len(),
        });
    }
    if labels.is_empty() {
        return Err(EvalError::Empty);
    }
    Ok(())
}

/// The model's predictions for every holdout row (features matched by name).
///
/// # Errors
/// [`EvalError::MissingFeature`] or [`EvalError::Predict`].
pub fn predictions(model: &ModelArtifact, holdout: &TrainingData) -> Result<Vec<f64>, EvalError> {
    let columns = feature_columns(model, holdout)?;
    let mut input = vec![0.0; columns.len()];
    holdout
        .rows()
        .enumerate()
        .map(|(row, values)| {
            for (x, &c) in input.iter_mut().zip(&columns) {
                *x = values[c];
            }
            model
                .predict(&input)
                .map_err(|source| EvalError::Predict { row, source })
        })
        .collect()
}

/// Evaluates `model` on `holdout`: binary metrics for a logistic model, continuous ones for
/// a linear model.
///
/// # Errors
/// [`EvalError::Empty`] for an empty holdout, [`EvalError::LabelMismatch`] when the
/// holdout's label kind or positive value differs from the model's, and the errors of
/// [`predictions`].
pub fn evaluate(model: &ModelArtifact, holdout: &TrainingData) -> Result<Metrics, EvalError> {
    if holdout.is_empty() {
        return Err(EvalError::Empty);
    }
    let label = holdout.label();
    if label.kind != model.label.kind {
        return Err(EvalError::LabelMismatch(format!(
            "the model predicts a {} label, the holdout's is {}",
            model.label.kind.as_str(),
            label.kind.as_str()
        )));
    }
    if label.positive != model.label.positive {
        return Err(EvalError::LabelMismatch(format!(
            "the model's positive value is {:?}, the holdout's {:?}",
            model.label.positive, label.positive
        )));
    }
    let predicted = predictions(model, holdout)?;
    match label.kind {
        LabelKind::Binary => binary_metrics(holdout.labels(), &predicted),
        LabelKind::Continuous => regression_metrics(holdout.labels(), &predicted),
    }
}

/// A candidate against production on one metric (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The metric compared.
    pub primary: Metric,
    /// Which way is better for it.
    pub direction: Direction,
    /// The candidate's value.
    pub candidate: f64,
    /// Production's value.
    pub production: f64,
    /// The change in the good direction: `cand − prod` (higher is better) or `prod − cand`
    /// (lower is better); positive means the candidate is better.
    pub difference: f64,
    /// `difference / |prod|`, or `difference` itself when production's value is 0.
    pub improvement: f64,
    /// Whether `improvement` is relative (`false` when production's value is 0).
    pub relative: bool,
}

impl Comparison {
    /// Whether the candidate is better by at least `min_improvement` (for example `0.05`),
    /// see [`at_least`].
    #[must_use]
    pub fn improves_by(&self, min_improvement: f64) -> bool {
        at_least(self.improvement, min_improvement)
    }
}

/// How far below a threshold an improvement may fall and still count as reaching it: the
/// rounding of `(c − p) / |p|` in binary floating point. Accuracy 0.80 → 0.84 is exactly 5%
/// better, but computes as 0.04999999999999991; without this allowance an improvement of
/// exactly the threshold would be decided as just under it. A billionth of the metric's
/// scale is far below any difference an evaluation can resolve.
pub const THRESHOLD_TOLERANCE: f64 = 1e-9;

/// Whether `value` reaches `threshold`, allowing [`THRESHOLD_TOLERANCE`] for rounding.
#[must_use]
pub fn at_least(value: f64, threshold: f64) -> bool {
    value >= threshold - THRESHOLD_TOLERANCE
}

/// The candidate's improvement over production on `metric`, in the metric's good direction
/// and relative to production: `(cand − prod) / |prod|` (higher is better) or
/// `(prod − cand) / |prod|` (lower is better); the absolute difference in the good direction
/// when `prod` is 0. `None` when either value is not finite.
#[must_use]
pub fn relative_improvement(metric: Metric, candidate: f64, production: f64) -> Option<f64> {
    if !(candidate.is_finite() && production.is_finite()) {
        return None;
    }
    let difference = match metric.direction() {
        Direction::HigherIsBetter => candidate - production,
        Direction::LowerIsBetter => production - candidate,
    };
    let improvement = if production == 0.0 {
        difference
    } else {
        difference / production.abs()
    };
    improvement.is_finite().then_some(improvement)
}

/// Compares `candidate` with `production` on `primary`.
///
/// # Errors
/// [`EvalError::Undefined`] when either model's value of the metric is undefined.
pub fn compare(
    candidate: &Metrics,
    production: &Metrics,
    primary: Metric,
) -> Result<Comparison, EvalError> {
    let value = |m: &Metrics, model| {
        m.get(primary)
            .filter(|v| v.is_finite())
            .ok_or(EvalError::Undefined {
                metric: primary,
                model,
            })
    };
    let cand = value(candidate, "candidate")?;
    let prod = value(production, "production")?;
    let direction = primary.direction();
    let difference = match direction {
        Direction::HigherIsBetter => cand - prod,
        Direction::LowerIsBetter => prod - cand,
    };
    let improvement = relative_improvement(primary, cand, prod).ok_or(EvalError::Undefined {
        metric: primary,
        model: "candidate",
    })?;
    Ok(Comparison {
        primary,
        direction,
        candidate: cand,
        production: prod,
        difference,
        improvement,
        relative: prod != 0.0,
    })
}

/// What the pipeline stores for an evaluation step: both models' metrics on the same
/// holdout and the comparison on the primary metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationReport {
    /// The metric promotion is decided on.
    pub primary: Metric,
    /// The holdout's time range and size, when known.
    pub holdout: Option<DataRange>,
    /// The candidate's metrics.
    pub candidate: Metrics,
    /// Production's metrics, when there is a production model.
    pub production: Option<Metrics>,
    /// The comparison on `primary`; `None` when there is no production model or `primary` is
    /// undefined for either model (then [`undefined`](Self::undefined) says why).
    pub comparison: Option<Comparison>,
    /// Why there is no comparison although there is a production model.
    pub undefined: Option<String>,
    /// Holdout rows left out because a model's prediction for them is not a finite number
    /// (at most [`MAX_UNUSABLE_FRACTION`] of them); the metrics are over the other rows.
    #[serde(default)]
    pub unusable_rows: usize,
    /// Of [`unusable_rows`](Self::unusable_rows), those that production predicts as a
    /// finite number and the candidate does not: the candidate is not scored on them, so the
    /// policy does not promote it automatically when there are any.
    #[serde(default)]
    pub candidate_only_unusable_rows: usize,
}

impl EvaluationReport {
    /// A report from metrics computed on one holdout (`holdout` left `None`).
    #[must_use]
    pub fn new(candidate: Metrics, production: Option<Metrics>, primary: Metric) -> Self {
        let compared = production.as_ref().map(|p| compare(&candidate, p, primary));
        let (comparison, undefined) = match compared {
            None => (None, None),
            Some(Ok(c)) => (Some(c), None),
            Some(Err(e)) => (None, Some(e.to_string())),
        };
        EvaluationReport {
            primary,
            holdout: None,
            candidate,
            production,
            comparison,
            undefined,
            unusable_rows: 0,
            candidate_only_unusable_rows: 0,
        }
    }

    /// Evaluates the candidate (and production, when given) on `holdout` and compares them on
    /// `primary`.
    ///
    /// Rows for which either model's prediction is not a finite number are left out of
    /// both evaluations and counted in [`unusable_rows`](Self::unusable_rows), so that a
    /// few extreme rows cannot block every evaluation; more than [`MAX_UNUSABLE_FRACTION`]
    /// of them is an error.
    ///
    /// # Errors
    /// [`EvalError::LabelMismatch`] when `primary` is not a metric of the candidate's label
    /// kind, [`EvalError::TooManyUnusable`], and the errors of [`evaluate`].
    pub fn evaluate(
        candidate: &ModelArtifact,
        production: Option<&ModelArtifact>,
        holdout: &TrainingData,
        primary: Metric,
    ) -> Result<Self, EvalError> {
        if primary.label_kind() != candidate.label.kind {
            return Err(EvalError::LabelMismatch(format!(
                "the primary metric {primary} is for {} labels, the candidate predicts {}",
                primary.label_kind().as_str(),
                candidate.label.kind.as_str()
            )));
        }
        let models: Vec<&ModelArtifact> = std::iter::once(candidate).chain(production).collect();
        let (usable, unusable_rows, candidate_only) = usable_rows(&models, holdout)?;
        let usable = usable.as_ref().unwrap_or(holdout);
        let candidate_metrics = evaluate(candidate, usable)?;
        let production_metrics = production.map(|p| evaluate(p, usable)).transpose()?;
        let mut report = EvaluationReport::new(candidate_metrics, production_metrics, primary);
        report.holdout = holdout.range();
        report.unusable_rows = unusable_rows;
        report.candidate_only_unusable_rows = candidate_only;
        Ok(report)
    }
}

/// The holdout's column of each of `model`'s features, in the model's order.
fn feature_columns(model: &ModelArtifact, holdout: &TrainingData) -> Result<Vec<usize>, EvalError> {
    model
        .features
        .iter()
        .map(|f| {
            holdout
                .feature_index(f)
                .ok_or_else(|| EvalError::MissingFeature(f.clone()))
        })
        .collect()
}

/// The holdout without the rows some model cannot predict as a finite number (`None` when
/// there are none), how many were left out, and how many of those only the first model
/// (the candidate) fails on.
fn usable_rows(
    models: &[&ModelArtifact],
    holdout: &TrainingData,
) -> Result<(Option<TrainingData>, usize, usize), EvalError> {
    let columns = models
        .iter()
        .map(|model| feature_columns(model, holdout))
        .collect::<Result<Vec<_>, _>>()?;
    let mut keep = vec![true; holdout.len()];
    let mut candidate_only = 0;
    let mut first: Option<(usize, ArtifactError)> = None;
    let mut input = Vec::new();
    for (row, values) in holdout.rows().enumerate() {
        let mut failed = Vec::with_capacity(models.len());
        for (model, columns) in models.iter().zip(&columns) {
            input.clear();
            input.extend(columns.iter().map(|&c| values[c]));
            match model.predict(&input) {
                Ok(_) => failed.push(false),
                Err(source @ ArtifactError::NonFiniteOutput { .. }) => {
                    keep[row] = false;
                    failed.push(true);
                    first.get_or_insert((row, source));
                }
                Err(source) => return Err(EvalError::Predict { row, source }),
            }
        }
        if failed.len() > 1 && failed[0] && !failed[1..].iter().any(|f| *f) {
            candidate_only += 1;
        }
    }
    let Some((row, source)) = first else {
        return Ok((None, 0, 0));
    };
    let unusable = keep.iter().filter(|k| !**k).count();
    if unusable as f64 > MAX_UNUSABLE_FRACTION * holdout.len() as f64 {
        return Err(EvalError::TooManyUnusable {
            unusable,
            rows: holdout.len(),
            row,
            source,
        });
    }
    let (mut rows, mut labels, mut timestamps) = (Vec::new(), Vec::new(), Vec::new());
    for (((values, &label), &t), &kept) in holdout
        .rows()
        .zip(holdout.labels())
        .zip(holdout.timestamps())
        .zip(&keep)
    {
        if kept {
            rows.push(values.to_vec());
            labels.push(label);
            timestamps.push(t);
        }
    }
    let usable = TrainingData::new(
        holdout.features().to_vec(),
        holdout.label().clone(),
        rows,
        labels,
        timestamps,
    )
    .map_err(|e| EvalError::Holdout(e.to_string()))?;
    Ok((Some(usable), unusable, candidate_only))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undefined_metrics_are_none() {
        let m = binary_metrics(&[1.0, 1.0], &[0.2, 0.9]).expect("valid");
        assert_eq!(m.auc, None);
        assert_eq!(m.accuracy, Some(0.5));
        let m = binary_metrics(&[0.0, 0.0], &[0.2, 0.1]).expect("valid");
        assert_eq!(m.f1, None);
        assert!(matches!(binary_metrics(&[], &[]), Err(EvalError::Empty)));
        assert!(binary_metrics(&[2.0], &[0.5]).is_err());
        assert!(binary_metrics(&[1.0], &[f64::NAN]).is_err());
        assert!(matches!(
            compare(&m, &m, Metric::Auc),
            Err(EvalError::Undefined { .. })
        ));
    }

    #[test]
    fn improvement_follows_the_direction() {
        let with = |rmse| Metrics {
            kind: LabelKind::Continuous,
            rows: 1,
            positives: None,
            accuracy: None,
            auc: None,
            log_loss: None,
            f1: None,
            rmse: Some(rmse),
            mae: None,
        };
        let c = compare(&with(0.9), &with(1.0), Metric::Rmse).expect("defined");
        assert!((c.improvement - 0.1).abs() < 1e-12 && c.relative);
        let c = compare(&with(0.5), &with(0.0), Metric::Rmse).expect("defined");
        assert_eq!((c.improvement, c.relative), (-0.5, false));
        assert_eq!("log_loss".parse::<Metric>().ok(), Some(Metric::LogLoss));
    }
}
