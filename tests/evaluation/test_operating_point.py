"""Choosing the re-ranking strength on a validation curve."""

from __future__ import annotations

import pandas as pd

from recsys.evaluation.operating_point import COVERAGE, NOVELTY, choose_strength

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
