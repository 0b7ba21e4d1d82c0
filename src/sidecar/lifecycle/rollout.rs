//! Guarded rollout of an approved candidate: it serves a growing share of traffic in steps
//! (a canary split pushed through the control plane) while the merged reports are watched.
//!
//! At every check, over the reports since the rollout started:
//! * **guardrails**: the candidate's error rate may exceed production's by at most
//!   `max_error_rate_increase` (absolute points): the rollout rolls back when the increase is
//!   above it beyond doubt, that is when the lower end of an always-valid confidence sequence
//!   of the increase (level `alpha`, [`error_increase_lower_bound`]) passes it, so that the
//!   repeated checks of one rollout do not add up to false rollbacks (in simulated rollouts
//!   of a candidate exactly as good as production, a point comparison rolled back 6% of
//!   them at the default settings and a third with `min_requests = 100`; the sequence
//!   none). An increase above the tolerance that is not yet beyond doubt holds the
//!   rollout (no next step, no promotion) until more calls settle it. Its latency p99 may
//!   be at most
//!   `max_latency_p99_ratio` times production's (or `min_latency_increase_ms` more, whichever
//!   is larger); a breach rolls back at once. When the variants report online outcomes, the
//!   latency p99 is judged by the A/B policy below with always-valid bounds
//!   ([`Guardrail::latency_p99`]: the share of the candidate's calls above the tolerated p99,
//!   from the latency histograms), so that checking every few minutes does not inflate false
//!   rollbacks; without outcomes, by the point estimates;
//! * **SRM**: within the current step, the observed split is tested against the configured
//!   one (chi-square, p < `srm_alpha`); a mismatch holds the rollout (no decision, no next
//!   step) and alerts, because the numbers cannot be trusted;
//! * **the A/B decision**: the `stats` winner policy on the online primary metric (binary
//!   outcomes, else continuous outcomes) with always-valid statistics, over the current
//!   step's observations (the split is fixed within a step; pooling steps with different
//!   splits while the metric moves with time would favour whichever variant had more traffic
//!   in the better period) at level `alpha` divided by the number of steps: `winner`
//!   promotes at once; a candidate worse beyond doubt (the always-valid interval of
//!   candidate − production below 0) or `stop_harm` rolls back; `inconclusive` at
//!   `max_duration_s` keeps production. If the test cannot be evaluated, the rollout holds.
//!
//! Otherwise, once a step has lasted `step_duration_s` and each variant has
//! `min_requests` calls in it, the next step starts; passing the last step (100%)
//! promotes. At `max_duration_s` production is kept, whatever holds the rollout (an SRM
//! included).

use serde::{Deserialize, Serialize};

use crate::metrics::VariantMetrics;
use crate::stats::sequential::proportion_difference_sequence;
use crate::stats::srm::srm_test;
use crate::stats::{
    Decision, Direction, Experiment, Guardrail, MetricKind, Policy, Sample, Variant,
};

/// The name of the rollout's always-valid latency guardrail.
const LATENCY_GUARDRAIL: &str = "latency_p99";

fn default_steps() -> Vec<f64> {
    vec![5.0, 25.0, 50.0, 100.0]
}
fn default_step_duration() -> u64 {
    600
}
fn default_min_requests() -> u64 {
    500
}
fn default_max_duration() -> u64 {
    7 * 24 * 3600
}
fn default_alpha() -> f64 {
    0.05
}
fn default_error_increase() -> f64 {
    0.02
}
fn default_latency_ratio() -> f64 {
    1.5
}
fn default_srm_alpha() -> f64 {
    0.001
}

/// How an approved candidate reaches traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RolloutStrategy {
    /// Steps of a growing share, watched (the default).
    #[default]
    Gradual,
    /// A fixed split (the first step's percent) until the A/B decision.
    Ab,
    /// A fixed small percent (the first step's) until the A/B decision: `ab` with a
    /// canary's share.
    Canary,
    /// All traffic at once.
    Immediate,
}

/// The `[lifecycle.rollout]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutConfig {
    /// Strategy.
    #[serde(default)]
    pub strategy: RolloutStrategy,
    /// Candidate percent of each step, increasing, the last one 100.
    #[serde(default = "default_steps")]
    pub steps: Vec<f64>,
    /// Shortest step, seconds.
    #[serde(default = "default_step_duration")]
    pub step_duration_s: u64,
    /// Calls each variant needs in a step before it can end (and before guardrails judge).
    #[serde(default = "default_min_requests")]
    pub min_requests: u64,
    /// Longest rollout before an inconclusive A/B test keeps production, seconds.
    #[serde(default = "default_max_duration")]
    pub max_duration_s: u64,
    /// Error rate of the A/B statistics over the whole rollout (each step tests at `alpha`
    /// divided by the number of steps).
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Superiority margin of the online primary metric (relative).
    #[serde(default)]
    pub margin: f64,
    /// Largest tolerated increase of the error rate (absolute, 0.02 = two points).
    #[serde(default = "default_error_increase")]
    pub max_error_rate_increase: f64,
    /// Largest tolerated ratio of latency p99s (candidate / production).
    #[serde(default = "default_latency_ratio")]
    pub max_latency_p99_ratio: f64,
    /// The latency guardrail also needs the p99 to grow by at least this many ms, so that
    /// microsecond noise in fast models never trips it.
    #[serde(default = "default_latency_floor")]
    pub min_latency_increase_ms: f64,
    /// SRM significance level.
    #[serde(default = "default_srm_alpha")]
    pub srm_alpha: f64,
}

