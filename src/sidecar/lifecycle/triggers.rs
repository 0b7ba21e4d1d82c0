//! Retraining triggers: schedule (cron), volume of new labelled records, drift of the
//! production variant's features from the model's reference profile, and online
//! performance. Each check returns the firings with their evidence; the lifecycle writes
//! each firing as an audit row and starts at most one run at a time.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use croner::Cron;
use serde::{Deserialize, Serialize};

use crate::drift::profiles::compare_profiles;
use crate::drift::{Comparison, Thresholds, Verdict};
use crate::sketch::FeatureProfile;

/// Parses a five-field cron expression.
///
/// # Errors
/// A message naming the problem.
pub fn parse_cron(expression: &str) -> Result<Cron, String> {
    let cron = Cron::from_str(expression).map_err(|e| format!("cron `{expression}`: {e}"))?;
    // A schedule that names no real time (the 30th of February) parses, then never fires: a
    // lifecycle that would silently never retrain on schedule.
    let now = Utc::now();
    if cron.find_next_occurrence(&now, false).is_err() {
        return Err(format!("cron `{expression}` never fires"));
    }
    Ok(cron)
}

/// Whether a cron occurrence falls in `(after_ms, until_ms]`; returns it.
#[must_use]
pub fn cron_fired(cron: &Cron, after_ms: i64, until_ms: i64) -> Option<i64> {
    let after: DateTime<Utc> = DateTime::from_timestamp_millis(after_ms)?;
    let next = cron.find_next_occurrence(&after, false).ok()?;
    let next_ms = next.timestamp_millis();
    (next_ms <= until_ms).then_some(next_ms)
}

/// Which trigger fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    /// No production model yet: train the first one.
    Initial,
    /// The cron schedule.
    Schedule,
    /// New labelled records.
    Volume,
    /// Feature drift.
    Drift,
    /// Online performance below its floor.
    Performance,
    /// An administrator asked.
    Manual,
}

impl TriggerKind {
    /// The name used in audit rows and runs.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::Initial => "initial",
            TriggerKind::Schedule => "schedule",
            TriggerKind::Volume => "volume",
            TriggerKind::Drift => "drift",
            TriggerKind::Performance => "performance",
            TriggerKind::Manual => "manual",
        }
    }
}

/// One trigger firing with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Firing {
    /// Which trigger.
    pub kind: TriggerKind,
    /// Why, as data.
    pub evidence: serde_json::Value,
}

/// The volume rule: fires when strictly more than `threshold` records are new.
#[must_use]
pub fn volume_fires(new_records: u64, threshold: u64) -> bool {
    new_records > threshold
}

/// One feature's drift, as trigger evidence and in `/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDriftEvidence {
    /// Feature name.
    pub feature: String,
    /// KS D (numeric features).
    pub ks: Option<f64>,
    /// Its error bound from the sketches.
    pub ks_error_bound: Option<f64>,
    /// The adjusted p-value.
    pub p_value: f64,
    /// PSI.
    pub psi: f64,
    /// The verdict.
    pub verdict: Verdict,
    /// Rows in the reference and current windows.
    pub n_reference: u64,
    /// Rows in the current window.
    pub n_current: u64,
}

/// Compares current feature profiles (schema order) with the reference (name, profile)
/// pairs; the agents' feature order is the model's.
#[must_use]
pub fn drift_evidence(
    reference: &[(String, FeatureProfile)],
    current: &[FeatureProfile],
    thresholds: &Thresholds,
) -> Vec<FeatureDriftEvidence> {
    let pairs: Vec<(&str, &FeatureProfile, &FeatureProfile)> = reference
        .iter()
        .zip(current)
        .map(|((name, r), c)| (name.as_str(), r, c))
        .collect();
    compare_profiles(&pairs, thresholds)
        .into_iter()
        .map(|d| {
            let (ks, bound, psi, n, m) = match &d.comparison {
                Comparison::Numeric(c) => (
                    Some(c.ks),
                    Some(c.ks_error_bound),
                    c.psi,
                    c.n_reference,
                    c.n_current,
                ),
                Comparison::Categorical(c) => (None, None, c.psi, c.n_reference, c.n_current),
            };
            FeatureDriftEvidence {
                feature: d.feature,
                ks,
                ks_error_bound: bound,
                p_value: d.adjusted_p_value,
                psi,
                verdict: d.verdict,
                n_reference: n,
                n_current: m,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_is_strictly_more_than_the_threshold() {
        assert!(!volume_fires(1000, 1000));
        assert!(volume_fires(1001, 1000));
        assert!(!volume_fires(0, 1000));
    }

    #[test]
    fn monthly_cron_fires_once_a_month() {
        let cron = parse_cron("0 0 1 * *").unwrap();
        let jan_15 = DateTime::parse_from_rfc3339("2026-01-15T00:00:00Z")
            .unwrap()
            .timestamp_millis();
        let jan_31 = DateTime::parse_from_rfc3339("2026-01-31T23:59:59Z")
            .unwrap()
            .timestamp_millis();
        let feb_1 = DateTime::parse_from_rfc3339("2026-02-01T00:00:00Z")
            .unwrap()
            .timestamp_millis();
        assert_eq!(cron_fired(&cron, jan_15, jan_31), None);
        assert_eq!(cron_fired(&cron, jan_15, feb_1), Some(feb_1));
        assert_eq!(cron_fired(&cron, feb_1, feb_1 + 1000), None, "not twice");
        assert!(parse_cron("not a cron").is_err());
    }
}
