"""Item-to-item similarity: session co-visitation, merged with ALS neighbours where it is thin.

Co-visitation counts the sessions in which two items occur together and normalises by the
items' session counts (cosine), so it finds "viewed together" items, which on shop data is a
stronger signal than factor similarity. Sessions with very many items (bots, crawlers) are
left out: they would add quadratically many meaningless pairs.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from recsys.models.dataset import InteractionData
from recsys.models.topk import top_k_per_key, with_ranks

SIMILAR_COLUMNS = ["item_id", "similar_item_id", "score", "rank"]


def top_n_per_row(
    matrix: sp.csr_matrix, n: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """The ``n`` largest entries of every row of a sparse matrix, vectorised.

    Returns row indices, column indices and values, rows ascending and values descending within a row.
    """
    coo = matrix.tocoo()
    return top_n_of(coo.row, coo.col, coo.data, n)


def top_n_of(
    rows: npt.NDArray[np.integer], cols: npt.NDArray[np.integer], values: npt.NDArray[np.floating], n: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """:func:`top_n_per_row` of a matrix given as its entries (``rows, cols, values``, any order;
    no two with the same row and column), without building it."""
    order = np.lexsort((cols, -values, rows))
    rows, cols, values = rows[order], cols[order], values[order]
    starts = np.searchsorted(rows, rows, side="left")
    keep = (np.arange(rows.size) - starts) < n
    return rows[keep].astype(np.int64), cols[keep].astype(np.int64), values[keep].astype(np.float32)


def covisitation_similar_items(
    data: InteractionData, n: int, max_session_items: int = 50, by: Literal["session", "user"] = "session"
) -> pd.DataFrame:
    """Top-``n`` co-visited items of every item: ``item_id, similar_item_id, score, rank``.

    Parameters
    ----------
    data : InteractionData
        Interactions with ``session_index``.
    n : int
        Neighbours per item.
    max_session_items : int
        Baskets (sessions or users) with more distinct items than this are ignored.
    by : {"session", "user"}
        What counts as "together": the same session, or the same user at any time (the
        item-kNN view, stronger where tastes are stable and sessions short).
    """
    keys = ["user_code", "session_index"] if by == "session" else ["user_code"]
    frame = data.interactions[[*keys, "item_code"]].drop_duplicates()
    session = frame.groupby(keys, sort=False).ngroup().to_numpy()
    sizes = np.bincount(session)
    keep = sizes[session] <= max_session_items
    session_items = sp.csr_matrix(
        (np.ones(int(keep.sum()), dtype=np.float32), (session[keep], frame["item_code"].to_numpy()[keep])),
        shape=(sizes.size, data.n_items),
    )
    together = (session_items.T @ session_items).tocsr()
    counts = together.diagonal()
    together.setdiag(0)
    together.eliminate_zeros()
    coo = together.tocoo()
    cosine = coo.data / np.sqrt(counts[coo.row] * counts[coo.col])
    rows, cols, scores = top_n_per_row(sp.csr_matrix((cosine, (coo.row, coo.col)), shape=together.shape), n)
    return _frame(data, rows, cols, scores)


def _frame(
    data: InteractionData,
    rows: npt.NDArray[np.int64],
    cols: npt.NDArray[np.int64],
    scores: npt.NDArray[np.float32],
) -> pd.DataFrame:
    result = pd.DataFrame(
        {
            "item_id": data.item_codes.inverse(rows),
            "similar_item_id": data.item_codes.inverse(cols),
            "score": scores,
        }
    )
    return with_ranks(result, "item_id")


def items_short_of(similar: pd.DataFrame, item_ids: npt.NDArray[np.int64], n: int) -> npt.NDArray[np.int64]:
    """The ``item_ids`` with fewer than ``n`` rows in ``similar``: the only items whose merged list
    (:func:`merge_similar_items`) takes anything from a fallback, so the only ones to compute it for."""
    full = similar["item_id"].value_counts()
    return item_ids[~np.isin(item_ids, full.index[full >= n].to_numpy())]


def merge_similar_items(primary: pd.DataFrame, fallback: pd.DataFrame, n: int) -> pd.DataFrame:
    """Primary neighbours first, then fallback ones not already listed, ``n`` per item.

    Scores of the two sources are on different scales, so the merged ``score`` is the
    source's score and ``source`` says which one it came from; ``rank`` is the merged order.
    """
    merged = pd.concat(
        [primary.assign(source="covisitation", _order=0), fallback.assign(source="als", _order=1)],
        ignore_index=True,
    )
    merged = merged.sort_values(["item_id", "_order", "rank"], kind="stable")
    merged = merged.drop_duplicates(["item_id", "similar_item_id"], keep="first")
    return top_k_per_key(merged, "item_id", n).drop(columns="_order")
