//! The embedding facade: one [`Agent`] per serving process routes keys, hands out models,
//! and records what happened.
//!
//! ```
//! use std::time::Duration;
//! use modelgate::agent::{Agent, Outcome};
//!
//! let agent = Agent::<String>::builder()
//!     .experiments_toml(r#"
//!         [[experiments]]
//!         name = "ranker"
//!         strategy = "canary"
//!         percent = 10
//!         [[experiments.variants]]
//!         name = "production"
//!         model = "ranker@3"
//!         [[experiments.variants]]
//!         name = "candidate"
//!         model = "ranker@4"
//!     "#)?
//!     .model("ranker@3", "model three".to_string())
//!     .model("ranker@4", "model four".to_string())
//!     .build()?;
//! let ranker = agent.experiment("ranker").expect("configured");
//!
//! // On each request: route, use the model, record.
//! let decision = agent.route(ranker, "user-42");
//! let model = decision.model().expect("every variant has a model");
//! agent.record(&decision, Duration::from_micros(350), Ok(()));
//! agent.record_outcome_for(&decision, Outcome::Binary(true));
//!
//! let snapshot = agent.snapshot();
//! assert_eq!(snapshot.experiments[0].variants.iter().map(|v| v.metrics.requests).sum::<u64>(), 1);
//! # Ok::<(), modelgate::agent::AgentError>(())
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::metrics::FeatureValue;
use crate::metrics::{ErrorKind, Metrics, Rejection, Rejections, VariantMetrics};
use crate::model::{ModelGuard, ModelSlot, Versioned};
use crate::route::{
    Clock, CompiledConfig, ConfigError, ExperimentId, Reason, Router, RouterConfig, SystemClock,
    VariantId,
};

/// Errors of the agent facade.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The experiments config is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The builder is missing something or has a bad setting.
    #[error("agent builder: {0}")]
    Builder(String),
}

/// Whether a feature is numeric or categorical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureKind {
    /// Real-valued.
    Numeric,
    /// A category (a string or small integer).
    Categorical,
}

/// One feature of the model's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feature {
    /// Feature name.
    pub name: String,
    /// Its kind.
    pub kind: FeatureKind,
}

/// Bounds on the agent's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Variant ids the agent keeps models and metrics for (ids are handed out per distinct
    /// experiment and variant name over the agent's life). Default 1024.
    pub max_variants: usize,
    /// Threads that may record at once; records from more are counted as rejected. Default 512.
    pub max_recording_threads: usize,
    /// Labelled records kept per window for the next report ([`Agent::record_labelled`]);
    /// past it, a uniform reservoir sample is kept and the count of all records stays
    /// exact. Default 1000.
    pub max_labelled: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_variants: 1024,
            max_recording_threads: 512,
            max_labelled: 1000,
        }
    }
}

/// One labelled record an agent keeps for retraining: the features it served and the label
/// that arrived later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelledRecord {
    /// When it was recorded, Unix ms.
    pub at_ms: i64,
    /// Feature values in schema order.
    pub features: Vec<f64>,
    /// The label (0/1 for binary labels).
    pub label: f64,
}

/// The labelled records of a window: how many were recorded, and a uniform sample of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LabelledBatch {
    /// Records recorded in the window (exact, kept or not).
    pub seen: u64,
    /// The records kept (all of them up to the agent's limit, a reservoir sample past it).
    pub records: Vec<LabelledRecord>,
}

/// Reservoir sampling (Vitter's algorithm R) with a small xorshift generator.
struct Reservoir {
    capacity: usize,
    batch: LabelledBatch,
    rng: u64,
}

impl Reservoir {
    fn push(&mut self, record: LabelledRecord) {
        self.batch.seen += 1;
        if self.batch.records.len() < self.capacity {
            self.batch.records.push(record);
            return;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let slot = self.rng % self.batch.seen;
        if let Ok(slot) = usize::try_from(slot)
            && slot < self.capacity
        {
            self.batch.records[slot] = record;
        }
    }
}

/// An outcome that arrives after the request (a click, a label, a revenue figure).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// Success or failure.
    Binary(bool),
    /// A real value; NaN and infinities are rejected and counted.
    Continuous(f64),
}

/// The result of routing one request: the experiment, the variant (if the key is in the
/// experiment) and that variant's current model.
#[must_use]
pub struct Decision<M> {
    /// The experiment.
    pub experiment: ExperimentId,
    /// The variant, `None` when the key is not in the experiment.
    pub variant: Option<VariantId>,
    /// Why the key got this variant.
    pub reason: Reason,
    model: Option<ModelGuard<M>>,
}

