//! Versioned wire types between agents and the sidecar, in JSON or a compact binary form.
//!
//! * [`Report`]: what an agent ships each interval: its id, a report id (a retry carries the
//!   same id, so ingest can be idempotent), and the [`Snapshot`] of the window: per
//!   experiment and variant, counters, latency histogram, outcomes and sketches.
//! * [`Control`]: what the sidecar serves at `GET /v1/control`: a version (the ETag), the
//!   experiments config and the model each variant must serve.
//!
//! Both encode as JSON (`application/json`) or postcard (`application/x-modelgate-report`
//! for reports, `application/x-modelgate-control` for control), chosen by content type.
//! Decoding checks the size before parsing, never allocates what the input claims beyond
//! its own length, and validates every value (names, windows, counts that must add up,
//! histograms, moments, sketch encodings): malformed or hostile bytes are an error, never a
//! panic.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::agent::{ExperimentSnapshot, Snapshot, VariantSnapshot};
use crate::metrics::VariantMetrics;
use crate::route::RouterConfig;

/// The wire format's version; decoders reject others.
pub const WIRE_VERSION: u32 = 1;
/// Content type of JSON bodies.
pub const CONTENT_TYPE_JSON: &str = "application/json";
/// Content type of binary (postcard) reports.
pub const CONTENT_TYPE_REPORT: &str = "application/x-modelgate-report";
/// Content type of binary (postcard) control documents.
pub const CONTENT_TYPE_CONTROL: &str = "application/x-modelgate-control";

/// Most labelled records one report carries (merged reports keep a uniform sample).
pub const MAX_LABELLED: usize = 10_000;
/// Most model-load failures one report carries (an agent keeps the first ones).
pub const MAX_LOAD_ERRORS: usize = 16;
/// Longest load-error text, in bytes.
pub const MAX_ERROR_TEXT: usize = 1024;

/// Bounds a decoder enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireLimits {
    /// Largest encoded body, in bytes (default 8 MiB).
    pub max_bytes: usize,
    /// Most experiments in one report (default 256).
    pub max_experiments: usize,
    /// Most variants per experiment (default 256).
    pub max_variants: usize,
    /// Most features per variant (default 1024).
    pub max_features: usize,
    /// Longest name or id, in bytes (default 256).
    pub max_name_bytes: usize,
}

impl Default for WireLimits {
    fn default() -> Self {
        WireLimits {
            max_bytes: 8 << 20,
            max_experiments: 256,
            max_variants: 256,
            max_features: 1024,
            max_name_bytes: 256,
        }
    }
}

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The body is larger than the limit.
    #[error("body of {size} bytes is over the limit of {limit} bytes")]
    TooLarge {
        /// Body size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The content type is not one this endpoint takes.
    #[error("unsupported content type `{0}`: use application/json or the binary type")]
    UnsupportedContentType(String),
    /// The bytes do not parse.
    #[error("malformed {format}: {reason}")]
    Malformed {
        /// `JSON` or `binary`.
        format: &'static str,
        /// The parser's message.
        reason: String,
    },
    /// Another wire version.
    #[error("wire version {found} is not supported (this build speaks {WIRE_VERSION})")]
    Version {
        /// The version found.
        found: u32,
    },
    /// A value of a report breaks a rule.
    #[error("invalid report: {0}")]
    Invalid(String),
    /// A value of a control document breaks a rule.
    #[error("invalid control document: {0}")]
    InvalidControl(String),
}

/// One agent's report of one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Wire version ([`WIRE_VERSION`]).
    pub version: u32,
    /// The agent's id (stable for the process).
    pub agent_id: String,
    /// Unique per report; a retry of the same report carries the same id.
    pub report_id: String,
    /// What the agent recorded in the window.
    pub snapshot: Snapshot,
    /// Models the agent failed to load since its previous report (it kept the old ones).
    #[serde(default)]
    pub load_errors: Vec<LoadFailure>,
}

