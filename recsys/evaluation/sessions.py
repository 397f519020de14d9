"""Session evaluation: replay test sessions event by event and score the list after every prefix.

The test sessions are the visitors' sessions (``user_id, session_index``) with at least
``min_events`` events in the test window, for new visitors and returning ones alike. After the
first ``t`` events of a session (a *prefix*), the recommender's list is judged on two tasks:

* **discovery** — the next event is a view of an item not seen in the prefix: is that item in
  the list? (next-item prediction as in the session-based literature, without the "reminders"
  a list of already seen items would win trivially);
* **cart** — the items added to cart or bought later in the session, except those already
  carted or bought in the prefix: is one of them in the list (hit rate), and how high is the
  first (reciprocal rank)?

Each task counts the prefixes that have a target for it; HR@k and MRR@k are means over them.
The prefix frame holds every counted prefix with its events, so batch recommenders score all
prefixes at once, and :func:`replay_online` feeds an online recommender (the service) the
events one by one and asks it at every counted prefix, as a visitor's requests would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from recsys.data.schema import RELEVANT_EVENTS

TASKS = ("discovery", "cart")
CUTOFFS = (10, 20)


@dataclass(frozen=True)
class SessionReplay:
    """Counted prefixes of the test sessions and their targets.

    Attributes
    ----------
    events : DataFrame
        Test events of the sessions, time-ordered: ``user_id, item_id, event, datetime,
        session_id, position`` (0-based within the session).
    prefixes : DataFrame
        One row per counted prefix: ``prefix_id, session_id, user_id, length`` (events in the
        prefix) and ``datetime`` (of its last event).
    targets : dict of DataFrame
        Per task, ``prefix_id, item_id`` rows (one per target item).
    """

    events: pd.DataFrame
    prefixes: pd.DataFrame
    targets: dict[str, pd.DataFrame]

    def subset(self, prefix_ids: npt.ArrayLike) -> SessionReplay:
        """The replay restricted to some prefixes (e.g. one visitor segment)."""
        ids = np.asarray(prefix_ids)
        return SessionReplay(
            self.events,
            self.prefixes[self.prefixes["prefix_id"].isin(ids)],
            {task: frame[frame["prefix_id"].isin(ids)] for task, frame in self.targets.items()},
        )

    def prefix_events(self, max_events: int | None = None) -> pd.DataFrame:
        """The events of every prefix: ``prefix_id, user_id, item_id, event, datetime``, oldest first.

        ``max_events`` keeps only the latest ones of each prefix (bounds long, bot-like sessions).
        """
        joined = self.prefixes[["prefix_id", "session_id", "length"]].merge(self.events, on="session_id")
        inside = joined["position"] < joined["length"]
        if max_events is not None:
            inside &= joined["position"] >= joined["length"] - max_events
        joined = joined[inside].sort_values(["prefix_id", "position"], kind="stable")
        return joined[["prefix_id", "user_id", "item_id", "event", "datetime"]].reset_index(drop=True)


def session_replay(
    test: pd.DataFrame, min_events: int = 2, relevant_events: Sequence[str] = RELEVANT_EVENTS
) -> SessionReplay:
    """Prefixes and targets of the test sessions with at least ``min_events`` events.

    Parameters
    ----------
    test : DataFrame
        Test-window interactions: ``user_id, item_id, event, datetime, session_index``.

    Raises
    ------
    ValueError
        If no session has a counted prefix.
    """
    events = test.sort_values(["user_id", "session_index", "datetime"], kind="stable").reset_index(drop=True)
    events["session_id"] = events.groupby(["user_id", "session_index"], sort=False).ngroup()
    sizes = events.groupby("session_id")["item_id"].transform("size")
    events = events[sizes >= min_events].reset_index(drop=True)
    events["session_id"] = events.groupby("session_id", sort=False).ngroup()
    events["position"] = events.groupby("session_id").cumcount()
    events = events[["user_id", "item_id", "event", "datetime", "session_id", "position"]]

    # Discovery: an event that is a view of an item first seen there (not its first event).
    first_seen = ~events.duplicated(["session_id", "item_id"])
    new_view = (events["event"] == "view") & first_seen & (events["position"] > 0)
    discovery = events.loc[new_view, ["session_id", "position", "item_id"]].rename(
        columns={"position": "length"}
    )

    # Cart: for prefix length t, items carted/bought at positions >= t and not before t.
    carts = events[events["event"].isin(relevant_events)]
    first_cart = carts.groupby(["session_id", "item_id"], as_index=False)["position"].min()
    lengths = events.loc[events["position"] > 0, ["session_id", "position"]].rename(
        columns={"position": "length"}
    )
    cart = lengths.merge(first_cart, on="session_id")
    # Targets of prefix t: the item's first cart/purchase is at t or later (none in the prefix).
    cart = cart.loc[cart["position"] >= cart["length"], ["session_id", "length", "item_id"]]

    keys = pd.concat([discovery[["session_id", "length"]], cart[["session_id", "length"]]]).drop_duplicates()
    if keys.empty:
        raise ValueError(f"no test session of {min_events}+ events has a target to predict")
    keys = keys.sort_values(["session_id", "length"], ignore_index=True)
    keys["prefix_id"] = np.arange(len(keys), dtype=np.int64)
    last = events[["session_id", "position", "user_id", "datetime"]].assign(length=events["position"] + 1)
    prefixes = keys.merge(last.drop(columns="position"), on=["session_id", "length"])
    targets = {
        task: frame.merge(keys, on=["session_id", "length"])[["prefix_id", "item_id"]]
        for task, frame in (("discovery", discovery), ("cart", cart))
    }
    return SessionReplay(
        events, prefixes[["prefix_id", "session_id", "user_id", "length", "datetime"]], targets
    )


def first_hit_ranks(recommendations: pd.DataFrame, replay: SessionReplay, task: str) -> pd.Series:
    """The best rank of a ``task`` target in each list (``prefix_id, item_id, rank``): one value per
    prefix with a target, ``prefix_id`` ascending, ``inf`` where the list has none."""
    targets = replay.targets[task]
    found = targets.merge(recommendations[["prefix_id", "item_id", "rank"]], on=["prefix_id", "item_id"])
    best = found.groupby("prefix_id")["rank"].min().astype(np.float64)
    return best.reindex(np.unique(targets["prefix_id"].to_numpy()), fill_value=np.inf)


def session_metrics(
    recommendations: pd.DataFrame, replay: SessionReplay, cutoffs: Sequence[int] = CUTOFFS
) -> dict[str, float]:
    """HR@k and MRR@k of a method's lists (``prefix_id, item_id, rank``) on both tasks.

    Keys are ``<task>_hr@k`` / ``<task>_mrr@k``, plus ``<task>_prefixes``.
    """
    return metrics_of_ranks(task_hit_ranks(recommendations, replay), cutoffs)


def task_hit_ranks(
    recommendations: pd.DataFrame, replay: SessionReplay
) -> dict[str, npt.NDArray[np.float64]]:
    """:func:`first_hit_ranks` of every task, as arrays (``inf``: no target in the list)."""
    return {task: first_hit_ranks(recommendations, replay, task).to_numpy() for task in TASKS}


def metrics_of_ranks(
    ranks: dict[str, npt.NDArray[np.float64]], cutoffs: Sequence[int] = CUTOFFS
) -> dict[str, float]:
    """:func:`session_metrics` from the first-hit ranks of every task (:func:`task_hit_ranks`)."""
    result: dict[str, float] = {}
    for task, best in ranks.items():
        n = best.size
        for k in cutoffs:
            within = best[best <= k]
            # No prefix with a target: the rates are undefined, not zero.
            result[f"{task}_hr@{k}"] = float(len(within) / n) if n else float("nan")
            result[f"{task}_mrr@{k}"] = float((1.0 / within).sum() / n) if n else float("nan")
        result[f"{task}_prefixes"] = float(n)
    return result


def replay_online(
    replay: SessionReplay,
    record: Callable[[int, int, str, pd.Timestamp], None],
    recommend: Callable[[int], Sequence[int]],
    previous: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Lists of an online recommender at every counted prefix, its events fed one by one.

    The events of every visitor go to ``record(user_id, item_id, event, moment)`` in time
    order; just before the event that ends a counted prefix's successor (i.e. once the
    prefix's events are recorded), ``recommend(user_id)`` gives the list. Events of the
    visitor's earlier test sessions are recorded too (the service holds them), and so are
    ``previous`` events (other test-window events of the visitors, e.g. of sessions below
    ``min_events``), so the online state is what a live service would have.

    Returns
    -------
    DataFrame
        ``prefix_id, item_id, rank``.
    """
    events = replay.events[["user_id", "item_id", "event", "datetime", "session_id", "position"]]
    if previous is not None:
        events = pd.concat(
            [
                events,
                previous[["user_id", "item_id", "event", "datetime"]].assign(session_id=-1, position=-1),
            ],
            ignore_index=True,
        )
    events = events.sort_values(["datetime", "user_id"], kind="stable")
    asked = replay.prefixes.set_index(["session_id", "length"])["prefix_id"]
    ask_at: dict[tuple[int, int], int] = {key: int(value) for key, value in asked.items()}
    prefix_ids: list[int] = []
    items: list[int] = []
    ranks: list[int] = []
    columns = (events[c].to_numpy() for c in ("user_id", "item_id", "event", "session_id", "position"))
    moments = events["datetime"].tolist()
    # One visitor request per counted prefix: an inherently sequential replay.
    for (user, item, event, session, position), moment in zip(
        zip(*columns, strict=True), moments, strict=True
    ):
        prefix = ask_at.get((int(session), int(position)))
        if prefix is not None:
            answer = recommend(int(user))
            prefix_ids.extend([prefix] * len(answer))
            items.extend(answer)
            ranks.extend(range(1, len(answer) + 1))
        record(int(user), int(item), str(event), moment)
    return pd.DataFrame(
        {
            "prefix_id": np.asarray(prefix_ids, dtype=np.int64),
            "item_id": np.asarray(items, dtype=np.int64),
            "rank": np.asarray(ranks, dtype=np.int64),
        }
    )


def recently_seen(prefix_events: pd.DataFrame, k: int) -> pd.DataFrame:
    """The prefix's distinct items, latest first: the "reminder" list (``prefix_id, item_id, rank``)."""
    latest = prefix_events.iloc[::-1].drop_duplicates(["prefix_id", "item_id"])
    latest = latest.assign(rank=latest.groupby("prefix_id", sort=False).cumcount() + 1)
    latest = latest.loc[latest["rank"] <= k, ["prefix_id", "item_id", "rank"]]
    return latest.sort_values(["prefix_id", "rank"], ignore_index=True)


def segment_of_sessions(replay: SessionReplay, train_users: npt.ArrayLike) -> pd.Series:
    """``cold`` / ``returning`` per prefix (index ``prefix_id``): has the visitor training events?"""
    returning = replay.prefixes["user_id"].isin(np.asarray(train_users))
    return pd.Series(
        np.where(returning, "returning", "cold"),
        index=replay.prefixes["prefix_id"].to_numpy(),
        name="segment",
    )
