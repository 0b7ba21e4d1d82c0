//! The Airflow trainer's handling of answers a healthy Airflow rarely gives (an expired
//! token, 5xx, a 409 on a duplicate run id, 422, a timeout), against a scripted HTTP
//! server on 127.0.0.1. `tests/airflow.rs` runs the normal paths against a real Airflow.
#![cfg(feature = "sidecar")]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::TempDir;
use modelgate::artifact::LabelKind;
use modelgate::sidecar::train::{
    AirflowConfig, AirflowError, AirflowTrainer, CsvSpec, LinfaTrainer, StopSignal, TrainError,
    TrainProgress, Trainer, TrainingData, TrainingJob,
};
use serde_json::{Value, json};

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    bearer: Option<String>,
    body: Value,
}

type Script = Box<dyn FnMut(&Seen, usize) -> (u16, Value) + Send>;

/// A tiny HTTP/1.1 server answering each request from `script` (given the request and how
/// many came before it); it records every request.
struct Scripted {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Scripted {
    fn start(mut script: Script) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let mut parts = line.split_whitespace();
                    let method = parts.next().unwrap_or_default().to_owned();
                    let path = parts.next().unwrap_or_default().to_owned();
                    let (mut length, mut bearer) = (0usize, None);
                    loop {
                        let mut header = String::new();
                        reader.read_line(&mut header).unwrap();
                        let header = header.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        let (name, value) = header.split_once(':').unwrap();
                        match name.to_ascii_lowercase().as_str() {
                            "content-length" => length = value.trim().parse().unwrap(),
                            "authorization" => {
                                bearer = value.trim().strip_prefix("Bearer ").map(str::to_owned);
                            }
                            _ => {}
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    let request = Seen {
                        method,
                        path,
                        bearer,
                        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                    };
                    let before = log.lock().unwrap().len();
                    log.lock().unwrap().push(request.clone());
                    let (status, answer) = script(&request, before);
                    let text = answer.to_string();
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{text}",
                        text.len()
                    );
                }
            }
        });
        Scripted { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn data() -> TrainingData {
    let spec = CsvSpec {
        timestamp_column: "t".into(),
        feature_columns: vec!["nswprice".into(), "nswdemand".into()],
        label_column: "label".into(),
        label_kind: LabelKind::Binary,
        positive_label: Some("1".into()),
    };
    let all = TrainingData::from_csv(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("data/elec2.csv"),
        &spec,
    )
    .unwrap();
    all.window(0, 500)
}

fn job<'a>(data: &'a TrainingData, dir: &Path) -> TrainingJob<'a> {
    TrainingJob {
        model_name: "elec".into(),
        run_id: 3,
        run_key: "modelgate-elec-run3-1000-a1".into(),
        data,
        features: data.features().to_vec(),
        label: data.label().clone(),
        output_dir: dir.join("models"),
        stop: StopSignal::default(),
    }
}

fn trainer(url: &str, dir: &Path, timeout_s: u64) -> AirflowTrainer {
    let password = dir.join("password");
    std::fs::write(&password, "pw\n").unwrap();
    let mut config = AirflowConfig::new(url, dir.join("exchange"));
    config.dag_id = "d".into();
    config.username = Some("u".into());
    config.password_file = Some(password);
    config.poll_interval_ms = 10;
    config.timeout_s = timeout_s;
    AirflowTrainer::new(config).unwrap()
}

const RUN: &str = "/api/v2/dags/d/dagRuns/modelgate-elec-run3-1000-a1";
const NOT_FOUND: &str = "The DagRun with dag_id: `d` and run_id: `x` was not found";

fn now() -> String {
    chrono::Utc::now().to_rfc3339()
}

