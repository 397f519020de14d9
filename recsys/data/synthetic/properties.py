"""Item properties: weekly snapshots in the Kaggle change-log form, with their values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from recsys.data.schema import (
    AVAILABLE_PROPERTY,
    CATEGORY_PROPERTY,
    PRICE_PROPERTY,
)
from recsys.data.synthetic.constants import (
    N_HASHED_PROPERTIES,
    N_SNAPSHOTS,
    NO_PROPERTY_BIAS,
    NO_PROPERTY_SHARE,
    PRICE_STEP,
    SNAPSHOT_WEEKS,
)
from recsys.data.synthetic.items import Items
from recsys.data.synthetic.sampling import (
    Bools,
    Floats,
    Ints,
    flip_states,
    sample,
    sample_without_replacement,
)
from recsys.data.synthetic.scales import TwinScale
from recsys.data.synthetic.tree import Tree


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
    price_units: Ints  # sorted distinct prices (units of PRICE_STEP)
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
class PropertyRows:
    """All item property rows (before shuffling), compact."""

    items: Ints  # internal item indices that have properties, sorted
    item: npt.NDArray[np.int32]  # row -> position in ``items``
    snapshot: npt.NDArray[np.int8]
    code: npt.NDArray[np.int16]
    value: npt.NDArray[np.int32]
    names: Any  # pyarrow string array: property name per code
    strings: Any  # pyarrow string array: the value dictionary


def build_property_rows(
    rng: np.random.Generator, scale: TwinScale, tree: Tree, items: Items, event_counts: Ints
) -> PropertyRows:
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
        [CATEGORY_PROPERTY, AVAILABLE_PROPERTY, *(str(k) for k in range(N_HASHED_PROPERTIES))], pa.string()
    )
    return PropertyRows(
        items=chosen,
        item=np.concatenate([p[0] for p in parts]).astype(np.int32),
        snapshot=np.concatenate([p[1] for p in parts]).astype(np.int8),
        code=np.concatenate([p[2] for p in parts]).astype(np.int16),
        value=np.concatenate([p[3] for p in parts]).astype(np.int32),
        names=names,
        strings=values.strings,
    )


def _items_with_properties(
    rng: np.random.Generator, scale: TwinScale, tree: Tree, items: Items, event_counts: Ints
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
    weight = np.where(missing_category[event_items], 0.0, counts**NO_PROPERTY_BIAS)
    n_without = min(int((weight > 0).sum()), round(NO_PROPERTY_SHARE * len(event_items)))
    n_without = max(n_without, len(event_items) - target)
    without = event_items[sample_without_replacement(rng, weight, n_without)]
    kept = np.setdiff1d(event_items, without)
    others = np.setdiff1d(np.arange(items.n), event_items)
    priority = np.where(missing_category[others], 0.0, 1.0 + rng.random(len(others)))
    extra = others[np.argsort(priority, kind="stable")[: target - len(kept)]]
    return np.sort(np.concatenate([kept, extra])).astype(np.int64)


def _value_model(rng: np.random.Generator, tree: Tree, items: Items, chosen: Ints) -> _ValueModel:
    """Pools of hashed values per property, category ids, prices and ``0``/``1``."""
    n_items = len(chosen)
    n_codes = 2 + N_HASHED_PROPERTIES
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
                "n", pc.cast(pa.array(price_units * PRICE_STEP), pa.string()), ".000", ""
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
    column = np.arange(N_SNAPSHOTS)[None, :]
    changed = np.zeros(states.shape, dtype=bool)
    changed[:, 1:] = states[:, 1:] != states[:, :-1]
    return (column == first[:, None]) | ((column > first[:, None]) & changed)


def _state_rows(
    weekly: Ints, items: Items, chosen: Ints, code: int, value_start: int
) -> tuple[Ints, Ints, Ints, Ints]:
    """Rows of a property with a weekly state (categoryid, available, price)."""
    states = weekly[:, SNAPSHOT_WEEKS]
    row, snapshot = np.nonzero(_row_mask(states, items.first_snapshot[chosen]))
    return row, snapshot, np.full(len(row), code), value_start + states[row, snapshot]


def _core_rows(
    rng: np.random.Generator, spec: _CoreProperty, items: Items, chosen: Ints, values: _ValueModel
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
    state = flip_states(rng, len(changer), N_SNAPSHOTS, spec.flip)
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
    rng: np.random.Generator, needed: int, items: Items, chosen: Ints, values: _ValueModel
) -> tuple[Ints, Ints, Ints, Ints]:
    """Exactly ``needed`` constant rows of the long tail of properties, every property at least once."""
    n = len(chosen)
    core = {_CATEGORY_CODE, _AVAILABLE_CODE, _PRICE_CODE, *(2 + int(s.name) for s in _CORE_PROPERTIES)}
    tail = np.array([c for c in range(2 + N_HASHED_PROPERTIES) if c not in core], dtype=np.int64)
    if needed < len(tail):
        raise ValueError(f"n_property_rows too small: {needed} rows left for {len(tail)} rare properties")
    n_codes = 2 + N_HASHED_PROPERTIES
    forced = rng.integers(0, n, len(tail)) * n_codes + tail  # every property appears
    popularity = (rng.permutation(len(tail)) + 15.0) ** -1.2
    richness = rng.lognormal(0.0, 0.6, n)
    rate = (needed - len(tail)) / richness.sum() * 1.1
    pairs = np.zeros(0, dtype=np.int64)
    while True:
        count = rng.poisson(rate * richness)
        drawn = np.repeat(np.arange(n), count) * n_codes + tail[sample(rng, popularity, int(count.sum()))]
        pairs = np.setdiff1d(np.union1d(pairs, drawn), forced, assume_unique=True)
        if len(pairs) >= needed - len(tail):
            break
        rate = (needed - len(tail) - len(pairs)) / richness.sum() * 1.5
    pairs = pairs[np.sort(rng.choice(len(pairs), needed - len(tail), replace=False))]
    pairs = np.concatenate([forced, pairs])
    row, code = pairs // n_codes, pairs % n_codes
    first = items.first_snapshot[chosen][row]
    later = rng.random(len(row)) < 0.25  # properties added to an item after it first appeared
    snapshot = first + np.where(later, np.floor(rng.random(len(row)) * (N_SNAPSHOTS - first)), 0).astype(
        np.int64
    )
    return row, snapshot, code, values.draw(rng, code, items.home[chosen][row])
