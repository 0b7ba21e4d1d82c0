//! Bad configs are typed errors that name the experiment and the field; never a panic.

use modelgate::route::{
    ConfigError, ExperimentConfig, NamespaceConfig, RampStepConfig, Router, RouterConfig, TimeText,
    VariantConfig,
};
use proptest::prelude::*;

const TWO: &str = r#"
[[experiments.variants]]
name = "control"
[[experiments.variants]]
name = "candidate"
"#;

fn ab(weights: &str) -> String {
    let w: Vec<&str> = weights.split(',').collect();
    format!(
        "[[experiments]]\nname = \"exp\"\n[[experiments.variants]]\nname = \"control\"\nweight = {}\n[[experiments.variants]]\nname = \"candidate\"\nweight = {}\n",
        w[0], w[1]
    )
}

fn error_of(text: &str) -> ConfigError {
    match Router::from_toml(text) {
        Ok(_) => panic!("config was accepted:\n{text}"),
        Err(e) => e,
    }
}

#[test]
fn each_bad_config_names_experiment_and_field() {
    let cases: Vec<(String, &[&str])> = vec![
        (ab("-0.5, 0.5"), &["`exp`", "variants[0].weight", "-0.5"]),
        (ab("nan, 0.5"), &["`exp`", "variants[0].weight", "NaN"]),
        (ab("0.5, inf"), &["`exp`", "variants[1].weight", "inf"]),
        (ab("0, 0"), &["`exp`", "variants", "all be zero"]),
        (format!("[[experiments]]\nname = \"exp\"\nhash = \"md5\"\n{TWO}"), &["`exp`", "hash", "md5", "xxh3"]),
        (format!("[[experiments]]\nname = \"exp\"\nstrategy = \"yolo\"\n{TWO}"), &["`exp`", "strategy", "yolo"]),
        (format!("[[experiments]]\nname = \"exp\"\ncoverage = 1.5\n{TWO}"), &["`exp`", "coverage", "1.5"]),
        (format!("[[experiments]]\nname = \"exp\"\ncoverage = -0.1\n{TWO}"), &["`exp`", "coverage"]),
        (format!("[[experiments]]\nname = \"exp\"\ncoverage = nan\n{TWO}"), &["`exp`", "coverage", "NaN"]),
        (format!("[[experiments]]\nname = \"exp\"\n{TWO}\n[[experiments]]\nname = \"exp\"\n{TWO}"), &["`exp`", "twice"]),
        (
            "[[experiments]]\nname = \"exp\"\n[[experiments.variants]]\nname = \"same\"\n[[experiments.variants]]\nname = \"same\"\n".to_string(),
            &["`exp`", "variants[1].name", "same"],
        ),
        (
            format!(
                "[[experiments]]\nname = \"one\"\nnamespace = {{ name = \"ns\", start = 0.0, end = 0.6 }}\n{TWO}\n[[experiments]]\nname = \"two\"\nnamespace = {{ name = \"ns\", start = 0.5, end = 1.0 }}\n{TWO}"
            ),
            &["`one`", "`two`", "`ns`", "overlap"],
        ),
        (format!("[[experiments]]\nname = \"exp\"\nnamespace = {{ name = \"ns\", start = 0.7, end = 0.2 }}\n{TWO}"), &["`exp`", "namespace"]),
        (
            format!("[[experiments]]\nname = \"exp\"\nstrategy = \"gradual\"\nschedule = [{{ at = \"next tuesday\", percent = 5 }}]\n{TWO}"),
            &["`exp`", "schedule[0].at", "next tuesday"],
        ),
        (
            format!(
                "[[experiments]]\nname = \"exp\"\nstrategy = \"gradual\"\nschedule = [{{ at = \"2026-12-02T00:00:00Z\", percent = 5 }}, {{ at = \"2026-12-01T00:00:00Z\", percent = 10 }}]\n{TWO}"
            ),
            &["`exp`", "schedule[1].at", "increasing"],
        ),
        (format!("[[experiments]]\nname = \"exp\"\nstrategy = \"gradual\"\n{TWO}"), &["`exp`", "schedule"]),
        (format!("[[experiments]]\nname = \"exp\"\nstrategy = \"canary\"\n{TWO}"), &["`exp`", "percent"]),
        (format!("[[experiments]]\nname = \"exp\"\nstrategy = \"canary\"\npercent = 150\n{TWO}"), &["`exp`", "percent", "150"]),
        (format!("[[experiments]]\nname = \"exp\"\nstrategy = \"canary\"\npercent = 5\ncandidate = \"ghost\"\n{TWO}"), &["`exp`", "candidate", "ghost"]),
        (format!("[[experiments]]\nname = \"exp\"\nstrategy = \"immediate\"\n{TWO}"), &["`exp`", "target"]),
        (format!("[[experiments]]\nname = \"exp\"\nstrategy = \"immediate\"\ntarget = \"ghost\"\n{TWO}"), &["`exp`", "target", "ghost"]),
        (format!("[[experiments]]\nname = \"exp\"\npercent = 5\n{TWO}"), &["`exp`", "percent", "canary"]),
        (format!("[[experiments]]\nname = \"exp\"\n{TWO}\n[experiments.overrides]\n\"qa\" = \"ghost\"\n"), &["`exp`", "overrides", "ghost"]),
        (ab("0.2, 0.2").replace("name = \"exp\"\n", "name = \"exp\"\nhash = \"growthbook\"\n"), &["`exp`", "sum to 1"]),
        ("[[experiments]]\nname = \"exp\"\n".to_string(), &["`exp`", "variants", "at least one"]),
        (format!("[[experiments]]\nname = \"\"\n{TWO}"), &["name", "empty"]),
        (format!("[[experiments]]\nname = \"exp\"\nweigth = 3\n{TWO}"), &["`exp`", "weigth"]),
        (
            format!("[[experiments]]\nname = \"first\"\n{TWO}\n[[experiments]]\nname = \"second\"\n[[experiments.variants]]\nname = \"a\"\nwieght = 1\n"),
            &["`second`", "wieght"],
        ),
        (ab("1e308, 1e308"), &["`exp`", "variants", "finite sum"]),
        (
            format!("[[experiments]]\nname = \"first\"\n{TWO}\n[[experiments]]\nsalt = \"nameless\"\n{TWO}"),
            &["missing field `name`"],
        ),
        (
            "[[experiments]]\nname = \"exp\"\n[[experiments.variants]]\nname = \" \"\n".to_string(),
            &["`exp`", "variants[0].name", "blank"],
        ),
        (
            "[[experiments]]\nname = \"exp\"\nhash = \"growthbook\"\nstrategy = \"immediate\"\n[[experiments.variants]]\nname = \"only\"\n".to_string(),
            &["`exp`", "variants", "at least two"],
        ),
        (
            "[[experiments]]\nname = \"exp\"\nhash = \"unleash\"\n[[experiments.variants]]\nname = \"a\"\nweight = 1\n[[experiments.variants]]\nname = \"b\"\nweight = 1\n[[experiments.variants]]\nname = \"c\"\nweight = 1\n[[experiments.variants]]\nname = \"d\"\nweight = 3\n".to_string(),
            &["`exp`", "variants", "167 + 167 + 167 + 500 = 1001"],
        ),
        ("[[experiments]]\nname = \"exp\"\ncoverage = \"all\"\n".to_string(), &["coverage"]),
        // An unknown hash next to a namespace is reported as itself, not as a clash of
        // hash families.
        (
            format!(
                "[[experiments]]\nname = \"e\"\nhash = \"bogus\"\nnamespace = {{ name = \"n\", start = 0.0, end = 0.5 }}\n{TWO}\n[[experiments]]\nname = \"f\"\nhash = \"growthbook\"\nnamespace = {{ name = \"n\", start = 0.5, end = 1.0 }}\n{TWO}"
            ),
            &["`e`", "hash", "bogus"],
        ),
        // A header written `[[ experiments ]]` still counts, so the error names `second`.
        (
            format!("[[experiments]]\nname = \"first\"\n{TWO}\n[[ experiments ]]\nname = \"second\"\n[[experiments.variants]]\nname = \"a\"\nwieght = 1\n"),
            &["`second`", "wieght"],
        ),
        (
            format!("[[experiments]]\nname = \"exp\"\nstrategy = \"gradual\"\nschedule = [{{ at = \"2026-01-02T00:00:00\", percent = 5 }}]\n{TWO}"),
            &["`exp`", "schedule[0].at", "time zone"],
        ),
        ("this is not toml".to_string(), &["parse"]),
    ];
    for (text, needles) in cases {
        let message = error_of(&text).to_string();
        for needle in needles {
            assert!(
                message.contains(needle),
                "message {message:?} should contain {needle:?}; config:\n{text}"
            );
        }
    }
}

