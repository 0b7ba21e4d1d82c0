//! Reports and control documents round-trip through JSON and binary; malformed, hostile or
//! invalid bodies are errors (never panics); merged reports add up exactly.

mod common;

use std::time::Duration;

use modelgate::agent::{Agent, Feature, FeatureKind, FeatureValue, Outcome};
use modelgate::route::RouterConfig;
use modelgate::wire::{
    CONTENT_TYPE_CONTROL, CONTENT_TYPE_JSON, CONTENT_TYPE_REPORT, Control, ModelAssignment, Report,
    WIRE_VERSION, WireError, WireLimits,
};
use proptest::prelude::*;

const CONFIG: &str = common::RANKER_CONFIG;

fn agent() -> Agent<u8> {
    Agent::builder()
        .experiments_toml(CONFIG)
        .expect("parses")
        .model("r@1", 1)
        .model("r@2", 2)
        .features(vec![
            Feature {
                name: "price".into(),
                kind: FeatureKind::Numeric,
            },
            Feature {
                name: "country".into(),
                kind: FeatureKind::Categorical,
            },
        ])
        .build()
        .expect("valid")
}

fn traffic(agent: &Agent<u8>, from: u64, to: u64) {
    let ranker = agent.experiment("ranker").expect("configured");
    for i in from..to {
        let d = agent.route(ranker, &format!("user-{i}"));
        agent.record(
            &d,
            Duration::from_micros(100 + i % 900),
            if i % 50 == 0 {
                Err(modelgate::metrics::ErrorKind::Model)
            } else {
                Ok(())
            },
        );
        agent.record_outcome_for(&d, Outcome::Binary(i % 4 == 0));
        agent.record_outcome_for(&d, Outcome::Continuous((i % 13) as f64));
        agent.record_prediction(&d, (i % 100) as f64 / 100.0);
        agent.record_features(
            &d,
            &[
                FeatureValue::Number((i % 1000) as f64),
                FeatureValue::Category(["FR", "DE"][(i % 2) as usize]),
            ],
        );
    }
}

fn report() -> Report {
    let agent = agent();
    traffic(&agent, 0, 5_000);
    Report::new("agent-1", "report-1", agent.snapshot())
}

#[test]
fn reports_round_trip_in_both_encodings() {
    let r = report();
    let limits = WireLimits::default();
    let json = r.to_json().expect("encodes");
    let binary = r.to_binary().expect("encodes");
    assert!(
        binary.len() < json.len(),
        "binary {} bytes, JSON {} bytes",
        binary.len(),
        json.len()
    );
    assert_eq!(
        Report::decode(CONTENT_TYPE_JSON, &json, &limits).expect("valid JSON"),
        r
    );
    assert_eq!(
        Report::decode("application/json; charset=utf-8", &json, &limits).expect("with parameters"),
        r
    );
    assert_eq!(
        Report::decode(CONTENT_TYPE_REPORT, &binary, &limits).expect("valid binary"),
        r
    );
}

