"""Shop shapes beside the twin (dense, sparse) and the scale factor: sizes, key statistics, loading."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from recsys.cli import app
from recsys.config import EventWeights
from recsys.data.loader import load_raw_data
from recsys.data.prepare import prepare_datasets
from recsys.data.synthetic import (
    FULL,
    SCALES,
    SHAPES,
    generate_twin,
    measure_raw_statistics,
    resolve_shape,
)

SPARSE_FACTOR = 0.25  # a quarter of the sparse shop keeps the test quick; its ratios do not change


@pytest.fixture(scope="module")
def shape_stats(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, float]]:
    """Statistics of the dense shop, a quarter of the sparse one and the tiny twin for contrast."""
    specs = {
        "dense": resolve_shape("dense"),
        "sparse": resolve_shape("sparse", factor=SPARSE_FACTOR),
        "twin": resolve_shape("twin", "tiny"),
    }
    stats = {}
    for name, spec in specs.items():
        out = tmp_path_factory.mktemp(name)
        generate_twin(out, spec, seed=7)
        stats[name] = measure_raw_statistics(out)
    return stats


def test_dense_shop_is_small_loyal_and_cart_heavy(shape_stats: dict[str, dict[str, float]]) -> None:
    dense, twin = shape_stats["dense"], shape_stats["twin"]
    assert dense["visitors"] == 750
    assert 1_500 <= dense["event_items"] <= 1_700
    assert dense["events_per_visitor_mean"] == pytest.approx(190, rel=0.01)
    assert dense["events_per_visitor_median"] >= 50  # everyone is a regular, not only a few bots
    assert dense["addtocart_share"] == pytest.approx(1 / 3, abs=0.01)
    assert dense["density"] >= 0.05
    assert dense["density"] >= 50 * twin["density"]


def test_dense_visitors_come_back_after_weeks(shape_stats: dict[str, dict[str, float]]) -> None:
    dense, twin = shape_stats["dense"], shape_stats["twin"]
    assert dense["returns_per_visitor"] >= 3
    assert dense["return_gap_days_median"] >= 5
    assert dense["return_gaps_over_14_days_share"] >= 0.2 >= 2 * twin["return_gaps_over_14_days_share"]
    # The case issue 14 met: users with a long history and a month without events.
    assert dense["absent_30_days_share_of_heavy_visitors"] >= 0.2
    assert twin["absent_30_days_share_of_heavy_visitors"] <= 0.1


def test_sparse_shop_has_a_long_tail_and_few_events_per_visitor(
    shape_stats: dict[str, dict[str, float]],
) -> None:
    sparse, twin = shape_stats["sparse"], shape_stats["twin"]
    assert sparse["property_items"] == round(SHAPES["sparse"].n_items_with_properties * SPARSE_FACTOR)
    assert sparse["events_per_visitor_median"] == 1
    assert sparse["events_per_visitor_mean"] <= 1.8
    # Events spread over much of the catalogue, many items seen once.
    assert sparse["event_items"] / sparse["events"] >= 3 * twin["event_items"] / twin["events"]
    assert sparse["event_items"] >= 0.4 * sparse["property_items"]
    assert sparse["items_with_one_event_share"] >= twin["items_with_one_event_share"] + 0.05
    assert sparse["view_share"] >= 0.95


def test_the_loader_and_preparation_accept_a_shape_unchanged(sqlite_engine: Engine, tmp_path: Path) -> None:
    spec = resolve_shape("dense", factor=0.2)
    generate_twin(tmp_path, spec)
    reports = {report.table: report for report in load_raw_data(sqlite_engine, tmp_path)}
    assert reports["events"].rows_read == spec.n_events
    assert reports["events"].duplicates_dropped == spec.n_duplicate_events
    prepared = prepare_datasets(sqlite_engine, EventWeights())
    assert prepared.n_users == spec.n_visitors


def test_scale_factor_grows_every_count_but_the_tree() -> None:
    small = SCALES["small"]
    double = small.times(2)
    assert double.name == "smallx2"
    for count in ("n_views", "n_addtocart", "n_transaction_rows", "n_visitors", "n_items_with_properties"):
        assert getattr(double, count) == 2 * getattr(small, count), count
    assert (double.n_categories, double.behaviour) == (small.n_categories, small.behaviour)
    assert small.times(1) is small
    assert FULL.times(2).n_events == pytest.approx(2 * FULL.n_events, rel=1e-4)
    assert resolve_shape("twin", "full", 0.5).n_visitors == FULL.n_visitors // 2
    assert resolve_shape("dense", factor=2).n_visitors == 1_500


def test_shape_resolution_refuses_what_does_not_exist() -> None:
    assert resolve_shape("twin") is SCALES["small"]
    with pytest.raises(ValueError, match="unknown shop shape 'medium'; expected one of twin, dense, sparse"):
        resolve_shape("medium")
    with pytest.raises(ValueError, match="shape 'dense' has one size"):
        resolve_shape("dense", "tiny")
    with pytest.raises(ValueError, match="scale factor must be positive"):
        resolve_shape("twin", "tiny", 0)


def test_cli_generates_a_shape_with_a_factor(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["data", "generate", "--shape", "dense", "--scale-factor", "0.2", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert measure_raw_statistics(tmp_path)["visitors"] == 150

    refused = CliRunner().invoke(app, ["data", "generate", "--shape", "dense", "--scale", "tiny"])
    assert refused.exit_code == 1
    assert "has one size" in refused.output
