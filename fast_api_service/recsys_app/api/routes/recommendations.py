"""Recommendations: popular items, a user's blended list and their online i2i list."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from recsys.service.service import RecommendationResult
from recsys_app.api.deps import DEFAULT_K, KQuery, UserIdPath, k_bounded_by, service_of
from recsys_app.api.scalar_route import ScalarParametersRoute
from recsys_app.schemas import NOT_READY_RESPONSE, DefaultRecommendations, UserRecommendations, json_response

router = APIRouter(
    prefix="/recommendations",
    tags=["recommendations"],
    responses=NOT_READY_RESPONSE,
    route_class=ScalarParametersRoute,
)


def _user_answer(user_id: int, k: int, result: RecommendationResult) -> Response:
    return json_response(
        {
            "user_id": user_id,
            "k": k,
            "items": result.items,
            "sources": result.sources,
            "fallbacks": result.fallbacks,
        }
    )


# The handlers are async: answers come from memory (tables and online events), on the event loop.
@router.get("/default", response_model=DefaultRecommendations, openapi_extra=k_bounded_by("default"))
async def default_recommendations(request: Request, k: KQuery = DEFAULT_K) -> Response:
    """The ``k`` most popular available items (what cold users get)."""
    return json_response({"k": k, "items": service_of(request).default(k).items})


@router.get(
    "/users/{user_id}", response_model=UserRecommendations, openapi_extra=k_bounded_by("personalized")
)
async def user_recommendations(request: Request, user_id: UserIdPath, k: KQuery = DEFAULT_K) -> Response:
    """The user's ranked (else ALS, else popular) list blended with online i2i recommendations.

    Online i2i items (neighbours of the user's latest online events) alternate with the
    offline list, online first; duplicates, items bought online and unavailable items are
    removed and popular items fill any gap. Unknown users get the popular items.
    """
    return _user_answer(user_id, k, service_of(request).personalized(user_id, k))


@router.get(
    "/users/{user_id}/online", response_model=UserRecommendations, openapi_extra=k_bounded_by("online")
)
async def online_recommendations(request: Request, user_id: UserIdPath, k: KQuery = DEFAULT_K) -> Response:
    """Only the online i2i recommendations from the user's latest online events (may be fewer than k)."""
    return _user_answer(user_id, k, service_of(request).online(user_id, k))
