"""Atomic, versioned publication of recommendation tables.

Every publication of a logical table (say ``default_recommendations``) writes a new physical
table ``default_recommendations__v<N>`` and then, in ONE short transaction, moves the pointer
in ``published_tables`` to it and re-points the view ``default_recommendations``. Readers (the
service, analysts) therefore see either the previous complete version or the new complete
one, never a half-written or mixed table, and a writer that dies mid-way leaves the previous
version serving. Versions beyond the retention count and orphans of dead writers are dropped
on the next publication.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from recsys.storage.database import bulk_insert, read_frame

logger = logging.getLogger(__name__)

METADATA = sa.MetaData()

PUBLISHED_TABLES = sa.Table(
    "published_tables",
    METADATA,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("as_of", sa.DateTime, nullable=True),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("published_at", sa.DateTime, nullable=False),
)

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,60}$")


class NotPublishedError(LookupError):
    """A logical table that has never been published."""


@dataclass(frozen=True)
class PublishedVersion:
    """Where the current version of a logical table lives."""

    name: str
    version: int
    as_of: datetime | None
    rows: int
    published_at: datetime

    @property
    def physical_name(self) -> str:
        """The versioned table holding the rows."""
        return physical_name(self.name, self.version)


def physical_name(name: str, version: int) -> str:
    """``<name>__v<version>``."""
    return f"{name}__v{version}"


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise ValueError(f"invalid table name {name!r}: lower-case letters, digits and _ only")


def current_version(bind: Engine | Connection, name: str) -> PublishedVersion:
    """The version readers get now.

    Raises
    ------
    NotPublishedError
        If ``name`` was never published (the pipeline stage that builds it has not run).
    """
    query = sa.select(PUBLISHED_TABLES).where(PUBLISHED_TABLES.c.name == name)
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            row = _pointer_row(conn, query)
    else:
        row = _pointer_row(bind, query)
    if row is None:
        raise NotPublishedError(f"table {name!r} has not been published yet: run its pipeline stage first")
    return PublishedVersion(**row)


def _pointer_row(conn: Connection, query: sa.Select[Any]) -> dict[str, Any] | None:
    if not sa.inspect(conn).has_table(PUBLISHED_TABLES.name):
        return None
    row = conn.execute(query).mappings().first()
    return dict(row) if row is not None else None


def publish_frame(
    engine: Engine,
    name: str,
    frame: pd.DataFrame,
    columns: list[sa.Column[object]],
    as_of: datetime | None = None,
    keep_versions: int = 3,
    indexes: list[list[str]] | None = None,
) -> PublishedVersion:
    """Write ``frame`` as a new version of ``name`` and switch readers to it atomically.

    Parameters
    ----------
    engine : Engine
        Target database.
    name : str
        Logical table name (also the name of the view that always shows the current version).
    frame : DataFrame
        The rows; its columns must match ``columns``.
    columns : list of Column
        Column definitions of the physical table.
    as_of : datetime, optional
        The data moment the rows describe (e.g. the DAG's logical date), recorded with the version.
    keep_versions : int
        Complete versions kept (current included) so that slow readers are never cut off.
    indexes : list of column lists, optional
        Indexes to build before the switch (e.g. ``[["user_id"]]``).
    """
    _check_name(name)
    if keep_versions < 1:
        raise ValueError("keep_versions must be at least 1")
    PUBLISHED_TABLES.create(engine, checkfirst=True)
    version = _next_version(engine, name)
    table = sa.Table(physical_name(name, version), sa.MetaData(), *(c._copy() for c in columns))
    # Writing may take long and may die: it happens outside the switch transaction.
    with engine.begin() as conn:
        table.drop(conn, checkfirst=True)
        table.create(conn)
        bulk_insert(conn, table, frame)
        for number, index_columns in enumerate(indexes or []):
            sa.Index(f"ix_{table.name}_{number}", *(table.c[c] for c in index_columns)).create(conn)
    published = PublishedVersion(
        name=name,
        version=version,
        as_of=as_of,
        rows=len(frame),
        published_at=datetime.now(UTC).replace(tzinfo=None),
    )
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # One writer per logical table at a time; readers are never blocked by this lock.
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": name})
        conn.execute(sa.delete(PUBLISHED_TABLES).where(PUBLISHED_TABLES.c.name == name))
        conn.execute(
            sa.insert(PUBLISHED_TABLES).values(
                name=name, version=version, as_of=as_of, rows=len(frame), published_at=published.published_at
            )
        )
        conn.execute(sa.text(f'DROP VIEW IF EXISTS "{name}"'))
        conn.execute(sa.text(f'CREATE VIEW "{name}" AS SELECT * FROM "{table.name}"'))
    complete = [v for v in _versions_on_disk(engine, name) if v <= version]
    _drop_versions(engine, name, complete[:-keep_versions])
    logger.info("published %s version %d (%d rows)", name, version, len(frame))
    return published


def _versions_on_disk(bind: Engine | Connection, name: str) -> list[int]:
    pattern = re.compile(rf"^{re.escape(name)}__v(\d+)$")
    return sorted(int(m.group(1)) for t in sa.inspect(bind).get_table_names() if (m := pattern.match(t)))


def _next_version(engine: Engine, name: str) -> int:
    """The version to write next; tables of versions newer than the current one are orphans of
    writers that died before their switch (there is one writer per logical table) and are dropped."""
    on_disk = _versions_on_disk(engine, name)
    try:
        current = current_version(engine, name).version
    except NotPublishedError:
        current = 0
    _drop_versions(engine, name, [v for v in on_disk if v > current])
    return max([current, *on_disk]) + 1


def _drop_versions(engine: Engine, name: str, versions: list[int]) -> None:
    if not versions:
        return
    with engine.begin() as conn:
        for version in versions:
            conn.execute(sa.text(f'DROP TABLE IF EXISTS "{physical_name(name, version)}"'))


def read_published(
    engine: Engine, name: str, columns: list[str] | None = None
) -> tuple[PublishedVersion, pd.DataFrame]:
    """The current version's rows, read consistently with its pointer."""
    with engine.connect() as conn:
        version = current_version(conn, name)
        selected = ", ".join(f'"{c}"' for c in columns) if columns else "*"
        frame = read_frame(conn, f'SELECT {selected} FROM "{version.physical_name}"')
    return version, frame
