"""The synthetic RetailRocket twin: format, determinism, statistics and planted structure.

Every test reads real files written into ``tmp_path``; the tiny scale (a fraction of a second)
serves most checks, the small (demo) scale is checked once under ``slow``.
"""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy.engine import Engine

from recsys.data.loader import load_raw_data
from recsys.data.schema import CATEGORY_TREE, EVENTS, ITEM_PROPERTIES
from recsys.data.synthetic import (
    END_MS,
    FULL,
    N_PROPERTIES,
    SCALES,
    SNAPSHOT_TIMESTAMPS_MS,
    START_MS,
    TwinScale,
    generate_twin,
    measure_raw_statistics,
    resolve_scale,
)

FILES = (*EVENTS.files, *ITEM_PROPERTIES.files, *CATEGORY_TREE.files)
TINY = SCALES["tiny"]
SMALL = SCALES["small"]
DAY_MS = 86_400_000

# Statistics of the real Kaggle files (docs/synthetic_twin.md).
REAL_EVENT_ITEMS = 235_061
REAL_PART1_SHARE = 10_999_999 / 20_275_902


@pytest.fixture(scope="module")
def tiny_twin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny_twin")
    generate_twin(out, "tiny", seed=7)
    return out


@pytest.fixture(scope="module")
def small_twin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("small_twin")
    started = time.perf_counter()
    generate_twin(out, "small", seed=11)
    assert time.perf_counter() - started < 30, "the demo scale must generate well under a minute"
    return out


@pytest.fixture(scope="module")
def tiny_stats(tiny_twin: Path) -> dict[str, float]:
    return measure_raw_statistics(tiny_twin)


def data_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")[1:-1]


# --------------------------------------------------------------------------------------
# Files, format, determinism
# --------------------------------------------------------------------------------------
def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    first = generate_twin(tmp_path / "a", "tiny", seed=3)
    second = generate_twin(tmp_path / "b", "tiny", seed=3)
    other = generate_twin(tmp_path / "c", "tiny", seed=4)
    for name in FILES:
        assert first.files[name].read_bytes() == second.files[name].read_bytes(), name
        assert first.files[name].read_bytes() != other.files[name].read_bytes(), name


def test_summary_lists_the_files_and_their_rows(tmp_path: Path) -> None:
    messages: list[str] = []
    summary = generate_twin(tmp_path, "tiny", seed=1, progress=messages.append)
    assert summary.scale == "tiny"
    assert summary.seed == 1
    assert set(summary.files) == set(FILES)
    # Nothing else is left in the folder (no temporary files).
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES)
    for name, path in summary.files.items():
        assert path == tmp_path / name
        assert summary.rows[name] == len(data_lines(path))
    assert summary.rows["events.csv"] == TINY.n_events
    assert summary.rows["category_tree.csv"] == TINY.n_categories
    assert summary.rows["item_properties_part1.csv"] + summary.rows["item_properties_part2.csv"] == (
        TINY.n_property_rows
    )
    assert messages
    assert summary.seconds > 0


def test_rerun_replaces_files_in_place(tmp_path: Path) -> None:
    generate_twin(tmp_path, "tiny", seed=1)
    before = (tmp_path / "events.csv").read_bytes()
    generate_twin(tmp_path, "tiny", seed=2)
    assert (tmp_path / "events.csv").read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES)


def test_failure_mid_write_leaves_no_half_written_file(tmp_path: Path) -> None:
    def fail_in_properties(message: str) -> None:
        if message.startswith("writing item_properties_part1.csv:"):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        generate_twin(tmp_path, "tiny", progress=fail_in_properties)
    # Complete files stay, the one being written is gone, and so is its temporary file.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["category_tree.csv", "events.csv"]


