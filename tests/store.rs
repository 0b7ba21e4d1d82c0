//! The sidecar's SQLite store on a real file: migrations, idempotent ingest, exact totals,
//! bucketing, compaction, concurrency, control documents, the model registry, the audit log,
//! pipeline runs, and corrupt stored values (errors, never panics).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use modelgate::agent::{Agent, Feature, FeatureKind, FeatureValue, Outcome};
use modelgate::metrics::{ErrorKind, VariantMetrics};
use modelgate::route::{Clock, ManualClock, RouterConfig};
use modelgate::sidecar::store::{
    AuditFilter, Durability, HOUR_MS, Ingested, MINUTE_MS, NewAudit, NewModel, SCHEMA_VERSION,
    Store, StoreError,
};
use modelgate::wire::{Control, LoadFailure, ModelAssignment, Report, WIRE_VERSION};

const CONFIG: &str = r#"
[[experiments]]
name = "ranker"
[[experiments.variants]]
name = "control"
model = "r@1"
[[experiments.variants]]
name = "candidate"
model = "r@2"

[[experiments]]
name = "search"
[[experiments.variants]]
name = "a"
model = "s@1"
[[experiments.variants]]
name = "b"
model = "s@2"
"#;

/// 2026-01-01T00:00:00Z, a whole hour.
const T0: i64 = 1_767_225_600_000;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "modelgate-store-{name}-{}-{nanos}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
    fn db(&self) -> PathBuf {
        self.0.join("modelgate.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn open(path: &Path) -> Store {
    Store::open(path, Durability::Full).expect("opens")
}

/// An agent on a manual clock (the clock sets each snapshot's window end).
fn agent(clock: &Arc<ManualClock>) -> Agent<u8> {
    Agent::builder()
        .experiments_toml(CONFIG)
        .expect("parses")
        .model("r@1", 1)
        .model("r@2", 2)
        .model("s@1", 3)
        .model("s@2", 4)
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
        .clock(clock.clone() as Arc<dyn Clock>)
        .build()
        .expect("valid")
}

/// Real traffic on both experiments: latencies, errors, both kinds of outcome, predictions
/// and feature rows.
fn traffic(agent: &Agent<u8>, from: u64, to: u64) {
    for experiment in ["ranker", "search"] {
        let id = agent.experiment(experiment).expect("configured");
        for i in from..to {
            let d = agent.route(id, &format!("user-{i}"));
            agent.record(
                &d,
                Duration::from_micros(100 + (i * 37) % 5_000),
                if i % 17 == 0 {
                    Err(ErrorKind::Timeout)
                } else if i % 29 == 0 {
                    Err(ErrorKind::Model)
                } else {
                    Ok(())
                },
            );
            agent.record_outcome_for(&d, Outcome::Binary(i % 3 == 0));
            agent.record_outcome_for(&d, Outcome::Continuous((i % 13) as f64 * 0.5));
            agent.record_prediction(&d, (i % 100) as f64 / 100.0);
            agent.record_features(
                &d,
                &[
                    FeatureValue::Number((i % 1000) as f64),
                    FeatureValue::Category(["FR", "DE", "US"][(i % 3) as usize]),
                ],
            );
        }
    }
}

/// A report of requests `from..to`, its window ending at `end_ms`.
fn report(
    agent: &Agent<u8>,
    clock: &ManualClock,
    agent_id: &str,
    report_id: &str,
    from: u64,
    to: u64,
    end_ms: i64,
) -> Report {
    traffic(agent, from, to);
    clock.set(end_ms);
    Report::new(agent_id, report_id, agent.snapshot())
}

/// The merge of all reports' metrics per (experiment, variant), merged in the given order.
fn expected(reports: &[&Report]) -> BTreeMap<(String, String), VariantMetrics> {
    let mut out: BTreeMap<(String, String), VariantMetrics> = BTreeMap::new();
    for r in reports {
        for e in &r.snapshot.experiments {
            for v in &e.variants {
                out.entry((e.name.clone(), v.name.clone()))
                    .or_default()
                    .merge(&v.metrics);
            }
        }
    }
    out
}

/// Counters, histogram and counts equal exactly, means and variances to rounding, sketch
/// counts exactly (sketch contents depend on merge order).
fn assert_same(got: &VariantMetrics, want: &VariantMetrics, at: &str) {
    assert_eq!(got.requests, want.requests, "{at}: requests");
    assert_eq!(got.errors, want.errors, "{at}: errors");
    assert_eq!(got.latency, want.latency, "{at}: latency");
    assert_eq!(got.binary, want.binary, "{at}: binary");
    assert_eq!(got.feature_rows, want.feature_rows, "{at}: feature rows");
    assert_eq!(got.outcome.count, want.outcome.count, "{at}: outcomes");
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()));
    assert!(close(got.outcome.mean, want.outcome.mean), "{at}: mean");
    assert!(close(got.outcome.m2, want.outcome.m2), "{at}: m2");
    assert_eq!(
        got.predictions.as_ref().map(|p| p.count()),
        want.predictions.as_ref().map(|p| p.count()),
        "{at}: predictions"
    );
    assert_eq!(
        got.features.iter().map(|f| f.count()).collect::<Vec<_>>(),
        want.features.iter().map(|f| f.count()).collect::<Vec<_>>(),
        "{at}: features"
    );
}

fn assert_totals(store: &Store, want: &BTreeMap<(String, String), VariantMetrics>) {
    let totals = store.totals(None, i64::MIN, i64::MAX).expect("totals");
    let keys: Vec<(String, String)> = totals
        .iter()
        .map(|t| (t.experiment.clone(), t.variant.clone()))
        .collect();
    assert_eq!(keys, want.keys().cloned().collect::<Vec<_>>());
    for t in &totals {
        let at = format!("{}/{}", t.experiment, t.variant);
        assert_same(
            &t.metrics,
            &want[&(t.experiment.clone(), t.variant.clone())],
            &at,
        );
    }
}

fn window_rows(path: &Path) -> i64 {
    rusqlite::Connection::open(path)
        .expect("raw open")
        .query_row("SELECT COUNT(*) FROM windows", [], |r| r.get(0))
        .expect("count")
}

fn control(etag: &str, ranker_model: &str) -> Control {
    let mut models = BTreeMap::new();
    models.insert(
        "ranker/candidate".to_owned(),
        ModelAssignment {
            reference: ranker_model.to_owned(),
            location: Some(format!("s3://models/{ranker_model}")),
        },
    );
    Control {
        version: WIRE_VERSION,
        etag: etag.to_owned(),
        experiments: RouterConfig::from_toml(CONFIG).expect("parses"),
        models,
    }
}

