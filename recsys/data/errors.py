"""Errors for data that cannot be used: raw files (file, line, field) and tables (table, rows)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

# How many offending rows a table error quotes.
_QUOTED_ROWS = 10


class RawDataError(ValueError):
    """Raw input that cannot be loaded.

    The message names the file and, where known, the line (1-based, the header is line 1),
    the field and the offending value, e.g.
    ``events.csv, line 17, field 'event': unknown value 'click' (expected view, addtocart, transaction)``.
    """

    def __init__(
        self,
        path: Path | str,
        problem: str,
        *,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.problem = problem
        self.line = line
        self.field = field
        where = [str(self.path)]
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{', '.join(where)}: {problem}")


class TableDataError(ValueError):
    """A database table whose content breaks a rule a stage relies on.

    Raised instead of whatever a library would throw on such data; the message names the
    table and quotes the offending rows (missing values as NULL), e.g.
    ``table 'category_tree': categoryid 1016 has 2 different parents; rows:
    (categoryid=1016, parentid=NULL), (categoryid=1016, parentid=213)``.
    """

    def __init__(self, table: str, problem: str, rows: Sequence[Mapping[str, object]] = ()) -> None:
        self.table = table
        self.problem = problem
        self.rows = list(rows)
        message = f"table {table!r}: {problem}"
        if self.rows:
            quoted = ", ".join(_quote_row(row) for row in self.rows[:_QUOTED_ROWS])
            more = len(self.rows) - _QUOTED_ROWS
            message += f"; rows: {quoted}" + (f" and {more} more" if more > 0 else "")
        super().__init__(message)


def _quote_row(row: Mapping[str, object]) -> str:
    fields = ", ".join(f"{name}={'NULL' if value is None else value}" for name, value in row.items())
    return f"({fields})"
