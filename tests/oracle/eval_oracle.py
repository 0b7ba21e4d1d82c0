"""Oracle for tests/train_eval.rs: holdout metrics from their definitions, in NumPy and SciPy.

Reads one JSON case per line on stdin, writes one JSON answer per line on stdout.
Cases:
  {"kind": "binary", "labels": [0/1, ...], "probabilities": [...]}
      -> accuracy (p >= 0.5 predicts 1), auc (Mann-Whitney U / (n1 * n0) from
         scipy.stats.mannwhitneyu, ties count 1/2; null with one class), log_loss (p clipped to
         [1e-15, 1 - 1e-15]), f1 (class 1; null when 2TP + FP + FN = 0)
  {"kind": "continuous", "targets": [...], "predictions": [...]}
      -> rmse, mae
"""
import json
import sys

import numpy as np
from scipy import stats

EPS = 1e-15


def binary(labels, probabilities):
    y = np.asarray(labels, dtype=float)
    p = np.asarray(probabilities, dtype=float)
    predicted = p >= 0.5
    positive = y == 1.0
    accuracy = float(np.mean(predicted == positive))
    n1 = int(positive.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        auc = None
    else:
        u = stats.mannwhitneyu(p[positive], p[~positive], alternative="two-sided", method="asymptotic").statistic
        auc = float(u) / (n1 * n0)
    q = np.clip(p, EPS, 1 - EPS)
    log_loss = float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))
    tp = int(np.sum(predicted & positive))
    fp = int(np.sum(predicted & ~positive))
    fn = int(np.sum(~predicted & positive))
    f1 = None if 2 * tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)
    return {"accuracy": accuracy, "auc": auc, "log_loss": log_loss, "f1": f1}


def continuous(targets, predictions):
    e = np.asarray(targets, dtype=float) - np.asarray(predictions, dtype=float)
    return {"rmse": float(np.sqrt(np.mean(e**2))), "mae": float(np.mean(np.abs(e)))}


def answer(case):
    if case["kind"] == "binary":
        return binary(case["labels"], case["probabilities"])
    return continuous(case["targets"], case["predictions"])


for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    print(json.dumps(answer(json.loads(line))), flush=True)
