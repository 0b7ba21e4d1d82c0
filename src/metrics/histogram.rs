//! A log-linear latency histogram with bounded relative error.
//!
//! Values (nanoseconds) below 64 have a bucket each; above, every power of two is split into
//! 64 equal buckets, so a bucket is at most 1/64 of its lower bound wide. A quantile is
//! reported as its bucket's midpoint (or the exact value below 64): relative error at most
//! 1/128 (0.79%). Values from 2^43 ns (about 2.4 hours) up share the last bucket and are
//! counted as saturated.

use serde::{Deserialize, Serialize};

/// Sub-buckets per power of two.
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// Highest power of two with its own buckets.
const MAX_EXPONENT: u32 = 42;
/// Values from here up (2^43 ns, about 2.4 hours) share the last bucket: saturated.
pub const SATURATION_NANOS: u64 = 1 << (MAX_EXPONENT + 1);
/// Number of buckets.
pub const BUCKETS: usize = (SUB + (MAX_EXPONENT - SUB_BITS + 1) as u64 * SUB) as usize;

/// The bucket of a value in nanoseconds (values past the range go to the last bucket).
#[inline]
#[must_use]
pub fn bucket_of(value: u64) -> usize {
    if value < SUB {
        return value as usize;
    }
    let exponent = 63 - value.leading_zeros();
    if exponent > MAX_EXPONENT {
        return BUCKETS - 1;
    }
    let sub = (value >> (exponent - SUB_BITS)) & (SUB - 1);
    (SUB + u64::from(exponent - SUB_BITS) * SUB + sub) as usize
}

/// The value a bucket reports: its exact value below 64, its midpoint above.
#[must_use]
pub fn bucket_value(index: usize) -> f64 {
    let index = index.min(BUCKETS - 1) as u64;
    if index < SUB {
        return index as f64;
    }
    let k = index - SUB;
    let shift = k / SUB;
    let low = (SUB + k % SUB) << shift;
    let width = 1u64 << shift;
    if width == 1 {
        low as f64
    } else {
        low as f64 + width as f64 / 2.0
    }
}

/// A latency histogram as it travels in snapshots and reports: non-zero buckets only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyHistogram {
    /// `(bucket, count)` pairs in increasing bucket order.
    pub buckets: Vec<(u16, u64)>,
    /// Number of values at or above 2^43 ns (about 2.4 hours), which the last bucket holds.
    #[serde(default)]
    pub saturated: u64,
}

