//! The KLL quantile sketch (Karnin, Lang and Liberty, 2016), laid out in the manner of
//! Apache DataSketches: one buffer of compactor levels with lazy compaction.

use std::fmt;
use std::sync::OnceLock;

use super::error::SketchError;
use super::rng::SplitMix64;
use super::view::SortedView;

/// The default `k`: 1024, for drift statistics.
///
/// Drift tests (Kolmogorov-Smirnov, PSI) compare two sketches' CDFs, so the sketch's rank
/// error adds directly to the statistic: with `k = 200` (DataSketches' default) the
/// single-sided rank error at 99% confidence is about 1.33%, larger than the KS distance
/// that flags drift on large samples, and whylogs moved from 256 to 1024 after KS p-values
/// swung between runs. At `k = 1024` the bound is about 0.27%, for about 24 KiB of items
/// per sketch (3,021 items retained, a 24.2 KB encoding, after 10^6 values; 3,230 items,
/// 25.9 KB, after 10^8).
pub const DEFAULT_K: u16 = 1024;

/// The smallest supported `k`.
pub const MIN_K: u16 = 8;

/// The seed of [`KllSketch::new`] and [`KllSketch::default`].
pub const DEFAULT_SEED: u64 = 0x6d6f_6465_6c67_6174;

/// No level is narrower than this many items (or `k`, when `k` is smaller). DataSketches
/// uses 8. On a long stream every deep level sits at this floor, and the lowest one compacts
/// each time it fills: at 8 that was every 4 updates, and the fixed cost of a compaction made
/// an update about 1.5x slower than at 32 (`benches/sketch.rs`). Wider deep levels only
/// lower the rank error; they cost a few dozen items at 10^6 values (~3,090 retained instead
/// of ~3,050 at `k = 1024`) and about 470 items (3.7 KiB) at 30 levels.
const DEEP_WIDTH: u32 = 32;

/// Most levels a sketch has: level `h` items weigh `2^h`, so 64 levels cover any `u64`
/// count.
pub(crate) const MAX_LEVELS: usize = 64;

/// Capacity of a level `depth` levels below the top: `k·(2/3)^depth` rounded, at least
/// `min(k, 32)` ([`DEEP_WIDTH`]), so the top level holds exactly `k`. Integer arithmetic, so
/// every platform computes the same layout.
pub(crate) fn depth_capacity(k: u16, depth: usize) -> u32 {
    let floor = DEEP_WIDTH.min(u32::from(k));
    // k·(2/3)^30 < 0.4 for every u16 k, so deeper levels all have the floor width.
    if depth > 30 {
        return floor;
    }
    // 2k·2^depth < 2^48 and 3^depth < 2^48: no overflow.
    let twice = (u64::from(k) << 1) << depth;
    let rounded = (twice / 3u64.pow(depth as u32)).div_ceil(2);
    (rounded as u32).max(floor)
}

