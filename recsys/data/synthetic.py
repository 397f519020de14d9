"""A deterministic synthetic twin of the RetailRocket Kaggle dataset.

The real files cannot be downloaded everywhere the project runs (CI, demos, machines without
a Kaggle account), so :func:`generate_twin` writes the same four files, in exactly the Kaggle
format, from a seed: ``events.csv``, ``item_properties_part1.csv``,
``item_properties_part2.csv`` and ``category_tree.csv``. The same seed and scale give
byte-identical files. ``docs/synthetic_twin.md`` lists which statistics of the real data the
twin reproduces and which it does not; :func:`measure_raw_statistics` measures them on any
folder of RetailRocket files, the twin's or the real ones.

The twin is not noise. It plants the latent structure that makes the real data worth
modelling:

- a category tree (roots, up to 6 levels); items sit mostly on leaves and have a price and a
  heavy-tailed base popularity that drifts week by week (trends up or down, new items are
  launched with a boost, some items die and become unavailable);
- visitors have a heavy-tailed number of events (most have one, a few bots have thousands),
  favourite categories (often siblings in the tree) and a price level, kept over time;
- a session focuses on one category, mostly a favourite one, and views items of it, chosen
  by their popularity that week and by how well their price fits the visitor; visitors
  re-view items they just saw;
- add-to-carts follow views of the same item, transactions follow add-to-carts; buyers are
  the more active visitors, baskets hold about 1.27 items, unavailable items are bought
  less often;
- item properties are weekly snapshots in the Kaggle change-log form: an (item, property)
  row at the first snapshot the item appears in and again at each snapshot where the value
  changed; ``categoryid`` flips for about 5 % of the items, ``available`` for about 16 %,
  the price (``790``) for about 30 %.

Everything is vectorised with numpy (loops only run over weeks, rounds or chunks); item
properties are written in chunks, so the full scale stays within a few hundred megabytes
beyond the rows themselves.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from recsys.data.schema import (
    AVAILABLE_PROPERTY,
    CATEGORY_PROPERTY,
    CATEGORY_TREE,
    EVENT_TYPES,
    EVENTS,
    ITEM_PROPERTIES,
    PRICE_PROPERTY,
)

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
ProgressFn = Callable[[str], None]

# --------------------------------------------------------------------------------------
# Time line of the real data
# --------------------------------------------------------------------------------------
START_MS = 1_430_622_000_000  # 2015-05-03 03:00:00 UTC, the first event
END_MS = 1_442_545_200_000  # 2015-09-18 03:00:00 UTC, after the last event
_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS
_WEEK_MS = 7 * _DAY_MS
# Event weeks counted from START_MS; the 20th is cut after 5 days (138 days in all).
_N_WEEKS = 20
# Property snapshots are taken on Sundays 03:00 UTC; Sunday i (0 = 2015-05-10) opens event
# week i + 1. There are 19 Sundays up to 2015-09-13 but the real file holds 18 distinct
# timestamps: one week is missing. Which one is not known here; the twin drops 2015-07-12.
_MISSING_SUNDAY = 9
_SNAPSHOT_SUNDAYS = np.array([s for s in range(19) if s != _MISSING_SUNDAY], dtype=np.int64)
_SNAPSHOT_WEEKS = _SNAPSHOT_SUNDAYS + 1
_N_SNAPSHOTS = len(_SNAPSHOT_SUNDAYS)
SNAPSHOT_TIMESTAMPS_MS: tuple[int, ...] = tuple(int(START_MS + w * _WEEK_MS) for w in _SNAPSHOT_WEEKS)

# --------------------------------------------------------------------------------------
# Fixed facts of the real files
# --------------------------------------------------------------------------------------
N_PROPERTIES = 1104  # distinct property names: categoryid, available and 1,102 hashed ones
_N_HASHED_PROPERTIES = N_PROPERTIES - 2
_REAL_PROPERTY_ROWS = 20_275_902
_REAL_PART1_ROWS = 10_999_999
_REAL_ITEMS_WITH_PROPERTIES = 417_053
_REAL_ITEM_ID_SPACE = 466_868  # item ids run from 0 to 466,867
_NO_PROPERTY_SHARE = 0.01  # event items without any property row ...
_NO_PROPERTY_BIAS = 1.3  # ... picked with weight events ** bias: they carry ~9 % of the events
_PRICE_STEP = 120  # real prices ("n15360.000", "n5400.000", ...) are multiples of 120

# --------------------------------------------------------------------------------------
# Behaviour model (calibrated against the real statistics, see docs/synthetic_twin.md)
# --------------------------------------------------------------------------------------
_P_SINGLE_EVENT = 0.725  # regular visitors with a single browse event
_TAIL_ALPHA = 1.45  # Lomax tail of the events of the other visitors
_P_NEW_SESSION = 0.30
_P_NEW_SESSION_BOT = 0.02
_P_FOCUS_FAVOURITE = 0.8  # a session focuses on a favourite category
_P_IN_FOCUS = 0.85  # a view stays in the session's category
_P_IN_FOCUS_BOT = 0.2
_P_LONG_TAIL = 0.15  # share of the other views drawn uniformly among items on sale
_P_REVIEW = 0.23  # a view repeats the item seen just before
_P_REVIEW_NEW_SESSION = 0.45  # ... at the start of a later session
_PRICE_FIT_WIDTH = 0.9  # how strictly visitors keep to their price level (z units)
_POPULARITY_SIGMA = 2.05  # log-normal spread of the base popularity of items
_TREND_SIGMA = 0.9  # log-popularity drift from the first to the last week
_NEW_ITEM_SHARE = 0.15
_DYING_ITEM_SHARE = 0.045
_CATEGORY_FLIP_SHARE = 0.055
_AVAILABLE_FLIP_SHARE = 0.12  # plus the dying items: ~16 % change availability
_PRICE_FLIP_SHARE = 0.30
_P_TX_WITH_CART = 0.93  # transactions preceded by an add-to-cart of the same item
_P_TX_FROM_SESSION = 0.5  # bought item is one viewed earlier in the session
_LATE_FIRST_SNAPSHOT = 0.4  # items already on sale whose properties start after 2015-05-10

_CSV_OPTIONS = pa_csv.WriteOptions(include_header=False, quoting_style="none")
_CHUNK_ROWS = 1_000_000


# --------------------------------------------------------------------------------------
# Scales
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TwinScale:
    """The sizes of a twin; every ratio between them is that of the real data.

    Attributes
    ----------
    name : str
        Scale name, as in :data:`SCALES`.
    n_views, n_addtocart, n_transaction_rows : int
        Rows of ``events.csv`` per event type (exact duplicates included).
    n_transactions : int
        Distinct ``transactionid`` values.
    n_buyers : int
        Visitors with at least one transaction.
    n_visitors : int
        Distinct visitors.
    n_duplicate_events : int
        Exact duplicate rows of ``events.csv``.
    n_items_with_properties : int
        Distinct items in the item properties files.
    n_property_rows : int
        Rows of both item properties files together.
    n_categories, n_category_roots : int
        Nodes and roots of the category tree.
    n_missing_categories : int
        Category ids used by ``categoryid`` properties that are not in the tree.
    n_bots : int
        Heavy visitors with hundreds to thousands of events.
    max_visitor_events : int
        Views of the heaviest bot.
    """

    name: str
    n_views: int
    n_addtocart: int
    n_transaction_rows: int
    n_transactions: int
    n_buyers: int
    n_visitors: int
    n_duplicate_events: int
    n_items_with_properties: int
    n_property_rows: int
    n_categories: int
    n_category_roots: int
    n_missing_categories: int
    n_bots: int
    max_visitor_events: int

    def __post_init__(self) -> None:
        problems = []
        if min(self.n_views, self.n_addtocart, self.n_transaction_rows, self.n_visitors) < 1:
            problems.append("every event type and the visitors need at least one row")
        if not 1 <= self.n_buyers <= self.n_transactions <= self.n_transaction_rows:
            problems.append("need 1 <= n_buyers <= n_transactions <= n_transaction_rows")
        if self.n_transaction_rows > self.n_addtocart:
            problems.append("need n_transaction_rows <= n_addtocart (purchases follow carts)")
        if self.n_views < 1.3 * self.n_visitors:
            problems.append("need n_views >= 1.3 * n_visitors (every visitor views something)")
        if not 1 <= self.n_bots < self.n_visitors or self.max_visitor_events < 2:
            problems.append("need 1 <= n_bots < n_visitors and max_visitor_events >= 2")
        if self.n_duplicate_events >= self.n_views:
            problems.append("too many duplicate events")
        if not 1 <= self.n_category_roots <= self.n_categories - 10:
            problems.append("need 1 <= n_category_roots <= n_categories - 10")
        if self.n_missing_categories < 0:
            problems.append("n_missing_categories must be >= 0")
        if self.n_items_with_properties < 200:
            problems.append("need n_items_with_properties >= 200")
        if self.n_property_rows < 40 * self.n_items_with_properties:
            problems.append("need n_property_rows >= 40 * n_items_with_properties")
        if problems:
            raise ValueError(f"invalid TwinScale {self.name!r}: {'; '.join(problems)}")

    @property
    def n_events(self) -> int:
        """Rows of ``events.csv``."""
        return self.n_views + self.n_addtocart + self.n_transaction_rows

    @classmethod
    def scaled(
        cls,
        name: str,
        fraction: float,
        *,
        n_categories: int,
        n_category_roots: int,
        n_missing_categories: int,
    ) -> TwinScale:
        """A scale with ``fraction`` of every count of the real data.

        Parameters
        ----------
        name : str
            Name of the new scale.
        fraction : float
            Share of the real sizes, in (0, 1].
        n_categories, n_category_roots, n_missing_categories : int
            The category tree does not shrink linearly (a tiny catalogue still needs a few
            items per category), so its size is given explicitly.

        Returns
        -------
        TwinScale
            The scaled sizes.
        """
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")

        def part(value: int) -> int:
            return max(1, round(value * fraction))

        return cls(
            name=name,
            n_views=part(FULL.n_views),
            n_addtocart=part(FULL.n_addtocart),
            n_transaction_rows=part(FULL.n_transaction_rows),
            n_transactions=part(FULL.n_transactions),
            n_buyers=part(FULL.n_buyers),
            n_visitors=part(FULL.n_visitors),
            n_duplicate_events=part(FULL.n_duplicate_events),
            n_items_with_properties=part(FULL.n_items_with_properties),
            n_property_rows=part(FULL.n_property_rows),
            n_categories=n_categories,
            n_category_roots=n_category_roots,
            n_missing_categories=n_missing_categories,
            n_bots=part(FULL.n_bots),
            max_visitor_events=max(30, round(FULL.max_visitor_events * fraction)),
        )


FULL = TwinScale(
    name="full",
    n_views=2_664_312,
    n_addtocart=69_332,
    n_transaction_rows=22_457,
    n_transactions=17_672,
    n_buyers=11_719,
    n_visitors=1_407_580,
    n_duplicate_events=460,
    n_items_with_properties=_REAL_ITEMS_WITH_PROPERTIES,
    n_property_rows=_REAL_PROPERTY_ROWS,
    n_categories=1_669,
    n_category_roots=25,
    n_missing_categories=30,
    n_bots=12,
    max_visitor_events=7_757,
)

SCALES: dict[str, TwinScale] = {
    "tiny": TwinScale.scaled("tiny", 0.006, n_categories=60, n_category_roots=4, n_missing_categories=3),
    "small": TwinScale.scaled("small", 0.05, n_categories=200, n_category_roots=8, n_missing_categories=5),
    "full": FULL,
}


@dataclass(frozen=True)
class TwinSummary:
    """What :func:`generate_twin` wrote.

    Attributes
    ----------
    out_dir : Path
        The folder holding the files.
    scale : str
        Name of the scale used.
    seed : int
        The seed used.
    files : dict of str to Path
        Path of each file, keyed by its Kaggle file name.
    rows : dict of str to int
        Data rows (without the header) of each file, keyed by its Kaggle file name.
    seconds : float
        Wall-clock time of the generation.
    """

    out_dir: Path
    scale: str
    seed: int
    files: dict[str, Path]
    rows: dict[str, int]
    seconds: float


def resolve_scale(scale: str | TwinScale) -> TwinScale:
    """The :class:`TwinScale` for a scale name (``tiny``, ``small``, ``full``) or a scale itself."""
    if isinstance(scale, TwinScale):
        return scale
    try:
        return SCALES[scale]
    except KeyError:
        raise ValueError(f"unknown twin scale {scale!r}; expected one of {', '.join(SCALES)}") from None


def generate_twin(
    out_dir: Path,
    scale: str | TwinScale = "small",
    seed: int = 42,
    progress: ProgressFn | None = None,
) -> TwinSummary:
    """Write a synthetic twin of the RetailRocket files into ``out_dir``.

    Parameters
    ----------
    out_dir : Path
        Target folder, created if missing; files of an earlier twin are replaced.
    scale : str or TwinScale
        ``"tiny"`` (unit tests), ``"small"`` (demo, ~5 % of the real size), ``"full"``
        (the real size) or a custom :class:`TwinScale`.
    seed : int
        Seed of every random choice: the same seed and scale give byte-identical files.
    progress : callable, optional
        Called with a short message at each step.

    Returns
    -------
    TwinSummary
        Paths and row counts of the written files.

    Notes
    -----
    Each file is written under a temporary name in ``out_dir`` and renamed when complete, so
    a failure never leaves a half-written file under a Kaggle name.
    """
    started = time.perf_counter()
    spec = resolve_scale(scale)
    say: ProgressFn = progress if progress is not None else _silent
    out_dir.mkdir(parents=True, exist_ok=True)
    rngs = _random_streams(seed)

    say(f"twin {spec.name} (seed {seed}): category tree and items")
    tree = _build_tree(rngs["tree"], spec)
    items = _build_items(rngs["items"], spec, tree)
    samplers, category_popularity = _build_samplers(items, tree.n_total)
    say("events: visitors, sessions and views")
    events = _simulate_events(rngs["events"], spec, tree, items, samplers, category_popularity)
    del samplers

    files = {name: out_dir / name for name in (*CATEGORY_TREE.files, *EVENTS.files, *ITEM_PROPERTIES.files)}
    rows: dict[str, int] = {}
    say(f"writing {CATEGORY_TREE.files[0]}")
    rows[CATEGORY_TREE.files[0]] = _write_category_tree(files[CATEGORY_TREE.files[0]], tree, rngs["tree"])
    say(f"writing {EVENTS.files[0]}")
    rows[EVENTS.files[0]] = _write_events(files[EVENTS.files[0]], events, items)

    say("item properties: states, values and rows")
    event_counts = np.bincount(events.item, minlength=items.n).astype(np.int64)
    property_rows = _build_property_rows(rngs["properties"], spec, tree, items, event_counts)
    del events
    rows |= _write_item_properties(out_dir, property_rows, items, rngs["order"], say)
    seconds = time.perf_counter() - started
    say(f"twin {spec.name} written to {out_dir} in {seconds:.1f} s")
    return TwinSummary(out_dir=out_dir, scale=spec.name, seed=seed, files=files, rows=rows, seconds=seconds)


def _silent(_message: str) -> None:
    """A progress callback that ignores messages."""


def _random_streams(seed: int) -> dict[str, np.random.Generator]:
    """Independent generators per part, so that changing one part leaves the others as they were."""
    names = ("tree", "items", "events", "properties", "order")
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {name: np.random.default_rng(child) for name, child in zip(names, children, strict=True)}


# --------------------------------------------------------------------------------------
# Small vectorised helpers
# --------------------------------------------------------------------------------------
def _sample(rng: np.random.Generator, weights: npt.NDArray[np.floating[Any]], size: int) -> Ints:
    """``size`` indices drawn with replacement, proportionally to ``weights``."""
    cumulative = np.cumsum(weights, dtype=np.float64)
    picks = np.searchsorted(cumulative, rng.random(size) * cumulative[-1], side="right")
    return np.minimum(picks, len(weights) - 1).astype(np.int64)


def _sample_without_replacement(rng: np.random.Generator, weights: Floats, size: int) -> Ints:
    """``size`` distinct indices drawn proportionally to ``weights`` (Efraimidis-Spirakis), sorted."""
    positive = weights > 0
    if size > int(positive.sum()):
        raise ValueError(f"cannot draw {size} distinct indices from {int(positive.sum())} candidates")
    keys = np.full(len(weights), -np.inf)
    keys[positive] = np.log(rng.random(int(positive.sum()))) / weights[positive]
    if size == 0:
        return np.zeros(0, dtype=np.int64)
    chosen = np.argpartition(-keys, size - 1)[:size]
    return np.sort(chosen).astype(np.int64)


def _flip_states(rng: np.random.Generator, n: int, columns: int, flip: float) -> Ints:
    """0/1 states of ``n`` series over ``columns`` steps that flip with chance ``flip`` per step."""
    flips = rng.random((n, columns)) < flip
    flips[:, 0] = rng.random(n) < 0.5
    return (np.cumsum(flips, axis=1) % 2).astype(np.int64)


def _lognormal_ms(rng: np.random.Generator, median_ms: float, sigma: float, size: int) -> Floats:
    """Log-normal durations in milliseconds."""
    return np.exp(rng.normal(np.log(median_ms), sigma, size))


# --------------------------------------------------------------------------------------
# Category tree
# --------------------------------------------------------------------------------------
_LEVEL_SHARES = np.array([0.20, 0.50, 0.22, 0.06, 0.02])  # non-root nodes on levels 2..6


@dataclass(frozen=True)
class _Tree:
    """Categories: indices below ``n_nodes`` are tree nodes, the others are missing from the tree."""

    ids: Ints  # external category id per index
    parent: Ints  # parent index, -1 for roots and missing categories
    n_nodes: int
    leaves: Ints  # indices of the leaves

    @property
    def n_total(self) -> int:
        """Tree nodes plus categories missing from the tree."""
        return len(self.ids)


def _build_tree(rng: np.random.Generator, scale: TwinScale) -> _Tree:
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
        parent[block] = previous[_sample(rng, attraction[previous], int(size))]
        previous, start = block, start + int(size)
    children = np.bincount(parent[parent >= 0], minlength=n_nodes)[:n_nodes]
    ids = rng.permutation(n_nodes + scale.n_missing_categories).astype(np.int64)
    return _Tree(ids=ids, parent=parent, n_nodes=n_nodes, leaves=np.flatnonzero(children == 0))


def _siblings(rng: np.random.Generator, categories: Ints, parent: Ints, candidates: Ints) -> Ints:
    """For each category, a random category among ``candidates`` with the same parent (maybe itself)."""
    group = np.where(parent[candidates] >= 0, parent[candidates], len(parent))
    order = np.argsort(group, kind="stable")
    counts = np.bincount(group, minlength=len(parent) + 1)
    starts = np.cumsum(counts) - counts
    own = np.where(parent[categories] >= 0, parent[categories], len(parent))
    size = counts[own]
    pick = starts[own] + np.floor(rng.random(len(categories)) * np.maximum(size, 1)).astype(np.int64)
    return np.where(size > 0, candidates[order[np.minimum(pick, len(order) - 1)]], categories)


# --------------------------------------------------------------------------------------
# Items
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Items:
    """The catalogue, with weekly states (columns are event weeks 0..19)."""

    ids: Ints
    home: Ints  # category index the item belongs to
    category: Ints  # (n, weeks) category index per week
    available: Bools  # (n, weeks)
    price: Ints  # (n, weeks) price in units of _PRICE_STEP
    price_z: Floats  # price level within the category, in standard deviations
    base: Floats  # base popularity
    slope: Floats  # log-popularity drift over the period
    birth: Ints  # first week on sale
    death: Ints  # first week no longer on sale (_N_WEEKS if never)
    first_snapshot: Ints  # first snapshot with property rows

    @property
    def n(self) -> int:
        """Number of items in the pool (more than get written)."""
        return len(self.ids)

    def week_weights(self, week: int) -> Floats:
        """Popularity of every item in an event week."""
        x = (week - (_N_WEEKS - 1) / 2) / ((_N_WEEKS - 1) / 2)
        weight = self.base * np.exp(self.slope * x)
        age = week - self.birth
        launch = np.where(self.birth > 0, 1.0 + 3.0 * np.exp(-np.maximum(age, 0) / 2.0), 1.0)
        on_sale = (age >= 0) & (week < self.death)
        weight = np.where(on_sale, weight * launch, np.where(week >= self.death, weight * 0.01, 0.0))
        return np.where(self.available[:, week], weight, weight * 0.3)


def _build_items(rng: np.random.Generator, scale: TwinScale, tree: _Tree) -> _Items:
    """Draw the item pool: categories, lifecycle, availability, prices and popularity."""
    n = scale.n_items_with_properties + max(50, round(0.04 * scale.n_items_with_properties))
    id_space = max(
        n, round(_REAL_ITEM_ID_SPACE * scale.n_items_with_properties / _REAL_ITEMS_WITH_PROPERTIES)
    )
    ids = np.sort(rng.choice(id_space, n, replace=False)).astype(np.int64)
    ids = ids[rng.permutation(n)]
    home = _item_categories(rng, n, tree)

    birth = np.where(rng.random(n) < _NEW_ITEM_SHARE, rng.integers(1, _N_WEEKS, n), 0)
    lifetime = _N_WEEKS - birth - 2
    dies = (rng.random(n) < _DYING_ITEM_SHARE) & (lifetime > 0)
    death = np.where(dies, birth + 2 + np.floor(rng.random(n) * np.maximum(lifetime, 1)), _N_WEEKS)
    death = death.astype(np.int64)
    # New items first appear in the snapshot that opens their first week; a share of the old
    # ones only get property rows later (as in the real file, whose rows spread over weeks).
    first_new = np.searchsorted(_SNAPSHOT_WEEKS, birth, side="left")
    late = rng.random(n) < _LATE_FIRST_SNAPSHOT
    first_old = np.where(late, rng.integers(1, _N_SNAPSHOTS, n), 0)
    first_snapshot = np.minimum(np.where(birth > 0, first_new, first_old), _N_SNAPSHOTS - 1)

    category = _weekly_categories(rng, home, tree)
    available = _weekly_availability(rng, n, death)
    level = rng.normal(np.log(9000.0), 0.9, tree.n_total)
    log_price = level[home] + rng.normal(0.0, 0.55, n)
    price = _weekly_prices(rng, np.maximum(1, np.round(np.exp(log_price) / _PRICE_STEP)).astype(np.int64))
    return _Items(
        ids=ids,
        home=home,
        category=category,
        available=available,
        price=price,
        price_z=(log_price - level[home]) / 0.55,
        base=rng.lognormal(0.0, _POPULARITY_SIGMA, n),
        slope=rng.normal(0.0, _TREND_SIGMA, n),
        birth=birth.astype(np.int64),
        death=death,
        first_snapshot=first_snapshot.astype(np.int64),
    )


def _item_categories(rng: np.random.Generator, n: int, tree: _Tree) -> Ints:
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
    home = _sample(rng, weights, n)
    home[: len(missing)] = missing  # every missing id is used by at least one item
    return home


def _weekly_categories(rng: np.random.Generator, home: Ints, tree: _Tree) -> Ints:
    """Category per week: a share of the items flips between its category and a sibling leaf."""
    n = len(home)
    category = np.repeat(home[:, None], _N_WEEKS, axis=1)
    flippers = np.flatnonzero((rng.random(n) < _CATEGORY_FLIP_SHARE) & (home < tree.n_nodes))
    other = _siblings(rng, home[flippers], tree.parent, tree.leaves)
    same = other == home[flippers]
    other[same] = tree.leaves[rng.integers(0, len(tree.leaves), int(same.sum()))]
    state = _flip_states(rng, len(flippers), _N_WEEKS, 0.9)
    category[flippers] = np.where(state == 1, other[:, None], home[flippers][:, None])
    return category


def _weekly_availability(rng: np.random.Generator, n: int, death: Ints) -> Bools:
    """Availability per week: mostly constant, some items toggle, dying items turn unavailable."""
    available = np.repeat((rng.random(n) < 0.82)[:, None], _N_WEEKS, axis=1)
    togglers = np.flatnonzero(rng.random(n) < _AVAILABLE_FLIP_SHARE)
    available[togglers] = _flip_states(rng, len(togglers), _N_WEEKS, 0.85) == 1
    weeks = np.arange(_N_WEEKS)
    dying = np.flatnonzero(death < _N_WEEKS)
    available[dying] = weeks[None, :] < death[dying][:, None]
    return available


def _weekly_prices(rng: np.random.Generator, units: Ints) -> Ints:
    """Price per week: a share of the items alternates between its price and a promotion."""
    n = len(units)
    price = np.repeat(units[:, None], _N_WEEKS, axis=1)
    changers = np.flatnonzero(rng.random(n) < _PRICE_FLIP_SHARE)
    promo = np.round(units[changers] * rng.uniform(0.6, 0.95, len(changers))).astype(np.int64)
    # A promotion lowers the price; where rounding leaves no lower price, the price rises instead.
    promo = np.where((promo >= units[changers]) | (promo < 1), units[changers] + 1, promo)
    state = _flip_states(rng, len(changers), _N_WEEKS, 0.8)
    price[changers] = np.where(state == 1, promo[:, None], units[changers][:, None])
    return price


# --------------------------------------------------------------------------------------
# Weekly item samplers
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _WeekSampler:
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


def _build_samplers(items: _Items, n_categories: int) -> tuple[list[_WeekSampler], Floats]:
    """One sampler per event week, and the popularity of every category over the period."""
    samplers = []
    popularity = np.zeros(n_categories)
    for week in range(_N_WEEKS):
        weights = items.week_weights(week)
        category = items.category[:, week]
        order = np.argsort(category, kind="stable").astype(np.int64)
        counts = np.bincount(category, minlength=n_categories)
        end = np.cumsum(counts).astype(np.int64)
        on_sale = np.flatnonzero((items.birth <= week) & (week < items.death))
        samplers.append(_WeekSampler(order, np.cumsum(weights[order]), end - counts, end, on_sale))
        popularity += np.bincount(category, weights=weights, minlength=n_categories)
    return samplers, popularity


def _draw_fitting(
    rng: np.random.Generator,
    sampler: _WeekSampler,
    categories: Ints,
    visitor_z: Floats,
    items: _Items,
    week: int,
    unavailable_rejection: float = 0.0,
) -> Ints:
    """Items of given categories whose price fits the visitors (rejection, three rounds)."""
    picked = sampler.draw_in(categories, rng.random(len(categories)))
    pending = np.arange(len(categories))
    for _ in range(3):
        z = items.price_z[picked[pending]]
        fit = np.exp(-0.5 * ((z - visitor_z[pending]) / _PRICE_FIT_WIDTH) ** 2)
        if unavailable_rejection:
            fit *= np.where(items.available[picked[pending], week], 1.0, 1.0 - unavailable_rejection)
        pending = pending[rng.random(len(pending)) >= fit]
        if not len(pending):
            break
        picked[pending] = sampler.draw_in(categories[pending], rng.random(len(pending)))
    return picked


# --------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------
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
class _Events:
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


def _simulate_events(
    rng: np.random.Generator,
    scale: TwinScale,
    tree: _Tree,
    items: _Items,
    samplers: list[_WeekSampler],
    category_popularity: Floats,
) -> _Events:
    """Simulate every event row of the twin."""
    duplicates = _duplicate_quota(scale)
    unique_views = scale.n_views - duplicates[0]
    unique_carts = scale.n_addtocart - duplicates[1]
    unique_purchases = scale.n_transaction_rows - duplicates[2]
    with_cart = rng.random(unique_purchases) < _P_TX_WITH_CART
    from_session = rng.random(unique_purchases) < _P_TX_FROM_SESSION
    with_view = rng.random(unique_purchases) < np.where(from_session, 0.5, 0.95)
    n_browse = unique_views - int(with_view.sum())
    n_abandoned = unique_carts - int(with_cart.sum())

    visitors = _build_visitors(rng, scale, n_browse, tree, category_popularity)
    browse = _browse(rng, visitors, items, samplers, category_popularity)
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
    return _Events(
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
    rng: np.random.Generator, scale: TwinScale, n_browse: int, tree: _Tree, category_popularity: Floats
) -> _Visitors:
    """Visitors: heavy-tailed browse counts, bots, favourite categories and price levels."""
    n_bots = scale.n_bots
    bots = np.maximum(2, np.round(scale.max_visitor_events * np.arange(1, n_bots + 1) ** -0.8)).astype(
        np.int64
    )
    regular = _regular_counts(
        rng, scale.n_visitors - n_bots, n_browse - int(bots.sum()), scale.max_visitor_events
    )
    browse = np.concatenate([regular, bots])
    is_bot = np.arange(len(browse)) >= len(regular)
    n = len(browse)
    bearing = np.flatnonzero(category_popularity > 0)
    first = _sample(rng, category_popularity, n)
    favourites = np.empty((n, 3), dtype=np.int64)
    favourites[:, 0] = first
    for slot in (1, 2):
        sibling = _siblings(rng, first, tree.parent, bearing)
        favourites[:, slot] = np.where(rng.random(n) < 0.5, sibling, _sample(rng, category_popularity, n))
    return _Visitors(
        browse=browse,
        is_bot=is_bot,
        propensity=np.where(is_bot, 0.0, rng.lognormal(0.0, 1.2, n)),
        price_z=rng.normal(0.0, 1.0, n),
        favourites=favourites,
        n_favourites=1 + rng.binomial(2, 0.45, n),
    )


def _regular_counts(rng: np.random.Generator, n: int, budget: int, max_events: int) -> Ints:
    """Browse views of regular visitors: most have one, the rest a Lomax tail; sum == budget."""
    if budget < n:
        raise ValueError(f"{budget} views cannot cover {n} visitors")
    single = rng.random(n) < _P_SINGLE_EVENT
    tail = rng.pareto(_TAIL_ALPHA, n)
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
    items: _Items,
    samplers: list[_WeekSampler],
    category_popularity: Floats,
) -> _Browse:
    """Sessions, times and viewed items of all browse views."""
    visitor, time_ms, new_session = _session_times(rng, visitors)
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
    focused = rng.random(n_sessions) < np.where(visitors.is_bot[session_visitor], 0.0, _P_FOCUS_FAVOURITE)
    focus = np.where(focused, favourite, _sample(rng, category_popularity, n_sessions))

    week = np.clip((time_ms - START_MS) // _WEEK_MS, 0, _N_WEEKS - 1)
    first_of_visitor = np.concatenate([[True], visitor[1:] != visitor[:-1]])
    review = ~first_of_visitor & (rng.random(n) < np.where(new_session, _P_REVIEW_NEW_SESSION, _P_REVIEW))
    u = rng.random(n)
    in_focus_share = np.where(visitors.is_bot[visitor], _P_IN_FOCUS_BOT, _P_IN_FOCUS)
    in_focus = u < in_focus_share
    long_tail = ~in_focus & (u < in_focus_share + (1.0 - in_focus_share) * _P_LONG_TAIL)
    item = np.zeros(n, dtype=np.int64)
    for k in range(_N_WEEKS):
        todo = ~review & (week == k)
        wide = np.flatnonzero(todo & ~in_focus & ~long_tail)
        item[wide] = samplers[k].draw(rng.random(len(wide)))
        tail = np.flatnonzero(todo & long_tail)
        item[tail] = samplers[k].draw_uniform(rng.random(len(tail)))
        narrow = np.flatnonzero(todo & in_focus)
        item[narrow] = _draw_fitting(
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


def _session_times(rng: np.random.Generator, visitors: _Visitors) -> tuple[Ints, Ints, Bools]:
    """Visitor, time and session start of each browse view, sorted by visitor and time."""
    counts = visitors.browse
    n_visitors, n = len(counts), int(counts.sum())
    visitor = np.repeat(np.arange(n_visitors), counts)
    first = np.cumsum(counts) - counts
    position = np.arange(n) - first[visitor]
    bot = visitors.is_bot[visitor]
    new_session = (position == 0) | (rng.random(n) < np.where(bot, _P_NEW_SESSION_BOT, _P_NEW_SESSION))
    within = np.where(
        bot,
        np.clip(_lognormal_ms(rng, 6_000, 0.7, n), 500, 300_000),
        np.clip(_lognormal_ms(rng, 40_000, 1.0, n), 1_000, 1_500_000),
    )
    mean_gap = _lognormal_ms(rng, 2.5 * _DAY_MS, 1.2, n_visitors)
    between = rng.exponential(1.0, n) * mean_gap[visitor] + 30 * 60_000
    gap = np.where(position == 0, 0.0, np.where(new_session, between, within))
    offset = np.cumsum(gap)
    offset -= offset[first][visitor]
    span = offset[first + counts - 1]
    limit = float(END_MS - START_MS - _HOUR_MS)
    shrink = np.minimum(1.0, limit / np.maximum(span, 1.0))
    offset *= shrink[visitor]
    start = (
        START_MS + rng.uniform(1_000, 60_000, n_visitors) + rng.random(n_visitors) * (limit - span * shrink)
    )
    return visitor, np.floor(start[visitor] + offset).astype(np.int64), new_session


def _abandoned_carts(
    rng: np.random.Generator, visitors: _Visitors, browse: _Browse, items: _Items, n_carts: int
) -> _Rows:
    """Add-to-carts right after views, by visitors with a high propensity, of fitting available items."""
    available = items.available[browse.item, browse.week]
    fit = np.exp(
        -0.5 * ((items.price_z[browse.item] - visitors.price_z[browse.visitor]) / _PRICE_FIT_WIDTH) ** 2
    )
    weight = visitors.propensity[browse.visitor] * np.where(available, 1.0, 0.12) * fit
    source = _sample_without_replacement(rng, weight, n_carts)
    delay = np.clip(_lognormal_ms(rng, 25_000, 0.8, n_carts), 1_000, 600_000)
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
    items: _Items,
    samplers: list[_WeekSampler],
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
    week = np.clip((anchor[basket] - START_MS) // _WEEK_MS, 0, _N_WEEKS - 1)

    length = browse.session_last[row_session] - browse.session_first[row_session] + 1
    seen = browse.item[
        browse.session_first[row_session] + np.floor(rng.random(n_rows) * length).astype(np.int64)
    ]
    keep = from_session & (items.available[seen, week] | (rng.random(n_rows) < 0.1))
    item = np.where(keep, seen, -1)
    for k in range(_N_WEEKS):
        todo = np.flatnonzero(~keep & (week == k))
        item[todo] = _draw_fitting(
            rng,
            samplers[k],
            browse.session_focus[row_session[todo]],
            visitors.price_z[owner[basket[todo]]],
            items,
            k,
            unavailable_rejection=0.9,
        )

    view_time = anchor[basket] + slot * 90_000 + np.floor(rng.random(n_rows) * 20_000).astype(np.int64)
    cart_time = view_time + np.clip(_lognormal_ms(rng, 20_000, 0.6, n_rows), 1_000, 60_000).astype(np.int64)
    settle = np.clip(_lognormal_ms(rng, 120_000, 0.7, scale.n_transactions), 10_000, 1_800_000).astype(
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
    buyers = _sample_without_replacement(rng, weight, scale.n_buyers)
    owner = np.empty(scale.n_transactions, dtype=np.int64)
    order = rng.permutation(scale.n_transactions)
    owner[order[: scale.n_buyers]] = rng.permutation(buyers)
    loyalty = rng.pareto(1.2, scale.n_buyers) + 0.05
    owner[order[scale.n_buyers :]] = buyers[_sample(rng, loyalty, scale.n_transactions - scale.n_buyers)]
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
    anchor = browse.time[browse.session_last[session]] + _lognormal_ms(rng, 60_000, 0.8, len(session))
    anchor += rank * 20 * 60_000
    latest = END_MS - _HOUR_MS - sizes * 90_000 - 1_800_000
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
    block = (time_ms - START_MS) // (3 * _HOUR_MS)
    n_blocks = int((END_MS - START_MS) // (3 * _HOUR_MS)) + 1
    rotated = (block - 30 * 8) % n_blocks
    return np.lexsort((rng.random(len(time_ms)), rotated)).astype(np.int64)


# --------------------------------------------------------------------------------------
# Item properties
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _CoreProperty:
    """A hashed property of (almost) every item, sized after the real file."""

    name: str
    pool: float  # distinct values, as a share of the items
    tokens: float  # mean tokens per value
    numeric: float  # share of numeric ("n123.000") tokens
    skew: float  # > 1 puts most items on few values
    changers: float  # share of items whose value changes
    flip: float  # chance per snapshot that a changer's value flips
    by_category: bool  # values follow the item's category


_CORE_PROPERTIES = (
    _CoreProperty("888", 0.8, 3.5, 0.15, 1.0, 0.5, 0.92, False),
    _CoreProperty("6", 0.03, 1.6, 0.1, 2.0, 0.06, 0.6, True),
    _CoreProperty("283", 0.5, 4.0, 0.1, 1.0, 0.05, 0.6, False),
    _CoreProperty("776", 0.05, 1.3, 0.0, 2.0, 0.045, 0.6, True),
    _CoreProperty("678", 0.01, 1.2, 0.0, 2.5, 0.025, 0.5, True),
    _CoreProperty("364", 0.01, 1.0, 0.0, 2.0, 0.022, 0.5, True),
    _CoreProperty("202", 0.02, 1.0, 0.0, 2.0, 0.012, 0.5, False),
    _CoreProperty("839", 0.005, 1.0, 0.0, 2.0, 0.001, 0.5, False),
    _CoreProperty("159", 0.0, 1.0, 0.0, 8.0, 0.0, 0.0, False),
    _CoreProperty("917", 0.3, 1.0, 0.0, 1.0, 0.001, 0.5, False),
    _CoreProperty("764", 0.001, 1.0, 0.0, 3.0, 0.0, 0.0, False),
    _CoreProperty("112", 0.001, 1.0, 0.0, 3.0, 0.0, 0.0, False),
)
# Property codes: 0 = categoryid, 1 = available, 2 + k = hashed property "k".
_CATEGORY_CODE, _AVAILABLE_CODE = 0, 1
_PRICE_CODE = 2 + int(PRICE_PROPERTY)


@dataclass(frozen=True)
class _ValueModel:
    """How values of every hashed property are drawn, and the dictionary of value strings."""

    pool_start: Ints  # per property code: offset of its values in the dictionary
    pool_size: Ints
    skew: Floats
    by_category: Bools
    category_hash: Ints  # per category: where category-bound values start in a pool
    category_start: int  # offset of category id strings
    price_start: int  # offset of price strings
    price_units: Ints  # sorted distinct prices (units of _PRICE_STEP)
    strings: Any  # pyarrow string array: the dictionary

    def draw(self, rng: np.random.Generator, codes: Ints, categories: Ints) -> Ints:
        """Dictionary index of a value for each (property code, item category)."""
        size = self.pool_size[codes]
        u = rng.random(len(codes)) ** self.skew[codes]
        free = np.floor(size * u).astype(np.int64)
        local = np.floor(np.maximum(size // 25, 1) * u).astype(np.int64)
        bound = (self.category_hash[categories] + local) % np.maximum(size, 1)
        return self.pool_start[codes] + np.where(self.by_category[codes], bound, free)


@dataclass(frozen=True)
class _PropertyRows:
    """All item property rows (before shuffling), compact."""

    items: Ints  # internal item indices that have properties, sorted
    item: npt.NDArray[np.int32]  # row -> position in ``items``
    snapshot: npt.NDArray[np.int8]
    code: npt.NDArray[np.int16]
    value: npt.NDArray[np.int32]
    names: Any  # pyarrow string array: property name per code
    strings: Any  # pyarrow string array: the value dictionary


def _build_property_rows(
    rng: np.random.Generator, scale: TwinScale, tree: _Tree, items: _Items, event_counts: Ints
) -> _PropertyRows:
    """Every item property row, exactly ``scale.n_property_rows`` of them."""
    chosen = _items_with_properties(rng, scale, tree, items, event_counts)
    values = _value_model(rng, tree, items, chosen)
    parts = [
        _state_rows(items.category[chosen], items, chosen, _CATEGORY_CODE, values.category_start),
        _state_rows(items.available[chosen].astype(np.int64), items, chosen, _AVAILABLE_CODE, 0),
        _state_rows(
            np.searchsorted(values.price_units, items.price[chosen]),
            items,
            chosen,
            _PRICE_CODE,
            values.price_start,
        ),
    ]
    parts += [_core_rows(rng, spec, items, chosen, values) for spec in _CORE_PROPERTIES]
    n_core = sum(len(p[0]) for p in parts)
    parts.append(_extra_rows(rng, scale.n_property_rows - n_core, items, chosen, values))
    names = pa.array(
        [CATEGORY_PROPERTY, AVAILABLE_PROPERTY, *(str(k) for k in range(_N_HASHED_PROPERTIES))], pa.string()
    )
    return _PropertyRows(
        items=chosen,
        item=np.concatenate([p[0] for p in parts]).astype(np.int32),
        snapshot=np.concatenate([p[1] for p in parts]).astype(np.int8),
        code=np.concatenate([p[2] for p in parts]).astype(np.int16),
        value=np.concatenate([p[3] for p in parts]).astype(np.int32),
        names=names,
        strings=values.strings,
    )


def _items_with_properties(
    rng: np.random.Generator, scale: TwinScale, tree: _Tree, items: _Items, event_counts: Ints
) -> Ints:
    """Event items (but ~1 %) plus property-only items, exactly ``n_items_with_properties``.

    The event items left without properties are picked with a weight growing with their
    events, so that, as in the real data, ~1 % of the event items carry ~9 % of the events.
    """
    target = scale.n_items_with_properties
    event_items = np.flatnonzero(event_counts > 0)
    missing_category = items.home >= tree.n_nodes
    # Capped at the 99th percentile, so that on small twins one hit item does not decide the share.
    counts = np.minimum(event_counts[event_items], np.quantile(event_counts[event_items], 0.99))
    weight = np.where(missing_category[event_items], 0.0, counts**_NO_PROPERTY_BIAS)
    n_without = min(int((weight > 0).sum()), round(_NO_PROPERTY_SHARE * len(event_items)))
    n_without = max(n_without, len(event_items) - target)
    without = event_items[_sample_without_replacement(rng, weight, n_without)]
    kept = np.setdiff1d(event_items, without)
    others = np.setdiff1d(np.arange(items.n), event_items)
    priority = np.where(missing_category[others], 0.0, 1.0 + rng.random(len(others)))
    extra = others[np.argsort(priority, kind="stable")[: target - len(kept)]]
    return np.sort(np.concatenate([kept, extra])).astype(np.int64)


def _value_model(rng: np.random.Generator, tree: _Tree, items: _Items, chosen: Ints) -> _ValueModel:
    """Pools of hashed values per property, category ids, prices and ``0``/``1``."""
    n_items = len(chosen)
    n_codes = 2 + _N_HASHED_PROPERTIES
    ratio = np.exp(rng.normal(np.log(0.004), 1.3, n_codes)).clip(0.0, 0.5)
    tokens = 1.0 + rng.exponential(0.7, n_codes)
    numeric = np.where(rng.random(n_codes) < 0.3, 1.0, 0.08)
    skew = rng.uniform(1.2, 3.0, n_codes)
    by_category = rng.random(n_codes) < 0.15
    for spec in _CORE_PROPERTIES:
        code = 2 + int(spec.name)
        ratio[code], tokens[code], numeric[code] = spec.pool, spec.tokens, spec.numeric
        skew[code], by_category[code] = spec.skew, spec.by_category
    size = np.maximum(2, np.round(ratio * n_items)).astype(np.int64)
    size[[_CATEGORY_CODE, _AVAILABLE_CODE, _PRICE_CODE]] = 0
    price_units = np.unique(items.price[chosen])
    category_start = 2
    price_start = category_start + tree.n_total
    pool_start = price_start + len(price_units) + np.cumsum(size) - size
    strings = pa.concat_arrays(
        [
            pa.array(["0", "1"], pa.string()),
            pc.cast(pa.array(tree.ids), pa.string()),
            pc.binary_join_element_wise(
                "n", pc.cast(pa.array(price_units * _PRICE_STEP), pa.string()), ".000", ""
            ),
            _value_strings(rng, np.repeat(tokens, size), np.repeat(numeric, size)),
        ]
    )
    return _ValueModel(
        pool_start=pool_start.astype(np.int64),
        pool_size=size,
        skew=skew,
        by_category=by_category,
        category_hash=rng.integers(0, 2**31, tree.n_total),
        category_start=category_start,
        price_start=price_start,
        price_units=price_units,
        strings=strings,
    )


def _value_strings(rng: np.random.Generator, mean_tokens: Floats, numeric_share: Floats) -> Any:
    """Hashed values: space-separated word ids and ``n<number>`` tokens with 3 decimals."""
    n = len(mean_tokens)
    count = np.minimum(1 + rng.poisson(mean_tokens - 1.0), 30).astype(np.int64)
    total = int(count.sum())
    is_number = rng.random(total) < np.repeat(numeric_share, count)
    words = pc.cast(
        pa.array(1 + np.floor(1_350_000 * rng.random(total) ** 2.5).astype(np.int64)), pa.string()
    )
    whole = np.round(np.exp(rng.normal(3.5, 1.8, total))).astype(np.int64)
    fraction = np.where(rng.random(total) < 0.15, rng.integers(1, 10, total) * 100, 0)
    numbers = pc.binary_join_element_wise(
        "n",
        pc.cast(pa.array(whole), pa.string()),
        ".",
        pc.utf8_lpad(pc.cast(pa.array(fraction), pa.string()), 3, "0"),
        "",
    )
    token = pc.if_else(pa.array(is_number), numbers, words)
    offsets = pa.array(np.concatenate([[0], np.cumsum(count)]).astype(np.int32))
    joined = pc.binary_join(pa.ListArray.from_arrays(offsets, token), " ")
    assert len(joined) == n
    return joined


def _row_mask(states: Ints, first: Ints) -> Bools:
    """Change-log rows: the first snapshot of the item, then every snapshot where the value changed."""
    column = np.arange(_N_SNAPSHOTS)[None, :]
    changed = np.zeros(states.shape, dtype=bool)
    changed[:, 1:] = states[:, 1:] != states[:, :-1]
    return (column == first[:, None]) | ((column > first[:, None]) & changed)


def _state_rows(
    weekly: Ints, items: _Items, chosen: Ints, code: int, value_start: int
) -> tuple[Ints, Ints, Ints, Ints]:
    """Rows of a property with a weekly state (categoryid, available, price)."""
    states = weekly[:, _SNAPSHOT_WEEKS]
    row, snapshot = np.nonzero(_row_mask(states, items.first_snapshot[chosen]))
    return row, snapshot, np.full(len(row), code), value_start + states[row, snapshot]


def _core_rows(
    rng: np.random.Generator, spec: _CoreProperty, items: _Items, chosen: Ints, values: _ValueModel
) -> tuple[Ints, Ints, Ints, Ints]:
    """Rows of a hashed property of every item; changers flip between two values."""
    n = len(chosen)
    code = 2 + int(spec.name)
    codes = np.full(n, code)
    first = values.draw(rng, codes, items.home[chosen])
    changer = np.flatnonzero((rng.random(n) < spec.changers) & (values.pool_size[code] > 1))
    second = values.draw(rng, codes[changer], items.home[chosen][changer])
    second = np.where(
        second == first[changer],
        values.pool_start[code] + (second - values.pool_start[code] + 1) % values.pool_size[code],
        second,
    )
    state = _flip_states(rng, len(changer), _N_SNAPSHOTS, spec.flip)
    value = np.where(state == 1, second[:, None], first[changer][:, None])
    row, snapshot = np.nonzero(_row_mask(value, items.first_snapshot[chosen][changer]))
    steady = np.setdiff1d(np.arange(n), changer)
    return (
        np.concatenate([steady, changer[row]]),
        np.concatenate([items.first_snapshot[chosen][steady], snapshot]),
        np.full(len(steady) + len(row), code),
        np.concatenate([first[steady], value[row, snapshot]]),
    )


def _extra_rows(
    rng: np.random.Generator, needed: int, items: _Items, chosen: Ints, values: _ValueModel
) -> tuple[Ints, Ints, Ints, Ints]:
    """Exactly ``needed`` constant rows of the long tail of properties, every property at least once."""
    n = len(chosen)
    core = {_CATEGORY_CODE, _AVAILABLE_CODE, _PRICE_CODE, *(2 + int(s.name) for s in _CORE_PROPERTIES)}
    tail = np.array([c for c in range(2 + _N_HASHED_PROPERTIES) if c not in core], dtype=np.int64)
    if needed < len(tail):
        raise ValueError(f"n_property_rows too small: {needed} rows left for {len(tail)} rare properties")
    n_codes = 2 + _N_HASHED_PROPERTIES
    forced = rng.integers(0, n, len(tail)) * n_codes + tail  # every property appears
    popularity = (rng.permutation(len(tail)) + 15.0) ** -1.2
    richness = rng.lognormal(0.0, 0.6, n)
    rate = (needed - len(tail)) / richness.sum() * 1.1
    pairs = np.zeros(0, dtype=np.int64)
    while True:
        count = rng.poisson(rate * richness)
        drawn = np.repeat(np.arange(n), count) * n_codes + tail[_sample(rng, popularity, int(count.sum()))]
        pairs = np.setdiff1d(np.union1d(pairs, drawn), forced, assume_unique=True)
        if len(pairs) >= needed - len(tail):
            break
        rate = (needed - len(tail) - len(pairs)) / richness.sum() * 1.5
    pairs = pairs[np.sort(rng.choice(len(pairs), needed - len(tail), replace=False))]
    pairs = np.concatenate([forced, pairs])
    row, code = pairs // n_codes, pairs % n_codes
    first = items.first_snapshot[chosen][row]
    later = rng.random(len(row)) < 0.25  # properties added to an item after it first appeared
    snapshot = first + np.where(later, np.floor(rng.random(len(row)) * (_N_SNAPSHOTS - first)), 0).astype(
        np.int64
    )
    return row, snapshot, code, values.draw(rng, code, items.home[chosen][row])


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------
@contextmanager
def _atomic_csv(path: Path, columns: Sequence[str]) -> Iterator[Any]:
    """A pyarrow output stream on a temporary file in the target folder, renamed when complete."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        with pa.OSFile(temporary, "wb") as sink:
            sink.write(f"{','.join(columns)}\n".encode())
            yield sink
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _write_category_tree(path: Path, tree: _Tree, rng: np.random.Generator) -> int:
    """Write ``category_tree.csv`` (rows in random order, empty parent for roots)."""
    order = rng.permutation(tree.n_nodes)
    parent = tree.parent[order]
    table = pa.table(
        {
            "categoryid": pa.array(tree.ids[order]),
            "parentid": pa.array(tree.ids[np.maximum(parent, 0)], mask=parent < 0),
        }
    )
    with _atomic_csv(path, CATEGORY_TREE.column_names) as sink:
        pa_csv.write_csv(table, sink, _CSV_OPTIONS)
    return tree.n_nodes


