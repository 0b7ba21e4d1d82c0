//! `modelgate demo`: the whole loop on real data, on one machine, in under a minute.
//!
//! 1. A sidecar starts on 127.0.0.1 with a fresh SQLite file and the lifecycle of an Elec2
//!    model; v1 is trained on the first period of the data, with its reference profile.
//! 2. Serving threads, each embedding an [`Agent`] with a reporter, replay the following
//!    rows in time order as requests (several users per row); each request is answered by
//!    the model its variant serves, and the outcome (was the prediction right?) arrives one
//!    round later, as real labels do.
//! 3. A replay clock moves one simulated day per round. After each round the agents ship
//!    their reports, the lifecycle checks its triggers or its rollout, and the agents poll
//!    the control document: drift, retraining, evaluation, the policy's decision, the
//!    guarded rollout and the hot swaps happen as they would in production, only faster.
//! 4. A summary (also as JSON) lists requests, failed requests, trainings, promotions,
//!    rollbacks, drift alerts and every decision with its evidence.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::config::SidecarConfig;
use super::server::{self, RunningSidecar};
use super::store::{AuditFilter, AuditRow};
use crate::agent::{Agent, Outcome};
use crate::artifact::{ArtifactLoader, ModelArtifact};
use crate::reporter::{Reporter, ReporterConfig};
use crate::route::{Clock, ManualClock, RouterConfig};

const HALF_HOUR_MS: i64 = 1_800_000;
const FEATURES: [&str; 5] = ["nswprice", "nswdemand", "vicprice", "vicdemand", "transfer"];
const EXPERIMENTS: &str = r#"
[[experiments]]
name = "elec"
strategy = "immediate"
target = "production"
[[experiments.variants]]
name = "production"
[[experiments.variants]]
name = "candidate"
"#;

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The Elec2 CSV (`data/elec2.csv`).
    pub data: PathBuf,
    /// Where the database and artifacts go (a fresh directory).
    pub dir: PathBuf,
    /// Rows v1 is trained on (the first period).
    pub first_period: usize,
    /// Rows replayed after it.
    pub rows: usize,
    /// Rows per round (48 = one day of half hours).
    pub rows_per_round: usize,
    /// Requests per row (distinct users asking about the same half hour).
    pub users_per_row: usize,
    /// Serving threads (one agent each).
    pub threads: usize,
    /// Seed of the user keys.
    pub seed: u64,
    /// Print progress lines.
    pub verbose: bool,
    /// A local SMTP server (`host:port`, plain text) to send the notifications to; without
    /// one they go to the log.
    pub smtp: Option<String>,
}

impl DemoOptions {
    /// The defaults, with data and directory given.
    #[must_use]
    pub fn new(data: PathBuf, dir: PathBuf) -> Self {
        DemoOptions {
            data,
            dir,
            first_period: 4_000,
            rows: 16_000,
            rows_per_round: 48,
            users_per_row: 12,
            threads: 3,
            seed: 7,
            verbose: true,
            smtp: None,
        }
    }
}

/// A drift alert in the summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftAlert {
    /// Feature.
    pub feature: String,
    /// KS D.
    pub ks: f64,
    /// Its error bound.
    pub ks_error_bound: f64,
    /// PSI.
    pub psi: f64,
    /// Replay time of the alert, Unix ms.
    pub at_ms: i64,
}

/// A decision in the summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DemoDecision {
    /// `approve`, `review`, `reject`, `promote`, `rollback`, `rollout_step`, ...
    pub kind: String,
    /// The model version it is about.
    pub model_version: String,
    /// Offline improvement on the primary metric, percent, when known.
    pub improvement_pct: Option<f64>,
    /// The evidence (the audit row's detail).
    pub evidence: serde_json::Value,
}

/// What the demo did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DemoSummary {
    /// Requests served.
    pub requests: u64,
    /// Requests that got no answer (no model or a failed prediction): must be 0.
    pub failed_requests: u64,
    /// Pipeline runs (trainings).
    pub retrainings: u64,
    /// Promotions to production (v1 included).
    pub promotions: u64,
    /// Rollbacks (stopped rollouts included).
    pub rollbacks: u64,
    /// Drift alerts with their statistics.
    pub drift_alerts: Vec<DriftAlert>,
    /// Decisions with their evidence.
    pub decisions: Vec<DemoDecision>,
    /// The production model at the end.
    pub production: Option<String>,
    /// Online accuracy of the predictions served.
    pub online_accuracy: f64,
    /// The database file.
    pub database: PathBuf,
    /// The sidecar's URL.
    pub url: String,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
