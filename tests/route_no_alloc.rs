//! `Router::route` allocates nothing: a counting global allocator sees zero allocations on the
//! routing thread over many calls, for every scheme and strategy.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use modelgate::route::{ManualClock, Router, RouterConfig};

struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; only counts, per thread.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

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