/// A mergeable quantile sketch of a stream of `f64` values, with a guaranteed rank error.
///
/// **Algorithm.** Items live in compactor levels; an item at level `h` stands for `2^h`
/// values. The top level holds up to `k` items and each level below holds 2/3 of the one
/// above (at least 8). Compaction is lazy: only when the whole buffer is full does the
/// lowest level at or over its capacity get sorted, and every other item of it (odd or
/// even positions, by a coin flip) moves up one level, the rest being dropped. The coin
/// comes from a seeded generator kept in the sketch ([`KllSketch::with_seed`]), so a
/// sketch built from the same values in the same order is the same, bit for bit.
///
/// **Error.** For any `x`, `|rank(x) - true rank| <= normalized_rank_error()` with 99%
/// confidence: `2.296 / k^0.9723` (DataSketches' published single-sided bound), 0.27% at
/// `k = 1024`. The count, minimum and maximum are exact, and so are ranks while
/// [`KllSketch::is_exact`] holds (fewer than `k` values seen).
///
/// **Values.** NaN is counted as missing ([`KllSketch::missing`]) and never inserted.
/// `+inf` and `-inf` are ordinary values: they sort at the ends, count in
/// [`KllSketch::count`], and can be the minimum, maximum or a quantile.
///
/// **Cost.** `update` is a few instructions and amortised allocation-free: the buffer is
/// allocated up front and compaction works in place; it grows only when a level is added
/// (when the count doubles). Memory: `8·capacity` bytes of items (24.5 KiB at `k = 1024`
/// once ~10^6 values are in; `capacity ≈ 3k`), plus 16 bytes per retained item for the
/// cached sorted view once a query has been made. Queries (`rank`, `cdf`, `quantile`) build
/// the sorted view on first use and cache it inside the sketch until the next mutation
/// (`update`, `merge`): later queries are one binary search.
#[derive(Clone)]
pub struct KllSketch {
    k: u16,
    /// The smallest `k` of any sketch merged in that had compacted: it sets the bound.
    min_k: u16,
    n: u64,
    missing: u64,
    min: f64,
    max: f64,
    /// `[free | level 0 | level 1 | ... | top level]`; its length is the total capacity
    /// (only the items right after decoding: the free space is added on the next update).
    items: Vec<f64>,
    /// `levels[h]..levels[h + 1]` are level `h`'s items; `levels[num_levels] == items.len()`.
    /// Levels 1 and up are sorted; level 0 is in arrival order.
    levels: Vec<u32>,
    /// `depth_caps[d]`: capacity of the level `d` levels below the top; one per level.
    depth_caps: Vec<u32>,
    rng: SplitMix64,
    view: OnceLock<SortedView>,
}

/// The parts of a sketch as encoded, validated by [`KllSketch::from_parts`].
pub(crate) struct KllParts {
    pub(crate) k: u64,
    pub(crate) min_k: u64,
    pub(crate) n: u64,
    pub(crate) missing: u64,
    pub(crate) min_max: Option<(f64, f64)>,
    pub(crate) level_sizes: Vec<u64>,
    pub(crate) items: Vec<f64>,
    pub(crate) rng: u64,
}

impl Default for KllSketch {
    /// An empty sketch with [`DEFAULT_K`] and [`DEFAULT_SEED`].
    fn default() -> Self {
        KllSketch::build(DEFAULT_K, DEFAULT_SEED)
    }
}

impl KllSketch {
    /// [`DEFAULT_K`], also reachable from the type.
    pub const DEFAULT_K: u16 = DEFAULT_K;

    /// An empty sketch with parameter `k` (8 to 65535) and [`DEFAULT_SEED`].
    ///
    /// # Errors
    ///
    /// [`SketchError::InvalidK`] when `k < 8`.
    pub fn new(k: u16) -> Result<KllSketch, SketchError> {
        KllSketch::with_seed(k, DEFAULT_SEED)
    }

    /// An empty sketch with parameter `k` whose coin flips come from `seed`. Sketches that
    /// will be merged should have different seeds (for example the shard index), so that
    /// their compaction errors are independent.
    ///
    /// # Errors
    ///
    /// [`SketchError::InvalidK`] when `k < 8`.
    pub fn with_seed(k: u16, seed: u64) -> Result<KllSketch, SketchError> {
        if k < MIN_K {
            return Err(SketchError::InvalidK { k: k.into() });
        }
        Ok(KllSketch::build(k, seed))
    }

    fn build(k: u16, seed: u64) -> KllSketch {
        let capacity = depth_capacity(k, 0);
        let mut depth_caps = Vec::with_capacity(16);
        depth_caps.push(capacity);
        KllSketch {
            k,
            min_k: k,
            n: 0,
            missing: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            items: vec![0.0; capacity as usize],
            levels: vec![capacity, capacity],
            depth_caps,
            rng: SplitMix64::new(seed),
            view: OnceLock::new(),
        }
    }

    /// Adds one value. NaN counts as missing and is not inserted; `±inf` are inserted.
    #[inline]
    pub fn update(&mut self, x: f64) {
        if x.is_nan() {
            self.missing = self.missing.saturating_add(1);
            return;
        }
        if self.levels[0] == 0 {
            self.make_room();
        }
        let slot = self.levels[0] - 1;
        self.levels[0] = slot;
        self.items[slot as usize] = x;
        self.n = self.n.saturating_add(1);
        if x < self.min {
            self.min = x;
        }
        if x > self.max {
            self.max = x;
        }
        self.invalidate_view();
    }

