"""Stage 7 chooses the re-ranking strength on the validation days and publishes re-ranked lists."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from recsys.config import Settings
from recsys.data.loader import load_raw_data
from recsys.evaluation.operating_point import STRENGTHS, tune_strength
from recsys.models.dataset import InteractionData
from recsys.models.ranker import TwoStageModel
from recsys.models.rerank import PopularityReRanker, ReRankConfig
from recsys.pipeline.stages import (
    RANKER_MODEL,
    RERANK_RECORD,
    RunContext,
    _choose_rerank_strength,
    _publish_reranked,
    prepare_dataset,
    train_ranking_model_and_rank_recommendations,
)
from recsys.publishing.catalogue import RANKED_RECOMMENDATIONS
from recsys.publishing.tables import read_published
from tests.pipeline.conftest import MOMENT


@pytest.mark.slow
def test_stage_publishes_lists_reranked_at_the_strength_chosen_on_validation(
    tmp_path: Path, tiny_raw_dir: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two tuning trials: the search is tested elsewhere, its 600-s budget would be most of this test.
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", tuning_max_trials=2)
    ctx = RunContext(settings, datetime.fromisoformat(MOMENT))
    load_raw_data(ctx.engine, tiny_raw_dir)
    prepare_dataset(ctx)
    fitted_until: list[pd.Timestamp] = []
    real_fit = TwoStageModel.fit

    def recording_fit(model: TwoStageModel, data: InteractionData) -> TwoStageModel:
        fitted_until.append(data.now)
        return real_fit(model, data)

    monkeypatch.setattr(TwoStageModel, "fit", recording_fit)
    summary = train_ranking_model_and_rank_recommendations(ctx)
    monkeypatch.undo()

    # The strength is chosen with the gate's candidate: one fit on the validation cut, not two.
    split, train = ctx.validation_split()
    assert summary["training"]["promoted"] is True
    assert fitted_until.count(train.now) == 1
    assert fitted_until.count(ctx.window.now) == 1

    chosen = summary["rerank"]
    assert chosen["tuned"] is True
    assert chosen["strength"] in STRENGTHS
    version, ranker = ctx.registry.load_current(RANKER_MODEL)
    assert isinstance(ranker, TwoStageModel)
    record = ctx.registry.load_record(RANKER_MODEL, version.version, RERANK_RECORD)
    assert record is not None and record["strength"] == chosen["strength"]
    assert [point["strength"] for point in record["curve"]] == list(STRENGTHS)
    refitted = tune_strength(ranker.config, split, train, settings.rerank_pool)
    assert refitted.strength == chosen["strength"]
    assert refitted.summary()["curve"] == record["curve"]

    # The published lists are the ranker's pools re-ranked at that strength.
    _, published = read_published(ctx.engine, RANKED_RECOMMENDATIONS.name)
    users = ctx.active_users()
    depth = ctx.depth(RANKED_RECOMMENDATIONS)
    assert published["user_id"].nunique() == users.size > 0
    reranker = PopularityReRanker(ReRankConfig(strength=chosen["strength"], pool=settings.rerank_pool))
    expected = reranker.fit(ctx.window).rerank(
        ranker.recommend(users, ctx.window, settings.rerank_pool), depth
    )
    columns = ["user_id", "item_id", "rank"]
    pd.testing.assert_frame_equal(
        published.sort_values(["user_id", "rank"], ignore_index=True)[columns],
        expected.sort_values(["user_id", "rank"], ignore_index=True)[columns],
        check_dtype=False,
    )

    # A shop too short to validate: a clear message, the untuned default, and a full table.
    short = RunContext(settings.model_copy(update={"validation_days": 400}), ctx.moment)
    with caplog.at_level("WARNING"):
        fallback = _choose_rerank_strength(short, ranker.config)
    assert fallback.tuned is False
    assert fallback.strength == ReRankConfig().strength
    assert "too little data to choose the re-ranking strength on the last 400 validation days" in caplog.text
    republished = _publish_reranked(short, ranker, fallback.strength)
    assert republished[RANKED_RECOMMENDATIONS.name]["users"] == users.size
    ctx.engine.dispose()
    short.engine.dispose()
