"""Model versions and the quality gate, on the local object store and on S3 (``moto_server``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from recsys.config import Settings
from recsys.data.loader import load_raw_data
from recsys.data.schema import RELEVANT_EVENTS
from recsys.evaluation.offline import SELECTION_METRIC, evaluate, time_split
from recsys.models.als import ALSModel
from recsys.models.base import RECOMMENDATION_COLUMNS, ModelError, Recommender
from recsys.models.dataset import InteractionData
from recsys.models.popular import PopularModel
from recsys.models.topk import top_k_per_key
from recsys.pipeline.stages import (
    ALS_MODEL,
    RunContext,
    _train_with_gate,
    prepare_dataset,
    prepare_personalized_recommendations,
    train_als_model,
)
from recsys.publishing.registry import ModelRegistry, ModelVersion, quality_gate
from recsys.storage.object_store import open_object_store
from tests.models.conftest import clustered_interactions
from tests.pipeline.conftest import MOMENT


class EmptyModel(PopularModel):
    """A candidate that recommends nothing: every metric is 0, so it is worse than any real model."""

    def _recommend(self, user_ids: npt.NDArray[np.int64], data: InteractionData, k: int) -> pd.DataFrame:
        return pd.DataFrame({c: pd.Series(dtype="int64") for c in RECOMMENDATION_COLUMNS})


class Memorizer(PopularModel):
    """Recommends each user the items they carted or bought in its training data: judged on days
    it was trained on it looks excellent, on days it has not seen it finds nothing new."""

    kind = "test_memorizer"

    def _fit(self, data: InteractionData) -> None:
        super()._fit(data)
        relevant = data.interactions[data.interactions["event"].isin(RELEVANT_EVENTS)]
        self.pairs = relevant[["user_id", "item_id"]].drop_duplicates()

    def _recommend(self, user_ids: npt.NDArray[np.int64], data: InteractionData, k: int) -> pd.DataFrame:
        rows = self.pairs[self.pairs["user_id"].isin(user_ids)].assign(score=1.0)
        return top_k_per_key(rows, "user_id", k)[RECOMMENDATION_COLUMNS]

    def _state(self) -> dict[str, npt.NDArray[Any]]:
        return {
            **super()._state(),
            "users": self.pairs["user_id"].to_numpy(),
            "items": self.pairs["item_id"].to_numpy(),
        }

    def _restore(self, state: dict[str, npt.NDArray[Any]]) -> None:
        super()._restore(state)
        self.pairs = pd.DataFrame({"user_id": state["users"], "item_id": state["items"]})


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """A SQLite database and either a local folder or an S3 bucket as the object store."""
    if request.param == "s3":
        s3: Settings = request.getfixturevalue("s3_settings")
        return s3.model_copy(update={"tuning_max_trials": 2})
    # Two trials per search run every part of it (tests/pipeline/test_tuning.py tests the search).
    return Settings(_env_file=None, data_dir=tmp_path / "data", tuning_max_trials=2)


@pytest.fixture
def registry(settings: Settings) -> ModelRegistry:
    return ModelRegistry(open_object_store(settings.store_url, settings))


@pytest.fixture(scope="module")
def popular() -> PopularModel:
    frame, catalogue = clustered_interactions()
    return PopularModel().fit(InteractionData.build(frame, catalogue))


def test_save_promote_and_load(registry: ModelRegistry, popular: PopularModel) -> None:
    assert registry.current("popular") is None
    registry.save("popular", "v1", popular, {"ndcg@10": 0.1})
    registry.save("popular", "v2", popular, {"ndcg@10": 0.2})
    assert registry.current("popular") is None  # saving is not promoting
    promoted = registry.promote("popular", "v2", {"ndcg@10": 0.2})
    assert registry.current("popular") == promoted
    assert registry.require_current("popular") == promoted
    assert registry.versions("popular") == ["v1", "v2"]
    version, model = registry.load_current("popular")
    assert version.version == "v2"
    assert isinstance(model, PopularModel)
    pd.testing.assert_frame_equal(model.ranking(_window(), 5), popular.ranking(_window(), 5))


def _window() -> InteractionData:
    frame, catalogue = clustered_interactions()
    return InteractionData.build(frame, catalogue)


def test_promotion_only_moves_forward_unless_forced(registry: ModelRegistry, popular: PopularModel) -> None:
    for version in ("v1", "v2", "v3", "v4"):
        registry.save("popular", version, popular)
    newer = registry.promote("popular", "v1", {}, as_of=datetime(2015, 9, 10))
    assert newer is not None and newer.as_of == "2015-09-10T00:00:00+00:00"

    # A backfill trained on older data is saved but does not take over.
    assert registry.promote("popular", "v2", {}, as_of=datetime(2015, 8, 1)) is None
    assert registry.current("popular") == newer
    # The same moment: the later promotion wins; asked explicitly, an older one is served.
    assert registry.promote("popular", "v3", {}, as_of=datetime(2015, 9, 10)) is not None
    forced = registry.promote("popular", "v2", {}, as_of=datetime(2015, 8, 1), force=True)
    assert registry.current("popular") == forced
    assert registry.promote("popular", "v4", {}, as_of=datetime(2015, 9, 11)) is not None
    assert registry.current("popular").version == "v4"  # type: ignore[union-attr]


def test_a_pointer_without_a_moment_is_replaced(registry: ModelRegistry, popular: PopularModel) -> None:
    """Pointers written before the moment was kept do not block the next promotion."""
    registry.save("popular", "v1", popular)
    registry.save("popular", "v2", popular)
    registry.promote("popular", "v1", {})
    assert registry.current("popular").as_of is None  # type: ignore[union-attr]
    assert registry.promote("popular", "v2", {}, as_of=datetime(2015, 8, 1)) is not None


def test_promoting_an_unsaved_version_is_refused(registry: ModelRegistry) -> None:
    with pytest.raises(ModelError, match="cannot promote als v9: no saved model at"):
        registry.promote("als", "v9", {})
    assert registry.current("als") is None


def test_loading_before_any_promotion_names_the_stage(registry: ModelRegistry) -> None:
    with pytest.raises(ModelError, match=r"no als model has been published in .*: run stage X first"):
        registry.load_current("als", stage_hint="stage X")
    with pytest.raises(ModelError, match=r"no als model has been published in .*models$"):
        registry.require_current("als")


def test_quality_gate_decisions() -> None:
    current = ModelVersion(name="als", version="v1", metrics={}, promoted_at="2015-09-10T22:00:00+00:00")
    assert quality_gate({"ndcg@10": 0.1}, None, "ndcg@10", None) == (True, "no model in service yet")
    assert quality_gate({"ndcg@10": 0.1}, current, "ndcg@10", {"ndcg@10": 0.1})[0] is True
    promote, reason = quality_gate({"ndcg@10": 0.05}, current, "ndcg@10", {"ndcg@10": 0.1})
    assert promote is False
    assert reason == "ndcg@10 0.05000 < 0.10000 of version v1's configuration: keeping v1"


@pytest.mark.slow
def test_worse_candidate_is_not_promoted_and_the_current_model_keeps_serving(
    settings: Settings, tiny_raw_dir: Path
) -> None:
    ctx = RunContext(settings, datetime.fromisoformat(MOMENT))
    load_raw_data(ctx.engine, tiny_raw_dir)
    prepare_dataset(ctx)
    first = train_als_model(ctx)
    assert first["promoted"] is True
    in_service = ctx.registry.current(ALS_MODEL)
    assert in_service is not None and in_service.version == first["version"]

    worse = _train_with_gate(ctx, ALS_MODEL, EmptyModel).summary
    assert worse["promoted"] is False
    assert worse["ndcg@10"] == 0.0
    assert worse["reason"].endswith(f"keeping {first['version']}")
    assert ctx.registry.current(ALS_MODEL) == in_service
    assert ctx.registry.versions(ALS_MODEL) == [first["version"]]  # the rejected candidate is not saved
    served = prepare_personalized_recommendations(ctx)
    assert served["model_version"] == first["version"]
    assert served["personalized_recommendations"]["rows"] > 0

    # A model in service that no longer loads (here: a file lost) is replaced, and the reason says why.
    ctx.store.delete(f"models/{ALS_MODEL}/{first['version']}/state.npz")
    replaced = train_als_model(ctx)
    assert replaced["promoted"] is True
    assert replaced["reason"].startswith(f"the model in service (version {first['version']}) cannot")
    current = ctx.registry.current(ALS_MODEL)
    assert current is not None and current.version == replaced["version"]
    ctx.engine.dispose()


@pytest.mark.slow
def test_a_backfill_trains_and_saves_but_does_not_replace_a_newer_model(
    settings: Settings, tiny_raw_dir: Path
) -> None:
    ctx = RunContext(settings, datetime.fromisoformat(MOMENT))
    load_raw_data(ctx.engine, tiny_raw_dir)
    prepare_dataset(ctx)
    served = train_als_model(ctx)
    backfill = RunContext(settings, ctx.moment - timedelta(days=3))
    # DAG 1 of the older date keeps the newer prepared tables.
    assert prepare_dataset(backfill)["skipped"].endswith(
        "(ask explicitly to rebuild them for an older moment)"
    )

    older = train_als_model(backfill)
    assert older["promoted"] is False
    assert older["reason"].endswith("kept unserved: the model in service is of a later moment")
    assert ctx.registry.current(ALS_MODEL).version == served["version"]  # type: ignore[union-attr]
    assert ctx.registry.versions(ALS_MODEL) == sorted([served["version"], older["version"]])

    forced = train_als_model(RunContext(settings, backfill.moment, promote_backfill=True))
    assert forced["promoted"] is True
    assert ctx.registry.current(ALS_MODEL).version == forced["version"]  # type: ignore[union-attr]
    ctx.engine.dispose()


@pytest.mark.slow
def test_a_same_moment_rerun_can_promote_a_better_candidate(settings: Settings, tiny_raw_dir: Path) -> None:
    """The model in service is judged by its configuration fitted on the candidate's training
    days, not by itself on validation days it was trained on."""
    ctx = RunContext(settings, datetime.fromisoformat(MOMENT))
    load_raw_data(ctx.engine, tiny_raw_dir)
    prepare_dataset(ctx)
    assert _train_with_gate(ctx, ALS_MODEL, Memorizer).summary["promoted"] is True
    data = ctx.window
    split = time_split(data.interactions.drop(columns=["user_code", "item_code"]), settings.validation_days)
    train = InteractionData.build(split.train, data.items.reset_index(), now=split.test_start)
    _, in_service = ctx.registry.load_current(ALS_MODEL)

    def ndcg(model: Recommender) -> float:
        return float(
            evaluate(model.recommend(split.test_users, train, 10), split).loc["all", SELECTION_METRIC]
        )

    refit = ndcg(Memorizer().fit(train))
    # The trap the gate avoids: the model in service on days it memorised beats any honest model.
    assert ndcg(in_service) > 10 * max(refit, 0.01)

    better = _train_with_gate(ctx, ALS_MODEL, ALSModel).summary
    assert better["current_ndcg@10"] == pytest.approx(refit)
    assert better["ndcg@10"] > refit
    assert better["promoted"] is True
    assert better["reason"].endswith("'s configuration")
    current = ctx.registry.current(ALS_MODEL)
    assert current is not None and current.version == better["version"]
    # The same configuration again: as good as itself, so the newer fit is promoted.
    again = _train_with_gate(ctx, ALS_MODEL, ALSModel).summary
    assert again["promoted"] is True
    assert again["current_ndcg@10"] == again["ndcg@10"]
    ctx.engine.dispose()
