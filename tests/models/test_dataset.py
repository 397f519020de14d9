"""InteractionData's lookups by user, on the clustered window of conftest.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.models.dataset import InteractionData


@pytest.mark.parametrize("pick", ["some", "with_unknown_and_repeated", "none", "all"])
def test_interactions_of_users_are_the_rows_a_scan_selects(window: InteractionData, pick: str) -> None:
    users = window.users.ids
    chosen = {
        "some": users[::7],
        "with_unknown_and_repeated": np.concatenate([users[:5], users[:5], [-1, 10**12]]),
        "none": np.empty(0, dtype=np.int64),
        "all": users,
    }[pick]
    scanned = window.interactions[window.interactions["user_id"].isin(chosen)]
    pd.testing.assert_frame_equal(window.of_users(chosen), scanned)


def test_the_matrix_of_all_events_is_built_once_and_filtered_ones_are_not_cached(
    window: InteractionData,
) -> None:
    assert window.matrix() is window.matrix()
    carts = window.matrix(("addtocart",))
    assert carts is not window.matrix(("addtocart",))
    assert carts.sum() < window.matrix().sum()