    /// Counts one missing value (the same as `update(f64::NAN)`).
    #[inline]
    pub fn update_missing(&mut self) {
        self.missing = self.missing.saturating_add(1);
    }

    #[inline]
    fn invalidate_view(&mut self) {
        if self.view.get().is_some() {
            self.view = OnceLock::new();
        }
    }

    /// Frees at least 4 slots by compacting the lowest full level (the buffer is full).
    #[cold]
    #[inline(never)]
    fn make_room(&mut self) {
        let capacity = self.capacity();
        if self.items.len() < capacity {
            // A decoded sketch holds only its items: the free space comes on first update.
            self.grow_front(capacity - self.items.len());
            return;
        }
        let h = lowest_full_level(&self.levels, &self.depth_caps);
        if h + 1 == self.num_levels() && self.num_levels() < MAX_LEVELS {
            // A new, empty top level; its capacity is free space at the front.
            let extra = depth_capacity(self.k, self.num_levels());
            self.grow_front(extra as usize);
            self.levels.push(self.items.len() as u32);
            self.depth_caps.push(extra);
        }
        let coin = self.rng.coin();
        compact_level(&mut self.items, &mut self.levels, h, coin);
    }

    /// The total capacity of the levels.
    fn capacity(&self) -> usize {
        self.depth_caps.iter().map(|&c| c as usize).sum()
    }

    /// Adds `extra` free slots at the front of the buffer.
    fn grow_front(&mut self, extra: usize) {
        let old_len = self.items.len();
        let start = self.levels[0] as usize;
        // Exactly: the buffer is the sketch's memory, and it grows once per level.
        self.items.reserve_exact(extra);
        self.items.resize(old_len + extra, 0.0);
        self.items.copy_within(start..old_len, start + extra);
        for bound in &mut self.levels {
            *bound += extra as u32;
        }
    }

    /// Merges `other` into `self`: the count, missing count, minimum and maximum stay exact,
    /// no weight is lost (the retained weights still add up to the count), and the rank
    /// error bound is that of the smaller `k` of the two (when that sketch had compacted).
    /// Any merge order (or tree) gives a sketch within the same bound. `self` keeps its own
    /// `k` and seed.
    ///
    /// Cost: `O(retained)` plus one allocation of a work buffer.
    pub fn merge(&mut self, other: &KllSketch) {
        self.missing = self.missing.saturating_add(other.missing);
        if other.n == 0 {
            return;
        }
        self.invalidate_view();
        if !other.is_exact() {
            self.min_k = self.min_k.min(other.min_k);
        }
        self.n = self.n.saturating_add(other.n);
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);

        // Level by level, both sketches' items: level 0 concatenated, the sorted levels merged.
        let num_levels = self.num_levels().max(other.num_levels());
        let mut work = Vec::with_capacity(self.retained() + other.retained());
        let mut bounds = Vec::with_capacity(num_levels + 4);
        bounds.push(0u32);
        for h in 0..num_levels {
            let (mine, theirs) = (self.level_or_empty(h), other.level_or_empty(h));
            if h == 0 {
                work.extend_from_slice(mine);
                work.extend_from_slice(theirs);
            } else {
                push_merged(&mut work, mine, theirs);
            }
            bounds.push(work.len() as u32);
        }
        while self.depth_caps.len() < num_levels {
            self.depth_caps
                .push(depth_capacity(self.k, self.depth_caps.len()));
        }
        let mut capacity: usize = self.depth_caps.iter().map(|&c| c as usize).sum();

        // Compact the lowest full level until everything fits.
        while work.len() - bounds[0] as usize > capacity {
            let h = lowest_full_level(&bounds, &self.depth_caps);
            let levels = bounds.len() - 1;
            if h + 1 == levels && levels < MAX_LEVELS {
                let extra = depth_capacity(self.k, levels);
                self.depth_caps.push(extra);
                capacity += extra as usize;
                bounds.push(work.len() as u32);
            }
            let coin = self.rng.coin();
            compact_level(&mut work, &mut bounds, h, coin);
        }

