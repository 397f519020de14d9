"""Online events: what users do while the service runs, stored durably in ``online_events``.

The service records views, add-to-carts and purchases as they happen, so they survive a
restart and every worker sees them; every worker keeps each user's latest ones in memory
(:mod:`recsys.service.activity`, refreshed from this table twice a second) to compute online
item-to-item recommendations and to filter what the user has just bought.

The next pipeline run can learn from them too: :func:`export_raw_events` returns them in the
raw ``events`` format (``timestamp, visitorid, event, itemid, transactionid``), e.g.::

    export_raw_events(engine).to_csv("data/raw/online_events.csv", index=False)

and appending those rows to ``events.csv`` before ``recsys data load`` (DAG 1) makes them part
of the next training window. Exporting everything again each time is safe: the loader drops
exact duplicate rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recsys.data.schema import EVENT_TYPES, EVENTS

METADATA = sa.MetaData()

ONLINE_EVENTS = sa.Table(
    "online_events",
    METADATA,
    sa.Column("event_id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("item_id", sa.BigInteger, nullable=False),
    sa.Column("event", sa.String(20), nullable=False),
    # Unix milliseconds, as in the raw events.
    sa.Column("timestamp", sa.BigInteger, nullable=False),
    sa.Column("recorded_at", sa.DateTime, nullable=False),
    sa.CheckConstraint(
        f"event IN ({', '.join(repr(e) for e in EVENT_TYPES)})", name="ck_online_events_event"
    ),
    # Ids only grow (never reused): the service's in-memory copy reads the events after the last id.
    sqlite_autoincrement=True,
)


@dataclass(frozen=True)
class OnlineEvent:
    """One recorded event."""

    event_id: int
    user_id: int
    item_id: int
    event: str
    timestamp: int


@dataclass(frozen=True)
class UserActivity:
    """What a user did online: the items of the latest events (newest first), every item bought
    (sorted) and, aligned with ``recent``, the events' Unix-ms timestamps (empty for a published
    history, which has none). Plain arrays, read on every personalised request."""

    recent: npt.NDArray[np.int64]
    bought: npt.NDArray[np.int64]
    timestamps: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    @classmethod
    def none(cls) -> UserActivity:
        """No online events."""
        return cls(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64))

    def session(self, gap_ms: int) -> UserActivity:
        """The running session: the latest events up to the first gap of more than ``gap_ms``
        between two consecutive ones (all of them without timestamps)."""
        if self.timestamps.size < 2:
            return self
        gaps = self.timestamps[:-1] - self.timestamps[1:]
        breaks = np.flatnonzero(gaps > gap_ms)
        if breaks.size == 0:
            return self
        end = int(breaks[0]) + 1
        return UserActivity(self.recent[:end], self.bought, self.timestamps[:end])


# Columns of the arrays :meth:`OnlineEventsRepository.events_after` returns.
EVENT_ID, USER, ITEM, TIMESTAMP, PURCHASE = range(5)


class OnlineEventsRepository:
    """Reads and writes ``online_events`` with bound parameters only."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def ensure_table(self) -> None:
        """Create ``online_events`` if it does not exist (safe with several workers starting at once)."""
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Two workers creating the table at once would collide in the catalogue.
                conn.execute(
                    sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": "online_events"}
                )
            ONLINE_EVENTS.create(conn, checkfirst=True)

    def record(self, user_id: int, item_id: int, event: str, timestamp: int) -> OnlineEvent:
        """Store one event and return it with its id.

        Raises
        ------
        ValueError
            If ``event`` is not one of ``view``, ``addtocart``, ``transaction``.
        """
        if event not in EVENT_TYPES:
            raise ValueError(f"unknown event {event!r}: expected one of {', '.join(EVENT_TYPES)}")
        values = {
            "user_id": user_id,
            "item_id": item_id,
            "event": event,
            "timestamp": timestamp,
            "recorded_at": datetime.now(UTC).replace(tzinfo=None),
        }
        with self.engine.begin() as conn:
            event_id = conn.execute(
                sa.insert(ONLINE_EVENTS).values(**values).returning(ONLINE_EVENTS.c.event_id)
            ).scalar_one()
        return OnlineEvent(int(event_id), user_id, item_id, event, timestamp)

    def events_after(self, event_id: int) -> npt.NDArray[np.int64]:
        """Every event with a higher id, as rows ``event_id, user_id, item_id, timestamp, purchase``.

        One range scan of the primary key (bound parameter); ``purchase`` is 1 for a transaction.
        """
        table = ONLINE_EVENTS.c
        query = (
            sa.select(
                table.event_id,
                table.user_id,
                table.item_id,
                table.timestamp,
                sa.case((table.event == "transaction", 1), else_=0),
            )
            .where(table.event_id > sa.bindparam("after", type_=sa.BigInteger))
            .order_by(table.event_id)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query, {"after": event_id}).fetchall()
        return np.array(rows, dtype=np.int64).reshape(len(rows), 5)


def export_raw_events(engine: Engine, since_ms: int | None = None) -> pd.DataFrame:
    """Online events (``timestamp >= since_ms`` if given) in the raw ``events`` format.

    A purchase gets its event id as ``transactionid`` (one online purchase, one transaction);
    other events have none, as in the Kaggle file.
    """
    query = sa.select(ONLINE_EVENTS).order_by(ONLINE_EVENTS.c.timestamp, ONLINE_EVENTS.c.event_id)
    if since_ms is not None:
        query = query.where(ONLINE_EVENTS.c.timestamp >= since_ms)
    with engine.connect() as conn:
        frame = pd.read_sql(query, conn)
    raw = pd.DataFrame(
        {
            "timestamp": frame["timestamp"].astype("int64"),
            "visitorid": frame["user_id"].astype("int64"),
            "event": frame["event"].astype(str),
            "itemid": frame["item_id"].astype("int64"),
            "transactionid": frame["event_id"].where(frame["event"] == "transaction").astype("Int64"),
        }
    )
    return raw[EVENTS.column_names]
