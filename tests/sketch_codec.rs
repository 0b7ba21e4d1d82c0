//! The sketch encodings: round trips (binary, JSON and postcard through serde) give equal
//! values; truncated, bit-flipped, overwritten and random bytes decode to an error or to a
//! valid value, never a panic; a claimed length larger than the input is rejected before any
//! allocation; and no decode allocates more than a small multiple of its input (a counting
//! allocator records the largest single allocation on the decoding thread).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use modelgate::sketch::{
    CategoricalProfile, FeatureProfile, KllSketch, NumericProfile, SketchError,
};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

struct PeakAllocator;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|c| c.set(c.get().max(size)));
}

// SAFETY: forwards every call to the system allocator unchanged; only records sizes.
unsafe impl GlobalAlloc for PeakAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: PeakAllocator = PeakAllocator;

/// Runs `f` and returns its result with the largest single allocation it made.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|c| c.set(0));
    let out = f();
    (out, LARGEST.with(Cell::get))
}

/// The most a decode of `len` bytes may allocate at once: 32 bytes per input byte (a
/// categorical entry of 2 bytes becomes a 24-byte `String` and a count) plus a constant.
fn allowance(len: usize) -> usize {
    32 * len + 4096
}

/// Decodes `bytes` as each type; a success must re-encode to an equal value, answer
/// queries, and no decode may allocate beyond the allowance.
fn decode_all(bytes: &[u8]) {
    let (kll, peak) = largest_allocation(|| KllSketch::from_bytes(bytes));
    assert!(
        peak <= allowance(bytes.len()),
        "KLL decode allocated {peak}"
    );
    if let Ok(s) = kll {
        assert_eq!(KllSketch::from_bytes(&s.to_bytes()).as_ref(), Ok(&s));
        assert_eq!(s.to_bytes().len(), s.size_bytes());
        let _ = (s.rank(0.0), s.quantile(0.5), s.sorted_view().total_weight());
        let mut t = s.clone();
        t.update(1.0);
        t.merge(&s);
    }
    let (cat, peak) = largest_allocation(|| CategoricalProfile::from_bytes(bytes));
    assert!(
        peak <= allowance(bytes.len()),
        "categorical decode allocated {peak}"
    );
    if let Ok(p) = cat {
        assert_eq!(
            CategoricalProfile::from_bytes(&p.to_bytes()).as_ref(),
            Ok(&p)
        );
        let _ = (p.frequencies(), p.max_error(), p.top(3));
    }
    let (feature, peak) = largest_allocation(|| FeatureProfile::from_bytes(bytes));
    assert!(
        peak <= allowance(bytes.len()),
        "feature decode allocated {peak}"
    );
    if let Ok(p) = feature {
        assert_eq!(FeatureProfile::from_bytes(&p.to_bytes()).as_ref(), Ok(&p));
        assert_eq!(p.to_bytes().len(), p.size_bytes());
    }
}

fn kll(k: u16, n: usize, seed: u64) -> KllSketch {
    let mut s = KllSketch::with_seed(k, seed).unwrap();
    for i in 0..n {
        let x = ((i as u64 * 2_654_435_761) % 100_003) as f64 / 7.0 - 5000.0;
        s.update(if i % 997 == 3 { f64::NAN } else { x });
    }
    s
}

fn categorical(limit: usize, n: usize) -> CategoricalProfile {
    let mut p = CategoricalProfile::new(limit).unwrap();
    for i in 0..n {
        match i % 11 {
            0 => p.update(""),
            1 => p.update_missing(),
            2 => p.update("naïve ☃"),
            _ => p.update(&format!("v{}", (i * 31) % 50)),
        }
    }
    p
}

fn samples() -> Vec<Vec<u8>> {
    let mut with_inf = kll(16, 500, 1);
    with_inf.update(f64::INFINITY);
    with_inf.update(f64::NEG_INFINITY);
    let mut merged = kll(32, 3000, 2);
    merged.merge(&kll(64, 5000, 3));
    let mut numeric = NumericProfile::with_seed(16, 4).unwrap();
    (0..300).for_each(|i| numeric.update(f64::from(i) * 0.5));
    vec![
        KllSketch::default().to_bytes(),
        kll(8, 3, 0).to_bytes(),
        with_inf.to_bytes(),
        merged.to_bytes(),
        categorical(8, 200).to_bytes(),
        categorical(256, 200).to_bytes(),
        FeatureProfile::Numeric(numeric).to_bytes(),
        FeatureProfile::Categorical(categorical(4, 40)).to_bytes(),
    ]
}

