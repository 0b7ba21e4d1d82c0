//! The model artifact: a language-neutral JSON file describing a trained linear model, so
//! that modelgate's own trainer, a scikit-learn script or any other tool can produce models
//! that modelgate serves, evaluates and promotes.
//!
//! Two kinds are served out of the box:
//!
//! * `logistic_regression`: binary label; [`ModelArtifact::predict`] returns the probability
//!   that the label is the `positive` value, `σ(intercept + Σ coefficients[i]·z[i])`;
//! * `linear_regression`: continuous label; the prediction is
//!   `intercept + Σ coefficients[i]·z[i]`;
//!
//! where `z[i] = (x[i] − scaler.mean[i]) / scaler.scale[i]` standardises feature `i` with the
//! mean and scale fitted on the training rows, and `σ(t) = 1 / (1 + e^(−t))`. Coefficients
//! apply to the *scaled* inputs. A feature that was constant in training has scale 1 (the
//! convention of scikit-learn's `StandardScaler`).
//!
//! # Format (`schema_version` 1)
//!
//! ```
//! use modelgate::artifact::{ModelArtifact, ModelKind};
//!
//! let json = br#"{
//!   "schema_version": 1,
//!   "kind": "logistic_regression",
//!   "name": "churn",
//!   "features": ["tenure_days", "sessions_7d"],
//!   "scaler": { "mean": [120.0, 4.5], "scale": [60.0, 2.0] },
//!   "coefficients": [-0.8, 1.3],
//!   "intercept": -0.25,
//!   "label": { "name": "churned", "positive": "1", "kind": "binary" },
//!   "training": { "from_ms": 1767225600000, "to_ms": 1769904000000, "rows": 48210 },
//!   "metrics": { "auc": 0.81, "log_loss": 0.43 },
//!   "trained_by": "scikit-learn 1.5",
//!   "created_ms": 1769990400000
//! }"#;
//! let model = ModelArtifact::from_json(json)?;
//! assert_eq!(model.kind, ModelKind::LogisticRegression);
//! // tenure 120 days (z = 0), 6.5 sessions (z = 1): σ(−0.25 + 1.3) = σ(1.05)
//! let p = model.predict(&[120.0, 6.5])?;
//! assert!((p - 1.0 / (1.0 + (-1.05f64).exp())).abs() < 1e-12);
//! # Ok::<(), modelgate::artifact::ArtifactError>(())
//! ```
//!
//! | field | meaning |
//! |---|---|
//! | `schema_version` | `1`; a reader rejects versions it does not know |
//! | `kind` | `"logistic_regression"` or `"linear_regression"` |
//! | `name` | model name (non-empty) |
//! | `features` | input feature names, in the order rows are given; unique, non-empty |
//! | `scaler.mean`, `scaler.scale` | one per feature; `scale > 0` |
//! | `coefficients` | one per feature, on scaled inputs |
//! | `intercept` | on scaled inputs |
//! | `label.name` | the label column (not one of the features) |
//! | `label.positive` | logistic only, required: the label value the probability refers to (`"1"`, `"true"`, `"UP"`); `null` or absent for linear |
//! | `label.kind` | `"binary"` (logistic) or `"continuous"` (linear) |
//! | `training` | `from_ms`, `to_ms` (Unix ms, `from_ms ≤ to_ms`) and `rows` of the training data |
//! | `metrics` | optional object of offline metrics, name → number |
//! | `trained_by` | the producing tool and its version (`"modelgate-linfa 0.1.0"`) |
//! | `created_ms` | when the artifact was written, Unix ms |
//!
//! Every number must be finite (JSON has no NaN or infinity). Unknown fields are rejected, so
//! a misspelt optional field does not pass silently; a writer that adds fields must raise
//! `schema_version`. [`ModelArtifact::from_json`] checks the version and the kinds first (so a
//! newer file fails with [`ArtifactError::UnsupportedSchema`], not a parse error), then
//! parses and [`validate`](ModelArtifact::validate)s.
//!
//! Cost: [`ModelArtifact::predict`] is one pass over the row (no allocation), a few
//! nanoseconds per feature.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::{LoadError, ModelLoader};

/// The artifact schema version this crate reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Largest artifact file [`ModelArtifact::load`] reads, in bytes.
pub const MAX_ARTIFACT_BYTES: u64 = 64 << 20;

/// The model kinds an artifact can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Logistic regression on a binary label; predicts a probability.
    LogisticRegression,
    /// Linear regression on a continuous label; predicts a value.
    LinearRegression,
}