#[test]
fn bad_bodies_are_errors() {
    let r = report();
    let limits = WireLimits::default();
    let json = r.to_json().expect("encodes");
    let binary = r.to_binary().expect("encodes");
    assert!(matches!(
        Report::decode(CONTENT_TYPE_JSON, b"{\"version\": 1", &limits),
        Err(WireError::Malformed { .. })
    ));
    assert!(matches!(
        Report::decode(CONTENT_TYPE_REPORT, &binary[..binary.len() / 2], &limits),
        Err(WireError::Malformed { .. })
    ));
    assert!(matches!(
        Report::decode("text/plain", &json, &limits),
        Err(WireError::UnsupportedContentType(_))
    ));
    let small = WireLimits {
        max_bytes: 100,
        ..WireLimits::default()
    };
    assert!(matches!(
        Report::decode(CONTENT_TYPE_JSON, &json, &small),
        Err(WireError::TooLarge { .. })
    ));
    // A binary body that claims a 2^60-element sequence fails fast, without allocating it.
    let mut hostile = vec![1u8];
    hostile.extend([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10]);
    assert!(Report::decode(CONTENT_TYPE_REPORT, &hostile, &limits).is_err());

    let mut v = r.clone();
    v.version = 99;
    assert!(matches!(
        Report::decode(CONTENT_TYPE_JSON, &v.to_json().expect("json"), &limits),
        Err(WireError::Version { found: 99 })
    ));
    let invalid = |mutate: &dyn Fn(&mut Report)| {
        let mut bad = r.clone();
        mutate(&mut bad);
        let err = Report::decode(
            CONTENT_TYPE_REPORT,
            &bad.to_binary().expect("binary"),
            &limits,
        )
        .expect_err("invalid");
        assert!(matches!(err, WireError::Invalid(_)), "{err}");
    };
    invalid(&|b| b.agent_id.clear());
    invalid(&|b| b.snapshot.window_start_ms = b.snapshot.window_end_ms + 1);
    invalid(&|b| {
        b.snapshot.experiments[0].variants[0]
            .metrics
            .binary
            .successes = u64::MAX
    });
    // The agent counts every call once, as a success or as an error: more errors than
    // requests is a corrupt report.
    invalid(&|b| {
        let m = &mut b.snapshot.experiments[0].variants[0].metrics;
        m.errors.model = m.requests + 1;
    });
    invalid(&|b| {
        let m = &mut b.snapshot.experiments[0].variants[0].metrics;
        m.errors.timeout = m.requests;
        m.errors.other = 1;
    });
    invalid(&|b| {
        b.snapshot.experiments[0].variants[0]
            .metrics
            .latency
            .buckets
            .reverse()
    });
    invalid(&|b| b.snapshot.experiments[0].variants[0].metrics.outcome.mean = f64::NAN);
    invalid(&|b| {
        let twin = b.snapshot.experiments[0].clone();
        b.snapshot.experiments.push(twin);
    });
    invalid(&|b| b.snapshot.experiments[0].variants[0].name = "x".repeat(1000));

    // The message names the variant; as many errors as requests (every call failed) is fine.
    let mut failing = r.clone();
    let e = &mut failing.snapshot.experiments[0];
    let at = format!("{}/{}", e.name, e.variants[0].name);
    let v = &mut e.variants[0];
    v.metrics.errors = Default::default();
    v.metrics.errors.internal = v.metrics.requests + 1;
    let err = Report::decode(
        CONTENT_TYPE_JSON,
        &failing.to_json().expect("json"),
        &limits,
    )
    .expect_err("more errors than requests");
    assert!(err.to_string().contains(&at), "{err}");
    assert!(err.to_string().contains("errors"), "{err}");
    let v = &mut failing.snapshot.experiments[0].variants[0];
    v.metrics.errors.internal = v.metrics.requests;
    Report::decode(
        CONTENT_TYPE_JSON,
        &failing.to_json().expect("json"),
        &limits,
    )
    .expect("every call failed");
}

#[test]
fn a_merged_report_equals_one_report_of_both_windows() {
    let (split, whole) = (agent(), agent());
    traffic(&split, 0, 3_000);
    let mut first = Report::new("a", "r1", split.snapshot());
    traffic(&split, 3_000, 6_000);
    let second = Report::new("a", "r2", split.snapshot());
    first.absorb(&second);
    traffic(&whole, 0, 6_000);
    let all = whole.snapshot();
    for e in &all.experiments {
        let merged = first
            .snapshot
            .experiments
            .iter()
            .find(|x| x.name == e.name)
            .expect("experiment");
        for v in &e.variants {
            let m = &merged
                .variants
                .iter()
                .find(|x| x.name == v.name)
                .expect("variant")
                .metrics;
            assert_eq!(m.requests, v.metrics.requests);
            assert_eq!(m.errors, v.metrics.errors);
            assert_eq!(m.latency, v.metrics.latency);
            assert_eq!(m.binary, v.metrics.binary);
            assert_eq!(m.outcome.count, v.metrics.outcome.count);
            assert!((m.outcome.mean - v.metrics.outcome.mean).abs() < 1e-9);
            assert_eq!(m.feature_rows, v.metrics.feature_rows);
            assert_eq!(m.features[0].count(), v.metrics.features[0].count());
        }
    }
    assert_eq!(first.report_id, "r1");
}