        // Lay the result out with the free space at the front.
        let start = bounds[0] as usize;
        let shift = capacity - (work.len() - start);
        self.items.clear();
        self.items.resize(capacity, 0.0);
        self.items[shift..].copy_from_slice(&work[start..]);
        self.levels.clear();
        self.levels
            .extend(bounds.iter().map(|&b| (b as usize - start + shift) as u32));
    }

    /// Number of values inserted (NaN excluded; `±inf` included).
    #[must_use]
    pub fn count(&self) -> u64 {
        self.n
    }

    /// Number of missing values (NaN updates and [`KllSketch::update_missing`]).
    #[must_use]
    pub fn missing(&self) -> u64 {
        self.missing
    }

    /// Whether no value has been inserted (missing values do not count).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The exact smallest value inserted, `None` when empty.
    #[must_use]
    pub fn min(&self) -> Option<f64> {
        (self.n > 0).then_some(self.min)
    }

    /// The exact largest value inserted, `None` when empty.
    #[must_use]
    pub fn max(&self) -> Option<f64> {
        (self.n > 0).then_some(self.max)
    }

    /// The parameter `k` this sketch was built with.
    #[must_use]
    pub fn k(&self) -> u16 {
        self.k
    }

    /// Whether the sketch still holds every value it was given (no compaction yet), so that
    /// ranks and quantiles are exact.
    #[must_use]
    pub fn is_exact(&self) -> bool {
        self.num_levels() == 1
    }

    /// Estimated fraction of the inserted values that are `<= x`, in [0, 1]. Exact (0 or 1)
    /// below the minimum and from the maximum up; 0 when the sketch is empty; NaN when `x`
    /// is NaN. Within [`KllSketch::normalized_rank_error`] of the true fraction with 99%
    /// confidence. Builds the cached sorted view on first use after a mutation, then costs
    /// one binary search.
    #[must_use]
    pub fn rank(&self, x: f64) -> f64 {
        if x.is_nan() {
            return f64::NAN;
        }
        if self.n == 0 || x < self.min {
            return 0.0;
        }
        if x >= self.max {
            return 1.0;
        }
        self.sorted_view().rank(x)
    }

    /// The estimated CDF at `x`: the same as [`KllSketch::rank`].
    #[inline]
    #[must_use]
    pub fn cdf(&self, x: f64) -> f64 {
        self.rank(x)
    }

    /// An estimated `q`-quantile: a retained value `v` whose rank is about `q`
    /// (`|rank(v) - q| <= normalized_rank_error()` with 99% confidence). `q = 0` and
    /// `q = 1` give the exact minimum and maximum. `None` when the sketch is empty or `q`
    /// is outside [0, 1] (or NaN).
    #[must_use]
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.n == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        if q == 0.0 {
            return Some(self.min);
        }
        if q == 1.0 {
            return Some(self.max);
        }
        self.sorted_view()
            .quantile(q)
            .map(|v| v.max(self.min).min(self.max))
    }

    /// The single-sided rank error this sketch guarantees with 99% confidence, as a
    /// fraction: `2.296 / k^0.9723` for the smallest `k` merged in (DataSketches' published
    /// fit for KLL), 0.27% at `k = 1024` and 1.33% at `k = 200`. The property tests check it
    /// on 10^6-value streams and on merges of 100 sketches.
    #[must_use]
    pub fn normalized_rank_error(&self) -> f64 {
        2.296 / f64::from(self.min_k).powf(0.9723)
    }

    /// Number of items the sketch keeps (at most about `3k`).
    #[must_use]
    pub fn retained(&self) -> usize {
        self.items.len() - self.levels[0] as usize
    }

    /// The retained items sorted by value with their cumulative weights (see
    /// [`SortedView`]). Built on first use after a mutation and cached in the sketch (a
    /// [`OnceLock`], so `&self` queries are safe from several threads) until the next
    /// `update` or `merge`.
    #[must_use]
    pub fn sorted_view(&self) -> &SortedView {
        self.view.get_or_init(|| {
            let mut pairs = Vec::with_capacity(self.retained());
            for h in 0..self.num_levels() {
                let weight = 1u64 << h;
                pairs.extend(self.level(h).iter().map(|&v| (v, weight)));
            }
            SortedView::from_weighted(pairs)
        })
    }

    /// A copy of the retained items, in no particular order (each stands for a power-of-two
    /// number of values; [`KllSketch::sorted_view`] gives them sorted, with weights, and
    /// without a copy).
    #[must_use]
    pub fn retained_values(&self) -> Vec<f64> {
        self.retained_items().to_vec()
    }

    /// Length of [`KllSketch::to_bytes`], computed without encoding.
    #[must_use]
    pub fn size_bytes(&self) -> usize {
        super::codec::kll_encoded_len(self)
    }

    /// Heap bytes held: the item buffer, the level tables and the cached sorted view.
    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        self.items.capacity() * size_of::<f64>()
            + (self.levels.capacity() + self.depth_caps.capacity()) * size_of::<u32>()
            + self.view.get().map_or(0, SortedView::heap_bytes)
    }

    pub(crate) fn num_levels(&self) -> usize {
        self.levels.len() - 1
    }

    fn level(&self, h: usize) -> &[f64] {
        &self.items[self.levels[h] as usize..self.levels[h + 1] as usize]
    }

    fn level_or_empty(&self, h: usize) -> &[f64] {
        if h < self.num_levels() {
            self.level(h)
        } else {
            &[]
        }
    }

    /// Sizes of levels 0, 1, ... as encoded.
    pub(crate) fn level_sizes(&self) -> impl Iterator<Item = u32> + '_ {
        self.levels.windows(2).map(|w| w[1] - w[0])
    }

    /// The retained items, level 0 first, as encoded.
    pub(crate) fn retained_items(&self) -> &[f64] {
        &self.items[self.levels[0] as usize..]
    }

    pub(crate) fn min_k(&self) -> u16 {
        self.min_k
    }

    pub(crate) fn rng_state(&self) -> u64 {
        self.rng.state()
    }

    /// Rebuilds a sketch from decoded parts, checking every invariant the sketch relies on.
    pub(crate) fn from_parts(parts: KllParts) -> Result<KllSketch, SketchError> {
        let corrupt = |reason| SketchError::Corrupt {
            what: "KLL sketch",
            reason,
        };
        let k = u16::try_from(parts.k)
            .ok()
            .filter(|&k| k >= MIN_K)
            .ok_or(SketchError::InvalidK { k: parts.k })?;
        let min_k = u16::try_from(parts.min_k)
            .ok()
            .filter(|m| (MIN_K..=k).contains(m))
            .ok_or(corrupt("min_k must be from 8 to k"))?;
        let num_levels = parts.level_sizes.len();
        if num_levels == 0 || num_levels > MAX_LEVELS {
            return Err(corrupt("a sketch has 1 to 64 levels"));
        }
        let depth_caps: Vec<u32> = (0..num_levels).map(|d| depth_capacity(k, d)).collect();
        let capacity: usize = depth_caps.iter().map(|&c| c as usize).sum();
        let mut retained = 0usize;
        let mut weight = 0u128;
        for (h, &size) in parts.level_sizes.iter().enumerate() {
            let size = usize::try_from(size)
                .ok()
                .filter(|&s| s <= capacity)
                .ok_or(corrupt(
                    "a level holds more items than the sketch's capacity",
                ))?;
            retained += size;
            weight += (size as u128) << h;
        }
        if retained > capacity {
            return Err(corrupt("more items than the levels can hold"));
        }
        if retained != parts.items.len() {
            return Err(corrupt("the level sizes do not add up to the items"));
        }
        if weight != u128::from(parts.n) {
            return Err(corrupt("the items' total weight differs from the count"));
        }
        let (min, max) = match (parts.n, parts.min_max) {
            (0, None) if num_levels == 1 => (f64::INFINITY, f64::NEG_INFINITY),
            (0, _) => return Err(corrupt("an empty sketch has one level and no min or max")),
            (_, None) => return Err(corrupt("a non-empty sketch needs a min and a max")),
            (_, Some((min, max))) => {
                if min.is_nan() || max.is_nan() || min > max {
                    return Err(corrupt("min must be <= max, and neither NaN"));
                }
                (min, max)
            }
        };
        if !parts.items.iter().all(|&v| min <= v && v <= max) {
            return Err(corrupt("an item is NaN or outside [min, max]"));
        }
        // Only the items: the free space is allocated by the first update, so that a decoded
        // sketch never holds more memory than its encoding claimed.
        let mut levels = Vec::with_capacity(num_levels + 1);
        let mut bound = 0usize;
        levels.push(0);
        for (h, &size) in parts.level_sizes.iter().enumerate() {
            let next = bound + size as usize;
            if h > 0 && !parts.items[bound..next].is_sorted() {
                return Err(corrupt("a level above level 0 is not sorted"));
            }
            bound = next;
            levels.push(bound as u32);
        }
        let items = parts.items;
        Ok(KllSketch {
            k,
            min_k,
            n: parts.n,
            missing: parts.missing,
            min,
            max,
            items,
            levels,
            depth_caps,
            rng: SplitMix64::new(parts.rng),
            view: OnceLock::new(),
        })
    }
}

