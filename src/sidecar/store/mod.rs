//! The sidecar's embedded store: one SQLite file (WAL, foreign keys, versioned migrations).
//!
//! Every method is blocking and takes `&self`: the store holds one
//! [`rusqlite::Connection`] behind a [`std::sync::Mutex`], so a [`Store`] is `Send + Sync`
//! and is shared as an `Arc<Store>`. The server calls it from
//! `tokio::task::spawn_blocking`, never on the async workers.
//!
//! # The file
//!
//! [`Store::open`] creates the file if needed and sets, on every open:
//!
//! * `journal_mode = WAL`: readers do not block the writer, and a commit is one append to
//!   the write-ahead log;
//! * `foreign_keys = ON` (SQLite's default is off);
//! * `synchronous = FULL` or `NORMAL` from [`Durability`];
//! * a busy timeout of 5 s, for other processes (a backup, the CLI) holding the lock.
//!
//! The schema is versioned with `PRAGMA user_version`: an ordered list of SQL steps, each
//! applied in its own transaction together with the version bump, so a crash during a
//! migration leaves the previous version intact. A file whose version is ahead of this
//! build ([`SCHEMA_VERSION`]) is refused with [`StoreError::NewerSchema`] rather than
//! misread.
//!
//! # Tables
//!
//! | table | what | key |
//! |---|---|---|
//! | `report_ids` | ids of accepted reports, agent, `received_ms` | `report_id` |
//! | `agents` | first/last report time, report count, sums of agent-side rejections | `agent_id` |
//! | `windows` | merged [`VariantMetrics`](crate::metrics::VariantMetrics) (postcard `BLOB`) and model per variant and bucket | `(experiment, variant, resolution_ms, bucket_start_ms)` |
//! | `models` | registry: name, version, artifact, sha256, training range, metrics JSON, reference profile `BLOB` | `UNIQUE (name, version)` |
//! | `aliases` | current `name`/`alias` → version (foreign key to `models`) | `(name, alias)` |
//! | `alias_history` | every alias move: from, to, when, who, why (append-only) | `id` |
//! | `control` | the current [`Control`](crate::wire::Control) document as JSON, its etag | single row |
//! | `experiment_history` | every saved control document (append-only) | `id` |
//! | `audit_log` | every decision: when, actor, kind, subject, detail JSON (append-only) | `id` (increasing) |
//! | `pipeline_runs` | retrain/evaluate/promote runs: trigger, evidence, state, outcome | `id` |
//! | `pipeline_steps` | the steps of a run, in order | `id`, `UNIQUE (run_id, seq)` |
//!
//! Times are Unix milliseconds (`INTEGER`). Append-only tables have triggers that abort
//! any `UPDATE` or `DELETE`, and the API has no method that changes them.
//!
//! # Idempotent, durable ingest
//!
//! [`Store::ingest`] runs in one transaction: it inserts the report id (`INSERT OR IGNORE`);
//! if the id was already there the transaction is rolled back and the report is a
//! [`Ingested::Duplicate`] that changes nothing. Otherwise the agent row is updated, each
//! variant's metrics are merged into its minute bucket, and everything commits together.
//! A crash therefore keeps both the id and the merged windows, or neither: a report is
//! never counted twice and never lost once acknowledged, because the server answers `202`
//! only after the commit returned. With [`Durability::Full`] the commit is on disk; with
//! [`Durability::Normal`] it survives a process crash but the last commits may be lost on
//! a power cut (then the agent, which got a `202`, does not resend them).
//!
//! # Series
//!
//! Each (experiment, variant) a report carries metrics for becomes a *series*: rows in
//! `windows` that compaction turns into hours but nothing ever deletes. Agents report only
//! what their control document names, but a report may name anything, so the number of
//! series is bounded: [`Store::ingest`] refuses ([`StoreError::TooManySeries`], nothing
//! committed) a report that would take the store past [`Store::with_max_series`]'s limit
//! (default [`DEFAULT_MAX_SERIES`]), while reports of series already stored keep being
//! merged. The store counts its series once when opened (one index seek per series) and
//! keeps the count with the connection.
//!
//! Idempotency lasts as long as the id is kept: [`Store::prune_report_ids`] forgets old
//! ids, after which a retry of such an old report would be counted again. Keep the horizon
//! far beyond any agent's retry window (days, not minutes).
//!
//! # Buckets
//!
//! A report lands in the minute bucket of its window *end*
//! (`floor(window_end_ms / 60 000) · 60 000`). [`Store::ingest`] refuses
//! ([`StoreError::WindowOutOfRange`]) a window end before [`EARLIEST_WINDOW_END_MS`] (the
//! Unix epoch) or more than [`MAX_WINDOW_AHEAD_MS`] (one day) after the store's clock:
//! such times are no agent's clock, and stored they broke compaction, time arithmetic and
//! the dashboard's charts. [`Store::compact`] later merges whole hours of
//! minute rows into hour rows; [`Store::totals`] merges rows of any resolution, so totals
//! over all time do not change when compacting.

