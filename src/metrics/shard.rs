//! Per-thread shards of per-variant cells.
//!
//! Each thread that records gets a shard of its own (leased from its agent's list on first
//! use and returned when the thread ends), so a writer never shares a cache line with another
//! writer: cells are 128-byte aligned and updated with a plain load and store of its own
//! atomics, never a read-modify-write. Readers (snapshots) load the same atomics. Every call
//! and every binary outcome bumps exactly one counter (successful calls or one error kind;
//! successes or failures), so any read is a consistent set of whole events, and a window never
//! shows an error without its request. Groups of values that must be read together (count,
//! mean and `m2`) sit behind a sequence lock.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::sync::{Arc, OnceLock};

use super::histogram::BUCKETS;
use super::moments::Moments;
use super::{ERROR_KINDS, ErrorKind};
use crate::sketch::{FeatureProfile, NumericProfile};

/// Adds `n` to a counter that only this thread writes: a load and a store, no locked
/// instruction.
#[inline]
fn add(cell: &AtomicU64, n: u64) {
    cell.store(
        cell.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

/// The cells of one variant in one shard.
#[repr(align(128))]
pub(crate) struct VariantCells {
    /// Calls that succeeded; requests are these plus the errors.
    ok: AtomicU64,
    pub(crate) errors: [AtomicU64; ERROR_KINDS],
    pub(crate) latency: Box<[AtomicU64]>,
    pub(crate) latency_saturated: AtomicU64,
    pub(crate) feature_rows: AtomicU64,
    seq: AtomicU64,
    /// Binary outcomes: successes, failures.
    binary: [AtomicU64; 2],
    /// Continuous outcomes since this shard was created (count, mean, m2).
    outcome: [AtomicU64; 3],
    /// Continuous outcomes since this shard's thread first recorded one in collect epoch
    /// `window_epoch`: the collector uses them as the window's moments when they cover all
    /// of it, which spares it subtracting two cumulative sums (whose cancellation lost the
    /// variance of a window that followed an outlier).
    window: [AtomicU64; 3],
    window_epoch: AtomicU64,
    /// Feature and prediction sketches: too large for atomics, so behind a mutex that only
    /// this shard's thread and the collector take (uncontended except during a collect).
    pub(crate) profiles: std::sync::Mutex<Option<Profiles>>,
}

/// The sketches of one variant in one shard, since the last collect.
#[derive(Debug, Clone)]
pub(crate) struct Profiles {
    pub(crate) features: Vec<FeatureProfile>,
    pub(crate) prediction: FeatureProfile,
}

static NEXT_SKETCH_SEED: AtomicU64 = AtomicU64::new(0x5eed);

/// A numeric profile whose sketch has a seed of its own, so that the compaction coin flips
/// of sketches merged together are independent.
fn numeric_profile() -> FeatureProfile {
    let seed = crate::hash::mix64(NEXT_SKETCH_SEED.fetch_add(1, Ordering::Relaxed));
    match NumericProfile::with_seed(crate::sketch::DEFAULT_K, seed) {
        Ok(p) => FeatureProfile::Numeric(p),
        Err(_) => FeatureProfile::numeric(),
    }
}

impl Profiles {
    pub(crate) fn new(numeric: &[bool]) -> Self {
        Profiles {
            features: numeric
                .iter()
                .map(|&n| {
                    if n {
                        numeric_profile()
                    } else {
                        FeatureProfile::categorical()
                    }
                })
                .collect(),
            prediction: numeric_profile(),
        }
    }
}

/// What a reader copies out in one pass: the counters (requests and trials summed from them)
/// and the sequence-locked moments.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Locked {
    pub(crate) requests: u64,
    pub(crate) errors: [u64; ERROR_KINDS],
    pub(crate) successes: u64,
    pub(crate) trials: u64,
    pub(crate) outcome: Moments,
    pub(crate) window: Moments,
    pub(crate) window_epoch: u64,
}

impl VariantCells {
    fn new() -> Self {
        VariantCells {
            ok: AtomicU64::new(0),
            errors: std::array::from_fn(|_| AtomicU64::new(0)),
            latency: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            latency_saturated: AtomicU64::new(0),
            feature_rows: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            binary: std::array::from_fn(|_| AtomicU64::new(0)),
            outcome: std::array::from_fn(|_| AtomicU64::new(0)),
            window: std::array::from_fn(|_| AtomicU64::new(0)),
            window_epoch: AtomicU64::new(0),
            profiles: std::sync::Mutex::new(None),
        }
    }

    #[inline]
    pub(crate) fn record_call(&self, latency_nanos: u64, error: Option<ErrorKind>) {
        // One counter per call: requests are summed on read, so they never lag an error.
        match error {
            None => add(&self.ok, 1),
            Some(kind) => add(&self.errors[kind as usize], 1),
        }
        add(&self.latency[super::histogram::bucket_of(latency_nanos)], 1);
        if latency_nanos >= super::histogram::SATURATION_NANOS {
            add(&self.latency_saturated, 1);
        }
    }

    #[inline]
    fn write_locked(&self, f: impl FnOnce(&Self)) {
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        f(self);
        self.seq.store(s.wrapping_add(2), Ordering::Release);
    }

    #[inline]
    pub(crate) fn record_binary(&self, success: bool) {
        add(&self.binary[usize::from(!success)], 1);
    }

    /// Records a continuous outcome; `epoch` is the collector's epoch as this thread saw it.
    #[inline]
    pub(crate) fn record_outcome(&self, value: f64, epoch: u64) {
        self.write_locked(|c| {
            push_moments(&c.outcome, value);
            if c.window_epoch.load(Ordering::Relaxed) != epoch {
                for cell in &c.window {
                    cell.store(0, Ordering::Relaxed);
                }
                c.window_epoch.store(epoch, Ordering::Relaxed);
            }
            push_moments(&c.window, value);
        });
    }

    /// Runs `f` on this variant's sketches, creating them on first use.
    #[inline]
    pub(crate) fn with_profiles(&self, numeric: &[bool], f: impl FnOnce(&mut Profiles)) {
        let mut guard = self
            .profiles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(guard.get_or_insert_with(|| Profiles::new(numeric)));
    }

    /// A copy of the counters and a consistent copy of the sequence-locked moments.
    pub(crate) fn read_locked(&self) -> Locked {
        loop {
            let before = self.seq.load(Ordering::Acquire);
            if before % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let errors: [u64; ERROR_KINDS] =
                std::array::from_fn(|i| self.errors[i].load(Ordering::Relaxed));
            let successes = self.binary[0].load(Ordering::Relaxed);
            let copy = Locked {
                requests: errors
                    .iter()
                    .fold(self.ok.load(Ordering::Relaxed), |sum, &e| {
                        sum.wrapping_add(e)
                    }),
                errors,
                successes,
                trials: successes.wrapping_add(self.binary[1].load(Ordering::Relaxed)),
                outcome: read_moments(&self.outcome),
                window: read_moments(&self.window),
                window_epoch: self.window_epoch.load(Ordering::Relaxed),
            };
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == before {
                return copy;
            }
        }
    }
}

#[inline]
fn push_moments(cells: &[AtomicU64; 3], value: f64) {
    let mut m = read_moments(cells);
    m.push(value);
    cells[0].store(m.count, Ordering::Relaxed);
    cells[1].store(m.mean.to_bits(), Ordering::Relaxed);
    cells[2].store(m.m2.to_bits(), Ordering::Relaxed);
}

#[inline]
fn read_moments(cells: &[AtomicU64; 3]) -> Moments {
    Moments {
        count: cells[0].load(Ordering::Relaxed),
        mean: f64::from_bits(cells[1].load(Ordering::Relaxed)),
        m2: f64::from_bits(cells[2].load(Ordering::Relaxed)),
    }
}

/// One thread's cells, for every variant id it has recorded for.
pub(crate) struct Shard {
    cells: Box<[OnceLock<Box<VariantCells>>]>,
    leased: AtomicBool,
}

impl Shard {
    fn new(max_variants: usize) -> Self {
        Shard {
            cells: (0..max_variants).map(|_| OnceLock::new()).collect(),
            leased: AtomicBool::new(true),
        }
    }

    /// The cells of `variant`, created on this shard's first record for it (the only
    /// allocation on the recording path, once per thread and variant). `None` when the id is
    /// beyond the agent's limit.
    #[inline]
    pub(crate) fn cells(&self, variant: usize) -> Option<&VariantCells> {
        self.cells
            .get(variant)
            .map(|slot| &**slot.get_or_init(|| Box::new(VariantCells::new())))
    }

    /// The cells of `variant` if this shard has any (for readers).
    pub(crate) fn existing(&self, variant: usize) -> Option<&VariantCells> {
        self.cells
            .get(variant)
            .and_then(|slot| slot.get())
            .map(|b| &**b)
    }

    pub(crate) fn capacity(&self) -> usize {
        self.cells.len()
    }
}

/// The list of shards an agent's threads lease from.
pub(crate) struct ShardPool {
    id: u64,
    max_variants: usize,
    max_shards: usize,
    shards: std::sync::Mutex<Vec<Arc<Shard>>>,
}

static NEXT_POOL_ID: AtomicU64 = AtomicU64::new(1);

/// A thread's hold on a shard; returns it to the pool when the thread ends or evicts it.
struct Lease {
    pool: u64,
    shard: Arc<Shard>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.shard.leased.store(false, Ordering::Release);
    }
}

