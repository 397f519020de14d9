"""The popularity-penalised re-ranker on hand-computed examples."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pandas as pd
import pytest

from recsys.evaluation.metrics import item_coverage
from recsys.models.base import ModelError
from recsys.models.dataset import InteractionData
from recsys.models.rerank import PopularityReRanker, ReRankConfig

START = pd.Timestamp("2015-06-01")


def window(pairs: list[tuple[int, int]]) -> InteractionData:
    """Views of (user, item) pairs, one a minute; every item in the catalogue and available."""
    users, items = zip(*pairs, strict=True)
    frame = pd.DataFrame(
        {
            "user_id": np.array(users, dtype=np.int64),
            "item_id": np.array(items, dtype=np.int64),
            "event": "view",
            "weight": 1.0,
            "datetime": START + pd.to_timedelta(np.arange(len(pairs)), unit="min"),
        }
    )
    catalogue = pd.DataFrame({"item_id": np.unique(frame["item_id"]), "available": True})
    return InteractionData.build(frame, catalogue)


def pool_of(rows: list[tuple[int, int, float]]) -> pd.DataFrame:
    """A ranker's lists: (user, item, score) rows, ranked by score within each user."""
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "score"])
    frame = frame.sort_values(["user_id", "score"], ascending=[True, False], kind="stable")
    frame["rank"] = frame.groupby("user_id").cumcount() + 1
    return frame.reset_index(drop=True)


# Four users: item 10 used by all four, item 20 by two, item 30 by one. Novelty, normalised by
# log2(4) = 2: item 10 → 0, item 20 → −log2(2/4)/2 = 0.5, item 30 → −log2(1/4)/2 = 1.
HISTORY = [(1, 10), (2, 10), (3, 10), (4, 10), (1, 20), (2, 20), (3, 30)]


def test_hand_computed_order_and_scores() -> None:
    reranker = PopularityReRanker(ReRankConfig(strength=0.4)).fit(window(HISTORY))
    # User 1: relevance (min-max of 3, 2.5, 1) = 1, 0.75, 0 for items 10, 20, 30.
    pool = pool_of([(1, 10, 3.0), (1, 20, 2.5), (1, 30, 1.0)])
    ranked = reranker.rerank(pool, k=3)
    # 0.6·relevance + 0.4·novelty: item 10 0.6, item 20 0.45 + 0.2 = 0.65, item 30 0.4.
    assert ranked["item_id"].tolist() == [20, 10, 30]
    assert ranked["rank"].tolist() == [1, 2, 3]
    np.testing.assert_allclose(ranked["score"], [0.65, 0.6, 0.4], rtol=1e-6)
    # Stronger: 0.2·relevance + 0.8·novelty = 0.2, 0.55, 0.8 → by novelty.
    assert reranker.rerank(pool, k=2, strength=0.8)["item_id"].tolist() == [30, 20]


def test_unknown_users_keep_the_pool_order_and_deep_ranks_are_ignored() -> None:
    reranker = PopularityReRanker(ReRankConfig(strength=1.0, pool=2)).fit(window(HISTORY))
    pool = pool_of([(99, 10, 3.0), (99, 20, 2.0), (99, 30, 1.0), (1, 10, 3.0), (1, 20, 2.0), (1, 30, 1.0)])
    ranked = reranker.rerank(pool, k=2)
    assert ranked.loc[ranked["user_id"] == 99, "item_id"].tolist() == [10, 20]  # no history: untouched
    # Item 30 (rank 3) is outside the 2-deep pool, so novelty alone puts item 20 first.
    assert ranked.loc[ranked["user_id"] == 1, "item_id"].tolist() == [20, 10]


def test_strength_zero_is_the_identity(clustered: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    data = InteractionData.build(*clustered)
    rng = np.random.default_rng(0)
    users = data.users.ids[:40]
    rows = [
        (int(u), int(i), float(s))
        for u in users
        for i, s in zip(rng.choice(data.item_codes.ids, 30, replace=False), rng.random(30), strict=True)
    ]
    pool = pool_of(rows)
    ranked = PopularityReRanker(ReRankConfig(strength=0.0)).fit(data).rerank(pool, k=10)
    expected = pool[pool["rank"] <= 10].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        ranked[["user_id", "item_id", "rank"]], expected[["user_id", "item_id", "rank"]], check_dtype=False
    )


def test_coverage_grows_with_strength() -> None:
    """Every user's pool: the same five popular items on top, then items of their own, scored lower."""
    n_users = 50
    history = [(u, item) for u in range(n_users) for item in range(5)]
    history += [(u, 100 + u) for u in range(n_users)] + [(u, 200 + u) for u in range(n_users)]
    reranker = PopularityReRanker().fit(window(history))
    rows = [(u, item, 10.0 - item) for u in range(n_users) for item in range(5)]
    rows += [(u, 100 + u, 4.0 + u / 100) for u in range(n_users)] + [
        (u, 200 + u, 1.0) for u in range(n_users)
    ]
    pool = pool_of(rows)
    coverages = [item_coverage(reranker.rerank(pool, 3, strength=s), 3, 105) for s in np.linspace(0, 1, 11)]
    assert coverages[0] == pytest.approx(3 / 105)
    assert all(later >= earlier for earlier, later in pairwise(coverages))
    assert coverages[-1] == pytest.approx((1 + 2 * n_users) / 105)


def test_misuse_is_refused() -> None:
    pool = pool_of([(1, 10, 1.0)])
    with pytest.raises(ModelError, match="not fitted"):
        PopularityReRanker().rerank(pool, 1)
    with pytest.raises(ValueError, match=r"strength must lie in \[0, 1\], got 1.5"):
        PopularityReRanker().fit(window(HISTORY)).rerank(pool, 1, strength=1.5)
