//! The model registry: versions per name, aliases (`production`, `candidate`, ...) and the
//! history of every alias move.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, audit, begin, json_text, parse_json, version_from_sql};

/// Longest model name, in bytes.
pub const MAX_MODEL_NAME: usize = 256;
/// Longest alias, in bytes.
pub const MAX_ALIAS: usize = 64;

/// A model to register.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewModel {
    /// Model name (`"ranker"`).
    pub name: String,
    /// Artifact location.
    pub artifact: String,
    /// Hex sha256 of the artifact.
    pub sha256: String,
    /// Training data range start/end, Unix ms.
    pub trained_from_ms: Option<i64>,
    /// Training data range end.
    pub trained_to_ms: Option<i64>,
    /// Offline metrics (JSON object).
    pub metrics: serde_json::Value,
    /// Serialised reference profile (feature sketches of the training data), if any.
    pub reference_profile: Option<Vec<u8>>,
}

/// A registered model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// Name.
    pub name: String,
    /// Version, 1, 2, ... per name.
    pub version: u32,
    /// `"name@version"`.
    pub reference: String,
    /// Artifact location.
    pub artifact: String,
    /// Hex sha256.
    pub sha256: String,
    /// Training range start.
    pub trained_from_ms: Option<i64>,
    /// Training range end.
    pub trained_to_ms: Option<i64>,
    /// Offline metrics.
    pub metrics: serde_json::Value,
    /// Aliases pointing at this version now, sorted.
    pub aliases: Vec<String>,
    /// Registered at, Unix ms.
    pub created_ms: i64,
}

/// One move of an alias, from [`Store::alias_history`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasChange {
    /// The alias.
    pub alias: String,
    /// The version it pointed at before (`None` when it was created).
    pub from_version: Option<u32>,
    /// The version it points at after.
    pub to_version: u32,
    /// When, Unix ms.
    pub at_ms: i64,
    /// Who moved it.
    pub actor: String,
    /// Why.
    pub reason: String,
}

fn check_model_name(name: &str) -> Result<(), StoreError> {
    if name.is_empty() || name.len() > MAX_MODEL_NAME || name.contains('@') {
        return Err(StoreError::Invalid(format!(
            "model name `{name}` must be 1 to {MAX_MODEL_NAME} bytes without `@`"
        )));
    }
    Ok(())
}

/// Alias names: 1 to 64 of `a-z`, `0-9`, `-`, `_`, not all digits (so `name@3` is always a
/// version).
fn check_alias(alias: &str) -> Result<(), StoreError> {
    let charset = alias
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if alias.is_empty()
        || alias.len() > MAX_ALIAS
        || !charset
        || alias.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(StoreError::Invalid(format!(
            "alias `{alias}` must be 1 to {MAX_ALIAS} of a-z, 0-9, `-`, `_`, and not only digits"
        )));
    }
    Ok(())
}

/// What follows the `@` of a reference.
enum Selector<'a> {
    Version(u32),
    Alias(&'a str),
}

fn parse_reference(reference: &str) -> Result<(&str, Selector<'_>), StoreError> {
    let bad = || {
        StoreError::Invalid(format!(
            "model reference `{reference}` must be `name@version` or `name@alias`"
        ))
    };
    let (name, tail) = reference.rsplit_once('@').ok_or_else(bad)?;
    if name.is_empty() || tail.is_empty() {
        return Err(bad());
    }
    if tail.bytes().all(|b| b.is_ascii_digit()) {
        let version = tail.parse::<u32>().map_err(|_| bad())?;
        Ok((name, Selector::Version(version)))
    } else {
        Ok((name, Selector::Alias(tail)))
    }
}

/// A `models` row without its aliases.
type ModelRow = (
    String,
    i64,
    String,
    String,
    Option<i64>,
    Option<i64>,
    String,
    i64,
);

const MODEL_COLUMNS: &str =
    "name, version, artifact, sha256, trained_from_ms, trained_to_ms, metrics, created_ms";

fn read_model_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ModelRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

fn to_record(row: ModelRow, aliases: Vec<String>) -> Result<ModelRecord, StoreError> {
    let (name, version, artifact, sha256, trained_from_ms, trained_to_ms, metrics, created_ms) =
        row;
    let version = version_from_sql(version, "models")?;
    Ok(ModelRecord {
        reference: format!("{name}@{version}"),
        name,
        version,
        artifact,
        sha256,
        trained_from_ms,
        trained_to_ms,
        metrics: parse_json(&metrics, "models")?,
        aliases,
        created_ms,
    })
}