/// A model the agent could not load when the control plane asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadFailure {
    /// The variant, as `"experiment/variant"`.
    pub variant: String,
    /// The model reference it should have loaded.
    pub reference: String,
    /// What went wrong.
    pub error: String,
}

/// The model a variant must serve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelAssignment {
    /// Model reference, for example `"ranker@4"`.
    pub reference: String,
    /// Where the artifact is, when the registry knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// What agents must apply: the experiments config and each variant's model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Control {
    /// Wire version ([`WIRE_VERSION`]).
    pub version: u32,
    /// Changes whenever anything below changes (served as the ETag).
    pub etag: String,
    /// The experiments config.
    pub experiments: RouterConfig,
    /// Model per variant, keyed by `"experiment/variant"`.
    #[serde(default)]
    pub models: BTreeMap<String, ModelAssignment>,
}

fn malformed_json(e: serde_json::Error) -> WireError {
    WireError::Malformed {
        format: "JSON",
        reason: e.to_string(),
    }
}

fn malformed_binary(e: postcard::Error) -> WireError {
    WireError::Malformed {
        format: "binary",
        reason: e.to_string(),
    }
}

fn check_size(bytes: &[u8], limits: &WireLimits) -> Result<(), WireError> {
    if bytes.len() > limits.max_bytes {
        return Err(WireError::TooLarge {
            size: bytes.len(),
            limit: limits.max_bytes,
        });
    }
    Ok(())
}

fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn decode<T: for<'de> Deserialize<'de>>(
    content_type: &str,
    binary_type: &str,
    bytes: &[u8],
    limits: &WireLimits,
) -> Result<T, WireError> {
    check_size(bytes, limits)?;
    let media = media_type(content_type);
    if media == CONTENT_TYPE_JSON {
        serde_json::from_slice(bytes).map_err(malformed_json)
    } else if media == binary_type {
        postcard::from_bytes(bytes).map_err(malformed_binary)
    } else {
        Err(WireError::UnsupportedContentType(content_type.to_owned()))
    }
}

fn check_name(what: &str, name: &str, limits: &WireLimits) -> Result<(), WireError> {
    if name.is_empty() || name.len() > limits.max_name_bytes {
        return Err(WireError::Invalid(format!(
            "{what} must be 1 to {} bytes, got {}",
            limits.max_name_bytes,
            name.len()
        )));
    }
    Ok(())
}

fn check_variant_count(
    experiment: &str,
    variants: usize,
    limits: &WireLimits,
) -> Result<(), WireError> {
    if variants > limits.max_variants {
        return Err(WireError::Invalid(format!(
            "experiment `{experiment}`: {variants} variants, limit {}",
            limits.max_variants
        )));
    }
    Ok(())
}

/// Largest count one report may carry for a variant (2^48, about 2.8e14: far beyond any
/// window). 65 536 such reports add up to `u64::MAX`: the sidecar refuses a report that
/// would overflow its minute bucket, and its totals over many buckets saturate at
/// `u64::MAX` rather than fail.
pub const MAX_COUNT: u64 = 1 << 48;
/// Largest magnitude of a continuous outcome (agents refuse larger values) and so of a
/// report's outcome mean; merged moments stay finite.
pub const MAX_OUTCOME_MEAN: f64 = 1e15;
/// Largest magnitude of a labelled record's feature value or label. Larger finite values
/// (`1e308`) overflow to infinity when a trainer standardises features or a metric squares
/// errors, and the sidecar keeps labelled records as training data for good: agents refuse
/// them when recorded and ingest refuses a report that carries one. At `1e100` squares and
/// sums of squares over any number of rows stay finite, and real features such as
/// nanosecond timestamps (about `1.8e18`) or large identifiers still fit.
pub const MAX_LABELLED_VALUE: f64 = 1e100;

/// How far after its report's window end a labelled record's time may be (one day).
const LABELLED_AT_SLACK_MS: i64 = 24 * 60 * 60 * 1000;