#[error("demo: {0}")]
pub struct DemoError(pub String);

fn err(e: impl std::fmt::Display) -> DemoError {
    DemoError(e.to_string())
}

struct Row {
    features: Vec<f64>,
    label: bool,
}

fn read_rows(path: &Path) -> Result<Vec<Row>, DemoError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| DemoError(format!("cannot read {}: {e}", path.display())))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| DemoError("empty data file".into()))?
        .split(',')
        .collect();
    let index = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| DemoError(format!("the data has no `{name}` column")))
    };
    let columns = FEATURES
        .iter()
        .map(|f| index(f))
        .collect::<Result<Vec<_>, _>>()?;
    let label = index("label")?;
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        let parse = |c: usize| -> Result<f64, DemoError> {
            fields
                .get(c)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| DemoError(format!("row {i}: bad value in column {c}")))
        };
        rows.push(Row {
            features: columns
                .iter()
                .map(|&c| parse(c))
                .collect::<Result<_, _>>()?,
            label: fields.get(label).is_some_and(|v| *v == "1"),
        });
    }
    Ok(rows)
}

/// The running demo: sidecar, agents, clock.
struct Demo {
    // Agents and reporters first: they are dropped (and deliver their last reports) while
    // the sidecar still runs.
    reporters: Vec<Reporter>,
    agents: Vec<Arc<Agent<ModelArtifact>>>,
    options: DemoOptions,
    clock: Arc<ManualClock>,
    sidecar: RunningSidecar,
    rows: Vec<Row>,
    requests: AtomicU64,
    failed: AtomicU64,
    correct: AtomicU64,
    /// Outcomes waiting for their label, per agent: (variant name, correct).
    late: Vec<std::sync::Mutex<VecDeque<(String, bool)>>>,
    last_audit: i64,
    out: Box<dyn Write + Send>,
    admin_token: String,
}

fn lifecycle_config(options: &DemoOptions) -> String {
    format!(
        r#"
model = "elec"
experiment = "elec"
data = "{data}"
timestamp_column = "t"
timestamp_unit_ms = {HALF_HOUR_MS}
features = {features:?}
label = "label"
primary_metric = "accuracy"
min_improvement = 0.05
holdout_fraction = 0.2
training_window = {window}
artifacts = "{artifacts}"
guardrails = {{ log_loss = 0.25 }}

[trainer]
kind = "linfa"

[triggers]
schedule = "0 0 1 * *"
volume = 1000
drift = true
drift_window_s = 604800
min_drift_rows = 2000
check_interval_s = 86400

[drift]
ks_min_effect = 0.35
psi_drift = 1.0

[rollout]
strategy = "gradual"
steps = [10, 50, 100]
step_duration_s = 86400
min_requests = 300
margin = 0.0
max_error_rate_increase = 0.02
max_latency_p99_ratio = 1.5
"#,
        data = options.data.display(),
        features = FEATURES,
        window = options.first_period,
        artifacts = options.dir.join("models").display(),
    )
}

impl Demo {
    fn say(&mut self, line: impl AsRef<str>) {
        if self.options.verbose {
            let day = self.clock.now_unix_ms() / 86_400_000;
            let _ = writeln!(self.out, "[day {day:>4}] {}", line.as_ref());
        }
    }

