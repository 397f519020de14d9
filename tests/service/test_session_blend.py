"""The served session blend: hand-computed merges, the running session, bad input, freshness over HTTP."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from itertools import count
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.models.i2i import ItemToItemConfig
from recsys.models.session_blend import SessionBlendModel, SessionBlendWeights
from recsys.models.session_category import CategoryPopularConfig, CategoryPopularModel
from recsys.publishing.catalogue import USER_HISTORIES
from recsys.service.blending import (
    ONLINE_I2I,
    PRICE_GAP,
    RECENTLY_VIEWED,
    SESSION_CATEGORY,
    SESSION_KNN,
    VIEWED_BEFORE,
    Recommendation,
    SessionCandidates,
    discovery_list,
    session_blend,
    session_candidates,
)
from recsys.service.events import OnlineEvent, UserActivity
from recsys.service.service import RecommendationService
from recsys.service.settings import ServiceSettings
from recsys.service.store import Candidates, GroupedLists
from tests.models.test_sknn import DAY, T0, past_sessions
from tests.service.conftest import API_KEY, LiveService, PublishedData

AUTH = {"X-API-Key": API_KEY}
MINUTE_MS = 60_000
StartService = Callable[..., LiveService]
# Sources of the session blend's discovery part (which one leads depends on the tuned weights).
DISCOVERY = {SESSION_KNN, SESSION_CATEGORY, ONLINE_I2I}


def candidates(source: str, items: list[int], scores: list[float] | None = None) -> Candidates:
    values = scores if scores is not None else [float(len(items) - i) for i in range(len(items))]
    return Candidates(source, np.array(items, dtype=np.int64), np.array(values, dtype=np.float32))


def weights(**changes: object) -> SessionBlendWeights:
    return SessionBlendWeights().model_copy(update=changes)


def found_lists(
    strip: Candidates | None = None,
    neighbours: Candidates | None = None,
    covisitation: Candidates | None = None,
    reminders: Candidates | None = None,
    category: Candidates | None = None,
    earlier: Candidates | None = None,
    price_gaps: Candidates | None = None,
) -> SessionCandidates:
    """A session's candidates, empty where not given."""
    return SessionCandidates(
        strip or Candidates.empty(RECENTLY_VIEWED),
        neighbours or Candidates.empty(SESSION_KNN),
        reminders or Candidates.empty(SESSION_KNN),
        covisitation or Candidates.empty(ONLINE_I2I),
        category or Candidates.empty(SESSION_CATEGORY),
        earlier or Candidates.empty(VIEWED_BEFORE),
        price_gaps or Candidates.empty(PRICE_GAP),
    )


def ids(answer: Sequence[Recommendation]) -> list[int]:
    return [r["item_id"] for r in answer]


# -- the merge, by hand ---------------------------------------------------------------------------
def test_strip_sits_from_its_rank_and_discovery_keeps_the_top() -> None:
    found = found_lists(candidates(RECENTLY_VIEWED, [7, 8, 9]), candidates(SESSION_KNN, [1, 2, 3, 4]))
    answer = session_blend(
        found,
        Candidates.empty("ranked"),
        [candidates("default", [50, 1, 51])],
        8,
        weights(strip_length=2, strip_rank=3),
    )
    assert ids(answer) == [1, 2, 7, 8, 3, 4, 50, 51]
    assert [r["source"] for r in answer][:4] == [SESSION_KNN, SESSION_KNN, RECENTLY_VIEWED, RECENTLY_VIEWED]


def test_a_strip_that_ends_at_its_rank_rises_with_the_session() -> None:
    def answer(strip: list[int], rank: int) -> list[int]:
        found = found_lists(candidates(RECENTLY_VIEWED, strip), candidates(SESSION_KNN, [1, 2, 3, 4, 5]))
        ending = weights(strip_length=5, strip_rank=rank, strip_ends=True)
        return ids(session_blend(found, Candidates.empty("ranked"), [], 7, ending))

    # Ending at rank 5: two session items take ranks 4-5, four take ranks 2-5.
    assert answer([7, 8], 5) == [1, 2, 3, 7, 8, 4, 5]
    assert answer([7, 8, 9, 6], 5) == [1, 7, 8, 9, 6, 2, 3]
    # More items than ranks above the end: the strip starts at the top.
    assert answer([7, 8, 9, 6], 3) == [7, 8, 9, 6, 1, 2, 3]


