"""Offline metrics at k, per user and averaged, with RecTools' definitions.

Inputs are frames: recommendations ``user_id, item_id, rank`` (rank 1 = best) and relevant
test pairs ``user_id, item_id`` (one row per pair). Ranking metrics are computed for every
user with relevant items; a user without recommendations scores 0 (never dropped).

- ``precision@k`` = hits in the top k / k
- ``recall@k`` = hits in the top k / relevant items
- ``ndcg@k`` = Σ_hits 1/log2(rank+1) / Σ_{i=1..k} 1/log2(i+1) (RecTools' default IDCG: all k relevant)
- ``map@k`` = Σ_hits precision@rank / relevant items (RecTools' default)
- ``novelty@k`` = mean over a user's top-k of −log2(users of the item / users), from the
  training interactions, averaged over users with recommendations; unseen items count as
  used by one user (RecTools' ``MeanInvUserFreq``)
- ``item_coverage@k`` = distinct items in all top-k lists / catalogue size (RecTools'
  ``CatalogCoverage(k, normalize=True)``)
- ``user_coverage@k`` = share of test users who got at least k recommendations. RecTools has no
  single metric for this: its ``CoveredUsers`` counts a test user with at least one
  recommendation in the top k, and ``SufficientReco`` the users *of the recommendation table*
  with a full top k. Ours is their conjunction over the test users (a user served a short list
  is not covered: the service would have to fill it with fallbacks), so it equals
  ``CoveredUsers`` at k = 1 and whenever every list is full, and is lower otherwise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

RANKING_METRICS = ("precision", "recall", "ndcg", "map")


def _top(reco: pd.DataFrame, k: int) -> pd.DataFrame:
    return reco.loc[reco["rank"] <= k, ["user_id", "item_id", "rank"]]


def ranking_metrics_per_user(reco: pd.DataFrame, relevant: pd.DataFrame, k: int) -> pd.DataFrame:
    """Precision, recall, NDCG and MAP at ``k`` for every user of ``relevant`` (index: user_id)."""
    n_relevant = relevant.groupby("user_id").size().rename("n_relevant")
    hits = _top(reco, k).merge(relevant[["user_id", "item_id"]], on=["user_id", "item_id"])
    hits = hits.sort_values(["user_id", "rank"], kind="stable")
    hits["gain"] = 1.0 / np.log2(hits["rank"].to_numpy(dtype=np.float64) + 1)
    hits["precision_at_rank"] = (hits.groupby("user_id").cumcount() + 1) / hits["rank"]
    per_user = hits.groupby("user_id").agg(
        n_hits=("item_id", "size"), dcg=("gain", "sum"), sum_precision=("precision_at_rank", "sum")
    )
    frame = n_relevant.to_frame().join(per_user).fillna(0.0)
    ideal = float(np.sum(1.0 / np.log2(np.arange(1, k + 1) + 1.0)))
    return pd.DataFrame(
        {
            "precision": frame["n_hits"] / k,
            "recall": frame["n_hits"] / frame["n_relevant"],
            "ndcg": frame["dcg"] / ideal,
            "map": frame["sum_precision"] / frame["n_relevant"],
        },
        index=frame.index,
    )


def novelty_per_user(reco: pd.DataFrame, train: pd.DataFrame, k: int) -> pd.Series:
    """Mean inverse user frequency of each user's top-``k`` (index: users with recommendations)."""
    n_users = train["user_id"].nunique()
    users_per_item = train.groupby("item_id")["user_id"].nunique()
    top = _top(reco, k)
    frequency = top["item_id"].map(users_per_item).fillna(1.0).to_numpy(dtype=np.float64)
    novelty = pd.Series(-np.log2(frequency / n_users), index=top.index)
    return novelty.groupby(top["user_id"]).mean()


def item_coverage(reco: pd.DataFrame, k: int, catalogue_size: int) -> float:
    """Share of the catalogue that appears in some top-``k`` list."""
    return float(_top(reco, k)["item_id"].nunique() / catalogue_size) if catalogue_size else 0.0


def recommended_per_user(reco: pd.DataFrame, k: int) -> pd.Series:
    """Number of recommendations in each user's top ``k`` (index: users with recommendations)."""
    return _top(reco, k).groupby("user_id").size()


def user_coverage(reco: pd.DataFrame, users: pd.Index | np.ndarray, k: int) -> float:
    """Share of ``users`` who got at least ``k`` recommendations."""
    counts = recommended_per_user(reco, k)
    served = counts[counts >= k].index
    return float(np.isin(np.asarray(users), served.to_numpy()).mean()) if len(users) else 0.0
