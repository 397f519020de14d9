"""Reading the changed tables in a child process while the service keeps answering.

Turning millions of database rows into arrays is Python work that holds the GIL: at full scale
a reload in the serving process stalled requests for tens of seconds (p99 7× the steady state,
issue 16), and its intermediate frames sat beside the store in service (peak RSS 2.2× the
steady state). A child process does that work instead, at a lower CPU priority, filters the
unavailable items out of the new lists there too, and hands the finished arrays over in one
pickle file; the service reads it with the GIL released while the large buffers stream straight
into their arrays (pickle protocol 5). Measured side by side at full scale:
``benchmarks/results/reload.md``.

The child is spawned, not forked: a fork of a threaded server may copy a held lock.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import resource
import tempfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from sqlalchemy.engine import Engine

from recsys.service.store import StoreParts, read_parts
from recsys.storage.database import create_db_engine

logger = logging.getLogger(__name__)

# Added to the child's nice value: with as many busy request threads as cores, the load takes
# the CPU time the requests leave.
CHILD_NICENESS = 10


def read_parts_in_child(engine: Engine, names: Sequence[str]) -> StoreParts:
    """:func:`recsys.service.store.read_parts` run in a child process on the same database.

    Raises
    ------
    Exception
        What the child raised (e.g. :class:`sqlalchemy.exc.SQLAlchemyError`), re-raised here.
    """
    url = engine.url.render_as_string(hide_password=False)
    with tempfile.TemporaryDirectory(prefix="recsys-load-") as folder:
        path = Path(folder) / "parts.pickle"
        # Niced before it unpickles the task, whose imports (numpy, SQLAlchemy, the store) are most
        # of a small load's CPU time: at full priority they stalled requests for tens of ms.
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(1, spawn, initializer=os.nice, initargs=(CHILD_NICENESS,)) as pool:
            task = pool.submit(_read_to_file, url, list(names), str(path))
            child_peak_bytes, child_niceness = task.result()
        with path.open("rb") as file:
            parts: StoreParts = pickle.load(file)
    logger.info(
        "read %s and the catalogue in a child process (nice %d, its peak RSS %.0f MiB)",
        ", ".join(names) or "no table",
        child_niceness,
        child_peak_bytes / 2**20,
    )
    return parts


def _read_to_file(url: str, names: list[str], path: str) -> tuple[int, int]:
    """In the child: read the parts, pickle them to ``path``; returns the child's peak RSS in bytes
    and its nice value."""
    engine = create_db_engine(url)
    try:
        parts = read_parts(engine, names)
    finally:
        engine.dispose()
    with open(path, "wb") as file:
        pickle.dump(parts, file, protocol=5)
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, os.nice(0)
