"""Item-to-item recommendations for users: neighbours of the items they touched last.

A user's most recent distinct items each vote for their co-visited neighbours with
``similarity × 0.5 ** (position / recency_half_life)`` (position 0 = the latest item); votes
are summed per candidate. Items already bought and unavailable items are left out, and so are
the recent items themselves (re-showing them is the history source's job in the ranker).
The same logic serves online events in the service: :func:`score_one_user` is the numpy
equivalent of :func:`recent_items`, :func:`score_from_recent_items` and :func:`top_k` for one
user, cheap enough to run per request.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import Field

from recsys.models.base import ModelConfig, Recommender
from recsys.models.dataset import PURCHASE_EVENTS, InteractionData
from recsys.models.similar import covisitation_similar_items
from recsys.models.topk import top_k_per_key, with_ranks


class ItemToItemConfig(ModelConfig):
    """Settings of the user i2i model."""

    n_recent: int = Field(10, ge=1)
    recency_half_life: float = Field(3.0, gt=0)
    n_similar: int = Field(30, ge=1)
    max_session_items: int = Field(50, ge=2)
    covisit_by: Literal["session", "user"] = "session"
    filter_bought: bool = True
    available_only: bool = True


def recent_items(history: pd.DataFrame, n_recent: int) -> pd.DataFrame:
    """The ``n_recent`` latest distinct items per user: ``user_id, item_id, position`` (0 = latest)."""
    latest = history.sort_values("datetime", ascending=False, kind="stable").drop_duplicates(
        ["user_id", "item_id"]
    )
    latest = latest.assign(position=latest.groupby("user_id", sort=False).cumcount())
    return latest.loc[latest["position"] < n_recent, ["user_id", "item_id", "position"]]


# What a user's row in the published histories says of its item.
SEEN, BOUGHT = "seen", "bought"


def user_histories(data: InteractionData, n_recent: int) -> pd.DataFrame:
    """Every user's history as the service scores it at request time.

    Rows ``user_id, item_id, score, rank, relation``: the ``n_recent`` latest distinct items of
    each user (rank 1 = latest), then the items bought earlier; ``relation`` is ``bought`` for
    an item the user bought, else ``seen``; ``score`` is the user's summed event weight on the
    item. The first ``n_recent`` rows of a user are therefore exactly :func:`recent_items`.
    """
    frame = data.interactions
    recent = recent_items(frame, n_recent)
    pairs = (
        frame[["user_id", "item_id", "weight"]]
        .assign(bought=frame["event"].isin(PURCHASE_EVENTS).to_numpy())
        .groupby(["user_id", "item_id"], sort=False, as_index=False)
        .agg(score=("weight", "sum"), bought=("bought", "max"))
    )
    rows = pairs.merge(recent, on=["user_id", "item_id"], how="left")
    rows = rows[rows["position"].notna() | rows["bought"]]
    # Items bought before the recent ones follow them (by item id).
    rows = rows.assign(position=rows["position"].fillna(n_recent))
    rows = rows.sort_values(["user_id", "position", "item_id"], kind="stable")
    rows = with_ranks(rows, "user_id").assign(
        relation=np.where(rows["bought"].to_numpy(dtype=bool), BOUGHT, SEEN),
        score=rows["score"].astype(np.float32),
    )
    return rows[["user_id", "item_id", "score", "rank", "relation"]].reset_index(drop=True)


def score_from_recent_items(
    recent: pd.DataFrame, similar: pd.DataFrame, recency_half_life: float
) -> pd.DataFrame:
    """Summed neighbour votes ``user_id, item_id, score`` of each user's recent items (not ranked)."""
    votes = recent.merge(similar[["item_id", "similar_item_id", "score"]], on="item_id")
    votes["score"] = votes["score"] * np.exp2(-votes["position"] / recency_half_life)
    scored = votes.groupby(["user_id", "similar_item_id"], sort=False, as_index=False)["score"].sum()
    scored = scored.rename(columns={"similar_item_id": "item_id"})
    # A recent item is not its own recommendation.
    seen = recent[["user_id", "item_id"]].assign(_seen=True)
    scored = scored.merge(seen, on=["user_id", "item_id"], how="left")
    return scored.loc[scored["_seen"].isna(), ["user_id", "item_id", "score"]]


