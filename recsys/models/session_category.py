"""Popular in the session's categories: the items most popular in the categories of the
session's latest items.

A visitor browsing a category mostly goes on within it, and the category's popular items are
what its visitors view next. For a prefix, each of its ``n_recent`` latest distinct items votes
for its (leaf) category with ``0.5 ** (back / recency_half_life)`` (``back`` = 0 for the latest
item), and an item's score is ``Σ_c vote(c) × share(item | c)``, with ``share`` the item's
time-decayed, event-weighted popularity (as :class:`~recsys.models.popular.PopularModel`'s)
over its category's: the probability of the item given the session's category mix. A
visitor's events may be down-weighted by how many they made (``visitor_exponent``), so that a
few heavy visitors or bots do not decide a thin category's ranking.

The model keeps each category's ``top_items`` most popular available items as a sparse
categories × items matrix, so a prefix costs one sparse row times that matrix: at most
``n_recent × top_items`` products, whatever the data size. Items without a category vote for
nothing (they still take a place among the ``n_recent`` latest).

It also keeps each item's price level within its category (log price in standard deviations
of its category's, :attr:`CategoryPopularModel.price_level`): visitors keep to a price level,
and the served blend favours candidates near the session's (:meth:`price_level_of`: its items'
mean, shrunk by how closely the window's sessions keep to one level, estimated at fit).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from pydantic import Field

from recsys.models.dataset import InteractionData
from recsys.models.sknn import (
    Entries,
    SessionConfig,
    SessionQueries,
    SessionRecommender,
    among,
    segments,
    summed,
)


class CategoryPopularConfig(SessionConfig):
    """Settings of the popular-in-the-session's-categories model."""

    remind: bool = Field(False, description="whether the prefix's own items may be recommended")
    n_recent: int = Field(5, ge=1, description="latest distinct items of the prefix whose categories vote")
    recency_half_life: float = Field(1.0, gt=0, description="an item n places back votes 0.5 ** (n / this)")
    top_items: int = Field(100, ge=1, description="most popular items kept per category")
    half_life_days: float | None = Field(7.0, gt=0, description="popularity halves after this many days")
    visitor_exponent: float = Field(
        0.0,
        ge=0,
        le=1,
        description="each event weighs (its visitor's events in the window) ** -this: 0 counts events, "
        "1 gives every visitor one vote in all (a bot's thousands of views count as one visitor's)",
    )


