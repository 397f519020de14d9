"""The session blend tuner's cart rule: a weighting that may miss where the reference hits passes
only if its validation cart hits beat the reference's by a margin for chance; and its trial of
V-SKNN with reminders is the single method's list."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.models.dataset import InteractionData
from recsys.models.session_blend import SessionBlendWeights
from recsys.pipeline.session_blend import (
    BlendSearch,
    CartTrial,
    at_least_as_good,
    blend_lists,
    choose_cart_trial,
    holds_items,
    single_lists,
)
from tests.models.conftest import clustered_interactions

# V-SKNN with reminders as a blend: its neighbours and the session's own items, nothing else.
VSKNN_BLEND = SessionBlendWeights(
    reminder_weight=1.0, covisitation_weight=0.0, category_weight=0.0, price_weight=0.0, strip_length=0
)


def hits(*values: int) -> np.ndarray:
    return np.array(values, dtype=bool)


@pytest.mark.parametrize(
    ("candidate", "reference", "passes"),
    [
        # Ties everywhere: the pseudo-miss is not outweighed (no evidence is no licence).
        (hits(1, 0, 1, 0), hits(1, 0, 1, 0), False),
        # Gains one prefix, loses another: refused.
        (hits(1, 0, 1, 0, 0, 0), hits(1, 1, 0, 0, 0, 0), False),
        # Four gains of five, plus the pseudo-miss: mean 0.5, standard error 0.34: passes.
        (hits(1, 1, 1, 1, 0), hits(0, 0, 0, 0, 0), True),
        # Eight gains, one loss in a hundred: with the pseudo-miss mean 0.059, error 0.031: passes.
        (hits(*[1] * 8, 0, *[0] * 91), hits(*[0] * 8, 1, *[0] * 91), True),
        # Three gains, one loss in a hundred: mean 0.0099, error 0.022: refused.
        (hits(1, 1, 1, 0, *[0] * 96), hits(0, 0, 0, 1, *[0] * 96), False),
    ],
)
def test_cart_rule_needs_a_margin_for_chance(
    candidate: np.ndarray, reference: np.ndarray, passes: bool
) -> None:
    assert at_least_as_good(candidate, reference, keeps_reference=False) is passes


def test_a_weighting_that_keeps_the_reference_items_passes() -> None:
    # It cannot miss where the reference hits, whatever the validation shows.
    assert at_least_as_good(hits(0, 0), hits(0, 0), keeps_reference=True)
    # No validation cart at all: nothing to compare.
    assert at_least_as_good(hits(), hits(), keeps_reference=False)


def lists(rows: list[tuple[int, int, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["prefix_id", "item_id", "rank"])


def test_holds_items_compares_the_top_k_on_the_given_prefixes() -> None:
    reference = lists([(0, 5, 1), (0, 6, 2), (1, 7, 1), (2, 9, 1)])
    # Prefix 0: both items within the top 2 (in another order); prefix 1: item 7 at rank 3.
    candidate = lists([(0, 6, 1), (0, 5, 2), (1, 8, 1), (1, 4, 2), (1, 7, 3)])
    assert holds_items(candidate, reference, [0], k=2)
    assert not holds_items(candidate, reference, [0, 1], k=2)
    # Prefix 2 (item 9 nowhere in the candidate) is not asked about, unless given.
    assert holds_items(candidate, reference, [0, 1], k=3)
    assert not holds_items(candidate, reference, [0, 1, 2], k=3)


def trial(
    strip_length: int, passes: bool, keeps: bool, discovery: list[float], cart: float = 0.5
) -> CartTrial:
    ranks = np.array(discovery)
    return CartTrial(
        SessionBlendWeights(strip_length=strip_length),
        {"discovery_mrr@20": float(ranks.mean()), "cart_hr@10": cart},
        passes,
        keeps,
        ranks,
    )


def test_the_cart_step_keeps_the_reference_items_unless_dropping_them_clearly_pays() -> None:
    keeper = trial(10, passes=True, keeps=True, discovery=[0.5, 0.0, 0.25, 0.0])
    # Better on discovery by 0.125, less than the standard error of its MRR (0.24): unresolved.
    close = trial(1, passes=True, keeps=False, discovery=[1.0, 0.0, 0.25, 0.0])
    assert choose_cart_trial([keeper, close]).weights.strip_length == 10
    # Better by 0.375, more than its MRR's standard error (0.16): the best is kept.
    clear = trial(2, passes=True, keeps=False, discovery=[1.0, 0.5, 0.5, 0.25])
    assert choose_cart_trial([keeper, clear]).weights.strip_length == 2
    # A weighting that fails the cart rule is never chosen while one passes ...
    failing = trial(3, passes=False, keeps=False, discovery=[1.0, 1.0, 1.0, 1.0])
    assert choose_cart_trial([keeper, failing]).weights.strip_length == 10
    # ... and with none passing, the best cart hit rate wins.
    assert choose_cart_trial([failing, trial(5, False, False, [0.0] * 4, cart=0.9)]).weights.strip_length == 5


def test_the_vsknn_trial_reproduces_the_single_vsknn_when_the_query_is_extended() -> None:
    frame, catalogue = clustered_interactions(n_events=4000)
    # One session per visitor and day, so that validation sessions have earlier events to extend by.
    frame = frame.assign(session_index=frame["datetime"].dt.day)
    data = InteractionData.build(frame, catalogue)
    extended = SessionBlendWeights(extend_length=10, category_weight=1.0)
    search = BlendSearch.on_validation(data, 7, 20, 500, 500, extended)
    single = single_lists(search.prefixes)["vsknn"]
    search.prefixes = search.recomputed(search.model.with_weights(extended))
    # The extension changes V-SKNN's lists, so the blend on the extended candidates could not
    # reproduce the single method; the cart step's V-SKNN trial keeps every one of its items.
    on_extended = blend_lists(search.prefixes, VSKNN_BLEND.model_copy(update={"extend_length": 10}))
    assert not holds_items(on_extended, single, single["prefix_id"].unique(), 10)
    vsknn = [t for t in search.cart_trials(extended, single) if t.weights.category_weight == 0]
    assert len(vsknn) == 1
    assert vsknn[0].keeps and vsknn[0].passes
    assert vsknn[0].weights.extend_length == 0
    # Its lists start with the single method's (popularity fills up the rest).
    served = blend_lists(search.unextended, vsknn[0].weights)
    both = single.merge(served, on=["prefix_id", "rank"], suffixes=("", "_served"))
    assert len(both) == len(single)
    assert (both["item_id"] == both["item_id_served"]).all()