impl PartialEq for KllSketch {
    /// Same parameters, counts, extremes, generator state and retained items level by
    /// level (the cached view is ignored).
    fn eq(&self, other: &Self) -> bool {
        self.k == other.k
            && self.min_k == other.min_k
            && self.n == other.n
            && self.missing == other.missing
            && self.min() == other.min()
            && self.max() == other.max()
            && self.rng == other.rng
            && self.level_sizes().eq(other.level_sizes())
            && self.retained_items() == other.retained_items()
    }
}

impl fmt::Debug for KllSketch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KllSketch")
            .field("k", &self.k)
            .field("min_k", &self.min_k)
            .field("count", &self.n)
            .field("missing", &self.missing)
            .field("min", &self.min())
            .field("max", &self.max())
            .field("retained", &self.retained())
            .field("level_sizes", &self.level_sizes().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The lowest level holding at least its capacity (the top level when none does).
fn lowest_full_level(levels: &[u32], depth_caps: &[u32]) -> usize {
    let num_levels = levels.len() - 1;
    (0..num_levels)
        .find(|&h| levels[h + 1] - levels[h] >= depth_caps[num_levels - 1 - h])
        .unwrap_or(num_levels - 1)
}

/// Compacts level `h` of `items` in place: sorts it (level 0), keeps its smallest item when
/// its size is odd, moves the odd- or even-position half (by `coin`) into level `h + 1` by a
/// sorted merge, and shifts the levels below up over the freed slots. With no level above
/// (only at [`MAX_LEVELS`], beyond 2^63 values), the half stays in place and the rest is
/// dropped.
fn compact_level(items: &mut [f64], levels: &mut [u32], h: usize, coin: bool) {
    let begin = levels[h] as usize;
    let end = levels[h + 1] as usize;
    if h == 0 {
        sort_values(&mut items[begin..end]);
    }
    let size = end - begin;
    let odd = size & 1;
    let first = begin + odd;
    let half = (size - odd) / 2;
    let offset = usize::from(coin);
    for i in 0..half {
        items[first + i] = items[first + offset + 2 * i];
    }
    let low = levels[0] as usize;
    match levels.get(h + 2) {
        Some(&above_end) => {
            // Merge the half [first, first + half) with level h + 1 [end, above_end) into
            // [first + half, above_end). Writing never overtakes an unread item: the output
            // position is at most that of the next unread item of level h + 1.
            let above_end = above_end as usize;
            let (mut a, a_end, mut b) = (first, first + half, end);
            let mut out = a_end;
            // Branch-free: which side a step takes is a coin flip on random data, and a
            // mispredicted branch per item cost more than the rest of the loop.
            while a < a_end && b < above_end {
                let (x, y) = (items[a], items[b]);
                let take_b = y < x;
                items[out] = if take_b { y } else { x };
                b += usize::from(take_b);
                a += usize::from(!take_b);
                out += 1;
            }
            items.copy_within(a..a_end, out);
            items.copy_within(low..first, low + half);
            levels[h + 1] = (first + half) as u32;
        }
        None => {
            items.copy_within(low..first + half, low + half);
        }
    }
    for bound in &mut levels[..=h] {
        *bound += half as u32;
    }
}

/// Sorts values (no NaN) in increasing order. Each value is first mapped to the bits of a
/// `u64` whose unsigned order is the values' total order, so that the sort compares
/// integers (about twice as fast as [`f64::total_cmp`]), then mapped back.
fn sort_values(values: &mut [f64]) {
    const SIGN: u64 = 1 << 63;
    for v in values.iter_mut() {
        let bits = v.to_bits();
        let mask = ((bits as i64 >> 63) as u64) | SIGN;
        *v = f64::from_bits(bits ^ mask);
    }
    values.sort_unstable_by_key(|v| v.to_bits());
    for v in values.iter_mut() {
        let key = v.to_bits();
        let mask = if key & SIGN != 0 { SIGN } else { u64::MAX };
        *v = f64::from_bits(key ^ mask);
    }
}

/// Appends the sorted merge of two sorted slices.
fn push_merged(out: &mut Vec<f64>, a: &[f64], b: &[f64]) {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if b[j] < a[i] {
            out.push(b[j]);
            j += 1;
        } else {
            out.push(a[i]);
            i += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_invariants(s: &KllSketch) {
        assert_eq!(s.levels.len(), s.depth_caps.len() + 1);
        assert_eq!(*s.levels.last().unwrap() as usize, s.items.len());
        assert!(s.capacity() >= s.retained());
        assert!(s.capacity() >= s.items.len());
        let mut weight = 0u128;
        for h in 0..s.num_levels() {
            let level = s.level(h);
            if h > 0 {
                assert!(level.is_sorted(), "level {h} unsorted");
            }
            weight += (level.len() as u128) << h;
        }
        assert_eq!(weight, u128::from(s.n));
    }

    #[test]
    fn values_sort_in_total_order() {
        let mut v = vec![
            3.0,
            -0.0,
            f64::INFINITY,
            -1e300,
            0.0,
            f64::MIN_POSITIVE,
            -f64::MIN_POSITIVE,
            f64::NEG_INFINITY,
            -2.5,
            1e-310,
        ];
        let mut expected = v.clone();
        expected.sort_by(f64::total_cmp);
        sort_values(&mut v);
        assert_eq!(
            v.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            expected.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn capacities_follow_two_thirds() {
        assert_eq!(depth_capacity(1024, 0), 1024);
        assert_eq!(depth_capacity(1024, 1), 683);
        assert_eq!(depth_capacity(1024, 2), 455);
        assert_eq!(depth_capacity(200, 0), 200);
        assert_eq!(depth_capacity(200, 1), 133);
        assert_eq!(depth_capacity(1024, 8), 40);
        assert_eq!(depth_capacity(1024, 9), 32);
        assert_eq!(depth_capacity(1024, 10), 32);
        assert_eq!(depth_capacity(8, 0), 8);
        assert_eq!(depth_capacity(8, 3), 8);
        assert_eq!(depth_capacity(20, 5), 20);
        assert_eq!(depth_capacity(65535, 30), 32);
        assert_eq!(depth_capacity(65535, 64), 32);
    }

    #[test]
    fn updates_and_merges_keep_the_invariants() {
        let mut a = KllSketch::with_seed(16, 1).unwrap();
        let mut b = KllSketch::with_seed(32, 2).unwrap();
        for i in 0..10_000u32 {
            a.update(f64::from(i % 977));
            b.update(-f64::from(i));
            if i % 1000 == 0 {
                check_invariants(&a);
                check_invariants(&b);
            }
        }
        check_invariants(&a);
        a.merge(&b);
        check_invariants(&a);
        assert_eq!(a.count(), 20_000);
        assert_eq!(a.min(), Some(-9999.0));
        assert_eq!(a.max(), Some(976.0));
        assert_eq!(a.min_k, 16);
        for i in 0..5_000 {
            a.update(f64::from(i));
        }
        check_invariants(&a);
    }

    #[test]
    fn level_cap_drops_instead_of_overflowing() {
        let mut items = vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let mut levels = vec![0, 0, 9];
        compact_level(&mut items, &mut levels, 1, true);
        assert_eq!(levels, vec![4, 4, 9]);
        assert_eq!(&items[4..], &[0.0, 2.0, 4.0, 6.0, 8.0]);
    }
}
