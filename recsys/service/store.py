"""The published recommendation tables held in memory as compact arrays.

Each per-user (or per-item) table is stored like a CSR matrix: the sorted distinct keys, an
offsets array and, aligned with it, the item ids and scores of every row in rank order. A
lookup is one binary search and two slices, and a million rows cost about 12 MB instead of
the hundreds of MB of a dict of Python lists. Ids are kept as ``int32`` when they fit.

A :class:`RecommendationStore` is immutable: a reload builds a new one (reusing the arrays of
tables whose published version did not change) and the service swaps the reference, so a
request that took the old store finishes on it consistently.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recsys.data.prepare import ITEMS
from recsys.publishing.catalogue import CATALOGUE, DEFAULT_RECOMMENDATIONS, SIMILAR_ITEMS, PublishedTable
from recsys.publishing.tables import NotPublishedError, PublishedVersion, current_version, read_published

logger = logging.getLogger(__name__)

Ids = npt.NDArray[np.int32] | npt.NDArray[np.int64]
Scores = npt.NDArray[np.float32]


def compact_ids(values: npt.ArrayLike) -> Ids:
    """``int32`` when every id fits (halves the memory), ``int64`` otherwise."""
    array = np.asarray(values, dtype=np.int64)
    info = np.iinfo(np.int32)
    if array.size == 0 or (array.min() >= info.min and array.max() <= info.max):
        return array.astype(np.int32)
    return array


# ``np.iinfo`` costs microseconds per call, and ``_position`` runs a dozen times per request.
_ID_BOUNDS = {np.dtype(t): (int(np.iinfo(t).min), int(np.iinfo(t).max)) for t in (np.int32, np.int64)}


def _position(sorted_ids: Ids, key: int) -> int | None:
    """Index of ``key`` in sorted ids, or ``None`` (also for keys outside the array's dtype)."""
    low, high = _ID_BOUNDS[sorted_ids.dtype]
    if not low <= key <= high:
        return None
    # The key in the array's own dtype: given a Python int, numpy would cast the whole array
    # (45 µs for 310 k int32 keys instead of 0.7 µs).
    index = int(sorted_ids.searchsorted(sorted_ids.dtype.type(key)))
    if index < sorted_ids.size and int(sorted_ids[index]) == key:
        return index
    return None


def in_sorted(values: Ids, sorted_ids: Ids) -> npt.NDArray[np.bool_]:
    """Whether each value is in ``sorted_ids`` (ascending): a binary search per value, no sort
    of the large array per call as ``np.isin`` would do."""
    if sorted_ids.size == 0:
        return np.zeros(values.size, dtype=bool)
    index = np.minimum(np.searchsorted(sorted_ids, values), sorted_ids.size - 1)
    found: npt.NDArray[np.bool_] = sorted_ids[index] == values
    return found


def _key_rank_order(keys: npt.NDArray[np.int64], ranks: npt.NDArray[np.int64]) -> npt.NDArray[np.intp] | None:
    """The rows' order by (key, rank), stable; ``None`` when they already are in that order, as
    published tables read back usually are (no sort, no copies)."""
    if keys.size < 2:
        return None
    key_step = np.diff(keys)
    if ((key_step > 0) | ((key_step == 0) & (np.diff(ranks) >= 0))).all():
        return None
    order: npt.NDArray[np.intp] = np.lexsort((ranks, keys))
    return order


@dataclass(frozen=True)
class Candidates:
    """An ordered list of recommended items from one source.

    Attributes
    ----------
    source : str
        Where the items come from (``ranked``, ``als``, ``online_i2i``, ...).
    items, scores : ndarray
        Item ids, best first, and the source's scores (not comparable across sources).
    labels : tuple of str, optional
        Per-item label (the ``source`` column of similar items), aligned with ``items``.
    """

    source: str
    items: Ids
    scores: Scores
    labels: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return int(self.items.size)

    def without(self, excluded: Ids) -> Candidates:
        """The same list without the item ids of ``excluded`` (sorted ascending)."""
        if excluded.size == 0 or self.items.size == 0:
            return self
        keep = ~in_sorted(self.items, excluded)
        labels = None if self.labels is None else tuple(np.asarray(self.labels, dtype=object)[keep])
        return Candidates(self.source, self.items[keep], self.scores[keep], labels)

    @classmethod
    def empty(cls, source: str) -> Candidates:
        """A list without items."""
        return cls(source, np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32))


