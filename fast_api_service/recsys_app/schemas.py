"""Request and response bodies of the API (pydantic models, shown in the OpenAPI schema)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi.responses import Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from pydantic_core import to_json

from recsys.service.fallbacks import FallbackReason

# Ids are stored as 64-bit integers: larger numbers are rejected with 422, not a database error.
MAX_ID = 2**63 - 1
# A clock slightly ahead is tolerated; an event from far in the future would stay "latest" forever.
MAX_CLOCK_SKEW = timedelta(days=1)

EventType = Literal["view", "addtocart", "transaction"]


def _as_utc(value: datetime | None) -> datetime | None:
    # The database keeps naive UTC; RFC 3339 (OpenAPI's date-time) wants the zone written.
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]
Status = Literal["ok", "degraded"]


class RecommendedItem(BaseModel):
    """One recommended item."""

    item_id: int = Field(description="Item id")
    score: float = Field(
        description="Score of the source that placed the item (not comparable across sources)"
    )
    source: str = Field(
        description="What placed it: ranked, als, i2i, history_i2i, online_i2i or default "
        "(for similar items: covisitation or als)"
    )


class DefaultRecommendations(BaseModel):
    """The most popular available items."""

    k: int
    items: list[RecommendedItem]


class UserRecommendations(BaseModel):
    """Recommendations for one user."""

    user_id: int
    k: int
    items: list[RecommendedItem]
    sources: list[str] = Field(description="Sources of the items, in order of first appearance")
    fallbacks: list[FallbackReason] = Field(description="Fallbacks taken")


class SimilarItems(BaseModel):
    """Items similar to one item."""

    item_id: int
    k: int
    items: list[RecommendedItem]


class EventIn(BaseModel):
    """An online event of a user."""

    model_config = ConfigDict(extra="forbid")

    # Strict: JSON true or "12" are not ids (lax validation would read them as 1 and 12).
    user_id: int = Field(ge=0, le=MAX_ID, strict=True, description="Visitor id")
    item_id: int = Field(ge=0, le=MAX_ID, strict=True, description="Item id")
    event: EventType
    timestamp: datetime | None = Field(
        None, description="When it happened (ISO 8601; without a zone = UTC); default: now"
    )

    @field_validator("timestamp", mode="before")
    @classmethod
    def _text_only(cls, value: object) -> object:
        # pydantic would read a bare number as Unix seconds or milliseconds, guessing by size.
        if value is not None and not isinstance(value, str | datetime):
            raise ValueError("timestamp must be an ISO 8601 string such as 2026-01-02T03:04:05Z")
        return value

    @field_validator("timestamp")
    @classmethod
    def _plausible(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        if moment < datetime(1970, 1, 1, tzinfo=UTC):
            raise ValueError("timestamp must not be before 1970-01-01")
        if moment > datetime.now(UTC) + MAX_CLOCK_SKEW:
            raise ValueError("timestamp must not be more than a day in the future")
        return moment


class EventRecorded(BaseModel):
    """A stored event."""

    event_id: int
    user_id: int
    item_id: int
    event: EventType
    timestamp: UtcDatetime


class TableStatus(BaseModel):
    """A published table as loaded in memory."""

    version: int | None = Field(description="Published version in memory (null: never published)")
    as_of: UtcDatetime | None
    rows: int
    keys: int = Field(description="Users (or items) with a list")
    published_at: UtcDatetime | None
    loaded_at: UtcDatetime


class DatabaseStatus(BaseModel):
    """Whether the database answers."""

    reachable: bool
    error: str | None = Field(description="Type of the last error, if the last call failed")


class Health(BaseModel):
    """Service health: degraded when the database is unreachable or no default list is loaded."""

    status: Status
    ready: bool
    database: DatabaseStatus
    tables: dict[str, TableStatus]
    last_reload_error: str | None
    store_bytes: int


class Readiness(BaseModel):
    """Whether the service can answer every user."""

    ready: bool


class ReloadOutcome(BaseModel):
    """Result of a reload: whether new versions went into service, and the versions served."""

    changed: bool
    versions: dict[str, int | None]


class Message(BaseModel):
    """An error explained (the ``detail`` FastAPI returns)."""

    detail: str


NOT_READY_RESPONSE: dict[int | str, dict[str, object]] = {
    503: {"model": Message, "description": "No recommendations loaded yet (the database was unreachable)"}
}


def json_response(body: dict[str, Any]) -> Response:
    """A recommendation answer encoded directly (its dataclasses included).

    The hot endpoints return this instead of a pydantic model: building the models and having
    FastAPI validate them again against ``response_model`` cost more than computing the answer.
    The routes still declare their model, so the OpenAPI schema is unchanged, and the JSON is
    the same (non-finite floats become ``null``, as pydantic writes them).
    """
    return Response(to_json(body, inf_nan_mode="null"), media_type="application/json")
