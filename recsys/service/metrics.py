"""Prometheus metrics of the recommendation service.

Every metric lives in the registry passed in, so that several apps in one process (tests) do
not collide. Label values are fixed small sets and are created at start, so every series is
exported (as 0) before the first request and dashboards show data from the start; the HTTP
metrics are labelled by route template (not the raw path), a known method and the status code.

==========================================  =======  ==================================================
metric                                      type     meaning
==========================================  =======  ==================================================
``http_requests_total``                     counter  requests by ``handler``, ``method``, ``status``
``http_request_duration_seconds``           hist.    request processing time by ``handler``, ``method``
``recsys_process_memory_usage_bytes``       gauge    resident memory (RSS) of the process
``recsys_process_memory_limit_bytes``       gauge    memory limit of the container (or the host's RAM)
``recsys_recommendation_requests_total``    counter  recommendation requests by ``kind``
``recsys_recommendation_fallbacks_total``   counter  answers that fell back, by ``reason``
``recsys_online_events_recorded_total``     counter  online events stored, by ``event``
``recsys_store_reloads_total``              counter  table reloads by ``outcome``
``recsys_table_version``                    gauge    published version of each table in memory
``recsys_store_size_bytes``                 gauge    memory held by the in-memory tables
``recsys_store_load_seconds``               gauge    duration of the last load that changed a table
``recsys_database_up``                      gauge    1 if the last database call succeeded
==========================================  =======  ==================================================
"""

from __future__ import annotations

from pathlib import Path

import psutil
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from recsys.data.schema import EVENT_TYPES
from recsys.service.fallbacks import FallbackReason

REQUEST_KINDS = ("default", "personalized", "online")
RELOAD_OUTCOMES = ("changed", "unchanged", "failed")
# Request latency buckets: most answers take milliseconds, so the low end is fine-grained
# enough for a meaningful p95.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# The method label takes these values and "other": a client chooses the method, and every
# label value is a series kept for the life of the process.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# cgroup v2, then v1; a v1 "unlimited" is a huge number, so anything above the host's RAM is ignored.
_CGROUP_LIMIT_FILES = (
    Path("/sys/fs/cgroup/memory.max"),
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
)


def memory_limit_bytes() -> int:
    """The container's memory limit, or the host's total memory when there is none."""
    total = int(psutil.virtual_memory().total)
    for path in _CGROUP_LIMIT_FILES:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < total:
            return int(text)
    return total


class ServiceMetrics:
    """The service's own metrics in one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else standard_registry()
        process = psutil.Process()

        self.memory = Gauge(
            "recsys_process_memory_usage_bytes",
            "Resident memory of the service process",
            registry=self.registry,
        )
        self.memory.set_function(lambda: float(process.memory_info().rss))
        self.memory_limit = Gauge(
            "recsys_process_memory_limit_bytes",
            "Memory limit of the service's container (the host's memory without a limit)",
            registry=self.registry,
        )
        self.memory_limit.set(memory_limit_bytes())

        self.requests = self._counter(
            "recsys_recommendation_requests_total", "Recommendation requests by kind", "kind", REQUEST_KINDS
        )
        self.fallbacks = self._counter(
            "recsys_recommendation_fallbacks_total",
            "Recommendation answers that fell back, by reason",
            "reason",
            tuple(FallbackReason),
        )
        # Looked up once: ``labels()`` costs microseconds on every request.
        self._requests_by_kind = {kind: self.requests.labels(kind) for kind in REQUEST_KINDS}
        self._fallbacks_by_reason = {reason: self.fallbacks.labels(reason) for reason in FallbackReason}
        self.events = self._counter(
            "recsys_online_events_recorded_total", "Online events stored, by event type", "event", EVENT_TYPES
        )
        self.reloads = self._counter(
            "recsys_store_reloads_total",
            "Reloads of the published tables, by outcome",
            "outcome",
            RELOAD_OUTCOMES,
        )
        self.table_version = Gauge(
            "recsys_table_version", "Published version of each table in memory (0: none)", ["table"],
            registry=self.registry,
        )  # fmt: skip
        self.store_bytes = Gauge(
            "recsys_store_size_bytes", "Memory held by the in-memory tables", registry=self.registry
        )
        self.store_load_seconds = Gauge(
            "recsys_store_load_seconds",
            "Seconds the last load that changed a table took (start-up or reload: reading and indexing)",
            registry=self.registry,
        )
        self.database_up = Gauge(
            "recsys_database_up", "1 if the last database call succeeded, else 0", registry=self.registry
        )
        self.http_requests = Counter(
            "http_requests_total",
            "Total number of requests by method, status and handler.",
            ["handler", "method", "status"],
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds",
            "Request processing time by handler and method.",
            ["handler", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._http_series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def _counter(self, name: str, documentation: str, label: str, values: tuple[str, ...]) -> Counter:
        counter = Counter(name, documentation, [label], registry=self.registry)
        for value in values:
            counter.labels(value)
        return counter

    def count_request(self, kind: str, fallbacks: list[FallbackReason]) -> None:
        """One recommendation request of ``kind`` and the fallbacks its answer took."""
        self._requests_by_kind[kind].inc()
        for reason in fallbacks:
            self._fallbacks_by_reason[reason].inc()

    def count_http_request(self, handler: str, method: str, status: int, seconds: float) -> None:
        """One HTTP request to the route ``handler`` (a path template) and its processing time."""
        if method not in HTTP_METHODS:
            method = "other"
        key = (handler, method, status)
        # Label children are looked up once per series: ``labels()`` costs microseconds.
        series = self._http_series.get(key)
        if series is None:
            series = (
                self.http_requests.labels(handler, method, str(status)),
                self.http_duration.labels(handler, method),
            )
            self._http_series[key] = series
        series[0].inc()
        series[1].observe(seconds)


def standard_registry() -> CollectorRegistry:
    """A fresh registry with the process, platform and GC collectors of the default one."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry
