"""The FastAPI application: ``uvicorn recsys_app.recsys_app:app`` (run from ``fast_api_service/``).

A thin shell over :class:`recsys.service.service.RecommendationService`: the lifespan loads the
published tables and the online events into memory and starts background tasks that swap in
newer table versions and read newly recorded events; the
routers validate requests and call the service; Prometheus metrics are served at ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

import recsys
from recsys.service.metrics import ServiceMetrics
from recsys.service.service import (
    DatabaseUnavailableError,
    NotReadyError,
    RecommendationService,
    TooManyItemsError,
    UnknownItemError,
    k_bound,
)
from recsys.service.settings import ServiceSettings, load_service_settings
from recsys.service.storefront import Storefront
from recsys_app.api.deps import K_BOUND_EXTENSION
from recsys_app.api.main import api_router
from recsys_app.api.routes.shop import mount_storefront
from recsys_app.http_metrics import HttpMetricsMiddleware
from recsys_app.input_limits import RequestBodyLimitMiddleware, invalid_request

logger = logging.getLogger(__name__)

# fast_api_service/recsys_app/recsys_app.py -> the project root (``/app`` in the image).
PROJECT_ROOT = Path(__file__).resolve().parents[2]


async def every(interval_seconds: float, refresh: Callable[[], None]) -> None:
    """Run the blocking ``refresh`` in a worker thread every ``interval_seconds`` (it never raises)."""
    while True:
        await asyncio.sleep(interval_seconds)
        await run_in_threadpool(refresh)


def _error_handler(code: int) -> Callable[[Request, Exception], Any]:
    async def handle(_request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=code)

    return handle


async def _too_many_items(_request: Request, error: Exception) -> JSONResponse:
    """``k`` above the configured bound: a 422 shaped like FastAPI's own validation errors."""
    assert isinstance(error, TooManyItemsError)
    detail = {
        "type": "less_than_equal",
        "loc": ["query", "k"],
        "msg": str(error),
        "input": error.k,
        "ctx": {"le": error.largest},
    }
    return JSONResponse({"detail": [detail]}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


def _with_k_maximum(app: FastAPI, k_bound: Callable[[str], int]) -> Callable[[], dict[str, Any]]:
    """``app.openapi`` that also states each route's upper bound of ``k`` (what its table
    publishes, a setting the service checks), in place of the route's marker."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()
        for operation in (op for path in schema["paths"].values() for op in path.values()):
            kind = operation.pop(K_BOUND_EXTENSION, None)
            for parameter in operation.get("parameters", []):
                if kind is not None and parameter["name"] == "k" and parameter["in"] == "query":
                    parameter["schema"]["maximum"] = k_bound(kind)
        return schema

    return openapi


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    """Build the application.

    Parameters
    ----------
    settings : ServiceSettings, optional
        Defaults to the environment and the project's ``.env``.
    """
    settings = settings if settings is not None else load_service_settings(PROJECT_ROOT)
    metrics = ServiceMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        service = RecommendationService(settings, metrics)
        await run_in_threadpool(service.start)
        app.state.service = service
        storefront = Storefront(service)
        await run_in_threadpool(storefront.refresh)
        app.state.storefront = storefront
        pollers = [
            asyncio.create_task(every(settings.reload_interval_seconds, service.try_reload)),
            asyncio.create_task(every(settings.reload_interval_seconds, storefront.refresh)),
            asyncio.create_task(every(settings.online_events_refresh_seconds, service.refresh_online_events)),
        ]
        try:
            yield
        finally:
            for poller in pollers:
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller
            await run_in_threadpool(service.close)

    app = FastAPI(
        title="RetailRocket recommendation service",
        version=recsys.__version__,
        description="Popular, personalised (offline + online i2i) and similar-item recommendations.",
        lifespan=lifespan,
    )
    # Inside CORS, so that a browser can read the 413.
    app.add_middleware(RequestBodyLimitMiddleware, max_bytes=settings.max_request_body_bytes)
    if settings.cors_allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_allowed_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "X-API-Key"],
        )
    app.include_router(api_router)
    mount_storefront(app)
    # A request tries the routes in order: the API's first, then FastAPI's documentation pages.
    app.router.routes.sort(key=lambda route: not isinstance(route, APIRoute))
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(TooManyItemsError, _too_many_items)
    app.add_exception_handler(UnknownItemError, _error_handler(status.HTTP_404_NOT_FOUND))
    app.add_exception_handler(DatabaseUnavailableError, _error_handler(status.HTTP_503_SERVICE_UNAVAILABLE))
    app.add_exception_handler(NotReadyError, _error_handler(status.HTTP_503_SERVICE_UNAVAILABLE))
    # Added last, so outermost but for Starlette's error middleware: it times CORS too.
    app.add_middleware(HttpMetricsMiddleware, metrics=metrics)
    app.state.metrics = metrics
    app.openapi = _with_k_maximum(app, functools.partial(k_bound, settings))  # type: ignore[method-assign]
    return app


app = create_app()
