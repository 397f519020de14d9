"""The catalogue of published tables: one contract for the pipeline, the service and the k bounds."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from recsys.config import Settings
from recsys.publishing.catalogue import CATALOGUE, SIMILAR_ITEMS
from recsys.publishing.tables import read_published
from recsys.service.service import K_BOUNDING_TABLES
from recsys.storage.database import create_db_engine


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_every_table_is_consistent(name: str) -> None:
    table = CATALOGUE[name]
    columns = [column.name for column in table.columns]
    assert table.name == name
    assert set(table.served_columns) <= set(columns)
    assert set(table.index) <= set(columns)
    if not table.recommends:
        with pytest.raises(ValueError, match="holds no recommendations"):
            table.depth(Settings(_env_file=None))
        return
    assert table.depth_setting in Settings.model_fields
    assert table.depth(Settings(_env_file=None)) == Settings.model_fields[table.depth_setting].default


def test_depth_follows_its_setting() -> None:
    settings = Settings(_env_file=None, n_similar_items=7, n_personalized_recommendations=11)
    depths = {name: table.depth(settings) for name, table in CATALOGUE.items() if table.recommends}
    assert depths["similar_items"] == 7
    assert depths["ranked_recommendations"] == depths["personalized_recommendations"] == 11
    assert {table.name for table in K_BOUNDING_TABLES.values()} <= set(CATALOGUE)


def test_publish_writes_the_catalogue_columns_and_index(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    frame = pd.DataFrame(
        {
            "item_id": [1, 1],
            "similar_item_id": [2, 3],
            "score": [0.9, 0.5],
            "rank": [1, 2],
            "source": ["als"] * 2,
        }
    )
    published = SIMILAR_ITEMS.publish(engine, frame)
    inspector = sa.inspect(engine)
    assert [c["name"] for c in inspector.get_columns(published.physical_name)] == [
        c.name for c in SIMILAR_ITEMS.columns
    ]
    assert [i["column_names"] for i in inspector.get_indexes(published.physical_name)] == [["item_id"]]
    _, read = read_published(engine, SIMILAR_ITEMS.name, SIMILAR_ITEMS.served_columns)
    pd.testing.assert_frame_equal(read, frame[SIMILAR_ITEMS.served_columns], check_dtype=False)
    engine.dispose()
