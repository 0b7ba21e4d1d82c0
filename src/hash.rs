//! Stable hashes for assignment.
//!
//! Every function here is a pure function of its inputs: the same key and seed give the same
//! value in every process, on every platform and in every version of modelgate. None of them
//! allocates. Three families live here:
//!
//! * **native** ([`unit_xxh3`], [`derive_seed`], [`mix64`], [`log2_unit_fast`]): xxh3-64 of the
//!   key's UTF-8 bytes with a 64-bit seed, mapped to `[0, 1)` by keeping the top 53 bits.
//! * **GrowthBook** ([`growthbook_hash_v1`], [`growthbook_hash_v2`]): FNV-1a 32-bit as the
//!   GrowthBook SDKs compute it.
//! * **Unleash** ([`murmur3_32`], [`unleash_normalized`]): MurmurHash3 x86 32-bit of
//!   `"{group}:{key}"`, as Unleash's engine computes it.
//!
//! `ahash` and std's randomised hashers must never be used for assignment: their output
//! changes between processes.

#![forbid(unsafe_code)]

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Seed purpose for the exposure (coverage) hash of the native scheme.
pub const PURPOSE_EXPOSURE: u64 = 0x6d67_6578_706f_7375; // "mgexposu"
/// Seed purpose for the arm (variant) hash of the native scheme.
pub const PURPOSE_ARM: u64 = 0x6d67_6172_6d5f_5f5f; // "mgarm___"
/// Seed purpose for the namespace hash of the native scheme.
pub const PURPOSE_NAMESPACE: u64 = 0x6d67_6e61_6d65_7370; // "mgnamesp"
/// Seed purpose for a variant's own seed in the native arm assignment.
pub const PURPOSE_VARIANT: u64 = 0x6d67_7661_7269_616e; // "mgvarian"
/// Seed purpose for the override lookup.
pub const PURPOSE_OVERRIDE: u64 = 0x6d67_6f76_6572_7269; // "mgoverri"

/// 2^-53: maps the top 53 bits of a 64-bit hash onto `[0, 1)` exactly.
const UNIT: f64 = 1.0 / (1u64 << 53) as f64;

/// Derives a 64-bit seed from a text (an experiment's salt, a variant's name) for one purpose.
///
/// The layout is fixed: `xxh3_64_with_seed(text as UTF-8, purpose)`. Two purposes give two
/// independent seeds from one salt, which is how the native scheme keeps exposure and arm
/// assignment independent.
#[must_use]
pub fn derive_seed(text: &str, purpose: u64) -> u64 {
    xxh3_64_with_seed(text.as_bytes(), purpose)
}

/// xxh3-64 of `key` with `seed`, mapped to `[0, 1)` (53-bit resolution).
///
/// Cost: one xxh3 call (about 2 ns for a 20-byte key). Never allocates.
#[inline]
#[must_use]
pub fn unit_xxh3(key: &[u8], seed: u64) -> f64 {
    to_unit(xxh3_64_with_seed(key, seed))
}

/// The raw xxh3-64 of `key` with `seed`.
#[inline]
#[must_use]
pub fn xxh3(key: &[u8], seed: u64) -> u64 {
    xxh3_64_with_seed(key, seed)
}

/// Maps a 64-bit hash onto `[0, 1)` by its top 53 bits.
#[inline]
#[must_use]
pub fn to_unit(h: u64) -> f64 {
    (h >> 11) as i64 as f64 * UNIT
}

/// Maps a 64-bit hash onto `(0, 1]` by its top 53 bits (never zero, so its logarithm is finite).
#[inline]
#[must_use]
pub fn to_unit_open_zero(h: u64) -> f64 {
    ((h >> 11) + 1) as i64 as f64 * UNIT
}