/// One version of `name` with its aliases.
fn load_model(
    conn: &Connection,
    name: &str,
    version: u32,
) -> Result<Option<ModelRecord>, StoreError> {
    let row = conn
        .prepare_cached(&format!(
            "SELECT {MODEL_COLUMNS} FROM models WHERE name = ?1 AND version = ?2"
        ))?
        .query_row(params![name, version], read_model_row)
        .optional()?;
    let Some(row) = row else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached(
        "SELECT alias FROM aliases WHERE name = ?1 AND version = ?2 ORDER BY alias",
    )?;
    let aliases = stmt
        .query_map(params![name, version], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    to_record(row, aliases).map(Some)
}

/// The version `alias` of `name` points at.
fn alias_version(conn: &Connection, name: &str, alias: &str) -> Result<Option<u32>, StoreError> {
    let version: Option<i64> = conn
        .prepare_cached("SELECT version FROM aliases WHERE name = ?1 AND alias = ?2")?
        .query_row(params![name, alias], |r| r.get(0))
        .optional()?;
    version.map(|v| version_from_sql(v, "aliases")).transpose()
}

impl Store {
    /// Registers the next version of `model.name` (1 for a new name) and appends a
    /// `model.register` audit row (actor `"sidecar"`, subject the new reference).
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for an empty or over-long name, or one containing `@`;
    /// SQLite's error otherwise.
    pub fn register_model(&self, model: &NewModel) -> Result<ModelRecord, StoreError> {
        self.register_model_as(model, "sidecar")
    }

    /// As [`Store::register_model`], with the actor recorded in the audit row.
    ///
    /// # Errors
    /// As [`Store::register_model`].
    pub fn register_model_as(
        &self,
        model: &NewModel,
        actor: &str,
    ) -> Result<ModelRecord, StoreError> {
        check_model_name(&model.name)?;
        let metrics = json_text(&model.metrics)?;
        let now = self.now_ms();
        let mut conn = self.lock();
        let tx = begin(&mut conn)?;
        let latest: i64 = tx
            .prepare_cached("SELECT COALESCE(MAX(version), 0) FROM models WHERE name = ?1")?
            .query_row(params![model.name], |r| r.get(0))?;
        let version = latest
            .checked_add(1)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| {
                StoreError::Invalid(format!("model `{}` has no versions left", model.name))
            })?;
        tx.prepare_cached(
            "INSERT INTO models (name, version, artifact, sha256, trained_from_ms, trained_to_ms,
                                 metrics, reference_profile, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            model.name,
            version,
            model.artifact,
            model.sha256,
            model.trained_from_ms,
            model.trained_to_ms,
            metrics,
            model.reference_profile,
            now
        ])?;
        let reference = format!("{}@{version}", model.name);
        audit::insert(
            &tx,
            now,
            actor,
            "model.register",
            &reference,
            &serde_json::json!({
                "name": model.name,
                "version": version,
                "artifact": model.artifact,
                "sha256": model.sha256,
                "trained_from_ms": model.trained_from_ms,
                "trained_to_ms": model.trained_to_ms,
                "metrics": model.metrics,
                "reference_profile_bytes": model.reference_profile.as_ref().map(Vec::len),
            }),
        )?;
        tx.commit()?;
        Ok(ModelRecord {
            name: model.name.clone(),
            version,
            reference,
            artifact: model.artifact.clone(),
            sha256: model.sha256.clone(),
            trained_from_ms: model.trained_from_ms,
            trained_to_ms: model.trained_to_ms,
            metrics: model.metrics.clone(),
            aliases: Vec::new(),
            created_ms: now,
        })
    }

    /// One model version, if registered.
    ///
    /// # Errors
    /// SQLite's error, or [`StoreError::Corrupt`] for undecodable stored metrics.
    pub fn model(&self, name: &str, version: u32) -> Result<Option<ModelRecord>, StoreError> {
        load_model(&self.lock(), name, version)
    }

    /// The model a reference names: `"ranker@3"` (a version) or `"ranker@production"` (an
    /// alias; aliases are never all digits, so the two cannot be confused).
    ///
    /// # Errors
    /// [`StoreError::Invalid`] when the reference is not `name@version` or `name@alias`.
    pub fn model_by_reference(&self, reference: &str) -> Result<Option<ModelRecord>, StoreError> {
        let (name, selector) = parse_reference(reference)?;
        let conn = self.lock();
        let version = match selector {
            Selector::Version(v) => Some(v),
            Selector::Alias(alias) => alias_version(&conn, name, alias)?,
        };
        match version {
            Some(v) => load_model(&conn, name, v),
            None => Ok(None),
        }
    }

    /// Every registered version, by name then version, with its current aliases.
    ///
    /// # Errors
    /// SQLite's error, or [`StoreError::Corrupt`] for undecodable stored metrics.
    pub fn models(&self) -> Result<Vec<ModelRecord>, StoreError> {
        let conn = self.lock();
        let mut aliases: HashMap<(String, i64), Vec<String>> = HashMap::new();
        {
            let mut stmt =
                conn.prepare_cached("SELECT name, version, alias FROM aliases ORDER BY alias")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?;
            for row in rows {
                let (name, version, alias) = row?;
                aliases.entry((name, version)).or_default().push(alias);
            }
        }
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {MODEL_COLUMNS} FROM models ORDER BY name, version"
        ))?;
        let rows = stmt.query_map([], read_model_row)?;
        let mut out = Vec::new();
        for row in rows {
            let row = row?;
            let mine = aliases.remove(&(row.0.clone(), row.1)).unwrap_or_default();
            out.push(to_record(row, mine)?);
        }
        Ok(out)
    }

    /// The reference profile stored with a model version; `None` when the version is not
    /// registered or was registered without one.
    ///
    /// # Errors
    /// SQLite's error.
    pub fn reference_profile(
        &self,
        name: &str,
        version: u32,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let conn = self.lock();
        let profile: Option<Option<Vec<u8>>> = conn
            .prepare_cached(
                "SELECT reference_profile FROM models WHERE name = ?1 AND version = ?2",
            )?
            .query_row(params![name, version], |r| r.get(0))
            .optional()?;
        Ok(profile.flatten())
    }

    /// Points `alias` of model `name` at `version`, in one transaction with an
    /// `alias_history` row and a `model.alias` audit row (subject `name`, detail: alias,
    /// from, to, reason). Returns the version the alias pointed at before, if any.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] when the alias name is not 1 to 64 of `a-z`, `0-9`, `-`, `_`
    /// (or is all digits), or `name@version` is not registered.
    pub fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: u32,
        actor: &str,
        reason: &str,
    ) -> Result<Option<u32>, StoreError> {
        check_alias(alias)?;
        let now = self.now_ms();
        let mut conn = self.lock();
        let tx = begin(&mut conn)?;
        let previous = set_alias_tx(&tx, now, name, alias, version, actor, reason)?;
        tx.commit()?;
        Ok(previous)
    }

    /// The model version `alias` of `name` points at, if the alias is set.
    ///
    /// # Errors
    /// SQLite's error, or [`StoreError::Corrupt`] for undecodable stored metrics.
    pub fn alias(&self, name: &str, alias: &str) -> Result<Option<ModelRecord>, StoreError> {
        let conn = self.lock();
        match alias_version(&conn, name, alias)? {
            Some(version) => load_model(&conn, name, version),
            None => Ok(None),
        }
    }

    /// Every move of every alias of `name`, newest first.
    ///
    /// # Errors
    /// SQLite's error, or [`StoreError::Corrupt`] for an out-of-range stored version.
    pub fn alias_history(&self, name: &str) -> Result<Vec<AliasChange>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT alias, from_version, to_version, at_ms, actor, reason FROM alias_history
             WHERE name = ?1 ORDER BY id DESC",
        )?;
        let rows = stmt.query_map(params![name], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<i64>>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (alias, from, to, at_ms, actor, reason) = row?;
            out.push(AliasChange {
                alias,
                from_version: from
                    .map(|v| version_from_sql(v, "alias_history"))
                    .transpose()?,
                to_version: version_from_sql(to, "alias_history")?,
                at_ms,
                actor,
                reason,
            });
        }
        Ok(out)
    }
}

