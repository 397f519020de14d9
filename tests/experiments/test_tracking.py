"""MLflow logging of model runs and comparisons, into a real SQLite tracking store."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from recsys.evaluation.offline import TimeSplit
from recsys.experiments import modelling, tracking
from recsys.models.als import ALSConfig
from recsys.models.base import Recommender
from recsys.models.dataset import InteractionData
from recsys.models.i2i import ItemToItemModel
from recsys.models.popular import PopularConfig, PopularModel
from recsys.models.ranker import CatBoostConfig, TwoStageConfig
from recsys.storage.object_store import LocalObjectStore
from tests.experiments.helpers import MODEL_FILES, artifact_paths

Split = tuple[TimeSplit, InteractionData]


@pytest.fixture(scope="module")
def model_runs(clustered_split: Split) -> list[modelling.ModelRun]:
    split, train = clustered_split
    return [
        modelling.fit_and_evaluate("popular", PopularModel(PopularConfig(half_life_days=3.0)), train, split),
        modelling.fit_and_evaluate("i2i", ItemToItemModel(), train, split),
    ]


def test_names_and_flattening() -> None:
    assert tracking.metric_key("ndcg@10_heavy") == "ndcg_at_10_heavy"
    assert tracking.metric_key("a(b)/c d.e-f") == "a_b_/c d.e-f"
    table = pd.DataFrame(
        {"ndcg@10": [0.5, np.nan], "n_users": [3.0, 4.0]}, index=pd.Index(["cold", "all"], name="segment")
    )
    assert tracking.flatten_metrics(table) == {
        "ndcg_at_10_cold": 0.5,
        "n_users_cold": 3.0,
        "n_users_all": 4.0,
    }
    config = TwoStageConfig(label_days=5.0, als=ALSConfig(factors=12), ranker=CatBoostConfig(depth=3))
    params = tracking.flatten_params(config)
    assert params["als.factors"] == "12"
    assert params["ranker.depth"] == "3"
    assert params["popular.half_life_days"] == str(config.popular.half_life_days)
    assert params["label_days"] == "5.0"
    assert len(params) == len(tracking.flatten_params(config.model_dump()))
    assert tracking.flatten_params({"a": {"b": None}, "long": "x" * 7000}) == {
        "a.b": "None",
        "long": "x" * 6000,
    }


def test_markdown_table() -> None:
    frame = pd.DataFrame({"ndcg@10": [0.123456, 1.0], "name": ["a|b", "c"]}, index=["cold", "all"])
    assert tracking.markdown_table(frame, digits=3).splitlines() == [
        "|  | ndcg@10 | name |",
        "|---|---|---|",
        "| cold | 0.123 | a\\|b |",
        "| all | 1 | c |",
    ]


def test_artifact_location(tmp_path: Path) -> None:
    database = tmp_path / "store" / "mlflow.sqlite3"
    location = tracking.artifact_location(f"sqlite:///{database}", "my exp")
    assert location == (tmp_path / "store" / "mlartifacts" / "my_exp").as_uri()
    assert tracking.artifact_location("http://127.0.0.1:5000", "x") is None
    assert tracking.is_database_uri("postgresql://u@h/db") and not tracking.is_database_uri("https://m")
    assert (
        tracking.artifact_location("postgresql+psycopg2://u@h/db", "x", tmp_path) == (tmp_path / "x").as_uri()
    )


def test_model_run_is_logged_with_params_metrics_and_a_loadable_model(
    mlflow_uri: str, model_runs: list[modelling.ModelRun], clustered_split: Split, tmp_path: Path
) -> None:
    split, train = clustered_split
    popular = model_runs[0]
    tracker = tracking.ExperimentTracker(mlflow_uri, "unit", source="test_tracking.py")
    run_id = tracker.log_model_run(popular, params=modelling.split_params(split), tags={"purpose": "test"})

    client = MlflowClient(tracking_uri=mlflow_uri)  # a separate client sees the finished run
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "popular"
    assert run.info.experiment_id == tracker.experiment_id
    assert run.data.tags["model_kind"] == "popular"
    assert run.data.tags["purpose"] == "test"
    assert run.data.tags["mlflow.source.name"] == "test_tracking.py"
    assert run.data.params["half_life_days"] == "3.0"
    assert run.data.params["model.kind"] == "popular"
    assert run.data.params["split.test_start"] == split.test_start.isoformat()
    metrics = run.data.metrics
    for segment in ("cold", "light", "heavy", "all"):
        for k in (5, 10):
            assert metrics[f"ndcg_at_{k}_{segment}"] == pytest.approx(popular.table.loc[segment, f"ndcg@{k}"])
    assert metrics["n_users_all"] == len(split.test_users)
    assert {"fit_seconds", "recommend_seconds"} <= set(metrics)

    # Artifacts live next to the SQLite store, in the experiment's folder.
    assert run.info.artifact_uri.startswith(tracking.artifact_location(mlflow_uri, "unit") or "?")
    assert artifact_paths(client, run_id) == MODEL_FILES | {
        "plots/segment_metrics.png",
        "evaluation/metrics.csv",
        "evaluation/metrics.md",
    }
    table = pd.read_csv(
        client.download_artifacts(run_id, "evaluation/metrics.csv", str(tmp_path)), index_col=0
    )
    pd.testing.assert_frame_equal(table, popular.table, check_names=False)
    assert (
        Path(client.download_artifacts(run_id, "plots/segment_metrics.png", str(tmp_path))).read_bytes()[:4]
        == b"\x89PNG"
    )

    # The logged folder is a model the project can load: same recommendations.
    folder = Path(client.download_artifacts(run_id, "model", str(tmp_path / "download")))
    loaded = Recommender.load(LocalObjectStore(folder.parent), folder.name)
    users = split.test_users[:20]
    pd.testing.assert_frame_equal(
        loaded.recommend(users, train, 10), popular.model.recommend(users, train, 10)
    )


def test_comparison_run_links_the_model_runs(mlflow_uri: str, model_runs: list[modelling.ModelRun]) -> None:
    tracker = tracking.ExperimentTracker(mlflow_uri, "unit")
    run_ids = {run.name: tracker.log_model_run(run) for run in model_runs}
    comparison = modelling.comparison_table(model_runs)
    comparison_id = tracker.log_comparison(
        comparison, run_ids, params={"split.test_days": 7}, metric="recall@10"
    )

    client = MlflowClient(tracking_uri=mlflow_uri)
    runs = client.search_runs([tracker.experiment_id])
    assert sorted(run.info.run_name for run in runs) == ["comparison", "i2i", "popular"]
    run = client.get_run(comparison_id)
    best = comparison.xs("all", level="segment")["recall@10"].idxmax()
    assert run.data.tags["best_model"] == best
    assert {run.data.tags[f"run_id.{name}"] for name in run_ids} == set(run_ids.values())
    assert run.data.params == {"split.test_days": "7"}
    for name, model_run in zip(("popular", "i2i"), model_runs, strict=True):
        assert run.data.metrics[f"{name}/ndcg_at_10_all"] == pytest.approx(
            model_run.table.loc["all", "ndcg@10"]
        )
    assert len(run.data.metrics) == comparison.size
    assert artifact_paths(client, comparison_id) == {
        "evaluation/comparison.csv",
        "evaluation/comparison.md",
        "plots/comparison_recall_at_10.png",
    }


def test_a_failing_run_is_marked_failed_and_experiments_are_reused(mlflow_uri: str) -> None:
    tracker = tracking.ExperimentTracker(mlflow_uri, "unit")
    with pytest.raises(RuntimeError, match="boom"), tracker.run("broken") as run_id:
        tracker.log_values(run_id, params={"a": 1}, metrics={f"m{i}": float(i) for i in range(1500)})
        raise RuntimeError("boom")
    client = MlflowClient(tracking_uri=mlflow_uri)
    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert len(run.data.metrics) == 1500  # logged in two batches
    assert tracking.ExperimentTracker(mlflow_uri, "unit").experiment_id == tracker.experiment_id

    client.delete_experiment(tracker.experiment_id)
    with pytest.raises(ValueError, match="is deleted"):
        tracking.ExperimentTracker(mlflow_uri, "unit")


def test_artifacts_of_a_new_experiment_stay_next_to_the_database(mlflow_uri: str) -> None:
    tracker = tracking.ExperimentTracker(mlflow_uri, "next to db")
    with tracker.run("one") as run_id:
        tracker.log_table(run_id, pd.DataFrame({"x": [1]}), "t")
    uri = MlflowClient(tracking_uri=mlflow_uri).get_run(run_id).info.artifact_uri
    folder = Path(url2pathname(urlsplit(uri).path))
    database = Path(mlflow_uri.removeprefix("sqlite:///"))
    assert folder.is_relative_to(database.parent / "mlartifacts" / "next_to_db")
    assert (folder / "t.csv").is_file() and (folder / "t.md").is_file()


def test_an_experiment_of_a_tracking_server_is_not_logged_to_its_database_directly(mlflow_uri: str) -> None:
    MlflowClient(tracking_uri=mlflow_uri).create_experiment("served", artifact_location="mlflow-artifacts:/7")
    with pytest.raises(ValueError, match="log through that server"):
        tracking.ExperimentTracker(mlflow_uri, "served")