/// A 64-bit mixer: the 128-bit product of `x` and an odd constant, folded by XOR of its
/// halves (the "mum" step of wyhash). Used to derive one independent-looking value per
/// variant from a single key hash; one multiplication.
#[inline]
#[must_use]
pub fn mix64(x: u64) -> u64 {
    let product = u128::from(x ^ 0xa076_1d64_78bd_642f).wrapping_mul(0xe703_7ed1_a0b4_28db);
    (product as u64) ^ ((product >> 64) as u64)
}

/// Entries of the `log2` table: `log2(1 + i / 256)` for `i` in `0..=256`.
const LOG2_TABLE_BITS: u32 = 8;
const LOG2_TABLE: [f64; (1 << LOG2_TABLE_BITS) + 1] = build_log2_table();

/// The table as segments `[log2(1 + i/256), its rise to the next entry]`: one read per
/// logarithm, and the subtraction done once here (the same IEEE operation, so the same bits).
const LOG2_SEGMENTS: [[f64; 2]; 1 << LOG2_TABLE_BITS] = build_log2_segments();

const fn build_log2_segments() -> [[f64; 2]; 1 << LOG2_TABLE_BITS] {
    let mut segments = [[0.0; 2]; 1 << LOG2_TABLE_BITS];
    let mut i = 0;
    while i < segments.len() {
        segments[i] = [LOG2_TABLE[i], LOG2_TABLE[i + 1] - LOG2_TABLE[i]];
        i += 1;
    }
    segments
}

const fn build_log2_table() -> [f64; (1 << LOG2_TABLE_BITS) + 1] {
    let mut table = [0.0; (1 << LOG2_TABLE_BITS) + 1];
    let mut i = 0;
    while i < table.len() {
        let m = 1.0 + i as f64 / (1u64 << LOG2_TABLE_BITS) as f64;
        // ln(m) = 2 atanh(s), s = (m - 1) / (m + 1) <= 1/3: 14 odd terms reach 1e-17.
        let s = (m - 1.0) / (m + 1.0);
        let s2 = s * s;
        let mut term = s;
        let mut sum = 0.0;
        let mut k = 0;
        while k < 14 {
            sum += term / (2 * k + 1) as f64;
            term *= s2;
            k += 1;
        }
        table[i] = 2.0 * sum / std::f64::consts::LN_2;
        i += 1;
    }
    table
}

/// The unit value `u = 2 - (1 + (h >> 12) / 2^52)` in `(0, 1]` that [`log2_unit_fast`] takes
/// the logarithm of (52-bit resolution, never zero).
#[inline]
#[must_use]
pub fn unit_from_bits(h: u64) -> f64 {
    // 1 + m / 2^52 in [1, 2), then 2 - that, which is exact (Sterbenz).
    2.0 - f64::from_bits(ONE_BITS | (h >> 12))
}

const ONE_BITS: u64 = 0x3ff0_0000_0000_0000;

/// A fast, deterministic `log2` of [`unit_from_bits`]`(h)`: the exponent plus a linear
/// interpolation in a 257-entry table of `log2(1 + i/256)`, computed at compile time from a
/// fixed series (not the platform's `log`, whose last bit varies between C libraries).
///
/// The result is at most 0 (0 only when `h >> 12` is 0) and never decreases as `u` grows
/// (absolute error below 3e-6). Cost: bit operations, a table read and a few floating-point
/// operations; no division and no integer-to-float conversion instruction (whose false
/// dependency on its destination register would chain calls together).
#[inline]
#[must_use]
pub fn log2_unit_fast(h: u64) -> f64 {
    const MAGIC: u64 = 0x4330_0000_0000_0000; // 2^52: its low mantissa bits hold an integer
    let bits = unit_from_bits(h).to_bits();
    // `u` is positive: the bits above the mantissa are the biased exponent alone.
    let biased_exponent = bits >> 52;
    let exponent = f64::from_bits(MAGIC | biased_exponent) - (4_503_599_627_370_496.0 + 1023.0);
    let index = ((bits >> (52 - LOG2_TABLE_BITS)) & ((1 << LOG2_TABLE_BITS) - 1)) as usize;
    let fraction =
        f64::from_bits(ONE_BITS | ((bits << LOG2_TABLE_BITS) & 0x000f_ffff_ffff_ffff)) - 1.0;
    let [lo, rise] = LOG2_SEGMENTS[index];
    exponent + lo + fraction * rise
}