mod audit;
mod control;
mod decision;
mod registry;
mod reports;
mod runs;
mod schema;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};
use serde::{Deserialize, Serialize};

use crate::route::{Clock, SystemClock};

pub use audit::{AuditFilter, AuditRow, DEFAULT_AUDIT_LIMIT, MAX_AUDIT_LIMIT, NewAudit};
pub use control::ControlChange;
pub use decision::{AliasMove, DecisionCommit};
pub use registry::{AliasChange, MAX_ALIAS, MAX_MODEL_NAME, ModelRecord, NewModel};
pub use reports::{AgentSeen, VariantTotal, WindowRow};
pub use runs::{RUN_STATES, RunRecord, StepRecord, TERMINAL_STATES};

/// The schema version this build reads and writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: u32 = 2;

/// Resolution of the buckets reports are merged into: one minute.
pub const MINUTE_MS: i64 = 60_000;
/// Resolution of compacted buckets: one hour.
pub const HOUR_MS: i64 = 3_600_000;

/// Earliest window end a report may carry: the Unix epoch (1970-01-01T00:00:00Z). Earlier
/// times are no agent's clock, and far-off ones break bucketing and time arithmetic.
pub const EARLIEST_WINDOW_END_MS: i64 = 0;
/// How far past the store's clock a report's window end may be: one day (agents' clocks
/// drift, but not by days; later times would also pass what a browser can draw).
pub const MAX_WINDOW_AHEAD_MS: i64 = 24 * HOUR_MS;

/// Default limit on distinct (experiment, variant) series (see [`Store::with_max_series`]).
pub const DEFAULT_MAX_SERIES: usize = 10_000;

/// How long a statement waits for another process's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How hard a commit waits for the disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// `synchronous = FULL`: a committed transaction survives a power cut (the default).
    #[default]
    Full,
    /// `synchronous = NORMAL`: survives a crash of the process, may lose the last commits on
    /// a power cut; faster.
    Normal,
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite failed.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored value does not decode.
    #[error("corrupt stored value in {table}: {reason}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// Why.
        reason: String,
    },
    /// The file was written by a newer modelgate.
    #[error("database schema version {found} is newer than this build's {supported}")]
    NewerSchema {
        /// The file's version.
        found: u32,
        /// This build's.
        supported: u32,
    },
    /// A request the store refuses (unknown model, bad alias, ...).
    #[error("{0}")]
    Invalid(String),
    /// A report whose window ends outside the plausible range
    /// ([`EARLIEST_WINDOW_END_MS`], the store's clock plus [`MAX_WINDOW_AHEAD_MS`]).
    #[error("{0}")]
    WindowOutOfRange(String),
    /// A report that would store more distinct (experiment, variant) series than the limit
    /// ([`Store::with_max_series`]); nothing of it was stored.
    #[error(
        "the report would add {new} new series (experiment/variant, such as `{example}`) to \
         the {stored} stored, past the limit of {limit}: series already stored are still \
         accepted; raise max_series in the sidecar config to store more"
    )]
    TooManySeries {
        /// Series the report names that the store does not hold.
        new: usize,
        /// Series stored.
        stored: usize,
        /// The limit.
        limit: usize,
        /// One of the new series, as `experiment/variant`.
        example: String,
    },
}

/// What ingesting a report did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    /// New report, merged and committed.
    Accepted,
    /// Its id was seen before: nothing changed.
    Duplicate,
}