fn new_model(name: &str, artifact: &str) -> NewModel {
    NewModel {
        name: name.to_owned(),
        artifact: artifact.to_owned(),
        sha256: "ab".repeat(32),
        trained_from_ms: Some(T0 - 86_400_000),
        trained_to_ms: Some(T0),
        metrics: serde_json::json!({"auc": 0.91, "logloss": 0.33}),
        reference_profile: Some(vec![1, 2, 3, artifact.len() as u8]),
    }
}

#[test]
fn store_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Store>();
    check::<Arc<Store>>();
}

#[test]
fn migrates_reopens_and_refuses_newer_schemas() {
    let dir = TempDir::new("migrate");
    let path = dir.db();
    let clock = Arc::new(ManualClock::new(T0));
    let a = agent(&clock);
    let r = report(&a, &clock, "agent-1", "r-1", 0, 300, T0 + 30_000);
    let before = {
        let store = open(&path);
        assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
        assert_eq!(store.path(), path.as_path());
        assert_eq!(
            store.ingest(&r, T0 + 31_000).expect("ingest"),
            Ingested::Accepted
        );
        store
            .register_model(&new_model("ranker", "a"))
            .expect("register");
        store.totals(None, i64::MIN, i64::MAX).expect("totals")
    };

    // The file is a WAL database with every table.
    let raw = rusqlite::Connection::open(&path).expect("raw open");
    let mode: String = raw
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal mode");
    assert_eq!(mode.to_ascii_lowercase(), "wal");
    for table in [
        "report_ids",
        "agents",
        "windows",
        "models",
        "aliases",
        "alias_history",
        "control",
        "experiment_history",
        "audit_log",
        "pipeline_runs",
        "pipeline_steps",
    ] {
        let n: i64 = raw
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )
            .expect("query");
        assert_eq!(n, 1, "table {table}");
    }
    drop(raw);

    // Reopening (with the other durability) keeps the data and the version, and the
    // report id: a retry after a restart is still a duplicate.
    {
        let store = Store::open(&path, Durability::Normal).expect("reopens");
        assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
        assert_eq!(
            store.totals(None, i64::MIN, i64::MAX).expect("totals"),
            before
        );
        assert_eq!(
            store.ingest(&r, T0 + 60_000).expect("ingest"),
            Ingested::Duplicate
        );
        assert_eq!(store.reports_accepted().expect("count"), 1);
        assert_eq!(store.models().expect("models").len(), 1);
    }

    // A file from a newer build is refused, not misread.
    let raw = rusqlite::Connection::open(&path).expect("raw open");
    raw.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .expect("set version");
    drop(raw);
    match Store::open(&path, Durability::Full) {
        Err(StoreError::NewerSchema { found, supported }) => {
            assert_eq!(found, SCHEMA_VERSION + 1);
            assert_eq!(supported, SCHEMA_VERSION);
        }
        other => panic!("expected NewerSchema, got {other:?}"),
    }
}

#[test]
fn ingest_is_idempotent_by_report_id() {
    let dir = TempDir::new("idempotent");
    let store = open(&dir.db());
    let clock = Arc::new(ManualClock::new(T0));
    let a = agent(&clock);
    let mut r = report(&a, &clock, "agent-1", "r-1", 0, 500, T0 + 10_000);
    r.snapshot.rejections.unknown_variant = 3;
    r.load_errors.push(LoadFailure {
        variant: "ranker/candidate".into(),
        reference: "r@9".into(),
        error: "artifact not found".into(),
    });

    assert_eq!(
        store.ingest(&r, T0 + 11_000).expect("first"),
        Ingested::Accepted
    );
    let totals = store.totals(None, i64::MIN, i64::MAX).expect("totals");
    let audit = store.audit_log(&AuditFilter::default()).expect("audit");
    let rows = window_rows(&dir.db());

    // The same report again (a retry), even at another time: nothing changes.
    assert_eq!(
        store.ingest(&r, T0 + 20_000).expect("retry"),
        Ingested::Duplicate
    );
    assert_eq!(
        store.ingest(&r, T0 + 30_000).expect("retry"),
        Ingested::Duplicate
    );
    assert_eq!(
        store.totals(None, i64::MIN, i64::MAX).expect("totals"),
        totals
    );
    assert_eq!(
        store.audit_log(&AuditFilter::default()).expect("audit"),
        audit
    );
    assert_eq!(window_rows(&dir.db()), rows);
    assert_eq!(store.reports_accepted().expect("count"), 1);

    let agents = store.agents().expect("agents");
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0].agent_id, "agent-1");
    assert_eq!(agents[0].reports, 1);
    assert_eq!(agents[0].first_report_ms, T0 + 11_000);
    assert_eq!(agents[0].last_report_ms, T0 + 11_000);
    assert_eq!(agents[0].rejections.unknown_variant, 3);

    // The load failure became one audit row, by the agent, about the reference.
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].kind, "agent.load_error");
    assert_eq!(audit[0].actor, "agent-1");
    assert_eq!(audit[0].subject, "r@9");
    assert_eq!(audit[0].at_ms, T0 + 11_000);
    assert_eq!(audit[0].detail["variant"], "ranker/candidate");
    assert_eq!(audit[0].detail["error"], "artifact not found");

    // A new id from the same agent counts.
    let r2 = report(&a, &clock, "agent-1", "r-2", 500, 700, T0 + 70_000);
    assert_eq!(
        store.ingest(&r2, T0 + 71_000).expect("second"),
        Ingested::Accepted
    );
    let agents = store.agents().expect("agents");
    assert_eq!(agents[0].reports, 2);
    assert_eq!(agents[0].first_report_ms, T0 + 11_000);
    assert_eq!(agents[0].last_report_ms, T0 + 71_000);
    assert_eq!(store.reports_accepted().expect("count"), 2);
    assert_totals(&store, &expected(&[&r, &r2]));

    // Pruning ids forgets them: documented, a retry that old is counted again.
    assert_eq!(store.prune_report_ids(T0 + 50_000).expect("prune"), 1);
    assert_eq!(
        store.ingest(&r, T0 + 80_000).expect("again"),
        Ingested::Accepted
    );
    assert_eq!(store.reports_accepted().expect("count"), 3);
}

