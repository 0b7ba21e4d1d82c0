//! Laws of the sketches, checked against exact reference computations: merges keep the
//! count, missing count, minimum and maximum exact, lose no weight, keep the error bound and
//! agree in any order (within the bound); NaN and infinities; empty sketches; the
//! categorical profile's exactness below its limit and the Misra-Gries bound above it.
//! proptest runs from a fixed seed, so every run checks the same cases (set `SKETCH_SEED`
//! to another number to explore other cases).

use modelgate::sketch::{
    CategoricalProfile, FeatureProfile, KllSketch, NumericProfile, SketchError,
};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(
            std::env::var("SKETCH_SEED")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0x5eed_0f5c_e7c4),
        ),
        ..ProptestConfig::default()
    }
}

/// Values with duplicates, a few NaNs and infinities, and a wide range.
fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        20 => -1e3..1e3f64,
        4 => (-50i32..50).prop_map(f64::from),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => any::<f64>().prop_filter("not NaN", |x| !x.is_nan()),
    ]
}

fn sketch_of(k: u16, seed: u64, values: &[f64]) -> KllSketch {
    let mut s = KllSketch::with_seed(k, seed).expect("valid k");
    values.iter().for_each(|&v| s.update(v));
    s
}

/// The exact fraction of the non-NaN values `<= x`.
fn exact_rank(sorted: &[f64], x: f64) -> f64 {
    sorted.partition_point(|&v| v <= x) as f64 / sorted.len() as f64
}

fn non_nan_sorted(parts: &[Vec<f64>]) -> Vec<f64> {
    let mut all: Vec<f64> = parts
        .iter()
        .flatten()
        .copied()
        .filter(|v| !v.is_nan())
        .collect();
    all.sort_by(f64::total_cmp);
    all
}

/// Worst rank error of `s` over every data value as a query.
fn worst_rank_error(s: &KllSketch, sorted: &[f64]) -> f64 {
    sorted
        .iter()
        .map(|&x| (s.rank(x) - exact_rank(sorted, x)).abs())
        .fold(0.0, f64::max)
}

