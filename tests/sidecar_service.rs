//! The sidecar end to end over loopback: agents with reporters, a real SQLite file, real
//! HTTP. Totals must be exact; rejections get their status and are counted; control changes
//! reach every agent.
#![cfg(feature = "sidecar")]

mod common;

use common::TempDir;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::Rng;
use modelgate::agent::{Agent, Outcome};
use modelgate::metrics::ErrorKind;
use modelgate::model::LoadError;
use modelgate::reporter::{MAX_AGENT_ID_BYTES, Reporter, ReporterConfig};
use modelgate::sidecar::config::SidecarConfig;
use modelgate::sidecar::server::{self, RunningSidecar, Status};

const AGENT_TOKEN: &str = "agent-token-for-tests-0001";
const ADMIN_TOKEN: &str = "admin-token-for-tests-0001";

const CONFIG: &str = r#"
[[experiments]]
name = "ranker"
[[experiments.variants]]
name = "control"
model = "ranker@1"
[[experiments.variants]]
name = "candidate"
model = "ranker@2"

[[experiments]]
name = "blender"
strategy = "canary"
percent = 20
[[experiments.variants]]
name = "production"
model = "blender@1"
[[experiments.variants]]
name = "candidate"
model = "blender@2"
"#;

fn sidecar_config(dir: &TempDir) -> SidecarConfig {
    let mut config =
        SidecarConfig::new(&dir.0.join("modelgate.db"), AGENT_TOKEN, ADMIN_TOKEN).unwrap();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.experiments = modelgate::route::RouterConfig::from_toml(CONFIG).unwrap();
    config.max_body_bytes = 1 << 20;
    config
}

fn loader(reference: &str, _location: Option<&str>) -> Result<String, LoadError> {
    if reference.ends_with("@9") {
        return Err(LoadError::Invalid {
            reference: reference.to_owned(),
            reason: "version 9 is broken on purpose".into(),
        });
    }
    Ok(format!("model {reference}"))
}

fn new_agent() -> Arc<Agent<String>> {
    let mut builder = Agent::<String>::builder().experiments_toml(CONFIG).unwrap();
    for r in ["ranker@1", "ranker@2", "blender@1", "blender@2"] {
        builder = builder.model(r, format!("model {r}"));
    }
    Arc::new(builder.build().unwrap())
}

fn reporter_config(url: &str, interval_ms: u64, binary: bool) -> ReporterConfig {
    let mut c = ReporterConfig::new(url, AGENT_TOKEN);
    c.interval = Duration::from_millis(interval_ms);
    c.control_interval = Duration::from_millis(interval_ms);
    c.retry_base = Duration::from_millis(20);
    c.retry_max = Duration::from_millis(200);
    c.timeout = Duration::from_secs(2);
    c.flush_deadline = Duration::from_secs(20);
    c.binary = binary;
    c
}

/// What one agent recorded, per (experiment, variant).
#[derive(Debug, Default, Clone, PartialEq)]
struct Tally {
    requests: u64,
    errors: u64,
    trials: u64,
    successes: u64,
    outcomes: u64,
}

type Tallies = BTreeMap<(String, String), Tally>;

fn add(into: &mut Tallies, from: &Tallies) {
    for (k, t) in from {
        let e = into.entry(k.clone()).or_default();
        e.requests += t.requests;
        e.errors += t.errors;
        e.trials += t.trials;
        e.successes += t.successes;
        e.outcomes += t.outcomes;
    }
}

/// Records one request of each experiment for a random key.
fn serve_one(agent: &Agent<String>, rng: &mut Rng, tally: &mut Tallies) {
    for name in ["ranker", "blender"] {
        let experiment = agent.experiment(name).unwrap();
        let key = rng.key();
        let decision = agent.route(experiment, &key);
        let Some(variant) = decision.variant else {
            continue;
        };
        let variant_name = agent.router().variant_info(variant).unwrap().1.to_string();
        let t = tally.entry((name.to_owned(), variant_name)).or_default();
        let failed = rng.below(20) == 0;
        let latency = Duration::from_micros(100 + rng.below(5000));
        agent.record(
            &decision,
            latency,
            if failed {
                Err(ErrorKind::Timeout)
            } else {
                Ok(())
            },
        );
        t.requests += 1;
        t.errors += u64::from(failed);
        if rng.below(2) == 0 {
            let success = rng.below(3) == 0;
            agent.record_outcome_for(&decision, Outcome::Binary(success));
            t.trials += 1;
            t.successes += u64::from(success);
        } else {
            agent.record_outcome_for(&decision, Outcome::Continuous(rng.unit() * 10.0));
            t.outcomes += 1;
        }
    }
}

