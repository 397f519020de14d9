"""Rate-limited progress lines of long loops."""

from __future__ import annotations

import logging

import pytest

from recsys.progress import ProgressLog

LOGGER = logging.getLogger("recsys.test_progress")


class Clock:
    """Seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_first_and_last_steps_are_written_and_the_rest_at_most_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    progress = ProgressLog(LOGGER, "als", 400, interval_s=10.0, clock=clock)
    with caplog.at_level(logging.INFO, logger=LOGGER.name):
        for done in range(1, 401):
            clock.now += 0.5  # 200 s in all: one line per 20 iterations, plus the first
            progress.update(done, f"loss {1 / done:.3f}")
    lines = caplog.messages
    assert lines[0] == "als: iteration 1/400, loss 1.000, elapsed 0 s"
    assert lines[1] == "als: iteration 21/400, loss 0.048, elapsed 10 s"
    assert lines[-1] == "als: iteration 400/400, loss 0.003, elapsed 200 s"
    assert len(lines) == 21  # 1, 21, 41, …, 381, and 400


def test_a_line_without_detail_names_the_unit(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    progress = ProgressLog(LOGGER, "loader", 3, unit="file", clock=clock)
    with caplog.at_level(logging.INFO, logger=LOGGER.name):
        progress.update(1)
        clock.now += 1.0
        progress.update(2)  # within the interval: not written
        progress.update(3)
    assert caplog.messages == ["loader: file 1/3, elapsed 0 s", "loader: file 3/3, elapsed 1 s"]