def _write_events(path: Path, events: _Events, items: _Items) -> int:
    """Write ``events.csv``."""
    names = pa.array(list(EVENT_TYPES), pa.string())
    with _atomic_csv(path, EVENTS.column_names) as sink:
        for start in range(0, len(events.time), _CHUNK_ROWS):
            part = slice(start, start + _CHUNK_ROWS)
            table = pa.table(
                {
                    "timestamp": pa.array(events.time[part]),
                    "visitorid": pa.array(events.visitor[part]),
                    "event": names.take(pa.array(events.event[part])),
                    "itemid": pa.array(items.ids[events.item[part]]),
                    "transactionid": pa.array(events.transaction[part], mask=events.transaction[part] < 0),
                }
            )
            pa_csv.write_csv(table, sink, _CSV_OPTIONS)
    return len(events.time)


def _write_item_properties(
    out_dir: Path, rows: _PropertyRows, items: _Items, rng: np.random.Generator, say: ProgressFn
) -> dict[str, int]:
    """Write both item properties files: all rows shuffled, split like the real part1/part2."""
    total = len(rows.item)
    n_first = round(total * _REAL_PART1_ROWS / _REAL_PROPERTY_ROWS)
    order = rng.permutation(total)
    stamps = np.array(SNAPSHOT_TIMESTAMPS_MS, dtype=np.int64)
    external = items.ids[rows.items]
    written = {}
    for name, (begin, end) in zip(ITEM_PROPERTIES.files, ((0, n_first), (n_first, total)), strict=True):
        with _atomic_csv(out_dir / name, ITEM_PROPERTIES.column_names) as sink:
            for start in range(begin, end, _CHUNK_ROWS):
                index = order[start : min(end, start + _CHUNK_ROWS)]
                table = pa.table(
                    {
                        "timestamp": pa.array(stamps[rows.snapshot[index]]),
                        "itemid": pa.array(external[rows.item[index]]),
                        "property": rows.names.take(pa.array(rows.code[index])),
                        "value": rows.strings.take(pa.array(rows.value[index])),
                    }
                )
                pa_csv.write_csv(table, sink, _CSV_OPTIONS)
                say(f"writing {name}: {start + len(index) - begin:,} of {end - begin:,} rows")
        written[name] = end - begin
    return written


