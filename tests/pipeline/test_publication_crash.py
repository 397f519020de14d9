"""A publishing process killed with SIGKILL never leaves readers a partial or missing table.

A subprocess (``tests.pipeline.publishing_child``) publishes a large new version of a table whose
version 1 is serving; the test kills it

- while its rows are going in (``COPY`` running on PostgreSQL, batched inserts on SQLite), and
- on PostgreSQL, after its rows were committed but before the switch (it waits for the
  per-table advisory lock, which the test took while the child paused before writing),

then checks that the pointer, the view and the rows are still version 1, and that the next
publication succeeds and drops whatever the dead writer left.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recsys.publishing.tables import current_version, list_versions, publish_frame
from tests.helpers import wait_until
from tests.pipeline.publishing_child import AS_OF, columns, recommendations
from tests.pipeline.test_publication import NAME, same_rows, versions_on_disk, view

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
LARGE = 2_500_000
TIMEOUT_S = 120.0


@contextmanager
def publishing_process(
    engine: Engine, rows: int, as_of: datetime = AS_OF, pause: bool = False
) -> Iterator[subprocess.Popen[str]]:
    """The child publishing ``rows`` rows as the next version of NAME; killed if still alive at exit.

    With ``pause`` it waits after ``writing …`` until :func:`resume`.
    """
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.pipeline.publishing_child",
            url_of(engine),
            NAME,
            str(rows),
            as_of.isoformat(),
            *(["--pause"] if pause else []),
        ],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        assert proc.stdout is not None and proc.stdin is not None
        proc.stdout.close()
        proc.stdin.close()


def resume(proc: subprocess.Popen[str]) -> None:
    """Let a paused child write its rows."""
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()


def url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def wait_for_line(proc: subprocess.Popen[str], expected: str) -> None:
    """Read the child's output until the line ``expected``; fail on exit or timeout."""
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            if line == "" and proc.poll() is not None:
                break
            seen.append(line.rstrip())
            if line.rstrip() == expected:
                return
    pytest.fail(f"the publishing process never printed {expected!r}; its output:\n" + "\n".join(seen))


def sigkill(proc: subprocess.Popen[str]) -> None:
    assert proc.poll() is None, "the publishing process finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


def backend_activity(engine: Engine, pattern: str) -> list[tuple[str, str | None]]:
    """(state, wait event type) of the other PostgreSQL sessions whose query matches ``pattern``."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT state, wait_event_type FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND datname = current_database() AND query LIKE :pattern"
            ),
            {"pattern": pattern},
        ).all()
    return [(row.state, row.wait_event_type) for row in rows]


def assert_still_serving(engine: Engine, rows: pd.DataFrame) -> None:
    """Pointer, view and rows are those of version 1."""
    pointer = current_version(engine, NAME)
    assert (pointer.version, pointer.rows, pointer.as_of) == (1, 1000, AS_OF)
    same_rows(view(engine), rows)


def test_writer_killed_while_writing_rows_leaves_the_previous_version(db_engine: Engine) -> None:
    first = recommendations(1000)
    publish_frame(db_engine, NAME, first, columns(), as_of=AS_OF)
    with publishing_process(db_engine, LARGE) as proc:
        wait_for_line(proc, f"writing {NAME}__v2")
        if db_engine.dialect.name == "postgresql":
            wait_until(
                lambda: ("active", None) in backend_activity(db_engine, "COPY %"), TIMEOUT_S, "COPY to run"
            )
        else:
            time.sleep(1.0)  # inside the first batches of the 2.5 M inserts
        sigkill(proc)
    assert_still_serving(db_engine, first)
    # The write was one transaction: it died with the writer, nothing is left half-written.
    assert versions_on_disk(db_engine) == ["recs__v1"]

    if db_engine.dialect.name == "postgresql":
        # The server ends the dead writer's session (and frees its lock) once it sees the socket closed.
        wait_until(lambda: not backend_activity(db_engine, "COPY %"), TIMEOUT_S, "the COPY to end")
    second = recommendations(500, seed=2)
    published = publish_frame(db_engine, NAME, second, columns())
    same_rows(view(db_engine), second)
    states = {record.version: record.state for record in list_versions(db_engine, NAME)}
    if db_engine.dialect.name == "postgresql":
        # The dead writer had reserved number 2 (committed at once): recorded as abandoned, not reused.
        assert (published.version, states) == (3, {1: "published", 2: "abandoned", 3: "served"})
    else:
        # SQLite: reservation, rows and switch were one transaction, gone with the writer.
        assert (published.version, states) == (2, {1: "published", 2: "served"})
    assert versions_on_disk(db_engine) == ["recs__v1", f"recs__v{published.version}"]


@pytest.mark.postgres
def test_writer_killed_before_the_switch_leaves_an_orphan_the_next_publication_drops(
    postgres_engine: Engine,
) -> None:
    first = recommendations(1000)
    publish_frame(postgres_engine, NAME, first, columns(), as_of=AS_OF)
    with (
        postgres_engine.connect() as holder,
        publishing_process(postgres_engine, 200_000, pause=True) as proc,
    ):
        wait_for_line(proc, f"writing {NAME}__v2")
        # The switch transaction takes this lock first; holding it stops the writer right there.
        holder.execute(sa.text("SELECT pg_advisory_lock(hashtext(:name))"), {"name": NAME})
        resume(proc)
        wait_until(
            lambda: ("active", "Lock") in backend_activity(postgres_engine, "%pg_advisory_xact_lock%"),
            TIMEOUT_S,
            "the writer to commit its rows and wait to switch",
        )
        assert versions_on_disk(postgres_engine) == ["recs__v1", "recs__v2"]
        sigkill(proc)
        holder.execute(sa.text("SELECT pg_advisory_unlock(hashtext(:name))"), {"name": NAME})
        holder.commit()
    assert_still_serving(postgres_engine, first)
    assert versions_on_disk(postgres_engine) == ["recs__v1", "recs__v2"]  # the orphan

    published = publish_frame(postgres_engine, NAME, recommendations(300, seed=3), columns())
    assert published.version == 3
    assert versions_on_disk(postgres_engine) == ["recs__v1", "recs__v3"]
    assert len(view(postgres_engine)) == 300
    states = {record.version: record.state for record in list_versions(postgres_engine, NAME)}
    assert states == {1: "published", 2: "abandoned", 3: "served"}
