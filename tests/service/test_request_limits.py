"""Oversized and malformed requests over real HTTP: bodies are refused early, bad input is not echoed."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from recsys.service.settings import ServiceSettings
from tests.service.conftest import API_KEY, LiveService

AUTH = {"X-API-Key": API_KEY}
LIMIT = ServiceSettings.model_fields["max_request_body_bytes"].default
EVENT = {"user_id": 1, "item_id": 2, "event": "view"}
# Far more than any 422 needs: the field, the reason and a short prefix of the input.
SMALL_ANSWER_BYTES = 2_000


def raw_exchange(service: LiveService, head: str, body_parts: Iterator[bytes]) -> tuple[int, bytes]:
    """Send a request head and body parts on a plain socket (no client library deciding how),
    then read the answer: its status and body. Fails if none comes within 10 s."""
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        sock.sendall(head.encode())
        for part in body_parts:
            sock.sendall(part)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            pytest.fail(f"no complete answer within 10 s; received {received[:200]!r}")
    head_bytes, _, answer_body = received.partition(b"\r\n\r\n")
    return int(head_bytes.split()[1]), answer_body


def post_head(service: LiveService, extra: str) -> str:
    return (
        f"POST /events HTTP/1.1\r\nHost: 127.0.0.1:{service.port}\r\nX-API-Key: {API_KEY}\r\n"
        f"Content-Type: application/json\r\n{extra}\r\n"
    )


def test_body_declared_larger_than_the_limit_is_refused_before_it_is_sent(service: LiveService) -> None:
    # 20 MB announced, nothing sent: the answer must come from the header alone.
    status, body = raw_exchange(service, post_head(service, "Content-Length: 20000000\r\n"), iter(()))
    assert status == 413
    assert str(LIMIT) in json.loads(body)["detail"]


def test_chunked_body_is_refused_once_it_passes_the_limit(service: LiveService) -> None:
    def chunks() -> Iterator[bytes]:
        # Just past the limit, and the body never ends: the server must stop reading and answer.
        for size in (LIMIT // 2, LIMIT // 2 + 1):
            yield b"%x\r\n%s\r\n" % (size, b" " * size)

    status, body = raw_exchange(service, post_head(service, "Transfer-Encoding: chunked\r\n"), chunks())
    assert status == 413
    assert "RECSYS_MAX_REQUEST_BODY_BYTES" in json.loads(body)["detail"]


def test_chunked_body_within_the_limit_is_recorded(service: LiveService) -> None:
    event = json.dumps(EVENT).encode()
    parts = iter([event[:10], event[10:]])
    response = service.client().post(
        "/events", content=parts, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == 201, response.text
    assert response.json()["item_id"] == EVENT["item_id"]


def test_huge_body_is_answered_413_quickly_and_briefly(service: LiveService) -> None:
    body = json.dumps([0] * 3_000_000).encode()
    started = time.perf_counter()
    response = service.client().post(
        "/events", content=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert len(response.content) < SMALL_ANSWER_BYTES
    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize(
    "make_body",
    [
        pytest.param(lambda size: [0] * (size // 3), id="array"),
        pytest.param(lambda size: {**EVENT, "event": "v" * (size - 100)}, id="long-string"),
        pytest.param(lambda size: {**EVENT, "timestamp": "2" * (size - 100)}, id="long-timestamp"),
    ],
)
def test_invalid_body_is_not_echoed_back(service: LiveService, make_body: Callable[[int], object]) -> None:
    body = make_body(LIMIT - 200)
    assert len(json.dumps(body)) < LIMIT
    response = service.client().post("/events", json=body, headers=AUTH)
    assert response.status_code == 422
    assert len(response.content) < SMALL_ANSWER_BYTES, response.text[:300]
    detail = response.json()["detail"][0]
    assert detail["loc"][0] == "body" and detail["input"].endswith("…")


def test_invalid_query_parameter_is_not_echoed_back(service: LiveService) -> None:
    response = service.client().get("/recommendations/default", params={"k": "9" * 5000})
    assert response.status_code == 422
    assert len(response.content) < SMALL_ANSWER_BYTES
    assert response.json()["detail"][0]["input"].startswith("999")


def test_short_invalid_input_is_echoed_whole(service: LiveService) -> None:
    response = service.client().post("/events", json={**EVENT, "user_id": "12"}, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["detail"][0]["input"] == "12"


def test_the_body_limit_is_a_setting(start_service: Callable[..., LiveService], sqlite_copy: str) -> None:
    live = start_service(sqlite_copy, env={"RECSYS_MAX_REQUEST_BODY_BYTES": "200"})
    compact = json.dumps(EVENT).encode()
    padded = compact + b" " * (201 - len(compact))
    headers = {**AUTH, "Content-Type": "application/json"}
    with live.client() as client:
        assert client.post("/events", content=compact, headers=headers).status_code == 201
        refused = client.post("/events", content=padded, headers=headers)
    assert refused.status_code == 413
    assert "200 bytes" in refused.json()["detail"]