fn admin_get(url: &str, path: &str) -> reqwest::blocking::Response {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::new()
        .get(format!("{url}{path}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .unwrap()
}

fn status(url: &str) -> Status {
    let r = admin_get(url, "/v1/status");
    assert_eq!(r.status().as_u16(), 200);
    r.json().unwrap()
}

fn sidecar_tallies(status: &Status) -> Tallies {
    status
        .variants
        .iter()
        .map(|v| {
            (
                (v.experiment.clone(), v.variant.clone()),
                Tally {
                    requests: v.requests,
                    errors: v.errors,
                    trials: v.trials,
                    successes: v.successes,
                    outcomes: v.outcome_count,
                },
            )
        })
        .collect()
}

/// Runs `agents` threads that each record `requests` rounds, with reporters shipping every
/// few milliseconds, then drop their agents (the final flush). Returns what they recorded.
fn run_agents(url: &str, agents: usize, requests: usize, binary: bool) -> Tallies {
    let handles: Vec<_> = (0..agents)
        .map(|i| {
            let url = url.to_owned();
            std::thread::spawn(move || {
                let agent = new_agent();
                let reporter =
                    Reporter::spawn(&agent, reporter_config(&url, 5, binary), None).unwrap();
                let mut rng = Rng(1000 + i as u64);
                let mut tally = Tallies::new();
                for _ in 0..requests {
                    serve_one(&agent, &mut rng, &mut tally);
                }
                drop(reporter);
                drop(agent); // flushes the last snapshot before returning
                tally
            })
        })
        .collect();
    let mut total = Tallies::new();
    for h in handles {
        add(&mut total, &h.join().unwrap());
    }
    total
}

#[test]
fn several_agents_totals_are_exact() {
    let dir = TempDir::new("totals");
    let sidecar = server::spawn(&sidecar_config(&dir)).unwrap();
    let url = sidecar.url();
    let mut recorded = run_agents(&url, 3, 20_000, true);
    add(&mut recorded, &run_agents(&url, 1, 5_000, false));
    let status = status(&url);
    assert_eq!(sidecar_tallies(&status), recorded);
    assert!(status.ingest.accepted >= 8, "{:?}", status.ingest);
    assert_eq!(status.agents.len(), 4);
    let rejected: u64 = status.ingest.rejected.values().sum();
    assert_eq!(rejected, 0, "{:?}", status.ingest.rejected);
    // Latency histograms arrived whole: their counts equal the requests.
    let totals = sidecar.store().totals(None, i64::MIN, i64::MAX).unwrap();
    for t in &totals {
        assert_eq!(t.metrics.latency.count(), t.metrics.requests, "{t:?}");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_binary(dir: &TempDir, port: u16) -> std::process::Child {
    start_binary_with(dir, port, "")
}

/// [`start_binary`] with `settings` (top-level keys) in its config.
fn start_binary_with(dir: &TempDir, port: u16, settings: &str) -> std::process::Child {
    let config = dir.0.join("sidecar.toml");
    std::fs::write(
        &config,
        format!("listen = \"127.0.0.1:{port}\"\n{settings}\n{CONFIG}"),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("MODELGATE_AGENT_TOKEN", AGENT_TOKEN)
        .env("MODELGATE_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    // The first line on stdout says where it listens.
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.starts_with("listening on"), "{line}");
    child
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn accepted(url: &str) -> u64 {
    status(url).ingest.accepted
}

#[test]
fn sidecar_killed_mid_stream_loses_and_doubles_nothing() {
    let dir = TempDir::new("restart");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut child = start_binary(&dir, port);

    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..3)
        .map(|i| {
            let url = url.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let agent = new_agent();
                let reporter =
                    Reporter::spawn(&agent, reporter_config(&url, 5, i % 2 == 0), None).unwrap();
                let mut rng = Rng(7 + i);
                let mut tally = Tallies::new();
                let mut rounds = 0u64;
                while !stop.load(Ordering::Relaxed) || rounds < 1000 {
                    serve_one(&agent, &mut rng, &mut tally);
                    rounds += 1;
                }
                let status = reporter.status();
                drop(reporter);
                drop(agent);
                (tally, status)
            })
        })
        .collect();

    wait_for("reports before the crash", || accepted(&url) >= 10);
    child.kill().unwrap(); // SIGKILL: no graceful shutdown, no flush
    child.wait().unwrap();
    // While it is down, agents keep recording and their reports wait.
    let down_since = Instant::now();
    while down_since.elapsed() < Duration::from_millis(300) {
        std::thread::yield_now();
    }
    let mut child = start_binary(&dir, port);
    wait_for("reports after the restart", || accepted(&url) >= 10);
    stop.store(true, Ordering::Relaxed);
    let mut recorded = Tallies::new();
    let mut failures = 0;
    for h in handles {
        let (tally, reporter_status) = h.join().unwrap();
        add(&mut recorded, &tally);
        failures += reporter_status.send_failures;
    }
    let status = status(&url);
    assert_eq!(sidecar_tallies(&status), recorded);
    assert!(failures > 0, "the outage was seen by the reporters");
    child.kill().unwrap();
    child.wait().unwrap();
}

fn post(url: &str, token: &str, content_type: &str, body: Vec<u8>) -> (u16, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let r = reqwest::blocking::Client::new()
        .post(format!("{url}/v1/reports"))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

fn one_report(id: &str) -> modelgate::wire::Report {
    let agent = new_agent();
    let mut rng = Rng(3);
    let mut tally = Tallies::new();
    for _ in 0..100 {
        serve_one(&agent, &mut rng, &mut tally);
    }
    modelgate::wire::Report::new("agent-x", id, agent.snapshot())
}

#[test]
fn bad_requests_get_their_status_and_are_counted() {
    let dir = TempDir::new("rejections");
    let sidecar = server::spawn(&sidecar_config(&dir)).unwrap();
    let url = sidecar.url();
    let report = one_report("r-1");
    let json = report.to_json().unwrap();
    let binary = report.to_binary().unwrap();
    let bin = "application/x-modelgate-report";

    assert_eq!(
        post(&url, AGENT_TOKEN, "application/json", json.clone()).0,
        202
    );
    let (code, body) = post(&url, AGENT_TOKEN, bin, binary.clone());
    assert_eq!((code, body.contains("duplicate")), (200, true), "{body}");
    let (code, body) = post(
        &url,
        AGENT_TOKEN,
        "application/json",
        b"{\"version\":1,".to_vec(),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("malformed"), "{body}");
    let (code, _) = post(&url, AGENT_TOKEN, bin, binary[..binary.len() / 3].to_vec());
    assert_eq!(code, 400);
    let (code, _) = post(&url, AGENT_TOKEN, bin, vec![0xff; 64]);
    assert_eq!(code, 400);
    assert_eq!(
        post(&url, "wrong-token-0000000000", bin, binary.clone()).0,
        401
    );
    assert_eq!(
        post(&url, ADMIN_TOKEN, bin, binary.clone()).0,
        401,
        "admin is not an agent"
    );
    assert_eq!(post(&url, AGENT_TOKEN, "text/plain", json.clone()).0, 415);
    // Oversize with a Content-Length: the sidecar answers 413 before reading the body and
    // closes, so the client may see the 413 or a broken pipe while still writing; the
    // too_large counter below shows the rejection either way.
    let sent = reqwest::blocking::Client::new()
        .post(format!("{url}/v1/reports"))
        .bearer_auth(AGENT_TOKEN)
        .header("content-type", bin)
        .body(vec![0u8; (1 << 20) + 1])
        .send();
    if let Ok(r) = sent {
        assert_eq!(r.status().as_u16(), 413);
    }
    // Oversize without a Content-Length (chunked): the limit holds while reading. The
    // server answers 413 and closes without reading the rest, so the client sees either the
    // 413 or a broken connection; the counter below shows the rejection either way.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..40).map(|_| Ok(vec![b' '; 64 * 1024])).collect();
    let sent = reqwest::blocking::Client::new()
        .post(format!("{url}/v1/reports"))
        .bearer_auth(AGENT_TOKEN)
        .header("content-type", "application/json")
        .body(reqwest::blocking::Body::new(ChunkReader::new(chunks)))
        .send();
    if let Ok(r) = sent {
        assert_eq!(r.status().as_u16(), 413);
    }
    // An invalid value (window ends before it starts).
    let mut invalid = one_report("r-2");
    invalid.snapshot.window_start_ms = invalid.snapshot.window_end_ms + 1;
    let (code, body) = post(
        &url,
        AGENT_TOKEN,
        "application/json",
        invalid.to_json().unwrap(),
    );
    assert_eq!(code, 400);
    assert!(body.contains("window"), "{body}");

    // Still serving, and every rejection counted by reason.
    assert_eq!(admin_get(&url, "/healthz").status().as_u16(), 200);
    let s = status(&url);
    assert_eq!(s.ingest.accepted, 1);
    assert_eq!(s.ingest.duplicates, 1);
    let r = &s.ingest.rejected;
    assert_eq!(r["malformed"], 3, "{r:?}");
    assert_eq!(r["unauthorized"], 2, "{r:?}");
    assert_eq!(r["unsupported_media_type"], 1, "{r:?}");
    assert_eq!(r["too_large"], 2, "{r:?}");
    assert_eq!(r["invalid"], 1, "{r:?}");
    // The duplicate was not counted twice.
    let requests: u64 = s.variants.iter().map(|v| v.requests).sum();
    assert_eq!(requests, 200);
    // Admin endpoints need the admin token.
    let r = reqwest::blocking::Client::new()
        .get(format!("{url}/v1/status"))
        .bearer_auth(AGENT_TOKEN)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // The exposition carries the counters.
    let text = admin_get(&url, "/metrics").text().unwrap();
    assert!(
        text.contains("modelgate_reports_rejected_total{reason=\"too_large\"} 2"),
        "{text}"
    );
    assert!(text.contains("modelgate_requests_total{"), "{text}");
    assert!(text.contains("modelgate_latency_seconds{"), "{text}");
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
}

/// A reader over a list of chunks, so reqwest sends the body chunked (no Content-Length).
struct ChunkReader {
    chunks: std::vec::IntoIter<Result<Vec<u8>, std::io::Error>>,
    current: std::io::Cursor<Vec<u8>>,
}

impl ChunkReader {
    fn new(chunks: Vec<Result<Vec<u8>, std::io::Error>>) -> Self {
        ChunkReader {
            chunks: chunks.into_iter(),
            current: std::io::Cursor::new(Vec::new()),
        }
    }
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.current.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            match self.chunks.next() {
                Some(chunk) => self.current = std::io::Cursor::new(chunk?),
                None => return Ok(0),
            }
        }
    }
}

fn put_control(url: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    put_control_if(url, body, None)
}

/// `PUT /v1/control` with an `If-Match` header when `if_match` names one.
fn put_control_if(
    url: &str,
    body: &serde_json::Value,
    if_match: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut request = reqwest::blocking::Client::new()
        .put(format!("{url}/v1/control"))
        .bearer_auth(ADMIN_TOKEN)
        .json(body);
    if let Some(etag) = if_match {
        request = request.header("if-match", etag);
    }
    let r = request.send().unwrap();
    (r.status().as_u16(), r.json().unwrap_or_default())
}

fn experiments_json(ranker_candidate_weight: f64, blender_percent: f64) -> serde_json::Value {
    let mut config: serde_json::Value =
        serde_json::to_value(modelgate::route::RouterConfig::from_toml(CONFIG).unwrap()).unwrap();
    config["experiments"][0]["variants"][0]["weight"] = (1.0 - ranker_candidate_weight).into();
    config["experiments"][0]["variants"][1]["weight"] = ranker_candidate_weight.into();
    config["experiments"][1]["percent"] = blender_percent.into();
    config
}

#[test]
fn control_changes_reach_every_agent_atomically() {
    let dir = TempDir::new("control");
    let sidecar = server::spawn(&sidecar_config(&dir)).unwrap();
    let url = sidecar.url();
    let agents: Vec<_> = (0..3).map(|_| new_agent()).collect();
    let reporters: Vec<_> = agents
        .iter()
        .map(|a| {
            let mut c = reporter_config(&url, 3_600_000, true);
            c.control_interval = Duration::from_secs(3600);
            Reporter::spawn(a, c, Some(Arc::new(loader))).unwrap()
        })
        .collect();
    for r in &reporters {
        r.sync_control(Duration::from_secs(10)).unwrap();
    }
    let first_etag = reporters[0].status().control_etag.clone().unwrap();

    // A reader checks, while the change lands, that both experiments change together:
    // every key's pair of variants is the old config's pair or the new config's pair.
    let old_router = modelgate::route::Router::from_toml(CONFIG).unwrap();
    let new_router = modelgate::route::Router::new(
        serde_json::from_value(experiments_json(1.0, 100.0)).unwrap(),
    )
    .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let agent = agents[0].clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let pair = |router: &modelgate::route::Router, key: &str| {
                let mut names = Vec::new();
                router.route_all(key, |e, a| {
                    let v = a
                        .variant
                        .and_then(|v| e.variant(v))
                        .map(|v| v.name().to_owned());
                    names.push((e.name().to_owned(), v));
                });
                names
            };
            let mut rng = Rng(99);
            let (mut mixed, mut observations) = (0u64, 0u64);
            while !done.load(Ordering::Relaxed) {
                let key = rng.key();
                let seen = pair(agent.router(), &key);
                if seen != pair(&old_router, &key) && seen != pair(&new_router, &key) {
                    mixed += 1;
                }
                observations += 1;
            }
            (mixed, observations)
        })
    };

    let (code, answer) = put_control(
        &url,
        &serde_json::json!({
            "experiments": experiments_json(1.0, 100.0),
            "models": {"ranker/candidate": {"reference": "ranker@3", "location": "/models/ranker-3"}},
            "reason": "roll out ranker@3",
        }),
    );
    assert_eq!(code, 200, "{answer}");
    let new_etag = answer["etag"].as_str().unwrap().to_owned();
    assert_ne!(new_etag, first_etag);
    for r in &reporters {
        r.sync_control(Duration::from_secs(10)).unwrap();
        assert_eq!(r.status().control_etag.as_deref(), Some(new_etag.as_str()));
    }
    done.store(true, Ordering::Relaxed);
    let (mixed, observations) = watcher.join().unwrap();
    assert!(observations > 0);
    assert_eq!(
        mixed, 0,
        "a reader saw one experiment's new weights with the other's old"
    );

    // Every agent now sends every key to the candidate, which serves ranker@3.
    let mut rng = Rng(5);
    for agent in &agents {
        let ranker = agent.experiment("ranker").unwrap();
        for _ in 0..200 {
            let d = agent.route(ranker, &rng.key());
            assert_eq!(d.model_version(), Some("ranker@3"));
            assert_eq!(d.model().map(String::as_str), Some("model ranker@3"));
        }
    }
    // The swap is visible in the next reports.
    for (agent, reporter) in agents.iter().zip(&reporters) {
        let mut tally = Tallies::new();
        for _ in 0..50 {
            serve_one(agent, &mut rng, &mut tally);
        }
        reporter.flush(Duration::from_secs(10)).unwrap();
    }
    let s = status(&url);
    let candidate = s
        .variants
        .iter()
        .find(|v| v.experiment == "ranker" && v.variant == "candidate")
        .unwrap();
    assert_eq!(candidate.model.as_deref(), Some("ranker@3"));

    // A model that fails to load: the variant keeps its model, the failure is reported.
    let (code, answer) = put_control(
        &url,
        &serde_json::json!({
            "experiments": experiments_json(1.0, 100.0),
            "models": {"ranker/candidate": {"reference": "ranker@9"}},
        }),
    );
    assert_eq!(code, 200, "{answer}");
    for (agent, reporter) in agents.iter().zip(&reporters) {
        reporter.sync_control(Duration::from_secs(10)).unwrap();
        assert!(reporter.status().load_failures >= 1);
        let ranker = agent.experiment("ranker").unwrap();
        let d = agent.route(ranker, "someone");
        assert_eq!(d.model_version(), Some("ranker@3"), "the old model stays");
        reporter.flush(Duration::from_secs(10)).unwrap();
    }
    let audit = sidecar
        .store()
        .audit_log(&modelgate::sidecar::store::AuditFilter {
            kind: Some("agent.load_error".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(audit.len(), 3, "{audit:?}");
    assert!(audit.iter().all(|a| a.subject == "ranker@9"));

    // Bad control updates are refused and change nothing.
    let (code, _) = put_control(
        &url,
        &serde_json::json!({"experiments": {"experiments": [{"name": "x", "variants": []}]}}),
    );
    assert_eq!(code, 400);
    let (code, _) = put_control(
        &url,
        &serde_json::json!({"experiments": experiments_json(1.0, 100.0), "models": {"nope/x": {"reference": "a@1"}}}),
    );
    assert_eq!(code, 400);
    drop(reporters);
    drop(agents);
    drop(sidecar);
}

#[test]
fn control_is_cached_by_etag_and_needs_a_token() {
    let dir = TempDir::new("etag");
    let sidecar: RunningSidecar = server::spawn(&sidecar_config(&dir)).unwrap();
    let url = sidecar.url();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::blocking::Client::new();
    let r = client
        .get(format!("{url}/v1/control"))
        .bearer_auth(AGENT_TOKEN)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let control: modelgate::wire::Control = r.json().unwrap();
    assert_eq!(format!("\"{}\"", control.etag), etag);
    assert_eq!(control.experiments.experiments.len(), 2);
    let r = client
        .get(format!("{url}/v1/control"))
        .bearer_auth(AGENT_TOKEN)
        .header("if-none-match", &etag)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 304);
    let r = client.get(format!("{url}/v1/control")).send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

#[test]
fn status_command_prints_a_summary() {
    let dir = TempDir::new("status-cli");
    let sidecar = server::spawn(&sidecar_config(&dir)).unwrap();
    let url = sidecar.url();
    run_agents(&url, 1, 500, true);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(["status", "--url", &url])
        .env("MODELGATE_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("agents: 1"), "{text}");
    assert!(
        text.contains("ranker") && text.contains("candidate"),
        "{text}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(["status", "--url", &url])
        .env("MODELGATE_ADMIN_TOKEN", "not-the-admin-token")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
}

/// A proxy in front of the sidecar that forwards each request but, for the first
/// `drop_answers` report posts, throws the answer away and closes the connection: the
/// sidecar has committed the report, the agent never hears so.
fn lossy_proxy(
    upstream: std::net::SocketAddr,
    drop_answers: usize,
) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let dropped = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = dropped.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            let counter = counter.clone();
            std::thread::spawn(move || {
                // One request per connection: read the head, then Content-Length bytes.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let head_end = loop {
                    let n = match client.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                let is_report = head.starts_with("post /v1/reports");
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                while buf.len() < head_end + length {
                    match client.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                // Ask upstream to close after answering, so reading to the end is the answer.
                let head = String::from_utf8_lossy(&buf[..head_end])
                    .replace("\r\n\r\n", "\r\nconnection: close\r\n\r\n");
                let mut up = std::net::TcpStream::connect(upstream).unwrap();
                up.write_all(head.as_bytes()).unwrap();
                up.write_all(&buf[head_end..]).unwrap();
                let mut answer = Vec::new();
                let _ = up.read_to_end(&mut answer);
                if is_report && counter.fetch_add(1, Ordering::SeqCst) < drop_answers {
                    return; // committed upstream, answer lost
                }
                let _ = client.write_all(&answer);
            });
        }
    });
    (url, dropped)
}

#[test]
fn lost_acknowledgements_are_not_counted_twice() {
    let dir = TempDir::new("lost-ack");
    let sidecar = server::spawn(&sidecar_config(&dir)).unwrap();
    let (proxy, posts) = lossy_proxy(sidecar.addr(), 4);
    let agent = new_agent();
    let mut config = reporter_config(&proxy, 3_600_000, true);
    config.apply_control = false;
    let reporter = Reporter::spawn(&agent, config, None).unwrap();
    let mut rng = Rng(11);
    let mut recorded = Tallies::new();
    for round in 0..6 {
        for _ in 0..300 {
            serve_one(&agent, &mut rng, &mut recorded);
        }
        // The first flushes lose their answers; the report stays in flight and is retried
        // with the same id, while newer snapshots accumulate beside it.
        let flushed = reporter.flush(Duration::from_secs(20));
        assert!(flushed.is_ok(), "round {round}: {flushed:?}");
    }
    let status_now = status(&sidecar.url());
    assert_eq!(sidecar_tallies(&status_now), recorded);
    assert!(
        posts.load(Ordering::SeqCst) > 4,
        "posts {} status {:?} ingest {:?}",
        posts.load(Ordering::SeqCst),
        reporter.status(),
        status_now.ingest
    );
    assert!(status_now.ingest.duplicates >= 1, "{:?}", status_now.ingest);
    assert!(reporter.status().send_failures >= 4);
    drop(reporter);
    drop(agent);
}

#[test]
fn reads_answer_when_stored_windows_add_up_past_u64() {
    let dir = TempDir::new("saturated");
    let sidecar = server::spawn(&sidecar_config(&dir)).unwrap();
    let url = sidecar.url();
    // 65 536 valid reports of 2^48 requests each (the per-report limit) in different minutes
    // add up past u64::MAX; three stored minutes of half that do the same without sending
    // them all.
    let base = one_report("base");
    let end = base.snapshot.window_end_ms;
    for i in 0..3i64 {
        let mut r = base.clone();
        r.report_id = format!("huge-{i}");
        r.snapshot.window_end_ms = end - i * 60_000;
        for e in &mut r.snapshot.experiments {
            for v in &mut e.variants {
                v.metrics.requests = u64::MAX / 2 + 1;
            }
        }
        sidecar.store().ingest(&r, end).unwrap();
    }
    let s = status(&url);
    assert!(!s.variants.is_empty());
    assert!(s.variants.iter().all(|v| v.requests == u64::MAX), "{s:?}");
    assert_eq!(admin_get(&url, "/v1/experiments").status().as_u16(), 200);
    let metrics = admin_get(&url, "/metrics");
    assert_eq!(metrics.status().as_u16(), 200);
    assert!(
        metrics
            .text()
            .unwrap()
            .contains("modelgate_requests_total{")
    );
}

#[test]
fn implausible_window_ends_are_refused_and_counted() {
    let dir = TempDir::new("window-range");
    let sidecar = server::spawn(&sidecar_config(&dir)).unwrap();
    let url = sidecar.url();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let day = 86_400_000;
    // Each of these broke a reader or maintenance when stored: bucketing near i64::MIN,
    // time arithmetic at 4e18, the browser's Date past 8.64e15; and no clock is 1969 or
    // two days ahead.
    let bad = [
        i64::MIN + 60_000,
        i64::MIN,
        -1,
        now + 2 * day,
        9_000_000_000_000_000,
        4_000_000_000_000_000_000,
        i64::MAX,
    ];
    for (i, end) in bad.into_iter().enumerate() {
        let mut r = one_report(&format!("bad-{i}"));
        r.snapshot.window_start_ms = end.saturating_sub(1000).min(end);
        r.snapshot.window_end_ms = end;
        let (code, body) = post(&url, AGENT_TOKEN, "application/json", r.to_json().unwrap());
        assert_eq!(code, 400, "{end}: {body}");
        assert!(body.contains("window_out_of_range"), "{end}: {body}");
    }
    // The ends of the range are accepted.
    for (i, end) in [0, now, now + day - 60_000].into_iter().enumerate() {
        let mut r = one_report(&format!("good-{i}"));
        r.snapshot.window_start_ms = end;
        r.snapshot.window_end_ms = end;
        let (code, body) = post(&url, AGENT_TOKEN, "application/json", r.to_json().unwrap());
        assert_eq!(code, 202, "{end}: {body}");
    }
    let s = status(&url);
    assert_eq!(s.ingest.accepted, 3);
    assert_eq!(s.ingest.rejected["window_out_of_range"], bad.len() as u64);
    // Nothing of the refused reports was stored: reads and maintenance work.
    let rows = sidecar
        .store()
        .windows("ranker", "control", i64::MIN, i64::MAX)
        .unwrap();
    assert!(
        rows.iter()
            .all(|w| (0..=now + day).contains(&w.bucket_start_ms))
    );
    let done = server::maintain_once(sidecar.store(), now);
    assert!(done.compacted.is_ok() && done.pruned.is_ok(), "{done:?}");
    let text = admin_get(&url, "/metrics").text().unwrap();
    assert!(
        text.contains("modelgate_reports_rejected_total{reason=\"window_out_of_range\"} 7"),
        "{text}"
    );
}

#[test]
fn maintenance_forgets_report_ids_even_when_compaction_fails() {
    let dir = TempDir::new("maintenance");
    let sidecar = server::spawn(&sidecar_config(&dir)).unwrap();
    let url = sidecar.url();
    let r = one_report("old-report");
    let (code, body) = post(&url, AGENT_TOKEN, "application/json", r.to_json().unwrap());
    assert_eq!(code, 202, "{body}");
    // A stored minute window that cannot be compacted (as a window near i64::MIN was, or
    // a corrupt row): compaction fails on it every time.
    let db = rusqlite::Connection::open(dir.0.join("modelgate.db")).unwrap();
    db.execute(
        "INSERT INTO windows (experiment, variant, resolution_ms, bucket_start_ms, model, metrics)
         VALUES ('ranker', 'control', 60000, 0, NULL, X'FFFF')",
        [],
    )
    .unwrap();
    drop(db);
    // Eight days later the report id is past the horizon and must be forgotten anyway.
    let later = r.snapshot.window_end_ms + 8 * 86_400_000;
    let done = server::maintain_once(sidecar.store(), later);
    assert!(done.compacted.is_err(), "{done:?}");
    assert_eq!(done.pruned.unwrap(), 1);
    // Forgotten: the same id is new again.
    let (code, body) = post(&url, AGENT_TOKEN, "application/json", r.to_json().unwrap());
    assert_eq!(code, 202, "{body}");
}

#[test]
fn experiment_series_of_far_apart_windows_is_exact() {
    let dir = TempDir::new("series-range");
    let mut config = sidecar_config(&dir);
    // A sidecar whose clock is at 4e18 accepts windows there (as stores written before the
    // range check may hold them): the series over [now-ish, 4e18] must not overflow.
    let far = 4_000_000_000_000_000_000i64;
    config.clock = Arc::new(modelgate::route::ManualClock::new(far));
    let sidecar = server::spawn(&config).unwrap();
    let url = sidecar.url();
    let near = one_report("near");
    let mut distant = one_report("far");
    distant.snapshot.window_start_ms = far - 1000;
    distant.snapshot.window_end_ms = far;
    let per_report = near
        .snapshot
        .experiments
        .iter()
        .find(|e| e.name == "ranker")
        .and_then(|e| e.variants.iter().find(|v| v.name == "control"))
        .map(|v| v.metrics.requests)
        .unwrap();
    assert!(per_report > 0);
    for r in [&near, &distant] {
        let (code, body) = post(&url, AGENT_TOKEN, "application/json", r.to_json().unwrap());
        assert_eq!(code, 202, "{body}");
    }
    let r = admin_get(&url, "/v1/experiments/ranker/series?points=7");
    assert_eq!(r.status().as_u16(), 200);
    let series: serde_json::Value = r.json().unwrap();
    let control = series["variants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["variant"] == "control")
        .unwrap();
    let points = control["points"].as_array().unwrap();
    assert_eq!(points.len(), 7);
    let ends: Vec<i64> = points
        .iter()
        .map(|p| p["end_ms"].as_i64().unwrap())
        .collect();
    let requests: Vec<u64> = points
        .iter()
        .map(|p| p["requests"].as_u64().unwrap())
        .collect();
    assert!(ends.windows(2).all(|w| w[0] < w[1]), "{ends:?}");
    assert!(ends[0] > near.snapshot.window_end_ms - 60_000, "{ends:?}");
    assert_eq!(
        *ends.last().unwrap(),
        far - far % 60_000 + 60_000,
        "{ends:?}"
    );
    // Cumulative: the near window from the first look, both at the last.
    assert!(requests.iter().all(|&n| n >= per_report), "{requests:?}");
    assert_eq!(*requests.last().unwrap(), 2 * per_report, "{requests:?}");
}

#[test]
fn control_documents_agents_would_refuse_are_a_400() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = TempDir::new("control-limits");
    let sidecar = server::spawn(&sidecar_config(&dir)).unwrap();
    let url = sidecar.url();
    let etag = |url: &str| {
        let r = reqwest::blocking::Client::new()
            .get(format!("{url}/v1/control"))
            .bearer_auth(AGENT_TOKEN)
            .send()
            .unwrap();
        let bytes = r.bytes().unwrap();
        // What an agent does with it: decode with the default limits.
        modelgate::wire::Control::decode(
            "application/json",
            &bytes,
            &modelgate::wire::WireLimits::default(),
        )
        .unwrap()
        .etag
    };
    let before = etag(&url);
    let two = |experiment: &str, variant: &str, model: Option<&str>| {
        serde_json::json!({"experiments": [{"name": experiment, "variants": [
            {"name": variant, "model": model}, {"name": "b"}]}]})
    };
    let long = "e".repeat(300);
    let cases = [
        // The reviewer's document: an empty reference was a 503 store_error.
        (
            serde_json::json!({"experiments": two("x", "a", None),
                "models": {"x/a": {"reference": ""}}}),
            "model reference must be 1 to 256 bytes, got 0",
        ),
        (
            serde_json::json!({"experiments": two("x", "a", None),
                "models": {"x/a": {"reference": long}}}),
            "model reference must be 1 to 256 bytes, got 300",
        ),
        (
            serde_json::json!({"experiments": two(&long, "a", None)}),
            "experiment name must be 1 to 256 bytes, got 300",
        ),
        (
            serde_json::json!({"experiments": two("x", &long, None)}),
            "variant name must be 1 to 256 bytes, got 300",
        ),
        (
            serde_json::json!({"experiments": two("x", "a", Some(&long))}),
            "variant model must be 1 to 256 bytes, got 300",
        ),
    ];
    for (body, reason) in cases {
        let (code, answer) = put_control(&url, &body);
        assert_eq!(code, 400, "{body}: {answer}");
        assert_eq!(answer["error"], "invalid", "{answer}");
        let got = answer["reason"].as_str().unwrap();
        assert!(got.contains(reason), "{got}");
        assert!(!got.contains("report"), "{got}");
    }
    // Nothing changed, and what is served still decodes for agents.
    assert_eq!(etag(&url), before);
    // Names at the limit are fine (a model key `experiment/variant` is one name too).
    let at_limit = "n".repeat(256);
    let (code, answer) = put_control(
        &url,
        &serde_json::json!({"experiments": two(&at_limit, &at_limit, Some(&at_limit))}),
    );
    assert_eq!(code, 200, "{answer}");
    let (e, v) = ("e".repeat(127), "v".repeat(128));
    let (code, answer) = put_control(
        &url,
        &serde_json::json!({"experiments": two(&e, &v, None),
            "models": {format!("{e}/{v}"): {"reference": at_limit}}}),
    );
    assert_eq!(code, 200, "{answer}");
    assert_ne!(etag(&url), before);
}

#[test]
fn labelled_records_beyond_the_magnitude_limit_are_refused() {
    let dir = TempDir::new("labelled-range");
    let sidecar = server::spawn(&sidecar_config(&dir)).unwrap();
    let url = sidecar.url();
    let with = |id: &str, value: f64| {
        let mut r = one_report(id);
        r.snapshot.labelled.seen = 1;
        r.snapshot.labelled.records = vec![modelgate::agent::LabelledRecord {
            at_ms: r.snapshot.window_end_ms,
            features: vec![value, 0.5, -value],
            label: 1.0,
        }];
        r.to_json().unwrap()
    };
    // Finite but huge: a model evaluated on it overflows, and stored records stay.
    let (code, body) = post(&url, AGENT_TOKEN, "application/json", with("huge", 1e308));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("magnitude"), "{body}");
    let (code, body) = post(&url, AGENT_TOKEN, "application/json", with("limit", 1e100));
    assert_eq!(code, 202, "{body}");
    let s = status(&url);
    assert_eq!(s.ingest.rejected["invalid"], 1);
    assert_eq!(
        sidecar
            .store()
            .labelled_records(i64::MIN, i64::MAX)
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn experiment_series_pools_huge_outcome_counts_without_wrapping() {
    let dir = TempDir::new("series-moments");
    let sidecar = server::spawn(&sidecar_config(&dir)).unwrap();
    let url = sidecar.url();
    let base = one_report("base");
    let end = base.snapshot.window_end_ms;
    // Two stored minutes whose continuous outcome counts add up past u64::MAX (the
    // series pools every window's outcomes for its mixing variance).
    for i in 0..2i64 {
        let mut r = base.clone();
        r.report_id = format!("moments-{i}");
        r.snapshot.window_end_ms = end - i * 60_000;
        for e in &mut r.snapshot.experiments {
            for v in &mut e.variants {
                v.metrics.binary = Default::default();
                v.metrics.outcome.count = u64::MAX / 2 + 1;
                v.metrics.outcome.mean = 2.0 + i as f64;
                v.metrics.outcome.m2 = 1e18;
            }
        }
        sidecar.store().ingest(&r, end).unwrap();
    }
    let r = admin_get(&url, "/v1/experiments/ranker/series?points=3");
    assert_eq!(r.status().as_u16(), 200);
    let series: serde_json::Value = r.json().unwrap();
    for v in series["variants"].as_array().unwrap() {
        let last = v["points"].as_array().unwrap().last().unwrap().clone();
        // Saturated, not wrapped to 0: the count and the mean of both windows.
        assert_eq!(last["n"].as_u64(), Some(u64::MAX), "{last}");
        let mean = last["mean"].as_f64().unwrap();
        assert!((mean - 2.5).abs() < 1e-9, "{last}");
    }
}

#[test]
fn reports_with_more_errors_than_requests_are_refused() {
    let dir = TempDir::new("errors-over-requests");
    let sidecar = server::spawn(&sidecar_config(&dir)).unwrap();
    let url = sidecar.url();
    let mut corrupt = one_report("corrupt");
    let v = &mut corrupt.snapshot.experiments[0].variants[0];
    v.metrics.errors.timeout = v.metrics.requests + 1;
    let (code, body) = post(
        &url,
        AGENT_TOKEN,
        "application/json",
        corrupt.to_json().unwrap(),
    );
    assert_eq!(code, 400, "{body}");
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["error"], "invalid", "{body}");
    assert!(
        problem["reason"].as_str().unwrap().contains("requests"),
        "{body}"
    );
    let s = status(&url);
    assert_eq!(s.ingest.rejected["invalid"], 1, "{:?}", s.ingest.rejected);
    assert_eq!(s.ingest.accepted, 0);
    assert!(s.variants.is_empty(), "nothing stored: {:?}", s.variants);
}

#[test]
fn compressed_reports_are_an_unsupported_media_type() {
    let dir = TempDir::new("content-encoding");
    let sidecar = server::spawn(&sidecar_config(&dir)).unwrap();
    let url = sidecar.url();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let send = |id: &str, encoding: &str| {
        // The body is plain JSON whatever the header says: read as raw bytes it would pass.
        let r = reqwest::blocking::Client::new()
            .post(format!("{url}/v1/reports"))
            .bearer_auth(AGENT_TOKEN)
            .header("content-type", "application/json")
            .header("content-encoding", encoding)
            .body(one_report(id).to_json().unwrap())
            .send()
            .unwrap();
        let accept = r
            .headers()
            .get("accept-encoding")
            .map(|v| v.to_str().unwrap().to_owned());
        (r.status().as_u16(), accept, r.text().unwrap())
    };
    for (i, encoding) in ["gzip", "br", "identity, gzip", "x-unknown"]
        .iter()
        .enumerate()
    {
        let (code, accept, body) = send(&format!("compressed-{i}"), encoding);
        assert_eq!(code, 415, "{encoding}: {body}");
        assert_eq!(accept.as_deref(), Some("identity"), "{encoding}");
        let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(problem["error"], "unsupported_media_type", "{body}");
        let reason = problem["reason"].as_str().unwrap();
        assert!(reason.contains("encoding"), "{body}");
        assert!(reason.contains(encoding.trim()), "{body}");
    }
    // `identity` means not encoded.
    let (code, _, body) = send("plain", "Identity");
    assert_eq!(code, 202, "{body}");
    let s = status(&url);
    assert_eq!(s.ingest.rejected["unsupported_media_type"], 4);
    assert_eq!(s.ingest.accepted, 1);
}

/// `one_report(id)` plus experiment `extra` with variants `variants`, each with the metrics
/// of the report's first variant (so each is a series the store would keep).
fn report_with_series(id: &str, extra: &str, variants: &[&str]) -> modelgate::wire::Report {
    let mut r = one_report(id);
    let metrics = r.snapshot.experiments[0].variants[0].metrics.clone();
    if !variants.is_empty() {
        r.snapshot
            .experiments
            .push(modelgate::agent::ExperimentSnapshot {
                name: extra.to_owned(),
                variants: variants
                    .iter()
                    .map(|v| modelgate::agent::VariantSnapshot {
                        name: (*v).to_owned(),
                        model: None,
                        metrics: metrics.clone(),
                    })
                    .collect(),
            });
    }
    r
}

#[test]
fn reports_that_would_store_series_past_the_limit_are_refused_whole() {
    let dir = TempDir::new("series-limit");
    let mut config = sidecar_config(&dir);
    config.max_series = 6;
    let sidecar = server::spawn(&config).unwrap();
    let url = sidecar.url();
    let send = |r: &modelgate::wire::Report| {
        post(&url, AGENT_TOKEN, "application/json", r.to_json().unwrap())
    };
    // The configured experiments: four series.
    let (code, body) = send(&one_report("known"));
    assert_eq!(code, 202, "{body}");
    let before = status(&url);
    assert_eq!(before.variants.len(), 4, "{:?}", before.variants);

    // Three more would pass the limit of six: the whole report is refused, its known
    // series included, and nothing changes.
    let (code, body) = send(&report_with_series("three-more", "ghost", &["a", "b", "c"]));
    assert_eq!(code, 507, "{body}");
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["error"], "too_many_series", "{body}");
    let reason = problem["reason"].as_str().unwrap();
    for needle in ["3 new", "4 stored", "limit of 6", "max_series", "ghost/"] {
        assert!(reason.contains(needle), "{needle}: {reason}");
    }
    let after = status(&url);
    assert_eq!(sidecar_tallies(&after), sidecar_tallies(&before));
    assert_eq!(after.ingest.rejected["too_many_series"], 1);
    assert!(
        after.agents.iter().all(|a| a.reports == 1),
        "the refused report left no trace: {:?}",
        after.agents
    );
    let text = admin_get(&url, "/metrics").text().unwrap();
    assert!(
        text.contains("modelgate_reports_rejected_total{reason=\"too_many_series\"} 1"),
        "{text}"
    );

    // Up to the limit is fine, and series already stored keep being accepted after it.
    let (code, body) = send(&report_with_series("two-more", "ghost", &["a", "b"]));
    assert_eq!(code, 202, "{body}");
    // In another minute: a series has several stored buckets but counts once.
    let mut again = report_with_series("again", "ghost", &["b", "a"]);
    again.snapshot.window_start_ms -= 180_000;
    again.snapshot.window_end_ms -= 180_000;
    let (code, body) = send(&again);
    assert_eq!(code, 202, "{body}");
    let (code, body) = send(&report_with_series("one-more", "ghost", &["c"]));
    assert_eq!(code, 507, "{body}");
    assert!(body.contains("6 stored"), "{body}");
    // A retry of an accepted report is still a duplicate.
    let (code, body) = send(&report_with_series("two-more", "ghost", &["a", "b"]));
    assert_eq!(code, 200, "{body}");
    let s = status(&url);
    assert_eq!(s.variants.len(), 6);
    assert_eq!(s.ingest.accepted, 3);
    assert_eq!(s.ingest.rejected["too_many_series"], 2);
    drop(sidecar);

    // The count survives a restart (it is read from the store, not kept in a counter).
    let sidecar = server::spawn(&config).unwrap();
    let (code, body) = post(
        &sidecar.url(),
        AGENT_TOKEN,
        "application/json",
        report_with_series("after-restart", "other", &["x"])
            .to_json()
            .unwrap(),
    );
    assert_eq!(code, 507, "{body}");
    assert!(body.contains("6 stored"), "{body}");
    drop(sidecar);

    // With a higher limit the refused report is taken: its id was not kept as seen.
    config.max_series = 9;
    let sidecar = server::spawn(&config).unwrap();
    let (code, body) = post(
        &sidecar.url(),
        AGENT_TOKEN,
        "application/json",
        report_with_series("three-more", "ghost", &["a", "b", "c"])
            .to_json()
            .unwrap(),
    );
    assert_eq!(code, 202, "{body}");
    assert_eq!(status(&sidecar.url()).variants.len(), 7);
}

