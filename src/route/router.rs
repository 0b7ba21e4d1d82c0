//! The [`Router`]: a compiled config published through one atomic swap, read through a
//! per-thread cache.
//!
//! A route call must not pay for an `ArcSwap::load` (an atomic read-modify-write, about 8 ns
//! on the machines we measure on, on a cache line every thread shares). Instead each thread
//! keeps the `Arc` of the config it last used, tagged with the router's generation. The
//! router bumps its generation after every swap; a route call does one plain atomic load of
//! the generation (a shared, read-mostly cache line) and, when it matches, uses its cached
//! config. Updates stay atomic: a call uses one whole compiled config, never a mix, and a
//! reader never waits for a writer.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;

use super::compile::{CompiledConfig, CompiledExperiment, Routed};
use super::config::RouterConfig;
use super::registry::NameRegistry;
use super::time::{Clock, SystemClock};
use super::{Assignment, ConfigError, ExperimentId, Reason, VariantId};

static NEXT_ROUTER_ID: AtomicU64 = AtomicU64::new(1);

/// Keeps the generation counter on a cache line of its own: readers only load it, and it must
/// not share a line with anything that is written often.
#[repr(align(128))]
#[derive(Debug)]
struct Generation(AtomicU64);

/// Maps keys to variants for every experiment of a config; cheap to share (`Arc<Router>`)
/// between request threads.
///
/// Cost per [`Router::route`]: one hash of the key per hash family in use, one or two more for
/// coverage and namespaces, one atomic load, no allocation, no lock. Configs are replaced
/// with [`Router::store`]: compiled and validated first, then published with one swap.
///
/// ```
/// use modelgate::route::Router;
/// let router = Router::from_toml(r#"
///     [[experiments]]
///     name = "ranker"
///     [[experiments.variants]]
///     name = "control"
///     weight = 0.9
///     [[experiments.variants]]
///     name = "candidate"
///     weight = 0.1
/// "#)?;
/// let ranker = router.experiment("ranker").expect("configured");
/// let assignment = router.route(ranker, "user-42");
/// assert!(assignment.in_experiment());
/// let name = router.variant_name(assignment.variant.unwrap()).unwrap();
/// assert!(name.as_ref() == "control" || name.as_ref() == "candidate");
/// # Ok::<(), modelgate::route::ConfigError>(())
/// ```
pub struct Router {
    id: u64,
    generation: Generation,
    current: ArcSwap<CompiledConfig>,
    registry: Mutex<NameRegistry>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("id", &self.id)
            .field("generation", &self.generation.0.load(Ordering::Relaxed))
            .field("experiments", &self.current.load().experiments().len())
            .finish_non_exhaustive()
    }
}

struct CacheEntry {
    router: u64,
    generation: u64,
    config: Arc<CompiledConfig>,
}

const CACHE_WAYS: usize = 4;

struct LocalCache {
    entries: [Option<CacheEntry>; CACHE_WAYS],
    next_victim: usize,
}

impl LocalCache {
    /// The way holding `router`'s config at `generation`, if this thread has it.
    #[inline]
    fn fresh_way(&self, router: u64, generation: u64) -> Option<usize> {
        self.entries.iter().position(|e| {
            e.as_ref()
                .is_some_and(|e| e.router == router && e.generation == generation)
        })
    }

    /// Loads `router`'s current config into its way (or a victim's) and returns the way. Kept
    /// out of line so that the hit path stays small enough to inline into every route call.
    #[cold]
    #[inline(never)]
    fn refresh(&mut self, router: &Router, generation: u64) -> usize {
        let way = match self
            .entries
            .iter()
            .position(|e| e.as_ref().is_some_and(|e| e.router == router.id))
        {
            Some(way) => way,
            None => {
                let way = self.next_victim;
                self.next_victim = (way + 1) % CACHE_WAYS;
                way
            }
        };
        // Read the generation before the pointer: a swap in between leaves an entry newer
        // than its tag, which only causes one more refresh.
        self.entries[way] = Some(CacheEntry {
            router: router.id,
            generation,
            config: router.current.load_full(),
        });
        way
    }
}

thread_local! {
    static LOCAL: RefCell<LocalCache> = const {
        RefCell::new(LocalCache { entries: [const { None }; CACHE_WAYS], next_victim: 0 })
    };
}

impl Router {
    /// A router over `config`, reading time from the system clock.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the experiment and field when the config is invalid.
    pub fn new(config: RouterConfig) -> Result<Self, ConfigError> {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// A router over a TOML experiments file's text.
    ///
    /// # Errors
    /// A [`ConfigError`] when the text does not parse or the config is invalid.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::new(RouterConfig::from_toml(text)?)
    }

    /// A router whose `gradual` ramps read time from `clock` (tests inject a manual clock).
    ///
    /// # Errors
    /// A [`ConfigError`] when the config is invalid.
    pub fn with_clock(config: RouterConfig, clock: Arc<dyn Clock>) -> Result<Self, ConfigError> {
        let mut registry = NameRegistry::default();
        let compiled = CompiledConfig::compile(config, &mut registry)?;
        Ok(Router {
            id: NEXT_ROUTER_ID.fetch_add(1, Ordering::Relaxed),
            generation: Generation(AtomicU64::new(0)),
            current: ArcSwap::from_pointee(compiled),
            registry: Mutex::new(registry),
            clock,
        })
    }

