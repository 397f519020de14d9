"""What a product card shows about an item: its category path, price and availability.

The storefront (``/shop``) decorates every recommended item with these facts from the prepared
``items`` table (:data:`recsys.data.prepare.ITEMS`). Like the recommendation tables they are held
as compact numpy arrays aligned with the sorted item ids — about 20 bytes an item, 9 MB for the
417 k items of the full dataset instead of the hundreds of MB of a dict of Python objects — and
read in chunks, so loading never holds the whole table as Python rows.

The category path comes from the tree columns ``items`` already has (category, parent, root and
depth): root › parent › category, with the number of levels between root and parent that are
not shown (the full dataset's tree is at most six deep, and a card has room for three).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recsys.data.prepare import ITEMS
from recsys.service.store import Ids, compact_ids

logger = logging.getLogger(__name__)

# Rows of ``items`` converted to arrays at a time while loading (bounds the loader's memory).
LOAD_CHUNK_ROWS = 100_000
# Integer columns use this for "missing" (category ids are non-negative).
MISSING = -1
CATEGORY_COLUMNS = ("category_id", "parent_category_id", "root_category_id")


@dataclass(frozen=True)
class ItemCard:
    """What a product card says about one item.

    Attributes
    ----------
    item_id : int
    category_path : list of int
        Root first, the item's own category last; empty when the item has no category.
    hidden_levels : int
        Categories between the root and the parent that ``category_path`` leaves out.
    price : float or None
        Latest value of property 790 (the dataset's price, hashed by the publisher).
    available : bool or None
        Latest availability; ``None`` when never recorded (the service then treats it as available).
    in_catalogue : bool
        Whether the item is in ``items`` at all (the other fields are empty when not).
    """

    item_id: int
    category_path: list[int]
    hidden_levels: int
    price: float | None
    available: bool | None
    in_catalogue: bool

    def as_dict(self) -> dict[str, Any]:
        """The card as JSON-ready values."""
        return {
            "item_id": self.item_id,
            "category_path": self.category_path,
            "hidden_levels": self.hidden_levels,
            "price": self.price,
            "available": self.available,
            "in_catalogue": self.in_catalogue,
        }


@dataclass(frozen=True)
class ItemCatalogue:
    """Card facts of every item in ``items``, as arrays aligned with ``item_ids`` (sorted).

    Missing integers are ``-1``, a missing price is NaN and ``available`` is ``1``, ``0`` or
    ``-1`` (unknown).
    """

    item_ids: Ids
    category_ids: npt.NDArray[np.int32]
    parent_ids: npt.NDArray[np.int32]
    root_ids: npt.NDArray[np.int32]
    depths: npt.NDArray[np.int8]
    prices: npt.NDArray[np.float32]
    available: npt.NDArray[np.int8]

    @classmethod
    def empty(cls) -> ItemCatalogue:
        """A catalogue without items (``items`` is not prepared yet)."""
        return cls.from_frame(pd.DataFrame({column.name: [] for column in ITEMS.columns}))

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> ItemCatalogue:
        """Arrays of a frame with the columns of ``items`` (any order of rows)."""
        return cls.from_chunks([_chunk_arrays(frame)])

    @classmethod
    def from_chunks(cls, chunks: list[dict[str, npt.NDArray[Any]]]) -> ItemCatalogue:
        """One catalogue of the arrays of several chunks of rows (see :func:`load_catalogue`)."""
        arrays = {name: np.concatenate([chunk[name] for chunk in chunks]) for name in chunks[0]}
        order = np.argsort(arrays["item_ids"], kind="stable")
        return cls(
            item_ids=compact_ids(arrays["item_ids"][order]),
            category_ids=arrays["category_ids"][order],
            parent_ids=arrays["parent_ids"][order],
            root_ids=arrays["root_ids"][order],
            depths=arrays["depths"][order],
            prices=arrays["prices"][order],
            available=arrays["available"][order],
        )

    def __len__(self) -> int:
        return int(self.item_ids.size)

    @property
    def nbytes(self) -> int:
        """Memory held by the arrays."""
        return sum(
            array.nbytes
            for array in (
                self.item_ids,
                self.category_ids,
                self.parent_ids,
                self.root_ids,
                self.depths,
                self.prices,
                self.available,
            )
        )

    def cards(self, item_ids: npt.ArrayLike) -> list[ItemCard]:
        """The cards of the given items, in their order (one binary search for all of them)."""
        wanted = np.asarray(item_ids, dtype=np.int64)
        if self.item_ids.size == 0:
            return [ItemCard(int(item), [], 0, None, None, False) for item in wanted.tolist()]
        position = np.minimum(np.searchsorted(self.item_ids, wanted), self.item_ids.size - 1)
        found = self.item_ids[position] == wanted
        return [
            self._card(item, index) if present else ItemCard(item, [], 0, None, None, False)
            for item, index, present in zip(wanted.tolist(), position.tolist(), found.tolist(), strict=True)
        ]

    def _card(self, item_id: int, index: int) -> ItemCard:
        category, depth = int(self.category_ids[index]), int(self.depths[index])
        path: list[int] = []
        if category != MISSING:
            # depth 1: the category is a root; 2: parent == root; 3+: root, parent, category.
            ancestors = [int(self.root_ids[index]), int(self.parent_ids[index])][-min(depth - 1, 2) :]
            path = [*ancestors, category] if depth > 1 else [category]
        price = float(self.prices[index])
        availability = int(self.available[index])
        return ItemCard(
            item_id=item_id,
            category_path=path,
            hidden_levels=max(depth - 3, 0),
            price=None if np.isnan(price) else round(price, 2),
            available=None if availability == MISSING else bool(availability),
            in_catalogue=True,
        )


def _chunk_arrays(frame: pd.DataFrame) -> dict[str, npt.NDArray[Any]]:
    """Compact arrays of some ``items`` rows."""
    arrays: dict[str, npt.NDArray[Any]] = {"item_ids": frame["item_id"].to_numpy(dtype=np.int64)}
    for column, name in zip(CATEGORY_COLUMNS, ("category_ids", "parent_ids", "root_ids"), strict=True):
        arrays[name] = pd.to_numeric(frame[column]).fillna(MISSING).to_numpy(dtype=np.int32)
    arrays["depths"] = pd.to_numeric(frame["category_depth"]).fillna(0).to_numpy(dtype=np.int8)
    arrays["prices"] = pd.to_numeric(frame["price"]).to_numpy(dtype=np.float32, na_value=np.nan)
    availability = frame["available"].astype("boolean")
    arrays["available"] = availability.astype("Int8").fillna(MISSING).to_numpy(dtype=np.int8)
    return arrays


def load_catalogue(engine: Engine, chunk_rows: int = LOAD_CHUNK_ROWS) -> ItemCatalogue:
    """The card facts of every item in ``items`` (an empty catalogue when it is not prepared).

    Raises
    ------
    sqlalchemy.exc.SQLAlchemyError
        If the database cannot be read.
    """
    columns = ["item_id", *CATEGORY_COLUMNS, "category_depth", "price", "available"]
    query = sa.select(*(ITEMS.c[name] for name in columns)).order_by(ITEMS.c.item_id)
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(ITEMS.name):
            logger.warning("table %s is not prepared yet: product cards show item ids only", ITEMS.name)
            return ItemCatalogue.empty()
        chunks = [
            _chunk_arrays(chunk)
            for chunk in pd.read_sql(query, conn.execution_options(stream_results=True), chunksize=chunk_rows)
        ]
    if not chunks:
        return ItemCatalogue.empty()
    catalogue = ItemCatalogue.from_chunks(chunks)
    logger.info("loaded %d items for product cards (%.1f MB)", len(catalogue), catalogue.nbytes / 1e6)
    return catalogue
