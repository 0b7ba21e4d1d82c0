//! Guarded rollouts end to end on loopback: a real sidecar with its lifecycle, agents in
//! serving threads that load the trained artifacts through their reporters, and Elec2 rows
//! replayed as requests. A manual clock moves one minute per round; the test drives the
//! lifecycle's checks between rounds, so every run is the same.
//!
//! v1 is trained on the first 3,000 rows, v2 on the 6,000 up to row 9,000: v2 is approved
//! (it beats v1 on the recent holdout) and rolled out while rows from 9,000 on are served.
//! Background threads route and predict without pause during every swap and weight change,
//! checking that each request gets a whole model.
#![cfg(feature = "sidecar")]

mod common;
use common::{ELEC_EXPERIMENTS, ELEC2_HALF_HOUR_MS as HALF_HOUR_MS};

use common::TempDir;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use modelgate::agent::{Agent, Outcome};
use modelgate::artifact::{ArtifactLoader, ModelArtifact};
use modelgate::metrics::ErrorKind;
use modelgate::reporter::{Reporter, ReporterConfig};
use modelgate::route::{ManualClock, RouterConfig};
use modelgate::sidecar::config::SidecarConfig;
use modelgate::sidecar::lifecycle::triggers::TriggerKind;
use modelgate::sidecar::server::{self, RunningSidecar};
use modelgate::sidecar::store::AuditFilter;

const AGENT_TOKEN: &str = "agent-token-rollout-00001";
const ADMIN_TOKEN: &str = "admin-token-rollout-00001";
const MINUTE_MS: i64 = 60_000;
const FEATURES: [&str; 5] = ["nswprice", "nswdemand", "vicprice", "vicdemand", "transfer"];
const AGENTS: usize = 3;
const ROWS_PER_ROUND: usize = 900;

struct Row {
    features: Vec<f64>,
    label: bool,
}

fn elec2() -> Vec<Row> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/elec2.csv");
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let index = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let columns: Vec<usize> = FEATURES.iter().map(|f| index(f)).collect();
    let label = index("label");
    lines
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            Row {
                features: columns
                    .iter()
                    .map(|&c| fields[c].parse().unwrap())
                    .collect(),
                label: fields[label] == "1",
            }
        })
        .collect()
}

/// How the serving threads misbehave, to exercise the guardrails.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// One candidate call in five fails.
    CandidateErrors,
    /// Half the production calls are never recorded (a broken split as the sidecar sees it).
    DropProductionRecords,
}

struct Fleet {
    clock: Arc<ManualClock>,
    sidecar: RunningSidecar,
    agents: Vec<Arc<Agent<ModelArtifact>>>,
    reporters: Vec<Reporter>,
    rows: Arc<Vec<Row>>,
    next_row: usize,
    failed: Arc<AtomicU64>,
    served: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    hammers: Vec<std::thread::JoinHandle<()>>,
    _dir: TempDir,
}

