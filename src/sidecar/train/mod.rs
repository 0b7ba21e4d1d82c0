//! Retraining: training data, the [`Trainer`] trait and two trainers.
//!
//! * [`TrainingData`]: numeric rows with labels and timestamps, read from CSV
//!   ([`TrainingData::from_csv`]) and split by time into training and holdout parts.
//! * [`LinfaTrainer`] (the default): logistic regression for binary labels, linear
//!   regression for continuous ones, in process with linfa, on standardised features.
//! * [`CommandTrainer`]: any external program (a scikit-learn script, a notebook runner)
//!   that reads the training rows as CSV and writes a [`ModelArtifact`].
//! * [`AirflowTrainer`]: hands training to an Apache Airflow 3 DAG over its REST API and
//!   follows the DAG run; the DAG writes the artifact into a shared directory.
//!
//! Both write the artifact as `{output_dir}/{name}-run{run_id}.json` (the name with
//! characters other than ASCII letters, digits, `-`, `_` and `.` replaced by `_`) and return
//! its sha256. Training runs on the calling thread and blocks; the pipeline runs it off the
//! async runtime.
//!
//! ```no_run
//! use modelgate::artifact::{LabelKind, LabelSpec};
//! use modelgate::sidecar::train::{
//!     CsvSpec, LinfaTrainer, StopSignal, Trainer, TrainingData, TrainingJob,
//! };
//!
//! let spec = CsvSpec {
//!     timestamp_column: "t".into(),
//!     feature_columns: vec!["nswprice".into(), "nswdemand".into()],
//!     label_column: "label".into(),
//!     label_kind: LabelKind::Binary,
//!     positive_label: Some("1".into()),
//! };
//! let data = TrainingData::from_csv("data/elec2.csv".as_ref(), &spec)?;
//! let (train, _holdout) = data.split_by_time(0.2);
//! let job = TrainingJob {
//!     model_name: "elec".into(),
//!     run_id: 1,
//!     run_key: "elec-run1".into(),
//!     data: &train,
//!     features: spec.feature_columns.clone(),
//!     label: train.label().clone(),
//!     output_dir: "models".into(),
//!     stop: StopSignal::default(),
//! };
//! let trained = LinfaTrainer::default().train(&job, &mut |p| println!("{p:?}"))?;
//! println!("{} sha256 {}", trained.artifact_path.display(), trained.sha256);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod airflow;
mod command;
mod data;
mod linear;
mod oneshot;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::artifact::{ArtifactError, LabelKind, LabelSpec, ModelArtifact};

pub use airflow::{AirflowConfig, AirflowError, AirflowTrainer};
pub use command::{COMMAND_TIMESTAMP_COLUMN, CommandTrainer};
pub use data::{CsvSpec, DataError, SkippedRows, TrainingData};
pub use linear::LinfaTrainer;
pub use oneshot::{OneShotResult, OneShotTraining};

/// What to train.
#[derive(Debug, Clone)]
pub struct TrainingJob<'a> {
    /// The model's name (the artifact's `name`).
    pub model_name: String,
    /// The pipeline run this training belongs to (names the output files).
    pub run_id: i64,
    /// A name for this training attempt, unique and stable across sidecar restarts (the
    /// pipeline derives it from the run, its start time and the attempt). Trainers that
    /// hand work to another system use it as that system's run id, so that a retried or
    /// resumed attempt finds its run instead of starting a second one. Letters, digits,
    /// `-`, `_` and `.` only.
    pub run_key: String,
    /// The training rows (the training part of a split; the holdout stays out).
    pub data: &'a TrainingData,
    /// The features to train on, a subset of `data`'s features in the order the model will
    /// take them.
    pub features: Vec<String>,
    /// The label; its kind must match `data`'s.
    pub label: LabelSpec,
    /// Where the artifact (and the log, for a command) is written; created if missing.
    pub output_dir: PathBuf,
    /// Raised when the sidecar shuts down: a trainer that waits (for a command, for an
    /// Airflow DAG run) gives up as soon as it sees it and returns [`TrainError::Stopped`].
    pub stop: StopSignal,
}

/// A request to stop waiting, shared between the pipeline and its trainer; cheap to clone.
/// The default is never raised unless [`StopSignal::raise`] is called on it or a clone.
#[derive(Debug, Clone, Default)]
pub struct StopSignal(Arc<(Mutex<bool>, Condvar)>);

impl StopSignal {
    /// Raises the signal and wakes every [`StopSignal::sleep`] in progress.
    pub fn raise(&self) {
        let (raised, wake) = &*self.0;
        *raised
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        wake.notify_all();
    }

