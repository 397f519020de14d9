"""A publishing process for the publication tests.

``python -m tests.pipeline.publishing_child URL NAME ROWS [AS_OF] [--pause]`` publishes ``ROWS``
rows as the next version of ``NAME`` (as of ``AS_OF``, ISO format, default :data:`AS_OF`). It
prints ``writing <physical table>`` when it starts writing the rows and ``published <version>
served|not served`` when done, so that the test can SIGKILL it at a chosen point. With
``--pause`` it waits, after printing ``writing``, for a line on its standard input before it
writes: the test can then let another writer go first, or take the switch's lock.
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from recsys.publishing import tables
from recsys.publishing.catalogue import RANKED_RECOMMENDATIONS
from recsys.storage.database import create_db_engine

AS_OF = datetime(2015, 9, 10, 22, 0)


def columns() -> list[sa.Column[Any]]:
    """The layout of the per-user recommendation tables the pipeline publishes (fresh copies:
    a column belongs to one table)."""
    return RANKED_RECOMMENDATIONS.new_columns()


def recommendations(rows: int, seed: int = 0) -> pd.DataFrame:
    """``rows`` rows of recommendations, 10 per user."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "user_id": np.arange(rows, dtype=np.int64) // 10,
            "item_id": rng.integers(0, 250_000, rows, dtype=np.int64),
            "score": rng.random(rows),
            "rank": (np.arange(rows) % 10 + 1).astype(np.int32),
        }
    )


def main(url: str, name: str, rows: int, as_of: datetime = AS_OF, pause: bool = False) -> None:
    """Publish and announce the steps on stdout."""
    original = tables.bulk_insert

    def announced(conn: Any, table: sa.Table, frame: pd.DataFrame, *args: Any, **kwargs: Any) -> None:
        print(f"writing {table.name}", flush=True)
        if pause:
            sys.stdin.readline()
        original(conn, table, frame, *args, **kwargs)

    # The only seam: tell the test when the rows start to go in.
    tables.bulk_insert = announced
    frame = recommendations(rows, seed=1)
    published = tables.publish_frame(create_db_engine(url), name, frame, columns(), as_of=as_of)
    print(f"published {published.version} {'served' if published.served else 'not served'}", flush=True)


if __name__ == "__main__":
    positional = [arg for arg in sys.argv[1:] if arg != "--pause"]
    moment = datetime.fromisoformat(positional[3]) if len(positional) > 3 else AS_OF
    main(positional[0], positional[1], int(positional[2]), moment, pause="--pause" in sys.argv)