impl ModelKind {
    /// The name used in the JSON format.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::LogisticRegression => "logistic_regression",
            ModelKind::LinearRegression => "linear_regression",
        }
    }

    /// The label kind this model kind predicts.
    #[must_use]
    pub fn label_kind(self) -> LabelKind {
        match self {
            ModelKind::LogisticRegression => LabelKind::Binary,
            ModelKind::LinearRegression => LabelKind::Continuous,
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "logistic_regression" => Some(ModelKind::LogisticRegression),
            "linear_regression" => Some(ModelKind::LinearRegression),
            _ => None,
        }
    }
}

/// What kind of label a model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelKind {
    /// Two classes, encoded 1 (the positive value) and 0.
    Binary,
    /// A real number.
    Continuous,
}

impl LabelKind {
    /// The name used in the JSON format.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            LabelKind::Binary => "binary",
            LabelKind::Continuous => "continuous",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "binary" => Some(LabelKind::Binary),
            "continuous" => Some(LabelKind::Continuous),
            _ => None,
        }
    }
}

/// Standardisation fitted on the training data: `z = (x − mean) / scale`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scaler {
    /// Per-feature mean.
    pub mean: Vec<f64>,
    /// Per-feature scale (standard deviation; 1 for a constant feature); each `> 0`.
    pub scale: Vec<f64>,
}

/// The label a model predicts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelSpec {
    /// The label column's name.
    pub name: String,
    /// For a binary label: the value the predicted probability refers to (`"1"`, `"true"`,
    /// `"UP"`). `None` for a continuous label.
    #[serde(default)]
    pub positive: Option<String>,
    /// Binary or continuous.
    pub kind: LabelKind,
}

/// The training data's time range and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataRange {
    /// Earliest row's timestamp, Unix ms.
    pub from_ms: i64,
    /// Latest row's timestamp, Unix ms.
    pub to_ms: i64,
    /// Number of rows.
    pub rows: u64,
}

/// A trained linear model (see the [module docs](self) for the format).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelArtifact {
    /// Format version, [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Model kind.
    pub kind: ModelKind,
    /// Model name.
    pub name: String,
    /// Feature names, in row order.
    pub features: Vec<String>,
    /// Standardisation of the inputs.
    pub scaler: Scaler,
    /// One coefficient per feature, on scaled inputs.
    pub coefficients: Vec<f64>,
    /// Intercept, on scaled inputs.
    pub intercept: f64,
    /// The label.
    pub label: LabelSpec,
    /// The training data's range.
    pub training: DataRange,
    /// Offline metrics, name → value.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// The tool that trained it, with its version.
    pub trained_by: String,
    /// When the artifact was written, Unix ms.
    pub created_ms: i64,
}

/// What is wrong with an artifact, or with a row given to it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArtifactError {
    /// The file cannot be read.
    #[error("cannot read model artifact {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_ARTIFACT_BYTES`].
    #[error("model artifact {path} is larger than {MAX_ARTIFACT_BYTES} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The text is not valid JSON or does not have the artifact's shape.
    #[error("model artifact is not valid: {reason}")]
    Parse {
        /// The parser's message (with line and column).
        reason: String,
    },
    /// `schema_version` is missing or not one this crate reads.
    #[error(
        "model artifact field `schema_version`: {found} is not supported (this reader supports {SCHEMA_VERSION})"
    )]
    UnsupportedSchema {
        /// The value found (`"missing"` when absent).
        found: String,
    },
    /// `kind` or `label.kind` names a kind this crate does not know.
    #[error("model artifact field `{field}`: unknown kind {value} (expected one of {expected})")]
    UnknownKind {
        /// `"kind"` or `"label.kind"`.
        field: &'static str,
        /// The value found.
        value: String,
        /// The accepted values.
        expected: &'static str,
    },
    /// A string field that must not be empty is.
    #[error("model artifact field `{field}` is empty")]
    Empty {
        /// The field.
        field: String,
    },
    /// Two lists that must have one entry per feature do not.
    #[error(
        "model artifact field `{field}` has {found} entries, expected {expected} (one per feature)"
    )]
    LengthMismatch {
        /// The field.
        field: &'static str,
        /// Entries expected (the number of features).
        expected: usize,
        /// Entries found.
        found: usize,
    },
    /// A number is NaN or infinite.
    #[error("model artifact field `{field}` is not a finite number")]
    NonFinite {
        /// The field, with its index (`"coefficients[2]"`).
        field: String,
    },
    /// A scale is zero or negative.
    #[error(
        "model artifact field `scaler.scale[{index}]` (feature `{feature}`) is {value}; it must be > 0"
    )]
    NonPositiveScale {
        /// Index of the feature.
        index: usize,
        /// Name of the feature.
        feature: String,
        /// The value found.
        value: f64,
    },
    /// A feature name appears twice.
    #[error("model artifact field `features`: `{name}` appears more than once")]
    DuplicateFeature {
        /// The repeated name.
        name: String,
    },
    /// Fields that must agree do not (kind and label kind, positive value, time range, ...).
    #[error("model artifact field `{field}`: {reason}")]
    Inconsistent {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A row given to [`ModelArtifact::predict`] has the wrong number of values.
    #[error("row has {found} values, the model `{model}` expects {expected}")]
    WrongRowLength {
        /// The model's name.
        model: String,
        /// Values expected (the number of features).
        expected: usize,
        /// Values given.
        found: usize,
    },
    /// A row value is NaN or infinite.
    #[error("row value for feature `{feature}` (index {index}) is {value}, not a finite number")]
    NonFiniteInput {
        /// Index in the row.
        index: usize,
        /// Feature name.
        feature: String,
        /// The value.
        value: f64,
    },
    /// The prediction overflowed (a finite row far outside the training range).
    #[error("the prediction of model `{model}` is not a finite number (inputs out of range)")]
    NonFiniteOutput {
        /// The model's name.
        model: String,
    },
}

