//! What the drift statistics need from a distribution: a CDF, quantiles, the points where the
//! CDF can jump, and how far its ranks may be off.

/// A one-dimensional empirical distribution, exact or sketched.
pub trait Distribution1d {
    /// Number of values.
    fn count(&self) -> u64;
    /// Fraction of values `<= x`.
    fn cdf(&self, x: f64) -> f64;
    /// The smallest value `v` with `cdf(v) >= q`, `None` when empty or `q` outside `[0, 1]`.
    fn quantile(&self, q: f64) -> Option<f64>;
    /// The distinct values where the CDF can jump, sorted ascending (for a sketch: its
    /// retained items).
    fn support(&self) -> Vec<f64>;
    /// The bound on `|cdf(x) - true cdf(x)|` over all `x` (0 for exact data).
    fn rank_error(&self) -> f64;

    /// Whether any value is infinite. The default looks at the ends of the support;
    /// sketches that may have dropped an extreme value answer from their exact min and max.
    fn has_infinite(&self) -> bool {
        let support = self.support();
        support.first().is_some_and(|x| x.is_infinite())
            || support.last().is_some_and(|x| x.is_infinite())
    }

    /// The CDF as steps: `(value, cdf(value))` at each distinct value where it jumps,
    /// ascending. The default asks [`Distribution1d::cdf`] at every support point;
    /// implementations that hold a sorted view give it in one pass.
    fn steps(&self) -> Vec<(f64, f64)> {
        self.support()
            .into_iter()
            .map(|x| (x, self.cdf(x)))
            .collect()
    }
}

/// Steps of a sorted sequence with cumulative weights: the last cumulative weight of each
/// distinct value, divided by the total.
pub(crate) fn steps_from_sorted(
    values: &[f64],
    cumulative: impl Fn(usize) -> f64,
    total: f64,
) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(values.len());
    if total <= 0.0 {
        return out;
    }
    for (i, &v) in values.iter().enumerate() {
        let c = cumulative(i) / total;
        match out.last_mut() {
            Some(last) if last.0 == v => last.1 = c,
            _ => out.push((v, c)),
        }
    }
    out
}

/// An exact sample: all values kept, sorted. For `--exact` and for tests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExactSample {
    sorted: Vec<f64>,
}

impl ExactSample {
    /// The sample of `values`, dropping NaN (missing); infinities are kept.
    #[must_use]
    pub fn new(mut values: Vec<f64>) -> Self {
        values.retain(|v| !v.is_nan());
        values.sort_by(f64::total_cmp);
        ExactSample { sorted: values }
    }

    /// The sorted values.
    #[must_use]
    pub fn values(&self) -> &[f64] {
        &self.sorted
    }
}

impl Distribution1d for ExactSample {
    fn count(&self) -> u64 {
        self.sorted.len() as u64
    }

    fn cdf(&self, x: f64) -> f64 {
        if self.sorted.is_empty() || x.is_nan() {
            return 0.0;
        }
        self.sorted.partition_point(|v| *v <= x) as f64 / self.sorted.len() as f64
    }

    fn quantile(&self, q: f64) -> Option<f64> {
        if self.sorted.is_empty() || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let n = self.sorted.len();
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        self.sorted.get(rank - 1).copied()
    }

    fn support(&self) -> Vec<f64> {
        let mut s = self.sorted.clone();
        s.dedup();
        s
    }

    fn rank_error(&self) -> f64 {
        0.0
    }

    fn has_infinite(&self) -> bool {
        self.sorted.first().is_some_and(|x| x.is_infinite())
            || self.sorted.last().is_some_and(|x| x.is_infinite())
    }

    fn steps(&self) -> Vec<(f64, f64)> {
        steps_from_sorted(&self.sorted, |i| (i + 1) as f64, self.sorted.len() as f64)
    }
}
