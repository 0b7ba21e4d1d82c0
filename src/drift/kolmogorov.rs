//! The two-sample Kolmogorov-Smirnov statistic and its asymptotic p-value.

use super::distribution::Distribution1d;

/// Survival function of the Kolmogorov distribution, `P(K > lambda)`, where
/// `K = sup |B(t)|` for a Brownian bridge `B`. Absolute error below 1e-12.
#[must_use]
pub fn kolmogorov_sf(lambda: f64) -> f64 {
    if lambda.is_nan() {
        return f64::NAN;
    }
    if lambda <= 0.0 {
        return 1.0;
    }
    if lambda < 1.0 {
        // P(K <= l) = sqrt(2 pi) / l * sum_{j>=1} exp(-(2j-1)^2 pi^2 / (8 l^2)): fast for small l.
        let factor = -std::f64::consts::PI * std::f64::consts::PI / (8.0 * lambda * lambda);
        let mut cdf = 0.0;
        for j in 1..=20 {
            let odd = (2 * j - 1) as f64;
            let term = (factor * odd * odd).exp();
            cdf += term;
            if term < 1e-17 {
                break;
            }
        }
        (1.0 - (2.0 * std::f64::consts::PI).sqrt() / lambda * cdf).clamp(0.0, 1.0)
    } else {
        // P(K > l) = 2 sum_{j>=1} (-1)^(j-1) exp(-2 j^2 l^2): fast for large l.
        let mut sf = 0.0;
        for j in 1..=100 {
            let jf = j as f64;
            let term = (-2.0 * jf * jf * lambda * lambda).exp();
            sf += if j % 2 == 1 { term } else { -term };
            if term < 1e-17 {
                break;
            }
        }
        (2.0 * sf).clamp(0.0, 1.0)
    }
}

/// The `lambda` with `kolmogorov_sf(lambda) = alpha`, by bisection (alpha in (0, 1)).
#[must_use]
pub fn kolmogorov_isf(alpha: f64) -> f64 {
    if !(alpha > 0.0 && alpha < 1.0) {
        return f64::NAN;
    }
    let (mut lo, mut hi) = (0.0f64, 10.0f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if kolmogorov_sf(mid) > alpha {
            lo = mid
        } else {
            hi = mid
        }
    }
    0.5 * (lo + hi)
}

/// The effective sample size `n·m/(n+m)` of a two-sample test.
#[must_use]
pub fn effective_size(n: u64, m: u64) -> f64 {
    if n == 0 || m == 0 {
        return 0.0;
    }
    let (n, m) = (n as f64, m as f64);
    n * m / (n + m)
}

/// `P(D_n > x)` for the one-sample two-sided KS statistic with `n` values: the Kolmogorov
/// limit with Pelz and Good's corrections in `1/√n`, `1/n` and `1/n^1.5` (as in Simard and
/// L'Ecuyer, 2011), and the exact Ruben-Gambino forms at the extremes. This is what SciPy's
/// `kstwo` uses for large `n`; absolute error below 1e-3 from `n` of about 15 on (SciPy
/// computes smaller `n` exactly; drift on fewer values is not meaningful anyway).
#[must_use]
pub fn ks_one_sample_sf(n: u64, x: f64) -> f64 {
    if n == 0 || x.is_nan() {
        return f64::NAN;
    }
    if x >= 1.0 {
        return 0.0;
    }
    if x <= 0.0 {
        return 1.0;
    }
    let nf = n as f64;
    let t = nf * x;
    if t <= 0.5 {
        return 1.0;
    }
    if t <= 1.0 {
        // P(D_n <= x) = n! / n^n · (2t − 1)^n.
        let log_cdf = log_factorial(n) - nf * nf.ln() + nf * (2.0 * t - 1.0).ln();
        return (1.0 - log_cdf.exp()).clamp(0.0, 1.0);
    }
    if t >= nf - 1.0 {
        return (2.0 * (1.0 - x).powf(nf)).clamp(0.0, 1.0);
    }
    if t * x >= 2.2 {
        // In the tail (p < 0.03), 1 − CDF would lose all relative precision. Twice the exact
        // one-sided Smirnov tail is exact from x = 1/2 and very close below; for large n its
        // sum gets long, and the limit with the finite-n correction z + 1/(6√n) is as good.
        if n <= 100_000 {
            return (2.0 * smirnov_sf(n, x)).clamp(0.0, 1.0);
        }
        return kolmogorov_sf(x * nf.sqrt() + 1.0 / (6.0 * nf.sqrt()));
    }
    (1.0 - pelz_good_cdf(nf, x)).clamp(0.0, 1.0)
}

