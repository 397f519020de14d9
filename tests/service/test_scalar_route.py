"""ScalarParametersRoute answers exactly as FastAPI's own APIRoute does, and refuses what it cannot serve.

The same endpoints are mounted twice, once with FastAPI's route class and once with ours, and
every request below must get the same status and body from both (values, defaults, 422 errors
with their types, messages and locations); the OpenAPI schemas must be identical.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Body, Depends, FastAPI, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from tests.service.conftest import SERVICE_DIR


@pytest.fixture(scope="module")
def route_class() -> Iterator[type[APIRoute]]:
    sys.path.insert(0, str(SERVICE_DIR))
    try:
        from recsys_app.api.scalar_route import ScalarParametersRoute

        yield ScalarParametersRoute
    finally:
        sys.path.remove(str(SERVICE_DIR))


def echo_router(route_class: type[APIRoute]) -> APIRouter:
    router = APIRouter(route_class=route_class)

    @router.get("/users/{user_id}")
    async def user(
        request: Request,
        user_id: Annotated[int, Path(ge=0, le=2**63 - 1, description="Visitor id")],
        k: Annotated[int, Query(ge=1, le=50)] = 10,
        ratio: Annotated[float, Query(gt=0)] = 0.5,
        fresh: bool = False,
    ) -> Response:
        answer = {"user_id": user_id, "k": k, "ratio": ratio, "fresh": fresh, "path": request.url.path}
        return JSONResponse(answer)

    @router.get("/tags/{tag}")
    async def tag(
        tag: Annotated[str, Path(min_length=2, max_length=5)], limit: Annotated[int, Query()]
    ) -> Response:
        return JSONResponse({"tag": tag, "limit": limit})

    return router


def app_with(router: APIRouter) -> FastAPI:
    app = FastAPI(title="echo")
    app.include_router(router)
    return app


REQUESTS = [
    "/users/7",
    "/users/7?k=3&ratio=0.25&fresh=true",
    "/users/7?fresh=yes&k=+4",
    "/users/7?k=3&k=5",
    "/users/7?colour=red",
    "/users/7?k=",
    "/users/7?k=0",
    "/users/7?k=51",
    "/users/7?k=ten",
    "/users/7?k=2.0",
    "/users/7?k=2.5",
    "/users/7?ratio=0",
    "/users/7?ratio=abc",
    "/users/7?fresh=maybe",
    "/users/-1",
    f"/users/{2**63}",
    "/users/abc?k=0&ratio=-1",
    "/tags/ab?limit=3",
    "/tags/a",
    "/tags/abcdef?limit=1",
    "/tags/abc",
    "/tags/abc?limit=x",
]


async def get(app: FastAPI, target: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        return await client.get(target)


@pytest.mark.anyio
@pytest.mark.parametrize("target", REQUESTS)
async def test_answers_as_fastapi_does(route_class: type[APIRoute], target: str) -> None:
    theirs = await get(app_with(echo_router(APIRoute)), target)
    ours = await get(app_with(echo_router(route_class)), target)
    assert (ours.status_code, ours.json()) == (theirs.status_code, theirs.json())


def test_the_openapi_schema_is_fastapis(route_class: type[APIRoute]) -> None:
    ours = app_with(echo_router(route_class)).openapi()
    assert ours == app_with(echo_router(APIRoute)).openapi()
    assert [p["name"] for p in ours["paths"]["/users/{user_id}"]["get"]["parameters"]] == [
        "user_id",
        "k",
        "ratio",
        "fresh",
    ]


async def _with_header(x_token: Annotated[str, Header()]) -> Response:
    return Response()


async def _with_body(payload: Annotated[dict[str, int], Body()]) -> Response:
    return Response()


async def _with_dependency(value: Annotated[int, Depends(lambda: 1)]) -> Response:
    return Response()


async def _with_list(ids: Annotated[list[int], Query()]) -> Response:
    return Response()


async def _with_alias(item: Annotated[int, Query(alias="item-id")]) -> Response:
    return Response()


async def _with_default_factory(k: Annotated[int, Query(default_factory=lambda: 3)]) -> Response:
    return Response()


def _synchronous(k: int = 1) -> Response:
    return Response()


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        (_with_header, "take only the request and path/query parameters"),
        (_with_body, "take only the request and path/query parameters"),
        (_with_dependency, "take only the request and path/query parameters"),
        (_synchronous, "take only the request and path/query parameters"),
        (_with_list, "parameter 'ids' must be a scalar"),
        (_with_alias, "parameter 'item' must be a scalar (int, float, str, bool) without an alias"),
        (_with_default_factory, "parameter 'k' must be a scalar (int, float, str, bool) without an alias"),
    ],
)
def test_refuses_endpoints_it_cannot_serve(
    route_class: type[APIRoute], endpoint: Callable[..., Any], message: str
) -> None:
    router = APIRouter(route_class=route_class)
    with pytest.raises(TypeError, match="route /x: .*" + re.escape(message)):
        router.add_api_route("/x", endpoint, methods=["GET"])


@pytest.mark.anyio
async def test_an_endpoint_must_return_a_response(route_class: type[APIRoute]) -> None:
    router = APIRouter(route_class=route_class)

    @router.get("/plain")
    async def plain() -> dict[str, int]:
        return {"a": 1}

    with pytest.raises(TypeError, match="route /plain: the endpoint returned dict, not a Response"):
        await get(app_with(router), "/plain")
