"""Weekly item samplers: items of a category by popularity and price fit."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.data.synthetic.constants import N_WEEKS, PRICE_FIT_WIDTH
from recsys.data.synthetic.items import Items
from recsys.data.synthetic.sampling import Floats, Ints


@dataclass(frozen=True)
class WeekSampler:
    """Draws items of one week by popularity, from all items or from one category."""

    order: Ints  # item indices sorted by category
    cumulative: Floats  # cumulative popularity in that order
    seg_start: Ints  # per category: first position in ``order``
    seg_end: Ints  # per category: one past the last position
    on_sale: Ints  # items on sale this week

    def draw(self, u: Floats) -> Ints:
        """Items drawn from the whole catalogue."""
        pos = np.searchsorted(self.cumulative, u * self.cumulative[-1], side="right")
        return self.order[np.minimum(pos, len(self.order) - 1)]

    def draw_uniform(self, u: Floats) -> Ints:
        """Items drawn uniformly among those on sale (the long tail found by search and listings)."""
        return self.on_sale[
            np.minimum(np.floor(u * len(self.on_sale)).astype(np.int64), len(self.on_sale) - 1)
        ]

    def draw_in(self, categories: Ints, u: Floats) -> Ints:
        """Items drawn within given categories (from the whole catalogue where one is empty)."""
        before = np.concatenate([[0.0], self.cumulative])
        start, end = self.seg_start[categories], self.seg_end[categories]
        low, high = before[start], before[end]
        pos = np.searchsorted(self.cumulative, low + u * (high - low), side="right")
        pos = np.clip(pos, start, np.maximum(end - 1, start))
        empty = high <= low
        picked = self.order[np.minimum(pos, len(self.order) - 1)]
        if empty.any():
            picked[empty] = self.draw(u[empty])
        return picked


def build_samplers(items: Items, n_categories: int) -> tuple[list[WeekSampler], Floats]:
    """One sampler per event week, and the popularity of every category over the period."""
    samplers = []
    popularity = np.zeros(n_categories)
    for week in range(N_WEEKS):
        weights = items.week_weights(week)
        category = items.category[:, week]
        order = np.argsort(category, kind="stable").astype(np.int64)
        counts = np.bincount(category, minlength=n_categories)
        end = np.cumsum(counts).astype(np.int64)
        on_sale = np.flatnonzero((items.birth <= week) & (week < items.death))
        samplers.append(WeekSampler(order, np.cumsum(weights[order]), end - counts, end, on_sale))
        popularity += np.bincount(category, weights=weights, minlength=n_categories)
    return samplers, popularity


def draw_fitting(
    rng: np.random.Generator,
    sampler: WeekSampler,
    categories: Ints,
    visitor_z: Floats,
    items: Items,
    week: int,
    unavailable_rejection: float = 0.0,
) -> Ints:
    """Items of given categories whose price fits the visitors (rejection, three rounds)."""
    picked = sampler.draw_in(categories, rng.random(len(categories)))
    pending = np.arange(len(categories))
    for _ in range(3):
        z = items.price_z[picked[pending]]
        fit = np.exp(-0.5 * ((z - visitor_z[pending]) / PRICE_FIT_WIDTH) ** 2)
        if unavailable_rejection:
            fit *= np.where(items.available[picked[pending], week], 1.0, 1.0 - unavailable_rejection)
        pending = pending[rng.random(len(pending)) >= fit]
        if not len(pending):
            break
        picked[pending] = sampler.draw_in(categories[pending], rng.random(len(pending)))
    return picked
