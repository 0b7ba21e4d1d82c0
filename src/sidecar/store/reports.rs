//! Reports: idempotent ingest into minute buckets, totals, compaction and retention.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{
    EARLIEST_WINDOW_END_MS, HOUR_MS, Ingested, MAX_WINDOW_AHEAD_MS, MINUTE_MS, Store, StoreError,
    audit, begin, count_from_sql,
};
use crate::metrics::{Rejections, VariantMetrics};
use crate::wire::Report;

/// Merged metrics of one variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantTotal {
    /// Experiment name.
    pub experiment: String,
    /// Variant name.
    pub variant: String,
    /// The model version most recently reported for it (the model of the latest bucket
    /// that has one).
    pub model: Option<String>,
    /// Everything merged.
    pub metrics: VariantMetrics,
}

/// One stored window of one variant.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRow {
    /// Bucket start, Unix ms.
    pub bucket_start_ms: i64,
    /// Bucket length in ms (60 000 for minutes, 3 600 000 for hours).
    pub resolution_ms: i64,
    /// The model most recently reported for the bucket, if any.
    pub model: Option<String>,
    /// Merged metrics of the bucket.
    pub metrics: VariantMetrics,
}

/// An agent the sidecar has heard from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSeen {
    /// Its id.
    pub agent_id: String,
    /// When its first accepted report arrived, Unix ms.
    pub first_report_ms: i64,
    /// When its latest report arrived, Unix ms.
    pub last_report_ms: i64,
    /// Reports accepted from it.
    pub reports: u64,
    /// Sums of the rejections its reports carried.
    pub rejections: Rejections,
}

/// Start of the bucket of length `resolution` holding `ms` (floor, also for negative
/// times); `None` when that start is below `i64::MIN`.
fn bucket_start(ms: i64, resolution: i64) -> Option<i64> {
    ms.checked_sub(ms.rem_euclid(resolution))
}

/// Decodes and checks a stored metrics blob (`None`: the column is not a blob).
fn decode_metrics(blob: Option<&[u8]>) -> Result<VariantMetrics, StoreError> {
    let blob = blob.ok_or_else(|| StoreError::Corrupt {
        table: "windows",
        reason: "metrics are not a blob".to_owned(),
    })?;
    let metrics: VariantMetrics = postcard::from_bytes(blob).map_err(|e| StoreError::Corrupt {
        table: "windows",
        reason: format!("metrics do not decode: {e}"),
    })?;
    let problem = if !metrics.latency.is_valid() {
        Some("latency buckets out of range, unsorted or zero")
    } else if !metrics.outcome.is_valid() {
        Some("outcome moments are not finite")
    } else if metrics.binary.successes > metrics.binary.trials {
        Some("more successes than trials")
    } else {
        None
    };
    match problem {
        Some(reason) => Err(StoreError::Corrupt {
            table: "windows",
            reason: reason.to_owned(),
        }),
        None => Ok(metrics),
    }
}

fn encode_metrics(metrics: &VariantMetrics) -> Result<Vec<u8>, StoreError> {
    postcard::to_stdvec(metrics)
        .map_err(|e| StoreError::Invalid(format!("metrics do not encode: {e}")))
}

/// Merges `other` into `into`, refusing (rather than overflowing) counters that would
/// pass `u64::MAX`. Histograms and sketches saturate on their own. Used where one report
/// lands in its bucket, so a report that cannot be added exactly is refused; reads and
/// compaction merge with [`VariantMetrics::merge`], which saturates instead.
fn merge_checked(into: &mut VariantMetrics, other: &VariantMetrics) -> Result<(), StoreError> {
    let (a, b) = (into, other);
    let pairs = [
        (a.requests, b.requests),
        (a.errors.timeout, b.errors.timeout),
        (a.errors.overloaded, b.errors.overloaded),
        (a.errors.invalid_input, b.errors.invalid_input),
        (a.errors.model, b.errors.model),
        (a.errors.internal, b.errors.internal),
        (a.errors.other, b.errors.other),
        (a.binary.successes, b.binary.successes),
        (a.binary.trials, b.binary.trials),
        (a.outcome.count, b.outcome.count),
        (a.feature_rows, b.feature_rows),
    ];
    if pairs.iter().any(|&(x, y)| x.checked_add(y).is_none()) {
        return Err(StoreError::Invalid(
            "merging these metrics would overflow a counter".to_owned(),
        ));
    }
    a.merge(b);
    Ok(())
}

