//! The agent's metrics: exact totals under concurrent recording and snapshots, latency
//! quantiles within 1% of exact, moments against a two-pass computation, and counted
//! rejections for bad input.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use modelgate::agent::{Agent, Feature, FeatureKind, FeatureValue, Outcome, Snapshot};
use modelgate::metrics::{ErrorKind, VariantMetrics};
use modelgate::route::ManualClock;
use modelgate::wire::{CONTENT_TYPE_JSON, CONTENT_TYPE_REPORT, Report, WireLimits};

const CONFIG: &str = common::RANKER_CONFIG;

fn agent() -> Agent<&'static str> {
    Agent::builder()
        .experiments_toml(CONFIG)
        .expect("parses")
        .model("r@1", "one")
        .model("r@2", "two")
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

fn totals(snapshots: &[Snapshot]) -> std::collections::BTreeMap<String, VariantMetrics> {
    let mut out: std::collections::BTreeMap<String, VariantMetrics> = Default::default();
    for s in snapshots {
        for e in &s.experiments {
            for v in &e.variants {
                out.entry(v.name.clone()).or_default().merge(&v.metrics);
            }
        }
    }
    out
}

#[test]
fn concurrent_records_and_snapshots_add_up_exactly() {
    let agent = Arc::new(agent());
    let ranker = agent.experiment("ranker").expect("configured");
    let stop = Arc::new(AtomicBool::new(false));
    let snapshotter = {
        let (agent, stop) = (agent.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut snapshots = Vec::new();
            while !stop.load(Ordering::Acquire) {
                snapshots.push(agent.snapshot());
            }
            snapshots
        })
    };
    let writers: Vec<_> = (0..4u64)
        .map(|t| {
            let agent = agent.clone();
            std::thread::spawn(move || {
                let mut expected: std::collections::BTreeMap<String, (u64, u64, u64, u64)> =
                    Default::default();
                for i in 0..200_000u64 {
                    let key = format!("user-{t}-{i}");
                    let decision = agent.route(ranker, &key);
                    let model = decision.model().expect("model");
                    let name = if *model == "one" {
                        "control"
                    } else {
                        "candidate"
                    };
                    let failed = i % 17 == 0;
                    agent.record(
                        &decision,
                        Duration::from_nanos(1000 + i % 5000),
                        if failed {
                            Err(ErrorKind::Timeout)
                        } else {
                            Ok(())
                        },
                    );
                    agent.record_outcome_for(&decision, Outcome::Binary(i % 3 == 0));
                    let e = expected.entry(name.to_string()).or_default();
                    e.0 += 1;
                    e.1 += u64::from(failed);
                    e.2 += u64::from(i % 3 == 0);
                    e.3 += 1;
                }
                expected
            })
        })
        .collect();
    let mut expected: std::collections::BTreeMap<String, (u64, u64, u64, u64)> = Default::default();
    for w in writers {
        for (name, (r, e, s, t)) in w.join().expect("writer") {
            let x = expected.entry(name).or_default();
            x.0 += r;
            x.1 += e;
            x.2 += s;
            x.3 += t;
        }
    }
    stop.store(true, Ordering::Release);
    let mut snapshots = snapshotter.join().expect("snapshotter");
    snapshots.push(agent.snapshot());
    assert!(snapshots.len() > 2, "snapshots ran while writers recorded");
    // Every window is whole: no error without its request, no success without its trial.
    for snapshot in &snapshots {
        for v in snapshot.experiments.iter().flat_map(|e| &e.variants) {
            let m = &v.metrics;
            assert!(m.errors.total() <= m.requests, "{m:?}");
            assert!(m.binary.successes <= m.binary.trials, "{m:?}");
        }
    }
    let got = totals(&snapshots);
    for (name, (requests, errors, successes, trials)) in &expected {
        let m = &got[name];
        assert_eq!(m.requests, *requests, "{name} requests");
        assert_eq!(m.errors.timeout, *errors, "{name} errors");
        assert_eq!(m.errors.total(), *errors);
        assert_eq!(m.latency.count(), *requests, "{name} latency count");
        assert_eq!(m.binary.successes, *successes, "{name} successes");
        assert_eq!(m.binary.trials, *trials, "{name} trials");
    }
    assert_eq!(expected.values().map(|e| e.0).sum::<u64>(), 800_000);
    // Nothing more after everything was collected.
    assert!(agent.snapshot().experiments.is_empty());
}

