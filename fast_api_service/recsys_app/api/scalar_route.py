"""A route class for the hot read endpoints: their parameters validated without per-request introspection.

FastAPI 0.136's request handler does generic work on every request: it solves the dependency
tree, inspects each path and query parameter's annotation again (a sequence? a JSON field? a
model?) and prepares body and background-task handling — in-process about 33 µs of a 75 µs
personalised request on a 2-core machine, more than the answer itself. :class:`ScalarParametersRoute`
does that inspection once, when the route is built, and validates each parameter with a pydantic
adapter built from the same declaration. Errors are FastAPI's (:class:`RequestValidationError`,
same types, messages and locations, answered 422 by FastAPI's handler) and the OpenAPI schema is
FastAPI's own, generated from the unchanged endpoint signature. Effect under load:
benchmarks/results/service.md.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any, Literal, cast

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

SCALAR_TYPES = (int, float, str, bool)


@dataclass(frozen=True)
class _Parameter:
    """One path or query parameter, with the validator FastAPI would build for it."""

    name: str
    location: Literal["path", "query"]
    adapter: TypeAdapter[Any]
    required: bool
    default: Any

    @classmethod
    def of(cls, info: FieldInfo, name: str, location: Literal["path", "query"], path: str) -> _Parameter:
        if info.alias not in (None, name) or info.annotation not in SCALAR_TYPES or info.default_factory:
            allowed = ", ".join(scalar.__name__ for scalar in SCALAR_TYPES)
            raise TypeError(
                f"route {path}: parameter {name!r} must be a scalar ({allowed}) without an alias "
                "or a default factory"
            )
        adapter: TypeAdapter[Any] = TypeAdapter(cast(Any, Annotated[info.annotation, info]))
        return cls(name, location, adapter, info.is_required(), info.default)

    def read(self, raw: str | None, values: dict[str, Any], errors: list[dict[str, Any]]) -> None:
        """Put the validated value into ``values``, or FastAPI's error for it into ``errors``."""
        if raw is None:
            if self.required:
                errors.append({"type": "missing", "loc": self.loc, "msg": "Field required", "input": None})
            else:
                values[self.name] = self.default
            return
        try:
            values[self.name] = self.adapter.validate_python(raw)
        except ValidationError as error:
            errors.extend(
                {**detail, "loc": (*self.loc, *detail["loc"])} for detail in error.errors(include_url=False)
            )

    @property
    def loc(self) -> tuple[str, str]:
        return (self.location, self.name)


class ScalarParametersRoute(APIRoute):
    """An :class:`~fastapi.routing.APIRoute` for async endpoints with only scalar path and query parameters.

    The endpoint may also take the :class:`~fastapi.Request`, and must return a
    :class:`~fastapi.Response` (it builds its own answer). Anything else (headers, cookies, a
    body, dependencies, lists, aliases, default factories) is refused with a ``TypeError`` when
    the route is added.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        dependant = self.dependant
        unsupported = (
            dependant.header_params
            or dependant.cookie_params
            or dependant.body_params
            or dependant.dependencies
            or self.dependencies
            or dependant.response_param_name
            or dependant.background_tasks_param_name
            or dependant.http_connection_param_name
            or dependant.security_scopes_param_name
        )
        if unsupported or not inspect.iscoroutinefunction(self.endpoint):
            raise TypeError(
                f"route {self.path}: {type(self).__name__} serves async endpoints that take only the "
                "request and path/query parameters"
            )
        parameters = [
            _Parameter.of(field.field_info, field.name, "path", self.path) for field in dependant.path_params
        ]
        parameters += [
            _Parameter.of(field.field_info, field.name, "query", self.path)
            for field in dependant.query_params
        ]
        endpoint, path = self.endpoint, self.path
        request_name = dependant.request_param_name

        async def handle(request: Request) -> Response:
            values: dict[str, Any] = {request_name: request} if request_name else {}
            errors: list[dict[str, Any]] = []
            for parameter in parameters:
                source = request.path_params if parameter.location == "path" else request.query_params
                parameter.read(source.get(parameter.name), values, errors)
            if errors:
                raise RequestValidationError(errors)
            response = await endpoint(**values)
            if not isinstance(response, Response):
                returned = type(response).__name__
                raise TypeError(f"route {path}: the endpoint returned {returned}, not a Response")
            return response

        return handle
