//! The router's guarantees, as property tests: determinism, uniformity, monotone ramps,
//! removal and reordering stability, independence of exposure and arms, and namespaces.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::{Rng, chi_square_p};
use modelgate::route::{
    ExperimentConfig, ManualClock, NamespaceConfig, RampStepConfig, Router, RouterConfig, TimeText,
    VariantConfig,
};
use proptest::prelude::*;

fn experiment(name: &str, hash: &str, weights: &[(String, f64)]) -> ExperimentConfig {
    ExperimentConfig {
        name: name.into(),
        hash: Some(hash.into()),
        variants: weights
            .iter()
            .map(|(n, w)| VariantConfig {
                name: n.clone(),
                weight: Some(*w),
                model: None,
            })
            .collect(),
        ..ExperimentConfig::default()
    }
}

fn router(experiments: Vec<ExperimentConfig>) -> Router {
    Router::new(RouterConfig { experiments }).expect("valid config")
}

/// The variant name each key gets in experiment `name` (None: not in the experiment).
fn assign(router: &Router, name: &str, keys: &[String]) -> Vec<Option<Arc<str>>> {
    let id = router.experiment(name).expect("configured");
    keys.iter()
        .map(|k| {
            router
                .route(id, k)
                .variant
                .map(|v| router.variant_name(v).expect("name"))
        })
        .collect()
}

fn keys(seed: u64, n: usize) -> Vec<String> {
    let mut rng = Rng(seed);
    (0..n).map(|_| rng.key()).collect()
}

fn named(weights: &[f64]) -> Vec<(String, f64)> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| (format!("arm-{i}"), w))
        .collect()
}

fn chi_square_against(
    counts: &HashMap<Option<Arc<str>>, u64>,
    expected: &[(Option<&str>, f64)],
    total: u64,
) -> f64 {
    let mut statistic = 0.0;
    for (name, share) in expected {
        let observed = counts.get(&name.map(Arc::from)).copied().unwrap_or(0) as f64;
        let e = share * total as f64;
        statistic += (observed - e).powi(2) / e;
    }
    assert_eq!(
        counts.values().sum::<u64>(),
        total,
        "every key lands in an expected cell"
    );
    chi_square_p(statistic, (expected.len() - 1) as f64)
}

#[test]
fn shares_match_weights() {
    let ks = keys(1, 100_000);
    let settings: Vec<(&str, Vec<f64>, f64)> = vec![
        ("xxh3", vec![0.5, 0.5], 1.0),
        ("xxh3", vec![0.9, 0.1], 1.0),
        ("xxh3", (1..=10).map(f64::from).collect(), 1.0),
        ("xxh3", vec![0.2, 0.3, 0.5], 0.4),
        ("xxh3", vec![0.999, 0.001], 1.0),
        ("growthbook", vec![0.25, 0.25, 0.5], 0.7),
        ("unleash", vec![0.1, 0.6, 0.3], 0.8),
    ];
    for (hash, weights, coverage) in settings {
        let mut e = experiment("shares", hash, &named(&weights));
        e.coverage = Some(coverage);
        let r = router(vec![e]);
        let mut counts: HashMap<Option<Arc<str>>, u64> = HashMap::new();
        for v in assign(&r, "shares", &ks) {
            *counts.entry(v).or_default() += 1;
        }
        let sum: f64 = weights.iter().sum();
        let names: Vec<String> = (0..weights.len()).map(|i| format!("arm-{i}")).collect();
        let mut expected: Vec<(Option<&str>, f64)> = names
            .iter()
            .zip(&weights)
            .map(|(n, w)| (Some(n.as_str()), coverage * w / sum))
            .collect();
        if coverage < 1.0 {
            expected.push((None, 1.0 - coverage));
        }
        let p = chi_square_against(&counts, &expected, ks.len() as u64);
        assert!(
            p > 0.001,
            "{hash} {weights:?} coverage {coverage}: chi-square p = {p}, counts {counts:?}"
        );
    }
}

