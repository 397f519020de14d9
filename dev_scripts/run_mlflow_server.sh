#!/bin/sh
# The MLflow tracking server (UI and REST API) for the experiments of research.ipynb.
#
# Usage: sh dev_scripts/run_mlflow_server.sh [--dry-run] [more `mlflow server` options]
#   --dry-run  print the settings and the command instead of starting the server
#
# Variables (from the environment, then .env; the environment wins, as in recsys.config):
#   RECSYS_MLFLOW_BACKEND_STORE_URI  runs and metrics; default: the SQLite file the notebook writes,
#                                    sqlite:///<RECSYS_DATA_DIR>/mlflow.sqlite3 (PostgreSQL when set to
#                                    postgresql+psycopg2://user:pw@host:5432/mlflow)
#   RECSYS_OBJECT_STORE_URL          s3://bucket/prefix: artifacts go to s3://bucket/prefix/mlflow-artifacts,
#                                    with RECSYS_S3_ENDPOINT_URL, RECSYS_S3_ACCESS_KEY_ID,
#                                    RECSYS_S3_SECRET_ACCESS_KEY and RECSYS_S3_REGION; otherwise they go
#                                    to <RECSYS_DATA_DIR>/mlartifacts (RECSYS_MLFLOW_ARTIFACTS_DESTINATION
#                                    overrides both)
#   RECSYS_DATA_DIR                  data folder, default data/ (relative to the repository root)
#   RECSYS_MLFLOW_HOST / _PORT       address, default 127.0.0.1:5000
#   RECSYS_MLFLOW_WORKERS            server processes, default 1
#   RECSYS_ENV_FILE                  the .env file to read, default <repo>/.env
# The notebook logs into the same store directly (settings.experiments_uri); to log through this
# server instead, set RECSYS_MLFLOW_TRACKING_URI=http://127.0.0.1:5000.
set -eu

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
# shellcheck source=dev_scripts/common.sh
. "$ROOT/dev_scripts/common.sh"
load_env_file "${RECSYS_ENV_FILE:-$ROOT/.env}"

dry_run=false
if [ "${1:-}" = --dry-run ]; then
    dry_run=true
    shift
fi

MLFLOW="${RECSYS_VENV:-$ROOT/.venv}/bin/mlflow"
if [ ! -x "$MLFLOW" ]; then
    echo "error: $MLFLOW not found: create the environment first (make venv)" >&2
    exit 1
fi

DATA_DIR="${RECSYS_DATA_DIR:-data}"
case "$DATA_DIR" in
    /*) ;;
    *) DATA_DIR="$ROOT/${DATA_DIR#./}" ;;
esac
HOST="${RECSYS_MLFLOW_HOST:-127.0.0.1}"
PORT="${RECSYS_MLFLOW_PORT:-5000}"
BACKEND="${RECSYS_MLFLOW_BACKEND_STORE_URI:-sqlite:///$DATA_DIR/mlflow.sqlite3}"

STORE_URL="${RECSYS_OBJECT_STORE_URL:-}"
if [ -n "${RECSYS_MLFLOW_ARTIFACTS_DESTINATION:-}" ]; then
    ARTIFACTS="$RECSYS_MLFLOW_ARTIFACTS_DESTINATION"
else
    case "$STORE_URL" in
        s3://*)
            ARTIFACTS="${STORE_URL%/}/mlflow-artifacts"
            if [ -n "${RECSYS_S3_ENDPOINT_URL:-}" ]; then
                export MLFLOW_S3_ENDPOINT_URL="$RECSYS_S3_ENDPOINT_URL"
                # MinIO and most S3-compatible servers need path-style addressing (as recsys.storage uses).
                export MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE="${MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE:-path}"
            fi
            if [ -n "${RECSYS_S3_ACCESS_KEY_ID:-}" ]; then
                export AWS_ACCESS_KEY_ID="$RECSYS_S3_ACCESS_KEY_ID"
                export AWS_SECRET_ACCESS_KEY="${RECSYS_S3_SECRET_ACCESS_KEY:-}"
            fi
            export AWS_DEFAULT_REGION="${RECSYS_S3_REGION:-us-east-1}"
            ;;
        *) ARTIFACTS="$DATA_DIR/mlartifacts" ;;
    esac
fi
# MLflow's job runner serves GenAI evaluation jobs with several worker processes; tracking needs none.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"

# The command, in the positional parameters (POSIX sh has no arrays), the caller's options last.
set -- "$MLFLOW" server \
    --backend-store-uri "$BACKEND" \
    --serve-artifacts --artifacts-destination "$ARTIFACTS" \
    --host "$HOST" --port "$PORT" \
    --workers "${RECSYS_MLFLOW_WORKERS:-1}" \
    "$@"
# Passwords in the backend URL are not printed.
hide_passwords() {
    sed -E 's#(://[^:/@]+):[^@ ]*@#\1:***@#'
}
shown_backend="$(printf '%s\n' "$BACKEND" | hide_passwords)"
echo "MLflow UI: http://$HOST:$PORT"
echo "  backend store: $shown_backend"
echo "  artifacts:     $ARTIFACTS${MLFLOW_S3_ENDPOINT_URL:+ (endpoint $MLFLOW_S3_ENDPOINT_URL)}"
if [ "$dry_run" = true ]; then
    shell_quote "$@" | hide_passwords
    exit 0
fi
mkdir -p "$DATA_DIR" # the SQLite file's folder; a local artifacts folder is made by MLflow
exec "$@"
