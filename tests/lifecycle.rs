//! The model lifecycle end to end on real data (Elec2, `data/`), with a real SQLite file, a
//! manual clock and real notifications (log fallback, and an SMTP port nobody listens on).
//!
//! Elec2 rows are half an hour apart; the lifecycle maps the `t` column to Unix ms with
//! `timestamp_unit_ms = 1800000`, so "now" on the manual clock decides which rows exist.
//! Candidates differ by the features their trainer may use: a one-feature model is much
//! weaker than the full model, which makes "better" and "worse" real, not scripted.
#![cfg(feature = "sidecar")]

mod common;
use common::{ELEC_EXPERIMENTS, ELEC2_HALF_HOUR_MS as HALF_HOUR_MS};

use common::TempDir;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use modelgate::agent::{Agent, Feature, FeatureKind, FeatureValue};
use modelgate::route::{Clock, ManualClock, RouterConfig};
use modelgate::sidecar::control::ControlPlane;
use modelgate::sidecar::lifecycle::config::LifecycleConfig;
use modelgate::sidecar::lifecycle::rollout::RolloutAction;
use modelgate::sidecar::lifecycle::triggers::TriggerKind;
use modelgate::sidecar::lifecycle::{Lifecycle, LifecycleError};
use modelgate::sidecar::notify::{Channel, NotificationKind, Notifier, NotifyConfig};
use modelgate::sidecar::store::{AuditFilter, Durability, Store};
use modelgate::sidecar::train::{
    LinfaTrainer, TrainError, TrainProgress, TrainedModel, Trainer, TrainingJob,
};
use modelgate::wire::Report;

const FEATURES: [&str; 5] = ["nswprice", "nswdemand", "vicprice", "vicdemand", "transfer"];

fn data_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/elec2.csv")
}

/// A trainer whose feature set the test changes between runs (a weak model uses one
/// feature), or that fails on demand.
#[derive(Clone)]
struct Steerable {
    features: Arc<Mutex<Vec<String>>>,
    fail: Arc<Mutex<bool>>,
    /// A clock that training moves forward, and by how much (a training that takes time).
    takes: Arc<Mutex<Option<ClockStep>>>,
}

/// A clock and a step to move it by.
type ClockStep = (Arc<ManualClock>, i64);

impl Steerable {
    fn new() -> Self {
        Steerable {
            features: Arc::new(Mutex::new(FEATURES.iter().map(|f| f.to_string()).collect())),
            fail: Arc::new(Mutex::new(false)),
            takes: Arc::new(Mutex::new(None)),
        }
    }
    fn takes(&self, clock: &Arc<ManualClock>, ms: i64) {
        *self.takes.lock().unwrap() = Some((clock.clone(), ms));
    }
    fn use_features(&self, features: &[&str]) {
        *self.features.lock().unwrap() = features.iter().map(|f| f.to_string()).collect();
    }
}

impl Trainer for Steerable {
    fn train(
        &self,
        job: &TrainingJob<'_>,
        progress: &mut dyn FnMut(TrainProgress),
    ) -> Result<TrainedModel, TrainError> {
        if *self.fail.lock().unwrap() {
            return Err(TrainError::Config("this trainer fails on purpose".into()));
        }
        if let Some((clock, ms)) = self.takes.lock().unwrap().take() {
            clock.set(clock.now_unix_ms() + ms);
        }
        let mut job = job.clone();
        job.features = self.features.lock().unwrap().clone();
        LinfaTrainer::default().train(&job, progress)
    }
}

struct Setup {
    _dir: TempDir,
    store: Arc<Store>,
    control: Arc<ControlPlane>,
    clock: Arc<ManualClock>,
    trainer: Steerable,
    lifecycle: Lifecycle,
    database: PathBuf,
    config: LifecycleConfig,
}

fn config(dir: &Path, extra: &str) -> LifecycleConfig {
    let text = format!(
        r#"
model = "elec"
experiment = "elec"
data = "{}"
timestamp_column = "t"
timestamp_unit_ms = {HALF_HOUR_MS}
features = {features:?}
label = "label"
holdout_fraction = 0.2
training_window = 6000
artifacts = "{}"
step_retry_base_ms = 10
{extra}
"#,
        data_path().display(),
        dir.join("models").display(),
        features = FEATURES,
    );
    toml::from_str(&text).unwrap()
}

fn setup(name: &str, extra: &str, notify: NotifyConfig) -> Setup {
    let dir = TempDir::new(name);
    let database = dir.0.join("modelgate.db");
    // Row 8000 of Elec2 is "now" at the start.
    let clock = Arc::new(ManualClock::new(8000 * HALF_HOUR_MS));
    let store =
        Arc::new(Store::open_with_clock(&database, Durability::Normal, clock.clone()).unwrap());
    let control = Arc::new(
        ControlPlane::open(
            store.clone(),
            &RouterConfig::from_toml(ELEC_EXPERIMENTS).unwrap(),
        )
        .unwrap(),
    );
    let mut config = config(&dir.0, extra);
    config.notify = notify.clone();
    let trainer = Steerable::new();
    let lifecycle = Lifecycle::new(
        config.clone(),
        store.clone(),
        control.clone(),
        Notifier::new(notify).unwrap(),
        clock.clone(),
    )
    .unwrap()
    .with_trainer(Box::new(trainer.clone()));
    Setup {
        _dir: dir,
        store,
        control,
        clock,
        trainer,
        lifecycle,
        database,
        config,
    }
}

/// A second lifecycle over `s`'s store, control plane, clock and trainer: `config` with
/// `notifier` (tests that need other notification settings than `s` was set up with).
fn lifecycle_with(s: &Setup, config: LifecycleConfig, notifier: Notifier) -> Lifecycle {
    Lifecycle::new(
        config,
        s.store.clone(),
        s.control.clone(),
        notifier,
        s.clock.clone(),
    )
    .unwrap()
    .with_trainer(Box::new(s.trainer.clone()))
}

/// An agent with the lifecycle's experiments and its five numeric features.
fn agent_with_features(s: &Setup) -> Agent<u8> {
    Agent::<u8>::builder()
        .experiments_toml(ELEC_EXPERIMENTS)
        .unwrap()
        .features(
            FEATURES
                .iter()
                .map(|f| Feature {
                    name: f.to_string(),
                    kind: FeatureKind::Numeric,
                })
                .collect(),
        )
        .clock(s.clock.clone())
        .build()
        .unwrap()
}

/// Notifications by email to an SMTP server on 127.0.0.1:`port`: `attempts` per
/// notification, 10 ms before the first retry, `timeout_ms` per connection and command.
fn smtp_notify(port: u16, attempts: u32, timeout_ms: u64) -> NotifyConfig {
    toml::from_str(&format!(
        r#"
attempts = {attempts}
retry_base_ms = 10
[smtp]
host = "127.0.0.1"
port = {port}
tls = "none"
from = "modelgate@example.com"
to = ["ops@example.com"]
timeout_ms = {timeout_ms}
"#
    ))
    .unwrap()
}