fn check_exact_parts(s: &KllSketch, parts: &[Vec<f64>]) {
    let sorted = non_nan_sorted(parts);
    let nans = parts.iter().flatten().filter(|v| v.is_nan()).count() as u64;
    assert_eq!(s.count(), sorted.len() as u64);
    assert_eq!(s.missing(), nans);
    assert_eq!(s.min(), sorted.first().copied());
    assert_eq!(s.max(), sorted.last().copied());
    // No mass lost: the retained weights add up to the count, each a power of two.
    let view = s.sorted_view();
    assert_eq!(view.total_weight(), s.count());
    assert_eq!(view.iter().map(|(_, w)| w).sum::<u64>(), s.count());
    assert!(view.iter().all(|(_, w)| w.is_power_of_two()));
    assert!(view.values().is_sorted());
    assert_eq!(view.len(), s.retained());
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn merges_are_exact_where_promised_and_within_the_bound(
        parts in prop::collection::vec(prop::collection::vec(value(), 0..1500), 1..6),
        k in prop_oneof![Just(16u16), Just(64), Just(200)],
        order in Just((0..6).collect::<Vec<usize>>()).prop_shuffle(),
    ) {
        let sketches: Vec<KllSketch> = parts
            .iter()
            .enumerate()
            .map(|(i, p)| sketch_of(k, i as u64, p))
            .collect();
        let order: Vec<usize> = order.into_iter().filter(|&i| i < parts.len()).collect();
        // In the shuffled order, one by one.
        let mut total = KllSketch::with_seed(k, 99).unwrap();
        for &i in &order {
            total.merge(&sketches[i]);
        }
        check_exact_parts(&total, &parts);
        // In index order, into the first.
        let mut forward = sketches[0].clone();
        for s in &sketches[1..] {
            forward.merge(s);
        }
        check_exact_parts(&forward, &parts);
        // The bound is kept, and both orders are within it of the truth (so within twice
        // it of each other).
        let bound = KllSketch::new(k).unwrap().normalized_rank_error();
        prop_assert_eq!(total.normalized_rank_error(), bound);
        prop_assert_eq!(forward.normalized_rank_error(), bound);
        let sorted = non_nan_sorted(&parts);
        let worst = worst_rank_error(&total, &sorted).max(worst_rank_error(&forward, &sorted));
        prop_assert!(worst <= bound, "worst rank error {} > {}", worst, bound);
        for &x in sorted.iter().step_by(7) {
            prop_assert!((total.rank(x) - forward.rank(x)).abs() <= 2.0 * bound);
        }
    }

    #[test]
    fn merge_is_commutative_and_associative_within_the_bound(
        a in prop::collection::vec(value(), 0..3000),
        b in prop::collection::vec(value(), 0..3000),
        c in prop::collection::vec(value(), 0..3000),
    ) {
        let k = 32;
        let (sa, sb, sc) = (sketch_of(k, 1, &a), sketch_of(k, 2, &b), sketch_of(k, 3, &c));
        let mut ab = sa.clone();
        ab.merge(&sb);
        let mut ba = sb.clone();
        ba.merge(&sa);
        let mut ab_c = ab.clone();
        ab_c.merge(&sc);
        let mut bc = sb.clone();
        bc.merge(&sc);
        let mut a_bc = sa.clone();
        a_bc.merge(&bc);
        let bound = sa.normalized_rank_error();
        let two = [a.clone(), b.clone()];
        let three = [a, b, c];
        for (s, parts) in [(&ab, &two[..]), (&ba, &two[..]), (&ab_c, &three[..]), (&a_bc, &three[..])] {
            check_exact_parts(s, parts);
            prop_assert_eq!(s.normalized_rank_error(), bound);
            let sorted = non_nan_sorted(parts);
            let worst = worst_rank_error(s, &sorted);
            prop_assert!(worst <= bound, "worst rank error {} > {}", worst, bound);
        }
        prop_assert_eq!(ab.count(), ba.count());
        prop_assert_eq!(ab_c.count(), a_bc.count());
        prop_assert_eq!(ab_c.min(), a_bc.min());
        prop_assert_eq!(ab_c.max(), a_bc.max());
    }

    #[test]
    fn small_streams_are_exact(values in prop::collection::vec(value(), 0..200)) {
        let s = sketch_of(256, 5, &values);
        prop_assert!(s.is_exact());
        let sorted = non_nan_sorted(&[values]);
        for &x in &sorted {
            prop_assert_eq!(s.rank(x), exact_rank(&sorted, x));
        }
        if let (Some(&lo), Some(&hi)) = (sorted.first(), sorted.last()) {
            prop_assert_eq!(s.quantile(0.0), Some(lo));
            prop_assert_eq!(s.quantile(1.0), Some(hi));
            prop_assert_eq!(s.quantile(0.5), Some(sorted[(sorted.len() - 1) / 2]));
        }
    }

    #[test]
    fn categorical_is_exact_below_the_limit(
        values in prop::collection::vec(0usize..40, 0..2000),
        limit in 40usize..60,
    ) {
        let mut p = CategoricalProfile::new(limit).unwrap();
        let mut exact = std::collections::BTreeMap::<String, u64>::new();
        for v in &values {
            let name = if *v == 0 { String::new() } else { format!("v{v}") };
            p.update(&name);
            *exact.entry(name).or_default() += 1;
        }
        prop_assert!(p.is_exact());
        prop_assert_eq!(p.max_error(), 0);
        prop_assert_eq!(p.other(), 0);
        prop_assert_eq!(p.frequencies(), exact);
    }

    #[test]
    fn categorical_misra_gries_bound_holds_above_the_limit(
        parts in prop::collection::vec(
            prop::collection::vec((0u32..12, 0u32..400), 0..3000), 1..4),
        limits in prop::collection::vec(4usize..24, 3),
    ) {
        // Skewed: a value below 12 half of the time, one of 400 otherwise.
        let name = |(hot, cold): (u32, u32)| if cold % 2 == 0 { format!("h{hot}") } else { format!("c{cold}") };
        let mut exact = std::collections::BTreeMap::<String, u64>::new();
        let mut profiles = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let mut p = CategoricalProfile::new(limits[i % limits.len()]).unwrap();
            for &pair in part {
                let v = name(pair);
                p.update(&v);
                *exact.entry(v).or_default() += 1;
            }
            profiles.push(p);
        }
        let mut total = profiles[0].clone();
        for p in &profiles[1..] {
            total.merge(p);
        }
        let n: u64 = exact.values().sum();
        let m = total.max_distinct() as u64;
        prop_assert_eq!(m, *limits[..parts.len().min(limits.len())].iter().min().unwrap() as u64);
        prop_assert_eq!(total.count(), n);
        prop_assert!(total.distinct() as u64 <= m);
        prop_assert!(total.max_error() <= n / (m + 1));
        let estimates = total.frequencies();
        for (value, &truth) in &exact {
            let estimate = estimates.get(value).copied().unwrap_or(0);
            prop_assert!(estimate <= truth, "{}: {} > {}", value, estimate, truth);
            prop_assert!(truth - estimate <= total.max_error(), "{}: {} vs {}", value, estimate, truth);
        }
        prop_assert_eq!(total.other() + estimates.values().sum::<u64>(), n);
    }
}