    /// Validates and compiles `config`, then publishes it with one atomic swap. On error the
    /// current config stays in force. Route calls in flight finish on the config they began
    /// with; calls that start after this returns see the new one.
    ///
    /// # Errors
    /// A [`ConfigError`] when the config is invalid.
    pub fn store(&self, config: RouterConfig) -> Result<(), ConfigError> {
        self.store_with(config, |_| Ok(()))
    }

    /// Like [`Router::store`], running `before_publish` on the compiled config first (the
    /// agent binds models to new variants there, so no request sees a variant without its
    /// model). An error from it keeps the current config. Concurrent stores publish in the
    /// order they compiled.
    ///
    /// # Errors
    /// A [`ConfigError`] from compiling or from `before_publish`.
    pub fn store_with(
        &self,
        config: RouterConfig,
        before_publish: impl FnOnce(&CompiledConfig) -> Result<(), ConfigError>,
    ) -> Result<(), ConfigError> {
        let mut registry = self.registry();
        // A config refused by `before_publish` must not keep the ids its new names took
        // (each refusal would lower what later configs can hold).
        let saved = registry.clone();
        let compiled = CompiledConfig::compile(config, &mut registry)?;
        if let Err(e) = before_publish(&compiled) {
            *registry = saved;
            return Err(e);
        }
        self.current.store(Arc::new(compiled));
        self.generation.0.fetch_add(1, Ordering::AcqRel);
        drop(registry);
        Ok(())
    }

    /// The id of a variant of an experiment, if any config of this router ever had it (for
    /// outcomes that arrive after the variant left the config).
    #[must_use]
    pub fn find_variant(&self, experiment: &str, variant: &str) -> Option<VariantId> {
        let registry = self.registry();
        let e = registry.find_experiment(experiment)?;
        registry.find_variant(e, variant)
    }

    /// The id of the experiment named `name`, if any config of this router ever had it. Ids are
    /// stable for the router's lifetime: resolve once, route many times.
    #[must_use]
    pub fn experiment(&self, name: &str) -> Option<ExperimentId> {
        self.registry().find_experiment(name)
    }

    /// The name behind an experiment id.
    #[must_use]
    pub fn experiment_name(&self, id: ExperimentId) -> Option<Arc<str>> {
        self.registry().experiment_name(id)
    }

    /// The name behind a variant id.
    #[must_use]
    pub fn variant_name(&self, id: VariantId) -> Option<Arc<str>> {
        self.registry().variant_name(id).map(|(_, name)| name)
    }

    /// The experiment a variant id belongs to, and the variant's name.
    #[must_use]
    pub fn variant_info(&self, id: VariantId) -> Option<(ExperimentId, Arc<str>)> {
        self.registry().variant_name(id)
    }

    /// How many experiment and variant ids this router has handed out (arrays indexed by
    /// id need this length).
    #[must_use]
    pub fn id_counts(&self) -> (usize, usize) {
        let r = self.registry();
        (r.experiment_count(), r.variant_count())
    }

    /// The config in force now (an `Arc`: holding it does not block swaps).
    #[must_use]
    pub fn current(&self) -> Arc<CompiledConfig> {
        self.current.load_full()
    }

    /// The clock that `gradual` ramps read.
    #[must_use]
    pub fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    /// Assigns `key` in one experiment. Never allocates, never locks, never panics; an id
    /// that the current config does not have gives [`Reason::UnknownExperiment`].
    #[inline]
    pub fn route(&self, experiment: ExperimentId, key: &str) -> Assignment {
        let clock = &*self.clock;
        self.with_current(|config| match config.experiment(experiment) {
            Some(e) => e.assign_routed(key, clock),
            None => Routed::new(None, Reason::UnknownExperiment, 0.0),
        })
        .into_assignment(experiment)
    }

    /// Assigns `key` in every experiment of the current config, in config order, calling `f`
    /// with each experiment and its assignment (all from one config).
    pub fn route_all(&self, key: &str, mut f: impl FnMut(&CompiledExperiment, Assignment)) {
        let clock = &*self.clock;
        self.with_current(|config| {
            for e in config.experiments() {
                f(e, e.assign(key, clock));
            }
        });
    }

    /// Runs `f` on the current compiled config, through the per-thread cache: one atomic load
    /// when the config has not changed since this thread's last call.
    #[inline]
    pub fn with_current<R>(&self, mut f: impl FnMut(&CompiledConfig) -> R) -> R {
        let generation = self.generation.0.load(Ordering::Acquire);
        let cached = LOCAL.try_with(|cell| {
            let mut cache = cell.try_borrow_mut().ok()?;
            let way = match cache.fresh_way(self.id, generation) {
                Some(way) => way,
                None => cache.refresh(self, generation),
            };
            cache.entries[way].as_ref().map(|entry| f(&entry.config))
        });
        match cached {
            Ok(Some(result)) => result,
            // Thread-local storage is being torn down, or we are re-entered from inside `f`:
            // read the config directly.
            _ => f(&self.current.load()),
        }
    }

    fn registry(&self) -> MutexGuard<'_, NameRegistry> {
        // The registry is only written under this lock and each write leaves it consistent, so
        // a poisoned lock still holds valid data.
        self.registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
