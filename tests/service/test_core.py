"""The service's core logic without HTTP: store, blending, online i2i, fallbacks, events export."""

from __future__ import annotations

import os
import shutil
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from prometheus_client import generate_latest
from sqlalchemy.engine import Engine

from recsys.config import EventWeights
from recsys.data.loader import load_raw_data
from recsys.data.prepare import ITEMS, prepare_datasets
from recsys.data.readers import read_interactions
from recsys.models.i2i import ItemToItemConfig, recent_items, score_from_recent_items, top_k
from recsys.publishing.catalogue import CATALOGUE, RANKED_RECOMMENDATIONS, SIMILAR_ITEMS
from recsys.publishing.tables import current_version
from recsys.service.blending import Recommendation, blend, online_i2i
from recsys.service.events import UserActivity, export_raw_events
from recsys.service.fallbacks import FallbackReason
from recsys.service.loader import CHILD_NICENESS, _read_result_file, _write_result_file, read_parts_in_child
from recsys.service.metrics import ServiceMetrics, memory_limit_bytes
from recsys.service.service import (
    K_BOUNDING_TABLES,
    DatabaseRetryTracker,
    DatabaseUnavailableError,
    RecommendationService,
    TooManyItemsError,
    k_bound,
)
from recsys.service.settings import ServiceSettings, load_service_settings
from recsys.service.store import Candidates, GroupedLists, in_sorted, read_parts
from recsys.storage.database import bulk_insert, create_db_engine
from tests.service.conftest import PublishedData


def candidates(source: str, items: list[int]) -> Candidates:
    return Candidates(
        source, np.array(items, dtype=np.int64), np.linspace(1, 0.1, len(items)).astype(np.float32)
    )


def ids(recommendations: list[Recommendation]) -> list[int]:
    return [r["item_id"] for r in recommendations]


# -- the in-memory store ----------------------------------------------------------------------
def test_grouped_lists_are_csr_like_and_in_rank_order() -> None:
    frame = pd.DataFrame(
        {
            "user_id": [7, 3, 7, 3, 7],
            "item_id": [70, 31, 71, 30, 72],
            "score": [0.5, 0.8, 0.9, 0.9, 0.1],
            "rank": [2, 2, 1, 1, 3],
        }
    )
    lists = GroupedLists.from_frame(frame, "user_id")
    assert lists.keys.tolist() == [3, 7]
    assert lists.offsets.tolist() == [0, 2, 5]
    assert lists.keys.dtype == np.int32 and lists.items.dtype == np.int32
    found = lists.get(7, "ranked")
    assert found is not None
    assert found.items.tolist() == [71, 70, 72]
    assert found.scores.tolist() == pytest.approx([0.9, 0.5, 0.1])
    assert lists.get(5, "ranked") is None
    assert lists.get(2**40, "ranked") is None
    assert 3 in lists and 4 not in lists
    assert lists.nbytes == 2 * 4 + 3 * 8 + 5 * 4 + 5 * 4


def test_large_ids_stay_64_bit() -> None:
    frame = pd.DataFrame({"user_id": [2**40], "item_id": [2**35], "score": [1.0], "rank": [1]})
    lists = GroupedLists.from_frame(frame, "user_id")
    assert lists.keys.dtype == np.int64
    found = lists.get(2**40, "x")
    assert found is not None and found.items.tolist() == [2**35]


def test_labels_and_neighbours() -> None:
    frame = pd.DataFrame(
        {
            "item_id": [1, 1, 2],
            "similar_item_id": [5, 6, 1],
            "score": [0.5, 0.4, 0.9],
            "rank": [1, 2, 1],
            "source": ["covisitation", "als", "covisitation"],
        }
    )
    lists = GroupedLists.from_frame(frame, "item_id", item="similar_item_id", label="source")
    found = lists.get(1, "similar")
    assert found is not None and found.labels == ("covisitation", "als")
    neighbours = lists.neighbours(np.array([2, 1, 9]))
    assert neighbours.to_dict("list") == {
        "item_id": [2, 1, 1],
        "similar_item_id": [1, 5, 6],
        "score": pytest.approx([0.9, 0.5, 0.4]),
    }
    assert found.without(np.array([5])).labels == ("als",)


