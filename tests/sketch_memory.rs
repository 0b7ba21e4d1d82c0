//! The hot-path seam: updates are amortised allocation-free (a counting allocator sees
//! only the rare growth when a level is added), and the memory of a profile at the default
//! `k` after 10^6 values is what the docs state (printed; run with `--nocapture`).

#[path = "common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::{CountingAllocator, allocations};

use modelgate::sketch::{CategoricalProfile, FeatureProfile, KllSketch, NumericProfile};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn value(i: u64) -> f64 {
    ((i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64).sqrt()
}

#[test]
fn updates_are_amortised_allocation_free() {
    let mut s = KllSketch::default();
    let before = allocations();
    for i in 0..1_000_000 {
        s.update(value(i));
    }
    let warmup = allocations() - before;
    let before = allocations();
    for i in 1_000_000..2_000_000 {
        s.update(value(i));
    }
    let steady = allocations() - before;
    println!("allocations: {warmup} in the first 10^6 updates, {steady} in the next 10^6");
    // Growth only when a level is added (about once per doubling of the count).
    assert!(warmup <= 20, "{warmup}");
    assert!(steady <= 2, "{steady}");

    // Between level additions: none at all.
    let before = allocations();
    for i in 2_000_000..2_100_000 {
        s.update(value(i));
    }
    assert_eq!(allocations() - before, 0);

    // Numeric and categorical profiles on the hot path likewise.
    let mut p = NumericProfile::default();
    (0..2_000_000).for_each(|i| p.update(value(i)));
    let before = allocations();
    (0..100_000).for_each(|i| p.update(value(i)));
    assert_eq!(allocations() - before, 0);
    let mut c = CategoricalProfile::default();
    let names: Vec<String> = (0..200).map(|i| format!("country-{i}")).collect();
    names.iter().for_each(|n| c.update(n));
    let before = allocations();
    for i in 0..100_000 {
        c.update(&names[i % names.len()]);
    }
    assert_eq!(allocations() - before, 0);
}

#[test]
fn memory_at_the_default_k_after_a_million_values() {
    let mut p = FeatureProfile::numeric();
    for i in 0..1_000_000 {
        p.update_number(value(i));
    }
    let sketch = p.as_numeric().unwrap().sketch();
    let (heap, encoded, retained) = (sketch.heap_bytes(), sketch.size_bytes(), sketch.retained());
    let _ = sketch.cdf(value(5));
    let with_view = sketch.heap_bytes();
    println!(
        "k = {}: {retained} items retained; heap {heap} bytes ({with_view} with the sorted view \
         cached); encoded {encoded} bytes; FeatureProfile struct {} bytes",
        sketch.k(),
        size_of::<FeatureProfile>()
    );
    assert!(heap <= 26_000, "{heap}");
    assert!(encoded <= 26_000, "{encoded}");
    assert_eq!(encoded, sketch.to_bytes().len());
    assert!(with_view <= heap + 16 * retained + 64);
}
