//! Per-variant metrics: request and error counters, a latency histogram, late outcomes
//! (binary and continuous), and sketches of predictions and input features.
//!
//! Writers record into their thread's own shard: no lock, no read-modify-write, no cache
//! line shared with another writer (feature and prediction sketches, too large for atomics,
//! sit behind a mutex that only the owning thread and the collector take). [`Metrics::collect`] merges the shards and
//! returns what was recorded since the previous collect: totals are read from monotone
//! counters, so under concurrent recording no increment is lost or counted twice (a value
//! recorded while a collect runs lands in this collect or the next).

mod histogram;
mod moments;
mod shard;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

pub use histogram::{BUCKETS as LATENCY_BUCKETS, LatencyHistogram, bucket_of, bucket_value};
pub use moments::Moments;

use shard::{Profiles, ShardPool};

use crate::sketch::FeatureProfile;

/// Number of error kinds.
pub const ERROR_KINDS: usize = 6;

/// What went wrong in a call: a small fixed set, so counting errors never allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The model did not answer in time.
    Timeout,
    /// The request was shed (overload, rate limit).
    Overloaded,
    /// The request's input was invalid for the model.
    InvalidInput,
    /// The model failed while predicting.
    Model,
    /// The serving code failed around the model.
    Internal,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// All kinds, in index order.
    pub const ALL: [ErrorKind; ERROR_KINDS] = [
        ErrorKind::Timeout,
        ErrorKind::Overloaded,
        ErrorKind::InvalidInput,
        ErrorKind::Model,
        ErrorKind::Internal,
        ErrorKind::Other,
    ];

    /// The kind's name in snapshots.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Model => "model",
            ErrorKind::Internal => "internal",
            ErrorKind::Other => "other",
        }
    }
}

/// Error counts by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCounts {
    /// See [`ErrorKind::Timeout`].
    pub timeout: u64,
    /// See [`ErrorKind::Overloaded`].
    pub overloaded: u64,
    /// See [`ErrorKind::InvalidInput`].
    pub invalid_input: u64,
    /// See [`ErrorKind::Model`].
    pub model: u64,
    /// See [`ErrorKind::Internal`].
    pub internal: u64,
    /// See [`ErrorKind::Other`].
    pub other: u64,
}

impl ErrorCounts {
    fn from_array(a: [u64; ERROR_KINDS]) -> Self {
        ErrorCounts {
            timeout: a[0],
            overloaded: a[1],
            invalid_input: a[2],
            model: a[3],
            internal: a[4],
            other: a[5],
        }
    }

    /// All errors.
    #[must_use]
    pub fn total(&self) -> u64 {
        [
            self.timeout,
            self.overloaded,
            self.invalid_input,
            self.model,
            self.internal,
            self.other,
        ]
        .iter()
        .fold(0u64, |sum, n| sum.saturating_add(*n))
    }

    /// Adds another count.
    pub fn add(&mut self, other: &ErrorCounts) {
        self.timeout = self.timeout.saturating_add(other.timeout);
        self.overloaded = self.overloaded.saturating_add(other.overloaded);
        self.invalid_input = self.invalid_input.saturating_add(other.invalid_input);
        self.model = self.model.saturating_add(other.model);
        self.internal = self.internal.saturating_add(other.internal);
        self.other = self.other.saturating_add(other.other);
    }
}

/// Successes out of trials of a binary outcome (conversion, click, correct prediction).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinaryOutcome {
    /// Trials that succeeded.
    pub successes: u64,
    /// Trials.
    pub trials: u64,
}

/// What one variant recorded over a window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VariantMetrics {
    /// Calls recorded.
    pub requests: u64,
    /// Calls that failed, by kind.
    pub errors: ErrorCounts,
    /// Latency of the calls, in nanoseconds.
    pub latency: LatencyHistogram,
    /// Binary outcomes.
    pub binary: BinaryOutcome,
    /// Continuous outcomes.
    pub outcome: Moments,
    /// Feature rows recorded.
    pub feature_rows: u64,
    /// Sketch of the model's predictions (count, mean, variance and KLL quantiles), when any
    /// were recorded.
    #[serde(default)]
    pub predictions: Option<FeatureProfile>,
    /// Sketches of the input features, in schema order, when any rows were recorded.
    #[serde(default)]
    pub features: Vec<FeatureProfile>,
}