/// [`Store::set_alias`] inside a caller's transaction.
pub(super) fn set_alias_tx(
    tx: &Connection,
    now: i64,
    name: &str,
    alias: &str,
    version: u32,
    actor: &str,
    reason: &str,
) -> Result<Option<u32>, StoreError> {
    check_alias(alias)?;
    let exists = tx
        .prepare_cached("SELECT 1 FROM models WHERE name = ?1 AND version = ?2")?
        .query_row(params![name, version], |_| Ok(()))
        .optional()?
        .is_some();
    if !exists {
        return Err(StoreError::Invalid(format!(
            "model `{name}@{version}` is not registered"
        )));
    }
    let previous = alias_version(tx, name, alias)?;
    tx.prepare_cached(
        "INSERT INTO aliases (name, alias, version, updated_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name, alias) DO UPDATE SET
             version = excluded.version, updated_ms = excluded.updated_ms",
    )?
    .execute(params![name, alias, version, now])?;
    tx.prepare_cached(
        "INSERT INTO alias_history (name, alias, from_version, to_version, at_ms, actor, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![name, alias, previous, version, now, actor, reason])?;
    audit::insert(
        tx,
        now,
        actor,
        "model.alias",
        name,
        &serde_json::json!({
            "alias": alias,
            "from": previous,
            "to": version,
            "reason": reason,
        }),
    )?;
    Ok(previous)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_and_references_parse_strictly() {
        for good in ["production", "a", "canary-2", "shadow_b", "v2"] {
            assert!(check_alias(good).is_ok(), "{good}");
        }
        for bad in ["", "Prod", "a b", "a.b", "a@b", "42", "é"] {
            assert!(check_alias(bad).is_err(), "{bad}");
        }
        assert!(check_alias(&"x".repeat(64)).is_ok());
        assert!(check_alias(&"x".repeat(65)).is_err());
        assert!(matches!(
            parse_reference("ranker@3"),
            Ok(("ranker", Selector::Version(3)))
        ));
        assert!(matches!(
            parse_reference("ranker@production"),
            Ok(("ranker", Selector::Alias("production")))
        ));
        for bad in ["ranker", "@3", "ranker@", "ranker@4294967296"] {
            assert!(parse_reference(bad).is_err(), "{bad}");
        }
    }
}
