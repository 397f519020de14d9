"""Every user's recent online events, held in memory and kept current by polling the database.

A personalised request needs the user's latest online events and their online purchases.
Reading them from ``online_events`` on every request cost a database round trip and a
thread-pool hand-off per request (most of the request's time), so each worker keeps them in
memory instead:

* at start-up it reads the whole table;
* every ``online_events_refresh_seconds`` (0.5 s by default) it reads the events recorded
  since (``event_id`` above a watermark, one indexed range scan), so an event another worker
  recorded is seen within that interval;
* an event this worker records is applied at once (a client reads its own write).

Event ids come from a sequence, but transactions commit in any order: an event with a lower
id can become visible after one with a higher id. The watermark therefore only advances to
the highest id seen by a poll at least ``settle_seconds`` old, so every poll re-reads the last
few seconds of events; those already applied are recognised by id and skipped. An insert
that stays uncommitted for longer than ``settle_seconds`` (it is a single-row autocommit
insert, milliseconds) would be missed until the next restart. Right after the start-up read
(which has no older poll) the watermark is the highest id read minus ``startup_overlap``
ids, so the first polls re-read the latest events instead of the whole table.

Memory: a user with online events costs a few hundred bytes (a few small arrays), and only the
``online_events_limit`` latest events and ``online_purchases_limit`` latest distinct items
bought of each user are kept: a bot's burst of thousands of events or purchases replaces its
older ones instead of growing its memory. Events arriving out of time
order are placed by their timestamp (newest first), so the running session
(:meth:`~recsys.service.events.UserActivity.session`) is cut at the right gap.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np
import numpy.typing as npt

from recsys.service.events import EVENT_ID, ITEM, PURCHASE, TIMESTAMP, USER, OnlineEvent, UserActivity

NO_ACTIVITY = UserActivity.none()


class OnlineActivityCache:
    """The latest events (up to ``limit``) and items bought (up to ``purchase_limit``) of each
    user, in memory.

    Parameters
    ----------
    limit : int
        Latest events kept per user.
    purchase_limit : int
        Latest distinct items bought kept per user.
    settle_seconds : float
        How long an event id may take to become visible after a higher one (see the module).
    startup_overlap : int
        Ids below the highest one read at start-up that the next polls read again.
    """

    def __init__(
        self,
        limit: int,
        purchase_limit: int = 100,
        settle_seconds: float = 5.0,
        startup_overlap: int = 10_000,
    ) -> None:
        self.limit = limit
        self.purchase_limit = purchase_limit
        self.settle_seconds = settle_seconds
        self.startup_overlap = startup_overlap
        self.loaded = False
        self._activity: dict[int, UserActivity] = {}
        # Per user: (timestamp, event_id, item_id) rows of the latest events, newest first.
        self._latest: dict[int, npt.NDArray[np.int64]] = {}
        # Per user who bought online: (timestamp, event_id, item_id) of the latest distinct items bought.
        self._purchases: dict[int, npt.NDArray[np.int64]] = {}
        # Events with ids above the watermark are re-read by every poll: these are applied already.
        self._watermark = 0
        self._applied_above_watermark: set[int] = set()
        self._highest_seen = 0
        self._polls: deque[tuple[float, int]] = deque()
        # The poller (a worker thread) and recording requests (other threads) both write.
        self._lock = threading.Lock()

    @property
    def watermark(self) -> int:
        """Every event with an id up to this one has been applied; polls read the ones above."""
        return self._watermark

    @property
    def users(self) -> int:
        """Number of users with online events in memory."""
        return len(self._activity)

    def get(self, user_id: int) -> UserActivity:
        """The user's online activity (none for a user without online events): a dict lookup."""
        return self._activity.get(user_id, NO_ACTIVITY)

    def apply_poll(self, rows: npt.NDArray[np.int64], polled_at: float | None = None) -> int:
        """Apply what a poll read (``rows`` of ``events_after(watermark)``); return the new events.

        Parameters
        ----------
        rows : ndarray of shape (n, 5)
            ``event_id, user_id, item_id, timestamp, purchase`` (see :mod:`recsys.service.events`).
        polled_at : float, optional
            ``time.monotonic()`` when the poll ran (now by default).
        """
        polled_at = time.monotonic() if polled_at is None else polled_at
        with self._lock:
            applied = self._apply(rows)
            if rows.size:
                self._highest_seen = max(self._highest_seen, int(rows[:, EVENT_ID].max()))
            if self.loaded:
                self._advance_watermark(polled_at)
            else:
                self._watermark = max(0, self._highest_seen - self.startup_overlap)
                self._polls.append((polled_at, self._highest_seen))
                self.loaded = True
            self._applied_above_watermark = {i for i in self._applied_above_watermark if i > self._watermark}
        return applied

    def add(self, event: OnlineEvent) -> None:
        """Apply an event this worker has just stored (before any poll reads it)."""
        row = np.array(
            [[event.event_id, event.user_id, event.item_id, event.timestamp, event.event == "transaction"]],
            dtype=np.int64,
        )
        with self._lock:
            self._apply(row)

    def _apply(self, rows: npt.NDArray[np.int64]) -> int:
        fresh = rows[rows[:, EVENT_ID] > self._watermark]
        if self._applied_above_watermark and fresh.size:
            known = np.fromiter(self._applied_above_watermark, dtype=np.int64)
            fresh = fresh[~np.isin(fresh[:, EVENT_ID], known)]
        if fresh.size == 0:
            return 0
        self._applied_above_watermark.update(fresh[:, EVENT_ID].tolist())
        fresh = fresh[np.argsort(fresh[:, USER], kind="stable")]
        users, starts = np.unique(fresh[:, USER], return_index=True)
        # One update per user with new events (not per event): at start-up that is every user.
        for user, events in zip(users.tolist(), np.split(fresh, starts[1:]), strict=True):
            self._update_user(user, events)
        return int(fresh.shape[0])

    def _update_user(self, user_id: int, events: npt.NDArray[np.int64]) -> None:
        latest = events[:, [TIMESTAMP, EVENT_ID, ITEM]]
        previous = self._latest.get(user_id)
        if previous is not None:
            latest = np.concatenate([previous, latest])
        latest = _newest_first(latest)[: self.limit]
        bought = self.get(user_id).bought
        purchases = events[events[:, PURCHASE] == 1][:, [TIMESTAMP, EVENT_ID, ITEM]]
        if purchases.size:
            previous = self._purchases.get(user_id)
            if previous is not None:
                purchases = np.concatenate([previous, purchases])
            purchases = _newest_first(purchases)
            # An item bought again counts once, at its latest purchase.
            _, first = np.unique(purchases[:, 2], return_index=True)
            purchases = purchases[np.sort(first)][: self.purchase_limit]
            self._purchases[user_id] = purchases
            bought = np.sort(purchases[:, 2])
        self._latest[user_id] = latest
        # A new object, assigned in one step: a request on another thread sees the old or the new.
        self._activity[user_id] = UserActivity(
            np.ascontiguousarray(latest[:, 2]), bought, np.ascontiguousarray(latest[:, 0])
        )

    def _advance_watermark(self, now: float) -> None:
        self._polls.append((now, self._highest_seen))
        while self._polls and now - self._polls[0][0] >= self.settle_seconds:
            self._watermark = max(self._watermark, self._polls.popleft()[1])


def _newest_first(rows: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """``(timestamp, event_id, ...)`` rows newest first: by timestamp (a client may send an older
    one), then the later recorded."""
    return rows[np.lexsort((-rows[:, 1], -rows[:, 0]))]