def test_row_order_of_the_frame_does_not_matter() -> None:
    # Published tables read back in (key, rank) order take the path without a sort; any other
    # order is sorted, labels included.
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "item_id": np.repeat([4, 9, 12], 4),
            "similar_item_id": rng.permutation(12),
            "score": rng.random(12),
            "rank": np.tile([1, 2, 2, 3], 3),
            "source": rng.choice(["als", "covisitation"], 12),
        }
    )
    in_order = GroupedLists.from_frame(frame, "item_id", item="similar_item_id", label="source")
    shuffled = GroupedLists.from_frame(
        frame.sample(frac=1, random_state=0), "item_id", item="similar_item_id", label="source"
    )
    assert in_order.offsets.tolist() == shuffled.offsets.tolist() == [0, 4, 8, 12]
    for key in (4, 9, 12):
        rows = frame[frame["item_id"] == key]
        by_item = dict(
            zip(rows["similar_item_id"], zip(rows["rank"], rows["source"], strict=True), strict=True)
        )
        for lists in (in_order, shuffled):
            found = lists.get(key, "similar")
            assert found is not None and found.labels is not None
            ranks = [by_item[item][0] for item in found.items.tolist()]
            assert ranks == sorted(ranks) and len(ranks) == len(rows)
            assert list(found.labels) == [by_item[item][1] for item in found.items.tolist()]


def test_in_sorted_agrees_with_isin() -> None:
    rng = np.random.default_rng(1)
    for _ in range(50):
        haystack = np.unique(rng.integers(0, 100, rng.integers(0, 30))).astype(np.int32)
        needles = rng.integers(-5, 110, 40)
        assert in_sorted(needles, haystack).tolist() == np.isin(needles, haystack).tolist()


# -- blending and online i2i ------------------------------------------------------------------
def test_blend_alternates_online_first_and_fills_with_default() -> None:
    online, offline = candidates("online_i2i", [1, 2, 3]), candidates("ranked", [10, 11])
    default = candidates("default", [1, 10, 20, 21])
    result = blend(online, offline, [default], k=7)
    assert ids(result) == [1, 10, 2, 11, 3, 20, 21]
    assert [r["source"] for r in result] == [
        "online_i2i",
        "ranked",
        "online_i2i",
        "ranked",
        "online_i2i",
        "default",
        "default",
    ]


def test_blend_drops_duplicates_first_occurrence_wins() -> None:
    result = blend(candidates("online_i2i", [1, 2]), candidates("ranked", [1, 3, 2, 4]), [], k=10)
    assert ids(result) == [1, 3, 2, 4]
    assert result[0]["source"] == "online_i2i"


@pytest.mark.parametrize(
    ("share", "expected"),
    [(0.0, [10, 11, 12, 1, 2]), (1.0, [1, 2, 3, 10, 11]), (1 / 3, [1, 10, 11, 2, 12])],
)
def test_blend_online_share(share: float, expected: list[int]) -> None:
    result = blend(
        candidates("online_i2i", [1, 2, 3]), candidates("ranked", [10, 11, 12]), [], k=5, online_share=share
    )
    assert ids(result) == expected


def test_online_i2i_votes_with_recency_and_skips_recent_items() -> None:
    similar = GroupedLists.from_frame(
        pd.DataFrame(
            {
                "item_id": [1, 1, 2, 2],
                "similar_item_id": [5, 6, 6, 1],
                "score": [0.5, 0.4, 0.3, 0.9],
                "rank": [1, 2, 1, 2],
            }
        ),
        "item_id",
        item="similar_item_id",
    )
    # Newest first: item 2, then item 1, then item 2 again (only its latest position counts).
    activity = UserActivity(np.array([2, 1, 2], dtype=np.int64), np.empty(0, dtype=np.int64))
    result = online_i2i(activity, similar, ItemToItemConfig(recency_half_life=3.0))
    decay = 2 ** (-1 / 3)
    assert result.items.tolist() == [6, 5]
    assert result.scores.tolist() == pytest.approx([0.3 + 0.4 * decay, 0.5 * decay])
    assert online_i2i(UserActivity.none(), similar, ItemToItemConfig()).items.size == 0