fn default_latency_floor() -> f64 {
    1.0
}

impl Default for RolloutConfig {
    fn default() -> Self {
        RolloutConfig {
            strategy: RolloutStrategy::default(),
            steps: default_steps(),
            step_duration_s: default_step_duration(),
            min_requests: default_min_requests(),
            max_duration_s: default_max_duration(),
            alpha: default_alpha(),
            margin: 0.0,
            max_error_rate_increase: default_error_increase(),
            max_latency_p99_ratio: default_latency_ratio(),
            min_latency_increase_ms: default_latency_floor(),
            srm_alpha: default_srm_alpha(),
        }
    }
}

impl RolloutConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// A message naming the bad setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.steps.is_empty()
            || self.steps.iter().any(|p| !(*p > 0.0 && *p <= 100.0))
            || self.steps.windows(2).any(|w| w[0] >= w[1])
        {
            return Err("lifecycle.rollout.steps must increase within (0, 100]".into());
        }
        if self.strategy == RolloutStrategy::Gradual && self.steps.last() != Some(&100.0) {
            return Err("lifecycle.rollout.steps must end at 100 for a gradual rollout".into());
        }
        if self.strategy != RolloutStrategy::Immediate && self.steps[0] >= 100.0 {
            return Err(
                "lifecycle.rollout.steps must start below 100: the first step compares the candidate with production"
                    .into(),
            );
        }
        if !(self.alpha > 0.0 && self.alpha < 1.0 && self.srm_alpha > 0.0 && self.srm_alpha < 1.0) {
            return Err("lifecycle.rollout alpha and srm_alpha must be in (0, 1)".into());
        }
        if !(self.max_error_rate_increase >= 0.0
            && self.max_error_rate_increase.is_finite()
            && self.max_latency_p99_ratio >= 1.0
            && self.max_latency_p99_ratio.is_finite())
        {
            return Err(
                "lifecycle.rollout: max_error_rate_increase must be finite and ≥ 0, max_latency_p99_ratio finite and ≥ 1"
                    .into(),
            );
        }
        if !(self.margin.is_finite() && self.margin > -1.0) {
            return Err(format!(
                "lifecycle.rollout.margin must be a finite relative lift above -1, got {}",
                self.margin
            ));
        }
        if !(self.min_latency_increase_ms.is_finite() && self.min_latency_increase_ms >= 0.0) {
            return Err(format!(
                "lifecycle.rollout.min_latency_increase_ms must be finite and ≥ 0, got {}",
                self.min_latency_increase_ms
            ));
        }
        Ok(())
    }
}

/// A rollout in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutState {
    /// The run it belongs to.
    pub run_id: i64,
    /// The candidate version.
    pub version: u32,
    /// `model@version`.
    pub reference: String,
    /// The artifact location.
    pub artifact: String,
    /// Index of the current step.
    pub step: usize,
    /// When the current step started, Unix ms.
    pub step_started_ms: i64,
    /// When the rollout started, Unix ms.
    pub started_ms: i64,
    /// Whether an SRM alert was already sent for the current step.
    pub srm_alerted: bool,
}

/// What a check concluded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum RolloutAction {
    /// Keep going; nothing to do.
    Hold {
        /// Why.
        reason: String,
    },
    /// Start the next step.
    NextStep {
        /// Its percent.
        percent: f64,
    },
    /// The candidate becomes production.
    Promote {
        /// Why (winner, or all steps passed).
        reason: String,
    },
    /// Back to production only.
    Rollback {
        /// Which check failed.
        reason: String,
    },
    /// Production stays; the test could not decide in time.
    Inconclusive {
        /// Why.
        reason: String,
    },
    /// The observed split does not match the configured one: hold and alert.
    SampleRatioMismatch {
        /// The SRM p-value.
        p_value: f64,
    },
}

