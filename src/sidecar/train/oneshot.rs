//! One-shot training from a CSV file: what `modelgate train` runs, so that any orchestrator
//! (an Airflow task, cron, a Kubernetes Job) can produce an artifact without a sidecar.

use std::path::{Path, PathBuf};

use super::{
    LinfaTrainer, TrainError, TrainProgress, Trainer, TrainingJob, create_output_dir, sha256_hex,
    write_atomically,
};
use crate::artifact::{LabelKind, ModelArtifact, ModelKind};
use crate::sidecar::train::{CsvSpec, TrainingData};

/// A one-shot training: read `data`, fit a `kind` model of `target` on the features, write
/// `{out}/model.json` (the artifact) and `{out}/metrics.json` (its in-sample metrics, name
/// → number).
///
/// ```no_run
/// use modelgate::artifact::ModelKind;
/// use modelgate::sidecar::train::OneShotTraining;
///
/// let mut training = OneShotTraining::new("data.csv", "label", "out", ModelKind::LogisticRegression);
/// training.timestamp_column = "t".into();
/// let done = training.run(&mut |p| eprintln!("{p:?}"))?;
/// println!("{} rows, {}", done.rows, done.model_path.display());
/// # Ok::<(), modelgate::sidecar::train::TrainError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct OneShotTraining {
    /// The CSV file (header row; numeric features; a time column).
    pub data: PathBuf,
    /// The label column.
    pub target: String,
    /// The output directory (created if missing).
    pub out: PathBuf,
    /// Logistic (binary label) or linear (continuous label) regression.
    pub kind: ModelKind,
    /// The features, in order (default: every column but the time and label columns).
    pub features: Option<Vec<String>>,
    /// The time column (Unix ms; default `timestamp_ms`, the column of the files the
    /// sidecar hands to external trainers).
    pub timestamp_column: String,
    /// For logistic regression: the label value that is class 1 in the file (default `1`).
    pub positive: String,
    /// For logistic regression: the positive label's name recorded in the artifact, when
    /// the file encodes it differently (the sidecar's data files write 1 for the positive
    /// value `UP`: `positive = "1"`, `positive_name = "UP"`). Default: `positive`.
    pub positive_name: Option<String>,
    /// The model's name (the artifact's `name`; default `model`).
    pub name: String,
    /// L2 penalty of the logistic regression (default 1).
    pub alpha: Option<f64>,
}

/// What a one-shot training wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct OneShotResult {
    /// The artifact.
    pub artifact: ModelArtifact,
    /// `{out}/model.json`.
    pub model_path: PathBuf,
    /// `{out}/metrics.json`.
    pub metrics_path: PathBuf,
    /// Hex sha256 of `model.json`.
    pub sha256: String,
    /// Rows trained on.
    pub rows: usize,
    /// Rows skipped for missing or unreadable values.
    pub skipped: u64,
}

impl OneShotTraining {
    /// A training of `target` in `data` into `out`, with the defaults.
    pub fn new(
        data: impl Into<PathBuf>,
        target: impl Into<String>,
        out: impl Into<PathBuf>,
        kind: ModelKind,
    ) -> Self {
        OneShotTraining {
            data: data.into(),
            target: target.into(),
            out: out.into(),
            kind,
            features: None,
            timestamp_column: super::COMMAND_TIMESTAMP_COLUMN.into(),
            positive: "1".into(),
            positive_name: None,
            name: "model".into(),
            alpha: None,
        }
    }

    /// Trains and writes the two files.
    ///
    /// # Errors
    /// Unreadable or unusable data ([`TrainError::Data`]), a bad job (unknown columns, one
    /// class only, too few rows), a failed fit, or an unwritable output directory.
    pub fn run(
        &self,
        progress: &mut dyn FnMut(TrainProgress),
    ) -> Result<OneShotResult, TrainError> {
        let header = TrainingData::csv_header(&self.data)?;
        for (what, column) in [("label", &self.target), ("time", &self.timestamp_column)] {
            if !header.contains(column) {
                return Err(TrainError::InvalidJob(format!(
                    "{}: no {what} column `{column}` (columns: {})",
                    self.data.display(),
                    header.join(", ")
                )));
            }
        }
        let features = match &self.features {
            Some(features) => features.clone(),
            None => header
                .iter()
                .filter(|c| **c != self.target && **c != self.timestamp_column)
                .cloned()
                .collect(),
        };
        let label_kind = self.kind.label_kind();
        let spec = CsvSpec {
            timestamp_column: self.timestamp_column.clone(),
            feature_columns: features.clone(),
            label_column: self.target.clone(),
            label_kind,
            positive_label: (label_kind == LabelKind::Binary).then(|| self.positive.clone()),
        };
        let data = TrainingData::from_csv(&self.data, &spec)?;
        let mut trainer = LinfaTrainer::default();
        if let Some(alpha) = self.alpha {
            trainer = trainer.alpha(alpha);
        }
        create_output_dir(&self.out)?;
        let scratch = self.out.join(".modelgate-train");
        let job = TrainingJob {
            model_name: self.name.clone(),
            run_id: 0,
            run_key: "oneshot".into(),
            data: &data,
            features,
            label: data.label().clone(),
            output_dir: scratch.clone(),
            stop: super::StopSignal::default(),
        };
        // The trainer's own artifact goes to a scratch directory: not worth reporting.
        let mut inner = |p: TrainProgress| {
            if !matches!(p, TrainProgress::ArtifactWritten { .. }) {
                progress(p);
            }
        };
        let trained = trainer.train(&job, &mut inner);
        let _ = std::fs::remove_dir_all(&scratch);
        let mut artifact = trained?.artifact;
        if label_kind == LabelKind::Binary
            && let Some(name) = self.positive_name.as_deref().filter(|n| !n.is_empty())
        {
            artifact.label.positive = Some(name.to_owned());
        }
        artifact.validate().map_err(|e| invalid(&self.out, e))?;
        let mut json = artifact
            .to_json_pretty()
            .map_err(|e| invalid(&self.out, e))?;
        json.push('\n');
        let model_path = self.out.join("model.json");
        write_atomically(&model_path, json.as_bytes())?;
        let metrics_path = self.out.join("metrics.json");
        let metrics = serde_json::to_string_pretty(&artifact.metrics)
            .map_err(|e| TrainError::Fit(format!("metrics: {e}")))?;
        write_atomically(&metrics_path, format!("{metrics}\n").as_bytes())?;
        let sha256 = sha256_hex(json.as_bytes());
        progress(TrainProgress::ArtifactWritten {
            path: model_path.clone(),
            sha256: sha256.clone(),
        });
        Ok(OneShotResult {
            rows: data.len(),
            skipped: data.skipped().total(),
            artifact,
            model_path,
            metrics_path,
            sha256,
        })
    }
}

fn invalid(out: &Path, source: crate::artifact::ArtifactError) -> TrainError {
    TrainError::InvalidArtifact {
        path: out.join("model.json"),
        source: Box::new(source),
        log: None,
        stderr_tail: String::new(),
    }
}
