//! Always-valid inference: the mixture sequential probability ratio test (mSPRT) with a
//! normal mixture (Johari, Koomen, Pekelis and Walsh, "Always valid inference", 2017; Operations
//! Research 2022).
//!
//! **The statistic.** Let `d = mean(B) − mean(A)` and `V = s_A²/n_A + s_B²/n_B` its
//! (plug-in) variance. Mixing the likelihood ratio of `N(θ, V)` against `N(θ₀, V)` over
//! `θ ~ N(θ₀, τ²)` gives
//!
//! ```text
//! Λ(θ₀) = sqrt(V / (V + τ²)) · exp( τ² (d − θ₀)² / (2 V (V + τ²)) )
//! ```
//!
//! a nonnegative martingale under `θ = θ₀`, so by Ville's inequality
//! `P(∃ look: Λ ≥ 1/α) ≤ α` however often one looks. The always-valid p-value is
//! `min(1, 1/Λ(0))`, its running minimum over looks ([`Running`]) is still valid and never
//! increases. Inverting `Λ(θ₀) < 1/α` gives the **confidence sequence**
//!
//! ```text
//! |d − θ| ≤ sqrt( V (V + τ²) / τ² · (2 ln(1/α) + ln((V + τ²) / V)) )
//! ```
//!
//! which covers the true difference at all looks simultaneously with probability ≥ 1 − α.
//! The normal likelihood and the plug-in variance make this the asymptotic (large-n) form
//! that Johari et al. use for both proportions and means; with a few hundred observations
//! per variant the error is negligible (see `tests/stats_simulation.rs`).
//!
//! **The mixing variance τ².** τ² is the prior variance of the effect; the test is most
//! powerful for effects near `τ` at the sample size where they become detectable, and
//! valid for every τ² > 0. Choose it on the scale of the minimum detectable effect squared:
//! `τ² = (MDE · |control mean|)²` for a relative MDE; [`super::Policy`] does exactly that with
//! its `minimum_detectable_effect` (default 0.05, a 5% relative lift) unless
//! `mixing_variance` fixes τ² in absolute units. Too small a τ² wastes power on large
//! effects, too large a τ² on small ones; the cost is only power, never validity.
//!
//! **The relative lift.** `(mean(B) − mean(A)) / |mean(A)|` (which keeps the sign of the
//! difference when the control mean is negative) is bounded from the confidence sequence of
//! the difference at level α/2 and a confidence sequence of the control mean alone at level
//! α/2 (the one-sample mSPRT, same τ²): on the event that both cover (at least 1 − α by the
//! union bound, at all looks at once), `|mean(A)|` lies in the image of the control's
//! sequence under `|·|`, and the relative lift lies between the smallest and largest of the
//! four ratios of their end points, provided the control mean's sequence excludes 0
//! (otherwise the bound is infinite). This is conservative: it never uses the (positive)
//! correlation between the two.

use serde::{Deserialize, Serialize};

use super::{Interval, Sample, StatsError, check_probability};

/// The always-valid statistics at one look.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SequentialResult {
    /// Always-valid p-value of "no difference" (`min(1, 1/Λ(0))`).
    pub p_value: f64,
    /// Confidence sequence (level 1 − α) of `mean(B) − mean(A)`.
    pub difference: Interval,
    /// Always-valid bounds (level 1 − α) of `(mean(B) − mean(A)) / |mean(A)|`.
    pub relative: Interval,
    /// The mixing variance used.
    pub tau2: f64,
}

fn check_tau2(tau2: f64) -> Result<(), StatsError> {
    if tau2.is_finite() && tau2 > 0.0 {
        Ok(())
    } else {
        Err(StatsError::InvalidPolicy(format!(
            "the mixing variance τ² must be positive and finite, got {tau2}"
        )))
    }
}

/// Half-width of the mixture confidence sequence for an estimate with variance `v`.
fn half_width(v: f64, tau2: f64, alpha: f64) -> f64 {
    // ln(1/α) as −ln α: 1/α overflows for a subnormal α.
    (v * (v + tau2) / tau2 * (-2.0 * alpha.ln() + (tau2 / v).ln_1p())).sqrt()
}

/// `ln Λ(θ₀)` for an estimate `d` with variance `v`.
fn log_mixture_ratio(d: f64, theta0: f64, v: f64, tau2: f64) -> f64 {
    0.5 * (v / (v + tau2)).ln() + tau2 * (d - theta0).powi(2) / (2.0 * v * (v + tau2))
}

fn difference_variance(control: &Sample, candidate: &Sample) -> Result<f64, StatsError> {
    if control.kind() != candidate.kind() {
        return Err(StatsError::MixedKinds);
    }
    control.validate()?;
    candidate.validate()?;
    if control.n() == 0 || candidate.n() == 0 {
        return Err(StatsError::Degenerate("a variant has no observations"));
    }
    let v = control.variance_of_mean() + candidate.variance_of_mean();
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(StatsError::Degenerate("no variance yet"))
    }
}