/// The exact one-sided tail `P(D+_n >= x)` (Birnbaum and Tingey, 1951):
/// `x · Σ_{j=0}^{⌊n(1−x)⌋} C(n, j) (x + j/n)^(j−1) (1 − x − j/n)^(n−j)`, summed in logs.
fn smirnov_sf(n: u64, x: f64) -> f64 {
    use statrs::function::gamma::ln_gamma;
    let nf = n as f64;
    let last = (nf * (1.0 - x)).floor() as u64;
    let ln_n_factorial = ln_gamma(nf + 1.0);
    let mut total = 0.0;
    for j in 0..=last.min(n) {
        let jf = j as f64;
        let rest = 1.0 - x - jf / nf;
        let mut log_term = ln_n_factorial - ln_gamma(jf + 1.0) - ln_gamma(nf - jf + 1.0)
            + (jf - 1.0) * (x + jf / nf).ln();
        if j < n {
            if rest <= 0.0 {
                continue;
            }
            log_term += (nf - jf) * rest.ln();
        }
        total += log_term.exp();
    }
    x * total
}

fn log_factorial(n: u64) -> f64 {
    if n < 256 {
        (2..=n).map(|k| (k as f64).ln()).sum()
    } else {
        // Stirling's series; error below 1e-12 here.
        let nf = n as f64;
        nf * nf.ln() - nf + 0.5 * (2.0 * std::f64::consts::PI * nf).ln() + 1.0 / (12.0 * nf)
            - 1.0 / (360.0 * nf.powi(3))
    }
}

/// Pelz-Good: `P(D_n <= x) ≈ K0(z) + K1(z)/√n + K2(z)/n + K3(z)/n^1.5`, `z = x√n`.
fn pelz_good_cdf(n: f64, x: f64) -> f64 {
    use std::f64::consts::PI;
    let z = x * n.sqrt();
    let (z2, z3, z4, z6) = (z * z, z * z * z, z.powi(4), z.powi(6));
    let log_q = -PI * PI / (8.0 * z2);
    if log_q < -708.0 {
        return 0.0;
    }
    let q = log_q.exp();
    let (pi2, pi4, pi6) = (PI * PI, PI.powi(4), PI.powi(6));
    // Sums over odd m = 2k − 1 of c_i(m) · q^(m²).
    let mut sums = [0.0f64; 4];
    let terms = (16.0 * z / PI).ceil().max(1.0) as u64;
    for k in 1..=terms {
        let m = (2 * k - 1) as f64;
        let (m2, m4, m6) = (m * m, m.powi(4), m.powi(6));
        let weight = q.powf(m2);
        if weight == 0.0 {
            break;
        }
        sums[0] += weight;
        sums[1] += weight * (pi2 * m2 / 4.0 - z2);
        sums[2] += weight
            * (6.0 * z6
                + 2.0 * z4
                + (2.0 * z4 - 5.0 * z2) * pi2 * m2 / 4.0
                + pi4 * (1.0 - 2.0 * z2) * m4 / 16.0);
        sums[3] += weight
            * (-30.0 * z6 - 90.0 * z.powi(8)
                + pi2 * (135.0 * z4 - 96.0 * z6) * m2 / 4.0
                + pi4 * (212.0 * z4 - 60.0 * z2) * m4 / 16.0
                + pi6 * (5.0 - 30.0 * z2) * m6 / 64.0);
    }
    let root = (2.0 * PI).sqrt();
    let mut k = [
        root * sums[0] / z,
        root * sums[1] / (6.0 * z4),
        root * sums[2] / (72.0 * z.powi(7)),
        root * sums[3] / (6480.0 * z.powi(10)),
    ];
    // Terms over all integers k with q2 = exp(−π²/(2z²)).
    let q2 = (-pi2 / (2.0 * z2)).exp();
    let (mut extra2, mut extra3) = (0.0, 0.0);
    for j in 1..=terms {
        let j2 = (j * j) as f64;
        let weight = q2.powf(j2);
        if weight == 0.0 {
            break;
        }
        extra2 += j2 * weight;
        extra3 += (3.0 * z2 - pi2 * j2) * j2 * weight;
    }
    k[2] += extra2 * pi2 * root / (-36.0 * z3);
    k[3] += extra3 * pi2 * root / (216.0 * z6);
    k[0] + k[1] / n.sqrt() + k[2] / n + k[3] / n.powf(1.5)
}

/// Rounded effective sizes up to this one carry no evidence (see [`ks_p_value`]).
const MIN_EFFECTIVE_SIZE: u64 = 1;

