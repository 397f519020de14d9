"""Session replay: prefixes and targets of hand-made sessions, metrics, the online replay."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from recsys.evaluation.sessions import (
    first_hit_ranks,
    recently_seen,
    replay_online,
    session_metrics,
    session_replay,
)

T0 = pd.Timestamp("2015-09-05")


def events(rows: list[tuple[int, int, str, int]]) -> pd.DataFrame:
    """``(user, item, event, minute)`` rows; sessions by a 30-minute gap are given by hand below."""
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "event", "minute"])
    frame["datetime"] = T0 + pd.to_timedelta(frame.pop("minute"), unit="min")
    frame["session_index"] = (frame["datetime"] - T0 >= pd.Timedelta(hours=5)).astype(int)
    return frame


def test_prefixes_and_targets() -> None:
    test = events(
        [
            # Visitor 1: view 10, view 11, view 10 (a reminder), cart 11, view 12, buy 11.
            (1, 10, "view", 0),
            (1, 11, "view", 1),
            (1, 10, "view", 2),
            (1, 11, "addtocart", 3),
            (1, 12, "view", 4),
            (1, 11, "transaction", 5),
            # Visitor 2: a one-event session (not counted), then view 20, view 21 hours later.
            (2, 20, "view", 10),
            (2, 20, "view", 400),
            (2, 21, "view", 401),
        ]
    )
    replay = session_replay(test)
    prefixes = replay.prefixes.set_index("prefix_id")
    # Visitor 1 prefixes: length 1 (next: new view 11; 11 carted later), 2 (next: 10 seen; 11 carted
    # later), 3 (next: cart 11), 4 (next: new view 12; 11 is in the cart already) -> discovery.
    # Visitor 2's second session: length 1 (next: new view 21).
    assert prefixes[["user_id", "length"]].to_numpy().tolist() == [[1, 1], [1, 2], [1, 3], [1, 4], [2, 1]]
    discovery = replay.targets["discovery"]
    assert discovery.merge(replay.prefixes)[["length", "item_id"]].to_numpy().tolist() == [
        [1, 11],
        [4, 12],
        [1, 21],
    ]
    cart = replay.targets["cart"].merge(replay.prefixes)
    assert cart[["user_id", "length", "item_id"]].to_numpy().tolist() == [[1, 1, 11], [1, 2, 11], [1, 3, 11]]
    # The events of the prefix of length 3 of visitor 1, oldest first.
    third = replay.prefix_events()
    assert third[third["prefix_id"] == 2]["item_id"].tolist() == [10, 11, 10]
    assert replay.prefix_events(max_events=2).query("prefix_id == 2")["item_id"].tolist() == [11, 10]


def test_metrics_count_the_first_target_found() -> None:
    replay = session_replay(
        events([(1, 10, "view", 0), (1, 11, "view", 1), (1, 12, "view", 2), (1, 12, "addtocart", 3)])
    )
    # Prefixes: length 1 (discovery 11; cart 12), 2 (discovery 12; cart 12), 3 (cart 12).
    lists = pd.DataFrame(
        {
            "prefix_id": [0, 0, 1, 1, 2],
            "item_id": [12, 11, 10, 12, 7],
            "rank": [1, 2, 1, 12, 1],
        }
    )
    metrics = session_metrics(lists, replay)
    # Discovery: prefix 0 finds 11 at rank 2, prefix 1 finds 12 at rank 12 (only within 20).
    assert metrics["discovery_hr@10"] == pytest.approx(0.5)
    assert metrics["discovery_mrr@10"] == pytest.approx(0.5 / 2)
    assert metrics["discovery_hr@20"] == pytest.approx(1.0)
    assert metrics["discovery_mrr@20"] == pytest.approx((1 / 2 + 1 / 12) / 2)
    # Cart: 12 at rank 1 for prefix 0, rank 12 for prefix 1, missing for prefix 2.
    assert metrics["cart_hr@10"] == pytest.approx(1 / 3)
    assert metrics["cart_mrr@20"] == pytest.approx((1 + 1 / 12) / 3)
    assert metrics["cart_prefixes"] == 3
    assert first_hit_ranks(lists, replay, "cart").tolist() == [1.0, 12.0, math.inf]


def test_recently_seen_and_online_replay_agree_on_a_reminder_recommender() -> None:
    test = events([(1, 10, "view", 0), (1, 11, "view", 1), (1, 10, "view", 2), (1, 12, "addtocart", 3)])
    replay = session_replay(test)
    batch = recently_seen(replay.prefix_events(), k=20)
    seen: dict[int, list[int]] = {}

    def record(user: int, item: int, event: str, moment: pd.Timestamp) -> None:
        seen.setdefault(user, []).insert(0, item)

    def recommend(user: int) -> list[int]:
        return list(dict.fromkeys(seen.get(user, [])))

    online = replay_online(replay, record, recommend)
    pd.testing.assert_frame_equal(online, batch.astype("int64"), check_dtype=False)
    assert batch.query("prefix_id == 2")["item_id"].tolist() == [10, 11]


def test_no_counted_prefix_is_an_error() -> None:
    with pytest.raises(ValueError, match="no test session"):
        session_replay(events([(1, 10, "view", 0), (2, 11, "view", 1)]))
