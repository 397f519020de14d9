"""Shared fixtures: databases (SQLite and the real PostgreSQL server) and the S3 server.

Tests that need PostgreSQL or S3 skip when the server is missing on a developer machine,
but fail under ``CI=true``: there they must run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recsys.storage.database import create_db_engine
from tests.helpers import scratch_database

pytest_plugins = ["tests.s3_server"]

POSTGRES_URL = os.environ.get(
    "RECSYS_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> None:
    """Skip on a developer machine, fail in CI, where every test must run."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: tests needing it must run, not skip)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """Async tests run on asyncio, the service's loop (anyio would also try every installed
    backend, and trio comes with Selenium)."""
    return "asyncio"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a database created for this test session on the PostgreSQL server, dropped after."""
    probe = sa.create_engine(POSTGRES_URL)
    try:
        with probe.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        unavailable(f"PostgreSQL is not reachable at {POSTGRES_URL}: {exc.orig}")
    finally:
        probe.dispose()
    with scratch_database(POSTGRES_URL) as url:
        yield url


@pytest.fixture
def postgres_engine(postgres_url: str) -> Iterator[Engine]:
    """An engine on the session's PostgreSQL database, emptied after each test."""
    engine = create_db_engine(postgres_url)
    try:
        yield engine
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        engine.dispose()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    """An engine on a fresh SQLite file."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'recsys.sqlite3'}")
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_engine(request: pytest.FixtureRequest) -> Engine:
    """The same test on the embedded SQLite database and on the real PostgreSQL server."""
    return request.getfixturevalue(f"{request.param}_engine")
