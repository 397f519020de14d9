"""Check a running recommendation service scenario by scenario; results go to ``test_service.log``.

Run from ``fast_api_service/`` against a started service::

    RECSYS_API_KEY=... python app_test.py [--base-url http://127.0.0.1:8081] [--user-with-history ID]

Scenarios: health, a cold user, a user with history, the same user after new online events
(needs the API key in ``RECSYS_API_KEY``; skipped without it), an unknown item and bad input.
Without ``--user-with-history`` the first user id (from 0 up) that gets personalised
recommendations is used. The exit code is 0 when every scenario behaved as expected.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from recsys.service.fallbacks import FallbackReason

DEFAULT_LOG = Path(__file__).resolve().parent / "test_service.log"
OFFLINE_SOURCES = {"ranked", "als", "i2i"}


class ScenarioError(AssertionError):
    """A scenario did not behave as expected."""


class ScenarioSkipError(Exception):
    """A scenario that cannot run here (e.g. no API key)."""


@dataclass
class Checker:
    """Runs scenarios against one service and keeps a readable record of each."""

    base_url: str
    api_key: str | None
    k: int = 10
    lines: list[str] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=lambda: {"PASS": 0, "FAIL": 0, "SKIP": 0})
    session: requests.Session = field(default_factory=requests.Session)

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One request, logged with its status and time."""
        started = time.perf_counter()
        response = self.session.request(method, self.base_url + path, timeout=30, **kwargs)
        elapsed = (time.perf_counter() - started) * 1000
        self.lines.append(f"    {method} {path} -> {response.status_code} in {elapsed:.1f} ms")
        self.lines.append(f"      {response.text[:400]}")
        return response

    def expect(self, condition: bool, message: str) -> None:
        """Fail the scenario with ``message`` unless ``condition``."""
        if not condition:
            raise ScenarioError(message)

    def run(self, name: str, scenario: Callable[[], None]) -> None:
        """Run one scenario and record its outcome."""
        self.lines.append(f"* {name}")
        try:
            scenario()
            outcome, note = "PASS", ""
        except ScenarioSkipError as skipped:
            outcome, note = "SKIP", f": {skipped}"
        except (ScenarioError, requests.RequestException, ValueError, KeyError) as error:
            outcome, note = "FAIL", f": {error}"
        self.outcomes[outcome] += 1
        self.lines.append(f"  [{outcome}] {name}{note}")

    # -- scenarios ---------------------------------------------------------------------------
    def health(self) -> None:
        body = self.call("GET", "/health").json()
        versions = {name: table["version"] for name, table in body["tables"].items()}
        self.lines.append(f"    status={body['status']} database={body['database']} versions={versions}")
        self.expect(body["status"] in {"ok", "degraded"}, f"unexpected status {body['status']!r}")

    def recommend(self, user_id: int) -> dict[str, Any]:
        response = self.call("GET", f"/recommendations/users/{user_id}", params={"k": self.k})
        self.expect(response.status_code == 200, f"expected 200, got {response.status_code}")
        body: dict[str, Any] = response.json()
        items = [item["item_id"] for item in body["items"]]
        self.expect(len(items) == len(set(items)), "duplicate items in the answer")
        self.lines.append(f"    sources={body['sources']} fallbacks={body['fallbacks']} items={items}")
        return body

    def cold_user(self) -> None:
        user = random.randrange(10**15, 2 * 10**15)
        body = self.recommend(user)
        self.expect(
            body["sources"] == ["default"], f"a cold user should get default items, got {body['sources']}"
        )
        self.expect(FallbackReason.COLD_USER in body["fallbacks"], "the cold_user fallback is not reported")
        self.expect(len(body["items"]) == self.k, f"expected {self.k} items")

    def find_user_with_history(self, limit: int) -> int:
        for user in range(limit):
            body = self.session.get(
                f"{self.base_url}/recommendations/users/{user}", params={"k": 1}, timeout=30
            ).json()
            if FallbackReason.COLD_USER not in body["fallbacks"] and OFFLINE_SOURCES & set(body["sources"]):
                return user
        raise ScenarioError(f"no user with personalised recommendations among ids 0..{limit - 1}")

    def user_with_history(self, user: int) -> None:
        body = self.recommend(user)
        self.expect(
            bool(OFFLINE_SOURCES & set(body["sources"])), f"expected an offline source, got {body['sources']}"
        )
        self.expect(len(body["items"]) == self.k, f"expected {self.k} items")

    def user_with_online_events(self, user: int) -> None:
        if not self.api_key:
            raise ScenarioSkipError("RECSYS_API_KEY is not set, so no event can be recorded")
        before = self.recommend(user)
        # Items with neighbours, so that online i2i has something to say.
        viewed = [
            item["item_id"]
            for item in before["items"]
            if self.call("GET", f"/items/{item['item_id']}/similar", params={"k": 1}).json().get("items")
        ][:3]
        self.expect(bool(viewed), "none of the user's items has similar items")
        for item in viewed:
            event = {
                "user_id": user,
                "item_id": item,
                "event": "view",
                "timestamp": datetime.now(UTC).isoformat(),
            }
            response = self.call("POST", "/events", json=event, headers={"X-API-Key": self.api_key})
            self.expect(response.status_code == 201, f"recording an event gave {response.status_code}")
        after = self.recommend(user)
        self.expect("online_i2i" in after["sources"], f"online i2i is not blended in: {after['sources']}")
        online = self.call("GET", f"/recommendations/users/{user}/online", params={"k": self.k}).json()
        self.expect(bool(online["items"]), "the online endpoint has no items after the events")

    def unknown_item(self) -> None:
        response = self.call("GET", f"/items/{10**15 + 7}/similar")
        self.expect(response.status_code == 404, f"expected 404, got {response.status_code}")
        self.expect("unknown" in response.json()["detail"], "the 404 does not say the item is unknown")

    def bad_input(self) -> None:
        for path in (
            "/recommendations/users/abc",
            "/recommendations/default?k=0",
            "/recommendations/users/1?k=100000",
        ):
            response = self.call("GET", path)
            self.expect(response.status_code == 422, f"{path}: expected 422, got {response.status_code}")
            self.expect(bool(response.json()["detail"][0]["msg"]), f"{path}: no message")
        if self.api_key:
            event = {"user_id": 1, "item_id": 1, "event": "click"}
            response = self.call("POST", "/events", json=event, headers={"X-API-Key": self.api_key})
            self.expect(response.status_code == 422, f"an unknown event type gave {response.status_code}")
        response = self.call("POST", "/events", json={"user_id": 1, "item_id": 1, "event": "view"})
        self.expect(response.status_code in {401, 503}, f"an event without a key gave {response.status_code}")