/// How a merge treats a counter that would pass `u64::MAX`.
#[derive(Clone, Copy)]
enum Overflow {
    /// Refuse the merge ([`StoreError::Invalid`]): ingest, where the report is refused.
    Refuse,
    /// Saturate at `u64::MAX`: compaction, which must not fail on stored data.
    Saturate,
}

/// Merges `metrics` (and `model`, when set) into one bucket row, `(resolution_ms,
/// bucket_start_ms)`, creating it if needed.
fn merge_into_bucket(
    conn: &Connection,
    experiment: &str,
    variant: &str,
    (resolution_ms, bucket_start_ms): (i64, i64),
    model: Option<&str>,
    metrics: &VariantMetrics,
    overflow: Overflow,
) -> Result<(), StoreError> {
    let existing: Option<Option<Vec<u8>>> = conn
        .prepare_cached(
            "SELECT metrics FROM windows
             WHERE experiment = ?1 AND variant = ?2 AND resolution_ms = ?3
               AND bucket_start_ms = ?4",
        )?
        .query_row(
            params![experiment, variant, resolution_ms, bucket_start_ms],
            |r| blob(r, 0),
        )
        .optional()?;
    let merged = match existing {
        Some(stored) => {
            let mut stored = decode_metrics(stored.as_deref())?;
            match overflow {
                Overflow::Refuse => merge_checked(&mut stored, metrics)?,
                Overflow::Saturate => stored.merge(metrics),
            }
            stored
        }
        None => metrics.clone(),
    };
    let blob = encode_metrics(&merged)?;
    conn.prepare_cached(
        "INSERT INTO windows (experiment, variant, resolution_ms, bucket_start_ms, model, metrics)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (experiment, variant, resolution_ms, bucket_start_ms) DO UPDATE SET
             metrics = excluded.metrics,
             model = COALESCE(excluded.model, windows.model)",
    )?
    .execute(params![
        experiment,
        variant,
        resolution_ms,
        bucket_start_ms,
        model,
        blob
    ])?;
    Ok(())
}

/// Adds a report's rejections and arrival to its agent's row.
fn upsert_agent(conn: &Connection, report: &Report, received_ms: i64) -> Result<(), StoreError> {
    let row = conn
        .prepare_cached(
            "SELECT first_report_ms, last_report_ms, reports,
                    rejected_unknown_experiment, rejected_unknown_variant,
                    rejected_non_finite_value, rejected_over_limit, rejected_schema_mismatch
             FROM agents WHERE agent_id = ?1",
        )?
        .query_row(params![report.agent_id], |r| {
            Ok([
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, i64>(7)?,
            ])
        })
        .optional()?;
    let [first, last, reports, r0, r1, r2, r3, r4] =
        row.unwrap_or([received_ms, received_ms, 0, 0, 0, 0, 0, 0]);
    let got = &report.snapshot.rejections;
    // Counts saturate at i64::MAX rather than fail a report over bookkeeping.
    let add = |stored: i64, more: u64| -> i64 {
        stored.saturating_add(i64::try_from(more).unwrap_or(i64::MAX))
    };
    conn.prepare_cached(
        "INSERT INTO agents (agent_id, first_report_ms, last_report_ms, reports,
             rejected_unknown_experiment, rejected_unknown_variant, rejected_non_finite_value,
             rejected_over_limit, rejected_schema_mismatch)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (agent_id) DO UPDATE SET
             first_report_ms = excluded.first_report_ms,
             last_report_ms = excluded.last_report_ms,
             reports = excluded.reports,
             rejected_unknown_experiment = excluded.rejected_unknown_experiment,
             rejected_unknown_variant = excluded.rejected_unknown_variant,
             rejected_non_finite_value = excluded.rejected_non_finite_value,
             rejected_over_limit = excluded.rejected_over_limit,
             rejected_schema_mismatch = excluded.rejected_schema_mismatch",
    )?
    .execute(params![
        report.agent_id,
        first.min(received_ms),
        last.max(received_ms),
        reports.saturating_add(1),
        add(r0, got.unknown_experiment),
        add(r1, got.unknown_variant),
        add(r2, got.non_finite_value),
        add(r3, got.over_limit),
        add(r4, got.schema_mismatch),
    ])?;
    Ok(())
}

