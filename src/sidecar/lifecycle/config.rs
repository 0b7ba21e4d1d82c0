//! The `[lifecycle]` section of the sidecar config: which model, which data, how to train,
//! when to retrain, and how to decide.
//!
//! ```toml
//! [lifecycle]
//! model = "elec"                    # registry name; versions are elec@1, elec@2, ...
//! experiment = "elec"               # the experiment whose variants serve it
//! production_variant = "production" # (default) the variant serving production
//! data = "data/elec2.csv"           # labelled records, CSV with a timestamp column
//! timestamp_column = "t"
//! timestamp_unit_ms = 1800000       # one unit of the column in ms (default 1: Unix ms)
//! features = ["nswprice", "nswdemand", "vicprice", "vicdemand", "transfer"]
//! label = "label"
//! label_kind = "binary"             # or "continuous"
//! primary_metric = "auc"            # default: auc (binary), rmse (continuous)
//! min_improvement = 0.05            # automatic approval at +5% on the primary metric
//! holdout_fraction = 0.2            # the most recent 20% of the data scores both models
//! training_window = 20000           # train on at most the latest N rows (default: all)
//! guardrails = { log_loss = 0.10 }  # no other metric may be >10% worse
//! artifacts = "models"              # where trained artifacts go
//! step_retries = 2                  # a failing training or evaluation is retried, with backoff
//! step_retry_base_ms = 1000
//!
//! [lifecycle.trainer]
//! kind = "linfa"                    # or "command" with command = [...] and timeout_s,
//!                                   # or "airflow" with url, dag_id, exchange_dir, ...
//!
//! [lifecycle.triggers]
//! schedule = "0 0 1 * *"            # cron, monthly by default; "" turns it off; a time
//!                                   # missed while the sidecar was down fires at its start
//! volume = 1000                     # more than this many new labelled records
//! drift = true
//! drift_window_s = 3600
//! min_drift_rows = 500
//! performance_min = 0.55            # online success rate (or outcome mean) floor
//! performance_drop = 0.05           # or this far below its value just after promotion
//! check_interval_s = 60
//!
//! [lifecycle.notify]                # see `sidecar::notify`
//! grace_period_s = 0
//!
//! [lifecycle.rollout]               # see `lifecycle::rollout`
//! strategy = "gradual"              # or "canary"/"ab" (a fixed split: the first step) or "immediate"
//! steps = [5, 25, 50, 100]
//! step_duration_s = 600
//! min_requests = 500
//! max_error_rate_increase = 0.02
//! max_latency_p99_ratio = 1.5
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::artifact::LabelKind;
use crate::drift::Thresholds;
use crate::sidecar::evaluate::Metric;
use crate::sidecar::notify::NotifyConfig;

use super::rollout::RolloutConfig;

/// Longest `check_interval_s` or `drift_window_s`: ten years.
pub const MAX_TRIGGER_SECONDS: u64 = 10 * 365 * 24 * 3600;

fn default_production() -> String {
    "production".into()
}
fn default_candidate() -> String {
    "candidate".into()
}
fn default_unit() -> i64 {
    1
}
fn default_improvement() -> f64 {
    0.05
}
fn default_holdout() -> f64 {
    0.2
}
fn default_artifacts() -> PathBuf {
    "models".into()
}

