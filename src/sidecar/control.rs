//! The control plane: the control document agents poll (experiments config and the model
//! each variant serves), kept in memory with its encodings and persisted in the store.
//!
//! Writers (the admin API, the lifecycle) take one lock, commit to the store first, then
//! swap the in-memory document: agents never see a document the store does not have.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use axum::body::Bytes;

use super::store::{DecisionCommit, Store, StoreError};
use crate::route::RouterConfig;
use crate::wire::{
    CONTENT_TYPE_CONTROL, CONTENT_TYPE_JSON, Control, ModelAssignment, WIRE_VERSION, WireError,
    WireLimits,
};

/// The control document with its encodings, made once per change.
#[derive(Debug)]
pub struct ControlDoc {
    /// The document.
    pub control: Control,
    /// Its JSON encoding.
    pub json: Bytes,
    /// Its binary encoding.
    pub binary: Bytes,
}

impl ControlDoc {
    fn new(control: Control) -> Result<Self, WireError> {
        Ok(ControlDoc {
            json: control.to_json()?.into(),
            binary: control.to_binary()?.into(),
            control,
        })
    }

    /// Checks that agents accept both encodings: they decode them with
    /// [`WireLimits::default`], the limits ingest also checks their reports' names with, so
    /// a document served past them would make every agent refuse it (and its reports).
    fn check_for_agents(&self) -> Result<(), ControlError> {
        let limits = WireLimits::default();
        for (content_type, bytes) in [
            (CONTENT_TYPE_JSON, &self.json),
            (CONTENT_TYPE_CONTROL, &self.binary),
        ] {
            Control::decode(content_type, bytes, &limits).map_err(|e| {
                ControlError::Invalid(match e {
                    WireError::InvalidControl(reason) => reason,
                    other => other.to_string(),
                })
            })?;
        }
        Ok(())
    }
}

/// A content-derived ETag of experiments and models.
#[must_use]
pub fn control_etag(
    experiments: &RouterConfig,
    models: &BTreeMap<String, ModelAssignment>,
) -> String {
    let text = serde_json::to_vec(&(experiments, models)).unwrap_or_default();
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&text))
}

/// A control document for `experiments` and `models` with its ETag.
#[must_use]
pub fn make_control(
    experiments: RouterConfig,
    models: BTreeMap<String, ModelAssignment>,
) -> Control {
    Control {
        version: WIRE_VERSION,
        etag: control_etag(&experiments, &models),
        experiments,
        models,
    }
}

/// Checks that a config compiles and that every model key names one of its variants.
///
/// # Errors
/// A message saying what is wrong.
pub fn validate(
    experiments: &RouterConfig,
    models: &BTreeMap<String, ModelAssignment>,
) -> Result<(), String> {
    crate::route::Router::new(experiments.clone()).map_err(|e| e.to_string())?;
    for key in models.keys() {
        if !names_a_variant(experiments, key) {
            return Err(format!(
                "model key `{key}` is not an `experiment/variant` of this config"
            ));
        }
    }
    Ok(())
}

/// Whether a model key (`experiment/variant`) names a variant of `experiments`.
fn names_a_variant(experiments: &RouterConfig, key: &str) -> bool {
    key.split_once('/').is_some_and(|(e, v)| {
        experiments
            .experiments
            .iter()
            .any(|x| x.name == e && x.variants.iter().any(|y| y.name == v))
    })
}

/// Why a control change failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The document is invalid.
    #[error("invalid control document: {0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The writer expected another document than the one in force (an `If-Match` that no
    /// longer matches): someone, or the lifecycle, changed it since the writer read it.
    #[error("the control document changed since it was read: its etag is now {current}")]
    Stale {
        /// The etag in force.
        current: String,
    },
}

/// The current control document and the lock its writers share.
#[derive(Debug)]
pub struct ControlPlane {
    store: Arc<Store>,
    current: ArcSwap<ControlDoc>,
    writes: Mutex<()>,
}

