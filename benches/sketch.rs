//! Sketch benchmarks: modelgate's KLL sketch against the Rust port of Apache DataSketches'
//! KLL (same `k = 1024`) and DataDog's DDSketch, on the same values in the same run.
//!
//! Group `sketch`; ids:
//! * `kll_update`, `datasketches_kll_update`, `ddsketch_add`: one value per iteration into
//!   a long-lived sketch (the amortised cost, compactions included);
//! * `kll_merge`, `datasketches_kll_merge`: merge a sketch of 10^6 values into a clone of
//!   another (the clone is not timed);
//! * `kll_cdf`: one CDF query on a built sketch (sorted view cached);
//! * `ks_from_sketches`: KS `D`, its error bound and p-value between two sketches of 10^6
//!   values (one merge pass over both sorted views);
//! * `numeric_profile_update`, `categorical_profile_update`: the agent's per-value cost for
//!   one numeric feature (sketch plus moments) and one categorical feature.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use datasketches::kll::{KllFloat, KllSketch as DsKll};
use modelgate::sketch::{CategoricalProfile, DEFAULT_K, KllSketch, NumericProfile};
use sketches_ddsketch::{Config, DDSketch};

const VALUES: usize = 1 << 16;
const MASK: usize = VALUES - 1;
const BUILT: usize = 1_000_000;

/// Normal values (Box-Muller over SplitMix64), the same in every run.
fn values(seed: u64) -> Vec<f64> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    };
    (0..VALUES)
        .map(|_| {
            let (u1, u2) = (1.0 - next(), next());
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        })
        .collect()
}

fn built(seed: u64, values: &[f64]) -> KllSketch {
    let mut s = KllSketch::with_seed(DEFAULT_K, seed).expect("valid k");
    for i in 0..BUILT {
        s.update(values[(i * 7 + seed as usize) & MASK] + (i % 1000) as f64 * 1e-3);
    }
    s
}

fn ds_built(seed: u64, values: &[f64]) -> DsKll<KllFloat<f64>> {
    let mut s = DsKll::new(DEFAULT_K).expect("valid k");
    for i in 0..BUILT {
        let v = values[(i * 7 + seed as usize) & MASK] + (i % 1000) as f64 * 1e-3;
        s.update(KllFloat::<f64>::new(v).expect("not NaN"));
    }
    s
}

fn bench_sketch(c: &mut Criterion) {
    let values = values(1);
    let wrapped: Vec<KllFloat<f64>> = values
        .iter()
        .map(|&v| KllFloat::<f64>::new(v).expect("not NaN"))
        .collect();
    let categories: Vec<String> = (0..VALUES)
        .map(|i| format!("c{}", (i * 31 % 97) * (i % 3)))
        .collect();
    let mut group = c.benchmark_group("sketch");
    group.throughput(Throughput::Elements(1));

    let mut sketch = KllSketch::default();
    let mut i = 0;
    group.bench_function("kll_update", |b| {
        b.iter(|| {
            i = (i + 1) & MASK;
            sketch.update(black_box(values[i]));
        })
    });
    black_box(sketch.count());

    let (a, other) = (built(1, &values), built(2, &values));
    group.bench_function("kll_merge", |b| {
        b.iter_batched(
            || a.clone(),
            |mut s| {
                s.merge(black_box(&other));
                s
            },
            BatchSize::SmallInput,
        )
    });

    black_box(a.rank(0.0)); // build the cached sorted view
    let mut i = 0;
    group.bench_function("kll_cdf", |b| {
        b.iter(|| {
            i = (i + 1) & MASK;
            black_box(a.cdf(black_box(values[i])))
        })
    });

    let mut ds = DsKll::<KllFloat<f64>>::new(DEFAULT_K).expect("valid k");
    let mut i = 0;
    group.bench_function("datasketches_kll_update", |b| {
        b.iter(|| {
            i = (i + 1) & MASK;
            ds.update(black_box(wrapped[i]));
        })
    });
    black_box(ds.n());

    let (ds_a, ds_other) = (ds_built(1, &values), ds_built(2, &values));
    group.bench_function("datasketches_kll_merge", |b| {
        b.iter_batched(
            || ds_a.clone(),
            |mut s| {
                s.merge(black_box(&ds_other)).expect("same m");
                s
            },
            BatchSize::SmallInput,
        )
    });

    let mut dd = DDSketch::new(Config::defaults());
    let mut i = 0;
    group.bench_function("ddsketch_add", |b| {
        b.iter(|| {
            i = (i + 1) & MASK;
            dd.add(black_box(values[i]));
        })
    });
    black_box(dd.count());

    let mut numeric = NumericProfile::default();
    let mut i = 0;
    group.bench_function("numeric_profile_update", |b| {
        b.iter(|| {
            i = (i + 1) & MASK;
            numeric.update(black_box(values[i]));
        })
    });
    black_box(numeric.count());

    let mut categorical = CategoricalProfile::default();
    let mut i = 0;
    group.bench_function("categorical_profile_update", |b| {
        b.iter(|| {
            i = (i + 1) & MASK;
            categorical.update(black_box(&categories[i]));
        })
    });
    black_box(categorical.count());

    // KS between two built sketches of 10^6 values: D, its error bound, the p-value.
    group.bench_function("ks_from_sketches", |b| {
        b.iter(|| {
            let (d, bound) =
                modelgate::drift::kolmogorov::ks_statistic(black_box(&a), black_box(&other));
            black_box((
                d,
                bound,
                modelgate::drift::kolmogorov::ks_p_value(d, a.count(), other.count()),
            ))
        })
    });
    group.finish();
}

criterion_group!(benches, bench_sketch);
criterion_main!(benches);
