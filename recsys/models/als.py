"""Personalised recommendations with implicit's Alternating Least Squares.

The user × item matrix holds summed event weights; ALS reads ``alpha × weight`` as the
confidence of a positive preference. The GPU implementation is used when ``use_gpu`` is set
and CUDA is present; factors are always kept (and saved) as CPU arrays.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from pydantic import Field

from recsys.models.base import ModelConfig, Recommender
from recsys.models.cosine_neighbours import NeighbourSearch, cosine_neighbours
from recsys.models.dataset import InteractionData
from recsys.models.inner_product_topk import InnerProductTopK
from recsys.models.topk import top_k_per_key
from recsys.progress import ProgressLog

logger = logging.getLogger(__name__)

# Users scored per top-k call: bounds the dense users × items score block.
_USER_BATCH = 4096
# implicit's top-k gives filtered-out items the lowest float32 score.
_FILTERED = np.float32(-1e30)


class ALSConfig(ModelConfig):
    """ALS hyper-parameters (see ``implicit.als.AlternatingLeastSquares``)."""

    factors: int = Field(64, ge=1)
    regularization: float = Field(0.05, ge=0)
    alpha: float = Field(10.0, gt=0)
    iterations: int = Field(15, ge=1)
    random_state: int = 42
    use_gpu: bool = False
    filter_bought: bool = True
    available_only: bool = True
    # Similar items: exact up to this many items, an index with at least this recall above.
    similar_exact_max_items: int = Field(50_000, ge=1)
    similar_min_recall: float = Field(0.95, gt=0, le=1)


class ALSModel(Recommender):
    """Matrix factorisation of weighted interactions; new users are folded in from their history."""

    kind = "als"
    config_class = ALSConfig
    config: ALSConfig

    def __init__(self, config: ALSConfig | None = None) -> None:
        super().__init__(config)
        self.user_factors: npt.NDArray[np.float32] = np.empty((0, 0), dtype=np.float32)
        self.item_factors: npt.NDArray[np.float32] = np.empty((0, 0), dtype=np.float32)
        # How the last similar_items call searched (exact, or the index's probes and recall).
        self.similar_search: NeighbourSearch | None = None

    def _estimator(self) -> Any:
        params = {
            "factors": self.config.factors,
            "regularization": self.config.regularization,
            "alpha": self.config.alpha,
            "iterations": self.config.iterations,
            "random_state": self.config.random_state,
        }
        if self.config.use_gpu:
            import implicit.gpu

            if implicit.gpu.HAS_CUDA:
                from implicit.gpu.als import AlternatingLeastSquares as GpuALS

                return GpuALS(**params)
            logger.warning("use_gpu is set but CUDA is not available: training on the CPU")
        return AlternatingLeastSquares(**params)

    def _fit(self, data: InteractionData) -> None:
        estimator = self._estimator()
        progress = ProgressLog(logger, self.kind, self.config.iterations)
        # implicit calls back after each iteration (0-based) with its seconds and loss.
        estimator.fit(
            data.matrix(),
            show_progress=False,
            callback=lambda iteration, _seconds, _loss: progress.update(iteration + 1),
        )
        if hasattr(estimator, "to_cpu"):
            estimator = estimator.to_cpu()
        self.user_factors = np.ascontiguousarray(estimator.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(estimator.item_factors, dtype=np.float32)

    def _cpu_estimator(self) -> AlternatingLeastSquares:
        """A CPU estimator around the fitted factors (for folding in users)."""
        estimator = AlternatingLeastSquares(
            factors=self.config.factors,
            regularization=self.config.regularization,
            alpha=self.config.alpha,
            iterations=self.config.iterations,
        )
        estimator.user_factors = self.user_factors
        estimator.item_factors = self.item_factors
        return estimator

    def user_vectors(
        self, user_ids: npt.NDArray[np.int64], data: InteractionData
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Factors of the users this model can serve: trained ones, and new ones with history in ``data``.

        Returns the served user ids and their factor rows.
        """
        assert self.users is not None
        codes = self.users.transform(user_ids, unknown="mask")
        known = codes >= 0
        served = [user_ids[known]]
        vectors = [self.user_factors[codes[known]]]
        new_users = user_ids[~known & data.users.contains(user_ids)]
        if new_users.size:
            history = self._to_model_items(data, data.matrix()[data.users.transform(new_users)])
            has_history = np.diff(history.indptr) > 0
            if has_history.any():
                # Folding in: each user's least squares with the items fixed (implicit's recalculate_user).
                folded = self._cpu_estimator().recalculate_user(
                    np.arange(int(has_history.sum())), history[has_history]
                )
                served.append(new_users[has_history])
                vectors.append(np.asarray(folded, dtype=np.float32).reshape(-1, self.item_factors.shape[1]))
        return np.concatenate(served), np.concatenate(vectors).astype(np.float32)

    def _recommend(self, user_ids: npt.NDArray[np.int64], data: InteractionData, k: int) -> pd.DataFrame:
        assert self.items is not None
        served, vectors = self.user_vectors(user_ids, data)
        bought = self._bought_by(served, data)
        index = InnerProductTopK(self.item_factors, excluded=self._unavailable(data))
        frames = []
        for start in range(0, served.size, _USER_BATCH):
            stop = start + _USER_BATCH
            ids, scores = index.query(
                vectors[start:stop], k, filter_query_items=None if bought is None else bought[start:stop]
            )
            valid = scores > _FILTERED
            rows = np.repeat(served[start:stop], ids.shape[1]).reshape(ids.shape)
            ranks = np.broadcast_to(np.arange(1, ids.shape[1] + 1, dtype=np.int32), ids.shape)
            frames.append(
                pd.DataFrame(
                    {
                        "user_id": rows[valid],
                        "item_id": self.items.inverse(ids[valid]),
                        "score": scores[valid].astype(np.float32),
                        "rank": ranks[valid],
                    }
                )
            )
        return (
            pd.concat(frames, ignore_index=True)
            if frames
            else pd.DataFrame(columns=["user_id", "item_id", "score", "rank"])
        )

    def _bought_by(self, users: npt.NDArray[np.int64], data: InteractionData) -> sp.csr_matrix | None:
        if not self.config.filter_bought:
            return None
        assert self.items is not None
        rows = data.users.transform(users, unknown="mask")
        purchases = data.purchases()
        block = sp.csr_matrix((users.size, data.n_items), dtype=np.float32)
        if (rows >= 0).any():
            picked = purchases[np.where(rows >= 0, rows, 0)]
            picked = sp.diags((rows >= 0).astype(np.float32)) @ picked  # zero rows of unknown users
            block = sp.csr_matrix(picked)
        return self._to_model_items(data, block)

    def _unavailable(self, data: InteractionData) -> npt.NDArray[np.int32] | None:
        if not self.config.available_only:
            return None
        assert self.items is not None
        codes = np.flatnonzero(data.is_unavailable(self.items.ids)).astype(np.int32)
        return codes if codes.size else None

    def similar_items(self, item_ids: npt.NDArray[np.int64], n: int) -> pd.DataFrame:
        """Cosine-nearest items in factor space: ``item_id, similar_item_id, score, rank``.

        Exact up to ``similar_exact_max_items`` items, approximate above (an IVF index whose
        recall is measured against exact neighbours, see :func:`cosine_neighbours`).
        """
        assert self.items is not None
        codes = self.items.transform(item_ids, unknown="mask")
        codes = codes[codes >= 0]
        ids, scores, self.similar_search = cosine_neighbours(
            self.item_factors,
            codes,
            n + 1,
            exact_max_items=self.config.similar_exact_max_items,
            min_recall=self.config.similar_min_recall,
        )
        source = np.repeat(codes, ids.shape[1]).reshape(ids.shape)
        valid = (ids != source) & (ids >= 0) & (scores > _FILTERED)
        result = pd.DataFrame(
            {
                "item_id": self.items.inverse(source[valid]),
                "similar_item_id": self.items.inverse(ids[valid]),
                "score": scores[valid].astype(np.float32),
            }
        )
        return top_k_per_key(result, "item_id", n)

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        return {"user_factors": self.user_factors, "item_factors": self.item_factors}

    def _restore(self, state: dict[str, npt.NDArray[Any]]) -> None:
        self.user_factors = state["user_factors"].astype(np.float32)
        self.item_factors = state["item_factors"].astype(np.float32)
