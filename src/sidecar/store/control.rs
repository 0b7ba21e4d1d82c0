//! The control document: the current one, and every one ever saved.

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, audit, begin, clamp_limit};
use crate::wire::{CONTENT_TYPE_JSON, Control, WireLimits};

/// One saved control document, from [`Store::control_history`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlChange {
    /// Sequence number (increasing).
    pub id: i64,
    /// When it was saved, Unix ms.
    pub saved_ms: i64,
    /// Who saved it.
    pub actor: String,
    /// The document.
    pub control: Control,
}

/// Limits for documents the store itself wrote: no size or name bound beyond validity.
fn stored_limits() -> WireLimits {
    WireLimits {
        max_bytes: usize::MAX,
        max_experiments: usize::MAX,
        max_variants: usize::MAX,
        max_features: usize::MAX,
        max_name_bytes: usize::MAX,
    }
}

/// Decodes and validates stored control JSON.
fn decode_control(text: &str, table: &'static str) -> Result<Control, StoreError> {
    Control::decode(CONTENT_TYPE_JSON, text.as_bytes(), &stored_limits()).map_err(|e| {
        StoreError::Corrupt {
            table,
            reason: e.to_string(),
        }
    })
}

impl Store {
    /// Persists a new control document in one transaction: it replaces the current one, is
    /// appended to the history, and a `control.update` audit row (subject: the etag; detail:
    /// the experiment names and the model assignments) records who saved it.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] when the document does not validate (its config must
    /// compile: what is saved must load again), SQLite's error otherwise.
    pub fn save_control(&self, control: &Control, actor: &str) -> Result<(), StoreError> {
        let (text, detail) = prepare_control(control)?;
        let now = self.now_ms();
        let mut conn = self.lock();
        let tx = begin(&mut conn)?;
        write_control_tx(&tx, now, control, &text, actor, &detail)?;
        tx.commit()?;
        Ok(())
    }

    /// The current control document, if one was saved.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when the stored document does not decode or validate.
    pub fn load_control(&self) -> Result<Option<Control>, StoreError> {
        let conn = self.lock();
        let text: Option<String> = conn
            .prepare_cached("SELECT document FROM control WHERE id = 1")?
            .query_row([], |r| r.get(0))
            .optional()?;
        text.map(|t| decode_control(&t, "control")).transpose()
    }

    /// Saved control documents, newest first, at most `limit` (capped at 10 000).
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when a stored document does not decode or validate.
    pub fn control_history(&self, limit: u32) -> Result<Vec<ControlChange>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT id, saved_ms, actor, document FROM experiment_history
             ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![clamp_limit(Some(limit), limit, 10_000)], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, saved_ms, actor, document) = row?;
            out.push(ControlChange {
                id,
                saved_ms,
                actor,
                control: decode_control(&document, "experiment_history")?,
            });
        }
        Ok(out)
    }
}

/// Writes a validated control document (its JSON `text`) inside a caller's transaction.
fn write_control_tx(
    tx: &rusqlite::Connection,
    now: i64,
    control: &Control,
    text: &str,
    actor: &str,
    detail: &serde_json::Value,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO control (id, etag, document, saved_ms, actor) VALUES (1, ?1, ?2, ?3, ?4)
         ON CONFLICT (id) DO UPDATE SET
             etag = excluded.etag, document = excluded.document,
             saved_ms = excluded.saved_ms, actor = excluded.actor",
    )?
    .execute(params![control.etag, text, now, actor])?;
    tx.prepare_cached(
        "INSERT INTO experiment_history (etag, document, saved_ms, actor)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![control.etag, text, now, actor])?;
    audit::insert(tx, now, actor, "control.update", &control.etag, detail)?;
    Ok(())
}

/// Validates a control document and returns its JSON text and audit detail.
pub(super) fn prepare_control(
    control: &Control,
) -> Result<(String, serde_json::Value), StoreError> {
    let json = control
        .to_json()
        .map_err(|e| StoreError::Invalid(format!("control document: {e}")))?;
    Control::decode(CONTENT_TYPE_JSON, &json, &stored_limits())
        .map_err(|e| StoreError::Invalid(e.to_string()))?;
    let text = String::from_utf8(json)
        .map_err(|e| StoreError::Invalid(format!("control document: {e}")))?;
    let experiments: Vec<&str> = control
        .experiments
        .experiments
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    let detail = serde_json::json!({
        "experiments": experiments,
        "models": control.models,
    });
    Ok((text, detail))
}

/// [`Store::save_control`] inside a caller's transaction.
pub(super) fn save_control_tx(
    tx: &rusqlite::Connection,
    now: i64,
    control: &Control,
    actor: &str,
) -> Result<(), StoreError> {
    let (text, detail) = prepare_control(control)?;
    write_control_tx(tx, now, control, &text, actor, &detail)
}
