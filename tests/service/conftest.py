"""Fixtures of the service tests: real published tables and real servers on loopback.

The tiny synthetic twin goes through the real pipeline once per session (on SQLite); its
published tables are then published again, with the project's publisher, into every
database a test needs: SQLite copies and scratch PostgreSQL databases created on the test
server. Services are the real ``uvicorn`` command of the README, started in a subprocess on a
free loopback port.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa

from recsys.config import Settings
from recsys.data.loader import load_raw_data
from recsys.data.prepare import ITEMS
from recsys.data.synthetic import generate_twin
from recsys.pipeline.stages import STAGES, RunContext
from recsys.publishing.catalogue import CATALOGUE
from recsys.publishing.tables import read_published
from recsys.storage.database import bulk_insert, create_db_engine
from tests.helpers import scratch_database, wait_until

ROOT = Path(__file__).resolve().parents[2]
SERVICE_DIR = ROOT / "fast_api_service"
# Only ever sent to test servers on loopback.
API_KEY = "test-api-key"
START_TIMEOUT_S = 90.0
MOMENT = datetime(2026, 1, 1)


@dataclass(frozen=True)
class PublishedData:
    """What the pipeline published for the tiny twin, and the SQLite file it lives in."""

    sqlite_path: Path
    tables: dict[str, pd.DataFrame]
    items: pd.DataFrame
    # The object store the pipeline saved its models in (the session model the service loads).
    store_path: Path

    def ranked_user(self, index: int = 0) -> int:
        """A user with ranked recommendations."""
        users = sorted(self.tables["ranked_recommendations"]["user_id"].unique())
        return int(users[index])

    def cold_user(self) -> int:
        """A user id no table knows."""
        return int(self.tables["ranked_recommendations"]["user_id"].max()) + 1_000_000

    def item_with_neighbours(self, index: int = 0) -> int:
        """An item with similar items."""
        return int(sorted(self.tables["similar_items"]["item_id"].unique())[index])

    def list_of(self, table: str, key: int) -> list[int]:
        """Items of one key of a per-user/per-item table in rank order, as the service serves
        them: without the items the catalogue marks unavailable."""
        frame = self.tables[table]
        column = "user_id" if "user_id" in frame.columns else "item_id"
        item = "similar_item_id" if table == "similar_items" else "item_id"
        ranked = frame[frame[column] == key].sort_values("rank")[item].astype(int).tolist()
        unavailable = set(
            self.items.loc[self.items["available"].eq(False).fillna(False).astype(bool), "item_id"]
        )
        return [i for i in ranked if i not in unavailable]


def publish_copy(url: str, data: PublishedData, as_of: datetime = MOMENT) -> None:
    """Publish the pipeline's tables and the item catalogue into the database at ``url``."""
    engine = create_db_engine(url)
    try:
        for name, frame in data.tables.items():
            CATALOGUE[name].publish(engine, frame, as_of=as_of)
        with engine.begin() as conn:
            ITEMS.create(conn, checkfirst=True)
            bulk_insert(conn, ITEMS, data.items)
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def published_data(tmp_path_factory: pytest.TempPathFactory) -> PublishedData:
    """The tiny twin through every pipeline stage, on SQLite (about 10 s)."""
    folder = tmp_path_factory.mktemp("pipeline")
    generate_twin(folder / "raw", scale="tiny")
    sqlite_path = folder / "recsys.sqlite3"
    url = f"sqlite:///{sqlite_path}"
    # The hyper-parameter search is tested in tests/pipeline/test_tuning.py; the service needs tables.
    settings = Settings(
        _env_file=None,
        data_dir=folder,
        database_url=url,
        object_store_url=str(folder / "store"),
        tuning_max_trials=0,
    )
    engine = create_db_engine(url)
    load_raw_data(engine, folder / "raw")
    ctx = RunContext(settings, MOMENT)
    for stage in STAGES.values():
        ctx.summary = {}
        stage(ctx)
    tables = {name: read_published(engine, name)[1] for name in CATALOGUE}
    with engine.connect() as conn:
        items = pd.read_sql(sa.select(ITEMS), conn)
    engine.dispose()
    ctx.engine.dispose()
    return PublishedData(sqlite_path, tables, items, folder / "store")


@pytest.fixture
def sqlite_copy(published_data: PublishedData, tmp_path: Path) -> str:
    """URL of a private copy of the pipeline's SQLite database."""
    target = tmp_path / "service.sqlite3"
    shutil.copyfile(published_data.sqlite_path, target)
    return f"sqlite:///{target}"


@pytest.fixture
def postgres_copy(postgres_url: str, published_data: PublishedData) -> Iterator[str]:
    """URL of a scratch PostgreSQL database holding the published tables (one per test)."""
    with scratch_database(postgres_url) as url:
        publish_copy(url, published_data)
        yield url


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Stop a server we started: SIGTERM, then SIGKILL if it does not exit in 20 s."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


