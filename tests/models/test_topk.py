"""Ranks and top-k cuts shared by every model."""

from __future__ import annotations

import pandas as pd

from recsys.models.topk import top_k_per_key, with_ranks


def test_ranks_follow_the_frame_order_within_each_key() -> None:
    frame = pd.DataFrame({"user_id": [2, 1, 2, 1, 2], "item_id": [20, 10, 21, 11, 22]})
    ranked = with_ranks(frame, "user_id")
    assert ranked["rank"].tolist() == [1, 1, 2, 2, 3]
    assert ranked["rank"].dtype == "int32"
    assert "rank" not in frame


def test_top_k_keeps_the_first_k_rows_of_each_key() -> None:
    frame = pd.DataFrame({"user_id": [2, 1, 2, 1, 2], "item_id": [20, 10, 21, 11, 22]})
    cut = top_k_per_key(frame, "user_id", 2)
    assert cut.to_dict("list") == {"user_id": [2, 1, 2, 1], "item_id": [20, 10, 21, 11], "rank": [1, 1, 2, 2]}
    assert cut.index.tolist() == [0, 1, 2, 3]
    assert top_k_per_key(frame.iloc[:0], "user_id", 3).empty