def test_headers_and_lines_are_exactly_the_kaggle_format(tiny_twin: Path) -> None:
    for table in (EVENTS, ITEM_PROPERTIES, CATEGORY_TREE):
        for name in table.files:
            raw = (tiny_twin / name).read_bytes()
            assert raw.startswith((",".join(table.column_names) + "\n").encode()), name
            assert raw.endswith(b"\n")
            assert b"\r" not in raw
            assert b'"' not in raw
            assert b"\n\n" not in raw

    view_or_cart = re.compile(r"^1\d{12},\d+,(view|addtocart),\d+,$")
    purchase = re.compile(r"^1\d{12},\d+,transaction,\d+,\d+$")
    bad = [
        line
        for line in data_lines(tiny_twin / "events.csv")
        if not (view_or_cart.match(line) or purchase.match(line))
    ]
    assert bad == []

    row = re.compile(r"^1\d{12},\d+,(categoryid|available|\d+),[^,\s][^,]*[^,\s]?$")
    for name in ITEM_PROPERTIES.files:
        bad = [line for line in data_lines(tiny_twin / name) if not row.match(line)]
        assert bad == []

    tree_row = re.compile(r"^\d+,(\d+)?$")
    assert all(tree_row.match(line) for line in data_lines(tiny_twin / "category_tree.csv"))


def test_pandas_reads_the_files_with_the_right_types(tiny_twin: Path) -> None:
    events = pd.read_csv(tiny_twin / "events.csv")
    assert list(events.columns) == EVENTS.column_names
    for column in ("timestamp", "visitorid", "itemid"):
        assert events[column].dtype == np.int64
    assert events["event"].isin(["view", "addtocart", "transaction"]).all()
    # transactionid is an integer on transactions and empty everywhere else.
    assert events["transactionid"].dtype == np.float64
    is_purchase = events["event"] == "transaction"
    assert events["transactionid"].notna().eq(is_purchase).all()
    assert (events.loc[is_purchase, "transactionid"] % 1 == 0).all()

    properties = pd.concat(
        pd.read_csv(tiny_twin / name, dtype={"value": str}) for name in ITEM_PROPERTIES.files
    )
    assert list(properties.columns) == ITEM_PROPERTIES.column_names
    assert properties["timestamp"].dtype == np.int64
    assert properties["itemid"].dtype == np.int64
    assert properties["value"].notna().all()

    tree = pd.read_csv(tiny_twin / "category_tree.csv")
    assert tree["categoryid"].dtype == np.int64
    assert tree["parentid"].isna().sum() == TINY.n_category_roots
    assert tree["categoryid"].is_unique
    assert tree["parentid"].dropna().isin(tree["categoryid"]).all()


def test_property_values_look_like_the_hashed_kaggle_values(tiny_twin: Path) -> None:
    properties = pd.concat(
        pd.read_csv(tiny_twin / name, dtype={"value": str}) for name in ITEM_PROPERTIES.files
    )
    by_name = dict(tuple(properties.groupby("property")))
    assert by_name["790"]["value"].str.fullmatch(r"n\d+\.000").all()
    assert by_name["categoryid"]["value"].str.fullmatch(r"\d+").all()
    assert set(by_name["available"]["value"]) == {"0", "1"}
    hashed = properties[~properties["property"].isin(["categoryid", "available"])]
    token = r"(?:\d+|n\d+\.\d{3})"
    assert hashed["value"].str.fullmatch(rf"{token}(?: {token})*").all()
    assert hashed["value"].str.contains(r"n\d+\.\d{3}").mean() > 0.05  # numbers are present
    assert hashed["value"].str.contains(" ").mean() > 0.1  # multi-token values too
    assert properties["property"].nunique() == N_PROPERTIES

    stamps = sorted(properties["timestamp"].unique())
    assert stamps == list(SNAPSHOT_TIMESTAMPS_MS)
    moments = pd.to_datetime(pd.Series(stamps), unit="ms", utc=True)
    assert (moments.dt.day_of_week == 6).all()  # Sundays ...
    assert (moments.dt.hour == 3).all() and (moments.dt.minute == 0).all()  # ... at 03:00 UTC
    assert moments.iloc[0] == pd.Timestamp("2015-05-10 03:00", tz="UTC")
    assert moments.iloc[-1] == pd.Timestamp("2015-09-13 03:00", tz="UTC")


