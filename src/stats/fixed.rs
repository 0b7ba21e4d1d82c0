//! Fixed-horizon tests and intervals: valid when looked at once, at a sample size fixed in
//! advance. Reported for reference; decisions use [`super::sequential`].
//!
//! Conventions: the effect is `candidate − control`; the relative lift is
//! `(candidate − control) / |control|`, which is `candidate / control − 1` for a positive
//! control mean and keeps the sign of the difference when the control mean is negative
//! (−12 against −10 is a lift of −0.2: 20% lower).
//!
//! Accuracy: the normal tail is `statrs`' (complementary error function). The Student-t
//! tail is `statrs`' regularized incomplete beta below [`LARGE_DF`] degrees of freedom and
//! Hill's normal transform above (see [`t_sf`]); `tests/stats_oracle.rs` checks Welch
//! p-values against SciPy within 1e-9 relative error for 10 to 10^10 degrees of freedom.

use serde::{Deserialize, Serialize};
use statrs::distribution::{Continuous, ContinuousCDF, Normal, StudentsT};

use super::{Interval, MetricKind, Sample, StatsError, check_probability};

/// The outcome of a two-sample test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    /// z or t statistic of `candidate − control`.
    pub statistic: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// Welch–Satterthwaite degrees of freedom (`None` for the z-test).
    pub degrees_of_freedom: Option<f64>,
}

/// Absolute and relative lift of the candidate over the control with (1 − α) intervals.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Lift {
    /// `mean(candidate) − mean(control)`.
    pub absolute: f64,
    /// Its interval: unpooled Wald (normal quantile) for proportions, Welch (Student-t
    /// quantile with Welch–Satterthwaite degrees of freedom) for means.
    pub absolute_ci: Interval,
    /// `(mean(candidate) − mean(control)) / |mean(control)|` (`candidate / control − 1`
    /// when the control mean is positive; the sign of the difference otherwise).
    pub relative: f64,
    /// Its delta-method interval (normal quantile):
    /// `se² = se_B² / m_A² + m_B² · se_A² / m_A⁴` (the same for either sign of `m_A`: the
    /// partial derivatives only change sign).
    pub relative_ci: Interval,
}

/// The relative lift `(candidate − control) / |control|` of two means (see the module
/// docs); infinite or NaN when `control` is 0, which callers rule out.
pub(crate) fn relative_lift(control: f64, candidate: f64) -> f64 {
    (candidate - control) / control.abs()
}

/// Degrees of freedom from which [`t_sf`] uses Hill's large-df transform instead of
/// `statrs`' incomplete beta (which loses about `df · 1e-15` absolute accuracy: 2e-6 at
/// 2·10^9 degrees of freedom).
pub const LARGE_DF: f64 = 1e4;

/// The survival function `P(T > x)` of Student's t with `df` degrees of freedom (`df > 0`;
/// NaN otherwise).
///
/// Below [`LARGE_DF`] it is `statrs`' (the regularized incomplete beta). From [`LARGE_DF`]
/// on, Hill's transform (G. W. Hill, "Algorithm 395: Student's t-distribution", CACM 13,
/// 1970) maps `x` to a normal deviate, `y = a · ln(1 + x²/df)` with `a = df − ½` and
/// `z = √y · (1 + (y + 3 + (−0.4y³ − 3.3y² − 24y − 85.5) / (0.8y² + 100 + b)) / b)` with
/// `b = 48a²`, and returns `P(Z > z)`; `ln(1 + ·)` is computed with `ln_1p`, so nothing
/// cancels however large `df` is. Against SciPy (`scipy.special.stdtr`) the relative error
/// of this transform is below 1e-13 for df ≥ 10^4 and `|x|` up to 40 (p down to 1e-300),
/// and below 1e-14 for `|x| ≤ 8`.
#[must_use]
pub fn t_sf(x: f64, df: f64) -> f64 {
    if df.is_nan() || df <= 0.0 || x.is_nan() {
        return f64::NAN;
    }
    if x < 0.0 {
        return 1.0 - t_sf(-x, df);
    }
    if df >= LARGE_DF {
        let a = df - 0.5;
        let b = 48.0 * a * a;
        // ln(1 + x²/df); past the range of x² it is 2·ln x − ln df (x = ∞ has tail 0).
        let q = x * x / df;
        let log = if q.is_finite() {
            q.ln_1p()
        } else {
            2.0 * x.ln() - df.ln()
        };
        if !log.is_finite() {
            return 0.0;
        }
        let y = a * log;
        let z =
            (((((-0.4 * y - 3.3) * y - 24.0) * y - 85.5) / (0.8 * y * y + 100.0 + b) + y + 3.0)
                / b
                + 1.0)
                * y.sqrt();
        return Normal::standard().sf(z);
    }
    match StudentsT::new(0.0, 1.0, df) {
        Ok(t) => t.sf(x),
        Err(_) => f64::NAN,
    }
}

