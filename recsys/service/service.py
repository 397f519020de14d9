"""The recommendation service: every answer the HTTP layer gives, as plain synchronous methods.

Reads come from memory: the published tables from the
:class:`~recsys.service.store.RecommendationStore`, the users' online events from the
:class:`~recsys.service.activity.OnlineActivityCache`. The database is used to store an
event, by the background refreshes (:meth:`RecommendationService.refresh_online_events`,
:meth:`~RecommendationService.reload`) and by health; those calls block, so an async web
server runs them in a worker thread and the answers (tens of microseconds) on its event loop.

Database failures never fail a read: answers come from what is in memory, flagged with the
``database_unavailable`` fallback (events recorded meanwhile by other workers are missing),
and the failure is remembered for ``database_retry_seconds``, during which the refreshes do
not try again, so an unreachable database is not hammered.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from recsys.config import Settings
from recsys.data.prepare import to_epoch_ms
from recsys.models.base import ModelError
from recsys.models.i2i import ItemToItemConfig
from recsys.models.session_blend import SESSION_BLEND_MODEL, SessionBlendModel, SessionBlendWeights
from recsys.publishing.catalogue import (
    DEFAULT_RECOMMENDATIONS,
    I2I_RECOMMENDATIONS,
    PERSONALIZED_RECOMMENDATIONS,
    RANKED_RECOMMENDATIONS,
    SIMILAR_ITEMS,
    USER_HISTORIES,
    PublishedTable,
)
from recsys.publishing.registry import ModelRegistry, ModelVersion
from recsys.service.activity import OnlineActivityCache
from recsys.service.blending import (
    HISTORY_I2I,
    Recommendation,
    SessionCandidates,
    as_recommendations,
    blend,
    history_activity,
    online_i2i,
    session_blend,
    session_candidates,
    sources_of,
)
from recsys.service.events import OnlineEvent, OnlineEventsRepository, UserActivity
from recsys.service.fallbacks import FallbackReason
from recsys.service.loader import read_parts_in_child
from recsys.service.metrics import ServiceMetrics
from recsys.service.settings import ServiceSettings
from recsys.service.store import Candidates, GroupedLists, RecommendationStore, load_store, read_parts
from recsys.storage.database import create_db_engine
from recsys.storage.object_store import open_object_store

logger = logging.getLogger(__name__)

# Offline lists of a user, best first: the two-stage ranker, then ALS, then the offline i2i.
OFFLINE_CHAIN = (
    (RANKED_RECOMMENDATIONS, "ranked"),
    (PERSONALIZED_RECOMMENDATIONS, "als"),
    (I2I_RECOMMENDATIONS, "i2i"),
)
# The published table whose depth bounds the ``k`` of each kind of answer; online i2i lists are
# computed from similar items but take their place in a personalised list, so they share its bound.
K_BOUNDING_TABLES: dict[str, PublishedTable] = {  # keyed by the kind of answer
    "default": DEFAULT_RECOMMENDATIONS,
    "personalized": RANKED_RECOMMENDATIONS,
    "online": RANKED_RECOMMENDATIONS,
    "similar": SIMILAR_ITEMS,
}


def k_bound(settings: Settings, kind: str) -> int:
    """The largest ``k`` an answer of ``kind`` (a key of :data:`K_BOUNDING_TABLES`) takes."""
    return K_BOUNDING_TABLES[kind].depth(settings)


class TooManyItemsError(ValueError):
    """``k`` above the rows per key published in the table the answer comes from."""

    def __init__(self, k: int, largest: int) -> None:
        super().__init__(f"Input should be less than or equal to {largest}")
        self.k, self.largest = k, largest


class UnknownItemError(LookupError):
    """An item the loaded data does not know."""


class DatabaseUnavailableError(RuntimeError):
    """The database is needed (to store an event, to reload) and cannot be reached."""


class NotReadyError(RuntimeError):
    """No recommendations are loaded yet (the database was unreachable since start-up, or the
    pipeline has not published the default recommendations)."""


@dataclass(frozen=True)
class RecommendationResult:
    """An answer: the items in order, the sources that placed them and the fallbacks taken."""

    items: list[Recommendation]
    sources: list[str]
    fallbacks: list[FallbackReason] = field(default_factory=list)


@dataclass(frozen=True)
class ReloadResult:
    """Outcome of a reload: whether a new store went into service, and the versions served."""

    changed: bool
    versions: dict[str, int | None]


@dataclass(frozen=True)
class HealthReport:
    """What ``/health`` reports."""

    status: str
    ready: bool
    database_reachable: bool
    database_error: str | None
    tables: dict[str, dict[str, Any]]
    last_reload_error: str | None
    store_bytes: int


class DatabaseRetryTracker:
    """Whether the database answered lately; after a failure, calls pause for ``retry_seconds``.

    Updates are single attribute writes, so concurrent threads need no lock: the worst case
    of a race is one extra attempt.
    """

    def __init__(self, retry_seconds: float) -> None:
        self.retry_seconds = retry_seconds
        self._failed_at: float | None = None
        self.last_error: str | None = None

    @property
    def reachable(self) -> bool:
        """Whether the last call succeeded."""
        return self._failed_at is None

    def should_try(self) -> bool:
        """Whether a request may call the database now."""
        failed_at = self._failed_at
        return failed_at is None or time.monotonic() - failed_at >= self.retry_seconds

    def succeeded(self) -> None:
        """Record a successful call."""
        self._failed_at, self.last_error = None, None

    def failed(self, error: Exception) -> None:
        """Record a failed call (only the error's type is kept: messages may name hosts)."""
        self._failed_at, self.last_error = time.monotonic(), type(error).__name__
        logger.warning("database call failed: %s", error)


def create_service_engine(settings: ServiceSettings) -> Engine:
    """An engine whose connection attempts fail fast when the database is unreachable."""
    url = settings.db_url
    if make_url(url).get_backend_name() == "postgresql":
        return create_db_engine(
            url, connect_args={"connect_timeout": settings.database_connect_timeout_seconds}
        )
    return create_db_engine(url)


class OnlineMemo(NamedTuple):
    """A user's session candidates and the immutable objects they were computed from."""

    activity: UserActivity
    similar: GroupedLists
    histories: GroupedLists
    model: SessionBlendModel | None
    candidates: SessionCandidates


class RecommendationService:
    """Recommendations from the published tables blended with online i2i.

    Parameters
    ----------
    settings : ServiceSettings
        Database, limits and service knobs.
    metrics : ServiceMetrics, optional
        Where to count requests; a fresh registry by default.
    engine : Engine, optional
        The database; built from the settings by default.
    """

    def __init__(
        self, settings: ServiceSettings, metrics: ServiceMetrics | None = None, engine: Engine | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else ServiceMetrics()
        self.engine = engine if engine is not None else create_service_engine(settings)
        self.events = OnlineEventsRepository(self.engine)
        self.activity = OnlineActivityCache(settings.online_events_limit, settings.online_purchases_limit)
        # Per user with online events: the session candidates last computed and what they came from.
        self._online_memo: dict[int, OnlineMemo] = {}
        self.registry = ModelRegistry(open_object_store(settings.store_url, settings))
        # The published session model and its version: replaced whole (one assignment) on reload.
        self._session: tuple[ModelVersion | None, SessionBlendModel | None] = (None, None)
        self.database = DatabaseRetryTracker(settings.database_retry_seconds)
        self.i2i_config = ItemToItemConfig()
        self._store = RecommendationStore.empty()
        self._reload_lock = threading.Lock()
        self._events_table_ready = False
        self.last_reload_error: str | None = None
        self.metrics.database_up.set_function(lambda: float(self.database.reachable))
        self._publish_store_metrics()

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def store(self) -> RecommendationStore:
        """The store in service (take it once per request: a reload may swap it at any time)."""
        return self._store

    def start(self) -> None:
        """Prepare the events table, read the online events and load the tables; a database that
        is down is not fatal: the service starts empty (not ready) and the polling loops load
        everything later."""
        try:
            self._ensure_events_table()
        except sa.exc.SQLAlchemyError as error:
            self.database.failed(error)
        self.refresh_online_events()
        self.try_reload()

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    def reload(self) -> ReloadResult:
        """Load the tables whose published version changed and swap the store in atomically.

        A failure keeps the current store in service (and is reported by health).
        """
        with self._reload_lock:
            current = self._store
            started = time.perf_counter()
            try:
                # While the store serves, changed tables are read in a child process: the requests
                # keep the GIL and the memory. A store that serves nothing yet loads here, faster.
                reader = read_parts_in_child if current.is_ready else read_parts
                fresh = load_store(self.engine, current, reader)
            except sa.exc.SQLAlchemyError as error:
                self._reload_failed(error)
                raise DatabaseUnavailableError(
                    "the database is unreachable: the tables were not reloaded"
                ) from error
            except Exception as error:
                # A malformed table must not stop the polling loop: keep serving what works.
                logger.exception("reloading the tables failed")
                self._reload_failed(error)
                raise
            self.database.succeeded()
            self.last_reload_error = None
            changed = (fresh is not current) | self._reload_session_model()
            # One reference assignment: requests see either the old or the new store, whole.
            self._store = fresh
            self.metrics.reloads.labels("changed" if changed else "unchanged").inc()
            if changed:
                # Every memo entry refers to a replaced table or model: dropping them frees those.
                self._online_memo = {}
                # Collect what the load left, then move what is alive now (modules, settings, the
                # store) out of the collector's sight: the automatic full collections, which hold
                # the GIL while every request waits, then walk only the objects made since (a
                # reload's allocations set off 0.2-0.8 s pauses; issue 16). The collection here
                # walks only what came after the previous freeze.
                gc.collect()
                gc.freeze()
                seconds = time.perf_counter() - started
                logger.info("tables in service after %.1f s of loading: %s", seconds, fresh.versions)
                self.metrics.store_load_seconds.set(seconds)
                self._publish_store_metrics()
            return ReloadResult(changed, fresh.versions)

    def _reload_session_model(self) -> bool:
        """Load the published session model if its version changed; whether it did. A model that
        cannot be read leaves the current one in service (logged)."""
        try:
            promoted = self.registry.current(SESSION_BLEND_MODEL)
            if promoted is None or promoted == self._session[0]:
                return False
            model = SessionBlendModel.load(
                self.registry.store, self.registry.prefix(SESSION_BLEND_MODEL, promoted.version)
            )
        except (ModelError, OSError, ValueError) as error:
            logger.warning("the session model was not reloaded: %s", error)
            return False
        self._session = (promoted, model)
        logger.info("session model %s in service", promoted.version)
        return True

    @property
    def session_model(self) -> SessionBlendModel | None:
        """The published session model (``None`` until the pipeline has published one)."""
        return self._session[1]

    def try_reload(self) -> None:
        """:meth:`reload` for the background loop: errors are logged and counted, never raised."""
        try:
            self.reload()
        except Exception:
            # The loop must survive anything; reload has logged and counted it already.
            return

    def _reload_failed(self, error: Exception) -> None:
        self.last_reload_error = type(error).__name__
        self.metrics.reloads.labels("failed").inc()
        if isinstance(error, sa.exc.SQLAlchemyError):
            self.database.failed(error)

    def _publish_store_metrics(self) -> None:
        store = self._store
        for name, version in store.versions.items():
            self.metrics.table_version.labels(name).set(version or 0)
        self.metrics.store_bytes.set(store.nbytes)

    # -- reads -------------------------------------------------------------------------------
    def _ready_store(self, k: int, kind: str) -> RecommendationStore:
        """The store in service, once ``k`` is checked against what is published for ``kind`` (the
        bound is a setting, so it is checked here rather than by the web layer's schema)."""
        if k > (largest := k_bound(self.settings, kind)):
            raise TooManyItemsError(k, largest)
        store = self.store
        if not store.is_ready:
            raise NotReadyError(
                "no recommendations are loaded yet: the database has been unreachable since start-up "
                "or default_recommendations is not published; the service retries every "
                f"{self.settings.reload_interval_seconds:g} s"
            )
        return store

    def default(self, k: int) -> RecommendationResult:
        """The ``k`` most popular available items."""
        items = as_recommendations(self._ready_store(k, "default").default(), k)
        self.metrics.count_request("default", [])
        return RecommendationResult(items, sources_of(items))

    def personalized(self, user_id: int, k: int) -> RecommendationResult:
        """The user's offline list blended with online i2i, without bought or unavailable items.

        Unknown users get the popular items (fallback ``cold_user``).
        """
        store = self._ready_store(k, "personalized")
        fallbacks: list[FallbackReason] = []
        history = self._history(store, user_id)
        offline = self._offline_list(store, user_id, history, fallbacks)
        fallbacks.extend(self._online_fallbacks())
        activity = self.activity.get(user_id)
        # The store's lists hold available items only, and the published lists nothing bought
        # before; what the user bought since (online) or before (history) goes here.
        bought = np.union1d(activity.bought, history.bought)
        offline, default = offline.without(bought), store.default().without(bought)
        if activity.recent.size:
            model = self.session_model
            candidates = self._session_candidates(user_id, activity, store, model)
            own = offline if offline.source != "default" else Candidates.empty("default")
            weights = model.config if model is not None else SessionBlendWeights()
            items = session_blend(candidates, own, [default], k, weights)
        else:
            items = blend(Candidates.empty("online"), offline, [default], k)
        sources = sources_of(items)
        if offline.source != "default" and "default" in sources:
            fallbacks.append(FallbackReason.FILLED_WITH_DEFAULT)
        self.metrics.count_request("personalized", fallbacks)
        return RecommendationResult(items, sources, fallbacks)

    def online(self, user_id: int, k: int) -> RecommendationResult:
        """The session blend without the offline list (may be fewer than ``k``): from the user's
        online events, and their published history for the items viewed before the session."""
        store = self._ready_store(k, "online")
        fallbacks = self._online_fallbacks()
        model = self.session_model
        candidates = self._session_candidates(user_id, self.activity.get(user_id), store, model)
        weights = model.config if model is not None else SessionBlendWeights()
        items = session_blend(candidates, Candidates.empty("online"), [], k, weights)
        if not items and not fallbacks:
            fallbacks.append(FallbackReason.NO_ONLINE_EVENTS)
        self.metrics.count_request("online", fallbacks)
        return RecommendationResult(items, sources_of(items), fallbacks)

    def _session_candidates(
        self,
        user_id: int,
        activity: UserActivity,
        store: RecommendationStore,
        model: SessionBlendModel | None,
    ) -> SessionCandidates:
        """The candidates of the user's running session, computed once per change.

        They depend only on the user's activity, the similar-items and histories tables and the
        session model, immutable objects replaced on change, so they are kept until one is
        replaced: repeated requests of a user (a page and its refreshes) skip the scoring. The
        items viewed before the session are the user's earlier online events, then their
        published history.
        """
        similar, histories = store.lists(SIMILAR_ITEMS), store.lists(USER_HISTORIES)
        memo = self._online_memo.get(user_id)
        if (
            memo is not None
            and memo.activity is activity
            and memo.similar is similar
            and memo.histories is histories
            and memo.model is model
        ):
            return memo.candidates
        session = activity.session(self.settings.session_gap_minutes * 60_000)
        earlier = np.concatenate(
            [activity.recent[session.recent.size :], self._history(store, user_id).recent]
        )
        candidates = session_candidates(
            session, model, similar, self.i2i_config, store.known_items, store.unavailable_items, earlier
        )
        if activity.recent.size:
            self._online_memo[user_id] = OnlineMemo(activity, similar, histories, model, candidates)
        return candidates

    def similar(self, item_id: int, k: int) -> list[Recommendation]:
        """The item's ``k`` most similar items, with the source of each.

        Raises
        ------
        UnknownItemError
            If the item is neither in the catalogue nor in the similar-items table.
        """
        store = self._ready_store(k, "similar")
        found = store.lists(SIMILAR_ITEMS).get(item_id, "similar")
        if found is None:
            if not store.is_known_item(item_id):
                raise UnknownItemError(
                    f"item {item_id} is unknown: it is not in the catalogue or the similar-items table"
                )
            return []
        return as_recommendations(found, k)

    def _history(self, store: RecommendationStore, user_id: int) -> UserActivity:
        """The user's published history: latest distinct items first, and what they bought."""
        return history_activity(store.lists(USER_HISTORIES).get(user_id, "history"), self.i2i_config.n_recent)

    def _offline_list(
        self, store: RecommendationStore, user_id: int, history: UserActivity, fallbacks: list[FallbackReason]
    ) -> Candidates:
        """The user's published list, else neighbours of their history, else the popular items
        (the only case that is a ``cold_user``)."""
        for table, source in OFFLINE_CHAIN:
            found = store.lists(table).get(user_id, source)
            if found is not None:
                if table is not RANKED_RECOMMENDATIONS:
                    fallbacks.append(FallbackReason.NO_RANKED_RECOMMENDATIONS)
                return found
        if history.recent.size:
            fallbacks.append(FallbackReason.NO_RANKED_RECOMMENDATIONS)
            return online_i2i(history, store.lists(SIMILAR_ITEMS), self.i2i_config, HISTORY_I2I)
        fallbacks.append(FallbackReason.COLD_USER)
        return store.default()

    def _online_fallbacks(self) -> list[FallbackReason]:
        """``database_unavailable`` while the online events in memory may miss recent ones."""
        if self.activity.loaded and self.database.reachable:
            return []
        return [FallbackReason.DATABASE_UNAVAILABLE]

    def refresh_online_events(self) -> None:
        """Read the online events recorded since the last refresh (all of them the first time).

        Blocking; run by a background loop. Errors are logged and remembered, never raised.
        """
        if not self.database.should_try():
            return
        try:
            self._ensure_events_table()
            polled_at = time.monotonic()
            rows = self.events.events_after(self.activity.watermark)
        except sa.exc.SQLAlchemyError as error:
            self.database.failed(error)
            return
        self.database.succeeded()
        self.activity.apply_poll(rows, polled_at)

    # -- writes ------------------------------------------------------------------------------
    def record_event(self, user_id: int, item_id: int, event: str, moment: datetime | None) -> OnlineEvent:
        """Store an online event (``moment`` defaults to now).

        Raises
        ------
        DatabaseUnavailableError
            If the database cannot store it (the client should retry later).
        """
        timestamp = to_epoch_ms(moment if moment is not None else datetime.now(UTC))
        try:
            self._ensure_events_table()
            stored = self.events.record(user_id, item_id, event, timestamp)
        except sa.exc.SQLAlchemyError as error:
            self.database.failed(error)
            raise DatabaseUnavailableError(
                "the database is unreachable: the event was not recorded"
            ) from error
        self.database.succeeded()
        self.activity.add(stored)
        self.metrics.events.labels(event).inc()
        return stored

    def _ensure_events_table(self) -> None:
        """Create ``online_events`` once per process (raises while the database is down)."""
        if not self._events_table_ready:
            self.events.ensure_table()
            self._events_table_ready = True

    # -- health ------------------------------------------------------------------------------
    def check_database(self) -> bool:
        """Ping the database (health and readiness ask every time, so recovery shows at once)."""
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError as error:
            self.database.failed(error)
            return False
        self.database.succeeded()
        return True

    def health(self) -> HealthReport:
        """Database reachability, the version of every table in memory and whether answers are complete."""
        reachable = self.check_database()
        store = self.store
        ready = store.is_ready
        return HealthReport(
            status="ok" if reachable and ready else "degraded",
            ready=ready,
            database_reachable=reachable,
            database_error=self.database.last_error,
            tables={name: table.describe() for name, table in store.tables.items()},
            last_reload_error=self.last_reload_error,
            store_bytes=store.nbytes,
        )