/// Whether `features` and `label` are finite and within [`MAX_LABELLED_VALUE`].
#[must_use]
pub fn labelled_values_usable(features: &[f64], label: f64) -> bool {
    std::iter::once(&label)
        .chain(features)
        .all(|v| v.is_finite() && v.abs() <= MAX_LABELLED_VALUE)
}

fn check_metrics(at: &str, m: &VariantMetrics, limits: &WireLimits) -> Result<(), WireError> {
    let counts = [
        ("requests", m.requests),
        ("errors", m.errors.total()),
        ("latency count", m.latency.count()),
        ("binary trials", m.binary.trials),
        ("outcome count", m.outcome.count),
        ("feature rows", m.feature_rows),
    ];
    for (what, n) in counts {
        if n > MAX_COUNT {
            return Err(WireError::Invalid(format!(
                "{at}: {what} {n} is over the limit of {MAX_COUNT}"
            )));
        }
    }
    // Values within ±MAX_OUTCOME_MEAN (what agents accept) have an m2 of at most
    // count · MAX_OUTCOME_MEAN² (half of them at each end).
    if m.outcome.mean.abs() > MAX_OUTCOME_MEAN
        || m.outcome.m2 > m.outcome.count as f64 * MAX_OUTCOME_MEAN * MAX_OUTCOME_MEAN
    {
        return Err(WireError::Invalid(format!(
            "{at}: outcome moments out of range"
        )));
    }
    if !m.latency.is_valid() {
        return Err(WireError::Invalid(format!(
            "{at}: latency buckets out of range, unsorted or zero"
        )));
    }
    if !m.outcome.is_valid() {
        return Err(WireError::Invalid(format!(
            "{at}: outcome moments are not finite"
        )));
    }
    // An agent counts every call once, as a success or as an error (`requests` is their
    // sum), so more errors than requests is a corrupt report, not a busy window.
    if m.errors.total() > m.requests {
        return Err(WireError::Invalid(format!(
            "{at}: {} errors out of {} requests",
            m.errors.total(),
            m.requests
        )));
    }
    if m.binary.successes > m.binary.trials {
        return Err(WireError::Invalid(format!(
            "{at}: {} successes out of {} trials",
            m.binary.successes, m.binary.trials
        )));
    }
    if m.features.len() > limits.max_features {
        return Err(WireError::Invalid(format!(
            "{at}: {} feature profiles, limit {}",
            m.features.len(),
            limits.max_features
        )));
    }
    Ok(())
}

impl Report {
    /// A report of `snapshot` by `agent_id` with id `report_id`.
    #[must_use]
    pub fn new(agent_id: &str, report_id: &str, snapshot: Snapshot) -> Self {
        Report {
            version: WIRE_VERSION,
            agent_id: agent_id.to_owned(),
            report_id: report_id.to_owned(),
            snapshot,
            load_errors: Vec::new(),
        }
    }

    /// JSON encoding.
    ///
    /// # Errors
    /// Only if serialisation fails (it does not for values this crate builds).
    pub fn to_json(&self) -> Result<Vec<u8>, WireError> {
        serde_json::to_vec(self).map_err(malformed_json)
    }

    /// Binary (postcard) encoding.
    ///
    /// # Errors
    /// Only if serialisation fails.
    pub fn to_binary(&self) -> Result<Vec<u8>, WireError> {
        postcard::to_stdvec(self).map_err(malformed_binary)
    }

    /// Decodes and validates a report body of the given content type.
    ///
    /// # Errors
    /// [`WireError`] for oversize, unknown content type, malformed bytes, another version or
    /// an invalid value.
    pub fn decode(
        content_type: &str,
        bytes: &[u8],
        limits: &WireLimits,
    ) -> Result<Self, WireError> {
        let report: Report = decode(content_type, CONTENT_TYPE_REPORT, bytes, limits)?;
        report.validate(limits)?;
        Ok(report)
    }