/// The port of a peer on 127.0.0.1 that accepts connections and never answers (an SMTP
/// server that never greets): each attempt waits out its timeout.
fn silent_peer() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut open = Vec::new();
        for c in listener.incoming().flatten() {
            open.push(c);
        }
    });
    port
}

const NO_TRIGGERS: &str = r#"
[triggers]
schedule = ""
drift = false
[rollout]
strategy = "immediate"
"#;

fn production(s: &Setup) -> Option<u32> {
    s.store
        .alias("elec", "production")
        .unwrap()
        .map(|m| m.version)
}

fn served_model(s: &Setup) -> Option<String> {
    let doc = s.control.current();
    doc.control.experiments.experiments[0].variants[0]
        .model
        .clone()
}

fn delivered(s: &Setup, kind: NotificationKind) -> usize {
    assert!(s.lifecycle.notifier().wait_idle(Duration::from_secs(30)));
    s.lifecycle
        .notifier()
        .deliveries()
        .iter()
        .filter(|d| d.kind == kind)
        .count()
}

/// Trains the first model (weak: one feature, the NSW demand) through the initial trigger.
fn first_model(s: &Setup) {
    s.trainer.use_features(&["nswdemand"]);
    let outcome = s
        .lifecycle
        .tick()
        .unwrap()
        .expect("the initial trigger fires");
    assert_eq!(outcome.state, "succeeded", "{outcome:?}");
    assert_eq!(production(s), Some(1));
    assert_eq!(served_model(s).as_deref(), Some("elec@1"));
}

/// A lifecycle whose experiment or variants the control document does not have would train
/// and announce models it can never promote: it does not start.
#[test]
fn an_unknown_experiment_or_variant_is_a_config_error() {
    let s = setup("unknown-experiment", NO_TRIGGERS, NotifyConfig::default());
    for (spoil, needle) in [
        (
            Box::new(|c: &mut LifecycleConfig| c.experiment = "zzz".into())
                as Box<dyn Fn(&mut LifecycleConfig)>,
            "no experiment `zzz`",
        ),
        (
            Box::new(|c: &mut LifecycleConfig| c.candidate_variant = "challenger".into()),
            "no variant `challenger`",
        ),
    ] {
        let mut config = s.config.clone();
        spoil(&mut config);
        let err = Lifecycle::new(
            config,
            s.store.clone(),
            s.control.clone(),
            Notifier::new(NotifyConfig::default()).unwrap(),
            s.clock.clone(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, LifecycleError::Config(m) if m.contains(needle)),
            "{err}"
        );
    }
}