def test_earlier_items_sit_from_their_rank_and_the_strip_from_its_own() -> None:
    found = found_lists(
        candidates(RECENTLY_VIEWED, [7, 8]),
        candidates(SESSION_KNN, [1, 2, 5, 3]),
        earlier=candidates(VIEWED_BEFORE, [5, 6, 9]),
    )
    answer = session_blend(
        found,
        candidates("ranked", [6, 10]),
        [],
        8,
        weights(earlier_length=2, earlier_rank=2, strip_length=1, strip_rank=1, offline_share=0.0),
    )
    # Discovery without 5 and 6 (shown as earlier items from rank 2), then the strip (7) on top.
    assert ids(answer) == [7, 1, 5, 6, 2, 3, 10]
    assert [r["source"] for r in answer][:4] == [RECENTLY_VIEWED, SESSION_KNN, VIEWED_BEFORE, VIEWED_BEFORE]


def test_offline_share_interleaves_and_strip_items_are_not_repeated() -> None:
    found = found_lists(candidates(RECENTLY_VIEWED, [7]), candidates(SESSION_KNN, [1, 2, 3]))
    offline = candidates("ranked", [7, 10, 11, 1])
    answer = session_blend(found, offline, [], 6, weights(strip_length=1, strip_rank=1, offline_share=0.5))
    # Strip first; then discovery and offline alternate (discovery first), 7 and 1 not twice.
    assert ids(answer) == [7, 1, 10, 2, 11, 3]


def test_covisitation_scores_are_scaled_to_their_best_and_added() -> None:
    found = found_lists(
        neighbours=candidates(SESSION_KNN, [1, 2], [4.0, 2.0]),  # scaled: 1.0, 0.5
        covisitation=candidates(ONLINE_I2I, [3, 2], [10.0, 9.0]),  # scaled: 1.0, 0.9
    )
    fused = discovery_list(found, weights(covisitation_weight=0.5, strip_length=0))
    # 1: 1.0; 2: 0.5 + 0.45 = 0.95; 3: 0.5.
    assert fused.items.tolist() == [1, 2, 3]
    assert fused.scores.tolist() == pytest.approx([1.0, 0.95, 0.5])
    assert fused.labels == (SESSION_KNN, SESSION_KNN, ONLINE_I2I)
    alone = discovery_list(found, weights(covisitation_weight=0.0, strip_length=0))
    assert alone.items.tolist() == [1, 2]


def test_reminders_share_vsknns_scale_and_category_scores_are_added() -> None:
    found = found_lists(
        strip=candidates(RECENTLY_VIEWED, [7, 8]),
        neighbours=candidates(SESSION_KNN, [1, 2], [2.0, 1.0]),
        reminders=candidates(SESSION_KNN, [8, 7], [4.0, 0.4]),  # V-SKNN's best: 4 → 1.0, 0.1
        category=candidates(SESSION_CATEGORY, [2, 5], [0.5, 0.25]),  # scaled: 1.0, 0.5
    )
    # V-SKNN with reminders: its own order (8: 1.0, 1: 0.5, 2: 0.25, 7: 0.1).
    vsknn = discovery_list(found, weights(reminder_weight=1.0, covisitation_weight=0.0, strip_length=0))
    assert vsknn.items.tolist() == [8, 1, 2, 7]
    assert vsknn.scores.tolist() == pytest.approx([1.0, 0.5, 0.25, 0.1])
    # Reminders at half weight, the category's scores at 0.4: 2: 0.25 + 0.4 = 0.65; 8: 0.5;
    # 1: 0.5; 5: 0.2; 7: 0.05. Each item keeps the label of its largest part.
    mixed = discovery_list(
        found, weights(reminder_weight=0.5, covisitation_weight=0.0, category_weight=0.4, strip_length=0)
    )
    assert mixed.items.tolist() == [2, 1, 8, 5, 7]
    assert mixed.scores.tolist() == pytest.approx([0.65, 0.5, 0.5, 0.2, 0.05])
    assert mixed.labels == (SESSION_CATEGORY, SESSION_KNN, SESSION_KNN, SESSION_CATEGORY, SESSION_KNN)
    # The strip's items are left to the strip: with one strip item (7, the latest), discovery holds the rest.
    stripped = discovery_list(found, weights(reminder_weight=1.0, covisitation_weight=0.0, strip_length=1))
    assert stripped.items.tolist() == [8, 1, 2]
    # The strip's items are not shown twice when reminders rank them too.
    answer = session_blend(
        found,
        Candidates.empty("ranked"),
        [],
        5,
        weights(reminder_weight=1.0, covisitation_weight=0.0, strip_length=1, strip_rank=2),
    )
    assert ids(answer) == [8, 7, 1, 2]


