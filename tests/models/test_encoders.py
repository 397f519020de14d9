from __future__ import annotations

import numpy as np
import pytest

from recsys.models.encoders import UNKNOWN, IdEncoder, UnknownIdError


def test_round_trip_and_order() -> None:
    encoder = IdEncoder.fit("item", [30, 10, 20, 10])
    assert len(encoder) == 3
    assert encoder.transform([10, 30]).tolist() == [0, 2]
    assert encoder.inverse([2, 0]).tolist() == [30, 10]
    restored = IdEncoder.from_bytes(encoder.to_bytes())
    assert restored.name == "item"
    assert restored.ids.tolist() == [10, 20, 30]


def test_unknown_ids_raise_or_are_masked() -> None:
    encoder = IdEncoder.fit("user", [5, 7])
    with pytest.raises(UnknownIdError, match=r"2 user id\(s\) unknown to the encoder, e.g. \[1, 99\]"):
        encoder.transform([5, 99, 1])
    assert encoder.transform([5, 99, 1], unknown="mask").tolist() == [0, UNKNOWN, UNKNOWN]
    assert encoder.contains(np.array([7, 8])).tolist() == [True, False]
    with pytest.raises(IndexError):
        encoder.inverse([2])


def test_empty_encoder_knows_nothing() -> None:
    encoder = IdEncoder.fit("item", [])
    assert encoder.transform([1], unknown="mask").tolist() == [UNKNOWN]
