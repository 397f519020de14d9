"""Item-based collaborative filtering: the items a user touched vote for their nearest items.

Two items are similar by the cosine of their columns in the weighted user × item matrix;
each item keeps its ``neighbours`` most similar items (as implicit's ``CosineRecommender``). A
user's score for an item is the sum, over the items in their history, of the interaction
weight times the similarity. An item is its own nearest neighbour, so the user's own items
compete with their neighbours: on shop data, an item viewed is the likeliest next
add-to-cart, and this model ranks the user's items by how well they agree with the rest of
the history. Scoring is one sparse product per batch of users and a vectorised top-k per row
(implicit's own batch ``recommend`` loops over users in Python).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp
from implicit.nearest_neighbours import all_pairs_knn, normalize
from pydantic import Field

from recsys.models.base import RECOMMENDATION_COLUMNS, ModelConfig, Recommender
from recsys.models.dataset import InteractionData
from recsys.models.similar import top_n_per_row
from recsys.models.topk import with_ranks

# Users scored per sparse product: bounds the users × items score block.
_USER_BATCH = 20_000


class ItemKNNConfig(ModelConfig):
    """Settings of the item-kNN model."""

    neighbours: int = Field(50, ge=1, description="similar items kept per item")
    filter_bought: bool = True
    available_only: bool = True


class ItemKNNModel(Recommender):
    """Weighted votes of the user's items for their cosine-nearest items."""

    kind = "itemknn"
    config_class = ItemKNNConfig
    config: ItemKNNConfig

    def __init__(self, config: ItemKNNConfig | None = None) -> None:
        super().__init__(config)
        self.similarity = sp.csr_matrix((0, 0), dtype=np.float32)

    def _fit(self, data: InteractionData) -> None:
        # implicit's CosineRecommender.fit, with the normalised matrix handed over as CSR.
        unit_columns = sp.csr_matrix(normalize(data.matrix().T).T)
        similarity = all_pairs_knn(unit_columns, self.config.neighbours, show_progress=False, num_threads=0)
        self.similarity = sp.csr_matrix(similarity, dtype=np.float32)

    def _recommend(self, user_ids: npt.NDArray[np.int64], data: InteractionData, k: int) -> pd.DataFrame:
        assert self.items is not None
        served = user_ids[data.users.contains(user_ids)]
        rows = data.users.transform(served)
        history = self._to_model_items(data, data.matrix()[rows])
        unavailable = data.is_unavailable(self.items.ids) & self.config.available_only
        frames = []
        for start in range(0, served.size, _USER_BATCH):
            stop = min(start + _USER_BATCH, served.size)
            scores = (history[start:stop] @ self.similarity).tocoo()
            keep = ~unavailable[scores.col]
            if self.config.filter_bought:
                keep &= ~data.has_bought(served[start + scores.row], self.items.inverse(scores.col))
            block = sp.csr_matrix(
                (scores.data[keep], (scores.row[keep], scores.col[keep])), shape=scores.shape
            )
            users, items, values = top_n_per_row(block, k)
            frames.append(
                pd.DataFrame(
                    {
                        "user_id": served[start + users],
                        "item_id": self.items.inverse(items),
                        "score": values,
                    }
                )
            )
        if not frames:
            return pd.DataFrame({c: pd.Series(dtype="int64") for c in RECOMMENDATION_COLUMNS})
        result = pd.concat(frames, ignore_index=True)
        return with_ranks(result, "user_id")

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        matrix = self.similarity
        return {
            "data": matrix.data,
            "indices": matrix.indices,
            "indptr": matrix.indptr,
            "shape": np.array(matrix.shape, dtype=np.int64),
        }

    def _restore(self, state: dict[str, npt.NDArray[Any]]) -> None:
        shape = tuple(int(n) for n in state["shape"])
        self.similarity = sp.csr_matrix(
            (state["data"].astype(np.float32), state["indices"], state["indptr"]), shape=shape
        )
