"""Checking and walking a parent-linked hierarchy (the category tree), vectorised.

The loader (naming file lines) and preparation (naming table rows) both use these, so the
rules a tree must follow are written once: every id has one parent (rows repeating the same
id and parent are harmless), and following parents always ends at a root. A parent the tree
does not list counts as a root, as the real RetailRocket tree needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

Ints = npt.NDArray[np.int64]

# The parent of a root. Ids are non-negative (the loader checks it; preparation maps missing to it).
NO_PARENT = -1


def conflicting_rows(ids: Ints, parents: Ints) -> Ints:
    """Positions of the rows whose id is listed with more than one parent, by position.

    Parameters
    ----------
    ids, parents : ndarray of int64
        One entry per row; ``parents`` holds :data:`NO_PARENT` for roots.
    """
    pairs = pd.DataFrame({"id": ids, "parent": parents}).drop_duplicates()
    repeated = pairs.loc[pairs["id"].duplicated(), "id"].to_numpy()
    return np.flatnonzero(np.isin(ids, repeated)).astype(np.int64)


@dataclass(frozen=True)
class Ancestry:
    """Where each node's parent chain ends.

    ``root`` is the position of each node's root and ``depth`` its depth (roots 1); both
    are meaningless when ``cycle`` is not empty: the positions of the nodes of one cycle, in
    parent order, starting at the lowest position.
    """

    root: Ints
    depth: Ints
    cycle: Ints


def ancestry(ids: Ints, parents: Ints) -> Ancestry:
    """Root and depth of every node by pointer doubling: ``log2(n)`` vectorised steps, any depth.

    Parameters
    ----------
    ids : ndarray of int64
        Unique node ids.
    parents : ndarray of int64
        Parent id per node, :data:`NO_PARENT` for roots.
    """
    n = len(ids)
    here = np.arange(n, dtype=np.int64)
    parent_position = pd.Index(ids).get_indexer(parents).astype(np.int64)
    parent_position[parents == NO_PARENT] = -1
    step = np.where(parent_position >= 0, parent_position, here)
    # After k rounds jump = step applied 2**k times and moves = real steps taken on the way.
    jump, moves = step, (step != here).astype(np.int64)
    for _ in range(max(n, 1).bit_length()):
        moves = moves + moves[jump]
        jump = jump[jump]
    # Still moving after more than n steps, or resting on a node that is its own parent.
    stuck = np.flatnonzero((step[jump] != jump) | (parent_position[jump] == jump))
    if stuck.size:
        return Ancestry(root=jump, depth=moves + 1, cycle=_one_cycle(step, int(jump[stuck[0]])))
    return Ancestry(root=jump, depth=moves + 1, cycle=np.empty(0, dtype=np.int64))


def _one_cycle(step: Ints, start: int) -> Ints:
    """The cycle through ``start``, lowest position first (walked node by node: error path only)."""
    members = [start]
    node = int(step[start])
    while node != start:
        members.append(node)
        node = int(step[node])
    lowest = int(np.argmin(members))
    return np.array(members[lowest:] + members[:lowest], dtype=np.int64)


def describe_cycle(ids: Ints, cycle: Ints) -> str:
    """``5 → 7 → 5``: the ids of a cycle, the first repeated at the end."""
    chain = [str(ids[position]) for position in cycle]
    return " → ".join([*chain, chain[0]])
