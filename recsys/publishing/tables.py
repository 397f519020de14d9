"""Atomic, versioned publication of recommendation tables that only moves forward.

Every publication of a logical table (say ``default_recommendations``) writes a new physical
table ``default_recommendations__v<N>``, records it in ``published_table_versions`` and then, in
ONE short transaction, decides whether it takes over serving: if so, the pointer row in
``published_tables`` and the view ``default_recommendations`` move to it. Readers (the service,
analysts) read only the pointer and therefore see either the previous complete version or the
new complete one, never a half-written or mixed table.

**Forward only.** Version numbers are handed out in the order writers start. A new version
takes over serving only if its ``as_of`` (the data moment it describes) is not older than the
served version's; with the same ``as_of`` the later-started writer (the higher version number)
wins. So a backfill of an older date, or a zombie task that outlives its retry (a killed worker
whose task process went on), publishes its version *for the record* but does not take serving
back; ``promote=True`` (``recsys publish promote NAME VERSION``, or the DAG param
``promote_backfill``) serves it explicitly. A version without ``as_of`` is always considered newer.
The decision is taken inside the switch transaction, under the table's lock (PostgreSQL: a
transaction-level advisory lock per logical table; SQLite: the whole publication is one write
transaction), so two writers finishing at the same time cannot both win.

**States of a version** (one row of ``published_table_versions``): *being written*
(``published_at`` NULL); *published* (``published_at`` set; ``served`` true for exactly the one
the pointer names); *dropped* (``dropped_at`` set: its table was removed, the row stays as
history). A writer that dies leaves the served version untouched; what it left is dropped by the
next publication: on PostgreSQL a writer holds a session advisory lock on (table, version) while
it writes, so a version being written whose lock is free belongs to a dead writer. A number is
never handed out twice (a slow reader may still hold the name).

**Retention** (after each publication, ``keep_versions``): never drops the served version, nor
any version numbered above it (being written, or published but not served: a backfill's version
stays available to ``promote`` until a newer version is served), and keeps the newest
``keep_versions - 1`` versions below the served one, so that slow readers of the previous
versions are not cut off.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from recsys.storage.database import bulk_insert, is_postgres, read_frame

logger = logging.getLogger(__name__)

METADATA = sa.MetaData()

# The pointer: the version readers get, one row per logical table.
PUBLISHED_TABLES = sa.Table(
    "published_tables",
    METADATA,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("as_of", sa.DateTime, nullable=True),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("published_at", sa.DateTime, nullable=False),
)

# Every version ever started, served or not (see the module docstring for the states).
PUBLISHED_TABLE_VERSIONS = sa.Table(
    "published_table_versions",
    METADATA,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("as_of", sa.DateTime, nullable=True),
    sa.Column("rows", sa.BigInteger, nullable=True),
    sa.Column("published_at", sa.DateTime, nullable=True),
    sa.Column("served", sa.Boolean, nullable=False, default=False),
    sa.Column("dropped_at", sa.DateTime, nullable=True),
)

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,60}$")


class NotPublishedError(LookupError):
    """A logical table that has never been published."""


class UnknownVersionError(LookupError):
    """A version that cannot be served: never published, still being written, or dropped."""


@dataclass(frozen=True)
class PublishedVersion:
    """Where a published version of a logical table lives; ``served``: whether readers get it."""

    name: str
    version: int
    as_of: datetime | None
    rows: int
    published_at: datetime
    served: bool = True

    @property
    def physical_name(self) -> str:
        """The versioned table holding the rows."""
        return physical_name(self.name, self.version)


@dataclass(frozen=True)
class VersionRecord:
    """One row of ``published_table_versions``."""

    name: str
    version: int
    as_of: datetime | None
    rows: int | None
    published_at: datetime | None
    served: bool
    dropped_at: datetime | None

    @property
    def state(self) -> str:
        """``served``, ``published``, ``being written``, ``dropped`` or ``abandoned`` (a dead writer's)."""
        if self.dropped_at is not None:
            return "dropped" if self.published_at is not None else "abandoned"
        if self.published_at is None:
            return "being written"
        return "served" if self.served else "published"


def physical_name(name: str, version: int) -> str:
    """``<name>__v<version>``."""
    return f"{name}__v{version}"


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise ValueError(f"invalid table name {name!r}: lower-case letters, digits and _ only")


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


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


def list_versions(engine: Engine, name: str) -> list[VersionRecord]:
    """Every recorded version of ``name``, oldest first (empty if none)."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(PUBLISHED_TABLE_VERSIONS.name):
            return []
        rows = conn.execute(
            sa.select(PUBLISHED_TABLE_VERSIONS)
            .where(PUBLISHED_TABLE_VERSIONS.c.name == name)
            .order_by(PUBLISHED_TABLE_VERSIONS.c.version)
        ).mappings()
        return [VersionRecord(**row) for row in rows]


def publish_frame(
    engine: Engine,
    name: str,
    frame: pd.DataFrame | Iterable[pd.DataFrame],
    columns: list[sa.Column[object]],
    as_of: datetime | None = None,
    keep_versions: int = 3,
    indexes: list[list[str]] | None = None,
    promote: bool = False,
) -> PublishedVersion:
    """Write ``frame`` as a new version of ``name``; serve it atomically if it moves forward.

    Parameters
    ----------
    engine : Engine
        Target database.
    name : str
        Logical table name (also the name of the view that always shows the served version).
    frame : DataFrame or iterable of DataFrame
        The rows, or batches of them written as they come (a producer that builds them batch by
        batch never holds the whole table: on PostgreSQL each batch is written as it comes; SQLite
        collects them first); the columns must match ``columns``. If producing a batch fails,
        nothing of the version is left.
    columns : list of Column
        Column definitions of the physical table.
    as_of : datetime, optional
        The data moment the rows describe (e.g. the DAG's data interval end), recorded with the
        version; it decides whether the version takes over serving (module docstring).
    keep_versions : int
        Versions up to the served one kept (served included) so that slow readers are never cut off.
    indexes : list of column lists, optional
        Indexes to build before the switch (e.g. ``[["user_id"]]``).
    promote : bool
        Serve the new version even if its ``as_of`` is older than the served version's.

    Returns
    -------
    PublishedVersion
        The new version; its ``served`` says whether it took over serving.
    """
    _check_name(name)
    if keep_versions < 1:
        raise ValueError("keep_versions must be at least 1")
    _create_bookkeeping(engine)
    batches = [frame] if isinstance(frame, pd.DataFrame) else frame
    if not isinstance(frame, pd.DataFrame) and not is_postgres(engine):
        # SQLite's publication is one write transaction, which blocks every other writer of the
        # database: the batches are produced before it starts, not while it is open.
        batches = list(frame)
    with engine.connect() as conn, _writing(conn, name) as version:
        table = sa.Table(physical_name(name, version), sa.MetaData(), *(c._copy() for c in columns))
        table.create(conn)
        rows = 0
        for batch in batches:
            bulk_insert(conn, table, batch)
            rows += len(batch)
        for number, index_columns in enumerate(indexes or []):
            sa.Index(f"ix_{table.name}_{number}", *(table.c[c] for c in index_columns)).create(conn)
        if is_postgres(conn):
            # The rows go in outside the switch transaction: writing may take long and may die.
            conn.commit()
            _lock_table(conn, name)
        published = _complete(conn, name, version, as_of, rows, promote)
    _apply_retention(engine, name, keep_versions)
    logger.info(
        "published %s version %d (%d rows, as of %s)%s",
        name,
        version,
        rows,
        as_of,
        "" if published.served else ": recorded, not served (older than the served version)",
    )
    return published


def promote_version(engine: Engine, name: str, version: int) -> PublishedVersion:
    """Serve a published version of ``name`` now, whatever its ``as_of``.

    Raises
    ------
    UnknownVersionError
        If the version was never published, is still being written, or was dropped.
    """
    _check_name(name)
    _create_bookkeeping(engine)
    with engine.begin() as conn:
        _lock_table(conn, name)
        record = _record(conn, name, version)
        if record is None or record.published_at is None or record.dropped_at is not None:
            state = "was never published" if record is None else f"is {record.state}"
            servable = [str(v.version) for v in _records(conn, name) if v.state in {"served", "published"}]
            raise UnknownVersionError(
                f"version {version} of table {name!r} {state}; versions that can be served: "
                + (", ".join(servable) or "none")
            )
        _serve(conn, record)
    logger.info("promoted %s version %d (as of %s)", name, version, record.as_of)
    assert record.rows is not None and record.published_at is not None
    return PublishedVersion(name, version, record.as_of, record.rows, record.published_at, served=True)


# -- internals -----------------------------------------------------------------------------------
def _create_bookkeeping(engine: Engine) -> None:
    """Create the pointer and versions tables if missing (one creator at a time on PostgreSQL)."""
    with engine.begin() as conn:
        if is_postgres(conn):
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('published_tables'))"))
        METADATA.create_all(conn, checkfirst=True)


def _lock_table(conn: Connection, name: str) -> None:
    """Serialise, until the end of the transaction, the writers of one logical table.

    PostgreSQL: a transaction-level advisory lock (readers are never blocked). SQLite: a write
    statement first, so that the transaction holds the database's write lock from the start
    (a read-then-write transaction could fail with ``database is locked`` in WAL mode).
    """
    if is_postgres(conn):
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": name})
    else:
        conn.execute(
            sa.update(PUBLISHED_TABLE_VERSIONS)
            .where(sa.false())
            .values(served=PUBLISHED_TABLE_VERSIONS.c.served)
        )


@contextmanager
def _writing(conn: Connection, name: str) -> Iterator[int]:
    """Reserve the next version number of ``name`` and yield it inside an open transaction.

    PostgreSQL: the reservation is committed at once and the writer holds a session advisory
    lock on (name, version) until it is done, which tells other writers that it is alive. SQLite:
    reservation, rows and switch are one write transaction, so a dead writer leaves nothing.
    """
    conn.begin()
    try:
        _lock_table(conn, name)
        version = _reserve(conn, name)
        if is_postgres(conn):
            # Session-level: taken in this transaction, it outlives the commit.
            conn.execute(sa.text("SELECT pg_advisory_lock(hashtext(:name), :version)"), _key(name, version))
            conn.commit()
            conn.begin()
        try:
            yield version
            conn.commit()
        finally:
            if is_postgres(conn):
                conn.rollback()
                conn.execute(
                    sa.text("SELECT pg_advisory_unlock(hashtext(:name), :version)"), _key(name, version)
                )
                conn.commit()
    except BaseException:
        conn.rollback()
        raise


def _key(name: str, version: int) -> dict[str, Any]:
    return {"name": name, "version": version}


def _records(conn: Connection, name: str) -> list[VersionRecord]:
    rows = conn.execute(
        sa.select(PUBLISHED_TABLE_VERSIONS)
        .where(PUBLISHED_TABLE_VERSIONS.c.name == name)
        .order_by(PUBLISHED_TABLE_VERSIONS.c.version)
    ).mappings()
    return [VersionRecord(**row) for row in rows]


def _record(conn: Connection, name: str, version: int) -> VersionRecord | None:
    return next((r for r in _records(conn, name) if r.version == version), None)


def _versions_on_disk(bind: Engine | Connection, name: str) -> list[int]:
    pattern = re.compile(rf"^{re.escape(name)}__v(\d+)$")
    return sorted(int(m.group(1)) for t in sa.inspect(bind).get_table_names() if (m := pattern.match(t)))


def _reserve(conn: Connection, name: str) -> int:
    """Under the table's lock: drop what dead writers left, record and return the next version."""
    pointer = (
        conn.execute(sa.select(PUBLISHED_TABLES).where(PUBLISHED_TABLES.c.name == name)).mappings().first()
    )
    records = {r.version: r for r in _records(conn, name)}
    if pointer is not None and pointer["version"] not in records:
        # Published before versions were recorded: the served version becomes the first record.
        legacy = {k: pointer[k] for k in ("name", "version", "as_of", "rows", "published_at")}
        conn.execute(sa.insert(PUBLISHED_TABLE_VERSIONS).values(**legacy, served=True))
        records[pointer["version"]] = VersionRecord(**legacy, served=True, dropped_at=None)
    on_disk = _versions_on_disk(conn, name)
    dead = [v for v, r in records.items() if r.state == "being written" and not _writer_alive(conn, name, v)]
    unrecorded = [v for v in on_disk if v not in records]
    for version in [*dead, *unrecorded]:
        conn.execute(sa.text(f'DROP TABLE IF EXISTS "{physical_name(name, version)}"'))
    if dead:
        conn.execute(
            sa.update(PUBLISHED_TABLE_VERSIONS)
            .where(PUBLISHED_TABLE_VERSIONS.c.name == name, PUBLISHED_TABLE_VERSIONS.c.version.in_(dead))
            .values(dropped_at=_now())
        )
        logger.warning("%s: dropped versions %s left by writers that died", name, dead)
    # Never a number used before, even by a dead writer: a slow reader may still hold its name.
    version = max([0, *records, *on_disk]) + 1
    conn.execute(sa.insert(PUBLISHED_TABLE_VERSIONS).values(name=name, version=version, served=False))
    return version


def _writer_alive(conn: Connection, name: str, version: int) -> bool:
    """Whether the writer of a version being written still runs (its session lock is held).

    On SQLite a version is never seen being written (one transaction), so a record in that
    state belongs to a dead writer.
    """
    if not is_postgres(conn):
        return False
    free = conn.execute(
        sa.text("SELECT pg_try_advisory_xact_lock(hashtext(:name), :version)"), _key(name, version)
    ).scalar()
    return not free


def _complete(
    conn: Connection, name: str, version: int, as_of: datetime | None, rows: int, promote: bool
) -> PublishedVersion:
    """Under the table's lock: mark the version published and serve it if it moves forward."""
    published_at = _now()
    record = VersionRecord(name, version, as_of, rows, published_at, served=False, dropped_at=None)
    conn.execute(
        sa.update(PUBLISHED_TABLE_VERSIONS)
        .where(PUBLISHED_TABLE_VERSIONS.c.name == name, PUBLISHED_TABLE_VERSIONS.c.version == version)
        .values(as_of=as_of, rows=rows, published_at=published_at)
    )
    serve = promote or _moves_forward(conn, record)
    if serve:
        _serve(conn, record)
    return PublishedVersion(name, version, as_of, rows, published_at, served=serve)


def _moves_forward(conn: Connection, candidate: VersionRecord) -> bool:
    """Whether ``candidate`` is not older than the served version (module docstring)."""
    served = conn.execute(
        sa.select(PUBLISHED_TABLES.c.version, PUBLISHED_TABLES.c.as_of).where(
            PUBLISHED_TABLES.c.name == candidate.name
        )
    ).first()
    if served is None or candidate.as_of is None or served.as_of is None:
        return served is None or candidate.version > served.version
    return (candidate.as_of, candidate.version) > (served.as_of, served.version)


def _serve(conn: Connection, record: VersionRecord) -> None:
    """Point the pointer row, the served flags and the view at ``record`` (caller holds the lock)."""
    name = record.name
    conn.execute(
        sa.update(PUBLISHED_TABLE_VERSIONS)
        .where(PUBLISHED_TABLE_VERSIONS.c.name == name)
        .values(served=PUBLISHED_TABLE_VERSIONS.c.version == record.version)
    )
    conn.execute(sa.delete(PUBLISHED_TABLES).where(PUBLISHED_TABLES.c.name == name))
    conn.execute(
        sa.insert(PUBLISHED_TABLES).values(
            name=name,
            version=record.version,
            as_of=record.as_of,
            rows=record.rows,
            published_at=record.published_at,
        )
    )
    conn.execute(sa.text(f'DROP VIEW IF EXISTS "{name}"'))
    conn.execute(sa.text(f'CREATE VIEW "{name}" AS SELECT * FROM "{physical_name(name, record.version)}"'))


def _apply_retention(engine: Engine, name: str, keep_versions: int) -> None:
    """Drop the published versions below the served one beyond the newest ``keep_versions - 1``."""
    with engine.begin() as conn:
        _lock_table(conn, name)
        records = _records(conn, name)
        served = next((r.version for r in records if r.served), None)
        if served is None:
            return
        below = [r.version for r in records if r.version < served and r.state == "published"]
        expired = below[: max(0, len(below) - (keep_versions - 1))]
        for version in expired:
            conn.execute(sa.text(f'DROP TABLE IF EXISTS "{physical_name(name, version)}"'))
        if expired:
            conn.execute(
                sa.update(PUBLISHED_TABLE_VERSIONS)
                .where(
                    PUBLISHED_TABLE_VERSIONS.c.name == name, PUBLISHED_TABLE_VERSIONS.c.version.in_(expired)
                )
                .values(dropped_at=_now())
            )


def read_published(
    engine: Engine, name: str, columns: list[str] | None = None
) -> tuple[PublishedVersion, pd.DataFrame]:
    """The current version's rows, read consistently with its pointer."""
    with engine.connect() as conn:
        version = current_version(conn, name)
        selected = ", ".join(f'"{c}"' for c in columns) if columns else "*"
        frame = read_frame(conn, f'SELECT {selected} FROM "{version.physical_name}"')
    return version, frame