#[test]
fn a_rejected_store_keeps_the_current_config() {
    let router = Router::from_toml(&ab("1, 1")).expect("valid");
    let id = router.experiment("exp").expect("configured");
    let before = router.route(id, "user-1");
    assert!(
        router
            .store(RouterConfig::from_toml(&ab("nan, 1")).expect("parses"))
            .is_err()
    );
    assert_eq!(router.route(id, "user-1"), before);
    // A rejected config gives no ids to its names.
    let bad =
        RouterConfig::from_toml(&ab("-1, 1").replace("\"exp\"", "\"newcomer\"")).expect("parses");
    assert!(router.store(bad).is_err());
    assert_eq!(router.experiment("newcomer"), None);
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(-0.0),
        Just(1.0),
        -2.0f64..2.0,
        any::<f64>()
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("a".to_string()),
        Just("b".to_string()),
        "[a-c]{0,3}",
        ".{0,8}"
    ]
}

prop_compose! {
    fn arbitrary_experiment()(
        name in text(), salt in proptest::option::of(text()), hash in proptest::option::of(prop::sample::select(vec!["xxh3", "growthbook", "unleash", "bogus"])),
        coverage in proptest::option::of(float()), namespace in proptest::option::of((text(), float(), float())),
        strategy in proptest::option::of(prop::sample::select(vec!["ab", "immediate", "canary", "gradual", "?"])),
        percent in proptest::option::of(float()), candidate in proptest::option::of(text()), target in proptest::option::of(text()),
        schedule in prop::collection::vec((prop::sample::select(vec!["2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z", "bad", ""]), float()), 0..3),
        variants in prop::collection::vec((text(), proptest::option::of(float())), 0..5),
        overrides in prop::collection::btree_map(text(), text(), 0..3),
    ) -> ExperimentConfig {
        ExperimentConfig {
            name, salt, hash: hash.map(Into::into), coverage,
            namespace: namespace.map(|(name, start, end)| NamespaceConfig { name, start, end }),
            strategy: strategy.map(Into::into), percent, candidate, target,
            schedule: schedule.into_iter().map(|(at, percent)| RampStepConfig { at: TimeText::Text(at.into()), percent }).collect(),
            variants: variants.into_iter().map(|(name, weight)| VariantConfig { name, weight, model: None }).collect(),
            overrides,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_configs_never_panic(experiments in prop::collection::vec(arbitrary_experiment(), 0..3), keys in prop::collection::vec(".{0,12}", 1..8)) {
        if let Ok(router) = Router::new(RouterConfig { experiments }) {
            for key in &keys {
                router.route_all(key, |e, a| {
                    if let Some(v) = a.variant {
                        assert!(e.variant(v).is_some());
                    }
                    assert!((0.0..1.0).contains(&a.bucket), "bucket {} out of [0, 1)", a.bucket);
                });
            }
        }
    }
}

#[test]
fn growthbook_and_native_experiments_cannot_share_a_namespace() {
    let text = format!(
        "[[experiments]]\nname = \"native\"\nnamespace = {{ name = \"ns\", start = 0.0, end = 0.5 }}\n{TWO}\n[[experiments]]\nname = \"gb\"\nhash = \"growthbook\"\nnamespace = {{ name = \"ns\", start = 0.5, end = 1.0 }}\n{TWO}"
    );
    let message = error_of(&text).to_string();
    assert!(
        message.contains("`gb`") && message.contains("namespace") && message.contains("`native`"),
        "{message}"
    );
}

#[test]
fn candidate_percent_follows_the_named_candidate() {
    for (candidate, hash, coverage) in [
        ("control", "xxh3", 1.0),
        ("control", "growthbook", 1.0),
        ("control", "growthbook", 0.0),
        ("control", "unleash", 0.5),
        ("candidate", "xxh3", 0.3),
    ] {
        for configured in [5.0, 10.0, 33.35] {
            let text = format!(
                "[[experiments]]\nname = \"exp\"\nhash = \"{hash}\"\ncoverage = {coverage:?}\nstrategy = \"canary\"\npercent = {configured:?}\ncandidate = \"{candidate}\"\n{TWO}"
            );
            let router = Router::from_toml(&text).expect("valid");
            let percent = router.current().experiments()[0]
                .candidate_percent(router.clock())
                .expect("canary");
            // Exactly what the config says, whatever the coverage or the scheme's rounding.
            assert_eq!(percent, configured, "{hash}, candidate {candidate}");
        }
    }
}

/// A schema error at an experiment's own header (a missing name) must not be blamed on the
/// experiment before it.
#[test]
fn an_error_at_a_header_names_no_other_experiment() {
    let text = format!(
        "[[experiments]]\nname = \"first\"\n{TWO}\n[[experiments]]\nsalt = \"nameless\"\n{TWO}"
    );
    let message = error_of(&text).to_string();
    assert!(message.contains("missing field `name`"), "{message}");
    assert!(!message.contains("`first`"), "{message}");
}
