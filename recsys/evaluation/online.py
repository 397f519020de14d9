"""Online i2i evaluation by session replay.

For every add-to-cart or purchase in the test window that has earlier events in the same
session, the events seen so far are given to the online recommender (as the service would
see them) and the target item is looked for in its top k. Reported: hit rate and MRR at k,
for i2i neighbours alone and for "recently viewed first, then neighbours" (the blend the
service uses), since on shop data most carts follow a view of the same item.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from recsys.data.schema import RELEVANT_EVENTS
from recsys.models.i2i import recent_items, score_from_recent_items, top_k


def replay_targets(
    test: pd.DataFrame, relevant_events: Sequence[str] = RELEVANT_EVENTS
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Targets (``target_id, item_id``) and what was seen before each.

    The history frame uses the target id as ``user_id`` (``user_id, item_id, datetime``), so
    the user i2i functions can score every target on its own.
    """
    events = test.sort_values(["user_id", "datetime"], kind="stable").reset_index(drop=True)
    events["order"] = np.arange(len(events))
    targets = events[events["event"].isin(relevant_events)][["user_id", "session_index", "item_id", "order"]]
    targets = targets.rename(columns={"order": "target_id"})
    seen = targets.merge(
        events[["user_id", "session_index", "item_id", "datetime", "order"]].rename(
            columns={"item_id": "seen_item"}
        ),
        on=["user_id", "session_index"],
    )
    seen = seen[seen["order"] < seen["target_id"]]
    targets = targets[targets["target_id"].isin(seen["target_id"])][["target_id", "item_id"]]
    history = seen.rename(columns={"target_id": "_target"})[["_target", "seen_item", "datetime"]]
    history = history.rename(columns={"_target": "user_id", "seen_item": "item_id"})
    return targets.reset_index(drop=True), history


def session_replay(
    test: pd.DataFrame,
    similar: pd.DataFrame,
    k: int = 10,
    n_recent: int = 10,
    recency_half_life: float = 3.0,
) -> pd.DataFrame:
    """Hit rate and MRR at ``k`` of the online recommenders, one row per variant.

    Parameters
    ----------
    test : DataFrame
        Test-window interactions (``user_id, item_id, event, datetime, session_index``).
    similar : DataFrame
        Similar-items table (``item_id, similar_item_id, score``) built on the training window.
    """
    targets, history = replay_targets(test)
    if targets.empty:
        raise ValueError("no test session has an add-to-cart/purchase after an earlier event")
    recent = recent_items(history, n_recent)
    neighbours = top_k(score_from_recent_items(recent, similar, recency_half_life), k)
    # Recently seen items first (newest first), then neighbours: scores keep that order.
    seen_first = pd.concat(
        [
            recent.assign(score=1e6 - recent["position"])[["user_id", "item_id", "score"]],
            neighbours[["user_id", "item_id", "score"]],
        ],
        ignore_index=True,
    ).drop_duplicates(["user_id", "item_id"], keep="first")
    rows = {}
    for variant, reco in (("i2i", neighbours), ("recent_then_i2i", top_k(seen_first, k))):
        found = targets.merge(
            reco.rename(columns={"user_id": "target_id"}), on=["target_id", "item_id"], how="left"
        )
        rank = found["rank"].to_numpy(dtype=np.float64)
        rows[variant] = {
            f"hit_rate@{k}": float(np.mean(~np.isnan(rank))),
            f"mrr@{k}": float(np.nansum(1.0 / rank) / len(rank)),
            "targets": float(len(targets)),
        }
    return pd.DataFrame.from_dict(rows, orient="index")