fn start(name: &str, rollout: &str) -> Fleet {
    let dir = TempDir::new(name);
    let clock = Arc::new(ManualClock::new(3000 * HALF_HOUR_MS));
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/elec2.csv");
    let mut config =
        SidecarConfig::new(&dir.0.join("modelgate.db"), AGENT_TOKEN, ADMIN_TOKEN).unwrap();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.experiments = RouterConfig::from_toml(ELEC_EXPERIMENTS).unwrap();
    config.clock = clock.clone();
    config.lifecycle = Some(
        toml::from_str(&format!(
            r#"
model = "elec"
experiment = "elec"
data = "{}"
timestamp_column = "t"
timestamp_unit_ms = {HALF_HOUR_MS}
features = {FEATURES:?}
label = "label"
primary_metric = "accuracy"
min_improvement = 0.0
training_window = 6000
artifacts = "{}"
[triggers]
schedule = ""
drift = false
volume = 100000000
check_interval_s = 3600
[rollout]
{rollout}
"#,
            data.display(),
            dir.0.join("models").display()
        ))
        .unwrap(),
    );
    let sidecar = server::spawn(&config).unwrap();
    let lifecycle = sidecar.lifecycle().unwrap().clone();
    // v1 on the first 3,000 rows.
    let first = lifecycle
        .run(TriggerKind::Manual, serde_json::json!({"reason": "v1"}))
        .unwrap();
    assert_eq!(first.state, "succeeded", "{first:?}");

    let url = sidecar.url();
    let mut agents = Vec::new();
    let mut reporters = Vec::new();
    for i in 0..AGENTS {
        let agent = Arc::new(
            Agent::<ModelArtifact>::builder()
                .experiments_toml(ELEC_EXPERIMENTS)
                .unwrap()
                .clock(clock.clone())
                .build()
                .unwrap(),
        );
        let mut rc = ReporterConfig::new(&url, AGENT_TOKEN);
        rc.agent_id = Some(format!("server-{i}"));
        rc.interval = Duration::from_secs(3600);
        rc.control_interval = Duration::from_secs(3600);
        let reporter = Reporter::spawn(&agent, rc, Some(Arc::new(ArtifactLoader))).unwrap();
        reporter.sync_control(Duration::from_secs(10)).unwrap();
        agents.push(agent);
        reporters.push(reporter);
    }
    let failed = Arc::new(AtomicU64::new(0));
    let served = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let rows = Arc::new(elec2());
    // Hammers: route and predict without pause, through every swap, without recording.
    let hammers = agents
        .iter()
        .map(|agent| {
            let (agent, rows, failed, served, stop) = (
                agent.clone(),
                rows.clone(),
                failed.clone(),
                served.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                let elec = agent.experiment("elec").unwrap();
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    i = (i + 1) % rows.len();
                    let decision = agent.route(elec, &format!("hammer-{i}"));
                    if answer(&decision, &rows[i]).is_none() {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    served.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    Fleet {
        clock,
        sidecar,
        agents,
        reporters,
        rows,
        next_row: 9000,
        failed,
        served,
        stop,
        hammers,
        _dir: dir,
    }
}

/// The model's answer, when the request gets a whole model: one of the trained versions,
/// with as many coefficients as features, predicting a probability.
fn answer(decision: &modelgate::agent::Decision<ModelArtifact>, row: &Row) -> Option<bool> {
    let model = decision.model()?;
    let version = decision.model_version()?;
    if !(version == "elec@1" || version == "elec@2") || model.coefficients.len() != FEATURES.len() {
        return None;
    }
    let p = model.predict(&row.features).ok()?;
    (0.0..=1.0).contains(&p).then_some(p >= 0.5)
}

impl Fleet {
    /// Serves the next rows (split between the agents' threads), ships the reports, moves
    /// the clock a minute, runs the lifecycle's check and lets agents apply the control.
    fn round(&mut self, fault: Fault) -> Option<modelgate::sidecar::lifecycle::RunOutcome> {
        let from = self.next_row;
        self.next_row += ROWS_PER_ROUND;
        std::thread::scope(|s| {
            for (a, agent) in self.agents.iter().enumerate() {
                let rows = &self.rows;
                let failed = &self.failed;
                s.spawn(move || {
                    let elec = agent.experiment("elec").unwrap();
                    for i in (from..from + ROWS_PER_ROUND).filter(|i| i % AGENTS == a) {
                        let row = &rows[i % rows.len()];
                        let decision = agent.route(elec, &format!("row-{i}"));
                        let Some(predicted) = answer(&decision, row) else {
                            failed.fetch_add(1, Ordering::Relaxed);
                            continue;
                        };
                        let candidate = decision.model_version() == Some("elec@2");
                        if fault == Fault::DropProductionRecords && !candidate && i % 2 == 0 {
                            continue;
                        }
                        let error = fault == Fault::CandidateErrors && candidate && i % 5 == 0;
                        agent.record(
                            &decision,
                            Duration::from_micros(300 + (i % 7) as u64 * 50),
                            if error { Err(ErrorKind::Model) } else { Ok(()) },
                        );
                        agent
                            .record_outcome_for(&decision, Outcome::Binary(predicted == row.label));
                    }
                });
            }
        });
        for r in &self.reporters {
            r.flush(Duration::from_secs(10)).unwrap();
        }
        self.clock.set(self.clock.now() + MINUTE_MS);
        let outcome = self.sidecar.lifecycle().unwrap().tick().unwrap();
        for r in &self.reporters {
            r.sync_control(Duration::from_secs(10)).unwrap();
        }
        outcome
    }

    fn candidate_share(&self) -> f64 {
        let elec = self.agents[0].experiment("elec").unwrap();
        let n = 2000;
        let candidate = (0..n)
            .filter(|i| {
                self.agents[0]
                    .route(elec, &format!("probe-{i}"))
                    .model_version()
                    == Some("elec@2")
            })
            .count();
        candidate as f64 / n as f64
    }

    fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.hammers {
            h.join().unwrap();
        }
        (
            self.failed.load(Ordering::Relaxed),
            self.served.load(Ordering::Relaxed),
        )
    }
}

trait Now {
    fn now(&self) -> i64;
}

impl Now for ManualClock {
    fn now(&self) -> i64 {
        modelgate::route::Clock::now_unix_ms(self)
    }
}

fn start_v2(fleet: &mut Fleet) {
    fleet.clock.set(9000 * HALF_HOUR_MS);
    let lifecycle = fleet.sidecar.lifecycle().unwrap().clone();
    let outcome = lifecycle
        .run(TriggerKind::Manual, serde_json::json!({"reason": "v2"}))
        .unwrap();
    assert_eq!(outcome.state, "running", "the rollout runs: {outcome:?}");
    let improvement = outcome.evaluation.unwrap().comparison.unwrap().improvement;
    assert!(improvement > 0.0, "v2 beats v1 offline: {improvement}");
    assert!(lifecycle.rollout().is_some());
    for r in &fleet.reporters {
        r.sync_control(Duration::from_secs(10)).unwrap();
    }
}

fn audit_kinds(fleet: &Fleet, prefix: &str) -> Vec<String> {
    fleet
        .sidecar
        .store()
        .audit_log(&AuditFilter {
            kind: Some(prefix.into()),
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .rev()
        .map(|r| r.kind)
        .collect()
}

const GRADUAL: &str = r#"
strategy = "gradual"
steps = [5, 25, 50, 100]
step_duration_s = 60
min_requests = 40
margin = 1.0
"#;

#[test]
fn a_better_candidate_goes_through_every_step_and_is_promoted() {
    let mut fleet = start("promote", GRADUAL);
    start_v2(&mut fleet);
    let share = fleet.candidate_share();
    assert!((0.02..0.09).contains(&share), "5% step: {share}");
    let mut shares = vec![share];
    let mut outcome = None;
    for _ in 0..30 {
        outcome = fleet.round(Fault::None);
        if outcome.is_some() {
            break;
        }
        let share = fleet.candidate_share();
        if (share - shares.last().unwrap()).abs() > 0.05 {
            shares.push(share);
        }
    }
    let outcome = outcome.expect("the rollout ended");
    assert_eq!(outcome.state, "succeeded", "{outcome:?}");
    // 5% → 25% → 50%, then everyone on v2 through the production variant.
    assert_eq!(shares.len(), 3, "{shares:?}");
    assert!(
        (0.2..0.3).contains(&shares[1]) && (0.45..0.55).contains(&shares[2]),
        "{shares:?}"
    );
    let elec = fleet.agents[0].experiment("elec").unwrap();
    for agent in &fleet.agents {
        let d = agent.route(elec, "after");
        assert_eq!(d.model_version(), Some("elec@2"));
    }
    assert_eq!(
        audit_kinds(&fleet, "rollout"),
        ["rollout.start", "rollout.step", "rollout.step"]
    );
    assert_eq!(
        fleet
            .sidecar
            .store()
            .alias("elec", "production")
            .unwrap()
            .unwrap()
            .version,
        2
    );
    let (failed, served) = fleet.finish();
    assert!(served > 10_000, "the hammers ran: {served}");
    assert_eq!(
        failed, 0,
        "no failed request during swaps and weight changes"
    );
}

#[test]
fn injected_errors_roll_back_at_the_first_step() {
    let mut fleet = start("errors", GRADUAL);
    start_v2(&mut fleet);
    let mut outcome = None;
    for _ in 0..10 {
        outcome = fleet.round(Fault::CandidateErrors);
        if outcome.is_some() {
            break;
        }
    }
    let outcome = outcome.expect("the guardrail stopped the rollout");
    assert_eq!(outcome.state, "rejected", "{outcome:?}");
    assert!(outcome.reason.contains("error rate"), "{}", outcome.reason);
    assert_eq!(
        audit_kinds(&fleet, "rollout"),
        ["rollout.start", "rollout.rollback"]
    );
    assert_eq!(fleet.candidate_share(), 0.0, "back to production only");
    let production = fleet
        .sidecar
        .store()
        .alias("elec", "production")
        .unwrap()
        .unwrap();
    assert_eq!(production.version, 1);
    let (failed, _) = fleet.finish();
    assert_eq!(failed, 0);
}

#[test]
fn a_sample_ratio_mismatch_holds_the_rollout_and_alerts() {
    let mut fleet = start("srm", GRADUAL);
    start_v2(&mut fleet);
    for _ in 0..6 {
        assert!(fleet.round(Fault::DropProductionRecords).is_none());
    }
    let lifecycle = fleet.sidecar.lifecycle().unwrap().clone();
    let check = lifecycle.last_rollout_check().unwrap();
    assert!(check.srm_p_value.unwrap() < 0.001, "{check:?}");
    assert_eq!(
        lifecycle.rollout().unwrap().step,
        0,
        "no step while the split is wrong"
    );
    assert_eq!(
        audit_kinds(&fleet, "rollout"),
        ["rollout.start", "rollout.srm"]
    );
    assert!(lifecycle.notifier().wait_idle(Duration::from_secs(10)));
    assert!(
        lifecycle
            .notifier()
            .deliveries()
            .iter()
            .any(|d| d.subject.contains("sample ratio mismatch"))
    );
    // A retrain asked for during the rollout is refused at once, not queued and dropped.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let refused = reqwest::blocking::Client::new()
        .post(format!("{}/v1/retrain", fleet.sidecar.url()))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"reason": "impatient"}))
        .send()
        .unwrap();
    assert_eq!(refused.status().as_u16(), 409);
    let problem: serde_json::Value = refused.json().unwrap();
    assert!(
        problem.to_string().contains("rolling out elec@2"),
        "{problem}"
    );
    // An administrator stops the held rollout: production keeps all traffic, the run is
    // rejected, and the next checks change nothing.
    let run_id = lifecycle.rollout().unwrap().run_id;
    assert_eq!(
        lifecycle
            .rollback(None, "ops", "the split is broken")
            .unwrap(),
        1
    );
    assert!(lifecycle.rollout().is_none());
    for r in &fleet.reporters {
        r.sync_control(Duration::from_secs(10)).unwrap();
    }
    assert_eq!(fleet.candidate_share(), 0.0);
    assert!(fleet.round(Fault::None).is_none());
    assert_eq!(fleet.candidate_share(), 0.0);
    let run = fleet.sidecar.store().run(run_id).unwrap().unwrap();
    assert_eq!(run.state, "rejected");
    let (failed, _) = fleet.finish();
    assert_eq!(failed, 0);
}
