"""Recommendations: popular items, a user's blended list and their online i2i list."""

from __future__ import annotations

from fastapi import APIRouter

from recsys.service.service import RecommendationResult
from recsys_app.api.deps import KDep, ServiceDep, UserIdPath
from recsys_app.models import NOT_READY_RESPONSE, DefaultRecommendations, RecommendedItem, UserRecommendations

router = APIRouter(prefix="/recommendations", tags=["recommendations"], responses=NOT_READY_RESPONSE)


def _user_answer(user_id: int, k: int, result: RecommendationResult) -> UserRecommendations:
    return UserRecommendations(
        user_id=user_id,
        k=k,
        items=[RecommendedItem.model_validate(item, from_attributes=True) for item in result.items],
        sources=result.sources,
        fallbacks=result.fallbacks,
    )


@router.get("/default", response_model=DefaultRecommendations)
async def default_recommendations(service: ServiceDep, k: KDep) -> DefaultRecommendations:
    """The ``k`` most popular available items (what cold users get)."""
    result = service.default(k)
    items = [RecommendedItem.model_validate(item, from_attributes=True) for item in result.items]
    return DefaultRecommendations(k=k, items=items)


# Plain ``def``: reading the user's online events is a blocking database call, so FastAPI runs
# these handlers in its thread pool instead of on the event loop.
@router.get("/users/{user_id}", response_model=UserRecommendations)
def user_recommendations(service: ServiceDep, user_id: UserIdPath, k: KDep) -> UserRecommendations:
    """The user's ranked (else ALS, else popular) list blended with online i2i recommendations.

    Online i2i items (neighbours of the user's latest online events) alternate with the
    offline list, online first; duplicates, items bought online and unavailable items are
    removed and popular items fill any gap. Unknown users get the popular items.
    """
    return _user_answer(user_id, k, service.personalized(user_id, k))


@router.get("/users/{user_id}/online", response_model=UserRecommendations)
def online_recommendations(service: ServiceDep, user_id: UserIdPath, k: KDep) -> UserRecommendations:
    """Only the online i2i recommendations from the user's latest online events (may be fewer than k)."""
    return _user_answer(user_id, k, service.online(user_id, k))
