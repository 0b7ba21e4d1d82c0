//! Count, mean and variance that merge exactly (Welford updates, Chan et al. merges).

use serde::{Deserialize, Serialize};

/// Streaming moments of a real-valued series: count, mean and the sum of squared deviations
/// `m2`. Updates use Welford's recurrence and merges Chan, Golub and LeVeque's pairwise
/// formula, never naive sums of squares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Moments {
    /// Number of values.
    pub count: u64,
    /// Their mean (0 when empty).
    pub mean: f64,
    /// Sum of squared deviations from the mean.
    pub m2: f64,
}

impl Moments {
    /// Adds one value (the caller keeps non-finite values out).
    #[inline]
    pub fn push(&mut self, x: f64) {
        self.count += 1;
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
    }

    /// The moments of both series together. The count saturates at `u64::MAX` rather than
    /// wrap. This merge weights the mean and `m2` by both inputs' counts, so it is right even
    /// when its sum saturates; a later merge with an already saturated count weights it as
    /// `u64::MAX`, not its true size.
    #[must_use]
    pub fn merge(&self, other: &Moments) -> Moments {
        if other.count == 0 {
            return *self;
        }
        if self.count == 0 {
            return *other;
        }
        // The count saturates at `u64::MAX` (never wraps); the weights are the inputs' counts,
        // exact unless an input is already saturated.
        let (na, nb) = (self.count as f64, other.count as f64);
        let n = na + nb;
        let delta = other.mean - self.mean;
        Moments {
            count: self.count.saturating_add(other.count),
            mean: self.mean + delta * nb / n,
            m2: self.m2 + other.m2 + delta * delta * na * nb / n,
        }
    }

    /// The moments of the values in `self` that are not in `earlier`, when `earlier`
    /// summarises a prefix of the same series (inverse of [`Moments::merge`]).
    #[must_use]
    pub fn since(&self, earlier: &Moments) -> Moments {
        if earlier.count == 0 {
            return *self;
        }
        if self.count <= earlier.count {
            return Moments::default();
        }
        let n = self.count as f64;
        let na = earlier.count as f64;
        let nb = n - na;
        // mean_b from n·mean = na·mean_a + nb·mean_b, written so that no large products cancel.
        let mean = self.mean + (self.mean - earlier.mean) * na / nb;
        let delta = mean - earlier.mean;
        let m2 = (self.m2 - earlier.m2 - delta * delta * na * nb / n).max(0.0);
        Moments {
            count: self.count - earlier.count,
            mean,
            m2,
        }
    }

    /// Sample variance (`m2 / (count - 1)`), `None` with fewer than two values.
    #[must_use]
    pub fn variance(&self) -> Option<f64> {
        (self.count > 1).then(|| self.m2 / (self.count - 1) as f64)
    }

    /// Checks the invariants a decoder must enforce: finite mean, finite non-negative `m2`.
    #[must_use]
    pub fn is_valid(&self) -> bool {
        self.mean.is_finite()
            && self.m2.is_finite()
            && self.m2 >= 0.0
            && (self.count > 0 || (self.mean == 0.0 && self.m2 == 0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(xs: &[f64]) -> Moments {
        let mut m = Moments::default();
        xs.iter().for_each(|&x| m.push(x));
        m
    }

    #[test]
    fn merging_huge_counts_saturates_instead_of_wrapping() {
        let a = Moments {
            count: u64::MAX - 10,
            mean: 1.0,
            m2: 0.0,
        };
        let b = Moments {
            count: u64::MAX - 10,
            mean: 3.0,
            m2: 0.0,
        };
        let merged = a.merge(&b);
        assert_eq!(merged.count, u64::MAX);
        // Equal weights: the mean is halfway, whatever the saturated count says.
        assert!((merged.mean - 2.0).abs() < 1e-12, "{}", merged.mean);
        assert!(merged.m2.is_finite() && merged.m2 > 0.0);
        assert!(merged.is_valid());
    }

    #[test]
    fn merge_and_since_agree_with_direct_computation() {
        let xs: Vec<f64> = (0..1000)
            .map(|i| 1e9 + (i as f64 * 0.37).sin() * 3.0)
            .collect();
        let whole = of(&xs);
        let (a, b) = (of(&xs[..300]), of(&xs[300..]));
        let merged = a.merge(&b);
        assert_eq!(merged.count, 1000);
        assert!((merged.mean - whole.mean).abs() / whole.mean < 1e-14);
        // Oracle: two-pass variance of the exactly shifted values (the offset 1e9 is exact).
        let shifted: Vec<f64> = xs.iter().map(|x| x - 1e9).collect();
        let mean = shifted.iter().sum::<f64>() / 1000.0;
        let exact_m2: f64 = shifted.iter().map(|x| (x - mean).powi(2)).sum();
        // Tolerance: Welford on values near 1e9 loses about eps * 1e9 per step.
        assert!(
            (whole.m2 - exact_m2).abs() / exact_m2 < 1e-6,
            "{} vs {exact_m2}",
            whole.m2
        );
        assert!(
            (merged.m2 - exact_m2).abs() / exact_m2 < 1e-6,
            "{} vs {exact_m2}",
            merged.m2
        );
        let tail = whole.since(&a);
        assert_eq!(tail.count, 700);
        // Means near 1e9 carry about 1e-7 of rounding each: compare relatively (1e-14).
        assert!(
            (tail.mean - b.mean).abs() / b.mean < 1e-14,
            "{} vs {}",
            tail.mean,
            b.mean
        );
        assert!(
            (tail.m2 - b.m2).abs() / b.m2 < 1e-6,
            "{} vs {}",
            tail.m2,
            b.m2
        );
        // Exact mean and variance of 1..=5.
        let m = of(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(m.mean, 3.0);
        assert_eq!(m.variance(), Some(2.5));
    }
}
