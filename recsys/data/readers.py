"""Reading the prepared tables back as typed data frames (the same on SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recsys.data.prepare import INTERACTIONS, ITEMS

INTERACTION_DTYPES = {
    "user_id": "int64",
    "item_id": "int64",
    "event": "category",
    "weight": "float32",
    "session_index": "int32",
}


def read_interactions(
    engine: Engine, since: datetime | None = None, before: datetime | None = None
) -> pd.DataFrame:
    """Prepared interactions with ``since <= datetime < before`` (naive UTC), sorted by time.

    Raises
    ------
    ValueError
        If the table does not exist yet (run ``recsys data prepare`` first).
    """
    _require(engine, INTERACTIONS)
    query = sa.select(INTERACTIONS).order_by(INTERACTIONS.c.datetime, INTERACTIONS.c.user_id)
    if since is not None:
        query = query.where(INTERACTIONS.c.datetime >= since)
    if before is not None:
        query = query.where(INTERACTIONS.c.datetime < before)
    with engine.connect() as conn:
        frame = pd.read_sql(query, conn)
    frame["datetime"] = pd.to_datetime(frame["datetime"])
    return frame.astype(INTERACTION_DTYPES)


def read_items(engine: Engine) -> pd.DataFrame:
    """The prepared ``items`` table with nullable integer and boolean columns."""
    _require(engine, ITEMS)
    with engine.connect() as conn:
        frame = pd.read_sql(sa.select(ITEMS).order_by(ITEMS.c.item_id), conn)
    for column in ("category_id", "parent_category_id", "root_category_id", "category_depth"):
        frame[column] = frame[column].astype("Int64")
    for column in ("category_in_tree", "available"):
        frame[column] = frame[column].astype("boolean")
    for column in ("first_seen", "last_seen"):
        frame[column] = pd.to_datetime(frame[column])
    return frame


def _require(engine: Engine, table: sa.Table) -> None:
    if not sa.inspect(engine).has_table(table.name):
        raise ValueError(
            f"table {table.name!r} does not exist in {engine.url.render_as_string()}: "
            "run `recsys data prepare` (DAG 1_prepare_dataset) first"
        )