/// Always-valid p-value of `mean(B) = mean(A)` (one look; keep the running minimum with
/// [`Running`]).
pub fn always_valid_p_value(
    control: &Sample,
    candidate: &Sample,
    tau2: f64,
) -> Result<f64, StatsError> {
    check_tau2(tau2)?;
    let v = difference_variance(control, candidate)?;
    let d = candidate.mean() - control.mean();
    Ok((-log_mixture_ratio(d, 0.0, v, tau2)).exp().min(1.0))
}

/// Confidence sequence (level 1 − α) of `mean(B) − mean(A)` at this look.
pub fn difference_sequence(
    control: &Sample,
    candidate: &Sample,
    tau2: f64,
    alpha: f64,
) -> Result<Interval, StatsError> {
    check_tau2(tau2)?;
    check_probability("alpha", alpha)?;
    let v = difference_variance(control, candidate)?;
    let d = candidate.mean() - control.mean();
    Ok(Interval::around(d, half_width(v, tau2, alpha)))
}

/// Confidence sequence (level 1 − α) of `p_B − p_A` for two proportions given as
/// `(trials, events)`, the variance taken at `(events + 1) / (trials + 2)` for each variant.
///
/// The shifted estimate keeps the variance above 0 when a variant has no events or only
/// events: with the plain plug-in variance a candidate failing every call next to a
/// production failing none would have variance 0 and give no interval at all. The centre
/// stays the observed difference.
///
/// # Errors
/// [`StatsError`] when a variant has no trials, has more events than trials, or τ² or α
/// is out of range.
pub fn proportion_difference_sequence(
    control: (u64, u64),
    candidate: (u64, u64),
    tau2: f64,
    alpha: f64,
) -> Result<Interval, StatsError> {
    check_tau2(tau2)?;
    check_probability("alpha", alpha)?;
    let part = |(n, x): (u64, u64)| -> Result<(f64, f64), StatsError> {
        if n == 0 {
            return Err(StatsError::Degenerate("a variant has no observations"));
        }
        Sample::binary(n, x)?;
        let (n, x) = (n as f64, x as f64);
        let shifted = (x + 1.0) / (n + 2.0);
        Ok((x / n, shifted * (1.0 - shifted) / n))
    };
    let (p_a, v_a) = part(control)?;
    let (p_b, v_b) = part(candidate)?;
    Ok(Interval::around(
        p_b - p_a,
        half_width(v_a + v_b, tau2, alpha),
    ))
}

/// Confidence sequence (level 1 − α) of one variant's mean (the one-sample mSPRT);
/// unbounded while the sample has no observations or no variance.
pub fn mean_sequence(sample: &Sample, tau2: f64, alpha: f64) -> Result<Interval, StatsError> {
    check_tau2(tau2)?;
    check_probability("alpha", alpha)?;
    sample.validate()?;
    let v = sample.variance_of_mean();
    if !(v.is_finite() && v > 0.0) {
        return Ok(Interval::UNBOUNDED);
    }
    Ok(Interval::around(sample.mean(), half_width(v, tau2, alpha)))
}

/// Bounds of `d / |m|` for `d` in `difference` and `m` in `control` (see the module docs):
/// the relative lift keeps the sign of the difference whatever the sign of the control
/// mean. Unbounded when `control` contains 0 or is not finite.
pub fn ratio_bounds(difference: &Interval, control: &Interval) -> Interval {
    if !(control.lower > 0.0 || control.upper < 0.0)
        || !control.lower.is_finite()
        || !control.upper.is_finite()
    {
        return Interval::UNBOUNDED;
    }
    // The range of |m| over the control's interval, which lies on one side of 0.
    let (near, far) = if control.lower > 0.0 {
        (control.lower, control.upper)
    } else {
        (-control.upper, -control.lower)
    };
    let corners = [
        difference.lower / near,
        difference.lower / far,
        difference.upper / near,
        difference.upper / far,
    ];
    Interval {
        lower: corners.iter().copied().fold(f64::INFINITY, f64::min),
        upper: corners.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    }
}

/// All always-valid statistics at one look (level 1 − α).
pub fn sequential(
    control: &Sample,
    candidate: &Sample,
    tau2: f64,
    alpha: f64,
) -> Result<SequentialResult, StatsError> {
    let p_value = always_valid_p_value(control, candidate, tau2)?;
    let difference = difference_sequence(control, candidate, tau2, alpha)?;
    let half_difference = difference_sequence(control, candidate, tau2, alpha / 2.0)?;
    let control_mean = mean_sequence(control, tau2, alpha / 2.0)?;
    Ok(SequentialResult {
        p_value,
        difference,
        relative: ratio_bounds(&half_difference, &control_mean),
        tau2,
    })
}