def test_single_user_i2i_matches_the_frame_version() -> None:
    rng = np.random.default_rng(7)
    for _ in range(30):
        similar = pd.DataFrame(
            {
                "item_id": np.repeat(np.arange(20), 5),
                "similar_item_id": rng.integers(0, 40, 100),
                "score": rng.random(100).astype(np.float32),
            }
        ).drop_duplicates(["item_id", "similar_item_id"])
        similar["rank"] = similar.groupby("item_id").cumcount() + 1
        history = rng.integers(0, 25, rng.integers(1, 30)).astype(np.int64)
        frame = pd.DataFrame({"user_id": 0, "item_id": history, "datetime": -np.arange(history.size)})
        expected = top_k(score_from_recent_items(recent_items(frame, 10), similar, 3.0), 1000)
        lists = GroupedLists.from_frame(similar, "item_id", item="similar_item_id")
        result = online_i2i(UserActivity(history, np.empty(0, np.int64)), lists, ItemToItemConfig())
        assert result.items.tolist() == expected["item_id"].tolist()
        assert result.scores.tolist() == pytest.approx(expected["score"].tolist(), rel=1e-6)


# -- the service over a small hand-made database ----------------------------------------------
def publish(engine: Engine, name: str, frame: pd.DataFrame) -> None:
    """Publish a new version of one of the service's tables."""
    CATALOGUE[name].publish(engine, frame)


@pytest.fixture
def small_db(sqlite_engine: Engine) -> Engine:
    """:func:`fill_small_db` on SQLite."""
    return fill_small_db(sqlite_engine)


def fill_small_db(engine: Engine) -> Engine:
    """Users 1 (ranked), 2 (ALS only), 3 (offline i2i only), 5 (a history only: saw 10 and the
    unavailable 99 lately, bought 50 before); item 99 unavailable."""
    frames = {
        "default_recommendations": pd.DataFrame(
            {"item_id": [50, 51, 52, 99], "score": [4.0, 3, 2, 1], "rank": [1, 2, 3, 4]}
        ),
        "ranked_recommendations": pd.DataFrame(
            {"user_id": [1, 1, 1], "item_id": [10, 99, 11], "score": [3.0, 2, 1], "rank": [1, 2, 3]}
        ),
        "personalized_recommendations": pd.DataFrame(
            {"user_id": [1, 2], "item_id": [12, 20], "score": [1.0, 1], "rank": [1, 1]}
        ),
        "i2i_recommendations": pd.DataFrame({"user_id": [3], "item_id": [30], "score": [1.0], "rank": [1]}),
        "similar_items": pd.DataFrame(
            {
                "item_id": [10, 10],
                "similar_item_id": [40, 41],
                "score": [0.5, 0.4],
                "rank": [1, 2],
                "source": ["covisitation"] * 2,
            }
        ),
        "user_histories": pd.DataFrame(
            {
                "user_id": [5, 5, 5],
                "item_id": [10, 99, 50],
                "score": [1.0, 1, 8],
                "rank": [1, 2, 3],
                "relation": ["seen", "seen", "bought"],
            }
        ),
    }
    for name, frame in frames.items():
        publish(engine, name, frame)
    items = pd.DataFrame(
        {
            "item_id": [10, 11, 12, 20, 30, 40, 41, 50, 51, 52, 77, 99],
            "n_views": 1,
            "n_addtocart": 0,
            "n_transactions": 0,
        }
    )
    items["available"] = items["item_id"] != 99
    with engine.begin() as conn:
        ITEMS.create(conn)
        bulk_insert(conn, ITEMS, items)
    return engine


