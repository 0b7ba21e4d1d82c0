//! The Airflow trainer against a real Apache Airflow 3 on 127.0.0.1 (started by
//! `scripts/airflow.sh start`, which `scripts/test` runs when `MODELGATE_AIRFLOW_URL` is not
//! set) with the example DAG `examples/airflow/modelgate_retrain.py`.
//!
//! * a retraining run whose training is a DAG run (once with `modelgate train`, once with
//!   the scikit-learn script) reaches evaluation and a decision with the DAG's artifact;
//! * a DAG run that fails leaves production and the control document untouched, is retried
//!   as a new DAG run, and sends a failure email to a real SMTP server;
//! * a `modelgate serve` killed while its DAG run is in flight follows the same DAG run
//!   after its restart instead of triggering a second one.
#![cfg(feature = "sidecar")]

mod common;
use common::{ELEC_EXPERIMENTS, ELEC2_HALF_HOUR_MS as HALF_HOUR_MS};
#[path = "common/smtp.rs"]
mod smtp;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TempDir;
use modelgate::route::{RouterConfig, SystemClock};
use modelgate::sidecar::control::ControlPlane;
use modelgate::sidecar::lifecycle::Lifecycle;
use modelgate::sidecar::lifecycle::config::LifecycleConfig;
use modelgate::sidecar::lifecycle::triggers::TriggerKind;
use modelgate::sidecar::notify::{Notifier, NotifyConfig, SmtpConfig, SmtpTls};
use modelgate::sidecar::store::{AuditFilter, Durability, Store};
use modelgate::sidecar::train::{LinfaTrainer, sha256_hex};
use serde_json::{Value, json};
use smtp::SmtpSink;

const DAG: &str = "modelgate_retrain";
/// The Airflow the tests use, from the environment `scripts/airflow.sh env` prints.
struct Airflow {
    url: String,
    user: String,
    password: String,
    http: reqwest::blocking::Client,
}