def test_the_price_fit_favours_candidates_near_the_sessions_price_level() -> None:
    found = found_lists(
        neighbours=candidates(SESSION_KNN, [1, 2, 3], [1.0, 0.9, 0.8]),
        # 1 sits two widths above the session's level, 2 at it; 3 has no price level.
        price_gaps=candidates(PRICE_GAP, [1, 2], [2.0, 0.0]),
    )
    off = discovery_list(found, weights(covisitation_weight=0.0, strip_length=0))
    assert off.items.tolist() == [1, 2, 3]
    # Weight 0.5, width 1: 1 keeps 0.5 + 0.5 exp(-2) of its score, 2 and 3 all of theirs.
    fitted = discovery_list(found, weights(covisitation_weight=0.0, strip_length=0, price_weight=0.5))
    assert fitted.items.tolist() == [2, 3, 1]
    assert fitted.scores.tolist() == pytest.approx([0.9, 0.8, 0.5 + 0.5 * math.exp(-2.0)])
    # A wider fit forgives the gap: 1 keeps 0.5 + 0.5 exp(-0.5 / 4) and leads again.
    wide = discovery_list(
        found, weights(covisitation_weight=0.0, strip_length=0, price_weight=0.5, price_width=4.0)
    )
    assert wide.items.tolist() == [1, 2, 3]


def test_running_session_is_cut_at_the_gap() -> None:
    times = np.array([100, 90, 80, 40, 35], dtype=np.int64) * MINUTE_MS  # newest first
    activity = UserActivity(np.array([5, 4, 3, 2, 1]), np.empty(0, np.int64), times)
    assert activity.session(30 * MINUTE_MS).recent.tolist() == [5, 4, 3]
    assert activity.session(60 * MINUTE_MS).recent.tolist() == [5, 4, 3, 2, 1]
    history = UserActivity(np.array([5, 4]), np.empty(0, np.int64))
    assert history.session(MINUTE_MS).recent.tolist() == [5, 4]


# -- the service, in process ----------------------------------------------------------------------
@pytest.fixture
def service(
    sqlite_copy: str, published_data: PublishedData, tmp_path: Path
) -> Iterator[RecommendationService]:
    settings = ServiceSettings(
        _env_file=None,
        data_dir=tmp_path,
        database_url=sqlite_copy,
        object_store_url=str(published_data.store_path),
        online_events_limit=50,
    )
    service = RecommendationService(settings)
    service.reload()
    service.activity.apply_poll(np.empty((0, 5), dtype=np.int64))
    yield service
    service.close()


class Visitor:
    """Feeds one visitor's events to the service's activity cache."""

    ids = count(1)

    def __init__(self, service: RecommendationService, user: int, start_ms: int = 1_700_000_000_000) -> None:
        self.service, self.user, self.now = service, user, start_ms

    def event(self, item: int, event: str = "view", at: int | None = None) -> None:
        self.now += 40_000
        self.service.activity.add(OnlineEvent(next(self.ids), self.user, item, event, at or self.now))


def session_items(published_data: PublishedData, n: int) -> list[int]:
    """Items of one category-focused training session: V-SKNN finds neighbours for them."""
    similar = published_data.tables["similar_items"]
    first = published_data.item_with_neighbours(3)
    rows = similar[similar["item_id"] == first].sort_values("rank")["similar_item_id"].astype(int)
    return [first, *rows.tolist()][:n]


def test_a_new_visitors_clicks_are_served_the_published_blend(
    service: RecommendationService, published_data: PublishedData
) -> None:
    model = service.session_model
    assert model is not None, "stage 6 publishes the session model and the service loads it"
    user = published_data.cold_user()
    before = service.personalized(user, 10)
    visitor = Visitor(service, user)
    viewed = session_items(published_data, 3)
    for item in viewed:
        visitor.event(item)
    answer = service.personalized(user, 10)
    assert ids(answer.items) != ids(before.items)
    assert DISCOVERY & set(answer.sources)
    strip = [r["item_id"] for r in answer.items if r["source"] == RECENTLY_VIEWED]
    expected = [i for i in viewed[::-1] if i in set(published_data.items["item_id"])][
        : model.config.strip_length
    ]
    available = set(published_data.items.loc[published_data.items["available"].ne(False), "item_id"])
    assert strip == [i for i in expected if i in available]
    if strip:
        assert ids(answer.items).index(strip[0]) == min(
            model.config.strip_rank - 1, len(answer.items) - len(strip)
        )
    online = service.online(user, 10)
    assert set(ids(online.items)) <= set(ids(answer.items)) | set(ids(service.online(user, 20).items))
    assert "default" not in online.sources


