"""Mapping external user/item ids to dense codes ``0..n-1`` and back.

Encoders are saved with every model, so a model always reads codes the way it was trained.
Unknown ids are handled explicitly: :meth:`IdEncoder.transform` raises on them by default, and
``unknown="mask"`` returns ``-1`` for them instead.
"""

from __future__ import annotations

import io
from typing import Literal

import numpy as np
import numpy.typing as npt

UNKNOWN = -1


class UnknownIdError(KeyError):
    """Ids that the encoder was not fitted on."""


class IdEncoder:
    """A sorted-array encoder: vectorised ``searchsorted`` both ways, no Python dicts.

    Parameters
    ----------
    name : str
        What the ids are (``"user"`` or ``"item"``), for error messages.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.ids: npt.NDArray[np.int64] = np.empty(0, dtype=np.int64)

    @classmethod
    def fit(cls, name: str, ids: npt.ArrayLike) -> IdEncoder:
        """An encoder for the distinct values of ``ids`` (codes follow sorted id order)."""
        encoder = cls(name)
        encoder.ids = np.unique(np.asarray(ids, dtype=np.int64))
        return encoder

    def __len__(self) -> int:
        return int(self.ids.size)

    def transform(
        self, ids: npt.ArrayLike, unknown: Literal["raise", "mask"] = "raise"
    ) -> npt.NDArray[np.int64]:
        """Codes of ``ids``.

        Parameters
        ----------
        ids : array-like of int
            External ids.
        unknown : {"raise", "mask"}
            What to do with ids the encoder was not fitted on: raise :class:`UnknownIdError`
            naming a few of them, or give them the code ``-1``.
        """
        values = np.asarray(ids, dtype=np.int64)
        if self.ids.size == 0:
            positions = np.zeros(values.shape, dtype=np.int64)
            known = np.zeros(values.shape, dtype=bool)
        else:
            positions = np.searchsorted(self.ids, values)
            clipped = np.minimum(positions, self.ids.size - 1)
            known = self.ids[clipped] == values
        if known.all():
            return positions.astype(np.int64)
        if unknown == "raise":
            missing = np.unique(values[~known])
            raise UnknownIdError(
                f"{missing.size} {self.name} id(s) unknown to the encoder, e.g. {missing[:5].tolist()}"
            )
        return np.where(known, positions, UNKNOWN).astype(np.int64)

    def contains(self, ids: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Whether each id is known."""
        known: npt.NDArray[np.bool_] = self.transform(ids, unknown="mask") != UNKNOWN
        return known

    def inverse(self, codes: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """External ids of ``codes``."""
        values = np.asarray(codes, dtype=np.int64)
        if values.size and (values.min() < 0 or values.max() >= self.ids.size):
            raise IndexError(f"{self.name} codes out of range 0..{self.ids.size - 1}")
        return self.ids[values]

    def to_bytes(self) -> bytes:
        """Serialise (``.npz``) for the object store."""
        buffer = io.BytesIO()
        np.savez_compressed(buffer, ids=self.ids, name=np.array(self.name))
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> IdEncoder:
        """Rebuild an encoder saved with :meth:`to_bytes`."""
        with np.load(io.BytesIO(data), allow_pickle=False) as saved:
            encoder = cls(str(saved["name"]))
            encoder.ids = saved["ids"].astype(np.int64)
        return encoder
