//! The audit log: an append-only record of every decision and its evidence.

use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, clamp_limit, json_text, parse_json};

/// Rows [`Store::audit_log`] returns when the filter sets no limit.
pub const DEFAULT_AUDIT_LIMIT: u32 = 100;
/// Most rows one [`Store::audit_log`] call returns.
pub const MAX_AUDIT_LIMIT: u32 = 10_000;

/// An audit entry to append.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAudit {
    /// Who: `"sidecar"`, `"admin"`, an agent id, ...
    pub actor: String,
    /// What kind of decision (`"control.update"`, `"model.alias"`, `"trigger.drift"`, ...).
    pub kind: String,
    /// What it is about (`"ranker"`, `"ranker@4"`, ...).
    pub subject: String,
    /// Evidence and details.
    pub detail: serde_json::Value,
}

/// A stored audit row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRow {
    /// Sequence number (increasing).
    pub id: i64,
    /// Unix ms.
    pub at_ms: i64,
    /// Who.
    pub actor: String,
    /// Kind.
    pub kind: String,
    /// Subject.
    pub subject: String,
    /// Details.
    pub detail: serde_json::Value,
}

/// Which audit rows to read (newest first).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditFilter {
    /// Only this kind (exact) or kinds starting with it followed by `.`.
    pub kind: Option<String>,
    /// Only this subject.
    pub subject: Option<String>,
    /// At most this many (default 100, capped at 10 000).
    pub limit: Option<u32>,
    /// Only rows with id below this (paging).
    pub before_id: Option<i64>,
}

/// Appends one audit row inside the caller's transaction; returns its id.
pub(super) fn insert(
    conn: &Connection,
    at_ms: i64,
    actor: &str,
    kind: &str,
    subject: &str,
    detail: &serde_json::Value,
) -> Result<i64, StoreError> {
    let detail = json_text(detail)?;
    conn.prepare_cached(
        "INSERT INTO audit_log (at_ms, actor, kind, subject, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![at_ms, actor, kind, subject, detail])?;
    Ok(conn.last_insert_rowid())
}

impl Store {
    /// Appends an audit row stamped with the store's clock; returns its id (ids increase).
    ///
    /// There is no method to change or delete audit rows, and the table refuses `UPDATE`
    /// and `DELETE`.
    ///
    /// # Errors
    /// SQLite's error.
    pub fn audit(&self, entry: &NewAudit) -> Result<i64, StoreError> {
        let at_ms = self.now_ms();
        let conn = self.lock();
        insert(
            &conn,
            at_ms,
            &entry.actor,
            &entry.kind,
            &entry.subject,
            &entry.detail,
        )
    }

    /// Audit rows matching `filter`, newest first.
    ///
    /// A `kind` filter of `"model"` matches `"model"`, `"model.alias"` and
    /// `"model.alias.x"`, not `"models"`. The limit defaults to [`DEFAULT_AUDIT_LIMIT`] and
    /// is capped at [`MAX_AUDIT_LIMIT`]; page with `before_id` set to the last id seen.
    ///
    /// # Errors
    /// SQLite's error, or [`StoreError::Corrupt`] when a stored detail is not JSON.
    pub fn audit_log(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>, StoreError> {
        let limit = clamp_limit(filter.limit, DEFAULT_AUDIT_LIMIT, MAX_AUDIT_LIMIT);
        // `kind + "."` ≤ k < `kind + "/"` is exactly "k starts with `kind.`" under the
        // binary collation ('/' follows '.'), and can use the index.
        let (kind, prefix_lo, prefix_hi) = match &filter.kind {
            Some(k) => (
                Some(k.as_str()),
                Some(format!("{k}.")),
                Some(format!("{k}/")),
            ),
            None => (None, None, None),
        };
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT id, at_ms, actor, kind, subject, detail FROM audit_log
             WHERE (?1 IS NULL OR kind = ?1 OR (kind >= ?2 AND kind < ?3))
               AND (?4 IS NULL OR subject = ?4)
               AND (?5 IS NULL OR id < ?5)
             ORDER BY id DESC
             LIMIT ?6",
        )?;
        let rows = stmt.query_map(
            params![
                kind,
                prefix_lo,
                prefix_hi,
                filter.subject,
                filter.before_id,
                limit
            ],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                ))
            },
        )?;
        let mut out = Vec::new();
        for row in rows {
            let (id, at_ms, actor, kind, subject, detail) = row?;
            out.push(AuditRow {
                id,
                at_ms,
                actor,
                kind,
                subject,
                detail: parse_json(&detail, "audit_log")?,
            });
        }
        Ok(out)
    }
}