    /// Checks every rule a decoded report must satisfy.
    ///
    /// # Errors
    /// [`WireError::Version`] or [`WireError::Invalid`].
    pub fn validate(&self, limits: &WireLimits) -> Result<(), WireError> {
        if self.version != WIRE_VERSION {
            return Err(WireError::Version {
                found: self.version,
            });
        }
        check_name("agent_id", &self.agent_id, limits)?;
        check_name("report_id", &self.report_id, limits)?;
        if self.load_errors.len() > MAX_LOAD_ERRORS {
            return Err(WireError::Invalid(format!(
                "{} load errors, limit {MAX_LOAD_ERRORS}",
                self.load_errors.len()
            )));
        }
        for failure in &self.load_errors {
            check_name("load error variant", &failure.variant, limits)?;
            check_name("load error reference", &failure.reference, limits)?;
            if failure.error.len() > MAX_ERROR_TEXT {
                return Err(WireError::Invalid(format!(
                    "load error text of {} bytes, limit {MAX_ERROR_TEXT}",
                    failure.error.len()
                )));
            }
        }
        let labelled = &self.snapshot.labelled;
        if labelled.records.len() > MAX_LABELLED {
            return Err(WireError::Invalid(format!(
                "{} labelled records, limit {MAX_LABELLED}",
                labelled.records.len()
            )));
        }
        if labelled.seen > MAX_COUNT {
            return Err(WireError::Invalid(format!(
                "labelled seen {} is over the limit of {MAX_COUNT} per report",
                labelled.seen
            )));
        }
        if (labelled.records.len() as u64) > labelled.seen {
            return Err(WireError::Invalid(format!(
                "{} labelled records kept out of {} seen",
                labelled.records.len(),
                labelled.seen
            )));
        }
        let width = labelled.records.first().map_or(0, |r| r.features.len());
        for r in &labelled.records {
            if r.features.len() != width || width > limits.max_features {
                return Err(WireError::Invalid(
                    "labelled records must all have the same number of features, within the limit"
                        .into(),
                ));
            }
            // Records are stamped by the agent's clock inside the window; a day of slack
            // covers a clock set back during it. Times outside never fall in a training
            // window, so such records would be stored and silently never used.
            let latest = self
                .snapshot
                .window_end_ms
                .saturating_add(LABELLED_AT_SLACK_MS);
            if !(0..=latest).contains(&r.at_ms) {
                return Err(WireError::Invalid(format!(
                    "labelled record at {} ms is outside the Unix epoch to one day after the \
                     window's end ({latest} ms)",
                    r.at_ms
                )));
            }
            if !labelled_values_usable(&r.features, r.label) {
                return Err(WireError::Invalid(format!(
                    "labelled records must hold finite numbers of magnitude at most \
                     {MAX_LABELLED_VALUE:e}"
                )));
            }
        }
        let s = &self.snapshot;
        if s.window_start_ms > s.window_end_ms {
            return Err(WireError::Invalid(format!(
                "window starts at {} after it ends at {}",
                s.window_start_ms, s.window_end_ms
            )));
        }
        if s.experiments.len() > limits.max_experiments {
            return Err(WireError::Invalid(format!(
                "{} experiments, limit {}",
                s.experiments.len(),
                limits.max_experiments
            )));
        }
        let mut experiments = HashSet::new();
        for e in &s.experiments {
            check_name("experiment name", &e.name, limits)?;
            if !experiments.insert(e.name.as_str()) {
                return Err(WireError::Invalid(format!(
                    "experiment `{}` appears twice",
                    e.name
                )));
            }
            check_variant_count(&e.name, e.variants.len(), limits)?;
            let mut variants = HashSet::new();
            for v in &e.variants {
                check_name("variant name", &v.name, limits)?;
                if !variants.insert(v.name.as_str()) {
                    return Err(WireError::Invalid(format!(
                        "experiment `{}`: variant `{}` appears twice",
                        e.name, v.name
                    )));
                }
                if let Some(model) = &v.model {
                    check_name("model", model, limits)?;
                }
                check_metrics(&format!("{}/{}", e.name, v.name), &v.metrics, limits)?;
            }
        }
        Ok(())
    }

