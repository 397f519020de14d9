"""Paired cluster bootstrap of metric ratios."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.evaluation.bootstrap import bootstrap_ratios


def test_ratios_to_each_other_model() -> None:
    rng = np.random.default_rng(0)
    base = rng.random(400)
    values = pd.DataFrame({"ours": 2.0 * base, "a": base, "b": 0.5 * base, "zero": 0.0})
    result = bootstrap_ratios(values, "ours", n_resamples=200, seed=1)

    assert result.index.tolist() == ["a", "b", "zero"]
    # Exact per-row proportions give the same ratio in every resample.
    np.testing.assert_allclose(result.loc["a"], [2.0, 2.0, 2.0])
    np.testing.assert_allclose(result.loc["b"], [4.0, 4.0, 4.0])
    assert np.isinf(result.loc["zero"]).all()


def test_interval_holds_the_point_estimate_and_is_seeded() -> None:
    rng = np.random.default_rng(3)
    values = pd.DataFrame({"ours": rng.random(300), "base": rng.random(300)})
    users = rng.integers(0, 120, 300)
    first = bootstrap_ratios(values, "ours", clusters=users, n_resamples=500, seed=7)
    again = bootstrap_ratios(values, "ours", clusters=users, n_resamples=500, seed=7)
    pd.testing.assert_frame_equal(first, again)
    row = first.loc["base"]
    assert row["ratio"] == pytest.approx(values["ours"].mean() / values["base"].mean())
    assert row["low"] < row["ratio"] < row["high"]


def test_clusters_are_resampled_whole() -> None:
    # Two rows per user with opposite effects: whole-user draws keep each user's mean.
    values = pd.DataFrame({"ours": [1.0, 0.0] * 50, "base": [0.0, 1.0] * 50})
    users = np.repeat(np.arange(50), 2)
    result = bootstrap_ratios(values, "ours", clusters=users, n_resamples=100)
    np.testing.assert_allclose(result.loc["base"], [1.0, 1.0, 1.0])


def test_rejects_a_missing_reference() -> None:
    with pytest.raises(ValueError, match="at least one other"):
        bootstrap_ratios(pd.DataFrame({"ours": [1.0]}), "ours")
    with pytest.raises(ValueError, match="no rows"):
        bootstrap_ratios(pd.DataFrame({"ours": [], "base": []}), "ours")
