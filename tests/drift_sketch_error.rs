//! The sketches' error is part of the KS verdict: identical streams of 10^6 values raise
//! alarms at most at rate alpha over repeated trials, while a real shift is detected every
//! time. The naive test (sketch D into the ordinary p-value) is shown for comparison.

mod common;

use common::Rng;
use modelgate::drift::{Comparison, Thresholds, Verdict, assess, compare_numeric, kolmogorov};
use modelgate::sketch::KllSketch;

fn normal(rng: &mut Rng) -> f64 {
    let (u, v) = (rng.unit().max(1e-300), rng.unit());
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

fn sketch_of(rng: &mut Rng, n: usize, shift: f64, seed: u64) -> KllSketch {
    let mut s = KllSketch::with_seed(KllSketch::DEFAULT_K, seed).expect("valid k");
    for _ in 0..n {
        s.update(normal(rng) + shift);
    }
    s
}

#[test]
fn identical_streams_do_not_alarm_and_real_shifts_do() {
    const TRIALS: u64 = 12;
    const N: usize = 1_000_000;
    let t = Thresholds::default();
    let mut alarms = 0;
    let mut naive_alarms = 0;
    let mut detections = 0;
    for trial in 0..TRIALS {
        let mut rng = Rng(1000 + trial);
        let reference = sketch_of(&mut rng, N, 0.0, 2 * trial + 1);
        let same = sketch_of(&mut rng, N, 0.0, 2 * trial + 2);
        let shifted = sketch_of(&mut rng, N, 0.35, 7 * trial + 3);
        let c_same = compare_numeric(&reference, &same, Some(1.0), &t);
        let c_shift = compare_numeric(&reference, &shifted, Some(1.0), &t);
        if kolmogorov::ks_p_value(c_same.ks, N as u64, N as u64) < t.alpha {
            naive_alarms += 1;
        }
        let v = assess(vec![("x".into(), Comparison::Numeric(c_same.clone()))], &t);
        if v[0].verdict == Verdict::Drift {
            alarms += 1;
        }
        let v = assess(vec![("x".into(), Comparison::Numeric(c_shift.clone()))], &t);
        if v[0].verdict == Verdict::Drift {
            detections += 1;
        }
        assert!(
            c_same.ks_error_bound > 0.0,
            "sketches of 10^6 values are approximate"
        );
    }
    println!(
        "identical streams: {alarms}/{TRIALS} alarms (naive test: {naive_alarms}/{TRIALS}); shift of 0.35 sd: {detections}/{TRIALS} detected"
    );
    assert!(
        (alarms as f64) / (TRIALS as f64) <= t.alpha,
        "{alarms} false alarms in {TRIALS}"
    );
    assert_eq!(
        detections, TRIALS,
        "a real shift must be detected every time"
    );
}