    /// Merges a later report of the same agent into this one (for a reporter holding reports
    /// while the sidecar is unreachable): windows join, counters add, histograms add, moments
    /// and sketches merge. The merged report keeps this report's id.
    pub fn absorb(&mut self, later: &Report) {
        merge_labelled(&mut self.snapshot.labelled, &later.snapshot.labelled);
        for failure in &later.load_errors {
            if self.load_errors.len() < MAX_LOAD_ERRORS {
                self.load_errors.push(failure.clone());
            }
        }
        let (mine, theirs) = (&mut self.snapshot, &later.snapshot);
        mine.window_start_ms = mine.window_start_ms.min(theirs.window_start_ms);
        mine.window_end_ms = mine.window_end_ms.max(theirs.window_end_ms);
        let r = &mut mine.rejections;
        let o = &theirs.rejections;
        r.unknown_experiment = r.unknown_experiment.saturating_add(o.unknown_experiment);
        r.unknown_variant = r.unknown_variant.saturating_add(o.unknown_variant);
        r.non_finite_value = r.non_finite_value.saturating_add(o.non_finite_value);
        r.over_limit = r.over_limit.saturating_add(o.over_limit);
        r.schema_mismatch = r.schema_mismatch.saturating_add(o.schema_mismatch);
        for e in &theirs.experiments {
            let at = match mine.experiments.iter().position(|x| x.name == e.name) {
                Some(at) => at,
                None => {
                    mine.experiments.push(ExperimentSnapshot {
                        name: e.name.clone(),
                        variants: Vec::new(),
                    });
                    mine.experiments.len() - 1
                }
            };
            let target = &mut mine.experiments[at];
            for v in &e.variants {
                match target.variants.iter_mut().find(|x| x.name == v.name) {
                    Some(x) => {
                        x.metrics.merge(&v.metrics);
                        if v.model.is_some() {
                            x.model.clone_from(&v.model);
                        }
                    }
                    None => target.variants.push(VariantSnapshot {
                        name: v.name.clone(),
                        model: v.model.clone(),
                        metrics: v.metrics.clone(),
                    }),
                }
            }
        }
    }
}

/// Merges labelled batches: counts add; each batch is thinned to the lowest keep rate of
/// the two (and of the [`MAX_LABELLED`] cap), so every record of the union had the same
/// chance to be kept.
fn merge_labelled(mine: &mut crate::agent::LabelledBatch, theirs: &crate::agent::LabelledBatch) {
    let seen = mine.seen.saturating_add(theirs.seen);
    let rate = |b: &crate::agent::LabelledBatch| {
        if b.seen == 0 {
            1.0
        } else {
            b.records.len() as f64 / b.seen as f64
        }
    };
    let cap = MAX_LABELLED as f64 / seen.max(1) as f64;
    let common = rate(mine).min(rate(theirs)).min(cap).min(1.0);
    // Every record of a batch is already a uniform sample of it: a stride keeps it uniform.
    let thin = |b: &crate::agent::LabelledBatch| -> Vec<crate::agent::LabelledRecord> {
        let keep = ((b.seen as f64 * common).floor() as usize).min(b.records.len());
        if keep == b.records.len() {
            return b.records.clone();
        }
        if keep == 0 {
            return Vec::new();
        }
        let step = b.records.len() as f64 / keep as f64;
        (0..keep)
            .filter_map(|i| b.records.get((i as f64 * step) as usize).cloned())
            .collect()
    };
    let mut records = thin(mine);
    records.extend(thin(theirs));
    records.truncate(MAX_LABELLED);
    mine.records = records;
    mine.seen = seen;
}

/// The binary layout of [`Control`]: postcard needs every field present and no untagged
/// enums, which the TOML-shaped config uses, so the config travels as JSON text inside.
#[derive(Serialize, Deserialize)]
struct ControlBinary {
    version: u32,
    etag: String,
    experiments_json: String,
    models: BTreeMap<String, ModelAssignmentBinary>,
}

#[derive(Serialize, Deserialize)]
struct ModelAssignmentBinary {
    reference: String,
    location: Option<String>,
}

