//! `Router::route` allocates nothing: a counting global allocator sees zero allocations on the
//! routing thread over many calls, for every scheme and strategy.

#[path = "common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::{CountingAllocator, allocations};

use std::sync::Arc;

use modelgate::route::{ManualClock, Router, RouterConfig};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

#[test]
fn route_allocates_nothing() {
    let mut text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/experiments.toml"
    ))
    .expect("example");
    text.push_str(
        r#"
[[experiments]]
name = "ten"
coverage = 0.7
[[experiments.variants]]
name = "a"
weight = 1
[[experiments.variants]]
name = "b"
weight = 2
[[experiments.variants]]
name = "c"
weight = 3
[[experiments]]
name = "gb-ramp"
hash = "growthbook"
strategy = "gradual"
schedule = [{ at = "2026-01-01T00:00:00Z", percent = 30 }]
[[experiments.variants]]
name = "old"
[[experiments.variants]]
name = "new"
[[experiments]]
name = "unleash-ramp"
hash = "unleash"
strategy = "gradual"
schedule = [{ at = "2026-01-01T00:00:00Z", percent = 30 }]
[[experiments.variants]]
name = "old"
[[experiments.variants]]
name = "new"
"#,
    );
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let router =
        Router::with_clock(RouterConfig::from_toml(&text).expect("parses"), clock).expect("valid");
    let config = router.current();
    let ids: Vec<_> = config.experiments().iter().map(|e| e.id()).collect();
    let keys: Vec<String> = (0..1000)
        .map(|i| format!("user-{i}-é"))
        .chain(["qa-user-1".to_string(), String::new()])
        .collect();
    // Warm up: the first call on a thread fills its config cache.
    let _ = router.route(ids[0], "warm-up");

    let before = allocations();
    let mut assigned = 0u64;
    for _ in 0..20 {
        for key in &keys {
            for &id in &ids {
                assigned += u64::from(router.route(id, key).in_experiment());
            }
        }
    }
    let after = allocations();
    assert!(assigned > 10_000, "the configs must assign keys");
    assert_eq!(
        after - before,
        0,
        "route allocated {} times over {} calls",
        after - before,
        20 * keys.len() * ids.len()
    );

    // A config swap refreshes the per-thread cache without allocating on the route path either.
    router
        .store(RouterConfig::from_toml(&text).expect("parses"))
        .expect("valid");
    let before = allocations();
    for key in &keys {
        let _ = router.route(ids[1], key);
    }
    assert_eq!(allocations() - before, 0, "route after a swap allocated");
}
