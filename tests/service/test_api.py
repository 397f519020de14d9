"""The HTTP API over real HTTP, on PostgreSQL and on SQLite, against the pipeline's tables."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from recsys.service.fallbacks import FallbackReason
from recsys.storage.database import create_db_engine
from tests.service.conftest import API_KEY, LiveService, PublishedData

AUTH = {"X-API-Key": API_KEY}
MAX_K = 30  # rows published per user (RECSYS_N_PERSONALIZED_RECOMMENDATIONS)
# Each route's largest k is what its table publishes per key (the settings' defaults).
K_BOUNDS = {
    "/recommendations/default": 100,
    "/recommendations/users/{user_id}": MAX_K,
    "/recommendations/users/{user_id}/online": MAX_K,
    "/items/{item_id}/similar": 20,
}


def fresh_user() -> int:
    """A user id no table and no other test uses."""
    return random.randrange(10**12, 2 * 10**12)


def post_events(service: LiveService, user_id: int, items: list[int], event: str = "view") -> None:
    base = datetime.now(UTC) - timedelta(minutes=len(items))
    with service.client() as client:
        for offset, item in enumerate(items):
            moment = (base + timedelta(seconds=offset)).isoformat()
            body = {"user_id": user_id, "item_id": item, "event": event, "timestamp": moment}
            response = client.post("/events", json=body, headers=AUTH)
            assert response.status_code == 201, response.text


def test_default_recommendations_are_the_published_top_k(
    service: LiveService, published_data: PublishedData
) -> None:
    expected = published_data.tables["default_recommendations"].sort_values("rank")["item_id"].tolist()
    response = service.client().get("/recommendations/default", params={"k": 7})
    assert response.status_code == 200
    body = response.json()
    assert body["k"] == 7
    assert [item["item_id"] for item in body["items"]] == expected[:7]
    assert {item["source"] for item in body["items"]} == {"default"}


def test_user_with_history_gets_ranked_recommendations(
    service: LiveService, published_data: PublishedData
) -> None:
    user = published_data.ranked_user(0)
    response = service.client().get(f"/recommendations/users/{user}", params={"k": 12})
    assert response.status_code == 200
    body = response.json()
    assert body["user_id"] == user
    assert body["sources"] == ["ranked"]
    assert body["fallbacks"] == []
    assert [i["item_id"] for i in body["items"]] == published_data.list_of("ranked_recommendations", user)[
        :12
    ]


def test_unknown_user_gets_default_recommendations(
    service: LiveService, published_data: PublishedData
) -> None:
    response = service.client().get(f"/recommendations/users/{fresh_user()}", params={"k": 5})
    assert response.status_code == 200
    body = response.json()
    assert body["sources"] == ["default"]
    assert body["fallbacks"] == [FallbackReason.COLD_USER]
    expected = published_data.tables["default_recommendations"].sort_values("rank")["item_id"].tolist()
    assert [i["item_id"] for i in body["items"]] == expected[:5]


def test_online_events_are_blended_deduplicated_and_bought_items_filtered(
    service: LiveService, published_data: PublishedData
) -> None:
    user = published_data.ranked_user(random.randrange(1, 500))
    ranked = published_data.list_of("ranked_recommendations", user)
    seed_item = published_data.item_with_neighbours(3)
    post_events(service, user, [seed_item, published_data.item_with_neighbours(4)])
    # The user buys their first ranked item online: it must disappear from every list.
    post_events(service, user, [ranked[0]], event="transaction")

    with service.client() as client:
        online = client.get(f"/recommendations/users/{user}/online", params={"k": 10}).json()
        blended = client.get(f"/recommendations/users/{user}", params={"k": MAX_K}).json()

    assert online["items"], online
    # No session model in this store: co-visitation neighbours, and the session's items shown back.
    assert online["sources"][0] == "online_i2i"
    assert set(online["sources"]) <= {"online_i2i", "recently_viewed"}
    assert seed_item not in [i["item_id"] for i in online["items"] if i["source"] != "recently_viewed"]
    items = [i["item_id"] for i in blended["items"]]
    assert len(items) == MAX_K == len(set(items))
    assert ranked[0] not in items
    assert blended["sources"][0] == "online_i2i"
    assert "ranked" in blended["sources"]
    # Interleaved, online first: the first two slots come from the two sources.
    assert [i["source"] for i in blended["items"][:2]] == ["online_i2i", "ranked"]
    online_ids = [i["item_id"] for i in online["items"]]
    assert items[0] == online_ids[0]


def test_cold_user_with_online_events_gets_online_and_default(
    service: LiveService, published_data: PublishedData
) -> None:
    user = fresh_user()
    post_events(service, user, [published_data.item_with_neighbours(7)])
    body = service.client().get(f"/recommendations/users/{user}", params={"k": 10}).json()
    # No session model in this store: co-visitation neighbours, the viewed item shown back, popular.
    assert body["sources"][0] == "online_i2i"
    assert set(body["sources"]) <= {"online_i2i", "recently_viewed", "default"}
    assert body["fallbacks"] == [FallbackReason.COLD_USER]
    assert len(body["items"]) == 10


def test_online_recommendations_without_events_are_empty(service: LiveService) -> None:
    body = service.client().get(f"/recommendations/users/{fresh_user()}/online").json()
    assert body["items"] == []
    assert body["fallbacks"] == [FallbackReason.NO_ONLINE_EVENTS]


def test_similar_items(service: LiveService, published_data: PublishedData) -> None:
    item = published_data.item_with_neighbours(0)
    response = service.client().get(f"/items/{item}/similar", params={"k": 4})
    assert response.status_code == 200
    body = response.json()
    assert [i["item_id"] for i in body["items"]] == published_data.list_of("similar_items", item)[:4]
    assert {i["source"] for i in body["items"]} <= {"covisitation", "als"}


def test_catalogue_item_without_neighbours_has_no_similar_items(
    service: LiveService, published_data: PublishedData
) -> None:
    lonely = set(published_data.items["item_id"]) - set(published_data.tables["similar_items"]["item_id"])
    item = min(lonely)
    response = service.client().get(f"/items/{item}/similar")
    assert response.status_code == 200
    assert response.json()["items"] == []


def test_unknown_item_is_404_with_a_clear_message(service: LiveService) -> None:
    response = service.client().get("/items/987654321012/similar")
    assert response.status_code == 404
    assert response.json() == {
        "detail": "item 987654321012 is unknown: it is not in the catalogue or the similar-items table"
    }


@pytest.mark.parametrize(
    ("path", "field", "message"),
    [
        ("/recommendations/default?k=0", "k", "greater than or equal to 1"),
        ("/recommendations/default?k=101", "k", "less than or equal to 100"),
        ("/recommendations/users/1?k=ten", "k", "valid integer"),
        ("/recommendations/users/abc", "user_id", "valid integer"),
        ("/recommendations/users/-5", "user_id", "greater than or equal to 0"),
        (f"/recommendations/users/{2**63}", "user_id", "less than or equal to"),
        ("/recommendations/users/1/online?k=100", "k", f"less than or equal to {MAX_K}"),
        ("/items/x/similar", "item_id", "valid integer"),
        ("/items/1/similar?k=25", "k", "less than or equal to 20"),
    ],
)
def test_malformed_input_is_422_naming_the_field(
    service: LiveService, path: str, field: str, message: str
) -> None:
    response = service.client().get(path)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"][-1] == field
    assert message in error["msg"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user_id": 1, "item_id": 2, "event": "click"}, "event"),
        ({"user_id": -1, "item_id": 2, "event": "view"}, "user_id"),
        ({"user_id": 1, "event": "view"}, "item_id"),
        ({"user_id": 1, "item_id": 2, "event": "view", "colour": "red"}, "colour"),
        ({"user_id": 1, "item_id": 2, "event": "view", "timestamp": "2999-01-01T00:00:00Z"}, "timestamp"),
        ({"user_id": 1, "item_id": 2, "event": "view", "timestamp": "yesterday"}, "timestamp"),
        ({"user_id": 1, "item_id": 2, "event": "view", "timestamp": 1767323045678}, "timestamp"),
    ],
)
def test_malformed_event_is_422(service: LiveService, body: dict[str, object], field: str) -> None:
    response = service.client().post("/events", json=body, headers=AUTH)
    assert response.status_code == 422
    assert field in [str(part) for error in response.json()["detail"] for part in error["loc"]]


def test_event_is_stored_in_the_database(service: LiveService) -> None:
    user = fresh_user()
    body = {"user_id": user, "item_id": 42, "event": "addtocart", "timestamp": "2026-01-02T03:04:05.678Z"}
    response = service.client().post("/events", json=body, headers=AUTH)
    assert response.status_code == 201
    stored = response.json()
    assert stored["event"] == "addtocart"
    assert datetime.fromisoformat(stored["timestamp"]) == datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    engine = create_db_engine(service.database_url)
    with engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT item_id, event, timestamp FROM online_events WHERE user_id = :u"), {"u": user}
        ).one()
    engine.dispose()
    assert tuple(row) == (42, "addtocart", 1767323045678)


@pytest.mark.parametrize(
    ("headers", "status", "detail"),
    [
        ({}, 401, "missing API key: send it in the X-API-Key header"),
        ({"X-API-Key": "wrong"}, 403, "invalid API key"),
        ({"X-API-Key": "ключ"}, 403, "invalid API key"),
    ],
)
@pytest.mark.parametrize(("method", "path"), [("POST", "/events"), ("POST", "/admin/reload")])
def test_write_endpoints_need_the_api_key(
    service: LiveService, method: str, path: str, headers: dict[str, str], status: int, detail: str
) -> None:
    body = {"user_id": 1, "item_id": 2, "event": "view"}
    encoded = {name: value.encode() for name, value in headers.items()}
    response = service.client().request(method, path, json=body, headers=encoded)
    assert response.status_code == status
    assert response.json() == {"detail": detail}


def test_admin_reload_with_the_key(service: LiveService) -> None:
    response = service.client().post("/admin/reload", headers=AUTH)
    assert response.status_code == 200
    assert response.json() == {"changed": False, "versions": dict.fromkeys(TABLES, 1)}


TABLES = (
    "default_recommendations",
    "ranked_recommendations",
    "personalized_recommendations",
    "i2i_recommendations",
    "similar_items",
    "user_histories",
)


def test_health_reports_versions_and_database(service: LiveService, published_data: PublishedData) -> None:
    with service.client() as client:
        health = client.get("/health").json()
        ready = client.get("/ready")
    assert health["status"] == "ok"
    assert health["ready"] is True
    assert health["database"] == {"reachable": True, "error": None}
    assert set(health["tables"]) == set(TABLES)
    for name, table in health["tables"].items():
        assert table["version"] == 1
        assert table["rows"] == len(published_data.tables[name])
        assert table["as_of"] == "2026-01-01T00:00:00Z"
    assert ready.status_code == 200
    assert ready.json() == {"ready": True}


def test_metrics_count_requests_by_kind(service: LiveService) -> None:
    def value(text: str, series: str) -> float:
        return next(float(line.split()[-1]) for line in text.splitlines() if line.startswith(series + " "))

    with service.client() as client:
        before = client.get("/metrics").text
        client.get("/recommendations/default")
        client.get(f"/recommendations/users/{fresh_user()}")
        client.get(f"/recommendations/users/{fresh_user()}")
        client.get(f"/recommendations/users/{fresh_user()}/online")
        after = client.get("/metrics").text
    for kind, added in (("default", 1), ("personalized", 2), ("online", 1)):
        series = f'recsys_recommendation_requests_total{{kind="{kind}"}}'
        assert value(after, series) - value(before, series) == added
    cold = 'recsys_recommendation_fallbacks_total{reason="cold_user"}'
    assert value(after, cold) - value(before, cold) == 2
    assert value(after, "recsys_process_memory_usage_bytes") > 10 * 2**20
    # Loading the published tables at start-up took measurable time.
    assert value(after, "recsys_store_load_seconds") > 0
    assert 'http_requests_total{handler="/recommendations/default",method="GET",status="200"}' in after
    assert (
        'http_request_duration_seconds_bucket{handler="/recommendations/default",le="0.005",method="GET"}'
        in after
    )


def test_http_metrics_are_labelled_by_route_template(service: LiveService) -> None:
    def count(text: str, labels: str) -> float:
        prefix = f"http_requests_total{{{labels}}} "
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))

    user = fresh_user()
    with service.client() as client:
        before = client.get("/metrics").text
        client.get(f"/recommendations/users/{user}")
        client.get(f"/recommendations/users/{user + 1}")
        client.get("/recommendations/users/not-a-number")
        client.get(f"/no/such/path/{user}")
        client.request("PROPFIND", "/recommendations/default")
        after = client.get("/metrics").text
    template = 'handler="/recommendations/users/{user_id}",method="GET"'
    # One series per route template, not per user; a 422 is the route's too.
    assert count(after, template + ',status="200"') - count(before, template + ',status="200"') == 2
    assert count(after, template + ',status="422"') - count(before, template + ',status="422"') == 1
    assert f"/recommendations/users/{user}" not in after
    # Unrouted paths share one series, an unknown method is "other", and the scrapes are not counted.
    unrouted = 'handler="none",method="GET",status="404"'
    assert count(after, unrouted) - count(before, unrouted) == 1
    brewed = 'handler="/recommendations/default",method="other",status="405"'
    assert count(after, brewed) - count(before, brewed) == 1
    assert 'handler="/metrics"' not in after


def test_cors_only_for_configured_origins(postgres_service: LiveService, sqlite_service: LiveService) -> None:
    origin = {"Origin": "https://shop.example"}
    configured = sqlite_service.client().get("/recommendations/default", headers=origin)
    assert configured.headers["access-control-allow-origin"] == "https://shop.example"
    other = sqlite_service.client().get(
        "/recommendations/default", headers={"Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in other.headers
    # No origin is configured by default.
    default = postgres_service.client().get("/recommendations/default", headers=origin)
    assert "access-control-allow-origin" not in default.headers


def test_openapi_documents_the_k_bound_and_the_api_key(service: LiveService) -> None:
    schema = service.client().get("/openapi.json").json()
    for path, largest in K_BOUNDS.items():
        operation = schema["paths"][path]["get"]
        k = next(p for p in operation["parameters"] if p["name"] == "k")
        assert (k["schema"]["minimum"], k["schema"]["maximum"]) == (1, largest), path
        assert not any(key.startswith("x-") for key in operation), path
    assert schema["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
    assert "security" in schema["paths"]["/events"]["post"]
    assert "security" not in schema["paths"]["/recommendations/default"]["get"]
    assert service.client().get("/docs").status_code == 200