    /// Whether the signal was raised.
    #[must_use]
    pub fn is_raised(&self) -> bool {
        *self
            .0
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for `duration`, or less when the signal is raised meanwhile; returns whether it
    /// was raised.
    pub fn sleep(&self, duration: Duration) -> bool {
        let (raised, wake) = &*self.0;
        let deadline = Instant::now().checked_add(duration);
        let mut guard = raised
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while !*guard {
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::MAX,
            };
            if left.is_zero() {
                break;
            }
            guard = wake
                .wait_timeout(guard, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        *guard
    }
}

/// A progress event a trainer reports while it works.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
#[non_exhaustive]
pub enum TrainProgress {
    /// The job was checked; training starts.
    Started {
        /// Training rows.
        rows: usize,
        /// Features.
        features: usize,
    },
    /// The in-process fit started.
    FittingStarted {
        /// Rows fitted on.
        rows: usize,
    },
    /// The in-process fit finished.
    FittingFinished {
        /// Rows fitted on.
        rows: usize,
        /// How long the fit took, ms.
        elapsed_ms: u64,
    },
    /// The external command was started.
    CommandStarted {
        /// The program.
        program: String,
        /// Its log file.
        log: PathBuf,
    },
    /// The external command exited successfully.
    CommandFinished {
        /// How long it ran, ms.
        elapsed_ms: u64,
    },
    /// An external run (an Airflow DAG run) was started for this attempt.
    ExternalRunTriggered {
        /// The system (`"airflow"`).
        system: String,
        /// The external run's id.
        run_id: String,
        /// Where a person can look at it.
        url: String,
    },
    /// An external run for this attempt already existed (a retry or a restarted sidecar)
    /// and is followed instead of starting another.
    ExternalRunFound {
        /// The system (`"airflow"`).
        system: String,
        /// The external run's id.
        run_id: String,
        /// Its state when found.
        state: String,
    },
    /// The external run changed state.
    ExternalRunState {
        /// The external run's id.
        run_id: String,
        /// The new state.
        state: String,
    },
    /// The artifact is written and validated.
    ArtifactWritten {
        /// Where.
        path: PathBuf,
        /// Hex sha256 of the file.
        sha256: String,
    },
}

/// A trained model and where its artifact is.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainedModel {
    /// The validated artifact.
    pub artifact: ModelArtifact,
    /// The artifact file.
    pub artifact_path: PathBuf,
    /// Hex sha256 of the artifact file.
    pub sha256: String,
    /// The trainer's log file, when it writes one.
    pub log: Option<PathBuf>,
    /// The external run that trained it, when another system did.
    pub external_run: Option<ExternalRun>,
}

/// A run in another system that trained a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExternalRun {
    /// The system (`"airflow"`).
    pub system: String,
    /// The run's id there (the job's `run_key`).
    pub run_id: String,
    /// Where a person can look at it.
    pub url: String,
}

/// Trains a model for a job.
pub trait Trainer: Send + Sync {
    /// Trains on `job.data`, writes the artifact into `job.output_dir`, and reports progress.
    ///
    /// # Errors
    /// A [`TrainError`] saying what failed.
    fn train(
        &self,
        job: &TrainingJob<'_>,
        progress: &mut dyn FnMut(TrainProgress),
    ) -> Result<TrainedModel, TrainError>;

    /// Whether an attempt interrupted by a sidecar restart can be resumed by calling
    /// [`train`](Self::train) again with the same job (same `run_key`): true for trainers
    /// whose work runs elsewhere and is found again by its key. In-process and command
    /// trainers die with the sidecar, so their interrupted runs are marked failed instead.
    fn resumes_runs(&self) -> bool {
        false
    }
}

/// Why training failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// The job is unusable (no features, unknown or repeated features, a label that does not
    /// match the data, an empty model name).
    #[error("training job: {0}")]
    InvalidJob(String),
    /// The training data is unreadable or unusable.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The trainer's settings are unusable.
    #[error("trainer config: {0}")]
    Config(String),
    /// There are no training rows.
    #[error("no training rows")]
    NoRows,
    /// Too few rows for the number of features.
    #[error("{rows} training rows for {features} features: at least {needed} are needed")]
    TooFewRows {
        /// Rows given.
        rows: usize,
        /// Features.
        features: usize,
        /// Rows needed (2 × features).
        needed: usize,
    },
    /// Every training label is the same class.
    #[error("all {rows} training labels are class {class}: both classes are needed")]
    SingleClass {
        /// The only class present (1 = the positive value).
        class: u8,
        /// Rows.
        rows: usize,
    },
    /// The fit failed or gave unusable coefficients.
    #[error("fitting failed: {0}")]
    Fit(String),
    /// A file could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The external command could not be started.
    #[error("cannot start `{program}`: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The external command failed.
    #[error("`{program}` failed ({status}); log {log}; last stderr lines:\n{stderr_tail}")]
    CommandFailed {
        /// The program.
        program: String,
        /// How it exited (`"exit status: 3"`, `"signal: 9"`).
        status: String,
        /// Its exit code, when it exited normally.
        code: Option<i32>,
        /// The log file.
        log: PathBuf,
        /// The last lines it wrote to stderr.
        stderr_tail: String,
    },
    /// The external command ran past its timeout and was killed.
    #[error(
        "`{program}` ran longer than {timeout:?} and was killed; log {log}; last stderr lines:\n{stderr_tail}"
    )]
    Timeout {
        /// The program.
        program: String,
        /// The timeout.
        timeout: Duration,
        /// The log file.
        log: PathBuf,
        /// The last lines it wrote to stderr.
        stderr_tail: String,
    },
    /// The Airflow DAG run could not be started or followed, failed, or timed out.
    #[error(transparent)]
    Airflow(#[from] AirflowError),
    /// The job's [`StopSignal`] was raised (the sidecar is shutting down): a command was
    /// killed; an Airflow DAG run was left running, for a restarted sidecar to follow.
    #[error("training stopped: the sidecar is shutting down")]
    Stopped,
    /// The artifact is missing, invalid, or does not fit the job.
    #[error("artifact {path} is invalid: {source}{}", log_note(log.as_deref(), stderr_tail))]
    InvalidArtifact {
        /// The artifact file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: Box<ArtifactError>,
        /// The trainer's log file, if any.
        log: Option<PathBuf>,
        /// The last stderr lines of the command, if any.
        stderr_tail: String,
    },
}

