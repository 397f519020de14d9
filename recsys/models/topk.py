"""Ranks and top-k cuts of per-key lists, the one way every model numbers its recommendations."""

from __future__ import annotations

import numpy as np
import pandas as pd


def with_ranks(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    """``frame`` with ``rank``: each row's 1-based position among the rows of its ``key``, in
    the frame's order (sort it best first beforehand)."""
    ranks = frame.groupby(key, sort=False).cumcount().to_numpy(dtype=np.int32) + 1
    return frame.assign(rank=ranks)


def top_k_per_key(frame: pd.DataFrame, key: str, k: int) -> pd.DataFrame:
    """The first ``k`` rows of each ``key`` in the frame's order, ranked (see :func:`with_ranks`)."""
    ranked = with_ranks(frame, key)
    return ranked[ranked["rank"] <= k].reset_index(drop=True)
