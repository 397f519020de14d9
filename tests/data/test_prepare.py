"""Preparation of ``items`` and ``interactions`` on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recsys.config import EventWeights
from recsys.data.errors import TableDataError
from recsys.data.loader import load_raw_data
from recsys.data.prepare import (
    INTERACTIONS,
    ITEMS,
    PrepareReport,
    PrepareSkipped,
    category_ancestry,
    prepare_datasets,
    to_epoch_ms,
)
from recsys.data.readers import read_interactions, read_items
from recsys.data.schema import EVENTS as RAW_EVENTS
from tests.data.raw_files import write_raw_files

WEEK1 = to_epoch_ms(datetime(2015, 6, 7, 3))
WEEK2 = to_epoch_ms(datetime(2015, 6, 14, 3))
WEEK3 = to_epoch_ms(datetime(2015, 6, 21, 3))
T0 = to_epoch_ms(datetime(2015, 6, 8, 12))  # Monday noon, week 1
MINUTE = 60_000

# Tree: 1 (root) > 2 > 3 ; 10 (root). Category 99 is used by an item but missing from the tree.
TREE = ["1,", "2,1", "3,2", "10,"]
PROPERTIES = [
    # Item 100 moves from category 3 to 10 in week 2; its price changes in week 3.
    f"{WEEK1},100,categoryid,3",
    f"{WEEK2},100,categoryid,10",
    f"{WEEK1},100,790,n1500.000",
    f"{WEEK3},100,790,n999.000",
    f"{WEEK1},100,available,1",
    f"{WEEK2},100,available,0",
    f"{WEEK1},200,categoryid,99",
    f"{WEEK1},200,888,1116713 960601 n277.200",
    f"{WEEK1},300,categoryid,2",
]
EVENTS = [
    f"{T0},7,view,100,",
    f"{T0 + 10 * MINUTE},7,addtocart,100,",  # same session (10 min gap)
    f"{T0 + 50 * MINUTE},7,view,200,",  # new session (40 min gap)
    f"{T0 + 51 * MINUTE},7,transaction,100,55",
    f"{T0 + 5 * MINUTE},8,view,200,",
    f"{WEEK2 + MINUTE},8,view,400,",  # item 400 has no properties
    f"{WEEK3 + MINUTE},9,view,100,",  # after the as_of used below
]


def read_table(engine: Engine, table: sa.Table, key: list[str]) -> pd.DataFrame:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(table)).mappings().all()
    return pd.DataFrame(rows).sort_values(key).reset_index(drop=True)


@pytest.fixture
def loaded(db_engine: Engine, tmp_path: Path) -> Engine:
    load_raw_data(db_engine, write_raw_files(tmp_path, events=EVENTS, part1=PROPERTIES, part2=[], tree=TREE))
    return db_engine


def test_items_use_only_snapshots_before_as_of(loaded: Engine) -> None:
    as_of = datetime(2015, 6, 10)  # after week 1, before week 2
    report = prepare_datasets(loaded, EventWeights(), as_of=as_of)
    items = read_table(loaded, ITEMS, ["item_id"]).set_index("item_id")

    assert report.as_of == as_of
    assert list(items.index) == [100, 200, 300]  # 400's first event is after as_of
    assert items.loc[100, "category_id"] == 3
    assert items.loc[100, "price"] == 1500.0
    assert items.loc[100, "available"] is True or items.loc[100, "available"] == 1
    assert (items.loc[100, "parent_category_id"], items.loc[100, "root_category_id"]) == (2, 1)
    assert items.loc[100, "category_depth"] == 3
    assert items.loc[100, ["n_views", "n_addtocart", "n_transactions"]].tolist() == [1, 1, 1]
    assert pd.Timestamp(items.loc[100, "first_seen"]) == pd.Timestamp("2015-06-08 12:00:00")
    assert pd.Timestamp(items.loc[100, "last_seen"]) == pd.Timestamp("2015-06-08 12:51:00")


def test_later_as_of_sees_later_snapshots(loaded: Engine) -> None:
    prepare_datasets(loaded, EventWeights(), as_of=datetime(2015, 6, 30))
    items = read_table(loaded, ITEMS, ["item_id"]).set_index("item_id")

    assert items.loc[100, "category_id"] == 10
    assert items.loc[100, "price"] == 999.0
    assert not items.loc[100, "available"]
    assert (items.loc[100, "root_category_id"], items.loc[100, "category_depth"]) == (10, 1)
    assert pd.isna(items.loc[100, "parent_category_id"])
    # A category the tree does not know is its own root.
    assert items.loc[200, "category_id"] == 99
    assert not items.loc[200, "category_in_tree"]
    assert items.loc[200, "root_category_id"] == 99
    # An item with events but no properties is kept, without category.
    assert pd.isna(items.loc[400, "category_id"])
    assert items.loc[400, "n_views"] == 1
    assert (items.loc[300, "parent_category_id"], items.loc[300, "category_depth"]) == (1, 2)


def test_interactions_are_weighted_sessionised_and_cut_at_as_of(loaded: Engine) -> None:
    weights = EventWeights(view=1, addtocart=3, transaction=7)
    report = prepare_datasets(loaded, weights, session_gap_minutes=30, as_of=datetime(2015, 6, 21))
    frame = read_table(loaded, INTERACTIONS, ["user_id", "datetime"])

    assert report.n_interactions == 6 == len(frame)
    assert report.n_users == 2
    user7 = frame[frame["user_id"] == 7]
    assert user7["event"].tolist() == ["view", "addtocart", "view", "transaction"]
    assert user7["weight"].tolist() == [1.0, 3.0, 1.0, 7.0]
    assert user7["session_index"].tolist() == [0, 0, 1, 1]
    assert pd.Timestamp(user7["datetime"].iloc[0]) == pd.Timestamp("2015-06-08 12:00:00")
    assert frame[frame["user_id"] == 8]["session_index"].tolist() == [0, 1]
    assert 9 not in set(frame["user_id"])


def test_datetime_keeps_milliseconds(db_engine: Engine, tmp_path: Path) -> None:
    load_raw_data(db_engine, write_raw_files(tmp_path, events=["1433221332117,1,view,5,"]))
    prepare_datasets(db_engine, EventWeights())
    frame = read_table(db_engine, INTERACTIONS, ["user_id"])
    assert pd.Timestamp(frame.loc[0, "datetime"]) == pd.Timestamp("2015-06-02 05:02:12.117")


def test_empty_window_fails_and_keeps_previous_tables(loaded: Engine) -> None:
    prepare_datasets(loaded, EventWeights(), as_of=datetime(2015, 6, 30))
    before = read_table(loaded, INTERACTIONS, ["user_id", "datetime"])
    with pytest.raises(ValueError, match="before 2015-06-01 00:00 UTC: nothing to prepare"):
        prepare_datasets(loaded, EventWeights(), as_of=datetime(2015, 6, 1), allow_older=True)
    pd.testing.assert_frame_equal(read_table(loaded, INTERACTIONS, ["user_id", "datetime"]), before)


def test_an_older_moment_keeps_the_newer_tables_unless_asked(loaded: Engine) -> None:
    """A backfill (or a zombie task finishing late) does not roll the prepared tables back."""
    newer = prepare_datasets(loaded, EventWeights(), as_of=datetime(2015, 6, 30))
    assert isinstance(newer, PrepareReport)
    before = read_table(loaded, INTERACTIONS, ["user_id", "datetime"])

    skipped = prepare_datasets(loaded, EventWeights(), as_of=datetime(2015, 6, 10))
    assert skipped == PrepareSkipped(as_of=datetime(2015, 6, 10), prepared_as_of=datetime(2015, 6, 30))
    assert "as of 2015-06-30 00:00 UTC, later than 2015-06-10 00:00 UTC: kept" in str(skipped)
    pd.testing.assert_frame_equal(read_table(loaded, INTERACTIONS, ["user_id", "datetime"]), before)

    # The same moment again is a re-run: it rebuilds.
    assert isinstance(prepare_datasets(loaded, EventWeights(), as_of=datetime(2015, 6, 30)), PrepareReport)
    # Asked explicitly, an older moment rebuilds, and then a newer one moves forward again.
    older = prepare_datasets(loaded, EventWeights(), as_of=datetime(2015, 6, 10), allow_older=True)
    assert older.n_interactions < newer.n_interactions
    assert len(read_table(loaded, INTERACTIONS, ["user_id", "datetime"])) == older.n_interactions
    aware = datetime(2015, 6, 30, 2, tzinfo=timezone(timedelta(hours=2)))  # 2015-06-30 00:00 UTC
    assert isinstance(prepare_datasets(loaded, EventWeights(), as_of=aware), PrepareReport)
    assert len(read_table(loaded, INTERACTIONS, ["user_id", "datetime"])) == newer.n_interactions


def test_prepare_without_raw_events_says_what_to_do(db_engine: Engine) -> None:
    with pytest.raises(ValueError, match=r"'events' does not exist: load the raw data first"):
        prepare_datasets(db_engine, EventWeights())
    RAW_EVENTS.sa_table().create(db_engine)
    with pytest.raises(ValueError, match="'events' is empty: load the raw data first"):
        prepare_datasets(db_engine, EventWeights())


def test_category_ancestry_handles_unknown_parents_and_cycles() -> None:
    tree = pd.DataFrame({"categoryid": [1, 2, 3, 4], "parentid": [None, 1, 2, 77]})
    ancestry = category_ancestry(tree)
    assert ancestry.loc[3, "root_category_id"] == 1
    assert ancestry.loc[3, "depth"] == 3
    assert ancestry.loc[4, "root_category_id"] == 4  # parent 77 is not in the tree
    cyclic = pd.DataFrame({"categoryid": [1, 2, 3], "parentid": [None, 3, 2]})
    with pytest.raises(TableDataError, match=r"categories 2 → 3 → 2 form a cycle"):
        category_ancestry(cyclic)


def test_category_ancestry_follows_any_depth() -> None:
    n = 500
    chain = pd.DataFrame({"categoryid": range(n), "parentid": [None, *range(n - 1)]})
    ancestry = category_ancestry(chain.sample(frac=1.0, random_state=0))
    assert ancestry.loc[n - 1, "depth"] == n
    assert ancestry.loc[n - 1, "root_category_id"] == 0
    assert ancestry["depth"].sort_index().tolist() == list(range(1, n + 1))


def _write_tree(engine: Engine, rows: list[tuple[int, int | None]]) -> None:
    """Replace the raw tree the way another tool would, without the loader's checks."""
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM category_tree"))
        conn.execute(
            sa.text("INSERT INTO category_tree (categoryid, parentid) VALUES (:c, :p)"),
            [{"c": c, "p": p} for c, p in rows],
        )


