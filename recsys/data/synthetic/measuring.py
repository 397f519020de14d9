"""Measuring the statistics of any folder of RetailRocket files, the twin's or the real ones."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from recsys.data.schema import (
    AVAILABLE_PROPERTY,
    CATEGORY_PROPERTY,
    CATEGORY_TREE,
    EVENT_TYPES,
    EVENTS,
    ITEM_PROPERTIES,
    PRICE_PROPERTY,
)
from recsys.data.synthetic.constants import DAY_MS
from recsys.data.synthetic.sampling import Ints

# A pause longer than this between two events of a visitor counts as a return (the session gap).
RETURN_GAP_MS = 30 * 60_000


@dataclass(frozen=True)
class _EventTable:
    """``events.csv`` as arrays."""

    time: Ints
    visitor: Ints
    event: Ints  # index into EVENT_TYPES
    item: Ints
    transaction: Ints  # -1 for none


@dataclass(frozen=True)
class _PropertyScan:
    """What one streaming pass over the item properties files keeps."""

    rows_per_file: list[int]
    items: Ints
    timestamps: Ints
    rows_per_property: dict[str, int]
    tracked: pd.DataFrame  # timestamp, itemid, property, value of categoryid/available/790 rows


def measure_raw_statistics(raw_dir: Path) -> dict[str, float]:
    """Measure the statistics the twin is built to reproduce, on any RetailRocket folder.

    Parameters
    ----------
    raw_dir : Path
        Folder with the four plain Kaggle CSV files (the twin's or the real ones).

    Returns
    -------
    dict of str to float
        Statistic name to value; docs/synthetic_twin.md explains each name.

    Notes
    -----
    Memory stays moderate even on the real files: item properties are streamed and only the
    ``categoryid``, ``available`` and ``790`` rows are kept.
    """
    events = _read_events(raw_dir / EVENTS.files[0])
    scan = _scan_item_properties([raw_dir / name for name in ITEM_PROPERTIES.files])
    tree = pd.read_csv(raw_dir / CATEGORY_TREE.files[0], dtype={"categoryid": "int64", "parentid": "Int64"})
    stats = _event_statistics(events)
    stats |= _property_statistics(scan, events)
    stats |= _tree_statistics(tree, scan)
    stats |= _structure_statistics(events, scan)
    stats |= _shape_statistics(events)
    return stats


def _read_events(path: Path) -> _EventTable:
    table = pa_csv.read_csv(
        path,
        convert_options=pa_csv.ConvertOptions(
            column_types={
                "timestamp": pa.int64(),
                "visitorid": pa.int64(),
                "event": pa.string(),
                "itemid": pa.int64(),
                "transactionid": pa.int64(),
            }
        ),
    )
    event = pc.index_in(table["event"], value_set=pa.array(list(EVENT_TYPES)))
    return _EventTable(
        time=table["timestamp"].to_numpy(),
        visitor=table["visitorid"].to_numpy(),
        event=pc.fill_null(event, -1).to_numpy().astype(np.int64),
        item=table["itemid"].to_numpy(),
        transaction=pc.fill_null(table["transactionid"], -1).to_numpy(),
    )


def _scan_item_properties(paths: Sequence[Path]) -> _PropertyScan:
    tracked_names = pa.array([CATEGORY_PROPERTY, AVAILABLE_PROPERTY, PRICE_PROPERTY])
    rows_per_file, item_parts, stamp_parts, tracked = [], [], [], []
    per_property: dict[str, int] = {}
    for path in paths:
        reader = pa_csv.open_csv(
            path,
            read_options=pa_csv.ReadOptions(block_size=1 << 25),
            convert_options=pa_csv.ConvertOptions(
                column_types={
                    "timestamp": pa.int64(),
                    "itemid": pa.int64(),
                    "property": pa.string(),
                    "value": pa.string(),
                }
            ),
        )
        rows = 0
        for batch in reader:
            rows += batch.num_rows
            item_parts.append(np.unique(batch.column("itemid").to_numpy()))
            stamp_parts.append(np.unique(batch.column("timestamp").to_numpy()))
            counts = pc.value_counts(batch.column("property"))
            for name, count in zip(
                counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True
            ):
                per_property[name] = per_property.get(name, 0) + count
            keep = pc.is_in(batch.column("property"), value_set=tracked_names)
            tracked.append(pa.Table.from_batches([batch]).filter(keep))
        rows_per_file.append(rows)
    frame = pa.concat_tables(tracked).to_pandas() if tracked else pd.DataFrame()
    return _PropertyScan(
        rows_per_file=rows_per_file,
        items=np.unique(np.concatenate(item_parts)) if item_parts else np.zeros(0, np.int64),
        timestamps=np.unique(np.concatenate(stamp_parts)) if stamp_parts else np.zeros(0, np.int64),
        rows_per_property=per_property,
        tracked=frame,
    )


def _event_statistics(events: _EventTable) -> dict[str, float]:
    n = len(events.time)
    counts = np.bincount(events.event[events.event >= 0], minlength=3)
    _, per_visitor = np.unique(events.visitor, return_counts=True)
    items, per_item = np.unique(events.item, return_counts=True)
    bought = events.transaction >= 0
    triple = (events.visitor * 3 + events.event) * (int(events.item.max()) + 1) + events.item
    whole = np.lexsort((events.transaction, events.item, events.event, events.visitor, events.time))
    columns = (events.time, events.visitor, events.event, events.item, events.transaction)
    repeated = np.ones(n - 1, dtype=bool)
    for column in columns:
        repeated &= np.diff(column[whole]) == 0
    n_transactions = len(np.unique(events.transaction[bought]))
    return {
        "events": float(n),
        "view_share": counts[0] / n,
        "addtocart_share": counts[1] / n,
        "transaction_share": counts[2] / n,
        "visitors": float(len(per_visitor)),
        "event_items": float(len(items)),
        "transactions": float(n_transactions),
        "items_per_transaction": float(bought.sum() / max(n_transactions, 1)),
        "buyers": float(len(np.unique(events.visitor[bought]))),
        "duplicate_rows": float(repeated.sum()),
        "events_per_visitor_median": float(np.median(per_visitor)),
        "events_per_visitor_mean": float(per_visitor.mean()),
        "events_per_visitor_max": float(per_visitor.max()),
        "items_with_one_event_share": float(np.mean(per_item == 1)),
        "repeated_triple_share": 1.0 - len(np.unique(triple)) / n,
        "first_event_ms": float(events.time.min()),
        "last_event_ms": float(events.time.max()),
        "sorted_by_time": float(bool(np.all(np.diff(events.time) >= 0))),
        "addtocart_after_view_share": _funnel_share(events, earlier=0, later=1),
        "transaction_after_addtocart_share": _funnel_share(events, earlier=1, later=2),
    }


def _funnel_share(events: _EventTable, earlier: int, later: int) -> float:
    """Share of ``later`` events whose visitor had an ``earlier`` event on the item before."""
    key = events.visitor * (int(events.item.max()) + 1) + events.item
    first = pd.Series(events.time[events.event == earlier]).groupby(key[events.event == earlier]).min()
    mask = events.event == later
    if not mask.any():
        return float("nan")
    before = first.reindex(key[mask]).to_numpy()
    return float(np.mean(before <= events.time[mask]))


def _property_statistics(scan: _PropertyScan, events: _EventTable) -> dict[str, float]:
    total = sum(scan.rows_per_file)
    tracked = scan.tracked
    stats = {
        "property_rows": float(total),
        "property_part1_share": scan.rows_per_file[0] / total,
        "property_items": float(len(scan.items)),
        "property_names": float(len(scan.rows_per_property)),
        "property_timestamps": float(len(scan.timestamps)),
        "property_rows_per_item": total / len(scan.items),
        "event_items_without_properties_share": float(np.mean(~np.isin(np.unique(events.item), scan.items))),
        "events_with_item_properties_share": float(np.mean(np.isin(events.item, scan.items))),
    }
    for name in (CATEGORY_PROPERTY, AVAILABLE_PROPERTY, PRICE_PROPERTY, "888"):
        stats[f"rows_per_item_{name}"] = scan.rows_per_property.get(name, 0) / len(scan.items)
    for name in (CATEGORY_PROPERTY, AVAILABLE_PROPERTY, PRICE_PROPERTY):
        rows = tracked[tracked["property"] == name]
        distinct = rows.groupby("itemid")["value"].nunique()
        stats[f"changed_item_share_{name}"] = float((distinct > 1).mean()) if len(distinct) else float("nan")
    return stats


def _tree_statistics(tree: pd.DataFrame, scan: _PropertyScan) -> dict[str, float]:
    ids = tree["categoryid"].to_numpy()
    position = pd.Series(np.arange(len(ids)), index=ids)
    parent = tree["parentid"]
    parent_index = position.reindex(parent.fillna(-1).astype("int64")).fillna(-1).astype("int64").to_numpy()
    depth = np.ones(len(ids), dtype=np.int64)
    current = parent_index
    for _ in range(len(ids)):
        if not (current >= 0).any():
            break
        depth += current >= 0
        current = np.where(current >= 0, parent_index[np.maximum(current, 0)], -1)
    used = scan.tracked.loc[scan.tracked["property"] == CATEGORY_PROPERTY, "value"].astype("int64").unique()
    return {
        "category_nodes": float(len(ids)),
        "category_roots": float(parent.isna().sum()),
        "category_max_depth": float(depth.max()),
        "categories_missing_from_tree": float(len(np.setdiff1d(used, ids))),
    }


def _latest_values(scan: _PropertyScan, name: str) -> pd.Series:
    rows = scan.tracked[scan.tracked["property"] == name].sort_values(["itemid", "timestamp"], kind="stable")
    return rows.groupby("itemid")["value"].last()


def _shape_statistics(events: _EventTable) -> dict[str, float]:
    """What tells shops apart: density and how visitors come back.

    A return is a gap of more than :data:`RETURN_GAP_MS` between two events of a visitor.
    """
    _, per_visitor = np.unique(events.visitor, return_counts=True)
    n_items = len(np.unique(events.item))
    order = np.lexsort((events.time, events.visitor))
    visitor, time_ms = events.visitor[order], events.time[order]
    same_visitor = visitor[1:] == visitor[:-1]
    gaps = np.where(same_visitor, np.diff(time_ms), 0)
    returns = gaps[gaps > RETURN_GAP_MS]
    # Longest absence of each visitor with at least five events.
    starts = np.flatnonzero(np.concatenate([[True], ~same_visitor]))
    longest = np.maximum.reduceat(np.append(gaps, 0), starts)
    heavy = per_visitor >= 5
    return {
        "density": len(events.time) / (len(per_visitor) * n_items),
        "returns_per_visitor": len(returns) / len(per_visitor),
        "return_gap_days_median": float(np.median(returns)) / DAY_MS if returns.size else 0.0,
        "return_gaps_over_14_days_share": float(np.mean(returns > 14 * DAY_MS)) if returns.size else 0.0,
        "absent_30_days_share_of_heavy_visitors": float(np.mean(longest[heavy] > 30 * DAY_MS))
        if heavy.any()
        else 0.0,
    }


def _structure_statistics(events: _EventTable, scan: _PropertyScan) -> dict[str, float]:
    """Signals the models should find: category loyalty, popularity drift, availability.

    Category loyalty: for visitors active in the first 80 % of the period, the share of their
    later events (all, or add-to-carts and transactions only) on items of a category they had
    an event on before, against the same share for items drawn by popularity from all later
    events of that kind.
    """
    rng = np.random.default_rng(0)
    category = _latest_values(scan, CATEGORY_PROPERTY).astype("int64")
    item_category = category.reindex(events.item).fillna(-1).astype("int64").to_numpy()
    split = events.time.min() + 0.8 * (events.time.max() - events.time.min())
    early = events.time < split
    known = item_category >= 0
    stride = int(item_category.max()) + 2
    seen = np.unique(events.visitor[early & known] * stride + item_category[early & known])
    returning = np.isin(events.visitor, np.unique(events.visitor[early]))
    stats: dict[str, float] = {}
    for label, kind in (("events", events.event >= 0), ("conversions", events.event > 0)):
        later = ~early & known & kind
        target = later & returning
        pool = item_category[later]
        drawn = pool[rng.integers(0, max(len(pool), 1), int(target.sum()))] if len(pool) else pool
        stats[f"returning_{label}"] = float(target.sum())
        stats[f"returning_{label}_in_seen_category_share"] = float(
            np.mean(np.isin(events.visitor[target] * stride + item_category[target], seen))
        )
        stats[f"popular_{label}_in_seen_category_share"] = float(
            np.mean(np.isin(events.visitor[target] * stride + drawn, seen))
        )
    return stats | _drift_statistics(rng, events) | _availability_statistics(events, scan)


def _drift_statistics(rng: np.random.Generator, events: _EventTable) -> dict[str, float]:
    """Overlap of the top items of the first and the last month, against a no-drift baseline."""
    month = 30 * DAY_MS
    first = events.item[events.time < events.time.min() + month]
    last = events.item[events.time >= events.time.max() - month]
    k = int(min(100, max(10, len(np.unique(events.item)) // 50)))

    def top(sample: Ints) -> Ints:
        values, counts = np.unique(sample, return_counts=True)
        return values[np.lexsort((values, -counts))[:k]]

    mixed = rng.permutation(np.concatenate([first, last]))
    return {
        "top_items_k": float(k),
        "top_items_overlap_first_last_month": len(np.intersect1d(top(first), top(last))) / k,
        "top_items_overlap_random_halves": len(
            np.intersect1d(top(mixed[: len(first)]), top(mixed[len(first) :]))
        )
        / k,
    }


def _availability_statistics(events: _EventTable, scan: _PropertyScan) -> dict[str, float]:
    """Share of views and of transactions on items unavailable at that time."""
    rows = scan.tracked[scan.tracked["property"] == AVAILABLE_PROPERTY]
    frame = pd.DataFrame({"timestamp": events.time, "itemid": events.item, "event": events.event})
    frame = frame.sort_values("timestamp", kind="stable")
    known = rows[["timestamp", "itemid", "value"]].sort_values("timestamp", kind="stable")
    merged = pd.merge_asof(frame, known, on="timestamp", by="itemid", direction="backward")
    first = known.groupby("itemid")["value"].first()
    value = merged["value"].fillna(merged["itemid"].map(first))
    unavailable = (value == "0").to_numpy()
    has_value = value.notna().to_numpy()
    event = merged["event"].to_numpy()
    result = {}
    for name, code in (("view", 0), ("addtocart", 1), ("transaction", 2)):
        mask = (event == code) & has_value
        result[f"{name}s_on_unavailable_share"] = (
            float(unavailable[mask].mean()) if mask.any() else float("nan")
        )
    return result
