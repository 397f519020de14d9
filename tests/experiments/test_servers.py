"""The dev scripts that start the MLflow and Jupyter servers: settings, and real servers on free ports.

Every script runs as the README says, ``sh dev_scripts/<script>.sh`` from the repository root
(``sh`` is dash on Debian, so the scripts must be POSIX sh). Each live test starts its script in
a new process group, waits a bounded time for the server to answer, talks to it and stops the
whole group (the script ``exec``s the server, which has worker processes of its own).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from mlflow import MlflowClient

from recsys.config import Settings
from recsys.evaluation.offline import TimeSplit
from recsys.experiments import modelling, tracking
from recsys.models.dataset import InteractionData
from recsys.models.popular import PopularModel
from tests.s3_server import _free_port, s3_client

ROOT = Path(__file__).resolve().parents[2]
# The README's commands, run from the repository root.
MLFLOW_COMMAND = ["sh", "dev_scripts/run_mlflow_server.sh"]
JUPYTER_COMMAND = ["sh", "dev_scripts/run_jupyter_server.sh"]
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
TOKEN = "test-token"


def script_env(tmp_path: Path, **values: str) -> dict[str, str]:
    """The environment less every RECSYS_/MLFLOW_/JUPYTER_ variable, no .env, plus ``values``."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("RECSYS_", "MLFLOW_", "JUPYTER_"))}
    no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1", "localhost"]))
    return {
        **kept,
        "NO_PROXY": no_proxy,
        "no_proxy": no_proxy,
        "RECSYS_ENV_FILE": str(tmp_path / "absent.env"),
        **values,
    }


