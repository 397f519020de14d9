"""Writing the four Kaggle files atomically, item properties in chunks."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from recsys.data.schema import (
    CATEGORY_TREE,
    EVENT_TYPES,
    EVENTS,
    ITEM_PROPERTIES,
)
from recsys.data.synthetic.constants import REAL_PART1_ROWS, REAL_PROPERTY_ROWS, SNAPSHOT_TIMESTAMPS_MS
from recsys.data.synthetic.events import Events
from recsys.data.synthetic.items import Items
from recsys.data.synthetic.properties import PropertyRows
from recsys.data.synthetic.sampling import ProgressFn
from recsys.data.synthetic.tree import Tree

_CSV_OPTIONS = pa_csv.WriteOptions(include_header=False, quoting_style="none")
_CHUNK_ROWS = 1_000_000


@contextmanager
def _atomic_csv(path: Path, columns: Sequence[str]) -> Iterator[Any]:
    """A pyarrow output stream on a temporary file in the target folder, renamed when complete."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        with pa.OSFile(temporary, "wb") as sink:
            sink.write(f"{','.join(columns)}\n".encode())
            yield sink
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_category_tree(path: Path, tree: Tree, rng: np.random.Generator) -> int:
    """Write ``category_tree.csv`` (rows in random order, empty parent for roots)."""
    order = rng.permutation(tree.n_nodes)
    parent = tree.parent[order]
    table = pa.table(
        {
            "categoryid": pa.array(tree.ids[order]),
            "parentid": pa.array(tree.ids[np.maximum(parent, 0)], mask=parent < 0),
        }
    )
    with _atomic_csv(path, CATEGORY_TREE.column_names) as sink:
        pa_csv.write_csv(table, sink, _CSV_OPTIONS)
    return tree.n_nodes


def write_events(path: Path, events: Events, items: Items) -> int:
    """Write ``events.csv``."""
    names = pa.array(list(EVENT_TYPES), pa.string())
    with _atomic_csv(path, EVENTS.column_names) as sink:
        for start in range(0, len(events.time), _CHUNK_ROWS):
            part = slice(start, start + _CHUNK_ROWS)
            table = pa.table(
                {
                    "timestamp": pa.array(events.time[part]),
                    "visitorid": pa.array(events.visitor[part]),
                    "event": names.take(pa.array(events.event[part])),
                    "itemid": pa.array(items.ids[events.item[part]]),
                    "transactionid": pa.array(events.transaction[part], mask=events.transaction[part] < 0),
                }
            )
            pa_csv.write_csv(table, sink, _CSV_OPTIONS)
    return len(events.time)


def write_item_properties(
    out_dir: Path, rows: PropertyRows, items: Items, rng: np.random.Generator, say: ProgressFn
) -> dict[str, int]:
    """Write both item properties files: all rows shuffled, split like the real part1/part2."""
    total = len(rows.item)
    n_first = round(total * REAL_PART1_ROWS / REAL_PROPERTY_ROWS)
    order = rng.permutation(total)
    stamps = np.array(SNAPSHOT_TIMESTAMPS_MS, dtype=np.int64)
    external = items.ids[rows.items]
    written = {}
    for name, (begin, end) in zip(ITEM_PROPERTIES.files, ((0, n_first), (n_first, total)), strict=True):
        with _atomic_csv(out_dir / name, ITEM_PROPERTIES.column_names) as sink:
            for start in range(begin, end, _CHUNK_ROWS):
                index = order[start : min(end, start + _CHUNK_ROWS)]
                table = pa.table(
                    {
                        "timestamp": pa.array(stamps[rows.snapshot[index]]),
                        "itemid": pa.array(external[rows.item[index]]),
                        "property": rows.names.take(pa.array(rows.code[index])),
                        "value": rows.strings.take(pa.array(rows.value[index])),
                    }
                )
                pa_csv.write_csv(table, sink, _CSV_OPTIONS)
                say(f"writing {name}: {start + len(index) - begin:,} of {end - begin:,} rows")
        written[name] = end - begin
    return written
