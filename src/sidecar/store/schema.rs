//! The schema as an ordered list of migrations, and the code that applies them.
//!
//! Step `i` (1-based) of [`MIGRATIONS`] takes a database from `user_version = i - 1` to
//! `user_version = i`. Each step runs in its own `IMMEDIATE` transaction that also sets
//! `PRAGMA user_version` (the header write is part of the transaction), so a crash mid-step
//! leaves the file at the previous version, and two processes opening the same file at once
//! serialise on the write lock and re-check the version inside it. Steps are append-only:
//! a released step is never edited, a change is a new step.

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// The migrations, in order. `MIGRATIONS.len()` is the schema version this build writes.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    r#"
    -- Idempotency: every accepted report id, with who sent it and when.
    CREATE TABLE report_ids (
        report_id   TEXT PRIMARY KEY NOT NULL,
        agent_id    TEXT NOT NULL,
        received_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX report_ids_by_received ON report_ids (received_ms);

    -- Agents heard from, with the sums of their agent-side rejections.
    CREATE TABLE agents (
        agent_id                   TEXT PRIMARY KEY NOT NULL,
        first_report_ms            INTEGER NOT NULL,
        last_report_ms             INTEGER NOT NULL,
        reports                    INTEGER NOT NULL CHECK (reports >= 0),
        rejected_unknown_experiment INTEGER NOT NULL DEFAULT 0,
        rejected_unknown_variant   INTEGER NOT NULL DEFAULT 0,
        rejected_non_finite_value  INTEGER NOT NULL DEFAULT 0,
        rejected_over_limit        INTEGER NOT NULL DEFAULT 0,
        rejected_schema_mismatch   INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;

    -- Merged metrics per variant and time bucket (postcard-encoded VariantMetrics).
    CREATE TABLE windows (
        experiment      TEXT NOT NULL,
        variant         TEXT NOT NULL,
        resolution_ms   INTEGER NOT NULL CHECK (resolution_ms > 0),
        bucket_start_ms INTEGER NOT NULL,
        model           TEXT,
        metrics         BLOB NOT NULL,
        PRIMARY KEY (experiment, variant, resolution_ms, bucket_start_ms)
    ) WITHOUT ROWID;
    CREATE INDEX windows_by_bucket ON windows (bucket_start_ms);

    -- The model registry.
    CREATE TABLE models (
        id                INTEGER PRIMARY KEY,
        name              TEXT NOT NULL,
        version           INTEGER NOT NULL CHECK (version >= 1),
        artifact          TEXT NOT NULL,
        sha256            TEXT NOT NULL,
        trained_from_ms   INTEGER,
        trained_to_ms     INTEGER,
        metrics           TEXT NOT NULL,
        reference_profile BLOB,
        created_ms        INTEGER NOT NULL,
        UNIQUE (name, version)
    );

    CREATE TABLE aliases (
        name       TEXT NOT NULL,
        alias      TEXT NOT NULL,
        version    INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        PRIMARY KEY (name, alias),
        FOREIGN KEY (name, version) REFERENCES models (name, version)
    ) WITHOUT ROWID;

    CREATE TABLE alias_history (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        name         TEXT NOT NULL,
        alias        TEXT NOT NULL,
        from_version INTEGER,
        to_version   INTEGER NOT NULL,
        at_ms        INTEGER NOT NULL,
        actor        TEXT NOT NULL,
        reason       TEXT NOT NULL,
        FOREIGN KEY (name, to_version) REFERENCES models (name, version)
    );
    CREATE INDEX alias_history_by_name ON alias_history (name, id);

    -- The current control document (one row) and every saved one.
    CREATE TABLE control (
        id       INTEGER PRIMARY KEY CHECK (id = 1),
        etag     TEXT NOT NULL,
        document TEXT NOT NULL,
        saved_ms INTEGER NOT NULL,
        actor    TEXT NOT NULL
    );

    CREATE TABLE experiment_history (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        etag     TEXT NOT NULL,
        document TEXT NOT NULL,
        saved_ms INTEGER NOT NULL,
        actor    TEXT NOT NULL
    );

    -- Every decision, with its evidence.
    CREATE TABLE audit_log (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ms   INTEGER NOT NULL,
        actor   TEXT NOT NULL,
        kind    TEXT NOT NULL,
        subject TEXT NOT NULL,
        detail  TEXT NOT NULL
    );
    CREATE INDEX audit_log_by_kind ON audit_log (kind, id);
    CREATE INDEX audit_log_by_subject ON audit_log (subject, id);

    -- Retrain / evaluate / promote pipeline runs and their steps.
    CREATE TABLE pipeline_runs (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        "trigger"   TEXT NOT NULL,
        evidence    TEXT NOT NULL,
        state       TEXT NOT NULL CHECK (state IN
            ('running', 'pending_review', 'succeeded', 'failed', 'rejected', 'cancelled')),
        started_ms  INTEGER NOT NULL,
        finished_ms INTEGER,
        outcome     TEXT
    );
    CREATE INDEX pipeline_runs_by_state ON pipeline_runs (state, id);

    CREATE TABLE pipeline_steps (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id      INTEGER NOT NULL REFERENCES pipeline_runs (id),
        seq         INTEGER NOT NULL,
        name        TEXT NOT NULL,
        state       TEXT NOT NULL CHECK (state IN
            ('running', 'pending_review', 'succeeded', 'failed', 'rejected', 'cancelled')),
        started_ms  INTEGER NOT NULL,
        finished_ms INTEGER,
        detail      TEXT NOT NULL,
        UNIQUE (run_id, seq)
    );

    -- Append-only tables refuse updates and deletes, whoever writes to the file.
    CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
    CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
    CREATE TRIGGER alias_history_no_update BEFORE UPDATE ON alias_history
        BEGIN SELECT RAISE(ABORT, 'alias_history is append-only'); END;
    CREATE TRIGGER alias_history_no_delete BEFORE DELETE ON alias_history
        BEGIN SELECT RAISE(ABORT, 'alias_history is append-only'); END;
    CREATE TRIGGER experiment_history_no_update BEFORE UPDATE ON experiment_history
        BEGIN SELECT RAISE(ABORT, 'experiment_history is append-only'); END;
    CREATE TRIGGER experiment_history_no_delete BEFORE DELETE ON experiment_history
        BEGIN SELECT RAISE(ABORT, 'experiment_history is append-only'); END;
    "#,
    // 2: labelled records agents ship for retraining.
    r#"
    -- Per accepted report: how many labelled records the agent saw in its window.
    CREATE TABLE labelled_batches (
        report_id     TEXT PRIMARY KEY NOT NULL,
        agent_id      TEXT NOT NULL,
        window_end_ms INTEGER NOT NULL,
        seen          INTEGER NOT NULL CHECK (seen >= 0),
        kept          INTEGER NOT NULL CHECK (kept >= 0 AND kept <= seen)
    ) WITHOUT ROWID;
    CREATE INDEX labelled_batches_by_end ON labelled_batches (window_end_ms);

    -- The records kept (features as a JSON array, in the agent's schema order).
    CREATE TABLE labelled_records (
        id        INTEGER PRIMARY KEY,
        report_id TEXT NOT NULL REFERENCES labelled_batches (report_id),
        at_ms     INTEGER NOT NULL,
        features  TEXT NOT NULL,
        label     REAL NOT NULL
    );
    CREATE INDEX labelled_records_by_time ON labelled_records (at_ms);
    "#,
];

/// The schema version of `conn`'s database (`PRAGMA user_version`).
pub(super) fn user_version(conn: &Connection) -> Result<u32, StoreError> {
    let v: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    // user_version is a signed 32-bit header field: a negative one was not written by us.
    u32::try_from(v).map_err(|_| StoreError::Corrupt {
        table: "user_version",
        reason: format!("schema version {v} is negative"),
    })
}

/// Brings the database up to [`MIGRATIONS`]`.len()`, one transaction per step.
///
/// # Errors
/// [`StoreError::NewerSchema`] when the file is ahead of this build, or SQLite's error.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let supported = supported_version();
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Read under the write lock: another process may have migrated meanwhile.
        let current = user_version(&tx)?;
        if current > supported {
            return Err(StoreError::NewerSchema {
                found: current,
                supported,
            });
        }
        if current == supported {
            return Ok(());
        }
        let Some(step) = usize::try_from(current)
            .ok()
            .and_then(|at| MIGRATIONS.get(at))
        else {
            return Ok(());
        };
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", current + 1)?;
        tx.commit()?;
    }
}

/// The schema version this build writes.
pub(super) fn supported_version() -> u32 {
    super::SCHEMA_VERSION
}

// The public constant and the list must agree.
const _: () = assert!(MIGRATIONS.len() == super::SCHEMA_VERSION as usize);
