//! Bounded memory: after warm-up, recording 10 million requests allocates nothing on the
//! recording thread and the heap stays flat; unknown names are counted, never stored.

mod common;

#[path = "common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::{CountingAllocator, allocations, live_bytes};

use std::time::Duration;

use modelgate::agent::{Agent, Outcome};
use modelgate::metrics::ErrorKind;

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

#[test]
fn ten_million_requests_leave_the_heap_flat() {
    let agent: Agent<u32> = Agent::builder()
        .experiments_toml(common::RANKER_CONFIG)
        .expect("parses")
        .model("r@1", 1)
        .model("r@2", 2)
        .build()
        .expect("valid");
    let ranker = agent.experiment("ranker").expect("configured");
    let keys: Vec<String> = (0..1024).map(|i| format!("user-{i}")).collect();
    let run = |n: u64| {
        for i in 0..n {
            let decision = agent.route(ranker, &keys[(i % 1024) as usize]);
            let result = if i % 101 == 0 {
                Err(ErrorKind::Model)
            } else {
                Ok(())
            };
            agent.record(&decision, Duration::from_nanos(500 + i % 100_000), result);
            if i % 10 == 0 {
                agent.record_outcome_for(&decision, Outcome::Continuous((i % 7) as f64));
                agent.record_outcome("ranker", "no-such-variant", Outcome::Binary(true));
                agent.record_outcome("no-such-experiment", "control", Outcome::Binary(true));
            }
        }
    };
    // Warm-up: this thread leases its shard and creates its cells for both variants.
    run(10_000);
    let _ = agent.snapshot();
    let (allocations_before, live_before) = (allocations(), live_bytes());
    run(10_000_000);
    let (allocations_after, live_after) = (allocations(), live_bytes());
    assert_eq!(
        allocations_after - allocations_before,
        0,
        "the request path allocated"
    );
    assert_eq!(
        live_after,
        live_before,
        "the heap grew by {} bytes",
        live_after - live_before
    );
    let snapshot = agent.snapshot();
    let requests: u64 = snapshot
        .experiments
        .iter()
        .flat_map(|e| &e.variants)
        .map(|v| v.metrics.requests)
        .sum();
    assert_eq!(requests, 10_000_000);
    assert_eq!(snapshot.rejections.unknown_variant, 1_000_000);
    assert_eq!(snapshot.rejections.unknown_experiment, 1_000_000);
    // Snapshots reuse their totals: the heap is flat across windows too.
    let live = live_bytes();
    run(100_000);
    let _ = agent.snapshot();
    assert!((live_bytes() - live).abs() < 64 * 1024);
}