const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

/// FNV-1a 32-bit over UTF-16 code units, as GrowthBook's SDKs compute it: the JavaScript SDK
/// XORs `charCodeAt` (a UTF-16 unit) into the state, and the Python SDK does the same since
/// version 4 (before it, Python XORed whole code points, which differs for characters outside
/// the Basic Multilingual Plane, such as emoji). ASCII and BMP text hash identically in all of
/// them.
#[inline]
fn fnv1a32_chars(state: u32, text: &str) -> u32 {
    text.encode_utf16().fold(state, |h, unit| {
        (h ^ u32::from(unit)).wrapping_mul(FNV_PRIME)
    })
}

/// GrowthBook hash version 2: `fnv1a32(decimal(fnv1a32(seed + key))) % 10000 / 10000`.
///
/// Never allocates: the decimal digits are folded from a stack buffer.
#[must_use]
pub fn growthbook_hash_v2(seed: &str, key: &str) -> f64 {
    let inner = fnv1a32_chars(fnv1a32_chars(FNV_OFFSET, seed), key);
    let mut digits = [0u8; 10];
    let mut len = 0;
    let mut n = inner;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let outer = digits[..len].iter().rev().fold(FNV_OFFSET, |h, &d| {
        (h ^ u32::from(d)).wrapping_mul(FNV_PRIME)
    });
    f64::from(outer % 10_000) / 10_000.0
}

/// GrowthBook hash version 1: `fnv1a32(key + seed) % 1000 / 1000`; the SDKs use it for the
/// namespace check with seed `"__" + namespace`.
#[must_use]
pub fn growthbook_hash_v1(key: &str, seed: &str) -> f64 {
    let h = fnv1a32_chars(fnv1a32_chars(FNV_OFFSET, key), seed);
    f64::from(h % 1000) / 1000.0
}

