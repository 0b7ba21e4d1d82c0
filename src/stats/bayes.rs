//! Bayesian probability that the candidate beats the control.
//!
//! Method (a normal approximation, not exact integration): binary samples get independent
//! Beta(1 + successes, 1 + failures) posteriors (uniform priors), continuous samples flat
//! priors with a normal posterior `N(mean, variance / n)`; the difference of the posterior
//! means is divided by the root of the summed posterior variances and mapped through the
//! normal CDF. Accurate once each variant has a few dozen observations (and successes).

use statrs::distribution::{ContinuousCDF, Normal};

use super::{MetricKind, Sample, StatsError};

fn posterior(sample: &Sample) -> (f64, f64) {
    match *sample {
        Sample::Binary { n, successes } => {
            let a = 1.0 + successes as f64;
            let b = 1.0 + (n - successes) as f64;
            let s = a + b;
            (a / s, a * b / (s * s * (s + 1.0)))
        }
        Sample::Continuous { .. } => (sample.mean(), sample.variance_of_mean()),
    }
}

/// P(mean of candidate > mean of control) under the posteriors above. Errors for mixed
/// kinds, invalid samples, a variant without observations (the prior alone would answer),
/// and continuous samples without variance.
pub fn probability_better(control: &Sample, candidate: &Sample) -> Result<f64, StatsError> {
    if control.kind() != candidate.kind() {
        return Err(StatsError::MixedKinds);
    }
    control.validate()?;
    candidate.validate()?;
    if control.n() == 0 || candidate.n() == 0 {
        return Err(StatsError::Degenerate("a variant has no observations"));
    }
    let (ma, va) = posterior(control);
    let (mb, vb) = posterior(candidate);
    let variance = va + vb;
    if control.kind() == MetricKind::Continuous && !(variance.is_finite() && variance > 0.0) {
        return Err(StatsError::Degenerate("no posterior variance"));
    }
    Ok(Normal::standard().cdf((mb - ma) / variance.sqrt()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_and_confident() {
        let a = Sample::binary(1000, 100).unwrap();
        assert!((probability_better(&a, &a).unwrap() - 0.5).abs() < 1e-12);
        let b = Sample::binary(10_000, 1_300).unwrap();
        let c = Sample::binary(10_000, 1_000).unwrap();
        assert!(probability_better(&c, &b).unwrap() > 0.999);
        assert!(probability_better(&b, &c).unwrap() < 0.001);
        assert!(probability_better(&a, &Sample::continuous(3, 1.0, 1.0).unwrap()).is_err());
        // No data, no probability (the uniform prior alone would say 0.917 here).
        let empty = Sample::binary(0, 0).unwrap();
        assert!(probability_better(&empty, &c).is_err());
        assert!(probability_better(&c, &empty).is_err());
    }
}
