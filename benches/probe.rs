use criterion::{Criterion, criterion_group, criterion_main};
use modelgate::route::{Router, SystemClock};
use std::hint::black_box;
fn b(c: &mut Criterion) {
    let keys: Vec<String> = (0..4096)
        .map(|i| format!("user-{:016}", i as u64 * 7_919 + 13))
        .collect();
    let mut text = String::from("[[experiments]]\nname = \"ranker\"\n");
    for i in 0..10 {
        text.push_str(&format!(
            "[[experiments.variants]]\nname = \"v{i}\"\nweight = {}\n",
            1.0 + i as f64
        ));
    }
    let router = Router::from_toml(&text).unwrap();
    let cfg = router.current();
    let e = &cfg.experiments()[0];
    let mut g = c.benchmark_group("probe");
    let mut i = 0;
    g.bench_function("with_current", |b| {
        b.iter(|| {
            i = (i + 1) % 4096;
            router.with_current(|c| black_box(c.experiments().len() + i))
        })
    });
    g.bench_function("assign_direct_10", |b| {
        b.iter(|| {
            i = (i + 1) % 4096;
            black_box(e.assign(black_box(&keys[i]), &SystemClock))
        })
    });
    g.bench_function("xxh3", |b| {
        b.iter(|| {
            i = (i + 1) % 4096;
            black_box(modelgate::hash::xxh3(black_box(keys[i].as_bytes()), 1))
        })
    });
    g.bench_function("neg_ln", |b| {
        b.iter(|| {
            i = (i + 1) % 4096;
            black_box(modelgate::hash::log2_unit_fast(black_box(
                i as u64 * 0x9e3779b97f4a7c15,
            )))
        })
    });
    g.bench_function("mix", |b| {
        b.iter(|| {
            i = (i + 1) % 4096;
            black_box(modelgate::hash::mix64(black_box(i as u64)))
        })
    });
}
criterion_group!(benches, b);
criterion_main!(benches);
