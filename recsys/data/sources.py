"""Finding the raw files in a folder and reading them as blocks of whole lines.

Each Kaggle file may be stored as it is (``events.csv``), gzipped (``events.csv.gz``) or
zipped (``events.csv.zip`` or ``events.zip`` holding ``events.csv``).
"""

from __future__ import annotations

import gzip
import io
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from recsys.data.errors import RawDataError

# Large enough to amortise per-block work, small enough to keep memory flat (a few blocks in flight).
DEFAULT_BLOCK_SIZE = 16 * 1024 * 1024


@dataclass(frozen=True)
class RawFile:
    """A located raw file: the Kaggle name and where its bytes are."""

    name: str
    path: Path

    @property
    def compressed_size(self) -> int:
        """Size on disk, for progress output."""
        return self.path.stat().st_size


def candidate_paths(folder: Path, name: str) -> list[Path]:
    """The paths under which ``name`` (e.g. ``events.csv``) may be stored in ``folder``."""
    stem = name.removesuffix(".csv")
    return [folder / name, folder / f"{name}.gz", folder / f"{name}.zip", folder / f"{stem}.zip"]


def locate(folder: Path, name: str) -> RawFile:
    """Find ``name`` in ``folder`` as plain, gzipped or zipped CSV.

    Raises
    ------
    RawDataError
        If no variant exists, or several do (it would be unclear which one to load).
    """
    found = [p for p in candidate_paths(folder, name) if p.is_file()]
    if not found:
        tried = ", ".join(p.name for p in candidate_paths(folder, name))
        raise RawDataError(folder / name, f"file not found in {folder} (looked for {tried})")
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise RawDataError(folder / name, f"several copies found ({names}); keep only one")
    return RawFile(name=name, path=found[0])


@contextmanager
def open_binary(raw: RawFile) -> Iterator[IO[bytes]]:
    """Open the decompressed bytes of a raw file."""
    suffix = raw.path.suffix.lower()
    if suffix == ".zip":
        try:
            archive = zipfile.ZipFile(raw.path)
        except zipfile.BadZipFile as exc:
            raise RawDataError(raw.path, f"not a readable zip archive ({exc})") from exc
        with archive:
            members = [m for m in archive.namelist() if not m.endswith("/")]
            wanted = [m for m in members if Path(m).name == raw.name] or members
            if len(wanted) != 1:
                raise RawDataError(raw.path, f"expected one member named {raw.name}, found {members}")
            with archive.open(wanted[0]) as member:
                yield member
        return
    if suffix == ".gz":
        with gzip.open(raw.path, "rb") as unzipped:
            yield unzipped  # type: ignore[misc]  # GzipFile is a binary file object
        return
    with open(raw.path, "rb") as plain:
        yield plain


def read_header(stream: IO[bytes], raw: RawFile) -> bytes:
    """Read the first line (the header) of an opened raw file."""
    try:
        line = stream.readline()
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise RawDataError(raw.path, f"cannot be read: {exc}") from exc
    if not line.strip():
        raise RawDataError(raw.path, "file is empty (no header line)", line=1)
    return bytes(line)


def iter_line_blocks(
    stream: IO[bytes], raw: RawFile, block_size: int = DEFAULT_BLOCK_SIZE
) -> Iterator[bytes]:
    """Yield the rest of the stream in blocks that each end at a line break.

    A file whose last line has no line break gets one, so every block holds whole lines.
    """
    tail = b""
    while True:
        try:
            chunk = stream.read(block_size)
        except (OSError, EOFError, zipfile.BadZipFile) as exc:
            # gzip/zip streams cut short end up here: the file is truncated or corrupt.
            raise RawDataError(raw.path, f"cannot be read to the end (truncated or corrupt?): {exc}") from exc
        if not chunk:
            break
        data = tail + bytes(chunk)
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            tail = data
            continue
        tail = data[cut:]
        yield data[:cut]
    if tail.strip():
        yield tail + b"\n"


def count_lines(block: bytes) -> int:
    """Number of lines in a block produced by :func:`iter_line_blocks`."""
    return block.count(b"\n")


def block_stream(block: bytes) -> io.BytesIO:
    """A file object over a block, for parsers that take files."""
    return io.BytesIO(block)