class LiveService:
    """The service started exactly as documented (``uvicorn recsys_app.recsys_app:app``) in a subprocess.

    Parameters
    ----------
    database_url : str
        The database it serves from.
    log_path : Path
        Where its output goes (shown when it fails to start).
    env : dict, optional
        More ``RECSYS_*`` variables (they override the test defaults).
    workers : int
        Uvicorn worker processes.
    port : int, optional
        The port to listen on (a free one at each start by default); fixed when the settings
        must name the service's own origin.
    """

    def __init__(
        self,
        database_url: str,
        log_path: Path,
        env: dict[str, str] | None = None,
        workers: int = 1,
        port: int | None = None,
    ) -> None:
        self.database_url = database_url
        self.log_path = log_path
        self.extra_env = env or {}
        self.workers = workers
        self.fixed_port = port
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    def client(self, **kwargs: Any) -> httpx.Client:
        """An HTTP client for the service."""
        return httpx.Client(base_url=self.url, timeout=kwargs.pop("timeout", 30.0), **kwargs)

    def start(self, wait_ready: bool = True) -> LiveService:
        """Start and wait until it answers (``/ready`` 200 unless ``wait_ready`` is false)."""
        self.port = self.fixed_port or free_port()
        # The developer's own RECSYS_* variables must not change what the tests see.
        env = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_")}
        env.update(
            {
                "RECSYS_DATABASE_URL": self.database_url,
                "RECSYS_DATA_DIR": str(self.log_path.parent),
                "RECSYS_API_KEY": API_KEY,
                "RECSYS_RELOAD_INTERVAL_SECONDS": "0.5",
                "RECSYS_DATABASE_RETRY_SECONDS": "1",
                "OPENBLAS_NUM_THREADS": "1",
                **self.extra_env,
            }
        )
        uvicorn = Path(sys.executable).parent / "uvicorn"
        command = [str(uvicorn), "recsys_app.recsys_app:app", "--host", "127.0.0.1", "--port", str(self.port)]
        if self.workers > 1:
            command += ["--workers", str(self.workers)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=SERVICE_DIR,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait(wait_ready)
        return self

    def _wait(self, wait_ready: bool) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        path = "/ready" if wait_ready else "/health"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"the service exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                # With several workers, /ready answers from the first one up: wait for all of them,
                # so that a test's deadline does not include the others' start.
                if httpx.get(self.url + path, timeout=2).status_code == 200 and self._workers_started():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"the service did not answer {path} within {START_TIMEOUT_S:.0f} s:\n{self.log_tail()}")

    def _workers_started(self) -> bool:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text.count("Application startup complete.") >= self.workers

    def log_tail(self, lines: int = 40) -> str:
        """The end of the service's output."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Stop it gracefully (SIGTERM), killing it only if it hangs."""
        if self.process is not None:
            stop_process(self.process)

    def wait_until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``condition`` until true or fail after ``timeout`` seconds, showing the service's log."""
        wait_until(condition, timeout, what, details=self.log_tail)


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[..., LiveService]]:
    """Start services for one test; all are stopped after it."""
    started: list[LiveService] = []

    def start(database_url: str, wait_ready: bool = True, **kwargs: Any) -> LiveService:
        log = tmp_path / f"service_{len(started)}.log"
        service = LiveService(database_url, log, **kwargs)
        started.append(service)
        return service.start(wait_ready=wait_ready)

    yield start
    for service in started:
        service.stop()


@pytest.fixture(scope="session")
def postgres_service(
    postgres_url: str, published_data: PublishedData, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveService]:
    """One service on a scratch PostgreSQL database for read-mostly tests of the whole session."""
    with scratch_database(postgres_url) as url:
        publish_copy(url, published_data)
        service = LiveService(url, tmp_path_factory.mktemp("pg_service") / "service.log").start()
        try:
            yield service
        finally:
            service.stop()


@pytest.fixture(scope="session")
def sqlite_service(
    published_data: PublishedData, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveService]:
    """One service on a SQLite copy, with a CORS origin configured."""
    folder = tmp_path_factory.mktemp("sqlite_service")
    shutil.copyfile(published_data.sqlite_path, folder / "service.sqlite3")
    service = LiveService(
        f"sqlite:///{folder / 'service.sqlite3'}",
        folder / "service.log",
        env={"RECSYS_CORS_ALLOWED_ORIGINS": '["https://shop.example"]'},
    ).start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def service(request: pytest.FixtureRequest) -> LiveService:
    """The same API test against the service on SQLite and on PostgreSQL."""
    live: LiveService = request.getfixturevalue(f"{request.param}_service")
    return live