def test_tree_in_the_database_with_a_repeated_category_is_a_clear_data_error(loaded: Engine) -> None:
    # The case: 1 listed as a root and with parent 2, which closes a cycle 1 → 2 → 1.
    _write_tree(loaded, [(1, None), (2, 1), (3, 2), (10, None), (1, 2)])
    before = read_table(loaded, sa.table("category_tree", sa.column("categoryid")), ["categoryid"])
    with pytest.raises(TableDataError) as caught:
        prepare_datasets(loaded, EventWeights(), as_of=datetime(2015, 6, 30))
    error = caught.value
    assert error.table == "category_tree"
    assert "table 'category_tree': categoryid 1 has 2 different parents" in str(error)
    assert "(categoryid=1, parentid=NULL), (categoryid=1, parentid=2)" in str(error)
    assert not sa.inspect(loaded).has_table("items")
    after = read_table(loaded, sa.table("category_tree", sa.column("categoryid")), ["categoryid"])
    pd.testing.assert_frame_equal(after, before)


def test_tree_in_the_database_with_a_cycle_is_a_clear_data_error(loaded: Engine) -> None:
    _write_tree(loaded, [(1, None), (2, 3), (3, 2), (10, None)])
    with pytest.raises(TableDataError, match=r"table 'category_tree': categories 2 → 3 → 2 form a cycle"):
        prepare_datasets(loaded, EventWeights(), as_of=datetime(2015, 6, 30))


