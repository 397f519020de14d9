"""The in-session model the service serves: V-SKNN over the published sessions plus the blend's weights.

:class:`SessionBlendModel` is a :class:`~recsys.models.sknn.VSKNNModel` (discovery: the
session's own items are not recommended) whose configuration also carries the weights of the
served blend (:func:`recsys.service.blending.session_blend`): how long the "recently viewed,
not yet bought" strip is and at which rank it starts, how much co-visitation neighbours add to
the session neighbours' scores, and what share of the list the offline list of a returning
visitor keeps. The pipeline chooses those weights on validation sessions
(:mod:`recsys.pipeline.session_blend`) and publishes the model like the others, so the service
loads the sessions and the weights together, as one version.

Memory: the model holds the training window's sessions of 2+ distinct items as a sparse
matrix plus each item's ``sample_size`` latest sessions, about 20 bytes per (session, item)
pair: bounded by the training window, not by traffic.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from pydantic import Field

from recsys.models.similar import top_n_per_row
from recsys.models.sknn import SessionQueries, VSKNNConfig, VSKNNModel

# The registry name the pipeline publishes the model under and the service loads.
SESSION_BLEND_MODEL = "session_blend"


class SessionBlendWeights(VSKNNConfig):
    """V-SKNN's settings plus the blend's weights (chosen on validation sessions by the pipeline)."""

    remind: bool = Field(False, description="the session's items come back through the strip, not V-SKNN")
    strip_length: int = Field(3, ge=0, description="recently viewed items not yet bought shown (0: none)")
    strip_rank: int = Field(8, ge=1, description="1-based rank where the strip starts")
    covisitation_weight: float = Field(
        1.0, ge=0, description="co-visitation scores added to V-SKNN's (both scaled to their best)"
    )
    offline_share: float = Field(
        0.5, ge=0, le=1, description="share of slots the returning visitor's offline list takes"
    )
    n_candidates: int = Field(100, ge=1, description="session-neighbour items scored per request")


# The fields of :class:`SessionBlendWeights` that are the blend's (the others are V-SKNN's).
BLEND_WEIGHTS = frozenset({"strip_length", "strip_rank", "covisitation_weight", "offline_share"})


class SessionBlendModel(VSKNNModel):
    """V-SKNN fitted on the window's sessions, with the served blend's weights in its config."""

    kind = "session_blend"
    config_class = SessionBlendWeights
    config: SessionBlendWeights

    def neighbours_of(
        self, items_newest_first: npt.ArrayLike, timestamp: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Session-neighbour items of one running session (newest event first), best first, with
        their scores: :meth:`recommend_sessions` for one prefix without building a frame."""
        scores = self.score_matrix(SessionQueries.single(items_newest_first, timestamp))
        _, cols, values = top_n_per_row(scores, self.config.n_candidates)
        assert self.items is not None
        return self.items.inverse(cols).astype(np.int64), values.astype(np.float64)
