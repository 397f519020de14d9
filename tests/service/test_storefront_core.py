"""The storefront's core: product cards from ``items``, example visitors and browser events.

The catalogue is checked against an independent walk of the raw ``category_tree``, on the tiny
twin's real pipeline output; the example visitors against counts of ``interactions``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from recsys.data.prepare import ITEMS
from recsys.evaluation.offline import LIGHT_MAX
from recsys.publishing.catalogue import CATALOGUE
from recsys.service.catalogue import ItemCatalogue, load_catalogue
from recsys.service.fallbacks import FallbackReason
from recsys.service.service import RecommendationService, UnknownItemError
from recsys.service.settings import ServiceSettings
from recsys.service.storefront import (
    BrowserEventLimiter,
    BrowserEventsDisabledError,
    Storefront,
    TooManyBrowserEventsError,
)
from recsys.storage.database import create_db_engine
from tests.service.conftest import SERVICE_DIR, PublishedData

SHOP_SCRIPT = SERVICE_DIR / "recsys_app" / "static" / "shop.js"


def full_paths(tree: pd.DataFrame) -> dict[int, list[int]]:
    """Every category's path from its root, by following parents one at a time."""
    parent = {
        int(c): (None if pd.isna(p) else int(p))
        for c, p in zip(tree["categoryid"], tree["parentid"], strict=True)
    }
    paths: dict[int, list[int]] = {}
    for category, first_parent in parent.items():
        path, node = [category], first_parent
        while node is not None and node in parent:
            path.insert(0, node)
            node = parent[node]
        paths[category] = path
    return paths


def make_service(url: str, **settings: object) -> RecommendationService:
    service = RecommendationService(ServiceSettings(_env_file=None, database_url=url, **settings))
    service.start()
    return service


@pytest.fixture
def storefront(sqlite_copy: str) -> Iterator[Storefront]:
    service = make_service(sqlite_copy, browser_events_enabled=True, browser_events_per_minute=5)
    front = Storefront(service)
    front.refresh()
    yield front
    service.close()


def test_cards_show_the_category_path_price_and_availability_of_items(published_data: PublishedData) -> None:
    engine = create_db_engine(f"sqlite:///{published_data.sqlite_path}")
    with engine.connect() as conn:
        tree = pd.read_sql(sa.text("SELECT categoryid, parentid FROM category_tree"), conn)
    engine.dispose()
    paths = full_paths(tree)
    items = published_data.items
    catalogue = ItemCatalogue.from_frame(items.sample(frac=1, random_state=0))  # any row order
    unknown = int(items["item_id"].max()) + 1
    cards = catalogue.cards([*items["item_id"].tolist(), unknown])

    assert not cards[-1].in_catalogue and cards[-1].category_path == []
    depths_seen = set()
    for card, row in zip(cards[:-1], items.itertuples(index=False), strict=True):
        assert card.item_id == row.item_id and card.in_catalogue
        if pd.isna(row.category_id):
            assert card.category_path == [] and card.hidden_levels == 0
        else:
            full = paths.get(int(row.category_id), [int(row.category_id)])
            shown = full if len(full) <= 3 else [full[0], *full[-2:]]
            assert (card.category_path, card.hidden_levels) == (shown, max(len(full) - 3, 0))
            depths_seen.add(len(full))
        assert card.price == (None if pd.isna(row.price) else pytest.approx(row.price, rel=1e-6))
        assert card.available == (None if pd.isna(row.available) else bool(row.available))
    # The twin's tree is deep enough to exercise every shape of path.
    assert {1, 2, 3} <= depths_seen and max(depths_seen) > 3


def test_catalogue_loads_in_chunks_into_compact_arrays(published_data: PublishedData) -> None:
    engine = create_db_engine(f"sqlite:///{published_data.sqlite_path}")
    chunked = load_catalogue(engine, chunk_rows=100)
    engine.dispose()
    whole = ItemCatalogue.from_frame(published_data.items)
    assert len(chunked) == len(published_data.items) > 1_000
    for name in ("item_ids", "category_ids", "parent_ids", "root_ids", "depths", "available"):
        np.testing.assert_array_equal(getattr(chunked, name), getattr(whole, name))
    np.testing.assert_array_equal(chunked.prices, whole.prices)
    # About 20 bytes an item: 9 MB for the 417 k items of the full dataset.
    assert chunked.nbytes / len(chunked) <= 24


def test_catalogue_is_empty_before_items_is_prepared(sqlite_engine: sa.Engine) -> None:
    catalogue = load_catalogue(sqlite_engine)
    assert len(catalogue) == 0
    assert catalogue.cards([5])[0].in_catalogue is False
    with sqlite_engine.begin() as conn:
        ITEMS.create(conn)
    assert len(load_catalogue(sqlite_engine)) == 0