    /// Serves rows `[from, to)`: each thread its share of users, outcomes one round late.
    fn serve(&self, from: usize, to: usize) {
        let users = self.options.users_per_row;
        let threads = self.agents.len();
        let seed = self.options.seed;
        std::thread::scope(|s| {
            for (t, agent) in self.agents.iter().enumerate() {
                let rows = &self.rows;
                let late = &self.late[t];
                let (requests, failed, correct) = (&self.requests, &self.failed, &self.correct);
                s.spawn(move || {
                    let elec = match agent.experiment("elec") {
                        Some(e) => e,
                        None => return,
                    };
                    // Last round's outcomes arrive now.
                    let arrived: Vec<(String, bool)> = late
                        .lock()
                        .map(|mut q| q.drain(..).collect())
                        .unwrap_or_default();
                    for (variant, ok) in arrived {
                        agent.record_outcome("elec", &variant, Outcome::Binary(ok));
                    }
                    let mut key = String::new();
                    for i in from..to {
                        let Some(row) = rows.get(i) else { break };
                        for u in (0..users).filter(|u| (i * users + u) % threads == t) {
                            use std::fmt::Write as _;
                            key.clear();
                            let _ =
                                write!(key, "user-{seed}-{}", (i * 7919 + u * 104_729) % 50_000);
                            let started = Instant::now();
                            let decision = agent.route(elec, &key);
                            let answer =
                                decision.model().and_then(|m| m.predict(&row.features).ok());
                            requests.fetch_add(1, Ordering::Relaxed);
                            let Some(p) = answer else {
                                failed.fetch_add(1, Ordering::Relaxed);
                                agent.record(
                                    &decision,
                                    started.elapsed(),
                                    Err(crate::metrics::ErrorKind::Model),
                                );
                                continue;
                            };
                            agent.record_prediction(&decision, p);
                            let row_values: Vec<crate::agent::FeatureValue<'_>> = row
                                .features
                                .iter()
                                .map(|v| crate::agent::FeatureValue::Number(*v))
                                .collect();
                            agent.record_features(&decision, &row_values);
                            agent.record(&decision, started.elapsed(), Ok(()));
                            let right = (p >= 0.5) == row.label;
                            if right {
                                correct.fetch_add(1, Ordering::Relaxed);
                            }
                            if let (Some(v), Ok(mut q)) = (decision.variant, late.lock())
                                && let Some((_, name)) = agent.router().variant_info(v)
                            {
                                q.push_back((name.to_string(), right));
                            }
                        }
                    }
                });
            }
        });
    }

    fn sync_agents(&self) -> Result<(), DemoError> {
        for r in &self.reporters {
            r.sync_control(Duration::from_secs(10)).map_err(err)?;
        }
        Ok(())
    }

    fn flush_agents(&self) -> Result<(), DemoError> {
        for r in &self.reporters {
            r.flush(Duration::from_secs(10)).map_err(err)?;
        }
        Ok(())
    }

    /// Prints the audit rows written since the last call.
    fn narrate(&mut self) -> Result<Vec<AuditRow>, DemoError> {
        let rows = self
            .sidecar
            .store()
            .audit_log(&AuditFilter {
                limit: Some(1000),
                ..Default::default()
            })
            .map_err(err)?;
        let mut new: Vec<AuditRow> = rows
            .into_iter()
            .filter(|r| r.id > self.last_audit)
            .collect();
        new.reverse();
        if let Some(last) = new.last() {
            self.last_audit = last.id;
        }
        for row in &new {
            if let Some(line) = describe(row) {
                self.say(line);
            }
        }
        Ok(new)
    }
}

fn f(v: &serde_json::Value, key: &str) -> Option<f64> {
    v.get(key).and_then(serde_json::Value::as_f64)
}

