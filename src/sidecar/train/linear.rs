//! The in-process trainer: logistic and linear regression with linfa.

use std::time::Instant;

use linfa::Dataset;
use linfa::traits::Fit;
use ndarray::{Array1, Array2};

use super::{
    TrainError, TrainProgress, TrainedModel, Trainer, TrainingJob, check_job, check_rows,
    create_output_dir, elapsed_ms, now_ms, output_stem, sha256_hex, write_atomically,
};
use crate::artifact::{
    ArtifactError, DataRange, LabelKind, ModelArtifact, ModelKind, SCHEMA_VERSION, Scaler,
};

/// The default trainer: logistic regression (linfa-logistic, L-BFGS with an L2 penalty) for
/// binary labels and ordinary least squares (linfa-linear) for continuous ones, on features
/// standardised with the training rows' mean and standard deviation (population, as
/// scikit-learn's `StandardScaler`; a constant feature gets scale 1 and coefficient 0).
///
/// The logistic loss is `Σ log(1 + e^(−y·s)) + α/2·‖w‖²` over the training rows, intercept
/// unpenalised: with `alpha = 1` the same objective as scikit-learn's
/// `LogisticRegression(C=1)`.
///
/// The artifact's probability always refers to label 1 (the positive value): linfa-logistic
/// models the more frequent class as its positive class, so when that is class 0 the
/// trainer negates the coefficients and the intercept (`σ(−s) = 1 − σ(s)`). Its `metrics`
/// are the in-sample ones (`train_accuracy`, `train_auc`, ... or `train_rmse`, `train_mae`).
#[derive(Debug, Clone, PartialEq)]
pub struct LinfaTrainer {
    /// L2 penalty weight for logistic regression (≥ 0; default 1).
    pub alpha: f64,
    /// Most L-BFGS iterations for logistic regression (≥ 1; default 200).
    pub max_iterations: u64,
}

impl Default for LinfaTrainer {
    fn default() -> Self {
        LinfaTrainer {
            alpha: 1.0,
            max_iterations: 200,
        }
    }
}

impl LinfaTrainer {
    /// The tool name written as the artifact's `trained_by`.
    #[must_use]
    pub fn trained_by() -> String {
        format!("modelgate-linfa {}", env!("CARGO_PKG_VERSION"))
    }

    /// This trainer with L2 penalty `alpha`.
    #[must_use]
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.alpha = alpha;
        self
    }

    /// This trainer with at most `max_iterations` L-BFGS iterations.
    #[must_use]
    pub fn max_iterations(mut self, max_iterations: u64) -> Self {
        self.max_iterations = max_iterations;
        self
    }
}

/// Standardisation of the chosen columns: `(mean, scale, constant)` per feature.
fn fit_scaler(job: &TrainingJob<'_>, columns: &[usize]) -> (Vec<f64>, Vec<f64>, Vec<bool>) {
    let n = job.data.len() as f64;
    let mut mean = Vec::with_capacity(columns.len());
    let mut scale = Vec::with_capacity(columns.len());
    let mut constant = Vec::with_capacity(columns.len());
    for &c in columns {
        let column = || job.data.rows().map(move |r| r[c]);
        let first = column().next().unwrap_or(0.0);
        let m = column().sum::<f64>() / n;
        let var = column().map(|x| (x - m) * (x - m)).sum::<f64>() / n;
        let sd = var.sqrt();
        let is_constant = column().all(|x| x == first) || !(sd > 0.0 && sd.is_finite());
        mean.push(if is_constant { first } else { m });
        scale.push(if is_constant { 1.0 } else { sd });
        constant.push(is_constant);
    }
    (mean, scale, constant)
}

