//! A tiny serving loop that embeds modelgate: two model versions of a "ranker", a 20% canary,
//! late outcomes, a hot swap halfway through, and a snapshot per window.
//!
//! Run with `cargo run --example serving`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use modelgate::agent::{Agent, Outcome};
use modelgate::metrics::ErrorKind;

/// A stand-in model: a linear score with a version-specific weight.
struct Ranker {
    weight: f64,
}

impl Ranker {
    fn score(&self, x: f64) -> Result<f64, ErrorKind> {
        if x.is_finite() {
            Ok(self.weight * x)
        } else {
            Err(ErrorKind::InvalidInput)
        }
    }
}

const CONFIG: &str = r#"
[[experiments]]
name = "ranker"
strategy = "canary"
percent = 20
[[experiments.variants]]
name = "production"
model = "ranker@3"
[[experiments.variants]]
name = "candidate"
model = "ranker@4"
"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let agent = Arc::new(
        Agent::builder()
            .experiments_toml(CONFIG)?
            .model("ranker@3", Ranker { weight: 1.0 })
            .model("ranker@4", Ranker { weight: 1.1 })
            .build()?,
    );
    let ranker = agent.experiment("ranker").ok_or("experiment missing")?;

    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let agent = agent.clone();
            std::thread::spawn(move || {
                for i in 0..50_000u64 {
                    let key = format!("user-{}", (worker * 50_000 + i) % 20_000);
                    let decision = agent.route(ranker, &key);
                    let started = Instant::now();
                    let result = match decision.model() {
                        Some(model) => model.score(i as f64 / 50_000.0).map(|_| ()),
                        None => Err(ErrorKind::Internal),
                    };
                    agent.record(&decision, started.elapsed(), result);
                    // Outcomes arrive later; here, every tenth request converts.
                    agent.record_outcome_for(&decision, Outcome::Binary(i % 10 == 0));
                }
            })
        })
        .collect();

    // Halfway through, ship a fixed candidate: requests in flight finish on the old model.
    std::thread::sleep(Duration::from_millis(20));
    if let Some(candidate) = agent
        .router()
        .current()
        .experiment(ranker)
        .and_then(|e| e.variants().get(1))
        .map(|v| v.id())
    {
        agent.swap_model(candidate, "ranker@5", Ranker { weight: 1.2 });
    }
    for w in workers {
        w.join().map_err(|_| "worker panicked")?;
    }

    let snapshot = agent.snapshot();
    for experiment in &snapshot.experiments {
        for v in &experiment.variants {
            let m = &v.metrics;
            println!(
                "{}/{} (now {}): {} requests, {} errors, p50 {:.0} ns, p99 {:.0} ns, conversion {:.3}",
                experiment.name,
                v.name,
                v.model.as_deref().unwrap_or("-"),
                m.requests,
                m.errors.total(),
                m.latency.quantile(0.5).unwrap_or(0.0),
                m.latency.quantile(0.99).unwrap_or(0.0),
                m.binary.successes as f64 / m.binary.trials.max(1) as f64
            );
        }
    }
    println!("{}", serde_json::to_string_pretty(&snapshot.rejections)?);
    Ok(())
}
