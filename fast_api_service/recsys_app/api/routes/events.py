"""Online events: what users do now, stored for online recommendations and the next training."""

from __future__ import annotations

from fastapi import APIRouter, Depends, status

from recsys.data.prepare import from_epoch_ms
from recsys_app.api.deps import ServiceDep, require_api_key
from recsys_app.schemas import EventIn, EventRecorded, Message

router = APIRouter(prefix="/events", tags=["events"], dependencies=[Depends(require_api_key)])

AUTH_RESPONSES: dict[int | str, dict[str, object]] = {
    status.HTTP_400_BAD_REQUEST: {"model": Message, "description": "The body is not valid JSON"},
    status.HTTP_401_UNAUTHORIZED: {"model": Message, "description": "No API key"},
    status.HTTP_403_FORBIDDEN: {"model": Message, "description": "Wrong API key"},
    status.HTTP_503_SERVICE_UNAVAILABLE: {
        "model": Message,
        "description": "No API key configured on the server, or the database is unreachable",
    },
}


BODY_TOO_LARGE: dict[int | str, dict[str, object]] = {
    status.HTTP_413_CONTENT_TOO_LARGE: {
        "model": Message,
        "description": "The body is larger than the server's RECSYS_MAX_REQUEST_BODY_BYTES",
    }
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=EventRecorded,
    responses={**AUTH_RESPONSES, **BODY_TOO_LARGE},
)
def record_event(service: ServiceDep, event: EventIn) -> EventRecorded:
    """Store an online event durably (every worker and the next start see it). Needs ``X-API-Key``."""
    stored = service.record_event(event.user_id, event.item_id, event.event, event.timestamp)
    return EventRecorded(
        event_id=stored.event_id,
        user_id=stored.user_id,
        item_id=stored.item_id,
        event=event.event,
        timestamp=from_epoch_ms(stored.timestamp),
    )