@pytest.fixture
def core(small_db: Engine) -> RecommendationService:
    """The service logic on ``small_db``, without HTTP."""
    settings = ServiceSettings(_env_file=None, database_url=str(small_db.url), database_retry_seconds=60)
    started = RecommendationService(settings, engine=small_db)
    started.start()
    return started


FILLED = FallbackReason.FILLED_WITH_DEFAULT


@pytest.mark.parametrize(
    ("user", "expected", "sources", "fallbacks"),
    [
        (1, [10, 11, 50, 51, 52], ["ranked", "default"], [FILLED]),
        (2, [20, 50, 51], ["als", "default"], [FallbackReason.NO_RANKED_RECOMMENDATIONS, FILLED]),
        (3, [30, 50, 51], ["i2i", "default"], [FallbackReason.NO_RANKED_RECOMMENDATIONS, FILLED]),
        (4, [50, 51, 52], ["default"], [FallbackReason.COLD_USER]),
        # Neighbours of the history, then popular items but the one bought before.
        (
            5,
            [40, 41, 51, 52],
            ["history_i2i", "default"],
            [FallbackReason.NO_RANKED_RECOMMENDATIONS, FILLED],
        ),
    ],
)
def test_offline_chain_and_fallbacks(
    core: RecommendationService,
    user: int,
    expected: list[int],
    sources: list[str],
    fallbacks: list[FallbackReason],
) -> None:
    result = core.personalized(user, len(expected))
    # Unavailable item 99 never shows, not even from the default list.
    assert ids(result.items) == expected
    assert result.sources == sources
    assert result.fallbacks == fallbacks


def test_grouped_lists_without_items_keep_keys_and_order() -> None:
    frame = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 3, 3],
            "item_id": [10, 99, 11, 99, 12, 13],
            "score": [3.0, 2, 1, 5, 2, 1],
            "rank": [1, 2, 3, 1, 1, 2],
        }
    )
    lists = GroupedLists.from_frame(frame, "user_id")
    filtered = lists.without_items(np.array([99, 100], dtype=np.int32))
    assert filtered.keys.tolist() == [1, 2, 3]
    assert filtered.offsets.tolist() == [0, 2, 2, 4]
    found = filtered.get(1, "x")
    assert found is not None and found.items.tolist() == [10, 11]
    assert found.scores.tolist() == [3.0, 1.0]
    # A key left without rows is absent for lookups (the next table in the chain answers).
    assert filtered.get(2, "x") is None
    assert filtered.row(2)[0].size == 0
    # Nothing to remove: the very same object, no copy.
    assert lists.without_items(np.array([7], dtype=np.int32)) is lists


def test_an_item_available_again_comes_back_without_reloading_its_table(
    core: RecommendationService, small_db: Engine
) -> None:
    assert 99 not in ids(core.personalized(1, 3).items)
    with small_db.begin() as conn:
        conn.execute(sa.update(ITEMS).where(ITEMS.c.item_id == 99).values(available=True))
    ranked = core.store.tables["ranked_recommendations"]
    # A new default list makes the service re-read the catalogue; the ranked table is reused.
    publish(small_db, "default_recommendations", pd.DataFrame({"item_id": [50], "score": [1.0], "rank": [1]}))
    assert core.reload().changed
    assert core.store.tables["ranked_recommendations"] is ranked
    assert ids(core.personalized(1, 3).items) == [10, 99, 11]


def test_online_list_follows_new_events_and_new_similar_items(
    core: RecommendationService, small_db: Engine
) -> None:
    core.record_event(1, 10, "view", datetime(2026, 1, 1, tzinfo=UTC))
    # Neighbours of the session, then the session's item shown back (the strip, after them).
    assert ids(core.online(1, 5).items) == [40, 41, 10]
    assert ids(core.online(1, 5).items) == [40, 41, 10]
    core.record_event(1, 41, "transaction", datetime(2026, 1, 1, 0, 1, tzinfo=UTC))
    assert ids(core.online(1, 5).items) == [40, 10]
    frame = pd.DataFrame(
        {"item_id": [10], "similar_item_id": [77], "score": [0.9], "rank": [1], "source": ["covisitation"]}
    )
    publish(small_db, "similar_items", frame)
    core.reload()
    assert ids(core.online(1, 5).items) == [77, 10]