class CategoryPopularModel(SessionRecommender):
    """The items most popular in the categories of the session's latest items."""

    kind = "category_popular"
    config_class = CategoryPopularConfig
    config: CategoryPopularConfig

    def __init__(self, config: CategoryPopularConfig | None = None) -> None:
        super().__init__(config)
        # Item code → category row (-1: no category); categories × items shares of the top items.
        self.item_category = np.empty(0, dtype=np.int64)
        self.shares = sp.csr_matrix((0, 0), dtype=np.float64)
        # Item code → log price in standard deviations of its category's (NaN: unknown).
        self.price_level = np.empty(0, dtype=np.float64)
        # The sessions' mean level and the shrinkage of a session's towards it (see _price_prior).
        self.price_prior = np.zeros(2, dtype=np.float64)

    def _fit(self, data: InteractionData) -> None:
        frame = data.interactions
        weights = frame["weight"].to_numpy(dtype=np.float64)
        if self.config.half_life_days is not None:
            age_days = (data.now - frame["datetime"]).dt.total_seconds().to_numpy() / 86_400
            weights = weights * np.exp2(-age_days / self.config.half_life_days)
        if self.config.visitor_exponent > 0:
            users = frame["user_code"].to_numpy()
            weights = weights * np.bincount(users)[users] ** -self.config.visitor_exponent
        popularity = np.bincount(frame["item_code"].to_numpy(), weights=weights, minlength=data.n_items)
        raw = data.items["category_id"].reindex(data.item_codes.ids).to_numpy(dtype=np.float64)
        has_category = ~np.isnan(raw)
        _, rows = np.unique(raw[has_category], return_inverse=True)
        self.item_category = np.full(data.n_items, -1, dtype=np.int64)
        self.item_category[has_category] = rows
        n_categories = int(rows.max(initial=-1)) + 1
        totals = np.bincount(rows, weights=popularity[has_category], minlength=n_categories)
        kept = has_category & (popularity > 0)
        if self.config.available_only:
            kept &= ~data.is_unavailable(data.item_codes.ids)
        items = np.flatnonzero(kept)
        category = self.item_category[items]
        # Best first within each category; the first top_items of each are kept.
        order = np.lexsort((items, -popularity[items], category))
        items, category = items[order], category[order]
        rank = np.arange(items.size) - np.searchsorted(category, category, side="left")
        items, category = items[rank < self.config.top_items], category[rank < self.config.top_items]
        self.shares = sp.csr_matrix(
            (popularity[items] / totals[category], (category, items)), shape=(n_categories, data.n_items)
        )
        self.price_level = _price_levels(data, self.item_category, n_categories)
        self.price_prior = _price_prior(data, self.price_level)

    def price_level_of(self, items_newest_first: npt.ArrayLike) -> float:
        """The price level of the session's ``n_recent`` latest distinct items with one (NaN: none):
        their mean, shrunk towards the sessions' mean as few items tell little (see _price_prior)."""
        assert self.items is not None
        codes = self.items.transform(items_newest_first, unknown="mask")
        codes = codes[codes >= 0]
        _, first = np.unique(codes, return_index=True)
        levels = self.price_level[codes[np.sort(first)][: self.config.n_recent]]
        levels = levels[~np.isnan(levels)]
        centre, shrinkage = self.price_prior
        return (
            float(centre + (levels - centre).sum() / (levels.size + shrinkage))
            if levels.size
            else float("nan")
        )

    def price_levels(self, item_ids: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The price level of each item (NaN: unknown)."""
        assert self.items is not None
        codes = self.items.transform(item_ids, unknown="mask")
        return np.where(codes >= 0, self.price_level[np.maximum(codes, 0)], np.nan)

    def score_entries(self, queries: SessionQueries) -> Entries:
        assert self.items is not None
        codes = self.items.transform(queries.items, unknown="mask")
        query = np.repeat(np.arange(len(queries)), np.diff(queries.offsets))
        # Places back from the prefix's last event (0 = the last); queries are oldest first.
        back = queries.offsets[query + 1] - 1 - np.arange(query.size)
        known = codes >= 0
        query, codes, back = query[known], codes[known].astype(np.int64), back[known]
        # The latest occurrence of each item: sort by (query, back), keep each (query, item)'s first.
        order = np.lexsort((back, query))
        query, codes = query[order], codes[order]
        keys = query * max(len(self.items), 1) + codes
        _, first = np.unique(keys, return_index=True)
        first = np.sort(first)
        query, codes = query[first], codes[first]
        seen_query, seen_codes = query, codes
        # Rank among the prefix's distinct items, latest first.
        rank = np.arange(query.size) - np.searchsorted(query, query, side="left")
        recent = rank < self.config.n_recent
        query, codes, rank = query[recent], codes[recent], rank[recent]
        category = self.item_category[codes]
        voting = category >= 0
        rows, categories, votes = summed(
            query[voting],
            category[voting],
            0.5 ** (rank[voting] / self.config.recency_half_life),
            self.shares.shape[0],
        )
        # The votes times the shares: each voted category's items (an item has one category).
        starts = self.shares.indptr[categories].astype(np.int64)
        take, vote = segments(starts, self.shares.indptr[categories + 1] - starts)
        n_items = self.shares.shape[1]
        rows, cols, values = summed(
            rows[vote],
            self.shares.indices[take].astype(np.int64),
            votes[vote] * self.shares.data[take],
            n_items,
        )
        keep = values != 0
        if not self.config.remind:
            keep &= ~among(rows, cols, seen_query, seen_codes, n_items)
        return rows[keep], cols[keep], values[keep]

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        return {
            "item_category": self.item_category,
            "indptr": self.shares.indptr,
            "indices": self.shares.indices,
            "shares": self.shares.data,
            "shape": np.array(self.shares.shape, dtype=np.int64),
            "price_level": self.price_level,
            "price_prior": self.price_prior,
        }

    def _restore(self, state: dict[str, npt.NDArray[Any]]) -> None:
        shape = tuple(int(x) for x in state["shape"])
        self.item_category = state["item_category"]
        self.shares = sp.csr_matrix((state["shares"], state["indices"], state["indptr"]), shape=shape)
        # Versions published before price levels were kept have none: every level unknown.
        self.price_level = state.get("price_level", np.full(self.item_category.size, np.nan))
        # Versions published before the prior: a session's level is its items' plain mean.
        self.price_prior = state.get("price_prior", np.zeros(2, dtype=np.float64))


def _price_levels(
    data: InteractionData, item_category: npt.NDArray[np.int64], n_categories: int
) -> npt.NDArray[np.float64]:
    """Each item's log price minus its category's mean, over the category's standard deviation
    (NaN without a price, a category, or a category with a spread)."""
    price = (
        data.items["price"].reindex(data.item_codes.ids).to_numpy(dtype=np.float64, na_value=np.nan)
        if "price" in data.items.columns
        else np.full(data.n_items, np.nan)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        log_price = np.where(price > 0, np.log(price), np.nan)
    priced = ~np.isnan(log_price) & (item_category >= 0)
    category = item_category[priced]
    count = np.bincount(category, minlength=n_categories)
    total = np.bincount(category, weights=log_price[priced], minlength=n_categories)
    squares = np.bincount(category, weights=log_price[priced] ** 2, minlength=n_categories)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = total / count
        spread = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
        levels = np.full(item_category.size, np.nan)
        levels[priced] = (log_price[priced] - mean[category]) / spread[category]
    levels[~np.isfinite(levels)] = np.nan
    return levels


def _price_prior(data: InteractionData, price_level: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``[centre, shrinkage]`` of the sessions' price levels, estimated on the window's sessions.

    A session's items scatter around the visitor's level: ``level = visitor + noise``, with
    variances ``between`` (visitors) and ``within`` (items of one session), estimated by the
    one-way random-effects moments over the sessions of 2+ distinct priced items. The best guess
    of a visitor's level from ``n`` items is then ``centre + Σ(level - centre) / (n + within /
    between)``: a single item says little when sessions are loose, much when they are tight.
    Shrinkage is 0 (the plain mean) without such sessions, and infinite (the centre: no price
    preference to find) when the levels do not vary more between sessions than within them.
    """
    frame = data.interactions[["user_code", "session_index", "item_code"]].drop_duplicates()
    levels = price_level[frame["item_code"].to_numpy()]
    priced = ~np.isnan(levels)
    session = frame.groupby(["user_code", "session_index"], sort=False).ngroup().to_numpy()[priced]
    levels = levels[priced]
    sizes = np.bincount(session)
    sized = sizes[session] >= 2
    session, levels = np.unique(session[sized], return_inverse=True)[1], levels[sized]
    if not levels.size:
        return np.zeros(2, dtype=np.float64)
    sizes = np.bincount(session).astype(np.float64)
    means = np.bincount(session, weights=levels) / sizes
    within = float(((levels - means[session]) ** 2).sum() / (sizes - 1).sum())
    centre = float(means.mean())
    between = float(means.var(ddof=1) - (within / sizes).mean()) if means.size > 1 else 0.0
    shrinkage = within / between if between > 0 else np.inf
    return np.array([centre, shrinkage], dtype=np.float64)
