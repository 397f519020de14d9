"""Online events: what users do while the service runs, stored durably in ``online_events``.

The service records views, add-to-carts and purchases as they happen, so they survive a
restart and every worker sees them; each personalised request reads the user's latest ones
(one indexed query) to compute online item-to-item recommendations and to filter what the
user has just bought.

The next pipeline run can learn from them too: :func:`export_raw_events` returns them in the
raw ``events`` format (``timestamp, visitorid, event, itemid, transactionid``), e.g.::

    export_raw_events(engine).to_csv("data/raw/online_events.csv", index=False)

and appending those rows to ``events.csv`` before ``recsys data load`` (DAG 1) makes them part
of the next training window. Exporting everything again each time is safe: the loader drops
exact duplicate rows.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    # The per-request read: a user's latest events.
    sa.Index("ix_online_events_user_time", "user_id", "timestamp"),
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
    """What a user did online: the items of the latest events (newest first) and every item bought.

    Plain arrays, not frames: they are built and read on every personalised request.
    """

    recent: npt.NDArray[np.int64]
    bought: npt.NDArray[np.int64]

    @classmethod
    def none(cls) -> UserActivity:
        """No online events (also what is used when the database cannot be read)."""
        return cls(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64))


def _activity_query() -> sa.CompoundSelect[int, int, int, bool]:
    """The user's latest events and their purchases in one statement (one round trip).

    ``recent`` tells the two parts apart; the latest events come with their order keys because
    SQL does not promise that a ``UNION ALL`` keeps the order of its parts.
    """
    table = ONLINE_EVENTS.c
    user = sa.bindparam("user_id", type_=sa.BigInteger)
    latest = (
        sa.select(table.item_id, table.timestamp, table.event_id, sa.literal(True).label("recent"))
        .where(table.user_id == user)
        .order_by(table.timestamp.desc(), table.event_id.desc())
        .limit(sa.bindparam("limit", type_=sa.Integer))
        .subquery()
    )
    bought = sa.select(table.item_id, table.timestamp, table.event_id, sa.literal(False)).where(
        table.user_id == user, table.event == "transaction"
    )
    return sa.union_all(sa.select(latest), bought)


ACTIVITY_QUERY = _activity_query()


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

    def activity(self, user_id: int, limit: int) -> UserActivity:
        """The user's ``limit`` latest events and all the items they bought online.

        One indexed query on ``(user_id, timestamp)``, with bound parameters.
        """
        with self.engine.connect() as conn:
            rows = conn.execute(ACTIVITY_QUERY, {"user_id": user_id, "limit": limit}).fetchall()
        if not rows:
            return UserActivity.none()
        values = np.array([tuple(row) for row in rows], dtype=np.int64).reshape(len(rows), 4)
        is_recent = values[:, 3] == 1
        latest = values[is_recent]
        # Newest first: by timestamp, then by event id (the later recorded wins a tie).
        latest = latest[np.lexsort((-latest[:, 2], -latest[:, 1]))]
        return UserActivity(latest[:, 0], np.unique(values[~is_recent, 0]))

    def count(self) -> int:
        """Number of recorded events."""
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(ONLINE_EVENTS)).scalar_one())


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