impl<M> Decision<M> {
    /// The model to serve this request with: the variant's model at the time of routing.
    /// It stays valid for the life of the decision, whatever swaps happen meanwhile.
    #[must_use]
    pub fn model(&self) -> Option<&M> {
        self.model
            .as_ref()
            .and_then(|g| g.as_ref())
            .map(|v| &v.model)
    }

    /// The version (model reference) of [`Decision::model`].
    #[must_use]
    pub fn model_version(&self) -> Option<&str> {
        self.model
            .as_ref()
            .and_then(|g| g.as_ref())
            .map(|v| &*v.version)
    }
}

impl<M> std::fmt::Debug for Decision<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decision")
            .field("experiment", &self.experiment)
            .field("variant", &self.variant)
            .field("reason", &self.reason)
            .field("model_version", &self.model_version())
            .finish()
    }
}

/// What the agent recorded over a window, per experiment and variant (serde-serialisable).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Window start, Unix milliseconds.
    pub window_start_ms: i64,
    /// Window end, Unix milliseconds.
    pub window_end_ms: i64,
    /// Experiments with something recorded in the window.
    pub experiments: Vec<ExperimentSnapshot>,
    /// Records rejected in the window.
    pub rejections: Rejections,
    /// Labelled records for retraining.
    #[serde(default)]
    pub labelled: LabelledBatch,
}

/// One experiment's variants in a [`Snapshot`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExperimentSnapshot {
    /// Experiment name.
    pub name: String,
    /// Its variants with something recorded.
    pub variants: Vec<VariantSnapshot>,
}

/// One variant in a [`Snapshot`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VariantSnapshot {
    /// Variant name.
    pub name: String,
    /// The model version it serves at snapshot time.
    pub model: Option<String>,
    /// What it recorded.
    pub metrics: VariantMetrics,
}

/// Builds an [`Agent`].
pub struct AgentBuilder<M> {
    config: RouterConfig,
    features: Vec<Feature>,
    limits: Limits,
    models: Vec<(String, M)>,
    clock: Arc<dyn Clock>,
}

