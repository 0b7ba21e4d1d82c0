//! Stable ids for experiment and variant names over a router's lifetime.
//!
//! Ids are indices into append-only tables, so a handle resolved once stays valid across
//! config swaps, and per-variant state (metrics, model slots) can live in plain arrays. The
//! tables only grow when a config introduces a new name, and are capped.

use std::collections::HashMap;
use std::sync::Arc;

use super::{ConfigError, ExperimentId, VariantId};

/// Most distinct experiment names one router will ever give ids to.
pub const MAX_EXPERIMENTS: usize = 4096;
/// Most distinct (experiment, variant) names one router will ever give ids to.
pub const MAX_VARIANTS: usize = 65_536;

#[derive(Debug, Default, Clone)]
pub(crate) struct NameRegistry {
    experiments: Vec<Arc<str>>,
    experiment_ids: HashMap<Arc<str>, ExperimentId>,
    variants: Vec<(ExperimentId, Arc<str>)>,
    /// Per experiment, variant name → id (nested so that a lookup by `&str` allocates nothing).
    variant_ids: HashMap<ExperimentId, HashMap<Arc<str>, VariantId>>,
}

impl NameRegistry {
    pub(crate) fn experiment(&mut self, name: &str) -> Result<ExperimentId, ConfigError> {
        if let Some(&id) = self.experiment_ids.get(name) {
            return Ok(id);
        }
        if self.experiments.len() >= MAX_EXPERIMENTS {
            return Err(ConfigError::TooManyNames {
                what: "experiment",
                limit: MAX_EXPERIMENTS,
            });
        }
        let id = ExperimentId(self.experiments.len() as u32);
        let name: Arc<str> = name.into();
        self.experiments.push(name.clone());
        self.experiment_ids.insert(name, id);
        Ok(id)
    }

    pub(crate) fn variant(
        &mut self,
        experiment: ExperimentId,
        name: &str,
    ) -> Result<VariantId, ConfigError> {
        if let Some(&id) = self.variant_ids.get(&experiment).and_then(|m| m.get(name)) {
            return Ok(id);
        }
        if self.variants.len() >= MAX_VARIANTS {
            return Err(ConfigError::TooManyNames {
                what: "variant",
                limit: MAX_VARIANTS,
            });
        }
        let id = VariantId(self.variants.len() as u32);
        let name: Arc<str> = name.into();
        self.variants.push((experiment, name.clone()));
        self.variant_ids
            .entry(experiment)
            .or_default()
            .insert(name, id);
        Ok(id)
    }

    pub(crate) fn experiment_count(&self) -> usize {
        self.experiments.len()
    }

    pub(crate) fn variant_count(&self) -> usize {
        self.variants.len()
    }

    pub(crate) fn find_experiment(&self, name: &str) -> Option<ExperimentId> {
        self.experiment_ids.get(name).copied()
    }

    pub(crate) fn find_variant(&self, experiment: ExperimentId, name: &str) -> Option<VariantId> {
        self.variant_ids
            .get(&experiment)
            .and_then(|m| m.get(name))
            .copied()
    }

    pub(crate) fn experiment_name(&self, id: ExperimentId) -> Option<Arc<str>> {
        self.experiments.get(id.0 as usize).cloned()
    }

    pub(crate) fn variant_name(&self, id: VariantId) -> Option<(ExperimentId, Arc<str>)> {
        self.variants.get(id.0 as usize).cloned()
    }
}