/// Running state across looks: the minimum of the p-values and the intersection of the
/// sequences seen so far (both stay valid). Keep one per comparison and feed it every look;
/// τ² must stay fixed across looks. 64 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Running {
    /// Running minimum of the always-valid p-value (1 before any look).
    pub p_value: f64,
    /// Running intersection of the difference's confidence sequence.
    pub difference: Interval,
    /// Running intersection of the relative lift's bounds.
    pub relative: Interval,
    /// Looks that produced statistics.
    pub looks: u64,
}

impl Default for Running {
    fn default() -> Self {
        Running {
            p_value: 1.0,
            difference: Interval::UNBOUNDED,
            relative: Interval::UNBOUNDED,
            looks: 0,
        }
    }
}

impl Running {
    /// Folds one look in and returns the running statistics.
    pub fn update(&mut self, look: &SequentialResult) -> SequentialResult {
        self.p_value = self.p_value.min(look.p_value);
        self.difference = self.difference.intersect(&look.difference);
        self.relative = self.relative.intersect(&look.relative);
        self.looks += 1;
        SequentialResult {
            p_value: self.p_value,
            difference: self.difference,
            relative: self.relative,
            tau2: look.tau2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_bounds_keep_the_sign_of_the_difference() {
        let worse = Interval {
            lower: -2.5,
            upper: -1.5,
        };
        let better = Interval {
            lower: 1.5,
            upper: 2.5,
        };
        let negative = Interval {
            lower: -11.0,
            upper: -9.0,
        };
        let positive = Interval {
            lower: 9.0,
            upper: 11.0,
        };
        for control in [negative, positive] {
            let r = ratio_bounds(&worse, &control);
            assert!((r.lower + 2.5 / 9.0).abs() < 1e-15, "{r:?}");
            assert!((r.upper + 1.5 / 11.0).abs() < 1e-15, "{r:?}");
            let r = ratio_bounds(&better, &control);
            assert!((r.lower - 1.5 / 11.0).abs() < 1e-15, "{r:?}");
            assert!((r.upper - 2.5 / 9.0).abs() < 1e-15, "{r:?}");
        }
        let straddles = Interval {
            lower: -1.0,
            upper: 1.0,
        };
        assert_eq!(ratio_bounds(&better, &straddles), Interval::UNBOUNDED);
    }

    /// The ends of the proportion sequence are where the mixture ratio, at the shifted
    /// variance, reaches `1/α` (exact inversion, checked to 1e-9 relative); 0 and `n`
    /// events still give a finite, non-empty interval; no trials or more events than trials
    /// are errors.
    #[test]
    fn proportion_sequence_inverts_the_mixture_ratio() {
        let shifted = |n: u64, x: u64| {
            let p = (x as f64 + 1.0) / (n as f64 + 2.0);
            p * (1.0 - p) / n as f64
        };
        for (a, b, tau2, alpha) in [
            ((1_000, 50), (300, 40), 0.0025, 0.05),
            ((500, 0), (500, 500), 0.0016, 0.05),
            ((20_000, 5_800), (20_000, 7_000), 0.01, 1e-6),
            ((7, 3), (9, 9), 0.04, 0.2),
        ] {
            let i = proportion_difference_sequence(a, b, tau2, alpha).unwrap();
            let v = shifted(a.0, a.1) + shifted(b.0, b.1);
            let d = b.1 as f64 / b.0 as f64 - a.1 as f64 / a.0 as f64;
            assert!(i.lower < d && d < i.upper && i.upper.is_finite(), "{i:?}");
            for end in [i.lower, i.upper] {
                let log_ratio = log_mixture_ratio(d, end, v, tau2);
                assert!(
                    (log_ratio + alpha.ln()).abs() <= 1e-9 * alpha.ln().abs(),
                    "{a:?} {b:?}: ln Λ = {log_ratio} at {end}"
                );
            }
        }
        assert!(proportion_difference_sequence((0, 0), (10, 1), 0.01, 0.05).is_err());
        assert!(proportion_difference_sequence((10, 11), (10, 1), 0.01, 0.05).is_err());
    }

    #[test]
    fn tiny_alpha_gives_finite_sequences() {
        let a = Sample::binary(10_000, 1_000).unwrap();
        let b = Sample::binary(10_000, 1_100).unwrap();
        let mut last = 0.0;
        // Down to a subnormal α, where 1/α overflows.
        for alpha in [0.05, 1e-16, 1e-300, 1e-310] {
            let d = difference_sequence(&a, &b, 1e-4, alpha).unwrap();
            let width = d.upper - d.lower;
            assert!(width.is_finite() && width > last, "{alpha}: {d:?}");
            last = width;
        }
    }
}