#[test]
fn round_trips_are_equal() {
    for (k, n) in [
        (8, 0),
        (8, 5),
        (8, 10_000),
        (200, 100_000),
        (1024, 1_000_000),
    ] {
        let s = kll(k, n, 9);
        let bytes = s.to_bytes();
        assert_eq!(bytes.len(), s.size_bytes());
        let back = KllSketch::from_bytes(&bytes).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.rank(0.0), s.rank(0.0));
        assert_eq!(back.quantile(0.9), s.quantile(0.9));
        // A decoded sketch goes on exactly like the original.
        let (mut a, mut b) = (s.clone(), back);
        for i in 0..5000 {
            a.update(f64::from(i));
            b.update(f64::from(i));
        }
        assert_eq!(a, b);
        // serde: JSON (infinities as strings) and postcard.
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<KllSketch>(&json).unwrap(), s);
        let compact = postcard::to_stdvec(&s).unwrap();
        assert_eq!(postcard::from_bytes::<KllSketch>(&compact).unwrap(), s);
    }
    let mut inf = kll(8, 100, 1);
    inf.update(f64::INFINITY);
    inf.update(f64::NEG_INFINITY);
    let json = serde_json::to_string(&inf).unwrap();
    assert!(
        json.contains("\"max\":\"inf\"") && json.contains("\"min\":\"-inf\""),
        "{json}"
    );
    assert_eq!(serde_json::from_str::<KllSketch>(&json).unwrap(), inf);

    for p in [
        categorical(4, 1000),
        categorical(256, 1000),
        CategoricalProfile::default(),
    ] {
        assert_eq!(CategoricalProfile::from_bytes(&p.to_bytes()).unwrap(), p);
        assert_eq!(p.to_bytes().len(), p.size_bytes());
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            serde_json::from_str::<CategoricalProfile>(&json).unwrap(),
            p
        );
    }
    let mut numeric = FeatureProfile::numeric();
    (0..50_000).for_each(|i| numeric.update_number(f64::from(i % 977).sqrt()));
    for p in [numeric, FeatureProfile::Categorical(categorical(16, 500))] {
        assert_eq!(FeatureProfile::from_bytes(&p.to_bytes()).unwrap(), p);
        assert_eq!(p.to_bytes().len(), p.size_bytes());
        let compact = postcard::to_stdvec(&p).unwrap();
        assert_eq!(postcard::from_bytes::<FeatureProfile>(&compact).unwrap(), p);
        // JSON: the sketch and the counts are exact; the moments are plain JSON numbers,
        // which serde_json's default parser may round by one unit in the last place.
        let json = serde_json::to_string(&p).unwrap();
        let back = serde_json::from_str::<FeatureProfile>(&json).unwrap();
        match (&p, &back) {
            (FeatureProfile::Numeric(a), FeatureProfile::Numeric(b)) => {
                assert_eq!(a.sketch(), b.sketch());
                assert_eq!(a.moments().count, b.moments().count);
                assert!(
                    (a.moments().mean - b.moments().mean).abs() <= 1e-12 * a.moments().mean.abs()
                );
                assert!((a.moments().m2 - b.moments().m2).abs() <= 1e-12 * a.moments().m2.abs());
            }
            _ => assert_eq!(back, p),
        }
    }
}

#[test]
fn every_truncation_and_bit_flip_is_handled() {
    for bytes in samples() {
        for len in 0..bytes.len() {
            decode_all(&bytes[..len]);
        }
        // Only the headers and the first items of the larger samples: enough to hit every
        // field, and fast in debug builds.
        for i in 0..bytes.len().min(160) {
            for bit in 0..8 {
                let mut flipped = bytes.clone();
                flipped[i] ^= 1 << bit;
                decode_all(&flipped);
            }
        }
    }
}

#[test]
fn wrong_tag_version_and_trailing_bytes_are_errors() {
    let bytes = kll(8, 100, 1).to_bytes();
    assert!(matches!(
        CategoricalProfile::from_bytes(&bytes),
        Err(SketchError::BadMagic { .. })
    ));
    let mut v2 = bytes.clone();
    v2[1] = 2;
    assert!(matches!(
        KllSketch::from_bytes(&v2),
        Err(SketchError::UnsupportedVersion { found: 2, .. })
    ));
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(matches!(
        KllSketch::from_bytes(&trailing),
        Err(SketchError::Corrupt { .. })
    ));
    assert!(matches!(
        KllSketch::from_bytes(&bytes[..bytes.len() - 1]),
        Err(SketchError::Corrupt { .. } | SketchError::Truncated { .. })
    ));
}

