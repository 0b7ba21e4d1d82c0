//! Per-variant aggregates and intervals.

use serde::{Deserialize, Serialize};

use super::StatsError;
use crate::metrics::{BinaryOutcome, Moments};

/// Which kind of metric a sample summarises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// Success or failure per observation (conversion, click, error).
    Binary,
    /// A real value per observation (revenue, latency, score).
    Continuous,
}

impl MetricKind {
    /// `"binary"` or `"continuous"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Binary => "binary",
            MetricKind::Continuous => "continuous",
        }
    }
}

/// The aggregate of one variant's observations of one metric. 16–24 bytes; every statistic
/// needs only these.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Sample {
    /// `successes` out of `n` trials.
    Binary {
        /// Trials.
        n: u64,
        /// Trials that succeeded (at most `n`).
        successes: u64,
    },
    /// `n` values with their mean and sample variance (divisor `n - 1`).
    Continuous {
        /// Number of values.
        n: u64,
        /// Their mean.
        mean: f64,
        /// Their sample variance (`ddof = 1`); must be 0 when `n = 1` (ignored when
        /// `n = 0`).
        variance: f64,
    },
}

impl Sample {
    /// A binary sample; an error when `successes > n`.
    pub fn binary(n: u64, successes: u64) -> Result<Sample, StatsError> {
        let sample = Sample::Binary { n, successes };
        sample.validate()?;
        Ok(sample)
    }

    /// A continuous sample; an error when the mean or variance is not finite, the variance
    /// is negative, or `n = 1` with a non-zero variance (a sample variance needs two
    /// values). With `n = 0` the mean and variance are ignored: every statistic of the
    /// sample is undefined.
    pub fn continuous(n: u64, mean: f64, variance: f64) -> Result<Sample, StatsError> {
        let sample = Sample::Continuous { n, mean, variance };
        sample.validate()?;
        Ok(sample)
    }

    /// Checks the invariants ([`Sample::binary`] and [`Sample::continuous`] do it for you).
    pub fn validate(&self) -> Result<(), StatsError> {
        match *self {
            Sample::Binary { n, successes } if successes > n => Err(StatsError::InvalidSample(
                format!("successes ({successes}) exceed n ({n})"),
            )),
            Sample::Continuous { mean, .. } if !mean.is_finite() => Err(StatsError::InvalidSample(
                format!("mean must be finite, got {mean}"),
            )),
            Sample::Continuous { variance, .. } if !(variance.is_finite() && variance >= 0.0) => {
                Err(StatsError::InvalidSample(format!(
                    "variance must be finite and non-negative, got {variance}"
                )))
            }
            Sample::Continuous { n: 1, variance, .. } if variance > 0.0 => {
                Err(StatsError::InvalidSample(format!(
                    "a sample variance needs at least two observations, but n = 1 with \
                     variance {variance} (give variance 0 for a single value)"
                )))
            }
            _ => Ok(()),
        }
    }

    /// The kind of metric.
    #[must_use]
    pub fn kind(&self) -> MetricKind {
        match self {
            Sample::Binary { .. } => MetricKind::Binary,
            Sample::Continuous { .. } => MetricKind::Continuous,
        }
    }

    /// Number of observations.
    #[must_use]
    pub fn n(&self) -> u64 {
        match *self {
            Sample::Binary { n, .. } | Sample::Continuous { n, .. } => n,
        }
    }

    /// The mean (the success rate for binary samples). Meaningless when empty (`n = 0`):
    /// 0 for a binary sample, the given value for a continuous one; the statistics treat
    /// an empty sample as having no mean.
    #[must_use]
    pub fn mean(&self) -> f64 {
        match *self {
            Sample::Binary { n: 0, .. } => 0.0,
            Sample::Binary { n, successes } => successes as f64 / n as f64,
            Sample::Continuous { mean, .. } => mean,
        }
    }

    /// The per-observation variance: `p(1 − p)` for binary samples (the Wald/unpooled
    /// form), the sample variance for continuous ones.
    #[must_use]
    pub fn variance(&self) -> f64 {
        match *self {
            Sample::Binary { .. } => {
                let p = self.mean();
                p * (1.0 - p)
            }
            Sample::Continuous { variance, .. } => variance,
        }
    }

    /// The squared standard error of the mean, `variance / n` (infinite when empty).
    #[must_use]
    pub fn variance_of_mean(&self) -> f64 {
        match self.n() {
            0 => f64::INFINITY,
            n => self.variance() / n as f64,
        }
    }
}

impl TryFrom<BinaryOutcome> for Sample {
    type Error = StatsError;
    fn try_from(outcome: BinaryOutcome) -> Result<Sample, StatsError> {
        Sample::binary(outcome.trials, outcome.successes)
    }
}

impl TryFrom<Moments> for Sample {
    type Error = StatsError;
    fn try_from(moments: Moments) -> Result<Sample, StatsError> {
        Sample::continuous(
            moments.count,
            moments.mean,
            moments.variance().unwrap_or(0.0),
        )
    }
}

/// A closed interval `[lower, upper]`; a bound may be infinite.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Lower bound.
    pub lower: f64,
    /// Upper bound.
    pub upper: f64,
}

impl Interval {
    /// The whole real line (nothing known yet).
    pub const UNBOUNDED: Interval = Interval {
        lower: f64::NEG_INFINITY,
        upper: f64::INFINITY,
    };

    /// `center ± half_width`.
    #[must_use]
    pub fn around(center: f64, half_width: f64) -> Interval {
        Interval {
            lower: center - half_width,
            upper: center + half_width,
        }
    }

    /// The intersection (for running confidence sequences); an empty intersection collapses
    /// to the midpoint of the overlap gap, which only happens with probability below α.
    #[must_use]
    pub fn intersect(&self, other: &Interval) -> Interval {
        let lower = self.lower.max(other.lower);
        let upper = self.upper.min(other.upper);
        if lower <= upper {
            Interval { lower, upper }
        } else {
            let mid = 0.5 * (lower + upper);
            Interval {
                lower: mid,
                upper: mid,
            }
        }
    }

    /// Whether `x` lies inside.
    #[must_use]
    pub fn contains(&self, x: f64) -> bool {
        self.lower <= x && x <= self.upper
    }
}
