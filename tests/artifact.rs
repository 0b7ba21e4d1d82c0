//! The model artifact format: round trips, every validation error, predictions against a
//! hand computation, and the `ModelLoader` implementation.

use std::path::PathBuf;

use modelgate::artifact::{
    ArtifactError, ArtifactLoader, DataRange, LabelKind, LabelSpec, ModelArtifact, ModelKind,
    SCHEMA_VERSION, Scaler, sigmoid,
};
use modelgate::model::{LoadError, ModelLoader};
use serde_json::{Value, json};

fn logistic() -> ModelArtifact {
    ModelArtifact {
        schema_version: SCHEMA_VERSION,
        kind: ModelKind::LogisticRegression,
        name: "churn".into(),
        features: vec!["tenure".into(), "sessions".into(), "spend".into()],
        scaler: Scaler {
            mean: vec![100.0, 4.0, 20.0],
            scale: vec![50.0, 2.0, 10.0],
        },
        coefficients: vec![-0.5, 1.25, 0.75],
        intercept: -0.2,
        label: LabelSpec {
            name: "churned".into(),
            positive: Some("1".into()),
            kind: LabelKind::Binary,
        },
        training: DataRange {
            from_ms: 1_000,
            to_ms: 2_000,
            rows: 500,
        },
        metrics: [("auc".to_owned(), 0.8)].into_iter().collect(),
        trained_by: "hand 1.0".into(),
        created_ms: 3_000,
    }
}

fn linear() -> ModelArtifact {
    ModelArtifact {
        kind: ModelKind::LinearRegression,
        label: LabelSpec {
            name: "spend_next".into(),
            positive: None,
            kind: LabelKind::Continuous,
        },
        ..logistic()
    }
}

/// The JSON of `logistic()` with `edit` applied, parsed.
fn parse_edited(edit: impl FnOnce(&mut Value)) -> Result<ModelArtifact, ArtifactError> {
    let mut value: Value =
        serde_json::from_str(&logistic().to_json_pretty().expect("valid")).expect("json");
    edit(&mut value);
    ModelArtifact::from_json(value.to_string().as_bytes())
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "modelgate-artifact-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn round_trips_through_json_and_files() {
    for model in [logistic(), linear()] {
        let text = model.to_json_pretty().expect("valid");
        assert_eq!(
            ModelArtifact::from_json(text.as_bytes()).expect("parses"),
            model
        );
        let dir = TempDir::new(model.kind.as_str());
        let path = dir.0.join("m.json");
        std::fs::write(&path, &text).expect("write");
        assert_eq!(ModelArtifact::load(&path).expect("loads"), model);
    }
    // Field names and enum spellings are the documented ones.
    let value: Value = serde_json::from_str(&logistic().to_json_pretty().unwrap()).unwrap();
    assert_eq!(value["schema_version"], 1);
    assert_eq!(value["kind"], "logistic_regression");
    assert_eq!(value["label"]["kind"], "binary");
    assert_eq!(value["training"]["rows"], 500);
    let value: Value = serde_json::from_str(&linear().to_json_pretty().unwrap()).unwrap();
    assert_eq!(value["kind"], "linear_regression");
    assert_eq!(value["label"]["positive"], Value::Null);
    // `metrics` may be left out.
    let m = parse_edited(|v| {
        v.as_object_mut().unwrap().remove("metrics");
    })
    .expect("metrics are optional");
    assert!(m.metrics.is_empty());
}

