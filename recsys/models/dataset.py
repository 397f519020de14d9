"""The training data every model sees: encoded interactions, the item catalogue, a sparse matrix."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from recsys.models.encoders import IdEncoder
from recsys.models.topk import with_ranks

PURCHASE_EVENTS = ("transaction",)


@dataclass
class InteractionData:
    """Interactions of one time window, encoded, with the item catalogue as of its end.

    Attributes
    ----------
    interactions : DataFrame
        ``user_id``, ``item_id``, ``event``, ``weight``, ``datetime`` plus the codes
        ``user_code`` and ``item_code``.
    items : DataFrame
        The catalogue (prepared ``items``) indexed by ``item_id``.
    users, item_codes : IdEncoder
        Encoders of users and items that occur in ``interactions``.
    now : Timestamp
        End of the window: ages and time decay are measured from here.
    """

    interactions: pd.DataFrame
    items: pd.DataFrame
    users: IdEncoder
    item_codes: IdEncoder
    now: pd.Timestamp

    @classmethod
    def build(
        cls, interactions: pd.DataFrame, items: pd.DataFrame, now: pd.Timestamp | None = None
    ) -> InteractionData:
        """Encode a window of interactions.

        Raises
        ------
        ValueError
            If the window holds no interactions (nothing can be trained on it).
        """
        if interactions.empty:
            raise ValueError("the training window holds no interactions: widen it or prepare more data")
        users = IdEncoder.fit("user", interactions["user_id"].to_numpy())
        item_codes = IdEncoder.fit("item", interactions["item_id"].to_numpy())
        frame = interactions.copy()
        frame["user_code"] = users.transform(frame["user_id"].to_numpy())
        frame["item_code"] = item_codes.transform(frame["item_id"].to_numpy())
        catalogue = items.set_index("item_id") if "item_id" in items.columns else items
        end = now if now is not None else pd.Timestamp(frame["datetime"].max()) + pd.Timedelta(milliseconds=1)
        return cls(interactions=frame, items=catalogue, users=users, item_codes=item_codes, now=end)

    @property
    def n_users(self) -> int:
        """Users in the window."""
        return len(self.users)

    @property
    def n_items(self) -> int:
        """Items with interactions in the window."""
        return len(self.item_codes)

    def matrix(self, events: tuple[str, ...] | None = None) -> sp.csr_matrix:
        """Users × items matrix of summed weights (of the given events only, if set).

        The matrix of all events is built once (models take rows of it batch by batch): treat it
        as read-only.
        """
        return self._matrix if events is None else self._weights(events)

    @cached_property
    def _matrix(self) -> sp.csr_matrix:
        return self._weights(None)

    def _weights(self, events: tuple[str, ...] | None) -> sp.csr_matrix:
        frame = self.interactions
        if events is not None:
            frame = frame[frame["event"].isin(events)]
        return sp.csr_matrix(
            (frame["weight"].to_numpy(dtype=np.float32), (frame["user_code"], frame["item_code"])),
            shape=(self.n_users, self.n_items),
            dtype=np.float32,
        )

    def of_users(self, user_ids: npt.ArrayLike) -> pd.DataFrame:
        """The interactions of ``user_ids`` in window order, found through a per-user index rather
        than a scan of the window, so a batch of users costs its own rows only."""
        codes = self.users.transform(np.asarray(user_ids, dtype=np.int64), unknown="mask")
        codes = np.unique(codes[codes >= 0])
        starts, stops = self._user_starts[codes], self._user_starts[codes + 1]
        lengths = stops - starts
        # Concatenated ranges starts[i]..stops[i], vectorised.
        offsets = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
        rows = self._rows_by_user[offsets + np.arange(int(lengths.sum()))]
        return self.interactions.iloc[np.sort(rows)]

    @cached_property
    def _rows_by_user(self) -> npt.NDArray[np.int64]:
        """Row positions of the interactions ordered by user (window order within a user)."""
        return np.argsort(self.interactions["user_code"].to_numpy(), kind="stable").astype(np.int64)

    @cached_property
    def _user_starts(self) -> npt.NDArray[np.int64]:
        """Where each user's rows start in :attr:`_rows_by_user` (one more entry: the end)."""
        counts = np.bincount(self.interactions["user_code"].to_numpy(), minlength=self.n_users)
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def purchases(self) -> sp.csr_matrix:
        """Users × items matrix marking what each user has bought (used to filter)."""
        return self._purchases

    @cached_property
    def _purchases(self) -> sp.csr_matrix:
        return self._weights(PURCHASE_EVENTS)

    def has_bought(self, user_ids: npt.ArrayLike, item_ids: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Whether each user of ``user_ids`` bought the item at the same position of ``item_ids``.

        The rule the models that filter candidate frames use (ALS hands the same purchase
        matrix to implicit's top-k instead); users or items outside the window have bought
        nothing. Vectorised over the pairs.
        """
        rows = self.users.transform(np.asarray(user_ids, dtype=np.int64), unknown="mask")
        cols = self.item_codes.transform(np.asarray(item_ids, dtype=np.int64), unknown="mask")
        known = (rows >= 0) & (cols >= 0)
        bought = np.zeros(rows.size, dtype=bool)
        if known.any():
            bought[known] = np.asarray(self._purchases[rows[known], cols[known]]).ravel() > 0
        return bought

    def is_unavailable(self, item_ids: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Whether each item's latest availability is 0 (unknown items count as available)."""
        available = self.items["available"].reindex(np.asarray(item_ids, dtype=np.int64))
        unavailable: npt.NDArray[np.bool_] = available.eq(False).fillna(False).to_numpy(dtype=bool)
        return unavailable

    def exclude(self, scored: pd.DataFrame, bought: bool = True, unavailable: bool = True) -> pd.DataFrame:
        """Drop ``user_id, item_id`` rows of items the user bought already and/or unavailable items."""
        if unavailable:
            scored = scored[~self.is_unavailable(scored["item_id"].to_numpy())]
        if bought:
            scored = scored[~self.has_bought(scored["user_id"].to_numpy(), scored["item_id"].to_numpy())]
        return scored

    def user_item_frame(
        self,
        user_codes: npt.NDArray[np.int64],
        item_codes: npt.NDArray[np.int64],
        scores: npt.NDArray[np.floating],
    ) -> pd.DataFrame:
        """Recommendations as a frame ``user_id, item_id, score, rank`` from code arrays (k per user).

        ``item_codes`` and ``scores`` have shape (n_users, k); code -1 marks an empty slot.
        """
        k = item_codes.shape[1]
        valid = item_codes >= 0
        users = np.repeat(user_codes, k).reshape(item_codes.shape)
        ranks = np.broadcast_to(np.arange(1, k + 1), item_codes.shape)
        frame = pd.DataFrame(
            {
                "user_id": self.users.inverse(users[valid]),
                "item_id": self.item_codes.inverse(item_codes[valid]),
                "score": scores[valid].astype(np.float32),
                "rank": ranks[valid].astype(np.int32),
            }
        )
        # Empty slots inside a row would leave gaps in ranks: renumber.
        return with_ranks(frame, "user_id")