#[test]
fn canary_and_gradual_shares_match_their_percent() {
    let ks = keys(2, 100_000);
    let clock = Arc::new(ManualClock::new(0));
    let mut canary = experiment("canary", "xxh3", &named(&[1.0, 1.0]));
    canary.strategy = Some("canary".into());
    canary.percent = Some(5.0);
    canary.variants.iter_mut().for_each(|v| v.weight = None);
    let mut gradual = canary.clone();
    gradual.name = "gradual".into();
    gradual.strategy = Some("gradual".into());
    gradual.percent = None;
    gradual.schedule = vec![RampStepConfig {
        at: TimeText::Text("1970-01-01T00:00:01Z".into()),
        percent: 25.0,
    }];
    let r = Router::with_clock(
        RouterConfig {
            experiments: vec![canary, gradual],
        },
        clock.clone(),
    )
    .expect("valid");
    for (name, percent) in [("canary", 5.0), ("gradual", 0.0)] {
        let mut counts: HashMap<Option<Arc<str>>, u64> = HashMap::new();
        for v in assign(&r, name, &ks) {
            *counts.entry(v).or_default() += 1;
        }
        if percent == 0.0 {
            assert_eq!(
                counts.get(&Some(Arc::from("arm-1"))),
                None,
                "before the first step nobody gets the candidate"
            );
            continue;
        }
        let p = chi_square_against(
            &counts,
            &[
                (Some("arm-0"), 1.0 - percent / 100.0),
                (Some("arm-1"), percent / 100.0),
            ],
            100_000,
        );
        assert!(p > 0.001, "{name}: p = {p}");
    }
    clock.set(1000);
    let mut counts: HashMap<Option<Arc<str>>, u64> = HashMap::new();
    for v in assign(&r, "gradual", &ks) {
        *counts.entry(v).or_default() += 1;
    }
    let p = chi_square_against(
        &counts,
        &[(Some("arm-0"), 0.75), (Some("arm-1"), 0.25)],
        100_000,
    );
    assert!(p > 0.001, "gradual at 25%: p = {p}");
}

#[test]
fn gradual_ramp_follows_the_clock_and_never_takes_the_candidate_back() {
    let ks = keys(3, 20_000);
    let clock = Arc::new(ManualClock::new(0));
    let text = r#"
        [[experiments]]
        name = "ramp"
        strategy = "gradual"
        schedule = [
          { at = "2026-12-01T00:00:00Z", percent = 5 },
          { at = 2026-12-02T00:00:00Z, percent = 25 },
          { at = "2026-12-03T00:00:00+01:00", percent = 50 },
          { at = "2026-12-04T00:00:00Z", percent = 100 },
        ]
        [[experiments.variants]]
        name = "production"
        [[experiments.variants]]
        name = "candidate"
    "#;
    let config = RouterConfig::from_toml(text).expect("parses");
    let r = Router::with_clock(config, clock.clone()).expect("valid");
    let day = 86_400_000i64;
    let start = modelgate::route::parse_rfc3339_ms("2026-12-01T00:00:00Z").expect("time");
    let mut previous: Option<Vec<Option<Arc<str>>>> = None;
    for (t, expected_share) in [
        (start - 1, 0.0),
        (start, 0.05),
        (start + day, 0.25),
        (start + 2 * day - 3_600_000, 0.5),
        (start + 3 * day, 1.0),
    ] {
        clock.set(t);
        let now = assign(&r, "ramp", &ks);
        let share = now
            .iter()
            .filter(|v| v.as_deref() == Some("candidate"))
            .count() as f64
            / ks.len() as f64;
        assert!(
            (share - expected_share).abs() < 0.02,
            "at {t}: share {share}, expected {expected_share}"
        );
        if let Some(before) = &previous {
            for (b, n) in before.iter().zip(&now) {
                if b.as_deref() == Some("candidate") {
                    assert_eq!(
                        n.as_deref(),
                        Some("candidate"),
                        "a key lost the candidate as the ramp rose"
                    );
                }
            }
        }
        previous = Some(now);
    }
}