/// The numbers a check used (for the audit row and the dashboard).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutCheck {
    /// Candidate percent of the current step.
    pub percent: f64,
    /// Calls per variant in the current step (production, candidate).
    pub step_requests: (u64, u64),
    /// Error rates since the rollout started (production, candidate).
    pub error_rates: (f64, f64),
    /// Latency p99s in ms (production, candidate), when known.
    pub latency_p99_ms: (Option<f64>, Option<f64>),
    /// SRM p-value of the current step.
    pub srm_p_value: Option<f64>,
    /// The A/B decision, when the policy ran.
    pub decision: Option<Decision>,
    /// What to do.
    pub action: RolloutAction,
}

fn error_rate(m: &VariantMetrics) -> f64 {
    if m.requests == 0 {
        0.0
    } else {
        m.errors.total() as f64 / m.requests as f64
    }
}

fn primary_sample(m: &VariantMetrics) -> Option<(MetricKind, Sample)> {
    if m.binary.trials > 0 {
        Sample::binary(m.binary.trials, m.binary.successes)
            .ok()
            .map(|s| (MetricKind::Binary, s))
    } else if m.outcome.count > 1 {
        Sample::continuous(m.outcome.count, m.outcome.mean, m.outcome.variance()?)
            .ok()
            .map(|s| (MetricKind::Continuous, s))
    } else {
        None
    }
}

/// The lower end of the always-valid confidence sequence (level `alpha`) of the candidate's
/// error rate minus production's, over `production` and `candidate`; `None` while a variant
/// has no calls (or its counts are inconsistent).
///
/// The mixing scale τ is twice the tolerance, at least 5 points: the sequence is tightest
/// for increases of about that size, which are the ones a rollout must stop quickly. (Any
/// τ keeps the level; it only moves the power.)
#[must_use]
pub fn error_increase_lower_bound(
    config: &RolloutConfig,
    production: &VariantMetrics,
    candidate: &VariantMetrics,
) -> Option<f64> {
    let tau = (2.0 * config.max_error_rate_increase).max(0.05);
    proportion_difference_sequence(
        (production.requests, production.errors.total()),
        (candidate.requests, candidate.errors.total()),
        tau * tau,
        config.alpha,
    )
    .ok()
    .map(|interval| interval.lower)
}

