//! The winner policy: when has a candidate won, harmed users, or run out of time?
//!
//! Decisions rest on the always-valid statistics of [`super::sequential`], so the sidecar
//! may evaluate an experiment as often as it likes without inflating false positives. The
//! rules, per candidate against the control:
//!
//! 1. A guardrail whose always-valid bound of the relative change shows a regression beyond
//!    its tolerance → [`Decision::StopHarm`] (checked first: stopping is the safe action).
//! 2. Sample ratio mismatch (p < 0.001) → never a winner: [`Decision::Continue`], or
//!    [`Decision::Inconclusive`] at the maximum duration, with reason
//!    [`Reason::SampleRatioMismatch`].
//! 3. A variant without observations → [`Decision::Continue`] with [`Reason::NoData`]
//!    (checked before SRM: its lift, difference and probability are `None`, never numbers
//!    from no data). Fewer than `min_sample` observations in either variant, or no
//!    variance yet → [`Decision::Continue`] (never an error: a ramp with no traffic holds).
//! 4. The always-valid lower bound of the relative lift above the margin (upper bound below
//!    −margin when lower is better) → [`Decision::Winner`]; one-sided, at level α divided by
//!    the number of candidates (Bonferroni). The relative lift is
//!    `(candidate − control) / |control|`, so it points the same way as the difference
//!    whatever the sign of the control mean (a candidate at −12 against a control at −10
//!    is 20% lower, never 20% higher).
//! 5. Otherwise [`Decision::Continue`], or [`Decision::Inconclusive`] once `max_duration`
//!    has passed.
//!
//! Cost: O(variants × (1 + guardrails)) special-function evaluations, about a microsecond
//! per comparison.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::sequential::{self, Running, SequentialResult};
use super::srm::srm_test;
use super::{Interval, MetricKind, Sample, StatsError, bayes, check_probability, fixed};

/// Which way is better for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Larger values are better (conversion, revenue, accuracy).
    #[default]
    HigherIsBetter,
    /// Smaller values are better (error rate, latency).
    LowerIsBetter,
}

/// A metric that must not get worse by more than a tolerance.
///
/// Two kinds:
///
/// * **Mean** (`quantile: None`, error rate, revenue): the always-valid bounds of the
///   relative change of the means decide; harm when the whole interval is worse than
///   `max_regression`.
/// * **Quantile** (`quantile: Some(q)`, lower is better, latency p99 with `q = 0.99`): the candidate's
///   q-quantile may be at most `(1 + max_regression)` times the control's. Each variant's
///   sample for this metric is then a *binary* count: its observations above
///   [`Guardrail::quantile_threshold`] of the control's q-quantile (see
///   [`Guardrail::latency_p99`]). The candidate's q-quantile is above the threshold exactly
///   when more than `1 − q` of its observations are, so the candidate harms when the
///   always-valid lower bound of that share (a one-sample confidence sequence, τ² =
///   (1 − q)²) exceeds `1 − q`. The threshold is a plug-in from the control's data, which is
///   sound when the control has many more observations than `1 / (1 − q)`; the test waits
///   until the candidate has at least `10 / (1 − q)` observations (1,000 for p99), so that
///   the normal approximation of the share holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Guardrail {
    /// The metric's name (matched against [`Variant::guardrails`]).
    pub metric: String,
    /// Which way is better.
    pub direction: Direction,
    /// Worst allowed relative regression (0.1: at most 10% worse). Also sets the guardrail's
    /// mixing variance, `τ² = (max_regression · |control mean|)²` (the MDE when 0).
    pub max_regression: f64,
    /// For a quantile guardrail, the quantile in (0, 1) (see above); `None` for a mean.
    #[serde(default)]
    pub quantile: Option<f64>,
}

impl Guardrail {
    /// A guardrail on a mean (error rate, revenue).
    pub fn mean(metric: impl Into<String>, direction: Direction, max_regression: f64) -> Self {
        Guardrail {
            metric: metric.into(),
            direction,
            max_regression,
            quantile: None,
        }
    }

    /// A guardrail on the 99th percentile of a lower-is-better metric (latency): the
    /// candidate's p99 may be at most `(1 + max_regression)` times the control's.
    pub fn latency_p99(metric: impl Into<String>, max_regression: f64) -> Self {
        Guardrail {
            metric: metric.into(),
            direction: Direction::LowerIsBetter,
            max_regression,
            quantile: Some(0.99),
        }
    }

    /// For a quantile guardrail: the value above which each variant's observations are
    /// counted, `(1 + max_regression) ×` the control's q-quantile. `None` for a mean
    /// guardrail.
    #[must_use]
    pub fn quantile_threshold(&self, control_quantile: f64) -> Option<f64> {
        self.quantile?;
        Some(control_quantile * (1.0 + self.max_regression))
    }
}