/// Distinct (experiment, variant) series in `windows`: one primary-key seek per series
/// (the key starts with both columns), not a scan of every stored bucket. Keys are read as
/// whatever SQLite holds, so an odd stored value is counted, not an error.
pub(super) fn count_series(conn: &Connection) -> Result<usize, StoreError> {
    type Key = (rusqlite::types::Value, rusqlite::types::Value);
    let key = |r: &rusqlite::Row<'_>| -> rusqlite::Result<Key> { Ok((r.get(0)?, r.get(1)?)) };
    let mut next = conn.prepare(
        "SELECT experiment, variant FROM windows
         WHERE (experiment, variant) > (?1, ?2)
         ORDER BY experiment, variant LIMIT 1",
    )?;
    let mut at: Option<Key> = conn
        .query_row(
            "SELECT experiment, variant FROM windows ORDER BY experiment, variant LIMIT 1",
            [],
            key,
        )
        .optional()?;
    let mut count = 0;
    while let Some((experiment, variant)) = at {
        count += 1;
        at = next
            .query_row(params![experiment, variant], key)
            .optional()?;
    }
    Ok(count)
}

/// The series (experiment, variant) `report` would store that `windows` does not hold
/// yet: its variants with metrics (empty ones are not stored), each once.
fn new_series<'r>(
    conn: &Connection,
    report: &'r Report,
) -> Result<Vec<(&'r str, &'r str)>, StoreError> {
    let mut stored = conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM windows WHERE experiment = ?1 AND variant = ?2)",
    )?;
    let mut seen = HashSet::new();
    let mut new = Vec::new();
    for experiment in &report.snapshot.experiments {
        for variant in &experiment.variants {
            let key = (experiment.name.as_str(), variant.name.as_str());
            if variant.metrics.is_empty() || !seen.insert(key) {
                continue;
            }
            if !stored.query_row(params![key.0, key.1], |r| r.get::<_, bool>(0))? {
                new.push(key);
            }
        }
    }
    Ok(new)
}

/// One `windows` row as read for merging.
struct StoredWindow {
    experiment: String,
    variant: String,
    resolution_ms: i64,
    bucket_start_ms: i64,
    model: Option<String>,
    metrics: Option<Vec<u8>>,
}

