"""The in-memory online events: what each worker knows of ``online_events`` and how it keeps up."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recsys.data.schema import EVENT_TYPES
from recsys.service.activity import OnlineActivityCache
from recsys.service.events import ONLINE_EVENTS, OnlineEvent, OnlineEventsRepository
from recsys.service.service import RecommendationService
from recsys.service.settings import ServiceSettings

Event = tuple[int, int, int, int, str]  # event_id, user, item, timestamp, event


def rows_of(events: list[Event]) -> npt.NDArray[np.int64]:
    """Events as ``events_after`` returns them."""
    return np.array(
        [(i, user, item, ts, event == "transaction") for i, user, item, ts, event in events], dtype=np.int64
    ).reshape(len(events), 5)


def expected_activity(
    events: list[Event], user: int, limit: int, purchase_limit: int = 100
) -> tuple[list[int], list[int]]:
    """The definition: the latest ``limit`` events (timestamp, then id, descending) and the latest
    ``purchase_limit`` distinct items bought (each at its latest purchase)."""
    own = sorted((e for e in events if e[1] == user), key=lambda e: (e[3], e[0]), reverse=True)
    bought = list(dict.fromkeys(e[2] for e in own if e[4] == "transaction"))[:purchase_limit]
    return [e[2] for e in own[:limit]], sorted(bought)


def known(cache: OnlineActivityCache, user: int) -> tuple[list[int], list[int]]:
    activity = cache.get(user)
    return activity.recent.tolist(), activity.bought.tolist()


def random_events(n: int, seed: int) -> list[Event]:
    rng = np.random.default_rng(seed)
    return [
        (
            i + 1,
            int(rng.integers(5)),
            int(rng.integers(30)),
            int(rng.integers(1_000)),
            str(rng.choice(EVENT_TYPES)),
        )
        for i in range(n)
    ]


def test_latest_events_newest_first_and_purchases_capped() -> None:
    events = random_events(400, seed=1)
    cache = OnlineActivityCache(limit=7, purchase_limit=4)
    # Arriving in several polls, each user's history is merged with what came before.
    for start in range(0, 400, 90):
        cache.apply_poll(rows_of(events[start : start + 90]))
    for user in range(5):
        assert known(cache, user) == expected_activity(events, user, limit=7, purchase_limit=4)
    assert cache.users == 5
    assert known(cache, 99) == ([], [])


def test_purchases_are_bounded_to_the_latest_distinct_items_bought() -> None:
    # A bot buying 2,000 times over 300 items, in polls and single events, out of time order.
    rng = np.random.default_rng(3)
    events: list[Event] = [
        (i + 1, 1, int(rng.integers(300)), int(rng.integers(10_000)), "transaction") for i in range(2000)
    ]
    cache = OnlineActivityCache(limit=5, purchase_limit=20)
    for start in range(0, 1500, 500):
        cache.apply_poll(rows_of(events[start : start + 500]))
    for event_id, user, item, timestamp, event in events[1500:]:
        cache.add(OnlineEvent(event_id, user, item, event, timestamp))
    assert known(cache, 1) == expected_activity(events, 1, limit=5, purchase_limit=20)
    assert cache.get(1).bought.size == 20


def test_an_event_with_an_older_timestamp_goes_behind_newer_ones() -> None:
    cache = OnlineActivityCache(limit=10)
    cache.apply_poll(rows_of([(1, 1, 10, 500, "view"), (2, 1, 11, 600, "view")]))
    cache.add(OnlineEvent(3, 1, 12, "view", 550))
    assert known(cache, 1) == ([11, 12, 10], [])


def test_events_committed_out_of_id_order_are_read_once_and_never_missed() -> None:
    events = random_events(60, seed=2)
    cache = OnlineActivityCache(limit=100, settle_seconds=5, startup_overlap=0)
    committed = [e for e in events if e[0] != 40]  # event 40 is still in flight
    cache.apply_poll(rows_of([]), polled_at=0.0)
    # Every poll reads the events above the watermark; the overlap is recognised and skipped.
    assert cache.apply_poll(rows_of(committed[:50]), polled_at=1.0) == 50
    assert cache.apply_poll(rows_of(committed[:50]), polled_at=2.0) == 0
    # The watermark only passes ids seen at least settle_seconds ago: event 40 is still read.
    assert cache.watermark == 0
    late = [e for e in events if e[0] > cache.watermark]
    assert cache.apply_poll(rows_of(late), polled_at=3.0) == 10
    assert cache.apply_poll(rows_of(late), polled_at=6.5) == 0
    assert cache.watermark == 51
    for user in range(5):
        assert known(cache, user) == expected_activity(events, user, limit=100)


def test_own_writes_are_not_applied_twice_when_a_poll_reads_them() -> None:
    cache = OnlineActivityCache(limit=10)
    cache.apply_poll(rows_of([]))
    cache.add(OnlineEvent(1, 1, 10, "transaction", 5))
    assert cache.apply_poll(rows_of([(1, 1, 10, 5, "transaction"), (2, 1, 11, 6, "view")])) == 1
    assert known(cache, 1) == ([11, 10], [10])


def test_after_start_up_only_the_latest_events_are_read_again() -> None:
    cache = OnlineActivityCache(limit=10, startup_overlap=100)
    assert not cache.loaded
    cache.apply_poll(rows_of(random_events(1_000, seed=3)))
    assert cache.loaded
    assert cache.watermark == 900


def record(repository: OnlineEventsRepository, events: list[Event]) -> None:
    for _, user, item, timestamp, event in events:
        repository.record(user, item, event, timestamp)


def test_repository_reads_the_events_after_an_id(db_engine: Engine) -> None:
    repository = OnlineEventsRepository(db_engine)
    repository.ensure_table()
    events = random_events(30, seed=4)
    record(repository, events)
    with db_engine.connect() as conn:
        first_id = conn.execute(sa.select(sa.func.min(ONLINE_EVENTS.c.event_id))).scalar_one()
    after = repository.events_after(first_id + 9)
    assert after.shape == (20, 5)
    expected = rows_of(events[10:])
    assert after[:, 1:].tolist() == expected[:, 1:].tolist()
    assert repository.events_after(first_id + 29).shape == (0, 5)


def worker(engine: Engine) -> RecommendationService:
    settings = ServiceSettings(_env_file=None, database_url=str(engine.url), online_events_limit=5)
    service = RecommendationService(settings, engine=engine)
    service.start()
    return service


def test_two_workers_see_each_others_events_after_a_refresh(db_engine: Engine) -> None:
    first, second = worker(db_engine), worker(db_engine)
    stored: list[Event] = []
    for _, user, item, timestamp, event in random_events(40, seed=5):
        moment = datetime.fromtimestamp(timestamp, UTC)
        recorded = first.record_event(user, item, event, moment)
        stored.append((recorded.event_id, user, item, recorded.timestamp, event))
    # The recording worker knows at once, the other after its next refresh, a restarted one at start.
    assert second.activity.users == 0
    second.refresh_online_events()
    restarted = worker(db_engine)
    for user in range(5):
        expected = expected_activity(stored, user, limit=5)
        assert known(first.activity, user) == known(second.activity, user) == expected
        assert known(restarted.activity, user) == expected


@pytest.mark.parametrize("limit", [1, 3])
def test_start_up_read_equals_incremental_reads(db_engine: Engine, limit: int) -> None:
    repository = OnlineEventsRepository(db_engine)
    repository.ensure_table()
    events = random_events(50, seed=6 + limit)
    incremental = OnlineActivityCache(limit=limit)
    incremental.apply_poll(repository.events_after(0))
    for part in (events[:20], events[20:]):
        record(repository, part)
        incremental.apply_poll(repository.events_after(incremental.watermark))
    at_once = OnlineActivityCache(limit=limit)
    at_once.apply_poll(repository.events_after(0))
    # The database gave the ids, in recording order.
    ids = repository.events_after(0)[:, 0].tolist()
    stored = [(i, user, item, ts, event) for i, (_, user, item, ts, event) in zip(ids, events, strict=True)]
    for user in range(5):
        assert known(incremental, user) == known(at_once, user) == expected_activity(stored, user, limit)
