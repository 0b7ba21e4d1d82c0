//! Benjamini-Hochberg adjustment for testing many features at once.

/// Benjamini-Hochberg adjusted p-values (the same as `statsmodels`' `fdr_bh`): a feature is
/// significant at false discovery rate `alpha` when its adjusted value is below `alpha`.
/// NaN p-values are treated as 1.
#[must_use]
pub fn benjamini_hochberg(p_values: &[f64]) -> Vec<f64> {
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    let p = |i: usize| {
        if p_values[i].is_nan() {
            1.0
        } else {
            p_values[i].clamp(0.0, 1.0)
        }
    };
    order.sort_by(|&a, &b| p(a).total_cmp(&p(b)));
    let mut adjusted = vec![1.0; m];
    let mut running = 1.0f64;
    for (rank, &i) in order.iter().enumerate().rev() {
        running = running.min(p(i) * m as f64 / (rank + 1) as f64);
        adjusted[i] = running.min(1.0);
    }
    adjusted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_statsmodels_fdr_bh() {
        // statsmodels.stats.multitest.multipletests([0.01, 0.04, 0.03, 0.2], method="fdr_bh")[1]
        let adjusted = benjamini_hochberg(&[0.01, 0.04, 0.03, 0.2]);
        for (got, want) in adjusted.iter().zip([
            0.04,
            0.053_333_333_333_333_33,
            0.053_333_333_333_333_33,
            0.2,
        ]) {
            assert!((got - want).abs() < 1e-12, "{adjusted:?}");
        }
        assert!(benjamini_hochberg(&[]).is_empty());
        assert_eq!(benjamini_hochberg(&[f64::NAN]), vec![1.0]);
    }
}
