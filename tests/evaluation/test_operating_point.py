"""Choosing the re-ranking strength on a validation curve."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.evaluation.offline import time_split
from recsys.evaluation.operating_point import (
    COVERAGE,
    COVERAGE_ERROR,
    NOVELTY,
    choose_strength,
    coverage_difference_error,
    reference_targets,
    tied_with_most_accurate,
    warm_metrics,
)

CURVE = pd.DataFrame(
    {
        "ndcg@10": [0.20, 0.21, 0.19, 0.15, 0.10],
        "recall@10": [0.3, 0.3, 0.3, 0.2, 0.1],
        COVERAGE: [0.10, 0.15, 0.22, 0.30, 0.35],
        NOVELTY: [3.0, 3.4, 3.9, 4.5, 5.0],
    },
    index=pd.Index([0.0, 0.25, 0.5, 0.75, 1.0], name="strength"),
)


def test_the_most_accurate_strength_that_meets_both_targets() -> None:
    strength, reason = choose_strength(CURVE, {COVERAGE: 0.2, NOVELTY: 3.5})
    assert strength == 0.5  # 0.25 is more accurate but short of both targets
    assert reason.startswith("most accurate strength with item coverage@10 >= 0.2000 and Novelty@5 >= 3.500")
    # Loose targets: the ranker's own order is the most accurate, except where 0.25 beats it.
    assert choose_strength(CURVE, {COVERAGE: 0.05, NOVELTY: 1.0})[0] == 0.25


def test_unreachable_targets_give_the_nearest_strength() -> None:
    strength, reason = choose_strength(CURVE, {COVERAGE: 0.5, NOVELTY: 4.0})
    # Smaller of the two ratios to target: 0.2, 0.3, 0.44, 0.6, 0.7 → the strongest.
    assert strength == 1.0
    assert reason.startswith("no strength meets item coverage@10 >= 0.5000 and Novelty@5 >= 4.000")
    assert reason.endswith("took the nearest (70% of the target)")


def _lists(users: list[int], items: list[list[int]]) -> pd.DataFrame:
    """Top lists: ``items[u]`` for ``users[u]``, best first."""
    rows = [
        (user, item, rank) for user, its in zip(users, items, strict=True) for rank, item in enumerate(its, 1)
    ]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rank"])
    return frame.assign(score=1.0 / frame["rank"])


def test_the_coverage_target_is_the_most_accurate_references_and_the_novelty_target_als() -> None:
    # Twenty items viewed in training (item i by i + 1 users: 0 the rarest); users 1–3 then
    # put item 0, 1, 2 in their carts.
    train = [
        (user, item, "view", f"2024-01-{1 + user % 9:02d}") for item in range(20) for user in range(item + 1)
    ]
    test = [(user, user - 1, "addtocart", "2024-01-20") for user in (1, 2, 3)]
    interactions = pd.DataFrame(train + test, columns=["user_id", "item_id", "event", "datetime"])
    split = time_split(interactions.assign(datetime=pd.to_datetime(interactions["datetime"])), test_days=5)
    users = [1, 2, 3]
    references = {
        # Accurate (hits every cart) on a narrow set of items.
        "itemknn": _lists(users, [[0, 1, 2]] * 3),
        # Misses, but spread over twelve items.
        "als": _lists(users, [[10, 11, 12, 13], [14, 15, 16, 17], [18, 19, 4, 5]]),
        "popular": _lists(users, [[19, 18, 17]] * 3),
    }
    targets = reference_targets(references, split)
    measured = {name: warm_metrics(reco, split) for name, reco in references.items()}
    assert measured["itemknn"]["ndcg@10"] > max(measured["als"]["ndcg@10"], measured["popular"]["ndcg@10"])
    assert targets[COVERAGE] == measured["itemknn"][COVERAGE] == 3 / 20
    assert targets[NOVELTY] == measured["als"][NOVELTY]
    assert targets["ndcg@10_of_itemknn"] == measured["itemknn"]["ndcg@10"]
    # With the accurate reference gone, ALS and popularity tie (both miss every cart): a list
    # the same for everyone joins a tie only as the most accurate, so ALS's coverage is the target.
    del references["itemknn"]
    tied = reference_targets(references, split)
    assert tied[COVERAGE] == measured["als"][COVERAGE] == 12 / 20
    assert "ndcg@10_of_als" in tied
    # Popularity ahead on its own point estimate sets the target itself.
    references["popular"] = _lists(users, [[0, 1, 2]] * 3)
    assert reference_targets(references, split)[COVERAGE] == 3 / 20


def test_references_within_noise_of_the_best_are_tied() -> None:
    users = pd.RangeIndex(40)
    rng = np.random.default_rng(7)
    noise = pd.Series(rng.uniform(0, 1, 40), index=users)
    per_user = {
        "best": noise,
        # Lower by a small amount on a few users: within the 95% interval of the paired difference.
        "close": noise - np.where(np.arange(40) < 3, 0.05, 0.0),
        # Lower on every user by a lot: outside it.
        "far": noise - 0.3,
    }
    assert tied_with_most_accurate(per_user) == ["best", "close"]
    # A constant, even small, difference on every user is certain: not a tie.
    assert tied_with_most_accurate({"a": noise, "b": noise - 0.01}) == ["a"]
    assert tied_with_most_accurate({"a": noise, "b": noise.copy()}) == ["a", "b"]


def test_coverage_meets_its_target_by_a_margin_of_its_standard_error() -> None:
    # Strength 0.5 covers 0.22 against a target of 0.20, less than one standard error (0.03)
    # ahead: 0.75 (0.30, ahead by 0.10 > 0.03) is the most accurate strength that surely meets it.
    noisy = CURVE.assign(**{COVERAGE_ERROR: 0.03})
    strength, reason = choose_strength(noisy, {COVERAGE: 0.2, NOVELTY: 3.5})
    assert strength == 0.75
    assert "item coverage@10 >= 0.2000 (+ 1 standard error of the difference)" in reason
    assert choose_strength(CURVE.assign(**{COVERAGE_ERROR: 0.01}), {COVERAGE: 0.2, NOVELTY: 3.5})[0] == 0.5


def test_coverage_difference_error_by_hand() -> None:
    # User 1 shows item 1, user 2 item 2; the reference shows item 1 to both. Resampling two
    # users: both distinct (probability 1/2) covers one item more than the reference, a repeat
    # covers as many: the difference is Bernoulli(1/2) / catalogue, standard deviation 0.5 / 10.
    lists = _lists([1, 2], [[1], [2]])
    reference = _lists([1, 2], [[1], [1]])
    error = coverage_difference_error(lists, reference, [1, 2], catalogue=10, n_resamples=4000)
    assert error == pytest.approx(0.05, rel=0.05)
    # The same lists differ by nothing in any resample; one user leaves nothing to resample.
    assert coverage_difference_error(lists, lists, [1, 2], catalogue=10) == 0.0
    assert coverage_difference_error(lists, reference, [1], catalogue=10) == 0.0
    assert coverage_difference_error(lists, reference, [], catalogue=10) == 0.0