@dataclass(frozen=True)
class GroupedLists:
    """Ranked item lists keyed by user (or item) id, stored CSR-like.

    Attributes
    ----------
    keys : ndarray
        Sorted distinct keys.
    offsets : ndarray
        ``offsets[i]:offsets[i + 1]`` are the rows of ``keys[i]``.
    items, scores : ndarray
        Row values in rank order within each key.
    label_codes, label_names : ndarray and tuple, optional
        Small-integer codes of a text column (similar items' ``source``) and their names.
    """

    keys: Ids
    offsets: npt.NDArray[np.int64]
    items: Ids
    scores: Scores
    label_codes: npt.NDArray[np.int8] | None = None
    label_names: tuple[str, ...] = ()

    @classmethod
    def from_frame(
        cls, frame: pd.DataFrame, key: str, item: str = "item_id", label: str | None = None
    ) -> GroupedLists:
        """Group a published frame (``key``, ``item``, ``score``, ``rank`` [, ``label``]) by ``key``.

        Column by column, without a sorted copy of the frame: a reload builds the new arrays while
        the store in service still holds the old ones, so what a load adds is the service's peak.
        """
        keys_column = frame[key].to_numpy(dtype=np.int64)
        order = _key_rank_order(keys_column, frame["rank"].to_numpy(dtype=np.int64))

        def ordered(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
            return values if order is None else values[order]

        sorted_keys = ordered(keys_column)
        # Where each key's rows start (the keys are sorted, so no np.unique and its second sort).
        first = np.ones(sorted_keys.size, dtype=bool)
        first[1:] = sorted_keys[1:] != sorted_keys[:-1]
        offsets = np.append(np.flatnonzero(first), sorted_keys.size).astype(np.int64)
        codes: npt.NDArray[np.int8] | None = None
        names: tuple[str, ...] = ()
        if label is not None:
            categorical = pd.Categorical(frame[label].astype(str))
            codes = ordered(categorical.codes.astype(np.int8))
            names = tuple(str(name) for name in categorical.categories)
        return cls(
            keys=compact_ids(sorted_keys[offsets[:-1]]),
            offsets=offsets,
            items=compact_ids(ordered(frame[item].to_numpy())),
            # A NaN score would make the JSON answer invalid: it ranks last anyway.
            scores=np.nan_to_num(ordered(frame["score"].to_numpy(dtype=np.float32)), nan=0.0),
            label_codes=codes,
            label_names=names,
        )

    @classmethod
    def empty(cls) -> GroupedLists:
        """A table without rows (its stage has not been published yet)."""
        return cls.from_frame(pd.DataFrame({"key": [], "item_id": [], "score": [], "rank": []}), "key")

    def __len__(self) -> int:
        return int(self.keys.size)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, int) and _position(self.keys, key) is not None

    @property
    def nbytes(self) -> int:
        """Memory held by the arrays."""
        codes = 0 if self.label_codes is None else self.label_codes.nbytes
        return self.keys.nbytes + self.offsets.nbytes + self.items.nbytes + self.scores.nbytes + codes

    def without_items(self, excluded: Ids) -> GroupedLists:
        """The same lists without the item ids of ``excluded`` (sorted ascending); ``self`` when
        none of them occurs. Keys whose every row is removed stay, with empty rows."""
        drop = in_sorted(self.items, excluded)
        if not drop.any():
            return self
        keep = ~drop
        kept_before = np.zeros(keep.size + 1, dtype=np.int64)
        np.cumsum(keep, out=kept_before[1:])
        return GroupedLists(
            keys=self.keys,
            offsets=kept_before[self.offsets],
            items=self.items[keep],
            scores=self.scores[keep],
            label_codes=None if self.label_codes is None else self.label_codes[keep],
            label_names=self.label_names,
        )

    def _rows(self, key: int) -> slice | None:
        """The rows of ``key``; ``None`` when it has none."""
        index = _position(self.keys, key)
        if index is None:
            return None
        start, end = int(self.offsets[index]), int(self.offsets[index + 1])
        return slice(start, end) if end > start else None

    def row(self, key: int) -> tuple[Ids, Scores]:
        """Items and scores of ``key``, in rank order (empty when the key has no rows).

        The bare arrays, without the labels :meth:`get` decodes: online i2i reads ten of
        these per request.
        """
        rows = self._rows(key)
        if rows is None:
            return self.items[:0], self.scores[:0]
        return self.items[rows], self.scores[rows]

    def get(self, key: int, source: str) -> Candidates | None:
        """The ranked list of ``key`` (``None`` when the key has no rows)."""
        rows = self._rows(key)
        if rows is None:
            return None
        labels = None
        if self.label_codes is not None:
            labels = tuple(self.label_names[code] for code in self.label_codes[rows])
        return Candidates(source, self.items[rows], self.scores[rows], labels)

    def neighbours(self, keys: npt.NDArray[np.int64]) -> pd.DataFrame:
        """Rows of the given keys as ``item_id, similar_item_id, score`` (keys without rows skipped)."""
        parts = [(key, found) for key in keys.tolist() if (found := self.get(int(key), "")) is not None]
        if not parts:
            return pd.DataFrame(
                {
                    "item_id": np.empty(0, np.int64),
                    "similar_item_id": np.empty(0, np.int64),
                    "score": np.empty(0, np.float32),
                }
            )
        return pd.DataFrame(
            {
                "item_id": np.concatenate([np.full(len(c), key, dtype=np.int64) for key, c in parts]),
                "similar_item_id": np.concatenate([c.items for _, c in parts]).astype(np.int64),
                "score": np.concatenate([c.scores for _, c in parts]),
            }
        )


