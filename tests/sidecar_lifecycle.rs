//! The lifecycle through the sidecar's admin API and the CLI, with an agent that loads the
//! trained artifacts through its reporter: retrain, review, approve, rollback, and the hot
//! swaps that follow, over loopback.
#![cfg(feature = "sidecar")]

mod common;
use common::{ELEC_EXPERIMENTS, ELEC2_HALF_HOUR_MS as HALF_HOUR_MS};

use common::TempDir;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use modelgate::agent::Agent;
use modelgate::artifact::{ArtifactLoader, ModelArtifact};
use modelgate::reporter::{Reporter, ReporterConfig};
use modelgate::route::{ManualClock, RouterConfig};
use modelgate::sidecar::config::SidecarConfig;
use modelgate::sidecar::lifecycle::triggers::TriggerKind;
use modelgate::sidecar::server;
use modelgate::sidecar::store::{RunRecord, Store};

const AGENT_TOKEN: &str = "agent-token-lifecycle-0001";
const ADMIN_TOKEN: &str = "admin-token-lifecycle-0001";

fn client() -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::new()
}

fn post(url: &str, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let r = client()
        .post(format!("{url}{path}"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap_or_default())
}

fn runs(url: &str) -> Vec<RunRecord> {
    #[derive(serde::Deserialize)]
    struct Runs {
        runs: Vec<RunRecord>,
    }
    client()
        .get(format!("{url}/v1/runs"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .unwrap()
        .json::<Runs>()
        .unwrap()
        .runs
}

/// Waits until run `n` (1-based) exists and has left `running`.
fn wait_run(url: &str, n: usize) -> RunRecord {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let all = runs(url);
        if all.len() >= n {
            let run = all.iter().find(|r| r.id == n as i64).unwrap().clone();
            if run.state != "running" {
                return run;
            }
        }
        assert!(Instant::now() < deadline, "run {n} did not finish: {all:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn cli(url: &str, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(args)
        .args(["--url", url])
        .env("MODELGATE_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn served_version(agent: &Agent<ModelArtifact>) -> Option<String> {
    let elec = agent.experiment("elec").unwrap();
    agent
        .route(elec, "someone")
        .model_version()
        .map(str::to_owned)
}

/// A sidecar config on 127.0.0.1 with the `elec` experiments and an `elec` lifecycle on
/// `data/elec2.csv`: `settings` holds its other keys and then its tables.
fn elec_config(dir: &TempDir, settings: &str) -> SidecarConfig {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/elec2.csv");
    let mut config =
        SidecarConfig::new(&dir.0.join("modelgate.db"), AGENT_TOKEN, ADMIN_TOKEN).unwrap();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.experiments = RouterConfig::from_toml(ELEC_EXPERIMENTS).unwrap();
    let lifecycle = format!(
        "model = \"elec\"\nexperiment = \"elec\"\ndata = \"{}\"\ntimestamp_column = \"t\"\n\
         timestamp_unit_ms = {HALF_HOUR_MS}\nlabel = \"label\"\nartifacts = \"{}\"\n{settings}\n",
        data.display(),
        dir.0.join("models").display()
    );
    config.lifecycle = Some(toml::from_str(&lifecycle).unwrap());
    config
}

/// Triggers that never fire on their own (runs start over HTTP or from a test).
const NO_TRIGGERS: &str =
    "[triggers]\nschedule = \"\"\ndrift = false\nvolume = 1000000\ncheck_interval_s = 3600\n";

#[test]
fn retrain_review_approve_rollback_over_http_and_cli() {
    let dir = TempDir::new("flow");
    let clock = Arc::new(ManualClock::new(8000 * HALF_HOUR_MS));
    let mut config = elec_config(
        &dir,
        &format!(
            "features = [\"nswprice\", \"nswdemand\", \"vicprice\", \"vicdemand\", \"transfer\"]\n\
             min_improvement = 10.0\ntraining_window = 6000\n{NO_TRIGGERS}\
             [rollout]\nstrategy = \"immediate\"\n"
        ),
    );
    config.clock = clock.clone();
    let sidecar = server::spawn(&config).unwrap();
    let url = sidecar.url();

    // An agent that loads whatever artifact the control plane names.
    let agent = Arc::new(
        Agent::<ModelArtifact>::builder()
            .experiments_toml(ELEC_EXPERIMENTS)
            .unwrap()
            .build()
            .unwrap(),
    );
    let mut rc = ReporterConfig::new(&url, AGENT_TOKEN);
    rc.interval = Duration::from_secs(3600);
    rc.control_interval = Duration::from_secs(3600);
    let reporter = Reporter::spawn(&agent, rc, Some(Arc::new(ArtifactLoader))).unwrap();
    reporter.sync_control(Duration::from_secs(10)).unwrap();
    assert_eq!(served_version(&agent), None, "no model yet");

    // Validation of the admin calls.
    let (code, _) = post(&url, "/v1/retrain", serde_json::json!({"reason": " "}));
    assert_eq!(code, 400, "a reason is required");
    for action in ["approve", "reject"] {
        let (code, body) = post(
            &url,
            &format!("/v1/runs/99/{action}"),
            serde_json::json!({"reason": "x"}),
        );
        assert_eq!(code, 404, "an unknown run is not found: {body}");
        assert!(body.to_string().contains("no pipeline run 99"), "{body}");
    }
    // A control document without the lifecycle's experiment, or without one of its two
    // variants, would make every later promotion fail: refused, the document unchanged.
    let control_text = || {
        client()
            .get(format!("{url}/v1/control"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .unwrap()
            .text()
            .unwrap()
    };
    let before = control_text();
    for (toml, missing) in [
        (
            "[[experiments]]\nname = \"other\"\n[[experiments.variants]]\nname = \"a\"\n",
            "no experiment `elec`",
        ),
        (
            "[[experiments]]\nname = \"elec\"\n[[experiments.variants]]\nname = \"production\"\n",
            "no variant `candidate`",
        ),
    ] {
        let experiments = RouterConfig::from_toml(toml).unwrap();
        let r = client()
            .put(format!("{url}/v1/control"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&serde_json::json!({"experiments": experiments}))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 409);
        let body = r.text().unwrap();
        assert!(
            body.contains("lifecycle_conflict") && body.contains(missing),
            "{body}"
        );
    }
    let after = control_text();
    assert_eq!(before, after, "a refused document changes nothing");
    let r = client()
        .post(format!("{url}/v1/retrain"))
        .bearer_auth(AGENT_TOKEN)
        .json(&serde_json::json!({"reason": "x"}))
        .send()
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        401,
        "the agent token is not an admin token"
    );

    // Run 1: no production yet, so the first model is promoted.
    // `--wait` follows the run: one line per step when the output is not a terminal.
    let (ok, out, err) = cli(&url, &["retrain", "--reason", "first model", "--wait"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("run 1 step training succeeded"), "{out}");
    assert!(out.contains("run 1 ended succeeded"), "{out}");
    let first = wait_run(&url, 1);
    assert_eq!(first.state, "succeeded", "{first:?}");
    reporter.sync_control(Duration::from_secs(10)).unwrap();
    assert_eq!(served_version(&agent).as_deref(), Some("elec@1"));
    // The loaded artifact is the real model: it predicts a probability.
    let elec = agent.experiment("elec").unwrap();
    let decision = agent.route(elec, "someone");
    let p = decision
        .model()
        .unwrap()
        .predict(&[0.05, 0.4, 0.003, 0.42, 0.41])
        .unwrap();
    assert!((0.0..=1.0).contains(&p));

    // Run 2 on more data: under the 1000% bar, so it waits for a person.
    clock.set(9000 * HALF_HOUR_MS);
    assert_eq!(
        post(
            &url,
            "/v1/retrain",
            serde_json::json!({"reason": "more data"})
        )
        .0,
        202
    );
    let second = wait_run(&url, 2);
    // (On this data the full model retrained on 1,000 more rows is slightly better, so it
    // is neither approved nor rejected automatically.)
    assert_eq!(second.state, "pending_review", "{second:?}");
    let (ok, listing, _) = cli(&url, &["runs"]);
    assert!(ok);
    assert!(listing.contains("pending_review"), "{listing}");
    assert!(listing.contains("evaluating"), "{listing}");
    let (ok, out, err) = cli(&url, &["approve", "2", "--reason", "looks right"]);
    assert!(ok, "{out}{err}");
    assert_eq!(wait_run(&url, 2).state, "succeeded");
    reporter.sync_control(Duration::from_secs(10)).unwrap();
    assert_eq!(served_version(&agent).as_deref(), Some("elec@2"));
    let (ok, _, err) = cli(&url, &["approve", "2", "--reason", "again"]);
    assert!(!ok && err.contains("409"), "{err}");

    // Rollback through the CLI: agents swap back at their next poll.
    let (ok, out, err) = cli(&url, &["rollback", "--reason", "v2 misbehaves"]);
    assert!(ok, "{out}{err}");
    reporter.sync_control(Duration::from_secs(10)).unwrap();
    assert_eq!(served_version(&agent).as_deref(), Some("elec@1"));

    // The audit log has every decision, newest first.
    let audit: serde_json::Value = client()
        .get(format!("{url}/v1/audit?kind=model"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let kinds: Vec<&str> = audit["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds[0], "model.rollback", "{kinds:?}");
    assert!(kinds.contains(&"model.promote"));
    assert!(kinds.contains(&"model.register"));

    // A request when nothing runs is taken, and makes exactly one run.
    let (code, body) = post(
        &url,
        "/v1/retrain",
        serde_json::json!({"reason": "after the rollback"}),
    );
    assert_eq!(code, 202, "{body}");
    wait_run(&url, 3);
    assert_eq!(runs(&url).len(), 3);
    drop(reporter);
    drop(agent);
}

#[test]
fn metrics_expose_the_latest_drift_scores() {
    use modelgate::agent::{Feature, FeatureKind, FeatureValue};
    let dir = TempDir::new("drift-metrics");
    let clock = Arc::new(ManualClock::new(8000 * HALF_HOUR_MS));
    let features = ["nswprice", "nswdemand", "vicprice", "vicdemand", "transfer"];
    let mut config = elec_config(
        &dir,
        &format!(
            "features = {features:?}\ntraining_window = 6000\n[triggers]\nschedule = \"\"\n\
             volume = 1000000\ncheck_interval_s = 3600\nmin_drift_rows = 500\ndrift_window_s = 86400\n"
        ),
    );
    config.clock = clock.clone();
    let sidecar = server::spawn(&config).unwrap();
    let url = sidecar.url();
    let lifecycle = sidecar.lifecycle().unwrap().clone();
    assert_eq!(lifecycle.tick().unwrap().unwrap().state, "succeeded");

    // An agent reports features from a year later, when the Victorian columns moved.
    let agent = Arc::new(
        Agent::<ModelArtifact>::builder()
            .experiments_toml(ELEC_EXPERIMENTS)
            .unwrap()
            .features(
                features
                    .iter()
                    .map(|f| Feature {
                        name: f.to_string(),
                        kind: FeatureKind::Numeric,
                    })
                    .collect(),
            )
            .clock(clock.clone())
            .build()
            .unwrap(),
    );
    let mut rc = ReporterConfig::new(&url, AGENT_TOKEN);
    rc.interval = Duration::from_secs(3600);
    rc.control_interval = Duration::from_secs(3600);
    let reporter = Reporter::spawn(&agent, rc, Some(Arc::new(ArtifactLoader))).unwrap();
    reporter.sync_control(Duration::from_secs(10)).unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/elec2.csv");
    let text = std::fs::read_to_string(&data).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let columns: Vec<usize> = features
        .iter()
        .map(|f| header.iter().position(|h| h == f).unwrap())
        .collect();
    let elec = agent.experiment("elec").unwrap();
    for (i, line) in text.lines().skip(1).enumerate().skip(30_000).take(1000) {
        let fields: Vec<&str> = line.split(',').collect();
        let row: Vec<FeatureValue<'_>> = columns
            .iter()
            .map(|&c| FeatureValue::Number(fields[c].parse().unwrap()))
            .collect();
        let decision = agent.route(elec, &format!("row-{i}"));
        agent.record_features(&decision, &row);
    }
    reporter.flush(Duration::from_secs(10)).unwrap();
    let firings = lifecycle.check_triggers().unwrap();
    assert!(
        firings.iter().any(|f| f.kind == TriggerKind::Drift),
        "{firings:?}"
    );
    let metrics = client()
        .get(format!("{url}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("modelgate_drift_ks{") && l.contains("feature=\"vicprice\""))
        .unwrap_or_else(|| panic!("{metrics}"));
    let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(value > 0.1, "{line}");
    assert!(metrics.contains("modelgate_drift_psi{"), "{metrics}");
    assert!(metrics.contains("modelgate_drift_detected{"), "{metrics}");
    drop(reporter);
    drop(agent);
}

/// A sidecar with an `elec` lifecycle on two features whose settings end with `tail` (TOML
/// tables), no triggers, and a run started over HTTP.
fn sidecar_with_a_run(dir: &TempDir, tail: &str) -> (server::RunningSidecar, Arc<Store>) {
    let config = elec_config(
        dir,
        &format!("features = [\"nswprice\", \"nswdemand\"]\n{NO_TRIGGERS}{tail}"),
    );
    let sidecar = server::spawn(&config).unwrap();
    let store = sidecar.store().clone();
    let (code, body) = post(
        &sidecar.url(),
        "/v1/retrain",
        serde_json::json!({"reason": "test"}),
    );
    assert_eq!(code, 202, "{body}");
    (sidecar, store)
}

/// Waits until `ready` holds (a state another thread reaches), for at most two minutes.
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ready() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A shutdown during a long training kills the training command and fails the run with that
/// reason, instead of waiting for the command (or its timeout) to end.
#[test]
fn a_shutdown_during_training_stops_the_command_and_fails_the_run() {
    let dir = TempDir::new("shutdown");
    let started = dir.0.join("started");
    let (sidecar, store) = sidecar_with_a_run(
        &dir,
        &format!(
            "[trainer]\nkind = \"command\"\ncommand = [\"sh\", \"-c\", \"touch '{}'; exec sleep 300\"]\ntimeout_s = 30",
            started.display()
        ),
    );
    wait_until("the training command never started", || started.exists());

    // During the run a retrain is queued behind it, and a second one while that one still
    // waits in the queue is refused: a double click makes one run, not two.
    let url = sidecar.url();
    let (code, body) = post(&url, "/v1/retrain", serde_json::json!({"reason": "next"}));
    assert_eq!(code, 202, "{body}");
    let (code, body) = post(&url, "/v1/retrain", serde_json::json!({"reason": "next"}));
    assert_eq!(code, 409, "{body}");
    assert!(body.to_string().contains("already queued"), "{body}");

    // Without the stop reaching the command, this returns only when the command's
    // 30 s timeout kills it, and the run fails with that reason instead.
    sidecar.stop();
    let run = store.run(1).unwrap().expect("run 1");
    assert_eq!(run.state, "failed", "{run:?}");
    let training = run.steps.iter().find(|s| s.name == "training").unwrap();
    assert_eq!(training.state, "failed", "{run:?}");
    let outcome = run.outcome.unwrap().to_string();
    assert!(
        outcome.contains("the sidecar shut down during this step"),
        "{outcome}"
    );
}

/// A shutdown in the grace period before a model update ends the wait: the run fails and
/// production stays as it was (here: no model at all).
#[test]
fn a_shutdown_in_the_grace_period_fails_the_run_without_an_update() {
    let dir = TempDir::new("shutdown-grace");
    let (sidecar, store) = sidecar_with_a_run(&dir, "[notify]\ngrace_period_s = 600");
    wait_until("the run never reached its grace period", || {
        store.run(1).unwrap().is_some_and(|run| {
            run.steps
                .iter()
                .any(|s| s.name == "notifying" && s.state == "running")
        })
    });

    // Without the stop, this waits the 600 s grace period and then promotes.
    sidecar.stop();
    let run = store.run(1).unwrap().expect("run 1");
    assert_eq!(run.state, "failed", "{run:?}");
    let outcome = run.outcome.unwrap().to_string();
    assert!(outcome.contains("during the grace period"), "{outcome}");
    assert!(store.alias("elec", "production").unwrap().is_none());
}
