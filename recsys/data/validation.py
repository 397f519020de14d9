"""Checking raw RetailRocket files block by block, with errors that name file, line and field.

The fast path parses a block with pyarrow and checks whole columns at once. When pyarrow
itself rejects a block (wrong number of fields, bytes that are not UTF-8) it does not say
where, so the block is walked line by line to name the exact line: that slow walk only
happens on the way to an error.
"""

from __future__ import annotations

import csv
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from recsys.data.errors import RawDataError
from recsys.data.hierarchy import NO_PARENT, Ints, ancestry, conflicting_rows, describe_cycle
from recsys.data.schema import ColumnKind, Hierarchy, RawColumn, RawTable

# Raw times are Unix milliseconds; anything before this (1990-01-01 UTC) or more than a day in
# the future is a mistake. Judging by date, not digits, keeps 12-digit times (before 2001-09-09).
EARLIEST_TIMESTAMP_MS = 631_152_000_000
_FUTURE_SLACK_MS = 24 * 3_600_000
# Other resolutions a re-exported file uses, as multiples of a millisecond: a value that would
# be a plausible time in one of them is named as such.
_OTHER_TIME_UNITS = (("seconds", 1e-3), ("microseconds", 1e3), ("nanoseconds", 1e6))
_DIGITS = r"^[0-9]{1,18}$"  # non-negative and fits int64


def check_header(header: bytes, table: RawTable, path: Path) -> None:
    """Check that the header line names exactly the expected columns, in order."""
    try:
        text = header.decode("utf-8").removeprefix("\ufeff").strip()
    except UnicodeDecodeError as exc:
        raise RawDataError(path, f"header is not valid UTF-8 ({exc.reason})", line=1) from exc
    found = [name.strip() for name in next(csv.reader([text]))]
    expected = table.column_names
    if found == expected:
        return
    duplicated = [name for name, count in Counter(found).items() if count > 1]
    if duplicated:
        problem = f"duplicate column(s) {', '.join(map(repr, duplicated))} in header {found}"
    elif set(found) == set(expected):
        problem = f"columns in the wrong order: expected {expected}, found {found}"
    else:
        missing = [name for name in expected if name not in found]
        extra = [name for name in found if name not in expected]
        parts = []
        if missing:
            parts.append(f"missing column(s) {', '.join(map(repr, missing))}")
        if extra:
            parts.append(f"unexpected column(s) {', '.join(map(repr, extra))}")
        problem = f"{'; '.join(parts)} (expected header {','.join(expected)})"
    raise RawDataError(path, problem, line=1)


def parse_block(block: bytes, table: RawTable, path: Path, first_line: int) -> pa.Table:
    """Parse a block of whole lines into a table of string columns.

    Parameters
    ----------
    block : bytes
        Whole CSV lines without the header.
    table : RawTable
        What the file should hold.
    path : Path
        The file, for error messages.
    first_line : int
        Line number (1-based, header = 1) of the block's first line.
    """
    names = table.column_names
    try:
        return pa_csv.read_csv(
            pa.py_buffer(block),
            read_options=pa_csv.ReadOptions(column_names=names, use_threads=True),
            parse_options=pa_csv.ParseOptions(ignore_empty_lines=False, newlines_in_values=False),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid as exc:
        _raise_first_malformed_line(block, table, path, first_line)
        raise RawDataError(path, f"cannot be parsed as CSV: {exc}") from exc


def _raise_first_malformed_line(block: bytes, table: RawTable, path: Path, first_line: int) -> None:
    expected = len(table.columns)
    for offset, raw_line in enumerate(block.split(b"\n")[:-1]):
        line = first_line + offset
        try:
            text = raw_line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RawDataError(
                path, f"bytes that are not UTF-8 at column {exc.start + 1} ({exc.reason})", line=line
            ) from exc
        fields = next(csv.reader([text.rstrip("\r")]), [])
        if len(fields) != expected:
            problem = (
                "empty line"
                if not text.strip()
                else f"{len(fields)} field(s) instead of {expected} (truncated or shifted line?): "
                f"{text[:120]!r}"
            )
            raise RawDataError(path, problem, line=line)


def validate_block(block: pa.Table, table: RawTable, path: Path, first_line: int) -> None:
    """Check every column of a parsed block; raise for the first bad row (lowest line)."""
    # (row, position of the field, field, problem): the first row wins, then the leftmost field.
    problems: list[tuple[int, int, str | None, str]] = []
    blank = pc.equal(pc.binary_join_element_wise(*block.columns, ""), "")
    row = _first_index(blank)
    if row is not None:
        problems.append((row, -1, None, "empty line"))
    for position, column in enumerate(table.columns):
        bad = _first_bad_row(block.column(column.name), column)
        if bad is not None:
            problems.append((bad[0], position, column.name, bad[1]))
    if "transactionid" in table.column_names:
        bad = _first_bad_transaction(block)
        if bad is not None:
            problems.append((bad[0], table.column_names.index("transactionid"), "transactionid", bad[1]))
    if problems:
        row, _, field, problem = min(problems, key=lambda p: p[:2])
        raise RawDataError(path, problem, line=first_line + row, field=field)


def _first_index(mask: pa.ChunkedArray | pa.Array) -> int | None:
    """Index of the first True in a boolean array, or None."""
    hits = np.flatnonzero(np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool))
    return int(hits[0]) if hits.size else None


def _first_bad_row(values: pa.ChunkedArray, column: RawColumn) -> tuple[int, str] | None:
    if column.kind is ColumnKind.INTEGER:
        return _first_bad_integer(values, column)
    if column.allowed is not None:
        row = _first_index(pc.invert(pc.is_in(values, value_set=pa.array(column.allowed))))
        if row is not None:
            return row, f"unknown value {values[row].as_py()!r} (expected one of {', '.join(column.allowed)})"
    if not (column.nullable or column.free_text):
        row = _first_index(pc.equal(values, ""))
        if row is not None:
            return row, "missing value"
    return None


