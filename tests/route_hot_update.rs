//! Hot config updates: while threads route, another thread swaps configs thousands of times.
//! Every call sees one whole config (never a mix of two), and readers keep going during swaps.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use modelgate::route::{Router, RouterConfig};

/// Two experiments that both send everything to `letter`; config A uses "a", config B "b".
fn config(letter: &str, extra_weight: f64) -> RouterConfig {
    let text = format!(
        r#"
[[experiments]]
name = "first"
strategy = "immediate"
target = "{letter}"
[[experiments.variants]]
name = "a"
[[experiments.variants]]
name = "b"

[[experiments]]
name = "second"
[[experiments.variants]]
name = "{letter}"
weight = 1
[[experiments.variants]]
name = "{letter}-twin"
weight = {extra_weight}
"#
    );
    RouterConfig::from_toml(&text).expect("valid config")
}

#[test]
fn every_call_sees_one_whole_config_while_another_thread_swaps() {
    const SWAPS: u64 = 4000;
    let router = Arc::new(Router::new(config("a", 0.0)).expect("valid"));
    let stop = Arc::new(AtomicBool::new(false));
    // Per reader: calls made so far, so the swapper can wait until each reader has routed
    // after a swap (a handshake, not a sleep).
    let progress: Arc<Vec<AtomicU64>> = Arc::new((0..3).map(|_| AtomicU64::new(0)).collect());
    let mut readers = Vec::new();
    for reader in 0..3 {
        let (router, stop, progress) = (router.clone(), stop.clone(), progress.clone());
        readers.push(std::thread::spawn(move || {
            let mut seen = [0u64; 2];
            let mut calls = 0u64;
            let mut key = String::new();
            while !stop.load(Ordering::Acquire) {
                key.clear();
                key.push_str("user-");
                key.push_str(&calls.to_string());
                let mut letters = Vec::with_capacity(2);
                router.route_all(&key, |experiment, assignment| {
                    let variant = assignment
                        .variant
                        .and_then(|v| experiment.variant(v))
                        .map(|v| v.name().to_string());
                    letters.push(variant.expect("both experiments assign every key"));
                });
                assert_eq!(letters.len(), 2);
                let first = letters[0].as_str();
                // `second` gives either the letter itself or its twin (weight 0 in config A).
                assert!(
                    letters[1].starts_with(first),
                    "mixed configs in one call: {letters:?}"
                );
                seen[usize::from(first == "b")] += 1;
                calls += 1;
                progress[reader].store(calls, Ordering::Release);
            }
            (seen, calls)
        }));
    }
    for swap in 0..SWAPS {
        let letter = if swap % 2 == 0 { "b" } else { "a" };
        router
            .store(config(letter, (swap % 3) as f64))
            .expect("valid");
        if swap % 100 == 0 {
            // Wait until every reader has routed at least once more since this swap.
            let marks: Vec<u64> = progress.iter().map(|p| p.load(Ordering::Acquire)).collect();
            for (p, mark) in progress.iter().zip(marks) {
                while p.load(Ordering::Acquire) <= mark {
                    std::thread::yield_now();
                }
            }
        }
    }
    stop.store(true, Ordering::Release);
    let mut total = [0u64; 2];
    for r in readers {
        let (seen, calls) = r.join().expect("reader never panics");
        assert!(calls > 0);
        total[0] += seen[0];
        total[1] += seen[1];
    }
    assert!(
        total[0] > 0 && total[1] > 0,
        "readers saw both configs: {total:?}"
    );
}
