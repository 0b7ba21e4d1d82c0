//! Reports per second one sidecar accepts over loopback: each report holds 3 variants with
//! counters, a latency histogram, outcomes, a prediction sketch and 20 feature sketches
//! (numeric KLL, 2,000 rows per variant, so the sketches hold a few thousand values each:
//! the size of a busy 10-second window).
//!
//! Group `ingest`; ids `sequential_full` (one client, `durability = "full"`: an fsync per
//! commit), `sequential_normal` (`durability = "normal"`), `4_clients_full` and
//! `4_clients_normal` (four client threads posting at once; time per report). Throughput is
//! one report per element, so criterion prints reports per second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use modelgate::agent::{Agent, Feature, FeatureKind, FeatureValue, Outcome};
use modelgate::sidecar::config::SidecarConfig;
use modelgate::sidecar::server::{self, RunningSidecar};
use modelgate::sidecar::store::Durability;
use modelgate::wire::Report;

const AGENT_TOKEN: &str = "bench-agent-token-000001";
const ADMIN_TOKEN: &str = "bench-admin-token-000001";
const FEATURES: usize = 20;
const ROWS_PER_VARIANT: usize = 2_000;
const ID_TEMPLATE: &str = "bench-report-000000000000";

const CONFIG: &str = r#"
[[experiments]]
name = "ranker"
[[experiments.variants]]
name = "a"
model = "r@1"
[[experiments.variants]]
name = "b"
model = "r@2"
[[experiments.variants]]
name = "c"
model = "r@3"
"#;

/// One realistic report, binary-encoded, with the offset of its report id (fixed width,
/// rewritten per post so every post is a new report).
fn report_bytes() -> (Vec<u8>, usize) {
    let features = (0..FEATURES)
        .map(|i| Feature {
            name: format!("f{i}"),
            kind: FeatureKind::Numeric,
        })
        .collect();
    let agent = Agent::<u8>::builder()
        .experiments_toml(CONFIG)
        .expect("bench config")
        .features(features)
        .build()
        .expect("bench agent");
    let ranker = agent.experiment("ranker").expect("configured");
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut row = vec![FeatureValue::Missing; FEATURES];
    let mut key = 0u64;
    let mut seen = [0usize; 3];
    while seen.iter().any(|&n| n < ROWS_PER_VARIANT) {
        key += 1;
        let decision = agent.route(ranker, &format!("user-{key}"));
        let Some(v) = decision.variant else { continue };
        let slot = v.0 as usize % 3;
        if seen[slot] >= ROWS_PER_VARIANT {
            continue;
        }
        seen[slot] += 1;
        agent.record(
            &decision,
            Duration::from_micros(200 + (next() * 5000.0) as u64),
            Ok(()),
        );
        agent.record_outcome_for(&decision, Outcome::Binary(next() < 0.3));
        agent.record_prediction(&decision, next());
        for (i, value) in row.iter_mut().enumerate() {
            *value = FeatureValue::Number(next() * (i + 1) as f64);
        }
        agent.record_features(&decision, &row);
    }
    let report = Report::new("bench-agent", ID_TEMPLATE, agent.snapshot());
    let bytes = report.to_binary().expect("encodes");
    let at = bytes
        .windows(ID_TEMPLATE.len())
        .position(|w| w == ID_TEMPLATE.as_bytes())
        .expect("the id is in the encoding");
    (bytes, at)
}

struct Poster {
    client: reqwest::blocking::Client,
    url: String,
    body: Vec<u8>,
    id_at: usize,
}

impl Poster {
    fn post(&mut self, n: u64) {
        let digits = format!("{n:012}");
        let end = self.id_at + ID_TEMPLATE.len();
        self.body[end - 12..end].copy_from_slice(digits.as_bytes());
        let response = self
            .client
            .post(&self.url)
            .bearer_auth(AGENT_TOKEN)
            .header("content-type", "application/x-modelgate-report")
            .body(self.body.clone())
            .send()
            .expect("sidecar answers");
        assert_eq!(
            response.status().as_u16(),
            202,
            "every post is a new report"
        );
    }
}

fn start(durability: Durability, dir: &std::path::Path) -> RunningSidecar {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("bench dir");
    let mut config =
        SidecarConfig::new(&dir.join("bench.db"), AGENT_TOKEN, ADMIN_TOKEN).expect("tokens");
    config.listen = "127.0.0.1:0".parse().expect("address");
    config.durability = durability;
    server::spawn(&config).expect("sidecar starts")
}

fn bench_ingest(c: &mut Criterion) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (body, id_at) = report_bytes();
    eprintln!("ingest bench: one report is {} bytes", body.len());
    let dir = std::env::temp_dir().join(format!("modelgate-bench-ingest-{}", std::process::id()));
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for (name, durability) in [("full", Durability::Full), ("normal", Durability::Normal)] {
        let sidecar = start(durability, &dir);
        let url = format!("{}/v1/reports", sidecar.url());
        let mut poster = Poster {
            client: reqwest::blocking::Client::new(),
            url: url.clone(),
            body: body.clone(),
            id_at,
        };
        let ids = counter.clone();
        group.bench_function(format!("sequential_{name}"), |b| {
            b.iter(|| poster.post(ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed)))
        });
        let ids = counter.clone();
        group.bench_function(format!("4_clients_{name}"), |b| {
            b.iter_custom(|iters| {
                let per_thread = iters.div_ceil(4);
                let start = Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..4 {
                        let mut poster = Poster {
                            client: reqwest::blocking::Client::new(),
                            url: url.clone(),
                            body: body.clone(),
                            id_at,
                        };
                        let ids = ids.clone();
                        s.spawn(move || {
                            for _ in 0..per_thread {
                                poster.post(ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
                            }
                        });
                    }
                });
                start
                    .elapsed()
                    .mul_f64(iters as f64 / (per_thread * 4) as f64)
            })
        });
        drop(sidecar);
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench_ingest);
criterion_main!(benches);
