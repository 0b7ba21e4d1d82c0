"""modelgate's retraining DAG for Apache Airflow 3.

The modelgate sidecar triggers one run per training attempt (POST /api/v2/dags/
modelgate_retrain/dagRuns) with a conf that says where the training rows are and where the
model goes:

    {"data": "/shared/modelgate/<run_key>/data.csv", "out": "/shared/modelgate/<run_key>",
     "model": "elec", "features": [...], "label": "label", "label_kind": "binary",
     "positive": "1", "timestamp_column": "timestamp_ms", "run_key": "...", "run_id": 7}

The task trains on conf["data"] and writes conf["out"]/model.json and metrics.json, with
either modelgate's own one-shot trainer (`modelgate train`, linfa) or the scikit-learn
script next to this file, chosen by the `trainer` param (a conf key of the same name
overrides it). Optional conf keys: `modelgate_bin` (default: `modelgate` on PATH),
`python` (default: this worker's Python), `sklearn_script` (default: train_sklearn.py in
this folder). Install: copy this file (and train_sklearn.py) into Airflow's DAGs folder.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pendulum
from airflow.sdk import DAG, Param, get_current_context, task

HERE = os.path.dirname(os.path.abspath(__file__))


def training_command(conf: dict, trainer: str) -> list[str]:
    """The command line that trains on conf["data"] into conf["out"]."""
    kind = "logistic" if conf.get("label_kind", "binary") == "binary" else "linear"
    common = [
        "--data", conf["data"],
        "--target", conf["label"],
        "--out", conf["out"],
        "--kind", kind,
        "--timestamp", conf.get("timestamp_column", "timestamp_ms"),
        "--name", conf.get("model", "model"),
    ]
    if conf.get("features"):
        common += ["--features", ",".join(conf["features"])]
    if kind == "logistic":
        # The data file writes 1 for the positive value; the artifact records its name.
        common += ["--positive", "1", "--positive-name", str(conf.get("positive") or "1")]
    if trainer == "modelgate":
        return [conf.get("modelgate_bin") or "modelgate", "train", *common]
    if trainer == "sklearn":
        script = conf.get("sklearn_script") or os.path.join(HERE, "train_sklearn.py")
        return [conf.get("python") or sys.executable, script, *common]
    raise ValueError(f"unknown trainer {trainer!r}: use 'modelgate' or 'sklearn'")


with DAG(
    dag_id="modelgate_retrain",
    schedule=None,  # runs only when the sidecar triggers it
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    is_paused_upon_creation=False,
    max_active_runs=4,
    params={"trainer": Param("modelgate", type="string", enum=["modelgate", "sklearn"])},
    default_args={"retries": 0},  # the sidecar retries whole attempts itself
    tags=["modelgate"],
) as dag:

    @task
    def train() -> str:
        context = get_current_context()
        conf = dict(context["dag_run"].conf or {})
        missing = [k for k in ("data", "out", "label") if not conf.get(k)]
        if missing:
            raise ValueError(f"the run's conf lacks {missing}: trigger it from the modelgate sidecar")
        argv = training_command(conf, context["params"]["trainer"])
        print("running:", " ".join(argv), flush=True)
        done = subprocess.run(argv, capture_output=True, text=True)
        print(done.stdout, flush=True)
        print(done.stderr, file=sys.stderr, flush=True)
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-10:])
            raise RuntimeError(f"training failed with exit code {done.returncode}: {tail}")
        return os.path.join(conf["out"], "model.json")

    train()