#[test]
fn latency_quantiles_are_within_one_percent() {
    let agent = agent();
    let ranker = agent.experiment("ranker").expect("configured");
    let qa = agent.route(ranker, "user-1");
    let mut values: Vec<u64> = (0..50_000u64)
        .map(|i| 20_000 + (i * 7_919 * 104_729) % 30_000_000)
        .collect();
    for &v in &values {
        agent.record(&qa, Duration::from_nanos(v), Ok(()));
    }
    let snapshot = agent.snapshot();
    let latency = &snapshot.experiments[0].variants[0].metrics.latency;
    values.sort_unstable();
    for q in [0.5, 0.9, 0.99, 0.999] {
        let exact =
            values[((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1] as f64;
        let got = latency.quantile(q).expect("values");
        assert!(
            (got - exact).abs() / exact <= 0.01,
            "q={q}: {got} vs exact {exact}"
        );
    }
}

#[test]
fn continuous_outcomes_match_a_two_pass_computation() {
    let agent = Arc::new(agent());
    let values: Vec<f64> = (0..40_000)
        .map(|i| 100.0 + ((i * 37 % 1000) as f64).sqrt() * 3.5)
        .collect();
    let chunks: Vec<Vec<f64>> = values.chunks(10_000).map(<[f64]>::to_vec).collect();
    let mut snapshots = Vec::new();
    let threads: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let agent = agent.clone();
            std::thread::spawn(move || {
                for v in chunk {
                    agent.record_outcome("ranker", "candidate", Outcome::Continuous(v));
                }
            })
        })
        .collect();
    for _ in 0..5 {
        snapshots.push(agent.snapshot());
    }
    threads.into_iter().for_each(|t| t.join().expect("thread"));
    snapshots.push(agent.snapshot());
    let m = totals(&snapshots)["candidate"].outcome;
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    assert_eq!(m.count, values.len() as u64);
    assert!((m.mean - mean).abs() < 1e-9 * mean, "{} vs {mean}", m.mean);
    assert!((m.variance().expect("n > 1") - variance).abs() < 1e-9 * variance);
}

/// The snapshot encodes, decodes and validates as the sidecar does it, in both encodings.
fn accepted_by_the_sidecar(snapshot: Snapshot) {
    let report = Report::new("agent-1", "r", snapshot);
    let limits = WireLimits::default();
    for (content_type, body) in [
        (CONTENT_TYPE_JSON, report.to_json().expect("encodes")),
        (CONTENT_TYPE_REPORT, report.to_binary().expect("encodes")),
    ] {
        let decoded = Report::decode(content_type, &body, &limits)
            .unwrap_or_else(|e| panic!("{content_type}: {e}"));
        assert_eq!(decoded, report);
    }
}

/// A window after an outlier has the moments of its own values: they are not derived by
/// subtracting cumulative sums that the outlier dominates (that gave a variance of 0 for
/// 1, 2, 3 after 1e12, and 14% off for 10,000 values near 10 after 1e9). Checked against a
/// two-pass computation to 1e-12 relative.
#[test]
fn a_window_after_an_outlier_has_its_own_moments() {
    let agent = agent();
    let windows: [(f64, Vec<f64>); 2] = [
        (1e12, vec![1.0, 2.0, 3.0]),
        (
            1e9,
            (0..10_000)
                .map(|i| 10.0 + ((i * 7_919 % 1000) as f64 / 1000.0 - 0.5) * 3.4)
                .collect(),
        ),
    ];
    for (outlier, values) in windows {
        agent.record_outcome("ranker", "candidate", Outcome::Continuous(outlier));
        let _ = agent.snapshot();
        for &v in &values {
            agent.record_outcome("ranker", "candidate", Outcome::Continuous(v));
        }
        let s = agent.snapshot();
        let m = totals(&[s])["candidate"].outcome;
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
        assert_eq!(m.count, values.len() as u64);
        assert!(
            (m.mean - mean).abs() <= 1e-12 * mean,
            "{} vs {mean}",
            m.mean
        );
        let got = m.variance().expect("n > 1");
        assert!(
            (got - variance).abs() <= 1e-12 * variance,
            "{got} vs {variance}"
        );
    }
}

