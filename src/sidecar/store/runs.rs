//! Pipeline runs (retrain, evaluate, promote) and their steps.
//!
//! A run and each of its steps has a state, one of [`RUN_STATES`]:
//!
//! * `running`: in progress (where runs and steps start);
//! * `pending_review`: waiting for a person (a promotion held for approval);
//! * `succeeded`, `failed`, `rejected` (a reviewer or a gate said no), `cancelled`: final
//!   ([`TERMINAL_STATES`]); a final run or step cannot change again, and a final run takes
//!   no new steps.
//!
//! Moving to a final state stamps `finished_ms`; moving to `pending_review` does not.

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, begin, clamp_limit, json_text, parse_json};

/// Every state a run or step can be in.
pub const RUN_STATES: [&str; 6] = [
    "running",
    "pending_review",
    "succeeded",
    "failed",
    "rejected",
    "cancelled",
];

/// The final states: a run or step in one of them is finished.
pub const TERMINAL_STATES: [&str; 4] = ["succeeded", "failed", "rejected", "cancelled"];

/// Most runs one [`Store::runs`] call returns.
const MAX_RUNS: u32 = 10_000;

/// A pipeline run with its steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Run id (increasing).
    pub id: i64,
    /// What started it (`"drift"`, `"schedule"`, `"manual"`, ...).
    pub trigger: String,
    /// Why: the evidence the trigger saw.
    pub evidence: serde_json::Value,
    /// One of [`RUN_STATES`].
    pub state: String,
    /// Started at, Unix ms.
    pub started_ms: i64,
    /// Finished at (set on reaching a final state), Unix ms.
    pub finished_ms: Option<i64>,
    /// What it produced or why it stopped, once set by [`Store::finish_run`].
    pub outcome: Option<serde_json::Value>,
    /// Its steps, in order.
    pub steps: Vec<StepRecord>,
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Step id (increasing across runs).
    pub id: i64,
    /// The run.
    pub run_id: i64,
    /// Position in the run, from 1.
    pub seq: u32,
    /// Step name (`"train"`, `"evaluate"`, `"shadow"`, ...).
    pub name: String,
    /// One of [`RUN_STATES`].
    pub state: String,
    /// Started at, Unix ms.
    pub started_ms: i64,
    /// Finished at (set on reaching a final state), Unix ms.
    pub finished_ms: Option<i64>,
    /// Details (the last ones given).
    pub detail: serde_json::Value,
}

fn check_state(state: &str) -> Result<(), StoreError> {
    if RUN_STATES.contains(&state) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "state `{state}` is not one of {}",
            RUN_STATES.join(", ")
        )))
    }
}

fn is_terminal(state: &str) -> bool {
    TERMINAL_STATES.contains(&state)
}

/// The state of run `id`; [`StoreError::Invalid`] when there is no such run.
fn run_state(conn: &Connection, id: i64) -> Result<String, StoreError> {
    conn.prepare_cached("SELECT state FROM pipeline_runs WHERE id = ?1")?
        .query_row(params![id], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StoreError::Invalid(format!("no pipeline run {id}")))
}

type RunRow = (
    i64,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<String>,
);

const RUN_COLUMNS: &str = r#"id, "trigger", evidence, state, started_ms, finished_ms, outcome"#;

fn read_run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

fn steps_of(conn: &Connection, run_id: i64) -> Result<Vec<StepRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, seq, name, state, started_ms, finished_ms, detail FROM pipeline_steps
         WHERE run_id = ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map(params![run_id], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, Option<i64>>(5)?,
            r.get::<_, String>(6)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, seq, name, state, started_ms, finished_ms, detail) = row?;
        out.push(StepRecord {
            id,
            run_id,
            seq: u32::try_from(seq).map_err(|_| StoreError::Corrupt {
                table: "pipeline_steps",
                reason: format!("step position {seq} out of range"),
            })?,
            name,
            state,
            started_ms,
            finished_ms,
            detail: parse_json(&detail, "pipeline_steps")?,
        });
    }
    Ok(out)
}

fn to_run(conn: &Connection, row: RunRow) -> Result<RunRecord, StoreError> {
    let (id, trigger, evidence, state, started_ms, finished_ms, outcome) = row;
    Ok(RunRecord {
        id,
        trigger,
        evidence: parse_json(&evidence, "pipeline_runs")?,
        state,
        started_ms,
        finished_ms,
        outcome: outcome
            .map(|o| parse_json(&o, "pipeline_runs"))
            .transpose()?,
        steps: steps_of(conn, id)?,
    })
}

/// Runs matching `filter` (an SQL condition on constants only), newest first.
fn query_runs(conn: &Connection, filter: &str, limit: i64) -> Result<Vec<RunRecord>, StoreError> {
    let rows: Vec<RunRow> = {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {RUN_COLUMNS} FROM pipeline_runs WHERE {filter} ORDER BY id DESC LIMIT ?1"
        ))?;
        let rows = stmt.query_map(params![limit], read_run_row)?;
        rows.collect::<Result<_, _>>()?
    };
    rows.into_iter().map(|row| to_run(conn, row)).collect()
}