/// One readable line for an audit row, or `None` for rows not worth a line.
fn describe(row: &AuditRow) -> Option<String> {
    let d = &row.detail;
    Some(match row.kind.as_str() {
        "trigger.drift" => {
            let features: Vec<String> = d["features"]
                .as_array()?
                .iter()
                .filter(|x| x["verdict"] == "drift")
                .map(|x| {
                    format!(
                        "{} (KS D = {:.3} ± {:.4}, PSI = {:.2})",
                        x["feature"].as_str().unwrap_or("?"),
                        f(x, "ks").unwrap_or(f64::NAN),
                        f(x, "ks_error_bound").unwrap_or(f64::NAN),
                        f(x, "psi").unwrap_or(f64::NAN)
                    )
                })
                .collect();
            format!("drift detected: {}", features.join(", "))
        }
        "trigger.volume" => format!(
            "volume trigger: {} new labelled records (threshold {})",
            d["new_records"], d["threshold"]
        ),
        "trigger.schedule" => "schedule trigger fired (monthly)".to_string(),
        "trigger.initial" => "no production model yet: training the first one".to_string(),
        "trigger.manual" => "manual retrain".to_string(),
        "model.register" => format!("trained and registered {}", row.subject),
        "run.pending_review" => format!(
            "{} waits for a person's review: {}",
            row.subject,
            d["reason"].as_str().unwrap_or("")
        ),
        "run.reject" => format!(
            "{} rejected: {}",
            row.subject,
            d["reason"].as_str().unwrap_or("")
        ),
        "rollout.start" => format!(
            "rollout of {} starts: {}% of traffic",
            row.subject, d["percent"]
        ),
        "rollout.step" => format!(
            "rollout of {}: guardrails hold (error rates {:.2}% vs {:.2}%), next step",
            row.subject,
            100.0 * d["error_rates"][0].as_f64().unwrap_or(0.0),
            100.0 * d["error_rates"][1].as_f64().unwrap_or(0.0),
        ),
        "rollout.rollback" => format!(
            "rollout of {} rolled back: {}",
            row.subject,
            d["reason"].as_str().unwrap_or("")
        ),
        "rollout.inconclusive" => format!(
            "rollout of {} stopped without a winner: {}",
            row.subject,
            d["reason"].as_str().unwrap_or("")
        ),
        "rollout.srm" => format!("sample ratio mismatch in the rollout of {}", row.subject),
        "model.promote" => {
            let improvement = f(d, "improvement")
                .map(|i| format!(" (offline improvement {:+.2}%)", 100.0 * i))
                .unwrap_or_default();
            format!(
                "{} is production{improvement}: {}",
                row.subject,
                d["reason"].as_str().unwrap_or("")
            )
        }
        "model.rollback" => format!("rolled back to {}", row.subject),
        kind if kind.starts_with("notify.") => format!(
            "notified administrators via {}: {}",
            &kind[7..],
            d["subject"].as_str().unwrap_or(&row.subject)
        ),
        _ => return None,
    })
}

