"""On the small twin's planted structure the two-stage ranker beats ALS for users with history."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from recsys.config import EventWeights
from recsys.data.loader import load_raw_data
from recsys.data.prepare import prepare_datasets
from recsys.data.readers import read_interactions, read_items
from recsys.data.synthetic import generate_twin
from recsys.evaluation.offline import evaluate, time_split
from recsys.models.als import ALSModel
from recsys.models.dataset import InteractionData
from recsys.models.popular import PopularModel
from recsys.models.ranker import TwoStageModel
from recsys.storage.database import create_db_engine


@pytest.mark.slow
def test_two_stage_beats_als_for_users_with_history_and_popular_for_cold(tmp_path: Path) -> None:
    generate_twin(tmp_path / "raw", scale="small")
    engine = create_db_engine(f"sqlite:///{tmp_path / 'twin.sqlite3'}")
    load_raw_data(engine, tmp_path / "raw")
    prepare_datasets(engine, EventWeights())
    # A long test window: the small twin has few returning buyers per week.
    split = time_split(read_interactions(engine), test_days=28)
    data = InteractionData.build(split.train, read_items(engine), now=split.test_start)

    def scores(model: ALSModel | TwoStageModel | PopularModel) -> pd.DataFrame:
        recs = model.fit(data).recommend(split.test_users, data, 10)
        return evaluate(recs, split)

    two_stage, als, popular = scores(TwoStageModel()), scores(ALSModel()), scores(PopularModel())
    with_history = split.segments[split.segments != "cold"]
    assert len(with_history) >= 30
    weights = with_history.value_counts()
    for metric in ("ndcg@10", "recall@10"):

        def pooled(table: pd.DataFrame, m: str = metric) -> float:
            return sum(table.loc[seg, m] * n for seg, n in weights.items()) / weights.sum()

        assert pooled(two_stage) > pooled(als), metric
        assert two_stage.loc["cold", metric] >= popular.loc["cold", metric]
    assert two_stage.loc["all", "user_coverage@10"] == 1.0
