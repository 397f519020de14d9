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

**Session blend.** For a visitor with online events, the running session (events up to the
first gap of ``session_gap_minutes``) drives the list (:func:`session_blend`):

1. *discovery*: the session's neighbours by V-SKNN over the published sessions
   (:class:`~recsys.models.session_blend.SessionBlendModel`; its query is the session's items,
   then the visitor's ``extend_length`` latest items from before the session, which weigh less
   as older items of a session do: the session-aware "extend" of Latifi, Mauro & Jannach,
   "Session-aware recommendation: a surprising quest for the state of the art", 2021), their
   scores scaled to the best
   one (V-SKNN's scores of the session's own items, the reminders, count ``reminder_weight``
   times), plus ``covisitation_weight`` × the online i2i scores of the session's items and
   ``category_weight`` × the scores of the items popular in the session's categories, each
   scaled likewise; each sum times ``1 - price_weight + price_weight × fit``, with ``fit`` =
   ``exp(-gap² / 2 price_width²)`` and ``gap`` the item's price level minus the session's
   (:meth:`~recsys.models.session_category.CategoryPopularModel.price_level_of`; visitors keep
   to a price level; items without one fit); what the visitor bought is left out, and the
   session's own items unless they are reminders;
2. the offline list of a returning visitor takes ``offline_share`` of the slots by the
   weighted interleaving above (discovery asked first);
3. the visitor's ``earlier_length`` latest items viewed before the running session (earlier
   online sessions, then the published history; source ``viewed_before``: visitors come back
   to items they looked at) are placed from rank ``earlier_rank`` of that list;
4. a *strip* of the session's latest ``strip_length`` distinct items not bought (source
   ``recently_viewed``: what visitors come back to buy) is placed from rank ``strip_rank``,
   or, with ``strip_ends``, so that it ends at rank ``strip_rank`` (it rises as the session
   grows: a short session's strip takes the last slots of the top, a long one's all of them);
5. the popular items fill what is left.

The weights are the published model's, chosen on validation sessions by the pipeline
(:mod:`recsys.pipeline.session_blend`, which scores these very functions).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice, repeat
from typing import TypedDict

import numpy as np
import numpy.typing as npt

from recsys.models.i2i import BOUGHT, ItemToItemConfig, latest_distinct, score_one_user
from recsys.models.session_blend import SessionBlendModel, SessionBlendWeights
from recsys.service.events import UserActivity
from recsys.service.store import Candidates, GroupedLists, Ids, in_sorted

ONLINE_I2I = "online_i2i"
# Items viewed before the running session kept as candidates (the longest strip the tuner tries).
MAX_EARLIER = 10
# Neighbours of the published history of a user who has no published list.
HISTORY_I2I = "history_i2i"
# The session blend's sources: the session's neighbours, the items popular in its categories, and
# the session's own items shown back.
SESSION_KNN = "session_knn"
SESSION_CATEGORY = "session_category"
RECENTLY_VIEWED = "recently_viewed"
VIEWED_BEFORE = "viewed_before"
# Not a list shown: the price-level gaps of the discovery candidates.
PRICE_GAP = "price_gap"


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


def history_activity(history: Candidates | None, n_recent: int) -> UserActivity:
    """A published history (``user_histories`` row of a user) as activity: its ``n_recent``
    latest items and what the user bought."""
    if history is None:
        return UserActivity.none()
    items = history.items.astype(np.int64)
    bought = np.asarray(history.labels, dtype=object) == BOUGHT
    return UserActivity(items[:n_recent], np.sort(items[bought]))


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


