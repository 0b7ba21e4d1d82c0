//! A/B statistics and a winner policy that stays valid under continuous monitoring.
//!
//! The sidecar looks at running experiments again and again. Checking an ordinary
//! (fixed-horizon) p-value at every look inflates false positives far above α, so the
//! decisions here rest on **always-valid** inference (mSPRT with a normal mixture, Johari et
//! al., "Always valid inference", 2017/2022), while the classical tests are still reported.
//!
//! * [`fixed`]: two-proportion z-test (pooled under the null, as statsmodels
//!   `proportions_ztest`), Welch's t-test (as SciPy `ttest_ind(equal_var=False)`), absolute
//!   lift with a Wald/Welch interval and relative lift with a delta-method interval.
//! * [`srm`]: sample ratio mismatch, a chi-square goodness-of-fit test of the observed counts
//!   against the configured weights (as SciPy `chisquare`).
//! * [`sequential`]: the mSPRT always-valid p-value, the matching confidence sequence of the
//!   difference, and always-valid bounds of the relative lift; [`sequential::Running`] keeps
//!   the running minimum of the p-value and the running intersection of the bounds.
//! * [`bayes`]: P(candidate > control) by a normal approximation of the posteriors.
//! * [`table`]: CSV input for the `modelgate abtest` command (observations or aggregates).
//! * [`policy`]: the winner policy ([`Policy`]) and its [`Decision`]s.
//!
//! All inputs are per-variant aggregates ([`Sample`]): `n` and successes, or `n`, mean and
//! sample variance, so merged metrics ([`crate::metrics::Moments`],
//! [`crate::metrics::BinaryOutcome`]) plug in directly. Every function costs O(1) per
//! variant (a few special-function evaluations), and none panics on bad input: invalid
//! aggregates are [`StatsError`]s, and too little data is a [`Decision::Continue`].
//!
//! ```
//! use modelgate::stats::{Experiment, Policy, Sample, Variant, Decision};
//!
//! let experiment = Experiment {
//!     variants: vec![
//!         Variant::new("control", 0.5, Sample::binary(20_000, 2_000)?),
//!         Variant::new("candidate", 0.5, Sample::binary(20_000, 2_400)?),
//!     ],
//!     control: 0,
//!     elapsed: std::time::Duration::from_secs(3600),
//! };
//! let evaluation = Policy::default().evaluate(&experiment)?;
//! assert!(matches!(evaluation.decision, Decision::Winner { .. }));
//! # Ok::<(), modelgate::stats::StatsError>(())
//! ```

#![forbid(unsafe_code)]

pub mod bayes;
pub mod fixed;
pub mod policy;
pub mod sequential;
pub mod srm;
pub mod table;

mod sample;

pub use policy::{
    Comparison, Decision, Direction, Evaluation, Evidence, Experiment, Guardrail, Monitor, Policy,
    Reason, Variant,
};
pub use sample::{Interval, MetricKind, Sample};

/// What can go wrong in the statistics: invalid aggregates or parameters. Too little data
/// is never an error for the policy (it answers [`Decision::Continue`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum StatsError {
    /// An aggregate is impossible (successes above n, negative or non-finite variance...).
    #[error("invalid sample: {0}")]
    InvalidSample(String),
    /// α (or another probability) outside (0, 1).
    #[error("{name} must be in (0, 1), got {value}")]
    InvalidProbability {
        /// The parameter.
        name: &'static str,
        /// Its value.
        value: f64,
    },
    /// A binary sample compared with a continuous one.
    #[error("cannot compare a binary sample with a continuous one")]
    MixedKinds,
    /// The statistic is undefined on this data (no variance, empty sample, zero control
    /// mean for a relative lift); collect more data.
    #[error("undefined on this data: {0}")]
    Degenerate(&'static str),
    /// Weights that are not positive and finite, or do not match the counts.
    #[error("invalid weights: {0}")]
    InvalidWeights(String),
    /// An experiment that cannot be evaluated (fewer than two variants, unknown control).
    #[error("invalid experiment: {0}")]
    InvalidExperiment(String),
    /// Bad CSV input (the line is 1-based, 0 for the file as a whole).
    #[error("line {line}: {message}")]
    Csv {
        /// The line.
        line: usize,
        /// What is wrong and what to change.
        message: String,
    },
    /// A policy parameter out of range.
    #[error("invalid policy: {0}")]
    InvalidPolicy(String),
}

pub(crate) fn check_probability(name: &'static str, value: f64) -> Result<(), StatsError> {
    if value > 0.0 && value < 1.0 {
        Ok(())
    } else {
        Err(StatsError::InvalidProbability { name, value })
    }
}