/// Writes the artifact the "DAG" produces, as a worker would.
fn write_dag_output(exchange: &Path, artifact: &Path) {
    let out = exchange.join("modelgate-elec-run3-1000-a1");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::copy(artifact, out.join("model.json")).unwrap();
    std::fs::write(out.join("metrics.json"), r#"{"holdout_auc": 0.75}"#).unwrap();
}

#[test]
fn expired_tokens_5xx_and_duplicate_run_ids_are_handled() {
    let dir = TempDir::new("airflow-protocol");
    let data = data();
    let job = job(&data, &dir.0);
    // What a worker would write: a real artifact for this job.
    let artifact = LinfaTrainer::default()
        .train(&job, &mut |_| {})
        .unwrap()
        .artifact_path;
    let exchange = dir.0.join("exchange");
    let (exchange_s, artifact_s) = (exchange.clone(), artifact.clone());
    let mut tokens = 0;
    let mut polls = 0;
    let server = Scripted::start(Box::new(move |r, _| {
        let token = r.bearer.as_deref();
        match (r.method.as_str(), r.path.as_str()) {
            ("POST", "/auth/token") => {
                tokens += 1;
                (201, json!({"access_token": format!("t{tokens}")}))
            }
            // The first token has expired.
            (_, _) if token == Some("t1") => (401, json!({"detail": "Token Expired"})),
            ("GET", RUN) if polls == 0 => {
                polls += 1;
                (503, json!({"detail": "database is locked"}))
            }
            ("GET", RUN) if polls == 1 => {
                polls += 1;
                (404, json!({"detail": NOT_FOUND}))
            }
            ("GET", "/api/v2/dags/d") => {
                (200, json!({"is_paused": false, "has_import_errors": false}))
            }
            // Someone (an earlier attempt of this sidecar) triggered it already.
            ("POST", "/api/v2/dags/d/dagRuns") => (
                409,
                json!({"detail": {"reason": "Unique constraint violation"}}),
            ),
            ("GET", RUN) if polls < 4 => {
                polls += 1;
                (200, json!({"state": "running", "queued_at": now()}))
            }
            ("GET", RUN) => {
                write_dag_output(&exchange_s, &artifact_s);
                (200, json!({"state": "success", "queued_at": now()}))
            }
            _ => (500, json!({"detail": "unexpected"})),
        }
    }));
    let trainer = trainer(&server.url, &dir.0, 60);
    let mut events = Vec::new();
    let trained = trainer.train(&job, &mut |p| events.push(p)).unwrap();

    assert_eq!(trained.external_run.as_ref().unwrap().run_id, job.run_key);
    assert_eq!(
        trained.artifact.metrics["holdout_auc"], 0.75,
        "metrics.json is merged"
    );
    assert_eq!(
        trained.sha256,
        modelgate::sidecar::train::sha256_hex(&std::fs::read(&artifact).unwrap())
    );
    assert!(
        events.iter().any(
            |e| matches!(e, TrainProgress::ExternalRunFound { state, .. } if state.contains("409"))
        ),
        "{events:?}"
    );
    let seen = server.seen();
    let token_requests = seen.iter().filter(|s| s.path == "/auth/token").count();
    assert_eq!(token_requests, 2, "one refresh after the 401: {seen:#?}");
    assert_eq!(seen[0].body, json!({"username": "u", "password": "pw"}));
    let trigger = seen
        .iter()
        .find(|s| s.method == "POST" && s.path.ends_with("/dagRuns"))
        .unwrap();
    assert_eq!(trigger.body["dag_run_id"], job.run_key.as_str());
    assert_eq!(trigger.body["logical_date"], Value::Null);
    let conf = &trigger.body["conf"];
    assert_eq!(conf["features"], json!(["nswprice", "nswdemand"]));
    assert_eq!(conf["positive"], "1");
    assert_eq!(
        conf["out"],
        exchange.join(&job.run_key).display().to_string()
    );
    assert!(!exchange.join(&job.run_key).join("data.csv").exists());
}

fn expect_error(script: Script, timeout_s: u64, check: impl FnOnce(&AirflowError, &[Seen])) {
    let dir = TempDir::new("airflow-protocol-error");
    let data = data();
    let job = job(&data, &dir.0);
    let server = Scripted::start(script);
    let trainer = trainer(&server.url, &dir.0, timeout_s);
    match trainer.train(&job, &mut |_| {}) {
        Err(TrainError::Airflow(e)) => check(&e, &server.seen()),
        other => panic!("expected an Airflow error, got {other:?}"),
    }
    assert!(!dir.0.join("models").exists(), "nothing was registered");
}

fn token_then(mut rest: impl FnMut(&Seen) -> (u16, Value) + Send + 'static) -> Script {
    Box::new(move |r, _| {
        if r.path == "/auth/token" {
            (201, json!({"access_token": "t"}))
        } else {
            rest(r)
        }
    })
}

#[test]
fn each_error_is_reported_with_its_meaning() {
    // Wrong credentials.
    expect_error(
        Box::new(|_, _| (401, json!({"detail": "Invalid credentials"}))),
        60,
        |e, _| {
            assert!(matches!(e, AirflowError::Auth { status: 401, .. }), "{e}");
            assert!(
                e.to_string().contains("`u`") && !e.to_string().contains("pw"),
                "{e}"
            );
        },
    );
    // A token that stays refused after a refresh.
    expect_error(
        token_then(|_| (403, json!({"detail": "Invalid JWT token"}))),
        60,
        |e, seen| {
            assert!(matches!(e, AirflowError::Auth { status: 403, .. }), "{e}");
            assert_eq!(seen.iter().filter(|s| s.path == "/auth/token").count(), 2);
        },
    );
    // An unknown DAG.
    expect_error(
        token_then(|r| match r.path.as_str() {
            RUN => (404, json!({"detail": NOT_FOUND})),
            _ => (404, json!({"detail": "The Dag with ID: `d` was not found"})),
        }),
        60,
        |e, _| {
            assert!(matches!(e, AirflowError::UnknownDag { .. }), "{e}");
            assert!(e.to_string().contains("DAGs folder"), "{e}");
        },
    );
    // A paused DAG would leave the run queued.
    expect_error(
        token_then(|r| match r.path.as_str() {
            RUN => (404, json!({"detail": NOT_FOUND})),
            _ => (200, json!({"is_paused": true})),
        }),
        60,
        |e, _| assert!(e.to_string().contains("paused"), "{e}"),
    );
    // A conf the DAG refuses.
    expect_error(
        token_then(|r| match (r.method.as_str(), r.path.as_str()) {
            ("GET", RUN) => (404, json!({"detail": NOT_FOUND})),
            ("GET", _) => (200, json!({"is_paused": false})),
            _ => (
                422,
                json!({"detail": [{"type": "extra_forbidden", "loc": ["body", "bogus"]}]}),
            ),
        }),
        60,
        |e, _| {
            assert!(matches!(e, AirflowError::Rejected { .. }), "{e}");
            assert!(e.to_string().contains("extra_forbidden"), "{e}");
        },
    );
    // A failed run names its failed task and the end of its log.
    expect_error(
        token_then(|r| match r.path.as_str() {
            RUN => (200, json!({"state": "failed"})),
            p if p.ends_with("/taskInstances") => (
                200,
                json!({"task_instances": [
                {"task_id": "train", "state": "failed", "try_number": 2},
                {"task_id": "publish", "state": "upstream_failed", "try_number": 0}]}),
            ),
            p if p.ends_with("/taskInstances/train/logs/2") => (
                200,
                json!({"content": [
                {"event": "running: modelgate train ..."},
                {"event": "RuntimeError: training failed with exit code 2"}]}),
            ),
            _ => (500, json!({})),
        }),
        60,
        |e, _| {
            let text = e.to_string();
            assert!(matches!(e, AirflowError::RunFailed { .. }), "{text}");
            assert!(text.contains("train (try 2), publish (try 0)"), "{text}");
            assert!(text.contains("exit code 2"), "{text}");
        },
    );
    // A run past its timeout (queued long ago) is marked failed in Airflow.
    expect_error(
        token_then(|r| match (r.method.as_str(), r.path.as_str()) {
            ("GET", RUN) => (
                200,
                json!({"state": "running", "queued_at": "2020-01-01T00:00:00Z"}),
            ),
            ("PATCH", RUN) => (200, json!({"state": "failed"})),
            _ => (500, json!({})),
        }),
        1,
        |e, seen| {
            assert!(matches!(e, AirflowError::Timeout { .. }), "{e}");
            let patch = seen.iter().find(|s| s.method == "PATCH").expect("a PATCH");
            assert_eq!(patch.body, json!({"state": "failed"}));
            assert!(e.to_string().contains("marked failed"), "{e}");
        },
    );
}

#[test]
fn an_airflow_that_keeps_failing_is_unavailable_after_retries() {
    expect_error(
        token_then(|_| (503, json!({"detail": "down for maintenance"}))),
        60,
        |e, seen| {
            assert!(
                matches!(e, AirflowError::Unavailable { attempts: 5, .. }),
                "{e}"
            );
            assert!(e.to_string().contains("down for maintenance"), "{e}");
            assert_eq!(seen.iter().filter(|s| s.path == RUN).count(), 5);
        },
    );
    // Nobody listens at all.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = TempDir::new("airflow-protocol-closed");
    let data = data();
    let trainer = trainer(&format!("http://127.0.0.1:{port}"), &dir.0, 60);
    let err = trainer.train(&job(&data, &dir.0), &mut |_| {}).unwrap_err();
    assert!(
        matches!(&err, TrainError::Airflow(AirflowError::Unavailable { .. })),
        "{err}"
    );
}

#[test]
fn a_stop_leaves_the_dag_run_running_for_a_restart() {
    let dir = TempDir::new("airflow-protocol-stop");
    let data = data();
    let job = job(&data, &dir.0);
    // The DAG run never ends; without the stop, following it ends in a Timeout after 20 s.
    let server = Scripted::start(token_then(|r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", RUN) => (200, json!({"state": "running", "queued_at": now()})),
        _ => (500, json!({"detail": "unexpected"})),
    }));
    let trainer = trainer(&server.url, &dir.0, 20);
    let stop = job.stop.clone();
    let mut polls = 0;
    let err = trainer
        .train(&job, &mut |p| {
            // The shutdown arrives while the sidecar follows the run.
            if let TrainProgress::ExternalRunState { .. } = p {
                polls += 1;
                stop.raise();
            }
        })
        .unwrap_err();
    assert!(
        matches!(err, TrainError::Stopped),
        "expected Stopped, got {err}"
    );
    assert_eq!(polls, 1);
    // Nothing was asked of Airflow after the stop: the run is not marked failed.
    let seen = server.seen();
    assert!(seen.iter().all(|s| s.method != "PATCH"), "{seen:#?}");
    assert!(!dir.0.join("models").exists(), "nothing was registered");
}

