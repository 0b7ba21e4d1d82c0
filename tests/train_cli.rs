//! `modelgate train` (the one-shot trainer orchestrators call) and the scikit-learn example
//! trainer (`examples/airflow/train_sklearn.py`): both write artifacts that modelgate loads,
//! and the scikit-learn one predicts exactly what scikit-learn predicts.
#![cfg(feature = "sidecar")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::TempDir;
use modelgate::artifact::{LabelKind, ModelArtifact, ModelKind};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The first `rows` data rows of Elec2 (half-hour index `t`), as a file in `dir`.
fn elec2_head(dir: &Path, rows: usize) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("data/elec2.csv")).unwrap();
    let head: Vec<&str> = text.lines().take(rows + 1).collect();
    let path = dir.join("elec2-head.csv");
    std::fs::write(&path, head.join("\n") + "\n").unwrap();
    path
}

fn modelgate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(args)
        .output()
        .unwrap()
}

fn rows_of(path: &Path, features: &[&str]) -> Vec<Vec<f64>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let columns: Vec<usize> = features
        .iter()
        .map(|f| header.iter().position(|h| h == f).unwrap())
        .collect();
    lines
        .map(|l| {
            let fields: Vec<&str> = l.split(',').collect();
            columns
                .iter()
                .map(|&c| fields[c].parse().unwrap())
                .collect()
        })
        .collect()
}

#[test]
fn modelgate_train_writes_a_loadable_artifact_and_its_metrics() {
    let dir = TempDir::new("train-cli");
    let data = elec2_head(&dir.0, 3000);
    let out = dir.0.join("out");
    let out_s = out.to_str().unwrap();
    let done = modelgate(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--target",
        "label",
        "--timestamp",
        "t",
        "--out",
        out_s,
        "--features",
        "nswprice,nswdemand,vicprice,vicdemand,transfer",
        "--positive-name",
        "UP",
        "--name",
        "elec",
    ]);
    let stdout = String::from_utf8_lossy(&done.stdout);
    assert!(
        done.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(
        stdout.contains("trained logistic_regression on 3000 rows"),
        "{stdout}"
    );
    let artifact = ModelArtifact::load(&out.join("model.json")).unwrap();
    assert_eq!(artifact.kind, ModelKind::LogisticRegression);
    assert_eq!(artifact.name, "elec");
    assert_eq!(artifact.label.positive.as_deref(), Some("UP"));
    assert_eq!(artifact.training.rows, 3000);
    assert_eq!(
        (artifact.training.from_ms, artifact.training.to_ms),
        (0, 2999)
    );
    let metrics: std::collections::BTreeMap<String, f64> =
        serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics, artifact.metrics);
    let auc = metrics["train_auc"];
    assert!(auc > 0.75 && auc < 1.0, "in-sample AUC {auc}");
    assert!(
        !out.join(".modelgate-train").exists(),
        "the scratch directory is removed"
    );

    // Linear regression of a continuous column; features default to the other columns.
    let linear_out = dir.0.join("linear");
    let done = modelgate(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--target",
        "nswdemand",
        "--timestamp",
        "t",
        "--out",
        linear_out.to_str().unwrap(),
        "--kind",
        "linear",
    ]);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let linear = ModelArtifact::load(&linear_out.join("model.json")).unwrap();
    assert_eq!(linear.label.kind, LabelKind::Continuous);
    assert_eq!(
        linear.features,
        [
            "day",
            "day_of_week",
            "period",
            "nswprice",
            "vicprice",
            "vicdemand",
            "transfer",
            "label"
        ]
    );
    assert!(linear.metrics["train_rmse"] < 0.2);
}

#[test]
fn modelgate_train_says_what_is_wrong() {
    let dir = TempDir::new("train-cli-errors");
    let data = elec2_head(&dir.0, 200);
    let data_s = data.to_str().unwrap();
    let out = dir.0.join("out");
    let out_s = out.to_str().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (
            &["--target", "nope", "--timestamp", "t"],
            "no label column `nope`",
        ),
        (&["--target", "label"], "no time column `timestamp_ms`"),
        (
            &[
                "--target",
                "label",
                "--timestamp",
                "t",
                "--features",
                "nswprice,ghost",
            ],
            "ghost",
        ),
        (&["--target", "nswprice", "--timestamp", "t"], "not binary"),
    ];
    for (args, expected) in cases {
        let mut all = vec!["train", "--data", data_s, "--out", out_s];
        all.extend_from_slice(args);
        let done = modelgate(&all);
        let stderr = String::from_utf8_lossy(&done.stderr);
        assert_eq!(done.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!out.join("model.json").exists(), "{args:?} wrote a model");
    }
    let missing = modelgate(&[
        "train",
        "--data",
        "/nonexistent/x.csv",
        "--target",
        "y",
        "--out",
        out_s,
    ]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/x.csv"));
}

/// The scikit-learn example writes an artifact modelgate accepts, and modelgate's
/// predictions from it equal scikit-learn's own (`predict_proba`, `predict`) to 1e-9.
#[test]
fn the_sklearn_example_writes_artifacts_modelgate_serves_identically() {
    let dir = TempDir::new("train-sklearn");
    let data = elec2_head(&dir.0, 2000);
    let script = repo().join("examples/airflow/train_sklearn.py");
    let features = ["nswprice", "nswdemand", "vicprice", "vicdemand", "transfer"];
    for (kind, target) in [("logistic", "label"), ("linear", "nswdemand")] {
        let out = dir.0.join(kind);
        let predictions = dir.0.join(format!("{kind}-predictions.txt"));
        let feature_list: Vec<&str> = features.iter().copied().filter(|f| *f != target).collect();
        let done = Command::new(common::oracle_python())
            .arg(&script)
            .args(["--data", data.to_str().unwrap(), "--target", target])
            .args(["--timestamp", "t", "--kind", kind, "--name", "elec"])
            .args(["--features", &feature_list.join(",")])
            .args(["--out", out.to_str().unwrap()])
            .args(["--predictions", predictions.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            done.status.success(),
            "{}",
            String::from_utf8_lossy(&done.stderr)
        );
        let artifact = ModelArtifact::load(&out.join("model.json")).unwrap();
        assert!(
            artifact.trained_by.starts_with("scikit-learn "),
            "{}",
            artifact.trained_by
        );
        assert_eq!(artifact.features, feature_list);
        let expected: Vec<f64> = std::fs::read_to_string(&predictions)
            .unwrap()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
        let rows = rows_of(&data, &feature_list);
        assert_eq!(rows.len(), expected.len());
        let worst = rows
            .iter()
            .zip(&expected)
            .map(|(row, e)| (artifact.predict(row).unwrap() - e).abs())
            .fold(0.0, f64::max);
        assert!(
            worst < 1e-9,
            "{kind}: largest difference from scikit-learn {worst:e}"
        );
    }
}