/// Reads `stream` to its end and returns what arrived. The server must close: a read that
/// waits the whole (generous) socket timeout instead fails the test.
fn read_until_closed(stream: &mut std::net::TcpStream, what: &str) -> Vec<u8> {
    use std::io::Read;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!(
                "{what}: the server kept the connection open ({e}); got {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
}

#[test]
fn slow_clients_are_cut_off() {
    use std::io::Write;
    use std::net::TcpStream;
    let dir = TempDir::new("slow-clients");
    let mut config = sidecar_config(&dir);
    config.header_read_timeout = Duration::from_millis(300);
    config.body_read_timeout = Duration::from_millis(300);
    let sidecar = server::spawn(&config).unwrap();
    let addr = sidecar.addr();

    // Connects and sends nothing.
    let mut silent = TcpStream::connect(addr).unwrap();
    // Sends part of a request line.
    let mut partial_line = TcpStream::connect(addr).unwrap();
    partial_line.write_all(b"POST /v1/reports HTT").unwrap();
    // Sends a whole request line and some headers, never the blank line that ends them.
    let mut partial_head = TcpStream::connect(addr).unwrap();
    partial_head
        .write_all(
            b"POST /v1/reports HTTP/1.1\r\nHost: sidecar\r\nContent-Type: application/json\r\n",
        )
        .unwrap();
    for (stream, what) in [
        (&mut silent, "silent"),
        (&mut partial_line, "partial request line"),
        (&mut partial_head, "partial headers"),
    ] {
        let got = read_until_closed(stream, what);
        assert!(
            got.is_empty(),
            "{what}: {:?}",
            String::from_utf8_lossy(&got)
        );
    }

    // A whole head, then a tenth of the body it announces: a 408 and the connection closed.
    let mut partial_body = TcpStream::connect(addr).unwrap();
    partial_body
        .write_all(
            format!(
                "POST /v1/reports HTTP/1.1\r\nHost: sidecar\r\nAuthorization: Bearer {AGENT_TOKEN}\r\n\
                 Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"version\":"
            )
            .as_bytes(),
        )
        .unwrap();
    let got = read_until_closed(&mut partial_body, "partial body");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("body_timeout"), "{text}");

    // Still serving, and the late body is counted.
    let s = status(&sidecar.url());
    assert_eq!(
        s.ingest.rejected["body_timeout"], 1,
        "{:?}",
        s.ingest.rejected
    );
    let (code, body) = post(
        &sidecar.url(),
        AGENT_TOKEN,
        "application/json",
        one_report("on-time").to_json().unwrap(),
    );
    assert_eq!(code, 202, "{body}");
}