impl Store {
    /// Ingests a report atomically; idempotent by `report_id`.
    ///
    /// In one transaction: records the report id (a known id makes it a
    /// [`Ingested::Duplicate`] and nothing changes), checks that the series it would add
    /// keep the store within its limit ([`Store::with_max_series`]), updates the agent's
    /// row, merges each
    /// non-empty variant's metrics into the minute bucket of `snapshot.window_end_ms`
    /// (keeping the variant's model when the report names one) and appends an
    /// `agent.load_error` audit row per load failure (stamped `received_ms`). The caller
    /// validates the report first ([`Report::validate`]).
    ///
    /// # Errors
    /// [`StoreError::WindowOutOfRange`] when the window ends before
    /// [`EARLIEST_WINDOW_END_MS`] or more than [`MAX_WINDOW_AHEAD_MS`] after the store's
    /// clock, [`StoreError::TooManySeries`] when it would add series past the limit,
    /// [`StoreError::Corrupt`] when a stored bucket does not decode,
    /// [`StoreError::Invalid`] when a counter of its bucket would overflow, SQLite's error
    /// otherwise; on any error nothing is committed.
    pub fn ingest(&self, report: &Report, received_ms: i64) -> Result<Ingested, StoreError> {
        let end = report.snapshot.window_end_ms;
        let latest = self.now_ms().saturating_add(MAX_WINDOW_AHEAD_MS);
        if !(EARLIEST_WINDOW_END_MS..=latest).contains(&end) {
            return Err(StoreError::WindowOutOfRange(format!(
                "window end {end} ms is outside the accepted range \
                 [{EARLIEST_WINDOW_END_MS}, {latest}] (the Unix epoch to one day after the \
                 sidecar's clock)"
            )));
        }
        let bucket = bucket_start(end, MINUTE_MS).ok_or_else(|| {
            StoreError::WindowOutOfRange(format!("window end {end} ms is out of range"))
        })?;
        let mut conn = self.lock();
        let tx = begin(&mut conn)?;
        let inserted = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO report_ids (report_id, agent_id, received_ms)
                 VALUES (?1, ?2, ?3)",
            )?
            .execute(params![report.report_id, report.agent_id, received_ms])?;
        if inserted == 0 {
            // Dropping the transaction rolls it back: nothing changed.
            return Ok(Ingested::Duplicate);
        }
        // Under the lock, so no other ingest adds series between this check and the commit.
        let series = self.series.load(Ordering::Relaxed);
        let new = new_series(&tx, report)?;
        if let Some((experiment, variant)) = new.first()
            && series.saturating_add(new.len()) > self.max_series
        {
            return Err(StoreError::TooManySeries {
                new: new.len(),
                stored: series,
                limit: self.max_series,
                example: format!("{experiment}/{variant}"),
            });
        }
        upsert_agent(&tx, report, received_ms)?;
        for experiment in &report.snapshot.experiments {
            for variant in &experiment.variants {
                if variant.metrics.is_empty() {
                    continue;
                }
                merge_into_bucket(
                    &tx,
                    &experiment.name,
                    &variant.name,
                    (MINUTE_MS, bucket),
                    variant.model.as_deref(),
                    &variant.metrics,
                    Overflow::Refuse,
                )?;
            }
        }
        let labelled = &report.snapshot.labelled;
        if labelled.seen > 0 {
            let seen = i64::try_from(labelled.seen)
                .map_err(|_| StoreError::Invalid("labelled count out of range".into()))?;
            // A report id seen again after `prune_report_ids` forgot it: its records are
            // already here, so they are not added twice.
            let fresh = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO labelled_batches
                         (report_id, agent_id, window_end_ms, seen, kept)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    report.report_id,
                    report.agent_id,
                    report.snapshot.window_end_ms,
                    seen,
                    labelled.records.len() as i64
                ])?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO labelled_records (report_id, at_ms, features, label)
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            for r in labelled
                .records
                .iter()
                .take(if fresh == 0 { 0 } else { usize::MAX })
            {
                let features = serde_json::to_string(&r.features)
                    .map_err(|e| StoreError::Invalid(format!("labelled record: {e}")))?;
                insert.execute(params![report.report_id, r.at_ms, features, r.label])?;
            }
        }
        for failure in &report.load_errors {
            audit::insert(
                &tx,
                received_ms,
                &report.agent_id,
                "agent.load_error",
                &failure.reference,
                &serde_json::json!({
                    "variant": failure.variant,
                    "reference": failure.reference,
                    "error": failure.error,
                    "report_id": report.report_id,
                }),
            )?;
        }
        tx.commit()?;
        self.series.store(series + new.len(), Ordering::Relaxed);
        Ok(Ingested::Accepted)
    }

    /// Labelled records agents saw in windows ending after `after_ms` (kept or not): the
    /// agents' share of the volume trigger.
    ///
    /// # Errors
    /// SQLite's error.
    pub fn labelled_seen_since(&self, after_ms: i64) -> Result<u64, StoreError> {
        let conn = self.lock();
        // TOTAL sums as a float and never fails, where SUM raises "integer overflow" past
        // i64::MAX and would stop every trigger check; the count saturates instead.
        let total: f64 = conn
            .prepare_cached("SELECT TOTAL(seen) FROM labelled_batches WHERE window_end_ms > ?1")?
            .query_row(params![after_ms], |r| r.get(0))?;
        Ok(total as u64)
    }

    /// Labelled records kept, recorded in `(after_ms, until_ms]`, in time order.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a stored row that does not decode.
    pub fn labelled_records(
        &self,
        after_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<crate::agent::LabelledRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT at_ms, features, label FROM labelled_records
             WHERE at_ms > ?1 AND at_ms <= ?2 ORDER BY at_ms, id",
        )?;
        let rows = stmt.query_map(params![after_ms, until_ms], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, f64>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (at_ms, features, label) = row?;
            let features: Vec<f64> =
                serde_json::from_str(&features).map_err(|e| StoreError::Corrupt {
                    table: "labelled_records",
                    reason: e.to_string(),
                })?;
            out.push(crate::agent::LabelledRecord {
                at_ms,
                features,
                label,
            });
        }
        Ok(out)
    }

    /// Merged totals per variant over buckets (of any resolution) starting in
    /// `[from_ms, to_ms)`, optionally for one experiment; sorted by experiment, then
    /// variant. Pass `i64::MIN, i64::MAX` for all time.
    ///
    /// A bucket counts whole if its start is in the range: after [`Store::compact`], ranges
    /// in compacted time are effectively rounded to hours.
    ///
    /// Counters saturate at `u64::MAX` (about 1.8e19) instead of failing: each bucket is
    /// exact (ingest refuses a report that would overflow its bucket), but many buckets of
    /// valid reports (65 536 reports of [`crate::wire::MAX_COUNT`] each) can add up to more
    /// than a `u64` holds, and a read must still answer. A counter that reads `u64::MAX` is
    /// "at least that many".
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when a stored bucket does not decode.
    pub fn totals(
        &self,
        experiment: Option<&str>,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<VariantTotal>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT experiment, variant, resolution_ms, bucket_start_ms, model, metrics
             FROM windows
             WHERE bucket_start_ms >= ?1 AND bucket_start_ms < ?2
               AND (?3 IS NULL OR experiment = ?3)
             ORDER BY experiment, variant, bucket_start_ms, resolution_ms",
        )?;
        let rows = stmt.query_map(params![from_ms, to_ms, experiment], read_window)?;
        let mut out: Vec<VariantTotal> = Vec::new();
        for row in rows {
            let row = row?;
            let metrics = decode_metrics(row.metrics.as_deref())?;
            match out.last_mut() {
                Some(t) if t.experiment == row.experiment && t.variant == row.variant => {
                    t.metrics.merge(&metrics);
                    if row.model.is_some() {
                        t.model = row.model;
                    }
                }
                _ => out.push(VariantTotal {
                    experiment: row.experiment,
                    variant: row.variant,
                    model: row.model,
                    metrics,
                }),
            }
        }
        Ok(out)
    }

    /// The stored buckets of one variant starting in `[from_ms, to_ms)`, by bucket start
    /// (then resolution).
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when a stored bucket does not decode.
    pub fn windows(
        &self,
        experiment: &str,
        variant: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<WindowRow>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT experiment, variant, resolution_ms, bucket_start_ms, model, metrics
             FROM windows
             WHERE experiment = ?1 AND variant = ?2
               AND bucket_start_ms >= ?3 AND bucket_start_ms < ?4
             ORDER BY bucket_start_ms, resolution_ms",
        )?;
        let rows = stmt.query_map(params![experiment, variant, from_ms, to_ms], read_window)?;
        let mut out = Vec::new();
        for row in rows {
            let row = row?;
            out.push(WindowRow {
                bucket_start_ms: row.bucket_start_ms,
                resolution_ms: row.resolution_ms,
                model: row.model,
                metrics: decode_metrics(row.metrics.as_deref())?,
            });
        }
        Ok(out)
    }

    /// Merges minute buckets of whole hours that end at or before `older_than_ms` into hour
    /// buckets (resolution [`HOUR_MS`]), in one transaction, and returns how many minute
    /// rows were merged and deleted. An hour row that already exists (a late report landed
    /// after an earlier compaction) is merged into, not replaced. Totals over any range of
    /// whole hours are unchanged (counters exactly; sketches within their error bound). A
    /// counter of an hour that passes `u64::MAX` saturates there, as [`Store::totals`] does,
    /// so compaction never fails on valid stored data. Minute rows in the first, partial
    /// hour of `i64` time (which has no hour bucket; ingest now refuses such windows, older
    /// stores may hold them) are left as they are instead of failing every compaction.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when a stored bucket does not decode; then nothing changes.
    pub fn compact(&self, older_than_ms: i64) -> Result<usize, StoreError> {
        // Hour [h, h + 1 h) qualifies when h + 1 h ≤ older_than, i.e. h < floor_hour(older_than).
        let Some(cutoff) = bucket_start(older_than_ms, HOUR_MS) else {
            return Ok(0);
        };
        // The first whole hour of i64 time: earlier minutes have no hour bucket.
        let first_hour = i64::MIN + (HOUR_MS - i64::MIN.rem_euclid(HOUR_MS)) % HOUR_MS;
        let mut conn = self.lock();
        let tx = begin(&mut conn)?;
        let minutes: Vec<StoredWindow> = {
            let mut stmt = tx.prepare_cached(
                "SELECT experiment, variant, resolution_ms, bucket_start_ms, model, metrics
                 FROM windows
                 WHERE resolution_ms = ?1 AND bucket_start_ms >= ?3 AND bucket_start_ms < ?2
                 ORDER BY experiment, variant, bucket_start_ms",
            )?;
            let rows = stmt.query_map(params![MINUTE_MS, cutoff, first_hour], read_window)?;
            rows.collect::<Result<_, _>>()?
        };
        // (experiment, variant, hour) → (latest model, merged metrics), in key order.
        let mut hours: BTreeMap<(String, String, i64), (Option<String>, VariantMetrics)> =
            BTreeMap::new();
        for row in &minutes {
            let metrics = decode_metrics(row.metrics.as_deref())?;
            let hour =
                bucket_start(row.bucket_start_ms, HOUR_MS).ok_or_else(|| StoreError::Corrupt {
                    table: "windows",
                    reason: format!("bucket start {} out of range", row.bucket_start_ms),
                })?;
            let key = (row.experiment.clone(), row.variant.clone(), hour);
            match hours.get_mut(&key) {
                Some((model, merged)) => {
                    merged.merge(&metrics);
                    if row.model.is_some() {
                        model.clone_from(&row.model);
                    }
                }
                None => {
                    hours.insert(key, (row.model.clone(), metrics));
                }
            }
        }
        for ((experiment, variant, hour), (model, metrics)) in &hours {
            merge_into_bucket(
                &tx,
                experiment,
                variant,
                (HOUR_MS, *hour),
                model.as_deref(),
                metrics,
                Overflow::Saturate,
            )?;
        }
        let removed = tx
            .prepare_cached(
                "DELETE FROM windows
                 WHERE resolution_ms = ?1 AND bucket_start_ms >= ?3 AND bucket_start_ms < ?2",
            )?
            .execute(params![MINUTE_MS, cutoff, first_hour])?;
        tx.commit()?;
        Ok(removed)
    }

    /// Forgets the ids of reports received before `older_than_ms`; returns how many.
    ///
    /// Idempotency only covers ids still stored: a retry of a report older than the horizon
    /// would be counted twice. Keep the horizon far beyond any agent's retry window (a
    /// reporter retries for minutes; keep days).
    ///
    /// # Errors
    /// SQLite's error.
    pub fn prune_report_ids(&self, older_than_ms: i64) -> Result<usize, StoreError> {
        let conn = self.lock();
        let removed = conn
            .prepare_cached("DELETE FROM report_ids WHERE received_ms < ?1")?
            .execute(params![older_than_ms])?;
        Ok(removed)
    }

    /// The agents the store has accepted reports from, by id.
    ///
    /// # Errors
    /// SQLite's error, or [`StoreError::Corrupt`] for a negative stored count.
    pub fn agents(&self) -> Result<Vec<AgentSeen>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT agent_id, first_report_ms, last_report_ms, reports,
                    rejected_unknown_experiment, rejected_unknown_variant,
                    rejected_non_finite_value, rejected_over_limit, rejected_schema_mismatch
             FROM agents ORDER BY agent_id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                [
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, i64>(7)?,
                    r.get::<_, i64>(8)?,
                ],
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (agent_id, first_report_ms, last_report_ms, counts) = row?;
            let [reports, r0, r1, r2, r3, r4] = counts;
            let c = |v: i64| count_from_sql(v, "agents");
            out.push(AgentSeen {
                agent_id,
                first_report_ms,
                last_report_ms,
                reports: c(reports)?,
                rejections: Rejections {
                    unknown_experiment: c(r0)?,
                    unknown_variant: c(r1)?,
                    non_finite_value: c(r2)?,
                    over_limit: c(r3)?,
                    schema_mismatch: c(r4)?,
                },
            });
        }
        Ok(out)
    }

    /// Reports accepted over the store's life (duplicates excluded; not reduced by
    /// [`Store::prune_report_ids`]).
    ///
    /// # Errors
    /// SQLite's error.
    pub fn reports_accepted(&self) -> Result<u64, StoreError> {
        let conn = self.lock();
        let total: i64 =
            conn.query_row("SELECT COALESCE(SUM(reports), 0) FROM agents", [], |r| {
                r.get(0)
            })?;
        count_from_sql(total, "agents")
    }
}