/// Two-sided p-value of a standard normal statistic.
pub(crate) fn normal_two_sided(z: f64) -> f64 {
    2.0 * Normal::standard().sf(z.abs())
}

/// The standard normal upper quantile: the `z` with `P(Z > z) = tail` (`tail` in
/// (0, 1)). Computed from the tail as `−Φ⁻¹(tail)` (`statrs`' inverse error function of
/// `2·tail`), never as `Φ⁻¹(1 − tail)`: `1 − tail` rounds to 1 for tails below 1e-16
/// (an infinite quantile) and loses digits well before (8.014 instead of 8.027 at
/// `tail` = 5e-16).
pub(crate) fn normal_upper_quantile(tail: f64) -> f64 {
    -Normal::standard().inverse_cdf(tail)
}

/// Largest quantile [`t_upper_quantile`] resolves; beyond it (Student's t with one or two
/// degrees of freedom at tails below about 1e-150) it answers +∞, an interval that is
/// conservative rather than wrong.
const MAX_T_QUANTILE: f64 = 1e150;

/// The x > 0 with `P(T > x) = tail` for Student's t with `df` degrees of freedom
/// (`tail` in (0, 0.5)): safeguarded Newton on `ln P(T > x)` with [`t_sf`] (steady in the
/// far tail, where the survival function spans hundreds of decades), inside a bracket kept
/// by bisection. `statrs`' `inverse_cdf` loses accuracy (and can fail to terminate) at
/// very large `df`, and a normal-based expansion fails for tiny tails. `+∞` beyond
/// [`MAX_T_QUANTILE`]; `None` for a `tail` or `df` out of range.
pub(crate) fn t_upper_quantile(df: f64, tail: f64) -> Option<f64> {
    if !(tail > 0.0 && tail < 0.5 && df > 0.0) {
        return None;
    }
    let t = StudentsT::new(0.0, 1.0, df).ok()?;
    // Bracket: sf(low) > tail >= sf(high).
    let (mut low, mut high) = (0.0f64, 1.0f64);
    while t_sf(high, df) > tail {
        low = high;
        high *= 2.0;
        if high > 2.0 * MAX_T_QUANTILE {
            return Some(f64::INFINITY);
        }
    }
    let target = tail.ln();
    // The t quantile is above the normal one, a good start.
    let mut x = normal_upper_quantile(tail).clamp(low, high);
    for _ in 0..400 {
        let sf = t_sf(x, df);
        if sf == tail {
            return Some(x);
        }
        if sf > tail {
            low = x;
        } else {
            high = x;
        }
        let density = t.pdf(x);
        let newton = x + (sf.ln() - target) * sf / density;
        let next = if sf > 0.0 && density > 0.0 && newton > low && newton < high {
            newton
        } else {
            0.5 * (low + high)
        };
        if (next - x).abs() <= 1e-15 * x.abs().max(1.0) || high - low <= 1e-15 * high {
            return Some(next);
        }
        x = next;
    }
    Some(x)
}

/// Two-proportion z-test with the variance pooled under the null (statsmodels
/// `proportions_ztest([b, a], [n_b, n_a])`). When the pooled rate is 0 or 1 (no variance)
/// the statistic is 0 and the p-value 1 (statsmodels answers NaN).
pub fn two_proportion_z_test(
    control: &Sample,
    candidate: &Sample,
) -> Result<TestResult, StatsError> {
    let (
        Sample::Binary {
            n: na,
            successes: sa,
        },
        Sample::Binary {
            n: nb,
            successes: sb,
        },
    ) = (*control, *candidate)
    else {
        return Err(StatsError::MixedKinds);
    };
    control.validate()?;
    candidate.validate()?;
    if na == 0 || nb == 0 {
        return Err(StatsError::Degenerate("a variant has no observations"));
    }
    // In floats: the two arms' counts may sum beyond u64::MAX.
    let pooled = (sa as f64 + sb as f64) / (na as f64 + nb as f64);
    let variance = pooled * (1.0 - pooled) * (1.0 / na as f64 + 1.0 / nb as f64);
    let difference = candidate.mean() - control.mean();
    if variance <= 0.0 {
        return Ok(TestResult {
            statistic: 0.0,
            p_value: 1.0,
            degrees_of_freedom: None,
        });
    }
    let statistic = difference / variance.sqrt();
    Ok(TestResult {
        statistic,
        p_value: normal_two_sided(statistic),
        degrees_of_freedom: None,
    })
}