@dataclass(frozen=True)
class LoadedTable:
    """A published table in memory with the version it came from (``None``: never published)."""

    version: PublishedVersion | None
    lists: GroupedLists
    loaded_at: datetime

    def describe(self) -> dict[str, Any]:
        """What health reports about the table."""
        described: dict[str, Any] = {"loaded_at": self.loaded_at, "keys": len(self.lists)}
        if self.version is None:
            return {**described, "version": None, "as_of": None, "rows": 0, "published_at": None}
        return {
            **described,
            "version": self.version.version,
            "as_of": self.version.as_of,
            "rows": self.version.rows,
            "published_at": self.version.published_at,
        }


def available_lists(name: str, lists: GroupedLists, unavailable: Ids) -> GroupedLists:
    """The lists table ``name`` answers from: a recommendation table without the unavailable items
    (``lists`` itself when none occurs), any other table (users' histories) whole."""
    return lists.without_items(unavailable) if CATALOGUE[name].recommends else lists


@dataclass(frozen=True)
class RecommendationStore:
    """Every table the service answers from, plus the catalogue's known and unavailable items.

    The lists it answers from (:meth:`lists`, :meth:`default`) are the recommendation tables
    without the items the catalogue marks unavailable, filtered once here rather than on every
    request (the tables as loaded are kept, so a later catalogue can make an item available
    again). Users' histories are kept whole: an unavailable item still says what the user likes.
    """

    tables: Mapping[str, LoadedTable]
    known_items: Ids = field(default_factory=lambda: np.empty(0, dtype=np.int32))
    unavailable_items: Ids = field(default_factory=lambda: np.empty(0, dtype=np.int32))
    # Lists already filtered against ``unavailable_items`` (by the loading child, or kept from
    # the previous store): only the others are filtered here, in the serving process.
    filtered: Mapping[str, GroupedLists] = field(default_factory=dict, repr=False, compare=False)
    _available: dict[str, GroupedLists] = field(init=False, repr=False, compare=False)
    _default: Candidates = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        available = {
            name: self.filtered[name]
            if name in self.filtered
            else available_lists(name, table.lists, self.unavailable_items)
            for name, table in self.tables.items()
        }
        # Frozen: the derived fields are set once, here.
        object.__setattr__(self, "_available", available)
        default_name = DEFAULT_RECOMMENDATIONS.name
        default = available[default_name].get(0, "default") if default_name in available else None
        object.__setattr__(self, "_default", default or Candidates.empty("default"))

    @classmethod
    def empty(cls) -> RecommendationStore:
        """A store with nothing loaded (the database was unreachable at start-up)."""
        now = _utcnow()
        return cls({name: LoadedTable(None, GroupedLists.empty(), now) for name in CATALOGUE})

    @property
    def versions(self) -> dict[str, int | None]:
        """Loaded version of each table."""
        return {
            name: (table.version.version if table.version else None) for name, table in self.tables.items()
        }

    @property
    def is_ready(self) -> bool:
        """Whether every user can be answered: the default recommendations are loaded."""
        return len(self.tables[DEFAULT_RECOMMENDATIONS.name].lists) > 0

    @property
    def nbytes(self) -> int:
        """Memory held by the arrays of every table (filtered copies included)."""
        loaded = sum(table.lists.nbytes for table in self.tables.values())
        filtered = sum(
            lists.nbytes for name, lists in self._available.items() if lists is not self.tables[name].lists
        )
        return loaded + filtered + self.known_items.nbytes + self.unavailable_items.nbytes

    def lists(self, table: PublishedTable) -> GroupedLists:
        """The grouped lists of a table, without unavailable items."""
        return self._available[table.name]

    def default(self) -> Candidates:
        """The popular available items, best first."""
        return self._default

    def is_known_item(self, item_id: int) -> bool:
        """Whether the item is in the catalogue or has similar items."""
        return _position(self.known_items, item_id) is not None or item_id in self.lists(SIMILAR_ITEMS)


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _read_table(engine: Engine, name: str) -> LoadedTable:
    table = CATALOGUE[name]
    version, frame = read_published(engine, name, table.served_columns)
    key = table.key
    if key is None:
        # One list for everybody: a constant key keeps a single code path.
        frame, key = frame.assign(_all=0), "_all"
    lists = GroupedLists.from_frame(frame, key, item=table.item, label=table.label)
    logger.info("loaded %s version %d: %d rows, %d keys", name, version.version, len(frame), len(lists))
    return LoadedTable(version, lists, _utcnow())


