"""Small helpers shared by several test packages."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url


@contextmanager
def scratch_database(server_url: str, prefix: str = "recsys_test") -> Iterator[str]:
    """A new, empty PostgreSQL database on the server of ``server_url``; dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, details: Callable[[], str] | None = None
) -> None:
    """Poll ``condition`` until it holds; after ``timeout`` seconds fail naming ``what`` and ``details()``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    extra = f":\n{details()}" if details is not None else ""
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}{extra}")