/// Welch–Satterthwaite degrees of freedom of `candidate − control`.
fn welch_df(control: &Sample, candidate: &Sample) -> Option<f64> {
    let (na, nb) = (control.n(), candidate.n());
    if na < 2 || nb < 2 {
        return None;
    }
    let va = control.variance_of_mean();
    let vb = candidate.variance_of_mean();
    let df = (va + vb).powi(2) / (va * va / (na - 1) as f64 + vb * vb / (nb - 1) as f64);
    (df.is_finite() && df > 0.0).then_some(df)
}

/// Welch's t-test from aggregates (SciPy `ttest_ind_from_stats(..., equal_var=False)`).
/// Needs two observations per variant and some variance.
pub fn welch_t_test(control: &Sample, candidate: &Sample) -> Result<TestResult, StatsError> {
    let (Sample::Continuous { .. }, Sample::Continuous { .. }) = (control, candidate) else {
        return Err(StatsError::MixedKinds);
    };
    control.validate()?;
    candidate.validate()?;
    let df = welch_df(control, candidate).ok_or(StatsError::Degenerate(
        "Welch's test needs two observations per variant and some variance",
    ))?;
    let se = (control.variance_of_mean() + candidate.variance_of_mean()).sqrt();
    let statistic = (candidate.mean() - control.mean()) / se;
    let p_value = (2.0 * t_sf(statistic.abs(), df)).min(1.0);
    if p_value.is_nan() {
        return Err(StatsError::Degenerate("invalid degrees of freedom"));
    }
    Ok(TestResult {
        statistic,
        p_value,
        degrees_of_freedom: Some(df),
    })
}

/// The test that fits the samples' kind: [`two_proportion_z_test`] or [`welch_t_test`].
pub fn test(control: &Sample, candidate: &Sample) -> Result<TestResult, StatsError> {
    match (control.kind(), candidate.kind()) {
        (MetricKind::Binary, MetricKind::Binary) => two_proportion_z_test(control, candidate),
        (MetricKind::Continuous, MetricKind::Continuous) => welch_t_test(control, candidate),
        _ => Err(StatsError::MixedKinds),
    }
}

/// (1 − α) interval of one variant's mean: Wald (normal quantile) for a proportion,
/// clipped to [0, 1] (as statsmodels' `proportion_confint(method="normal")`), Student-t
/// with `n − 1` degrees of freedom for a mean. Errors with fewer than one (binary)
/// or two (continuous) observations.
pub fn mean_interval(sample: &Sample, alpha: f64) -> Result<Interval, StatsError> {
    check_probability("alpha", alpha)?;
    sample.validate()?;
    let n = sample.n();
    let quantile = match sample.kind() {
        MetricKind::Binary if n >= 1 => normal_upper_quantile(alpha / 2.0),
        MetricKind::Continuous if n >= 2 => t_upper_quantile((n - 1) as f64, alpha / 2.0)
            .ok_or(StatsError::Degenerate("invalid degrees of freedom"))?,
        _ => {
            return Err(StatsError::Degenerate(
                "too few observations for an interval",
            ));
        }
    };
    let interval = Interval::around(sample.mean(), quantile * sample.variance_of_mean().sqrt());
    Ok(match sample.kind() {
        // A proportion lies in [0, 1] (statsmodels' proportion_confint clips the same way).
        MetricKind::Binary => Interval {
            lower: interval.lower.max(0.0),
            upper: interval.upper.min(1.0),
        },
        MetricKind::Continuous => interval,
    })
}