#[test]
fn totals_are_the_exact_merge_of_all_reports() {
    let dir = TempDir::new("totals");
    let store = open(&dir.db());
    let clock = Arc::new(ManualClock::new(T0));
    let (a, b) = (agent(&clock), agent(&clock));
    let mut reports = Vec::new();
    for i in 0..6u64 {
        let end = T0 + 60_000 * i as i64 + 5_000;
        reports.push(report(
            &a,
            &clock,
            "agent-a",
            &format!("a-{i}"),
            i * 400,
            i * 400 + 400,
            end,
        ));
        reports.push(report(
            &b,
            &clock,
            "agent-b",
            &format!("b-{i}"),
            10_000 + i * 250,
            10_000 + i * 250 + 250,
            end + 1_000,
        ));
    }
    for r in &reports {
        assert_eq!(store.ingest(r, T0).expect("ingest"), Ingested::Accepted);
    }
    let all: Vec<&Report> = reports.iter().collect();
    let want = expected(&all);
    assert_totals(&store, &want);

    // Merged in the same order (within each bucket, then bucket after bucket), the whole
    // metrics are equal, sketches included.
    let mut by_bucket: BTreeMap<i64, Vec<&Report>> = BTreeMap::new();
    for r in &reports {
        by_bucket
            .entry(r.snapshot.window_end_ms.div_euclid(MINUTE_MS))
            .or_default()
            .push(r);
    }
    let mut want_exact: BTreeMap<(String, String), VariantMetrics> = BTreeMap::new();
    for bucket in by_bucket.values() {
        for (key, m) in expected(bucket) {
            want_exact.entry(key).or_default().merge(&m);
        }
    }
    for t in store.totals(None, i64::MIN, i64::MAX).expect("totals") {
        assert_eq!(
            t.metrics,
            want_exact[&(t.experiment.clone(), t.variant.clone())]
        );
    }

    // The sums match the traffic: every request recorded on both experiments.
    let totals = store
        .totals(Some("ranker"), i64::MIN, i64::MAX)
        .expect("ranker");
    assert_eq!(
        totals
            .iter()
            .map(|t| t.variant.as_str())
            .collect::<Vec<_>>(),
        ["candidate", "control"]
    );
    assert_eq!(
        totals.iter().map(|t| t.metrics.requests).sum::<u64>(),
        6 * 400 + 6 * 250
    );
    assert_eq!(
        totals.iter().map(|t| t.metrics.outcome.count).sum::<u64>(),
        6 * 400 + 6 * 250
    );
    assert_eq!(totals[0].model.as_deref(), Some("r@2"));
    assert_eq!(totals[1].model.as_deref(), Some("r@1"));
    assert!(
        store
            .totals(Some("nothing"), i64::MIN, i64::MAX)
            .expect("none")
            .is_empty()
    );

    // A range takes the buckets that start in it: minutes 2 and 3.
    let from = T0 + 2 * MINUTE_MS;
    let to = T0 + 4 * MINUTE_MS;
    let part: Vec<&Report> = reports[4..8].iter().collect();
    let want_part = expected(&part);
    let got = store.totals(None, from, to).expect("part");
    assert_eq!(got.len(), want_part.len());
    for t in &got {
        assert_same(
            &t.metrics,
            &want_part[&(t.experiment.clone(), t.variant.clone())],
            "range",
        );
    }
    assert!(store.totals(None, to, from).expect("empty").is_empty());
}

#[test]
fn reports_land_in_the_minute_of_their_window_end() {
    let dir = TempDir::new("buckets");
    let store = open(&dir.db());
    let clock = Arc::new(ManualClock::new(T0));
    let a = agent(&clock);
    let ends = [
        T0 + 59_999,          // minute 0
        T0 + 60_000,          // minute 1
        T0 + 60_000 + 30_000, // minute 1 again: merges
        T0 + 5 * 60_000 + 1,  // minute 5
    ];
    let mut reports = Vec::new();
    for (i, end) in ends.iter().enumerate() {
        let r = report(
            &a,
            &clock,
            "agent-1",
            &format!("r-{i}"),
            i as u64 * 100,
            i as u64 * 100 + 100,
            *end,
        );
        store.ingest(&r, *end).expect("ingest");
        reports.push(r);
    }
    let rows = store
        .windows("ranker", "control", i64::MIN, i64::MAX)
        .expect("windows");
    assert_eq!(
        rows.iter().map(|w| w.bucket_start_ms).collect::<Vec<_>>(),
        [T0, T0 + 60_000, T0 + 5 * 60_000]
    );
    assert!(rows.iter().all(|w| w.resolution_ms == MINUTE_MS));
    assert!(rows.iter().all(|w| w.model.as_deref() == Some("r@1")));
    let control_requests = |r: &Report| {
        r.snapshot
            .experiments
            .iter()
            .find(|e| e.name == "ranker")
            .and_then(|e| e.variants.iter().find(|v| v.name == "control"))
            .map_or(0, |v| v.metrics.requests)
    };
    assert_eq!(rows[0].metrics.requests, control_requests(&reports[0]));
    assert_eq!(
        rows[1].metrics.requests,
        control_requests(&reports[1]) + control_requests(&reports[2])
    );
    assert_eq!(rows[2].metrics.requests, control_requests(&reports[3]));
    let windowed = store
        .windows("ranker", "control", T0 + 60_000, T0 + 5 * 60_000)
        .expect("windows");
    assert_eq!(windowed.len(), 1);

    // Window ends outside the plausible range (before the Unix epoch, more than a day
    // after the store's clock, the extreme ends) are refused, and nothing is stored.
    let before = window_rows(&dir.db());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_millis() as i64;
    for (i, end) in [
        -1,
        i64::MIN,
        i64::MIN + 60_000,
        now + 2 * 86_400_000,
        i64::MAX,
    ]
    .into_iter()
    .enumerate()
    {
        let mut extreme = reports[0].clone();
        extreme.report_id = format!("extreme-{i}");
        extreme.snapshot.window_start_ms = end;
        extreme.snapshot.window_end_ms = end;
        assert!(
            matches!(
                store.ingest(&extreme, T0),
                Err(StoreError::WindowOutOfRange(_))
            ),
            "{end}"
        );
    }
    assert_eq!(window_rows(&dir.db()), before);
    // The epoch itself is accepted.
    let mut epoch = reports[0].clone();
    epoch.report_id = "epoch".into();
    epoch.snapshot.window_start_ms = 0;
    epoch.snapshot.window_end_ms = 0;
    assert_eq!(store.ingest(&epoch, T0).expect("epoch"), Ingested::Accepted);

    // A variant with nothing recorded leaves no row.
    let mut empty = reports[0].clone();
    empty.report_id = "empty".into();
    for e in &mut empty.snapshot.experiments {
        for v in &mut e.variants {
            v.metrics = VariantMetrics::default();
        }
    }
    empty.snapshot.window_end_ms = T0 + 50 * 60_000;
    let before = window_rows(&dir.db());
    assert_eq!(store.ingest(&empty, T0).expect("empty"), Ingested::Accepted);
    assert_eq!(window_rows(&dir.db()), before);
}

