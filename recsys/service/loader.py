"""Reading the changed tables in a child process while the service keeps answering.

Turning millions of database rows into arrays is Python work that holds the GIL: at full scale
a reload in the serving process stalled requests for tens of seconds (p99 7× the steady state,
issue 16), and its intermediate frames sat beside the store in service (peak RSS 2.2× the
steady state). A child process does that work instead, at a lower CPU priority, filters the
unavailable items out of the new lists there too, and hands the finished arrays over in two
files: a pickle of the objects with their arrays' bytes kept out of band (protocol 5), and
those bytes. The service reads the bytes straight into the arrays' buffers by unbuffered reads,
which release the GIL for the whole copy (an in-band pickle copied them holding it: 17 ms
stalls at full scale). Measured side by side at full scale: ``benchmarks/results/reload.md``.

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

import numpy as np
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
        path = Path(folder) / "parts"
        # Niced before it unpickles the task, whose imports (numpy, SQLAlchemy, the store) are most
        # of a small load's CPU time: at full priority they stalled requests for tens of ms.
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(1, spawn, initializer=os.nice, initargs=(CHILD_NICENESS,)) as pool:
            task = pool.submit(_read_to_file, url, list(names), str(path))
            child_peak_bytes, child_niceness = task.result()
        parts: StoreParts = _read_parts_file(path)
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
    _write_parts_file(parts, Path(path))
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, os.nice(0)


def _write_parts_file(parts: StoreParts, path: Path) -> None:
    """``path.pickle``: the parts with their buffers out of band; ``path.buffers``: the buffers'
    bytes one after the other, their lengths last in the pickle's own list."""
    buffers: list[pickle.PickleBuffer] = []
    body = pickle.dumps(parts, protocol=5, buffer_callback=buffers.append)
    with path.with_suffix(".buffers").open("wb") as file:
        for buffer in buffers:
            file.write(buffer.raw())
    with path.with_suffix(".pickle").open("wb") as file:
        pickle.dump((body, [buffer.raw().nbytes for buffer in buffers]), file, protocol=5)


def _read_parts_file(path: Path) -> StoreParts:
    """What :func:`_write_parts_file` wrote: each buffer read by one unbuffered ``readinto`` (the
    GIL is released while the kernel copies it), the objects unpickled around them."""
    with path.with_suffix(".pickle").open("rb") as file:
        body, sizes = pickle.load(file)
    # Not zero-filled (as a bytearray would be, holding the GIL): the reads fill every byte.
    buffers = [np.empty(size, dtype=np.uint8) for size in sizes]
    with path.with_suffix(".buffers").open("rb", buffering=0) as raw:
        for buffer in buffers:
            view = buffer.data
            while view.nbytes:
                done = raw.readinto(view)
                if not done:
                    raise EOFError(f"{path.with_suffix('.buffers')} ended before its buffers")
                view = view[done:]
    parts: StoreParts = pickle.loads(body, buffers=buffers)
    return parts