/// Judges a rollout from the metrics of the current step and of the whole rollout.
#[must_use]
#[allow(clippy::too_many_arguments)]
pub fn check(
    config: &RolloutConfig,
    state: &RolloutState,
    now_ms: i64,
    step_production: &VariantMetrics,
    step_candidate: &VariantMetrics,
    production: &VariantMetrics,
    candidate: &VariantMetrics,
) -> RolloutCheck {
    let percent = config.steps.get(state.step).copied().unwrap_or(100.0);
    let min = config.min_requests;
    let error_rates = (error_rate(production), error_rate(candidate));
    let p99 = |m: &VariantMetrics| m.latency.quantile(0.99).map(|n| n / 1e6);
    let latency_p99_ms = (p99(production), p99(candidate));
    let step_requests = (step_production.requests, step_candidate.requests);
    let mut result = RolloutCheck {
        percent,
        step_requests,
        error_rates,
        latency_p99_ms,
        srm_p_value: None,
        decision: None,
        action: RolloutAction::Hold {
            reason: "waiting for traffic".into(),
        },
    };
    // The A/B policy can run when both variants have the same kind of online outcome; it
    // then judges latency with always-valid bounds, so the point check below is only for
    // rollouts without outcomes.
    let outcomes = match (primary_sample(production), primary_sample(candidate)) {
        (Some((kind, p)), Some((kind_c, c))) if kind == kind_c => Some((kind, p, c)),
        _ => None,
    };
    // Guardrails on everything since the rollout started. An increase of the error rate
    // above the tolerance that is not yet beyond doubt holds the rollout: no next step and no
    // promotion until more calls settle it either way.
    let mut error_rate_unsettled = None;
    if production.requests >= min && candidate.requests >= min {
        if !crate::sidecar::evaluate::at_least(
            config.max_error_rate_increase,
            error_rates.1 - error_rates.0,
        ) {
            error_rate_unsettled = Some(format!(
                "the candidate's error rate ({:.2}%) is above production's ({:.2}%) by more than the tolerance of +{:.2} points, not yet beyond doubt: waiting for more calls",
                100.0 * error_rates.1,
                100.0 * error_rates.0,
                100.0 * config.max_error_rate_increase
            ));
        }
        if let Some(lower) = error_increase_lower_bound(config, production, candidate)
            && !crate::sidecar::evaluate::at_least(config.max_error_rate_increase, lower)
        {
            result.action = RolloutAction::Rollback {
                reason: format!(
                    "guardrail error rate: candidate {:.2}% vs production {:.2}%, an increase above the tolerance of +{:.2} points beyond doubt (always-valid lower bound +{:.2} points)",
                    100.0 * error_rates.1,
                    100.0 * error_rates.0,
                    100.0 * config.max_error_rate_increase,
                    100.0 * lower
                ),
            };
            return result;
        }
        if outcomes.is_none()
            && let (Some(p), Some(c)) = latency_p99_ms
            && p > 0.0
            && c / p > config.max_latency_p99_ratio
            && c - p >= config.min_latency_increase_ms
        {
            result.action = RolloutAction::Rollback {
                reason: format!(
                    "guardrail latency p99: candidate {c:.3} ms vs production {p:.3} ms (tolerance ×{:.2} and +{:.3} ms)",
                    config.max_latency_p99_ratio, config.min_latency_increase_ms
                ),
            };
            return result;
        }
    }
    let elapsed_ms = (now_ms - state.started_ms).max(0);
    let out_of_time = elapsed_ms >= 1000 * config.max_duration_s as i64;
    // SRM within the step (the split is fixed there). It holds the rollout; at the maximum
    // duration production is kept, never promoted on numbers the SRM makes untrustworthy.
    if percent < 100.0 && step_requests.0 + step_requests.1 >= 2 * min {
        let weights = [1.0 - percent / 100.0, percent / 100.0];
        if let Ok(srm) = srm_test(&[step_requests.0, step_requests.1], &weights) {
            result.srm_p_value = Some(srm.p_value);
            if srm.p_value < config.srm_alpha {
                result.action = if out_of_time {
                    RolloutAction::Inconclusive {
                        reason: format!(
                            "the rollout reached its maximum duration with a sample ratio mismatch (p = {:.2e})",
                            srm.p_value
                        ),
                    }
                } else {
                    RolloutAction::SampleRatioMismatch {
                        p_value: srm.p_value,
                    }
                };
                return result;
            }
        }
    }
    // The A/B decision on the online primary metric, with the error rate as a guardrail,
    // from this step's observations alone: the split changes between steps while the metric
    // may move with time, and pooling the steps would credit the variant that had the larger
    // share in the better period (Simpson's paradox). Each step's test is always valid; α is
    // split between the steps (Bonferroni), so the chance of a false winner over the whole
    // rollout stays within α.
    let step_outcomes = match (
        primary_sample(step_production),
        primary_sample(step_candidate),
    ) {
        (Some((kind, p)), Some((kind_c, c))) if kind == kind_c && outcomes.is_some() => {
            Some((kind, p, c))
        }
        _ => None,
    };
    // Outcomes judge this rollout, but the step has none yet for a variant: no step passes
    // (nor the rollout) untested.
    if outcomes.is_some() && step_outcomes.is_none() && !out_of_time {
        result.action = RolloutAction::Hold {
            reason: "waiting for online outcomes of both variants in this step".into(),
        };
        return result;
    }
    if let Some((kind, p, c)) = step_outcomes {
        let policy = Policy {
            metric: kind,
            direction: Direction::HigherIsBetter,
            alpha: config.alpha / config.steps.len().max(1) as f64,
            margin: config.margin,
            min_sample: min,
            max_duration: Some(std::time::Duration::from_secs(config.max_duration_s)),
            // The error rate is checked above, in absolute points; the latency p99 also
            // here, with always-valid bounds (below).
            guardrails: vec![Guardrail::latency_p99(
                LATENCY_GUARDRAIL,
                config.max_latency_p99_ratio - 1.0,
            )],
            ..Policy::default()
        };
        // The split changes from step to step, so the policy is given the observed share of
        // the primary metric's observations (its own SRM test cannot fire); the SRM that
        // matters is tested above, within a step where the split is fixed.
        let n = |s: &Sample| match s {
            Sample::Binary { n, .. } | Sample::Continuous { n, .. } => (*n).max(1) as f64,
        };
        let share = n(&c) / (n(&p) + n(&c));
        let mut control = Variant::new("production", 1.0 - share, p);
        let mut challenger = Variant::new("candidate", share, c);
        // The share of each variant's calls above the tolerated p99: the larger of
        // `ratio ×` production's p99 and production's p99 plus the floor.
        if let Some(p99) = step_production.latency.quantile(0.99) {
            let threshold = (p99 * config.max_latency_p99_ratio)
                .max(p99 + 1e6 * config.min_latency_increase_ms);
            let above = |m: &VariantMetrics| {
                Sample::binary(m.latency.count(), m.latency.count_above(threshold)).ok()
            };
            if let (Some(a), Some(b)) = (above(step_production), above(step_candidate)) {
                control = control.with_guardrail(LATENCY_GUARDRAIL, a);
                challenger = challenger.with_guardrail(LATENCY_GUARDRAIL, b);
            }
        }
        let experiment = Experiment {
            variants: vec![control, challenger],
            control: 0,
            elapsed: std::time::Duration::from_millis(elapsed_ms as u64),
        };
        let evaluation = match policy.evaluate(&experiment) {
            Ok(evaluation) => evaluation,
            Err(e) => {
                // Never promote on time alone when the test could not be run.
                result.action = if out_of_time {
                    RolloutAction::Inconclusive {
                        reason: format!(
                            "the rollout reached its maximum duration; the A/B test could not be evaluated: {e}"
                        ),
                    }
                } else {
                    RolloutAction::Hold {
                        reason: format!("the A/B test cannot be evaluated: {e}"),
                    }
                };
                return result;
            }
        };
        {
            let decision = evaluation.decision.clone();
            result.decision = Some(decision.clone());
            // The candidate is worse on the primary metric beyond doubt (the always-valid
            // interval of candidate − production lies below 0): production wins, whatever
            // the policy's decision says (it only names winners that beat the control).
            if let Some(harm) = primary_harm(&decision, min) {
                result.action = RolloutAction::Rollback { reason: harm };
                return result;
            }
            match decision {
                Decision::Winner { variant, .. }
                    if variant == "candidate" && error_rate_unsettled.is_some() =>
                {
                    let reason = error_rate_unsettled.unwrap_or_default();
                    result.action = if out_of_time {
                        RolloutAction::Inconclusive {
                            reason: format!("the rollout reached its maximum duration: {reason}"),
                        }
                    } else {
                        RolloutAction::Hold { reason }
                    };
                    return result;
                }
                Decision::Winner { variant, evidence } if variant == "candidate" => {
                    let interval = evidence
                        .sequential_lift
                        .map(|i| {
                            format!(
                                ", always-valid CI [{:+.2}%, {:+.2}%]",
                                100.0 * i.lower,
                                100.0 * i.upper
                            )
                        })
                        .unwrap_or_default();
                    result.action = RolloutAction::Promote {
                        reason: format!(
                            "the A/B test declared the candidate the winner: {:.4} vs {:.4} ({} vs {} observations), lift {}{interval}, always-valid p = {}",
                            evidence.mean_candidate,
                            evidence.mean_control,
                            evidence.n_candidate,
                            evidence.n_control,
                            evidence
                                .lift
                                .map_or("n/a".into(), |l| format!("{:+.2}%", 100.0 * l)),
                            evidence
                                .sequential_p_value
                                .map_or("n/a".into(), |p| format!("{p:.2e}")),
                        ),
                    };
                    return result;
                }
                Decision::Winner { .. } => {
                    result.action = RolloutAction::Rollback {
                        reason: "the A/B test declared production the winner".into(),
                    };
                    return result;
                }
                Decision::StopHarm {
                    guardrail,
                    evidence,
                    ..
                } => {
                    let numbers = if guardrail == LATENCY_GUARDRAIL {
                        format!(
                            ": {:.2}% of its calls are slower than the tolerated p99 (production {:.2}%; more than 1% means its p99 is above it, always-valid lower bound {:.2}%)",
                            100.0 * evidence.mean_candidate,
                            100.0 * evidence.mean_control,
                            evidence
                                .sequential_difference
                                .map_or(f64::NAN, |d| 100.0 * (d.lower + 0.01)),
                        )
                    } else {
                        String::new()
                    };
                    result.action = RolloutAction::Rollback {
                        reason: format!(
                            "the A/B test stopped the candidate for harm on {guardrail}{numbers}"
                        ),
                    };
                    return result;
                }
                Decision::Inconclusive { reason, .. } => {
                    result.action = RolloutAction::Inconclusive {
                        reason: format!("the A/B test is inconclusive ({})", reason.as_str()),
                    };
                    return result;
                }
                Decision::Continue { .. } => {}
            }
        }
    }
    if out_of_time {
        result.action = RolloutAction::Inconclusive {
            reason: "the rollout reached its maximum duration".into(),
        };
        return result;
    }
    if let Some(reason) = error_rate_unsettled {
        result.action = RolloutAction::Hold { reason };
        return result;
    }
    // Next step when this one lasted long enough with enough traffic on both sides.
    let step_elapsed = now_ms - state.step_started_ms;
    let enough = step_requests.0 >= min && step_requests.1 >= min;
    if config.strategy == RolloutStrategy::Gradual
        && step_elapsed >= 1000 * config.step_duration_s as i64
        && enough
    {
        result.action = match config.steps.get(state.step + 1) {
            Some(&next) if next < 100.0 => RolloutAction::NextStep { percent: next },
            _ => RolloutAction::Promote {
                reason: "every rollout step passed its guardrails".into(),
            },
        };
        return result;
    }
    result.action = RolloutAction::Hold {
        reason: if enough {
            "the step has not lasted long enough".into()
        } else {
            format!("waiting for {min} calls per variant in this step")
        },
    };
    result
}