# --------------------------------------------------------------------------------------
# Measuring (the twin's or the real files)
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _EventTable:
    """``events.csv`` as arrays."""

    time: Ints
    visitor: Ints
    event: Ints  # index into EVENT_TYPES
    item: Ints
    transaction: Ints  # -1 for none


@dataclass(frozen=True)
class _PropertyScan:
    """What one streaming pass over the item properties files keeps."""

    rows_per_file: list[int]
    items: Ints
    timestamps: Ints
    rows_per_property: dict[str, int]
    tracked: pd.DataFrame  # timestamp, itemid, property, value of categoryid/available/790 rows


def measure_raw_statistics(raw_dir: Path) -> dict[str, float]:
    """Measure the statistics the twin is built to reproduce, on any RetailRocket folder.

    Parameters
    ----------
    raw_dir : Path
        Folder with the four plain Kaggle CSV files (the twin's or the real ones).

    Returns
    -------
    dict of str to float
        Statistic name to value; docs/synthetic_twin.md explains each name.

    Notes
    -----
    Memory stays moderate even on the real files: item properties are streamed and only the
    ``categoryid``, ``available`` and ``790`` rows are kept.
    """
    events = _read_events(raw_dir / EVENTS.files[0])
    scan = _scan_item_properties([raw_dir / name for name in ITEM_PROPERTIES.files])
    tree = pd.read_csv(raw_dir / CATEGORY_TREE.files[0], dtype={"categoryid": "int64", "parentid": "Int64"})
    stats = _event_statistics(events)
    stats |= _property_statistics(scan, events)
    stats |= _tree_statistics(tree, scan)
    stats |= _structure_statistics(events, scan)
    return stats


