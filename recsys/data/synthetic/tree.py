"""The category tree: roots, up to six levels, sibling categories."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.data.synthetic.sampling import Ints, sample
from recsys.data.synthetic.scales import TwinScale

_LEVEL_SHARES = np.array([0.20, 0.50, 0.22, 0.06, 0.02])  # non-root nodes on levels 2..6


@dataclass(frozen=True)
class Tree:
    """Categories: indices below ``n_nodes`` are tree nodes, the others are missing from the tree."""

    ids: Ints  # external category id per index
    parent: Ints  # parent index, -1 for roots and missing categories
    n_nodes: int
    leaves: Ints  # indices of the leaves

    @property
    def n_total(self) -> int:
        """Tree nodes plus categories missing from the tree."""
        return len(self.ids)


def build_tree(rng: np.random.Generator, scale: TwinScale) -> Tree:
    """A random tree with preferential attachment: some nodes have many children, most few."""
    n_nodes, n_roots = scale.n_categories, scale.n_category_roots
    rest = n_nodes - n_roots
    sizes = np.maximum(1, np.floor(rest * _LEVEL_SHARES)).astype(np.int64)
    sizes[1] += rest - int(sizes.sum())
    parent = np.full(n_nodes + scale.n_missing_categories, -1, dtype=np.int64)
    attraction = rng.lognormal(0.0, 1.0, n_nodes)
    previous = np.arange(n_roots)
    start = n_roots
    for size in sizes:
        block = np.arange(start, start + size)
        parent[block] = previous[sample(rng, attraction[previous], int(size))]
        previous, start = block, start + int(size)
    children = np.bincount(parent[parent >= 0], minlength=n_nodes)[:n_nodes]
    ids = rng.permutation(n_nodes + scale.n_missing_categories).astype(np.int64)
    return Tree(ids=ids, parent=parent, n_nodes=n_nodes, leaves=np.flatnonzero(children == 0))


def siblings(rng: np.random.Generator, categories: Ints, parent: Ints, candidates: Ints) -> Ints:
    """For each category, a random category among ``candidates`` with the same parent (maybe itself)."""
    group = np.where(parent[candidates] >= 0, parent[candidates], len(parent))
    order = np.argsort(group, kind="stable")
    counts = np.bincount(group, minlength=len(parent) + 1)
    starts = np.cumsum(counts) - counts
    own = np.where(parent[categories] >= 0, parent[categories], len(parent))
    size = counts[own]
    pick = starts[own] + np.floor(rng.random(len(categories)) * np.maximum(size, 1)).astype(np.int64)
    return np.where(size > 0, candidates[order[np.minimum(pick, len(order) - 1)]], categories)
