"""Reliability: restarts, a database that goes away, hot reloads under load, missing API key."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from recsys.publishing.catalogue import DEFAULT_RECOMMENDATIONS
from recsys.service.fallbacks import FallbackReason
from recsys.service.settings import ServiceSettings
from recsys.storage.database import create_db_engine
from tests.helpers import scratch_database
from tests.service.conftest import (
    API_KEY,
    SERVICE_DIR,
    LiveService,
    PublishedData,
    publish_copy,
)

AUTH = {"X-API-Key": API_KEY}
StartService = Callable[..., LiveService]


def online_items(service: LiveService, user: int) -> list[int]:
    response = service.client().get(f"/recommendations/users/{user}/online")
    assert response.status_code == 200, response.text
    return [item["item_id"] for item in response.json()["items"]]


def test_events_survive_a_restart_and_every_worker_sees_them(
    sqlite_copy: str, published_data: PublishedData, start_service: StartService
) -> None:
    user = 5_000_000_001
    first = start_service(sqlite_copy)
    with first.client() as client:
        for item in (published_data.item_with_neighbours(10), published_data.item_with_neighbours(11)):
            body = {"user_id": user, "item_id": item, "event": "view"}
            assert client.post("/events", json=body, headers=AUTH).status_code == 201
    before = online_items(first, user)
    assert before
    first.stop()

    # The new process, with two workers, answers from the same stored events on every request.
    second = start_service(sqlite_copy, workers=2)
    answers = {tuple(online_items(second, user)) for _ in range(12)}
    assert answers == {tuple(before)}

    # The worker that recorded an event answers from it at once (same connection, same worker);
    # the other sees it within the refresh interval: soon every answer (a new connection each,
    # so both workers answer) includes its neighbours.
    newest = published_data.item_with_neighbours(12)
    body = {"user_id": user, "item_id": newest, "event": "view"}
    with second.client() as client:
        assert client.post("/events", json=body, headers=AUTH).status_code == 201
        response = client.get(f"/recommendations/users/{user}/online")
    after = [item["item_id"] for item in response.json()["items"]]
    assert after != before

    def every_worker_sees_it() -> bool:
        return {tuple(online_items(second, user)) for _ in range(12)} == {tuple(after)}

    second.wait_until(every_worker_sees_it, 10, "both workers to answer from the new event")


def test_database_lost_mid_way_degrades_without_failing_reads(
    postgres_url: str, published_data: PublishedData, start_service: StartService
) -> None:
    user = published_data.ranked_user(3)
    ranked = published_data.list_of("ranked_recommendations", user)
    with scratch_database(postgres_url) as url:
        publish_copy(url, published_data)
        service = start_service(url)
        client = service.client(timeout=10)
        event = {"user_id": user, "item_id": published_data.item_with_neighbours(2), "event": "view"}
        assert client.post("/events", json=event, headers=AUTH).status_code == 201

        # Every server connection of the service is cut: the pool reconnects, nothing fails.
        admin = create_db_engine(postgres_url)
        with admin.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": sa.engine.make_url(url).database},
            )
        admin.dispose()
        recovered = client.get(f"/recommendations/users/{user}").json()
        assert "online_i2i" in recovered["sources"]
        assert client.get("/health").json()["status"] == "ok"
        assert client.post("/events", json=event, headers=AUTH).status_code == 201
        connected = client.get(f"/recommendations/users/{user}").json()
        assert connected["fallbacks"] == []

    # The database is gone (dropped with its connections): answers come from memory, the online
    # events recorded before included; once the background refresh has failed (within its
    # 0.5 s interval) they are flagged, because events recorded meanwhile may be missing.
    started = time.monotonic()
    answers: list[dict[str, Any]] = []

    def flagged() -> bool:
        personal = client.get(f"/recommendations/users/{user}")
        assert personal.status_code == 200
        answers.append(personal.json())
        return answers[-1]["fallbacks"] == [FallbackReason.DATABASE_UNAVAILABLE]

    service.wait_until(flagged, 5, "answers flagged database_unavailable")
    for body in answers:
        assert (body["items"], body["sources"]) == (connected["items"], connected["sources"])
        assert body["sources"][:2] == ["online_i2i", "ranked"]
    offline_part = [i["item_id"] for i in body["items"] if i["source"] == "ranked"]
    assert offline_part and offline_part == [item for item in ranked if item in offline_part]
    assert client.get("/recommendations/default").status_code == 200
    assert client.get(f"/items/{published_data.item_with_neighbours(0)}/similar").status_code == 200
    health = client.get("/health").json()
    assert health["status"] == "degraded"
    assert health["database"]["reachable"] is False
    assert health["database"]["error"] == "OperationalError"
    assert health["tables"]["ranked_recommendations"]["version"] == 1
    assert client.get("/ready").status_code == 200
    # Writes cannot be honoured and say so.
    refused = client.post("/events", json=event, headers=AUTH)
    assert refused.status_code == 503
    assert refused.json() == {"detail": "the database is unreachable: the event was not recorded"}
    assert client.post("/admin/reload", headers=AUTH).status_code == 503
    # Within the retry pause, reads do not even try the database.
    for _ in range(20):
        assert client.get(f"/recommendations/users/{user}").status_code == 200
    assert time.monotonic() - started < 10
    metrics = client.get("/metrics").text
    assert "recsys_database_up 0.0" in metrics
    assert 'recsys_recommendation_fallbacks_total{reason="database_unavailable"}' in metrics


def test_start_without_database_then_recover(
    postgres_url: str, published_data: PublishedData, start_service: StartService
) -> None:
    with scratch_database(postgres_url) as url:
        missing = sa.engine.make_url(url).set(database=sa.engine.make_url(url).database + "_later")
        missing_url = missing.render_as_string(hide_password=False)
        service = start_service(missing_url, wait_ready=False)
        client = service.client(timeout=10)
        assert client.get("/ready").status_code == 503
        health = client.get("/health").json()
        assert (health["status"], health["ready"], health["database"]["reachable"]) == (
            "degraded",
            False,
            False,
        )
        refused = client.get("/recommendations/default")
        assert refused.status_code == 503
        assert "no recommendations are loaded yet" in refused.json()["detail"]

        admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{missing.database}"'))
        try:
            publish_copy(missing_url, published_data)
            service.wait_until(lambda: client.get("/ready").status_code == 200, 20, "the tables to load")
            assert client.get("/health").json()["status"] == "ok"
            assert client.get("/recommendations/default").status_code == 200
            event = {"user_id": 1, "item_id": 2, "event": "view"}
            assert client.post("/events", json=event, headers=AUTH).status_code == 201
        finally:
            service.stop()
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{missing.database}" WITH (FORCE)'))
            admin.dispose()


def test_hot_reload_swaps_versions_without_failing_requests(
    postgres_copy: str, published_data: PublishedData, start_service: StartService
) -> None:
    service = start_service(postgres_copy)
    default = published_data.tables["default_recommendations"].sort_values("rank")
    old_top = default["item_id"].astype(int).tolist()[:10]
    # Version 2: the same items in reverse order, so every answer is visibly old or new.
    reversed_frame = default.assign(rank=list(range(len(default), 0, -1)))
    new_top = reversed_frame.sort_values("rank")["item_id"].astype(int).tolist()[:10]
    assert new_top != old_top

    answers: list[tuple[int, ...]] = []
    failures: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=service.url, timeout=10) as client:
            while not stop.is_set():
                try:
                    response = client.get("/recommendations/default")
                    personal = client.get(f"/recommendations/users/{published_data.ranked_user(5)}")
                except httpx.HTTPError as error:
                    failures.append(repr(error))
                    continue
                if response.status_code != 200 or personal.status_code != 200:
                    failures.append(f"{response.status_code} {personal.status_code}")
                    continue
                answers.append(tuple(item["item_id"] for item in response.json()["items"]))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        engine = create_db_engine(postgres_copy)
        DEFAULT_RECOMMENDATIONS.publish(
            engine,
            reversed_frame,
            as_of=datetime(2026, 1, 2),
        )
        engine.dispose()
        service.wait_until(
            lambda: (
                service.client().get("/health").json()["tables"]["default_recommendations"]["version"] == 2
            ),
            20,
            "version 2 to be loaded",
        )
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)

    assert failures == []
    assert set(answers) == {tuple(old_top), tuple(new_top)}
    # Once the new version answered, the old one never came back.
    first_new = answers.index(tuple(new_top))
    assert all(answer == tuple(new_top) for answer in answers[first_new + 50 :])
    health = service.client().get("/health").json()
    assert health["tables"]["default_recommendations"]["as_of"] == "2026-01-02T00:00:00Z"
    # Unchanged tables were not reloaded.
    assert health["tables"]["ranked_recommendations"]["version"] == 1


DISABLED = "this endpoint is disabled: no API key is configured on the server (set RECSYS_API_KEY)"


@pytest.mark.anyio
async def test_write_endpoints_refused_when_no_key_is_configured(
    sqlite_copy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(SERVICE_DIR))
    from recsys_app.recsys_app import create_app

    app = create_app(ServiceSettings(_env_file=None, database_url=sqlite_copy, api_key=None))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://service") as client,
    ):
        for headers in ({}, {"X-API-Key": ""}, {"X-API-Key": "anything"}):
            event = {"user_id": 1, "item_id": 2, "event": "view"}
            response = await client.post("/events", json=event, headers=headers)
            assert response.status_code == 503
            assert response.json() == {"detail": DISABLED}
        assert (await client.post("/admin/reload")).status_code == 503
        # Reads need no key.
        assert (await client.get("/recommendations/default")).status_code == 200
    engine = create_db_engine(sqlite_copy)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM online_events")).scalar() == 0
    engine.dispose()