impl<M: Send + Sync + 'static> AgentBuilder<M> {
    /// The experiments config.
    #[must_use]
    pub fn experiments(mut self, config: RouterConfig) -> Self {
        self.config = config;
        self
    }

    /// The experiments config as TOML text.
    ///
    /// # Errors
    /// [`AgentError::Config`] when the text does not parse.
    pub fn experiments_toml(self, text: &str) -> Result<Self, AgentError> {
        Ok(self.experiments(RouterConfig::from_toml(text)?))
    }

    /// The model's input features, in order.
    #[must_use]
    pub fn features(mut self, features: Vec<Feature>) -> Self {
        self.features = features;
        self
    }

    /// Memory limits.
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// A model that variants referring to `reference` (their `model` field) serve.
    #[must_use]
    pub fn model(mut self, reference: &str, model: M) -> Self {
        self.models.push((reference.to_owned(), model));
        self
    }

    /// The clock for gradual ramps and snapshot windows (tests inject a manual one).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Validates everything and builds the agent.
    ///
    /// # Errors
    /// [`AgentError`] for an invalid config or limits.
    pub fn build(self) -> Result<Agent<M>, AgentError> {
        if self.limits.max_variants == 0
            || self.limits.max_recording_threads == 0
            || self.limits.max_labelled > crate::wire::MAX_LABELLED
        {
            return Err(AgentError::Builder(format!(
                "limits: variants and threads must be above zero, max_labelled at most {}",
                crate::wire::MAX_LABELLED
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for f in &self.features {
            if f.name.is_empty() || !seen.insert(f.name.as_str()) {
                return Err(AgentError::Builder(format!(
                    "feature names must be unique and non-empty: `{}`",
                    f.name
                )));
            }
        }
        let router = Router::with_clock(self.config, self.clock.clone())?;
        let models: HashMap<String, Arc<Versioned<M>>> = self
            .models
            .into_iter()
            .map(|(reference, model)| {
                let versioned = Arc::new(Versioned {
                    version: reference.as_str().into(),
                    model,
                });
                (reference, versioned)
            })
            .collect();
        let agent = Agent {
            router,
            slots: (0..self.limits.max_variants)
                .map(|_| ModelSlot::empty())
                .collect(),
            metrics: Metrics::with_features(
                self.limits.max_variants,
                self.limits.max_recording_threads,
                self.features
                    .iter()
                    .map(|f| f.kind == FeatureKind::Numeric)
                    .collect(),
            ),
            features: self.features,
            models: Mutex::new(models),
            bound: Mutex::new(HashMap::new()),
            window: Mutex::new(Window {
                start_ms: self.clock.now_unix_ms(),
                rejections: Rejections::default(),
            }),
            labelled: Mutex::new(Reservoir {
                capacity: self.limits.max_labelled,
                batch: LabelledBatch::default(),
                rng: 0x9e37_79b9_7f4a_7c15 ^ (self.clock.now_unix_ms() as u64),
            }),
            clock: self.clock,
            drop_hook: Mutex::new(None),
        };
        let current = agent.router.current();
        agent.check_limits(&current)?;
        agent.bind_models(&current);
        Ok(agent)
    }
}

struct Window {
    start_ms: i64,
    rejections: Rejections,
}

/// The embedded agent: routing, model slots and metrics for one serving process. Share it
/// (`Arc<Agent<M>>`) between request threads.
///
/// Request-path cost: [`Agent::route`] is a route plus one `arc-swap` load of the variant's
/// model; [`Agent::record`] writes the calling thread's own shard. Neither locks nor
/// allocates (after a thread's first record for a variant) nor panics.
pub struct Agent<M> {
    router: Router,
    slots: Box<[ModelSlot<M>]>,
    metrics: Metrics,
    features: Vec<Feature>,
    models: Mutex<HashMap<String, Arc<Versioned<M>>>>,
    /// The model reference each variant was last bound to from the config.
    bound: Mutex<HashMap<u32, Arc<str>>>,
    window: Mutex<Window>,
    labelled: Mutex<Reservoir>,
    clock: Arc<dyn Clock>,
    /// Called once with the last snapshot when the agent is dropped (the reporter's flush).
    drop_hook: Mutex<Option<DropHook>>,
}

/// What runs when an [`Agent`] is dropped: it receives the final snapshot.
pub(crate) type DropHook = Box<dyn FnOnce(Snapshot) + Send>;

impl<M> std::fmt::Debug for Agent<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("router", &self.router)
            .field("features", &self.features)
            .finish_non_exhaustive()
    }
}

impl<M: Send + Sync + 'static> Agent<M> {
    /// A builder with an empty config, no features, default limits and the system clock.
    #[must_use]
    pub fn builder() -> AgentBuilder<M> {
        AgentBuilder {
            config: RouterConfig::default(),
            features: Vec::new(),
            limits: Limits::default(),
            models: Vec::new(),
            clock: Arc::new(SystemClock),
        }
    }

    /// The router (for inspection and for routing without models).
    #[must_use]
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// The feature schema.
    #[must_use]
    pub fn features(&self) -> &[Feature] {
        &self.features
    }

    /// The id of an experiment (resolve once, route many times).
    #[must_use]
    pub fn experiment(&self, name: &str) -> Option<ExperimentId> {
        self.router.experiment(name)
    }

    /// Routes `key` in `experiment` and loads the chosen variant's model.
    #[inline]
    pub fn route(&self, experiment: ExperimentId, key: &str) -> Decision<M> {
        let a = self.router.route(experiment, key);
        let model = a
            .variant
            .and_then(|v| self.slots.get(v.0 as usize))
            .map(ModelSlot::load);
        Decision {
            experiment,
            variant: a.variant,
            reason: a.reason,
            model,
        }
    }

    /// Records a call made with `decision`: its latency and whether it failed. Calls outside
    /// the experiment (no variant) are not recorded.
    #[inline]
    pub fn record(&self, decision: &Decision<M>, latency: Duration, result: Result<(), ErrorKind>) {
        if let Some(v) = decision.variant {
            let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
            self.metrics.record_call(v.0 as usize, nanos, result.err());
        }
    }

    /// Records a late outcome for the variant that `decision` chose. A key outside the
    /// experiment (no variant) is neither recorded nor counted as rejected, as with
    /// [`Agent::record`]: it is not bad input.
    #[inline]
    pub fn record_outcome_for(&self, decision: &Decision<M>, outcome: Outcome) {
        if let Some(v) = decision.variant {
            self.record_outcome_id(v, outcome);
        }
    }

    /// Records a late outcome by names (for outcomes that arrive in another process or much
    /// later). Unknown names are counted as rejected, never stored.
    pub fn record_outcome(&self, experiment: &str, variant: &str, outcome: Outcome) {
        let in_current =
            self.router
                .with_current(|config| match config.experiment_by_name(experiment) {
                    None => Err(Rejection::UnknownExperiment),
                    Some(e) => e
                        .variants()
                        .iter()
                        .find(|v| v.name() == variant)
                        .map(|v| v.id())
                        .ok_or(Rejection::UnknownVariant),
                });
        // An outcome may arrive after its variant left the config: look it up among every
        // name the router has known (a lock, but only on this rare path).
        let found =
            in_current.or_else(|why| self.router.find_variant(experiment, variant).ok_or(why));
        match found {
            Ok(v) => self.record_outcome_id(v, outcome),
            Err(why) => self.metrics.reject(why),
        }
    }

    fn record_outcome_id(&self, variant: VariantId, outcome: Outcome) {
        match outcome {
            Outcome::Binary(success) => self.metrics.record_binary(variant.0 as usize, success),
            Outcome::Continuous(value) => self.metrics.record_outcome(variant.0 as usize, value),
        }
    }

    /// Records a labelled example for retraining: the numeric features in schema order and
    /// the label that arrived (0/1 for binary labels). It travels in the next report; the
    /// sidecar counts it for the volume trigger and keeps it as training data. A row of
    /// the wrong length is rejected and counted as a schema mismatch; one with a value that
    /// is not finite or whose magnitude is over [`crate::wire::MAX_LABELLED_VALUE`] (which
    /// the sidecar would refuse) as a non-finite value. Takes a short
    /// lock: call it where labels arrive, not on the latency-critical path.
    pub fn record_labelled(&self, features: &[f64], label: f64) {
        if features.len() != self.features.len() {
            self.metrics.reject(Rejection::SchemaMismatch);
            return;
        }
        if !crate::wire::labelled_values_usable(features, label) {
            self.metrics.reject(Rejection::NonFinite);
            return;
        }
        let record = LabelledRecord {
            at_ms: self.clock.now_unix_ms(),
            features: features.to_vec(),
            label,
        };
        self.labelled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(record);
    }

    /// Records the model's prediction for `decision` (NaN and infinities are rejected).
    #[inline]
    pub fn record_prediction(&self, decision: &Decision<M>, value: f64) {
        if let Some(v) = decision.variant {
            self.metrics.record_prediction(v.0 as usize, value);
        }
    }

    /// Records one row of input features for `decision` into the variant's feature
    /// sketches (KLL quantiles for numeric features, counts for categorical ones). A row
    /// whose length differs from the schema is rejected and counted; a value of the wrong
    /// kind counts as missing.
    #[inline]
    pub fn record_features(&self, decision: &Decision<M>, row: &[FeatureValue<'_>]) {
        if let Some(v) = decision.variant {
            self.metrics.record_features(v.0 as usize, row);
        }
    }

    /// Replaces the experiments config (one atomic swap; requests in flight finish on the old
    /// config) and gives new variants the models they refer to, when the agent has them.
    ///
    /// # Errors
    /// [`AgentError::Config`]; the old config stays in force.
    pub fn store_experiments(&self, config: RouterConfig) -> Result<(), AgentError> {
        self.router.store_with(config, |compiled| {
            self.check_limits(compiled)?;
            self.bind_models(compiled);
            Ok(())
        })?;
        Ok(())
    }

    fn check_limits(&self, compiled: &CompiledConfig) -> Result<(), ConfigError> {
        let max = self.slots.len();
        match compiled
            .experiments()
            .iter()
            .flat_map(|e| e.variants())
            .find(|v| v.id().0 as usize >= max)
        {
            Some(v) => Err(ConfigError::Refused {
                reason: format!(
                    "variant `{}` would be the agent's variant number {} but the agent keeps {max} (raise Limits::max_variants)",
                    v.name(),
                    v.id().0 + 1
                ),
            }),
            None => Ok(()),
        }
    }

    /// Swaps the model that `variant` serves. Returns the previous one.
    pub fn swap_model(
        &self,
        variant: VariantId,
        version: &str,
        model: M,
    ) -> Option<Arc<Versioned<M>>> {
        let versioned = Arc::new(Versioned {
            version: version.into(),
            model,
        });
        self.models
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(version.to_owned(), versioned.clone());
        self.slots
            .get(variant.0 as usize)
            .and_then(|slot| slot.store_arc(versioned))
    }

    /// Makes `model` available under `reference` without binding it: the next config whose
    /// variants name `reference` serves it (the reporter loads models this way before it
    /// applies a new config, so the config and its models change in one swap).
    pub fn insert_model(&self, reference: &str, model: M) {
        let versioned = Arc::new(Versioned {
            version: reference.into(),
            model,
        });
        self.models
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(reference.to_owned(), versioned);
    }

    /// Whether the agent holds a model under `reference`.
    #[must_use]
    pub fn has_model(&self, reference: &str) -> bool {
        self.models
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(reference)
    }

    /// Drops the agent's own handle on every model that neither the current config names
    /// nor a slot serves, so old versions do not pile up (a request still using one keeps
    /// it alive until it finishes). Returns how many were dropped.
    pub fn forget_unused_models(&self) -> usize {
        let current = self.router.current();
        let named: std::collections::HashSet<&str> = current
            .experiments()
            .iter()
            .flat_map(|e| e.variants())
            .filter_map(|v| v.model())
            .collect();
        let served: std::collections::HashSet<String> = self
            .slots
            .iter()
            .filter_map(|slot| slot.version().map(|v| v.to_string()))
            .collect();
        let mut models = self
            .models
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = models.len();
        models.retain(|reference, _| {
            named.contains(reference.as_str()) || served.contains(reference)
        });
        before - models.len()
    }

    /// The slot of a variant (to read or swap its model directly).
    #[must_use]
    pub fn model_slot(&self, variant: VariantId) -> Option<&ModelSlot<M>> {
        self.slots.get(variant.0 as usize)
    }

    /// Gives every variant of the current config the model its `model` field names, when the
    /// agent knows that model and the slot holds another version.
    fn bind_models(&self, config: &CompiledConfig) {
        let models = self
            .models
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut bound = self
            .bound
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for variant in config.experiments().iter().flat_map(|e| e.variants()) {
            let (Some(reference), Some(slot)) =
                (variant.model(), self.slots.get(variant.id().0 as usize))
            else {
                continue;
            };
            // Only a reference the config changed is (re)bound: a model swapped in by hand
            // stays until the config names another one.
            if bound
                .get(&variant.id().0)
                .is_some_and(|r| &**r == reference)
            {
                continue;
            }
            if let Some(model) = models.get(reference) {
                slot.store_arc(model.clone());
                bound.insert(variant.id().0, reference.into());
            }
        }
    }
}

impl<M> Agent<M> {
    /// What was recorded since the previous snapshot (or since the agent was built). Under
    /// concurrent recording no record is lost or counted twice: each lands in exactly one
    /// snapshot.
    pub fn snapshot(&self) -> Snapshot {
        let mut window = self
            .window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A wall clock stepped back (NTP) must not end a window before it starts: such a
        // report would be refused, and its data lost.
        let end = self.clock.now_unix_ms().max(window.start_ms);
        let deltas = self.metrics.collect();
        let rejections_now = self.metrics.rejections();
        let before = window.rejections;
        let rejections = Rejections {
            unknown_experiment: rejections_now.unknown_experiment - before.unknown_experiment,
            unknown_variant: rejections_now.unknown_variant - before.unknown_variant,
            non_finite_value: rejections_now.non_finite_value - before.non_finite_value,
            over_limit: rejections_now.over_limit - before.over_limit,
            schema_mismatch: rejections_now.schema_mismatch - before.schema_mismatch,
        };
        let mut experiments: Vec<ExperimentSnapshot> = Vec::new();
        let mut index: HashMap<u32, usize> = HashMap::new();
        for (variant, metrics) in deltas {
            let id = VariantId(variant as u32);
            let Some((experiment, name)) = self.router.variant_info(id) else {
                continue;
            };
            let at = *index.entry(experiment.0).or_insert_with(|| {
                experiments.push(ExperimentSnapshot {
                    name: self
                        .router
                        .experiment_name(experiment)
                        .map(|n| n.to_string())
                        .unwrap_or_default(),
                    variants: Vec::new(),
                });
                experiments.len() - 1
            });
            experiments[at].variants.push(VariantSnapshot {
                name: name.to_string(),
                model: self
                    .slots
                    .get(variant)
                    .and_then(ModelSlot::version)
                    .map(|v| v.to_string()),
                metrics,
            });
        }
        let labelled = std::mem::take(
            &mut self
                .labelled
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .batch,
        );
        let snapshot = Snapshot {
            window_start_ms: window.start_ms,
            window_end_ms: end,
            experiments,
            rejections,
            labelled,
        };
        window.start_ms = end;
        window.rejections = rejections_now;
        snapshot
    }

    /// Installs the hook that receives the final snapshot when the agent is dropped
    /// (replacing any previous one).
    #[cfg_attr(not(feature = "reporter"), allow(dead_code))]
    pub(crate) fn set_drop_hook(&self, hook: DropHook) {
        *self
            .drop_hook
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(hook);
    }
}

impl<M> Drop for Agent<M> {
    fn drop(&mut self) {
        let hook = self
            .drop_hook
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(hook) = hook {
            let last = self.snapshot();
            hook(last);
        }
    }
}