def _read_events(path: Path) -> _EventTable:
    table = pa_csv.read_csv(
        path,
        convert_options=pa_csv.ConvertOptions(
            column_types={
                "timestamp": pa.int64(),
                "visitorid": pa.int64(),
                "event": pa.string(),
                "itemid": pa.int64(),
                "transactionid": pa.int64(),
            }
        ),
    )
    event = pc.index_in(table["event"], value_set=pa.array(list(EVENT_TYPES)))
    return _EventTable(
        time=table["timestamp"].to_numpy(),
        visitor=table["visitorid"].to_numpy(),
        event=pc.fill_null(event, -1).to_numpy().astype(np.int64),
        item=table["itemid"].to_numpy(),
        transaction=pc.fill_null(table["transactionid"], -1).to_numpy(),
    )


def _scan_item_properties(paths: Sequence[Path]) -> _PropertyScan:
    tracked_names = pa.array([CATEGORY_PROPERTY, AVAILABLE_PROPERTY, PRICE_PROPERTY])
    rows_per_file, item_parts, stamp_parts, tracked = [], [], [], []
    per_property: dict[str, int] = {}
    for path in paths:
        reader = pa_csv.open_csv(
            path,
            read_options=pa_csv.ReadOptions(block_size=1 << 25),
            convert_options=pa_csv.ConvertOptions(
                column_types={
                    "timestamp": pa.int64(),
                    "itemid": pa.int64(),
                    "property": pa.string(),
                    "value": pa.string(),
                }
            ),
        )
        rows = 0
        for batch in reader:
            rows += batch.num_rows
            item_parts.append(np.unique(batch.column("itemid").to_numpy()))
            stamp_parts.append(np.unique(batch.column("timestamp").to_numpy()))
            counts = pc.value_counts(batch.column("property"))
            for name, count in zip(
                counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True
            ):
                per_property[name] = per_property.get(name, 0) + count
            keep = pc.is_in(batch.column("property"), value_set=tracked_names)
            tracked.append(pa.Table.from_batches([batch]).filter(keep))
        rows_per_file.append(rows)
    frame = pa.concat_tables(tracked).to_pandas() if tracked else pd.DataFrame()
    return _PropertyScan(
        rows_per_file=rows_per_file,
        items=np.unique(np.concatenate(item_parts)) if item_parts else np.zeros(0, np.int64),
        timestamps=np.unique(np.concatenate(stamp_parts)) if stamp_parts else np.zeros(0, np.int64),
        rows_per_property=per_property,
        tracked=frame,
    )


