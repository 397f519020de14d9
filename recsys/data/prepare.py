"""Prepared datasets built from the raw tables (the logic of DAG ``1_prepare_dataset``).

- ``items``: one row per item known before ``as_of``: its category and the category's parent,
  root and depth in the tree, the latest price (property ``790``) and availability, first
  and last event time and event counts. Property snapshots taken at or after ``as_of`` are
  ignored, so a model trained "as of" a date never sees later prices or categories.
- ``interactions``: the raw events before ``as_of`` as typed interactions: ``user_id``,
  ``item_id``, ``event``, ``weight`` (from the configured event weights), UTC ``datetime``
  and ``session_index`` (the visitor's n-th session; a gap of more than the configured
  minutes starts a new one). The raw table keeps its Kaggle name ``events``, so the prepared
  one is called ``interactions``.

Events recorded online by the service (table ``online_events``) count like raw events, so the
next run after they were recorded includes them.

The heavy work runs in SQL, so memory stays flat with the full 20 M property rows; only the
latest value of three properties per item (about a million rows) reaches pandas. Both tables
are replaced in one transaction.

Preparation only moves forward: the moment of the prepared tables is kept in
``prepared_state``, and a run for an older moment (a backfill, or a zombie task finishing
late) leaves newer tables in place unless asked explicitly (``allow_older``). Stages read their
training window up to their own moment, so older runs of later stages still see the right
events in the newer tables.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, overload

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from recsys.config import EventWeights
from recsys.data.errors import TableDataError
from recsys.data.hierarchy import NO_PARENT, ancestry, conflicting_rows, describe_cycle
from recsys.data.schema import (
    AVAILABLE_PROPERTY,
    CATEGORY_PROPERTY,
    CATEGORY_TREE,
    EVENT_TYPES,
    PRICE_PROPERTY,
)
from recsys.storage.database import bulk_insert, replace_table

logger = logging.getLogger(__name__)

METADATA = sa.MetaData()

ITEMS = sa.Table(
    "items",
    METADATA,
    sa.Column("item_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("category_id", sa.BigInteger, nullable=True),
    sa.Column("parent_category_id", sa.BigInteger, nullable=True),
    sa.Column("root_category_id", sa.BigInteger, nullable=True),
    sa.Column("category_depth", sa.Integer, nullable=True),
    sa.Column("category_in_tree", sa.Boolean, nullable=True),
    sa.Column("price", sa.Float, nullable=True),
    sa.Column("available", sa.Boolean, nullable=True),
    sa.Column("first_seen", sa.DateTime, nullable=True),
    sa.Column("last_seen", sa.DateTime, nullable=True),
    sa.Column("n_views", sa.BigInteger, nullable=False),
    sa.Column("n_addtocart", sa.BigInteger, nullable=False),
    sa.Column("n_transactions", sa.BigInteger, nullable=False),
)

INTERACTIONS = sa.Table(
    "interactions",
    METADATA,
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("item_id", sa.BigInteger, nullable=False),
    sa.Column("event", sa.Text, nullable=False),
    sa.Column("weight", sa.Float, nullable=False),
    sa.Column("datetime", sa.DateTime, nullable=False),
    sa.Column("session_index", sa.Integer, nullable=False),
    sa.Index("ix_interactions_user_id", "user_id"),
)

# The moment ``items`` and ``interactions`` were last prepared as of (one row).
PREPARED_STATE = sa.Table(
    "prepared_state",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("as_of", sa.DateTime, nullable=False),
    sa.Column("prepared_at", sa.DateTime, nullable=False),
)

# Events the service records online (recsys.service.events); preparation adds them to the raw
# events, so the next pipeline run learns from them.
ONLINE_EVENTS_TABLE = "online_events"


@dataclass(frozen=True)
class PrepareReport:
    """What preparation built."""

    as_of: datetime
    n_items: int
    n_interactions: int
    n_users: int
    items_without_category: int
    categories_missing_from_tree: int
    seconds: float


@dataclass(frozen=True)
class PrepareSkipped:
    """A preparation for an older moment than the prepared tables': nothing was replaced."""

    as_of: datetime
    prepared_as_of: datetime

    def __str__(self) -> str:
        return (
            f"the prepared tables are as of {self.prepared_as_of:%Y-%m-%d %H:%M} UTC, later than "
            f"{self.as_of:%Y-%m-%d %H:%M} UTC: kept (ask explicitly to rebuild them for an older moment)"
        )