fn log_note(log: Option<&Path>, stderr_tail: &str) -> String {
    match log {
        Some(log) if stderr_tail.is_empty() => format!("; log {}", log.display()),
        Some(log) => format!("; log {}; last stderr lines:\n{stderr_tail}", log.display()),
        None => String::new(),
    }
}

/// The file-name stem for a job's outputs: `{name}-run{run_id}`, with characters other than
/// ASCII letters, digits, `-`, `_` and `.` in the name replaced by `_` (and a leading `.`).
#[must_use]
pub fn output_stem(model_name: &str, run_id: i64) -> String {
    let mut name: String = model_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.starts_with('.') {
        name.replace_range(0..1, "_");
    }
    format!("{name}-run{run_id}")
}

/// Hex sha256 of `bytes`.
#[must_use]
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// Checks a job against its data; returns the column of each job feature in the data.
fn check_job(job: &TrainingJob<'_>) -> Result<Vec<usize>, TrainError> {
    if job.model_name.trim().is_empty() {
        return Err(TrainError::InvalidJob("the model name is empty".into()));
    }
    if job.features.is_empty() {
        return Err(TrainError::InvalidJob("no features".into()));
    }
    let mut columns = Vec::with_capacity(job.features.len());
    for (i, f) in job.features.iter().enumerate() {
        if job.features[..i].contains(f) {
            return Err(TrainError::InvalidJob(format!(
                "feature `{f}` is listed more than once"
            )));
        }
        let column = job.data.feature_index(f).ok_or_else(|| {
            TrainError::InvalidJob(format!("feature `{f}` is not in the training data"))
        })?;
        columns.push(column);
    }
    if job.features.contains(&job.label.name) {
        return Err(TrainError::InvalidJob(format!(
            "the label `{}` is also a feature",
            job.label.name
        )));
    }
    if job.label.kind != job.data.label().kind {
        return Err(TrainError::InvalidJob(format!(
            "the job's label is {} but the data's is {}",
            job.label.kind.as_str(),
            job.data.label().kind.as_str()
        )));
    }
    if job.label.kind == LabelKind::Binary && job.label.positive != job.data.label().positive {
        return Err(TrainError::InvalidJob(format!(
            "the job's positive label {:?} is not the data's {:?} (the data's labels are 1 for its positive value)",
            job.label.positive,
            job.data.label().positive
        )));
    }
    match (job.label.kind, job.label.positive.as_deref()) {
        (LabelKind::Binary, None | Some("")) => Err(TrainError::InvalidJob(
            "a binary label needs its positive value".into(),
        )),
        (LabelKind::Continuous, Some(_)) => Err(TrainError::InvalidJob(
            "a continuous label has no positive value".into(),
        )),
        _ => Ok(columns),
    }
}

/// Refuses data a model cannot be fitted on: no rows, fewer than two rows per feature, or
/// a single class.
fn check_rows(job: &TrainingJob<'_>) -> Result<(), TrainError> {
    let rows = job.data.len();
    let features = job.features.len();
    if rows == 0 {
        return Err(TrainError::NoRows);
    }
    if rows < 2 * features {
        return Err(TrainError::TooFewRows {
            rows,
            features,
            needed: 2 * features,
        });
    }
    if job.label.kind == LabelKind::Binary {
        let ones = job.data.labels().iter().filter(|&&y| y == 1.0).count();
        if ones == 0 || ones == rows {
            return Err(TrainError::SingleClass {
                class: u8::from(ones == rows),
                rows,
            });
        }
    }
    Ok(())
}

/// Creates the output directory.
fn create_output_dir(dir: &Path) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(|source| TrainError::Io {
        path: dir.to_owned(),
        source,
    })
}

/// Writes `bytes` to `path` through a temporary file and a rename, so that a reader never
/// sees a half-written artifact.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let io = |source| TrainError::Io {
        path: path.to_owned(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn elapsed_ms(since: std::time::Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_stems_are_safe_file_names() {
        assert_eq!(output_stem("ranker", 12), "ranker-run12");
        assert_eq!(output_stem("../etc/passwd", 1), "_._etc_passwd-run1");
        assert_eq!(output_stem(".hidden model", -3), "_hidden_model-run-3");
        assert_eq!(output_stem("prix-€", 2), "prix-_-run2");
    }
}
