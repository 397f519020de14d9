"""Cosine neighbours (`recsys.models.cosine_neighbours`): exact ones, and the IVF index's recall."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from recsys.models.cosine_neighbours import cosine_neighbours, exact_neighbours, unit_rows


def clustered_vectors(rng: np.random.Generator, n: int, factors: int = 16) -> npt.NDArray[np.float32]:
    """Rows around 50 directions with long-tailed norms, like item factors."""
    centres = rng.normal(size=(50, factors))
    rows = centres[rng.integers(0, 50, n)] + 0.6 * rng.normal(size=(n, factors))
    return (rows * rng.pareto(1.5, size=(n, 1))).astype(np.float32)


def true_recall(found: npt.NDArray[np.int64], truth: npt.NDArray[np.int64]) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


def test_small_catalogues_get_the_exact_cosine_neighbours() -> None:
    rng = np.random.default_rng(0)
    vectors = clustered_vectors(rng, 500)
    queries = np.arange(0, 500, 3)
    ids, scores, search = cosine_neighbours(vectors, queries, 10)
    assert search.exact
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    brute = unit[queries] @ unit.T
    expected = np.sort(brute, axis=1)[:, ::-1][:, :10]
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.take_along_axis(brute, ids, axis=1), scores, rtol=1e-5, atol=1e-5)
    assert (ids[:, 0] == queries).all()  # an item is its own nearest neighbour


@pytest.mark.parametrize("min_recall", [0.8, 0.95])
def test_the_index_reaches_the_recall_it_reports_on_every_query(min_recall: float) -> None:
    rng = np.random.default_rng(1)
    vectors = clustered_vectors(rng, 20_000)
    queries = rng.choice(20_000, 4_000, replace=False)
    ids, scores, search = cosine_neighbours(
        vectors, queries, 21, exact_max_items=1_000, min_recall=min_recall
    )
    truth, _ = exact_neighbours(unit_rows(vectors), queries, 21)
    assert not search.exact
    assert search.recall >= min_recall
    assert search.probes < search.cells  # it searched less than everything
    # The sample's recall stands for all queries (within sampling noise).
    assert true_recall(ids, truth) >= min_recall - 0.02
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first


def test_asking_for_full_recall_probes_every_cell_and_finds_the_exact_neighbours() -> None:
    rng = np.random.default_rng(2)
    vectors = clustered_vectors(rng, 6_000)
    queries = rng.choice(6_000, 3_000, replace=False)
    ids, _, search = cosine_neighbours(vectors, queries, 5, exact_max_items=1_000, min_recall=1.0)
    truth, _ = exact_neighbours(unit_rows(vectors), queries, 5)
    assert search.recall == 1.0
    assert true_recall(ids, truth) > 0.999  # ties between equal scores may swap
