"""Items: category, price, base popularity and its weekly drift, weekly states."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.data.synthetic.constants import (
    AVAILABLE_FLIP_SHARE,
    CATEGORY_FLIP_SHARE,
    DYING_ITEM_SHARE,
    LATE_FIRST_SNAPSHOT,
    N_SNAPSHOTS,
    N_WEEKS,
    NEW_ITEM_SHARE,
    PRICE_FLIP_SHARE,
    PRICE_STEP,
    REAL_ITEM_ID_SPACE,
    REAL_ITEMS_WITH_PROPERTIES,
    SNAPSHOT_WEEKS,
    TREND_SIGMA,
)
from recsys.data.synthetic.sampling import Bools, Floats, Ints, flip_states, sample
from recsys.data.synthetic.scales import TwinScale
from recsys.data.synthetic.tree import Tree, siblings


@dataclass(frozen=True)
class Items:
    """The catalogue, with weekly states (columns are event weeks 0..19)."""

    ids: Ints
    home: Ints  # category index the item belongs to
    category: Ints  # (n, weeks) category index per week
    available: Bools  # (n, weeks)
    price: Ints  # (n, weeks) price in units of PRICE_STEP
    price_z: Floats  # price level within the category, in standard deviations
    base: Floats  # base popularity
    slope: Floats  # log-popularity drift over the period
    birth: Ints  # first week on sale
    death: Ints  # first week no longer on sale (N_WEEKS if never)
    first_snapshot: Ints  # first snapshot with property rows

    @property
    def n(self) -> int:
        """Number of items in the pool (more than get written)."""
        return len(self.ids)

    def week_weights(self, week: int) -> Floats:
        """Popularity of every item in an event week."""
        x = (week - (N_WEEKS - 1) / 2) / ((N_WEEKS - 1) / 2)
        weight = self.base * np.exp(self.slope * x)
        age = week - self.birth
        launch = np.where(self.birth > 0, 1.0 + 3.0 * np.exp(-np.maximum(age, 0) / 2.0), 1.0)
        on_sale = (age >= 0) & (week < self.death)
        weight = np.where(on_sale, weight * launch, np.where(week >= self.death, weight * 0.01, 0.0))
        return np.where(self.available[:, week], weight, weight * 0.3)


def build_items(rng: np.random.Generator, scale: TwinScale, tree: Tree) -> Items:
    """Draw the item pool: categories, lifecycle, availability, prices and popularity."""
    n = scale.n_items_with_properties + max(50, round(0.04 * scale.n_items_with_properties))
    id_space = max(n, round(REAL_ITEM_ID_SPACE * scale.n_items_with_properties / REAL_ITEMS_WITH_PROPERTIES))
    ids = np.sort(rng.choice(id_space, n, replace=False)).astype(np.int64)
    ids = ids[rng.permutation(n)]
    home = _item_categories(rng, n, tree)

    birth = np.where(rng.random(n) < NEW_ITEM_SHARE, rng.integers(1, N_WEEKS, n), 0)
    lifetime = N_WEEKS - birth - 2
    dies = (rng.random(n) < DYING_ITEM_SHARE) & (lifetime > 0)
    death = np.where(dies, birth + 2 + np.floor(rng.random(n) * np.maximum(lifetime, 1)), N_WEEKS)
    death = death.astype(np.int64)
    # New items first appear in the snapshot that opens their first week; a share of the old
    # ones only get property rows later (as in the real file, whose rows spread over weeks).
    first_new = np.searchsorted(SNAPSHOT_WEEKS, birth, side="left")
    late = rng.random(n) < LATE_FIRST_SNAPSHOT
    first_old = np.where(late, rng.integers(1, N_SNAPSHOTS, n), 0)
    first_snapshot = np.minimum(np.where(birth > 0, first_new, first_old), N_SNAPSHOTS - 1)

    category = _weekly_categories(rng, home, tree)
    available = _weekly_availability(rng, n, death)
    level = rng.normal(np.log(9000.0), 0.9, tree.n_total)
    log_price = level[home] + rng.normal(0.0, 0.55, n)
    price = _weekly_prices(rng, np.maximum(1, np.round(np.exp(log_price) / PRICE_STEP)).astype(np.int64))
    return Items(
        ids=ids,
        home=home,
        category=category,
        available=available,
        price=price,
        price_z=(log_price - level[home]) / 0.55,
        base=rng.lognormal(0.0, scale.behaviour.popularity_sigma, n),
        slope=rng.normal(0.0, TREND_SIGMA, n),
        birth=birth.astype(np.int64),
        death=death,
        first_snapshot=first_snapshot.astype(np.int64),
    )


def _item_categories(rng: np.random.Generator, n: int, tree: Tree) -> Ints:
    """Home categories: leaves mostly, some inner nodes, a few ids missing from the tree."""
    inner = np.setdiff1d(np.arange(tree.n_nodes), tree.leaves)
    missing = np.arange(tree.n_nodes, tree.n_total)
    weights = np.zeros(tree.n_total)
    weights[tree.leaves] = rng.lognormal(0.0, 1.1, len(tree.leaves))
    leaf_total = weights.sum()
    weights[inner] = rng.lognormal(0.0, 1.0, len(inner))
    weights[inner] *= 0.03 * leaf_total / weights[inner].sum()
    if len(missing):
        weights[missing] = 0.003 * leaf_total / len(missing)
    home = sample(rng, weights, n)
    home[: len(missing)] = missing  # every missing id is used by at least one item
    return home


def _weekly_categories(rng: np.random.Generator, home: Ints, tree: Tree) -> Ints:
    """Category per week: a share of the items flips between its category and a sibling leaf."""
    n = len(home)
    category = np.repeat(home[:, None], N_WEEKS, axis=1)
    flippers = np.flatnonzero((rng.random(n) < CATEGORY_FLIP_SHARE) & (home < tree.n_nodes))
    other = siblings(rng, home[flippers], tree.parent, tree.leaves)
    same = other == home[flippers]
    other[same] = tree.leaves[rng.integers(0, len(tree.leaves), int(same.sum()))]
    state = flip_states(rng, len(flippers), N_WEEKS, 0.9)
    category[flippers] = np.where(state == 1, other[:, None], home[flippers][:, None])
    return category


def _weekly_availability(rng: np.random.Generator, n: int, death: Ints) -> Bools:
    """Availability per week: mostly constant, some items toggle, dying items turn unavailable."""
    available = np.repeat((rng.random(n) < 0.82)[:, None], N_WEEKS, axis=1)
    togglers = np.flatnonzero(rng.random(n) < AVAILABLE_FLIP_SHARE)
    available[togglers] = flip_states(rng, len(togglers), N_WEEKS, 0.85) == 1
    weeks = np.arange(N_WEEKS)
    dying = np.flatnonzero(death < N_WEEKS)
    available[dying] = weeks[None, :] < death[dying][:, None]
    return available


def _weekly_prices(rng: np.random.Generator, units: Ints) -> Ints:
    """Price per week: a share of the items alternates between its price and a promotion."""
    n = len(units)
    price = np.repeat(units[:, None], N_WEEKS, axis=1)
    changers = np.flatnonzero(rng.random(n) < PRICE_FLIP_SHARE)
    promo = np.round(units[changers] * rng.uniform(0.6, 0.95, len(changers))).astype(np.int64)
    # A promotion lowers the price; where rounding leaves no lower price, the price rises instead.
    promo = np.where((promo >= units[changers]) | (promo < 1), units[changers] + 1, promo)
    state = flip_states(rng, len(changers), N_WEEKS, 0.8)
    price[changers] = np.where(state == 1, promo[:, None], units[changers][:, None])
    return price