#[test]
fn control_round_trips_and_rejects_bad_configs() {
    let limits = WireLimits::default();
    let mut models = std::collections::BTreeMap::new();
    models.insert(
        "ranker/candidate".to_string(),
        ModelAssignment {
            reference: "r@3".into(),
            location: Some("/models/r3".into()),
        },
    );
    let c = Control {
        version: WIRE_VERSION,
        etag: "7".into(),
        experiments: RouterConfig::from_toml(CONFIG).expect("parses"),
        models,
    };
    assert_eq!(
        Control::decode(CONTENT_TYPE_JSON, &c.to_json().expect("json"), &limits).expect("valid"),
        c
    );
    assert_eq!(
        Control::decode(
            CONTENT_TYPE_CONTROL,
            &c.to_binary().expect("binary"),
            &limits
        )
        .expect("valid"),
        c
    );
    let mut bad = c.clone();
    bad.experiments.experiments[0].variants[0].weight = Some(-1.0);
    assert!(matches!(
        Control::decode(CONTENT_TYPE_JSON, &bad.to_json().expect("json"), &limits),
        Err(WireError::InvalidControl(_))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let limits = WireLimits::default();
        let _ = Report::decode(CONTENT_TYPE_REPORT, &bytes, &limits);
        let _ = Report::decode(CONTENT_TYPE_JSON, &bytes, &limits);
        let _ = Control::decode(CONTENT_TYPE_CONTROL, &bytes, &limits);
    }

    #[test]
    fn corrupted_reports_never_panic(flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let limits = WireLimits::default();
        let mut binary = report_bytes().clone();
        for (at, byte) in flips {
            let i = at.index(binary.len());
            binary[i] ^= byte;
        }
        let _ = Report::decode(CONTENT_TYPE_REPORT, &binary, &limits);
    }
}

fn report_bytes() -> &'static Vec<u8> {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES.get_or_init(|| report().to_binary().expect("binary"))
}

#[test]
fn merged_reports_keep_exact_labelled_counts_within_the_limit() {
    use modelgate::agent::{LabelledBatch, LabelledRecord};
    use modelgate::wire::MAX_LABELLED;
    let batch = |seen: u64, kept: usize, label: f64| LabelledBatch {
        seen,
        records: (0..kept)
            .map(|i| LabelledRecord {
                at_ms: i as i64,
                features: vec![i as f64],
                label,
            })
            .collect(),
    };
    let mut a = Report::new("agent", "r-1", Default::default());
    a.snapshot.labelled = batch(30_000, MAX_LABELLED, 0.0);
    let mut b = Report::new("agent", "r-2", Default::default());
    b.snapshot.labelled = batch(10_000, MAX_LABELLED, 1.0);
    a.absorb(&b);
    assert_eq!(a.snapshot.labelled.seen, 40_000);
    assert_eq!(a.snapshot.labelled.records.len(), MAX_LABELLED);
    // Each batch keeps a share proportional to what it saw: 3/4 and 1/4.
    let from_b = a
        .snapshot
        .labelled
        .records
        .iter()
        .filter(|r| r.label == 1.0)
        .count();
    assert_eq!(from_b, MAX_LABELLED / 4);
    assert!(a.validate(&modelgate::wire::WireLimits::default()).is_ok());
    // More kept than seen, or a NaN, is refused on decode.
    let mut bad = a.clone();
    bad.snapshot.labelled.seen = 1;
    assert!(
        bad.validate(&modelgate::wire::WireLimits::default())
            .is_err()
    );
    let mut bad = a.clone();
    bad.snapshot.labelled.records[0].label = f64::NAN;
    assert!(
        bad.validate(&modelgate::wire::WireLimits::default())
            .is_err()
    );
    // A record time before the epoch, or over a day after the window's end, is refused:
    // no training window would ever hold it.
    for at_ms in [
        -1,
        i64::MIN,
        a.snapshot.window_end_ms + 86_400_001,
        i64::MAX,
    ] {
        let mut bad = a.clone();
        bad.snapshot.labelled.records[0].at_ms = at_ms;
        let e = bad
            .validate(&modelgate::wire::WireLimits::default())
            .expect_err("out of range");
        assert!(e.to_string().contains("labelled record at"), "{e}");
    }
    let mut late = a;
    late.snapshot.labelled.records[0].at_ms = late.snapshot.window_end_ms + 86_400_000;
    assert!(
        late.validate(&modelgate::wire::WireLimits::default())
            .is_ok()
    );
}
