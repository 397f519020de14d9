"""Default (cold-start) recommendations: time-decayed, event-weighted popularity."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import Field

from recsys.models.base import ModelConfig, Recommender
from recsys.models.dataset import InteractionData

# Users whose bought-item filter is evaluated at once (bounds a dense users × candidates mask).
_USER_BATCH = 65_536


class PopularConfig(ModelConfig):
    """Popularity settings.

    Attributes
    ----------
    half_life_days : float or None
        An event counts half as much after this many days; ``None`` disables the decay.
    available_only : bool
        Leave out items whose latest availability is 0.
    filter_bought : bool
        Leave out items the user has already bought.
    per_category : bool
        Interleave root categories (the best item of each, then the second best...) for diversity.
    """

    half_life_days: float | None = Field(7.0, gt=0)
    available_only: bool = True
    filter_bought: bool = True
    per_category: bool = False


class PopularModel(Recommender):
    """The same ranked list for everybody (minus what each user bought)."""

    kind = "popular"
    config_class = PopularConfig
    config: PopularConfig

    def __init__(self, config: PopularConfig | None = None) -> None:
        super().__init__(config)
        self.item_scores: npt.NDArray[np.float32] = np.empty(0, dtype=np.float32)

    def _fit(self, data: InteractionData) -> None:
        frame = data.interactions
        weights = frame["weight"].to_numpy(dtype=np.float64)
        if self.config.half_life_days is not None:
            age_days = (data.now - frame["datetime"]).dt.total_seconds().to_numpy() / 86_400
            weights = weights * np.exp2(-age_days / self.config.half_life_days)
        scores = np.bincount(frame["item_code"].to_numpy(), weights=weights, minlength=data.n_items)
        self.item_scores = scores.astype(np.float32)

    def ranking(self, data: InteractionData, k: int | None = None) -> pd.DataFrame:
        """The ranked list itself: ``item_id, score, rank`` (availability from ``data``'s catalogue)."""
        assert self.items is not None
        ranked = pd.DataFrame({"item_id": self.items.ids, "score": self.item_scores})
        ranked = ranked[ranked["score"] > 0]
        if self.config.available_only:
            ranked = ranked[~data.is_unavailable(ranked["item_id"].to_numpy())]
        ranked = ranked.sort_values(["score", "item_id"], ascending=[False, True], kind="stable")
        if self.config.per_category:
            roots = data.items["root_category_id"].reindex(ranked["item_id"].to_numpy()).to_numpy()
            position = ranked.assign(root=roots).groupby("root", dropna=False, sort=False).cumcount()
            ranked = (
                ranked.assign(_turn=position.to_numpy())
                .sort_values("_turn", kind="stable")
                .drop(columns="_turn")
            )
        if k is not None:
            ranked = ranked.head(k)
        return ranked.assign(rank=np.arange(1, len(ranked) + 1, dtype=np.int32)).reset_index(drop=True)

    def _recommend(self, user_ids: npt.NDArray[np.int64], data: InteractionData, k: int) -> pd.DataFrame:
        # A user can lose at most this many of the top items to the bought filter.
        most_bought = int(np.diff(data.purchases().indptr).max(initial=0)) if self.config.filter_bought else 0
        ranked = self.ranking(data, k + most_bought)
        top_items = ranked["item_id"].to_numpy()
        top_scores = ranked["score"].to_numpy(dtype=np.float32)
        frames = []
        for start in range(0, user_ids.size, _USER_BATCH):
            users = user_ids[start : start + _USER_BATCH]
            keep = np.ones((users.size, top_items.size), dtype=bool)
            if most_bought:
                pairs = np.repeat(users, top_items.size), np.tile(top_items, users.size)
                keep = ~data.has_bought(*pairs).reshape(keep.shape)
            # Stable sort puts kept candidates first, in ranking order.
            order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
            kept = np.take_along_axis(keep, order, axis=1)
            frames.append(
                pd.DataFrame(
                    {
                        "user_id": np.repeat(users, order.shape[1])[kept.ravel()],
                        "item_id": top_items[order][kept],
                        "score": top_scores[order][kept],
                        "rank": np.broadcast_to(
                            np.arange(1, order.shape[1] + 1, dtype=np.int32), order.shape
                        )[kept],
                    }
                )
            )
        return pd.concat(frames, ignore_index=True)

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        return {"item_scores": self.item_scores}

    def _restore(self, state: dict[str, npt.NDArray[Any]]) -> None:
        self.item_scores = state["item_scores"].astype(np.float32)