def top_k(scored: pd.DataFrame, k: int) -> pd.DataFrame:
    """Best ``k`` rows per user by score, with ``rank`` (ties broken by item id)."""
    ordered = scored.sort_values(
        ["user_id", "score", "item_id"], ascending=[True, False, True], kind="stable"
    )
    return top_k_per_key(ordered, "user_id", k)


def latest_distinct(items: npt.NDArray[np.int64], n_recent: int) -> npt.NDArray[np.int64]:
    """The ``n_recent`` latest distinct items of one user's history given newest first.

    The single-user counterpart of :func:`recent_items`: an item's latest occurrence counts,
    and the position of an item is its index in the result.
    """
    _, first = np.unique(items, return_index=True)
    return items[np.sort(first)][:n_recent]


def score_one_user(
    recent: npt.NDArray[np.int64],
    neighbours: list[tuple[npt.NDArray[Any], npt.NDArray[Any]]],
    recency_half_life: float,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Ranked neighbour votes of one user's recent items, without pandas.

    Gives the rows of ``top_k(score_from_recent_items(...))`` for a single user (same votes,
    same order: score descending, ties by item id), in microseconds instead of the
    milliseconds of the frame operations, so the service can run it per request.

    Parameters
    ----------
    recent : ndarray
        Distinct recent items, newest first (:func:`latest_distinct`).
    neighbours : list of (ndarray, ndarray)
        Similar item ids and similarities of each recent item, aligned with ``recent``
        (empty arrays for an item without neighbours).
    recency_half_life : float
        Positions after which a vote counts half.

    Returns
    -------
    items, scores : ndarray
        Candidate item ids, best first, and their summed votes.
    """
    sizes = [len(similar) for similar, _ in neighbours]
    if sum(sizes) == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    candidates = np.concatenate([similar for similar, _ in neighbours]).astype(np.int64)
    # Same arithmetic as the frame version: a float32 similarity times a float64 decay.
    decay = np.exp2(-np.arange(len(neighbours), dtype=np.float64) / recency_half_life)
    votes = np.concatenate([scores for _, scores in neighbours]) * np.repeat(decay, sizes)
    items, slot = np.unique(candidates, return_inverse=True)
    summed = np.bincount(slot, weights=votes, minlength=items.size).astype(np.float64, copy=False)
    # A recent item is not its own recommendation (``items`` is sorted: a binary search each,
    # cheaper than ``np.isin`` on arrays this small).
    keep = np.ones(items.size, dtype=bool)
    found = np.minimum(np.searchsorted(items, recent), items.size - 1)
    keep[found[items[found] == recent]] = False
    items, summed = items[keep], summed[keep]
    order = np.lexsort((items, -summed))
    return items[order], summed[order]


class ItemToItemModel(Recommender):
    """Co-visitation neighbours of each user's recent items."""

    kind = "i2i"
    config_class = ItemToItemConfig
    config: ItemToItemConfig

    def __init__(self, config: ItemToItemConfig | None = None) -> None:
        super().__init__(config)
        self.similar = pd.DataFrame(columns=["item_id", "similar_item_id", "score", "rank"])

    def _fit(self, data: InteractionData) -> None:
        self.similar = covisitation_similar_items(
            data, self.config.n_similar, self.config.max_session_items, self.config.covisit_by
        )

    def _recommend(self, user_ids: npt.NDArray[np.int64], data: InteractionData, k: int) -> pd.DataFrame:
        history = data.of_users(user_ids)
        scored = score_from_recent_items(
            recent_items(history, self.config.n_recent), self.similar, self.config.recency_half_life
        )
        scored = data.exclude(
            scored, bought=self.config.filter_bought, unavailable=self.config.available_only
        )
        return top_k(scored, k)

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        return {
            column: self.similar[column].to_numpy()
            for column in ("item_id", "similar_item_id", "score", "rank")
        }

    def _restore(self, state: dict[str, npt.NDArray[Any]]) -> None:
        self.similar = pd.DataFrame({name: values for name, values in state.items()})