#[test]
fn a_report_in_flight_when_the_sidecar_stops_is_answered() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    let dir = TempDir::new("graceful");
    let mut config = sidecar_config(&dir);
    config.body_read_timeout = Duration::from_secs(60);
    let sidecar = server::spawn(&config).unwrap();
    let addr = sidecar.addr();
    let body = one_report("in-flight").to_json().unwrap();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .write_all(
            format!(
                "POST /v1/reports HTTP/1.1\r\nHost: sidecar\r\nAuthorization: Bearer {AGENT_TOKEN}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\
                 Expect: 100-continue\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
    // The server says `100 Continue` once the handler reads the body: the request is in
    // flight.
    let mut interim = Vec::new();
    let mut byte = [0u8; 1];
    while !interim.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        interim.push(byte[0]);
    }
    let interim = String::from_utf8_lossy(&interim);
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");
    let stopping = std::thread::spawn(move || sidecar.stop());
    // Once it stops accepting, the body still gets its answer.
    wait_for("the listener to close", || {
        TcpStream::connect(addr).is_err()
    });
    stream.write_all(&body).unwrap();
    let got = read_until_closed(&mut stream, "in-flight report");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 202"), "{text}");
    stopping.join().unwrap();
    let store = modelgate::sidecar::store::Store::open(
        &config.database,
        modelgate::sidecar::store::Durability::Full,
    )
    .unwrap();
    assert_eq!(store.reports_accepted().unwrap(), 1);
}

