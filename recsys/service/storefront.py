"""The storefront page's logic: product cards, example visitors and the browser event route.

The page (``/shop``, static files of ``fast_api_service/recsys_app/static``) shows what a shopper
would see: a visitor's recommendations as product cards with the source that placed each one and
the fallbacks taken, the popular items, and a product page with similar items. Everything it
shows comes from :class:`~recsys.service.service.RecommendationService` (the same answers as the
JSON API), decorated with the catalogue facts of :mod:`recsys.service.catalogue`.

**Browser events.** A web page cannot hold the API key of ``POST /events`` (anyone could read it),
so the page records its views and add-to-carts through a route of its own, which is

* off unless ``RECSYS_BROWSER_EVENTS_ENABLED`` is true (``make demo`` turns it on);
* limited to what a shopper's browser does: ``view`` and ``addtocart`` (purchases come from the
  shop's back end, with the key) of items the service knows;
* rate-limited per visitor id (``RECSYS_BROWSER_EVENTS_PER_MINUTE``, a moving window in each
  worker's memory; idle visitors' counters expire), so a page left open in a loop cannot flood
  one visitor's history;
* same-origin only (checked by the web layer), so another site cannot make its visitors' browsers
  record events here.

The trade-off: the route trusts the visitor id the page sends. Anyone who can reach the service
can record views and add-to-carts for any visitor id (bounded by the rate limit per id, not in
total), which shifts that visitor's online recommendations and adds to the next training data.
That is what a demo wants; in production enable it only where visitor ids are not guessable or
a gateway in front of the service ties the id to the shopper's session.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import sqlalchemy as sa
from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy.engine import Engine

from recsys.data.prepare import INTERACTIONS
from recsys.evaluation.offline import LIGHT_MAX
from recsys.publishing.catalogue import RANKED_RECOMMENDATIONS
from recsys.service.blending import Recommendation
from recsys.service.catalogue import ItemCatalogue, load_catalogue
from recsys.service.events import OnlineEvent
from recsys.service.loader import run_in_child
from recsys.service.service import (
    OFFLINE_CHAIN,
    RecommendationResult,
    RecommendationService,
    UnknownItemError,
    k_bound,
)
from recsys.service.store import RecommendationStore

logger = logging.getLogger(__name__)

# What a shopper's browser may record (purchases come from the shop's back end, with the API key).
BrowserEvent = Literal["view", "addtocart"]
BROWSER_EVENTS: tuple[str, ...] = get_args(BrowserEvent)

# Users with an offline list whose event counts are looked up to pick the example visitors.
EXAMPLE_SAMPLE_SIZE = 2_000


class BrowserEventsDisabledError(PermissionError):
    """The browser event route is off (``RECSYS_BROWSER_EVENTS_ENABLED`` is false)."""


class TooManyBrowserEventsError(RuntimeError):
    """A visitor sent more events than ``RECSYS_BROWSER_EVENTS_PER_MINUTE``."""

    def __init__(self, user_id: int, per_minute: int, retry_after_seconds: int) -> None:
        super().__init__(
            f"visitor {user_id} sent more than {per_minute} events in a minute: "
            f"retry in {retry_after_seconds} s"
        )
        self.retry_after_seconds = retry_after_seconds


@dataclass(frozen=True)
class ExampleVisitors:
    """Visitors the page offers as examples, chosen from the loaded tables.

    Attributes
    ----------
    heavy, light : ExampleVisitor or None
        A user with more than :data:`~recsys.evaluation.offline.LIGHT_MAX` prepared interactions
        (the median such user among a sample, preferring one with a ranked list) and one with
        1..LIGHT_MAX; ``None`` when the tables have none (or ``interactions`` is not prepared).
    first_unknown_id : int
        Above every user id of the tables and of ``interactions``: new visitors start here.
    """

    heavy: ExampleVisitor | None
    light: ExampleVisitor | None
    first_unknown_id: int


@dataclass(frozen=True)
class ExampleVisitor:
    """One example visitor and their number of prepared interactions."""

    user_id: int
    interactions: int


def choose_example_visitors(
    engine: Engine, store: RecommendationStore, sample_size: int = EXAMPLE_SAMPLE_SIZE
) -> ExampleVisitors:
    """A heavy and a light user with offline lists, and where unknown user ids start.

    Only ``sample_size`` users (evenly spread over the ids with an offline list) have their
    interactions counted, so the query stays small at full scale.

    Raises
    ------
    sqlalchemy.exc.SQLAlchemyError
        If the database cannot be read.
    """
    ranked = store.lists(RANKED_RECOMMENDATIONS).keys
    offline = functools.reduce(np.union1d, (store.lists(table).keys for table, _ in OFFLINE_CHAIN))
    highest = int(offline.max()) if offline.size else -1
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(INTERACTIONS.name):
            return ExampleVisitors(None, None, highest + 1)
        highest = max(highest, conn.execute(sa.select(sa.func.max(INTERACTIONS.c.user_id))).scalar() or -1)
        sample = np.unique(
            offline[np.linspace(0, offline.size - 1, min(sample_size, offline.size)).astype(int)]
        )
        rows = conn.execute(
            sa.select(INTERACTIONS.c.user_id, sa.func.count())
            .where(INTERACTIONS.c.user_id.in_(sa.bindparam("users", expanding=True)))
            .group_by(INTERACTIONS.c.user_id),
            {"users": sample.tolist()},
        ).fetchall()
    users = np.array([row[0] for row in rows], dtype=np.int64)
    counts = np.array([row[1] for row in rows], dtype=np.int64)
    has_ranked = np.isin(users, ranked)
    return ExampleVisitors(
        heavy=_pick(users, counts, counts > LIGHT_MAX, has_ranked, median=True),
        light=_pick(users, counts, (counts >= 1) & (counts <= LIGHT_MAX), has_ranked, median=False),
        first_unknown_id=highest + 1,
    )


def _pick(
    users: np.ndarray, counts: np.ndarray, segment: np.ndarray, preferred: np.ndarray, median: bool
) -> ExampleVisitor | None:
    """The median (by count) or the first (by id) user of the segment, from the preferred ones if any."""
    chosen = segment & preferred if (segment & preferred).any() else segment
    if not chosen.any():
        return None
    candidates = np.flatnonzero(chosen)
    if median:
        by_count = candidates[np.argsort(counts[candidates], kind="stable")]
        index = int(by_count[by_count.size // 2])
    else:
        index = int(candidates[np.argmin(users[candidates])])
    return ExampleVisitor(int(users[index]), int(counts[index]))


class BrowserEventLimiter:
    """At most ``per_minute`` events per visitor in any minute (moving window, in memory).

    The ``limits`` library keeps one small counter per visitor and expires it once the visitor
    is idle for the window, so memory follows the visitors of the last minute.
    """

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._item = RateLimitItemPerMinute(per_minute)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def check(self, user_id: int) -> None:
        """Count one event of the visitor.

        Raises
        ------
        TooManyBrowserEventsError
            If the visitor already sent ``per_minute`` events in the last minute.
        """
        key = str(user_id)
        if self._limiter.hit(self._item, "browser_events", key):
            return
        reset_at = self._limiter.get_window_stats(self._item, "browser_events", key).reset_time
        raise TooManyBrowserEventsError(user_id, self.per_minute, max(1, math.ceil(reset_at - time.time())))


class Storefront:
    """The storefront's answers, from the service's and the catalogue's data.

    Parameters
    ----------
    service : RecommendationService
        The running service (its settings say whether browser events are on).
    """

    def __init__(self, service: RecommendationService) -> None:
        self.service = service
        self.settings = service.settings
        self.limiter = BrowserEventLimiter(self.settings.browser_events_per_minute)
        self.catalogue = ItemCatalogue.empty()
        self.examples = ExampleVisitors(None, None, 0)
        self._loaded_for: RecommendationStore | None = None
        self._refresh_lock = threading.Lock()

    # -- loading -----------------------------------------------------------------------------
    def refresh(self) -> None:
        """Reload the catalogue and the examples when the service swapped in new tables.

        The pipeline rebuilds ``items`` with every run, so a new store means a new catalogue
        (as for the store's own catalogue filter). Errors are logged and retried at the next
        call, never raised: run by a background loop.
        """
        with self._refresh_lock:
            store = self.service.store
            if store is self._loaded_for:
                return
            try:
                if self._loaded_for is None:
                    catalogue = load_catalogue(self.service.engine)
                else:
                    # Once something is served, in a child process: its rows would stall requests.
                    catalogue, niceness, _ = run_in_child(load_catalogue, self.service.engine)
                    logger.info("storefront catalogue read in a child process (nice %d)", niceness)
                examples = choose_example_visitors(self.service.engine, store)
            except (sa.exc.SQLAlchemyError, BrokenProcessPool, OSError) as error:
                logger.warning("the storefront's catalogue was not reloaded: %s", error)
                return
            # Two reference assignments; a request may pair the new catalogue with the old
            # examples for an instant, which only changes which visitors are offered.
            self.catalogue, self.examples = catalogue, examples
            self._loaded_for = store

    # -- reads -------------------------------------------------------------------------------
    def page_config(self) -> dict[str, Any]:
        """What the page needs before its first request: example visitors and whether it may
        record events."""
        examples = self.examples
        offered: list[dict[str, Any]] = [
            {"kind": kind, "user_id": example.user_id, "interactions": example.interactions}
            for kind, example in (("heavy", examples.heavy), ("light", examples.light))
            if example is not None
        ]
        offered.append({"kind": "new", "user_id": self.new_visitor_id(), "interactions": 0})
        return {
            "examples": offered,
            "browser_events": self.settings.browser_events_enabled,
            "largest_k": k_bound(self.settings, "personalized"),
        }

    def new_visitor_id(self) -> int:
        """The lowest id above every known user that has no online event either."""
        candidate = self.examples.first_unknown_id
        activity = self.service.activity
        while activity.get(candidate).recent.size:
            candidate += 1
        return candidate

    def visitor(self, user_id: int, k: int) -> dict[str, Any]:
        """The visitor's personalised list as product cards, with sources and fallbacks."""
        return self._answer(self.service.personalized(user_id, k), user_id=user_id)

    def popular(self, k: int) -> dict[str, Any]:
        """The popular items as product cards."""
        return self._answer(self.service.default(k))

    def item(self, item_id: int, k: int) -> dict[str, Any]:
        """An item's card and its similar items as cards.

        Raises
        ------
        UnknownItemError
            If the service does not know the item.
        """
        similar = self.service.similar(item_id, k)
        return {"item": self.catalogue.cards([item_id])[0].as_dict(), "similar": self._cards(similar)}

    def _answer(self, result: RecommendationResult, **extra: Any) -> dict[str, Any]:
        return {
            **extra,
            "items": self._cards(result.items),
            "sources": result.sources,
            "fallbacks": result.fallbacks,
        }

    def _cards(self, items: list[Recommendation]) -> list[dict[str, Any]]:
        cards = self.catalogue.cards([item["item_id"] for item in items])
        return [{**card.as_dict(), **item} for item, card in zip(items, cards, strict=True)]

    # -- writes ------------------------------------------------------------------------------
    def record(self, user_id: int, item_id: int, event: str) -> OnlineEvent:
        """Record a shopper's view or add-to-cart sent by the page.

        Raises
        ------
        BrowserEventsDisabledError
            If browser events are off.
        ValueError
            If ``event`` is not one of :data:`BROWSER_EVENTS`.
        UnknownItemError
            If the service does not know the item.
        TooManyBrowserEventsError
            If the visitor is over the rate limit.
        DatabaseUnavailableError
            If the database cannot store the event.
        """
        if not self.settings.browser_events_enabled:
            raise BrowserEventsDisabledError(
                "recording events from browsers is off on this server (RECSYS_BROWSER_EVENTS_ENABLED)"
            )
        if event not in BROWSER_EVENTS:
            raise ValueError(f"browsers may record {', '.join(BROWSER_EVENTS)}, not {event!r}")
        if not self.service.store.is_known_item(item_id):
            raise UnknownItemError(f"item {item_id} is unknown: it is not in the catalogue")
        self.limiter.check(user_id)
        return self.service.record_event(user_id, item_id, event, None)