def _read_catalogue(engine: Engine) -> tuple[Ids, Ids]:
    """Known item ids and the unavailable ones from the prepared ``items`` table (empty if missing)."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(ITEMS.name):
            return compact_ids([]), compact_ids([])
        rows = conn.execute(sa.select(ITEMS.c.item_id, ITEMS.c.available).order_by(ITEMS.c.item_id))
        frame = pd.DataFrame(rows.fetchall(), columns=["item_id", "available"])
    known = frame["item_id"].to_numpy(dtype=np.int64)
    # Unknown availability counts as available, as in the pipeline's filters.
    unavailable = frame.loc[frame["available"].eq(False).fillna(False).astype(bool), "item_id"]
    return compact_ids(known), compact_ids(np.sort(unavailable.to_numpy(dtype=np.int64)))


@dataclass(frozen=True)
class StoreParts:
    """What a load reads from the database: the tables whose version changed, their lists without
    the unavailable items (:func:`available_lists`), and the catalogue."""

    tables: dict[str, LoadedTable]
    available: dict[str, GroupedLists]
    known_items: Ids
    unavailable_items: Ids


def read_parts(engine: Engine, names: Sequence[str]) -> StoreParts:
    """Read the tables ``names`` and the catalogue in this process."""
    tables = {name: _read_table(engine, name) for name in names}
    known, unavailable = _read_catalogue(engine)
    available = {name: available_lists(name, table.lists, unavailable) for name, table in tables.items()}
    return StoreParts(tables, available, known, unavailable)


PartsReader = Callable[[Engine, Sequence[str]], StoreParts]


def load_store(
    engine: Engine, previous: RecommendationStore | None = None, reader: PartsReader = read_parts
) -> RecommendationStore:
    """Read the current version of every table, reusing those of ``previous`` that did not change.

    Parameters
    ----------
    engine : Engine
        The project database.
    previous : RecommendationStore, optional
        The store in service; unchanged tables are shared with it, not read again.
    reader : callable, optional
        Reads the changed tables and the catalogue: in this process by default, or
        :func:`recsys.service.loader.read_parts_in_child`.

    Raises
    ------
    sqlalchemy.exc.SQLAlchemyError
        If the database cannot be read; the caller keeps serving ``previous``.
    """
    tables: dict[str, LoadedTable | None] = {}
    changed = previous is None
    for name in CATALOGUE:
        try:
            pointer: PublishedVersion | None = current_version(engine, name)
        except NotPublishedError:
            pointer = None
        old = previous.tables.get(name) if previous is not None else None
        if old is not None and old.version == pointer:
            tables[name] = old
        elif pointer is None and old is not None and old.version is not None:
            # A pointer that vanished is an operator's mistake: keep serving the rows we have.
            logger.warning(
                "table %s has no published version any more: keeping version %d", name, old.version.version
            )
            tables[name] = old
        elif pointer is None:
            logger.warning("table %s is not published yet: it is served empty", name)
            tables[name] = LoadedTable(None, GroupedLists.empty(), _utcnow())
            changed = True
        else:
            tables[name] = None  # read below, with the others that changed
            changed = True
    if not changed and previous is not None:
        return previous
    # The catalogue is rebuilt by every pipeline run, so it is re-read whenever a table changed.
    parts = reader(engine, [name for name, table in tables.items() if table is None])
    loaded = {name: table if table is not None else parts.tables[name] for name, table in tables.items()}
    filtered = dict(parts.available)
    if previous is not None and np.array_equal(previous.unavailable_items, parts.unavailable_items):
        # The same unavailable items: the tables kept keep their filtered lists too.
        filtered |= {
            name: previous.lists(CATALOGUE[name])
            for name, table in loaded.items()
            if table is previous.tables.get(name)
        }
    return RecommendationStore(loaded, parts.known_items, parts.unavailable_items, filtered)
