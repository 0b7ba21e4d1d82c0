#!/usr/bin/env bash
# A throwaway local Apache Airflow 3 (SQLite, LocalExecutor, simple auth manager) on
# 127.0.0.1 for the Airflow trainer's integration tests (tests/airflow.rs).
#
#   bash scripts/airflow.sh install   # venv with apache-airflow + scikit-learn (once)
#   bash scripts/airflow.sh start     # migrate, start api-server, scheduler, dag-processor,
#                                     # wait until healthy and the DAG is parsed
#   bash scripts/airflow.sh env       # the variables tests/airflow.rs reads
#   bash scripts/airflow.sh stop
#
# Environment: AF_DIR (default target/airflow), AF_VENV (default $AF_DIR/venv),
# AF_PORT (default 18080). The DAG is examples/airflow/modelgate_retrain.py.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
AF_DIR=${AF_DIR:-$REPO/target/airflow}
AF_VENV=${AF_VENV:-$AF_DIR/venv}
AF_PORT=${AF_PORT:-18080}
AF_USER=modelgate-ci
AF_PASSWORD=ci-only-password
export AIRFLOW_HOME=$AF_DIR/home
export AIRFLOW__CORE__DAGS_FOLDER=$AIRFLOW_HOME/dags
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
export AIRFLOW__CORE__PARALLELISM=2
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:///$AIRFLOW_HOME/airflow.db"
export AIRFLOW__API__HOST=127.0.0.1
export AIRFLOW__API__PORT=$AF_PORT
export AIRFLOW__API__BASE_URL="http://127.0.0.1:$AF_PORT"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:$AF_PORT/execution/"
export AIRFLOW__CORE__AUTH_MANAGER=airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=$AF_USER:admin
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="$AIRFLOW_HOME/passwords.json"
export AIRFLOW__API_AUTH__JWT_SECRET=ci-only-not-a-secret-0123456789abcdef0123456789abcdef0123456789abcdef
export AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL=5
AF=$AF_VENV/bin/airflow
BASE=http://127.0.0.1:$AF_PORT
COMPONENTS="api-server scheduler dag-processor"

install() {
  local stamp=$AF_VENV/.modelgate-requirements
  if [ -x "$AF" ] && cmp -s scripts/airflow-requirements.txt "$stamp"; then return; fi
  echo "airflow: installing Apache Airflow into $AF_VENV"
  python3 -m venv "$AF_VENV"
  "$AF_VENV/bin/pip" install -q --disable-pip-version-check --upgrade pip
  "$AF_VENV/bin/pip" install -q --disable-pip-version-check -r scripts/airflow-requirements.txt
  cp scripts/airflow-requirements.txt "$stamp"
}

start() {
  install
  stop >/dev/null 2>&1 || true
  mkdir -p "$AIRFLOW_HOME/dags" "$AF_DIR/run"
  cp examples/airflow/modelgate_retrain.py examples/airflow/train_sklearn.py "$AIRFLOW_HOME/dags/"
  printf '{"%s": "%s"}\n' "$AF_USER" "$AF_PASSWORD" > "$AIRFLOW_HOME/passwords.json"
  "$AF" db migrate > "$AF_DIR/run/migrate.log" 2>&1 || { tail -30 "$AF_DIR/run/migrate.log"; exit 1; }
  for c in $COMPONENTS; do
    extra=""; [ "$c" = scheduler ] && extra=--skip-serve-logs   # serve-logs binds 0.0.0.0
    setsid "$AF" $c $extra > "$AF_DIR/run/$c.log" 2>&1 < /dev/null &
    echo $! > "$AF_DIR/run/$c.pid"
  done
  local health="" dag=""
  for _ in $(seq 1 120); do
    health=$(curl -sf --max-time 2 "$BASE/api/v2/monitor/health" || true)
    case $health in *'"scheduler":{"status":"healthy"'*'"dag_processor":{"status":"healthy"'*) break;; esac
    for c in $COMPONENTS; do
      kill -0 "$(cat "$AF_DIR/run/$c.pid")" 2>/dev/null || { echo "airflow: $c died"; tail -40 "$AF_DIR/run/$c.log"; stop; exit 1; }
    done
    sleep 1
  done
  case $health in *'"dag_processor":{"status":"healthy"'*) ;; *) echo "airflow: not healthy in 120 s: $health"; stop; exit 1;; esac
  local token
  token=$(curl -sf -X POST "$BASE/auth/token" -H 'Content-Type: application/json' \
    -d "{\"username\":\"$AF_USER\",\"password\":\"$AF_PASSWORD\"}" | "$AF_VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  for _ in $(seq 1 90); do
    dag=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$BASE/api/v2/dags/modelgate_retrain" || true)
    [ "$dag" = 200 ] && break
    sleep 1
  done
  [ "$dag" = 200 ] || { echo "airflow: DAG modelgate_retrain not parsed in 90 s"; tail -40 "$AF_DIR/run/dag-processor.log"; stop; exit 1; }
  echo "airflow: healthy at $BASE with DAG modelgate_retrain"
}

env() {
  echo "export MODELGATE_AIRFLOW_URL=$BASE MODELGATE_AIRFLOW_USER=$AF_USER MODELGATE_AIRFLOW_PASSWORD=$AF_PASSWORD MODELGATE_AIRFLOW_PYTHON=$AF_VENV/bin/python"
}

logs() {
  for c in $COMPONENTS; do echo "== $c"; tail -40 "$AF_DIR/run/$c.log" 2>/dev/null || true; done
}

stop() {
  for c in $COMPONENTS; do
    f=$AF_DIR/run/$c.pid; [ -f "$f" ] && kill -TERM -- "-$(cat "$f")" 2>/dev/null || true
  done
  for _ in $(seq 1 30); do
    alive=0
    for c in $COMPONENTS; do
      f=$AF_DIR/run/$c.pid; [ -f "$f" ] && kill -0 -- "-$(cat "$f")" 2>/dev/null && alive=1
    done
    [ $alive = 0 ] && break; sleep 1
  done
  for c in $COMPONENTS; do
    f=$AF_DIR/run/$c.pid; [ -f "$f" ] && { kill -KILL -- "-$(cat "$f")" 2>/dev/null || true; rm -f "$f"; }
  done
}

"${1:?usage: airflow.sh install|start|env|logs|stop}"