def to_epoch_ms(moment: datetime) -> int:
    """Milliseconds since the Unix epoch (naive datetimes are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def from_epoch_ms(ms: int) -> datetime:
    """Naive UTC datetime of an epoch in milliseconds (the database stores naive UTC)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).replace(tzinfo=None)


def latest_event_time(engine: Engine) -> datetime:
    """One millisecond after the last raw event: the ``as_of`` that keeps every event."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("events"):
            raise ValueError(
                "the raw table 'events' does not exist: load the raw data first (recsys data load)"
            )
        last = conn.execute(
            sa.text(f'SELECT MAX("timestamp") FROM {event_source(conn)} AS all_events')
        ).scalar()
    if last is None:
        raise ValueError("the raw table 'events' is empty: load the raw data first (recsys data load)")
    return from_epoch_ms(int(last) + 1)


@overload
def prepare_datasets(
    engine: Engine,
    weights: EventWeights,
    session_gap_minutes: int = ...,
    as_of: datetime | None = ...,
    *,
    allow_older: Literal[True],
) -> PrepareReport: ...


@overload
def prepare_datasets(
    engine: Engine,
    weights: EventWeights,
    session_gap_minutes: int = ...,
    as_of: datetime | None = ...,
    *,
    allow_older: bool = ...,
) -> PrepareReport | PrepareSkipped: ...


def prepare_datasets(
    engine: Engine,
    weights: EventWeights,
    session_gap_minutes: int = 30,
    as_of: datetime | None = None,
    *,
    allow_older: bool = False,
) -> PrepareReport | PrepareSkipped:
    """Build ``items`` and ``interactions`` from the raw tables as of a moment.

    Parameters
    ----------
    engine : Engine
        Database holding the raw tables; the prepared tables are written there too.
    weights : EventWeights
        Weight of each event type in ``interactions``.
    session_gap_minutes : int
        Minutes of inactivity that end a visitor's session.
    as_of : datetime, optional
        Only events and property snapshots strictly before it are used (naive = UTC).
        Defaults to just after the last raw event.
    allow_older : bool
        Rebuild the tables even when they are prepared as of a later moment (otherwise such a
        run keeps them and returns :class:`PrepareSkipped`).
    """
    started = time.perf_counter()
    as_of = as_of or latest_event_time(engine)
    if as_of.tzinfo is not None:  # the database stores naive UTC
        as_of = as_of.astimezone(UTC).replace(tzinfo=None)
    cutoff = to_epoch_ms(as_of)
    with engine.begin() as conn:
        PREPARED_STATE.create(conn, checkfirst=True)
        # The row lock orders concurrent preparations on PostgreSQL (SQLite has one writer).
        prepared_as_of = conn.execute(
            sa.select(PREPARED_STATE.c.as_of).where(PREPARED_STATE.c.id == 1).with_for_update()
        ).scalar_one_or_none()
        if prepared_as_of is not None and prepared_as_of > as_of and not allow_older:
            skipped = PrepareSkipped(as_of=as_of, prepared_as_of=prepared_as_of)
            logger.warning("preparation skipped: %s", skipped)
            return skipped
        items = build_items(conn, cutoff)
        if items.empty:
            raise ValueError(
                f"no events and no item properties before {as_of:%Y-%m-%d %H:%M} UTC: nothing to prepare"
            )
        replace_table(conn, ITEMS)
        bulk_insert(conn, ITEMS, items)
        replace_table(conn, INTERACTIONS)
        conn.execute(
            _interactions_insert(conn),
            {
                "cutoff": cutoff,
                "gap_ms": int(session_gap_minutes) * 60_000,
                **{f"weight_{event}": weight for event, weight in weights.as_dict().items()},
            },
        )
        n_interactions, n_users = conn.execute(
            sa.select(sa.func.count(), sa.func.count(sa.distinct(INTERACTIONS.c.user_id)))
        ).one()
        if n_interactions == 0:  # raised inside the transaction: the old tables stay
            raise ValueError(f"no events before {as_of:%Y-%m-%d %H:%M} UTC: nothing to prepare")
        conn.execute(sa.delete(PREPARED_STATE))
        conn.execute(
            sa.insert(PREPARED_STATE).values(
                id=1, as_of=as_of, prepared_at=datetime.now(UTC).replace(tzinfo=None)
            )
        )
    return PrepareReport(
        as_of=as_of,
        n_items=len(items),
        n_interactions=int(n_interactions),
        n_users=int(n_users),
        items_without_category=int(items["category_id"].isna().sum()),
        categories_missing_from_tree=int(
            items.loc[items["category_in_tree"].eq(False), "category_id"].nunique()
        ),
        seconds=time.perf_counter() - started,
    )


def build_items(conn: Connection, cutoff_ms: int) -> pd.DataFrame:
    """The ``items`` frame as of ``cutoff_ms`` (see the module docstring)."""
    latest = pd.read_sql(
        sa.text(
            """
            SELECT itemid AS item_id, property, value FROM (
                SELECT itemid, property, value,
                       ROW_NUMBER() OVER (PARTITION BY itemid, property ORDER BY "timestamp" DESC) AS rn
                FROM item_properties
                WHERE property IN (:category, :available, :price) AND "timestamp" < :cutoff
            ) AS ranked
            WHERE rn = 1
            """
        ),
        conn,
        params={
            "category": CATEGORY_PROPERTY,
            "available": AVAILABLE_PROPERTY,
            "price": PRICE_PROPERTY,
            "cutoff": cutoff_ms,
        },
    )
    properties = latest.pivot(index="item_id", columns="property", values="value")
    activity = pd.read_sql(
        sa.text(
            f"""
            SELECT itemid AS item_id,
                   MIN("timestamp") AS first_ms, MAX("timestamp") AS last_ms,
                   SUM(CASE WHEN event = 'view' THEN 1 ELSE 0 END) AS n_views,
                   SUM(CASE WHEN event = 'addtocart' THEN 1 ELSE 0 END) AS n_addtocart,
                   SUM(CASE WHEN event = 'transaction' THEN 1 ELSE 0 END) AS n_transactions
            FROM {event_source(conn)} AS all_events WHERE "timestamp" < :cutoff GROUP BY itemid
            """
        ),
        conn,
        params={"cutoff": cutoff_ms},
    ).set_index("item_id")
    items = properties.join(activity, how="outer")
    items.index.name = "item_id"

    frame = pd.DataFrame(index=items.index)
    frame["category_id"] = (
        _column(items, CATEGORY_PROPERTY).pipe(pd.to_numeric, errors="coerce").astype("Int64")
    )
    frame["price"] = _column(items, PRICE_PROPERTY).str.lstrip("n").pipe(pd.to_numeric, errors="coerce")
    frame["available"] = _column(items, AVAILABLE_PROPERTY).map({"1": True, "0": False}).astype("boolean")
    for bound in ("first", "last"):
        stamps = pd.to_datetime(items[f"{bound}_ms"], unit="ms")
        frame[f"{bound}_seen"] = stamps
    for count in ("n_views", "n_addtocart", "n_transactions"):
        frame[count] = items[count].fillna(0).astype("int64")

    tree = category_ancestry(pd.read_sql(sa.text("SELECT categoryid, parentid FROM category_tree"), conn))
    placed = frame[["category_id"]].join(tree, on="category_id")
    in_tree = frame["category_id"].isin(tree.index)
    # A category the tree does not know is treated as a root of its own.
    frame["parent_category_id"] = placed["parent_category_id"].astype("Int64")
    frame["root_category_id"] = placed["root_category_id"].astype("Int64").fillna(frame["category_id"])
    frame["category_depth"] = placed["depth"].where(in_tree, 1).astype("Int64")
    frame["category_in_tree"] = in_tree.where(frame["category_id"].notna()).astype("boolean")
    frame.loc[frame["category_id"].isna(), ["root_category_id", "category_depth"]] = pd.NA
    return frame.reset_index()[[c.name for c in ITEMS.columns]]


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    """A pivoted property column, or an all-missing one when no item has the property."""
    if name in frame.columns:
        return frame[name]
    return pd.Series(pd.NA, index=frame.index, dtype="object")


def category_ancestry(tree: pd.DataFrame) -> pd.DataFrame:
    """Parent, root and depth (root = 1) of every category of the tree.

    Parameters
    ----------
    tree : DataFrame
        Columns ``categoryid`` and ``parentid`` (missing for roots), as in the raw table; rows
        repeating a category with the same parent count once.

    Raises
    ------
    TableDataError
        If a category is listed with different parents, or following parents does not end
        at a root (a cycle); the tree may have been written by something other than the loader.
    """
    hierarchy = CATEGORY_TREE.hierarchy
    assert hierarchy is not None
    id_name, parent_name = hierarchy.id_column, hierarchy.parent_column
    links = tree[[id_name, parent_name]].drop_duplicates().reset_index(drop=True)
    if links[id_name].isna().any():
        raise TableDataError(
            CATEGORY_TREE.name, f"rows without a {id_name}", _quoted(links[links[id_name].isna()])
        )
    ids = links[id_name].to_numpy(dtype=np.int64)
    parents = links[parent_name].astype("Int64").fillna(NO_PARENT).to_numpy(dtype=np.int64)
    conflicts = conflicting_rows(ids, parents)
    if conflicts.size:
        first_id = ids[conflicts[0]]
        rows = links.iloc[conflicts[ids[conflicts] == first_id]]
        raise TableDataError(
            CATEGORY_TREE.name,
            f"{id_name} {first_id} has {len(rows)} different parents (each {id_name} needs exactly "
            f"one {parent_name}; {hierarchy.plural} with several: {len(np.unique(ids[conflicts]))})",
            _quoted(rows),
        )
    walked = ancestry(ids, parents)
    if walked.cycle.size:
        raise TableDataError(
            CATEGORY_TREE.name,
            f"{hierarchy.plural} {describe_cycle(ids, walked.cycle)} form a cycle: "
            f"following {parent_name} never reaches a root",
            _quoted(links.iloc[walked.cycle]),
        )
    return pd.DataFrame(
        {
            "parent_category_id": links[parent_name].astype("Int64").to_numpy(),
            "root_category_id": ids[walked.root],
            "depth": walked.depth,
        },
        index=pd.Index(ids, name="category_id"),
    )


def _quoted(rows: pd.DataFrame) -> list[dict[str, object]]:
    """Rows as plain dicts for an error message, missing values as None."""
    return [
        {name: None if pd.isna(value) else int(value) for name, value in row.items()}
        for row in rows.astype(object).to_dict("records")
    ]


def event_source(conn: Connection) -> str:
    """SQL of all events in the raw layout: the raw table plus the service's online events."""
    if not sa.inspect(conn).has_table(ONLINE_EVENTS_TABLE):
        return '(SELECT visitorid, itemid, event, "timestamp" FROM events)'
    return (
        '(SELECT visitorid, itemid, event, "timestamp" FROM events UNION ALL '
        f'SELECT user_id, item_id, event, "timestamp" FROM {ONLINE_EVENTS_TABLE})'
    )