@dataclass(frozen=True)
class SessionCandidates:
    """What the session blend mixes for one visitor, computed once per change of their events.

    Attributes
    ----------
    strip : Candidates
        The session's distinct items, newest first, without bought or unavailable ones.
    neighbours : Candidates
        V-SKNN's items for the session, best first, the session's own items left out (none
        without a published model).
    reminders : Candidates
        V-SKNN's scores of the session's own items (those of ``strip``), best first.
    covisitation : Candidates
        Online i2i neighbours of the session's items, best first.
    category : Candidates
        The items most popular in the session's categories, best first.
    earlier : Candidates
        The visitor's distinct items viewed before the session, newest first, without the
        session's, bought or unavailable ones.
    price_gaps : Candidates
        The discovery candidates with a price level (items ascending) and, as scores, their
        level minus the session's (none when the session has no level).
    """

    strip: Candidates
    neighbours: Candidates
    reminders: Candidates
    covisitation: Candidates
    category: Candidates
    earlier: Candidates
    price_gaps: Candidates
    # Discovery lists already fused, by weights (see discovery_list).
    fused: dict[tuple[float, ...], Candidates] = field(default_factory=dict, compare=False)

    @classmethod
    def empty(cls) -> SessionCandidates:
        """No online events."""
        return cls(
            Candidates.empty(RECENTLY_VIEWED),
            Candidates.empty(SESSION_KNN),
            Candidates.empty(SESSION_KNN),
            Candidates.empty(ONLINE_I2I),
            Candidates.empty(SESSION_CATEGORY),
            Candidates.empty(VIEWED_BEFORE),
            Candidates.empty(PRICE_GAP),
        )


def session_candidates(
    session: UserActivity,
    model: SessionBlendModel | None,
    similar: GroupedLists,
    config: ItemToItemConfig,
    known: Ids,
    unavailable: Ids,
    earlier: npt.NDArray[np.int64] | None = None,
) -> SessionCandidates:
    """The candidates of a running session (``session``: its events newest first, and everything
    the visitor bought; ``known`` and ``unavailable``: sorted item ids of the catalogue;
    ``earlier``: the visitor's items before the session, newest first).

    Items nobody has seen in training find no neighbours (they still give context to the rest);
    items the catalogue does not know (a client's mistake, a bot) are never shown back.
    """
    if session.recent.size == 0:
        return SessionCandidates.empty()
    excluded = np.union1d(session.bought, session.recent)
    distinct = latest_distinct(session.recent, session.recent.size)
    # Shown back: items the catalogue knows, still available, not bought.
    shown = (
        in_sorted(distinct, known) & ~in_sorted(distinct, session.bought) & ~in_sorted(distinct, unavailable)
    )
    strip = distinct[shown]
    strip_scores = np.arange(strip.size, 0, -1, dtype=np.float32)
    viewed_before = np.empty(0, dtype=np.int64) if earlier is None else latest_distinct(earlier, earlier.size)
    before = viewed_before[
        in_sorted(viewed_before, known)
        & ~in_sorted(viewed_before, excluded)
        & ~in_sorted(viewed_before, unavailable)
    ][:MAX_EARLIER]
    neighbours = Candidates.empty(SESSION_KNN)
    reminders = Candidates.empty(RECENTLY_VIEWED)
    category = Candidates.empty(SESSION_CATEGORY)
    price_gaps = Candidates.empty(PRICE_GAP)
    covisitation = online_i2i(session, similar, config).without(excluded)
    if model is not None:
        timestamp = int(session.timestamps[0]) if session.timestamps.size else 0
        query = np.concatenate([session.recent, viewed_before[: model.config.extend_length]])
        items, scores = model.neighbours_of(query, timestamp)
        scored = Candidates(SESSION_KNN, items, scores.astype(np.float32)).without(unavailable)
        neighbours = scored.without(excluded)
        own = in_sorted(items, np.sort(strip))
        # Labelled V-SKNN's (it placed them), unlike the strip's recently viewed items.
        reminders = Candidates(SESSION_KNN, items[own], scores[own].astype(np.float32))
        items, scores = model.category_items_of(session.recent)
        category = Candidates(SESSION_CATEGORY, items, scores.astype(np.float32)).without(excluded)
        category = category.without(unavailable)
        pool = np.union1d(np.union1d(neighbours.items, category.items), covisitation.items)
        gaps = model.category.price_levels(pool) - model.category.price_level_of(session.recent)
        priced = ~np.isnan(gaps)
        price_gaps = Candidates(PRICE_GAP, pool[priced], gaps[priced].astype(np.float32))
    return SessionCandidates(
        Candidates(RECENTLY_VIEWED, strip, strip_scores),
        neighbours,
        reminders,
        covisitation,
        category,
        Candidates(VIEWED_BEFORE, before, np.arange(before.size, 0, -1, dtype=np.float32)),
        price_gaps,
    )


