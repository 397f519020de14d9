"""Versioned, atomic publication of tables (``recsys.publishing.tables``) on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recsys.publishing.tables import (
    NotPublishedError,
    current_version,
    physical_name,
    publish_frame,
    read_published,
)
from tests.pipeline.publishing_child import AS_OF, columns, recommendations

NAME = "recs"


def versions_on_disk(engine: Engine, name: str = NAME) -> list[str]:
    return sorted(t for t in sa.inspect(engine).get_table_names() if t.startswith(f"{name}__v"))


def view(engine: Engine, name: str = NAME) -> pd.DataFrame:
    """What readers of the logical name see."""
    with engine.connect() as conn:
        frame = pd.read_sql(sa.text(f'SELECT * FROM "{name}"'), conn)
    return frame.sort_values(["user_id", "rank"], ignore_index=True)


def same_rows(left: pd.DataFrame, right: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(
        left.sort_values(["user_id", "rank"], ignore_index=True),
        right.sort_values(["user_id", "rank"], ignore_index=True),
        check_dtype=False,
    )


def test_each_publication_is_a_new_version_behind_the_view(db_engine: Engine) -> None:
    frames = [recommendations(10 * n, seed=n) for n in (1, 2, 3)]
    for n, frame in enumerate(frames, start=1):
        published = publish_frame(
            db_engine, NAME, frame, columns(), as_of=AS_OF + timedelta(days=n), keep_versions=5,
            indexes=[["user_id"]],
        )  # fmt: skip
        assert (published.version, published.rows) == (n, len(frame))
        assert published.physical_name == physical_name(NAME, n) == f"{NAME}__v{n}"
    pointer = current_version(db_engine, NAME)
    assert (pointer.version, pointer.rows, pointer.as_of) == (3, 30, AS_OF + timedelta(days=3))
    assert isinstance(pointer.published_at, datetime)
    same_rows(view(db_engine), frames[2])
    version, rows = read_published(db_engine, NAME, ["user_id", "item_id", "score", "rank"])
    assert version == pointer
    same_rows(rows, frames[2])
    assert versions_on_disk(db_engine) == ["recs__v1", "recs__v2", "recs__v3"]
    indexed = [ix["column_names"] for ix in sa.inspect(db_engine).get_indexes("recs__v3")]
    assert ["user_id"] in indexed


def test_retention_keeps_the_newest_complete_versions(db_engine: Engine) -> None:
    for n in range(1, 5):
        publish_frame(db_engine, NAME, recommendations(10, seed=n), columns(), keep_versions=2)
    assert versions_on_disk(db_engine) == ["recs__v3", "recs__v4"]
    assert current_version(db_engine, NAME).version == 4


def test_tables_are_independent(db_engine: Engine) -> None:
    publish_frame(db_engine, "recs", recommendations(10), columns())
    publish_frame(db_engine, "recs_other", recommendations(20), columns())
    publish_frame(db_engine, "recs_other", recommendations(30), columns())
    assert current_version(db_engine, "recs").version == 1
    assert current_version(db_engine, "recs_other").version == 2
    assert len(view(db_engine, "recs")) == 10


def test_orphans_of_dead_writers_are_dropped_by_the_next_publication(db_engine: Engine) -> None:
    first = recommendations(10)
    publish_frame(db_engine, NAME, first, columns())
    # What writers that died after writing their rows, before the switch, leave behind.
    for version in (2, 7):
        orphan = sa.Table(physical_name(NAME, version), sa.MetaData(), *columns())
        with db_engine.begin() as conn:
            orphan.create(conn)
            conn.execute(orphan.insert(), recommendations(5).to_dict("records"))
    assert current_version(db_engine, NAME).version == 1
    same_rows(view(db_engine), first)

    published = publish_frame(db_engine, NAME, recommendations(20, seed=3), columns())
    # Never reuse a number a dead writer had: a slow reader may still hold its name.
    assert published.version == 8
    assert versions_on_disk(db_engine) == ["recs__v1", "recs__v8"]
    assert len(view(db_engine)) == 20


def test_a_table_never_published_says_which_stage_to_run(db_engine: Engine) -> None:
    with pytest.raises(NotPublishedError, match="'recs' has not been published yet: run its pipeline stage"):
        current_version(db_engine, NAME)
    publish_frame(db_engine, "other", recommendations(10), columns())
    with pytest.raises(NotPublishedError):
        read_published(db_engine, NAME)


def test_empty_frame_publishes_an_empty_version(db_engine: Engine) -> None:
    publish_frame(db_engine, NAME, recommendations(0), columns())
    assert current_version(db_engine, NAME).rows == 0
    assert view(db_engine).empty


def test_batches_are_published_as_one_version(db_engine: Engine) -> None:
    batches = [recommendations(rows, seed=rows) for rows in (7, 0, 12)]
    published = publish_frame(db_engine, NAME, iter(batches), columns(), as_of=AS_OF)
    assert (published.version, published.rows, published.served) == (1, 19, True)
    same_rows(view(db_engine), pd.concat(batches, ignore_index=True))


def test_a_producer_failing_mid_way_leaves_the_served_version_and_nothing_else(db_engine: Engine) -> None:
    served = recommendations(5, seed=1)
    publish_frame(db_engine, NAME, served, columns(), as_of=AS_OF)

    def failing() -> Iterator[pd.DataFrame]:
        yield recommendations(10, seed=2)
        raise RuntimeError("ranking failed")

    with pytest.raises(RuntimeError, match="ranking failed"):
        publish_frame(db_engine, NAME, failing(), columns(), as_of=AS_OF + timedelta(days=1))
    assert current_version(db_engine, NAME).version == 1
    same_rows(view(db_engine), served)
    assert versions_on_disk(db_engine) == ["recs__v1"]


@pytest.mark.parametrize("name", ["Recs", "recs;drop", "1recs", "recs-x", ""])
def test_invalid_names_are_refused(sqlite_engine: Engine, name: str) -> None:
    with pytest.raises(ValueError, match="invalid table name"):
        publish_frame(sqlite_engine, name, recommendations(1), columns())


def test_keep_versions_must_be_positive(sqlite_engine: Engine) -> None:
    with pytest.raises(ValueError, match="keep_versions must be at least 1"):
        publish_frame(sqlite_engine, NAME, recommendations(1), columns(), keep_versions=0)