def _event_statistics(events: _EventTable) -> dict[str, float]:
    n = len(events.time)
    counts = np.bincount(events.event[events.event >= 0], minlength=3)
    _, per_visitor = np.unique(events.visitor, return_counts=True)
    items, per_item = np.unique(events.item, return_counts=True)
    bought = events.transaction >= 0
    triple = (events.visitor * 3 + events.event) * (int(events.item.max()) + 1) + events.item
    whole = np.lexsort((events.transaction, events.item, events.event, events.visitor, events.time))
    columns = (events.time, events.visitor, events.event, events.item, events.transaction)
    repeated = np.ones(n - 1, dtype=bool)
    for column in columns:
        repeated &= np.diff(column[whole]) == 0
    n_transactions = len(np.unique(events.transaction[bought]))
    return {
        "events": float(n),
        "view_share": counts[0] / n,
        "addtocart_share": counts[1] / n,
        "transaction_share": counts[2] / n,
        "visitors": float(len(per_visitor)),
        "event_items": float(len(items)),
        "transactions": float(n_transactions),
        "items_per_transaction": float(bought.sum() / max(n_transactions, 1)),
        "buyers": float(len(np.unique(events.visitor[bought]))),
        "duplicate_rows": float(repeated.sum()),
        "events_per_visitor_median": float(np.median(per_visitor)),
        "events_per_visitor_mean": float(per_visitor.mean()),
        "events_per_visitor_max": float(per_visitor.max()),
        "items_with_one_event_share": float(np.mean(per_item == 1)),
        "repeated_triple_share": 1.0 - len(np.unique(triple)) / n,
        "first_event_ms": float(events.time.min()),
        "last_event_ms": float(events.time.max()),
        "sorted_by_time": float(bool(np.all(np.diff(events.time) >= 0))),
        "addtocart_after_view_share": _funnel_share(events, earlier=0, later=1),
        "transaction_after_addtocart_share": _funnel_share(events, earlier=1, later=2),
    }