/// The per-experiment policy. `Policy::default()` is a binary, higher-is-better metric at
/// α = 0.05, margin 0, 100 observations per variant, a 5% MDE, no duration limit and no
/// guardrails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// Kind of the primary metric.
    pub metric: MetricKind,
    /// Which way is better for the primary metric.
    pub direction: Direction,
    /// Error rate of the always-valid statistics (default 0.05).
    pub alpha: f64,
    /// Superiority margin on the relative lift (default 0; the lifecycle uses 0.05).
    pub margin: f64,
    /// Observations each variant needs before anything is decided (default 100).
    pub min_sample: u64,
    /// Relative minimum detectable effect (default 0.05). Sets the mixing variance
    /// `τ² = (MDE · |control mean|)²` (with the control's standard deviation in place of the
    /// mean when the mean is 0) unless `mixing_variance` is set.
    pub minimum_detectable_effect: f64,
    /// τ² in absolute units of the primary metric, overriding the MDE-derived value (use it
    /// for strict validity: the derived value uses the control mean estimated at the look,
    /// which [`Monitor`] freezes at its first look).
    pub mixing_variance: Option<f64>,
    /// After this long without a winner the decision is [`Decision::Inconclusive`].
    pub max_duration: Option<Duration>,
    /// Guardrail metrics.
    pub guardrails: Vec<Guardrail>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            metric: MetricKind::Binary,
            direction: Direction::HigherIsBetter,
            alpha: 0.05,
            margin: 0.0,
            min_sample: 100,
            minimum_detectable_effect: 0.05,
            mixing_variance: None,
            max_duration: None,
            guardrails: Vec::new(),
        }
    }
}

/// One variant's aggregates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    /// Its name.
    pub name: String,
    /// Its configured traffic weight (relative).
    pub weight: f64,
    /// The primary metric.
    pub primary: Sample,
    /// Guardrail metrics by name.
    pub guardrails: Vec<(String, Sample)>,
}

impl Variant {
    /// A variant without guardrail data.
    pub fn new(name: impl Into<String>, weight: f64, primary: Sample) -> Variant {
        Variant {
            name: name.into(),
            weight,
            primary,
            guardrails: Vec::new(),
        }
    }

    /// Adds a guardrail metric's aggregate.
    #[must_use]
    pub fn with_guardrail(mut self, metric: impl Into<String>, sample: Sample) -> Variant {
        self.guardrails.push((metric.into(), sample));
        self
    }

    fn guardrail(&self, metric: &str) -> Option<&Sample> {
        self.guardrails
            .iter()
            .find(|(name, _)| name == metric)
            .map(|(_, s)| s)
    }
}

/// An experiment's state at one look.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    /// The variants (at least two).
    pub variants: Vec<Variant>,
    /// Index of the control in `variants`.
    pub control: usize,
    /// Time since the experiment started.
    pub elapsed: Duration,
}

/// Why nothing was decided yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// A variant has no observations at all: its lift, difference and probability are
    /// undefined (`None`), whatever `min_sample` is.
    NoData,
    /// A variant has fewer than `min_sample` observations.
    NotEnoughData,
    /// The statistics are undefined (no variance, zero control mean).
    NoVarianceYet,
    /// Sample ratio mismatch: the comparison cannot be trusted.
    SampleRatioMismatch,
    /// The bound does not clear the margin yet.
    NotYetSignificant,
    /// The maximum duration passed without a winner.
    MaxDuration,
}

impl Reason {
    /// The snake_case name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoData => "no_data",
            Reason::NotEnoughData => "not_enough_data",
            Reason::NoVarianceYet => "no_variance_yet",
            Reason::SampleRatioMismatch => "sample_ratio_mismatch",
            Reason::NotYetSignificant => "not_yet_significant",
            Reason::MaxDuration => "max_duration",
        }
    }
}

/// The numbers behind a decision, for one metric of one candidate against the control.
/// Statistics that are undefined on the data are `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The metric (`"primary"` or a guardrail's name).
    pub metric: String,
    /// The candidate.
    pub variant: String,
    /// The control.
    pub control: String,
    /// Control observations.
    pub n_control: u64,
    /// Candidate observations.
    pub n_candidate: u64,
    /// Control mean.
    pub mean_control: f64,
    /// Candidate mean.
    pub mean_candidate: f64,
    /// Relative lift `(candidate − control) / |control|` (`None` when a variant has no
    /// observations or the control mean is 0) (`candidate / control − 1` when
    /// the control mean is positive; with a negative control mean it keeps the sign of the
    /// difference, so a lower candidate has a negative lift).
    pub lift: Option<f64>,
    /// Fixed-horizon (1 − α) delta-method interval of the relative lift.
    pub lift_ci: Option<Interval>,
    /// Absolute difference `candidate − control` (`None` when a variant has no
    /// observations).
    pub absolute_lift: Option<f64>,
    /// Fixed-horizon (1 − α) interval of the difference.
    pub absolute_ci: Option<Interval>,
    /// Fixed-horizon two-sided p-value (z-test or Welch).
    pub p_value: Option<f64>,
    /// Always-valid p-value (running minimum under a [`Monitor`]).
    pub sequential_p_value: Option<f64>,
    /// Always-valid confidence sequence of the difference.
    pub sequential_difference: Option<Interval>,
    /// Always-valid bounds of the relative lift (what decisions use).
    pub sequential_lift: Option<Interval>,
    /// The mixing variance τ² used.
    pub tau2: Option<f64>,
    /// Posterior P(candidate > control) (normal approximation, see [`super::bayes`];
    /// `None` when a variant has no observations).
    pub probability_better: Option<f64>,
    /// The experiment's SRM p-value.
    pub srm_p_value: f64,
    /// The α the sequential statistics used (α / candidates).
    pub alpha: f64,
}

