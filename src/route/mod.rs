//! Routing: which variant of which experiment serves a request key.
//!
//! A config ([`RouterConfig`], usually TOML) is validated and compiled
//! ([`CompiledConfig`]) into tables where names are ids and salts are seeds; a [`Router`]
//! publishes it with one atomic swap and assigns keys without allocating or locking.
//!
//! # Hash schemes
//!
//! * `xxh3` (default, modelgate's own). Keys are hashed as their UTF-8 bytes. Three
//!   independent 64-bit seeds are derived from the salt (see [`crate::hash::derive_seed`]):
//!   exposure, arm and override; namespaces use a seed derived from the namespace name. A key
//!   is exposed when `unit(xxh3(key, exposure_seed)) < coverage`; exposed keys pick a variant
//!   by weighted rendezvous on `xxh3(key, arm_seed)`: each variant scores
//!   `-ln(u_v) / w_v`, where `u_v` mixes the arm hash with a seed derived from the
//!   variant's *name*, and the lowest score wins. Consequences, each tested:
//!   changing coverage never moves a key between arms; changing weights never changes who is
//!   exposed; raising a variant's weight (or lowering others') never takes a key away from it;
//!   removing a variant moves only its own keys; reordering variants moves nothing.
//! * `growthbook`: bit-exact with GrowthBook's SDKs, hash version 2, `getBucketRanges` with
//!   coverage and weights, and their namespace check (hash version 1 with seed
//!   `"__" + namespace`). `salt` is GrowthBook's seed. Keys are hashed as UTF-16 code units,
//!   as the JavaScript SDK and the Python SDK from version 4 do (older Python SDKs hashed code
//!   points, which differs only outside the Basic Multilingual Plane, e.g. for emoji). An empty
//!   key is not in the experiment, as in GrowthBook. GrowthBook silently replaces weights that
//!   do not sum to 1 with equal weights; modelgate rejects such a config instead.
//! * `unleash`: bit-exact with Unleash's flexible rollout and strategy variants: `salt` is the
//!   group id, coverage is the rollout percent (`round(coverage × 100)`, checked with
//!   `murmur3("{group}:{key}", 0) % 100 + 1 <= percent`), and weights become integers out of
//!   1000 (`round(weight × 1000)`), chosen with `murmur3("{group}:{key}", 86028157) % total + 1`.
//!   Unleash has no namespaces; a namespace in this scheme uses the native namespace hash.
//!
//! # Strategies
//!
//! `ab` (fixed weights, any number of variants), `immediate` (all traffic to `target`),
//! `canary` (the candidate gets `percent`), `gradual` (the candidate's percent follows
//! `schedule`, read from the router's [`Clock`] on each call, so a ramp advances without any
//! other process). In `canary` and `gradual` the first variant is the baseline and the second
//! the candidate unless `candidate` names it.

mod compile;
mod config;
mod error;
mod registry;
mod router;
mod time;

pub use compile::{
    CompiledConfig, CompiledExperiment, CompiledVariant, HashScheme, MAX_VARIANTS_PER_EXPERIMENT,
    StrategyKind,
};
pub use config::{
    ExperimentConfig, NamespaceConfig, RampStepConfig, RouterConfig, TimeText, VariantConfig,
};
pub use error::ConfigError;
pub use registry::{MAX_EXPERIMENTS, MAX_VARIANTS};
pub use router::Router;
pub use time::{Clock, ManualClock, SystemClock, parse_rfc3339_ms};

/// An experiment's id: stable for the lifetime of the [`Router`] that issued it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExperimentId(pub u32);

/// A variant's id: stable for the lifetime of the [`Router`] that issued it, unique across
/// experiments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VariantId(pub u32);

/// Why a key got (or did not get) a variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Assigned by the hash.
    Assigned,
    /// Forced by the experiment's `overrides`.
    Override,
    /// Not exposed: outside coverage (or every weight is zero).
    NotCovered,
    /// Outside the experiment's namespace range.
    OutsideNamespace,
    /// The key is empty and the scheme (GrowthBook) does not assign empty keys.
    EmptyKey,
    /// The current config has no experiment with this id.
    UnknownExperiment,
}

impl Reason {
    /// A short name for logs and JSON.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Assigned => "assigned",
            Reason::Override => "override",
            Reason::NotCovered => "not_covered",
            Reason::OutsideNamespace => "outside_namespace",
            Reason::EmptyKey => "empty_key",
            Reason::UnknownExperiment => "unknown_experiment",
        }
    }
}

/// The result of routing one key in one experiment.
#[derive(Debug, Clone, Copy, PartialEq)]
#[must_use]
pub struct Assignment {
    /// The experiment.
    pub experiment: ExperimentId,
    /// The variant, or `None` when the key is not in the experiment.
    pub variant: Option<VariantId>,
    /// The key's hash value in `[0, 1)`: the arm hash (xxh3), GrowthBook's hash (growthbook),
    /// or the rollout bucket `(n - 1) / 100` (unleash).
    pub bucket: f64,
    /// Why.
    pub reason: Reason,
}

impl Assignment {
    /// Whether the key got a variant.
    #[must_use]
    pub fn in_experiment(&self) -> bool {
        self.variant.is_some()
    }
}