/// The numerically stable logistic function `1 / (1 + e^(−t))`: never overflows, and is
/// exact to rounding for large `|t|` on both sides.
#[inline]
#[must_use]
pub fn sigmoid(t: f64) -> f64 {
    if t >= 0.0 {
        1.0 / (1.0 + (-t).exp())
    } else {
        let e = t.exp();
        e / (1.0 + e)
    }
}

impl ModelArtifact {
    /// Parses and validates an artifact from JSON bytes.
    ///
    /// # Errors
    /// [`ArtifactError::UnsupportedSchema`] or [`ArtifactError::UnknownKind`] for a version or
    /// kind this crate does not know, [`ArtifactError::Parse`] for malformed JSON, missing or
    /// unknown fields, and any [`validate`](Self::validate) error.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ArtifactError> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| ArtifactError::Parse {
                reason: e.to_string(),
            })?;
        let object = value.as_object().ok_or_else(|| ArtifactError::Parse {
            reason: "the top level must be a JSON object".into(),
        })?;
        match object.get("schema_version") {
            Some(v) if v.as_u64() == Some(u64::from(SCHEMA_VERSION)) => {}
            Some(v) => {
                return Err(ArtifactError::UnsupportedSchema {
                    found: v.to_string(),
                });
            }
            None => {
                return Err(ArtifactError::UnsupportedSchema {
                    found: "missing".into(),
                });
            }
        }
        if let Some(kind) = object.get("kind")
            && kind.as_str().and_then(ModelKind::from_name).is_none()
        {
            return Err(ArtifactError::UnknownKind {
                field: "kind",
                value: kind.to_string(),
                expected: "\"logistic_regression\", \"linear_regression\"",
            });
        }
        if let Some(kind) = object
            .get("label")
            .and_then(|l| l.as_object())
            .and_then(|l| l.get("kind"))
            && kind.as_str().and_then(LabelKind::from_name).is_none()
        {
            return Err(ArtifactError::UnknownKind {
                field: "label.kind",
                value: kind.to_string(),
                expected: "\"binary\", \"continuous\"",
            });
        }
        let artifact: ModelArtifact =
            serde_json::from_value(value).map_err(|e| ArtifactError::Parse {
                reason: e.to_string(),
            })?;
        artifact.validate()?;
        Ok(artifact)
    }

    /// Reads, parses and validates the artifact file at `path` (at most
    /// [`MAX_ARTIFACT_BYTES`]).
    ///
    /// # Errors
    /// [`ArtifactError::Io`] or [`ArtifactError::TooLarge`] when the file cannot be read, and
    /// any [`from_json`](Self::from_json) error.
    pub fn load(path: &Path) -> Result<Self, ArtifactError> {
        let bytes = read_limited(path)?;
        Self::from_json(&bytes)
    }

    /// The artifact as pretty-printed JSON (the format the module docs describe).
    ///
    /// # Errors
    /// [`validate`](Self::validate)'s errors: an invalid artifact is never written (JSON
    /// cannot hold NaN, so it would not read back).
    pub fn to_json_pretty(&self) -> Result<String, ArtifactError> {
        self.validate()?;
        serde_json::to_string_pretty(self).map_err(|e| ArtifactError::Parse {
            reason: e.to_string(),
        })
    }

    /// Checks everything the format requires: the schema version, that the model kind and
    /// the label kind agree (and `label.positive` is set exactly for binary labels), non-empty
    /// unique names, one mean, scale and coefficient per feature, finite numbers, positive
    /// scales, and `training.from_ms ≤ training.to_ms`.
    ///
    /// # Errors
    /// The first problem found, as an [`ArtifactError`] naming the field.
    pub fn validate(&self) -> Result<(), ArtifactError> {
        if self.schema_version != SCHEMA_VERSION {
            return Err(ArtifactError::UnsupportedSchema {
                found: self.schema_version.to_string(),
            });
        }
        non_empty("name", &self.name)?;
        non_empty("trained_by", &self.trained_by)?;
        non_empty("label.name", &self.label.name)?;
        if self.features.is_empty() {
            return Err(ArtifactError::Empty {
                field: "features".into(),
            });
        }
        let mut seen = HashSet::with_capacity(self.features.len());
        for (i, name) in self.features.iter().enumerate() {
            non_empty(&format!("features[{i}]"), name)?;
            if !seen.insert(name.as_str()) {
                return Err(ArtifactError::DuplicateFeature { name: name.clone() });
            }
        }
        if seen.contains(self.label.name.as_str()) {
            return Err(ArtifactError::Inconsistent {
                field: "label.name",
                reason: format!("the label `{}` is also a feature", self.label.name),
            });
        }
        let n = self.features.len();
        for (field, len) in [
            ("scaler.mean", self.scaler.mean.len()),
            ("scaler.scale", self.scaler.scale.len()),
            ("coefficients", self.coefficients.len()),
        ] {
            if len != n {
                return Err(ArtifactError::LengthMismatch {
                    field,
                    expected: n,
                    found: len,
                });
            }
        }
        finite_all("scaler.mean", &self.scaler.mean)?;
        finite_all("scaler.scale", &self.scaler.scale)?;
        finite_all("coefficients", &self.coefficients)?;
        if !self.intercept.is_finite() {
            return Err(ArtifactError::NonFinite {
                field: "intercept".into(),
            });
        }
        for (index, (&value, feature)) in self.scaler.scale.iter().zip(&self.features).enumerate() {
            if value <= 0.0 {
                return Err(ArtifactError::NonPositiveScale {
                    index,
                    feature: feature.clone(),
                    value,
                });
            }
        }
        let expected_label = self.kind.label_kind();
        if self.label.kind != expected_label {
            return Err(ArtifactError::Inconsistent {
                field: "label.kind",
                reason: format!(
                    "a {} model needs a {} label, not {}",
                    self.kind.as_str(),
                    expected_label.as_str(),
                    self.label.kind.as_str()
                ),
            });
        }
        match (&self.label.kind, &self.label.positive) {
            (LabelKind::Binary, None) => {
                return Err(ArtifactError::Inconsistent {
                    field: "label.positive",
                    reason: "a binary label needs the positive value the probability refers to"
                        .into(),
                });
            }
            (LabelKind::Binary, Some(p)) => non_empty("label.positive", p)?,
            (LabelKind::Continuous, Some(_)) => {
                return Err(ArtifactError::Inconsistent {
                    field: "label.positive",
                    reason: "a continuous label has no positive value (use null)".into(),
                });
            }
            (LabelKind::Continuous, None) => {}
        }
        if self.training.from_ms > self.training.to_ms {
            return Err(ArtifactError::Inconsistent {
                field: "training",
                reason: format!(
                    "from_ms {} is after to_ms {}",
                    self.training.from_ms, self.training.to_ms
                ),
            });
        }
        for (name, value) in &self.metrics {
            if !value.is_finite() {
                return Err(ArtifactError::NonFinite {
                    field: format!("metrics.{name}"),
                });
            }
        }
        Ok(())
    }

    /// Predicts one row (values in [`features`](Self::features) order): the probability of
    /// `label.positive` for a logistic model, the value for a linear one.
    ///
    /// Assumes a [`validate`](Self::validate)d artifact (everything loaded through this
    /// module is); on an unvalidated one it still never panics.
    ///
    /// # Errors
    /// [`ArtifactError::WrongRowLength`], [`ArtifactError::NonFiniteInput`], or
    /// [`ArtifactError::NonFiniteOutput`] when a finite row overflows the linear score.
    pub fn predict(&self, row: &[f64]) -> Result<f64, ArtifactError> {
        let expected = self.features.len();
        if row.len() != expected
            || self.coefficients.len() != expected
            || self.scaler.mean.len() != expected
            || self.scaler.scale.len() != expected
        {
            return Err(ArtifactError::WrongRowLength {
                model: self.name.clone(),
                expected,
                found: row.len(),
            });
        }
        if let Some((index, &value)) = row.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(ArtifactError::NonFiniteInput {
                index,
                feature: self.features[index].clone(),
                value,
            });
        }
        let score = self.score(row);
        let out = self.link(score);
        if out.is_finite() {
            Ok(out)
        } else {
            Err(ArtifactError::NonFiniteOutput {
                model: self.name.clone(),
            })
        }
    }

    /// [`predict`](Self::predict) without its checks, for a hot loop over rows already known
    /// to be the right length and finite with a validated artifact. Never panics: a short row
    /// uses only the features it has, and bad input gives a meaningless (possibly NaN) number.
    #[inline]
    #[must_use]
    pub fn predict_unchecked(&self, row: &[f64]) -> f64 {
        self.link(self.score(row))
    }

    /// The linear score `intercept + Σ coefficients[i]·(row[i] − mean[i]) / scale[i]` (the
    /// log-odds for a logistic model).
    #[inline]
    fn score(&self, row: &[f64]) -> f64 {
        row.iter()
            .zip(&self.coefficients)
            .zip(self.scaler.mean.iter().zip(&self.scaler.scale))
            .fold(self.intercept, |acc, ((&x, &w), (&m, &s))| {
                acc + w * ((x - m) / s)
            })
    }

    #[inline]
    fn link(&self, score: f64) -> f64 {
        match self.kind {
            ModelKind::LogisticRegression => {
                if score.is_nan() {
                    score
                } else {
                    sigmoid(score)
                }
            }
            ModelKind::LinearRegression => score,
        }
    }
}