#[test]
fn nan_is_missing_and_infinities_are_values() {
    let mut s = KllSketch::with_seed(8, 1).unwrap();
    s.update(f64::NAN);
    s.update_missing();
    assert!(s.is_empty());
    assert_eq!((s.count(), s.missing()), (0, 2));
    for _ in 0..30 {
        s.update(f64::INFINITY);
        s.update(1.0);
        s.update(f64::NEG_INFINITY);
    }
    assert_eq!(s.count(), 90);
    assert_eq!(s.min(), Some(f64::NEG_INFINITY));
    assert_eq!(s.max(), Some(f64::INFINITY));
    assert_eq!(s.quantile(0.0), Some(f64::NEG_INFINITY));
    assert_eq!(s.quantile(1.0), Some(f64::INFINITY));
    assert_eq!(s.rank(f64::INFINITY), 1.0);
    assert_eq!(s.rank(-1e308), s.rank(f64::NEG_INFINITY));
    assert!((s.rank(f64::NEG_INFINITY) - 1.0 / 3.0).abs() <= s.normalized_rank_error());
    assert!((s.rank(1.0) - 2.0 / 3.0).abs() <= s.normalized_rank_error());
    assert!(s.rank(f64::NAN).is_nan());
    assert_eq!(s.sorted_view().total_weight(), 90);

    let mut only_inf = KllSketch::default();
    only_inf.update(f64::INFINITY);
    assert_eq!(only_inf.min(), Some(f64::INFINITY));
    assert_eq!(only_inf.quantile(0.5), Some(f64::INFINITY));
    assert_eq!(only_inf.rank(1e300), 0.0);
    let mut only_neg_inf = KllSketch::default();
    only_neg_inf.update(f64::NEG_INFINITY);
    assert_eq!(only_neg_inf.max(), Some(f64::NEG_INFINITY));
    assert_eq!(only_neg_inf.rank(f64::NEG_INFINITY), 1.0);

    // The moments leave infinities out.
    let mut p = NumericProfile::default();
    for x in [1.0, 2.0, f64::INFINITY, 3.0, f64::NAN] {
        p.update(x);
    }
    assert_eq!((p.count(), p.missing(), p.outside_moments()), (4, 1, 1));
    assert_eq!(p.mean(), Some(2.0));
    assert_eq!(p.variance(), Some(1.0));
    assert_eq!(p.max(), Some(f64::INFINITY));
}

#[test]
fn empty_sketches_answer_without_panicking() {
    let mut s = KllSketch::default();
    assert!(s.is_empty());
    assert_eq!((s.count(), s.missing(), s.retained()), (0, 0, 0));
    assert_eq!((s.min(), s.max()), (None, None));
    assert_eq!(s.rank(0.0), 0.0);
    assert_eq!(s.cdf(f64::INFINITY), 0.0);
    assert_eq!(s.quantile(0.5), None);
    assert_eq!(s.quantile(0.0), None);
    assert!(s.sorted_view().is_empty());
    assert_eq!(s.sorted_view().quantile(0.5), None);
    assert!(s.normalized_rank_error() > 0.0);
    let empty = KllSketch::default();
    s.merge(&empty);
    assert!(s.is_empty());
    s.update(4.0);
    s.merge(&empty);
    assert_eq!(s.count(), 1);
    let mut e = KllSketch::default();
    e.merge(&s);
    assert_eq!((e.count(), e.min(), e.max()), (1, Some(4.0), Some(4.0)));
    // Quantiles outside [0, 1] or NaN are refused.
    for q in [-0.1, 1.1, f64::NAN] {
        assert_eq!(s.quantile(q), None);
    }
    assert!(matches!(
        KllSketch::new(7),
        Err(SketchError::InvalidK { k: 7 })
    ));
    assert!(KllSketch::new(8).is_ok() && KllSketch::new(u16::MAX).is_ok());
    assert!(CategoricalProfile::new(0).is_err());
    let c = CategoricalProfile::default();
    assert_eq!((c.count(), c.other(), c.max_error()), (0, 0, 0));
    assert!(c.frequencies().is_empty() && c.is_exact());
}