impl Airflow {
    fn from_env() -> Airflow {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!(
                    "{name} is not set: these tests need a running Airflow. `bash scripts/test` starts one; \
                     by hand: `bash scripts/airflow.sh start && eval \"$(bash scripts/airflow.sh env)\"`"
                )
            })
        };
        let _ = rustls::crypto::ring::default_provider().install_default();
        Airflow {
            url: var("MODELGATE_AIRFLOW_URL"),
            user: var("MODELGATE_AIRFLOW_USER"),
            password: var("MODELGATE_AIRFLOW_PASSWORD"),
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    fn token(&self) -> String {
        let answer: Value = self
            .http
            .post(format!("{}/auth/token", self.url))
            .json(&json!({"username": self.user, "password": self.password}))
            .send()
            .unwrap()
            .json()
            .unwrap();
        answer["access_token"].as_str().unwrap().to_owned()
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(self.token())
            .send()
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(Value::Null))
    }

    /// Waits (bounded) until the DAG is parsed.
    fn wait_for_dag(&self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let (status, body) = self.get(&format!("/api/v2/dags/{DAG}"));
            if status == 200 {
                assert_eq!(body["is_paused"], false, "{body}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "DAG {DAG} not visible: {status} {body}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn dag_run(&self, run_id: &str) -> Option<Value> {
        let (status, body) = self.get(&format!("/api/v2/dags/{DAG}/dagRuns/{run_id}"));
        (status == 200).then_some(body)
    }

    /// The DAG runs whose id starts with `prefix`.
    fn dag_runs_starting(&self, prefix: &str) -> Vec<Value> {
        let (status, body) = self.get(&format!(
            "/api/v2/dags/{DAG}/dagRuns?limit=100&order_by=-run_after"
        ));
        assert_eq!(status, 200, "{body}");
        body["dag_runs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["dag_run_id"].as_str().unwrap().starts_with(prefix))
            .cloned()
            .collect()
    }
}

fn data_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/elec2.csv")
}

/// A model name no earlier test run against the same Airflow used.
fn unique_model(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "elec-{tag}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000
    )
}

/// The `[lifecycle]` section: Elec2, the last 3000 rows, the Airflow trainer with `conf`.
fn lifecycle_toml(dir: &Path, model: &str, airflow: &Airflow, conf: &str, extra: &str) -> String {
    format!(
        r#"
model = "{model}"
experiment = "elec"
data = "{data}"
timestamp_column = "t"
timestamp_unit_ms = {HALF_HOUR_MS}
features = ["nswprice", "nswdemand", "vicprice", "vicdemand", "transfer"]
label = "label"
training_window = 3000
artifacts = "{artifacts}"
step_retry_base_ms = 10
{extra}
[trainer]
kind = "airflow"
url = "{url}"
dag_id = "{DAG}"
username = "{user}"
password_env = "MODELGATE_AIRFLOW_PASSWORD"
exchange_dir = "{exchange}"
poll_interval_ms = 300
timeout_s = 300
conf = {conf}
[triggers]
schedule = ""
drift = false
volume = 100000000
check_interval_s = 3600
[rollout]
strategy = "immediate"
"#,
        data = data_path().display(),
        artifacts = dir.join("models").display(),
        exchange = dir.join("exchange").display(),
        url = airflow.url,
        user = airflow.user,
    )
}

fn modelgate_conf(binary: &Path) -> String {
    format!(
        r#"{{ trainer = "modelgate", modelgate_bin = "{}" }}"#,
        binary.display()
    )
}

struct Setup {
    store: Arc<Store>,
    control: Arc<ControlPlane>,
}

fn open(dir: &Path) -> Setup {
    let store = Arc::new(Store::open(&dir.join("modelgate.db"), Durability::Normal).unwrap());
    let control = Arc::new(
        ControlPlane::open(
            store.clone(),
            &RouterConfig::from_toml(ELEC_EXPERIMENTS).unwrap(),
        )
        .unwrap(),
    );
    Setup { store, control }
}

fn lifecycle(setup: &Setup, config: &str, notify: NotifyConfig) -> Lifecycle {
    let mut config: LifecycleConfig = toml::from_str(config).unwrap();
    config.notify = notify.clone();
    Lifecycle::new(
        config,
        setup.store.clone(),
        setup.control.clone(),
        Notifier::new(notify).unwrap(),
        Arc::new(SystemClock),
    )
    .unwrap()
}

fn training_steps(store: &Store, run_id: i64) -> Vec<modelgate::sidecar::store::StepRecord> {
    store
        .run(run_id)
        .unwrap()
        .unwrap()
        .steps
        .into_iter()
        .filter(|s| s.name == "training")
        .collect()
}

#[test]
fn a_dag_run_trains_the_candidate_that_is_evaluated_and_decided() {
    let airflow = Airflow::from_env();
    airflow.wait_for_dag();
    let dir = TempDir::new("airflow-train");
    let setup = open(&dir.0);
    let model = unique_model("train");

    // The first model: trained by `modelgate train` inside the DAG, promoted (nothing to
    // beat yet).
    let first = lifecycle(
        &setup,
        &lifecycle_toml(
            &dir.0,
            &model,
            &airflow,
            &modelgate_conf(Path::new(env!("CARGO_BIN_EXE_modelgate"))),
            "",
        ),
        NotifyConfig::default(),
    );
    let outcome = first
        .run(TriggerKind::Manual, json!({"reason": "first model"}))
        .unwrap();
    assert_eq!(outcome.state, "succeeded", "{}", outcome.reason);
    assert_eq!(outcome.candidate, Some(1));
    let steps = training_steps(&setup.store, outcome.run_id);
    assert_eq!(steps.len(), 1);
    let detail = &steps[0].detail;
    let run_key = detail["run_key"].as_str().unwrap().to_owned();
    assert_eq!(detail["external_run"]["system"], "airflow", "{detail}");
    assert_eq!(detail["external_run"]["run_id"], run_key.as_str());
    assert!(
        detail["trained_by"]
            .as_str()
            .unwrap()
            .starts_with("modelgate-linfa"),
        "{detail}"
    );

    // Airflow ran exactly this run, with the conf the DAG documents.
    let dag_run = airflow
        .dag_run(&run_key)
        .expect("the DAG run is in Airflow");
    assert_eq!(dag_run["state"], "success");
    assert_eq!(dag_run["conf"]["model"], model.as_str());
    assert_eq!(dag_run["conf"]["label_kind"], "binary");
    assert_eq!(dag_run["conf"]["trainer"], "modelgate");
    // The registered model is the DAG's artifact, byte for byte.
    let production = setup.store.alias(&model, "production").unwrap().unwrap();
    assert_eq!(production.version, 1);
    let dag_artifact = std::fs::read(dir.0.join("exchange").join(&run_key).join("model.json"))
        .expect("the DAG wrote model.json into the exchange directory");
    assert_eq!(production.sha256, sha256_hex(&dag_artifact));
    assert!(
        !dir.0
            .join("exchange")
            .join(&run_key)
            .join("data.csv")
            .exists(),
        "the training rows are removed once the run ended"
    );

    // The second: the scikit-learn trainer of the same DAG, evaluated against production.
    let second = lifecycle(
        &setup,
        &lifecycle_toml(&dir.0, &model, &airflow, r#"{ trainer = "sklearn" }"#, ""),
        NotifyConfig::default(),
    );
    let outcome = second
        .run(TriggerKind::Manual, json!({"reason": "second model"}))
        .unwrap();
    assert!(
        ["succeeded", "pending_review", "rejected"].contains(&outcome.state.as_str()),
        "{}: {}",
        outcome.state,
        outcome.reason
    );
    assert_eq!(outcome.candidate, Some(2));
    let evaluation = outcome.evaluation.expect("an evaluation");
    assert!(evaluation.production.is_some(), "compared with production");
    let run = setup.store.run(outcome.run_id).unwrap().unwrap();
    let names: Vec<&str> = run.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        &names[..5],
        [
            "loading",
            "training",
            "registering",
            "evaluating",
            "deciding"
        ]
    );
    let detail = &run.steps[1].detail;
    assert!(
        detail["trained_by"]
            .as_str()
            .unwrap()
            .starts_with("scikit-learn"),
        "{detail}"
    );
    let run_key = detail["run_key"].as_str().unwrap();
    assert_eq!(
        airflow.dag_run(run_key).unwrap()["conf"]["trainer"],
        "sklearn"
    );
    let candidate = setup.store.model(&model, 2).unwrap().unwrap();
    let dag_artifact =
        std::fs::read(dir.0.join("exchange").join(run_key).join("model.json")).unwrap();
    assert_eq!(candidate.sha256, sha256_hex(&dag_artifact));
}

#[test]
fn a_failing_dag_run_leaves_production_alone_and_is_reported() {
    let airflow = Airflow::from_env();
    airflow.wait_for_dag();
    let dir = TempDir::new("airflow-fail");
    let setup = open(&dir.0);
    let model = unique_model("fail");
    let sink = SmtpSink::start();
    let mut smtp = SmtpConfig::new(
        "127.0.0.1",
        SmtpTls::None,
        "modelgate <modelgate@example.com>",
        &["ops@example.com"],
    );
    smtp.port = Some(sink.port);
    let notify = NotifyConfig {
        smtp: Some(smtp),
        ..NotifyConfig::default()
    };
    let missing = dir.0.join("no-such-modelgate");
    let config = lifecycle_toml(
        &dir.0,
        &model,
        &airflow,
        &modelgate_conf(&missing),
        "step_retries = 1",
    );
    // Production comes from the in-process trainer first.
    let lifecycle =
        lifecycle(&setup, &config, notify).with_trainer(Box::new(LinfaTrainer::default()));
    let first = lifecycle
        .run(TriggerKind::Manual, json!({"reason": "v1"}))
        .unwrap();
    assert_eq!(first.state, "succeeded", "{}", first.reason);
    let production = setup.store.alias(&model, "production").unwrap().unwrap();
    let control = setup.control.current();
    while sink.try_recv().is_some() {}

    let lifecycle = self::lifecycle(&setup, &config, lifecycle.config().notify.clone());
    let outcome = lifecycle
        .run(TriggerKind::Manual, json!({"reason": "v2"}))
        .unwrap();
    assert_eq!(outcome.state, "failed");
    assert!(outcome.reason.contains("failed"), "{}", outcome.reason);
    assert!(
        outcome.reason.contains("train (try 1)"),
        "{}",
        outcome.reason
    );
    assert!(
        outcome.reason.contains("no-such-modelgate"),
        "the task log names the cause: {}",
        outcome.reason
    );

    // Both attempts were DAG runs of their own, both failed in Airflow.
    let steps = training_steps(&setup.store, outcome.run_id);
    assert_eq!(steps.len(), 2, "one retry");
    for (step, attempt) in steps.iter().zip(1..) {
        assert_eq!(step.state, "failed");
        let key = step.detail["run_key"].as_str().unwrap();
        assert!(key.ends_with(&format!("-a{attempt}")), "{key}");
        assert_eq!(airflow.dag_run(key).unwrap()["state"], "failed");
    }
    // Production, the registry and the agents' document are untouched.
    assert_eq!(
        setup.store.alias(&model, "production").unwrap().unwrap(),
        production
    );
    assert!(setup.store.model(&model, 2).unwrap().is_none());
    assert_eq!(setup.control.current().control.etag, control.control.etag);
    // The administrators got the failure by email, with Airflow's reason.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mail = loop {
        let mail = sink
            .recv(deadline.saturating_duration_since(Instant::now()))
            .expect("a failure email");
        if mail.text().contains("failed at training") {
            break mail;
        }
    };
    let body = mail.body();
    assert!(
        body.contains("DAG run") && body.contains("Production is unchanged"),
        "{body}"
    );
}

