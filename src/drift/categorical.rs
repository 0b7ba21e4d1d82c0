//! Drift of categorical features: chi-square test of homogeneity, PSI over categories and
//! Jensen-Shannon distance.

use std::collections::BTreeMap;

use statrs::distribution::{ChiSquared, ContinuousCDF};

use super::psi::psi_from_shares;

/// Category counts of both windows over the union of categories (sorted by name), so that
/// categories unseen in one window count 0 there.
#[must_use]
pub fn align(
    reference: &BTreeMap<String, f64>,
    current: &BTreeMap<String, f64>,
) -> (Vec<String>, Vec<f64>, Vec<f64>) {
    let mut names: Vec<String> = reference.keys().chain(current.keys()).cloned().collect();
    names.sort();
    names.dedup();
    let r = names
        .iter()
        .map(|n| reference.get(n).copied().unwrap_or(0.0))
        .collect();
    let c = names
        .iter()
        .map(|n| current.get(n).copied().unwrap_or(0.0))
        .collect();
    (names, r, c)
}

/// Pearson's chi-square test of homogeneity on the 2×K table of counts (no continuity
/// correction, as `scipy.stats.chi2_contingency(correction=False)`): `(statistic, dof,
/// p-value)`. Categories empty in both windows are left out.
#[must_use]
pub fn chi_square(reference: &[f64], current: &[f64]) -> (f64, usize, f64) {
    let (r_total, c_total): (f64, f64) = (reference.iter().sum(), current.iter().sum());
    let total = r_total + c_total;
    if r_total <= 0.0 || c_total <= 0.0 {
        return (0.0, 0, 1.0);
    }
    let mut statistic = 0.0;
    let mut cells = 0usize;
    for (&r, &c) in reference.iter().zip(current) {
        let column = r + c;
        if column <= 0.0 {
            continue;
        }
        cells += 1;
        let (er, ec) = (r_total * column / total, c_total * column / total);
        statistic += (r - er).powi(2) / er + (c - ec).powi(2) / ec;
    }
    let dof = cells.saturating_sub(1);
    if dof == 0 {
        return (0.0, 0, 1.0);
    }
    let p = ChiSquared::new(dof as f64).map_or(f64::NAN, |d| d.sf(statistic));
    (statistic, dof, p)
}

/// Counts as shares of their total (all 0 when the total is 0).
#[must_use]
pub fn shares(counts: &[f64]) -> Vec<f64> {
    normalise(counts)
}

fn normalise(counts: &[f64]) -> Vec<f64> {
    let total: f64 = counts.iter().sum();
    if total <= 0.0 {
        return vec![0.0; counts.len()];
    }
    counts.iter().map(|c| c / total).collect()
}

/// PSI over categories, each share floored at `epsilon`.
#[must_use]
pub fn categorical_psi(reference: &[f64], current: &[f64], epsilon: f64) -> f64 {
    psi_from_shares(&normalise(reference), &normalise(current), epsilon)
}

/// Jensen-Shannon distance with base-2 logarithms (in `[0, 1]`), as
/// `scipy.spatial.distance.jensenshannon(p, q, base=2)`.
#[must_use]
pub fn jensen_shannon(reference: &[f64], current: &[f64]) -> f64 {
    let (p, q) = (normalise(reference), normalise(current));
    let mut divergence = 0.0;
    for (&a, &b) in p.iter().zip(&q) {
        let m = 0.5 * (a + b);
        if a > 0.0 {
            divergence += 0.5 * a * (a / m).log2();
        }
        if b > 0.0 {
            divergence += 0.5 * b * (b / m).log2();
        }
    }
    divergence.max(0.0).sqrt()
}

/// The count table closest to no drift that two category summaries allow, for summaries
/// that lost mass (Misra-Gries past their limit of distinct values).
///
/// Each side is `(estimates, total, max_error)`: the estimated count of every value it
/// tracks (each an undercount by at most `max_error`; a value it does not track occurred at
/// most `max_error` times), the true number of values, and that bound. Over the union of the
/// tracked values, the lower share of each value is raised towards the other side's by at
/// most `max_error`, taking the mass from that side's untracked rest (largest gaps first,
/// while rest remains); what is left of each rest is the last cell. This is a greedy
/// approximation of the closest table, not a proven lower bound: the gap left in the rest
/// cell is not minimised, and a table consistent with the bounds can be somewhat closer to
/// no drift (a review found chi-square p 0.043 here against 0.16 for the closest table on
/// one small example), so a borderline drift claim on estimated counts deserves an exact
/// comparison. Returns the aligned counts, the last cell being the rest (present when either
/// rest is positive).
#[must_use]
pub fn least_drift_table(
    reference: (&BTreeMap<String, u64>, u64, u64),
    current: (&BTreeMap<String, u64>, u64, u64),
) -> (Vec<f64>, Vec<f64>) {
    let (r_est, r_total, r_error) = reference;
    let (c_est, c_total, c_error) = current;
    let mut names: Vec<&String> = r_est.keys().chain(c_est.keys()).collect();
    names.sort();
    names.dedup();
    let mut r: Vec<f64> = names
        .iter()
        .map(|n| r_est.get(*n).copied().unwrap_or(0) as f64)
        .collect();
    let mut c: Vec<f64> = names
        .iter()
        .map(|n| c_est.get(*n).copied().unwrap_or(0) as f64)
        .collect();
    let (rt, ct) = (r_total as f64, c_total as f64);
    let mut r_rest = (rt - r.iter().sum::<f64>()).max(0.0);
    let mut c_rest = (ct - c.iter().sum::<f64>()).max(0.0);
    if rt > 0.0 && ct > 0.0 {
        let gap = |i: usize, r: &[f64], c: &[f64]| c[i] / ct - r[i] / rt;
        let mut order: Vec<usize> = (0..names.len()).collect();
        order.sort_by(|&i, &j| gap(j, &r, &c).abs().total_cmp(&gap(i, &r, &c).abs()));
        for i in order {
            let g = gap(i, &r, &c);
            if g > 0.0 {
                let raise = (g * rt).min(r_error as f64).min(r_rest);
                r[i] += raise;
                r_rest -= raise;
            } else if g < 0.0 {
                let raise = (-g * ct).min(c_error as f64).min(c_rest);
                c[i] += raise;
                c_rest -= raise;
            }
        }
    }
    if r_rest > 0.0 || c_rest > 0.0 {
        r.push(r_rest);
        c.push(c_rest);
    }
    (r, c)
}