impl VariantMetrics {
    /// Whether nothing was recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        // Every field counts: counters are read one after another, so a window can hold a
        // call's latency before its request (the request lands in the next window).
        self.requests == 0
            && self.errors.total() == 0
            && self.latency.buckets.is_empty()
            && self.latency.saturated == 0
            && self.features.is_empty()
            && self.binary.trials == 0
            && self.outcome.count == 0
            && self.feature_rows == 0
            && self.predictions.as_ref().is_none_or(|p| p.count() == 0)
    }

    /// Adds another window's metrics (exact: counters add, histograms add, moments merge;
    /// sketches merge within their error bound). Feature sketches of another schema length
    /// are left out rather than mixed.
    pub fn merge(&mut self, other: &VariantMetrics) {
        self.requests = self.requests.saturating_add(other.requests);
        self.errors.add(&other.errors);
        self.latency.merge(&other.latency);
        self.binary.successes = self.binary.successes.saturating_add(other.binary.successes);
        self.binary.trials = self.binary.trials.saturating_add(other.binary.trials);
        self.outcome = self.outcome.merge(&other.outcome);
        self.feature_rows = self.feature_rows.saturating_add(other.feature_rows);
        match (self.predictions.as_mut(), other.predictions.as_ref()) {
            (Some(mine), Some(theirs)) => {
                let _ = mine.merge(theirs);
            }
            (None, Some(theirs)) => self.predictions = Some(theirs.clone()),
            _ => {}
        }
        if self.features.is_empty() {
            self.features.clone_from(&other.features);
        } else if self.features.len() == other.features.len() {
            for (mine, theirs) in self.features.iter_mut().zip(&other.features) {
                let _ = mine.merge(theirs);
            }
        }
    }
}

/// Records that could not be accepted, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejections {
    /// An experiment name or id the config does not have.
    pub unknown_experiment: u64,
    /// A variant name or id the experiment does not have.
    pub unknown_variant: u64,
    /// A NaN or infinite value (or a labelled record's value over
    /// [`crate::wire::MAX_LABELLED_VALUE`] in magnitude).
    pub non_finite_value: u64,
    /// More recording threads than the shard limit, or a variant id past the variant limit.
    pub over_limit: u64,
    /// A feature row whose length differs from the feature schema, or a categorical value
    /// longer than [`MAX_CATEGORY_BYTES`].
    #[serde(default)]
    pub schema_mismatch: u64,
}

#[derive(Default)]
struct RejectionCounters([AtomicU64; 5]);

/// Cumulative totals of one variant, as of the previous collect.
#[derive(Clone)]
struct Totals {
    requests: u64,
    errors: [u64; ERROR_KINDS],
    latency: Vec<u64>,
    saturated: u64,
    successes: u64,
    trials: u64,
    outcome: Moments,
    /// The shards' outcome windows of the current collect epoch.
    window: Moments,
    feature_rows: u64,
}

impl Default for Totals {
    fn default() -> Self {
        Totals {
            requests: 0,
            errors: [0; ERROR_KINDS],
            latency: vec![0; LATENCY_BUCKETS],
            saturated: 0,
            successes: 0,
            trials: 0,
            outcome: Moments::default(),
            window: Moments::default(),
            feature_rows: 0,
        }
    }
}

/// Longest categorical feature value an agent keeps (in UTF-8 bytes); longer values are
/// counted as schema mismatches and kept as missing.
pub const MAX_CATEGORY_BYTES: usize = 256;

/// The collector's epoch, on a cache line of its own: recording threads only load it.
#[repr(align(128))]
#[derive(Debug, Default)]
struct CollectEpoch(AtomicU64);

/// Sharded per-variant metrics, indexed by variant id.
///
/// Memory: one shard per recording thread alive (at most `max_shards`); in each, about 19 KiB
/// per variant the thread has recorded for (the latency histogram); plus one cumulative copy
/// per variant for [`Metrics::collect`]. It does not grow with the number of requests.
pub struct Metrics {
    pool: ShardPool,
    numeric_features: Vec<bool>,
    max_variants: usize,
    previous: Mutex<HashMap<usize, Totals>>,
    rejected: RejectionCounters,
    epoch: CollectEpoch,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("max_variants", &self.max_variants)
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// Metrics for variant ids below `max_variants`, with at most `max_shards` recording
    /// threads at once (records from further threads are counted as rejected).
    #[must_use]
    pub fn new(max_variants: usize, max_shards: usize) -> Self {
        Self::with_features(max_variants, max_shards, Vec::new())
    }

    /// Like [`Metrics::new`], with a feature schema: `numeric[i]` tells whether feature `i` is
    /// numeric (else categorical).
    #[must_use]
    pub fn with_features(max_variants: usize, max_shards: usize, numeric: Vec<bool>) -> Self {
        Metrics {
            numeric_features: numeric,
            pool: ShardPool::new(max_variants, max_shards),
            max_variants,
            previous: Mutex::new(HashMap::new()),
            rejected: RejectionCounters::default(),
            epoch: CollectEpoch::default(),
        }
    }

