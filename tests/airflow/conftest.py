"""An isolated Airflow for the DAG tests: its own AIRFLOW_HOME and SQLite metadata DB.

Airflow reads its configuration when it is first imported, so the environment is set here, at
import time of this conftest, before any test module of this folder imports Airflow. The
metadata DB is created once per session with ``airflow db migrate``.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO / "airflow_service" / "dags"

if "airflow" in sys.modules:
    raise RuntimeError(
        "airflow was imported before tests/airflow/conftest.py could configure it; "
        "run the Airflow tests in their own pytest process or import airflow only inside them"
    )

AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="recsys-airflow-test-"))
atexit.register(shutil.rmtree, AIRFLOW_HOME, ignore_errors=True)
os.environ.update(
    {
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_HOME / 'airflow.db'}",
        # A failing task in these tests should fail its run at once, not wait for a retry.
        "AIRFLOW__CORE__DEFAULT_TASK_RETRIES": "0",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    }
)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """AIRFLOW_HOME with a migrated SQLite metadata DB (needed by ``dag.test``)."""
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"airflow db migrate failed:\n{result.stdout}\n{result.stderr}", pytrace=False)
    return AIRFLOW_HOME


class FakeTelegram(ThreadingHTTPServer):
    """A local stand-in for the Telegram Bot API that records what it receives.

    ``received`` holds ``(path, JSON body)`` of every POST; ``status`` is the HTTP status it answers.
    """

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _TelegramHandler)
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.status = 200

    @property
    def url(self) -> str:
        """Base URL to use as ``RECSYS_TELEGRAM_API_BASE_URL``."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def texts(self) -> list[str]:
        """The texts of the messages received so far."""
        return [str(body.get("text", "")) for _, body in self.received]


class _TelegramHandler(BaseHTTPRequestHandler):
    server: FakeTelegram

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.received.append((self.path, json.loads(body or b"{}")))
        answer = json.dumps({"ok": self.server.status == 200, "result": {}}).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:  # the name is the base class's
        """Keep the test output quiet."""


@pytest.fixture(scope="module")
def telegram() -> Iterator[FakeTelegram]:
    """A fake Telegram Bot API on 127.0.0.1 in a thread, reached without any proxy."""
    server = FakeTelegram()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with pytest.MonkeyPatch.context() as mp:
        no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1", "localhost"]))
        mp.setenv("NO_PROXY", no_proxy)
        mp.setenv("no_proxy", no_proxy)
        try:
            yield server
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
