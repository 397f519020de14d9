#!/bin/sh
# JupyterLab on the repository (research.ipynb), with the project's virtual environment as kernel.
#
# Usage: sh dev_scripts/run_jupyter_server.sh [--dry-run] [more `jupyter lab` options]
#   --dry-run  print the command instead of starting the server
#
# Variables (from the environment, then .env; the environment wins, as in recsys.config):
#   RECSYS_JUPYTER_HOST / _PORT  address, default 127.0.0.1:8888 (fails if the port is taken)
#   JUPYTER_TOKEN                login token; Jupyter makes one up and prints it when unset
#   RECSYS_ENV_FILE              the .env file to read, default <repo>/.env
# The notebook reads the RECSYS_* settings itself (environment and .env) when it runs.
set -eu

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=dev_scripts/common.sh
. "$ROOT/dev_scripts/common.sh"
load_env_file "${RECSYS_ENV_FILE:-$ROOT/.env}"
cd "$ROOT"

VENV="${RECSYS_VENV:-$ROOT/.venv}"
[ -x "$VENV/bin/jupyter" ] || {
    echo "error: $VENV/bin/jupyter not found: create the environment first (make venv)" >&2
    exit 1
}
HOST="${RECSYS_JUPYTER_HOST:-127.0.0.1}"
PORT="${RECSYS_JUPYTER_PORT:-8888}"
# The venv's kernel spec comes first, so "Python 3" is this venv's python even when the user
# has another python3 kernel installed; BLAS threads stay at one, as implicit's ALS wants.
export JUPYTER_PATH="$VENV/share/jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}"
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"

# The command is built in the positional parameters (POSIX sh has no arrays): first the
# caller's options without --dry-run, then what comes before them.
dry_run=false
for arg do
    shift
    if [ "$arg" = --dry-run ]; then dry_run=true; else set -- "$@" "$arg"; fi
done
if [ "$(id -u)" -eq 0 ]; then
    set -- --allow-root "$@" # containers and CI run as root; Jupyter refuses that unless told
fi
set -- "$VENV/bin/jupyter" lab \
    --no-browser --ip "$HOST" --port "$PORT" --ServerApp.port_retries=0 \
    --ServerApp.root_dir="$ROOT" "$@"
echo "JupyterLab: http://$HOST:$PORT/lab/tree/research.ipynb (log in with the token Jupyter prints below)"
if [ "$dry_run" = true ]; then
    shell_quote "$@"
    exit 0
fi
exec "$@"
