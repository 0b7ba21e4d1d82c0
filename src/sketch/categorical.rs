//! Frequencies of a categorical feature: exact up to a number of distinct values, then a
//! Misra-Gries heavy-hitters summary.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::error::SketchError;

/// The default number of distinct values counted exactly.
pub const DEFAULT_MAX_DISTINCT: usize = 256;

/// The largest accepted `max_distinct`.
pub const MAX_DISTINCT_LIMIT: usize = 1 << 16;

/// Counts of the values of a categorical feature, mergeable, in bounded memory.
///
/// **Algorithm.** Misra-Gries with `m = max_distinct` counters. A value with a counter is
/// incremented; a new value takes a free counter; when all `m` are taken, every counter is
/// decremented by one (and the new value's unit dropped), freeing those that reach zero.
/// While at most `m` distinct values have been seen nothing is ever decremented, so the
/// counts are exact ([`CategoricalProfile::is_exact`]). Merging adds the counters and, past
/// `m`, subtracts the `(m+1)`-th largest count from all (Agarwal et al., *Mergeable
/// summaries*, 2012).
///
/// **Error.** Every estimate is an undercount by at most
/// [`CategoricalProfile::max_error`] `= other() / (m + 1) <= count / (m + 1)`, where
/// [`CategoricalProfile::other`] is the mass not attributed to any counter (the "other"
/// bucket). So every value more frequent than `count / (m + 1)` has a counter. After merging
/// profiles of different limits, `m` is the smaller one.
///
/// **Values.** Any string, the empty string included, is a value; missing values are
/// counted apart ([`CategoricalProfile::update_missing`]).
///
/// **Cost.** An update of a value already counted is one hash lookup (xxh3) with no
/// allocation; a new value allocates its string; a decrement pass costs `O(m)` but removes
/// `m + 1` units, so it is amortised `O(1)`. Memory: at most `m` strings and counters.
#[derive(Debug, Clone, PartialEq)]
pub struct CategoricalProfile {
    max_distinct: usize,
    count: u64,
    missing: u64,
    counters: HashMap<Box<str>, u64, BuildHasherDefault<StrHasher>>,
}

/// The parts of a profile as encoded, validated by [`CategoricalProfile::from_parts`].
pub(crate) struct CategoricalParts {
    pub(crate) max_distinct: u64,
    pub(crate) count: u64,
    pub(crate) missing: u64,
    pub(crate) counters: Vec<(String, u64)>,
}

impl Default for CategoricalProfile {
    /// An empty profile with [`DEFAULT_MAX_DISTINCT`] counters.
    fn default() -> Self {
        CategoricalProfile::build(DEFAULT_MAX_DISTINCT)
    }
}

impl CategoricalProfile {
    /// An empty profile that counts up to `max_distinct` values exactly (1 to
    /// [`MAX_DISTINCT_LIMIT`]).
    ///
    /// # Errors
    ///
    /// [`SketchError::InvalidMaxDistinct`] when `max_distinct` is 0 or above the limit.
    pub fn new(max_distinct: usize) -> Result<CategoricalProfile, SketchError> {
        if max_distinct == 0 || max_distinct > MAX_DISTINCT_LIMIT {
            return Err(SketchError::InvalidMaxDistinct {
                max_distinct: max_distinct as u64,
                max: MAX_DISTINCT_LIMIT as u64,
            });
        }
        Ok(CategoricalProfile::build(max_distinct))
    }

    fn build(max_distinct: usize) -> CategoricalProfile {
        CategoricalProfile {
            max_distinct,
            count: 0,
            missing: 0,
            counters: HashMap::default(),
        }
    }

    /// Counts one occurrence of `value` (the empty string is a value).
    pub fn update(&mut self, value: &str) {
        self.count = self.count.saturating_add(1);
        if let Some(counter) = self.counters.get_mut(value) {
            *counter = counter.saturating_add(1);
        } else if self.counters.len() < self.max_distinct {
            self.counters.insert(value.into(), 1);
        } else {
            self.counters.retain(|_, counter| {
                *counter -= 1;
                *counter > 0
            });
        }
    }

