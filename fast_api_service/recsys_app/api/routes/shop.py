"""The storefront page (``/shop``) and the small JSON API its script calls.

The page is static (``recsys_app/static``: HTML, CSS and a script, no build step, nothing
fetched from elsewhere). Its API is the page's own, not a public contract, so it stays out of the
OpenAPI schema; the answers come from :class:`recsys.service.storefront.Storefront`. The event
route needs no API key but is same-origin only, off unless ``RECSYS_BROWSER_EVENTS_ENABLED`` and
rate-limited per visitor (the trade-off is in ``recsys.service.storefront``).
"""

from __future__ import annotations

from pathlib import Path as FilePath
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from recsys.service.storefront import (
    BrowserEvent,
    BrowserEventsDisabledError,
    Storefront,
    TooManyBrowserEventsError,
)
from recsys_app.api.deps import DEFAULT_K, ItemIdPath, KQuery, UserIdPath
from recsys_app.api.scalar_route import ScalarParametersRoute
from recsys_app.schemas import MAX_ID, json_response

STATIC_DIR = FilePath(__file__).resolve().parents[2] / "static"
PAGE = "/shop"

pages = APIRouter(include_in_schema=False)
reads = APIRouter(prefix=f"{PAGE}/api", include_in_schema=False, route_class=ScalarParametersRoute)
writes = APIRouter(prefix=f"{PAGE}/api", include_in_schema=False)


def storefront_of(request: Request) -> Storefront:
    """The storefront the lifespan started."""
    storefront: Storefront = request.app.state.storefront
    return storefront


def mount_storefront(app: FastAPI) -> None:
    """Add the page, its API and its static files to the application."""
    app.include_router(pages)
    app.include_router(reads)
    app.include_router(writes)
    app.mount(f"{PAGE}/static", StaticFiles(directory=STATIC_DIR), name="shop_static")


@pages.get("/")
async def home() -> RedirectResponse:
    """The service's root shows the storefront."""
    return RedirectResponse(PAGE)


@pages.get(PAGE)
async def page() -> FileResponse:
    """The storefront page."""
    return FileResponse(STATIC_DIR / "index.html")


@reads.get("/config")
async def page_config(request: Request) -> Response:
    """Example visitors and whether the page may record events."""
    return json_response(storefront_of(request).page_config())


@reads.get("/visitors/{user_id}")
async def visitor(request: Request, user_id: UserIdPath, k: KQuery = DEFAULT_K) -> Response:
    """The visitor's recommendations as product cards, with their sources and fallbacks."""
    return json_response(storefront_of(request).visitor(user_id, k))


@reads.get("/popular")
async def popular(request: Request, k: KQuery = DEFAULT_K) -> Response:
    """The popular items as product cards."""
    return json_response(storefront_of(request).popular(k))


@reads.get("/items/{item_id}")
async def item(request: Request, item_id: ItemIdPath, k: KQuery = DEFAULT_K) -> Response:
    """An item's card and its similar items."""
    return json_response(storefront_of(request).item(item_id, k))


class BrowserEventIn(BaseModel):
    """What the page sends when the shopper opens an item or adds it to the cart."""

    model_config = ConfigDict(extra="forbid")

    item_id: int = Field(ge=0, le=MAX_ID, strict=True)
    event: BrowserEvent


def require_same_origin(request: Request) -> None:
    """Accept only requests a page of this service sent (browsers set ``Origin`` on a POST and
    cannot be made to fake it; other clients can, which is the documented trade-off)."""
    fetch_site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    if (fetch_site is not None and fetch_site != "same-origin") or (
        origin is None or urlsplit(origin).netloc != request.headers.get("host")
    ):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "events are accepted only from the storefront page")


@writes.post(
    "/visitors/{user_id}/events",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(require_same_origin)],
)
def record_browser_event(
    request: Request, user_id: UserIdPath, event: BrowserEventIn
) -> dict[str, int | str]:
    """Record the visitor's view or add-to-cart (in a worker thread: it writes to the database)."""
    try:
        stored = storefront_of(request).record(user_id, event.item_id, event.event)
    except BrowserEventsDisabledError as error:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(error)) from error
    except TooManyBrowserEventsError as error:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            str(error),
            headers={"Retry-After": str(error.retry_after_seconds)},
        ) from error
    return {
        "event_id": stored.event_id,
        "user_id": stored.user_id,
        "item_id": stored.item_id,
        "event": event.event,
    }
