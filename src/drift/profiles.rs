//! Drift between feature profiles (the sketches agents ship and the reference profile of a
//! model's training data), the form the sidecar's drift trigger and `/metrics` use.

use super::{
    Comparison, FeatureDrift, Thresholds, assess, compare_categorical_profiles, compare_numeric,
};
use crate::sketch::FeatureProfile;

/// Name of the cell pooling categories past a profile's exact limit.
pub const OTHER: &str = "(other)";

/// Compares each named feature's current profile with its reference profile and gives the
/// verdicts (p-values adjusted across the features). A feature whose profiles are of
/// different kinds, or either of which holds no values, is left out.
#[must_use]
pub fn compare_profiles(
    features: &[(&str, &FeatureProfile, &FeatureProfile)],
    thresholds: &Thresholds,
) -> Vec<FeatureDrift> {
    let mut comparisons = Vec::with_capacity(features.len());
    for (name, reference, current) in features {
        if reference.count() == 0 || current.count() == 0 {
            continue;
        }
        let comparison = match (reference, current) {
            (FeatureProfile::Numeric(r), FeatureProfile::Numeric(c)) => {
                let std = r.variance().map(f64::sqrt);
                Comparison::Numeric(compare_numeric(r.sketch(), c.sketch(), std, thresholds))
            }
            (FeatureProfile::Categorical(r), FeatureProfile::Categorical(c)) => {
                Comparison::Categorical(compare_categorical_profiles(r, c, thresholds))
            }
            _ => continue,
        };
        comparisons.push(((*name).to_owned(), comparison));
    }
    assess(comparisons, thresholds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifted_feature_drifts_and_the_same_one_does_not() {
        let mut reference = FeatureProfile::numeric();
        let mut same = FeatureProfile::numeric();
        let mut shifted = FeatureProfile::numeric();
        for i in 0..5000 {
            let x = f64::from(i % 1000) / 1000.0;
            reference.update_number(x);
            same.update_number(x);
            shifted.update_number(x + 0.3);
        }
        let verdicts = compare_profiles(
            &[
                ("same", &reference, &same),
                ("shifted", &reference, &shifted),
            ],
            &Thresholds::default(),
        );
        assert_eq!(verdicts.len(), 2);
        assert_eq!(verdicts[0].verdict, super::super::Verdict::None);
        assert_eq!(verdicts[1].verdict, super::super::Verdict::Drift);
    }
}
