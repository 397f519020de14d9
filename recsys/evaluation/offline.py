"""Time-based splits (one hold-out window or rolling-origin folds), user segments and evaluation tables.

A split holds out a test window and trains on everything before it. :func:`time_split`
holds out the last days of the data; :func:`time_folds` holds out ``n_folds`` consecutive
windows, each with its own (expanding) training window, like RecTools' ``TimeRangeSplitter``.
:func:`evaluate` summarises the recommendations of one split per user segment;
:func:`evaluate_folds` pools the per-user metrics of several folds into the same table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from recsys.data.schema import RELEVANT_EVENTS
from recsys.evaluation.metrics import (
    RANKING_METRICS,
    item_coverage,
    novelty_per_user,
    ranking_metrics_per_user,
    recommended_per_user,
)
from recsys.models.dataset import InteractionData

SEGMENTS = ("cold", "light", "heavy")
# The accuracy every choice made on validation days optimises: the quality gate of the training
# stages, the hyper-parameter search and the re-ranking strength.
SELECTION_METRIC = "ndcg@10"
# Training events of a "light" user: 1..LIGHT_MAX; more is "heavy", none is "cold".
LIGHT_MAX = 4


@dataclass(frozen=True)
class TimeSplit:
    """Interactions split at ``test_start``; ``relevant`` are the test pairs to predict.

    ``train`` holds every interaction before ``test_start`` and ``test`` those in
    ``[test_start, test_end)``; later interactions belong to neither.
    """

    train: pd.DataFrame
    test: pd.DataFrame
    relevant: pd.DataFrame
    test_start: pd.Timestamp
    segments: pd.Series  # segment name of every test user (index user_id)
    test_end: pd.Timestamp  # exclusive end of the test window

    @property
    def test_users(self) -> npt.NDArray[np.int64]:
        """Users with at least one relevant test pair."""
        return self.segments.index.to_numpy(dtype=np.int64)


def segment_of(train_events: pd.Series) -> pd.Series:
    """``cold`` / ``light`` / ``heavy`` from each user's number of training events."""
    labels = np.where(train_events == 0, "cold", np.where(train_events <= LIGHT_MAX, "light", "heavy"))
    return pd.Series(labels, index=train_events.index, name="segment")


def time_split(
    interactions: pd.DataFrame,
    test_days: float = 7,
    relevant_events: Sequence[str] = RELEVANT_EVENTS,
    end: pd.Timestamp | None = None,
) -> TimeSplit:
    """Hold out the ``test_days`` days before ``end`` and train on everything earlier.

    Parameters
    ----------
    interactions : DataFrame
        ``user_id, item_id, event, datetime`` (and whatever else the models read).
    test_days : float
        Length of the test window.
    relevant_events : sequence of str
        Events whose test pairs are the targets; their users are the test users.
    end : Timestamp, optional
        Exclusive end of the test window; interactions at or after it are ignored. By
        default the window ends with (and includes) the last interaction.

    Returns
    -------
    TimeSplit
        Training interactions before ``end - test_days``, test interactions from there on.

    Raises
    ------
    ValueError
        If the training or the test window is empty, or the test window has no relevant event.
    """
    if interactions.empty:
        raise ValueError("no interactions to split")
    last = pd.Timestamp(interactions["datetime"].max())
    test_end = end if end is not None else last + pd.Timedelta(microseconds=1)
    test_start = (end if end is not None else last) - pd.Timedelta(days=test_days)
    train = interactions[interactions["datetime"] < test_start]
    test = interactions[(interactions["datetime"] >= test_start) & (interactions["datetime"] < test_end)]
    if train.empty:
        raise ValueError(f"the training window before {test_start} is empty: use fewer test days")
    relevant = test.loc[test["event"].isin(relevant_events), ["user_id", "item_id"]].drop_duplicates()
    if relevant.empty:
        raise ValueError(
            f"no {'/'.join(relevant_events)} events in [{test_start}, {test_end}): nothing to evaluate"
        )
    test_users = pd.Index(relevant["user_id"].unique(), name="user_id")
    train_events = train.groupby("user_id").size().reindex(test_users, fill_value=0)
    return TimeSplit(
        train=train,
        test=test,
        relevant=relevant.reset_index(drop=True),
        test_start=test_start,
        segments=segment_of(train_events),
        test_end=test_end,
    )


