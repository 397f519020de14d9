"""Events: visitors, sessions, views, add-to-carts, transactions, duplicates, file order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recsys.data.synthetic.constants import (
    DAY_MS,
    END_MS,
    HOUR_MS,
    N_WEEKS,
    P_FOCUS_FAVOURITE,
    P_IN_FOCUS,
    P_IN_FOCUS_BOT,
    P_NEW_SESSION_BOT,
    P_REVIEW,
    P_REVIEW_NEW_SESSION,
    P_TX_FROM_SESSION,
    P_TX_WITH_CART,
    PRICE_FIT_WIDTH,
    START_MS,
    WEEK_MS,
)
from recsys.data.synthetic.items import Items
from recsys.data.synthetic.samplers import WeekSampler, draw_fitting
from recsys.data.synthetic.sampling import (
    Bools,
    Floats,
    Ints,
    lognormal_ms,
    sample,
    sample_without_replacement,
)
from recsys.data.synthetic.scales import Behaviour, TwinScale
from recsys.data.synthetic.tree import Tree, siblings


@dataclass(frozen=True)
class _Visitors:
    """Visitors and what they like."""

    browse: Ints  # browse views per visitor
    is_bot: Bools
    propensity: Floats  # how readily the visitor adds to cart and buys
    price_z: Floats  # preferred price level
    favourites: Ints  # (n, 3) favourite category indices
    n_favourites: Ints


@dataclass(frozen=True)
class _Browse:
    """Browse views, sorted by visitor and time, grouped in sessions."""

    visitor: Ints
    time: Ints
    week: Ints
    item: Ints
    session: Ints
    session_first: Ints  # first view of each session
    session_last: Ints  # last view of each session
    session_visitor: Ints
    session_focus: Ints


@dataclass(frozen=True)
class Events:
    """Final event rows, in file order."""

    time: Ints
    visitor: Ints  # external visitor id
    event: Ints  # index into EVENT_TYPES
    item: Ints  # internal item index
    transaction: Ints  # transaction id, -1 for none


@dataclass(frozen=True)
class _Rows:
    """Event rows before ordering (internal visitor and item indices)."""

    time: Ints
    visitor: Ints
    event: Ints
    item: Ints
    transaction: Ints

    @staticmethod
    def concat(parts: Sequence[_Rows]) -> _Rows:
        """All parts one after another."""
        return _Rows(
            *(
                np.concatenate([getattr(p, f) for p in parts])
                for f in ("time", "visitor", "event", "item", "transaction")
            )
        )

    def take(self, index: Ints) -> _Rows:
        """The rows at ``index``."""
        return _Rows(
            self.time[index],
            self.visitor[index],
            self.event[index],
            self.item[index],
            self.transaction[index],
        )


def simulate_events(
    rng: np.random.Generator,
    scale: TwinScale,
    tree: Tree,
    items: Items,
    samplers: list[WeekSampler],
    category_popularity: Floats,
) -> Events:
    """Simulate every event row of the twin."""
    duplicates = _duplicate_quota(scale)
    unique_views = scale.n_views - duplicates[0]
    unique_carts = scale.n_addtocart - duplicates[1]
    unique_purchases = scale.n_transaction_rows - duplicates[2]
    with_cart = rng.random(unique_purchases) < P_TX_WITH_CART
    from_session = rng.random(unique_purchases) < P_TX_FROM_SESSION
    with_view = rng.random(unique_purchases) < np.where(from_session, 0.5, 0.95)
    n_browse = unique_views - int(with_view.sum())
    n_abandoned = unique_carts - int(with_cart.sum())

    visitors = _build_visitors(rng, scale, n_browse, tree, category_popularity)
    browse = _browse(rng, visitors, items, samplers, category_popularity, scale.behaviour)
    carts = _abandoned_carts(rng, visitors, browse, items, n_abandoned)
    purchases = _purchases(
        rng, scale, visitors, browse, items, samplers, (with_cart, from_session, with_view), unique_purchases
    )
    views = _Rows(
        browse.time, browse.visitor, np.zeros_like(browse.time), browse.item, np.full_like(browse.time, -1)
    )
    rows = _Rows.concat([views, carts, *purchases])
    rows = _Rows(
        np.clip(rows.time, START_MS, END_MS - 1), rows.visitor, rows.event, rows.item, rows.transaction
    )
    rows = _Rows(_make_unique(rows), rows.visitor, rows.event, rows.item, rows.transaction)
    rows = _add_duplicates(rng, rows, duplicates)
    order = _file_order(rng, rows.time)
    rows = rows.take(order)
    external = rng.permutation(len(visitors.browse)).astype(np.int64)
    return Events(
        time=rows.time,
        visitor=external[rows.visitor],
        event=rows.event,
        item=rows.item,
        transaction=rows.transaction,
    )


def _duplicate_quota(scale: TwinScale) -> tuple[int, int, int]:
    """Exact duplicate rows per event type, in proportion to the types."""
    carts = round(scale.n_duplicate_events * scale.n_addtocart / scale.n_events)
    purchases = round(scale.n_duplicate_events * scale.n_transaction_rows / scale.n_events)
    return scale.n_duplicate_events - carts - purchases, carts, purchases


def _build_visitors(
    rng: np.random.Generator, scale: TwinScale, n_browse: int, tree: Tree, category_popularity: Floats
) -> _Visitors:
    """Visitors: heavy-tailed browse counts, bots, favourite categories and price levels."""
    n_bots = scale.n_bots
    bots = np.maximum(2, np.round(scale.max_visitor_events * np.arange(1, n_bots + 1) ** -0.8)).astype(
        np.int64
    )
    regular = _regular_counts(
        rng, scale.n_visitors - n_bots, n_browse - int(bots.sum()), scale.max_visitor_events, scale.behaviour
    )
    browse = np.concatenate([regular, bots])
    is_bot = np.arange(len(browse)) >= len(regular)
    n = len(browse)
    bearing = np.flatnonzero(category_popularity > 0)
    first = sample(rng, category_popularity, n)
    favourites = np.empty((n, 3), dtype=np.int64)
    favourites[:, 0] = first
    for slot in (1, 2):
        sibling = siblings(rng, first, tree.parent, bearing)
        favourites[:, slot] = np.where(rng.random(n) < 0.5, sibling, sample(rng, category_popularity, n))
    return _Visitors(
        browse=browse,
        is_bot=is_bot,
        propensity=np.where(is_bot, 0.0, rng.lognormal(0.0, 1.2, n)),
        price_z=rng.normal(0.0, 1.0, n),
        favourites=favourites,
        n_favourites=1 + rng.binomial(2, 0.45, n),
    )


def _regular_counts(
    rng: np.random.Generator, n: int, budget: int, max_events: int, behaviour: Behaviour
) -> Ints:
    """Browse views of regular visitors: most have one, the rest a Lomax tail; sum == budget."""
    if budget < n:
        raise ValueError(f"{budget} views cannot cover {n} visitors")
    single = rng.random(n) < behaviour.p_single_event
    tail = rng.pareto(behaviour.tail_alpha, n)
    cap = max(10, max_events // 2)

    def counts(scale: float) -> Ints:
        return np.where(single, 1, np.minimum(2 + np.floor(scale * tail), cap)).astype(np.int64)

    excess = int(counts(0.0).sum()) - budget
    if excess > 0:  # too many multi-event visitors for the budget: make some single
        single[rng.choice(np.flatnonzero(~single), excess, replace=False)] = True
    low, high = 0.0, 1.0
    while counts(high).sum() < budget and high < 1e9:
        high *= 2
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if counts(middle).sum() <= budget else (low, middle)
    result = counts(low)
    residual = budget - int(result.sum())
    if residual:
        candidates = np.flatnonzero(~single) if (~single).any() else np.arange(n)
        np.add.at(result, rng.choice(candidates, residual), 1)
    return result


def _browse(
    rng: np.random.Generator,
    visitors: _Visitors,
    items: Items,
    samplers: list[WeekSampler],
    category_popularity: Floats,
    behaviour: Behaviour,
) -> _Browse:
    """Sessions, times and viewed items of all browse views."""
    visitor, time_ms, new_session = _session_times(rng, visitors, behaviour)
    n = len(visitor)
    session = np.cumsum(new_session) - 1
    session_first = np.flatnonzero(new_session)
    session_last = np.append(session_first[1:], n) - 1
    session_visitor = visitor[session_first]
    n_sessions = len(session_first)
    favourite = visitors.favourites[
        session_visitor,
        np.floor(rng.random(n_sessions) * visitors.n_favourites[session_visitor]).astype(np.int64),
    ]
    focused = rng.random(n_sessions) < np.where(visitors.is_bot[session_visitor], 0.0, P_FOCUS_FAVOURITE)
    focus = np.where(focused, favourite, sample(rng, category_popularity, n_sessions))

    week = np.clip((time_ms - START_MS) // WEEK_MS, 0, N_WEEKS - 1)
    first_of_visitor = np.concatenate([[True], visitor[1:] != visitor[:-1]])
    review = ~first_of_visitor & (rng.random(n) < np.where(new_session, P_REVIEW_NEW_SESSION, P_REVIEW))
    u = rng.random(n)
    in_focus_share = np.where(visitors.is_bot[visitor], P_IN_FOCUS_BOT, P_IN_FOCUS)
    in_focus = u < in_focus_share
    long_tail = ~in_focus & (u < in_focus_share + (1.0 - in_focus_share) * behaviour.p_long_tail)
    item = np.zeros(n, dtype=np.int64)
    for k in range(N_WEEKS):
        todo = ~review & (week == k)
        wide = np.flatnonzero(todo & ~in_focus & ~long_tail)
        item[wide] = samplers[k].draw(rng.random(len(wide)))
        tail = np.flatnonzero(todo & long_tail)
        item[tail] = samplers[k].draw_uniform(rng.random(len(tail)))
        narrow = np.flatnonzero(todo & in_focus)
        item[narrow] = draw_fitting(
            rng, samplers[k], focus[session[narrow]], visitors.price_z[visitor[narrow]], items, k
        )
    source = np.maximum.accumulate(np.where(review, 0, np.arange(n)))
    return _Browse(
        visitor=visitor,
        time=time_ms,
        week=week,
        item=item[source],
        session=session,
        session_first=session_first,
        session_last=session_last,
        session_visitor=session_visitor,
        session_focus=focus,
    )


def _session_times(
    rng: np.random.Generator, visitors: _Visitors, behaviour: Behaviour
) -> tuple[Ints, Ints, Bools]:
    """Visitor, time and session start of each browse view, sorted by visitor and time."""
    counts = visitors.browse
    n_visitors, n = len(counts), int(counts.sum())
    visitor = np.repeat(np.arange(n_visitors), counts)
    first = np.cumsum(counts) - counts
    position = np.arange(n) - first[visitor]
    bot = visitors.is_bot[visitor]
    new_session = (position == 0) | (
        rng.random(n) < np.where(bot, P_NEW_SESSION_BOT, behaviour.p_new_session)
    )
    within = np.where(
        bot,
        np.clip(lognormal_ms(rng, 6_000, 0.7, n), 500, 300_000),
        np.clip(lognormal_ms(rng, 40_000, 1.0, n), 1_000, 1_500_000),
    )
    mean_gap = lognormal_ms(
        rng, behaviour.return_gap_median_days * DAY_MS, behaviour.return_gap_sigma, n_visitors
    )
    between = rng.exponential(1.0, n) * mean_gap[visitor] + 30 * 60_000
    gap = np.where(position == 0, 0.0, np.where(new_session, between, within))
    offset = np.cumsum(gap)
    offset -= offset[first][visitor]
    span = offset[first + counts - 1]
    limit = float(END_MS - START_MS - HOUR_MS)
    shrink = np.minimum(1.0, limit / np.maximum(span, 1.0))
    offset *= shrink[visitor]
    start = (
        START_MS + rng.uniform(1_000, 60_000, n_visitors) + rng.random(n_visitors) * (limit - span * shrink)
    )
    return visitor, np.floor(start[visitor] + offset).astype(np.int64), new_session


def _abandoned_carts(
    rng: np.random.Generator, visitors: _Visitors, browse: _Browse, items: Items, n_carts: int
) -> _Rows:
    """Add-to-carts right after views, by visitors with a high propensity, of fitting available items."""
    available = items.available[browse.item, browse.week]
    fit = np.exp(
        -0.5 * ((items.price_z[browse.item] - visitors.price_z[browse.visitor]) / PRICE_FIT_WIDTH) ** 2
    )
    weight = visitors.propensity[browse.visitor] * np.where(available, 1.0, 0.12) * fit
    source = sample_without_replacement(rng, weight, n_carts)
    delay = np.clip(lognormal_ms(rng, 25_000, 0.8, n_carts), 1_000, 600_000)
    # A few carts are logged just before their view (as in the real log).
    before = (rng.random(n_carts) < 0.03) & (browse.time[source] - delay > START_MS)
    time_ms = browse.time[source] + np.where(before, -delay, delay).astype(np.int64)
    return _Rows(
        time_ms, browse.visitor[source], np.ones(n_carts, np.int64), browse.item[source], np.full(n_carts, -1)
    )


def _basket_sizes(rng: np.random.Generator, n_transactions: int, n_rows: int) -> Ints:
    """Items per transaction: mostly one, a heavy tail of larger baskets; sum == n_rows."""
    sizes = np.ones(n_transactions, dtype=np.int64)
    multi = np.flatnonzero(rng.random(n_transactions) < 0.16)
    sizes[multi] += np.minimum(1 + np.floor(rng.pareto(1.8, len(multi))), 40).astype(np.int64)
    difference = n_rows - int(sizes.sum())
    if difference > 0:
        np.add.at(sizes, rng.integers(0, n_transactions, difference), 1)
    while difference < 0:
        larger = np.flatnonzero(sizes > 1)
        cut = rng.choice(larger, min(-difference, len(larger)), replace=False)
        sizes[cut] -= 1
        difference += len(cut)
    return sizes


def _purchases(
    rng: np.random.Generator,
    scale: TwinScale,
    visitors: _Visitors,
    browse: _Browse,
    items: Items,
    samplers: list[WeekSampler],
    flags: tuple[Bools, Bools, Bools],
    n_rows: int,
) -> list[_Rows]:
    """Transactions with their view and add-to-cart rows, placed at the end of buyers' sessions."""
    with_cart, from_session, with_view = flags
    sizes = _basket_sizes(rng, scale.n_transactions, n_rows)
    owner, session = _transaction_sessions(rng, scale, visitors, browse)
    anchor = _transaction_anchor(rng, browse, session, sizes)
    basket = np.repeat(np.arange(scale.n_transactions), sizes)
    slot = np.arange(n_rows) - (np.cumsum(sizes) - sizes)[basket]
    row_session = session[basket]
    week = np.clip((anchor[basket] - START_MS) // WEEK_MS, 0, N_WEEKS - 1)

    length = browse.session_last[row_session] - browse.session_first[row_session] + 1
    seen = browse.item[
        browse.session_first[row_session] + np.floor(rng.random(n_rows) * length).astype(np.int64)
    ]
    keep = from_session & (items.available[seen, week] | (rng.random(n_rows) < 0.1))
    item = np.where(keep, seen, -1)
    for k in range(N_WEEKS):
        todo = np.flatnonzero(~keep & (week == k))
        item[todo] = draw_fitting(
            rng,
            samplers[k],
            browse.session_focus[row_session[todo]],
            visitors.price_z[owner[basket[todo]]],
            items,
            k,
            unavailable_rejection=0.9,
        )

    view_time = anchor[basket] + slot * 90_000 + np.floor(rng.random(n_rows) * 20_000).astype(np.int64)
    cart_time = view_time + np.clip(lognormal_ms(rng, 20_000, 0.6, n_rows), 1_000, 60_000).astype(np.int64)
    settle = np.clip(lognormal_ms(rng, 120_000, 0.7, scale.n_transactions), 10_000, 1_800_000).astype(
        np.int64
    )
    buy_time = anchor[basket] + sizes[basket] * 90_000 + settle[basket] + slot
    transaction_ids = rng.permutation(scale.n_transactions).astype(np.int64)
    who = owner[basket]

    def rows(mask: Bools, when: Ints, event: int, transaction: Ints) -> _Rows:
        return _Rows(when[mask], who[mask], np.full(int(mask.sum()), event), item[mask], transaction[mask])

    none = np.full(n_rows, -1, dtype=np.int64)
    return [
        rows(with_view, view_time, 0, none),
        rows(with_cart, cart_time, 1, none),
        rows(np.ones(n_rows, dtype=bool), buy_time, 2, transaction_ids[basket]),
    ]


def _transaction_sessions(
    rng: np.random.Generator, scale: TwinScale, visitors: _Visitors, browse: _Browse
) -> tuple[Ints, Ints]:
    """Buyer and session of each transaction: buyers are active, some buy many times."""
    weight = visitors.browse.astype(np.float64) ** 0.9 * visitors.propensity
    buyers = sample_without_replacement(rng, weight, scale.n_buyers)
    owner = np.empty(scale.n_transactions, dtype=np.int64)
    order = rng.permutation(scale.n_transactions)
    owner[order[: scale.n_buyers]] = rng.permutation(buyers)
    loyalty = rng.pareto(1.2, scale.n_buyers) + 0.05
    owner[order[scale.n_buyers :]] = buyers[sample(rng, loyalty, scale.n_transactions - scale.n_buyers)]
    sessions_of = np.bincount(browse.session_visitor, minlength=len(visitors.browse))
    first_session = np.cumsum(sessions_of) - sessions_of
    pick = np.floor(rng.random(scale.n_transactions) * sessions_of[owner]).astype(np.int64)
    return owner, first_session[owner] + pick


def _transaction_anchor(rng: np.random.Generator, browse: _Browse, session: Ints, sizes: Ints) -> Ints:
    """Start time of each purchase: after its session's last view, later ones 20 minutes apart."""
    order = np.lexsort((np.arange(len(session)), session))
    ordered = session[order]
    first = np.concatenate([[True], ordered[1:] != ordered[:-1]])
    group_start = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
    rank = np.empty(len(session), dtype=np.int64)
    rank[order] = np.arange(len(order)) - group_start
    anchor = browse.time[browse.session_last[session]] + lognormal_ms(rng, 60_000, 0.8, len(session))
    anchor += rank * 20 * 60_000
    latest = END_MS - HOUR_MS - sizes * 90_000 - 1_800_000
    return np.minimum(anchor, latest).astype(np.int64)


def _make_unique(rows: _Rows) -> Ints:
    """Timestamps moved by a millisecond where two rows would otherwise be identical."""
    time_ms = rows.time.copy()
    while True:
        order = np.lexsort((rows.item, rows.event, rows.visitor, time_ms))
        same = (
            (np.diff(time_ms[order]) == 0)
            & (np.diff(rows.visitor[order]) == 0)
            & (np.diff(rows.event[order]) == 0)
            & (np.diff(rows.item[order]) == 0)
        )
        if not same.any():
            return time_ms
        time_ms[order[1:][same]] += 1


def _add_duplicates(rng: np.random.Generator, rows: _Rows, quota: tuple[int, int, int]) -> _Rows:
    """Append exact copies of random rows, ``quota`` per event type."""
    picks = [
        rng.choice(np.flatnonzero(rows.event == event), count, replace=False)
        for event, count in enumerate(quota)
        if count
    ]
    if not picks:
        return rows
    return _Rows.concat([rows, rows.take(np.sort(np.concatenate(picks)))])


def _file_order(rng: np.random.Generator, time_ms: Ints) -> Ints:
    """Row order of the file: three-hour blocks, shuffled inside, starting a month in.

    The real ``events.csv`` is not sorted by time: neighbouring rows are close in time but
    out of order, and the file starts on 2015-06-02, not on the first day.
    """
    block = (time_ms - START_MS) // (3 * HOUR_MS)
    n_blocks = int((END_MS - START_MS) // (3 * HOUR_MS)) + 1
    rotated = (block - 30 * 8) % n_blocks
    return np.lexsort((rng.random(len(time_ms)), rotated)).astype(np.int64)
