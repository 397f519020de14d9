"""Small vectorised random helpers and the array types the generator uses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
ProgressFn = Callable[[str], None]


def sample(rng: np.random.Generator, weights: npt.NDArray[np.floating[Any]], size: int) -> Ints:
    """``size`` indices drawn with replacement, proportionally to ``weights``."""
    cumulative = np.cumsum(weights, dtype=np.float64)
    picks = np.searchsorted(cumulative, rng.random(size) * cumulative[-1], side="right")
    return np.minimum(picks, len(weights) - 1).astype(np.int64)


def sample_without_replacement(rng: np.random.Generator, weights: Floats, size: int) -> Ints:
    """``size`` distinct indices drawn proportionally to ``weights`` (Efraimidis-Spirakis), sorted."""
    positive = weights > 0
    if size > int(positive.sum()):
        raise ValueError(f"cannot draw {size} distinct indices from {int(positive.sum())} candidates")
    keys = np.full(len(weights), -np.inf)
    keys[positive] = np.log(rng.random(int(positive.sum()))) / weights[positive]
    if size == 0:
        return np.zeros(0, dtype=np.int64)
    chosen = np.argpartition(-keys, size - 1)[:size]
    return np.sort(chosen).astype(np.int64)


def flip_states(rng: np.random.Generator, n: int, columns: int, flip: float) -> Ints:
    """0/1 states of ``n`` series over ``columns`` steps that flip with chance ``flip`` per step."""
    flips = rng.random((n, columns)) < flip
    flips[:, 0] = rng.random(n) < 0.5
    return (np.cumsum(flips, axis=1) % 2).astype(np.int64)


def lognormal_ms(rng: np.random.Generator, median_ms: float, sigma: float, size: int) -> Floats:
    """Log-normal durations in milliseconds."""
    return np.exp(rng.normal(np.log(median_ms), sigma, size))
