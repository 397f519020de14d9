"""The norm-pruned top-k (``recsys.models.inner_product_topk``) equals implicit's brute force."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
import scipy.sparse as sp
from implicit.cpu.topk import topk

from recsys.models.inner_product_topk import InnerProductTopK

FILTERED = -1e30


def skewed_factors(rng: np.random.Generator, n: int, factors: int = 16) -> npt.NDArray[np.float32]:
    """Rows with long-tailed norms, like the item factors of matrix factorisation."""
    directions = rng.normal(size=(n, factors))
    return (directions * rng.pareto(1.5, size=(n, 1))).astype(np.float32)


def valid_lists(ids: npt.NDArray[np.int64], scores: npt.NDArray[np.float32]) -> list[dict[int, float]]:
    return [
        {int(i): float(s) for i, s in zip(row_ids, row_scores, strict=True) if s > FILTERED}
        for row_ids, row_scores in zip(ids, scores, strict=True)
    ]


def assert_same_lists(
    got: tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]],
    expected: tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]],
) -> None:
    """Same items with the same scores per row (the order of equal scores may differ)."""
    for mine, theirs in zip(valid_lists(*got), valid_lists(*expected), strict=True):
        assert mine.keys() == theirs.keys()
        np.testing.assert_allclose([mine[i] for i in theirs], list(theirs.values()), rtol=1e-5, atol=1e-5)
    # Best first.
    assert np.all(np.diff(got[1], axis=1) <= 0)


@pytest.mark.parametrize("k", [1, 10, 50])
def test_equals_brute_force_with_exclusions_and_per_query_filters(k: int) -> None:
    rng = np.random.default_rng(k)
    items = skewed_factors(rng, 5_000)
    queries = skewed_factors(rng, 300)
    excluded = rng.choice(5_000, 400, replace=False).astype(np.int32)
    bought = sp.random(300, 5_000, density=0.01, format="csr", random_state=k, dtype=np.float32)
    bought.data[:] = 1.0
    index = InnerProductTopK(items, excluded=excluded)
    got = index.query(queries, k, filter_query_items=bought)
    expected = topk(items, queries, k, filter_query_items=bought, filter_items=excluded, num_threads=0)
    assert_same_lists(got, expected)
    # The bound spared most of the scores brute force computes.
    assert index.scored_pairs < 0.5 * queries.shape[0] * (5_000 - 400)


def test_queries_whose_best_items_are_small_still_get_the_exact_list() -> None:
    # Queries orthogonal to the large items: their top k lies deep in the norm order.
    rng = np.random.default_rng(1)
    items = skewed_factors(rng, 3_000, factors=8)
    items[:, 0] = np.abs(items[:, 0]) * 100  # large norms along the first factor only
    queries = rng.normal(size=(50, 8)).astype(np.float32)
    queries[:, 0] = -1.0  # every large item scores badly
    index = InnerProductTopK(items)
    assert_same_lists(index.query(queries, 20), topk(items, queries, 20, num_threads=0))
    assert index.scored_pairs >= 50 * 3_000  # the bound never held: the whole catalogue was scored


def test_a_row_with_fewer_items_than_k_is_padded_like_brute_force() -> None:
    rng = np.random.default_rng(2)
    items = skewed_factors(rng, 40)
    queries = skewed_factors(rng, 3)
    bought = sp.csr_matrix((np.ones(35), (np.zeros(35, dtype=int), np.arange(35))), shape=(3, 40))
    ids, scores = InnerProductTopK(items, excluded=np.array([39], dtype=np.int32)).query(
        queries, 10, filter_query_items=bought
    )
    assert (scores[0] > FILTERED).sum() == 4  # 40 items - 35 bought - 1 excluded
    assert set(ids[0][scores[0] > FILTERED]) == {35, 36, 37, 38}
    assert (scores[1:] > FILTERED).all()


def test_everything_excluded_gives_empty_lists() -> None:
    items = skewed_factors(np.random.default_rng(3), 5)
    ids, scores = InnerProductTopK(items, excluded=np.arange(5, dtype=np.int32)).query(items, 3)
    assert ids.shape == scores.shape == (5, 0)