#[test]
fn each_validation_error_names_its_field() {
    let err = parse_edited(|v| v["schema_version"] = json!(2)).unwrap_err();
    assert!(
        matches!(&err, ArtifactError::UnsupportedSchema { found } if found == "2"),
        "{err}"
    );
    assert!(err.to_string().contains("schema_version"));
    let err = parse_edited(|v| {
        v.as_object_mut().unwrap().remove("schema_version");
    })
    .unwrap_err();
    assert!(
        matches!(err, ArtifactError::UnsupportedSchema { .. }),
        "{err}"
    );
    // A newer schema with fields this reader does not know still says "unsupported schema".
    let err = parse_edited(|v| {
        v["schema_version"] = json!(2);
        v["kind"] = json!("gradient_boosting");
        v["trees"] = json!([]);
    })
    .unwrap_err();
    assert!(
        matches!(err, ArtifactError::UnsupportedSchema { .. }),
        "{err}"
    );

    let err = parse_edited(|v| v["kind"] = json!("random_forest")).unwrap_err();
    assert!(
        matches!(&err, ArtifactError::UnknownKind { field: "kind", value, .. } if value == "\"random_forest\""),
        "{err}"
    );
    let err = parse_edited(|v| v["label"]["kind"] = json!("multiclass")).unwrap_err();
    assert!(
        matches!(
            err,
            ArtifactError::UnknownKind {
                field: "label.kind",
                ..
            }
        ),
        "{err}"
    );

    let err = parse_edited(|v| v["coefficients"] = json!([1.0, 2.0])).unwrap_err();
    assert!(
        matches!(
            err,
            ArtifactError::LengthMismatch {
                field: "coefficients",
                expected: 3,
                found: 2
            }
        ),
        "{err}"
    );
    let err = parse_edited(|v| v["scaler"]["mean"] = json!([1.0])).unwrap_err();
    assert!(
        matches!(
            err,
            ArtifactError::LengthMismatch {
                field: "scaler.mean",
                ..
            }
        ),
        "{err}"
    );

    // JSON cannot hold NaN: a NaN coefficient is caught by `validate` (and so never written).
    let mut nan = logistic();
    nan.coefficients[1] = f64::NAN;
    let err = nan.validate().unwrap_err();
    assert!(
        matches!(&err, ArtifactError::NonFinite { field } if field == "coefficients[1]"),
        "{err}"
    );
    assert!(nan.to_json_pretty().is_err());
    let mut inf = logistic();
    inf.intercept = f64::INFINITY;
    assert!(
        matches!(inf.validate(), Err(ArtifactError::NonFinite { field }) if field == "intercept")
    );
    // A non-number where a number belongs does not parse.
    let err = parse_edited(|v| v["coefficients"][1] = json!("NaN")).unwrap_err();
    assert!(matches!(err, ArtifactError::Parse { .. }), "{err}");

    let err = parse_edited(|v| v["scaler"]["scale"][2] = json!(0.0)).unwrap_err();
    assert!(
        matches!(&err, ArtifactError::NonPositiveScale { index: 2, feature, value } if feature == "spend" && *value == 0.0),
        "{err}"
    );
    let err = parse_edited(|v| v["scaler"]["scale"][0] = json!(-1.0)).unwrap_err();
    assert!(
        matches!(err, ArtifactError::NonPositiveScale { index: 0, .. }),
        "{err}"
    );

    let err = parse_edited(|v| v["features"][2] = json!("tenure")).unwrap_err();
    assert!(
        matches!(&err, ArtifactError::DuplicateFeature { name } if name == "tenure"),
        "{err}"
    );
    let err = parse_edited(|v| v["features"][1] = json!("")).unwrap_err();
    assert!(
        matches!(&err, ArtifactError::Empty { field } if field == "features[1]"),
        "{err}"
    );
    let err = parse_edited(|v| v["name"] = json!(" ")).unwrap_err();
    assert!(
        matches!(&err, ArtifactError::Empty { field } if field == "name"),
        "{err}"
    );
    let err = parse_edited(|v| v["features"] = json!([])).unwrap_err();
    assert!(matches!(err, ArtifactError::Empty { .. }), "{err}");

    // Kinds must agree, and `positive` is set exactly for binary labels.
    let err = parse_edited(|v| v["label"]["kind"] = json!("continuous")).unwrap_err();
    assert!(
        matches!(
            err,
            ArtifactError::Inconsistent {
                field: "label.kind",
                ..
            }
        ),
        "{err}"
    );
    let err = parse_edited(|v| v["label"]["positive"] = json!(null)).unwrap_err();
    assert!(
        matches!(
            err,
            ArtifactError::Inconsistent {
                field: "label.positive",
                ..
            }
        ),
        "{err}"
    );
    let err = parse_edited(|v| v["label"]["name"] = json!("sessions")).unwrap_err();
    assert!(
        matches!(
            err,
            ArtifactError::Inconsistent {
                field: "label.name",
                ..
            }
        ),
        "{err}"
    );
    let err = parse_edited(|v| v["training"]["from_ms"] = json!(5_000)).unwrap_err();
    assert!(
        matches!(
            err,
            ArtifactError::Inconsistent {
                field: "training",
                ..
            }
        ),
        "{err}"
    );

    // Unknown or missing fields, and non-objects, are parse errors.
    let err = parse_edited(|v| v["coeficients"] = json!([1, 2, 3])).unwrap_err();
    assert!(
        matches!(&err, ArtifactError::Parse { reason } if reason.contains("coeficients")),
        "{err}"
    );
    let err = parse_edited(|v| {
        v.as_object_mut().unwrap().remove("intercept");
    })
    .unwrap_err();
    assert!(
        matches!(&err, ArtifactError::Parse { reason } if reason.contains("intercept")),
        "{err}"
    );
    assert!(matches!(
        ModelArtifact::from_json(b"[1]"),
        Err(ArtifactError::Parse { .. })
    ));
    assert!(matches!(
        ModelArtifact::from_json(b"{"),
        Err(ArtifactError::Parse { .. })
    ));
}

