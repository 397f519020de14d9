"""Liveness with details (``/health``), readiness (``/ready``) and Prometheus' ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from recsys_app.api.deps import ServiceDep
from recsys_app.schemas import DatabaseStatus, Health, Readiness, TableStatus

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
def health(service: ServiceDep) -> Health:
    """Always 200 while the process serves; ``status`` is ``degraded`` when the database is
    unreachable (answers then come from memory only) or no default list is loaded."""
    report = service.health()
    return Health(
        status="ok" if report.status == "ok" else "degraded",
        ready=report.ready,
        database=DatabaseStatus(reachable=report.database_reachable, error=report.database_error),
        tables={name: TableStatus.model_validate(table) for name, table in report.tables.items()},
        last_reload_error=report.last_reload_error,
        store_bytes=report.store_bytes,
    )


@router.get(
    "/ready",
    response_model=Readiness,
    responses={status.HTTP_503_SERVICE_UNAVAILABLE: {"model": Readiness, "description": "Not ready"}},
)
async def ready(service: ServiceDep, response: Response) -> Readiness:
    """200 once the default recommendations are loaded (every user can be answered), else 503."""
    is_ready = service.store.is_ready
    if not is_ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Readiness(ready=is_ready)


@router.get("/metrics", include_in_schema=False)
def prometheus_metrics(request: Request) -> Response:
    """The service's metrics in Prometheus' text format (in a worker thread: it reads /proc)."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
