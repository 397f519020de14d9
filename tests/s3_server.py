"""Pytest plugin: a real S3 API for the tests, served by ``moto_server`` in a subprocess.

``s3_endpoint`` (session) starts ``moto_server`` from the venv of the running interpreter on
127.0.0.1 and a free port and yields its URL; ``s3_settings`` gives project settings pointing at
it, with a fresh bucket per test. Tests using either fixture are marked ``s3`` automatically.
When the executable is missing the tests skip locally and fail under ``CI=true``.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from recsys.config import Settings

# moto imports for tens of seconds on a loaded 2-core machine (30 s was seen to be too short).
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 10.0
START_ATTEMPTS = 3
ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"
S3_FIXTURES = {"s3_endpoint", "s3_settings"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the S3 server with ``s3`` (so ``-m "not s3"`` deselects it)."""
    for item in items:
        if S3_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.s3)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers_http(port: int) -> bool:
    """Whether something answers an HTTP request on the port (any status counts)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
    except OSError:
        return False
    finally:
        conn.close()
    return True


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT_S)


def _start(executable: Path, log: Any) -> tuple[subprocess.Popen[bytes], int] | None:
    """Start the server on a free port; ``None`` if it exited early (e.g. the port got taken)."""
    port = _free_port()
    proc = subprocess.Popen(
        [str(executable), "-H", "127.0.0.1", "-p", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return None
        if _answers_http(port):
            return proc, port
        time.sleep(0.1)
    _stop(proc)
    log.seek(0)
    pytest.fail(
        f"moto_server did not answer HTTP on 127.0.0.1:{port} within {START_TIMEOUT_S:.0f} s; "
        f"its output:\n{log.read().decode(errors='replace')}",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """URL (``http://127.0.0.1:PORT``) of a ``moto_server`` running for the whole session."""
    from tests.conftest import unavailable

    executable = Path(sys.executable).parent / "moto_server"
    if not executable.is_file() or not os.access(executable, os.X_OK):
        unavailable(f"moto_server is not installed next to {sys.executable} (pip install 'moto[server]')")

    with tempfile.TemporaryFile() as log:
        started = None
        for _attempt in range(START_ATTEMPTS):
            log.seek(0)
            log.truncate()
            started = _start(executable, log)
            if started is not None:
                break
        if started is None:
            log.seek(0)
            pytest.fail(
                f"moto_server exited during start-up ({START_ATTEMPTS} attempts); its output:\n"
                f"{log.read().decode(errors='replace')}",
                pytrace=False,
            )
        proc, port = started
        # boto3 honours HTTP(S)_PROXY; the local server must be reached directly.
        with pytest.MonkeyPatch.context() as mp:
            no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1", "localhost"]))
            mp.setenv("NO_PROXY", no_proxy)
            mp.setenv("no_proxy", no_proxy)
            try:
                yield f"http://127.0.0.1:{port}"
            finally:
                _stop(proc)


def s3_client(endpoint_url: str) -> Any:
    """A plain boto3 S3 client for the test server (to set up and inspect buckets)."""
    import boto3

    return boto3.session.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
    ).client("s3", endpoint_url=endpoint_url)


@pytest.fixture
def s3_settings(s3_endpoint: str, tmp_path: Path) -> Iterator[Settings]:
    """Settings for the test S3 server, with a new bucket; the store is ``s3://<bucket>/recsys``.

    The bucket is emptied and deleted after the test.
    """
    bucket = f"recsys-test-{uuid.uuid4().hex[:12]}"
    client = s3_client(s3_endpoint)
    client.create_bucket(Bucket=bucket)
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        object_store_url=f"s3://{bucket}/recsys",
        s3_endpoint_url=s3_endpoint,
        s3_access_key_id=ACCESS_KEY,
        s3_secret_access_key=SECRET_KEY,
        s3_region=REGION,
    )
    try:
        yield settings
    finally:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=bucket, Key=item["Key"])
        client.delete_bucket(Bucket=bucket)