/// Runs the demo, writing progress to `out`.
///
/// # Errors
/// [`DemoError`] when the data, the sidecar or an agent fails.
pub fn run(
    options: DemoOptions,
    out: Box<dyn Write + Send>,
) -> Result<(DemoHandle, DemoSummary), DemoError> {
    let started = Instant::now();
    std::fs::create_dir_all(&options.dir).map_err(err)?;
    let rows = read_rows(&options.data)?;
    if rows.len() < options.first_period + options.rows_per_round {
        return Err(DemoError(format!(
            "{} rows: the demo needs more than {}",
            rows.len(),
            options.first_period
        )));
    }
    let clock = Arc::new(ManualClock::new(options.first_period as i64 * HALF_HOUR_MS));
    let database = options.dir.join("modelgate.db");
    let agent_token = format!("demo-agent-{:016x}", options.seed ^ 0x5eed);
    let admin_token = format!("demo-admin-{:016x}", options.seed ^ 0xad);
    let mut config = SidecarConfig::new(&database, &agent_token, &admin_token).map_err(err)?;
    config.listen = "127.0.0.1:0".parse().map_err(err)?;
    config.experiments = RouterConfig::from_toml(EXPERIMENTS).map_err(err)?;
    config.clock = clock.clone();
    config.durability = super::store::Durability::Normal;
    let mut lifecycle: super::lifecycle::config::LifecycleConfig =
        toml::from_str(&lifecycle_config(&options)).map_err(err)?;
    if let Some(address) = &options.smtp {
        let (host, port) = address
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
            .ok_or_else(|| DemoError(format!("--smtp `{address}` is not host:port")))?;
        let mut smtp = super::notify::SmtpConfig::new(
            host,
            super::notify::SmtpTls::None,
            "modelgate demo <modelgate-demo@localhost>",
            &["admin@localhost"],
        );
        smtp.port = Some(port);
        lifecycle.notify.smtp = Some(smtp);
    }
    config.lifecycle = Some(lifecycle);
    let sidecar = server::spawn(&config).map_err(err)?;
    let url = sidecar.url();

    let mut agents = Vec::new();
    let mut reporters = Vec::new();
    for i in 0..options.threads.max(1) {
        let agent = Arc::new(
            Agent::<ModelArtifact>::builder()
                .experiments_toml(EXPERIMENTS)
                .map_err(err)?
                .features(
                    FEATURES
                        .iter()
                        .map(|f| crate::agent::Feature {
                            name: (*f).to_owned(),
                            kind: crate::agent::FeatureKind::Numeric,
                        })
                        .collect(),
                )
                .clock(clock.clone())
                .build()
                .map_err(err)?,
        );
        let mut rc = ReporterConfig::new(&url, &agent_token);
        rc.agent_id = Some(format!("serving-{i}"));
        rc.interval = Duration::from_secs(3600);
        rc.control_interval = Duration::from_secs(3600);
        let reporter = Reporter::spawn(&agent, rc, Some(Arc::new(ArtifactLoader))).map_err(err)?;
        agents.push(agent);
        reporters.push(reporter);
    }
    let late = (0..agents.len())
        .map(|_| std::sync::Mutex::new(VecDeque::new()))
        .collect();
    let mut demo = Demo {
        options: options.clone(),
        clock,
        sidecar,
        agents,
        reporters,
        rows,
        requests: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        correct: AtomicU64::new(0),
        late,
        last_audit: 0,
        out,
        admin_token: admin_token.clone(),
    };
    demo.say(format!(
        "sidecar on {url}, database {}; {} serving threads",
        database.display(),
        demo.agents.len()
    ));
    let lifecycle = demo
        .sidecar
        .lifecycle()
        .cloned()
        .ok_or_else(|| DemoError("the lifecycle did not start".into()))?;
    // 1. v1 on the first period.
    let first = lifecycle.tick().map_err(err)?;
    demo.narrate()?;
    if first.as_ref().is_none_or(|o| o.state != "succeeded") {
        return Err(DemoError(format!("training v1 failed: {first:?}")));
    }
    demo.sync_agents()?;
    // 2. Replay.
    let end = (options.first_period + options.rows).min(demo.rows.len());
    let mut row = options.first_period;
    let mut served_versions: Vec<String> = Vec::new();
    while row < end {
        let next = (row + options.rows_per_round).min(end);
        demo.serve(row, next);
        row = next;
        demo.flush_agents()?;
        demo.clock.set(row as i64 * HALF_HOUR_MS);
        let outcome = lifecycle.tick().map_err(err)?;
        demo.narrate()?;
        if let Some(outcome) = outcome {
            demo.say(format!(
                "run {} ended {}: {}",
                outcome.run_id, outcome.state, outcome.reason
            ));
        }
        demo.sync_agents()?;
        let agent = &demo.agents[0];
        let production = agent
            .router()
            .current()
            .experiment_by_name("elec")
            .and_then(|e| {
                e.variants()
                    .iter()
                    .find(|v| v.name() == "production")
                    .map(|v| v.id())
            });
        if let Some(id) = production {
            let version = agent
                .model_slot(id)
                .and_then(|slot| slot.version())
                .map(|v| v.to_string())
                .unwrap_or_default();
            if served_versions.last() != Some(&version) {
                if !served_versions.is_empty() {
                    demo.say(format!(
                        "agents hot-swapped: production traffic now served by {version}"
                    ));
                }
                served_versions.push(version);
            }
        }
    }
    demo.flush_agents()?;
    // Notifications are sent in the background: let them finish before the summary.
    lifecycle.notifier().wait_idle(Duration::from_secs(30));
    demo.narrate()?;
    let summary = summarize(&demo, started.elapsed().as_secs_f64())?;
    Ok((DemoHandle(demo), summary))
}

/// The demo's live parts, kept to leave the sidecar running (`--keep`).
pub struct DemoHandle(Demo);

impl std::fmt::Debug for DemoHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Demo")
            .field("url", &self.0.sidecar.url())
            .finish_non_exhaustive()
    }
}

impl DemoHandle {
    /// The sidecar's URL.
    #[must_use]
    pub fn url(&self) -> String {
        self.0.sidecar.url()
    }

    /// The admin token of the demo's sidecar (for `modelgate status` while `--keep` runs).
    #[must_use]
    pub fn admin_token(&self) -> &str {
        &self.0.admin_token
    }
}

