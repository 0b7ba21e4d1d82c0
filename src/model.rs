//! Hot-swappable model slots.
//!
//! A [`ModelSlot`] holds the model a variant serves now. Readers get it without locks
//! ([`ModelSlot::load`], an `arc-swap` guard); a writer swaps in a new version with
//! [`ModelSlot::store`]. A request that loaded the old model finishes on it: the old model is
//! freed when its last reader lets go. Readers never wait for writers.

#![forbid(unsafe_code)]

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use arc_swap::Guard;

/// A model together with the version (model reference) it was loaded as.
#[derive(Debug)]
pub struct Versioned<M> {
    /// The model reference, for example `"ranker@4"`.
    pub version: Arc<str>,
    /// The model.
    pub model: M,
}

/// The guard [`ModelSlot::load`] returns: dereferences to `Option<Arc<Versioned<M>>>`.
pub type ModelGuard<M> = Guard<Option<Arc<Versioned<M>>>>;

/// A slot holding the current model of one variant; empty until a model is stored.
///
/// Cost: `load` is an `arc-swap` guard (no lock, no shared reference-count update in the
/// common case); `store` is one atomic swap.
#[derive(Debug)]
pub struct ModelSlot<M> {
    current: ArcSwapOption<Versioned<M>>,
}

impl<M> Default for ModelSlot<M> {
    fn default() -> Self {
        ModelSlot {
            current: ArcSwapOption::empty(),
        }
    }
}

impl<M> ModelSlot<M> {
    /// An empty slot.
    #[must_use]
    pub fn empty() -> Self {
        Self::default()
    }

    /// A slot holding `model` as `version`.
    #[must_use]
    pub fn new(version: &str, model: M) -> Self {
        let slot = Self::empty();
        slot.store(version, model);
        slot
    }

    /// The current model, if any. Holding the guard keeps that model alive across swaps.
    #[inline]
    pub fn load(&self) -> ModelGuard<M> {
        self.current.load()
    }

    /// The current model as an owned `Arc` (costs a reference-count update; for code that
    /// keeps the model beyond one request).
    #[must_use]
    pub fn load_full(&self) -> Option<Arc<Versioned<M>>> {
        self.current.load_full()
    }

    /// The current version, if any.
    #[must_use]
    pub fn version(&self) -> Option<Arc<str>> {
        self.current.load().as_ref().map(|m| m.version.clone())
    }

    /// Swaps in `model` as `version`; returns the previous model.
    pub fn store(&self, version: &str, model: M) -> Option<Arc<Versioned<M>>> {
        self.store_arc(Arc::new(Versioned {
            version: version.into(),
            model,
        }))
    }

    /// Swaps in an already shared model (several variants may serve one model).
    pub fn store_arc(&self, model: Arc<Versioned<M>>) -> Option<Arc<Versioned<M>>> {
        self.current.swap(Some(model))
    }

    /// Empties the slot; returns the previous model.
    pub fn clear(&self) -> Option<Arc<Versioned<M>>> {
        self.current.swap(None)
    }
}

/// Loads a model from its reference and artifact location. The control plane calls it off
/// the request path (on the reporter thread) and swaps the result into a [`ModelSlot`]; a
/// failed load keeps the old model.
pub trait ModelLoader<M>: Send + Sync {
    /// Loads the model `reference` (for example `"ranker@4"`) from `location` (a path or URL
    /// the registry gives, when it gives one).
    ///
    /// # Errors
    /// A [`LoadError`] saying what failed.
    fn load(&self, reference: &str, location: Option<&str>) -> Result<M, LoadError>;
}

impl<M, F> ModelLoader<M> for F
where
    F: Fn(&str, Option<&str>) -> Result<M, LoadError> + Send + Sync,
{
    fn load(&self, reference: &str, location: Option<&str>) -> Result<M, LoadError> {
        self(reference, location)
    }
}

/// Why a model could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The artifact could not be read.
    #[error("cannot read model `{reference}` from {location}: {source}")]
    Io {
        /// The model reference.
        reference: String,
        /// Where it was read from.
        location: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The artifact was read but is not a valid model.
    #[error("model `{reference}` is invalid: {reason}")]
    Invalid {
        /// The model reference.
        reference: String,
        /// What is wrong.
        reason: String,
    },
    /// The loader does not know this reference.
    #[error("no model `{reference}` is known to this loader")]
    Unknown {
        /// The model reference.
        reference: String,
    },
}