/// The lifecycle's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleConfig {
    /// Registry name of the model.
    pub model: String,
    /// The experiment whose variants serve the model.
    pub experiment: String,
    /// The variant that serves production.
    #[serde(default = "default_production")]
    pub production_variant: String,
    /// The variant a rollout sends the candidate to.
    #[serde(default = "default_candidate")]
    pub candidate_variant: String,
    /// Labelled records: a CSV file with a timestamp column.
    pub data: PathBuf,
    /// The timestamp column.
    pub timestamp_column: String,
    /// Milliseconds per unit of the timestamp column.
    #[serde(default = "default_unit")]
    pub timestamp_unit_ms: i64,
    /// Feature columns, in the order the model reads them (and agents record them).
    pub features: Vec<String>,
    /// The label column.
    pub label: String,
    /// Binary or continuous.
    #[serde(default = "default_label_kind")]
    pub label_kind: LabelKind,
    /// For a binary label: the value meaning class 1 (default `1`/`true`).
    #[serde(default)]
    pub positive_label: Option<String>,
    /// The metric that decides (default AUC for binary labels, RMSE for continuous).
    #[serde(default)]
    pub primary_metric: Option<Metric>,
    /// Relative improvement on the primary metric for automatic approval.
    #[serde(default = "default_improvement")]
    pub min_improvement: f64,
    /// Most recent fraction of the data held out to score both models.
    #[serde(default = "default_holdout")]
    pub holdout_fraction: f64,
    /// Train on at most this many of the latest rows (default: all rows up to now).
    #[serde(default)]
    pub training_window: Option<usize>,
    /// Metric name → largest tolerated relative worsening of the candidate.
    #[serde(default)]
    pub guardrails: BTreeMap<String, f64>,
    /// Where trained artifacts are written.
    #[serde(default = "default_artifacts")]
    pub artifacts: PathBuf,
    /// How to train.
    #[serde(default)]
    pub trainer: TrainerConfig,
    /// When to retrain.
    #[serde(default)]
    pub triggers: TriggerConfig,
    /// Drift thresholds.
    #[serde(default)]
    pub drift: Thresholds,
    /// Who hears about what.
    #[serde(default)]
    pub notify: NotifyConfig,
    /// How an approved candidate reaches traffic.
    #[serde(default)]
    pub rollout: RolloutConfig,
    /// Extra attempts of a failing `loading`, `training` or `evaluating` step (default 2).
    #[serde(default = "default_retries")]
    pub step_retries: u32,
    /// Wait before the first retry, ms; it doubles after each (default 1000).
    #[serde(default = "default_retry_base")]
    pub step_retry_base_ms: u64,
}

fn default_retries() -> u32 {
    2
}
fn default_retry_base() -> u64 {
    1000
}

fn default_label_kind() -> LabelKind {
    LabelKind::Binary
}

/// Which trainer runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "lowercase")]
pub enum TrainerConfig {
    /// In-process linfa (logistic or linear regression).
    Linfa {
        /// L2 penalty of the logistic regression.
        #[serde(default)]
        alpha: Option<f64>,
    },
    /// An Apache Airflow DAG run (see [`AirflowTrainer`](crate::sidecar::train::AirflowTrainer)).
    Airflow(Box<crate::sidecar::train::AirflowConfig>),
    /// An external command.
    Command {
        /// Program and arguments; `{data}`, `{output}`, `{run_id}` are substituted.
        command: Vec<String>,
        /// Seconds before the command is killed (default 3600).
        #[serde(default)]
        timeout_s: Option<u64>,
    },
}

impl Default for TrainerConfig {
    fn default() -> Self {
        TrainerConfig::Linfa { alpha: None }
    }
}

fn default_schedule() -> Option<String> {
    Some("0 0 1 * *".into())
}
fn default_volume() -> Option<u64> {
    Some(1000)
}
fn default_true() -> bool {
    true
}
fn default_drift_window() -> u64 {
    3600
}
fn default_min_drift_rows() -> u64 {
    500
}
fn default_check_interval() -> u64 {
    60
}