#[test]
fn predicts_a_hand_computed_case() {
    let model = logistic();
    // z = ((130 − 100)/50, (7 − 4)/2, (15 − 20)/10) = (0.6, 1.5, −0.5)
    // score = −0.2 − 0.5·0.6 + 1.25·1.5 + 0.75·(−0.5) = −0.2 − 0.3 + 1.875 − 0.375 = 1.0
    let p = model.predict(&[130.0, 7.0, 15.0]).expect("valid row");
    let want = 1.0 / (1.0 + (-1.0f64).exp()); // 0.7310585786300049
    assert!((p - want).abs() < 1e-15, "{p} vs {want}");
    assert!((p - 0.731_058_578_630_004_9).abs() < 1e-15);
    assert_eq!(model.predict_unchecked(&[130.0, 7.0, 15.0]), p);
    // The linear model returns the score itself.
    let y = linear().predict(&[130.0, 7.0, 15.0]).expect("valid row");
    assert!((y - 1.0).abs() < 1e-15, "{y}");
    // Far outside the training range the probability saturates without overflow.
    assert_eq!(model.predict(&[-1e300, 4.0, 20.0]).unwrap(), 1.0);
    assert_eq!(model.predict(&[1e300, 4.0, 20.0]).unwrap(), 0.0);
    assert_eq!(sigmoid(-800.0), 0.0);
    // A linear prediction that overflows is an error, not infinity.
    let mut steep = linear();
    steep.scaler.scale[0] = 1e-3;
    assert!(matches!(
        steep.predict(&[1e306, 4.0, 20.0]),
        Err(ArtifactError::NonFiniteOutput { .. })
    ));
}

#[test]
fn rejects_bad_rows() {
    let model = logistic();
    let err = model.predict(&[1.0, 2.0]).unwrap_err();
    assert!(
        matches!(
            err,
            ArtifactError::WrongRowLength {
                expected: 3,
                found: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(matches!(
        model.predict(&[1.0, 2.0, 3.0, 4.0]),
        Err(ArtifactError::WrongRowLength { found: 4, .. })
    ));
    let err = model.predict(&[1.0, f64::NAN, 3.0]).unwrap_err();
    assert!(
        matches!(&err, ArtifactError::NonFiniteInput { index: 1, feature, .. } if feature == "sessions"),
        "{err}"
    );
    assert!(model.predict(&[f64::INFINITY, 1.0, 3.0]).is_err());
    // An artifact built by hand with inconsistent lengths does not panic either.
    let mut broken = logistic();
    broken.coefficients.pop();
    assert!(broken.predict(&[1.0, 2.0, 3.0]).is_err());
    let _ = broken.predict_unchecked(&[1.0]);
}

#[test]
fn loads_through_the_model_loader_trait() {
    let dir = TempDir::new("loader");
    let good = dir.0.join("good.json");
    std::fs::write(&good, logistic().to_json_pretty().unwrap()).unwrap();
    let loader: &dyn ModelLoader<ModelArtifact> = &ArtifactLoader;
    let model = loader
        .load("churn@3", Some(good.to_str().unwrap()))
        .expect("loads");
    assert_eq!(model, logistic());

    assert!(matches!(
        loader.load("churn@3", None),
        Err(LoadError::Unknown { .. })
    ));
    let missing = dir.0.join("missing.json");
    assert!(matches!(
        loader.load("churn@3", Some(missing.to_str().unwrap())),
        Err(LoadError::Io { .. })
    ));
    let bad = dir.0.join("bad.json");
    std::fs::write(&bad, br#"{"schema_version": 7}"#).unwrap();
    let err = loader
        .load("churn@3", Some(bad.to_str().unwrap()))
        .unwrap_err();
    assert!(matches!(err, LoadError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("schema_version"), "{err}");
}