/// `modelgate serve` as a child process; its URL from the line it prints.
struct Sidecar {
    child: Child,
    url: String,
}

impl Sidecar {
    fn start(config: &Path, airflow: &Airflow, log: &Path) -> Sidecar {
        let mut child = Command::new(env!("CARGO_BIN_EXE_modelgate"))
            .args(["serve", "--config"])
            .arg(config)
            .env("MG_TEST_AGENT_TOKEN", "agent-token-0123456789")
            .env("MG_TEST_ADMIN_TOKEN", "admin-token-0123456789")
            .env("MODELGATE_AIRFLOW_PASSWORD", &airflow.password)
            .stdout(Stdio::piped())
            .stderr(
                std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(log)
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the sidecar prints its address");
        let url = line.strip_prefix("listening on ").expect(&line).to_owned();
        Sidecar { child, url }
    }

    fn get(&self, path: &str) -> Value {
        reqwest::blocking::Client::new()
            .get(format!("{}{path}", self.url))
            .bearer_auth("admin-token-0123456789")
            .send()
            .unwrap()
            .json()
            .unwrap()
    }
}

impl Sidecar {
    /// Stops the sidecar as a service manager does (SIGTERM) and waits until it exits.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid}");
        self.child.wait().unwrap()
    }
}

/// How a test stops a sidecar in the middle of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stop {
    /// SIGKILL: a crash, no chance to clean up.
    Kill,
    /// SIGTERM: a graceful shutdown, which stops following the DAG run at once.
    Terminate,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_restarted_sidecar_follows_the_same_dag_run() {
    restart_follows_the_same_dag_run(Stop::Kill);
}

