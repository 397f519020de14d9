"""Items: similar items of an item."""

from __future__ import annotations

from fastapi import APIRouter, Request, status
from fastapi.responses import Response

from recsys_app.api.deps import DEFAULT_K, ItemIdPath, KQuery, k_bounded_by, service_of
from recsys_app.api.scalar_route import ScalarParametersRoute
from recsys_app.schemas import NOT_READY_RESPONSE, Message, SimilarItems, json_response

router = APIRouter(
    prefix="/items", tags=["items"], responses=NOT_READY_RESPONSE, route_class=ScalarParametersRoute
)


@router.get(
    "/{item_id}/similar",
    response_model=SimilarItems,
    responses={status.HTTP_404_NOT_FOUND: {"model": Message, "description": "Unknown item"}},
    openapi_extra=k_bounded_by("similar"),
)
async def similar_items(request: Request, item_id: ItemIdPath, k: KQuery = DEFAULT_K) -> Response:
    """The ``k`` items most similar to the item (co-visitation first, then ALS neighbours)."""
    return json_response({"item_id": item_id, "k": k, "items": service_of(request).similar(item_id, k)})
