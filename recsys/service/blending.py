"""Online item-to-item recommendations and their blend with the offline lists.

**Online i2i.** The user's latest online events go through the same scoring as the offline
i2i model (:func:`recsys.models.i2i.score_one_user`, the single-user numpy
form of :func:`~recsys.models.i2i.score_from_recent_items`): each of the most recent distinct items
votes for its neighbours in the published ``similar_items`` table with
``similarity × 0.5 ** (position / recency_half_life)``; the recent items themselves are not
recommended.

**Blend.** The online list and the user's offline list (ranked, else ALS, else default)
share the ``k`` slots by *weighted interleaving*: slot after slot, the online list is asked
first while it holds fewer than ``online_share × slots filled`` of them (so with the default
share of 0.5 the lists alternate, online first: a fresh session is the strongest signal of
intent, the offline list keeps the long-term taste). An item already placed is skipped (the
first occurrence wins, with its source), items the user bought and unavailable items are
removed beforehand, and when both lists run dry the popular default items fill the rest.
Scores are each source's own and are not comparable across sources; the order is the answer.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import islice, repeat
from typing import TypedDict

import numpy as np

from recsys.models.i2i import ItemToItemConfig, latest_distinct, score_one_user
from recsys.service.events import UserActivity
from recsys.service.store import Candidates, GroupedLists

ONLINE_I2I = "online_i2i"
# Neighbours of the published history of a user who has no published list.
HISTORY_I2I = "history_i2i"


# An item of a list being blended: item id, score, label.
Entry = tuple[int, float, str]


class Recommendation(TypedDict):
    """One recommended item and the source that placed it (a plain dict: answers are built and
    JSON-encoded on every request, and dicts are the cheapest to do both with)."""

    item_id: int
    score: float
    source: str


def online_i2i(
    activity: UserActivity, similar: GroupedLists, config: ItemToItemConfig, source: str = ONLINE_I2I
) -> Candidates:
    """Neighbours of the user's latest items (online events, or the published history), best first.

    Parameters
    ----------
    activity : UserActivity
        The user's online events, newest first.
    similar : GroupedLists
        The published similar items, keyed by item.
    config : ItemToItemConfig
        ``n_recent`` and ``recency_half_life``, as in the offline i2i model.
    source : str
        Source named in the answer.
    """
    if activity.recent.size == 0:
        return Candidates.empty(source)
    recent = latest_distinct(activity.recent, config.n_recent)
    items, scores = score_one_user(
        recent, [similar.row(item) for item in recent.tolist()], config.recency_half_life
    )
    return Candidates(source, items, scores.astype(np.float32))


def _entries(candidates: Candidates) -> Iterator[Entry]:
    """``(item, score, label)`` of every item, best first (labels: the list's own, else its source)."""
    labels = candidates.labels or repeat(candidates.source)
    # repeat() is endless: the items end the stream.
    return zip(candidates.items.tolist(), candidates.scores.tolist(), labels, strict=False)


def as_recommendations(candidates: Candidates, k: int) -> list[Recommendation]:
    """The first ``k`` items of one list."""
    return [
        Recommendation(item_id=item, score=score, source=label)
        for item, score, label in islice(_entries(candidates), k)
    ]


def blend(
    online: Candidates,
    offline: Candidates,
    fillers: Sequence[Candidates],
    k: int,
    online_share: float = 0.5,
) -> list[Recommendation]:
    """Interleave ``online`` with ``offline`` by ``online_share``, then fill from ``fillers``.

    The lists must already be filtered (bought, unavailable); duplicates are dropped here,
    the first occurrence winning.

    Parameters
    ----------
    online, offline : Candidates
        The two lists sharing the slots.
    fillers : sequence of Candidates
        Lists that complete the answer, in order, when both run out.
    k : int
        Number of items wanted.
    online_share : float
        Target share of slots for ``online`` (0: only after ``offline`` runs out; 1: first).
    """
    placed: list[Recommendation] = []
    seen: set[int] = set()
    online_stream, offline_stream = _entries(online), _entries(offline)
    if len(online) and len(offline) and online_share > 0:
        n_online = 0
        while len(placed) < k:
            if n_online < online_share * (len(placed) + 1):
                if not _place_next(online_stream, placed, seen):
                    break
                n_online += 1
            elif not _place_next(offline_stream, placed, seen):
                break
    # One list ran out (or was empty, or has no share): the other, then the fillers, complete it.
    rest = (offline_stream, online_stream) if online_share == 0 else (online_stream, offline_stream)
    for stream in rest:
        _place_all(stream, placed, seen, k)
    for filler in fillers:
        if len(placed) >= k:
            break
        _place_all(_entries(filler), placed, seen, k)
    return placed


def _place_next(stream: Iterator[Entry], placed: list[Recommendation], seen: set[int]) -> bool:
    """Place the stream's next item not placed yet; ``False`` when the stream has none left."""
    for item, score, label in stream:
        if item not in seen:
            seen.add(item)
            placed.append(Recommendation(item_id=item, score=score, source=label))
            return True
    return False


def _place_all(stream: Iterator[Entry], placed: list[Recommendation], seen: set[int], k: int) -> None:
    """Place the stream's items not placed yet until ``k`` are placed."""
    for item, score, label in stream:
        if len(placed) >= k:
            return
        if item not in seen:
            seen.add(item)
            placed.append(Recommendation(item_id=item, score=score, source=label))


def sources_of(recommendations: Sequence[Recommendation]) -> list[str]:
    """Distinct sources of an answer, in order of first appearance."""
    return list(dict.fromkeys(r["source"] for r in recommendations))
