"""Model experiments on a time split: fit, recommend for the test users, evaluate per user segment.

A :class:`ModelRun` keeps everything one experiment produced (the fitted model, its
recommendations, the evaluation table and timings); :func:`comparison_table` puts the tables
of several runs side by side and :func:`plot_comparison` draws one metric of them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from recsys.evaluation.offline import SEGMENTS, TimeSplit, evaluate
from recsys.experiments import plots
from recsys.models.base import Recommender
from recsys.models.dataset import InteractionData

K_VALUES: tuple[int, ...] = (5, 10)
SEGMENT_ORDER: tuple[str, ...] = (*SEGMENTS, "all")


@dataclass(frozen=True)
class ModelRun:
    """The outcome of one experiment.

    Attributes
    ----------
    name : str
        Name of the experiment (the MLflow run name).
    model : Recommender
        The fitted model.
    recommendations : DataFrame
        ``user_id, item_id, score, rank`` for the test users.
    table : DataFrame
        :func:`recsys.evaluation.offline.evaluate` output: rows ``cold, light, heavy, all``.
    fit_seconds, recommend_seconds : float
        Wall-clock time of ``fit`` and of ``recommend``.
    """

    name: str
    model: Recommender
    recommendations: pd.DataFrame
    table: pd.DataFrame
    fit_seconds: float
    recommend_seconds: float

    @property
    def timings(self) -> dict[str, float]:
        """``fit_seconds`` and ``recommend_seconds``."""
        return {"fit_seconds": self.fit_seconds, "recommend_seconds": self.recommend_seconds}

    def figure(self, k: int = max(K_VALUES)) -> Figure:
        """Precision, recall, NDCG and MAP at ``k`` per segment."""
        return plot_segment_metrics(self.table, k, title=f"{self.name}: metrics@{k} per user segment")


def training_window(split: TimeSplit, items: pd.DataFrame) -> InteractionData:
    """The training interactions of ``split`` encoded with the catalogue, ending where the test starts."""
    return InteractionData.build(split.train, items, now=split.test_start)


def fit_and_evaluate(
    name: str,
    model: Recommender,
    train: InteractionData,
    split: TimeSplit,
    k_values: Sequence[int] = K_VALUES,
) -> ModelRun:
    """Fit ``model`` on ``train``, recommend to every test user and evaluate per segment.

    Parameters
    ----------
    name : str
        Name of the experiment.
    model : Recommender
        An unfitted model.
    train : InteractionData
        The training window (:func:`training_window`); also the history models recommend from.
    split : TimeSplit
        The split whose test users and relevant pairs are evaluated.
    k_values : sequence of int
        Cut-offs of the metrics; the largest is the length of the recommendation lists.

    Returns
    -------
    ModelRun
    """
    started = time.perf_counter()
    model.fit(train)
    fitted = time.perf_counter()
    recommendations = model.recommend(split.test_users, train, max(k_values))
    recommended = time.perf_counter()
    table = evaluate(recommendations, split, k_values=k_values)
    return ModelRun(
        name=name,
        model=model,
        recommendations=recommendations,
        table=table,
        fit_seconds=fitted - started,
        recommend_seconds=recommended - fitted,
    )


def split_summary(split: TimeSplit) -> pd.DataFrame:
    """Interactions, users, items and time span of the training and test windows (one row each)."""
    rows = {}
    for window, frame in (("train", split.train), ("test", split.test)):
        rows[window] = {
            "interactions": len(frame),
            "users": frame["user_id"].nunique(),
            "items": frame["item_id"].nunique(),
            "from": frame["datetime"].min(),
            "to": frame["datetime"].max(),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def split_params(split: TimeSplit) -> dict[str, Any]:
    """What defines the split, for logging: test start, window sizes and test users per segment."""
    segments = split.segments.value_counts().reindex(list(SEGMENTS), fill_value=0)
    return {
        "split.test_start": split.test_start.isoformat(),
        "split.train_interactions": len(split.train),
        "split.test_interactions": len(split.test),
        "split.relevant_pairs": len(split.relevant),
        **{f"split.test_users_{segment}": int(count) for segment, count in segments.items()},
    }


def plot_segment_metrics(table: pd.DataFrame, k: int = max(K_VALUES), title: str | None = None) -> Figure:
    """Grouped bars of precision, recall, NDCG and MAP at ``k`` for each segment of an evaluation table."""
    metrics = [f"{metric}@{k}" for metric in ("precision", "recall", "ndcg", "map")]
    frame = table.reindex(index=[s for s in SEGMENT_ORDER if s in table.index], columns=metrics)
    frame.index.name = "segment"
    return plots.grouped_bars(frame, title or f"metrics@{k} per user segment", "value")


def comparison_table(runs: Sequence[ModelRun]) -> pd.DataFrame:
    """The evaluation tables of several runs stacked: index ``(model, segment)``, one column per metric.

    Raises
    ------
    ValueError
        If no run is given or two runs share a name.
    """
    names = [run.name for run in runs]
    if not names:
        raise ValueError("nothing to compare: give at least one run")
    if len(set(names)) != len(names):
        raise ValueError(f"runs to compare need distinct names, got {names}")
    stacked = pd.concat({run.name: run.table for run in runs}, names=["model", "segment"])
    return stacked


def plot_comparison(comparison: pd.DataFrame, metric: str = "ndcg@10") -> Figure:
    """Grouped bars of one metric: a group per segment, a bar per model (from :func:`comparison_table`)."""
    frame = comparison[metric].unstack("model")
    frame = frame.reindex(index=[s for s in SEGMENT_ORDER if s in frame.index])
    models = comparison.index.get_level_values("model").unique()
    return plots.grouped_bars(frame[list(models)], f"{metric} per user segment and model", metric)
