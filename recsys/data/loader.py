"""Loading the RetailRocket raw files into the raw tables ``category_tree``, ``item_properties``, ``events``.

All tables are replaced in ONE transaction: a load that fails anywhere (a bad line in the
last file, the database going away) leaves the database exactly as it was, and running a
load twice gives the same tables.

Exact duplicate rows (the real ``events.csv`` has about 460) are dropped and reported. A
hierarchy (the category tree) is checked whole once read: an id listed with different parents
or a cycle is refused with the lines involved, before anything is committed. They
are found without keeping the rows in memory: each row gets a 64-bit key over its compact
columns while streaming; rows whose keys collide are re-read and compared on every column,
so only true duplicates are dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from recsys.data import sources
from recsys.data.errors import RawDataError
from recsys.data.hierarchy import NO_PARENT
from recsys.data.schema import RAW_TABLES, ColumnKind, Hierarchy, RawTable
from recsys.data.validation import check_header, check_hierarchy, parse_block, validate_block
from recsys.data.writers import open_writer, typed_block
from recsys.storage.database import replace_table

# Called with (table, file name, rows done in that file, bytes read, total bytes or None).
ProgressCallback = Callable[[str, str, int, int, int | None], None]

# How many duplicate examples a report keeps.
_EXAMPLES = 5


@dataclass
class TableLoadReport:
    """What loading one raw table did."""

    table: str
    files: list[str]
    rows_read: int = 0
    duplicates_dropped: int = 0
    duplicate_examples: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rows_loaded(self) -> int:
        """Rows in the table after the load."""
        return self.rows_read - self.duplicates_dropped


@dataclass(frozen=True)
class _Block:
    """A validated block and where it came from."""

    raw: bytes
    parsed: pa.Table
    file: sources.RawFile
    first_line: int
    first_row: int  # index of its first row among all rows of the table


def load_raw_data(
    engine: Engine,
    raw_dir: Path,
    tables: Sequence[RawTable] = RAW_TABLES,
    progress: ProgressCallback | None = None,
    block_size: int = sources.DEFAULT_BLOCK_SIZE,
) -> list[TableLoadReport]:
    """Load raw files from ``raw_dir`` into their tables, replacing them in one transaction.

    Parameters
    ----------
    engine : Engine
        Target database (PostgreSQL gets ``COPY``, SQLite gets ``executemany``).
    raw_dir : Path
        Folder with the Kaggle files (plain, ``.gz`` or ``.zip``).
    tables : sequence of RawTable
        Which raw tables to load; all three by default.
    progress : callable, optional
        Called after every block, see :data:`ProgressCallback`.
    block_size : int
        Bytes read per block.

    Returns
    -------
    list of TableLoadReport
        One report per table, in load order.

    Raises
    ------
    RawDataError
        On the first problem in any file; nothing has been written then.
    """
    located = {table.name: [sources.locate(raw_dir, name) for name in table.files] for table in tables}
    for table in tables:  # fail on a bad header before touching the database
        for raw in located[table.name]:
            with sources.open_binary(raw) as stream:
                check_header(sources.read_header(stream, raw), table, raw.path)

    reports = []
    with engine.begin() as conn:
        for table in tables:
            reports.append(_load_table(conn, table, located[table.name], progress, block_size))
    return reports


def _load_table(
    conn: Connection,
    table: RawTable,
    files: list[sources.RawFile],
    progress: ProgressCallback | None,
    block_size: int,
) -> TableLoadReport:
    started = time.perf_counter()
    report = TableLoadReport(table=table.name, files=[raw.name for raw in files])
    sa_table = table.sa_table()
    replace_table(conn, sa_table)
    keys: list[np.ndarray] = []
    links: list[pd.DataFrame] = []
    writer = open_writer(conn, table)
    try:
        for block in _iter_blocks(table, files, progress, block_size):
            keys.append(duplicate_candidate_keys(block.parsed, table))
            if table.hierarchy is not None:
                links.append(_hierarchy_links(block, table.hierarchy, files.index(block.file)))
            writer.write(block.raw, block.parsed)
            report.rows_read += block.parsed.num_rows
    except BaseException:
        writer.abort()
        raise
    writer.finish()
    if report.rows_read == 0:
        raise RawDataError(files[0].path, "no data rows after the header")
    if table.hierarchy is not None:
        rows = pd.concat(links, ignore_index=True)
        check_hierarchy(
            table.hierarchy,
            rows["id"].to_numpy(),
            rows["parent"].to_numpy(),
            [raw.path for raw in files],
            rows["file"].to_numpy(),
            rows["line"].to_numpy(),
        )
    candidates = _colliding_rows(np.concatenate(keys))
    if candidates.size:
        _drop_duplicates(conn, sa_table, table, files, candidates, report, block_size)
    report.seconds = time.perf_counter() - started
    return report


def _iter_blocks(
    table: RawTable,
    files: list[sources.RawFile],
    progress: ProgressCallback | None,
    block_size: int,
) -> Iterator[_Block]:
    """Validated blocks of all files of a table, in order."""
    row = 0
    for raw in files:
        total = None if raw.path.suffix.lower() in {".gz", ".zip"} else raw.compressed_size
        with sources.open_binary(raw) as stream:
            header = sources.read_header(stream, raw)
            done, line = len(header), 2
            for chunk in sources.iter_line_blocks(stream, raw, block_size):
                parsed = parse_block(chunk, table, raw.path, line)
                validate_block(parsed, table, raw.path, line)
                yield _Block(raw=chunk, parsed=parsed, file=raw, first_line=line, first_row=row)
                line += parsed.num_rows
                row += parsed.num_rows
                done += len(chunk)
                if progress is not None:
                    progress(table.name, raw.name, line - 2, done, total)


def _hierarchy_links(block: _Block, hierarchy: Hierarchy, file_index: int) -> pd.DataFrame:
    """Id, parent (``NO_PARENT`` for roots), file and line of every row of a block."""
    rows = block.parsed.num_rows
    parents = pc.if_else(
        pc.equal(block.parsed.column(hierarchy.parent_column), ""),
        str(NO_PARENT),
        block.parsed.column(hierarchy.parent_column),
    )
    return pd.DataFrame(
        {
            "id": pc.cast(block.parsed.column(hierarchy.id_column), pa.int64()).to_numpy(),
            "parent": pc.cast(parents, pa.int64()).to_numpy(),
            "file": np.full(rows, file_index, dtype=np.int64),
            "line": block.first_line + np.arange(rows, dtype=np.int64),
        }
    )


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A strong 64-bit integer mix (SplitMix64 finaliser), vectorised."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    mixed: np.ndarray = x ^ (x >> np.uint64(31))
    return mixed


def duplicate_candidate_keys(block: pa.Table, table: RawTable) -> np.ndarray:
    """A 64-bit key per row over every column but free text; equal rows get equal keys."""
    key = np.zeros(block.num_rows, dtype=np.uint64)
    for column in table.columns:
        if column.free_text:
            continue
        values = block.column(column.name)
        if column.kind is ColumnKind.INTEGER:
            # Empty (null) becomes a value no id can take.
            filled = pc.if_else(pc.equal(values, ""), "18446744073709551615", values)
            as_ints = pc.cast(filled, pa.uint64()).to_numpy()
        else:
            encoded = pc.dictionary_encode(values).combine_chunks()
            labels = pd.util.hash_array(np.asarray(encoded.dictionary.to_pylist(), dtype=object))
            as_ints = labels[encoded.indices.to_numpy()]
        key = _splitmix64(key ^ _splitmix64(np.asarray(as_ints, dtype=np.uint64)))
    return key


def _colliding_rows(keys: np.ndarray) -> np.ndarray:
    """Sorted indices of rows whose key occurs more than once."""
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    same_as_next = ordered[1:] == ordered[:-1]
    in_group = np.zeros(keys.size, dtype=bool)
    in_group[1:] |= same_as_next
    in_group[:-1] |= same_as_next
    return np.sort(order[in_group])


def _drop_duplicates(
    conn: Connection,
    sa_table: sa.Table,
    table: RawTable,
    files: list[sources.RawFile],
    candidates: np.ndarray,
    report: TableLoadReport,
    block_size: int,
) -> None:
    """Compare candidate rows exactly; keep one copy of each true duplicate in the table."""
    frames = []
    for block in _iter_blocks(table, files, None, block_size):
        rows = block.first_row + np.arange(block.parsed.num_rows)
        local = np.flatnonzero(np.isin(rows, candidates, assume_unique=True))
        if local.size:
            frame = typed_block(block.parsed.take(pa.array(local)), table).to_pandas()
            frame["_where"] = [f"{block.file.name} line {block.first_line + i}" for i in local]
            frames.append(frame)
    rows = pd.concat(frames, ignore_index=True)
    columns = table.column_names
    repeated = rows.duplicated(subset=columns, keep="first")
    if not repeated.any():
        return
    report.duplicates_dropped = int(repeated.sum())
    first_seen = rows.drop_duplicates(subset=columns, keep="first").set_index(columns)["_where"]
    for _, row in rows[repeated].head(_EXAMPLES).iterrows():
        original = first_seen.loc[tuple(row[columns])]
        report.duplicate_examples.append(f"{row['_where']} repeats {original}")

    unique_rows = rows.loc[rows.duplicated(subset=columns, keep=False), columns].drop_duplicates()
    records = [
        {name: (None if pd.isna(value) else value) for name, value in record.items()}
        for record in unique_rows.astype(object).to_dict("records")
    ]
    _replace_rows(conn, sa_table, records)


def _replace_rows(conn: Connection, sa_table: sa.Table, records: list[dict[str, object]]) -> None:
    """Delete every copy of the given rows and insert each once more."""
    scratch = sa.Table(
        f"{sa_table.name}__duplicates",
        sa.MetaData(),
        *(sa.Column(c.name, c.type, nullable=c.nullable) for c in sa_table.columns),
        prefixes=["TEMPORARY"],
    )
    scratch.create(conn)
    conn.execute(scratch.insert(), records)
    # Equality on the NOT NULL columns lets PostgreSQL hash-join; nullable ones compare NULL-safely.
    matches = [
        sa_table.c[c.name] == c if not c.nullable else sa_table.c[c.name].is_not_distinct_from(c)
        for c in scratch.columns
    ]
    conn.execute(sa.delete(sa_table).where(sa.exists().where(*matches)))
    conn.execute(sa.insert(sa_table).from_select(list(scratch.columns.keys()), sa.select(scratch)))
    scratch.drop(conn)