fn read_window(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredWindow> {
    Ok(StoredWindow {
        experiment: r.get(0)?,
        variant: r.get(1)?,
        resolution_ms: r.get(2)?,
        bucket_start_ms: r.get(3)?,
        model: r.get(4)?,
        metrics: blob(r, 5)?,
    })
}

/// A column that must hold a blob; `None` when it holds anything else (reported as corrupt
/// by [`decode_metrics`], not as a type error).
fn blob(r: &rusqlite::Row<'_>, column: usize) -> rusqlite::Result<Option<Vec<u8>>> {
    Ok(match r.get_ref(column)? {
        rusqlite::types::ValueRef::Blob(b) => Some(b.to_vec()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_floor_and_never_overflow() {
        assert_eq!(bucket_start(0, MINUTE_MS), Some(0));
        assert_eq!(bucket_start(59_999, MINUTE_MS), Some(0));
        assert_eq!(bucket_start(60_000, MINUTE_MS), Some(60_000));
        assert_eq!(bucket_start(-1, MINUTE_MS), Some(-60_000));
        assert_eq!(bucket_start(-60_000, MINUTE_MS), Some(-60_000));
        assert_eq!(bucket_start(-60_001, MINUTE_MS), Some(-120_000));
        assert_eq!(bucket_start(i64::MIN, MINUTE_MS), None);
        assert_eq!(bucket_start(i64::MIN, HOUR_MS), None);
        assert!(bucket_start(i64::MAX, HOUR_MS).is_some());
    }

    #[test]
    fn merging_refuses_to_overflow() {
        let mut a = VariantMetrics {
            requests: u64::MAX,
            ..VariantMetrics::default()
        };
        let b = VariantMetrics {
            requests: 1,
            ..VariantMetrics::default()
        };
        assert!(matches!(
            merge_checked(&mut a, &b),
            Err(StoreError::Invalid(_))
        ));
        assert_eq!(a.requests, u64::MAX);
        assert!(decode_metrics(None).is_err());
        assert!(decode_metrics(Some(&[0xff; 3])).is_err());
    }
}
