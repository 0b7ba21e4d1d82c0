//! The `growthbook` hash scheme against GrowthBook's own Python SDK (the oracle), bit for bit:
//! same variation, same in/out decision and the same hash value for 10,000 random keys per
//! setting (ASCII, accented, CJK and emoji keys), over several weights, coverages and
//! namespaces.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::{Rng, oracle_python};
use modelgate::route::{
    ExperimentConfig, NamespaceConfig, RampStepConfig, Reason, Router, RouterConfig, TimeText,
    VariantConfig,
};

struct Setting {
    seed: &'static str,
    /// The GrowthBook experiment's weights, in variation order.
    weights: Vec<f64>,
    coverage: f64,
    namespace: Option<(&'static str, f64, f64)>,
    /// `(strategy, candidate index, percent)` for a two-variant `canary` or `gradual` split,
    /// whose GrowthBook equivalent has the weights above; `None` for `ab` with those weights.
    ramp: Option<(&'static str, usize, f64)>,
}

fn settings() -> Vec<Setting> {
    vec![
        Setting {
            seed: "ranker",
            weights: vec![0.5, 0.5],
            coverage: 1.0,
            namespace: None,
            ramp: None,
        },
        Setting {
            seed: "checkout-2026",
            weights: vec![0.34, 0.33, 0.33],
            coverage: 0.8,
            namespace: None,
            ramp: None,
        },
        Setting {
            seed: "pricing",
            weights: vec![0.9, 0.1],
            coverage: 0.25,
            namespace: None,
            ramp: None,
        },
        Setting {
            seed: "colors",
            weights: vec![0.1, 0.2, 0.3, 0.4],
            coverage: 0.5,
            namespace: Some(("search", 0.25, 0.75)),
            ramp: None,
        },
        Setting {
            seed: "été-ünïcode-😀",
            weights: vec![0.2, 0.2, 0.2, 0.2, 0.2],
            coverage: 1.0,
            namespace: Some(("ns", 0.0, 0.3)),
            ramp: None,
        },
        Setting {
            seed: "tiny",
            weights: vec![0.995, 0.005],
            coverage: 0.05,
            namespace: None,
            ramp: None,
        },
        // The candidate listed first: the ramp keeps the variants' config order.
        Setting {
            seed: "s-grad",
            weights: vec![0.3, 0.7],
            coverage: 0.8,
            namespace: None,
            ramp: Some(("gradual", 0, 30.0)),
        },
        Setting {
            seed: "s-grad",
            weights: vec![0.3, 0.7],
            coverage: 0.8,
            namespace: None,
            ramp: Some(("canary", 0, 30.0)),
        },
        Setting {
            seed: "later-candidate",
            weights: vec![0.85, 0.15],
            coverage: 1.0,
            namespace: None,
            ramp: Some(("gradual", 1, 15.0)),
        },
    ]
}

#[test]
fn growthbook_mode_matches_the_growthbook_sdk() {
    let mut oracle = Command::new(oracle_python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/oracle/growthbook_oracle.py"
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the GrowthBook oracle");
    let mut to_oracle = oracle.stdin.take().expect("stdin");
    let mut from_oracle = BufReader::new(oracle.stdout.take().expect("stdout"));
    let mut rng = Rng(0x6b00_c0de);
    let mut compared = 0usize;
    let mut in_experiment = 0usize;
    for (n, setting) in settings().into_iter().enumerate() {
        let keys: Vec<String> = (0..10_000).map(|_| rng.key()).collect();
        let case = serde_json::json!({
            "seed": setting.seed,
            "weights": setting.weights,
            "coverage": setting.coverage,
            "namespace": setting.namespace.map(|(name, s, e)| serde_json::json!([name, s, e])),
            "keys": keys,
        });
        writeln!(to_oracle, "{case}").expect("write to oracle");
        to_oracle.flush().expect("flush");
        let mut line = String::new();
        from_oracle.read_line(&mut line).expect("read oracle");
        let answer: serde_json::Value = serde_json::from_str(&line).expect("oracle JSON");
        let results = answer["results"].as_array().expect("results");

        let config = RouterConfig {
            experiments: vec![ExperimentConfig {
                name: format!("setting-{n}"),
                salt: Some(setting.seed.into()),
                hash: Some("growthbook".into()),
                coverage: Some(setting.coverage),
                namespace: setting.namespace.map(|(name, start, end)| NamespaceConfig {
                    name: name.into(),
                    start,
                    end,
                }),
                variants: setting
                    .weights
                    .iter()
                    .enumerate()
                    .map(|(i, &w)| VariantConfig {
                        name: format!("v{i}"),
                        weight: setting.ramp.is_none().then_some(w),
                        model: None,
                    })
                    .collect(),
                strategy: setting.ramp.map(|(strategy, _, _)| strategy.into()),
                candidate: setting.ramp.map(|(_, c, _)| format!("v{c}")),
                percent: setting.ramp.filter(|r| r.0 == "canary").map(|(_, _, p)| p),
                schedule: setting
                    .ramp
                    .filter(|r| r.0 == "gradual")
                    .map(|(_, _, percent)| RampStepConfig {
                        at: TimeText::Text("2020-01-01T00:00:00Z".into()),
                        percent,
                    })
                    .into_iter()
                    .collect(),
                ..ExperimentConfig::default()
            }],
        };
        let router = Router::new(config).expect("valid config");
        let experiment = router
            .experiment(&format!("setting-{n}"))
            .expect("configured");
        let current = router.current();
        let compiled = current.experiment(experiment).expect("compiled");
        for (key, expected) in keys.iter().zip(results) {
            let expected_in = expected[0].as_bool().expect("bool");
            let expected_variation = expected[1].as_u64().expect("int") as usize;
            let got = router.route(experiment, key);
            assert_eq!(
                got.in_experiment(),
                expected_in,
                "setting {n}, key {key:?}: in_experiment"
            );
            if expected_in {
                let index = compiled
                    .variants()
                    .iter()
                    .position(|v| Some(v.id()) == got.variant)
                    .expect("variant");
                assert_eq!(
                    index, expected_variation,
                    "setting {n}, key {key:?}: variation"
                );
                assert_eq!(
                    Some(got.bucket),
                    expected[2].as_f64(),
                    "setting {n}, key {key:?}: hash value"
                );
                in_experiment += 1;
            } else {
                assert!(matches!(
                    got.reason,
                    Reason::NotCovered | Reason::OutsideNamespace | Reason::EmptyKey
                ));
            }
            compared += 1;
        }
    }
    drop(to_oracle);
    assert!(oracle.wait().expect("oracle exit").success());
    assert_eq!(compared, 90_000);
    assert!(
        in_experiment > 20_000,
        "the settings must put many keys in the experiment, got {in_experiment}"
    );
}

#[test]
fn non_ascii_keys_hash_as_utf16_units() {
    // Values from GrowthBook's Python SDK 4.0 (UTF-16 units, like the JavaScript SDK):
    // seed "ranker", hash version 2.
    for (key, bucket) in [
        ("user-1", 0.018),
        ("user-2", 0.4485),
        ("ü-é", 0.7533),
        ("😀", 0.1464),
    ] {
        assert_eq!(
            modelgate::hash::growthbook_hash_v2("ranker", key),
            bucket,
            "{key}"
        );
    }
    // Hash version 1, used by the namespace check.
    assert_eq!(modelgate::hash::growthbook_hash_v1("😀", "ranker"), 0.497);
}