def _utc_datetime_sql(conn: Connection) -> str:
    """SQL turning the raw epoch-milliseconds column into a naive UTC timestamp."""
    if conn.dialect.name == "postgresql":
        return """(TO_TIMESTAMP("timestamp" / 1000.0) AT TIME ZONE 'UTC')"""
    # SQLite stores DateTime as text; the format is SQLAlchemy's, with microseconds.
    return (
        """(STRFTIME('%Y-%m-%d %H:%M:%S', "timestamp" / 1000, 'unixepoch')"""
        """ || '.' || PRINTF('%06d', ("timestamp" % 1000) * 1000))"""
    )


def _interactions_insert(conn: Connection) -> sa.TextClause:
    """``INSERT ... SELECT`` of the interactions; parameters: cutoff, gap_ms, weight_<event>."""
    weight_cases = " ".join(
        f"WHEN '{event}' THEN CAST(:weight_{event} AS DOUBLE PRECISION)" for event in EVENT_TYPES
    )
    return sa.text(
        f"""
        INSERT INTO interactions (user_id, item_id, event, weight, datetime, session_index)
        SELECT visitorid, itemid, event,
               CASE event {weight_cases} END,
               {_utc_datetime_sql(conn)},
               SUM(starts_session) OVER (
                   PARTITION BY visitorid ORDER BY "timestamp", event, itemid ROWS UNBOUNDED PRECEDING
               ) - 1
        FROM (
            SELECT visitorid, itemid, event, "timestamp",
                   CASE WHEN "timestamp" - LAG("timestamp") OVER (
                            PARTITION BY visitorid ORDER BY "timestamp", event, itemid
                        ) <= :gap_ms THEN 0 ELSE 1 END AS starts_session
            FROM {event_source(conn)} AS all_events
            WHERE "timestamp" < :cutoff
        ) AS marked
        """
    )
