"""A small interaction window with planted structure, shared by the model tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.models.dataset import InteractionData

N_USERS, N_ITEMS, N_CLUSTERS = 300, 120, 6
START = pd.Timestamp("2015-06-01")


def clustered_interactions(seed: int = 0, n_events: int = 6000) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Users each browse one cluster of items; a few events are add-to-cart and purchases."""
    rng = np.random.default_rng(seed)
    user_cluster = rng.integers(0, N_CLUSTERS, N_USERS)
    users = rng.integers(0, N_USERS, n_events)
    per_cluster = N_ITEMS // N_CLUSTERS
    items = 1000 + user_cluster[users] * per_cluster + rng.integers(0, per_cluster, n_events)
    events = rng.choice(["view", "addtocart", "transaction"], n_events, p=[0.85, 0.1, 0.05])
    frame = pd.DataFrame(
        {
            "user_id": users.astype(np.int64),
            "item_id": items.astype(np.int64),
            "event": events,
            "weight": pd.Series(events).map({"view": 1.0, "addtocart": 4.0, "transaction": 8.0}).to_numpy(),
            "datetime": START + pd.to_timedelta(rng.integers(0, 30 * 86_400, n_events), unit="s"),
            "session_index": rng.integers(0, 4, n_events),
        }
    ).sort_values("datetime", ignore_index=True)
    catalogue = pd.DataFrame(
        {
            "item_id": np.arange(1000, 1000 + N_ITEMS + 10, dtype=np.int64),  # 10 items never seen
            "category_id": pd.array(np.arange(N_ITEMS + 10) // per_cluster, dtype="Int64"),
            "parent_category_id": pd.array(np.arange(N_ITEMS + 10) // (2 * per_cluster), dtype="Int64"),
            "root_category_id": pd.array(np.zeros(N_ITEMS + 10, dtype=int), dtype="Int64"),
            "price": rng.uniform(10, 100, N_ITEMS + 10),
            "available": pd.array(rng.random(N_ITEMS + 10) > 0.1, dtype="boolean"),
            "first_seen": START,
        }
    )
    return frame, catalogue


@pytest.fixture(scope="session")
def clustered() -> tuple[pd.DataFrame, pd.DataFrame]:
    return clustered_interactions()


@pytest.fixture
def window(clustered: tuple[pd.DataFrame, pd.DataFrame]) -> InteractionData:
    frame, catalogue = clustered
    return InteractionData.build(frame, catalogue)