/// When the lifecycle retrains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerConfig {
    /// Cron expression (five fields, UTC); empty or absent turns it off. Default monthly.
    #[serde(default = "default_schedule")]
    pub schedule: Option<String>,
    /// Retrain when more than this many labelled records arrived since the last training.
    #[serde(default = "default_volume")]
    pub volume: Option<u64>,
    /// Retrain when the production variant's features drift from the model's reference.
    #[serde(default = "default_true")]
    pub drift: bool,
    /// The window of reports the drift check merges, in seconds.
    #[serde(default = "default_drift_window")]
    pub drift_window_s: u64,
    /// Fewest feature rows in the window before drift is judged.
    #[serde(default = "default_min_drift_rows")]
    pub min_drift_rows: u64,
    /// Retrain when production's online success rate (binary outcomes) or outcome mean
    /// (continuous) over the drift window falls below this.
    #[serde(default)]
    pub performance_min: Option<f64>,
    /// Retrain when production's online metric over the drift window is this much (in the
    /// metric's units, e.g. 0.05 = five points of success rate) below its value in the
    /// first window after its promotion.
    #[serde(default)]
    pub performance_drop: Option<f64>,
    /// Seconds between trigger checks.
    #[serde(default = "default_check_interval")]
    pub check_interval_s: u64,
}

impl Default for TriggerConfig {
    fn default() -> Self {
        TriggerConfig {
            schedule: default_schedule(),
            volume: default_volume(),
            drift: true,
            drift_window_s: default_drift_window(),
            min_drift_rows: default_min_drift_rows(),
            performance_min: None,
            performance_drop: None,
            check_interval_s: default_check_interval(),
        }
    }
}

impl LifecycleConfig {
    /// The primary metric in force.
    #[must_use]
    pub fn primary(&self) -> Metric {
        self.primary_metric.unwrap_or(match self.label_kind {
            LabelKind::Binary => Metric::Auc,
            LabelKind::Continuous => Metric::Rmse,
        })
    }

