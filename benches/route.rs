//! Route benchmarks: modelgate's router against the physical-limit baseline (a bare xxh3 plus
//! a binary search over cumulative weights) and against Unleash's engine.
//!
//! Group `route`; ids `modelgate_2_variants`, `modelgate_10_variants`,
//! `baseline_xxh3_bsearch`, `yggdrasil_get_variant`. Each iteration routes one 21-byte key and
//! hands the chosen variant to `black_box`, as the baseline hands over its index and Unleash's
//! engine its variant. (Passing the whole `Assignment` through `black_box` measured the copy:
//! its fields are written one by one and read back wider, which stalls store forwarding.)

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use modelgate::route::Router;
use unleash_yggdrasil::{Context, EngineState, UpdateMessage};

const KEYS: usize = 4096;

fn keys() -> Vec<String> {
    (0..KEYS)
        .map(|i| format!("user-{:016}", i as u64 * 7_919 + 13))
        .collect()
}

fn ab_config(variants: usize) -> String {
    let mut text = String::from("[[experiments]]\nname = \"ranker\"\nstrategy = \"ab\"\n");
    for i in 0..variants {
        text.push_str(&format!(
            "[[experiments.variants]]\nname = \"v{i}\"\nweight = {}\n",
            1.0 + i as f64
        ));
    }
    text
}

fn bench_route(c: &mut Criterion) {
    let keys = keys();
    assert!(keys.iter().all(|k| k.len() == 21));
    let mut group = c.benchmark_group("route");
    group.throughput(Throughput::Elements(1));

    for (id, n) in [("modelgate_2_variants", 2), ("modelgate_10_variants", 10)] {
        let router = Router::from_toml(&ab_config(n)).expect("valid bench config");
        let experiment = router.experiment("ranker").expect("configured");
        let mut i = 0;
        group.bench_function(id, |b| {
            b.iter(|| {
                i = (i + 1) % KEYS;
                black_box(router.route(experiment, black_box(&keys[i])).variant)
            })
        });
    }

    // The physical limit: one xxh3 and a binary search over 10 cumulative weights.
    let cumulative: Vec<f64> = {
        let total: f64 = (0..10).map(|i| 1.0 + i as f64).sum();
        let mut acc = 0.0;
        (0..10)
            .map(|i| {
                acc += (1.0 + i as f64) / total;
                acc
            })
            .collect()
    };
    let mut i = 0;
    group.bench_function("baseline_xxh3_bsearch", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            let h = xxhash_rust::xxh3::xxh3_64_with_seed(black_box(keys[i].as_bytes()), 0x5eed);
            let u = (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
            black_box(cumulative.partition_point(|&c| c <= u))
        })
    });

    // Unleash's engine: a flexible rollout at 100% with ten strategy variants.
    let variants: Vec<String> = (0..10)
        .map(|i| {
            format!(r#"{{"name":"v{i}","weight":100,"weightType":"fix","stickiness":"userId"}}"#)
        })
        .collect();
    let features = format!(
        r#"{{"version":2,"features":[{{"name":"ranker","enabled":true,"strategies":[{{"name":"flexibleRollout","constraints":[],"parameters":{{"rollout":"100","stickiness":"userId","groupId":"ranker"}},"variants":[{}]}}],"variants":[]}}]}}"#,
        variants.join(",")
    );
    let engine = EngineState::default();
    let _ = engine.take_state(UpdateMessage::FullResponse(
        serde_json::from_str(&features).expect("valid features"),
    ));
    let contexts: Vec<Context> = keys
        .iter()
        .map(|k| Context {
            user_id: Some(k.clone()),
            ..Context::default()
        })
        .collect();
    let mut i = 0;
    group.bench_function("yggdrasil_get_variant", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(engine.get_variant("ranker", black_box(&contexts[i]), &None))
        })
    });
    group.finish();
}

criterion_group!(benches, bench_route);
criterion_main!(benches);