def test_item_properties_are_a_change_log(tiny_twin: Path) -> None:
    properties = pd.concat(
        pd.read_csv(tiny_twin / name, dtype={"value": str}) for name in ITEM_PROPERTIES.files
    )
    ordered = properties.sort_values(["itemid", "property", "timestamp"])
    same_pair = ordered[["itemid", "property"]].eq(ordered[["itemid", "property"]].shift()).all(axis=1)
    # A later row of an (item, property) exists only when its value changed ...
    assert not (same_pair & ordered["value"].eq(ordered["value"].shift())).any()
    # ... and never twice in one snapshot.
    assert not ordered.duplicated(["itemid", "property", "timestamp"]).any()
    # The file is shuffled, not grouped by item or time.
    first = pd.read_csv(tiny_twin / "item_properties_part1.csv", dtype={"value": str})
    assert not first["itemid"].is_monotonic_increasing
    assert not first["timestamp"].is_monotonic_increasing


def test_the_project_loader_accepts_the_twin(tiny_twin: Path, sqlite_engine: Engine) -> None:
    reports = {report.table: report for report in load_raw_data(sqlite_engine, tiny_twin)}
    assert reports["events"].rows_read == TINY.n_events
    assert reports["events"].duplicates_dropped == TINY.n_duplicate_events
    assert reports["item_properties"].rows_loaded == TINY.n_property_rows
    assert reports["category_tree"].rows_loaded == TINY.n_categories


# --------------------------------------------------------------------------------------
# Scales
# --------------------------------------------------------------------------------------
def test_full_scale_has_the_real_sizes() -> None:
    assert FULL.n_events == 2_756_101
    assert (FULL.n_views, FULL.n_addtocart, FULL.n_transaction_rows) == (2_664_312, 69_332, 22_457)
    assert (FULL.n_visitors, FULL.n_transactions, FULL.n_duplicate_events) == (1_407_580, 17_672, 460)
    assert (FULL.n_items_with_properties, FULL.n_property_rows) == (417_053, 20_275_902)
    assert (FULL.n_categories, FULL.n_category_roots) == (1_669, 25)
    assert SCALES["full"] is FULL


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_smaller_scales_keep_the_real_ratios(name: str) -> None:
    scale = SCALES[name]
    for attribute in ("n_views", "n_addtocart", "n_transaction_rows", "n_visitors", "n_property_rows"):
        ratio = getattr(scale, attribute) / scale.n_events
        assert ratio == pytest.approx(getattr(FULL, attribute) / FULL.n_events, rel=0.02), attribute
    assert scale.n_property_rows / scale.n_items_with_properties == pytest.approx(
        FULL.n_property_rows / FULL.n_items_with_properties, rel=0.01
    )
    assert 15_000 <= SCALES["tiny"].n_events <= 25_000
    assert SCALES["small"].n_events == pytest.approx(0.05 * FULL.n_events, rel=0.01)


def test_scale_resolution_and_validation() -> None:
    assert resolve_scale("tiny") is TINY
    assert resolve_scale(TINY) is TINY
    with pytest.raises(ValueError, match="unknown twin scale 'huge'"):
        resolve_scale("huge")
    with pytest.raises(ValueError, match="n_buyers"):
        dataclasses.replace(TINY, n_buyers=TINY.n_transactions + 1)
    with pytest.raises(ValueError, match="n_views"):
        dataclasses.replace(TINY, n_views=TINY.n_visitors)
    with pytest.raises(ValueError, match="fraction"):
        TwinScale.scaled("none", 0.0, n_categories=60, n_category_roots=4, n_missing_categories=0)


def test_a_custom_scale_is_honoured(tmp_path: Path) -> None:
    custom = TwinScale.scaled("custom", 0.004, n_categories=40, n_category_roots=3, n_missing_categories=0)
    summary = generate_twin(tmp_path, custom, seed=5)
    stats = measure_raw_statistics(tmp_path)
    assert summary.scale == "custom"
    assert stats["events"] == custom.n_events
    assert stats["category_nodes"] == 40
    assert stats["categories_missing_from_tree"] == 0
    assert stats["property_items"] == custom.n_items_with_properties


