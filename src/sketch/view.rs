//! The sorted, weighted view of a KLL sketch's retained items, which rank and quantile
//! queries search.

/// A KLL sketch's retained items in increasing order, each with its cumulative weight.
///
/// Item `i` stands for `weight(i)` values of the stream (a power of two), and
/// `cumulative()[i]` is the sum of the weights of items `0..=i`: the estimated number of
/// stream values `<=` `values()[i]`. The last cumulative weight equals the sketch's count.
/// Two arrays (not an array of pairs) keep the binary search on values cache-friendly.
///
/// Memory: 16 bytes per retained item. A query is one binary search: `O(log retained)`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SortedView {
    values: Vec<f64>,
    cumulative: Vec<u64>,
}

impl SortedView {
    /// Builds the view from `(value, weight)` pairs in any order (no NaN among them).
    pub(crate) fn from_weighted(mut pairs: Vec<(f64, u64)>) -> SortedView {
        // The levels arrive as sorted runs (level 0 excepted): the stable sort merges runs.
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut values = Vec::with_capacity(pairs.len());
        let mut cumulative = Vec::with_capacity(pairs.len());
        let mut total = 0u64;
        for (value, weight) in pairs {
            total = total.saturating_add(weight);
            values.push(value);
            cumulative.push(total);
        }
        SortedView { values, cumulative }
    }

    /// The retained values in increasing order.
    #[must_use]
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// The cumulative weights: `cumulative()[i]` is the total weight of items `0..=i`.
    #[must_use]
    pub fn cumulative(&self) -> &[u64] {
        &self.cumulative
    }

    /// Number of retained items.
    #[must_use]
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the view holds no item (the sketch is empty).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Total weight: the number of values the sketch has seen.
    #[must_use]
    pub fn total_weight(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// `(value, weight)` pairs in increasing value order, with each item's own weight (not
    /// cumulative).
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (f64, u64)> + '_ {
        let mut previous = 0u64;
        self.values
            .iter()
            .zip(&self.cumulative)
            .map(move |(&value, &cumulative)| {
                let weight = cumulative - previous;
                previous = cumulative;
                (value, weight)
            })
    }

    /// Estimated fraction of values `<= x`, from the items alone (0 when empty).
    #[inline]
    #[must_use]
    pub fn rank(&self, x: f64) -> f64 {
        let below = self.values.partition_point(|&v| v <= x);
        match below.checked_sub(1) {
            Some(last) => self.cumulative[last] as f64 / self.total_weight() as f64,
            None => 0.0,
        }
    }

    /// The smallest retained value whose cumulative weight reaches `q` of the total, `None`
    /// when empty or `q` is outside [0, 1].
    #[must_use]
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.values.is_empty() || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let target = q * self.total_weight() as f64;
        let index = self.cumulative.partition_point(|&c| (c as f64) < target);
        self.values
            .get(index)
            .or_else(|| self.values.last())
            .copied()
    }

    /// Heap bytes held.
    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        self.values.capacity() * size_of::<f64>() + self.cumulative.capacity() * size_of::<u64>()
    }
}