/// The embedded store.
pub struct Store {
    conn: Mutex<Connection>,
    /// Distinct (experiment, variant) series in `windows`. Read and written only while
    /// `conn` is locked (ingest, the one writer of new series, updates it after its
    /// commit), so it equals the table's count; the atomic only makes `Store` `Sync`.
    series: AtomicUsize,
    max_series: usize,
    clock: Arc<dyn Clock>,
    path: PathBuf,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path` and migrates it; times are read
    /// from the system clock.
    ///
    /// # Errors
    /// [`StoreError::NewerSchema`] if the file was written by a newer build, SQLite's error
    /// if the file cannot be opened, is not a database, or a migration fails.
    pub fn open(path: &Path, durability: Durability) -> Result<Store, StoreError> {
        Store::open_with_clock(path, durability, Arc::new(SystemClock))
    }

    /// As [`Store::open`], with the clock that stamps audit rows, registrations and runs
    /// (tests inject a [`crate::route::ManualClock`]).
    ///
    /// # Errors
    /// As [`Store::open`].
    pub fn open_with_clock(
        path: &Path,
        durability: Durability,
        clock: Arc<dyn Clock>,
    ) -> Result<Store, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // `journal_mode` answers with the mode in force; an in-memory database says
        // "memory", which is fine, anything else means WAL is unavailable.
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
            return Err(StoreError::Invalid(format!(
                "{}: journal_mode is `{mode}`, WAL could not be enabled",
                path.display()
            )));
        }
        conn.pragma_update(None, "foreign_keys", true)?;
        let synchronous = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", synchronous)?;
        // Every statement is prepared once per connection; keep them all cached.
        conn.set_prepared_statement_cache_capacity(64);
        schema::migrate(&mut conn)?;
        let series = reports::count_series(&conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
            series: AtomicUsize::new(series),
            max_series: DEFAULT_MAX_SERIES,
            clock,
            path: path.to_owned(),
        })
    }

    /// This store with at most `max_series` distinct (experiment, variant) series: ingest
    /// refuses a report that would add series past it ([`StoreError::TooManySeries`]).
    /// A store that already holds more (opened with a higher limit before) keeps them and
    /// takes no new ones. The default is [`DEFAULT_MAX_SERIES`].
    #[must_use]
    pub fn with_max_series(mut self, max_series: usize) -> Store {
        self.max_series = max_series;
        self
    }

    /// The file this store was opened on.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the file (equal to [`SCHEMA_VERSION`] once open).
    ///
    /// # Errors
    /// SQLite's error.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        schema::user_version(&self.lock())
    }

    /// The connection. A panic while it was held (none is expected: no method panics)
    /// leaves it usable: an open transaction was rolled back when it unwound.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Now, Unix ms, from the store's clock.
    fn now_ms(&self) -> i64 {
        self.clock.now_unix_ms()
    }
}

/// Starts a write transaction, taking the write lock up front so that a read followed by a
/// write never fails on an upgrade.
fn begin(conn: &mut Connection) -> Result<Transaction<'_>, StoreError> {
    Ok(conn.transaction_with_behavior(TransactionBehavior::Immediate)?)
}

/// A stored count, which must not be negative.
fn count_from_sql(value: i64, table: &'static str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt {
        table,
        reason: format!("negative count {value}"),
    })
}

/// A stored model version.
fn version_from_sql(value: i64, table: &'static str) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt {
        table,
        reason: format!("model version {value} out of range"),
    })
}

/// JSON text of a value.
fn json_text(value: &serde_json::Value) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Invalid(format!("value does not serialise to JSON: {e}")))
}

/// A stored JSON value.
fn parse_json(text: &str, table: &'static str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        table,
        reason: format!("invalid JSON: {e}"),
    })
}

/// A limit with a default and a cap.
fn clamp_limit(limit: Option<u32>, default: u32, max: u32) -> i64 {
    i64::from(limit.unwrap_or(default).min(max))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pragma(store: &Store, name: &str) -> i64 {
        store
            .lock()
            .pragma_query_value(None, name, |r| r.get(0))
            .expect("pragma")
    }

    #[test]
    fn pragmas_follow_durability_and_foreign_keys_hold() {
        let dir = std::env::temp_dir().join(format!(
            "modelgate-store-unit-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("unit.db");
        for (durability, synchronous) in [(Durability::Full, 2), (Durability::Normal, 1)] {
            let store = Store::open(&path, durability).expect("opens");
            assert_eq!(pragma(&store, "synchronous"), synchronous);
            assert_eq!(pragma(&store, "foreign_keys"), 1);
            assert_eq!(pragma(&store, "busy_timeout"), 5_000);
            assert_eq!(pragma(&store, "user_version"), i64::from(SCHEMA_VERSION));
            // An alias of a model that is not registered breaks the foreign key.
            assert!(
                store
                    .lock()
                    .execute(
                        "INSERT INTO aliases (name, alias, version, updated_ms)
                         VALUES ('ghost', 'production', 1, 0)",
                        [],
                    )
                    .is_err()
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
