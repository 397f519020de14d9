"""EDA summaries on the hand-checked raw tables of conftest.py, on SQLite and PostgreSQL."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from sqlalchemy.engine import Engine

from recsys.config import Settings
from recsys.experiments import eda
from recsys.experiments.setup import ensure_dataset
from tests.experiments.conftest import W1, WEEK


def only_axes(figure: Figure) -> tuple[str, int]:
    """Title and number of drawn bars/points/lines of a one-axes figure."""
    assert isinstance(figure, Figure)
    (axes,) = figure.axes
    return axes.get_title(), len(axes.patches) + len(axes.collections) + len(axes.lines)


def test_table_sizes(raw_db: Engine) -> None:
    sizes = eda.table_sizes(raw_db)
    assert sizes.index.tolist() == ["events", "item_properties", "category_tree"]
    assert sizes["rows"].tolist() == [8, 10, 5]
    assert sizes.loc["events", "visitors"] == 4
    assert sizes.loc["events", "items"] == 3
    assert sizes.loc["item_properties", "properties"] == 4
    assert sizes.loc["category_tree", "categories"] == 5
    assert pd.isna(sizes.loc["category_tree", "items"])
    assert sizes.loc["events", "first"] == pd.Timestamp("2015-06-01 01:00")
    assert sizes.loc["item_properties", "last"] == pd.Timestamp("2015-06-15")
    assert pd.isna(sizes.loc["category_tree", "first"])
    title, bars = only_axes(eda.plot_table_sizes(sizes))
    assert bars == 3 and "raw table" in title


def test_event_funnel(raw_db: Engine) -> None:
    funnel = eda.event_funnel(raw_db)
    assert funnel.index.tolist() == ["view", "addtocart", "transaction"]
    assert funnel["events"].tolist() == [6, 1, 1]
    assert funnel["visitors"].tolist() == [4, 1, 1]
    assert funnel["items"].tolist() == [3, 1, 1]
    np.testing.assert_allclose(funnel["visitor_share"], [1.0, 0.25, 0.25])
    np.testing.assert_allclose(funnel["per_view"], [1.0, 1 / 6, 1 / 6])
    assert only_axes(eda.plot_event_funnel(funnel))[1] == 3


def test_activity_distributions(raw_db: Engine) -> None:
    visitors = eda.activity_distribution(raw_db, "visitor")
    assert visitors.index.tolist() == [1, 2, 4]
    assert visitors["count"].tolist() == [2, 1, 1]
    np.testing.assert_allclose(visitors["share"], [0.5, 0.25, 0.25])
    np.testing.assert_allclose(visitors["event_share"], [0.25, 0.25, 0.5])
    items = eda.activity_distribution(raw_db, "item")
    assert dict(zip(items.index, items["count"], strict=True)) == {1: 1, 2: 1, 5: 1}
    title, series = only_axes(eda.plot_activity({"visitors": visitors, "items": items}))
    assert series == 2 and "log-log" in title


def test_daily_events(raw_db: Engine) -> None:
    daily = eda.daily_events(raw_db)
    assert daily.index.tolist() == [pd.Timestamp("2015-06-01"), pd.Timestamp("2015-06-02")]
    assert daily.to_dict("list") == {"view": [2, 4], "addtocart": [1, 0], "transaction": [1, 0]}
    assert only_axes(eda.plot_daily_events(daily))[1] == 3


def test_category_depth(raw_db: Engine) -> None:
    depths = eda.category_depth(raw_db)
    assert depths.to_dict("index") == {
        1: {"categories": 2, "leaves": 1},
        2: {"categories": 2, "leaves": 1},
        3: {"categories": 1, "leaves": 1},
    }
    assert only_axes(eda.plot_category_depth(depths))[1] == 3


def test_property_churn(raw_db: Engine) -> None:
    churn = eda.property_churn(raw_db)
    assert set(churn["property"]) == {"790", "available", "categoryid"}  # 888 is not asked for
    price = churn[churn["property"] == "790"].set_index("week")
    weeks = [pd.Timestamp(W1 // WEEK * WEEK + n * WEEK, unit="ms") for n in range(3)]
    assert price.index.tolist() == weeks
    assert price[["rows", "new", "changed", "repeated", "known_before"]].to_dict("list") == {
        "rows": [3, 1, 1],
        "new": [3, 0, 0],
        "changed": [0, 1, 0],
        "repeated": [0, 0, 1],
        "known_before": [0, 3, 3],
    }
    assert math.isnan(price["churn"].iloc[0])
    np.testing.assert_allclose(price["churn"].iloc[1:], [1 / 3, 0.0])
    available = churn[churn["property"] == "available"].set_index("week")
    assert available["churn"].iloc[1] == 1.0

    summary = eda.churn_summary(churn)
    assert summary.loc["790", ["rows", "new", "changed", "repeated"]].tolist() == [5, 3, 1, 1]
    assert summary.loc["790", "mean_weekly_churn"] == pytest.approx(1 / 6)
    title, lines = only_axes(eda.plot_property_churn(churn))
    assert lines == 3 and "churn" in title

    only_888 = eda.property_churn(raw_db, ["888"])
    assert only_888["rows"].tolist() == [1]
    with pytest.raises(ValueError, match="at least one property"):
        eda.property_churn(raw_db, [])


def test_prices(raw_db: Engine) -> None:
    prices = eda.latest_prices(raw_db)
    assert prices.to_dict() == {1: 120.0, 2: 50.0, 3: 0.0}  # the latest snapshot wins
    summary = eda.price_summary(prices)
    assert summary.loc["price", "items"] == 3
    assert summary.loc["price", "zero_or_negative"] == 1
    assert summary.loc["price", "q50"] == pytest.approx(85.0)  # median of the positive prices
    assert summary.loc["price", "max"] == 120.0
    assert only_axes(eda.plot_price_distribution(prices))[1] > 0


def test_summaries_of_a_twin(db_engine: Engine, tmp_path: Path) -> None:
    """On generated data every summary is consistent with the table sizes."""
    settings = Settings(_env_file=None, data_dir=tmp_path)
    ensure_dataset(settings, db_engine, scale="tiny")
    sizes = eda.table_sizes(db_engine)
    funnel = eda.event_funnel(db_engine)
    visitors = eda.activity_distribution(db_engine, "visitor")
    assert funnel["events"].sum() == sizes.loc["events", "rows"]
    assert visitors["count"].sum() == sizes.loc["events", "visitors"]
    assert (visitors.index * visitors["count"]).sum() == sizes.loc["events", "rows"]
    assert eda.category_depth(db_engine)["categories"].sum() == sizes.loc["category_tree", "rows"]
    assert eda.daily_events(db_engine).to_numpy().sum() == sizes.loc["events", "rows"]
    assert eda.price_summary(eda.latest_prices(db_engine)).loc["price", "missing"] == 0
