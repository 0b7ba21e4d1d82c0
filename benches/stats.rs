//! One full winner-policy decision from per-variant aggregates (SRM, fixed-horizon tests
//! and intervals, always-valid statistics, Bayesian probability, the decision).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use modelgate::stats::{Experiment, MetricKind, Policy, Sample, Variant};

fn experiment(control: Sample, candidate: Sample) -> Experiment {
    Experiment {
        variants: vec![
            Variant::new("control", 0.5, control),
            Variant::new("candidate", 0.5, candidate),
        ],
        control: 0,
        elapsed: Duration::from_secs(3600),
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("stats");
    let binary = experiment(
        Sample::Binary {
            n: 48_000,
            successes: 4_800,
        },
        Sample::Binary {
            n: 48_200,
            successes: 5_020,
        },
    );
    let policy = Policy::default();
    group.bench_function("decide_binary", |b| {
        b.iter(|| policy.evaluate(black_box(&binary)))
    });
    let continuous = experiment(
        Sample::Continuous {
            n: 48_000,
            mean: 12.5,
            variance: 30.0,
        },
        Sample::Continuous {
            n: 48_200,
            mean: 12.7,
            variance: 31.5,
        },
    );
    let policy = Policy {
        metric: MetricKind::Continuous,
        ..Policy::default()
    };
    group.bench_function("decide_continuous", |b| {
        b.iter(|| policy.evaluate(black_box(&continuous)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
