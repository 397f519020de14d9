"""Request count and processing time of every HTTP request, by route template, method and status.

A pure ASGI middleware that reads the route the router chose (``scope["route"]``) once the
request is answered, so it adds no route matching of its own. It replaces
prometheus-fastapi-instrumentator, whose middleware matched every route again, built a
request and a response object and looked up label children on each request: 45 µs of a
220 µs personalised request (benchmarks/results/service.md). The metric names and labels are
the instrumentator's, so its dashboards and alerts apply unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recsys.service.metrics import ServiceMetrics

# The handler label of a request no route matched (404): raw paths would be unbounded labels.
UNMATCHED = "none"


class HttpMetricsMiddleware:
    """Count and time HTTP requests (``http_requests_total``, ``http_request_duration_seconds``).

    Parameters
    ----------
    app : ASGIApp
        The application it wraps.
    metrics : ServiceMetrics
        Where the requests are counted.
    excluded : collection of str
        Route templates not counted (the scrape endpoint).
    """

    def __init__(
        self, app: ASGIApp, metrics: ServiceMetrics, excluded: Collection[str] = ("/metrics",)
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.excluded = frozenset(excluded)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # An exception escaping the app becomes a 500 in the outer error middleware.
        status = 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            seconds = time.perf_counter() - started
            handler = getattr(scope.get("route"), "path", UNMATCHED)
            if handler not in self.excluded:
                self.metrics.count_http_request(handler, scope["method"], status, seconds)
