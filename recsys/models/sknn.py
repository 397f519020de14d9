"""Session-based k-nearest neighbours: V-SKNN and STAN, for the visitor's running session.

Both treat every past session as the set of its items and recommend, for the prefix of the
current session, the items of the past sessions most similar to it (Ludewig & Jannach,
"Evaluation of session-based recommendation algorithms", 2018; Garg et al., "Sequence and
time aware neighborhood for session-based recommendations: STAN", SIGIR 2019). The
arithmetic follows the authors' framework (``rn5l/session-rec``, ``algorithms/knn/vsknn.py``
and ``stan.py``):

1. **Candidates.** Past sessions sharing an item with the prefix; of those, the
   ``sample_size`` most recent (by their last event).
2. **Similarity.** V-SKNN: the dot product of the prefix, as a vector weighting each item by
   its latest position (``weighting``: the last item weighs most), with the neighbour's binary
   vector, divided by the prefix's number of distinct items. STAN: the cosine of the same
   kind of vector (weights ``exp((position - length) / lambda_spw)``) with the neighbour's,
   times ``exp(-age / lambda_snh)`` with ``age`` the time from the neighbour's end to the
   prefix's last event.
3. **Neighbours.** The ``k`` most similar candidates (ties: the more recent first).
4. **Scores.** Every item of a neighbour gets the neighbour's similarity, summed over
   neighbours. V-SKNN multiplies it by ``weighting_score(step)`` where ``step`` is 1 for the
   prefix's last item and counts back to the latest prefix item the neighbour contains, and
   optionally by ``1 + idf_weighting × idf(item)``; STAN by ``exp(-|p - p*| / lambda_inh)``
   with ``p`` the item's last position in the neighbour and ``p*`` the last position there of
   an item of the prefix.

With ``remind=False`` the prefix's own items are not recommended (discovery).

Implementation: sessions are rows of a sparse session × item matrix (values: an item's last
position in the session) ordered by end time, so "most recent" is "highest row". Each item
keeps the ``sample_size`` most recent sessions containing it (an item-to-session matrix): the
``sample_size`` most recent sessions sharing an item with a prefix are always among those
(a session with ``sample_size`` more recent candidates above it would be beyond the cut of
every item it shares), so a request touches at most ``len(prefix) × sample_size`` sessions,
whatever the data size, and the similarities of step 2 are exact. Every step runs on whole
batches of prefixes with segment gathers and reductions in plain numpy over the CSR arrays
(no sparse matrix built per call: the service scores one prefix per request, and a single
prefix scores bit-identically alone or in a batch), no loop over sessions.
The reference's final ``normalize`` (division by the top score) does not change the order
and is left out; its experimental options (dwelling time, time weighting, random sampling)
are not offered.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp
from pydantic import Field

from recsys.models.base import ModelConfig, ModelError, Recommender
from recsys.models.dataset import InteractionData
from recsys.models.similar import top_n_of, top_n_per_row
from recsys.models.topk import with_ranks

# How an item of the prefix is weighted by its position (reference names; the position is
# 1-based from the session's start, the length counts repeated items):
#   same 1 · div position/length · quadratic (position/length)² · log 1/log10(length-position+1.7)
PositionWeighting = Literal["same", "div", "quadratic", "log"]
# How a neighbour's votes decay with ``step`` (1 = it holds the prefix's last item):
#   same 1 · div 1/step · quadratic 1/step² · log 1/log10(step+1.7)
StepDecay = Literal["same", "div", "quadratic", "log"]

MS_PER_DAY = 86_400_000

# Sparse scores as their entries: rows, columns, values (see :func:`summed`).
Entries = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]


def position_weights(
    kind: PositionWeighting, position: npt.NDArray[np.float64], length: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """V-SKNN's weight of a prefix item at ``position`` (1-based) of a prefix of ``length`` events."""
    if kind == "same":
        return np.ones_like(position)
    if kind == "div":
        return position / length
    if kind == "quadratic":
        return (position / length) ** 2
    return 1.0 / np.log10(length - position + 1.7)


