"""A real Prometheus scrapes the live service; every dashboard query must return data.

Prometheus (Debian's ``prometheus`` package, installed by ``dev_scripts/ensure_test_services.sh``)
runs on loopback with a one-second scrape interval and the project's alert rules. After some
traffic, each query of each panel of the Grafana dashboard is evaluated through Prometheus'
HTTP API, with Grafana's interval variables replaced by fixed durations.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import unavailable
from tests.service.conftest import API_KEY, SERVICE_DIR, LiveService, PublishedData, free_port, stop_process

DASHBOARD = SERVICE_DIR / "grafana" / "dashboards" / "recsys_service.json"
ALERTS = SERVICE_DIR / "prometheus" / "alerts.yml"
# What Grafana would put in place of its variables, fitting a one-second scrape interval.
GRAFANA_VARIABLES = {"$__rate_interval": "15s", "$__interval": "1s", "$__range": "2m"}


class Prometheus:
    """A Prometheus server process scraping one target."""

    def __init__(self, target: str, folder: Path) -> None:
        executable = shutil.which("prometheus")
        if executable is None:
            unavailable("the prometheus binary is not installed (run dev_scripts/ensure_test_services.sh)")
        assert executable is not None
        # JSON is YAML: no template needed.
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [{"job_name": "recsys_service", "static_configs": [{"targets": [target]}]}],
        }
        (folder / "prometheus.yml").write_text(json.dumps(config))
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = folder / "prometheus.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    executable,
                    f"--config.file={folder / 'prometheus.yml'}",
                    f"--storage.tsdb.path={folder / 'data'}",
                    f"--web.listen-address={self.url.removeprefix('http://')}",
                    "--log.level=warn",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.wait(
            lambda: httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200, "Prometheus to start"
        )

    def wait(self, condition: Any, what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"prometheus exited: {self.log.read_text()[-3000:]}")
            try:
                if condition():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        pytest.fail(f"timed out waiting for {what}: {self.log.read_text()[-3000:]}")

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", f"{expr}: {body}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def stop(self) -> None:
        stop_process(self.process)


@pytest.fixture
def prometheus(postgres_service: LiveService, tmp_path: Path) -> Iterator[Prometheus]:
    server = Prometheus(f"127.0.0.1:{postgres_service.port}", tmp_path)
    try:
        yield server
    finally:
        server.stop()


def send_traffic(service: LiveService, data: PublishedData) -> dict[str, int]:
    """A bit of every kind of request; returns how many of each kind of recommendation were asked."""
    counts = {"default": 0, "personalized": 0, "online": 0}
    user = random.randrange(3 * 10**12, 4 * 10**12)
    with service.client() as client:
        event = {"user_id": user, "item_id": data.item_with_neighbours(1), "event": "view"}
        assert client.post("/events", json=event, headers={"X-API-Key": API_KEY}).status_code == 201
        for round_number in range(6):
            assert client.get("/recommendations/default", params={"k": 5}).status_code == 200
            assert client.get(f"/recommendations/users/{data.ranked_user(round_number)}").status_code == 200
            assert client.get(f"/recommendations/users/{user}").status_code == 200
            assert client.get(f"/recommendations/users/{user}/online").status_code == 200
            assert client.get(f"/items/{data.item_with_neighbours(0)}/similar").status_code == 200
            assert client.get("/items/987654321987/similar").status_code == 404
            assert client.get("/recommendations/default", params={"k": 0}).status_code == 422
            counts["default"] += 1
            counts["personalized"] += 2
            counts["online"] += 1
            time.sleep(0.5)
    return counts


def panel_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"unhandled Grafana variable in {expr}"
            queries.append((panel["title"], expr))
    return queries


def test_every_dashboard_panel_query_returns_data(
    prometheus: Prometheus, postgres_service: LiveService, published_data: PublishedData
) -> None:
    # The target is up and has been scraped a few times before the traffic, so that rates and
    # increases see the counters go up.
    prometheus.wait(
        lambda: (
            (r := prometheus.query('count_over_time(up{job="recsys_service"}[1m])'))
            and float(r[0]["value"][1]) >= 3
        ),
        "three scrapes of the service",
    )
    assert float(prometheus.query('up{job="recsys_service"}')[0]["value"][1]) == 1.0
    counts = send_traffic(postgres_service, published_data)
    time.sleep(2.5)

    queries = panel_queries()
    assert len(queries) >= 7
    for title, expr in queries:
        result = prometheus.query(expr)
        assert result, f"panel {title!r}: {expr} returned no series"
        values = [float(series["value"][1]) for series in result]
        assert any(math.isfinite(v) for v in values), f"panel {title!r}: {expr} returned only {values}"

    # The numbers mean what the panels say.
    for kind, sent in counts.items():
        title = {
            "default": "Default recommendation requests",
            "personalized": "Personalized recommendation requests",
            "online": "Online (i2i) recommendation requests",
        }[kind]
        expr = next(e for t, e in queries if t == title)
        # increase() extrapolates to the window's edges, so it can exceed the count a little.
        assert float(prometheus.query(expr)[0]["value"][1]) >= sent * 0.9, title
    statuses = {
        s["metric"]["status"]
        for s in prometheus.query(next(e for t, e in queries if t == "Requests by status"))
    }
    assert {"200", "201", "404", "422"} <= statuses
    ram = prometheus.query(next(e for t, e in queries if t == "RAM usage (MB)"))
    assert 20 < float(ram[0]["value"][1]) < 4096
    p95 = prometheus.query(next(e for t, e in queries if t == "Request processing time p95"))
    assert any(0 < float(s["value"][1]) < 1 for s in p95 if math.isfinite(float(s["value"][1])))

    rules = httpx.get(f"{prometheus.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = {rule["name"]: rule["health"] for group in rules for rule in group["rules"]}
    assert set(loaded) == {
        "RecsysServiceDown",
        "RecsysHighLatencyP95",
        "RecsysHigh5xxRate",
        "RecsysMemoryNearLimit",
        "RecsysDatabaseUnreachable",
    }
    # Evaluated against the live series without error (none fires: the service is healthy).
    prometheus.wait(
        lambda: all(h == "ok" for h in _rule_health(prometheus).values()), "the rules to evaluate"
    )
    alerts = httpx.get(f"{prometheus.url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    assert alerts == []


def _rule_health(prometheus: Prometheus) -> dict[str, str]:
    groups = httpx.get(f"{prometheus.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    return {rule["name"]: rule["health"] for group in groups for rule in group["rules"]}