#[test]
fn a_stop_ends_the_retries_of_an_unavailable_airflow() {
    let dir = TempDir::new("airflow-protocol-stop-retry");
    let data = data();
    let job = job(&data, &dir.0);
    // The run exists; then Airflow answers 503 to every poll, and the shutdown arrives with
    // the first one. Without the stop the retries go on until the 20 s timeout.
    let stop = job.stop.clone();
    let mut polls = 0;
    let server = Scripted::start(token_then(move |r| {
        match (r.method.as_str(), r.path.as_str()) {
            ("GET", RUN) if polls == 0 => {
                polls += 1;
                (200, json!({"state": "running", "queued_at": now()}))
            }
            ("GET", RUN) => {
                stop.raise();
                (503, json!({"detail": "database is locked"}))
            }
            _ => (500, json!({"detail": "unexpected"})),
        }
    }));
    let trainer = trainer(&server.url, &dir.0, 20);
    let err = trainer.train(&job, &mut |_| {}).unwrap_err();
    assert!(
        matches!(err, TrainError::Stopped),
        "expected Stopped, got {err}"
    );
    let seen = server.seen();
    assert_eq!(
        seen.iter().filter(|s| s.path == RUN).count(),
        2,
        "{seen:#?}"
    );
    assert!(seen.iter().all(|s| s.method != "PATCH"), "{seen:#?}");
}