def _funnel_share(events: _EventTable, earlier: int, later: int) -> float:
    """Share of ``later`` events whose visitor had an ``earlier`` event on the item before."""
    key = events.visitor * (int(events.item.max()) + 1) + events.item
    first = pd.Series(events.time[events.event == earlier]).groupby(key[events.event == earlier]).min()
    mask = events.event == later
    if not mask.any():
        return float("nan")
    before = first.reindex(key[mask]).to_numpy()
    return float(np.mean(before <= events.time[mask]))


def _property_statistics(scan: _PropertyScan, events: _EventTable) -> dict[str, float]:
    total = sum(scan.rows_per_file)
    tracked = scan.tracked
    stats = {
        "property_rows": float(total),
        "property_part1_share": scan.rows_per_file[0] / total,
        "property_items": float(len(scan.items)),
        "property_names": float(len(scan.rows_per_property)),
        "property_timestamps": float(len(scan.timestamps)),
        "property_rows_per_item": total / len(scan.items),
        "event_items_without_properties_share": float(np.mean(~np.isin(np.unique(events.item), scan.items))),
        "events_with_item_properties_share": float(np.mean(np.isin(events.item, scan.items))),
    }
    for name in (CATEGORY_PROPERTY, AVAILABLE_PROPERTY, PRICE_PROPERTY, "888"):
        stats[f"rows_per_item_{name}"] = scan.rows_per_property.get(name, 0) / len(scan.items)
    for name in (CATEGORY_PROPERTY, AVAILABLE_PROPERTY, PRICE_PROPERTY):
        rows = tracked[tracked["property"] == name]
        distinct = rows.groupby("itemid")["value"].nunique()
        stats[f"changed_item_share_{name}"] = float((distinct > 1).mean()) if len(distinct) else float("nan")
    return stats