#[test]
fn a_client_sending_a_head_slowly_does_not_hold_the_shutdown_of_serve() {
    use std::io::Write;
    let dir = TempDir::new("serve-shutdown");
    let port = free_port();
    let mut child = start_binary_with(&dir, port, "header_read_timeout_s = 1");
    let url = format!("http://127.0.0.1:{port}");
    // One request done on a keep-alive connection (idle now), one head never finished.
    assert_eq!(admin_get(&url, "/healthz").status().as_u16(), 200);
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: sidecar\r\n")
        .unwrap();
    let pid = child.id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -TERM {pid}");
    // Graceful: it waits for the unfinished head at most the header timeout, then exits.
    let mut exited = None;
    wait_for("the sidecar to exit", || {
        exited = child.try_wait().unwrap();
        exited.is_some()
    });
    assert!(exited.unwrap().success(), "{exited:?}");
    let got = read_until_closed(&mut slow, "unfinished head at shutdown");
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
}

/// The longest agent id a reporter takes still makes report ids the sidecar accepts; one
/// byte more is refused when the reporter starts, where it used to have every report
/// refused (400, final) by the sidecar.
#[test]
fn the_longest_agent_id_still_delivers() {
    let dir = TempDir::new("long-agent-id");
    let sidecar = server::spawn(&sidecar_config(&dir)).unwrap();
    let url = sidecar.url();
    let agent = new_agent();
    let mut too_long = reporter_config(&url, 5, true);
    too_long.agent_id = Some("a".repeat(MAX_AGENT_ID_BYTES + 1));
    let e = Reporter::spawn(&agent, too_long, None).unwrap_err();
    assert!(e.to_string().contains("agent_id"), "{e}");

    let mut longest = reporter_config(&url, 5, true);
    longest.agent_id = Some("a".repeat(MAX_AGENT_ID_BYTES));
    let reporter = Reporter::spawn(&agent, longest, None).unwrap();
    let mut rng = Rng(77);
    let mut tally = Tallies::new();
    for _ in 0..50 {
        serve_one(&agent, &mut rng, &mut tally);
    }
    reporter.flush(Duration::from_secs(20)).unwrap();
    let delivered = reporter.status();
    assert!(delivered.reports_delivered >= 1, "{delivered:?}");
    assert_eq!(delivered.reports_dropped, 0, "{delivered:?}");
    assert_eq!(sidecar_tallies(&status(&url)), tally);
}

