"""The contract every recommender keeps: output shape, filtering, save/load, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.models.als import ALSConfig, ALSModel
from recsys.models.base import ModelError, Recommender
from recsys.models.dataset import InteractionData
from recsys.models.i2i import ItemToItemModel
from recsys.models.itemknn import ItemKNNModel
from recsys.models.popular import PopularConfig, PopularModel
from recsys.models.ranker import CatBoostConfig, TwoStageConfig, TwoStageModel
from recsys.models.sknn import STANModel, VSKNNModel
from recsys.storage.object_store import LocalObjectStore, ObjectStore

FAST_TWO_STAGE = TwoStageConfig(
    label_days=7, ranker=CatBoostConfig(iterations=30), als=ALSConfig(iterations=5)
)


def all_models() -> list[Recommender]:
    return [
        PopularModel(),
        PopularModel(PopularConfig(per_category=True, half_life_days=None)),
        ALSModel(ALSConfig(factors=16, iterations=5)),
        ItemToItemModel(),
        ItemKNNModel(),
        TwoStageModel(FAST_TWO_STAGE),
        VSKNNModel(),
        STANModel(),
    ]


@pytest.fixture(params=all_models(), ids=lambda m: f"{m.kind}")
def model(request: pytest.FixtureRequest) -> Recommender:
    fresh: Recommender = type(request.param).from_config(request.param.config)
    return fresh


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return LocalObjectStore(tmp_path / "store")


def assert_well_formed(recs: pd.DataFrame, k: int) -> None:
    assert list(recs.columns) == ["user_id", "item_id", "score", "rank"]
    assert not recs.duplicated(["user_id", "item_id"]).any()
    per_user = recs.groupby("user_id")
    assert (per_user.size() <= k).all()
    for _, group in per_user:
        assert group["rank"].tolist() == list(range(1, len(group) + 1))
        assert group["score"].is_monotonic_decreasing


def test_recommendations_are_well_formed_and_filtered(model: Recommender, window: InteractionData) -> None:
    users = window.users.ids[:50]
    recs = model.fit(window).recommend(users, window, k=10)

    assert_well_formed(recs, 10)
    assert set(recs["user_id"]) <= set(users)
    assert recs["user_id"].nunique() >= 40
    bought = window.interactions.loc[window.interactions["event"] == "transaction", ["user_id", "item_id"]]
    assert recs.merge(bought, on=["user_id", "item_id"]).empty
    assert not window.is_unavailable(recs["item_id"]).any()


def test_save_load_round_trip_gives_the_same_recommendations(
    model: Recommender, window: InteractionData, store: ObjectStore
) -> None:
    users = window.users.ids[:30]
    recs = model.fit(window).recommend(users, window, k=5)
    model.save(store, "models/x")

    loaded = Recommender.load(store, "models/x")
    assert type(loaded) is type(model)
    assert loaded.config == model.config
    pd.testing.assert_frame_equal(loaded.recommend(users, window, k=5), recs)


def test_missing_and_corrupt_models_give_clear_errors(
    model: Recommender, window: InteractionData, store: ObjectStore
) -> None:
    with pytest.raises(ModelError, match=r"no model at .*models/x/model.json: train it first"):
        Recommender.load(store, "models/x")
    model.fit(window).save(store, "models/x")
    store.put_bytes("models/x/state.npz", b"not a zip file")
    with pytest.raises(ModelError, match=r"corrupt model files under .*models/x"):
        Recommender.load(store, "models/x")
    store.put_bytes("models/x/model.json", b"{broken")
    with pytest.raises(ModelError, match="corrupt model description"):
        Recommender.load(store, "models/x")


def test_loading_a_model_of_another_kind_is_refused(window: InteractionData, store: ObjectStore) -> None:
    PopularModel().fit(window).save(store, "models/popular")
    with pytest.raises(ModelError, match="holds a model of kind 'popular', not a ALSModel"):
        ALSModel.load(store, "models/popular")


def test_unfitted_model_and_bad_k_are_refused(model: Recommender, window: InteractionData) -> None:
    with pytest.raises(ModelError, match="is not fitted"):
        model.recommend([1], window, k=5)
    with pytest.raises(ValueError, match="k must be at least 1"):
        model.fit(window).recommend([1], window, k=0)


def test_all_items_unavailable_is_an_error_not_an_empty_answer(
    model: Recommender, window: InteractionData
) -> None:
    model.fit(window)
    items = window.items.copy()
    items["available"] = pd.array([False] * len(items), dtype="boolean")
    closed = InteractionData(window.interactions, items, window.users, window.item_codes, window.now)
    with pytest.raises(ValueError, match="are unavailable: nothing can be recommended"):
        model.recommend(window.users.ids[:5], closed, k=5)


def test_empty_training_window_is_refused(window: InteractionData) -> None:
    with pytest.raises(ValueError, match="the training window holds no interactions"):
        InteractionData.build(window.interactions.iloc[:0], window.items.reset_index())


def test_recommending_for_nobody_gives_an_empty_frame(model: Recommender, window: InteractionData) -> None:
    recs = model.fit(window).recommend(np.array([], dtype=np.int64), window, k=5)
    assert recs.empty
    assert list(recs.columns) == ["user_id", "item_id", "score", "rank"]