def test_unknown_items_give_no_neighbours_and_are_never_shown(
    service: RecommendationService, published_data: PublishedData
) -> None:
    user = published_data.cold_user() + 1
    visitor = Visitor(service, user)
    for item in (10**11, 10**11 + 1):
        visitor.event(item)
    only_unknown = service.personalized(user, 10)
    assert ids(only_unknown.items) == ids(service.default(10).items)  # nothing to go on: popular
    known = session_items(published_data, 1)[0]
    visitor.event(known)
    mixed = service.personalized(user, 10)
    assert not {10**11, 10**11 + 1} & set(ids(mixed.items))
    assert DISCOVERY & set(mixed.sources)


def test_a_bots_burst_keeps_memory_and_latency_bounded(
    service: RecommendationService, published_data: PublishedData
) -> None:
    user = published_data.cold_user() + 2
    items = published_data.items["item_id"].astype(int).to_numpy()
    rows = np.column_stack(
        [
            np.arange(10**6, 10**6 + 5000),
            np.full(5000, user),
            items[np.arange(5000) % items.size],
            1_700_000_000_000 + np.arange(5000) * 1000,
            np.zeros(5000, dtype=np.int64),
        ]
    ).astype(np.int64)
    service.activity.apply_poll(rows)
    activity = service.activity.get(user)
    assert activity.recent.size == activity.timestamps.size == service.settings.online_events_limit
    # The latest events are the ones kept.
    assert activity.timestamps[0] == rows[-1, 3]
    answer = service.personalized(user, 10)
    assert len(answer.items) == 10


def test_events_out_of_time_order_are_placed_by_their_timestamp(
    service: RecommendationService, published_data: PublishedData
) -> None:
    user = published_data.cold_user() + 3
    visitor = Visitor(service, user)
    a, b, c = session_items(published_data, 3)
    visitor.event(a, at=1_700_000_000_000)
    visitor.event(b, at=1_700_000_000_000 + 2 * 3600_000)  # a later session
    visitor.event(c, at=1_700_000_000_000 + 60_000)  # arrives last, belongs to the first session
    activity = service.activity.get(user)
    assert activity.recent.tolist() == [b, c, a]
    assert activity.session(service.settings.session_gap_minutes * MINUTE_MS).recent.tolist() == [b]


def test_items_viewed_before_the_session_are_the_earlier_sessions_then_the_history(
    service: RecommendationService, published_data: PublishedData
) -> None:
    user = published_data.ranked_user()
    history = service.store.lists(USER_HISTORIES).get(user, "history")
    assert history is not None
    visitor = Visitor(service, user)
    a, b, c = session_items(published_data, 3)
    visitor.event(a, at=1_700_000_000_000)
    visitor.event(b, at=1_700_000_000_000 + 60_000)
    visitor.event(10**11, at=1_700_000_000_000 + 90_000)  # unknown: never shown
    visitor.event(c, at=1_700_000_000_000 + 2 * 3600_000)  # the running session
    visitor.event(a, at=1_700_000_000_000 + 2 * 3600_000 + 60_000)
    found = service._session_candidates(
        user, service.activity.get(user), service.store, service.session_model
    )
    available = set(published_data.items.loc[published_data.items["available"].ne(False), "item_id"])
    bought = set(history.items[np.asarray(history.labels, dtype=object) == "bought"].tolist())
    expected = [
        i
        for i in dict.fromkeys([b, *history.items[: service.i2i_config.n_recent].tolist()])
        if i not in {a, c} | bought and i in available
    ][:10]
    assert found.earlier.items.tolist() == expected
    assert found.strip.items.tolist() == [i for i in (a, c) if i in available]


def test_a_visitor_with_only_purchases_is_not_shown_what_they_bought(
    service: RecommendationService, published_data: PublishedData
) -> None:
    user = published_data.cold_user() + 4
    visitor = Visitor(service, user)
    bought = session_items(published_data, 3)
    for item in bought:
        visitor.event(item, "transaction")
    for endpoint in (service.personalized, service.online):
        answer = endpoint(user, 10)
        assert not set(bought) & set(ids(answer.items))
        assert RECENTLY_VIEWED not in answer.sources