def test_k_is_bounded_by_what_each_answer_s_table_publishes(small_db: Engine) -> None:
    settings = ServiceSettings(
        _env_file=None,
        database_url=str(small_db.url),
        n_default_recommendations=7,
        n_personalized_recommendations=5,
        n_similar_items=3,
    )
    core = RecommendationService(settings, engine=small_db)
    core.start()
    asks: dict[str, tuple[int, Callable[[int], object]]] = {
        "default": (7, core.default),
        "personalized": (5, lambda k: core.personalized(1, k)),
        "online": (5, lambda k: core.online(1, k)),
        "similar": (3, lambda k: core.similar(10, k)),
    }
    assert set(asks) == set(K_BOUNDING_TABLES)
    for kind, (largest, ask) in asks.items():
        assert k_bound(settings, kind) == largest
        ask(largest)
        with pytest.raises(TooManyItemsError, match=f"less than or equal to {largest}"):
            ask(largest + 1)


def test_online_purchase_is_filtered_and_online_items_blended(core: RecommendationService) -> None:
    core.record_event(1, 10, "view", datetime(2026, 1, 1, tzinfo=UTC))
    core.record_event(1, 11, "transaction", datetime(2026, 1, 1, 0, 1, tzinfo=UTC))
    result = core.personalized(1, 4)
    # 10 is the session's item: shown back once, in the strip, not again from the ranked list.
    assert ids(result.items) == [40, 41, 10, 50]
    assert result.sources == ["online_i2i", "recently_viewed", "default"]
    assert ids(core.online(1, 5).items) == [40, 41, 10]
    text = generate_latest(core.metrics.registry).decode()
    assert 'recsys_online_events_recorded_total{event="transaction"} 1.0' in text
    assert 'recsys_recommendation_requests_total{kind="personalized"} 1.0' in text


def test_reload_swaps_only_changed_tables(core: RecommendationService, small_db: Engine) -> None:
    before = core.store
    assert core.reload().changed is False
    assert core.store is before
    publish(small_db, "default_recommendations", pd.DataFrame({"item_id": [52], "score": [1.0], "rank": [1]}))
    result = core.reload()
    assert result.changed is True
    assert result.versions["default_recommendations"] == 2
    assert core.store.tables["ranked_recommendations"] is before.tables["ranked_recommendations"]
    # The same catalogue: the kept table's filtered lists are kept too, not filtered again.
    assert core.store.lists(RANKED_RECOMMENDATIONS) is before.lists(RANKED_RECOMMENDATIONS)
    assert ids(core.default(3).items) == [52]


def test_a_reload_frees_the_tables_it_replaced(core: RecommendationService, small_db: Engine) -> None:
    # An online visitor's request memoises its candidates with the tables they came from.
    core.record_event(1, 10, "view", datetime(2015, 9, 1, tzinfo=UTC))
    assert ids(core.online(1, 2).items) == [40, 41]
    replaced = weakref.ref(core.store.lists(SIMILAR_ITEMS))
    replaced_store = weakref.ref(core.store)
    similar = pd.DataFrame(
        {"item_id": [10], "similar_item_id": [51], "score": [1.0], "rank": [1], "source": ["covisitation"]}
    )
    publish(small_db, SIMILAR_ITEMS.name, similar)
    assert core.reload().changed is True
    # Neither the memo nor the collector's frozen generation keeps the old table alive.
    assert replaced() is None
    assert replaced_store() is None
    assert ids(core.online(1, 1).items) == [51]


