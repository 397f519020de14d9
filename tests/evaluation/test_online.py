"""Session replay of the online recommenders on a hand-made test window."""

from __future__ import annotations

import pandas as pd
import pytest

from recsys.evaluation.online import replay_targets, session_replay


def events(rows: list[tuple[int, int, str, str, int]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "event", "datetime", "session_index"])
    frame["datetime"] = pd.to_datetime(frame["datetime"])
    return frame


TEST = events(
    [
        (1, 10, "view", "2015-09-01 10:00", 0),
        (1, 11, "view", "2015-09-01 10:01", 0),
        (1, 11, "addtocart", "2015-09-01 10:02", 0),  # target 11: seen before, neighbour of 10
        (2, 20, "view", "2015-09-01 11:00", 0),
        (2, 30, "addtocart", "2015-09-01 11:01", 0),  # target 30: neither seen nor a neighbour
        (3, 40, "addtocart", "2015-09-01 12:00", 0),  # no earlier event: not a target
        (4, 10, "view", "2015-09-01 09:00", 0),
        (4, 12, "transaction", "2015-09-01 13:00", 1),  # earlier event in another session: not a target
    ]
)
SIMILAR = pd.DataFrame({"item_id": [10, 10, 20], "similar_item_id": [11, 12, 21], "score": [0.9, 0.5, 0.7]})


def test_targets_need_an_earlier_event_in_the_same_session() -> None:
    targets, history = replay_targets(TEST)
    assert targets["item_id"].tolist() == [11, 30]
    first = targets["target_id"].iloc[0]
    assert sorted(history.loc[history["user_id"] == first, "item_id"]) == [10, 11]


def test_hit_rate_and_mrr_per_variant() -> None:
    result = session_replay(TEST, SIMILAR, k=2)
    # Neighbours only: 11 is itself a recent item for target 1, so it is left out -> no hit.
    assert result.loc["i2i", "hit_rate@2"] == 0.0
    # Recent first: target 1 sees [11, 10] newest first -> 11 at rank 1; target 2 misses.
    assert result.loc["recent_then_i2i", "hit_rate@2"] == pytest.approx(0.5)
    assert result.loc["recent_then_i2i", "mrr@2"] == pytest.approx(0.5)
    assert result["targets"].tolist() == [2.0, 2.0]


def test_no_target_is_an_error() -> None:
    with pytest.raises(ValueError, match="no test session has an add-to-cart/purchase"):
        session_replay(TEST[TEST["event"] == "view"], SIMILAR)