impl LatencyHistogram {
    /// Builds a histogram from dense bucket counts.
    #[must_use]
    pub fn from_dense(counts: &[u64], saturated: u64) -> Self {
        let buckets = counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| (i as u16, *c))
            .collect();
        LatencyHistogram { buckets, saturated }
    }

    /// Adds one value (nanoseconds).
    pub fn record(&mut self, nanos: u64) {
        let b = bucket_of(nanos) as u16;
        if nanos >> (MAX_EXPONENT + 1) != 0 {
            self.saturated += 1;
        }
        match self.buckets.binary_search_by_key(&b, |(i, _)| *i) {
            Ok(at) => self.buckets[at].1 += 1,
            Err(at) => self.buckets.insert(at, (b, 1)),
        }
    }

    /// Number of values.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.buckets
            .iter()
            .fold(0u64, |sum, (_, c)| sum.saturating_add(*c))
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        let mut merged = Vec::with_capacity(self.buckets.len() + other.buckets.len());
        let (mut i, mut j) = (0, 0);
        let (a, b) = (&self.buckets, &other.buckets);
        while i < a.len() || j < b.len() {
            match (a.get(i), b.get(j)) {
                (Some(&(x, cx)), Some(&(y, cy))) if x == y => {
                    merged.push((x, cx.saturating_add(cy)));
                    i += 1;
                    j += 1;
                }
                (Some(&x), Some(&y)) if x.0 < y.0 => {
                    merged.push(x);
                    i += 1;
                }
                (_, Some(&y)) => {
                    merged.push(y);
                    j += 1;
                }
                (Some(&x), None) => {
                    merged.push(x);
                    i += 1;
                }
                (None, None) => break,
            }
        }
        self.buckets = merged;
        self.saturated = self.saturated.saturating_add(other.saturated);
    }

    /// The `q`-quantile in nanoseconds (the smallest recorded value whose rank reaches
    /// `q · count`), within 0.79% relative; `None` when empty or `q` is not in `[0, 1]`.
    #[must_use]
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if !(0.0..=1.0).contains(&q) {
            return None;
        }
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0u64;
        for &(bucket, count) in &self.buckets {
            seen = seen.saturating_add(count);
            if seen >= rank {
                return Some(bucket_value(bucket as usize));
            }
        }
        self.buckets.last().map(|&(b, _)| bucket_value(b as usize))
    }

    /// Values certainly above `nanos`: the counts of the buckets wholly above the bucket that
    /// holds `nanos` (so the count may miss values of that one bucket, at most 1/64 of the
    /// value wide: an undercount, never an overcount). 0 for NaN.
    #[must_use]
    pub fn count_above(&self, nanos: f64) -> u64 {
        if nanos.is_nan() {
            return 0;
        }
        if nanos < 0.0 {
            return self.count();
        }
        // `as` saturates: values past u64 land in the last bucket.
        let holder = bucket_of(nanos.ceil() as u64) as u16;
        self.buckets
            .iter()
            .filter(|(b, _)| *b > holder)
            .fold(0u64, |sum, (_, c)| sum.saturating_add(*c))
    }

    /// Checks that buckets are in range, strictly increasing and non-zero (for decoders).
    #[must_use]
    pub fn is_valid(&self) -> bool {
        self.buckets.windows(2).all(|w| w[0].0 < w[1].0)
            && self
                .buckets
                .iter()
                .all(|&(b, c)| (b as usize) < BUCKETS && c > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_above_never_overcounts_and_misses_at_most_one_bucket() {
        let mut h = LatencyHistogram::default();
        for v in 1..=10_000u64 {
            h.record(v * 1_000);
        }
        for threshold in [
            0.0,
            63.0,
            1_000.0,
            1_234_567.0,
            5_000_000.5,
            9_999_999.0,
            1e13,
        ] {
            let exact = (1..=10_000u64)
                .filter(|v| (v * 1_000) as f64 > threshold)
                .count() as u64;
            let counted = h.count_above(threshold);
            assert!(counted <= exact, "{threshold}: {counted} > {exact}");
            // The bucket holding the threshold is at most 1/64 of it wide: 1/64 of the values
            // near it, plus one.
            let slack = (threshold / 64.0 / 1_000.0).ceil() as u64 + 1;
            assert!(
                exact - counted <= slack,
                "{threshold}: {counted} vs {exact}"
            );
        }
        assert_eq!(h.count_above(-1.0), 10_000);
        assert_eq!(h.count_above(f64::NAN), 0);
    }

    #[test]
    fn buckets_cover_the_range_in_order_with_bounded_width() {
        let mut previous = 0;
        let mut previous_value = 0;
        for v in (0..200_000u64)
            .chain((1..64).map(|e| (1u64 << e) - 1))
            .chain((1..64).map(|e| 1u64 << e))
        {
            let b = bucket_of(v);
            assert!(b < BUCKETS);
            if v < 200_000 && v >= previous_value {
                assert!(b >= previous);
                previous = b;
                previous_value = v;
            }
            if v < SATURATION_NANOS && v > 0 {
                let reported = bucket_value(b);
                assert!(
                    (reported - v as f64).abs() / v as f64 <= 1.0 / 128.0 + 1e-12,
                    "v={v} reported={reported}"
                );
            }
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    /// Slow calls keep the 1% bound up to 2^43 ns: a batch model's 100 s or an hour (before,
    /// everything from 2^36 ns, about 69 s, was reported as 68.45 s).
    #[test]
    fn slow_calls_up_to_two_hours_keep_the_bound() {
        for seconds in [69u64, 100, 600, 3_600, 8_000] {
            let nanos = seconds * 1_000_000_000;
            let mut h = LatencyHistogram::default();
            h.buckets.push((bucket_of(nanos) as u16, 10));
            let p50 = h.quantile(0.5).expect("values");
            let error = (p50 - nanos as f64).abs() / nanos as f64;
            assert!(error <= 1.0 / 128.0, "{seconds} s: {p50} ns, error {error}");
        }
        const { assert!(8_000 * 1_000_000_000 < SATURATION_NANOS) };
        assert_eq!(bucket_of(SATURATION_NANOS), BUCKETS - 1);
        assert_eq!(bucket_of(SATURATION_NANOS - 1), BUCKETS - 1);
        assert_eq!(bucket_of(SATURATION_NANOS / 2 - 1), BUCKETS - 65);
    }

    #[test]
    fn quantiles_are_within_one_percent_of_exact() {
        let mut values: Vec<u64> = (0..100_000u64)
            .map(|i| 1_000 + (i * i * 7919) % 50_000_000)
            .collect();
        let mut h = LatencyHistogram::default();
        for &v in &values {
            h.record(v);
        }
        values.sort_unstable();
        for q in [0.0, 0.01, 0.5, 0.9, 0.99, 0.999, 1.0] {
            let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
            let exact = values[rank - 1] as f64;
            let got = h.quantile(q).expect("non-empty");
            assert!(
                (got - exact).abs() / exact <= 0.01,
                "q={q} exact={exact} got={got}"
            );
        }
        assert_eq!(h.quantile(1.5), None);
        assert_eq!(LatencyHistogram::default().quantile(0.5), None);
    }

    #[test]
    fn merge_adds_counts() {
        let (mut a, mut b) = (LatencyHistogram::default(), LatencyHistogram::default());
        for v in [1, 5, 100, 10_000] {
            a.record(v);
        }
        for v in [5, 7, 10_000, 1 << 50] {
            b.record(v);
        }
        let mut all = LatencyHistogram::default();
        for v in [1, 5, 100, 10_000, 5, 7, 10_000, 1 << 50] {
            all.record(v);
        }
        a.merge(&b);
        assert_eq!(a, all);
        assert_eq!(a.saturated, 1);
        assert!(a.is_valid());
    }
}