#[test]
fn compaction_keeps_totals_and_reduces_rows() {
    let dir = TempDir::new("compact");
    let store = open(&dir.db());
    let clock = Arc::new(ManualClock::new(T0));
    let a = agent(&clock);
    // One report every 10 minutes over 3 hours: 18 minute buckets per variant.
    let mut reports = Vec::new();
    for i in 0..18u64 {
        let end = T0 + i as i64 * 10 * MINUTE_MS + 1_000;
        let r = report(
            &a,
            &clock,
            "agent-1",
            &format!("r-{i}"),
            i * 100,
            i * 100 + 100,
            end,
        );
        store.ingest(&r, end).expect("ingest");
        reports.push(r);
    }
    let all: Vec<&Report> = reports.iter().collect();
    let want = expected(&all);
    assert_totals(&store, &want);
    let variants = want.len() as i64;
    assert_eq!(window_rows(&dir.db()), 18 * variants);

    // Up to T0 + 2 h 30 min: hours 0 and 1 are whole, hour 2 is not and stays in minutes.
    let removed = store
        .compact(T0 + 2 * HOUR_MS + 30 * MINUTE_MS)
        .expect("compact");
    assert_eq!(removed as i64, 12 * variants);
    assert_eq!(window_rows(&dir.db()), (2 + 6) * variants);
    assert_totals(&store, &want);
    let rows = store
        .windows("ranker", "control", i64::MIN, i64::MAX)
        .expect("windows");
    assert_eq!(
        rows.iter()
            .map(|w| (w.bucket_start_ms, w.resolution_ms))
            .collect::<Vec<_>>(),
        [
            (T0, HOUR_MS),
            (T0 + HOUR_MS, HOUR_MS),
            (T0 + 2 * HOUR_MS, MINUTE_MS),
            (T0 + 2 * HOUR_MS + 10 * MINUTE_MS, MINUTE_MS),
            (T0 + 2 * HOUR_MS + 20 * MINUTE_MS, MINUTE_MS),
            (T0 + 2 * HOUR_MS + 30 * MINUTE_MS, MINUTE_MS),
            (T0 + 2 * HOUR_MS + 40 * MINUTE_MS, MINUTE_MS),
            (T0 + 2 * HOUR_MS + 50 * MINUTE_MS, MINUTE_MS),
        ]
    );
    assert_eq!(rows[0].model.as_deref(), Some("r@1"));
    // An hour's totals are its minutes' merge.
    let first_hour: Vec<&Report> = reports[..6].iter().collect();
    let want_hour = expected(&first_hour);
    for t in store.totals(None, T0, T0 + HOUR_MS).expect("hour") {
        assert_same(
            &t.metrics,
            &want_hour[&(t.experiment.clone(), t.variant.clone())],
            "first hour",
        );
    }

    // Nothing left to compact below the same horizon.
    assert_eq!(
        store
            .compact(T0 + 2 * HOUR_MS + 30 * MINUTE_MS)
            .expect("again"),
        0
    );

    // A late report into a compacted hour lands in a minute row, and the next compaction
    // merges it into the existing hour row instead of replacing it.
    // (From an agent whose window is in that hour: an agent's windows never run backwards.)
    let late_clock = Arc::new(ManualClock::new(T0 + 14 * MINUTE_MS));
    let late_agent = agent(&late_clock);
    let late = report(
        &late_agent,
        &late_clock,
        "agent-2",
        "late",
        5_000,
        5_300,
        T0 + 15 * MINUTE_MS,
    );
    store.ingest(&late, T0 + 4 * HOUR_MS).expect("late");
    reports.push(late);
    let all: Vec<&Report> = reports.iter().collect();
    let want = expected(&all);
    assert_totals(&store, &want);
    assert_eq!(
        store.compact(T0 + 3 * HOUR_MS).expect("compact all") as i64,
        7 * variants
    );
    assert_eq!(window_rows(&dir.db()), 3 * variants);
    assert_totals(&store, &want);
}

#[test]
fn concurrent_ingest_from_four_threads_is_exact() {
    let dir = TempDir::new("concurrent");
    let store = Arc::new(open(&dir.db()));
    let clock = Arc::new(ManualClock::new(T0));
    // Build the reports first (each thread's agent, its own ids), then ingest them at once.
    let mut per_thread: Vec<Vec<Report>> = Vec::new();
    for t in 0..4u64 {
        let a = agent(&clock);
        let mut rs = Vec::new();
        for i in 0..12u64 {
            let from = t * 100_000 + i * 150;
            rs.push(report(
                &a,
                &clock,
                &format!("agent-{t}"),
                &format!("t{t}-r{i}"),
                from,
                from + 150,
                T0 + (i as i64 % 3) * MINUTE_MS + t as i64,
            ));
        }
        per_thread.push(rs);
    }
    let all: Vec<&Report> = per_thread.iter().flatten().collect();
    let want = expected(&all);

    let handles: Vec<_> = per_thread
        .iter()
        .cloned()
        .map(|rs| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut accepted = 0;
                for r in &rs {
                    if store.ingest(r, T0).expect("ingest") == Ingested::Accepted {
                        accepted += 1;
                    }
                    // Each report is retried at once: a duplicate.
                    assert_eq!(store.ingest(r, T0).expect("retry"), Ingested::Duplicate);
                }
                accepted
            })
        })
        .collect();
    let accepted: u64 = handles.into_iter().map(|h| h.join().expect("thread")).sum();
    assert_eq!(accepted, 48);
    assert_eq!(store.reports_accepted().expect("count"), 48);
    assert_eq!(store.agents().expect("agents").len(), 4);
    assert_totals(&store, &want);
    let requests: u64 = store
        .totals(Some("search"), i64::MIN, i64::MAX)
        .expect("totals")
        .iter()
        .map(|t| t.metrics.requests)
        .sum();
    assert_eq!(requests, 4 * 12 * 150);
}