    #[inline]
    fn with_cells(&self, variant: usize, f: impl FnOnce(&shard::VariantCells)) {
        let mut recorded = false;
        let leased = self.pool.with_shard(|shard| {
            if let Some(cells) = shard.cells(variant) {
                f(cells);
                recorded = true;
            }
        });
        if !(leased && recorded) {
            self.reject(Rejection::OverLimit);
        }
    }

    /// Records one call: its latency and whether it failed. No lock, no allocation after the
    /// thread's first record for this variant.
    #[inline]
    pub fn record_call(&self, variant: usize, latency_nanos: u64, error: Option<ErrorKind>) {
        self.with_cells(variant, |c| c.record_call(latency_nanos, error));
    }

    /// Records a binary outcome.
    #[inline]
    pub fn record_binary(&self, variant: usize, success: bool) {
        self.with_cells(variant, |c| c.record_binary(success));
    }

    /// Records a continuous outcome; NaN, infinities and magnitudes over
    /// [`crate::wire::MAX_OUTCOME_MEAN`] are counted as rejected (larger values overflow the
    /// moments, and reports carrying them are refused).
    #[inline]
    pub fn record_outcome(&self, variant: usize, value: f64) {
        if !value.is_finite() || value.abs() > crate::wire::MAX_OUTCOME_MEAN {
            self.reject(Rejection::NonFinite);
            return;
        }
        let epoch = self.epoch.0.load(Ordering::Acquire);
        self.with_cells(variant, |c| c.record_outcome(value, epoch));
    }

    /// Records a prediction value into the variant's prediction sketch; NaN, infinities and
    /// magnitudes over [`crate::wire::MAX_LABELLED_VALUE`] are counted as rejected.
    #[inline]
    pub fn record_prediction(&self, variant: usize, value: f64) {
        if !value.is_finite() || value.abs() > crate::wire::MAX_LABELLED_VALUE {
            self.reject(Rejection::NonFinite);
            return;
        }
        let numeric = &self.numeric_features;
        self.with_cells(variant, |c| {
            c.with_profiles(numeric, |p| p.prediction.update_number(value))
        });
    }