def _tree_statistics(tree: pd.DataFrame, scan: _PropertyScan) -> dict[str, float]:
    ids = tree["categoryid"].to_numpy()
    position = pd.Series(np.arange(len(ids)), index=ids)
    parent = tree["parentid"]
    parent_index = position.reindex(parent.fillna(-1).astype("int64")).fillna(-1).astype("int64").to_numpy()
    depth = np.ones(len(ids), dtype=np.int64)
    current = parent_index
    for _ in range(len(ids)):
        if not (current >= 0).any():
            break
        depth += current >= 0
        current = np.where(current >= 0, parent_index[np.maximum(current, 0)], -1)
    used = scan.tracked.loc[scan.tracked["property"] == CATEGORY_PROPERTY, "value"].astype("int64").unique()
    return {
        "category_nodes": float(len(ids)),
        "category_roots": float(parent.isna().sum()),
        "category_max_depth": float(depth.max()),
        "categories_missing_from_tree": float(len(np.setdiff1d(used, ids))),
    }


def _latest_values(scan: _PropertyScan, name: str) -> pd.Series:
    rows = scan.tracked[scan.tracked["property"] == name].sort_values(["itemid", "timestamp"], kind="stable")
    return rows.groupby("itemid")["value"].last()


def _structure_statistics(events: _EventTable, scan: _PropertyScan) -> dict[str, float]:
    """Signals the models should find: category loyalty, popularity drift, availability.

    Category loyalty: for visitors active in the first 80 % of the period, the share of their
    later events (all, or add-to-carts and transactions only) on items of a category they had
    an event on before, against the same share for items drawn by popularity from all later
    events of that kind.
    """
    rng = np.random.default_rng(0)
    category = _latest_values(scan, CATEGORY_PROPERTY).astype("int64")
    item_category = category.reindex(events.item).fillna(-1).astype("int64").to_numpy()
    split = events.time.min() + 0.8 * (events.time.max() - events.time.min())
    early = events.time < split
    known = item_category >= 0
    stride = int(item_category.max()) + 2
    seen = np.unique(events.visitor[early & known] * stride + item_category[early & known])
    returning = np.isin(events.visitor, np.unique(events.visitor[early]))
    stats: dict[str, float] = {}
    for label, kind in (("events", events.event >= 0), ("conversions", events.event > 0)):
        later = ~early & known & kind
        target = later & returning
        pool = item_category[later]
        drawn = pool[rng.integers(0, max(len(pool), 1), int(target.sum()))] if len(pool) else pool
        stats[f"returning_{label}"] = float(target.sum())
        stats[f"returning_{label}_in_seen_category_share"] = float(
            np.mean(np.isin(events.visitor[target] * stride + item_category[target], seen))
        )
        stats[f"popular_{label}_in_seen_category_share"] = float(
            np.mean(np.isin(events.visitor[target] * stride + drawn, seen))
        )
    return stats | _drift_statistics(rng, events) | _availability_statistics(events, scan)


