//! Empirical rank error of `KllSketch` at the default `k` against exact ranks, on 10^6-value
//! streams of several shapes and on merges of 100 sketches, over thousands of queries each:
//! the worst error stays within `normalized_rank_error()`. Every stream comes from a seeded
//! generator, so the measured errors (printed; run with `--nocapture`) are reproducible.

use modelgate::sketch::{DEFAULT_K, KllSketch};

const N: usize = 1_000_000;
/// Queries per stream, at evenly spaced ranks and at random stream values.
const QUERIES: usize = 2_000;

/// SplitMix64, our own seeded source for the test streams.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal by Box-Muller (one of the pair).
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

fn stream(name: &str, seed: u64) -> Vec<f64> {
    let mut rng = Rng(seed);
    let mut values: Vec<f64> = match name {
        "normal" | "sorted" | "reverse_sorted" => (0..N).map(|_| rng.normal()).collect(),
        "lognormal" => (0..N).map(|_| rng.normal().exp()).collect(),
        "uniform" => (0..N).map(|_| rng.uniform()).collect(),
        "bimodal" => (0..N)
            .map(|_| {
                if rng.uniform() < 0.3 {
                    -3.0 + rng.normal()
                } else {
                    4.0 + 0.5 * rng.normal()
                }
            })
            .collect(),
        _ => unreachable!("unknown stream {name}"),
    };
    match name {
        "sorted" => values.sort_by(f64::total_cmp),
        "reverse_sorted" => values.sort_by(|a, b| b.total_cmp(a)),
        _ => {}
    }
    values
}

/// The worst rank error of `sketch` over `QUERIES` points, against the sorted stream, and
/// the worst quantile error (distance between `q` and the true rank of `quantile(q)`).
fn worst_errors(sketch: &KllSketch, sorted: &[f64], seed: u64) -> (f64, f64) {
    let n = sorted.len() as f64;
    let exact_rank = |x: f64| sorted.partition_point(|&v| v <= x) as f64 / n;
    let mut rng = Rng(seed);
    let mut worst_rank = 0.0f64;
    for i in 0..QUERIES {
        let x = if i % 2 == 0 {
            sorted[i * sorted.len() / QUERIES]
        } else {
            sorted[rng.below(sorted.len())]
        };
        worst_rank = worst_rank.max((sketch.rank(x) - exact_rank(x)).abs());
    }
    let mut worst_quantile = 0.0f64;
    for i in 0..=QUERIES {
        let q = i as f64 / QUERIES as f64;
        let v = sketch.quantile(q).expect("not empty");
        let below = sorted.partition_point(|&x| x < v) as f64 / n;
        let upto = exact_rank(v);
        let error = if q < below {
            below - q
        } else if q > upto {
            q - upto
        } else {
            0.0
        };
        worst_quantile = worst_quantile.max(error);
    }
    (worst_rank, worst_quantile)
}

fn sorted_copy(values: &[f64]) -> Vec<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    sorted
}

#[test]
fn rank_error_within_the_bound_on_every_stream() {
    let mut report = Vec::new();
    for (i, name) in [
        "normal",
        "lognormal",
        "uniform",
        "bimodal",
        "sorted",
        "reverse_sorted",
    ]
    .into_iter()
    .enumerate()
    {
        let values = stream(name, 1000 + i as u64);
        let mut sketch = KllSketch::with_seed(DEFAULT_K, 7 + i as u64).unwrap();
        for &v in &values {
            sketch.update(v);
        }
        let sorted = sorted_copy(&values);
        let bound = sketch.normalized_rank_error();
        let (rank, quantile) = worst_errors(&sketch, &sorted, 99);
        println!(
            "{name:>15}: worst rank error {:.4}%, worst quantile rank error {:.4}% (bound {:.4}%, {} retained)",
            rank * 100.0,
            quantile * 100.0,
            bound * 100.0,
            sketch.retained()
        );
        report.push((name, rank, quantile, bound));
        assert_eq!(sketch.count(), N as u64);
        assert_eq!(sketch.min(), sorted.first().copied());
        assert_eq!(sketch.max(), sorted.last().copied());
    }
    for (name, rank, quantile, bound) in report {
        assert!(rank <= bound, "{name}: rank error {rank} > {bound}");
        assert!(
            quantile <= bound,
            "{name}: quantile error {quantile} > {bound}"
        );
    }
}

