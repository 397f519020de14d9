"""Cosine nearest neighbours of factor vectors: exact for small catalogues, an IVF index for large ones.

Exact neighbours of every item cost items × items, which grows with the square of a shop. Above
``exact_max_items`` vectors, a faiss inverted-file index (``IndexIVFFlat``, as implicit's own
``implicit.ann.faiss.FaissModel`` builds for ``similar_items``) visits only the ``nprobe`` cells
nearest to a query out of ``≈ 4·√n`` (faiss's guideline for the number of cells). The number
of probes is not a constant: it is doubled until the neighbours of a sample of the queries
agree with the exact ones on at least ``min_recall`` of their items, so the data decides how
much searching its catalogue needs, and the recall reached is reported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from implicit.cpu.topk import topk

logger = logging.getLogger(__name__)

# Queries whose exact neighbours check the index's recall.
_RECALL_SAMPLE = 2_000
# Queries per exact top-k call: bounds the dense queries × items score block.
_EXACT_BATCH = 4096
# k-means training points per cell (faiss warns below 39): its cost stays linear in the items.
_TRAIN_POINTS_PER_CELL = 64


@dataclass(frozen=True)
class NeighbourSearch:
    """How the neighbours were found: ``exact``, or the index's cells, probes and measured recall."""

    exact: bool
    cells: int = 0
    probes: int = 0
    recall: float = 1.0


def unit_rows(vectors: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """Rows scaled to length 1 (zero rows stay zero), as float32."""
    norms = np.linalg.norm(vectors, axis=1)
    return (vectors / np.maximum(norms, 1e-12)[:, None]).astype(np.float32)


def exact_neighbours(
    unit: npt.NDArray[np.float32], queries: npt.NDArray[np.int64], k: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """The ``k`` rows of ``unit`` most similar to each row of ``queries`` (itself included)."""
    ids, scores = [], []
    for start in range(0, queries.size, _EXACT_BATCH):
        batch_ids, batch_scores = topk(unit, unit[queries[start : start + _EXACT_BATCH]], k, num_threads=0)
        ids.append(batch_ids)
        scores.append(batch_scores)
    if not ids:
        return np.empty((0, k), dtype=np.int64), np.empty((0, k), dtype=np.float32)
    return np.concatenate(ids).astype(np.int64), np.concatenate(scores).astype(np.float32)


def cosine_neighbours(
    vectors: npt.NDArray[np.floating],
    queries: npt.NDArray[np.int64],
    k: int,
    exact_max_items: int = 50_000,
    min_recall: float = 0.95,
    seed: int = 42,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], NeighbourSearch]:
    """The ``k`` rows of ``vectors`` most cosine-similar to each row of ``queries`` (itself included).

    Parameters
    ----------
    vectors : ndarray
        One row per item.
    queries : ndarray of int
        Row numbers to find neighbours of.
    k : int
        Neighbours per query; missing ones (fewer than ``k`` found) have id ``-1``.
    exact_max_items : int
        Up to this many rows the search is exact; so it is for at most 2,000 queries, which
        cost less exactly than the index's recall check would.
    min_recall : float
        Above it, the share of the exact neighbours the index must find on a sample of queries.

    Returns
    -------
    ids, scores, search
        ``(len(queries), k)`` arrays, best first, and how they were found.
    """
    unit = unit_rows(vectors)
    n = unit.shape[0]
    k = min(k, n)
    if n <= exact_max_items or queries.size <= _RECALL_SAMPLE:
        ids, scores = exact_neighbours(unit, queries, k)
        return ids, scores, NeighbourSearch(exact=True)
    import faiss  # only large catalogues need it

    cells = int(4 * np.sqrt(n))
    rng = np.random.default_rng(seed)
    training = unit[rng.choice(n, min(n, cells * _TRAIN_POINTS_PER_CELL), replace=False)]
    index = faiss.IndexIVFFlat(
        faiss.IndexFlatIP(unit.shape[1]), unit.shape[1], cells, faiss.METRIC_INNER_PRODUCT
    )
    index.cp.seed = seed
    index.train(training)
    index.add(unit)
    sample = rng.choice(queries, _RECALL_SAMPLE, replace=False)
    truth, _ = exact_neighbours(unit, sample, k)
    probes, recall = 4, 0.0
    while True:
        index.nprobe = probes
        _, found = index.search(unit[sample], k)
        recall = _recall(found, truth)
        if recall >= min_recall or probes >= cells:
            break
        probes = min(2 * probes, cells)
    scores, ids = index.search(unit[queries], k)
    search = NeighbourSearch(exact=False, cells=cells, probes=probes, recall=recall)
    logger.info(
        "cosine neighbours of %d items among %d: IVF index, %d of %d cells probed, recall@%d %.3f",
        queries.size,
        n,
        probes,
        cells,
        k,
        recall,
    )
    return ids.astype(np.int64), scores.astype(np.float32), search


def _recall(found: npt.NDArray[np.int64], truth: npt.NDArray[np.int64]) -> float:
    """Share of the true neighbours (ids ≥ 0) that ``found`` holds in the same row, vectorised."""
    rows = np.repeat(np.arange(truth.shape[0]), truth.shape[1])
    width = max(int(truth.max(initial=0)), int(found.max(initial=0))) + 1
    true_keys = (rows * width + truth.ravel())[truth.ravel() >= 0]
    found_keys = (np.repeat(np.arange(found.shape[0]), found.shape[1]) * width + found.ravel())[
        found.ravel() >= 0
    ]
    return float(np.isin(true_keys, found_keys).mean()) if true_keys.size else 1.0
