"""Progress of long work as log lines: the CLI shows them, Airflow keeps them in the task log.

Loops with many short steps (ALS and CatBoost iterations) report through :class:`ProgressLog`,
which writes the first and the last step and, in between, at most one line per
:data:`PROGRESS_INTERVAL_S` seconds, so a fit of hundreds of iterations does not flood the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

# At most one progress line per this many seconds for a loop (first and last step always).
PROGRESS_INTERVAL_S = 10.0


class ProgressLog:
    """Rate-limited ``"<task>: <unit> <done>/<total>, <detail>, elapsed <s> s"`` lines of one loop.

    Parameters
    ----------
    logger : logging.Logger
        Where the lines go (at INFO).
    task : str
        What runs, e.g. ``"als"`` or ``"ranker"``.
    total : int
        Steps the loop will take at most (a loop that stops early says so itself).
    unit : str
        Name of a step.
    interval_s : float
        Least number of seconds between two lines, except for the first and the last step.
    clock : callable
        Monotonic seconds (replaced in tests).
    """

    def __init__(
        self,
        logger: logging.Logger,
        task: str,
        total: int,
        *,
        unit: str = "iteration",
        interval_s: float = PROGRESS_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.task = task
        self.total = total
        self.unit = unit
        self.interval_s = interval_s
        self.clock = clock
        self.started = clock()
        self._last_line: float | None = None

    def update(self, done: int, detail: str = "") -> None:
        """Report that ``done`` steps are done; written when due (first, last, or the interval passed)."""
        now = self.clock()
        due = self._last_line is None or done >= self.total or now - self._last_line >= self.interval_s
        if due:
            self._write(done, detail, now)

    def _write(self, done: int, detail: str, now: float) -> None:
        self._last_line = now
        self.logger.info(
            "%s: %s %d/%d%s, elapsed %.0f s",
            self.task,
            self.unit,
            done,
            self.total,
            f", {detail}" if detail else "",
            now - self.started,
        )