    /// Counts one missing value.
    pub fn update_missing(&mut self) {
        self.missing = self.missing.saturating_add(1);
    }

    /// Merges `other` into `self`: counts and missing counts add up exactly; the result is
    /// exact while the union has at most `m` distinct values (`m` the smaller limit), and
    /// the error bound stays `other() / (m + 1)`.
    pub fn merge(&mut self, other: &CategoricalProfile) {
        self.count = self.count.saturating_add(other.count);
        self.missing = self.missing.saturating_add(other.missing);
        self.max_distinct = self.max_distinct.min(other.max_distinct);
        for (value, &count) in &other.counters {
            match self.counters.get_mut(value.as_ref()) {
                Some(counter) => *counter = counter.saturating_add(count),
                None => {
                    self.counters.insert(value.clone(), count);
                }
            }
        }
        if self.counters.len() > self.max_distinct {
            let mut counts: Vec<u64> = self.counters.values().copied().collect();
            let (_, &mut cut, _) =
                counts.select_nth_unstable_by(self.max_distinct, |a, b| b.cmp(a));
            self.counters.retain(|_, counter| {
                *counter -= cut.min(*counter);
                *counter > 0
            });
        }
    }

    /// Number of values counted (missing excluded).
    #[must_use]
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Number of missing values.
    #[must_use]
    pub fn missing(&self) -> u64 {
        self.missing
    }

    /// The number of values counted exactly before the summary starts to estimate (`m`).
    #[must_use]
    pub fn max_distinct(&self) -> usize {
        self.max_distinct
    }

    /// The mass not attributed to any value: `count()` minus the sum of the estimates (the
    /// "other" bucket). 0 while exact.
    #[must_use]
    pub fn other(&self) -> u64 {
        self.count.saturating_sub(self.tracked())
    }

    /// Whether every estimate is the exact count (at most `m` distinct values so far).
    #[must_use]
    pub fn is_exact(&self) -> bool {
        self.other() == 0
    }

    /// The largest possible undercount of any estimate: `other() / (m + 1)`, at most
    /// `count() / (m + 1)`; 0 while exact. Values absent from
    /// [`CategoricalProfile::frequencies`] occurred at most this many times.
    #[must_use]
    pub fn max_error(&self) -> u64 {
        self.other() / (self.max_distinct as u64 + 1)
    }

    /// The estimated count of `value`: at most its true count, and at least its true count
    /// minus [`CategoricalProfile::max_error`].
    #[must_use]
    pub fn estimate(&self, value: &str) -> u64 {
        self.counters.get(value).copied().unwrap_or(0)
    }

    /// Every value with a counter and its estimated count (each an undercount by at most
    /// [`CategoricalProfile::max_error`]), ordered by value. Values not listed occurred at
    /// most `max_error()` times; their total is [`CategoricalProfile::other`].
    #[must_use]
    pub fn frequencies(&self) -> BTreeMap<String, u64> {
        self.counters
            .iter()
            .map(|(v, &c)| (v.to_string(), c))
            .collect()
    }

    /// The `n` most frequent values with their estimated counts, most frequent first (ties
    /// by value).
    #[must_use]
    pub fn top(&self, n: usize) -> Vec<(&str, u64)> {
        let mut all: Vec<(&str, u64)> = self.counters.iter().map(|(v, &c)| (&**v, c)).collect();
        all.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        all.truncate(n);
        all
    }

    /// Number of values with a counter.
    #[must_use]
    pub fn distinct(&self) -> usize {
        self.counters.len()
    }

    /// Length of [`CategoricalProfile::to_bytes`], computed without encoding.
    #[must_use]
    pub fn size_bytes(&self) -> usize {
        super::codec::categorical_encoded_len(self)
    }