# --------------------------------------------------------------------------------------
# Statistics of the real data
# --------------------------------------------------------------------------------------
def check_exact_counts(stats: dict[str, float], scale: TwinScale) -> None:
    assert stats["events"] == scale.n_events
    assert stats["view_share"] * scale.n_events == pytest.approx(scale.n_views)
    assert stats["addtocart_share"] * scale.n_events == pytest.approx(scale.n_addtocart)
    assert stats["transaction_share"] * scale.n_events == pytest.approx(scale.n_transaction_rows)
    assert stats["visitors"] == scale.n_visitors
    assert stats["transactions"] == scale.n_transactions
    assert stats["buyers"] == scale.n_buyers
    assert stats["duplicate_rows"] == scale.n_duplicate_events
    assert stats["property_rows"] == scale.n_property_rows
    assert stats["property_items"] == scale.n_items_with_properties
    assert stats["property_names"] == N_PROPERTIES
    assert stats["property_timestamps"] == 18
    assert stats["category_nodes"] == scale.n_categories
    assert stats["category_roots"] == scale.n_category_roots
    assert stats["categories_missing_from_tree"] == scale.n_missing_categories
    assert stats["events_per_visitor_max"] >= scale.max_visitor_events


def check_ratios(stats: dict[str, float], scale: TwinScale, slack: float) -> None:
    """Ratios of the real data, within tolerances widened by ``slack`` for small samples."""
    fraction = scale.n_events / FULL.n_events
    assert stats["view_share"] == pytest.approx(0.967, abs=0.002)
    assert stats["transaction_share"] == pytest.approx(0.0081, abs=0.0005)
    assert stats["items_per_transaction"] == pytest.approx(1.27, abs=0.03)
    assert stats["events_per_visitor_median"] == 1
    assert stats["events_per_visitor_mean"] == pytest.approx(1.96, abs=0.02)
    assert stats["event_items"] == pytest.approx(REAL_EVENT_ITEMS * fraction, rel=0.06 * slack)
    assert stats["items_with_one_event_share"] == pytest.approx(0.31, abs=0.03 * slack)
    assert stats["repeated_triple_share"] == pytest.approx(0.19, abs=0.02 + 0.025 * slack)
    assert stats["addtocart_after_view_share"] > 0.9
    assert stats["transaction_after_addtocart_share"] > 0.9
    assert stats["sorted_by_time"] == 0
    assert START_MS <= stats["first_event_ms"] < START_MS + DAY_MS
    assert END_MS - DAY_MS < stats["last_event_ms"] < END_MS
    assert stats["property_part1_share"] == pytest.approx(REAL_PART1_SHARE, abs=0.001)
    assert stats["property_rows_per_item"] == pytest.approx(20_275_902 / 417_053, rel=0.01)
    assert stats["event_items_without_properties_share"] == pytest.approx(0.01, abs=0.003 * slack)
    assert stats["events_with_item_properties_share"] == pytest.approx(0.907, abs=0.04 * slack)
    assert stats["changed_item_share_categoryid"] == pytest.approx(0.05, abs=0.015 * slack)
    assert stats["changed_item_share_available"] == pytest.approx(0.16, abs=0.03 * slack)
    assert 0.15 < stats["changed_item_share_790"] < 0.45
    assert stats["category_max_depth"] == 6


def test_tiny_twin_reproduces_the_real_statistics(tiny_stats: dict[str, float]) -> None:
    check_exact_counts(tiny_stats, TINY)
    check_ratios(tiny_stats, TINY, slack=2.0)


@pytest.mark.slow
def test_small_twin_reproduces_the_real_statistics(small_twin: Path) -> None:
    stats = measure_raw_statistics(small_twin)
    check_exact_counts(stats, SMALL)
    check_ratios(stats, SMALL, slack=1.0)
    # Enough returning buyers at this scale to check the loyalty of conversions themselves.
    assert stats["returning_conversions"] > 50
    assert stats["returning_conversions_in_seen_category_share"] > 0.45
    assert (
        stats["returning_conversions_in_seen_category_share"]
        > 2.5 * stats["popular_conversions_in_seen_category_share"]
    )
    assert stats["top_items_overlap_first_last_month"] < stats["top_items_overlap_random_halves"] - 0.3
    # Enough purchases at this scale to see that unavailable items are bought less.
    assert stats["transactions_on_unavailable_share"] < 0.6 * stats["views_on_unavailable_share"]
    assert stats["addtocarts_on_unavailable_share"] < 0.5 * stats["views_on_unavailable_share"]