/// A report's labelled count is bounded like its other counts, and the volume trigger's sum
/// of stored counts saturates: SQLite's `SUM` raised "integer overflow" past `i64::MAX`,
/// which failed every later trigger check.
#[test]
fn labelled_counts_are_bounded_and_their_sum_saturates() {
    let dir = TempDir::new("labelled-seen");
    let sidecar = server::spawn(&sidecar_config(&dir)).unwrap();
    let url = sidecar.url();
    let mut report = one_report("seen-1");
    report.snapshot.labelled.seen = modelgate::wire::MAX_COUNT + 1;
    let (code, body) = post(
        &url,
        AGENT_TOKEN,
        "application/json",
        report.to_json().unwrap(),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("labelled seen"), "{body}");

    // Rows stored before the bound (or by hand) still sum, saturating.
    let db = rusqlite::Connection::open(dir.0.join("modelgate.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    for id in ["old-1", "old-2"] {
        db.execute(
            "INSERT INTO labelled_batches (report_id, agent_id, window_end_ms, seen, kept) \
             VALUES (?1, 'old-agent', 1000, ?2, 0)",
            rusqlite::params![id, i64::MAX],
        )
        .unwrap();
    }
    let seen = sidecar.store().labelled_seen_since(0).unwrap();
    assert!(seen >= i64::MAX as u64, "{seen}");
}

/// A `PUT /v1/control` without `models` keeps the assignments in force (for the variants
/// that remain), and one with `If-Match` replaces only the document it names: a change made
/// since it was read gets 412, not undone.
#[test]
fn control_writes_keep_models_and_honour_if_match() {
    let dir = TempDir::new("if-match");
    let sidecar = server::spawn(&sidecar_config(&dir)).unwrap();
    let url = sidecar.url();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::blocking::Client::new();
    let read = || -> (String, modelgate::wire::Control) {
        let r = client
            .get(format!("{url}/v1/control"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .unwrap();
        let etag = r.headers()["etag"].to_str().unwrap().to_owned();
        (etag, r.json().unwrap())
    };
    let put = |body: &serde_json::Value, if_match| put_control_if(&url, body, if_match);

    let (code, _) = put(
        &serde_json::json!({"experiments": experiments_json(0.5, 10.0),
            "models": {"ranker/candidate": {"reference": "ranker@3"}}}),
        None,
    );
    assert_eq!(code, 200);
    let (first_etag, _) = read();

    // Weights only: the assignment stays.
    let (code, body) = put(
        &serde_json::json!({"experiments": experiments_json(0.3, 10.0)}),
        Some(&first_etag),
    );
    assert_eq!(code, 200, "{body}");
    let (second_etag, control) = read();
    assert_ne!(second_etag, first_etag);
    assert_eq!(control.models["ranker/candidate"].reference, "ranker@3");

    // A writer still holding the first etag is refused, and nothing changes.
    let (code, body) = put(
        &serde_json::json!({"experiments": experiments_json(0.9, 10.0), "models": {}}),
        Some(&first_etag),
    );
    assert_eq!(code, 412, "{body}");
    assert_eq!(body["error"], "precondition_failed", "{body}");
    assert_eq!(read().0, second_etag);
    // `*`, or no header, writes whatever is in force; an empty `models` clears them.
    let (code, _) = put(
        &serde_json::json!({"experiments": experiments_json(0.9, 10.0), "models": {}}),
        Some("*"),
    );
    assert_eq!(code, 200);
    assert!(read().1.models.is_empty());
    // A malformed If-Match is a 400, not an unconditional write.
    let (code, body) = put(
        &serde_json::json!({"experiments": experiments_json(0.1, 10.0)}),
        Some("W/\"abc\""),
    );
    assert_eq!(code, 400, "{body}");
}