fn varint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push((x as u8) | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

#[test]
fn claimed_huge_lengths_are_rejected_before_allocating() {
    // A KLL sketch claiming 2^40 items in its one level.
    let mut kll = vec![0xB1, 1];
    for field in [1024, 1024, 1 << 40, 0] {
        varint(&mut kll, field);
    }
    kll.extend_from_slice(&7u64.to_le_bytes());
    varint(&mut kll, 1);
    varint(&mut kll, 1 << 40);
    kll.extend_from_slice(&0f64.to_le_bytes());
    kll.extend_from_slice(&1f64.to_le_bytes());
    let (result, peak) = largest_allocation(|| KllSketch::from_bytes(&kll));
    assert!(
        matches!(result, Err(SketchError::Corrupt { .. })),
        "{result:?}"
    );
    assert!(peak <= allowance(kll.len()), "{peak}");

    // A categorical profile claiming 2^60 entries, and one claiming a 2^50-byte string.
    let mut entries = vec![0xB2, 1];
    for field in [256, 10, 0, 1 << 60] {
        varint(&mut entries, field);
    }
    let mut string = vec![0xB2, 1];
    for field in [256, 10, 0, 1, 1 << 50] {
        varint(&mut string, field);
    }
    string.extend_from_slice(b"abc");
    for bytes in [entries, string] {
        let (result, peak) = largest_allocation(|| CategoricalProfile::from_bytes(&bytes));
        assert!(
            matches!(result, Err(SketchError::Corrupt { .. })),
            "{result:?}"
        );
        assert!(peak <= allowance(bytes.len()), "{peak}");
    }

    // The largest legal k with 64 levels decodes to its items only: the sketch's 1.6 MB of
    // free space is not allocated until it is updated.
    let mut big = vec![0xB1, 1];
    for field in [65535, 65535, 1 << 63, 0] {
        varint(&mut big, field);
    }
    big.extend_from_slice(&0u64.to_le_bytes());
    varint(&mut big, 64);
    for h in 0..64 {
        varint(&mut big, u64::from(h == 63));
    }
    big.extend_from_slice(&2f64.to_le_bytes());
    big.extend_from_slice(&2f64.to_le_bytes());
    big.extend_from_slice(&2f64.to_le_bytes());
    let (result, peak) = largest_allocation(|| KllSketch::from_bytes(&big));
    let s = result.unwrap();
    assert_eq!(s.count(), 1 << 63);
    assert!(peak <= allowance(big.len()), "{peak}");
    assert_eq!(s.quantile(0.5), Some(2.0));
}

/// The fields of a KLL encoding, to write hostile variants of a valid sketch.
#[derive(Clone)]
struct RawKll {
    k: u64,
    min_k: u64,
    count: u64,
    missing: u64,
    levels: Vec<u64>,
    min_max: Option<(f64, f64)>,
    items: Vec<f64>,
}

impl RawKll {
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![0xB1, 1];
        for field in [self.k, self.min_k, self.count, self.missing] {
            varint(&mut out, field);
        }
        out.extend_from_slice(&0u64.to_le_bytes());
        varint(&mut out, self.levels.len() as u64);
        for &size in &self.levels {
            varint(&mut out, size);
        }
        if let Some((min, max)) = self.min_max {
            out.extend_from_slice(&min.to_le_bytes());
            out.extend_from_slice(&max.to_le_bytes());
        }
        for item in &self.items {
            out.extend_from_slice(&item.to_le_bytes());
        }
        out
    }
}