def test_the_child_process_reads_what_this_process_reads(db_engine: Engine) -> None:
    fill_small_db(db_engine)
    names = list(CATALOGUE)
    here, in_child = read_parts(db_engine, names), read_parts_in_child(db_engine, names)
    for name in names:
        mine, theirs = here.tables[name], in_child.tables[name]
        assert theirs.version == mine.version
        assert theirs.lists.label_names == mine.lists.label_names
        for array in ("keys", "offsets", "items", "scores", "label_codes"):
            np.testing.assert_array_equal(getattr(theirs.lists, array), getattr(mine.lists, array))
            np.testing.assert_array_equal(
                getattr(in_child.available[name], array), getattr(here.available[name], array)
            )
        # Nothing filtered out: the same object, as in this process (not a copy to hold twice).
        assert (in_child.available[name] is theirs.lists) == (here.available[name] is mine.lists)
    np.testing.assert_array_equal(in_child.known_items, here.known_items)
    np.testing.assert_array_equal(in_child.unavailable_items, here.unavailable_items)


def test_a_serving_store_loads_in_a_child_and_keeps_serving_when_it_fails(
    core: RecommendationService, small_db: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    publish(small_db, "default_recommendations", pd.DataFrame({"item_id": [51], "score": [1.0], "rank": [1]}))
    with caplog.at_level("INFO", logger="recsys.service.loader"):
        assert core.reload().changed is True
    # Niced from its start, before the imports of its task.
    niceness = min(os.nice(0) + CHILD_NICENESS, 19)
    read = f"read default_recommendations and the catalogue in a child process (nice {niceness},"
    assert read in caplog.text
    assert ids(core.default(3).items) == [51]

    # A version whose rows vanished (dropped by hand): the child's error reaches the reload,
    # and the store in service stays.
    publish(small_db, "default_recommendations", pd.DataFrame({"item_id": [52], "score": [1.0], "rank": [1]}))
    with small_db.begin() as conn:
        physical = current_version(conn, "default_recommendations").physical_name
        conn.execute(sa.text(f'DROP TABLE "{physical}"'))
    store = core.store
    with pytest.raises(pd.errors.DatabaseError, match=f"no such table: {physical}"):
        core.reload()
    assert core.store is store
    assert core.last_reload_error == "DatabaseError"
    assert ids(core.default(3).items) == [51]


def test_unreachable_database_keeps_the_store_and_pauses_online_reads(core: RecommendationService) -> None:
    store = core.store
    core.engine = sa.create_engine("sqlite:////nonexistent-folder/x.sqlite3")
    core.events.engine = core.engine
    with pytest.raises(DatabaseUnavailableError):
        core.reload()
    assert core.store is store
    assert core.last_reload_error == "OperationalError"
    result = core.personalized(1, 2)
    assert (ids(result.items), result.fallbacks) == ([10, 11], [FallbackReason.DATABASE_UNAVAILABLE])
    health = core.health()
    assert (health.status, health.ready, health.database_reachable) == ("degraded", True, False)
    with pytest.raises(DatabaseUnavailableError, match="the event was not recorded"):
        core.record_event(1, 10, "view", None)


def test_database_retry_tracker_pauses_after_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("recsys.service.service.time.monotonic", lambda: clock[0])
    status = DatabaseRetryTracker(retry_seconds=5)
    assert status.should_try() and status.reachable
    status.failed(sa.exc.OperationalError("SELECT 1", {}, Exception("down")))
    assert not status.should_try() and not status.reachable and status.last_error == "OperationalError"
    clock[0] += 5
    assert status.should_try()
    status.succeeded()
    assert status.reachable and status.last_error is None


# -- events export, settings, metrics ---------------------------------------------------------
def test_exported_online_events_load_into_the_next_pipeline_run(
    published_data: PublishedData, core: RecommendationService, tmp_path: Path
) -> None:
    user = 9_000_000
    core.record_event(user, 1, "view", datetime(2015, 9, 1, tzinfo=UTC))
    core.record_event(user, 1, "transaction", datetime(2015, 9, 1, 0, 5, tzinfo=UTC))
    exported = export_raw_events(core.engine)
    assert list(exported.columns) == ["timestamp", "visitorid", "event", "itemid", "transactionid"]
    assert exported["transactionid"].isna().tolist() == [True, False]

    raw = tmp_path / "raw"
    shutil.copytree(published_data.sqlite_path.parent / "raw", raw)
    # Exported twice (say, the export of everything ran again): the loader drops exact duplicates.
    for _ in range(2):
        exported.to_csv(raw / "events.csv", mode="a", header=False, index=False)
    engine = create_db_engine(f"sqlite:///{tmp_path / 'next.sqlite3'}")
    load_raw_data(engine, raw)
    prepare_datasets(engine, EventWeights())
    interactions = read_interactions(engine)
    mine = interactions[interactions["user_id"] == user]
    assert mine["event"].astype(str).tolist() == ["view", "transaction"]
    engine.dispose()


def test_relative_data_dir_is_taken_from_the_project_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("RECSYS_DATA_DIR", "RECSYS_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / ".env").write_text("RECSYS_DATA_DIR=state\nRECSYS_DATABASE_RETRY_SECONDS=0.25\n")
    settings = load_service_settings(tmp_path)
    assert settings.data_dir == tmp_path / "state"
    assert settings.db_url == f"sqlite:///{tmp_path / 'state' / 'recsys.sqlite3'}"
    assert settings.database_retry_seconds == 0.25
    monkeypatch.setenv("RECSYS_DATA_DIR", "/srv/recsys")
    assert load_service_settings(tmp_path).data_dir == Path("/srv/recsys")


def test_metrics_registry_has_every_series_from_the_start() -> None:
    metrics = ServiceMetrics()
    text = generate_latest(metrics.registry).decode()
    for series in (
        'recsys_recommendation_requests_total{kind="online"} 0.0',
        'recsys_recommendation_fallbacks_total{reason="cold_user"} 0.0',
        'recsys_online_events_recorded_total{event="addtocart"} 0.0',
        "recsys_process_memory_usage_bytes ",
        "recsys_process_memory_limit_bytes ",
        "process_resident_memory_bytes ",
    ):
        assert series in text
    assert 0 < memory_limit_bytes() <= 2**50


def test_every_user_with_history_is_answered_personally(sqlite_copy: str) -> None:
    """The tiny twin through the pipeline: users outside the active days, without published
    lists, are answered from their history; only users without history are cold."""
    settings = ServiceSettings(_env_file=None, database_url=sqlite_copy)
    engine = create_db_engine(sqlite_copy)
    service = RecommendationService(settings, engine=engine)
    service.start()
    users = read_interactions(engine)["user_id"].unique()
    ranked = service.store.lists(CATALOGUE["ranked_recommendations"])
    without_list = [int(user) for user in users if int(user) not in ranked]
    assert without_list, "the twin should have users outside the active days"
    answers = [service.personalized(int(user), 10) for user in users]
    assert not [a for a in answers if FallbackReason.COLD_USER in a.fallbacks]
    from_history = [service.personalized(user, 10) for user in without_list]
    assert sum("history_i2i" in answer.sources for answer in from_history) > len(from_history) / 2
    assert service.personalized(int(users.max()) + 1, 10).fallbacks == [FallbackReason.COLD_USER]
    engine.dispose()


def test_result_file_round_trips_and_a_truncated_one_is_refused(db_engine: Engine, tmp_path: Path) -> None:
    fill_small_db(db_engine)
    parts = read_parts(db_engine, list(CATALOGUE))
    _write_result_file(parts, tmp_path / "parts")
    back = _read_result_file(tmp_path / "parts")
    for name, table in parts.tables.items():
        np.testing.assert_array_equal(back.tables[name].lists.items, table.lists.items)
        np.testing.assert_array_equal(back.tables[name].lists.scores, table.lists.scores)
    np.testing.assert_array_equal(back.unavailable_items, parts.unavailable_items)
    buffers = tmp_path / "parts.buffers"
    buffers.write_bytes(buffers.read_bytes()[:-1])
    with pytest.raises(EOFError, match="ended before its buffers"):
        _read_result_file(tmp_path / "parts")