/// `weights` as whole thousandths of their sum that total exactly 1000 (the largest takes
/// the rounding), as Unleash's weights always are.
fn thousandths(weights: &[f64]) -> Vec<f64> {
    let sum: f64 = weights.iter().sum();
    let mut ints: Vec<i64> = weights
        .iter()
        .map(|w| (w / sum * 1000.0).round() as i64)
        .collect();
    let total: i64 = ints.iter().sum();
    *ints.iter_mut().max().expect("weights") += 1000 - total;
    ints.iter().map(|&i| i as f64 / 1000.0).collect()
}

fn weights_strategy() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(0.01f64..10.0, 2..8)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn same_config_and_key_give_the_same_variant(weights in weights_strategy(), hash in prop::sample::select(vec!["xxh3", "growthbook", "unleash"]), seed in any::<u64>()) {
        let weights = match hash {
            "growthbook" => { let s: f64 = weights.iter().sum(); weights.iter().map(|w| w / s).collect() }
            "unleash" => thousandths(&weights),
            _ => weights,
        };
        let ks = keys(seed, 500);
        let a = router(vec![experiment("det", hash, &named(&weights))]);
        let b = router(vec![experiment("det", hash, &named(&weights))]);
        let first = assign(&a, "det", &ks);
        prop_assert_eq!(&first, &assign(&b, "det", &ks));
        prop_assert_eq!(&first, &assign(&a, "det", &ks));
    }

    #[test]
    fn raising_a_variants_weight_never_takes_keys_from_it(weights in weights_strategy(), pick in any::<prop::sample::Index>(), factor in 1.0f64..20.0, shrink in 0.05f64..1.0, seed in any::<u64>()) {
        let ks = keys(seed, 2000);
        let c = pick.index(weights.len());
        let before = router(vec![experiment("ramp", "xxh3", &named(&weights))]);
        // The candidate grows, every other variant shrinks (or stays).
        let raised: Vec<f64> = weights.iter().enumerate().map(|(i, &w)| if i == c { w * factor } else { w * shrink }).collect();
        let after = router(vec![experiment("ramp", "xxh3", &named(&raised))]);
        let name = format!("arm-{c}");
        for (b, a) in assign(&before, "ramp", &ks).iter().zip(assign(&after, "ramp", &ks)) {
            if b.as_deref() == Some(name.as_str()) {
                prop_assert_eq!(a.as_deref(), Some(name.as_str()));
            }
        }
    }

    #[test]
    fn raising_a_canary_never_takes_the_candidate_back(p1 in 0.0f64..100.0, p2 in 0.0f64..100.0, seed in any::<u64>()) {
        let (low, high) = if p1 <= p2 { (p1, p2) } else { (p2, p1) };
        let ks = keys(seed, 2000);
        let make = |p: f64| {
            let mut e = experiment("canary", "xxh3", &named(&[1.0, 1.0]));
            e.strategy = Some("canary".into());
            e.percent = Some(p);
            e.variants.iter_mut().for_each(|v| v.weight = None);
            router(vec![e])
        };
        for (b, a) in assign(&make(low), "canary", &ks).iter().zip(assign(&make(high), "canary", &ks)) {
            if b.as_deref() == Some("arm-1") {
                prop_assert_eq!(a.as_deref(), Some("arm-1"));
            }
        }
    }

    #[test]
    fn removing_a_variant_moves_only_its_keys(weights in prop::collection::vec(0.01f64..10.0, 3..8), pick in any::<prop::sample::Index>(), seed in any::<u64>()) {
        let ks = keys(seed, 2000);
        let all = named(&weights);
        let gone = pick.index(all.len());
        let mut fewer = all.clone();
        let removed = fewer.remove(gone).0;
        let before = assign(&router(vec![experiment("rm", "xxh3", &all)]), "rm", &ks);
        let after = assign(&router(vec![experiment("rm", "xxh3", &fewer)]), "rm", &ks);
        for (b, a) in before.iter().zip(&after) {
            if b.as_deref() != Some(removed.as_str()) {
                prop_assert_eq!(b, a);
            } else {
                prop_assert!(a.is_some() && a.as_deref() != Some(removed.as_str()));
            }
        }
    }

    #[test]
    fn reordering_variants_moves_nothing(weights in weights_strategy(), seed in any::<u64>()) {
        let ks = keys(seed, 1000);
        let forward = named(&weights);
        let mut backward = forward.clone();
        backward.reverse();
        prop_assert_eq!(
            assign(&router(vec![experiment("order", "xxh3", &forward)]), "order", &ks),
            assign(&router(vec![experiment("order", "xxh3", &backward)]), "order", &ks)
        );
    }

    #[test]
    fn coverage_and_arms_are_independent(weights in weights_strategy(), other in weights_strategy(), c1 in 0.0f64..=1.0, c2 in 0.0f64..=1.0, seed in any::<u64>()) {
        let ks = keys(seed, 2000);
        let (low, high) = if c1 <= c2 { (c1, c2) } else { (c2, c1) };
        let with = |w: &[f64], c: f64| {
            let mut e = experiment("cov", "xxh3", &named(w));
            e.coverage = Some(c);
            assign(&router(vec![e]), "cov", &ks)
        };
        // Raising coverage only adds keys, and never moves a key between arms.
        for (l, h) in with(&weights, low).iter().zip(with(&weights, high)) {
            if l.is_some() {
                prop_assert_eq!(l, &h);
            }
        }
        // Changing weights never changes who is exposed.
        let n = weights.len().min(other.len());
        for (a, b) in with(&weights[..n], low).iter().zip(with(&other[..n], low)) {
            prop_assert_eq!(a.is_some(), b.is_some());
        }
    }

    #[test]
    fn disjoint_namespace_ranges_never_share_a_key(cut in 0.0f64..=1.0, hash in prop::sample::select(vec!["xxh3", "growthbook", "unleash"]), seed in any::<u64>()) {
        let ks = keys(seed, 2000);
        let mut left = experiment("left", hash, &named(&[0.5, 0.5]));
        left.namespace = Some(NamespaceConfig { name: "shared".into(), start: 0.0, end: cut });
        let mut right = experiment("right", hash, &named(&[0.5, 0.5]));
        right.namespace = Some(NamespaceConfig { name: "shared".into(), start: cut, end: 1.0 });
        let r = router(vec![left, right]);
        let (l, rr) = (assign(&r, "left", &ks), assign(&r, "right", &ks));
        for (a, b) in l.iter().zip(&rr) {
            prop_assert!(!(a.is_some() && b.is_some()), "a key is in both experiments");
        }
        if hash != "unleash" || cut > 0.0 {
            // Every key lands in exactly one of them (both cover the whole namespace).
            for (a, b) in l.iter().zip(&rr) {
                prop_assert!(a.is_some() || b.is_some());
            }
        }
    }
}

#[test]
fn overrides_force_qa_keys_and_leave_others_alone() {
    let ks = keys(9, 2000);
    let mut plain = experiment("qa", "xxh3", &named(&[0.5, 0.5]));
    plain.coverage = Some(0.1);
    let mut forced = plain.clone();
    forced.overrides.insert("qa-user-1".into(), "arm-1".into());
    forced.overrides.insert(ks[0].clone(), "arm-0".into());
    let (p, f) = (router(vec![plain]), router(vec![forced]));
    let id = f.experiment("qa").expect("configured");
    let qa = f.route(id, "qa-user-1");
    assert_eq!(qa.reason, modelgate::route::Reason::Override);
    assert_eq!(
        f.variant_name(qa.variant.expect("forced")).as_deref(),
        Some("arm-1")
    );
    let (before, after) = (assign(&p, "qa", &ks), assign(&f, "qa", &ks));
    assert_eq!(after[0].as_deref(), Some("arm-0"));
    assert_eq!(before[1..], after[1..]);
}
