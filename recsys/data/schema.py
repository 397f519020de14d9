"""The RetailRocket raw files and the database tables they load into.

The files are exactly those of the Kaggle dataset ("Retailrocket recommender system dataset"):

- ``events.csv``: ``timestamp,visitorid,event,itemid,transactionid``; ``timestamp`` is a
  Unix epoch in milliseconds, ``event`` is ``view``, ``addtocart`` or ``transaction`` and
  ``transactionid`` is set on transactions only.
- ``item_properties_part1.csv`` and ``item_properties_part2.csv``:
  ``timestamp,itemid,property,value``; weekly snapshots of hashed item properties
  (numbers are written ``n<value>.000``; the price is property ``790``, while ``categoryid``
  and ``available`` are plain).
- ``category_tree.csv``: ``categoryid,parentid``; roots have an empty ``parentid``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import sqlalchemy as sa

EVENT_TYPES: tuple[str, ...] = ("view", "addtocart", "transaction")
# Events that show intent to buy: what evaluation counts as relevant and the ranker learns first.
RELEVANT_EVENTS: tuple[str, ...] = ("addtocart", "transaction")

# Item properties that are not hashed and that preparation reads.
CATEGORY_PROPERTY = "categoryid"
AVAILABLE_PROPERTY = "available"
PRICE_PROPERTY = "790"


class ColumnKind(Enum):
    """How a raw column is checked and stored."""

    INTEGER = "integer"
    TEXT = "text"


@dataclass(frozen=True)
class RawColumn:
    """One column of a raw file."""

    name: str
    kind: ColumnKind
    nullable: bool = False
    allowed: tuple[str, ...] | None = None
    # Free text may be empty and is left out of the cheap duplicate-candidate key
    # (candidates are compared on every column afterwards).
    free_text: bool = False
    # A Unix time in milliseconds, checked to be a plausible date.
    epoch_ms: bool = False


@dataclass(frozen=True)
class Hierarchy:
    """Rows that link an id to its parent id (empty for roots): each id once, no cycles."""

    id_column: str
    parent_column: str
    plural: str  # what the ids are, for messages ("categories 5 → 7 → 5 form a cycle")


@dataclass(frozen=True)
class RawTable:
    """A raw table and the file(s) it is loaded from, in load order."""

    name: str
    files: tuple[str, ...]
    columns: tuple[RawColumn, ...]
    hierarchy: Hierarchy | None = None

    @property
    def column_names(self) -> list[str]:
        """Column names in file order."""
        return [c.name for c in self.columns]

    def sa_table(self, metadata: sa.MetaData | None = None) -> sa.Table:
        """The SQLAlchemy table this raw file is loaded into."""
        types = {ColumnKind.INTEGER: sa.BigInteger, ColumnKind.TEXT: sa.Text}
        return sa.Table(
            self.name,
            metadata or sa.MetaData(),
            *(sa.Column(c.name, types[c.kind], nullable=c.nullable) for c in self.columns),
        )


EVENTS = RawTable(
    name="events",
    files=("events.csv",),
    columns=(
        RawColumn("timestamp", ColumnKind.INTEGER, epoch_ms=True),
        RawColumn("visitorid", ColumnKind.INTEGER),
        RawColumn("event", ColumnKind.TEXT, allowed=EVENT_TYPES),
        RawColumn("itemid", ColumnKind.INTEGER),
        RawColumn("transactionid", ColumnKind.INTEGER, nullable=True),
    ),
)

ITEM_PROPERTIES = RawTable(
    name="item_properties",
    files=("item_properties_part1.csv", "item_properties_part2.csv"),
    columns=(
        RawColumn("timestamp", ColumnKind.INTEGER, epoch_ms=True),
        RawColumn("itemid", ColumnKind.INTEGER),
        RawColumn("property", ColumnKind.TEXT),
        RawColumn("value", ColumnKind.TEXT, free_text=True),
    ),
)

CATEGORY_TREE = RawTable(
    name="category_tree",
    files=("category_tree.csv",),
    columns=(
        RawColumn("categoryid", ColumnKind.INTEGER),
        RawColumn("parentid", ColumnKind.INTEGER, nullable=True),
    ),
    hierarchy=Hierarchy(id_column="categoryid", parent_column="parentid", plural="categories"),
)

RAW_TABLES: tuple[RawTable, ...] = (CATEGORY_TREE, ITEM_PROPERTIES, EVENTS)