# --------------------------------------------------------------------------------------
# Planted structure
# --------------------------------------------------------------------------------------
def test_returning_visitors_stay_in_their_categories(tiny_stats: dict[str, float]) -> None:
    assert tiny_stats["returning_events"] > 100
    loyal = tiny_stats["returning_events_in_seen_category_share"]
    popular = tiny_stats["popular_events_in_seen_category_share"]
    # Thresholds hold for every seed tried (0..19); without planted loyalty the share is ~0.2.
    assert loyal > 0.35
    assert loyal > 2 * popular


def seen_category_shares(raw_dir: Path, conversions_only: bool) -> tuple[float, float, int]:
    """Straight from the files: of the later (last 20 %) events of returning visitors, the share
    in a category the visitor had an event in before, and the same share for random items."""
    events = pd.read_csv(raw_dir / "events.csv")
    properties = pd.concat(
        pd.read_csv(raw_dir / name, dtype={"value": str}) for name in ITEM_PROPERTIES.files
    )
    categories = properties[properties["property"] == "categoryid"].sort_values("timestamp")
    events["category"] = events["itemid"].map(categories.groupby("itemid")["value"].first())
    events = events.dropna(subset=["category"])
    split = events["timestamp"].quantile(0.8)
    before, after = events[events["timestamp"] < split], events[events["timestamp"] >= split]
    seen = set(zip(before["visitorid"], before["category"], strict=True))
    later = after[after["visitorid"].isin(before["visitorid"])]
    if conversions_only:
        later = later[later["event"] != "view"]
    share = np.mean([(v, c) in seen for v, c in zip(later["visitorid"], later["category"], strict=True)])
    random_items = np.random.default_rng(0).choice(events["category"].to_numpy(), size=(20, len(later)))
    baseline = np.mean(
        [[(v, c) in seen for v, c in zip(later["visitorid"], row, strict=True)] for row in random_items]
    )
    return float(share), float(baseline), len(later)


def test_later_events_follow_earlier_categories(tiny_twin: Path) -> None:
    share, baseline, n = seen_category_shares(tiny_twin, conversions_only=False)
    assert n > 100
    assert share > 0.4
    assert share > 2 * baseline


@pytest.mark.slow
def test_later_carts_and_purchases_follow_earlier_categories(small_twin: Path) -> None:
    share, baseline, n = seen_category_shares(small_twin, conversions_only=True)
    assert n > 50
    assert share > 0.45
    assert share > 2.5 * baseline


def test_item_popularity_drifts_over_time(tiny_stats: dict[str, float]) -> None:
    # Without drift the top items of two months overlap as much as two random halves.
    assert tiny_stats["top_items_overlap_random_halves"] > 0.6
    assert (
        tiny_stats["top_items_overlap_first_last_month"]
        < tiny_stats["top_items_overlap_random_halves"] - 0.25
    )


def test_unavailable_items_are_put_in_carts_less(tiny_stats: dict[str, float]) -> None:
    # The tiny twin has too few transactions for this; the small one checks them (slow).
    assert tiny_stats["views_on_unavailable_share"] > 0.03
    assert tiny_stats["addtocarts_on_unavailable_share"] < 0.65 * tiny_stats["views_on_unavailable_share"]


def test_visitors_are_heavy_tailed(tiny_twin: Path) -> None:
    per_visitor = pd.read_csv(tiny_twin / "events.csv")["visitorid"].value_counts()
    assert per_visitor.median() == 1
    assert (per_visitor == 1).mean() > 0.5
    assert per_visitor.max() > 20 * per_visitor.mean()
