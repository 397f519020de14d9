"""Popularity-penalised re-ranking: the final step that trades a little accuracy for novelty and coverage.

Method: each candidate of a user's pool (the ranker's top ``pool`` items) gets

    final(u, i) = (1 − λ) · relevance(u, i) + λ · novelty(i)

where ``relevance`` is the ranker's score min–max normalised within the user's pool (best
candidate 1, worst 0) and ``novelty`` the item's self-information −log2(users of i / users),
divided by its largest possible value log2(users) so that it lies in [0, 1] like the
relevance; the top ``k`` by ``final`` are kept. λ (``strength``) is the one knob: 0 keeps the
ranker's order, 1 orders the pool by novelty alone.

Why this method. It is the relevance / long-tail interpolation of Abdollahpouri et al.,
"Managing popularity bias in recommender systems with personalized re-ranking" (FLAIRS 2019),
with xQuAD's head/tail step bonus replaced by a continuous long-tail score (the step bonus
stops counting once one tail item is in the list, so it cannot spread a whole list over the
tail), and is the score-based form of Steck's popularity-discounted ranking ("Item
popularity and recommendation accuracy", RecSys 2011). The targets it serves — Novelty@k and
item coverage@k — are both driven by how popular the recommended items are, which this term
addresses directly; MMR (Carbonell & Goldstein 1998) and calibration (Steck, "Calibrated
recommendations", RecSys 2018) aim at diversity within one list and at a user's category
proportions, and need a greedy pass per position. Re-scoring needs none: the step is one
sort of the pool, vectorised over all users. Measured on the dense shop (validation users
with history): a 100-deep pool reached item coverage@10 0.38 at NDCG@10 0.200, where the
ranker's top 30 re-ordered by rank discount / popularity^α reached 0.36 at 0.194 and stalled
at 0.39 (NDCG 0.15); see benchmarks/results/rerank_*.md for the curves per shop shape.

Users the re-ranker has no history of (the ranker gives them the popularity ranking) keep the
pool's order: penalising popularity would only scramble a popularity list.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import pandas as pd
from pydantic import Field

from recsys.models.base import RECOMMENDATION_COLUMNS, ModelConfig, ModelError
from recsys.models.dataset import InteractionData
from recsys.models.encoders import IdEncoder
from recsys.models.topk import top_k_per_key


class ReRankConfig(ModelConfig):
    """Re-ranking settings.

    Attributes
    ----------
    strength : float
        λ in [0, 1]: weight of the item's novelty against the ranker's relevance (0 = off).
    pool : int
        Depth of the ranker's list that is re-ordered (a deeper pool lets the re-ranking reach
        further into the long tail).
    """

    strength: float = Field(0.3, ge=0.0, le=1.0)
    pool: int = Field(100, ge=1)


class PopularityReRanker:
    """Re-orders each user's candidate pool by relevance blended with item novelty."""

    def __init__(self, config: ReRankConfig | None = None) -> None:
        self.config = config if config is not None else ReRankConfig()
        self.novelty: pd.Series | None = None
        self.users: IdEncoder | None = None

    def fit(self, data: InteractionData) -> Self:
        """Item novelty from the window's users per item (the quantity Novelty@k averages)."""
        interactions = data.interactions
        users_per_item = interactions.groupby("item_id")["user_id"].nunique()
        n_users = max(data.n_users, 2)
        self.novelty = -np.log2(users_per_item / n_users) / np.log2(n_users)
        self.users = data.users
        return self

    def rerank(self, pool: pd.DataFrame, k: int, strength: float | None = None) -> pd.DataFrame:
        """Top ``k`` of every user's pool after re-scoring.

        Parameters
        ----------
        pool : DataFrame
            ``user_id, item_id, score, rank`` of a ranker (rank 1 = best); only ranks up to
            ``config.pool`` (or ``k`` if deeper) are used.
        k : int
            Items per user to return.
        strength : float, optional
            λ for this call (default ``config.strength``).

        Returns
        -------
        DataFrame
            ``user_id, item_id, score, rank``: ``score`` is the blended score (for users the
            re-ranker does not know, the pool's score and order are kept).
        """
        if self.novelty is None or self.users is None:
            raise ModelError("PopularityReRanker is not fitted: call fit() first")
        strength = self.config.strength if strength is None else strength
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"the re-ranking strength must lie in [0, 1], got {strength}")
        pool = pool.loc[pool["rank"] <= max(self.config.pool, k), RECOMMENDATION_COLUMNS]
        scores = pool["score"].to_numpy(dtype=np.float64)
        by_user = pool.groupby("user_id", sort=False)["score"]
        low = by_user.transform("min").to_numpy(dtype=np.float64)
        spread = by_user.transform("max").to_numpy(dtype=np.float64) - low
        relevance = np.divide(scores - low, spread, out=np.ones_like(scores), where=spread > 0)
        # Items outside the window were used by nobody: as novel as an item of one user.
        novelty = pool["item_id"].map(self.novelty).fillna(self.novelty.max()).to_numpy(dtype=np.float64)
        final = (1.0 - strength) * relevance + strength * novelty
        known = self.users.contains(pool["user_id"].to_numpy())
        final = np.where(known, final, scores)
        # Best first per user; ties keep the ranker's order.
        order = np.lexsort((pool["rank"].to_numpy(), -final, pool["user_id"].to_numpy()))
        ranked = pool.iloc[order].assign(score=final[order].astype(np.float32))
        return top_k_per_key(ranked, "user_id", k)[RECOMMENDATION_COLUMNS]