def step_decay(kind: StepDecay, step: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """V-SKNN's factor on a neighbour's votes whose latest shared item is ``step`` events back (1 = last)."""
    if kind == "same":
        return np.ones_like(step)
    if kind == "div":
        return 1.0 / step
    if kind == "quadratic":
        return 1.0 / step**2
    return 1.0 / np.log10(step + 1.7)


@dataclass(frozen=True)
class SessionQueries:
    """Prefixes of running sessions, flattened: the items of query ``q`` are
    ``items[offsets[q]:offsets[q + 1]]``, oldest first; ``timestamps`` (Unix ms) is when each
    query is asked (its last event), used by STAN's neighbour recency."""

    keys: npt.NDArray[np.int64]
    offsets: npt.NDArray[np.int64]
    items: npt.NDArray[np.int64]
    timestamps: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.keys.size)

    @classmethod
    def from_frame(cls, events: pd.DataFrame, key: str) -> SessionQueries:
        """One query per distinct ``key`` from rows ``key, item_id, datetime`` (any order)."""
        ordered = events.sort_values([key, "datetime"], kind="stable")
        keys, starts = np.unique(ordered[key].to_numpy(dtype=np.int64), return_index=True)
        offsets = np.append(starts, len(ordered)).astype(np.int64)
        times = to_ms(ordered["datetime"])
        return cls(keys, offsets, ordered["item_id"].to_numpy(dtype=np.int64), times[offsets[1:] - 1])

    @classmethod
    def single(cls, items_newest_first: npt.ArrayLike, timestamp: int, key: int = 0) -> SessionQueries:
        """One query from a visitor's events given newest first (as the service holds them)."""
        items = np.asarray(items_newest_first, dtype=np.int64)[::-1]
        return cls(
            np.array([key], dtype=np.int64),
            np.array([0, items.size], dtype=np.int64),
            np.ascontiguousarray(items),
            np.array([timestamp], dtype=np.int64),
        )


def to_ms(values: pd.Series) -> npt.NDArray[np.int64]:
    """Datetimes as Unix milliseconds."""
    return values.to_numpy().astype("datetime64[ms]").astype(np.int64)


class SessionConfig(ModelConfig):
    """Settings shared by the models that score running sessions."""

    remind: bool = Field(True, description="whether the prefix's own items may be recommended")
    batch_size: int = Field(512, ge=1, description="prefixes scored together (bounds memory)")
    filter_bought: bool = True
    available_only: bool = True


class SessionKNNConfig(SessionConfig):
    """Settings shared by the session-kNN models."""

    k: int = Field(100, ge=1, description="neighbour sessions whose items are scored")
    sample_size: int = Field(1000, ge=1, description="most recent candidate sessions compared")
    min_session_items: int = Field(
        2, ge=1, description="past sessions with fewer distinct items are not kept"
    )


class VSKNNConfig(SessionKNNConfig):
    """V-SKNN: position-weighted dot-product similarity, votes decayed by the matching position."""

    weighting: PositionWeighting = "div"
    weighting_score: StepDecay = "div"
    idf_weighting: float = Field(0.0, ge=0, description="0: off; else votes × (1 + this × idf)")


class STANConfig(SessionKNNConfig):
    """STAN: the three exponential decays (``None`` switches one off)."""

    lambda_spw: float | None = Field(1.02, gt=0, description="positions in the prefix")
    lambda_snh: float | None = Field(5.0, gt=0, description="days between a neighbour and the prefix")
    lambda_inh: float | None = Field(2.05, gt=0, description="positions in the neighbour")


@dataclass(frozen=True)
class _Prefixes:
    """A batch of encoded queries reduced to their distinct items (rows sorted by query)."""

    n: int
    row: npt.NDArray[np.int64]  # query of each distinct item
    item: npt.NDArray[np.int64]  # item code
    position: npt.NDArray[np.float64]  # latest 1-based position in the prefix
    length: npt.NDArray[np.float64]  # events of the prefix (known items), per query
    distinct: npt.NDArray[np.float64]  # distinct items of the prefix, per query
    timestamps: npt.NDArray[np.int64]