def test_exact_duplicate_rows_in_the_database_tree_are_harmless(loaded: Engine) -> None:
    _write_tree(loaded, [(1, None), (2, 1), (3, 2), (10, None), (3, 2), (1, None)])
    prepare_datasets(loaded, EventWeights(), as_of=datetime(2015, 6, 10))
    items = read_table(loaded, ITEMS, ["item_id"]).set_index("item_id")
    assert (items.loc[100, "root_category_id"], items.loc[100, "category_depth"]) == (1, 3)


def test_readers_return_typed_frames(loaded: Engine) -> None:
    prepare_datasets(loaded, EventWeights(), as_of=datetime(2015, 6, 30))
    interactions = read_interactions(loaded, since=datetime(2015, 6, 8, 12, 30))
    assert interactions["datetime"].is_monotonic_increasing
    assert str(interactions["datetime"].dtype).startswith("datetime64")
    assert interactions["item_id"].tolist() == [200, 100, 400, 100]
    assert read_interactions(loaded, before=datetime(2015, 6, 8, 12, 1))["user_id"].tolist() == [7]
    items = read_items(loaded)
    assert items["item_id"].tolist() == [100, 200, 300, 400]
    assert str(items["category_id"].dtype) == "Int64"
    assert str(items["available"].dtype) == "boolean"