def _first_bad_integer(values: pa.ChunkedArray, column: RawColumn) -> tuple[int, str] | None:
    """Casting is the fast check; only a failed cast pays for the regex that finds the row."""
    present = (
        pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values) if column.nullable else values
    )
    try:
        numbers = pc.cast(present, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        numbers = None
    if numbers is None:
        invalid = pc.invert(pc.match_substring_regex(values, _DIGITS))
        if column.nullable:
            invalid = pc.and_(invalid, pc.not_equal(values, ""))
        row = _first_index(invalid)
        if row is not None:
            value = values[row].as_py()
            return row, "missing value" if value == "" else f"{value!r} is not a non-negative integer"
        numbers = pc.cast(present, pa.int64())
    row = _first_index(pc.fill_null(pc.less(numbers, 0), False))
    if row is not None:
        return row, f"{values[row].as_py()!r} is not a non-negative integer"
    if column.epoch_ms:
        return _first_implausible_time(values, numbers)
    return None


def latest_plausible_timestamp_ms() -> int:
    """The latest raw time accepted: one day after now, in Unix milliseconds."""
    return int(time.time() * 1000) + _FUTURE_SLACK_MS


def _first_implausible_time(values: pa.ChunkedArray, numbers: pa.ChunkedArray) -> tuple[int, str] | None:
    latest = latest_plausible_timestamp_ms()
    row = _first_index(pc.or_(pc.less(numbers, EARLIEST_TIMESTAMP_MS), pc.greater(numbers, latest)))
    if row is None:
        return None
    value = int(numbers[row].as_py())
    for unit, per_ms in _OTHER_TIME_UNITS:
        if EARLIEST_TIMESTAMP_MS * per_ms <= value <= latest * per_ms:
            moment = datetime.fromtimestamp(value / per_ms / 1000, tz=UTC)
            return row, f"{value} looks like {unit} ({moment:%Y-%m-%d %H:%M} UTC), expected milliseconds"
    earliest, last = (datetime.fromtimestamp(ms / 1000, tz=UTC) for ms in (EARLIEST_TIMESTAMP_MS, latest))
    return row, (
        f"{values[row].as_py()} is not a plausible Unix time in milliseconds "
        f"(expected {earliest:%Y-%m-%d} to {last:%Y-%m-%d %H:%M} UTC, e.g. 1433221332117)"
    )


def _first_bad_transaction(block: pa.Table) -> tuple[int, str] | None:
    is_transaction = pc.equal(block.column("event"), "transaction")
    has_id = pc.greater(pc.utf8_length(block.column("transactionid")), 0)
    row = _first_index(pc.and_(is_transaction, pc.invert(has_id)))
    if row is not None:
        return row, "a transaction without transactionid"
    row = _first_index(pc.and_(pc.invert(is_transaction), has_id))
    if row is not None:
        event = block.column("event")[row].as_py()
        return row, f"transactionid set on a {event!r} event (only transactions have one)"
    return None


def check_hierarchy(
    hierarchy: Hierarchy, ids: Ints, parents: Ints, paths: Sequence[Path], file_index: Ints, lines: Ints
) -> None:
    """Raise for an id listed with different parents or a cycle, naming the lines involved.

    Parameters
    ----------
    hierarchy : Hierarchy
        Which columns hold the id and the parent.
    ids, parents : ndarray of int64
        One entry per row of the table, ``parents`` holds ``NO_PARENT`` for roots.
    paths : sequence of Path
        The table's files.
    file_index, lines : ndarray of int64
        Per row, in file order, which of ``paths`` it is in and its line there.
    """
    id_name, parent_name = hierarchy.id_column, hierarchy.parent_column

    def where(positions: Ints) -> str:
        if len(paths) > 1:
            return ", ".join(f"{paths[file_index[p]].name} line {lines[p]}" for p in positions)
        return f"line{'s' if len(positions) > 1 else ''} {', '.join(str(lines[p]) for p in positions)}"

    conflicts = conflicting_rows(ids, parents)
    if conflicts.size:
        first_id = ids[conflicts[0]]
        rows = conflicts[ids[conflicts] == first_id]
        # One row per distinct parent, in file order: the second is the first contradiction.
        distinct = rows[~pd.Series(parents[rows]).duplicated().to_numpy()]
        listed = ", ".join(
            f"{where(distinct[[i]])} gives {'none' if parent == NO_PARENT else parent}"
            for i, parent in enumerate(parents[distinct])
        )
        others = np.setdiff1d(ids[conflicts], [first_id])
        also = f"; so are {hierarchy.plural} {', '.join(map(str, others[:10]))}" if others.size else ""
        raise RawDataError(
            paths[file_index[distinct[1]]],
            f"{id_name} {first_id} is listed with different parents: {listed} "
            f"(each {id_name} needs exactly one {parent_name}){also}",
            line=int(lines[distinct[1]]),
            field=id_name,
        )

    # Rows left that repeat an id are exact repeats: keep the first, in file order.
    first = np.sort(np.unique(ids, return_index=True)[1])
    cycle = first[ancestry(ids[first], parents[first]).cycle]
    if cycle.size:
        raise RawDataError(
            paths[file_index[cycle[0]]],
            f"{hierarchy.plural} {describe_cycle(ids, cycle)} form a cycle ({where(np.sort(cycle))}): "
            f"following {parent_name} never reaches a root",
            line=int(lines[cycle[0]]),
            field=parent_name,
        )