def _shown_apart(candidates: SessionCandidates, weights: SessionBlendWeights) -> Ids:
    """The items the strip and the earlier items place themselves (sorted): left out of the rest."""
    return np.union1d(
        candidates.strip.items[: weights.strip_length], candidates.earlier.items[: weights.earlier_length]
    )


def discovery_list(candidates: SessionCandidates, weights: SessionBlendWeights) -> Candidates:
    """The session's scored lists fused: V-SKNN's (its reminders × ``reminder_weight``) over
    its best score, plus co-visitation's and the category's, each over its best, times its
    weight, the sum times the price fit (see the module); best first, ties by item id, without
    the items the strip and the earlier items show. Each item keeps the label of the list that
    scored it most. Memoised on ``candidates`` per weights: a visitor's repeated requests fuse
    once."""
    key = (
        weights.reminder_weight,
        weights.covisitation_weight,
        weights.category_weight,
        weights.price_weight,
        weights.price_width,
        float(weights.strip_length),
        float(weights.earlier_length),
    )
    found = candidates.fused.get(key)
    if found is not None:
        return found
    knn_best = max(
        float(candidates.neighbours.scores.max(initial=0)), float(candidates.reminders.scores.max(initial=0))
    )
    lists = [
        (candidates.neighbours, 1.0, knn_best),
        (candidates.reminders, weights.reminder_weight, knn_best),
        (
            candidates.covisitation,
            weights.covisitation_weight,
            float(candidates.covisitation.scores.max(initial=0)),
        ),
        (candidates.category, weights.category_weight, float(candidates.category.scores.max(initial=0))),
    ]
    parts = [(c, w / max(best, 1e-12)) for c, w, best in lists if len(c) and w > 0]
    if not parts:
        fused = Candidates.empty(SESSION_KNN)
    else:
        items = np.concatenate([c.items.astype(np.int64) for c, _ in parts])
        scaled = np.concatenate([c.scores.astype(np.float64) * w for c, w in parts])
        labels = np.concatenate([np.full(len(c), c.source, dtype=object) for c, _ in parts])
        distinct, slot = np.unique(items, return_inverse=True)
        summed = np.bincount(slot, weights=scaled, minlength=distinct.size).astype(np.float64, copy=False)
        gaps = candidates.price_gaps
        if weights.price_weight > 0 and len(gaps):
            at = np.minimum(np.searchsorted(gaps.items, distinct), len(gaps) - 1)
            gap = np.where(gaps.items[at] == distinct, gaps.scores[at].astype(np.float64), 0.0)
            fit = np.exp(-0.5 * (gap / weights.price_width) ** 2)
            summed = summed * (1.0 - weights.price_weight + weights.price_weight * fit)
        # The label of each item's largest part: sort by (item, -part score), keep the first.
        strongest = np.lexsort((-scaled, slot))
        first = strongest[np.r_[True, slot[strongest][1:] != slot[strongest][:-1]]]
        order = np.lexsort((distinct, -summed))
        fused = Candidates(
            SESSION_KNN,
            distinct[order],
            summed[order].astype(np.float32),
            tuple(labels[first][order].tolist()),
        )
    fused = fused.without(_shown_apart(candidates, weights))
    candidates.fused[key] = fused
    return fused


def session_blend(
    candidates: SessionCandidates,
    offline: Candidates,
    fillers: Sequence[Candidates],
    k: int,
    weights: SessionBlendWeights,
) -> list[Recommendation]:
    """The served list of a visitor with a running session (see the module); ``offline`` and
    ``fillers`` must already be without what the visitor bought and unavailable items."""
    discovery = discovery_list(candidates, weights)
    merged = blend(
        discovery, offline.without(_shown_apart(candidates, weights)), [], k, 1.0 - weights.offline_share
    )
    for shown, length, rank, ends in (
        (candidates.earlier, weights.earlier_length, weights.earlier_rank, False),
        (candidates.strip, weights.strip_length, weights.strip_rank, weights.strip_ends),
    ):
        inserted = as_recommendations(shown, min(length, k))
        first = max(1, rank - len(inserted) + 1) if ends else rank
        head = min(first - 1, len(merged))
        merged = merged[:head] + inserted + merged[head:]
    placed = merged[:k]
    if len(placed) < k:
        seen = {r["item_id"] for r in placed}
        for filler in fillers:
            _place_all(_entries(filler), placed, seen, k)
    return placed