/// The effective size rounded as the two-sample test uses it: half to even, as NumPy's
/// `np.round` in SciPy's `ks_2samp` (16.5 becomes 16, 0.5 becomes 0).
fn rounded_effective_size(n: u64, m: u64) -> u64 {
    effective_size(n, m).round_ties_even() as u64
}

/// Two-sided p-value of a two-sample KS statistic `d` with sizes `n` and `m`: the
/// one-sample distribution ([`ks_one_sample_sf`]) at the effective size `n·m/(n+m)`
/// (rounded half to even), as SciPy's `ks_2samp(method="asymp")` computes it. For large
/// samples this is the Kolmogorov limit `P(K > d·√(n·m/(n+m)))`. When the rounded effective
/// size is 0 or 1 (one value against any number, two against two, or an empty side) the
/// data cannot show anything: the p-value is 1, never a false alarm (there the one-sample
/// distribution gives 0 for complete separation, where SciPy's exact two-sample p-value is
/// 2/3 for one value against two; SciPy's asymptotic method gives NaN or 0).
#[must_use]
pub fn ks_p_value(d: f64, n: u64, m: u64) -> f64 {
    let en = rounded_effective_size(n, m);
    if en <= MIN_EFFECTIVE_SIZE {
        return 1.0;
    }
    ks_one_sample_sf(en, d.max(0.0))
}

/// The smallest `D` that is significant at level `alpha` for sizes `n` and `m`.
#[must_use]
pub fn ks_critical_value(alpha: f64, n: u64, m: u64) -> f64 {
    let en = rounded_effective_size(n, m);
    if en <= MIN_EFFECTIVE_SIZE || !(alpha > 0.0 && alpha < 1.0) {
        return f64::INFINITY;
    }
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if ks_one_sample_sf(en, mid) > alpha {
            lo = mid
        } else {
            hi = mid
        }
    }
    hi
}

/// The KS statistic `D = sup |F_a(x) - F_b(x)|`, evaluated at every point where either CDF
/// can jump (one merge pass over both step lists), with its error bound (the sum of the two
/// rank-error bounds).
#[must_use]
pub fn ks_statistic(a: &dyn Distribution1d, b: &dyn Distribution1d) -> (f64, f64) {
    let bound = a.rank_error() + b.rank_error();
    if a.count() == 0 || b.count() == 0 {
        return (0.0, bound);
    }
    let d = walk_steps(&a.steps(), &b.steps())
        .map(|(_, fa, fb)| (fa - fb).abs())
        .fold(0.0, f64::max);
    (d, bound)
}

/// Walks two step lists together: for every point of either, in ascending order, yields
/// `(x, F_a(x), F_b(x))`.
pub(crate) fn walk_steps<'a>(
    a: &'a [(f64, f64)],
    b: &'a [(f64, f64)],
) -> impl Iterator<Item = (f64, f64, f64)> + 'a {
    let (mut i, mut j) = (0usize, 0usize);
    let (mut fa, mut fb) = (0.0, 0.0);
    std::iter::from_fn(move || {
        // Steps are strictly increasing by contract; NaN steps are skipped so that a broken
        // implementation cannot stall the walk.
        while a.get(i).is_some_and(|s| s.0.is_nan()) {
            i += 1;
        }
        while b.get(j).is_some_and(|s| s.0.is_nan()) {
            j += 1;
        }
        let next_a = a.get(i).map(|s| s.0);
        let next_b = b.get(j).map(|s| s.0);
        let x = match (next_a, next_b) {
            (Some(x), Some(y)) => x.min(y),
            (Some(x), None) => x,
            (None, Some(y)) => y,
            (None, None) => return None,
        };
        if next_a == Some(x) {
            fa = a[i].1;
            i += 1;
        }
        if next_b == Some(x) {
            fb = b[j].1;
            j += 1;
        }
        Some((x, fa, fb))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kolmogorov_distribution_known_values() {
        // Classic critical values: P(K > 1.3581) = 0.05, P(K > 1.6276) = 0.01, P(K > 1.2238) = 0.10.
        assert!((kolmogorov_sf(1.358_099) - 0.05).abs() < 1e-6);
        assert!((kolmogorov_sf(1.627_624) - 0.01).abs() < 1e-6);
        assert!((kolmogorov_sf(1.223_848) - 0.10).abs() < 1e-6);
        // Both series agree where they meet.
        let (below, above) = (kolmogorov_sf(1.0 - 1e-12), kolmogorov_sf(1.0));
        assert!((below - above).abs() < 1e-9);
        assert!((kolmogorov_isf(0.05) - 1.358_099).abs() < 1e-5);
        assert_eq!(kolmogorov_sf(0.0), 1.0);
        assert!(kolmogorov_sf(10.0) < 1e-80);
    }
}