/// Finite values too large for the moments or the wire format (an outcome over 1e15, a
/// prediction or feature over 1e100, ±f64::MAX), and categorical values longer than
/// `MAX_CATEGORY_BYTES`, are counted rejections: the report stays
/// one the sidecar accepts, and so do the next ones (before, ±f64::MAX made every later
/// window's mean NaN and every report a 400).
#[test]
fn values_too_large_for_the_wire_are_counted_and_never_poison_reports() {
    let agent = agent();
    let ranker = agent.experiment("ranker").expect("configured");
    let d = agent.route(ranker, "user-9");
    for v in [f64::MAX, -f64::MAX, 1e16, -1e200] {
        agent.record_outcome_for(&d, Outcome::Continuous(v));
    }
    agent.record_outcome_for(&d, Outcome::Continuous(1e15));
    agent.record_outcome_for(&d, Outcome::Continuous(-1e15));
    for v in [f64::MAX, -1e200] {
        agent.record_prediction(&d, v);
    }
    agent.record_prediction(&d, 1e100);
    agent.record_features(
        &d,
        &[FeatureValue::Number(1e200), FeatureValue::Category("FR")],
    );
    agent.record_features(
        &d,
        &[FeatureValue::Number(-1e200), FeatureValue::Category("FR")],
    );
    agent.record_features(
        &d,
        &[FeatureValue::Number(f64::INFINITY), FeatureValue::Missing],
    );
    // A categorical value of 9 MiB (over the report size limit on its own) and one at the
    // length limit.
    let huge = "x".repeat(9 << 20);
    let longest = "y".repeat(modelgate::metrics::MAX_CATEGORY_BYTES);
    agent.record_features(&d, &[FeatureValue::Missing, FeatureValue::Category(&huge)]);
    agent.record_features(
        &d,
        &[FeatureValue::Missing, FeatureValue::Category(&longest)],
    );
    let s = agent.snapshot();
    assert_eq!(
        s.rejections.non_finite_value,
        4 + 2 + 3,
        "{:?}",
        s.rejections
    );
    assert_eq!(s.rejections.schema_mismatch, 1, "{:?}", s.rejections);
    let v = s
        .experiments
        .iter()
        .flat_map(|e| &e.variants)
        .find(|v| v.metrics.outcome.count > 0)
        .expect("the kept outcomes");
    assert_eq!(v.metrics.outcome.count, 2, "±1e15 are kept");
    assert_eq!(v.metrics.features[0].missing(), 5, "kept as missing");
    assert_eq!(
        v.metrics.features[1].missing(),
        2,
        "one missing, one too long"
    );
    assert_eq!(
        v.metrics.features[1].count(),
        3,
        "FR twice and the longest value"
    );
    assert_eq!(v.metrics.predictions.as_ref().map(|p| p.count()), Some(1));
    accepted_by_the_sidecar(s);
    for _ in 0..3 {
        agent.record_outcome_for(&d, Outcome::Continuous(1.0));
        agent.record_outcome_for(&d, Outcome::Continuous(3.0));
        let s = agent.snapshot();
        let m = s
            .experiments
            .iter()
            .flat_map(|e| &e.variants)
            .find(|v| v.metrics.outcome.count > 0)
            .expect("recorded")
            .metrics
            .outcome;
        assert_eq!((m.count, m.mean, m.variance()), (2, 2.0, Some(2.0)));
        accepted_by_the_sidecar(s);
    }
}

/// A wall clock stepped back between two snapshots ends the window where it started,
/// never before: a window ending before its start is a report the sidecar refuses.
#[test]
fn a_clock_stepped_back_never_makes_a_refused_window() {
    let clock = Arc::new(ManualClock::new(2_000_000));
    let agent = Agent::<&'static str>::builder()
        .experiments_toml(CONFIG)
        .expect("parses")
        .clock(clock.clone())
        .build()
        .expect("valid");
    let ranker = agent.experiment("ranker").expect("configured");
    let _ = agent.snapshot();
    clock.set(1_999_000);
    let d = agent.route(ranker, "user-1");
    agent.record(&d, Duration::from_millis(3), Ok(()));
    let s = agent.snapshot();
    assert!(s.window_start_ms <= s.window_end_ms, "{s:?}");
    assert_eq!(s.window_end_ms, 2_000_000);
    accepted_by_the_sidecar(s);
}