def main(argv: list[str] | None = None) -> int:
    """Run every scenario, write the log, return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default=os.environ.get("RECSYS_SERVICE_URL", "http://127.0.0.1:8081"))
    parser.add_argument("--user-with-history", type=int, default=None)
    parser.add_argument(
        "--search-limit", type=int, default=5000, help="user ids tried to find one with history"
    )
    parser.add_argument("--log", type=Path, default=DEFAULT_LOG)
    args = parser.parse_args(argv)

    checker = Checker(args.base_url.rstrip("/"), os.environ.get("RECSYS_API_KEY") or None)
    checker.lines.append(
        f"Recommendation service check against {checker.base_url} at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    checker.run("health", checker.health)
    checker.run("cold user gets popular items", checker.cold_user)
    try:
        user = args.user_with_history
        if user is None:
            user = checker.find_user_with_history(args.search_limit)
    except (ScenarioError, requests.RequestException) as error:
        checker.lines.append(f"  [FAIL] finding a user with history: {error}")
        checker.outcomes["FAIL"] += 1
    else:
        checker.run(
            f"user {user} with history gets personalised items", lambda: checker.user_with_history(user)
        )
        checker.run(
            f"user {user} with new online events gets online i2i items",
            lambda: checker.user_with_online_events(user),
        )
    checker.run("unknown item is 404", checker.unknown_item)
    checker.run("bad input is 422", checker.bad_input)
    summary = ", ".join(f"{count} {outcome.lower()}" for outcome, count in checker.outcomes.items())
    checker.lines.append(f"Summary: {summary}")

    text = "\n".join(checker.lines) + "\n"
    args.log.write_text(text, encoding="utf-8")
    print(text, end="")
    return 1 if checker.outcomes["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
