"""Writing validated blocks of raw rows into a database table.

PostgreSQL gets the file's own bytes through ``COPY ... FROM STDIN`` on a background thread,
so that parsing and checking the next block overlaps with the server ingesting this one.
SQLite gets typed rows through ``executemany``.
"""

from __future__ import annotations

import io
import queue
import threading
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy.engine import Connection

from recsys.data.schema import ColumnKind, RawTable
from recsys.storage.database import is_postgres

_END = b""


def typed_block(block: pa.Table, table: RawTable) -> pa.Table:
    """Convert a validated block of string columns to the table's types (empty nullable → null)."""
    columns = []
    for column in table.columns:
        values = block.column(column.name)
        if column.kind is ColumnKind.INTEGER:
            if column.nullable:
                values = pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)
            values = pc.cast(values, pa.int64())
        columns.append(values)
    return pa.table(columns, names=table.column_names)


class BlockWriter(Protocol):
    """Receives the blocks of one table, in order, inside the caller's transaction."""

    def write(self, raw_block: bytes, parsed: pa.Table) -> None:
        """Write one validated block: its bytes as read and its parsed string columns."""

    def finish(self) -> None:
        """Flush everything; raise if the database refused any of it."""

    def abort(self) -> None:
        """Stop early (the transaction is about to be rolled back)."""


def open_writer(conn: Connection, table: RawTable) -> BlockWriter:
    """The fastest writer the connection's database supports."""
    if is_postgres(conn):
        return PostgresCopyWriter(conn, table)
    return ExecutemanyWriter(conn, table)


class ExecutemanyWriter:
    """Inserts typed rows with the DB-API ``executemany`` (SQLite, or any other backend)."""

    def __init__(self, conn: Connection, table: RawTable) -> None:
        self._table = table
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        self._cursor: Any = dbapi.cursor()
        marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        columns = ", ".join(f'"{name}"' for name in table.column_names)
        self._sql = (
            f'INSERT INTO "{table.name}" ({columns}) VALUES ({", ".join([marker] * len(table.columns))})'
        )

    def write(self, raw_block: bytes, parsed: pa.Table) -> None:
        typed = typed_block(parsed, self._table)
        rows = list(zip(*(col.to_pylist() for col in typed.columns), strict=True))
        self._cursor.executemany(self._sql, rows)

    def finish(self) -> None:
        self._cursor.close()

    def abort(self) -> None:
        self._cursor.close()


class _CopyAbortedError(Exception):
    """Raised inside ``COPY`` to make the server abandon it."""


class _BlockQueueReader(io.RawIOBase):
    """A file object whose bytes are the blocks put on a queue; ``None`` aborts the COPY."""

    def __init__(self, blocks: queue.Queue[bytes | None]) -> None:
        super().__init__()
        self._blocks = blocks
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if not self._pending:
            block = self._blocks.get()
            if block is None:
                raise _CopyAbortedError("load aborted")
            self._pending = memoryview(block)
        n = len(self._pending) if size is None or size < 0 else size
        chunk, self._pending = self._pending[:n], self._pending[n:]
        return bytes(chunk)


class PostgresCopyWriter:
    """Streams the file's own CSV bytes into ``COPY ... FROM STDIN`` on a background thread.

    ``FREEZE`` is valid because the loader creates the table in the same transaction; it
    spares a later rewrite of every row's visibility bits.
    """

    # Blocks in flight: one being copied, one waiting, while the next is parsed.
    _QUEUE_DEPTH = 2

    def __init__(self, conn: Connection, table: RawTable) -> None:
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        self._cursor: Any = dbapi.cursor()
        self._cursor.execute("SET client_encoding TO 'UTF8'")
        text_columns = [f'"{c.name}"' for c in table.columns if c.kind is ColumnKind.TEXT]
        columns = ", ".join(f'"{name}"' for name in table.column_names)
        options = "FORMAT csv, FREEZE"
        if text_columns:
            # An unquoted empty text field is an empty string, as pyarrow read it, not NULL.
            options += f", FORCE_NOT_NULL ({', '.join(text_columns)})"
        self._sql = f'COPY "{table.name}" ({columns}) FROM STDIN WITH ({options})'
        self._blocks: queue.Queue[bytes | None] = queue.Queue(maxsize=self._QUEUE_DEPTH)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._copy, name=f"copy-{table.name}", daemon=True)
        self._thread.start()

    def _copy(self) -> None:
        try:
            self._cursor.copy_expert(self._sql, _BlockQueueReader(self._blocks), size=1 << 20)
        except BaseException as exc:  # handed to the loading thread in finish()
            self._error = exc

    def _put(self, item: bytes | None) -> None:
        while True:
            try:
                self._blocks.put(item, timeout=0.5)
                return
            except queue.Full:
                if not self._thread.is_alive():
                    self._raise_copy_error()

    def _raise_copy_error(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise RuntimeError(f"PostgreSQL refused the COPY: {self._error}") from self._error

    def write(self, raw_block: bytes, parsed: pa.Table) -> None:
        self._put(raw_block)

    def finish(self) -> None:
        self._put(_END)
        self._raise_copy_error()
        self._cursor.close()

    def abort(self) -> None:
        if self._thread.is_alive():
            self._put(None)
        self._thread.join()
        self._cursor.close()
