"""Fit-and-evaluate runs and their comparison, on the clustered interactions of the model tests."""

from __future__ import annotations

import pandas as pd
import pytest
from matplotlib.figure import Figure

from recsys.evaluation.offline import TimeSplit
from recsys.experiments import modelling
from recsys.models.als import ALSConfig, ALSModel
from recsys.models.dataset import InteractionData
from recsys.models.popular import PopularModel

Split = tuple[TimeSplit, InteractionData]


@pytest.fixture(scope="module")
def runs(clustered_split: Split) -> list[modelling.ModelRun]:
    split, train = clustered_split
    return [
        modelling.fit_and_evaluate("popular", PopularModel(), train, split),
        modelling.fit_and_evaluate("als", ALSModel(ALSConfig(factors=8, iterations=3)), train, split),
    ]


def test_fit_and_evaluate_gives_the_segment_table(
    clustered_split: Split, runs: list[modelling.ModelRun]
) -> None:
    split, _ = clustered_split
    popular, als = runs
    assert popular.model.is_fitted and als.model.is_fitted
    assert popular.table.index.tolist() == ["cold", "light", "heavy", "all"]
    for k in modelling.K_VALUES:
        assert {f"ndcg@{k}", f"recall@{k}", f"novelty@{k}"} <= set(popular.table.columns)
    assert popular.table.loc["all", "n_users"] == len(split.test_users)
    assert set(popular.recommendations["user_id"]) == set(split.test_users)
    assert popular.recommendations["rank"].max() == max(modelling.K_VALUES)
    assert als.table.loc["all", "ndcg@10"] > popular.table.loc["all", "ndcg@10"]  # planted clusters
    assert set(als.timings) == {"fit_seconds", "recommend_seconds"}
    assert all(seconds >= 0 for seconds in als.timings.values())
    figure = als.figure()
    assert isinstance(figure, Figure) and "als" in figure.axes[0].get_title()
    assert len(figure.axes[0].patches) == 4 * len(als.table)  # four metrics per segment


def test_split_summary_and_params(clustered_split: Split) -> None:
    split, _ = clustered_split
    summary = modelling.split_summary(split)
    assert summary.index.tolist() == ["train", "test"]
    assert summary["interactions"].sum() == len(split.train) + len(split.test)
    assert summary.loc["train", "to"] < summary.loc["test", "from"]
    params = modelling.split_params(split)
    assert params["split.test_start"] == split.test_start.isoformat()
    per_segment = [params[f"split.test_users_{s}"] for s in ("cold", "light", "heavy")]
    assert sum(per_segment) == len(split.test_users)


def test_comparison_table_and_plot(runs: list[modelling.ModelRun]) -> None:
    comparison = modelling.comparison_table(runs)
    assert comparison.index.names == ["model", "segment"]
    assert comparison.index.get_level_values("model").unique().tolist() == ["popular", "als"]
    pd.testing.assert_frame_equal(comparison.loc["als"], runs[1].table, check_names=False)
    figure = modelling.plot_comparison(comparison, "recall@5")
    (axes,) = figure.axes
    assert len(axes.patches) == 2 * 4  # two models, four segments
    assert [text.get_text() for text in axes.get_legend().get_texts()] == ["popular", "als"]
    with pytest.raises(ValueError, match="distinct names"):
        modelling.comparison_table([runs[0], runs[0]])
    with pytest.raises(ValueError, match="at least one run"):
        modelling.comparison_table([])
