//! Distances for large samples, where every test is significant: Wasserstein-1.

use super::distribution::Distribution1d;

/// Wasserstein-1 distance `∫ |F_a(x) − F_b(x)| dx`, integrated exactly between the points
/// where either CDF jumps (exact for exact samples; within `(rank errors) × (range)` for
/// sketches). Infinite when either side holds an infinite value (moving mass to or from
/// infinity costs infinitely much; SciPy's `wasserstein_distance` gives inf too, or NaN when
/// both sides hold the same infinite mass). `None` when either side is empty.
#[must_use]
pub fn wasserstein(a: &dyn Distribution1d, b: &dyn Distribution1d) -> Option<f64> {
    if a.count() == 0 || b.count() == 0 {
        return None;
    }
    if a.has_infinite() || b.has_infinite() {
        return Some(f64::INFINITY);
    }
    let (sa, sb) = (a.steps(), b.steps());
    let mut total = 0.0;
    let mut previous: Option<(f64, f64)> = None;
    for (x, fa, fb) in super::kolmogorov::walk_steps(&sa, &sb) {
        if let Some((px, gap)) = previous
            && px.is_finite()
            && x.is_finite()
        {
            total += gap * (x - px);
        }
        previous = Some((x, (fa - fb).abs()));
    }
    Some(total)
}