impl ControlPlane {
    /// Loads the stored document, or saves one made of `initial` when there is none.
    ///
    /// # Errors
    /// [`ControlError`] when the store fails or the document does not encode.
    pub fn open(store: Arc<Store>, initial: &RouterConfig) -> Result<Self, ControlError> {
        let control = match store.load_control()? {
            Some(stored) => {
                if !initial.experiments.is_empty() && stored.experiments != *initial {
                    tracing::warn!(
                        "the database's control document {} is in force; the config file's experiments differ and are ignored (change experiments with PUT /v1/control)",
                        stored.etag
                    );
                }
                stored
            }
            None => {
                let control = make_control(initial.clone(), BTreeMap::new());
                ControlDoc::new(control.clone())
                    .map_err(|e| ControlError::Invalid(e.to_string()))?
                    .check_for_agents()?;
                store.save_control(&control, "config-file")?;
                control
            }
        };
        let doc = ControlDoc::new(control).map_err(|e| ControlError::Invalid(e.to_string()))?;
        Ok(ControlPlane {
            store,
            current: ArcSwap::from_pointee(doc),
            writes: Mutex::new(()),
        })
    }

    /// The document in force with its encodings.
    #[must_use]
    pub fn current(&self) -> Arc<ControlDoc> {
        self.current.load_full()
    }

    /// Replaces experiments and models (validated, saved, then served). Returns the
    /// document and whether it changed. Blocking: call it off the async workers.
    ///
    /// The document must be one agents accept: its config compiles, every model key names
    /// a variant, and its names and encodings are within [`WireLimits::default`] (what
    /// agents decode control documents with, and ingest checks their reports against).
    ///
    /// # Errors
    /// [`ControlError::Invalid`] saying what is wrong, [`ControlError::Store`] when the store
    /// fails.
    pub fn replace(
        &self,
        experiments: RouterConfig,
        models: BTreeMap<String, ModelAssignment>,
        actor: &str,
    ) -> Result<(Control, bool), ControlError> {
        self.replace_checked(experiments, Some(models), None, actor)
    }

    /// [`ControlPlane::replace`], with two guards for writers that read the document first:
    /// - `models: None` keeps the assignments in force, for the variants the new experiments
    ///   still have (a writer that only changes weights cannot wipe what the lifecycle
    ///   promoted);
    /// - `if_match: Some(etag)` replaces only while that etag is in force, checked under
    ///   the writers' lock, so a change committed since the writer read the document (a
    ///   promotion, say) is never silently undone.
    ///
    /// # Errors
    /// As [`ControlPlane::replace`], and [`ControlError::Stale`] when `if_match` is not the
    /// etag in force.
    pub fn replace_checked(
        &self,
        experiments: RouterConfig,
        models: Option<BTreeMap<String, ModelAssignment>>,
        if_match: Option<&str>,
        actor: &str,
    ) -> Result<(Control, bool), ControlError> {
        let _writer = self
            .writes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.current.load_full();
        if let Some(expected) = if_match
            && expected != current.control.etag
        {
            return Err(ControlError::Stale {
                current: current.control.etag.clone(),
            });
        }
        let models = match models {
            Some(models) => models,
            None => current
                .control
                .models
                .iter()
                .filter(|(key, _)| names_a_variant(&experiments, key))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        validate(&experiments, &models).map_err(ControlError::Invalid)?;
        let control = make_control(experiments, models);
        let doc =
            ControlDoc::new(control.clone()).map_err(|e| ControlError::Invalid(e.to_string()))?;
        doc.check_for_agents()?;
        if current.control.etag == control.etag {
            return Ok((control, false));
        }
        self.store.save_control(&control, actor)?;
        self.current.store(Arc::new(doc));
        Ok((control, true))
    }

    /// Commits a decision built from the document in force: `build` returns the decision
    /// (with a new control document when it changes what agents serve); it is committed
    /// in one transaction and then the new document is served. Blocking.
    ///
    /// # Errors
    /// What `build` returns, or the store's error (nothing is then changed).
    pub fn decide<E: From<ControlError>>(
        &self,
        build: impl FnOnce(&Control) -> Result<DecisionCommit, E>,
    ) -> Result<i64, E> {
        let _writer = self
            .writes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.current.load_full();
        let decision = build(&current.control)?;
        let doc = match &decision.control {
            Some(c) => Some(
                ControlDoc::new(c.clone())
                    .map_err(|e| E::from(ControlError::Invalid(e.to_string())))?,
            ),
            None => None,
        };
        let id = self
            .store
            .commit_decision(&decision)
            .map_err(|e| E::from(ControlError::Store(e)))?;
        if let Some(doc) = doc {
            self.current.store(Arc::new(doc));
        }
        Ok(id)
    }
}