/// Merges 100 sketches of 10^4 values each in a seeded random order (a random binary tree
/// when `tree`, else one by one), for distinct and for shared seeds.
fn merged(values: &[f64], distinct_seeds: bool, tree: bool, order_seed: u64) -> KllSketch {
    let mut parts: Vec<KllSketch> = values
        .chunks(N / 100)
        .enumerate()
        .map(|(i, chunk)| {
            let seed = if distinct_seeds { i as u64 } else { 42 };
            let mut s = KllSketch::with_seed(DEFAULT_K, seed).unwrap();
            chunk.iter().for_each(|&v| s.update(v));
            s
        })
        .collect();
    let mut rng = Rng(order_seed);
    if tree {
        while parts.len() > 1 {
            let i = rng.below(parts.len());
            let a = parts.swap_remove(i);
            let j = rng.below(parts.len());
            parts[j].merge(&a);
        }
        parts.pop().expect("one left")
    } else {
        for i in (1..parts.len()).rev() {
            parts.swap(i, rng.below(i + 1));
        }
        let mut total = KllSketch::with_seed(DEFAULT_K, 1234).unwrap();
        for p in &parts {
            total.merge(p);
        }
        total
    }
}

#[test]
fn rank_error_within_the_bound_after_merging_100_sketches() {
    for (i, name) in ["normal", "lognormal", "bimodal", "sorted"]
        .into_iter()
        .enumerate()
    {
        let values = stream(name, 2000 + i as u64);
        let sorted = sorted_copy(&values);
        for (distinct_seeds, tree) in [(true, false), (true, true), (false, false)] {
            let sketch = merged(&values, distinct_seeds, tree, 77 + i as u64);
            assert_eq!(sketch.count(), N as u64);
            assert_eq!(sketch.min(), sorted.first().copied());
            assert_eq!(sketch.max(), sorted.last().copied());
            let bound = sketch.normalized_rank_error();
            let (rank, quantile) = worst_errors(&sketch, &sorted, 5);
            println!(
                "{name:>15} merged ({}, {}): worst rank error {:.4}%, worst quantile rank error {:.4}% (bound {:.4}%)",
                if tree { "random tree" } else { "random order" },
                if distinct_seeds {
                    "distinct seeds"
                } else {
                    "one seed"
                },
                rank * 100.0,
                quantile * 100.0,
                bound * 100.0
            );
            assert!(rank <= bound, "{name}: rank error {rank} > {bound}");
            assert!(
                quantile <= bound,
                "{name}: quantile error {quantile} > {bound}"
            );
        }
    }
}

/// The distribution of the worst rank error over many sketch seeds (one stream), to see how
/// often the 99%-confidence bound is approached. Slow in debug builds: run with
/// `cargo test --release --test sketch_accuracy -- --ignored --nocapture`.
#[test]
#[ignore = "a 200-sketch sweep, for measurement"]
fn worst_error_over_many_seeds() {
    for name in ["normal", "sorted"] {
        let values = stream(name, 3000);
        let sorted = sorted_copy(&values);
        let mut worst: Vec<f64> = (0..200)
            .map(|seed| {
                let mut sketch = KllSketch::with_seed(DEFAULT_K, seed).unwrap();
                values.iter().for_each(|&v| sketch.update(v));
                worst_errors(&sketch, &sorted, seed).0
            })
            .collect();
        worst.sort_by(f64::total_cmp);
        let bound = KllSketch::new(DEFAULT_K).unwrap().normalized_rank_error();
        let over = worst.iter().filter(|&&w| w > bound).count();
        println!(
            "{name}: worst rank error over 200 seeds: median {:.4}%, p99 {:.4}%, max {:.4}%, {over} over the bound {:.4}%",
            worst[100] * 100.0,
            worst[197] * 100.0,
            worst[199] * 100.0,
            bound * 100.0
        );
    }
}
