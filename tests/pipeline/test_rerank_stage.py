"""Stage 7 chooses the re-ranking strength on the validation days and publishes re-ranked lists."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from recsys.config import Settings
from recsys.data.loader import load_raw_data
from recsys.evaluation.operating_point import STRENGTHS
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
    tmp_path: Path, tiny_raw_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")
    ctx = RunContext(settings, datetime.fromisoformat(MOMENT))
    load_raw_data(ctx.engine, tiny_raw_dir)
    prepare_dataset(ctx)
    summary = train_ranking_model_and_rank_recommendations(ctx)

    chosen = summary["rerank"]
    assert chosen["tuned"] is True
    assert chosen["strength"] in STRENGTHS
    version, ranker = ctx.registry.load_current(RANKER_MODEL)
    assert isinstance(ranker, TwoStageModel)
    record = ctx.registry.load_record(RANKER_MODEL, version.version, RERANK_RECORD)
    assert record is not None and record["strength"] == chosen["strength"]
    assert [point["strength"] for point in record["curve"]] == list(STRENGTHS)

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