fn non_empty(field: &str, value: &str) -> Result<(), ArtifactError> {
    if value.trim().is_empty() {
        Err(ArtifactError::Empty {
            field: field.to_owned(),
        })
    } else {
        Ok(())
    }
}

fn finite_all(field: &str, values: &[f64]) -> Result<(), ArtifactError> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(ArtifactError::NonFinite {
            field: format!("{field}[{i}]"),
        }),
        None => Ok(()),
    }
}

fn read_limited(path: &Path) -> Result<Vec<u8>, ArtifactError> {
    let io = |source| ArtifactError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(MAX_ARTIFACT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_ARTIFACT_BYTES {
        return Err(ArtifactError::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(bytes)
}

/// A [`ModelLoader`] for [`ModelArtifact`] files: the location is the artifact's file path
/// (a `file://` prefix is accepted and removed).
///
/// The artifact's `name` is not required to match the reference's name; the registry's
/// reference is what the agent serves it as.
#[derive(Debug, Clone, Copy, Default)]
pub struct ArtifactLoader;

impl ModelLoader<ModelArtifact> for ArtifactLoader {
    fn load(&self, reference: &str, location: Option<&str>) -> Result<ModelArtifact, LoadError> {
        let Some(location) = location else {
            return Err(LoadError::Unknown {
                reference: reference.to_owned(),
            });
        };
        let path = location.strip_prefix("file://").unwrap_or(location);
        ModelArtifact::load(Path::new(path)).map_err(|e| match e {
            ArtifactError::Io { source, .. } => LoadError::Io {
                reference: reference.to_owned(),
                location: location.to_owned(),
                source,
            },
            other => LoadError::Invalid {
                reference: reference.to_owned(),
                reason: format!("{location}: {other}"),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigmoid_is_stable_at_the_extremes() {
        assert_eq!(sigmoid(0.0), 0.5);
        assert_eq!(sigmoid(1000.0), 1.0);
        assert_eq!(sigmoid(-1000.0), 0.0);
        assert!(sigmoid(-745.0) > 0.0);
        let t = 3.7;
        assert!((sigmoid(t) + sigmoid(-t) - 1.0).abs() < 1e-15);
    }
}
