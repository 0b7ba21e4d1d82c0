//! The request path: route + model load + record, record alone, two threads recording on the
//! same variant, and the peer histograms recording one latency side by side.
//!
//! Group `hot_path`; ids `route_load_record`, `record_only`, `record_2_threads` (wall time
//! divided by the records of both threads, so `record_only / record_2_threads` is the
//! two-thread speed-up), `hdrhistogram_record`, `ddsketch_add`.

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use modelgate::agent::Agent;

const CONFIG: &str = r#"
[[experiments]]
name = "ranker"
[[experiments.variants]]
name = "control"
model = "r@1"
weight = 0.5
[[experiments.variants]]
name = "candidate"
model = "r@2"
weight = 0.5
"#;

fn agent() -> Agent<u64> {
    Agent::builder()
        .experiments_toml(CONFIG)
        .expect("valid bench config")
        .model("r@1", 1)
        .model("r@2", 2)
        .build()
        .expect("valid bench agent")
}

fn bench_hot_path(c: &mut Criterion) {
    let keys: Vec<String> = (0..4096)
        .map(|i| format!("user-{:016}", i as u64 * 7_919 + 13))
        .collect();
    let latencies: Vec<Duration> = (0..4096u64)
        .map(|i| Duration::from_nanos(20_000 + (i * 104_729) % 3_000_000))
        .collect();
    let agent = Arc::new(agent());
    let ranker = agent.experiment("ranker").expect("configured");
    let mut group = c.benchmark_group("hot_path");
    group.throughput(Throughput::Elements(1));

    let mut i = 0;
    group.bench_function("route_load_record", |b| {
        b.iter(|| {
            i = (i + 1) % 4096;
            let decision = agent.route(ranker, black_box(&keys[i]));
            black_box(decision.model());
            agent.record(&decision, latencies[i], Ok(()));
        })
    });

    let decision = agent.route(ranker, "user-1");
    let mut i = 0;
    group.bench_function("record_only", |b| {
        b.iter(|| {
            i = (i + 1) % 4096;
            agent.record(black_box(&decision), latencies[i], Ok(()));
        })
    });

    group.bench_function("record_2_threads", |b| {
        b.iter_custom(|iters| {
            // Both threads record `iters` values for the same variant; report wall time per
            // record of the pair.
            let barrier = Arc::new(Barrier::new(3));
            let workers: Vec<_> = (0..2)
                .map(|_| {
                    let (agent, barrier, latencies) =
                        (agent.clone(), barrier.clone(), latencies.clone());
                    std::thread::spawn(move || {
                        let decision = agent.route(ranker, "user-1");
                        agent.record(&decision, latencies[0], Ok(())); // warm-up: lease and cells
                        barrier.wait();
                        for n in 0..iters {
                            agent.record(&decision, latencies[(n % 4096) as usize], Ok(()));
                        }
                        barrier.wait();
                    })
                })
                .collect();
            barrier.wait();
            let start = Instant::now();
            barrier.wait();
            let elapsed = start.elapsed();
            workers.into_iter().for_each(|w| w.join().expect("worker"));
            elapsed / 2
        })
    });

    let mut hdr =
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 2).expect("bounds");
    let mut i = 0;
    group.bench_function("hdrhistogram_record", |b| {
        b.iter(|| {
            i = (i + 1) % 4096;
            hdr.saturating_record(black_box(latencies[i].as_nanos() as u64));
        })
    });

    let mut dd = sketches_ddsketch::DDSketch::new(sketches_ddsketch::Config::defaults());
    let mut i = 0;
    group.bench_function("ddsketch_add", |b| {
        b.iter(|| {
            i = (i + 1) % 4096;
            dd.add(black_box(latencies[i].as_nanos() as f64));
        })
    });
    group.finish();
    // Keep the agent's metrics bounded across the long run.
    let _ = agent.snapshot();
}

criterion_group!(benches, bench_hot_path);
criterion_main!(benches);