/// What to do with a candidate (or, in [`Evaluation::decision`], with the experiment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Keep collecting data.
    Continue {
        /// Why.
        reason: Reason,
        /// The primary metric's numbers.
        evidence: Box<Evidence>,
    },
    /// The variant beats the control by more than the margin.
    Winner {
        /// The winner.
        variant: String,
        /// The primary metric's numbers.
        evidence: Box<Evidence>,
    },
    /// The variant harms a guardrail beyond its tolerance: stop it.
    StopHarm {
        /// The harmful variant.
        variant: String,
        /// The guardrail metric.
        guardrail: String,
        /// The guardrail's numbers.
        evidence: Box<Evidence>,
    },
    /// Stop without a winner.
    Inconclusive {
        /// Why.
        reason: Reason,
        /// The primary metric's numbers.
        evidence: Box<Evidence>,
    },
}

impl Decision {
    /// `"continue"`, `"winner"`, `"stop_harm"` or `"inconclusive"`.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Decision::Continue { .. } => "continue",
            Decision::Winner { .. } => "winner",
            Decision::StopHarm { .. } => "stop_harm",
            Decision::Inconclusive { .. } => "inconclusive",
        }
    }

    /// The numbers behind the decision.
    #[must_use]
    pub fn evidence(&self) -> &Evidence {
        match self {
            Decision::Continue { evidence, .. }
            | Decision::Winner { evidence, .. }
            | Decision::StopHarm { evidence, .. }
            | Decision::Inconclusive { evidence, .. } => evidence,
        }
    }
}

/// One candidate against the control.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The candidate.
    pub variant: String,
    /// Its primary metric's numbers.
    pub primary: Evidence,
    /// What to do with it.
    pub decision: Decision,
}

/// The result of evaluating an experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// SRM p-value over all variants.
    pub srm_p_value: f64,
    /// Whether SRM is flagged (p < 0.001).
    pub srm_flagged: bool,
    /// One per candidate, in variant order.
    pub comparisons: Vec<Comparison>,
    /// The experiment's decision: a harmful candidate first, then the best winner, then
    /// `Inconclusive` when every candidate is, else `Continue`.
    pub decision: Decision,
}

/// Running statistics per (candidate, metric), with τ² frozen at the first look.
type RunningMap = BTreeMap<(String, String), (f64, Running)>;

