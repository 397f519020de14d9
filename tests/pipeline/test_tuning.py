"""Hyper-parameter search on the loaded data (recsys.evaluation.tuning) and in stages 2 and 7."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from recsys.config import Settings
from recsys.data.loader import load_raw_data
from recsys.evaluation.offline import evaluate, split_data
from recsys.evaluation.tuning import SEARCH_SPACES, TuningResult, tune
from recsys.models.als import ALSConfig, ALSModel
from recsys.models.dataset import InteractionData
from recsys.models.ranker import TwoStageModel
from recsys.pipeline.stages import (
    ALS_MODEL,
    RANKER_MODEL,
    STAGES,
    RunContext,
    prepare_dataset,
    train_als_model,
    train_ranking_model_and_rank_recommendations,
)
from recsys.publishing.tables import current_version
from tests.models.conftest import clustered_interactions
from tests.pipeline.conftest import MOMENT

SEARCHED = list(SEARCH_SPACES["als"])


@pytest.fixture(scope="module")
def clustered_window() -> InteractionData:
    """30 days of users browsing one cluster of items each: ALS's quality depends on its settings."""
    frame, catalogue = clustered_interactions(seed=3, n_events=12_000)
    return InteractionData.build(frame, catalogue)


def _trials(result: TuningResult) -> pd.DataFrame:
    return result.trials.drop(columns="seconds")


def test_the_search_starts_from_the_default_and_keeps_the_best(clustered_window: InteractionData) -> None:
    result = tune(ALSModel, clustered_window, validation_days=7, seconds=600, max_trials=6)
    assert len(result.trials) == 6
    assert (result.trials["state"] == "COMPLETE").all()
    default = ALSConfig()
    assert result.trials.loc[0, SEARCHED].to_dict() == {name: getattr(default, name) for name in SEARCHED}
    assert result.default_value == result.trials.loc[0, "value"] > 0
    assert result.trials["value"].min() < result.trials["value"].max()  # the settings matter here
    assert result.best_value == result.trials["value"].max() >= result.default_value
    # The chosen config is the best trial's (or the default if none beat it) and scores its value.
    split, train = split_data(clustered_window, 7)
    chosen = ALSModel(result.config).fit(train)
    score = evaluate(chosen.recommend(split.test_users, train, 10), split, k_values=(10,))
    assert score.loc["all", "ndcg@10"] == pytest.approx(result.best_value)
    assert result.summary()["tuned"] is (result.best_value > result.default_value)


def test_the_same_seed_gives_the_same_trials(clustered_window: InteractionData) -> None:
    first = tune(ALSModel, clustered_window, 7, seconds=600, max_trials=4, seed=7)
    again = tune(ALSModel, clustered_window, 7, seconds=600, max_trials=4, seed=7)
    other = tune(ALSModel, clustered_window, 7, seconds=600, max_trials=4, seed=8)
    pd.testing.assert_frame_equal(_trials(first), _trials(again))
    assert first.config == again.config
    assert not _trials(first).loc[1:, SEARCHED].equals(_trials(other).loc[1:, SEARCHED])


@pytest.mark.parametrize(("seconds", "max_trials"), [(0, 10), (600, 0)])
def test_a_zero_budget_means_the_defaults(
    clustered_window: InteractionData, seconds: float, max_trials: int
) -> None:
    result = tune(ALSModel, clustered_window, 7, seconds=seconds, max_trials=max_trials)
    assert result.config == ALSConfig()
    assert result.trials.empty
    assert result.reason == "tuning is off (budget 0)"
    assert result.summary()["trials"] == 0
    assert result.summary()["params"] == ALSConfig().model_dump(include=set(SEARCHED))


def test_without_optuna_the_defaults_are_used_and_the_reason_says_how_to_install_it(
    clustered_window: InteractionData, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna fails, as without the extra
    result = tune(ALSModel, clustered_window, 7, seconds=600, max_trials=5)
    assert result.config == ALSConfig()
    assert result.trials.empty
    assert "optuna is not installed (pip install 'recsys[airflow]')" in result.reason


@pytest.mark.parametrize("shop", ["five days", "no add-to-cart"])
def test_too_little_data_to_validate_gets_the_defaults_and_says_why(shop: str) -> None:
    frame, catalogue = clustered_interactions(seed=3)
    if shop == "five days":
        frame = frame[frame["datetime"] < frame["datetime"].min() + pd.Timedelta(days=5)]
    else:
        frame = frame.assign(event="view", weight=1.0)
    result = tune(ALSModel, InteractionData.build(frame, catalogue), 7, seconds=600, max_trials=5)
    assert result.config == ALSConfig()
    assert result.trials.empty
    assert result.reason.startswith("too little data to validate, the shipped defaults are used: ")
    expected = "is empty: use fewer test days" if shop == "five days" else "no addtocart/transaction events"
    assert expected in result.reason


# -- in the stages ----------------------------------------------------------------------------
@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        tuning_max_trials=2,
        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.sqlite3'}",
    )


