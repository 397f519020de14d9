"""The session blend tuner's cart rule: a weighting passes only if its validation cart hits
beat the reference's by a margin for chance."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.pipeline.session_blend import at_least_as_good


def hits(*values: int) -> np.ndarray:
    return np.array(values, dtype=bool)


@pytest.mark.parametrize(
    ("candidate", "reference", "passes"),
    [
        # Hits exactly where the reference does (e.g. the strip first): always passes.
        (hits(1, 0, 1, 0), hits(1, 0, 1, 0), True),
        # Gains one prefix, loses another: equal rates, but by chance; refused.
        (hits(1, 0, 1, 0, 0, 0), hits(1, 1, 0, 0, 0, 0), False),
        # One gain of four: mean 0.25, standard error 0.25, bound 0: passes.
        (hits(1, 0, 0, 0), hits(0, 0, 0, 0), True),
        # Eight gains, one loss in a hundred prefixes: mean 0.07, error 0.029: passes.
        (hits(*[1] * 8, 0, *[0] * 91), hits(*[0] * 8, 1, *[0] * 91), True),
        # Two gains, one loss in a hundred prefixes: mean 0.01, error 0.017: refused.
        (hits(1, 1, 0, *[0] * 97), hits(0, 0, 1, *[0] * 97), False),
        # A single prefix: no error to estimate; the plain comparison.
        (hits(0), hits(0), True),
        (hits(0), hits(1), False),
    ],
)
def test_cart_rule_needs_a_margin_for_chance(
    candidate: np.ndarray, reference: np.ndarray, passes: bool
) -> None:
    assert at_least_as_good(candidate, reference) is passes
