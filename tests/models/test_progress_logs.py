"""Training reports its progress through logging (the CLI shows it, Airflow's task log keeps it)."""

from __future__ import annotations

import logging
import re

import pytest

from recsys.models.als import ALSConfig, ALSModel
from recsys.models.dataset import InteractionData
from recsys.models.ranker import CatBoostConfig, TwoStageConfig, TwoStageModel

PROGRESS = re.compile(
    r"^(?P<task>[\w ]+): iteration (?P<done>\d+)/(?P<total>\d+)(?P<detail>.*), elapsed \d+ s$"
)


def progress_lines(messages: list[str], task: str) -> list[re.Match[str]]:
    matches = [PROGRESS.match(message) for message in messages]
    return [match for match in matches if match is not None and match["task"] == task]


def test_als_logs_its_iterations_and_what_it_was_fitted_on(
    window: InteractionData, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="recsys"):
        ALSModel(ALSConfig(iterations=7)).fit(window)
    lines = progress_lines(caplog.messages, "als")
    # A fit of a few seconds: the first and the last iteration, not every one.
    steps = [(int(line["done"]), int(line["total"])) for line in lines]
    assert steps[0] == (1, 7)
    assert steps[-1] == (7, 7)
    assert len(lines) < 7
    fitted = [m for m in caplog.messages if m.startswith("als fitted in")]
    assert len(fitted) == 1
    assert re.fullmatch(
        rf"als fitted in \d+\.\d s on {len(window.interactions)} interactions "
        rf"of {window.n_users} users and {window.n_items} items",
        fitted[0],
    )


def test_ranker_logs_its_label_windows_validation_curve_and_trees(
    window: InteractionData, caplog: pytest.LogCaptureFixture
) -> None:
    config = TwoStageConfig(label_days=7, label_windows=2, ranker=CatBoostConfig(iterations=40))
    with caplog.at_level(logging.INFO, logger="recsys"):
        model = TwoStageModel(config).fit(window)
    messages = caplog.messages
    report = model.training_report

    windows = [m for m in messages if m.startswith("ranker: label window")]
    assert [m.split(" ending ")[0] for m in windows] == [
        "ranker: label window 1/2",
        "ranker: label window 2/2",
    ]
    assert all(re.search(r": \d+ candidate rows of \d+ users$", m) for m in windows)

    # The probe on the older window, judged on the newest: its NDCG@10 on every line.
    validation = progress_lines(messages, "ranker validation")
    assert validation and int(validation[0]["done"]) == 1
    assert all(int(line["total"]) == 40 for line in validation)
    details = [re.fullmatch(r", validation NDCG@10 (\d\.\d{4})", line["detail"]) for line in validation]
    assert all(detail is not None and 0.0 <= float(detail[1]) <= 1.0 for detail in details), validation
    chosen = int(report["iterations"])
    assert (
        f"ranker: {chosen} trees chosen (smoothed validation NDCG@10 {report['validation_ndcg']:.4f})"
        in messages
    )

    # The final ranker: as many trees as chosen, no validation set.
    final = progress_lines(messages, "ranker")
    assert (int(final[-1]["done"]), int(final[-1]["total"])) == (chosen, chosen)
    assert all(line["detail"] == "" for line in final)
    assert messages.index("ranker: refitting the candidate models on the whole window") > messages.index(
        next(m for m in messages if m.startswith("ranker trained:"))
    )
    assert messages[-1].startswith("two_stage fitted in")