def _context(settings: Settings, raw_dir: Path) -> RunContext:
    ctx = RunContext(settings, datetime.fromisoformat(MOMENT))
    load_raw_data(ctx.engine, raw_dir)
    prepare_dataset(ctx)
    return ctx


@pytest.mark.slow
def test_the_training_stages_report_and_log_their_search(settings: Settings, tiny_raw_dir: Path) -> None:
    ctx = _context(settings, tiny_raw_dir)
    als = train_als_model(ctx)
    ranked = train_ranking_model_and_rank_recommendations(ctx)
    for name, summary, model_class in (
        (ALS_MODEL, als, ALSModel),
        (RANKER_MODEL, ranked["training"], TwoStageModel),
    ):
        tuning = summary["tuning"]
        assert len(json.dumps(summary)) < 2_000  # small enough for XCom
        assert tuning["trials"] == tuning["completed"] == 2
        assert tuning["best_ndcg@10"] >= tuning["default_ndcg@10"]
        assert set(tuning["params"]) == set(SEARCH_SPACES[model_class.kind])
        assert summary["promoted"] is True
        # The promoted model was fitted with the chosen parameters.
        _, promoted = ctx.registry.load_current(name)
        config = promoted.config.model_dump()
        for dotted, value in tuning["params"].items():
            node = config
            *path, leaf = dotted.split(".")
            for part in path:
                node = node[part]
            assert node[leaf] == value
    # The ranker's default scores above zero on the tiny twin: the comparison above has teeth.
    assert ranked["training"]["tuning"]["default_ndcg@10"] > 0
    assert ranked["ranked_recommendations"]["rows"] > 0

    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(settings.mlflow_experiment)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], "tags.tuning = 'true'")
    assert sorted(run.data.tags["stage"] for run in runs) == ["train_als", "train_two_stage"]
    for run in runs:
        assert run.data.metrics["trials"] == 2
        assert "best_ndcg_at_10" in run.data.metrics
        assert [f.path for f in client.list_artifacts(run.info.run_id, "tuning")] == ["tuning/trials.csv"]
    ctx.engine.dispose()


def _shop(tiny_raw_dir: Path, target: Path, shop: str) -> Path:
    """The tiny twin's raw files with only the last week of events, or without add-to-cart/purchase."""
    shutil.copytree(tiny_raw_dir, target)
    events = pd.read_csv(target / "events.csv", dtype=str, keep_default_na=False)
    if shop == "one week":
        end = pd.Timestamp(MOMENT).value // 10**6
        stamps = events["timestamp"].astype("int64")
        events = events[(stamps < end) & (stamps >= end - 7 * 86_400_000)]
    else:
        events = events[events["event"] == "view"]
    events.to_csv(target / "events.csv", index=False)
    return target


@pytest.fixture(scope="module")
def tiny_shops(tiny_raw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    folder = tmp_path_factory.mktemp("shops")
    yield {shop: _shop(tiny_raw_dir, folder / shop, shop) for shop in ("one week", "no add-to-cart")}


@pytest.mark.slow
@pytest.mark.parametrize("shop", ["one week", "no add-to-cart"])
def test_a_shop_too_small_to_validate_runs_every_stage_on_the_defaults(
    settings: Settings, tiny_shops: dict[str, Path], shop: str
) -> None:
    ctx = _context(settings, tiny_shops[shop])
    summaries = {}
    for name, stage in list(STAGES.items())[1:]:
        ctx.summary = {}
        summaries[name] = stage(ctx)
    als = summaries["train_als_model"]
    assert als["tuning"]["trials"] == 0
    assert als["tuning"]["reason"].startswith("too little data to validate")
    assert als["tuning"]["params"] == ALSConfig().model_dump(include=set(SEARCHED))
    assert als["promoted"] is True
    assert als["reason"].endswith("trained on the whole window without validation")
    ranker = summaries["train_ranking_model_and_rank_recommendations"]["training"]
    assert ranker["tuning"]["reason"].startswith("too little data to validate")
    assert ranker["promoted"] is False
    assert ranker["reason"].startswith("the ranker cannot be trained on this window: ")
    # Every table a stage published has rows; the ranked table is not published without a ranker.
    for name in ("default_recommendations", "personalized_recommendations", "i2i_recommendations"):
        assert current_version(ctx.engine, name).rows > 0
    ctx.engine.dispose()
