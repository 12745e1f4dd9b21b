#!/usr/bin/env bash
# `make run`: the embedded local stack. Airflow 3 standalone (SQLite, LocalExecutor), an MLflow
# tracking server and the prediction service, all on 127.0.0.1; seeds a first churn batch; prints
# the URLs and the login.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUN_DIR=${CT_RUN_DIR:-$ROOT/.run}
AIRFLOW_PORT=${CT_AIRFLOW_PORT:-8080}
MLFLOW_PORT=${CT_MLFLOW_PORT:-5000}
SERVING_PORT=${CT_SERVING_PORT:-8000}
BIN=$ROOT/.venv/bin
export PATH=$BIN:$PATH  # airflow standalone starts its components by name

export PYTHONPATH=$ROOT
export AIRFLOW_HOME=${AIRFLOW_HOME:-$RUN_DIR/airflow}
export AIRFLOW__CORE__DAGS_FOLDER=$ROOT/dags
export AIRFLOW__CORE__PLUGINS_FOLDER=$ROOT/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES=False
# An idle scheduler looks for work every 0.2 s (default 1 s): each task starts ~0.5 s sooner.
export AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME=${AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME:-0.2}
# DAGs start paused (Airflow's default): nothing trains until you trigger ct_churn, and the
# trigger form's "Unpause ct_churn on trigger" box (ticked by default) starts its schedule too.
export AIRFLOW__API__PORT=$AIRFLOW_PORT
export AIRFLOW__API__HOST=127.0.0.1
export AIRFLOW__API__BASE_URL=http://localhost:$AIRFLOW_PORT
export CT_DATA_DIR=${CT_DATA_DIR:-$ROOT/data}
export MLFLOW_TRACKING_URI=http://127.0.0.1:$MLFLOW_PORT
export CT_MLFLOW_UI_URL=${CT_MLFLOW_UI_URL:-http://localhost:$MLFLOW_PORT}
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false
# No usage data leaves the machine: MLflow's and GX's telemetry are off.
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true
export GX_ANALYTICS_ENABLED=false
mkdir -p "$RUN_DIR/mlflow" "$AIRFLOW_HOME" "$CT_DATA_DIR"

# The deploy task tells the prediction service to reload with this token; generated once per
# checkout (in .run/, git-ignored) unless you set CT_SERVING_RELOAD_TOKEN yourself.
if [ -z "${CT_SERVING_RELOAD_TOKEN:-}" ]; then
  if [ ! -s "$RUN_DIR/serving_token" ]; then
    (umask 077; "$BIN/python" -c 'import secrets; print(secrets.token_urlsafe(32))' >"$RUN_DIR/serving_token")
  fi
  CT_SERVING_RELOAD_TOKEN=$(cat "$RUN_DIR/serving_token")
fi
export CT_SERVING_RELOAD_TOKEN
export CT_SERVING_PORT=$SERVING_PORT
export CT_SERVING_URL=http://127.0.0.1:$SERVING_PORT
# The deploy task reads both from the ct_serving connection airflow_settings.yaml seeds.
"$BIN/python" -m tools.airflow_settings check "$ROOT/airflow_settings.yaml"  # fail before starting

pids=()
cleanup() {
  echo "Stopping the local stack..."
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

wait_http() {  # url seconds name
  for _ in $(seq 1 "$2"); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 1
  done
  echo "$3 did not come up at $1 within $2 s; see $RUN_DIR/*.log" >&2
  exit 1
}

echo "Starting MLflow on http://127.0.0.1:$MLFLOW_PORT (log: $RUN_DIR/mlflow.log)"
# MLflow's job runner (GenAI scorers, unused here) would add ~7 always-polling processes.
MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false "$BIN/mlflow" server --host 127.0.0.1 --port "$MLFLOW_PORT" --workers 1 \
  --backend-store-uri "sqlite:///$RUN_DIR/mlflow/mlflow.db" \
  --artifacts-destination "$RUN_DIR/mlflow/artifacts" >"$RUN_DIR/mlflow.log" 2>&1 &
pids+=($!)

if [ -z "$(find "$CT_DATA_DIR" -name 'day_*' -print -quit 2>/dev/null)" ]; then
  "$BIN/python" -m tools.datagen churn --rows 5000
fi

echo "Starting the prediction service on http://127.0.0.1:$SERVING_PORT (log: $RUN_DIR/serving.log)"
OMP_NUM_THREADS=1 "$BIN/python" -m include.ct_serving serve >"$RUN_DIR/serving.log" 2>&1 &
pids+=($!)

echo "Starting Airflow standalone on http://localhost:$AIRFLOW_PORT (log: $RUN_DIR/airflow.log)"
"$BIN/airflow" standalone >"$RUN_DIR/airflow.log" 2>&1 &
pids+=($!)

wait_http "http://127.0.0.1:$MLFLOW_PORT/health" 180 MLflow
wait_http "http://127.0.0.1:$AIRFLOW_PORT/api/v2/monitor/health" 300 Airflow
wait_http "http://127.0.0.1:$SERVING_PORT/health" 120 "The prediction service"
echo "Applying airflow_settings.yaml (connections, pools, variables)"
"$BIN/python" -m tools.airflow_settings apply "$ROOT/airflow_settings.yaml"
password=$("$BIN/python" - "$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated" <<'PY'
import json, sys, time
for _ in range(60):
    try:
        print(json.load(open(sys.argv[1]))["admin"]); break
    except (OSError, ValueError, KeyError):
        time.sleep(1)
PY
)
cat <<TXT

  Airflow UI   http://localhost:$AIRFLOW_PORT   login: admin / $password
  MLflow UI    http://localhost:$MLFLOW_PORT
  Predictions  http://localhost:$SERVING_PORT/docs   (serves churn once a champion exists)
  Landing zone $CT_DATA_DIR/landing/churn   (make data drops the next day's batch)

  Trigger DAG ct_churn in the Airflow UI (keep "Unpause ct_churn on trigger" ticked); its
  champion then appears under Models -> churn in the MLflow UI, and the deploy task puts it
  on the prediction service:
    curl -s localhost:$SERVING_PORT/v1/models/churn/predict -H 'Content-Type: application/json' \\
      -d '{"records": [{"tenure_months": 3, "plan": "basic", "contract": "month_to_month",
           "region": "north", "monthly_fee": 29.5, "support_calls": 4}]}'
  Ctrl-C stops everything.
TXT
# Run until Ctrl-C or until one of the services dies.
while kill -0 "${pids[@]}" 2>/dev/null; do sleep 2; done
echo "A service stopped; see $RUN_DIR/mlflow.log, $RUN_DIR/airflow.log and $RUN_DIR/serving.log" >&2
exit 1
