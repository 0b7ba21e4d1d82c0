#!/usr/bin/env python3
"""Train a scikit-learn model and write it as a modelgate artifact (schema_version 1).

    python train_sklearn.py --data data.csv --target label --out DIR [--kind logistic|linear]

Writes DIR/model.json (the artifact modelgate serves, evaluates and promotes) and
DIR/metrics.json (in-sample metrics). The CSV has a header, a time column in Unix ms
(--timestamp, default timestamp_ms) and numeric features; by default every other column
but the target is a feature. Needs numpy and scikit-learn.
"""
import argparse
import csv
import json
import os
import time

import numpy as np
import sklearn
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import accuracy_score, log_loss, mean_absolute_error, roc_auc_score
from sklearn.preprocessing import StandardScaler


def read_rows(path, timestamp, target, features, positive, binary):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if features is None:
            features = [c for c in reader.fieldnames if c not in (timestamp, target)]
        times, xs, ys = [], [], []
        for row in reader:
            try:
                x = [float(row[c]) for c in features]
                y = row[target].strip()
                y = float(y == positive) if binary else float(y)
                t = int(float(row[timestamp]))
            except (KeyError, ValueError, TypeError):
                continue  # a missing or unreadable value: the row is skipped
            if all(np.isfinite(x)) and np.isfinite(y):
                times.append(t), xs.append(x), ys.append(y)
    return features, np.array(times), np.array(xs), np.array(ys)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--kind", choices=["logistic", "linear"], default="logistic")
    p.add_argument("--features", help="comma-separated (default: all but time and target)")
    p.add_argument("--timestamp", default="timestamp_ms")
    p.add_argument("--positive", default="1", help="the label value that is class 1")
    p.add_argument("--positive-name", help="the positive label recorded in the artifact")
    p.add_argument("--name", default="model")
    p.add_argument("--predictions", help="also write the in-sample predictions, one per line")
    a = p.parse_args()

    binary = a.kind == "logistic"
    features = a.features.split(",") if a.features else None
    features, times, x, y = read_rows(a.data, a.timestamp, a.target, features, a.positive, binary)
    if len(y) == 0:
        raise SystemExit(f"{a.data}: no usable rows")

    scaler = StandardScaler().fit(x)  # a constant feature gets scale 1, as modelgate expects
    z = scaler.transform(x)
    if binary:
        model = LogisticRegression(C=1.0, max_iter=1000).fit(z, y)
        coefficients, intercept = model.coef_[0], model.intercept_[0]
        predictions = model.predict_proba(z)[:, 1]
        metrics = {
            "train_auc": roc_auc_score(y, predictions),
            "train_log_loss": log_loss(y, predictions),
            "train_accuracy": accuracy_score(y, predictions >= 0.5),
        }
        label = {"name": a.target, "positive": a.positive_name or a.positive, "kind": "binary"}
    else:
        model = LinearRegression().fit(z, y)
        coefficients, intercept = model.coef_, model.intercept_
        predictions = model.predict(z)
        metrics = {
            "train_rmse": float(np.sqrt(np.mean((predictions - y) ** 2))),
            "train_mae": mean_absolute_error(y, predictions),
        }
        label = {"name": a.target, "positive": None, "kind": "continuous"}

    artifact = {
        "schema_version": 1,
        "kind": "logistic_regression" if binary else "linear_regression",
        "name": a.name,
        "features": features,
        "scaler": {"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist()},
        "coefficients": [float(c) for c in coefficients],
        "intercept": float(intercept),
        "label": label,
        "training": {"from_ms": int(times.min()), "to_ms": int(times.max()), "rows": len(y)},
        "metrics": {k: float(v) for k, v in metrics.items()},
        "trained_by": f"scikit-learn {sklearn.__version__}",
        "created_ms": int(time.time() * 1000),
    }
    os.makedirs(a.out, exist_ok=True)
    for name, content in [("model.json", artifact), ("metrics.json", artifact["metrics"])]:
        tmp = os.path.join(a.out, name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(content, f, indent=2)
        os.replace(tmp, os.path.join(a.out, name))  # readers never see half a file
    if a.predictions:
        np.savetxt(a.predictions, predictions, fmt="%.17g")
    print(f"trained {artifact['kind']} on {len(y)} rows: {artifact['metrics']}")


if __name__ == "__main__":
    main()