impl Store {
    /// Starts a run in state `running`; returns its id.
    ///
    /// # Errors
    /// SQLite's error.
    pub fn create_run(
        &self,
        trigger: &str,
        evidence: serde_json::Value,
    ) -> Result<i64, StoreError> {
        let evidence = json_text(&evidence)?;
        let now = self.now_ms();
        let conn = self.lock();
        conn.prepare_cached(
            r#"INSERT INTO pipeline_runs ("trigger", evidence, state, started_ms)
               VALUES (?1, ?2, 'running', ?3)"#,
        )?
        .execute(params![trigger, evidence, now])?;
        Ok(conn.last_insert_rowid())
    }

    /// Appends a step in state `running` to a run that is not finished; returns the step id.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] when the run does not exist or is finished.
    pub fn add_step(
        &self,
        run_id: i64,
        name: &str,
        detail: serde_json::Value,
    ) -> Result<i64, StoreError> {
        let detail = json_text(&detail)?;
        let now = self.now_ms();
        let mut conn = self.lock();
        let tx = begin(&mut conn)?;
        let state = run_state(&tx, run_id)?;
        if is_terminal(&state) {
            return Err(StoreError::Invalid(format!(
                "pipeline run {run_id} is {state}: it takes no new steps"
            )));
        }
        let seq: i64 = tx
            .prepare_cached(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM pipeline_steps WHERE run_id = ?1",
            )?
            .query_row(params![run_id], |r| r.get(0))?;
        tx.prepare_cached(
            "INSERT INTO pipeline_steps (run_id, seq, name, state, started_ms, detail)
             VALUES (?1, ?2, ?3, 'running', ?4, ?5)",
        )?
        .execute(params![run_id, seq, name, now, detail])?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(id)
    }

    /// Moves a step to `state` (one of [`RUN_STATES`]) and replaces its detail; a final
    /// state stamps `finished_ms`.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for an unknown state or step, or a step already finished.
    pub fn finish_step(
        &self,
        step_id: i64,
        state: &str,
        detail: serde_json::Value,
    ) -> Result<(), StoreError> {
        check_state(state)?;
        let detail = json_text(&detail)?;
        let now = self.now_ms();
        let mut conn = self.lock();
        let tx = begin(&mut conn)?;
        let current: String = tx
            .prepare_cached("SELECT state FROM pipeline_steps WHERE id = ?1")?
            .query_row(params![step_id], |r| r.get(0))
            .optional()?
            .ok_or_else(|| StoreError::Invalid(format!("no pipeline step {step_id}")))?;
        if is_terminal(&current) {
            return Err(StoreError::Invalid(format!(
                "pipeline step {step_id} is already {current}"
            )));
        }
        let finished = is_terminal(state).then_some(now);
        tx.prepare_cached(
            "UPDATE pipeline_steps SET state = ?2, detail = ?3, finished_ms = ?4 WHERE id = ?1",
        )?
        .execute(params![step_id, state, detail, finished])?;
        tx.commit()?;
        Ok(())
    }

    /// Moves a run to `state` (one of [`RUN_STATES`]) with its outcome; a final state stamps
    /// `finished_ms` (`pending_review` does not: the run is waiting, not done).
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for an unknown state or run, or a run already finished.
    pub fn finish_run(
        &self,
        run_id: i64,
        state: &str,
        outcome: serde_json::Value,
    ) -> Result<(), StoreError> {
        check_state(state)?;
        let outcome = json_text(&outcome)?;
        let now = self.now_ms();
        let mut conn = self.lock();
        let tx = begin(&mut conn)?;
        finish_run_tx(&tx, now, run_id, state, &outcome)?;
        tx.commit()?;
        Ok(())
    }

    /// One run with its steps.
    ///
    /// # Errors
    /// SQLite's error, or [`StoreError::Corrupt`] for undecodable stored JSON.
    pub fn run(&self, id: i64) -> Result<Option<RunRecord>, StoreError> {
        let conn = self.lock();
        let row = conn
            .prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM pipeline_runs WHERE id = ?1"
            ))?
            .query_row(params![id], read_run_row)
            .optional()?;
        row.map(|row| to_run(&conn, row)).transpose()
    }

    /// The latest `limit` runs (capped at 10 000), newest first, with their steps.
    ///
    /// # Errors
    /// As [`Store::run`].
    pub fn runs(&self, limit: u32) -> Result<Vec<RunRecord>, StoreError> {
        let conn = self.lock();
        query_runs(&conn, "1", clamp_limit(Some(limit), limit, MAX_RUNS))
    }

    /// Runs not in a final state (`running`, `pending_review`), newest first.
    ///
    /// # Errors
    /// As [`Store::run`].
    pub fn active_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        let conn = self.lock();
        query_runs(
            &conn,
            "state NOT IN ('succeeded', 'failed', 'rejected', 'cancelled')",
            i64::MAX,
        )
    }
}

/// [`Store::finish_run`] inside a caller's transaction (`outcome` already JSON text).
pub(super) fn finish_run_tx(
    tx: &rusqlite::Connection,
    now: i64,
    run_id: i64,
    state: &str,
    outcome: &str,
) -> Result<(), StoreError> {
    check_state(state)?;
    let current = run_state(tx, run_id)?;
    if is_terminal(&current) {
        return Err(StoreError::Invalid(format!(
            "pipeline run {run_id} is already {current}"
        )));
    }
    let finished = is_terminal(state).then_some(now);
    tx.prepare_cached(
        "UPDATE pipeline_runs SET state = ?2, outcome = ?3, finished_ms = ?4 WHERE id = ?1",
    )?
    .execute(params![run_id, state, outcome, finished])?;
    Ok(())
}