def test_example_visitors_are_a_heavy_a_light_and_an_unknown_user(
    storefront: Storefront, published_data: PublishedData
) -> None:
    engine = storefront.service.engine
    with engine.connect() as conn:
        counts = pd.read_sql(
            sa.text("SELECT user_id, COUNT(*) AS n FROM interactions GROUP BY user_id"), conn
        )
    counts = counts.set_index("user_id")["n"]
    examples = {e["kind"]: e for e in storefront.page_config()["examples"]}
    assert set(examples) == {"heavy", "light", "new"}
    heavy, light, new = examples["heavy"], examples["light"], examples["new"]
    assert heavy["interactions"] == counts[heavy["user_id"]] > LIGHT_MAX
    assert 1 <= light["interactions"] == counts[light["user_id"]] <= LIGHT_MAX
    ranked = set(published_data.tables["ranked_recommendations"]["user_id"])
    assert heavy["user_id"] in ranked
    assert new["user_id"] not in counts.index and new["user_id"] not in ranked
    assert storefront.visitor(new["user_id"], 5)["fallbacks"] == [FallbackReason.COLD_USER]

    # A new visitor who clicked is no longer new.
    storefront.record(new["user_id"], published_data.item_with_neighbours(), "view")
    assert storefront.new_visitor_id() == new["user_id"] + 1


def test_visitor_answer_is_the_services_with_cards(
    storefront: Storefront, published_data: PublishedData
) -> None:
    user = published_data.ranked_user()
    answer = storefront.visitor(user, 10)
    plain = storefront.service.personalized(user, 10)
    assert [(c["item_id"], c["source"], c["score"]) for c in answer["items"]] == [
        (i["item_id"], i["source"], i["score"]) for i in plain.items
    ]
    assert answer["sources"] == plain.sources and answer["fallbacks"] == plain.fallbacks
    assert all(card["in_catalogue"] for card in answer["items"])
    item = published_data.item_with_neighbours()
    page = storefront.item(item, 5)
    assert page["item"]["item_id"] == item
    assert [c["item_id"] for c in page["similar"]] == published_data.list_of("similar_items", item)[:5]
    with pytest.raises(UnknownItemError):
        storefront.item(int(published_data.items["item_id"].max()) + 10**6, 5)


def test_browser_events_are_limited_to_views_and_carts_of_known_items_per_visitor(
    storefront: Storefront, published_data: PublishedData
) -> None:
    item = published_data.item_with_neighbours()
    user = published_data.cold_user()
    with pytest.raises(ValueError, match="transaction"):
        storefront.record(user, item, "transaction")
    with pytest.raises(UnknownItemError):
        storefront.record(user, int(published_data.items["item_id"].max()) + 10**6, "view")
    for _ in range(5):
        storefront.record(user, item, "view")
    with pytest.raises(TooManyBrowserEventsError) as refused:
        storefront.record(user, item, "addtocart")
    assert 1 <= refused.value.retry_after_seconds <= 60
    storefront.record(user + 1, item, "addtocart")  # per visitor
    assert storefront.service.activity.get(user).recent.tolist() == [item] * 5


def test_browser_events_are_refused_when_off(sqlite_copy: str, published_data: PublishedData) -> None:
    service = make_service(sqlite_copy)
    try:
        with pytest.raises(BrowserEventsDisabledError, match="RECSYS_BROWSER_EVENTS_ENABLED"):
            Storefront(service).record(1, published_data.item_with_neighbours(), "view")
    finally:
        service.close()


def test_limiter_counts_a_moving_minute_per_visitor() -> None:
    limiter = BrowserEventLimiter(per_minute=2)
    limiter.check(1)
    limiter.check(1)
    limiter.check(2)
    with pytest.raises(TooManyBrowserEventsError, match="more than 2 events"):
        limiter.check(1)


def test_the_page_explains_every_fallback_reason() -> None:
    """The page's texts (static JavaScript) cover exactly the reasons the service reports."""
    script = SHOP_SCRIPT.read_text(encoding="utf-8")
    block = re.search(r"const FALLBACKS = \{(.*?)\};", script, re.S)
    assert block is not None, f"no FALLBACKS table in {SHOP_SCRIPT}"
    assert set(re.findall(r"^\s*(\w+):", block.group(1), re.M)) == set(FallbackReason)


def test_after_a_swap_the_catalogue_is_read_in_a_child_process(
    storefront: Storefront, published_data: PublishedData, caplog: pytest.LogCaptureFixture
) -> None:
    before = storefront.catalogue
    table = CATALOGUE["default_recommendations"]
    table.publish(storefront.service.engine, published_data.tables[table.name])
    assert storefront.service.reload().changed
    with caplog.at_level("INFO", logger="recsys.service.storefront"):
        storefront.refresh()
    assert "storefront catalogue read in a child process" in caplog.text
    assert storefront.catalogue is not before
    for name in ("item_ids", "category_ids", "parent_ids", "root_ids", "depths", "prices", "available"):
        np.testing.assert_array_equal(getattr(storefront.catalogue, name), getattr(before, name))