#[test]
fn a_better_candidate_is_approved_and_promoted() {
    let s = setup("approve", NO_TRIGGERS, NotifyConfig::default());
    first_model(&s);
    s.trainer.use_features(&FEATURES);
    let outcome = s
        .lifecycle
        .run(TriggerKind::Manual, serde_json::json!({"reason": "test"}))
        .unwrap();
    let comparison = outcome
        .evaluation
        .as_ref()
        .and_then(|e| e.comparison)
        .expect("compared with production");
    assert!(comparison.improvement >= 0.05, "{comparison:?}");
    assert_eq!(outcome.state, "succeeded", "{outcome:?}");
    assert_eq!(production(&s), Some(2));
    assert_eq!(
        s.store
            .alias("elec", "previous")
            .unwrap()
            .map(|m| m.version),
        Some(1)
    );
    // The agents' control document now serves elec@2, with the artifact's location.
    assert_eq!(served_model(&s).as_deref(), Some("elec@2"));
    let doc = s.control.current();
    let assignment = &doc.control.models["elec/production"];
    assert_eq!(assignment.reference, "elec@2");
    assert!(Path::new(assignment.location.as_deref().unwrap()).exists());
    // The run's steps, the audit rows and the notifications.
    let run = s.store.run(outcome.run_id).unwrap().unwrap();
    let steps: Vec<&str> = run.steps.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(
        steps,
        [
            "loading",
            "training",
            "registering",
            "evaluating",
            "deciding",
            "notifying",
            "promoting"
        ]
    );
    assert!(run.steps.iter().all(|x| x.state == "succeeded"), "{run:?}");
    let promotions = s
        .store
        .audit_log(&AuditFilter {
            kind: Some("model.promote".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(promotions.len(), 2);
    assert_eq!(promotions[0].subject, "elec@2");
    assert!(promotions[0].detail["improvement"].as_f64().unwrap() >= 0.05);
    assert_eq!(delivered(&s, NotificationKind::ModelUpdate), 2);
    assert_eq!(delivered(&s, NotificationKind::Promotion), 2);
    // Every delivery went to the log: no channel is configured.
    assert!(
        s.lifecycle
            .notifier()
            .deliveries()
            .iter()
            .all(|d| d.channel == Channel::Log && d.ok)
    );
    // The registry keeps lineage, data range and hash.
    let v2 = s.store.model("elec", 2).unwrap().unwrap();
    assert_eq!(v2.metrics["lineage"]["run_id"], outcome.run_id);
    assert_eq!(v2.metrics["lineage"]["trigger"], "manual");
    assert_eq!(v2.sha256.len(), 64);
    assert!(v2.trained_to_ms.unwrap() <= 8000 * HALF_HOUR_MS);
}

/// The run whose update is being announced or waits out its grace period (its `notifying`
/// step is running), waiting for one for up to two minutes.
fn notifying_run(s: &Setup) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let runs = s.store.active_runs().unwrap();
        if let Some(run) = runs.iter().find(|r| {
            r.steps
                .iter()
                .any(|x| x.name == "notifying" && x.state == "running")
        }) {
            return run.id;
        }
        assert!(Instant::now() < deadline, "no update reached its notice");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Without a grace period the update still waits for its notice; a reject meanwhile stops
/// it (before, the wait could not be interrupted and a rollback then was undone).
#[test]
fn an_update_waiting_for_its_notice_can_be_stopped() {
    let s = setup("notice-veto", NO_TRIGGERS, NotifyConfig::default());
    first_model(&s);
    s.trainer.use_features(&FEATURES);
    // Each email waits 20 s for a greeting that never comes.
    let notify = smtp_notify(silent_peer(), 1, 20000);
    let mut config = s.config.clone();
    config.notify = notify.clone();
    let lifecycle = lifecycle_with(&s, config, Notifier::new(notify).unwrap());
    std::thread::scope(|scope| {
        let pipeline = scope.spawn(|| lifecycle.run(TriggerKind::Manual, serde_json::json!({})));
        let run_id = notifying_run(&s);
        lifecycle.reject(run_id, "erin", "not now").unwrap();
        let outcome = pipeline.join().unwrap().unwrap();
        assert_eq!(outcome.state, "rejected", "{outcome:?}");
        assert_eq!(production(&s), Some(1));
        assert_eq!(served_model(&s).as_deref(), Some("elec@1"));
    });
}

/// The grace period lets an administrator stop an update: rejecting the run, or rolling
/// back, during it ends the wait at once, leaves production as the administrator wants it
/// and rejects the run (it cannot undo the rollback when the period would have ended).
#[test]
fn an_update_can_be_stopped_during_its_grace_period() {
    let s = setup("grace-veto", NO_TRIGGERS, NotifyConfig::default());
    first_model(&s);
    s.trainer.use_features(&FEATURES);
    let outcome = s
        .lifecycle
        .run(TriggerKind::Manual, serde_json::json!({}))
        .unwrap();
    assert_eq!(outcome.state, "succeeded", "{outcome:?}");
    assert_eq!(production(&s), Some(2));
    // The same sidecar with a grace period (two minutes: a veto that did not work would let
    // the update through, and the test would fail, not hang), approving ties.
    let notify = NotifyConfig {
        grace_period_s: 120,
        ..NotifyConfig::default()
    };
    let mut config = s.config.clone();
    config.notify = notify.clone();
    config.min_improvement = 0.0;
    let lifecycle = lifecycle_with(&s, config, Notifier::new(notify).unwrap());
    let in_grace = || notifying_run(&s);
    std::thread::scope(|scope| {
        let pipeline = scope.spawn(|| lifecycle.run(TriggerKind::Manual, serde_json::json!({})));
        let run_id = in_grace();
        // A rollback that is refused changes nothing: the update still waits.
        assert!(matches!(
            lifecycle.rollback(Some(2), "dave", "to what serves already"),
            Err(LifecycleError::Refused(_))
        ));
        lifecycle
            .reject(run_id, "bob", "not during the sale")
            .unwrap();
        let outcome = pipeline.join().unwrap().unwrap();
        assert_eq!(outcome.state, "rejected", "{outcome:?}");
        assert_eq!(production(&s), Some(2));
        let run = s.store.run(run_id).unwrap().unwrap();
        assert_eq!(run.state, "rejected");
        assert_eq!(run.outcome.unwrap()["rejected_by"], "bob");
    });
    std::thread::scope(|scope| {
        let pipeline = scope.spawn(|| lifecycle.run(TriggerKind::Manual, serde_json::json!({})));
        let run_id = in_grace();
        assert_eq!(lifecycle.rollback(None, "carol", "complaints").unwrap(), 1);
        let outcome = pipeline.join().unwrap().unwrap();
        assert_eq!(outcome.state, "rejected", "{outcome:?}");
        assert_eq!(production(&s), Some(1));
        assert_eq!(served_model(&s).as_deref(), Some("elec@1"));
        let run = s.store.run(run_id).unwrap().unwrap();
        assert_eq!(run.state, "rejected");
        assert_eq!(run.outcome.unwrap()["rejected_by"], "carol");
    });
    let rejections = s
        .store
        .audit_log(&AuditFilter {
            kind: Some("run.reject".into()),
            ..Default::default()
        })
        .unwrap();
    let actors: Vec<&str> = rejections.iter().map(|r| r.actor.as_str()).collect();
    assert!(
        actors.contains(&"bob") && actors.contains(&"carol"),
        "{actors:?}"
    );
}

/// The "model update" notice goes out before the update even when the channels are slow:
/// an SMTP server that accepts connections and never greets holds every email for its
/// timeout, so the notice queues behind the run's earlier ones. At the moment the notice is
/// handled, the agents must still be served the old model.
#[test]
fn the_update_notice_is_out_before_the_update_when_a_channel_is_slow() {
    let s = setup("notice-first", NO_TRIGGERS, NotifyConfig::default());
    first_model(&s);
    s.trainer.use_features(&FEATURES);
    let notify = smtp_notify(silent_peer(), 2, 400);
    let served_at_notice: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let hook = {
        let control = s.control.clone();
        let seen = served_at_notice.clone();
        Arc::new(move |d: &modelgate::sidecar::notify::Delivery| {
            if d.kind == NotificationKind::ModelUpdate {
                let doc = control.current();
                let served = doc.control.experiments.experiments[0].variants[0]
                    .model
                    .clone();
                seen.lock().unwrap().push(served);
            }
        })
    };
    let mut config = s.config.clone();
    config.notify = notify.clone();
    let lifecycle = lifecycle_with(&s, config, Notifier::with_hook(notify, hook).unwrap());
    let outcome = lifecycle
        .run(TriggerKind::Manual, serde_json::json!({}))
        .unwrap();
    assert_eq!(outcome.state, "succeeded", "{outcome:?}");
    assert_eq!(served_model(&s).as_deref(), Some("elec@2"));
    assert!(lifecycle.notifier().wait_idle(Duration::from_secs(60)));
    let seen = served_at_notice.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the notice was handled");
    assert!(
        seen.iter().all(|m| m.as_deref() == Some("elec@1")),
        "the update took effect before its notice was out: {seen:?}"
    );
    let run = s.store.run(outcome.run_id).unwrap().unwrap();
    let notifying = run.steps.iter().find(|x| x.name == "notifying").unwrap();
    assert_eq!(notifying.detail["notice_delivered"], true, "{notifying:?}");
}

#[test]
fn a_small_improvement_waits_for_review_then_is_approved() {
    let s = setup(
        "review-approve",
        &format!("min_improvement = 10.0\n{NO_TRIGGERS}"),
        NotifyConfig::default(),
    );
    first_model(&s);
    s.trainer.use_features(&FEATURES);
    let outcome = s
        .lifecycle
        .run(TriggerKind::Manual, serde_json::json!({}))
        .unwrap();
    assert_eq!(outcome.state, "pending_review", "{outcome:?}");
    assert_eq!(production(&s), Some(1), "production waits for the review");
    assert_eq!(delivered(&s, NotificationKind::ReviewNeeded), 1);
    assert!(matches!(
        s.lifecycle.approve(outcome.run_id, "alice", " "),
        Err(LifecycleError::Refused(_))
    ));
    s.lifecycle
        .approve(outcome.run_id, "alice", "better enough for now")
        .unwrap();
    assert_eq!(production(&s), Some(2));
    assert_eq!(served_model(&s).as_deref(), Some("elec@2"));
    let run = s.store.run(outcome.run_id).unwrap().unwrap();
    assert_eq!(run.state, "succeeded");
    let approvals = s
        .store
        .audit_log(&AuditFilter {
            kind: Some("run.approve".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(approvals[0].actor, "alice", "the row names who approved");
    assert_eq!(approvals[0].detail["actor"], "alice");
    assert_eq!(approvals[0].detail["reason"], "better enough for now");
    // A decided run cannot be decided again.
    assert!(
        s.lifecycle
            .reject(outcome.run_id, "bob", "too late")
            .is_err()
    );
}

/// A review decided after production changed would promote a candidate over a model it was
/// never compared with: the approval is refused, saying why, and rejecting stays possible.
#[test]
fn approving_a_review_after_production_changed_is_refused() {
    let s = setup(
        "review-stale",
        &format!("min_improvement = 10.0\n{NO_TRIGGERS}"),
        NotifyConfig::default(),
    );
    first_model(&s);
    s.trainer.use_features(&FEATURES);
    let older = s
        .lifecycle
        .run(TriggerKind::Manual, serde_json::json!({}))
        .unwrap();
    let newer = s
        .lifecycle
        .run(TriggerKind::Manual, serde_json::json!({}))
        .unwrap();
    assert_eq!(older.state, "pending_review", "{older:?}");
    assert_eq!(newer.state, "pending_review", "{newer:?}");
    s.lifecycle
        .approve(newer.run_id, "alice", "the newer one")
        .unwrap();
    assert_eq!(production(&s), Some(3));
    let err = s
        .lifecycle
        .approve(older.run_id, "alice", "the older one")
        .unwrap_err();
    assert!(
        matches!(&err, LifecycleError::Refused(m) if m.contains("against elec@1") && m.contains("now elec@3")),
        "{err}"
    );
    assert_eq!(production(&s), Some(3));
    assert_eq!(served_model(&s).as_deref(), Some("elec@3"));
    s.lifecycle
        .reject(older.run_id, "alice", "evaluated against elec@1")
        .unwrap();
    assert_eq!(
        s.store.run(older.run_id).unwrap().unwrap().state,
        "rejected"
    );
}

#[test]
fn a_small_improvement_waits_for_review_then_is_rejected() {
    let s = setup(
        "review-reject",
        &format!("min_improvement = 10.0\n{NO_TRIGGERS}"),
        NotifyConfig::default(),
    );
    first_model(&s);
    s.trainer.use_features(&FEATURES);
    let outcome = s
        .lifecycle
        .run(TriggerKind::Manual, serde_json::json!({}))
        .unwrap();
    assert_eq!(outcome.state, "pending_review");
    s.lifecycle
        .reject(outcome.run_id, "bob", "not convinced")
        .unwrap();
    assert_eq!(production(&s), Some(1));
    assert_eq!(served_model(&s).as_deref(), Some("elec@1"));
    let run = s.store.run(outcome.run_id).unwrap().unwrap();
    assert_eq!(run.state, "rejected");
    let rejections = s
        .store
        .audit_log(&AuditFilter {
            kind: Some("run.reject".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(rejections[0].actor, "bob");
    assert_eq!(rejections[0].detail["reason"], "not convinced");
}

#[test]
fn a_worse_candidate_is_rejected_automatically_and_rollback_restores() {
    let s = setup("reject-rollback", NO_TRIGGERS, NotifyConfig::default());
    first_model(&s);
    s.trainer.use_features(&FEATURES);
    let better = s
        .lifecycle
        .run(TriggerKind::Manual, serde_json::json!({}))
        .unwrap();
    assert_eq!(better.state, "succeeded");
    // A one-feature model against the full one: worse, rejected with its evidence.
    s.trainer.use_features(&["nswdemand"]);
    let worse = s
        .lifecycle
        .run(TriggerKind::Manual, serde_json::json!({}))
        .unwrap();
    assert_eq!(worse.state, "rejected", "{worse:?}");
    let comparison = worse.evaluation.as_ref().unwrap().comparison.unwrap();
    assert!(comparison.improvement < 0.0);
    assert_eq!(production(&s), Some(2));
    let run = s.store.run(worse.run_id).unwrap().unwrap();
    assert!(
        run.outcome.unwrap()["reason"]
            .as_str()
            .unwrap()
            .contains("worse")
    );

    // Rollback to the previous version, at once, through the control plane.
    let version = s
        .lifecycle
        .rollback(None, "carol", "v2 misbehaves")
        .unwrap();
    assert_eq!(version, 1);
    assert_eq!(production(&s), Some(1));
    assert_eq!(served_model(&s).as_deref(), Some("elec@1"));
    assert_eq!(
        s.store
            .alias("elec", "previous")
            .unwrap()
            .map(|m| m.version),
        Some(2)
    );
    let history = s.store.alias_history("elec").unwrap();
    assert_eq!(history[0].actor, "carol");
    assert_eq!(delivered(&s, NotificationKind::Rollback), 1);
    // And back again with --to.
    assert_eq!(s.lifecycle.rollback(Some(2), "carol", "fixed").unwrap(), 2);
    assert!(s.lifecycle.rollback(Some(2), "carol", "again").is_err());
    assert!(s.lifecycle.rollback(Some(99), "carol", "nope").is_err());
}

#[test]
fn the_schedule_fires_on_the_fake_clock() {
    let s = setup(
        "schedule",
        "[triggers]\nschedule = \"0 0 1 * *\"\ndrift = false\nvolume = 1000000",
        NotifyConfig::default(),
    );
    first_model(&s);
    // 8000 half hours after the epoch is 1970-06-16; the next monthly run is July 1st.
    let july_1 = 181 * 24 * 3_600_000;
    s.clock.set(july_1 - 1);
    assert!(s.lifecycle.check_triggers().unwrap().is_empty());
    s.clock.set(july_1);
    let firings = s.lifecycle.check_triggers().unwrap();
    assert_eq!(firings.len(), 1);
    assert_eq!(firings[0].kind, TriggerKind::Schedule);
    assert_eq!(firings[0].evidence["scheduled_ms"], july_1);
    assert!(
        s.lifecycle.check_triggers().unwrap().is_empty(),
        "once per occurrence"
    );
    let audit = s
        .store
        .audit_log(&AuditFilter {
            kind: Some("trigger.schedule".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(audit.len(), 1);
}

/// A monthly time that passed while the sidecar was down fires when it starts again; a
/// restart with no scheduled time since the latest run fires nothing.
#[test]
fn a_schedule_missed_while_the_sidecar_was_down_fires_at_the_next_start() {
    let s = setup(
        "schedule-missed",
        "[triggers]\nschedule = \"0 0 1 * *\"\ndrift = false\nvolume = 1000000",
        NotifyConfig::default(),
    );
    // The first model's run starts on 1970-06-16.
    first_model(&s);
    let july_1 = 181 * 24 * 3_600_000;
    s.clock.set(july_1 - 3_600_000);
    let restarted = lifecycle_with(
        &s,
        s.config.clone(),
        Notifier::new(NotifyConfig::default()).unwrap(),
    );
    assert!(
        restarted.check_triggers().unwrap().is_empty(),
        "nothing due yet"
    );
    // Down from June 30th to July 3rd: July 1st was missed.
    s.clock.set(july_1 + 2 * 24 * 3_600_000);
    let restarted = lifecycle_with(
        &s,
        s.config.clone(),
        Notifier::new(NotifyConfig::default()).unwrap(),
    );
    let firings = restarted.check_triggers().unwrap();
    assert_eq!(firings.len(), 1, "{firings:?}");
    assert_eq!(firings[0].kind, TriggerKind::Schedule);
    assert_eq!(firings[0].evidence["scheduled_ms"], july_1);
    assert!(restarted.check_triggers().unwrap().is_empty(), "once");
}

#[test]
fn volume_fires_past_1000_new_records_not_at_1000() {
    let s = setup(
        "volume",
        "[triggers]\nschedule = \"\"\ndrift = false\nvolume = 1000",
        NotifyConfig::default(),
    );
    first_model(&s);
    let trained_to = s.store.model("elec", 1).unwrap().unwrap().created_ms;
    // Counted from the time of the last training: every row up to then was available.
    assert_eq!(trained_to, 8000 * HALF_HOUR_MS);
    // Rows are one per half hour: exactly 1000 new rows, then 1001.
    s.clock.set(trained_to + 1000 * HALF_HOUR_MS);
    assert!(s.lifecycle.check_triggers().unwrap().is_empty());
    s.clock.set(trained_to + 1001 * HALF_HOUR_MS);
    let firings = s.lifecycle.check_triggers().unwrap();
    assert_eq!(firings.len(), 1, "{firings:?}");
    assert_eq!(firings[0].kind, TriggerKind::Volume);
    assert_eq!(firings[0].evidence["new_records"], 1001);
    // The tick runs the pipeline on it; a second tick during nothing new does not.
    let outcome = s.lifecycle.tick().unwrap().expect("runs");
    let run = s.store.run(outcome.run_id).unwrap().unwrap();
    assert_eq!(run.trigger, "volume");
}

/// Rows that arrive while a model trains were not in its data: the volume trigger counts
/// them, from where the run cut its data rather than from when the model was registered.
#[test]
fn records_that_arrive_during_training_count_as_new() {
    let s = setup(
        "volume-during",
        "[triggers]\nschedule = \"\"\ndrift = false\nvolume = 1000",
        NotifyConfig::default(),
    );
    s.trainer.takes(&s.clock, 600 * HALF_HOUR_MS);
    first_model(&s);
    let model = s.store.model("elec", 1).unwrap().unwrap();
    assert_eq!(model.created_ms, 8600 * HALF_HOUR_MS);
    assert_eq!(model.metrics["lineage"]["data_cut_ms"], 8000 * HALF_HOUR_MS);
    s.clock.set(9000 * HALF_HOUR_MS);
    assert!(s.lifecycle.check_triggers().unwrap().is_empty());
    s.clock.set(9001 * HALF_HOUR_MS);
    let firings = s.lifecycle.check_triggers().unwrap();
    assert_eq!(firings.len(), 1, "{firings:?}");
    assert_eq!(firings[0].kind, TriggerKind::Volume);
    assert_eq!(firings[0].evidence["new_records"], 1001);
}

/// A trainer that keeps failing is not restarted by the volume trigger at every check (new
/// records stay new while no model is trained): the trigger waits ten check intervals.
#[test]
fn a_failing_trainer_is_not_restarted_at_every_check() {
    let s = setup(
        "volume-failing",
        "[triggers]\nschedule = \"\"\ndrift = false\nvolume = 1000",
        NotifyConfig::default(),
    );
    first_model(&s);
    *s.trainer.fail.lock().unwrap() = true;
    let t0 = 9001 * HALF_HOUR_MS;
    s.clock.set(t0);
    let outcome = s
        .lifecycle
        .tick()
        .unwrap()
        .expect("the volume trigger runs");
    assert_eq!(outcome.state, "failed", "{outcome:?}");
    let interval = 1000 * s.config.triggers.check_interval_s as i64;
    s.clock.set(t0 + interval);
    assert!(s.lifecycle.check_triggers().unwrap().is_empty());
    s.clock.set(t0 + 10 * interval);
    let firings = s.lifecycle.check_triggers().unwrap();
    assert_eq!(firings.len(), 1, "{firings:?}");
    assert_eq!(firings[0].kind, TriggerKind::Volume);
}

/// Ships every `step`-th Elec2 row of `[from, to)` as an agent on the lifecycle's clock
/// would.
fn ship_rows(s: &Setup, from: usize, to: usize, step: usize) {
    let text = std::fs::read_to_string(data_path()).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let columns: Vec<usize> = FEATURES
        .iter()
        .map(|f| header.iter().position(|h| h == f).unwrap())
        .collect();
    let agent = agent_with_features(s);
    let elec = agent.experiment("elec").unwrap();
    let mut row = vec![FeatureValue::Missing; FEATURES.len()];
    for (i, line) in lines.enumerate().skip(from).take(to - from).step_by(step) {
        let fields: Vec<&str> = line.split(',').collect();
        for (slot, &c) in row.iter_mut().zip(&columns) {
            *slot = FeatureValue::Number(fields[c].parse().unwrap());
        }
        let decision = agent.route(elec, &format!("row-{i}"));
        agent.record_features(&decision, &row);
    }
    let report = Report::new("agent-1", &format!("rows-{from}-{to}"), agent.snapshot());
    s.store.ingest(&report, s.clock.now_unix_ms()).unwrap();
}

#[test]
fn drift_on_real_data_triggers_retraining_with_evidence() {
    let s = setup(
        "drift",
        "[triggers]\nschedule = \"\"\ndrift = true\nvolume = 1000000\nmin_drift_rows = 500\ndrift_window_s = 86400",
        NotifyConfig::default(),
    );
    first_model(&s);
    // Current traffic drawn from the training period itself: no drift.
    ship_rows(&s, 2000, 6800, 4);
    assert!(s.lifecycle.check_triggers().unwrap().is_empty());
    // Traffic from a year later: Elec2's Victorian columns and transfer really moved.
    s.clock.set(s.clock.now_unix_ms() + 2 * 86_400_000);
    ship_rows(&s, 30_000, 31_000, 1);
    let firings = s.lifecycle.check_triggers().unwrap();
    assert_eq!(firings.len(), 1, "{firings:?}");
    assert_eq!(firings[0].kind, TriggerKind::Drift);
    let features = firings[0].evidence["features"].as_array().unwrap();
    let drifted: Vec<&serde_json::Value> = features
        .iter()
        .filter(|f| f["verdict"] == "drift")
        .collect();
    assert!(!drifted.is_empty());
    for f in &drifted {
        assert!(f["ks"].as_f64().unwrap() > 0.1, "{f}");
        assert!(f["ks_error_bound"].as_f64().unwrap() < 0.01, "{f}");
        assert!(f["psi"].as_f64().is_some());
    }
    assert_eq!(delivered(&s, NotificationKind::DriftAlert), 1);
    // It does not fire again while the drift window has not passed.
    assert!(s.lifecycle.tick().unwrap().is_some(), "the drift run");
    assert!(s.lifecycle.check_triggers().unwrap().is_empty());
}

#[test]
fn a_failing_trainer_fails_the_run_and_leaves_production() {
    let s = setup("failing", NO_TRIGGERS, NotifyConfig::default());
    first_model(&s);
    *s.trainer.fail.lock().unwrap() = true;
    let outcome = s
        .lifecycle
        .run(TriggerKind::Manual, serde_json::json!({}))
        .unwrap();
    assert_eq!(outcome.state, "failed");
    assert!(
        outcome.reason.contains("fails on purpose"),
        "{}",
        outcome.reason
    );
    let run = s.store.run(outcome.run_id).unwrap().unwrap();
    assert_eq!(run.state, "failed");
    // Tried three times (two retries with backoff), each attempt recorded.
    let attempts: Vec<_> = run.steps.iter().filter(|x| x.name == "training").collect();
    assert_eq!(attempts.len(), 3, "{run:?}");
    assert!(attempts.iter().all(|x| x.state == "failed"));
    assert_eq!(production(&s), Some(1));
    assert_eq!(served_model(&s).as_deref(), Some("elec@1"));
    assert_eq!(delivered(&s, NotificationKind::RunFailed), 1);
}

#[test]
fn an_unreachable_smtp_server_does_not_stop_the_pipeline() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let notify = smtp_notify(port, 2, 2000);
    let s = setup("smtp-down", NO_TRIGGERS, notify);
    first_model(&s);
    assert!(s.lifecycle.notifier().wait_idle(Duration::from_secs(60)));
    let deliveries = s.lifecycle.notifier().deliveries();
    let emails: Vec<_> = deliveries
        .iter()
        .filter(|d| d.channel == Channel::Email)
        .collect();
    assert!(!emails.is_empty());
    assert!(
        emails.iter().all(|d| !d.ok && d.attempts == 2),
        "{emails:?}"
    );
    let updates_logged = deliveries
        .iter()
        .filter(|d| d.channel == Channel::Log && d.kind == NotificationKind::ModelUpdate)
        .count();
    assert_eq!(updates_logged, 1, "the model update fell back to the log");
}

#[test]
fn a_restart_mid_run_marks_the_run_failed_and_changes_nothing() {
    let s = setup("restart", NO_TRIGGERS, NotifyConfig::default());
    first_model(&s);
    // A run that was training when the sidecar died: the store has it `running`.
    let run_id = s
        .store
        .create_run("manual", serde_json::json!({"reason": "before the crash"}))
        .unwrap();
    s.store
        .add_step(run_id, "training", serde_json::json!({}))
        .unwrap();
    // A new lifecycle on the same database (the restarted sidecar).
    let store =
        Arc::new(Store::open_with_clock(&s.database, Durability::Normal, s.clock.clone()).unwrap());
    let control = Arc::new(ControlPlane::open(store.clone(), &RouterConfig::default()).unwrap());
    let restarted = Lifecycle::new(
        s.config.clone(),
        store.clone(),
        control.clone(),
        Notifier::new(NotifyConfig::default()).unwrap(),
        s.clock.clone(),
    )
    .unwrap();
    assert_eq!(restarted.recover().unwrap(), vec![run_id]);
    let run = store.run(run_id).unwrap().unwrap();
    assert_eq!(run.state, "failed");
    assert!(run.steps.iter().all(|x| x.state == "failed"));
    assert_eq!(
        store
            .alias("elec", "production")
            .unwrap()
            .map(|m| m.version),
        Some(1)
    );
    assert_eq!(
        control.current().control.experiments.experiments[0].variants[0]
            .model
            .as_deref(),
        Some("elec@1"),
        "the control document survived the restart"
    );
    assert!(restarted.notifier().wait_idle(Duration::from_secs(10)));
    assert_eq!(
        restarted
            .notifier()
            .deliveries()
            .iter()
            .filter(|d| d.kind == NotificationKind::RunFailed)
            .count(),
        1
    );
    // Nothing to recover twice.
    assert!(restarted.recover().unwrap().is_empty());
}

/// Ships `n` labelled records from an agent at the lifecycle's current time; returns the
/// report.
fn ship_labelled(s: &Setup, n: usize, id: &str) -> Report {
    let agent = agent_with_features(s);
    for i in 0..n {
        let x = i as f64 / n as f64;
        agent.record_labelled(&[x, 0.4, 0.003, 0.42, 0.41], (i % 2) as f64);
    }
    // Rejected, and counted as such: a NaN and a short row.
    agent.record_labelled(&[f64::NAN, 0.4, 0.003, 0.42, 0.41], 1.0);
    agent.record_labelled(&[0.1], 1.0);
    let snapshot = agent.snapshot();
    assert_eq!(snapshot.labelled.seen, n as u64);
    assert_eq!(snapshot.labelled.records.len(), n.min(1000));
    assert_eq!(snapshot.rejections.non_finite_value, 1);
    assert_eq!(snapshot.rejections.schema_mismatch, 1);
    let report = Report::new("agent-1", id, snapshot);
    s.store.ingest(&report, s.clock.now_unix_ms()).unwrap();
    report
}

#[test]
fn volume_counts_the_agents_labelled_records_too() {
    let s = setup(
        "volume-agents",
        "[triggers]\nschedule = \"\"\ndrift = false\nvolume = 1000",
        NotifyConfig::default(),
    );
    first_model(&s);
    let trained_at = s.store.model("elec", 1).unwrap().unwrap().created_ms;
    // 400 new rows in the CSV and 600 records from agents (1,200 seen, a reservoir of
    // 1,000 kept: the count stays exact): 1,600 in all.
    s.clock.set(trained_at + 400 * HALF_HOUR_MS);
    let report = ship_labelled(&s, 1200, "labelled-1");
    // A retried report is not counted twice.
    assert_eq!(
        s.store.ingest(&report, s.clock.now_unix_ms()).unwrap(),
        modelgate::sidecar::store::Ingested::Duplicate
    );
    let firings = s.lifecycle.check_triggers().unwrap();
    assert_eq!(firings.len(), 1, "{firings:?}");
    assert_eq!(firings[0].evidence["from_data"], 400);
    assert_eq!(firings[0].evidence["from_agents"], 1200);
    assert_eq!(firings[0].evidence["new_records"], 1600);
    // The kept records join the training data of the next run.
    let outcome = s
        .lifecycle
        .run(TriggerKind::Manual, serde_json::json!({}))
        .unwrap();
    let run = s.store.run(outcome.run_id).unwrap().unwrap();
    let loading = run.steps.iter().find(|x| x.name == "loading").unwrap();
    assert_eq!(loading.detail["rows_from_agents"], 1000);
}

#[test]
fn exactly_1000_agent_and_csv_records_do_not_fire() {
    let s = setup(
        "volume-exact",
        "[triggers]\nschedule = \"\"\ndrift = false\nvolume = 1000",
        NotifyConfig::default(),
    );
    first_model(&s);
    let trained_at = s.store.model("elec", 1).unwrap().unwrap().created_ms;
    s.clock.set(trained_at + 400 * HALF_HOUR_MS);
    ship_labelled(&s, 600, "labelled-a");
    assert!(s.lifecycle.check_triggers().unwrap().is_empty());
    ship_labelled(&s, 1, "labelled-b");
    let firings = s.lifecycle.check_triggers().unwrap();
    assert_eq!(firings[0].evidence["new_records"], 1001);
}

/// Ships `n` binary outcomes of the production variant with `rate` successes, at the
/// lifecycle's current time.
fn ship_outcomes(s: &Setup, n: usize, rate: f64, id: &str) {
    use modelgate::agent::Outcome;
    let agent = Agent::<u8>::builder()
        .experiments_toml(ELEC_EXPERIMENTS)
        .unwrap()
        .clock(s.clock.clone())
        .build()
        .unwrap();
    let successes = (n as f64 * rate).round() as usize;
    for i in 0..n {
        agent.record_outcome("elec", "production", Outcome::Binary(i < successes));
    }
    let report = Report::new("agent-1", id, agent.snapshot());
    s.store.ingest(&report, s.clock.now_unix_ms()).unwrap();
}

/// Ships one report in which both variants served `requests` calls with half of them
/// successes, the candidate variant naming `candidate_model`, its window ending at `at`.
fn ship_rollout_report(s: &Setup, at: i64, candidate_model: &str, id: &str) {
    use modelgate::agent::{ExperimentSnapshot, VariantSnapshot};
    let agent = Agent::<u8>::builder()
        .experiments_toml(ELEC_EXPERIMENTS)
        .unwrap()
        .clock(s.clock.clone())
        .build()
        .unwrap();
    let mut snapshot = agent.snapshot();
    snapshot.window_end_ms = at;
    snapshot.window_start_ms = at - 1000;
    let metrics = || {
        let mut m = modelgate::metrics::VariantMetrics {
            requests: 50,
            ..Default::default()
        };
        m.binary.trials = 50;
        m.binary.successes = 25;
        m
    };
    snapshot.experiments = vec![ExperimentSnapshot {
        name: "elec".into(),
        variants: vec![
            VariantSnapshot {
                name: "production".into(),
                model: Some("elec@1".into()),
                metrics: metrics(),
            },
            VariantSnapshot {
                name: "candidate".into(),
                model: Some(candidate_model.into()),
                metrics: metrics(),
            },
        ],
    }];
    let report = Report::new("agent-1", id, snapshot);
    s.store.ingest(&report, at).unwrap();
}

/// An agent that could not load the candidate keeps its old model in the candidate's slot
/// and reports it: those numbers are not the candidate's, so the rollout holds and the step
/// starts again; once the agents report the candidate, it proceeds.
#[test]
fn a_rollout_holds_while_agents_report_another_model_for_the_candidate() {
    let s = setup(
        "rollout-model",
        "[triggers]\nschedule = \"\"\ndrift = false\n[rollout]\nstrategy = \"gradual\"\nsteps = [50, 100]\nmin_requests = 10\nstep_duration_s = 60",
        NotifyConfig::default(),
    );
    first_model(&s);
    s.trainer.use_features(&FEATURES);
    let outcome = s
        .lifecycle
        .run(TriggerKind::Manual, serde_json::json!({}))
        .unwrap();
    assert_eq!(outcome.state, "running", "{outcome:?}");
    let t0 = s.clock.now_unix_ms();
    ship_rollout_report(&s, t0 + 60_000, "elec@1", "r1");
    s.clock.set(t0 + 120_000);
    assert!(s.lifecycle.tick().unwrap().is_none());
    let check = s.lifecycle.last_rollout_check().expect("checked");
    assert!(
        matches!(&check.action, RolloutAction::Hold { reason } if reason.contains("elec@1 in the candidate variant")),
        "{check:?}"
    );
    assert_eq!(production(&s), Some(1));
    // The agents now serve the candidate: the step (started again) passes and promotes.
    ship_rollout_report(&s, t0 + 180_000, "elec@2", "r2");
    s.clock.set(t0 + 240_000);
    let done = s.lifecycle.tick().unwrap().expect("the rollout ends");
    assert_eq!(done.state, "succeeded", "{done:?}");
    assert_eq!(production(&s), Some(2));
}

/// Performance triggers only, with a floor of 0.55 over a day's outcomes.
const PERFORMANCE_FLOOR: &str = "[triggers]\nschedule = \"\"\ndrift = false\nvolume = 100000000\ndrift_window_s = 86400\nmin_drift_rows = 500\nperformance_min = 0.55";

#[test]
fn performance_triggers_on_a_floor_and_on_a_drop_since_promotion() {
    let s = setup(
        "performance",
        &format!("{PERFORMANCE_FLOOR}\nperformance_drop = 0.05"),
        NotifyConfig::default(),
    );
    first_model(&s);
    let promoted = s.clock.now_unix_ms();
    // The first day after promotion: 80% right.
    s.clock.set(promoted + 3_600_000);
    ship_outcomes(&s, 1000, 0.80, "day-1");
    // Three days later: 77% (a drop of 3 points: nothing), then 72% (8 points: fires).
    s.clock.set(promoted + 3 * 86_400_000);
    ship_outcomes(&s, 1000, 0.77, "day-3");
    assert!(s.lifecycle.check_triggers().unwrap().is_empty());
    s.clock.set(promoted + 5 * 86_400_000);
    ship_outcomes(&s, 1000, 0.72, "day-5");
    let firings = s.lifecycle.check_triggers().unwrap();
    assert_eq!(firings.len(), 1, "{firings:?}");
    assert_eq!(firings[0].kind, TriggerKind::Performance);
    assert_eq!(firings[0].evidence["at_promotion"], 0.8);
    assert_eq!(firings[0].evidence["online_metric"], 0.72);
    // Below the floor fires too (after the cooldown window). It is also a drop: one firing
    // carries both, so one check writes one audit row and one notice.
    s.clock.set(promoted + 8 * 86_400_000);
    ship_outcomes(&s, 1000, 0.50, "day-8");
    let firings = s.lifecycle.check_triggers().unwrap();
    assert_eq!(firings.len(), 1, "{firings:?}");
    assert_eq!(firings[0].kind, TriggerKind::Performance);
    assert_eq!(firings[0].evidence["floor"], 0.55, "{firings:?}");
    assert_eq!(firings[0].evidence["at_promotion"], 0.8, "{firings:?}");
}

#[test]
fn performance_below_the_floor_alone_fires_once() {
    let s = setup(
        "performance-floor",
        PERFORMANCE_FLOOR,
        NotifyConfig::default(),
    );
    first_model(&s);
    let promoted = s.clock.now_unix_ms();
    s.clock.set(promoted + 3_600_000);
    ship_outcomes(&s, 1000, 0.50, "day-1");
    let firings = s.lifecycle.check_triggers().unwrap();
    assert_eq!(firings.len(), 1, "{firings:?}");
    assert_eq!(firings[0].evidence["floor"], 0.55, "{firings:?}");
    assert_eq!(firings[0].evidence["online_metric"], 0.5, "{firings:?}");
}

#[test]
fn one_huge_labelled_record_does_not_block_retraining() {
    let s = setup("huge-record", NO_TRIGGERS, NotifyConfig::default());
    first_model(&s);
    s.clock.set(s.clock.now_unix_ms() + 100 * HALF_HOUR_MS);
    let huge = [1e308, 1e308, -1e308, 1e308, 1e308];
    // Agents refuse such a record when it is recorded (counted as a non-finite value)...
    let agent = agent_with_features(&s);
    agent.record_labelled(&huge, 1.0);
    agent.record_labelled(&[0.5, 0.4, 0.003, 0.42, 0.41], 1.0);
    let mut snapshot = agent.snapshot();
    assert_eq!(snapshot.rejections.non_finite_value, 1);
    assert_eq!(snapshot.labelled.records.len(), 1);
    // ... and the sidecar refuses a report that carries one. Every sign pattern of ±1e308
    // over the five features: for any model with two features of nonzero weight, one of
    // them scores +inf − inf, a NaN prediction.
    for signs in 0..32u32 {
        let features = (0..5)
            .map(|j| if signs >> j & 1 == 1 { -1e308 } else { 1e308 })
            .collect();
        snapshot.labelled.seen += 1;
        snapshot
            .labelled
            .records
            .push(modelgate::agent::LabelledRecord {
                at_ms: s.clock.now_unix_ms(),
                features,
                label: 1.0,
            });
    }
    let report = Report::new("agent-1", "huge", snapshot);
    let err = report
        .validate(&modelgate::wire::WireLimits::default())
        .unwrap_err();
    assert!(err.to_string().contains("magnitude"), "{err}");
    // A store written before that check holds it (the store takes what it is given): the
    // record is in the holdout (it is the latest) and is left out, counted, instead of
    // failing every evaluation.
    s.store.ingest(&report, s.clock.now_unix_ms()).unwrap();
    s.trainer.use_features(&FEATURES);
    let outcome = s
        .lifecycle
        .run(TriggerKind::Manual, serde_json::json!({}))
        .unwrap();
    assert_eq!(outcome.state, "succeeded", "{outcome:?}");
    let run = s.store.run(outcome.run_id).unwrap().unwrap();
    let loading = run.steps.iter().find(|x| x.name == "loading").unwrap();
    assert_eq!(loading.detail["rows_from_agents"], 33, "{}", loading.detail);
    assert_eq!(
        loading.detail["agent_records_unusable"], 32,
        "{}",
        loading.detail
    );
}

/// A holdout that reaches back into production's training rows (here: a larger holdout
/// fraction than production was trained with) scores both models only on the rows after
/// production's training data, so production is never scored on rows it learned from.
#[test]
fn production_is_never_scored_on_its_own_training_rows() {
    let s = setup("holdout-overlap", NO_TRIGGERS, NotifyConfig::default());
    first_model(&s);
    let production_to_ms = s
        .store
        .alias("elec", "production")
        .unwrap()
        .and_then(|m| m.trained_to_ms)
        .expect("production's training range");
    let mut wider = s.config.clone();
    wider.holdout_fraction = 0.5;
    let lifecycle = lifecycle_with(&s, wider, Notifier::new(NotifyConfig::default()).unwrap());
    s.trainer.use_features(&FEATURES);
    let outcome = lifecycle
        .run(
            TriggerKind::Manual,
            serde_json::json!({"reason": "wider holdout"}),
        )
        .unwrap();
    let evaluation = outcome.evaluation.as_ref().expect("evaluated");
    let range = evaluation.holdout.expect("a holdout");
    assert!(
        range.from_ms > production_to_ms,
        "{range:?} vs {production_to_ms}"
    );
    let run = s.store.run(outcome.run_id).unwrap().unwrap();
    let loading = run.steps.iter().find(|x| x.name == "loading").unwrap();
    let evaluating = run.steps.iter().find(|x| x.name == "evaluating").unwrap();
    let holdout_rows = loading.detail["holdout_rows"].as_u64().unwrap();
    let left_out = evaluating.detail["holdout_rows_left_out_as_production_training"]
        .as_u64()
        .unwrap();
    // 6,000 rows, half of them held out; production trained on the 4,800 before its own
    // 20% holdout, so 1,800 of the 3,000 are its training rows.
    assert_eq!(
        (holdout_rows, left_out),
        (3000, 1800),
        "{:?}",
        evaluating.detail
    );
    assert_eq!(range.rows, holdout_rows - left_out);
}

/// A scheduled time that comes while a stored run is still in progress (an Airflow run
/// waiting to be followed again) is not used up: it fires once that run has ended.
#[test]
fn a_schedule_due_while_a_run_is_in_progress_fires_after_it() {
    let s = setup(
        "schedule-busy",
        "[triggers]\nschedule = \"0 0 1 * *\"\ndrift = false\nvolume = 1000000",
        NotifyConfig::default(),
    );
    first_model(&s);
    let waiting = s
        .store
        .create_run("manual", serde_json::json!({"reason": "an unfinished run"}))
        .unwrap();
    let july_1 = 181 * 24 * 3_600_000;
    s.clock.set(july_1);
    assert!(s.lifecycle.tick().unwrap().is_none(), "nothing starts");
    s.store
        .finish_run(waiting, "failed", serde_json::json!({"reason": "ended"}))
        .unwrap();
    s.trainer.use_features(&FEATURES);
    s.clock.set(july_1 + 60_000);
    let outcome = s
        .lifecycle
        .tick()
        .unwrap()
        .expect("the July run starts now");
    let run = s.store.run(outcome.run_id).unwrap().unwrap();
    assert_eq!(run.trigger, "schedule", "{run:?}");
}