const LEASE_WAYS: usize = 4;

struct LeaseCache {
    entries: [Option<Lease>; LEASE_WAYS],
    next_victim: usize,
}

thread_local! {
    static LEASES: RefCell<LeaseCache> = const {
        RefCell::new(LeaseCache { entries: [const { None }; LEASE_WAYS], next_victim: 0 })
    };
}

impl ShardPool {
    pub(crate) fn new(max_variants: usize, max_shards: usize) -> Self {
        ShardPool {
            id: NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed),
            max_variants,
            max_shards,
            shards: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` on this thread's shard. Returns `false` (and does not run `f`) when no shard
    /// can be had: the pool is at its limit, or thread-local storage is gone.
    #[inline]
    pub(crate) fn with_shard(&self, f: impl FnOnce(&Shard)) -> bool {
        let mut f = Some(f);
        let ran = LEASES.try_with(|cell| {
            let Ok(mut cache) = cell.try_borrow_mut() else {
                return false;
            };
            let cache = &mut *cache;
            let way = match cache
                .entries
                .iter()
                .position(|e| e.as_ref().is_some_and(|e| e.pool == self.id))
            {
                Some(way) => way,
                None => {
                    let Some(shard) = self.lease() else {
                        return false;
                    };
                    let way = cache.next_victim;
                    cache.next_victim = (way + 1) % LEASE_WAYS;
                    cache.entries[way] = Some(Lease {
                        pool: self.id,
                        shard,
                    });
                    way
                }
            };
            match (&cache.entries[way], f.take()) {
                (Some(lease), Some(f)) => {
                    f(&lease.shard);
                    true
                }
                _ => false,
            }
        });
        ran.unwrap_or(false)
    }

    fn lease(&self) -> Option<Arc<Shard>> {
        let mut shards = self
            .shards
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for shard in shards.iter() {
            if shard
                .leased
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return Some(shard.clone());
            }
        }
        if shards.len() >= self.max_shards {
            return None;
        }
        let shard = Arc::new(Shard::new(self.max_variants));
        shards.push(shard.clone());
        Some(shard)
    }

    /// Every shard, leased or not (for readers).
    pub(crate) fn all(&self) -> Vec<Arc<Shard>> {
        self.shards
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}