/// A key outside the experiment (coverage 0 here) gets no variant: its calls and outcomes
/// are not recorded, and not counted as rejected either (they are not bad input).
#[test]
fn outcomes_of_keys_outside_the_experiment_are_not_rejections() {
    let agent = Agent::<u8>::builder()
        .experiments_toml(
            &CONFIG.replace("name = \"ranker\"\n", "name = \"ranker\"\ncoverage = 0.0\n"),
        )
        .expect("parses")
        .build()
        .expect("valid");
    let ranker = agent.experiment("ranker").expect("configured");
    let d = agent.route(ranker, "user-1");
    assert_eq!(d.variant, None);
    agent.record(&d, Duration::from_millis(2), Ok(()));
    agent.record_outcome_for(&d, Outcome::Binary(true));
    agent.record_outcome_for(&d, Outcome::Continuous(2.0));
    let s = agent.snapshot();
    assert_eq!(s.rejections, Default::default(), "{:?}", s.rejections);
    assert!(s.experiments.iter().all(|e| e.variants.is_empty()), "{s:?}");
}

#[test]
fn bad_input_is_counted_not_stored() {
    let agent = agent();
    let ranker = agent.experiment("ranker").expect("configured");
    let d = agent.route(ranker, "user-9");
    agent.record_outcome("nope", "control", Outcome::Binary(true));
    agent.record_outcome("ranker", "nope", Outcome::Binary(true));
    agent.record_outcome_for(&d, Outcome::Continuous(f64::NAN));
    agent.record_outcome_for(&d, Outcome::Continuous(f64::INFINITY));
    agent.record_prediction(&d, f64::NEG_INFINITY);
    agent.record_features(&d, &[FeatureValue::Number(1.0)]); // wrong length
    agent.record_features(
        &d,
        &[FeatureValue::Number(f64::NAN), FeatureValue::Category("FR")],
    );
    agent.record_prediction(&d, 0.25);
    let s = agent.snapshot();
    assert_eq!(s.rejections.unknown_experiment, 1);
    assert_eq!(s.rejections.unknown_variant, 1);
    assert_eq!(s.rejections.non_finite_value, 3);
    assert_eq!(s.rejections.schema_mismatch, 1);
    assert_eq!(s.rejections.over_limit, 0);
    let v = &s.experiments[0].variants[0];
    assert_eq!(v.metrics.outcome.count, 0);
    assert_eq!(v.metrics.feature_rows, 1);
    assert_eq!(v.metrics.predictions.as_ref().map(|p| p.count()), Some(1));
    assert_eq!(v.metrics.features.len(), 2);
    assert_eq!(v.metrics.features[0].missing(), 1, "NaN counts as missing");
    assert_eq!(v.metrics.features[1].count(), 1);
    assert!(v.model.is_some());
    // The next window starts clean.
    assert_eq!(agent.snapshot().rejections.non_finite_value, 0);
    let json = serde_json::to_string(&s).expect("serialisable");
    assert_eq!(
        serde_json::from_str::<Snapshot>(&json).expect("round trip"),
        s
    );
}

#[test]
fn swapping_a_model_reaches_new_requests_and_snapshots() {
    let agent = agent();
    let ranker = agent.experiment("ranker").expect("configured");
    let before = agent.route(ranker, "user-3");
    let variant = before.variant.expect("in experiment");
    let old_version = before.model_version().expect("model").to_string();
    agent.swap_model(variant, "r@9", "nine");
    assert_eq!(
        before.model_version(),
        Some(old_version.as_str()),
        "the in-flight request keeps its model"
    );
    let after = agent.route(ranker, "user-3");
    assert_eq!(after.model(), Some(&"nine"));
    agent.record(&after, Duration::from_micros(1), Ok(()));
    let s = agent.snapshot();
    assert_eq!(s.experiments[0].variants[0].model.as_deref(), Some("r@9"));
}