#[test]
fn the_same_seed_and_values_give_the_same_sketch() {
    let values: Vec<f64> = (0..100_000u64)
        .map(|i| ((i * 7919) % 10_007) as f64)
        .collect();
    let (a, b) = (sketch_of(64, 3, &values), sketch_of(64, 3, &values));
    assert_eq!(a, b);
    assert_eq!(a.to_bytes(), b.to_bytes());
    let c = sketch_of(64, 4, &values);
    assert_ne!(a, c, "another seed flips other coins");
}

#[test]
fn the_view_is_cached_until_the_next_mutation() {
    let mut s = KllSketch::with_seed(64, 1).unwrap();
    (0..10_000).for_each(|i| s.update(f64::from(i)));
    let before = s.rank(5000.0);
    let ptr = s.sorted_view().values().as_ptr();
    assert_eq!(s.rank(5000.0), before);
    assert_eq!(
        s.sorted_view().values().as_ptr(),
        ptr,
        "reused, not rebuilt"
    );
    (0..10_000).for_each(|_| s.update(-1.0));
    assert!((s.rank(-1.0) - 0.5).abs() <= s.normalized_rank_error());
    assert_eq!(s.sorted_view().total_weight(), 20_000);
}

#[test]
fn feature_profiles_merge_by_kind() {
    let mut numeric = FeatureProfile::numeric();
    let mut categorical = FeatureProfile::categorical();
    numeric.update_number(1.5);
    numeric.update_category("oops"); // wrong kind: missing
    categorical.update_category("fr");
    categorical.update_number(2.0); // wrong kind: missing
    assert_eq!((numeric.count(), numeric.missing()), (1, 1));
    assert_eq!((categorical.count(), categorical.missing()), (1, 1));
    let before = numeric.clone();
    assert!(matches!(
        numeric.merge(&categorical),
        Err(SketchError::KindMismatch {
            into: "numeric",
            from: "categorical"
        })
    ));
    assert_eq!(numeric, before);
    let mut other = FeatureProfile::numeric();
    for x in [2.5, 3.5] {
        other.update_number(x);
    }
    numeric.merge(&other).unwrap();
    let p = numeric.as_numeric().unwrap();
    assert_eq!(
        (p.count(), p.mean(), p.variance()),
        (3, Some(2.5), Some(1.0))
    );
    assert_eq!((p.min(), p.max()), (Some(1.5), Some(3.5)));
    assert!(categorical.as_numeric().is_none());
    assert_eq!(categorical.as_categorical().unwrap().estimate("fr"), 1);
}

/// Finite values too large for a Welford step (`f64::MAX`, `1e200`) enter the sketch but not
/// the moments, so the profile stays finite and decodes; a decoded profile whose moments
/// could only come from such values is refused.
#[test]
fn huge_finite_values_stay_out_of_the_moments() {
    for values in [
        vec![f64::MAX, -f64::MAX, 1.0, 3.0],
        vec![1e200, -1e200, 3e200, 1.0, 3.0],
    ] {
        let mut p = NumericProfile::default();
        for &x in &values {
            p.update(x);
        }
        assert_eq!(p.count(), values.len() as u64);
        assert_eq!(p.outside_moments(), values.len() as u64 - 2);
        assert_eq!(p.mean(), Some(2.0));
        let bytes = FeatureProfile::Numeric(p.clone()).to_bytes();
        let decoded = FeatureProfile::from_bytes(&bytes).expect("a profile decodes");
        assert_eq!(decoded, FeatureProfile::Numeric(p));
    }
    // At the bound itself, merges of far-apart profiles stay finite and decode.
    let mut low = NumericProfile::default();
    let mut high = NumericProfile::default();
    for _ in 0..1000 {
        low.update(-modelgate::sketch::MAX_MOMENT_VALUE);
        high.update(modelgate::sketch::MAX_MOMENT_VALUE);
    }
    low.merge(&high);
    assert!(low.variance().is_some_and(f64::is_finite));
    let bytes = FeatureProfile::Numeric(low).to_bytes();
    assert!(FeatureProfile::from_bytes(&bytes).is_ok());

    // Moments with a mean of 1e300 decode no more (later updates would overflow them).
    let mut p = NumericProfile::default();
    p.update(1.0);
    let json = serde_json::to_string(&FeatureProfile::Numeric(p)).expect("serialises");
    let forged = json.replacen("\"mean\":1.0", "\"mean\":1e300", 1);
    assert_ne!(forged, json, "the serialised form names the mean: {json}");
    assert!(serde_json::from_str::<FeatureProfile>(&forged).is_err());
}
