"""The error raised for raw input that cannot be loaded, naming file, line and field."""

from __future__ import annotations

from pathlib import Path


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
