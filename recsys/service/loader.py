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

The storefront's product catalogue is read the same way (:func:`run_in_child`): read in the
serving process after every swap, its rows stalled requests for 60–75 ms.

The child is spawned, not forked: a fork of a threaded server may copy a held lock.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import resource
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from sqlalchemy.engine import Engine

from recsys.service.store import StoreParts, read_parts
from recsys.storage.database import create_db_engine

logger = logging.getLogger(__name__)

# Added to the child's nice value: with as many busy request threads as cores, the load takes
# the CPU time the requests leave.
CHILD_NICENESS = 10
Result = TypeVar("Result")


def read_parts_in_child(engine: Engine, names: Sequence[str]) -> StoreParts:
    """:func:`recsys.service.store.read_parts` run in a child process on the same database.

    Raises
    ------
    Exception
        What the child raised (e.g. :class:`sqlalchemy.exc.SQLAlchemyError`), re-raised here.
    """
    parts, niceness, peak_bytes = run_in_child(read_parts, engine, list(names))
    logger.info(
        "read %s and the catalogue in a child process (nice %d, its peak RSS %.0f MiB)",
        ", ".join(names) or "no table",
        niceness,
        peak_bytes / 2**20,
    )
    return parts


def run_in_child(task: Callable[..., Result], engine: Engine, *args: Any) -> tuple[Result, int, int]:
    """``task(engine_on_the_same_database, *args)`` run in a spawned, niced child process: its
    result (arrays handed over out of band), the child's nice value and its peak RSS in bytes.

    ``task`` and ``args`` must be picklable (a module-level function and plain values).

    Raises
    ------
    Exception
        What the child raised, re-raised here.
    """
    url = engine.url.render_as_string(hide_password=False)
    with tempfile.TemporaryDirectory(prefix="recsys-load-") as folder:
        path = Path(folder) / "result"
        # Niced before it unpickles the task, whose imports (numpy, SQLAlchemy, the store) are most
        # of a small load's CPU time: at full priority they stalled requests for tens of ms.
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(1, spawn, initializer=os.nice, initargs=(CHILD_NICENESS,)) as pool:
            peak_bytes, niceness = pool.submit(_run_to_file, task, url, args, str(path)).result()
        result: Result = _read_result_file(path)
    return result, niceness, peak_bytes


def _run_to_file(task: Callable[..., Any], url: str, args: tuple[Any, ...], path: str) -> tuple[int, int]:
    """In the child: run the task, write its result to ``path``; returns the child's peak RSS in
    bytes and its nice value."""
    engine = create_db_engine(url)
    try:
        result = task(engine, *args)
    finally:
        engine.dispose()
    _write_result_file(result, Path(path))
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, os.nice(0)


def _write_result_file(result: Any, path: Path) -> None:
    """``path.pickle``: the result with its buffers out of band; ``path.buffers``: the buffers'
    bytes one after the other, their lengths in the pickle."""
    buffers: list[pickle.PickleBuffer] = []
    body = pickle.dumps(result, protocol=5, buffer_callback=buffers.append)
    with path.with_suffix(".buffers").open("wb") as file:
        for buffer in buffers:
            file.write(buffer.raw())
    with path.with_suffix(".pickle").open("wb") as file:
        pickle.dump((body, [buffer.raw().nbytes for buffer in buffers]), file, protocol=5)


def _read_result_file(path: Path) -> Any:
    """What :func:`_write_result_file` wrote: each buffer read by one unbuffered ``readinto`` (the
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
    return pickle.loads(body, buffers=buffers)