impl Control {
    /// JSON encoding.
    ///
    /// # Errors
    /// Only if serialisation fails.
    pub fn to_json(&self) -> Result<Vec<u8>, WireError> {
        serde_json::to_vec(self).map_err(malformed_json)
    }

    /// Binary (postcard) encoding.
    ///
    /// # Errors
    /// Only if serialisation fails.
    pub fn to_binary(&self) -> Result<Vec<u8>, WireError> {
        let experiments_json = serde_json::to_string(&self.experiments).map_err(malformed_json)?;
        let binary = ControlBinary {
            version: self.version,
            etag: self.etag.clone(),
            experiments_json,
            models: self
                .models
                .iter()
                .map(|(k, m)| {
                    (
                        k.clone(),
                        ModelAssignmentBinary {
                            reference: m.reference.clone(),
                            location: m.location.clone(),
                        },
                    )
                })
                .collect(),
        };
        postcard::to_stdvec(&binary).map_err(malformed_binary)
    }

    /// Decodes and validates a control document; the experiments config must compile.
    ///
    /// # Errors
    /// [`WireError`] as for reports, and [`WireError::Invalid`] when the config is invalid.
    pub fn decode(
        content_type: &str,
        bytes: &[u8],
        limits: &WireLimits,
    ) -> Result<Self, WireError> {
        check_size(bytes, limits)?;
        let control = if media_type(content_type) == CONTENT_TYPE_CONTROL {
            let binary: ControlBinary = postcard::from_bytes(bytes).map_err(malformed_binary)?;
            Control {
                version: binary.version,
                etag: binary.etag,
                experiments: serde_json::from_str(&binary.experiments_json).map_err(|e| {
                    WireError::Malformed {
                        format: "JSON",
                        reason: e.to_string(),
                    }
                })?,
                models: binary
                    .models
                    .into_iter()
                    .map(|(k, m)| {
                        (
                            k,
                            ModelAssignment {
                                reference: m.reference,
                                location: m.location,
                            },
                        )
                    })
                    .collect(),
            }
        } else {
            decode(content_type, CONTENT_TYPE_CONTROL, bytes, limits)?
        };
        control.validate(limits)?;
        Ok(control)
    }

    /// Checks every rule a control document must satisfy under `limits`: the version, the
    /// etag, every experiment, variant and model name, model key and reference within
    /// `max_name_bytes` (the names agents then put in their reports, which ingest checks
    /// against the same limits), at most `max_experiments` experiments of at most
    /// `max_variants` variants each, and a config that compiles.
    ///
    /// # Errors
    /// [`WireError::Version`] or [`WireError::InvalidControl`] saying what is wrong.
    pub fn validate(&self, limits: &WireLimits) -> Result<(), WireError> {
        if self.version != WIRE_VERSION {
            return Err(WireError::Version {
                found: self.version,
            });
        }
        self.check(limits).map_err(|e| match e {
            WireError::Invalid(reason) => WireError::InvalidControl(reason),
            other => other,
        })
    }

    fn check(&self, limits: &WireLimits) -> Result<(), WireError> {
        check_name("etag", &self.etag, limits)?;
        let experiments = &self.experiments.experiments;
        if experiments.len() > limits.max_experiments {
            return Err(WireError::Invalid(format!(
                "{} experiments, limit {}",
                experiments.len(),
                limits.max_experiments
            )));
        }
        for e in experiments {
            check_name("experiment name", &e.name, limits)?;
            check_variant_count(&e.name, e.variants.len(), limits)?;
            for v in &e.variants {
                check_name("variant name", &v.name, limits)?;
                if let Some(model) = &v.model {
                    check_name("variant model", model, limits)?;
                }
            }
        }
        crate::route::Router::new(self.experiments.clone())
            .map_err(|e| WireError::Invalid(e.to_string()))?;
        for (key, model) in &self.models {
            check_name("model key", key, limits)?;
            check_name("model reference", &model.reference, limits)?;
        }
        Ok(())
    }
}