def _drift_statistics(rng: np.random.Generator, events: _EventTable) -> dict[str, float]:
    """Overlap of the top items of the first and the last month, against a no-drift baseline."""
    month = 30 * _DAY_MS
    first = events.item[events.time < events.time.min() + month]
    last = events.item[events.time >= events.time.max() - month]
    k = int(min(100, max(10, len(np.unique(events.item)) // 50)))

    def top(sample: Ints) -> Ints:
        values, counts = np.unique(sample, return_counts=True)
        return values[np.lexsort((values, -counts))[:k]]

    mixed = rng.permutation(np.concatenate([first, last]))
    return {
        "top_items_k": float(k),
        "top_items_overlap_first_last_month": len(np.intersect1d(top(first), top(last))) / k,
        "top_items_overlap_random_halves": len(
            np.intersect1d(top(mixed[: len(first)]), top(mixed[len(first) :]))
        )
        / k,
    }


def _availability_statistics(events: _EventTable, scan: _PropertyScan) -> dict[str, float]:
    """Share of views and of transactions on items unavailable at that time."""
    rows = scan.tracked[scan.tracked["property"] == AVAILABLE_PROPERTY]
    frame = pd.DataFrame({"timestamp": events.time, "itemid": events.item, "event": events.event})
    frame = frame.sort_values("timestamp", kind="stable")
    known = rows[["timestamp", "itemid", "value"]].sort_values("timestamp", kind="stable")
    merged = pd.merge_asof(frame, known, on="timestamp", by="itemid", direction="backward")
    first = known.groupby("itemid")["value"].first()
    value = merged["value"].fillna(merged["itemid"].map(first))
    unavailable = (value == "0").to_numpy()
    has_value = value.notna().to_numpy()
    event = merged["event"].to_numpy()
    result = {}
    for name, code in (("view", 0), ("addtocart", 1), ("transaction", 2)):
        mask = (event == code) & has_value
        result[f"{name}s_on_unavailable_share"] = (
            float(unavailable[mask].mean()) if mask.any() else float("nan")
        )
    return result