# -- over HTTP ------------------------------------------------------------------------------------
def test_an_anonymous_visitors_clicks_change_every_workers_answer_within_a_second(
    sqlite_copy: str, published_data: PublishedData, start_service: StartService
) -> None:
    live = start_service(
        sqlite_copy, workers=2, env={"RECSYS_OBJECT_STORE_URL": str(published_data.store_path)}
    )
    user = published_data.cold_user() + 5

    def answer() -> tuple[int, ...]:
        # A new connection each time, so both workers answer.
        response = live.client().get(f"/recommendations/users/{user}", params={"k": 10})
        assert response.status_code == 200, response.text
        return tuple(item["item_id"] for item in response.json()["items"])

    before = answer()
    with live.client() as client:
        for item in session_items(published_data, 2):
            body = {"user_id": user, "item_id": item, "event": "view"}
            assert client.post("/events", json=body, headers=AUTH).status_code == 201
        mine = client.get(f"/recommendations/users/{user}", params={"k": 10}).json()
    after = tuple(item["item_id"] for item in mine["items"])
    assert after != before
    assert DISCOVERY & set(mine["sources"])
    live.wait_until(lambda: {answer() for _ in range(8)} == {after}, 1.0, "every worker to serve the clicks")


# -- the session-aware query ("extend"), by hand ---------------------------------------------------
def fitted_session_model(**changes: object) -> SessionBlendModel:
    """The blend's model on the hand-made past sessions of ``tests/models/test_sknn.py``."""
    data = past_sessions()
    data.items["category_id"] = 1.0
    return SessionBlendModel(weights(**changes)).fit(data)


def extended_neighbours(model: SessionBlendModel, session: list[int], earlier: list[int]) -> dict[int, float]:
    """V-SKNN's discovery scores for a running session (oldest first) after ``earlier`` items."""
    moment = int((T0 + 5 * DAY).value // 1_000_000)
    activity = UserActivity(
        np.array(session[::-1], dtype=np.int64),
        np.empty(0, dtype=np.int64),
        np.full(len(session), moment, dtype=np.int64),
    )
    empty = GroupedLists.from_frame(
        pd.DataFrame({"item_id": [], "similar_item_id": [], "score": [], "rank": []}, dtype=np.int64),
        "item_id",
        item="similar_item_id",
    )
    found = session_candidates(
        activity,
        model,
        empty,
        ItemToItemConfig(),
        np.arange(1, 8, dtype=np.int64),
        np.empty(0, dtype=np.int64),
        np.array(earlier[::-1], dtype=np.int64),
    ).neighbours
    return dict(zip(found.items.tolist(), found.scores.tolist(), strict=True))


def test_extend_adds_the_items_viewed_before_to_the_query_as_older_ones() -> None:
    # Past sessions A = [1, 2, 3], B = [2, 4], C = [1, 4, 5], D = [6, 7]; running session [6],
    # item 1 viewed before it. Without extend only D shares an item: 7 scores 6's weight 1 / 1.
    assert extended_neighbours(fitted_session_model(), [6], [1]) == pytest.approx({7: 1.0})
    # With extend_length 1 the query is [1, 6] ("div" weights 1/2, 1; 2 distinct items):
    #   D ∋ 6: similarity 1/2, holds the last item (step 1)  -> votes 0.5 for 6, 7
    #   A ∋ 1, C ∋ 1: similarity (1/2)/2 = 0.25, step 2 -> × 1/2 -> votes 0.125 for 1, 2, 3 / 1, 4, 5
    # The session's own item (6) is not discovery; the earlier item (1) is, scored by both.
    extended = extended_neighbours(fitted_session_model(extend_length=1), [6], [1])
    assert extended == pytest.approx({7: 0.5, 1: 0.25, 2: 0.125, 3: 0.125, 4: 0.125, 5: 0.125})


def test_with_weights_shares_the_fitted_model_but_refuses_other_vsknn_settings() -> None:
    model = fitted_session_model()
    variant = model.with_weights(weights(extend_length=3, category_weight=2.0))
    assert variant.config.extend_length == 3 and model.config.extend_length == 0
    assert variant.sessions is model.sessions
    with pytest.raises(ValueError, match="sample_size"):
        model.with_weights(weights(sample_size=7))


def test_with_category_swaps_the_category_model_and_keeps_the_sessions() -> None:
    model = fitted_session_model()
    data = past_sessions()
    data.items["category_id"] = 1.0
    category = CategoryPopularModel(CategoryPopularConfig(n_recent=1, half_life_days=30.0)).fit(data)
    variant = model.with_category(category)
    assert variant.category is category and variant.sessions is model.sessions
    assert variant.config.category == category.config and model.config.category == CategoryPopularConfig()
    # The variant is consistent: other blend weights can be set on it, V-SKNN's stay refused.
    assert (
        variant.with_weights(variant.config.model_copy(update={"category_weight": 2.0})).category is category
    )