impl Policy {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), StatsError> {
        check_probability("alpha", self.alpha)?;
        if !(self.margin.is_finite() && self.margin > -1.0) {
            return Err(StatsError::InvalidPolicy(format!(
                "margin must be finite and above -1, got {}",
                self.margin
            )));
        }
        if !(self.minimum_detectable_effect.is_finite() && self.minimum_detectable_effect > 0.0) {
            return Err(StatsError::InvalidPolicy(format!(
                "minimum_detectable_effect must be positive, got {}",
                self.minimum_detectable_effect
            )));
        }
        if let Some(t) = self.mixing_variance
            && !(t.is_finite() && t > 0.0)
        {
            return Err(StatsError::InvalidPolicy(format!(
                "mixing_variance must be positive, got {t}"
            )));
        }
        if let Some(g) = self
            .guardrails
            .iter()
            .find(|g| !(g.max_regression.is_finite() && g.max_regression >= 0.0))
        {
            return Err(StatsError::InvalidPolicy(format!(
                "guardrail {}: max_regression must be finite and >= 0, got {}",
                g.metric, g.max_regression
            )));
        }
        if let Some((g, q)) = self
            .guardrails
            .iter()
            .filter_map(|g| g.quantile.map(|q| (g, q)))
            .find(|(_, q)| !(*q > 0.0 && *q < 1.0))
        {
            return Err(StatsError::InvalidPolicy(format!(
                "guardrail {}: quantile must be in (0, 1), got {q}",
                g.metric
            )));
        }
        if let Some(g) = self
            .guardrails
            .iter()
            .find(|g| g.quantile.is_some() && g.direction != Direction::LowerIsBetter)
        {
            return Err(StatsError::InvalidPolicy(format!(
                "guardrail {}: a quantile guardrail is for a lower-is-better metric (latency)",
                g.metric
            )));
        }
        Ok(())
    }

    /// τ² for a relative effect size on the scale of `control`:
    /// `(effect · |mean|)²`, or `(effect · sd)²` when the mean is 0; `None` when that is 0.
    #[must_use]
    pub fn mixing_variance_for(control: &Sample, relative_effect: f64) -> Option<f64> {
        let mean = control.mean().abs();
        let scale = if mean > 0.0 {
            mean
        } else {
            control.variance().sqrt()
        };
        let tau2 = (relative_effect * scale).powi(2);
        (tau2.is_finite() && tau2 > 0.0).then_some(tau2)
    }

    /// Evaluates one look at an experiment, statelessly (each look's always-valid
    /// statistics are valid on their own; use a [`Monitor`] for the running minimum of the
    /// p-value and the running intersection of the bounds).
    pub fn evaluate(&self, experiment: &Experiment) -> Result<Evaluation, StatsError> {
        self.evaluate_with(experiment, None)
    }

    fn evaluate_with(
        &self,
        experiment: &Experiment,
        mut running: Option<&mut RunningMap>,
    ) -> Result<Evaluation, StatsError> {
        self.validate()?;
        let variants = &experiment.variants;
        if variants.len() < 2 {
            return Err(StatsError::InvalidExperiment(
                "need a control and at least one candidate".into(),
            ));
        }
        let control = variants.get(experiment.control).ok_or_else(|| {
            StatsError::InvalidExperiment(format!(
                "control index {} out of range ({} variants)",
                experiment.control,
                variants.len()
            ))
        })?;
        for v in variants {
            v.primary.validate()?;
            if v.primary.kind() != self.metric {
                return Err(StatsError::InvalidExperiment(format!(
                    "variant {}: the policy's primary metric is {} but the sample is {}",
                    v.name,
                    self.metric.as_str(),
                    v.primary.kind().as_str()
                )));
            }
            for (_, g) in &v.guardrails {
                g.validate()?;
            }
        }
        let counts: Vec<u64> = variants.iter().map(|v| v.primary.n()).collect();
        let weights: Vec<f64> = variants.iter().map(|v| v.weight).collect();
        let srm = srm_test(&counts, &weights)?;
        let alpha = self.alpha / (variants.len() - 1) as f64;
        let timed_out = self
            .max_duration
            .is_some_and(|max| experiment.elapsed >= max);

        let mut comparisons = Vec::with_capacity(variants.len() - 1);
        for (index, candidate) in variants.iter().enumerate() {
            if index == experiment.control {
                continue;
            }
            let tau2 = self.mixing_variance.or_else(|| {
                Self::mixing_variance_for(&control.primary, self.minimum_detectable_effect)
            });
            let primary = self.evidence(
                "primary",
                control,
                candidate,
                (&control.primary, &candidate.primary),
                tau2,
                alpha,
                srm.p_value,
                running.as_deref_mut(),
            );
            let decision = self.decide(
                control,
                candidate,
                &primary,
                alpha,
                srm.flagged,
                timed_out,
                running.as_deref_mut(),
            );
            comparisons.push(Comparison {
                variant: candidate.name.clone(),
                primary,
                decision,
            });
        }
        let decision = self.overall(&comparisons);
        Ok(Evaluation {
            srm_p_value: srm.p_value,
            srm_flagged: srm.flagged,
            comparisons,
            decision,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn evidence(
        &self,
        metric: &str,
        control: &Variant,
        candidate: &Variant,
        (a, b): (&Sample, &Sample),
        tau2: Option<f64>,
        alpha: f64,
        srm_p_value: f64,
        running: Option<&mut RunningMap>,
    ) -> Evidence {
        let lift = fixed::lift(a, b, self.alpha).ok();
        let mut sequential_result: Option<SequentialResult> = None;
        let key = (candidate.name.clone(), metric.to_owned());
        let frozen = running
            .as_ref()
            .and_then(|map| map.get(&key))
            .map(|(t, _)| *t);
        if let Some(tau2) = frozen.or(tau2)
            && let Ok(look) = sequential::sequential(a, b, tau2, alpha)
        {
            sequential_result = Some(match running {
                Some(map) => {
                    let entry = map.entry(key).or_insert((tau2, Running::default()));
                    entry.1.update(&look)
                }
                None => look,
            });
        }
        // No statistic of an empty variant: its mean is not data.
        let observed = a.n() > 0 && b.n() > 0;
        let absolute = observed.then(|| b.mean() - a.mean());
        let relative =
            (observed && a.mean() != 0.0).then(|| fixed::relative_lift(a.mean(), b.mean()));
        Evidence {
            metric: metric.to_owned(),
            variant: candidate.name.clone(),
            control: control.name.clone(),
            n_control: a.n(),
            n_candidate: b.n(),
            mean_control: a.mean(),
            mean_candidate: b.mean(),
            lift: relative,
            lift_ci: lift.map(|l| l.relative_ci),
            absolute_lift: absolute,
            absolute_ci: fixed::difference_interval(a, b, self.alpha).ok(),
            p_value: fixed::test(a, b).ok().map(|t| t.p_value),
            sequential_p_value: sequential_result.map(|s| s.p_value),
            sequential_difference: sequential_result.map(|s| s.difference),
            sequential_lift: sequential_result.map(|s| s.relative),
            tau2: sequential_result.map(|s| s.tau2),
            probability_better: bayes::probability_better(a, b).ok(),
            srm_p_value,
            alpha,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn decide(
        &self,
        control: &Variant,
        candidate: &Variant,
        primary: &Evidence,
        alpha: f64,
        srm_flagged: bool,
        timed_out: bool,
        mut running: Option<&mut RunningMap>,
    ) -> Decision {
        for guardrail in &self.guardrails {
            let (Some(a), Some(b)) = (
                control.guardrail(&guardrail.metric),
                candidate.guardrail(&guardrail.metric),
            ) else {
                continue;
            };
            if a.n() < self.min_sample || b.n() < self.min_sample || a.kind() != b.kind() {
                continue;
            }
            if let Some(q) = guardrail.quantile {
                if let Some(evidence) =
                    self.tail_evidence(guardrail, q, (control, candidate), (a, b), alpha, primary)
                    && evidence
                        .sequential_difference
                        .is_some_and(|d| d.lower > 0.0)
                {
                    return Decision::StopHarm {
                        variant: candidate.name.clone(),
                        guardrail: guardrail.metric.clone(),
                        evidence: Box::new(evidence),
                    };
                }
                continue;
            }
            let effect = if guardrail.max_regression > 0.0 {
                guardrail.max_regression
            } else {
                self.minimum_detectable_effect
            };
            let evidence = self.evidence(
                &guardrail.metric,
                control,
                candidate,
                (a, b),
                Self::mixing_variance_for(a, effect),
                alpha,
                primary.srm_p_value,
                running.as_deref_mut(),
            );
            let Some(bounds) = evidence.sequential_lift else {
                continue;
            };
            let harmed = match guardrail.direction {
                Direction::HigherIsBetter => bounds.upper < -guardrail.max_regression,
                Direction::LowerIsBetter => bounds.lower > guardrail.max_regression,
            };
            if harmed {
                return Decision::StopHarm {
                    variant: candidate.name.clone(),
                    guardrail: guardrail.metric.clone(),
                    evidence: Box::new(evidence),
                };
            }
        }
        let evidence = Box::new(primary.clone());
        let reason = if primary.n_control == 0 || primary.n_candidate == 0 {
            Reason::NoData
        } else if srm_flagged {
            Reason::SampleRatioMismatch
        } else if primary.n_control < self.min_sample || primary.n_candidate < self.min_sample {
            Reason::NotEnoughData
        } else {
            match primary.sequential_lift {
                None => Reason::NoVarianceYet,
                Some(bounds) => {
                    let wins = match self.direction {
                        Direction::HigherIsBetter => bounds.lower > self.margin,
                        Direction::LowerIsBetter => bounds.upper < -self.margin,
                    };
                    if wins {
                        return Decision::Winner {
                            variant: candidate.name.clone(),
                            evidence,
                        };
                    }
                    Reason::NotYetSignificant
                }
            }
        };
        if timed_out {
            Decision::Inconclusive {
                reason: if matches!(reason, Reason::SampleRatioMismatch | Reason::NoData) {
                    reason
                } else {
                    Reason::MaxDuration
                },
                evidence,
            }
        } else {
            Decision::Continue { reason, evidence }
        }
    }

    /// The evidence of a quantile guardrail (see [`Guardrail`]): the samples are the
    /// variants' shares beyond the threshold, compared with `1 − q`. `None` until the
    /// candidate has `10 / (1 − q)` observations or when the samples are not binary.
    fn tail_evidence(
        &self,
        guardrail: &Guardrail,
        q: f64,
        (control, candidate): (&Variant, &Variant),
        (a, b): (&Sample, &Sample),
        alpha: f64,
        primary: &Evidence,
    ) -> Option<Evidence> {
        let tail = 1.0 - q;
        if a.kind() != MetricKind::Binary || (b.n() as f64) * tail < 10.0 {
            return None;
        }
        let tau2 = tail * tail;
        let share = sequential::mean_sequence(b, tau2, alpha).ok()?;
        let excess = Interval {
            lower: share.lower - tail,
            upper: share.upper - tail,
        };
        Some(Evidence {
            metric: guardrail.metric.clone(),
            variant: candidate.name.clone(),
            control: control.name.clone(),
            n_control: a.n(),
            n_candidate: b.n(),
            mean_control: a.mean(),
            mean_candidate: b.mean(),
            lift: Some(b.mean() / tail - 1.0),
            lift_ci: None,
            absolute_lift: Some(b.mean() - tail),
            absolute_ci: None,
            p_value: None,
            sequential_p_value: None,
            sequential_difference: Some(excess),
            sequential_lift: Some(Interval {
                lower: share.lower / tail - 1.0,
                upper: share.upper / tail - 1.0,
            }),
            tau2: Some(tau2),
            probability_better: None,
            srm_p_value: primary.srm_p_value,
            alpha,
        })
    }

    fn overall(&self, comparisons: &[Comparison]) -> Decision {
        if let Some(c) = comparisons
            .iter()
            .find(|c| matches!(c.decision, Decision::StopHarm { .. }))
        {
            return c.decision.clone();
        }
        let score = |c: &Comparison| {
            let bounds = c.primary.sequential_lift.unwrap_or(Interval::UNBOUNDED);
            match self.direction {
                Direction::HigherIsBetter => bounds.lower,
                Direction::LowerIsBetter => -bounds.upper,
            }
        };
        let best = comparisons
            .iter()
            .filter(|c| matches!(c.decision, Decision::Winner { .. }))
            .max_by(|x, y| score(x).total_cmp(&score(y)));
        if let Some(c) = best {
            return c.decision.clone();
        }
        comparisons
            .iter()
            .find(|c| matches!(c.decision, Decision::Continue { .. }))
            .or_else(|| comparisons.first())
            .map(|c| c.decision.clone())
            .unwrap_or(Decision::Continue {
                reason: Reason::NotEnoughData,
                evidence: Box::new(Evidence {
                    metric: "primary".into(),
                    variant: String::new(),
                    control: String::new(),
                    n_control: 0,
                    n_candidate: 0,
                    mean_control: 0.0,
                    mean_candidate: 0.0,
                    lift: None,
                    lift_ci: None,
                    absolute_lift: None,
                    absolute_ci: None,
                    p_value: None,
                    sequential_p_value: None,
                    sequential_difference: None,
                    sequential_lift: None,
                    tau2: None,
                    probability_better: None,
                    srm_p_value: 1.0,
                    alpha: self.alpha,
                }),
            })
    }
}

/// A policy with memory across looks: keeps, per candidate and metric, τ² frozen at the
/// first look, the running minimum of the always-valid p-value (monotone non-increasing)
/// and the running intersection of the confidence sequences. Feed it every look, in order,
/// with cumulative aggregates. Memory: O(candidates × metrics).
#[derive(Debug, Clone)]
pub struct Monitor {
    policy: Policy,
    running: RunningMap,
}

impl Monitor {
    /// A monitor for `policy` (validated here).
    pub fn new(policy: Policy) -> Result<Monitor, StatsError> {
        policy.validate()?;
        Ok(Monitor {
            policy,
            running: RunningMap::new(),
        })
    }

    /// The policy.
    #[must_use]
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Evaluates the next look.
    pub fn observe(&mut self, experiment: &Experiment) -> Result<Evaluation, StatsError> {
        self.policy
            .evaluate_with(experiment, Some(&mut self.running))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn experiment(a: (u64, u64), b: (u64, u64)) -> Experiment {
        Experiment {
            variants: vec![
                Variant::new("control", 1.0, Sample::binary(a.0, a.1).unwrap()),
                Variant::new("candidate", 1.0, Sample::binary(b.0, b.1).unwrap()),
            ],
            control: 0,
            elapsed: Duration::from_secs(60),
        }
    }

    #[test]
    fn little_data_continues() {
        let e = Policy::default()
            .evaluate(&experiment((10, 1), (10, 9)))
            .unwrap();
        assert!(matches!(
            e.decision,
            Decision::Continue {
                reason: Reason::NotEnoughData,
                ..
            }
        ));
        let e = Policy::default()
            .evaluate(&experiment((0, 0), (0, 0)))
            .unwrap();
        assert_eq!(e.decision.as_str(), "continue");
    }

    #[test]
    fn clear_lift_wins_and_srm_blocks_it() {
        let e = Policy::default()
            .evaluate(&experiment((20_000, 2_000), (20_000, 2_600)))
            .unwrap();
        assert_eq!(e.decision.as_str(), "winner");
        let e = Policy::default()
            .evaluate(&experiment((20_000, 2_000), (25_000, 3_250)))
            .unwrap();
        assert!(e.srm_flagged);
        assert!(matches!(
            e.decision,
            Decision::Continue {
                reason: Reason::SampleRatioMismatch,
                ..
            }
        ));
    }

    #[test]
    fn margin_and_direction_and_duration() {
        let policy = Policy {
            margin: 0.5,
            max_duration: Some(Duration::from_secs(30)),
            ..Policy::default()
        };
        let e = policy
            .evaluate(&experiment((20_000, 2_000), (20_000, 2_600)))
            .unwrap();
        assert!(matches!(
            e.decision,
            Decision::Inconclusive {
                reason: Reason::MaxDuration,
                ..
            }
        ));
        let lower = Policy {
            direction: Direction::LowerIsBetter,
            ..Policy::default()
        };
        let e = lower
            .evaluate(&experiment((20_000, 2_600), (20_000, 2_000)))
            .unwrap();
        assert_eq!(e.decision.as_str(), "winner");
    }

    #[test]
    fn guardrail_harm_stops() {
        let policy = Policy {
            guardrails: vec![Guardrail::mean("error_rate", Direction::LowerIsBetter, 0.1)],
            ..Policy::default()
        };
        let mut e = experiment((20_000, 2_000), (20_000, 2_000));
        e.variants[0]
            .guardrails
            .push(("error_rate".into(), Sample::binary(20_000, 200).unwrap()));
        e.variants[1]
            .guardrails
            .push(("error_rate".into(), Sample::binary(20_000, 600).unwrap()));
        let ev = policy.evaluate(&e).unwrap();
        assert!(
            matches!(&ev.decision, Decision::StopHarm { guardrail, .. } if guardrail == "error_rate")
        );
    }

    #[test]
    fn a_p99_regression_stops_and_a_small_one_does_not() {
        let policy = Policy {
            guardrails: vec![Guardrail::latency_p99("latency", 0.2)],
            ..Policy::default()
        };
        assert_eq!(policy.guardrails[0].quantile_threshold(100.0), Some(120.0));
        let with_tail = |control_above: u64, candidate_above: u64, n: u64| {
            let mut e = experiment((n, n / 10), (n, n / 10));
            e.variants[0]
                .guardrails
                .push(("latency".into(), Sample::binary(n, control_above).unwrap()));
            e.variants[1].guardrails.push((
                "latency".into(),
                Sample::binary(n, candidate_above).unwrap(),
            ));
            policy.evaluate(&e).unwrap()
        };
        // 4% of the candidate's calls are slower than 1.2 × the control's p99: its p99 is
        // far above the tolerance.
        let ev = with_tail(20, 800, 20_000);
        let Decision::StopHarm {
            guardrail,
            evidence,
            ..
        } = &ev.decision
        else {
            panic!("{:?}", ev.decision);
        };
        assert_eq!(guardrail, "latency");
        assert!((evidence.mean_candidate - 0.04).abs() < 1e-12);
        assert!(evidence.sequential_difference.unwrap().lower > 0.0);
        // 0.9%: within the tolerance.
        assert_ne!(with_tail(20, 180, 20_000).decision.as_str(), "stop_harm");
        // 3%, but with too few calls for the share's normal approximation (n·1% < 10).
        assert_ne!(with_tail(0, 27, 900).decision.as_str(), "stop_harm");
        // Quantile guardrails are validated.
        let mut bad = policy.clone();
        bad.guardrails[0].quantile = Some(1.0);
        assert!(bad.validate().is_err());
        let mut bad = policy.clone();
        bad.guardrails[0].direction = Direction::HigherIsBetter;
        assert!(bad.validate().is_err());
    }

    #[test]
    fn monitor_p_value_never_increases() {
        let mut monitor = Monitor::new(Policy::default()).unwrap();
        let mut last = 1.0;
        for (i, s) in [(1000, 120), (2000, 210), (3000, 300), (4000, 410)] {
            let ev = monitor
                .observe(&experiment((i, 100 * i / 1000), (i, s)))
                .unwrap();
            let p = ev.comparisons[0].primary.sequential_p_value.unwrap();
            assert!(p <= last);
            last = p;
        }
    }

    fn continuous(control: f64, candidate: f64) -> Experiment {
        Experiment {
            variants: vec![
                Variant::new(
                    "control",
                    1.0,
                    Sample::continuous(10_000, control, 4.0).unwrap(),
                ),
                Variant::new(
                    "candidate",
                    1.0,
                    Sample::continuous(10_000, candidate, 4.0).unwrap(),
                ),
            ],
            control: 0,
            elapsed: Duration::from_secs(60),
        }
    }

    #[test]
    fn a_negative_control_mean_keeps_the_direction() {
        let higher = Policy {
            metric: MetricKind::Continuous,
            ..Policy::default()
        };
        let lower = Policy {
            direction: Direction::LowerIsBetter,
            ..higher.clone()
        };
        // -12 is worse than -10 when higher is better, better when lower is better.
        let e = higher.evaluate(&continuous(-10.0, -12.0)).unwrap();
        let evidence = &e.comparisons[0].primary;
        assert!((evidence.lift.unwrap() + 0.2).abs() < 1e-12, "{evidence:?}");
        assert!(
            evidence.sequential_lift.unwrap().upper < 0.0,
            "{evidence:?}"
        );
        assert!(evidence.lift_ci.unwrap().upper < 0.0, "{evidence:?}");
        assert_ne!(e.decision.as_str(), "winner");
        assert_eq!(
            lower
                .evaluate(&continuous(-10.0, -12.0))
                .unwrap()
                .decision
                .as_str(),
            "winner"
        );
        let e = higher.evaluate(&continuous(-10.0, -8.0)).unwrap();
        assert!((e.comparisons[0].primary.lift.unwrap() - 0.2).abs() < 1e-12);
        assert_eq!(e.decision.as_str(), "winner");
        assert_ne!(
            lower
                .evaluate(&continuous(-10.0, -8.0))
                .unwrap()
                .decision
                .as_str(),
            "winner"
        );
        // With a margin: -9.5 is 5% better than -10, not 10% better.
        let margin = |m: f64| Policy {
            margin: m,
            ..higher.clone()
        };
        let e = margin(0.02).evaluate(&continuous(-10.0, -9.5)).unwrap();
        assert_eq!(e.decision.as_str(), "winner");
        let e = margin(0.1).evaluate(&continuous(-10.0, -9.5)).unwrap();
        assert_ne!(e.decision.as_str(), "winner");
        // A guardrail on a negative, higher-is-better metric: -12 against -10 is a 20%
        // regression, beyond a 10% tolerance.
        let guarded = Policy {
            guardrails: vec![Guardrail::mean("profit", Direction::HigherIsBetter, 0.1)],
            ..Policy::default()
        };
        let mut e = experiment((20_000, 2_000), (20_000, 2_000));
        e.variants[0].guardrails.push((
            "profit".into(),
            Sample::continuous(10_000, -10.0, 4.0).unwrap(),
        ));
        e.variants[1].guardrails.push((
            "profit".into(),
            Sample::continuous(10_000, -12.0, 4.0).unwrap(),
        ));
        assert_eq!(guarded.evaluate(&e).unwrap().decision.as_str(), "stop_harm");
        e.variants[1].guardrails[0].1 = Sample::continuous(10_000, -8.0, 4.0).unwrap();
        assert_ne!(guarded.evaluate(&e).unwrap().decision.as_str(), "stop_harm");
    }

    #[test]
    fn an_empty_arm_has_no_statistics_and_no_decision() {
        // Even with min_sample 0, an arm without observations decides nothing.
        let policy = Policy {
            min_sample: 0,
            ..Policy::default()
        };
        let mut continuous_policy = policy.clone();
        continuous_policy.metric = MetricKind::Continuous;
        let empty_continuous = Sample::continuous(0, 20.0, 4.0).unwrap();
        let full_continuous = Sample::continuous(10_000, 10.0, 4.0).unwrap();
        for (p, empty, full) in [
            (
                &policy,
                Sample::binary(0, 0).unwrap(),
                Sample::binary(10_000, 1_000).unwrap(),
            ),
            (&continuous_policy, empty_continuous, full_continuous),
        ] {
            for (a, b) in [(full, empty), (empty, full)] {
                let e = Experiment {
                    variants: vec![
                        Variant::new("control", 1.0, a),
                        Variant::new("candidate", 1.0, b),
                    ],
                    control: 0,
                    elapsed: Duration::from_secs(60),
                };
                let ev = p.evaluate(&e).unwrap();
                let evidence = &ev.comparisons[0].primary;
                assert_eq!(evidence.lift, None, "{evidence:?}");
                assert_eq!(evidence.absolute_lift, None, "{evidence:?}");
                assert_eq!(evidence.probability_better, None, "{evidence:?}");
                assert_eq!(evidence.sequential_lift, None, "{evidence:?}");
                assert!(
                    matches!(
                        ev.decision,
                        Decision::Continue {
                            reason: Reason::NoData,
                            ..
                        }
                    ),
                    "{:?}",
                    ev.decision
                );
            }
        }
        // One value cannot have a sample variance.
        assert!(matches!(
            Sample::continuous(1, 20.0, 400.0),
            Err(StatsError::InvalidSample(_))
        ));
        assert!(Sample::continuous(1, 20.0, 0.0).is_ok());
    }

    #[test]
    fn bad_input_is_an_error() {
        let mut e = experiment((10, 1), (10, 1));
        e.control = 5;
        assert!(Policy::default().evaluate(&e).is_err());
        assert!(Sample::binary(1, 2).is_err());
        assert!(Sample::continuous(3, f64::NAN, 1.0).is_err());
    }
}
