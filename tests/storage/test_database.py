"""SQL helpers on both backends: bulk insert and the frame read used for published tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recsys.storage.database import bulk_insert, read_frame

TABLE = sa.Table(
    "frame_roundtrip",
    sa.MetaData(),
    sa.Column("user_id", sa.BigInteger, nullable=False),
    sa.Column("score", sa.Float),
    sa.Column("ratio", sa.REAL),
    sa.Column("label", sa.String(20)),
)


@pytest.mark.parametrize("chunk_rows", [100_000, 999])
def test_read_frame_returns_the_rows_exactly(db_engine: Engine, chunk_rows: int) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "user_id": np.array([2**40, 1, 7, 3], dtype=np.int64),
            "score": [1 / 3, np.nan, 1e-300, -2.5],
            "ratio": np.array([0.1, 2.0, 3.5, 1e-7], dtype=np.float32),
            "label": ["covisitation", None, "", 'a "quoted", text'],
        }
    )
    many = pd.DataFrame(
        {
            "user_id": rng.integers(0, 2**62, 5_000),
            "score": rng.random(5_000),
            "ratio": rng.random(5_000).astype(np.float32),
            "label": "als",
        }
    )
    with db_engine.begin() as conn:
        TABLE.create(conn)
        bulk_insert(conn, TABLE, pd.concat([frame, many], ignore_index=True), chunk_rows=chunk_rows)
    with db_engine.connect() as conn:
        read = read_frame(conn, 'SELECT user_id, score, ratio, label FROM "frame_roundtrip"')
    read = read.sort_values("user_id", kind="stable").reset_index(drop=True)
    expected = pd.concat([frame, many], ignore_index=True).sort_values("user_id", kind="stable")
    expected = expected.reset_index(drop=True)
    assert read["user_id"].tolist() == expected["user_id"].tolist()
    # Doubles come back bit for bit; REAL (float4) values as the float32 that was stored.
    np.testing.assert_array_equal(read["score"].to_numpy(), expected["score"].to_numpy())
    np.testing.assert_array_equal(read["ratio"].to_numpy(np.float32), expected["ratio"].to_numpy())

    # NULL stays missing and an empty text stays empty.
    def labels(column: pd.Series) -> list[str | None]:
        return [None if pd.isna(value) else value for value in column]

    assert labels(read["label"]) == labels(expected["label"])
    assert read["label"].isna().sum() == 1 and (read["label"] == "").sum() == 1


def test_read_frame_of_an_empty_table_has_its_columns(db_engine: Engine) -> None:
    with db_engine.begin() as conn:
        TABLE.create(conn)
    with db_engine.connect() as conn:
        read = read_frame(conn, 'SELECT user_id, label FROM "frame_roundtrip"')
    assert list(read.columns) == ["user_id", "label"]
    assert len(read) == 0