def dry_run(command: list[str], env: dict[str, str]) -> str:
    """What ``command --dry-run`` prints (its error output when it fails)."""
    done = subprocess.run(
        [*command, "--dry-run"], check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"{' '.join(command)} exited with {done.returncode}:\n{done.stderr}"
    return done.stdout


def http_request(port: int, method: str, path: str, body: str | None = None) -> tuple[int, bytes]:
    """Status and body of a request to 127.0.0.1 (no proxies); status 0 when nothing answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return 0, b""
    finally:
        conn.close()


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop the process group the test started: TERM, then KILL whatever is left."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=STOP_TIMEOUT_S)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT_S)
    with contextlib.suppress(ProcessLookupError):  # workers that outlived the server process
        os.killpg(proc.pid, signal.SIGKILL)


@contextmanager
def running(
    command: list[str], env: dict[str, str], log_path: Path, ready: Callable[[], bool]
) -> Iterator[None]:
    """Run ``command`` until the block ends; fail with its output if it is not ready in time."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                state = f"exited with {proc.returncode}" if proc.poll() is not None else "did not answer"
                pytest.fail(
                    f"{' '.join(command)} {state}; its output:\n{log_path.read_text(errors='replace')}"
                )
            time.sleep(0.25)
        yield
    finally:
        stop_group(proc)


def test_the_readme_gives_the_commands_tested_here() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for command in (MLFLOW_COMMAND, JUPYTER_COMMAND):
        assert f"\n{' '.join(command)} " in readme


# -- MLflow -------------------------------------------------------------------------------------
def test_mlflow_script_settings(tmp_path: Path) -> None:
    data = tmp_path / "data"
    default = dry_run(MLFLOW_COMMAND, script_env(tmp_path, RECSYS_DATA_DIR=str(data)))
    assert "MLflow UI: http://127.0.0.1:5000" in default
    # The same SQLite file the notebook logs to by default.
    expected_store = Settings(_env_file=None, data_dir=data).experiments_uri
    assert f"--backend-store-uri {expected_store} " in default
    assert f"--artifacts-destination {data}/mlartifacts " in default
    assert "--workers 1 " in default
    assert not data.exists()  # a dry run creates nothing

    env_file = tmp_path / "custom.env"
    env_file.write_text("RECSYS_MLFLOW_PORT=5123\nRECSYS_MLFLOW_HOST=127.0.0.2\n", encoding="utf-8")
    s3 = dry_run(
        MLFLOW_COMMAND,
        script_env(
            tmp_path,
            RECSYS_ENV_FILE=str(env_file),
            RECSYS_MLFLOW_HOST="127.0.0.3",  # the caller's value wins over .env
            RECSYS_OBJECT_STORE_URL="s3://bucket/models/",
            RECSYS_S3_ENDPOINT_URL="http://127.0.0.1:9000",
            RECSYS_MLFLOW_BACKEND_STORE_URI="postgresql+psycopg2://mlflow:secret@127.0.0.1:5432/mlflow",
        ),
    )
    assert "MLflow UI: http://127.0.0.3:5123" in s3
    assert "--artifacts-destination s3://bucket/models/mlflow-artifacts " in s3
    assert "(endpoint http://127.0.0.1:9000)" in s3
    assert "postgresql+psycopg2://mlflow:***@127.0.0.1:5432/mlflow" in s3
    assert "secret" not in s3


def test_mlflow_server_keeps_runs_in_the_notebook_store_and_artifacts_in_the_object_store(
    tmp_path: Path,
    mlflow_template: Path,
    s3_settings: Settings,
    clustered_split: tuple[TimeSplit, InteractionData],
) -> None:
    """One real server (starting one takes seconds of imports): runs go to the SQLite file the
    notebook uses by default, artifacts through the server's proxy into the S3 object store."""
    data = tmp_path / "data"
    data.mkdir()
    shutil.copyfile(mlflow_template, data / "mlflow.sqlite3")  # skips the schema migrations
    port = _free_port()
    assert s3_settings.s3_endpoint_url and s3_settings.s3_secret_access_key
    env = script_env(
        tmp_path,
        RECSYS_DATA_DIR=str(data),
        RECSYS_MLFLOW_PORT=str(port),
        RECSYS_OBJECT_STORE_URL=s3_settings.store_url,
        RECSYS_S3_ENDPOINT_URL=s3_settings.s3_endpoint_url,
        RECSYS_S3_ACCESS_KEY_ID=s3_settings.s3_access_key_id or "",
        RECSYS_S3_SECRET_ACCESS_KEY=s3_settings.s3_secret_access_key.get_secret_value(),
        RECSYS_S3_REGION=s3_settings.s3_region,
    )
    split, train = clustered_split
    run = modelling.fit_and_evaluate("popular", PopularModel(), train, split)
    uri = f"http://127.0.0.1:{port}"
    with running(
        MLFLOW_COMMAND, env, tmp_path / "mlflow.log", lambda: http_request(port, "GET", "/health")[0] == 200
    ):
        run_id = tracking.ExperimentTracker(uri, "served").log_model_run(run)  # as the notebook does
        client = MlflowClient(tracking_uri=uri)
        logged = client.get_run(run_id)
        assert logged.info.status == "FINISHED"
        assert logged.data.metrics["ndcg_at_10_all"] == pytest.approx(run.table.loc["all", "ndcg@10"])
        model_files = {entry.path for entry in client.list_artifacts(run_id, "model")}
        assert {"model/model.json", "model/users.npz", "model/items.npz"} <= model_files
    assert (tmp_path / "mlflow.log").read_text().startswith(f"MLflow UI: {uri}\n")

    bucket, prefix = s3_settings.store_url.removeprefix("s3://").split("/", 1)
    listed = s3_client(s3_settings.s3_endpoint_url).list_objects_v2(
        Bucket=bucket, Prefix=f"{prefix}/mlflow-artifacts/"
    )
    keys = {item["Key"] for item in listed.get("Contents", [])}
    assert any(key.endswith(f"{run_id}/artifacts/model/model.json") for key in keys), keys
    assert not (data / "mlartifacts").exists()
    direct = MlflowClient(tracking_uri=Settings(_env_file=None, data_dir=data).experiments_uri)
    assert direct.get_run(run_id).info.run_name == "popular"  # the notebook's default store


# -- Jupyter ------------------------------------------------------------------------------------
def test_jupyter_script_settings(tmp_path: Path) -> None:
    default = dry_run(JUPYTER_COMMAND, script_env(tmp_path))
    assert "JupyterLab: http://127.0.0.1:8888/lab/tree/research.ipynb" in default
    assert f"--ServerApp.root_dir={ROOT}" in default
    moved = dry_run(JUPYTER_COMMAND, script_env(tmp_path, RECSYS_JUPYTER_PORT="9999"))
    assert "--ip 127.0.0.1 --port 9999 " in moved
    env_file = tmp_path / "custom.env"
    env_file.write_text("RECSYS_JUPYTER_HOST=127.0.0.5\nRECSYS_JUPYTER_PORT=9998\n", encoding="utf-8")
    from_env_file = dry_run(JUPYTER_COMMAND, script_env(tmp_path, RECSYS_ENV_FILE=str(env_file)))
    assert "JupyterLab: http://127.0.0.5:9998/lab" in from_env_file
    assert "--ip 127.0.0.5 --port 9998 " in from_env_file


def test_jupyter_server_starts_a_kernel_from_the_venv(tmp_path: Path) -> None:
    port = _free_port()
    env = script_env(
        tmp_path,
        RECSYS_JUPYTER_PORT=str(port),
        JUPYTER_TOKEN=TOKEN,
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        IPYTHONDIR=str(tmp_path / "ipython"),
    )
    status = f"/api/status?token={TOKEN}"
    with running(
        JUPYTER_COMMAND, env, tmp_path / "jupyter.log", lambda: http_request(port, "GET", status)[0] == 200
    ):
        code, body = http_request(port, "GET", f"/api/kernelspecs?token={TOKEN}")
        assert code == 200
        specs = json.loads(body)
        assert specs["default"] == "python3"
        assert "python3" in specs["kernelspecs"]
        code, body = http_request(port, "POST", f"/api/kernels?token={TOKEN}", "{}")
        kernel = json.loads(body)
        assert code == 201, kernel
        assert kernel["name"] == "python3"
        code, _ = http_request(port, "DELETE", f"/api/kernels/{kernel['id']}?token={TOKEN}")
        assert code == 204
    log = (tmp_path / "jupyter.log").read_text(errors="replace")
    assert f"http://127.0.0.1:{port}/lab" in log
