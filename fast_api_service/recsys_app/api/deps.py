"""Dependencies of the routes: the service, validated parameters and the API key check."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Query, Request, Security, status
from fastapi.security import APIKeyHeader

from recsys.service.service import K_BOUNDING_TABLES, RecommendationService
from recsys_app.schemas import MAX_ID

DEFAULT_K = 10

api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="Key of write and admin endpoints (RECSYS_API_KEY on the server)",
)


def service_of(request: Request) -> RecommendationService:
    """The service the lifespan started.

    The read endpoints call this directly instead of declaring ``ServiceDep``: their route class
    (:class:`recsys_app.api.scalar_route.ScalarParametersRoute`) resolves no dependencies.
    """
    service: RecommendationService = request.app.state.service
    return service


async def get_service(request: Request) -> RecommendationService:
    """The service, as a dependency (write, admin and health endpoints)."""
    return service_of(request)


ServiceDep = Annotated[RecommendationService, Depends(get_service)]


# The upper bound is the depth of the table the answer comes from, a setting: the service checks
# it (422 through the app's handler) and the app writes it into the OpenAPI schema of each route
# that names its kind of answer with ``k_bounded_by``.
KQuery = Annotated[
    int,
    Query(
        ge=1,
        description="Number of items, at most the rows published per key (the maximum is in this schema)",
    ),
]
K_BOUND_EXTENSION = "x-k-bounded-by"


def k_bounded_by(kind: str) -> dict[str, Any]:
    """``openapi_extra`` of a route whose ``k`` is bounded like answers of ``kind``
    (see :data:`recsys.service.service.K_BOUNDING_TABLES`)."""
    if kind not in K_BOUNDING_TABLES:
        raise ValueError(f"unknown kind of answer {kind!r}: expected one of {sorted(K_BOUNDING_TABLES)}")
    return {K_BOUND_EXTENSION: kind}


UserIdPath = Annotated[int, Path(ge=0, le=MAX_ID, description="Visitor id")]
ItemIdPath = Annotated[int, Path(ge=0, le=MAX_ID, description="Item id")]


async def require_api_key(
    service: ServiceDep, api_key: Annotated[str | None, Security(api_key_header)]
) -> None:
    """Let the request through only with the configured key; without a configured key, refuse."""
    configured = service.settings.api_key
    if configured is None or not configured.get_secret_value():
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "this endpoint is disabled: no API key is configured on the server (set RECSYS_API_KEY)",
        )
    if not api_key:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing API key: send it in the X-API-Key header",
            headers={"WWW-Authenticate": "APIKey"},
        )
    # Constant-time comparison, on bytes so that any header text is comparable.
    if not secrets.compare_digest(api_key.encode(), configured.get_secret_value().encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid API key")