#[test]
fn a_sidecar_shut_down_during_training_resumes_it_after_a_restart() {
    restart_follows_the_same_dag_run(Stop::Terminate);
}

fn restart_follows_the_same_dag_run(stop: Stop) {
    let airflow = Airflow::from_env();
    airflow.wait_for_dag();
    let dir = TempDir::new("airflow-restart");
    let model = unique_model(match stop {
        Stop::Kill => "restart",
        Stop::Terminate => "shutdown",
    });
    // The worker's training takes a few seconds (a slow job), so the sidecar is killed
    // while the DAG run is in flight.
    let slow = dir.0.join("slow-modelgate");
    std::fs::write(
        &slow,
        format!(
            "#!/bin/sh\nsleep {}\nexec '{}' \"$@\"\n",
            // Long enough that the graceful stop surely comes while the job runs.
            if stop == Stop::Kill { 4 } else { 25 },
            env!("CARGO_BIN_EXE_modelgate")
        ),
    )
    .unwrap();
    let mut permissions = std::fs::metadata(&slow).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&slow, permissions).unwrap();
    let config = dir.0.join("sidecar.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndatabase = \"modelgate.db\"\n\
             agent_token_env = \"MG_TEST_AGENT_TOKEN\"\nadmin_token_env = \"MG_TEST_ADMIN_TOKEN\"\n\
             {ELEC_EXPERIMENTS}\n[lifecycle]\n{}",
            lifecycle_toml(&dir.0, &model, &airflow, &modelgate_conf(&slow), "")
                .replace("\n[", "\n[lifecycle.")
        ),
    )
    .unwrap();
    let log = dir.0.join("sidecar.log");

    let sidecar = Sidecar::start(&config, &airflow, &log);
    let queued = reqwest::blocking::Client::new()
        .post(format!("{}/v1/retrain", sidecar.url))
        .bearer_auth("admin-token-0123456789")
        .json(&json!({"reason": "restart test"}))
        .send()
        .unwrap();
    assert_eq!(queued.status().as_u16(), 202);

    // Wait until the sidecar recorded the attempt and Airflow has its DAG run.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (run_id, run_key) = loop {
        let runs = sidecar.get("/v1/runs");
        let found = runs["runs"].as_array().and_then(|runs| {
            runs.iter().find_map(|run| {
                let step = run["steps"]
                    .as_array()?
                    .iter()
                    .find(|s| s["name"] == "training")?;
                Some((
                    run["id"].as_i64()?,
                    step["detail"]["run_key"].as_str()?.to_owned(),
                ))
            })
        });
        if let Some((run_id, run_key)) = found
            && airflow.dag_run(&run_key).is_some()
        {
            break (run_id, run_key);
        }
        assert!(
            Instant::now() < deadline,
            "no DAG run started: {runs}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    match stop {
        Stop::Kill => drop(sidecar),
        Stop::Terminate => {
            let status = sidecar.terminate();
            assert!(
                status.success(),
                "{status}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
    }
    let state_at_kill = airflow.dag_run(&run_key).unwrap()["state"].clone();
    eprintln!("DAG run {run_key} was {state_at_kill} when the sidecar stopped ({stop:?})");
    if stop == Stop::Terminate {
        // The shutdown left the run in its training step and said so.
        let store = Store::open(&dir.0.join("modelgate.db"), Durability::Normal).unwrap();
        let run = store.run(run_id).unwrap().unwrap();
        assert_eq!(run.state, "running", "{run:?}");
        let interrupted = store
            .audit_log(&AuditFilter {
                kind: Some("run.interrupted".into()),
                ..AuditFilter::default()
            })
            .unwrap();
        assert_eq!(interrupted.len(), 1, "{interrupted:?}");
    }

    let mut sidecar = Sidecar::start(&config, &airflow, &log);
    if stop == Stop::Terminate {
        // A second shutdown while the restarted sidecar follows the same DAG run (a rolling
        // deploy) leaves the run resumable again.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !sidecar.get("/v1/audit?kind=run.resumed")["audit"]
            .as_array()
            .is_some_and(|rows| rows.iter().any(|r| r["detail"]["run_id"] == run_id))
        {
            assert!(Instant::now() < deadline, "run {run_id} was not resumed");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(sidecar.terminate().success());
        let store = Store::open(&dir.0.join("modelgate.db"), Durability::Normal).unwrap();
        let run = store.run(run_id).unwrap().unwrap();
        assert_eq!(run.state, "running", "{run:?}");
        let last = run.steps.last().unwrap();
        assert_eq!(
            (last.name.as_str(), last.state.as_str()),
            ("training", "running")
        );
        drop(store);
        sidecar = Sidecar::start(&config, &airflow, &log);
    }
    let deadline = Instant::now() + Duration::from_secs(180);
    let run = loop {
        let run = sidecar.get(&format!("/v1/runs/{run_id}"));
        if run["state"] != "running" {
            break run;
        }
        assert!(
            Instant::now() < deadline,
            "run {run_id} still running: {run}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(
        run["state"], "succeeded",
        "DAG run was {state_at_kill} at the kill: {run}"
    );
    let training: Vec<&Value> = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"] == "training")
        .collect();
    assert_eq!(training.len(), 1, "the same attempt continued: {run}");
    assert_eq!(training[0]["state"], "succeeded");
    assert_eq!(training[0]["detail"]["run_key"], run_key.as_str());
    assert_eq!(
        training[0]["detail"]["external_run"]["run_id"],
        run_key.as_str()
    );
    // One DAG run for this pipeline run, not two.
    let prefix = run_key.rsplit_once("-a").unwrap().0;
    let dag_runs = airflow.dag_runs_starting(prefix);
    assert_eq!(dag_runs.len(), 1, "{dag_runs:?}");
    assert_eq!(dag_runs[0]["state"], "success");
    // The restarted sidecar found the DAG run rather than triggering it.
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        log_text.contains(&format!("DAG run {run_key} already exists")),
        "{log_text}"
    );
    // The audit log says the run was resumed.
    let audit = sidecar.get("/v1/audit?kind=run.resumed");
    let rows = audit["audit"].as_array().unwrap();
    assert!(
        rows.iter().any(|r| r["detail"]["run_id"] == run_id),
        "{audit}"
    );
    drop(sidecar);
    let store = Store::open(&dir.0.join("modelgate.db"), Durability::Normal).unwrap();
    let rows = store
        .audit_log(&AuditFilter {
            kind: Some("run.resumed".into()),
            ..AuditFilter::default()
        })
        .unwrap();
    assert_eq!(rows.len(), if stop == Stop::Kill { 1 } else { 2 });
}

#[test]
fn a_real_airflow_refuses_a_wrong_password_and_an_unknown_dag() {
    use modelgate::artifact::LabelKind;
    use modelgate::sidecar::train::{
        AirflowConfig, AirflowError, AirflowTrainer, CsvSpec, StopSignal, TrainError, Trainer,
        TrainingData, TrainingJob,
    };
    let airflow = Airflow::from_env();
    airflow.wait_for_dag();
    let dir = TempDir::new("airflow-refusals");
    let spec = CsvSpec {
        timestamp_column: "t".into(),
        feature_columns: vec!["nswprice".into()],
        label_column: "label".into(),
        label_kind: LabelKind::Binary,
        positive_label: Some("1".into()),
    };
    let data = TrainingData::from_csv(&data_path(), &spec)
        .unwrap()
        .window(0, 200);
    let job = TrainingJob {
        model_name: "elec".into(),
        run_id: 1,
        run_key: unique_model("refused"),
        data: &data,
        features: vec!["nswprice".into()],
        label: data.label().clone(),
        output_dir: dir.0.join("models"),
        stop: StopSignal::default(),
    };
    let trainer = |dag: &str, password: &str| {
        let file = dir.0.join("password");
        std::fs::write(&file, password).unwrap();
        let mut config = AirflowConfig::new(&airflow.url, dir.0.join("exchange"));
        config.dag_id = dag.into();
        config.username = Some(airflow.user.clone());
        config.password_file = Some(file);
        AirflowTrainer::new(config).unwrap()
    };
    let err = trainer(DAG, "not-the-password")
        .train(&job, &mut |_| {})
        .unwrap_err();
    assert!(
        matches!(
            &err,
            TrainError::Airflow(AirflowError::Auth { status: 401, .. })
        ),
        "{err}"
    );
    assert!(!err.to_string().contains("not-the-password"));
    let err = trainer("no_such_dag", &airflow.password)
        .train(&job, &mut |_| {})
        .unwrap_err();
    assert!(
        matches!(&err, TrainError::Airflow(AirflowError::UnknownDag { .. })),
        "{err}"
    );
    assert!(airflow.dag_runs_starting(&job.run_key).is_empty());
}