def split_data(data: InteractionData, test_days: float) -> tuple[TimeSplit, InteractionData]:
    """:func:`time_split` of a training window, and its training part as model input.

    Raises
    ------
    ValueError
        As :func:`time_split`: the window is too short, or its last ``test_days`` have no
        add-to-cart or purchase.
    """
    split = time_split(data.interactions.drop(columns=["user_code", "item_code"]), test_days)
    train = InteractionData.build(split.train, data.items.reset_index(), now=split.test_start)
    return split, train


def time_folds(
    interactions: pd.DataFrame,
    n_folds: int,
    test_days: float = 7,
    relevant_events: Sequence[str] = RELEVANT_EVENTS,
) -> list[TimeSplit]:
    """Rolling-origin folds: ``n_folds`` consecutive test windows of ``test_days`` at the end of the data.

    With ``end`` the last interaction, fold ``i`` (``0 .. n_folds - 1``, oldest first) holds
    out ``[end - (n_folds - i)·test_days, end - (n_folds - i - 1)·test_days)`` and trains on
    every interaction before it (an expanding window). The last fold is exactly
    ``time_split(interactions, test_days)``, so one fold is the single hold-out split.

    Parameters
    ----------
    interactions : DataFrame
        As for :func:`time_split`.
    n_folds : int
        Number of test windows (at least 1).
    test_days : float
        Length of every test window.
    relevant_events : sequence of str
        As for :func:`time_split`.

    Returns
    -------
    list of TimeSplit
        Oldest fold first; the test windows do not overlap and tile the last
        ``n_folds · test_days`` days.

    Raises
    ------
    ValueError
        If ``n_folds`` is below 1, or a fold has an empty training window or no relevant
        test event (use fewer folds or shorter windows).
    """
    if n_folds < 1:
        raise ValueError(f"n_folds must be at least 1, got {n_folds}")
    if interactions.empty:
        raise ValueError("no interactions to split")
    last = pd.Timestamp(interactions["datetime"].max())
    window = pd.Timedelta(days=test_days)
    return [
        time_split(
            interactions,
            test_days,
            relevant_events,
            end=None if later == 0 else last - later * window,
        )
        for later in range(n_folds - 1, -1, -1)
    ]


def per_user_metrics(reco: pd.DataFrame, split: TimeSplit, k_values: Sequence[int] = (5, 10)) -> pd.DataFrame:
    """Metrics of every test user of ``split`` (index ``user_id``, in the order of ``split.segments``).

    Columns: ``segment``; ``<metric>@k`` for the ranking metrics (0 for a user without
    recommendations); ``novelty@k`` (missing for a user without recommendations); and
    ``served@k`` (1.0 if the user got at least ``k`` recommendations, else 0.0).
    """
    users = split.segments.index
    reco = reco[reco["user_id"].isin(users)]
    out = split.segments.to_frame("segment")
    for k in k_values:
        ranking = ranking_metrics_per_user(reco, split.relevant, k).reindex(users, fill_value=0.0)
        for metric in RANKING_METRICS:
            out[f"{metric}@{k}"] = ranking[metric].to_numpy()
        out[f"novelty@{k}"] = novelty_per_user(reco, split.train, k).reindex(users).to_numpy()
        served = recommended_per_user(reco, k).reindex(users, fill_value=0) >= k
        out[f"served@{k}"] = served.to_numpy(dtype=np.float64)
    return out


