//! Distances for large samples, where every test is significant: Wasserstein-1.

use super::distribution::Distribution1d;

/// Wasserstein-1 distance `∫ |F_a(x) − F_b(x)| dx`, integrated exactly between the points
/// where either CDF jumps (exact for exact samples; within `(rank errors) × (range)` for
/// sketches). Infinite values are left out of the integral. `None` when either side is
/// empty.
#[must_use]
pub fn wasserstein(a: &dyn Distribution1d, b: &dyn Distribution1d) -> Option<f64> {
    if a.count() == 0 || b.count() == 0 {
        return None;
    }
    let mut points: Vec<f64> = a
        .support()
        .into_iter()
        .chain(b.support())
        .filter(|x| x.is_finite())
        .collect();
    points.sort_by(f64::total_cmp);
    points.dedup();
    let mut total = 0.0;
    for pair in points.windows(2) {
        let gap = (a.cdf(pair[0]) - b.cdf(pair[0])).abs();
        total += gap * (pair[1] - pair[0]);
    }
    Some(total)
}