    /// Approximate heap bytes held: the table and the strings.
    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        let entry = size_of::<(Box<str>, u64)>() + 1;
        self.counters.capacity() * entry + self.counters.keys().map(|v| v.len()).sum::<usize>()
    }

    fn tracked(&self) -> u64 {
        self.counters
            .values()
            .fold(0u64, |sum, &c| sum.saturating_add(c))
    }

    /// The counters sorted by value, as encoded.
    pub(crate) fn sorted_counters(&self) -> Vec<(&str, u64)> {
        let mut all: Vec<(&str, u64)> = self.counters.iter().map(|(v, &c)| (&**v, c)).collect();
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));
        all
    }

    /// Rebuilds a profile from decoded parts, checking its invariants.
    pub(crate) fn from_parts(parts: CategoricalParts) -> Result<CategoricalProfile, SketchError> {
        let corrupt = |reason| SketchError::Corrupt {
            what: "categorical profile",
            reason,
        };
        let max_distinct = usize::try_from(parts.max_distinct)
            .ok()
            .filter(|m| (1..=MAX_DISTINCT_LIMIT).contains(m))
            .ok_or(SketchError::InvalidMaxDistinct {
                max_distinct: parts.max_distinct,
                max: MAX_DISTINCT_LIMIT as u64,
            })?;
        if parts.counters.len() > max_distinct {
            return Err(corrupt("more counters than max_distinct"));
        }
        let mut counters =
            HashMap::with_capacity_and_hasher(parts.counters.len(), Default::default());
        let mut tracked = 0u64;
        for (value, count) in parts.counters {
            if count == 0 {
                return Err(corrupt("a counter is zero"));
            }
            tracked = tracked
                .checked_add(count)
                .ok_or(corrupt("the counters add up to more than the count"))?;
            if counters.insert(value.into_boxed_str(), count).is_some() {
                return Err(corrupt("a value has two counters"));
            }
        }
        if tracked > parts.count {
            return Err(corrupt("the counters add up to more than the count"));
        }
        Ok(CategoricalProfile {
            max_distinct,
            count: parts.count,
            missing: parts.missing,
            counters,
        })
    }
}

/// Hashes a string key with xxh3 in one call (the std hasher is several times slower).
/// Unseeded, which is fine here: the table holds at most `m` entries, so colliding keys
/// can slow an update to `O(m)` at worst.
#[derive(Default)]
pub(crate) struct StrHasher(u64);

impl Hasher for StrHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxh3_64_with_seed(bytes, self.0);
    }

    fn write_u8(&mut self, byte: u8) {
        self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_below_the_limit_then_bounded() {
        let mut p = CategoricalProfile::new(4).unwrap();
        for v in ["a", "b", "", "a", "c", "a"] {
            p.update(v);
        }
        assert!(p.is_exact());
        assert_eq!(p.top(10), vec![("a", 3), ("", 1), ("b", 1), ("c", 1)]);
        assert_eq!(p.frequencies().get(""), Some(&1));
        p.update("d");
        p.update("e");
        assert!(!p.is_exact());
        assert_eq!(p.count(), 8);
        assert!(p.estimate("a") + p.max_error() >= 3);
        assert!(p.estimate("a") <= 3);
    }

    #[test]
    fn merge_reduces_to_the_smaller_limit() {
        let mut a = CategoricalProfile::new(3).unwrap();
        let mut b = CategoricalProfile::new(8).unwrap();
        for (i, v) in ["x", "y", "z", "w", "v"].iter().enumerate() {
            for _ in 0..=i {
                b.update(v);
            }
        }
        a.update("x");
        a.merge(&b);
        assert_eq!(a.max_distinct(), 3);
        assert!(a.distinct() <= 3);
        assert_eq!(a.count(), 16);
        for (v, truth) in [("x", 2), ("y", 2), ("z", 3), ("w", 4), ("v", 5)] {
            let e = a.estimate(v);
            assert!(
                e <= truth && e + a.max_error() >= truth,
                "{v}: {e} vs {truth}"
            );
        }
    }
}