def test_readers_explain_a_missing_table(db_engine: Engine) -> None:
    with pytest.raises(ValueError, match="run `recsys data prepare`"):
        read_interactions(db_engine)


def test_online_events_recorded_by_the_service_are_prepared_too(loaded: Engine) -> None:
    from recsys.data.prepare import ONLINE_EVENTS_TABLE
    from recsys.service.events import ONLINE_EVENTS

    assert ONLINE_EVENTS.name == ONLINE_EVENTS_TABLE
    with loaded.begin() as conn:
        ONLINE_EVENTS.create(conn)
        conn.execute(
            ONLINE_EVENTS.insert(),
            [
                {
                    "user_id": 7,
                    "item_id": 300,
                    "event": "addtocart",
                    "timestamp": WEEK3 + 2 * MINUTE,
                    "recorded_at": datetime(2015, 6, 21, 3, 2),
                }
            ],
        )
    report = prepare_datasets(loaded, EventWeights())
    frame = read_table(loaded, INTERACTIONS, ["user_id", "datetime"])
    assert report.n_interactions == 8
    last = frame[frame["user_id"] == 7].iloc[-1]
    assert (last["item_id"], last["event"], last["weight"]) == (300, "addtocart", 4.0)
    items = read_table(loaded, ITEMS, ["item_id"]).set_index("item_id")
    assert items.loc[300, "n_addtocart"] == 1


def test_tree_in_the_database_with_a_missing_category_is_a_clear_data_error(loaded: Engine) -> None:
    with loaded.begin() as conn:  # the loader refuses this; another writer need not
        conn.execute(sa.text("DROP TABLE category_tree"))
        conn.execute(sa.text("CREATE TABLE category_tree (categoryid BIGINT, parentid BIGINT)"))
        conn.execute(sa.text("INSERT INTO category_tree VALUES (1, NULL), (2, 1), (NULL, 1)"))
    with pytest.raises(TableDataError, match=r"without a categoryid; rows: \(categoryid=NULL, parentid=1\)"):
        prepare_datasets(loaded, EventWeights(), as_of=datetime(2015, 6, 30))