    /// Records one row of input features into the variant's feature sketches. A row of the
    /// wrong length is counted as rejected; a value of the wrong kind (or NaN) counts as
    /// missing; an infinite number or one over [`crate::wire::MAX_LABELLED_VALUE`] in
    /// magnitude counts as missing and as a rejected value; a categorical value longer than
    /// [`MAX_CATEGORY_BYTES`] counts as missing and as a schema mismatch (it would make the
    /// sketches, and the reports that carry them, as large as the values).
    #[inline]
    pub fn record_features(&self, variant: usize, row: &[FeatureValue<'_>]) {
        if row.len() != self.numeric_features.len() {
            self.reject(Rejection::SchemaMismatch);
            return;
        }
        let numeric = &self.numeric_features;
        let (mut out_of_range, mut too_long) = (0u64, 0u64);
        self.with_cells(variant, |c| {
            c.feature_rows.store(
                c.feature_rows.load(Ordering::Relaxed) + 1,
                Ordering::Relaxed,
            );
            c.with_profiles(numeric, |p| {
                for (profile, value) in p.features.iter_mut().zip(row) {
                    match *value {
                        FeatureValue::Number(x) if x.abs() > crate::wire::MAX_LABELLED_VALUE => {
                            // Infinities too (NaN is missing): counted, kept as missing.
                            out_of_range += 1;
                            profile.update_missing();
                        }
                        FeatureValue::Number(x) => profile.update_number(x),
                        FeatureValue::Category(v) if v.len() > MAX_CATEGORY_BYTES => {
                            too_long += 1;
                            profile.update_missing();
                        }
                        FeatureValue::Category(v) => profile.update_category(v),
                        FeatureValue::Missing => profile.update_missing(),
                    }
                }
            });
        });
        if out_of_range > 0 {
            self.rejected.0[Rejection::NonFinite as usize]
                .fetch_add(out_of_range, Ordering::Relaxed);
        }
        if too_long > 0 {
            self.rejected.0[Rejection::SchemaMismatch as usize]
                .fetch_add(too_long, Ordering::Relaxed);
        }
    }

    /// Counts a rejected record.
    pub fn reject(&self, why: Rejection) {
        self.rejected.0[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Rejections so far (cumulative).
    #[must_use]
    pub fn rejections(&self) -> Rejections {
        let r = |i: usize| self.rejected.0[i].load(Ordering::Relaxed);
        Rejections {
            unknown_experiment: r(0),
            unknown_variant: r(1),
            non_finite_value: r(2),
            over_limit: r(3),
            schema_mismatch: r(4),
        }
    }

    /// What each variant recorded since the previous `collect`, for variants with anything
    /// new. Concurrent collects are serialised.
    pub fn collect(&self) -> Vec<(usize, VariantMetrics)> {
        let mut previous = self
            .previous
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let shards = self.pool.all();
        // Outcome windows opened in this epoch cover the values recorded since the previous
        // collect read their shard (a thread opens one on its first outcome after seeing the
        // epoch that collect published). A value recorded between that read and the
        // publication lands in the older window: the counts then disagree and the window is
        // derived from the cumulative moments instead.
        let epoch = self.epoch.0.load(Ordering::Relaxed);
        let mut current: HashMap<usize, Totals> = HashMap::new();
        let mut profiles: HashMap<usize, Profiles> = HashMap::new();
        for shard in &shards {
            for variant in 0..shard.capacity() {
                let Some(cells) = shard.existing(variant) else {
                    continue;
                };
                let t = current.entry(variant).or_default();
                let locked = cells.read_locked();
                t.requests += locked.requests;
                for (sum, count) in t.errors.iter_mut().zip(locked.errors) {
                    *sum += count;
                }
                for (sum, cell) in t.latency.iter_mut().zip(cells.latency.iter()) {
                    *sum += cell.load(Ordering::Relaxed);
                }
                t.saturated += cells.latency_saturated.load(Ordering::Relaxed);
                t.feature_rows += cells.feature_rows.load(Ordering::Relaxed);
                t.successes += locked.successes;
                t.trials += locked.trials;
                t.outcome = t.outcome.merge(&locked.outcome);
                if locked.window_epoch == epoch {
                    t.window = t.window.merge(&locked.window);
                }
                // Sketches are taken, not read: each value lands in exactly one collect. The
                // replacement is allocated here, on the collecting thread.
                let fresh = Profiles::new(&self.numeric_features);
                let taken = {
                    let mut guard = cells
                        .profiles
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if guard.is_some() {
                        guard.replace(fresh)
                    } else {
                        None
                    }
                };
                if let Some(p) = taken {
                    match profiles.get_mut(&variant) {
                        Some(slot) => {
                            let _ = slot.prediction.merge(&p.prediction);
                            for (mine, theirs) in slot.features.iter_mut().zip(&p.features) {
                                let _ = mine.merge(theirs);
                            }
                        }
                        None => {
                            profiles.insert(variant, p);
                        }
                    }
                }
            }
        }
        let mut out = Vec::new();
        let empty = Totals::default();
        let mut variants: Vec<usize> = current.keys().copied().collect();
        variants.sort_unstable();
        for variant in variants {
            let now = &current[&variant];
            let before = previous.get(&variant).unwrap_or(&empty);
            let latency: Vec<u64> = now
                .latency
                .iter()
                .zip(&before.latency)
                .map(|(a, b)| a - b)
                .collect();
            let mut errors = [0; ERROR_KINDS];
            for (i, e) in errors.iter_mut().enumerate() {
                *e = now.errors[i] - before.errors[i];
            }
            let delta = VariantMetrics {
                requests: now.requests - before.requests,
                errors: ErrorCounts::from_array(errors),
                latency: LatencyHistogram::from_dense(&latency, now.saturated - before.saturated),
                binary: BinaryOutcome {
                    successes: now.successes - before.successes,
                    trials: now.trials - before.trials,
                },
                outcome: if now.window.count == now.outcome.count - before.outcome.count {
                    now.window
                } else {
                    now.outcome.since(&before.outcome)
                },
                feature_rows: now.feature_rows - before.feature_rows,
                predictions: None,
                features: Vec::new(),
            };
            let mut delta = delta;
            if let Some(p) = profiles.remove(&variant) {
                if p.prediction.count() > 0 {
                    delta.predictions = Some(p.prediction);
                }
                if p.features.iter().any(|f| f.count() + f.missing() > 0) {
                    delta.features = p.features;
                }
            }
            if !delta.is_empty() {
                out.push((variant, delta));
            }
        }
        *previous = current;
        self.epoch.0.store(epoch.wrapping_add(1), Ordering::Release);
        out
    }
}

/// Why a record was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Unknown experiment.
    UnknownExperiment = 0,
    /// Unknown variant.
    UnknownVariant = 1,
    /// NaN or infinite value.
    NonFinite = 2,
    /// Past the shard or variant limit.
    OverLimit = 3,
    /// A feature row that does not fit the schema.
    SchemaMismatch = 4,
}

/// A value of one feature in a recorded row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FeatureValue<'a> {
    /// A number (NaN counts as missing).
    Number(f64),
    /// A category.
    Category(&'a str),
    /// No value.
    Missing,
}