/// MurmurHash3 x86 32-bit over the concatenation of `parts`, streamed without allocating.
#[must_use]
pub fn murmur3_32(parts: &[&[u8]], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut h = seed;
    let mut block = [0u8; 4];
    let mut filled = 0usize;
    let mut total = 0usize;
    for part in parts {
        for &byte in *part {
            block[filled] = byte;
            filled += 1;
            total += 1;
            if filled == 4 {
                let k = u32::from_le_bytes(block)
                    .wrapping_mul(C1)
                    .rotate_left(15)
                    .wrapping_mul(C2);
                h ^= k;
                h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
                filled = 0;
            }
        }
    }
    if filled > 0 {
        let mut k = 0u32;
        for i in (0..filled).rev() {
            k = (k << 8) | u32::from(block[i]);
        }
        h ^= k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    }
    h ^= total as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// Unleash's normalised number: `murmur3_32("{group}:{key}", seed) % normalizer + 1`, in
/// `1..=normalizer`. Returns 0 when `normalizer` is 0.
#[must_use]
pub fn unleash_normalized(group: &str, key: &str, seed: u32, normalizer: u32) -> u32 {
    if normalizer == 0 {
        return 0;
    }
    murmur3_32(&[group.as_bytes(), b":", key.as_bytes()], seed) % normalizer + 1
}

/// Unleash's seed for variant selection.
pub const UNLEASH_VARIANT_SEED: u32 = 86_028_157;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_known_vectors() {
        // Published MurmurHash3_x86_32 vectors.
        assert_eq!(murmur3_32(&[b""], 0), 0);
        assert_eq!(murmur3_32(&[b""], 1), 0x514e_28b7);
        assert_eq!(murmur3_32(&[b"Hello, world!"], 1234), 0xfaf6_cdb3);
        assert_eq!(
            murmur3_32(
                &[b"The quick brown fox jumps over the lazy dog"],
                0x9747_b28c
            ),
            0x2fa8_26cd
        );
        // Streaming across part boundaries gives the same value as one slice.
        assert_eq!(murmur3_32(&[b"Hel", b"lo, w", b"orld!"], 1234), 0xfaf6_cdb3);
    }

    #[test]
    fn fnv_known_vectors() {
        // FNV-1a 32 of "a" and "foobar" (published test vectors).
        assert_eq!(fnv1a32_chars(FNV_OFFSET, "a"), 0xe40c_292c);
        assert_eq!(fnv1a32_chars(FNV_OFFSET, "foobar"), 0xbf9c_f968);
    }

    #[test]
    fn fast_log2_is_close_and_monotone() {
        let mut x = 0x0bad_cafe_dead_beefu64;
        for _ in 0..200_000 {
            x = mix64(x.wrapping_add(0x9e37_79b9_7f4a_7c15));
            let exact = unit_from_bits(x).log2();
            let fast = log2_unit_fast(x);
            assert!(
                (exact - fast).abs() < 3e-6,
                "h={x:#x} exact={exact} fast={fast}"
            );
            assert!(fast <= 0.0);
        }
        assert_eq!(log2_unit_fast(0), 0.0);
        assert_eq!(log2_unit_fast(u64::MAX), -52.0);
        assert_eq!(unit_from_bits(0), 1.0);
        assert_eq!(unit_from_bits(u64::MAX), 2f64.powi(-52));
        // Monotone across table cells and exponents.
        let mut prev = f64::NEG_INFINITY;
        for step in (0..5000u64).rev() {
            // Decreasing h means increasing u.
            let h = step * (u64::MAX / 5000);
            let v = log2_unit_fast(h);
            assert!(v >= prev, "not monotone at {h:#x}");
            prev = v;
        }
    }

    /// The logarithm's bits are part of the native assignment format. This is its first
    /// formulation (two table reads, a masked exponent), kept as the reference: the current
    /// one must give the same bits everywhere.
    fn log2_unit_reference(h: u64) -> f64 {
        const MAGIC: u64 = 0x4330_0000_0000_0000;
        let bits = unit_from_bits(h).to_bits();
        let biased_exponent = (bits >> 52) & 0x7ff;
        let exponent = f64::from_bits(MAGIC | biased_exponent) - (4_503_599_627_370_496.0 + 1023.0);
        let index = ((bits >> 44) & 0xff) as usize;
        let fraction = f64::from_bits(ONE_BITS | ((bits << 8) & 0x000f_ffff_ffff_ffff)) - 1.0;
        let (lo, hi) = (LOG2_TABLE[index], LOG2_TABLE[index + 1]);
        exponent + lo + fraction * (hi - lo)
    }

    #[test]
    fn fast_log2_keeps_the_bits_of_its_reference() {
        let mut probes = vec![0u64, 1, u64::MAX, u64::MAX - 1, 1 << 12, (1 << 12) - 1];
        for e in 0..64 {
            probes.extend([1u64 << e, (1u64 << e).wrapping_sub(1), u64::MAX >> e]);
        }
        for i in 0..256u64 {
            probes.extend([
                i << 56,
                (i << 56) | (1 << 55),
                (i << 56).wrapping_sub(1 << 12),
            ]);
        }
        let mut x = 0x5eed_u64;
        for _ in 0..2_000_000 {
            x = mix64(x);
            probes.push(x);
            probes.push(x >> (x % 64));
        }
        for h in probes {
            assert_eq!(
                log2_unit_fast(h).to_bits(),
                log2_unit_reference(h).to_bits(),
                "h = {h:#x}"
            );
        }
    }

    #[test]
    fn unit_maps_into_half_open_interval() {
        assert_eq!(to_unit(0), 0.0);
        assert!(to_unit(u64::MAX) < 1.0);
        assert!(to_unit_open_zero(0) > 0.0);
        assert_eq!(to_unit_open_zero(u64::MAX), 1.0);
    }
}