    /// Checks the settings.
    ///
    /// Trigger durations are at most [`MAX_TRIGGER_SECONDS`].
    ///
    /// # Errors
    /// A message naming the bad setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.model.is_empty() || self.model.contains('@') {
            return Err("lifecycle.model must be a non-empty name without `@`".into());
        }
        if self.features.is_empty() {
            return Err("lifecycle.features must list at least one column".into());
        }
        for (i, feature) in self.features.iter().enumerate() {
            if self.features[..i].contains(feature) {
                return Err(format!("lifecycle.features lists `{feature}` twice"));
            }
            if *feature == self.label {
                return Err(format!(
                    "lifecycle.features lists the label `{feature}`: a model would be trained on its own answer"
                ));
            }
        }
        self.drift
            .validate()
            .map_err(|m| format!("lifecycle.drift.{m}"))?;
        if self.training_window == Some(0) {
            return Err("lifecycle.training_window must be at least 1 row".into());
        }
        if !(0.0..1.0).contains(&self.holdout_fraction) || self.holdout_fraction <= 0.0 {
            return Err("lifecycle.holdout_fraction must be in (0, 1)".into());
        }
        if !(self.min_improvement.is_finite() && self.min_improvement >= 0.0) {
            return Err(format!(
                "lifecycle.min_improvement must be a finite fraction ≥ 0 (a candidate worse than production is never approved), got {}",
                self.min_improvement
            ));
        }
        if self.timestamp_unit_ms <= 0 {
            return Err("lifecycle.timestamp_unit_ms must be positive".into());
        }
        if self.primary().is_binary() != (self.label_kind == LabelKind::Binary) {
            return Err(format!(
                "lifecycle.primary_metric `{}` does not fit a {} label",
                self.primary().name(),
                self.label_kind.as_str()
            ));
        }
        for (metric, tolerance) in &self.guardrails {
            let Some(known) = Metric::from_name(metric) else {
                return Err(format!("lifecycle.guardrails: unknown metric `{metric}`"));
            };
            // A metric the label kind has no value for would never be checked.
            if known.label_kind() != self.label_kind {
                return Err(format!(
                    "lifecycle.guardrails.{metric} does not fit a {} label (it would never be checked)",
                    self.label_kind.as_str()
                ));
            }
            if !(tolerance.is_finite() && *tolerance >= 0.0) {
                return Err(format!(
                    "lifecycle.guardrails.{metric} must be a non-negative fraction"
                ));
            }
        }
        if let Some(schedule) = self.triggers.schedule.as_deref().filter(|s| !s.is_empty()) {
            super::triggers::parse_cron(schedule)?;
        }
        self.rollout.validate()?;
        if self.production_variant == self.candidate_variant {
            return Err("lifecycle: production_variant and candidate_variant must differ".into());
        }
        // Both become milliseconds in time arithmetic (times ten for back-offs): ten years
        // keeps that far from overflowing.
        for (name, seconds) in [
            ("check_interval_s", self.triggers.check_interval_s),
            ("drift_window_s", self.triggers.drift_window_s),
        ] {
            if !(1..=MAX_TRIGGER_SECONDS).contains(&seconds) {
                return Err(format!(
                    "lifecycle.triggers.{name} must be 1 to {MAX_TRIGGER_SECONDS} s (ten years), got {seconds}"
                ));
            }
        }
        if let TrainerConfig::Command { command, .. } = &self.trainer
            && command.is_empty()
        {
            return Err("lifecycle.trainer.command must name a program".into());
        }
        if let TrainerConfig::Airflow(airflow) = &self.trainer {
            airflow.validate().map_err(|e| format!("lifecycle.{e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> LifecycleConfig {
        toml::from_str(
            r#"
model = "m"
experiment = "e"
data = "data.csv"
timestamp_column = "t"
features = ["a", "b"]
label = "y"
"#,
        )
        .expect("a valid config")
    }

    #[test]
    fn settings_that_cannot_work_are_refused_by_name() {
        valid().validate().expect("valid");
        type Spoil = Box<dyn Fn(&mut LifecycleConfig)>;
        let cases: Vec<(&str, Spoil)> = vec![
            ("`a` twice", Box::new(|c| c.features.push("a".into()))),
            ("the label `y`", Box::new(|c| c.features.push("y".into()))),
            ("training_window", Box::new(|c| c.training_window = Some(0))),
            ("lifecycle.drift.alpha", Box::new(|c| c.drift.alpha = 1.5)),
            (
                "lifecycle.drift.alpha",
                Box::new(|c| c.drift.alpha = f64::NAN),
            ),
            (
                "lifecycle.drift.psi_epsilon",
                Box::new(|c| c.drift.psi_epsilon = 0.0),
            ),
            ("min_improvement", Box::new(|c| c.min_improvement = -0.05)),
            (
                "min_improvement",
                Box::new(|c| c.min_improvement = f64::NAN),
            ),
            (
                "drift_window_s",
                Box::new(|c| c.triggers.drift_window_s = 0),
            ),
            (
                "drift_window_s must be 1 to",
                Box::new(|c| c.triggers.drift_window_s = 10_000_000_000_000_000),
            ),
            (
                "check_interval_s must be 1 to",
                Box::new(|c| c.triggers.check_interval_s = u64::MAX),
            ),
            ("margin", Box::new(|c| c.rollout.margin = f64::NAN)),
            (
                "guardrails.rmse does not fit a binary label",
                Box::new(|c| {
                    c.guardrails.insert("rmse".into(), 0.1);
                }),
            ),
            (
                "never fires",
                Box::new(|c| c.triggers.schedule = Some("0 0 30 2 *".into())),
            ),
            (
                "min_latency_increase_ms",
                Box::new(|c| c.rollout.min_latency_increase_ms = f64::NAN),
            ),
            (
                "max_latency_p99_ratio",
                Box::new(|c| c.rollout.max_latency_p99_ratio = f64::INFINITY),
            ),
            (
                "max_error_rate_increase",
                Box::new(|c| c.rollout.max_error_rate_increase = f64::INFINITY),
            ),
        ];
        for (needle, spoil) in cases {
            let mut config = valid();
            spoil(&mut config);
            let e = config.validate().expect_err(needle);
            assert!(e.contains(needle), "{needle}: {e}");
        }
    }
}
