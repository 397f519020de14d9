"""Exact top-k by inner product that scores only the items that can still make a user's top k.

Brute-force scoring of every user against every item (``implicit.cpu.topk.topk``) costs
users × items: when a shop grows in both, the cost grows with the square of its size. Matrix
factorisation puts the popular items, the ones that make most top-k lists, at large norms. By
Cauchy–Schwarz an item scores at most ``‖user‖ · ‖item‖``, so with the items in descending norm
order, once a user's k-th best score over a prefix is at least ``‖user‖`` times the norm of the
first item outside it, no item outside can enter the list: the answer is exact (the norm bound
of LEMP, Teflioudi, Gemulla & Mykytiuk, "LEMP: Fast Retrieval of Large Entries in a Matrix
Product", SIGMOD 2015). On the full twin's ALS factors (×1 and ×2) the top 30 costs 6.6–7.5% of
the brute-force scores (``benchmarks/topk_benchmark.py``).

Each prefix is scored by implicit's ``topk`` (threads, filters), so the result equals
brute force on the whole catalogue up to the order of equal scores (tested against it).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from implicit.cpu.topk import topk

# Share of the catalogue scored first; every user whose bound is not met gets a prefix twice as long.
_FIRST_SHARE = 1 / 16
_FIRST_ITEMS = 1024


class InnerProductTopK:
    """The items of a factor matrix in descending norm order, ready for exact top-k queries.

    Parameters
    ----------
    item_factors : ndarray of shape (n_items, factors)
        One row per item code.
    excluded : ndarray of int, optional
        Item codes never returned (e.g. unavailable items): left out of the index.
    """

    def __init__(self, item_factors: npt.NDArray[np.float32], excluded: npt.NDArray[np.int32] | None = None):
        n_items = item_factors.shape[0]
        candidates = np.arange(n_items, dtype=np.int64)
        if excluded is not None and excluded.size:
            candidates = np.setdiff1d(candidates, excluded)
        norms = np.linalg.norm(item_factors[candidates], axis=1)
        order = np.argsort(-norms, kind="stable")
        self.codes = candidates[order]
        self.factors = np.ascontiguousarray(item_factors[self.codes])
        # The bound past a prefix of length n is the norm of item n; past the whole index, none.
        self.norms = np.append(norms[order], 0.0).astype(np.float64)
        # Where each item code sits in the index (-1: excluded).
        self.position = np.full(n_items, -1, dtype=np.int64)
        self.position[self.codes] = np.arange(self.codes.size)
        # Query × item scores computed so far (brute force would compute queries × index size).
        self.scored_pairs = 0

    def query(
        self, vectors: npt.NDArray[np.float32], k: int, filter_query_items: sp.csr_matrix | None = None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """The ``k`` best item codes of each query vector and their scores, best first.

        ``filter_query_items``: per query row, item codes it must not get (e.g. bought ones).
        Rows with fewer than ``k`` items to give are padded with implicit's filtered score
        (below ``-1e30``), as ``implicit.cpu.topk.topk`` pads them.
        """
        size = self.codes.size
        k = min(k, size)
        ids = np.zeros((vectors.shape[0], k), dtype=np.int64)
        scores = np.zeros((vectors.shape[0], k), dtype=np.float32)
        if k == 0 or vectors.shape[0] == 0:
            return ids, scores
        excluded = self._in_index_order(filter_query_items)
        query_norms = np.linalg.norm(vectors, axis=1).astype(np.float64)
        pending = np.arange(vectors.shape[0])
        prefix = min(size, max(_FIRST_ITEMS, k, int(size * _FIRST_SHARE)))
        while pending.size:
            found, found_scores = topk(
                self.factors[:prefix],
                vectors[pending],
                k,
                filter_query_items=None if excluded is None else excluded[pending][:, :prefix],
                num_threads=0,
            )
            self.scored_pairs += pending.size * prefix
            ids[pending] = found
            scores[pending] = found_scores
            if prefix == size:
                break
            # float32 scores: a hair of slack keeps an item at the bound from being skipped.
            bound = query_norms[pending] * self.norms[prefix] * (1 + 1e-5)
            pending = pending[found_scores[:, -1] < bound]
            prefix = min(size, 2 * prefix)
        return self.codes[ids], scores

    def _in_index_order(self, items: sp.csr_matrix | None) -> sp.csr_matrix | None:
        """``items`` with its columns moved to index positions (excluded items dropped)."""
        if items is None:
            return None
        coo = sp.coo_matrix(items)
        positions = self.position[coo.col]
        kept = positions >= 0
        return sp.csr_matrix(
            (coo.data[kept], (coo.row[kept], positions[kept])), shape=(coo.shape[0], self.codes.size)
        )