/// Checks the pair for [`difference_interval`] and [`lift`]: same kind, valid, enough
/// observations for an interval.
fn check_pair(control: &Sample, candidate: &Sample, alpha: f64) -> Result<(), StatsError> {
    check_probability("alpha", alpha)?;
    if control.kind() != candidate.kind() {
        return Err(StatsError::MixedKinds);
    }
    control.validate()?;
    candidate.validate()?;
    let minimum = if control.kind() == MetricKind::Binary {
        1
    } else {
        2
    };
    if control.n() < minimum || candidate.n() < minimum {
        return Err(StatsError::Degenerate(
            "too few observations for an interval",
        ));
    }
    Ok(())
}

/// (1 − α) interval of the difference `mean(candidate) − mean(control)`: unpooled Wald
/// (normal quantile) for proportions, Welch (Student-t quantile with Welch–Satterthwaite
/// degrees of freedom) for means. Defined whatever the control mean (0 included). Errors
/// when a variant is empty (or has fewer than two values, for means).
pub fn difference_interval(
    control: &Sample,
    candidate: &Sample,
    alpha: f64,
) -> Result<Interval, StatsError> {
    check_pair(control, candidate, alpha)?;
    let (va, vb) = (control.variance_of_mean(), candidate.variance_of_mean());
    let quantile = match (control.kind(), welch_df(control, candidate)) {
        (MetricKind::Continuous, Some(df)) => t_upper_quantile(df, alpha / 2.0)
            .ok_or(StatsError::Degenerate("invalid degrees of freedom"))?,
        _ => normal_upper_quantile(alpha / 2.0),
    };
    Ok(Interval::around(
        candidate.mean() - control.mean(),
        quantile * (va + vb).sqrt(),
    ))
}

/// Absolute and relative lift with (1 − α) intervals (see [`Lift`]). Errors when a variant
/// is empty (or has fewer than two values, for means) or the control mean is 0 (the
/// difference alone is still [`difference_interval`]).
pub fn lift(control: &Sample, candidate: &Sample, alpha: f64) -> Result<Lift, StatsError> {
    check_pair(control, candidate, alpha)?;
    let (ma, mb) = (control.mean(), candidate.mean());
    if ma == 0.0 {
        return Err(StatsError::Degenerate(
            "the control mean is 0: the relative lift is undefined",
        ));
    }
    let (va, vb) = (control.variance_of_mean(), candidate.variance_of_mean());
    let z = normal_upper_quantile(alpha / 2.0);
    let relative = relative_lift(ma, mb);
    let relative_variance = vb / (ma * ma) + mb * mb * va / ma.powi(4);
    Ok(Lift {
        absolute: mb - ma,
        absolute_ci: difference_interval(control, candidate, alpha)?,
        relative,
        relative_ci: Interval::around(relative, z * relative_variance.sqrt()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantile_is_accurate_for_small_and_huge_df() {
        // Known values: t_{0.975}(1) = 12.7062047361747, t_{0.975}(10) = 2.22813885198627.
        assert!((t_upper_quantile(1.0, 0.025).unwrap() - 12.706_204_736_174_7).abs() < 1e-9);
        assert!((t_upper_quantile(10.0, 0.025).unwrap() - 2.228_138_851_986_27).abs() < 1e-9);
        // SciPy's t.ppf(0.975, df) for df = 1001 and 2000.
        assert!((t_upper_quantile(1001.0, 0.025).unwrap() - 1.962_336_705_280_88).abs() < 1e-10);
        assert!((t_upper_quantile(2000.0, 0.025).unwrap() - 1.961_150_826_099_44).abs() < 1e-10);
        let z = normal_upper_quantile(0.025);
        for df in [1e7, 1e8, 1e9, 1e12] {
            assert!(
                (t_upper_quantile(df, 0.025).unwrap() - z).abs() < 1e-6,
                "{df}"
            );
        }
    }
}

#[cfg(test)]
mod tail_tests {
    use super::*;

    /// Past the range of `x²`, and at `x = ∞`, the large-df tail is 0 (it gave NaN), and it
    /// stays continuous with the finite formula where `x²` still fits.
    #[test]
    fn the_large_df_tail_of_huge_statistics_is_zero() {
        for df in [1e4, 1e5, 1e12] {
            assert_eq!(t_sf(1e155, df), 0.0, "df {df}");
            assert_eq!(t_sf(f64::INFINITY, df), 0.0, "df {df}");
            assert_eq!(t_sf(f64::NEG_INFINITY, df), 1.0, "df {df}");
            assert_eq!(t_sf(1e150, df), 0.0, "df {df}");
        }
        assert!((t_sf(1.0, 2e9) - 0.158_655_253_9).abs() < 1e-9);
    }
}
