"""Items: similar items of an item."""

from __future__ import annotations

from fastapi import APIRouter, status

from recsys_app.api.deps import ItemIdPath, KDep, ServiceDep
from recsys_app.models import NOT_READY_RESPONSE, Message, RecommendedItem, SimilarItems

router = APIRouter(prefix="/items", tags=["items"], responses=NOT_READY_RESPONSE)


@router.get(
    "/{item_id}/similar",
    response_model=SimilarItems,
    responses={status.HTTP_404_NOT_FOUND: {"model": Message, "description": "Unknown item"}},
)
async def similar_items(service: ServiceDep, item_id: ItemIdPath, k: KDep) -> SimilarItems:
    """The ``k`` items most similar to the item (co-visitation first, then ALS neighbours)."""
    found = service.similar(item_id, k)
    items = [RecommendedItem.model_validate(item, from_attributes=True) for item in found]
    return SimilarItems(item_id=item_id, k=k, items=items)