#[test]
fn invalid_structures_are_rejected() {
    // Valid: 3 items at level 0 and 2 at level 1 (weight 3 + 4 = 7).
    let good = RawKll {
        k: 8,
        min_k: 8,
        count: 7,
        missing: 0,
        levels: vec![3, 2],
        min_max: Some((-1.0, 9.0)),
        items: vec![5.0, -1.0, 2.0, 3.0, 9.0],
    };
    let s = KllSketch::from_bytes(&good.encode()).unwrap();
    assert_eq!((s.count(), s.rank(2.0)), (7, 2.0 / 7.0));
    let variants: Vec<(&str, RawKll)> = vec![
        (
            "k below 8",
            RawKll {
                k: 7,
                min_k: 7,
                ..good.clone()
            },
        ),
        (
            "k above 65535",
            RawKll {
                k: 70_000,
                ..good.clone()
            },
        ),
        (
            "min_k above k",
            RawKll {
                min_k: 9,
                ..good.clone()
            },
        ),
        (
            "weight differs from count",
            RawKll {
                count: 6,
                ..good.clone()
            },
        ),
        (
            "min above max",
            RawKll {
                min_max: Some((9.5, 9.0)),
                ..good.clone()
            },
        ),
        (
            "NaN min",
            RawKll {
                min_max: Some((f64::NAN, 9.0)),
                ..good.clone()
            },
        ),
        (
            "item below min",
            RawKll {
                min_max: Some((0.0, 9.0)),
                ..good.clone()
            },
        ),
        (
            "NaN item",
            RawKll {
                items: vec![5.0, f64::NAN, 2.0, 3.0, 9.0],
                ..good.clone()
            },
        ),
        (
            "unsorted level 1",
            RawKll {
                items: vec![5.0, -1.0, 2.0, 9.0, 3.0],
                ..good.clone()
            },
        ),
        (
            "no levels",
            RawKll {
                levels: vec![],
                ..good.clone()
            },
        ),
        (
            "65 levels",
            RawKll {
                levels: vec![0; 65],
                ..good.clone()
            },
        ),
        (
            "empty with extremes",
            RawKll {
                count: 0,
                levels: vec![0],
                items: vec![],
                ..good.clone()
            },
        ),
        (
            "empty with two levels",
            RawKll {
                count: 0,
                levels: vec![0, 0],
                min_max: None,
                items: vec![],
                ..good.clone()
            },
        ),
        (
            "more items than capacity",
            RawKll {
                count: 9,
                levels: vec![9],
                items: vec![0.0; 9],
                min_max: Some((0.0, 0.0)),
                ..good.clone()
            },
        ),
    ];
    for (what, raw) in variants {
        let result = KllSketch::from_bytes(&raw.encode());
        assert!(result.is_err(), "{what}: {result:?}");
    }

    // JSON: the readable fields must agree with the encoding, which must be hex.
    let json = serde_json::to_value(kll(8, 1000, 1)).unwrap();
    let with = |field: &str, value: serde_json::Value| {
        let mut j = json.clone();
        j[field] = value;
        serde_json::from_value::<KllSketch>(j)
    };
    assert!(with("count", 5.into()).is_err());
    assert!(with("k", 16.into()).is_err());
    assert!(with("encoding", "b1zz".into()).is_err());
    assert!(with("encoding", "b10".into()).is_err());
    assert!(with("unknown", 1.into()).is_err());
    assert!(
        with("min", 12345.into()).is_ok(),
        "min and max are informational"
    );

    let c = categorical(64, 100);
    assert!(c.is_exact());
    let cj = serde_json::to_value(&c).unwrap();
    let mut zero = cj.clone();
    zero["counters"]["v1"] = 0.into();
    assert!(serde_json::from_value::<CategoricalProfile>(zero).is_err());
    let mut over = cj.clone();
    over["count"] = 1.into();
    assert!(serde_json::from_value::<CategoricalProfile>(over).is_err());
    let mut limit = cj;
    limit["max_distinct"] = 0.into();
    assert!(serde_json::from_value::<CategoricalProfile>(limit).is_err());

    // A numeric profile whose moments count more values than its sketch.
    let mut p = NumericProfile::default();
    p.update(1.0);
    let mut pj = serde_json::to_value(FeatureProfile::Numeric(p)).unwrap();
    pj["numeric"]["moments"]["count"] = 2.into();
    assert!(serde_json::from_value::<FeatureProfile>(pj).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        rng_seed: RngSeed::Fixed(0xc0dec),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        decode_all(&bytes);
    }

    #[test]
    fn random_bodies_behind_valid_headers_never_panic(
        tag in prop_oneof![Just(0xB1u8), Just(0xB2), Just(0xB3)],
        body in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut bytes = vec![tag, 1];
        bytes.extend_from_slice(&body);
        decode_all(&bytes);
    }

    #[test]
    fn overwritten_encodings_never_panic(
        sample in 0usize..8,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut bytes = samples()[sample].clone();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        decode_all(&bytes);
    }
}