/// Why to roll back when `decision`'s evidence shows the candidate worse than production on
/// the primary metric: the always-valid interval of the difference lies entirely below 0,
/// with at least `min_sample` observations of each variant.
fn primary_harm(decision: &Decision, min_sample: u64) -> Option<String> {
    let evidence = match decision {
        Decision::Continue { evidence, .. }
        | Decision::Winner { evidence, .. }
        | Decision::Inconclusive { evidence, .. } => evidence,
        Decision::StopHarm { .. } => return None,
    };
    if evidence.n_control < min_sample || evidence.n_candidate < min_sample {
        return None;
    }
    let difference = evidence.sequential_difference?;
    (difference.upper < 0.0).then(|| {
        format!(
            "the A/B test shows the candidate worse on {}: {:.4} vs {:.4} ({} vs {} observations), always-valid CI of the difference [{:+.4}, {:+.4}], p = {}",
            evidence.metric,
            evidence.mean_candidate,
            evidence.mean_control,
            evidence.n_candidate,
            evidence.n_control,
            difference.lower,
            difference.upper,
            evidence
                .sequential_p_value
                .map_or("n/a".into(), |p| format!("{p:.2e}")),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(requests: u64, successes: u64, latency_ns: impl Fn(u64) -> u64) -> VariantMetrics {
        let mut m = VariantMetrics {
            requests,
            binary: crate::metrics::BinaryOutcome {
                successes,
                trials: requests,
            },
            ..VariantMetrics::default()
        };
        for i in 0..requests {
            m.latency.record(latency_ns(i));
        }
        m
    }

    fn state() -> RolloutState {
        RolloutState {
            run_id: 1,
            version: 2,
            reference: "m@2".into(),
            artifact: "m-2.json".into(),
            // The last step (100%): no split within it, so no SRM test.
            step: 3,
            step_started_ms: 0,
            started_ms: 0,
            srm_alerted: false,
        }
    }

    /// Checks with the default config, the step's metrics being the whole rollout's.
    fn judge(production: &VariantMetrics, candidate: &VariantMetrics) -> RolloutCheck {
        let config = RolloutConfig::default();
        check(
            &config,
            &state(),
            1000,
            production,
            candidate,
            production,
            candidate,
        )
    }

    /// Latencies spread over 1–3 ms, with 1% of calls at `tail` ms.
    fn spread(tail_ms: u64) -> impl Fn(u64) -> u64 {
        move |i| {
            if i % 100 == 99 {
                tail_ms * 1_000_000
            } else {
                1_000_000 + (i * 7_919 % 2_000) * 1_000
            }
        }
    }

    fn with_errors(mut m: VariantMetrics, errors: u64) -> VariantMetrics {
        m.errors.model = errors;
        m
    }

    /// A candidate clearly worse on the online metric (20% against 80% successes) is rolled
    /// back at once; the policy itself only names winners that beat production.
    #[test]
    fn a_candidate_worse_on_the_primary_metric_rolls_back() {
        let production = metrics(3_000, 2_400, spread(3));
        let candidate = metrics(3_000, 600, spread(3));
        let c = judge(&production, &candidate);
        let RolloutAction::Rollback { reason } = &c.action else {
            panic!("{:?}", c.action);
        };
        assert!(reason.contains("worse on"), "{reason}");
        assert!(
            matches!(c.decision, Some(Decision::Continue { .. })),
            "{c:?}"
        );
        // Equal outcomes: no rollback.
        let c = judge(&production, &metrics(3_000, 2_400, spread(3)));
        assert!(!matches!(c.action, RolloutAction::Rollback { .. }), "{c:?}");
    }

    /// Two steps with different splits, the variants equal within each, the metric higher
    /// in the later step where the candidate has more traffic: pooled, the candidate would
    /// look far better (Simpson's paradox). The test uses the step alone: no winner.
    #[test]
    fn pooling_steps_with_different_splits_does_not_make_a_winner() {
        let config = RolloutConfig {
            steps: vec![5.0, 50.0, 100.0],
            ..RolloutConfig::default()
        };
        let state = RolloutState {
            step: 1,
            step_started_ms: 500,
            ..state()
        };
        // Step 1 (5%): 50% success for both; step 2 (50%): 90% for both.
        let (step_p, step_c) = (
            metrics(3_000, 2_700, spread(3)),
            metrics(3_000, 2_700, spread(3)),
        );
        let all_p = metrics(8_700, 5_700 / 2 + 2_700, spread(3));
        let all_c = metrics(3_300, 150 + 2_700, spread(3));
        let c = check(&config, &state, 1000, &step_p, &step_c, &all_p, &all_c);
        assert!(
            !matches!(c.action, RolloutAction::Promote { .. }),
            "{:?}",
            c.action
        );
        assert!(
            matches!(c.decision, Some(Decision::Continue { .. })),
            "{c:?}"
        );
    }

    /// A sample ratio mismatch holds the rollout, but not past its maximum duration: then
    /// production is kept.
    #[test]
    fn a_sample_ratio_mismatch_does_not_hold_past_the_maximum_duration() {
        let config = RolloutConfig {
            max_duration_s: 90,
            ..RolloutConfig::default()
        };
        let state = RolloutState { step: 0, ..state() };
        // 5% configured, about 17% observed.
        let (p, c) = (
            metrics(20_000, 10_000, spread(3)),
            metrics(4_000, 2_000, spread(3)),
        );
        let early = check(&config, &state, 60_000, &p, &c, &p, &c);
        assert!(
            matches!(early.action, RolloutAction::SampleRatioMismatch { .. }),
            "{early:?}"
        );
        let late = check(&config, &state, 90_000, &p, &c, &p, &c);
        assert!(
            matches!(late.action, RolloutAction::Inconclusive { .. }),
            "{late:?}"
        );
        // A clearly better candidate on the mismatched numbers is not promoted either.
        let better = metrics(4_000, 3_600, spread(3));
        let late = check(&config, &state, 90_000, &p, &better, &p, &better);
        assert!(
            matches!(late.action, RolloutAction::Inconclusive { .. }),
            "{late:?}"
        );
    }

    /// A step without outcomes for a variant does not pass untested when outcomes judge the
    /// rollout; and a few observations do not roll back on the primary metric.
    #[test]
    fn steps_wait_for_outcomes_and_harm_needs_min_requests() {
        let config = RolloutConfig {
            steps: vec![50.0, 100.0],
            step_duration_s: 0,
            ..RolloutConfig::default()
        };
        let state = RolloutState { step: 0, ..state() };
        let (p, c) = (
            metrics(3_000, 1_500, spread(3)),
            metrics(3_000, 1_500, spread(3)),
        );
        let mut no_outcomes = metrics(3_000, 0, spread(3));
        no_outcomes.binary = Default::default();
        let held = check(&config, &state, 1000, &p, &no_outcomes, &p, &c);
        assert!(
            matches!(held.action, RolloutAction::Hold { .. }),
            "{held:?}"
        );
        let moved = check(&config, &state, 1000, &p, &c, &p, &c);
        assert!(
            matches!(moved.action, RolloutAction::Promote { .. }),
            "{moved:?}"
        );
        // 9 of 10 against 0 of 10: far apart, but below min_requests (500).
        let (few_p, few_c) = (metrics(10, 9, spread(3)), metrics(10, 0, spread(3)));
        let c = check(&config, &state, 1000, &few_p, &few_c, &few_p, &few_c);
        assert!(!matches!(c.action, RolloutAction::Rollback { .. }), "{c:?}");
    }

    fn is_error_rollback(c: &RolloutCheck) -> bool {
        matches!(&c.action, RolloutAction::Rollback { reason } if reason.contains("error rate"))
    }

    /// The error-rate guardrail needs the increase above the tolerance beyond doubt: 31.2%
    /// against 29% over 600 calls is 2.2 points, above the 2-point tolerance as a point
    /// estimate but well within noise; 35% against 29% over 20,000 calls each is beyond
    /// doubt.
    #[test]
    fn the_error_rate_guardrail_rolls_back_on_evidence_not_on_a_point_estimate() {
        let production = with_errors(metrics(5_700, 2_850, spread(3)), 1_653);
        let noisy = with_errors(metrics(600, 300, spread(3)), 187);
        let c = judge(&production, &noisy);
        // Not rolled back, and not promoted either (the last step would promote): held.
        let RolloutAction::Hold { reason } = &c.action else {
            panic!("{:?}", c.action);
        };
        assert!(reason.contains("not yet beyond doubt"), "{reason}");
        // Within the tolerance (2 points exactly: 0.31 − 0.29 computes as
        // 0.020000000000000018): no hold on the error rate.
        let within = with_errors(metrics(600, 300, spread(3)), 186);
        let c = judge(&production, &within);
        assert!(
            !matches!(&c.action, RolloutAction::Hold { reason } if reason.contains("error rate")),
            "{:?}",
            c.action
        );

        let production = with_errors(metrics(20_000, 10_000, spread(3)), 5_800);
        let candidate = with_errors(metrics(20_000, 10_000, spread(3)), 7_000);
        let c = judge(&production, &candidate);
        let RolloutAction::Rollback { reason } = &c.action else {
            panic!("{:?}", c.action);
        };
        assert!(reason.contains("35.00% vs production 29.00%"), "{reason}");
        assert!(reason.contains("beyond doubt"), "{reason}");
    }

    /// Error counts of 0 and of every call still give evidence (the plain plug-in variance
    /// of both is 0): a candidate failing every call, or one call in five against none,
    /// rolls back as soon as each variant has `min_requests` calls.
    #[test]
    fn a_candidate_failing_everything_rolls_back_at_min_requests() {
        let production = metrics(500, 250, spread(3));
        let failing = with_errors(metrics(500, 250, spread(3)), 500);
        assert!(is_error_rollback(&judge(&production, &failing)));
        let one_in_five = with_errors(metrics(500, 250, spread(3)), 100);
        assert!(is_error_rollback(&judge(&production, &one_in_five)));
        // Below min_requests nothing is judged.
        let few = with_errors(metrics(499, 250, spread(3)), 499);
        assert!(!is_error_rollback(&judge(
            &metrics(499, 250, spread(3)),
            &few
        )));
    }

    /// Rollouts of a candidate exactly as good as production (5% errors each), checked
    /// every 50 candidate calls from `min_requests` = 100 up to 5,000 while production gets
    /// three times the traffic: at most `alpha` (5%) of them may roll back on the error
    /// rate. A point comparison with the tolerance (the old rule) runs on the same data, to
    /// show that the simulation tells the two apart.
    #[test]
    fn equal_error_rates_rarely_roll_back_however_often_checked() {
        let config = RolloutConfig {
            min_requests: 100,
            ..RolloutConfig::default()
        };
        let (runs, looks, per_look) = (300u32, 100u64, 50u64);
        let mut state = 0x5eed_u64;
        let mut error = || {
            state = crate::hash::mix64(state.wrapping_add(0x9e37_79b9_7f4a_7c15));
            crate::hash::to_unit(state) < 0.05
        };
        let (mut sequential_rollbacks, mut point_rollbacks) = (0u32, 0u32);
        for _ in 0..runs {
            let mut production = VariantMetrics::default();
            let mut candidate = VariantMetrics::default();
            let (mut sequential, mut point) = (false, false);
            for _ in 0..looks {
                for _ in 0..per_look {
                    candidate.requests += 1;
                    candidate.errors.model += u64::from(error());
                    for _ in 0..3 {
                        production.requests += 1;
                        production.errors.model += u64::from(error());
                    }
                }
                if candidate.requests < config.min_requests {
                    continue;
                }
                let lower = error_increase_lower_bound(&config, &production, &candidate)
                    .expect("both variants have calls");
                sequential |= lower > config.max_error_rate_increase;
                point |= error_rate(&candidate) - error_rate(&production)
                    > config.max_error_rate_increase;
            }
            sequential_rollbacks += u32::from(sequential);
            point_rollbacks += u32::from(point);
        }
        let rate = |k: u32| f64::from(k) / f64::from(runs);
        assert!(
            rate(sequential_rollbacks) <= config.alpha,
            "{sequential_rollbacks} of {runs} rollouts rolled back"
        );
        assert!(
            rate(point_rollbacks) > 2.0 * config.alpha,
            "the point rule rolled back {point_rollbacks} of {runs}"
        );
        println!(
            "false error-rate rollbacks: always-valid {sequential_rollbacks}/{runs}, point estimate {point_rollbacks}/{runs}"
        );
    }

    #[test]
    fn a_slow_tail_rolls_back_on_always_valid_evidence() {
        let production = metrics(20_000, 2_000, spread(3));
        // 3% of the candidate's calls take 10 ms: its p99 is far above 1.5 × production's.
        let candidate = metrics(20_000, 2_000, |i| {
            if i % 100 >= 97 {
                10_000_000
            } else {
                spread(3)(i)
            }
        });
        let c = judge(&production, &candidate);
        let RolloutAction::Rollback { reason } = &c.action else {
            panic!("{:?}", c.action);
        };
        assert!(reason.contains("latency_p99"), "{reason}");
        assert!(reason.contains("3.00% of its calls"), "{reason}");
        assert!(matches!(c.decision, Some(Decision::StopHarm { .. })));

        // The same tail shape as production: no rollback for latency.
        let same = metrics(20_000, 2_000, spread(3));
        let c = judge(&production, &same);
        assert!(
            !matches!(&c.action, RolloutAction::Rollback { .. }),
            "{:?}",
            c.action
        );
    }

    #[test]
    fn without_outcomes_the_point_estimates_judge_latency() {
        let mut production = metrics(2_000, 0, spread(3));
        // 2% of the candidate's calls take 30 ms: its p99 is 30 ms.
        let mut candidate = metrics(2_000, 0, |i| {
            if i % 50 == 49 {
                30_000_000
            } else {
                spread(3)(i)
            }
        });
        production.binary = crate::metrics::BinaryOutcome::default();
        candidate.binary = crate::metrics::BinaryOutcome::default();
        let c = judge(&production, &candidate);
        let RolloutAction::Rollback { reason } = &c.action else {
            panic!("{:?}", c.action);
        };
        assert!(reason.starts_with("guardrail latency p99"), "{reason}");
    }
}
