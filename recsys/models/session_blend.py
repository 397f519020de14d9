"""The in-session model the service serves: V-SKNN over the published sessions, popularity in
the session's categories, and the blend's weights.

:class:`SessionBlendModel` is a :class:`~recsys.models.sknn.VSKNNModel` (its scores of the
session's own items, the "reminders", are kept apart from the others) holding a
:class:`~recsys.models.session_category.CategoryPopularModel` (the item → category map and each
category's popular items the service needs, published with it), whose configuration also
carries the weights of the served blend (:func:`recsys.service.blending.session_blend`): how
much the reminders, co-visitation neighbours and the category's popular items add to the
session neighbours' scores, how much candidates near the session's price level are favoured,
how long the "recently viewed, not yet bought" strip is and at which rank it starts, and what
share of the list the offline list of a returning visitor keeps. The pipeline chooses those
weights on validation sessions (:mod:`recsys.pipeline.session_blend`) and publishes the model
like the others, so the service loads the sessions and the weights together, as one version.

Memory: the model holds the training window's sessions of 2+ distinct items as a sparse
matrix plus each item's ``sample_size`` latest sessions, about 20 bytes per (session, item)
pair, plus each category's ``top_items`` best items and a price level per item: bounded by the
training window, not by traffic.
"""

from __future__ import annotations

import copy

import numpy as np
import numpy.typing as npt
from pydantic import Field

from recsys.models.dataset import InteractionData
from recsys.models.session_category import CategoryPopularConfig, CategoryPopularModel
from recsys.models.sknn import SessionQueries, SessionRecommender, VSKNNConfig, VSKNNModel
from recsys.storage.object_store import ObjectStore

# The registry name the pipeline publishes the model under and the service loads.
SESSION_BLEND_MODEL = "session_blend"


class SessionBlendWeights(VSKNNConfig):
    """V-SKNN's settings plus the blend's weights (chosen on validation sessions by the pipeline)."""

    remind: bool = Field(True, description="V-SKNN scores the session's own items (see reminder_weight)")
    reminder_weight: float = Field(
        0.0, ge=0, description="V-SKNN's scores of the session's own items kept (0: discovery only)"
    )
    strip_length: int = Field(3, ge=0, description="recently viewed items not yet bought shown (0: none)")
    earlier_length: int = Field(0, ge=0, le=10, description="items viewed before the session shown (0: none)")
    earlier_rank: int = Field(1, ge=1, description="1-based rank where those start (before the strip)")
    extend_length: int = Field(
        0,
        ge=0,
        le=10,
        description="items viewed before the session appended, as older, to V-SKNN's query (0: none)",
    )
    strip_rank: int = Field(8, ge=1, description="1-based rank where the strip starts")
    strip_ends: bool = Field(
        False, description="the strip ends at strip_rank instead (it rises as the session grows)"
    )
    covisitation_weight: float = Field(
        1.0, ge=0, description="co-visitation scores added to V-SKNN's (both scaled to their best)"
    )
    category_weight: float = Field(
        0.0, ge=0, description="popular-in-the-session's-categories scores added (scaled to their best)"
    )
    price_weight: float = Field(
        0.0, ge=0, le=1, description="how much the fused scores favour the session's price level (0: not)"
    )
    price_width: float = Field(1.0, gt=0, description="price-level gap (category sd) where the fit is 0.61")
    category: CategoryPopularConfig = Field(default_factory=CategoryPopularConfig)
    offline_share: float = Field(
        0.5, ge=0, le=1, description="share of slots the returning visitor's offline list takes"
    )
    n_candidates: int = Field(100, ge=1, description="session-neighbour items scored per request")


# The fields of :class:`SessionBlendWeights` that are the blend's (the others are V-SKNN's).
BLEND_WEIGHTS = frozenset(
    {
        "strip_length",
        "strip_rank",
        "strip_ends",
        "earlier_length",
        "earlier_rank",
        "extend_length",
        "reminder_weight",
        "covisitation_weight",
        "category_weight",
        "price_weight",
        "price_width",
        "offline_share",
    }
)


class SessionBlendModel(VSKNNModel):
    """V-SKNN and popularity in the session's categories, fitted on the window's sessions, with
    the served blend's weights in the config."""

    kind = "session_blend"
    config_class = SessionBlendWeights
    config: SessionBlendWeights

    def __init__(self, config: SessionBlendWeights | None = None) -> None:
        super().__init__(config)
        self.category = CategoryPopularModel(self.config.category)

    def _fit(self, data: InteractionData) -> None:
        super()._fit(data)
        self.category.fit(data)

    def _save_parts(self, store: ObjectStore, prefix: str) -> None:
        self.category.save(store, f"{prefix}/category")

    def _load_parts(self, store: ObjectStore, prefix: str) -> None:
        self.category = CategoryPopularModel.load(store, f"{prefix}/category")

    def with_weights(self, weights: SessionBlendWeights) -> SessionBlendModel:
        """This fitted model with other blend weights (V-SKNN's and the category model's settings
        must stay those it was fitted with); the fitted arrays are shared, not copied."""
        fitted = {name: getattr(self.config, name) for name in [*VSKNNConfig.model_fields, "category"]}
        changed = {name for name, value in fitted.items() if getattr(weights, name) != value}
        if changed:
            raise ValueError(f"V-SKNN's settings differ from the fitted model's: {sorted(changed)}")
        variant = copy.copy(self)
        variant.config = weights
        return variant

    def with_category(self, category: CategoryPopularModel) -> SessionBlendModel:
        """This fitted model with another fitted category model (its settings go in the config);
        V-SKNN's fitted arrays are shared, not copied."""
        variant = copy.copy(self)
        variant.category = category
        variant.config = self.config.model_copy(update={"category": category.config})
        return variant

    def neighbours_of(
        self, items_newest_first: npt.ArrayLike, timestamp: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """V-SKNN's items for one running session (newest event first), best first, with their
        scores (the session's own items included when ``remind``)."""
        return self._top(self, SessionQueries.single(items_newest_first, timestamp))

    def category_items_of(
        self, items_newest_first: npt.ArrayLike
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """The items most popular in the categories of the session's latest items, best first."""
        return self._top(self.category, SessionQueries.single(items_newest_first, 0))

    def _top(
        self, model: SessionRecommender, query: SessionQueries
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """The ``n_candidates`` best items of one query: :meth:`recommend_sessions` without a frame."""
        _, items, values = model.top_items(query, self.config.n_candidates)
        return items, values.astype(np.float64)
