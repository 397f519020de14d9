"""Time-based split, user segments and the evaluation table of a set of recommendations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from recsys.evaluation.metrics import (
    RANKING_METRICS,
    item_coverage,
    novelty_per_user,
    ranking_metrics_per_user,
    user_coverage,
)

RELEVANT_EVENTS = ("addtocart", "transaction")
SEGMENTS = ("cold", "light", "heavy")
# Training events of a "light" user: 1..LIGHT_MAX; more is "heavy", none is "cold".
LIGHT_MAX = 4


@dataclass(frozen=True)
class TimeSplit:
    """Interactions split at ``test_start``; ``relevant`` are the test pairs to predict."""

    train: pd.DataFrame
    test: pd.DataFrame
    relevant: pd.DataFrame
    test_start: pd.Timestamp
    segments: pd.Series  # segment name of every test user (index user_id)

    @property
    def test_users(self) -> npt.NDArray[np.int64]:
        """Users with at least one relevant test pair."""
        return self.segments.index.to_numpy(dtype=np.int64)


def segment_of(train_events: pd.Series) -> pd.Series:
    """``cold`` / ``light`` / ``heavy`` from each user's number of training events."""
    labels = np.where(train_events == 0, "cold", np.where(train_events <= LIGHT_MAX, "light", "heavy"))
    return pd.Series(labels, index=train_events.index, name="segment")


def time_split(
    interactions: pd.DataFrame, test_days: float = 7, relevant_events: Sequence[str] = RELEVANT_EVENTS
) -> TimeSplit:
    """Hold out the last ``test_days`` days.

    Raises
    ------
    ValueError
        If the training or the test window is empty, or the test window has no relevant event.
    """
    if interactions.empty:
        raise ValueError("no interactions to split")
    end = interactions["datetime"].max()
    test_start = end - pd.Timedelta(days=test_days)
    train = interactions[interactions["datetime"] < test_start]
    test = interactions[interactions["datetime"] >= test_start]
    if train.empty:
        raise ValueError(f"the training window before {test_start} is empty: use fewer test days")
    relevant = test.loc[test["event"].isin(relevant_events), ["user_id", "item_id"]].drop_duplicates()
    if relevant.empty:
        raise ValueError(f"no {'/'.join(relevant_events)} events after {test_start}: nothing to evaluate")
    test_users = pd.Index(relevant["user_id"].unique(), name="user_id")
    train_events = train.groupby("user_id").size().reindex(test_users, fill_value=0)
    return TimeSplit(
        train=train,
        test=test,
        relevant=relevant.reset_index(drop=True),
        test_start=test_start,
        segments=segment_of(train_events),
    )


def evaluate(
    reco: pd.DataFrame, split: TimeSplit, k_values: Sequence[int] = (5, 10), catalogue_size: int | None = None
) -> pd.DataFrame:
    """Metrics per segment and overall (rows ``cold, light, heavy, all``; one column per metric@k).

    ``catalogue_size`` defaults to the number of items in the training interactions.
    """
    catalogue = catalogue_size if catalogue_size is not None else split.train["item_id"].nunique()
    reco = reco[reco["user_id"].isin(split.segments.index)]
    rows = {}
    for segment in (*SEGMENTS, "all"):
        users = split.segments.index if segment == "all" else split.segments.index[split.segments == segment]
        relevant = split.relevant[split.relevant["user_id"].isin(users)]
        segment_reco = reco[reco["user_id"].isin(users)]
        row: dict[str, float] = {"n_users": float(len(users))}
        for k in k_values:
            per_user = ranking_metrics_per_user(segment_reco, relevant, k)
            for metric in RANKING_METRICS:
                row[f"{metric}@{k}"] = float(per_user[metric].mean()) if len(per_user) else 0.0
            novelty = novelty_per_user(segment_reco, split.train, k)
            row[f"novelty@{k}"] = float(novelty.mean()) if len(novelty) else 0.0
            row[f"item_coverage@{k}"] = item_coverage(segment_reco, k, catalogue)
            row[f"user_coverage@{k}"] = user_coverage(segment_reco, users.to_numpy(), k)
        rows[segment] = row
    return pd.DataFrame.from_dict(rows, orient="index")