impl Trainer for LinfaTrainer {
    fn train(
        &self,
        job: &TrainingJob<'_>,
        progress: &mut dyn FnMut(TrainProgress),
    ) -> Result<TrainedModel, TrainError> {
        if !(self.alpha.is_finite() && self.alpha >= 0.0) {
            return Err(TrainError::Config(format!(
                "alpha must be a finite number ≥ 0, not {}",
                self.alpha
            )));
        }
        if self.max_iterations == 0 {
            return Err(TrainError::Config("max_iterations must be ≥ 1".into()));
        }
        let columns = check_job(job)?;
        check_rows(job)?;
        let rows = job.data.len();
        let features = columns.len();
        let labels = job.data.labels();
        progress(TrainProgress::Started { rows, features });

        let (mean, scale, constant) = fit_scaler(job, &columns);
        let kept: Vec<usize> = (0..features).filter(|&j| !constant[j]).collect();
        if kept.is_empty() {
            return Err(TrainError::Fit(
                "every feature is constant in the training rows".into(),
            ));
        }
        let mut x = Array2::<f64>::zeros((rows, kept.len()));
        for (mut out, row) in x.rows_mut().into_iter().zip(job.data.rows()) {
            for (o, &j) in out.iter_mut().zip(&kept) {
                *o = (row[columns[j]] - mean[j]) / scale[j];
            }
        }

        tracing::info!(
            model = %job.model_name,
            run_id = job.run_id,
            rows,
            features,
            constant = features - kept.len(),
            "fitting started"
        );
        progress(TrainProgress::FittingStarted { rows });
        let started = Instant::now();
        let (kind, weights, intercept) = match job.label.kind {
            LabelKind::Binary => {
                let y: Array1<usize> = labels.iter().map(|&y| usize::from(y == 1.0)).collect();
                let model = linfa_logistic::LogisticRegression::default()
                    .alpha(self.alpha)
                    .max_iterations(self.max_iterations)
                    .fit(&Dataset::new(x, y))
                    .map_err(|e| TrainError::Fit(e.to_string()))?;
                // linfa's positive class is the more frequent one; make it class 1.
                let sign = if model.labels().pos.class == 1 {
                    1.0
                } else {
                    -1.0
                };
                (
                    ModelKind::LogisticRegression,
                    model.params().iter().map(|w| sign * w).collect::<Vec<_>>(),
                    sign * model.intercept(),
                )
            }
            LabelKind::Continuous => {
                let y = Array1::from_iter(labels.iter().copied());
                let model = linfa_linear::LinearRegression::new()
                    .fit(&Dataset::new(x, y))
                    .map_err(|e| TrainError::Fit(e.to_string()))?;
                (
                    ModelKind::LinearRegression,
                    model.params().to_vec(),
                    model.intercept(),
                )
            }
        };
        let elapsed = elapsed_ms(started);
        tracing::info!(model = %job.model_name, run_id = job.run_id, rows, elapsed_ms = elapsed, "fitting finished");
        progress(TrainProgress::FittingFinished {
            rows,
            elapsed_ms: elapsed,
        });
        if weights.len() != kept.len() || !weights.iter().chain([&intercept]).all(|w| w.is_finite())
        {
            return Err(TrainError::Fit(
                "the fit gave non-finite coefficients (collinear or extreme features?)".into(),
            ));
        }
        let mut coefficients = vec![0.0; features];
        for (&j, &w) in kept.iter().zip(&weights) {
            coefficients[j] = w;
        }

        let range = job.data.range().unwrap_or(DataRange {
            from_ms: 0,
            to_ms: 0,
            rows: 0,
        });
        let mut artifact = ModelArtifact {
            schema_version: SCHEMA_VERSION,
            kind,
            name: job.model_name.clone(),
            features: job.features.clone(),
            scaler: Scaler { mean, scale },
            coefficients,
            intercept,
            label: job.label.clone(),
            training: range,
            metrics: Default::default(),
            trained_by: Self::trained_by(),
            created_ms: now_ms(),
        };
        if let Ok(metrics) = crate::sidecar::evaluate::evaluate(&artifact, job.data) {
            artifact.metrics = metrics
                .to_map()
                .into_iter()
                .map(|(k, v)| (format!("train_{k}"), v))
                .collect();
        }

        create_output_dir(&job.output_dir)?;
        let path = job
            .output_dir
            .join(format!("{}.json", output_stem(&job.model_name, job.run_id)));
        let invalid = |source: ArtifactError| TrainError::InvalidArtifact {
            path: path.clone(),
            source: Box::new(source),
            log: None,
            stderr_tail: String::new(),
        };
        let mut json = artifact.to_json_pretty().map_err(invalid)?;
        json.push('\n');
        write_atomically(&path, json.as_bytes())?;
        let sha256 = sha256_hex(json.as_bytes());
        progress(TrainProgress::ArtifactWritten {
            path: path.clone(),
            sha256: sha256.clone(),
        });
        Ok(TrainedModel {
            artifact,
            artifact_path: path,
            sha256,
            log: None,
            external_run: None,
        })
    }
}