fn summarize(demo: &Demo, seconds: f64) -> Result<DemoSummary, DemoError> {
    let store = demo.sidecar.store();
    let audit = store
        .audit_log(&AuditFilter {
            limit: Some(10_000),
            ..Default::default()
        })
        .map_err(err)?;
    let count = |kinds: &[&str]| {
        audit
            .iter()
            .filter(|r| kinds.contains(&r.kind.as_str()))
            .count() as u64
    };
    let mut drift_alerts = Vec::new();
    for row in audit.iter().rev().filter(|r| r.kind == "trigger.drift") {
        for x in row.detail["features"].as_array().into_iter().flatten() {
            if x["verdict"] == "drift" {
                drift_alerts.push(DriftAlert {
                    feature: x["feature"].as_str().unwrap_or_default().to_owned(),
                    ks: f(x, "ks").unwrap_or(f64::NAN),
                    ks_error_bound: f(x, "ks_error_bound").unwrap_or(f64::NAN),
                    psi: f(x, "psi").unwrap_or(f64::NAN),
                    at_ms: row.at_ms,
                });
            }
        }
    }
    let mut decisions = Vec::new();
    for run in store.runs(1000).map_err(err)?.iter().rev() {
        if let Some(step) = run.steps.iter().find(|s| s.name == "deciding") {
            let evaluation = run
                .steps
                .iter()
                .find(|s| s.name == "evaluating")
                .map(|s| s.detail.clone())
                .unwrap_or_default();
            let improvement = evaluation["comparison"]["improvement"].as_f64();
            decisions.push(DemoDecision {
                kind: step.detail["decision"].as_str().unwrap_or("?").to_owned(),
                model_version: step.detail["candidate"].as_str().unwrap_or("?").to_owned(),
                improvement_pct: improvement.map(|i| 100.0 * i),
                evidence: serde_json::json!({
                    "run_id": run.id,
                    "trigger": run.trigger,
                    "reason": step.detail["reason"],
                    "evaluation": evaluation,
                }),
            });
        }
    }
    for row in audit.iter().rev() {
        let kind = match row.kind.as_str() {
            "model.promote" => "promote",
            "model.rollback" | "rollout.rollback" => "rollback",
            "rollout.inconclusive" => "inconclusive",
            "rollout.step" => "rollout_step",
            _ => continue,
        };
        decisions.push(DemoDecision {
            kind: kind.to_owned(),
            model_version: row.subject.clone(),
            improvement_pct: f(&row.detail, "improvement").map(|i| 100.0 * i),
            evidence: row.detail.clone(),
        });
    }
    let requests = demo.requests.load(Ordering::Relaxed);
    let failed = demo.failed.load(Ordering::Relaxed);
    Ok(DemoSummary {
        requests,
        failed_requests: failed,
        retrainings: store.runs(10_000).map_err(err)?.len() as u64,
        promotions: count(&["model.promote"]),
        rollbacks: count(&["model.rollback", "rollout.rollback"]),
        drift_alerts,
        decisions,
        production: store
            .alias("elec", "production")
            .map_err(err)?
            .map(|m| m.reference),
        online_accuracy: demo.correct.load(Ordering::Relaxed) as f64
            / (requests - failed).max(1) as f64,
        database: store.path().to_owned(),
        url: demo.sidecar.url(),
        seconds,
    })
}

/// A readable summary.
#[must_use]
pub fn render(summary: &DemoSummary) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "\nSummary ({:.1} s)", summary.seconds);
    let _ = writeln!(
        out,
        "  requests served   {} ({} failed), online accuracy {:.2}%",
        summary.requests,
        summary.failed_requests,
        100.0 * summary.online_accuracy
    );
    let _ = writeln!(
        out,
        "  models trained    {} runs, {} promotions, {} rollbacks; production is {}",
        summary.retrainings,
        summary.promotions,
        summary.rollbacks,
        summary.production.as_deref().unwrap_or("(none)")
    );
    let _ = writeln!(out, "  drift alerts      {}", summary.drift_alerts.len());
    let _ = writeln!(out, "  decisions:");
    for d in &summary.decisions {
        let _ = writeln!(
            out,
            "    {:<13} {:<8} {}",
            d.kind,
            d.model_version,
            d.improvement_pct
                .map(|i| format!("improvement {i:+.2}%"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(
        out,
        "  database          {} (audit log: table audit_log, or GET /v1/audit)",
        summary.database.display()
    );
    out
}
