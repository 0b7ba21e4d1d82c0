//! Continuous monitoring, simulated: 2,000 A/A experiments with a binary outcome
//! (p = 0.1), each looked at after every batch of 100 observations per variant up to
//! 10,000 per variant (100 looks). Rejecting whenever the fixed-horizon z-test says
//! p < α at any look inflates false positives far above α; the always-valid mSPRT p-value
//! stays at or below α + 0.01. A second simulation with a 20% relative lift reports the
//! power. Observations are drawn as Bernoullis with SplitMix64 (integer threshold compare),
//! and statistics are computed from the running aggregates only, so the test takes a few
//! seconds in debug.

mod common;

use std::time::Duration;

use common::Rng;
use modelgate::stats::{Decision, Experiment, Monitor, Policy, Sample, Variant, fixed, sequential};

const ALPHA: f64 = 0.05;
const BATCH: u64 = 100;
const LOOKS: u64 = 100;

fn successes(rng: &mut Rng, n: u64, p: f64) -> u64 {
    let threshold = (p * 18_446_744_073_709_551_616.0) as u64;
    (0..n).filter(|_| rng.next_u64() < threshold).count() as u64
}

/// Runs `experiments` experiments; returns (naive rejections at any look, sequential
/// rejections at any look, fixed-horizon rejections at the last look only).
fn simulate(seed: u64, experiments: u32, pa: f64, pb: f64, tau2: f64) -> (u32, u32, u32) {
    let mut rng = Rng(seed);
    let (mut naive, mut always_valid, mut last_look) = (0, 0, 0);
    for _ in 0..experiments {
        let (mut sa, mut sb, mut n) = (0, 0, 0);
        let (mut naive_hit, mut sequential_hit) = (false, false);
        let mut running_p = 1.0f64;
        for _ in 0..LOOKS {
            sa += successes(&mut rng, BATCH, pa);
            sb += successes(&mut rng, BATCH, pb);
            n += BATCH;
            let a = Sample::binary(n, sa).unwrap();
            let b = Sample::binary(n, sb).unwrap();
            let p = fixed::two_proportion_z_test(&a, &b).unwrap().p_value;
            naive_hit |= p < ALPHA;
            if let Ok(q) = sequential::always_valid_p_value(&a, &b, tau2) {
                assert!(running_p.min(q) <= running_p);
                running_p = running_p.min(q);
            }
            sequential_hit |= running_p <= ALPHA;
            if n == BATCH * LOOKS && p < ALPHA {
                last_look += 1;
            }
        }
        naive += u32::from(naive_hit);
        always_valid += u32::from(sequential_hit);
    }
    (naive, always_valid, last_look)
}

#[test]
fn always_valid_p_value_controls_false_positives_under_peeking() {
    let experiments = 2_000;
    // τ² for a 5% relative MDE at the true control rate (the policy's default rule).
    let tau2 = (0.05f64 * 0.1).powi(2);
    let (naive, seq, _) = simulate(0xaa_7e57, experiments, 0.1, 0.1, tau2);
    let naive_rate = f64::from(naive) / f64::from(experiments);
    let seq_rate = f64::from(seq) / f64::from(experiments);
    println!(
        "A/A, {experiments} experiments, {LOOKS} looks: naive false-positive rate {naive_rate:.4}, \
         mSPRT {seq_rate:.4} (alpha {ALPHA})"
    );
    assert!(naive_rate > 2.0 * ALPHA, "naive {naive_rate}");
    assert!(seq_rate <= ALPHA + 0.01, "sequential {seq_rate}");
}

#[test]
fn always_valid_test_has_power_against_a_real_lift() {
    let experiments = 500;
    let tau2 = (0.05f64 * 0.1).powi(2);
    let (_, seq, fixed_horizon) = simulate(0x9_03e5, experiments, 0.1, 0.12, tau2);
    let power = f64::from(seq) / f64::from(experiments);
    let fixed_power = f64::from(fixed_horizon) / f64::from(experiments);
    println!(
        "lift 0.10 -> 0.12, {experiments} experiments: mSPRT power by 10,000 per variant {power:.4} \
         (fixed-horizon z-test at 10,000 only: {fixed_power:.4})"
    );
    assert!(power >= 0.7, "power {power}");
}

/// The whole policy (τ² derived from the estimated control mean, relative-lift bounds,
/// running state in a `Monitor`) declares almost no winners in A/A experiments.
#[test]
fn policy_declares_few_winners_in_a_a_experiments() {
    let experiments = 300;
    let mut rng = Rng(0x9011c7);
    let mut winners = 0;
    for _ in 0..experiments {
        let mut monitor = Monitor::new(Policy::default()).unwrap();
        let (mut sa, mut sb, mut n) = (0, 0, 0);
        for _ in 0..LOOKS / 4 {
            sa += successes(&mut rng, 4 * BATCH, 0.1);
            sb += successes(&mut rng, 4 * BATCH, 0.1);
            n += 4 * BATCH;
            let experiment = Experiment {
                variants: vec![
                    Variant::new("control", 1.0, Sample::binary(n, sa).unwrap()),
                    Variant::new("candidate", 1.0, Sample::binary(n, sb).unwrap()),
                ],
                control: 0,
                elapsed: Duration::ZERO,
            };
            if matches!(
                monitor.observe(&experiment).unwrap().decision,
                Decision::Winner { .. }
            ) {
                winners += 1;
                break;
            }
        }
    }
    let rate = f64::from(winners) / f64::from(experiments);
    println!("policy A/A winner rate {rate:.4} over {experiments} experiments");
    // One-sided use of a two-sided α = 0.05 sequence: expected well under 0.05.
    assert!(rate <= ALPHA, "winner rate {rate}");
}

fn normal(rng: &mut Rng) -> f64 {
    let (u, v) = (rng.unit().max(1e-300), rng.unit());
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

/// The same A/A check on a continuous metric (normal, mean 10, sd 3) through Welch and the
/// mSPRT with sample variances, 1,000 experiments drawn observation by observation.
#[test]
fn continuous_a_a_under_peeking() {
    use modelgate::metrics::Moments;
    let experiments = 1_000u32;
    let tau2 = (0.05f64 * 10.0).powi(2);
    let mut rng = Rng(0xc0_47e5);
    let (mut naive, mut seq) = (0u32, 0u32);
    for _ in 0..experiments {
        let (mut a, mut b) = (Moments::default(), Moments::default());
        let (mut naive_hit, mut seq_hit) = (false, false);
        for _ in 0..LOOKS {
            for _ in 0..BATCH {
                a.push(10.0 + 3.0 * normal(&mut rng));
                b.push(10.0 + 3.0 * normal(&mut rng));
            }
            let (sa, sb) = (Sample::try_from(a).unwrap(), Sample::try_from(b).unwrap());
            naive_hit |= fixed::welch_t_test(&sa, &sb).unwrap().p_value < ALPHA;
            seq_hit |= sequential::always_valid_p_value(&sa, &sb, tau2).unwrap() <= ALPHA;
        }
        naive += u32::from(naive_hit);
        seq += u32::from(seq_hit);
    }
    let naive_rate = f64::from(naive) / f64::from(experiments);
    let seq_rate = f64::from(seq) / f64::from(experiments);
    println!("continuous A/A: naive {naive_rate:.4}, mSPRT {seq_rate:.4}");
    assert!(naive_rate > 2.0 * ALPHA, "naive {naive_rate}");
    assert!(seq_rate <= ALPHA + 0.01, "sequential {seq_rate}");
}
