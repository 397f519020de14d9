"""Popular in the session's categories, against scores computed by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.models.dataset import InteractionData
from recsys.models.session_category import CategoryPopularConfig, CategoryPopularModel
from recsys.models.sknn import SessionQueries
from tests.models.test_sknn import PAST, T0

# Items 1-3 are in category 10, 4-5 in 20, 6 in 30; 7 has no category.
CATEGORIES = {1: 10, 2: 10, 3: 10, 4: 20, 5: 20, 6: 30}


def window(unavailable: tuple[int, ...] = ()) -> InteractionData:
    rows = [
        (ord(user), item, "view", 1.0, T0 + pd.Timedelta(hours=day), 0)
        for day, (user, items) in enumerate(PAST.items(), start=1)
        for item in items
    ]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "event", "weight", "datetime", "session_index"])
    items = np.arange(1, 8)
    catalogue = pd.DataFrame(
        {
            "item_id": items,
            "available": [item not in unavailable for item in items],
            "category_id": [CATEGORIES.get(int(item), np.nan) for item in items],
        }
    )
    return InteractionData.build(frame, catalogue)


def scores(model: CategoryPopularModel, items: list[int]) -> dict[int, float]:
    """The model's scores of one prefix given oldest first."""
    found = model.recommend_sessions(SessionQueries.single(items[::-1], 0), k=10)
    return dict(zip(found["item_id"].tolist(), found["score"].tolist(), strict=True))


def config(**changes: object) -> CategoryPopularConfig:
    return CategoryPopularConfig(half_life_days=None, top_items=2).model_copy(update=changes)


def test_category_popularity_by_hand() -> None:
    # Events (A = [1, 2, 3], B = [2, 4], C = [1, 4, 5], D = [6, 7]): 1: 2, 2: 2, 3: 1, 4: 2, 5: 1.
    # Category 10 (5 events) keeps its top two, 1 and 2 (0.4 each; 3 is cut); category 20:
    # 4 -> 2/3, 5 -> 1/3. Prefix [3, 4]: 4 (latest) votes 1 for 20, 3 votes 0.5 for 10.
    model = CategoryPopularModel(config()).fit(window())
    assert scores(model, [3, 4]) == pytest.approx({5: 1 / 3, 1: 0.2, 2: 0.2})
    # A repeated item counts once, at its latest place: [4, 3, 4] is [3, 4].
    assert scores(model, [4, 3, 4]) == pytest.approx({5: 1 / 3, 1: 0.2, 2: 0.2})
    # Only the latest item's category with n_recent = 1; the prefix's items too with reminders.
    latest = CategoryPopularModel(config(n_recent=1)).fit(window())
    assert scores(latest, [3, 4]) == pytest.approx({5: 1 / 3})
    reminding = CategoryPopularModel(config(remind=True)).fit(window())
    assert scores(reminding, [3, 4]) == pytest.approx({4: 2 / 3, 5: 1 / 3, 1: 0.2, 2: 0.2})


def test_visitor_exponent_gives_every_visitor_one_vote() -> None:
    # Each event weighs 1 / (its visitor's events): A's three 1/3, B's two 1/2, C's three 1/3.
    # 1: 2/3, 2: 5/6, 3: 1/3 (category 10: 11/6); 4: 5/6, 5: 1/3 (category 20: 7/6). Item 2,
    # viewed by a visitor of fewer events, now ranks above 1 (tied when events count alike).
    model = CategoryPopularModel(config(visitor_exponent=1.0)).fit(window())
    assert scores(model, [3, 4]) == pytest.approx({5: 2 / 7, 2: 0.5 * 5 / 11, 1: 0.5 * 4 / 11})
    # Half-way: weights n ** -0.5.
    half = CategoryPopularModel(config(visitor_exponent=0.5)).fit(window())
    one, two = 2 / np.sqrt(3), 1 / np.sqrt(3) + 1 / np.sqrt(2)
    total = one + two + 1 / np.sqrt(3)
    assert scores(half, [3])[2] == pytest.approx(two / total)
    assert scores(half, [3])[1] == pytest.approx(one / total)


def test_items_without_category_take_a_place_but_vote_for_nothing() -> None:
    model = CategoryPopularModel(config(remind=True)).fit(window())
    # 7 (latest, no category) is back 0, so 6 votes 0.5 for category 30 (6 alone: share 1).
    assert scores(model, [6, 7]) == pytest.approx({6: 0.5})
    assert scores(model, [7]) == {}


def test_unavailable_items_are_never_recommended() -> None:
    # Without 2, category 10's top two are 1 and 3 (shares over every event of the category).
    model = CategoryPopularModel(config()).fit(window(unavailable=(2,)))
    assert scores(model, [4, 5]) == {}
    assert scores(model, [5, 2]) == pytest.approx({1: 0.4, 3: 0.2, 4: 0.5 * 2 / 3})


def priced_window(sessions: dict[int, list[int]]) -> InteractionData:
    """Items 1-4 in one category, log prices 0-3 (price levels (x - 1.5) / sd, sd = √1.25)."""
    rows = [
        (user, item, "view", 1.0, T0 + pd.Timedelta(minutes=minute), 0)
        for user, items in sessions.items()
        for minute, item in enumerate(items)
    ]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "event", "weight", "datetime", "session_index"])
    catalogue = pd.DataFrame(
        {"item_id": [1, 2, 3, 4], "available": True, "category_id": 10, "price": np.exp([0.0, 1.0, 2.0, 3.0])}
    )
    return InteractionData.build(frame, catalogue)


def test_a_sessions_price_level_is_shrunk_by_how_tight_sessions_are() -> None:
    level_of_4 = 1.5 / np.sqrt(1.25)
    # Tight sessions (cheap 1-2, dear 3-4): within variance 0.5, between 2 - 0.5 / 2 = 1.75 (x
    # units); one item's level is shrunk by 1 / (1 + 0.5 / 1.75), two items' by 2 / (2 + 2 / 7).
    tight = CategoryPopularModel(config()).fit(priced_window({1: [1, 2], 2: [3, 4]}))
    assert tight.price_prior.tolist() == pytest.approx([0.0, 2 / 7])
    assert tight.price_level_of([4]) == pytest.approx(level_of_4 * 7 / 9)
    assert tight.price_level_of([4, 3]) == pytest.approx((level_of_4 + level_of_4 / 3) * 7 / 16)
    # Loose sessions (each spans the range): no price preference to find, every level the centre.
    loose = CategoryPopularModel(config()).fit(priced_window({1: [1, 4], 2: [2, 3]}))
    assert loose.price_level_of([4]) == pytest.approx(0.0)
    # No session of two priced items: the plain mean (levels over the seen items 1 and 4 only).
    single = CategoryPopularModel(config()).fit(priced_window({1: [1], 2: [4]}))
    assert single.price_prior.tolist() == [0.0, 0.0]
    assert single.price_level_of([4]) == pytest.approx((3.0 - 1.5) / 1.5)