def _segment_table(per_user: pd.DataFrame, coverage: pd.DataFrame, k_values: Sequence[int]) -> pd.DataFrame:
    """Means of per-user metrics per segment and overall, with item coverage per segment alongside."""
    values = per_user.drop(columns="segment")
    means = pd.concat([values.groupby(per_user["segment"]).mean(), values.mean().rename("all").to_frame().T])
    means = means.reindex([*SEGMENTS, "all"]).fillna(0.0)
    counts = per_user["segment"].value_counts()
    table = pd.DataFrame(index=means.index)
    table["n_users"] = [float(counts.get(s, 0)) if s != "all" else float(len(per_user)) for s in means.index]
    for k in k_values:
        for metric in (*RANKING_METRICS, "novelty"):
            table[f"{metric}@{k}"] = means[f"{metric}@{k}"]
        table[f"item_coverage@{k}"] = coverage[f"item_coverage@{k}"].reindex(means.index).fillna(0.0)
        table[f"user_coverage@{k}"] = means[f"served@{k}"]
    return table


def _item_coverage_table(
    reco: pd.DataFrame, split: TimeSplit, k_values: Sequence[int], catalogue_size: int | None
) -> pd.DataFrame:
    """Item coverage at each k of the top-k lists of each segment's users and of all test users."""
    catalogue = catalogue_size if catalogue_size is not None else split.train["item_id"].nunique()
    segment = reco["user_id"].map(split.segments)
    reco = reco[segment.notna()]
    segment = segment[segment.notna()]
    rows = {
        name: {f"item_coverage@{k}": item_coverage(part, k, catalogue) for k in k_values}
        for name, part in (*((s, reco[segment == s]) for s in SEGMENTS), ("all", reco))
    }
    return pd.DataFrame.from_dict(rows, orient="index")


def evaluate(
    reco: pd.DataFrame, split: TimeSplit, k_values: Sequence[int] = (5, 10), catalogue_size: int | None = None
) -> pd.DataFrame:
    """Metrics per segment and overall (rows ``cold, light, heavy, all``; one column per metric@k).

    Ranking metrics, novelty and user coverage are means over the segment's users (novelty
    over those with recommendations); ``catalogue_size`` (the denominator of item coverage)
    defaults to the number of items in the training interactions.
    """
    return _segment_table(
        per_user_metrics(reco, split, k_values),
        _item_coverage_table(reco, split, k_values, catalogue_size),
        k_values,
    )


def evaluate_folds(
    recos: Sequence[pd.DataFrame], splits: Sequence[TimeSplit], k_values: Sequence[int] = (5, 10)
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Metrics of several folds pooled over their test users.

    Per-user metrics of all folds are stacked before averaging, so a user who is a test user
    of two folds counts twice (once per fold, with that fold's segment); item coverage, a
    property of a whole set of lists, is the mean of the folds' item coverages. One fold
    gives exactly :func:`evaluate`.

    Parameters
    ----------
    recos : sequence of DataFrame
        Recommendations (``user_id, item_id, rank``) of each fold, in the order of ``splits``.
    splits : sequence of TimeSplit
        The folds (:func:`time_folds`).
    k_values : sequence of int
        Cut-offs of the metrics.

    Returns
    -------
    table : DataFrame
        As :func:`evaluate`; ``n_users`` counts user-fold pairs.
    per_user : DataFrame
        The stacked :func:`per_user_metrics` with columns ``fold`` and ``user_id`` (default index).
    """
    if len(recos) != len(splits) or not splits:
        raise ValueError(f"need one recommendation frame per fold: {len(recos)} for {len(splits)} folds")
    per_user = pd.concat(
        [
            per_user_metrics(reco, split, k_values).reset_index().assign(fold=number)
            for number, (reco, split) in enumerate(zip(recos, splits, strict=True))
        ],
        ignore_index=True,
    )
    coverage = pd.concat(
        [_item_coverage_table(reco, split, k_values, None) for reco, split in zip(recos, splits, strict=True)]
    )
    coverage = coverage.groupby(level=0).mean()
    table = _segment_table(per_user.drop(columns=["user_id", "fold"]), coverage, k_values)
    return table, per_user
