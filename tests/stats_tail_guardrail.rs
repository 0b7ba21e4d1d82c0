//! The latency-p99 guardrail (`Guardrail::latency_p99`) under continuous monitoring,
//! simulated with log-normal latencies (σ = 0.5, a typical service's spread). Each
//! experiment looks after every 1,000 calls per variant up to 12,000; at each look the
//! threshold is the plug-in `(1 + tolerance) ×` the control's empirical p99 so far, and the
//! samples are the counts of calls above it, exactly as a caller would compute them from its
//! latency histograms.
//!
//! * A/A at tolerance 0 (the hardest case: the candidate's true share above the true p99 is
//!   exactly 1%, and the plug-in threshold is noisy): the candidate is stopped for harm in
//!   at most α + 0.02 of the experiments, even though it is checked 12 times.
//! * A candidate 30% slower at every quantile, tolerance 10%: stopped in at least 90%.

mod common;

use std::time::Duration;

use common::Rng;
use modelgate::stats::{Decision, Experiment, Guardrail, Policy, Sample, Variant};

const ALPHA: f64 = 0.05;
const BATCH: usize = 1000;
const LOOKS: usize = 12;

fn normal(rng: &mut Rng) -> f64 {
    // Box–Muller on two open-interval uniforms.
    let u1 = (rng.unit() + f64::EPSILON).min(1.0);
    let u2 = rng.unit();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn latency(rng: &mut Rng, scale: f64) -> f64 {
    scale * (3.0 + 0.5 * normal(rng)).exp()
}

/// The empirical q-quantile (the ⌈q·n⌉-th smallest value).
fn quantile(values: &mut [f64], q: f64) -> f64 {
    let k = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
    *values.select_nth_unstable_by(k, f64::total_cmp).1
}

/// How many of `experiments` stop the candidate for harm at some look.
fn stopped(seed: u64, experiments: u32, candidate_scale: f64, tolerance: f64) -> u32 {
    let policy = Policy {
        alpha: ALPHA,
        guardrails: vec![Guardrail::latency_p99("latency", tolerance)],
        ..Policy::default()
    };
    let mut rng = Rng(seed);
    let mut stops = 0;
    for _ in 0..experiments {
        let (mut control, mut candidate) = (Vec::new(), Vec::new());
        for look in 1..=LOOKS {
            control.extend((0..BATCH).map(|_| latency(&mut rng, 1.0)));
            candidate.extend((0..BATCH).map(|_| latency(&mut rng, candidate_scale)));
            let p99 = quantile(&mut control.clone(), 0.99);
            let threshold = policy.guardrails[0].quantile_threshold(p99).unwrap();
            let above = |v: &[f64]| v.iter().filter(|&&x| x > threshold).count() as u64;
            let n = (look * BATCH) as u64;
            let primary = Sample::binary(n, n / 10).unwrap();
            let experiment = Experiment {
                variants: vec![
                    Variant::new("control", 1.0, primary)
                        .with_guardrail("latency", Sample::binary(n, above(&control)).unwrap()),
                    Variant::new("candidate", 1.0, primary)
                        .with_guardrail("latency", Sample::binary(n, above(&candidate)).unwrap()),
                ],
                control: 0,
                elapsed: Duration::from_secs(look as u64),
            };
            if matches!(
                policy.evaluate(&experiment).unwrap().decision,
                Decision::StopHarm { .. }
            ) {
                stops += 1;
                break;
            }
        }
    }
    stops
}

#[test]
fn an_equal_candidate_is_rarely_stopped_despite_twelve_looks() {
    let experiments = 400;
    let stops = stopped(0xa11ce, experiments, 1.0, 0.0);
    let rate = f64::from(stops) / f64::from(experiments);
    eprintln!("A/A, tolerance 0: stopped {stops} of {experiments} ({rate:.3})");
    assert!(rate <= ALPHA + 0.02, "false stops {rate}");
}

#[test]
fn a_slower_candidate_is_stopped() {
    let experiments = 100;
    let stops = stopped(0xb0b, experiments, 1.3, 0.1);
    let power = f64::from(stops) / f64::from(experiments);
    eprintln!("30% slower, tolerance 10%: stopped {stops} of {experiments} ({power:.2})");
    assert!(power >= 0.9, "power {power}");
}