#[test]
fn control_documents_round_trip_with_history_and_audit() {
    let dir = TempDir::new("control");
    let clock = Arc::new(ManualClock::new(T0));
    let store = Store::open_with_clock(&dir.db(), Durability::Full, clock.clone()).expect("opens");
    assert_eq!(store.load_control().expect("load"), None);
    assert!(store.control_history(10).expect("history").is_empty());

    let first = control("etag-1", "r@2");
    store.save_control(&first, "admin").expect("save");
    assert_eq!(store.load_control().expect("load"), Some(first.clone()));

    clock.set(T0 + 1_000);
    let second = control("etag-2", "r@3");
    store.save_control(&second, "sidecar").expect("save");
    assert_eq!(store.load_control().expect("load"), Some(second.clone()));

    let history = store.control_history(10).expect("history");
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].control, second);
    assert_eq!(history[0].actor, "sidecar");
    assert_eq!(history[0].saved_ms, T0 + 1_000);
    assert_eq!(history[1].control, first);
    assert_eq!(history[1].actor, "admin");
    assert!(history[0].id > history[1].id);
    assert_eq!(store.control_history(1).expect("history").len(), 1);

    let audit = store
        .audit_log(&AuditFilter {
            kind: Some("control.update".into()),
            ..AuditFilter::default()
        })
        .expect("audit");
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[0].subject, "etag-2");
    assert_eq!(audit[0].actor, "sidecar");
    assert_eq!(audit[0].at_ms, T0 + 1_000);
    assert_eq!(
        audit[0].detail["experiments"],
        serde_json::json!(["ranker", "search"])
    );
    assert_eq!(
        audit[0].detail["models"]["ranker/candidate"]["reference"],
        "r@3"
    );
    assert_eq!(audit[1].subject, "etag-1");

    // An invalid document is refused and changes nothing.
    let mut bad = control("etag-3", "r@4");
    bad.experiments.experiments[0].variants[0].weight = Some(-1.0);
    assert!(matches!(
        store.save_control(&bad, "admin"),
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(store.load_control().expect("load"), Some(second.clone()));
    assert_eq!(store.control_history(10).expect("history").len(), 2);

    // The history is append-only.
    let raw = rusqlite::Connection::open(dir.db()).expect("raw open");
    assert!(
        raw.execute("UPDATE experiment_history SET actor = 'x'", [])
            .is_err()
    );
    assert!(raw.execute("DELETE FROM experiment_history", []).is_err());
    drop(raw);

    // It survives a reopen.
    drop(store);
    let store = open(&dir.db());
    assert_eq!(store.load_control().expect("load"), Some(second));
}

#[test]
fn model_registry_versions_aliases_and_history() {
    let dir = TempDir::new("registry");
    let clock = Arc::new(ManualClock::new(T0));
    let store = Store::open_with_clock(&dir.db(), Durability::Full, clock.clone()).expect("opens");

    let v1 = store
        .register_model(&new_model("ranker", "s3://a"))
        .expect("v1");
    clock.set(T0 + 10);
    let v2 = store
        .register_model(&new_model("ranker", "s3://b"))
        .expect("v2");
    let s1 = store
        .register_model(&new_model("scorer", "s3://c"))
        .expect("s1");
    assert_eq!((v1.version, v2.version, s1.version), (1, 2, 1));
    assert_eq!(v2.reference, "ranker@2");
    assert_eq!(v1.created_ms, T0);
    assert_eq!(v2.created_ms, T0 + 10);
    assert_eq!(store.model("ranker", 2).expect("model"), Some(v2.clone()));
    assert_eq!(store.model("ranker", 3).expect("model"), None);
    assert_eq!(
        store.model_by_reference("ranker@1").expect("reference"),
        Some(v1.clone())
    );
    assert_eq!(
        store.model_by_reference("ranker@7").expect("reference"),
        None
    );
    assert_eq!(
        store.model_by_reference("nobody@1").expect("reference"),
        None
    );
    for bad in ["ranker", "ranker@", "@1", "ranker@99999999999"] {
        assert!(
            matches!(store.model_by_reference(bad), Err(StoreError::Invalid(_))),
            "{bad}"
        );
    }
    assert_eq!(
        store.reference_profile("ranker", 2).expect("profile"),
        Some(vec![1, 2, 3, 6])
    );
    assert_eq!(store.reference_profile("ranker", 9).expect("profile"), None);
    assert!(matches!(
        store.register_model(&new_model("bad@name", "x")),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.register_model(&new_model("", "x")),
        Err(StoreError::Invalid(_))
    ));

    // Aliases: set, move, read; each move returns the previous version.
    clock.set(T0 + 100);
    assert_eq!(
        store
            .set_alias("ranker", "production", 1, "admin", "first release")
            .expect("alias"),
        None
    );
    clock.set(T0 + 200);
    assert_eq!(
        store
            .set_alias("ranker", "candidate", 2, "sidecar", "retrained")
            .expect("alias"),
        None
    );
    clock.set(T0 + 300);
    assert_eq!(
        store
            .set_alias("ranker", "production", 2, "sidecar", "won the A/B test")
            .expect("alias"),
        Some(1)
    );
    let production = store
        .alias("ranker", "production")
        .expect("alias")
        .expect("set");
    assert_eq!(production.version, 2);
    assert_eq!(production.aliases, ["candidate", "production"]);
    assert_eq!(store.alias("ranker", "staging").expect("alias"), None);
    assert_eq!(
        store
            .model_by_reference("ranker@production")
            .expect("alias reference")
            .map(|m| m.version),
        Some(2)
    );

    let models = store.models().expect("models");
    assert_eq!(
        models
            .iter()
            .map(|m| (m.reference.as_str(), m.aliases.clone()))
            .collect::<Vec<_>>(),
        [
            ("ranker@1", vec![]),
            (
                "ranker@2",
                vec!["candidate".to_owned(), "production".to_owned()]
            ),
            ("scorer@1", vec![]),
        ]
    );

    // Invalid alias names and unknown versions are refused and leave no trace.
    let long = "a".repeat(65);
    for bad in [
        "",
        "Production",
        "prod uction",
        "prod.1",
        "123",
        long.as_str(),
    ] {
        assert!(
            matches!(
                store.set_alias("ranker", bad, 1, "admin", "x"),
                Err(StoreError::Invalid(_))
            ),
            "alias `{bad}`"
        );
    }
    assert!(
        store
            .set_alias("ranker", &"a".repeat(64), 1, "admin", "longest")
            .is_ok()
    );
    assert!(matches!(
        store.set_alias("ranker", "production", 7, "admin", "no such version"),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.set_alias("nobody", "production", 1, "admin", "no such model"),
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(
        store
            .alias("ranker", "production")
            .expect("alias")
            .map(|m| m.version),
        Some(2)
    );

    // History, newest first.
    let history = store.alias_history("ranker").expect("history");
    assert_eq!(
        history
            .iter()
            .map(|h| (h.alias.as_str(), h.from_version, h.to_version, h.at_ms))
            .collect::<Vec<_>>()[1..],
        [
            ("production", Some(1), 2, T0 + 300),
            ("candidate", None, 2, T0 + 200),
            ("production", None, 1, T0 + 100),
        ]
    );
    assert_eq!(history[1].actor, "sidecar");
    assert_eq!(history[1].reason, "won the A/B test");
    assert!(store.alias_history("scorer").expect("history").is_empty());
    let raw = rusqlite::Connection::open(dir.db()).expect("raw open");
    assert!(raw.execute("DELETE FROM alias_history", []).is_err());
    assert!(
        raw.execute("UPDATE alias_history SET reason = 'x'", [])
            .is_err()
    );
    drop(raw);

    // The audit log has every registration and move.
    let registered = store
        .audit_log(&AuditFilter {
            kind: Some("model.register".into()),
            ..AuditFilter::default()
        })
        .expect("audit");
    assert_eq!(
        registered
            .iter()
            .map(|a| a.subject.as_str())
            .collect::<Vec<_>>(),
        ["scorer@1", "ranker@2", "ranker@1"]
    );
    let moved = store
        .audit_log(&AuditFilter {
            kind: Some("model.alias".into()),
            ..AuditFilter::default()
        })
        .expect("audit");
    assert_eq!(moved.len(), 4);
    assert_eq!(moved[1].subject, "ranker");
    assert_eq!(
        moved[1].detail,
        serde_json::json!({"alias": "production", "from": 1, "to": 2, "reason": "won the A/B test"})
    );
    assert_eq!(
        store
            .audit_log(&AuditFilter {
                kind: Some("model".into()),
                ..AuditFilter::default()
            })
            .expect("audit")
            .len(),
        7
    );
}

#[test]
fn audit_log_filters_newest_first_and_is_append_only() {
    let dir = TempDir::new("audit");
    let clock = Arc::new(ManualClock::new(T0));
    let store = Store::open_with_clock(&dir.db(), Durability::Full, clock.clone()).expect("opens");
    let entries = [
        ("trigger.drift", "ranker"),
        ("trigger", "ranker"),
        ("triggers", "ranker"),
        ("trigger.schedule", "search"),
        ("trigger.drift.psi", "ranker"),
        ("model.alias", "ranker"),
    ];
    let mut ids = Vec::new();
    for (i, (kind, subject)) in entries.iter().enumerate() {
        clock.set(T0 + i as i64);
        ids.push(
            store
                .audit(&NewAudit {
                    actor: "sidecar".into(),
                    kind: (*kind).into(),
                    subject: (*subject).into(),
                    detail: serde_json::json!({"i": i}),
                })
                .expect("append"),
        );
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]));

    let all = store.audit_log(&AuditFilter::default()).expect("all");
    assert_eq!(
        all.iter().map(|r| r.id).collect::<Vec<_>>(),
        ids.iter().rev().copied().collect::<Vec<_>>()
    );
    assert_eq!(all[0].at_ms, T0 + 5);
    assert_eq!(all[5].detail, serde_json::json!({"i": 0}));

    let kinds = |filter: AuditFilter| -> Vec<String> {
        store
            .audit_log(&filter)
            .expect("filtered")
            .into_iter()
            .map(|r| r.kind)
            .collect()
    };
    // A kind matches itself and its dotted children, not a longer word.
    assert_eq!(
        kinds(AuditFilter {
            kind: Some("trigger".into()),
            ..AuditFilter::default()
        }),
        [
            "trigger.drift.psi",
            "trigger.schedule",
            "trigger",
            "trigger.drift"
        ]
    );
    assert_eq!(
        kinds(AuditFilter {
            kind: Some("trigger.drift".into()),
            ..AuditFilter::default()
        }),
        ["trigger.drift.psi", "trigger.drift"]
    );
    assert_eq!(
        kinds(AuditFilter {
            kind: Some("trigger".into()),
            subject: Some("ranker".into()),
            ..AuditFilter::default()
        }),
        ["trigger.drift.psi", "trigger", "trigger.drift"]
    );
    assert_eq!(
        kinds(AuditFilter {
            subject: Some("search".into()),
            ..AuditFilter::default()
        }),
        ["trigger.schedule"]
    );
    assert_eq!(
        kinds(AuditFilter {
            kind: Some("trigger".into()),
            limit: Some(2),
            ..AuditFilter::default()
        }),
        ["trigger.drift.psi", "trigger.schedule"]
    );
    // Paging continues below the last id seen.
    assert_eq!(
        kinds(AuditFilter {
            kind: Some("trigger".into()),
            limit: Some(2),
            before_id: Some(ids[3]),
            ..AuditFilter::default()
        }),
        ["trigger", "trigger.drift"]
    );
    assert!(
        kinds(AuditFilter {
            kind: Some("nothing".into()),
            ..AuditFilter::default()
        })
        .is_empty()
    );

    // Default limit 100, cap 10 000.
    for i in 0..150 {
        store
            .audit(&NewAudit {
                actor: "test".into(),
                kind: "bulk".into(),
                subject: format!("s{i}"),
                detail: serde_json::Value::Null,
            })
            .expect("append");
    }
    assert_eq!(
        store
            .audit_log(&AuditFilter::default())
            .expect("default")
            .len(),
        100
    );
    assert_eq!(
        store
            .audit_log(&AuditFilter {
                limit: Some(u32::MAX),
                ..AuditFilter::default()
            })
            .expect("capped")
            .len(),
        156
    );

    // The table itself refuses changes.
    let raw = rusqlite::Connection::open(dir.db()).expect("raw open");
    assert!(
        raw.execute("UPDATE audit_log SET actor = 'mallory'", [])
            .is_err()
    );
    assert!(raw.execute("DELETE FROM audit_log", []).is_err());
    assert_eq!(
        store
            .audit_log(&AuditFilter {
                limit: Some(10_000),
                ..AuditFilter::default()
            })
            .expect("all")
            .len(),
        156
    );
}

#[test]
fn pipeline_runs_and_steps_lifecycle() {
    let dir = TempDir::new("runs");
    let clock = Arc::new(ManualClock::new(T0));
    let store = Store::open_with_clock(&dir.db(), Durability::Full, clock.clone()).expect("opens");

    let run = store
        .create_run(
            "drift",
            serde_json::json!({"psi": 0.31, "feature": "price"}),
        )
        .expect("create");
    clock.set(T0 + 10);
    let train = store
        .add_step(run, "train", serde_json::json!({"rows": 1000}))
        .expect("step");
    let record = store.run(run).expect("run").expect("exists");
    assert_eq!(record.trigger, "drift");
    assert_eq!(record.state, "running");
    assert_eq!(record.started_ms, T0);
    assert_eq!(record.finished_ms, None);
    assert_eq!(record.outcome, None);
    assert_eq!(record.evidence["psi"], 0.31);
    assert_eq!(record.steps.len(), 1);
    assert_eq!(record.steps[0].id, train);
    assert_eq!(record.steps[0].seq, 1);
    assert_eq!(record.steps[0].state, "running");
    assert_eq!(record.steps[0].started_ms, T0 + 10);

    clock.set(T0 + 20);
    store
        .finish_step(train, "succeeded", serde_json::json!({"model": "ranker@5"}))
        .expect("finish step");
    assert!(matches!(
        store.finish_step(train, "failed", serde_json::Value::Null),
        Err(StoreError::Invalid(_))
    ));
    let evaluate = store
        .add_step(run, "evaluate", serde_json::Value::Null)
        .expect("step");
    store
        .finish_step(evaluate, "succeeded", serde_json::json!({"auc": 0.93}))
        .expect("finish step");

    // Waiting for review: still active, not finished.
    store
        .finish_run(
            run,
            "pending_review",
            serde_json::json!({"candidate": "ranker@5"}),
        )
        .expect("pending");
    let record = store.run(run).expect("run").expect("exists");
    assert_eq!(record.state, "pending_review");
    assert_eq!(record.finished_ms, None);
    assert_eq!(
        record
            .steps
            .iter()
            .map(|s| (s.seq, s.name.as_str(), s.state.as_str(), s.finished_ms))
            .collect::<Vec<_>>(),
        [
            (1, "train", "succeeded", Some(T0 + 20)),
            (2, "evaluate", "succeeded", Some(T0 + 20)),
        ]
    );
    assert_eq!(record.steps[0].detail["model"], "ranker@5");

    let other = store
        .create_run("manual", serde_json::json!({"by": "admin"}))
        .expect("create");
    assert_eq!(
        store
            .active_runs()
            .expect("active")
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>(),
        [other, run]
    );

    clock.set(T0 + 30);
    store
        .finish_run(
            run,
            "succeeded",
            serde_json::json!({"promoted": "ranker@5"}),
        )
        .expect("finish");
    let record = store.run(run).expect("run").expect("exists");
    assert_eq!(record.state, "succeeded");
    assert_eq!(record.finished_ms, Some(T0 + 30));
    assert_eq!(
        record.outcome,
        Some(serde_json::json!({"promoted": "ranker@5"}))
    );
    assert_eq!(
        store
            .active_runs()
            .expect("active")
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>(),
        [other]
    );

    // A finished run neither changes again nor takes steps.
    assert!(matches!(
        store.finish_run(run, "failed", serde_json::Value::Null),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.add_step(run, "late", serde_json::Value::Null),
        Err(StoreError::Invalid(_))
    ));
    // Unknown ids and states are refused.
    assert!(matches!(
        store.add_step(999, "x", serde_json::Value::Null),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.finish_run(999, "failed", serde_json::Value::Null),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.finish_step(999, "failed", serde_json::Value::Null),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.finish_run(other, "done", serde_json::Value::Null),
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(store.run(999).expect("run"), None);

    store
        .finish_run(other, "cancelled", serde_json::Value::Null)
        .expect("cancel");
    assert!(store.active_runs().expect("active").is_empty());
    let runs = store.runs(10).expect("runs");
    assert_eq!(runs.iter().map(|r| r.id).collect::<Vec<_>>(), [other, run]);
    assert_eq!(runs[1].steps.len(), 2);
    assert_eq!(store.runs(1).expect("runs").len(), 1);
}

#[test]
fn corrupt_stored_values_are_errors_not_panics() {
    let dir = TempDir::new("corrupt");
    let path = dir.db();
    let store = open(&path);
    let clock = Arc::new(ManualClock::new(T0));
    let a = agent(&clock);
    let r = report(&a, &clock, "agent-1", "r-1", 0, 200, T0 + 1_000);
    store.ingest(&r, T0).expect("ingest");
    store
        .save_control(&control("etag-1", "r@2"), "admin")
        .expect("save");
    let run = store
        .create_run("manual", serde_json::Value::Null)
        .expect("run");

    let raw = rusqlite::Connection::open(&path).expect("raw open");
    raw.busy_timeout(Duration::from_secs(5)).expect("timeout");
    raw.execute(
        "UPDATE windows SET metrics = X'FFFFFFFFFFFFFFFFFFFF01' WHERE experiment = 'ranker' AND variant = 'control'",
        [],
    )
    .expect("corrupt a blob");
    let corrupt = |result: Result<(), StoreError>, what: &str| match result {
        Err(StoreError::Corrupt { .. }) => {}
        other => panic!("{what}: expected Corrupt, got {other:?}"),
    };
    corrupt(store.totals(None, i64::MIN, i64::MAX).map(drop), "totals");
    corrupt(
        store
            .windows("ranker", "control", i64::MIN, i64::MAX)
            .map(drop),
        "windows",
    );
    corrupt(store.compact(i64::MAX).map(drop), "compact");
    // Merging into the corrupt bucket fails, and the report is not recorded as seen.
    let r2 = report(&a, &clock, "agent-1", "r-2", 200, 400, T0 + 2_000);
    corrupt(store.ingest(&r2, T0).map(drop), "ingest");
    assert_eq!(store.reports_accepted().expect("count"), 1);
    // Other variants still read.
    assert!(
        store
            .windows("ranker", "candidate", i64::MIN, i64::MAX)
            .is_ok()
    );
    assert!(store.totals(Some("search"), i64::MIN, i64::MAX).is_ok());

    // Not a blob at all, and a blob that decodes to impossible values.
    raw.execute(
        "UPDATE windows SET metrics = 'text' WHERE experiment = 'ranker' AND variant = 'control'",
        [],
    )
    .expect("text");
    corrupt(
        store.totals(Some("ranker"), i64::MIN, i64::MAX).map(drop),
        "text",
    );
    let mut impossible = VariantMetrics::default();
    impossible.binary.successes = 5;
    impossible.binary.trials = 1;
    raw.execute(
        "UPDATE windows SET metrics = ?1 WHERE experiment = 'ranker' AND variant = 'control'",
        [postcard::to_stdvec(&impossible).expect("encode")],
    )
    .expect("impossible");
    corrupt(
        store.totals(Some("ranker"), i64::MIN, i64::MAX).map(drop),
        "impossible",
    );

    // Fixing the row (a valid blob) makes everything work again, with nothing half-done.
    raw.execute(
        "UPDATE windows SET metrics = ?1 WHERE experiment = 'ranker' AND variant = 'control'",
        [postcard::to_stdvec(&VariantMetrics::default()).expect("encode")],
    )
    .expect("repair");
    assert_eq!(store.ingest(&r2, T0).expect("retry"), Ingested::Accepted);

    // Corrupt JSON elsewhere.
    raw.execute("UPDATE control SET document = '{not json'", [])
        .expect("corrupt control");
    corrupt(store.load_control().map(drop), "control");
    raw.execute(
        "UPDATE pipeline_runs SET evidence = '[' WHERE id = ?1",
        [run],
    )
    .expect("corrupt run");
    corrupt(store.run(run).map(drop), "run");
    raw.execute(
        "INSERT INTO audit_log (at_ms, actor, kind, subject, detail) VALUES (0, 'x', 'y', 'z', 'nope')",
        [],
    )
    .expect("corrupt audit");
    corrupt(store.audit_log(&AuditFilter::default()).map(drop), "audit");
}

/// `report` with the counters of ranker/control set to `n` (the store takes what the
/// server validated; only the sum of many such reports passes `u64::MAX`).
fn huge(report: &Report, report_id: &str, end_ms: i64, n: u64) -> Report {
    let mut r = report.clone();
    r.report_id = report_id.into();
    r.snapshot.window_end_ms = end_ms;
    let v = r
        .snapshot
        .experiments
        .iter_mut()
        .find(|e| e.name == "ranker")
        .and_then(|e| e.variants.iter_mut().find(|v| v.name == "control"))
        .expect("ranker/control");
    v.metrics.requests = n;
    v.metrics.binary.trials = n;
    v.metrics.binary.successes = n / 2;
    v.metrics.outcome.count = n;
    r
}

#[test]
fn totals_and_compaction_saturate_instead_of_failing_on_huge_sums() {
    let dir = TempDir::new("saturate");
    let clock = Arc::new(ManualClock::new(T0));
    let a = agent(&clock);
    let base = report(&a, &clock, "agent-1", "base", 0, 200, T0);
    let half = u64::MAX / 2 + 1;
    {
        let store = open(&dir.db());
        // Three minutes, each exact, whose sum passes u64::MAX (as 65 536 reports of the
        // per-report limit 2^48 in different minutes do).
        for (i, minute) in [0, 1, 70].into_iter().enumerate() {
            let r = huge(&base, &format!("h-{i}"), T0 + minute * MINUTE_MS, half);
            assert_eq!(store.ingest(&r, T0).expect("ingest"), Ingested::Accepted);
        }
        // One report more into a full bucket is refused, not wrapped.
        let over = huge(&base, "over", T0 + 70 * MINUTE_MS, half);
        assert!(matches!(
            store.ingest(&over, T0),
            Err(StoreError::Invalid(_))
        ));
    }
    // Across a restart: every read still answers, saturated.
    let store = open(&dir.db());
    {
        let totals = store.totals(None, i64::MIN, i64::MAX).expect("totals");
        let t = totals
            .iter()
            .find(|t| t.experiment == "ranker" && t.variant == "control")
            .expect("ranker/control");
        assert_eq!(t.metrics.requests, u64::MAX);
        assert_eq!(t.metrics.binary.trials, u64::MAX);
        assert_eq!(t.metrics.outcome.count, u64::MAX);
        assert!(t.metrics.binary.successes <= t.metrics.binary.trials);
        // One minute alone is exact.
        let one = store
            .totals(Some("ranker"), T0, T0 + MINUTE_MS)
            .expect("one minute");
        let c = one
            .iter()
            .find(|t| t.variant == "control")
            .expect("control");
        assert_eq!(c.metrics.requests, half);
    }
    // Compaction of the first hour (two huge minutes) succeeds and saturates the hour.
    assert!(store.compact(T0 + HOUR_MS).expect("compacts") > 0);
    let hour = store
        .windows("ranker", "control", T0, T0 + HOUR_MS)
        .expect("windows");
    assert_eq!(hour.len(), 1);
    assert_eq!(hour[0].resolution_ms, HOUR_MS);
    assert_eq!(hour[0].metrics.requests, u64::MAX);
    assert_eq!(
        store
            .totals(None, i64::MIN, i64::MAX)
            .expect("totals")
            .iter()
            .find(|t| t.variant == "control" && t.experiment == "ranker")
            .map(|t| t.metrics.requests),
        Some(u64::MAX)
    );
    // The minutes after the compacted hour are still exact.
    let later = store
        .totals(Some("ranker"), T0 + HOUR_MS, i64::MAX)
        .expect("later");
    let c = later
        .iter()
        .find(|t| t.variant == "control")
        .expect("control");
    assert_eq!(c.metrics.requests, half);
}

#[test]
fn compaction_leaves_minutes_that_have_no_hour_bucket() {
    let dir = TempDir::new("ancient");
    let store = open(&dir.db());
    let clock = Arc::new(ManualClock::new(T0));
    let a = agent(&clock);
    let r = report(&a, &clock, "agent-1", "r-1", 0, 100, T0 + 1_000);
    store.ingest(&r, T0).expect("ingest");
    // A store written before ingest refused such windows: a minute row near i64::MIN, in
    // the partial hour that has no hour bucket (it failed every compaction).
    let end = i64::MIN + 60_000;
    let ancient = end - end.rem_euclid(MINUTE_MS);
    let raw = rusqlite::Connection::open(dir.db()).expect("raw open");
    raw.execute(
        "INSERT INTO windows (experiment, variant, resolution_ms, bucket_start_ms, model, metrics)
         SELECT experiment, variant, resolution_ms, ?1, model, metrics FROM windows",
        [ancient],
    )
    .expect("copy");
    drop(raw);
    let rows = window_rows(&dir.db());
    let removed = store.compact(T0 + 2 * HOUR_MS).expect("compacts");
    assert_eq!(removed as i64 * 2, rows, "the T0 minutes are compacted");
    let kept = store
        .windows("ranker", "control", i64::MIN, T0)
        .expect("windows");
    assert_eq!(
        kept.iter()
            .map(|w| (w.bucket_start_ms, w.resolution_ms))
            .collect::<Vec<_>>(),
        [(ancient, MINUTE_MS)]
    );
    // And again: nothing left to do, no error.
    assert_eq!(store.compact(T0 + 2 * HOUR_MS).expect("again"), 0);
}