#[test]
fn feature_and_prediction_sketches_merge_across_threads_and_windows() {
    use modelgate::drift::Distribution1d;
    use modelgate::sketch::FeatureProfile;
    let agent = Arc::new(agent());
    let ranker = agent.experiment("ranker").expect("configured");
    let mut snapshots = Vec::new();
    let threads: Vec<_> = (0..3u64)
        .map(|t| {
            let agent = agent.clone();
            std::thread::spawn(move || {
                let d = agent.route(ranker, "qa-fixed-key");
                for i in 0..50_000u64 {
                    let price = (t * 50_000 + i) as f64;
                    let country = ["FR", "DE", "IT"][(i % 3) as usize];
                    agent.record_features(
                        &d,
                        &[FeatureValue::Number(price), FeatureValue::Category(country)],
                    );
                    agent.record_prediction(&d, price / 150_000.0);
                }
            })
        })
        .collect();
    for _ in 0..3 {
        snapshots.push(agent.snapshot());
    }
    threads.into_iter().for_each(|t| t.join().expect("thread"));
    snapshots.push(agent.snapshot());
    let all = totals(&snapshots);
    let m = all
        .values()
        .find(|m| m.feature_rows > 0)
        .expect("a variant with rows");
    assert_eq!(m.feature_rows, 150_000);
    let FeatureProfile::Numeric(price) = &m.features[0] else {
        panic!("price is numeric")
    };
    assert_eq!(price.count(), 150_000);
    // Values 0..150,000 exactly once each: the median is within the sketch's rank error.
    let sketch = price.sketch();
    let median = sketch.quantile(0.5).expect("values");
    assert!(
        (median / 150_000.0 - 0.5).abs() <= sketch.rank_error() + 1e-9,
        "median {median}"
    );
    let FeatureProfile::Categorical(country) = &m.features[1] else {
        panic!("country is categorical")
    };
    // i % 3 == 0 for 16,667 of 0..50,000, in each of 3 threads.
    assert_eq!(country.frequencies().get("FR"), Some(&(3 * 16_667)));
    assert_eq!(m.predictions.as_ref().map(|p| p.count()), Some(150_000));
}

#[test]
fn config_reloads_bind_models_before_publishing_and_keep_manual_swaps() {
    let agent = agent();
    let ranker = agent.experiment("ranker").expect("configured");
    let control = agent.route(ranker, "qa").variant.expect("in experiment");
    // A manual swap survives a reload of the same config...
    let control_id = agent
        .router()
        .current()
        .experiment(ranker)
        .expect("exp")
        .variants()[0]
        .id();
    agent.swap_model(control_id, "r@hotfix", "hotfix");
    agent
        .store_experiments(modelgate::route::RouterConfig::from_toml(CONFIG).expect("parses"))
        .expect("valid");
    assert_eq!(
        agent
            .model_slot(control_id)
            .and_then(|s| s.version())
            .as_deref(),
        Some("r@hotfix")
    );
    // ...and a new variant has its model the moment the config is published.
    let with_third =
        format!("{CONFIG}[[experiments.variants]]\nname = \"third\"\nmodel = \"r@2\"\n");
    agent
        .store_experiments(modelgate::route::RouterConfig::from_toml(&with_third).expect("parses"))
        .expect("valid");
    for i in 0..300 {
        let d = agent.route(ranker, &format!("user-{i}"));
        assert!(d.model().is_some(), "every routed variant has a model");
    }
    // Outcomes for a variant that has left the config still count.
    agent
        .store_experiments(modelgate::route::RouterConfig::from_toml(CONFIG).expect("parses"))
        .expect("valid");
    let _ = agent.snapshot();
    agent.record_outcome("ranker", "third", Outcome::Binary(true));
    let s = agent.snapshot();
    assert_eq!(s.rejections.unknown_variant, 0);
    let third = s
        .experiments
        .iter()
        .flat_map(|e| &e.variants)
        .find(|v| v.name == "third")
        .expect("third");
    assert_eq!(third.metrics.binary.trials, 1);
    let _ = control;
}

#[test]
fn a_config_with_more_variants_than_the_agent_keeps_is_refused() {
    let agent: Agent<u8> = Agent::builder()
        .experiments_toml(CONFIG)
        .expect("parses")
        .limits(modelgate::agent::Limits {
            max_variants: 3,
            max_recording_threads: 4,
            ..Default::default()
        })
        .build()
        .expect("two variants fit");
    let four = format!(
        "{CONFIG}[[experiments.variants]]\nname = \"third\"\n[[experiments.variants]]\nname = \"fourth\"\n"
    );
    let err = agent
        .store_experiments(modelgate::route::RouterConfig::from_toml(&four).expect("parses"))
        .expect_err("refused");
    assert!(err.to_string().contains("max_variants"), "{err}");
    assert_eq!(
        agent.router().current().experiments()[0].variants().len(),
        2,
        "the old config stays"
    );
    // The refused config's names took no ids: a third variant of another name still fits.
    let three = format!("{CONFIG}[[experiments.variants]]\nname = \"fifth\"\n");
    agent
        .store_experiments(modelgate::route::RouterConfig::from_toml(&three).expect("parses"))
        .expect("three variants fit");
    assert!(agent.router().find_variant("ranker", "third").is_none());
}