class SessionRecommender(Recommender):
    """A model that scores running sessions (:meth:`score_matrix`), with what every such model
    does with the scores: top-``k`` lists of given prefixes (:meth:`recommend_sessions`) and, for
    the :class:`Recommender` contract, of each user's latest session in ``data``."""

    config: SessionConfig

    @abstractmethod
    def score_entries(self, queries: SessionQueries) -> Entries:
        """Scores of the items (model codes) for a batch of prefixes: the nonzero entries of the
        queries × items matrix, by row then column, each once. Plain numpy over the model's
        arrays, no sparse matrix built: the service scores one prefix per request, where
        scipy's per-call overhead would be most of the cost."""

    def score_matrix(self, queries: SessionQueries) -> sp.csr_matrix:
        """:meth:`score_entries` as a queries × items sparse matrix."""
        assert self.items is not None
        rows, cols, values = self.score_entries(queries)
        return sp.csr_matrix((values, (rows, cols)), shape=(len(queries), len(self.items)))

    def top_items(
        self, queries: SessionQueries, n: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """The ``n`` best items of every prefix: query index, item id, score; best first per query."""
        assert self.items is not None
        rows, cols, values = top_n_of(*self.score_entries(queries), n)
        return rows, self.items.inverse(cols), values

    def recommend_sessions(self, queries: SessionQueries, k: int) -> pd.DataFrame:
        """Top-``k`` items for every prefix: ``session_id`` (the query key), ``item_id``, ``score``, ``rank``.

        Prefixes without a known item get no rows (callers fall back). Unavailable items (as of
        the training window) are never recommended.
        """
        if not self.is_fitted:
            raise ModelError(f"{type(self).__name__} is not fitted: call fit() or load() first")
        parts = []
        size = self.config.batch_size
        for start in range(0, len(queries), size):
            rows, items, values = self.top_items(_slice(queries, start, start + size), k)
            parts.append((queries.keys[start + rows], items, values))
        keys = np.concatenate([p[0] for p in parts]) if parts else np.empty(0, dtype=np.int64)
        frame = pd.DataFrame(
            {
                "session_id": keys,
                "item_id": np.concatenate([p[1] for p in parts]) if parts else keys,
                "score": (np.concatenate([p[2] for p in parts]) if parts else np.empty(0)).astype(np.float32),
            }
        )
        return with_ranks(frame, "session_id")

    # -- the Recommender contract ------------------------------------------------------------
    def _recommend(self, user_ids: npt.NDArray[np.int64], data: InteractionData, k: int) -> pd.DataFrame:
        history = data.of_users(user_ids)
        latest = history["session_index"] == history.groupby("user_id")["session_index"].transform("max")
        queries = SessionQueries.from_frame(history[latest], key="user_id")
        assert self.items is not None
        parts = []
        size = self.config.batch_size
        for start in range(0, len(queries), size):
            batch = _slice(queries, start, start + size)
            scores = self.score_matrix(batch)
            users = data.users.transform(batch.keys, unknown="mask")
            excluded = self._to_model_items(data, data.purchases()[np.maximum(users, 0)])
            excluded = excluded.multiply((users >= 0)[:, None]) if self.config.filter_bought else None
            if excluded is not None:
                scores = sp.csr_matrix(scores - scores.multiply(excluded > 0))
            unavailable = data.is_unavailable(self.items.ids)
            if self.config.available_only and unavailable.any():
                scores = sp.csr_matrix(scores - scores.multiply(unavailable[None, :].astype(np.float64)))
            scores.eliminate_zeros()
            rows, cols, values = top_n_per_row(scores, k)
            parts.append(
                pd.DataFrame(
                    {"user_id": batch.keys[rows], "item_id": self.items.inverse(cols), "score": values}
                )
            )
        frame = (
            pd.concat(parts, ignore_index=True)
            if parts
            else pd.DataFrame(columns=["user_id", "item_id", "score"])
        )
        frame["score"] = frame["score"].astype(np.float32)
        return with_ranks(frame, "user_id")


def summed(
    rows: npt.NDArray[np.int64], cols: npt.NDArray[np.int64], values: npt.NDArray[np.float64], n_cols: int
) -> Entries:
    """Entries of a sparse matrix given with repeats: each (row, column) once, by row then column,
    its values summed in the order given (so one query scores alike alone or in a batch)."""
    keys = rows * n_cols + cols
    distinct, slot = np.unique(keys, return_inverse=True)
    total = np.bincount(slot, weights=values, minlength=distinct.size).astype(np.float64, copy=False)
    return distinct // n_cols, distinct % n_cols, total


def among(
    rows: npt.NDArray[np.int64],
    cols: npt.NDArray[np.int64],
    other_rows: npt.NDArray[np.int64],
    other_cols: npt.NDArray[np.int64],
    n_cols: int,
) -> npt.NDArray[np.bool_]:
    """Whether each (row, column) pair is one of the other pairs (e.g. a prefix's own items)."""
    return np.isin(rows * n_cols + cols, other_rows * n_cols + other_cols)


def segments(
    starts: npt.NDArray[np.int64], sizes: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The positions ``starts[s] .. starts[s] + sizes[s] - 1`` of every segment ``s``, one after
    the other, and the segment of each (e.g. the entries of some rows of a CSR matrix)."""
    segment = np.repeat(np.arange(sizes.size), sizes)
    return np.arange(segment.size) - np.repeat(np.cumsum(sizes) - sizes, sizes) + starts[segment], segment


class SessionKNN(SessionRecommender):
    """What V-SKNN and STAN share: the session index, candidate sampling, scoring in batches.

    ``recommend`` (the :class:`Recommender` contract) takes each user's latest session in
    ``data`` as the prefix; :meth:`recommend_sessions` scores given prefixes.
    """

    config: SessionKNNConfig
    # Whether the similarity is normalised by the neighbour's size (STAN's cosine).
    _needs_sizes: ClassVar[bool] = False

    def __init__(self, config: SessionKNNConfig | None = None) -> None:
        super().__init__(config)
        # Sessions × items, value = the item's last 1-based position in the session; rows by end time.
        self.sessions = sp.csr_matrix((0, 0), dtype=np.float32)
        self.session_end = np.empty(0, dtype=np.int64)
        self.idf = np.empty(0, dtype=np.float64)
        self.blocked = np.empty(0, dtype=bool)
        self._postings = sp.csr_matrix((0, 0), dtype=np.float32)

    # -- training ----------------------------------------------------------------------------
    def _fit(self, data: InteractionData) -> None:
        frame = data.interactions.sort_values(["user_code", "session_index", "datetime"], kind="stable")
        session = frame.groupby(["user_code", "session_index"], sort=False).ngroup().to_numpy()
        position = frame.groupby(session, sort=False).cumcount().to_numpy() + 1
        items = frame["item_code"].to_numpy(dtype=np.int64)
        end = pd.Series(to_ms(frame["datetime"])).groupby(session).max().to_numpy()
        # The latest position of each (session, item): positions grow within a session.
        last = pd.DataFrame({"s": session, "i": items, "p": position}).drop_duplicates(
            ["s", "i"], keep="last"
        )
        distinct = np.bincount(last["s"].to_numpy(), minlength=end.size)
        kept = distinct >= self.config.min_session_items
        # Rows ordered by end time: row r of the kept sessions is the r-th oldest.
        order = np.flatnonzero(kept)[np.argsort(end[kept], kind="stable")]
        row_of = np.full(end.size, -1, dtype=np.int64)
        row_of[order] = np.arange(order.size)
        last = last[kept[last["s"].to_numpy()]]
        self.sessions = sp.csr_matrix(
            (
                last["p"].to_numpy(dtype=np.float32),
                (row_of[last["s"].to_numpy()], last["i"].to_numpy()),
            ),
            shape=(order.size, data.n_items),
        )
        self.session_end = end[order].astype(np.int64)
        # idf as in the reference: log(sessions / events of the item) over the kept sessions.
        events = np.bincount(items[kept[session]], minlength=data.n_items).astype(np.float64)
        with np.errstate(divide="ignore"):
            self.idf = np.where(events > 0, np.log(max(order.size, 1) / np.maximum(events, 1)), 0.0)
        self.blocked = (
            data.is_unavailable(data.item_codes.ids)
            if self.config.available_only
            else np.zeros(data.n_items, dtype=bool)
        )
        self._index()

    def _index(self) -> None:
        """Each item's ``sample_size`` most recent sessions (items × sessions, columns ascending);
        the sessions' items sorted too (:meth:`_shared` looks them up by binary search)."""
        self.sessions.sort_indices()
        postings = self.sessions.T.tocsr()
        postings.sort_indices()
        counts = np.diff(postings.indptr)
        # Within a row, columns ascend with recency: keep the last sample_size of each row.
        keep = np.arange(postings.nnz) >= np.repeat(postings.indptr[1:] - self.config.sample_size, counts)
        rows = np.repeat(np.arange(postings.shape[0]), counts)[keep]
        self._postings = sp.csr_matrix(
            (np.ones(int(keep.sum()), dtype=np.float64), (rows, postings.indices[keep])), shape=postings.shape
        )

    # -- scoring -----------------------------------------------------------------------------
    def score_entries(self, queries: SessionQueries) -> Entries:
        prefixes = self._encode(queries)
        n_items = self.sessions.shape[1]
        none = np.empty(0, dtype=np.int64)
        if prefixes.row.size == 0 or self.sessions.shape[0] == 0:
            return none, none, np.empty(0)
        row, session, similarity = self._neighbours(prefixes)
        # Expand every (query, neighbour) pair over the neighbour's items (by item: sorted rows).
        starts = self.sessions.indptr[session].astype(np.int64)
        take, pair = segments(starts, self.sessions.indptr[session + 1] - starts)
        item = self.sessions.indices[take].astype(np.int64)
        votes = self._votes(prefixes, row, session, similarity, pair, item, self.sessions.data[take])
        rows, cols, values = summed(row[pair], item, votes, n_items)
        keep = ~self.blocked[cols] & (values != 0)
        if not self.config.remind:
            keep &= ~among(rows, cols, prefixes.row, prefixes.item, n_items)
        return rows[keep], cols[keep], values[keep]

    def _encode(self, queries: SessionQueries) -> _Prefixes:
        """Known items of each prefix, positions renumbered over them, reduced to distinct items."""
        assert self.items is not None
        codes = self.items.transform(queries.items, unknown="mask")
        query = np.repeat(np.arange(len(queries)), np.diff(queries.offsets))
        known = codes >= 0
        query, codes = query[known], codes[known].astype(np.int64)
        length = np.bincount(query, minlength=len(queries)).astype(np.float64)
        position = np.arange(query.size) - np.repeat(np.cumsum(length) - length, length.astype(np.int64)) + 1
        # Latest occurrence of each item per query: sort by (query, item, position), keep the last.
        order = np.lexsort((position, codes, query))
        query, codes, position = query[order], codes[order], position[order]
        last = np.ones(query.size, dtype=bool)
        last[:-1] = (query[1:] != query[:-1]) | (codes[1:] != codes[:-1])
        query, codes, position = query[last], codes[last], position[last]
        distinct = np.bincount(query, minlength=len(queries)).astype(np.float64)
        return _Prefixes(
            len(queries), query, codes, position.astype(np.float64), length, distinct, queries.timestamps
        )

    def _neighbours(
        self, prefixes: _Prefixes
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """The ``k`` nearest of the ``sample_size`` most recent candidates: query, session, similarity."""
        weights = self._prefix_weights(prefixes)
        # The prefix vectors times the postings: each prefix item's weight to its recent sessions.
        starts = self._postings.indptr[prefixes.item].astype(np.int64)
        take, entry = segments(starts, self._postings.indptr[prefixes.item + 1] - starts)
        row, session, dot = summed(
            prefixes.row[entry],
            self._postings.indices[take].astype(np.int64),
            weights[entry],
            self.sessions.shape[0],
        )
        # Sessions ascend with recency within a query: keep its last sample_size.
        counts = np.bincount(row, minlength=prefixes.n)
        keep = np.arange(row.size) >= np.repeat(np.cumsum(counts) - self.config.sample_size, counts)
        row, session = row[keep], session[keep]
        similarity = self._similarity(prefixes, weights, row, session, dot[keep])
        # Best first, the more recent session on ties; then the first k of every query.
        order = np.lexsort((-session, -similarity, row))
        row, session, similarity = row[order], session[order], similarity[order]
        rank = np.arange(row.size) - np.searchsorted(row, row, side="left")
        chosen = (rank < self.config.k) & (similarity > 0)
        return row[chosen], session[chosen], similarity[chosen]

    def _shared(
        self,
        prefixes: _Prefixes,
        row: npt.NDArray[np.int64],
        pair: npt.NDArray[np.int64],
        item: npt.NDArray[np.int64],
        position: npt.NDArray[np.float32],
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """For each (query, neighbour) pair, every distinct prefix item: pair index, its position in
        the prefix, its last position in the neighbour (0 when the neighbour lacks it); ``pair,
        item, position``: the neighbours' items, by pair then item (see :meth:`score_entries`)."""
        first = np.searchsorted(prefixes.row, np.arange(prefixes.n + 1))
        index, shared = segments(first[row], first[row + 1] - first[row])
        # Look the prefix items up among the neighbours' items, both keyed by (pair, item).
        n_items = self.sessions.shape[1]
        held = pair * n_items + item
        wanted = shared * n_items + prefixes.item[index]
        # (No pairs, no wanted keys: the empty lookup stays empty.)
        at = np.minimum(np.searchsorted(held, wanted), held.size - 1)
        in_neighbour = np.where(held[at] == wanted, position[at], 0.0)
        return shared, prefixes.position[index], in_neighbour.astype(np.float64)

    @abstractmethod
    def _prefix_weights(self, prefixes: _Prefixes) -> npt.NDArray[np.float64]:
        """The weight of every distinct prefix item in the prefix's vector."""

    @abstractmethod
    def _similarity(
        self,
        prefixes: _Prefixes,
        weights: npt.NDArray[np.float64],
        row: npt.NDArray[np.int64],
        session: npt.NDArray[np.int64],
        dot: npt.NDArray[np.float64],
    ) -> npt.NDArray[np.float64]:
        """Similarity of each candidate pair from its dot product with the prefix vector."""

    @abstractmethod
    def _votes(
        self,
        prefixes: _Prefixes,
        row: npt.NDArray[np.int64],
        session: npt.NDArray[np.int64],
        similarity: npt.NDArray[np.float64],
        pair: npt.NDArray[np.int64],
        item: npt.NDArray[np.int64],
        position: npt.NDArray[np.float32],
    ) -> npt.NDArray[np.float64]:
        """The vote of each (pair, neighbour item); ``position`` is the item's last in the neighbour."""

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        return {
            "indptr": self.sessions.indptr,
            "indices": self.sessions.indices,
            "positions": self.sessions.data,
            "shape": np.array(self.sessions.shape, dtype=np.int64),
            "session_end": self.session_end,
            "idf": self.idf,
            "blocked": self.blocked,
        }

    def _restore(self, state: dict[str, npt.NDArray[Any]]) -> None:
        shape = tuple(int(x) for x in state["shape"])
        self.sessions = sp.csr_matrix((state["positions"], state["indices"], state["indptr"]), shape=shape)
        self.session_end, self.idf, self.blocked = state["session_end"], state["idf"], state["blocked"]
        self._index()


def _slice(queries: SessionQueries, start: int, stop: int) -> SessionQueries:
    """Queries ``start:stop``."""
    stop = min(stop, len(queries))
    low, high = queries.offsets[start], queries.offsets[stop]
    return SessionQueries(
        queries.keys[start:stop],
        queries.offsets[start : stop + 1] - low,
        queries.items[low:high],
        queries.timestamps[start:stop],
    )


class VSKNNModel(SessionKNN):
    """V-SKNN (Ludewig & Jannach 2018), as ``VMContextKNN`` of session-rec."""

    kind = "vsknn"
    config_class = VSKNNConfig
    config: VSKNNConfig

    def _prefix_weights(self, prefixes: _Prefixes) -> npt.NDArray[np.float64]:
        return position_weights(self.config.weighting, prefixes.position, prefixes.length[prefixes.row])

    def _similarity(
        self,
        prefixes: _Prefixes,
        weights: npt.NDArray[np.float64],
        row: npt.NDArray[np.int64],
        session: npt.NDArray[np.int64],
        dot: npt.NDArray[np.float64],
    ) -> npt.NDArray[np.float64]:
        # The reference's ``vec``: the weighted overlap over the prefix's distinct items.
        result: npt.NDArray[np.float64] = dot / prefixes.distinct[row]
        return result

    def _votes(
        self,
        prefixes: _Prefixes,
        row: npt.NDArray[np.int64],
        session: npt.NDArray[np.int64],
        similarity: npt.NDArray[np.float64],
        pair: npt.NDArray[np.int64],
        item: npt.NDArray[np.int64],
        position: npt.NDArray[np.float32],
    ) -> npt.NDArray[np.float64]:
        shared_pair, prefix_position, in_neighbour = self._shared(prefixes, row, pair, item, position)
        # The latest prefix position the neighbour holds: step 1 = the prefix's last event.
        latest = np.zeros(row.size)
        np.maximum.at(latest, shared_pair, np.where(in_neighbour > 0, prefix_position, 0.0))
        step = prefixes.length[row] - latest + 1
        votes = (similarity * step_decay(self.config.weighting_score, step))[pair]
        if self.config.idf_weighting:
            votes = votes * (1.0 + self.config.idf_weighting * self.idf[item])
        result: npt.NDArray[np.float64] = votes
        return result


class STANModel(SessionKNN):
    """STAN (Garg et al. 2019), as ``STAN`` of session-rec."""

    kind = "stan"
    config_class = STANConfig
    config: STANConfig

    def _prefix_weights(self, prefixes: _Prefixes) -> npt.NDArray[np.float64]:
        if self.config.lambda_spw is None:
            return np.ones_like(prefixes.position)
        result: npt.NDArray[np.float64] = np.exp(
            (prefixes.position - prefixes.length[prefixes.row]) / self.config.lambda_spw
        )
        return result

    def _similarity(
        self,
        prefixes: _Prefixes,
        weights: npt.NDArray[np.float64],
        row: npt.NDArray[np.int64],
        session: npt.NDArray[np.int64],
        dot: npt.NDArray[np.float64],
    ) -> npt.NDArray[np.float64]:
        # Cosine of the weighted prefix with the neighbour's binary vector.
        norm = np.sqrt(np.bincount(prefixes.row, weights=weights**2, minlength=prefixes.n))
        sizes = np.diff(self.sessions.indptr).astype(np.float64)
        similarity = dot / (norm[row] * np.sqrt(sizes[session]))
        if self.config.lambda_snh is not None:
            age = (prefixes.timestamps[row] - self.session_end[session]).astype(np.float64)
            similarity = similarity * np.exp(-age / (self.config.lambda_snh * MS_PER_DAY))
        result: npt.NDArray[np.float64] = similarity
        return result

    def _votes(
        self,
        prefixes: _Prefixes,
        row: npt.NDArray[np.int64],
        session: npt.NDArray[np.int64],
        similarity: npt.NDArray[np.float64],
        pair: npt.NDArray[np.int64],
        item: npt.NDArray[np.int64],
        position: npt.NDArray[np.float32],
    ) -> npt.NDArray[np.float64]:
        votes = similarity[pair]
        if self.config.lambda_inh is None:
            result: npt.NDArray[np.float64] = votes
            return result
        shared_pair, _, in_neighbour = self._shared(prefixes, row, pair, item, position)
        # p*: the last position in the neighbour of an item the prefix holds.
        anchor = np.zeros(row.size)
        np.maximum.at(anchor, shared_pair, in_neighbour)
        result = votes * np.exp(-np.abs(position.astype(np.float64) - anchor[pair]) / self.config.lambda_inh)
        return result
