"""Behaviour specific to each model, on the clustered window of conftest.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.models.als import ALSConfig, ALSModel
from recsys.models.dataset import InteractionData
from recsys.models.i2i import ItemToItemModel, recent_items, score_from_recent_items, user_histories
from recsys.models.itemknn import ItemKNNModel
from recsys.models.popular import PopularConfig, PopularModel
from recsys.models.ranker import CatBoostConfig, TwoStageConfig, TwoStageModel
from recsys.models.similar import (
    covisitation_similar_items,
    items_short_of,
    merge_similar_items,
    top_n_per_row,
)
from tests.models.conftest import N_CLUSTERS, N_ITEMS

PER_CLUSTER = N_ITEMS // N_CLUSTERS


def cluster(item_ids: pd.Series | np.ndarray) -> np.ndarray:
    return (np.asarray(item_ids) - 1000) // PER_CLUSTER


def user_clusters(window: InteractionData) -> pd.Series:
    return (
        window.interactions.assign(c=cluster(window.interactions["item_id"])).groupby("user_id")["c"].first()
    )


def frame(rows: list[tuple[int, int, str, str]]) -> pd.DataFrame:
    data = pd.DataFrame(rows, columns=["user_id", "item_id", "event", "datetime"])
    data["datetime"] = pd.to_datetime(data["datetime"])
    data["weight"] = data["event"].map({"view": 1.0, "addtocart": 4.0, "transaction": 8.0})
    data["session_index"] = 0
    return data


def catalogue(ids: list[int]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item_id": ids,
            "available": pd.array([True] * len(ids), dtype="boolean"),
            "root_category_id": pd.array([i % 2 for i in ids], dtype="Int64"),
        }
    )


def test_popularity_decays_with_time() -> None:
    # Item 1: three views 30 days ago; item 2: one view yesterday.
    rows = [(u, 1, "view", "2015-06-01") for u in (1, 2, 3)] + [(4, 2, "view", "2015-06-30")]
    data = InteractionData.build(frame(rows), catalogue([1, 2]), now=pd.Timestamp("2015-07-01"))
    decayed = PopularModel(PopularConfig(half_life_days=7)).fit(data).ranking(data)
    plain = PopularModel(PopularConfig(half_life_days=None)).fit(data).ranking(data)
    assert decayed["item_id"].tolist() == [2, 1]
    assert plain["item_id"].tolist() == [1, 2]
    assert plain["score"].tolist() == [3.0, 1.0]


def test_popularity_weights_events_and_interleaves_categories() -> None:
    rows = [
        (1, 10, "view", "2015-06-01"),
        (2, 10, "view", "2015-06-01"),
        (3, 12, "view", "2015-06-01"),
        (1, 11, "transaction", "2015-06-01"),
        (4, 13, "view", "2015-06-01"),
    ]
    data = InteractionData.build(frame(rows), catalogue([10, 11, 12, 13]))
    ranked = PopularModel(PopularConfig(half_life_days=None)).fit(data).ranking(data)
    assert ranked["item_id"].tolist() == [11, 10, 12, 13]  # a purchase weighs 8 views


def test_popularity_per_category_interleaves_root_categories() -> None:
    # Root 0 (even ids) holds the three most popular items; root 1 has item 11.
    rows = [
        (u, item, "view", "2015-06-01")
        for item, users in ((10, 3), (12, 2), (14, 2), (11, 1))
        for u in range(users)
    ]
    data = InteractionData.build(frame(rows), catalogue([10, 11, 12, 14]))
    plain = PopularModel(PopularConfig(half_life_days=None)).fit(data).ranking(data)
    assert plain["item_id"].tolist() == [10, 12, 14, 11]
    mixed = PopularModel(PopularConfig(half_life_days=None, per_category=True)).fit(data).ranking(data)
    assert mixed["item_id"].tolist() == [10, 11, 12, 14]  # the best of each root first
    assert mixed["rank"].tolist() == [1, 2, 3, 4]


def test_als_learns_the_planted_clusters(window: InteractionData) -> None:
    model = ALSModel(ALSConfig(factors=16, iterations=10)).fit(window)
    recs = model.recommend(window.users.ids, window, k=5)
    same = cluster(recs["item_id"]) == recs["user_id"].map(user_clusters(window)).to_numpy()
    assert same.mean() > 0.9
    similar = model.similar_items(np.array([1000, 1050]), n=5)
    assert (cluster(similar["similar_item_id"]) == cluster(similar["item_id"])).mean() > 0.8
    assert not (similar["item_id"] == similar["similar_item_id"]).any()


def test_als_folds_in_a_user_unknown_at_training(window: InteractionData) -> None:
    model = ALSModel(ALSConfig(factors=16, iterations=10)).fit(window)
    newcomer = frame(
        [
            (99_999, 1000, "view", "2015-07-01"),
            (99_999, 1001, "view", "2015-07-01"),
            (99_999, 1002, "addtocart", "2015-07-01"),
        ]
    )
    now = InteractionData.build(
        pd.concat([window.interactions.iloc[:, :6], newcomer]), window.items.reset_index()
    )
    recs = model.recommend([99_999, 123_456], now, k=10)
    assert set(recs["user_id"]) == {99_999}  # 123456 has no history anywhere: the caller falls back
    assert (cluster(recs["item_id"]) == 0).mean() > 0.8


def test_covisitation_pairs_items_seen_in_the_same_session() -> None:
    rows = [
        (1, 1, "view", "2015-06-01 10:00"),
        (1, 2, "view", "2015-06-01 10:05"),
        (2, 1, "view", "2015-06-01 11:00"),
        (2, 2, "view", "2015-06-01 11:01"),
        (2, 3, "view", "2015-06-01 11:02"),
        (3, 4, "view", "2015-06-01 12:00"),
    ]
    data = InteractionData.build(frame(rows), catalogue([1, 2, 3, 4]))
    similar = covisitation_similar_items(data, n=5)
    of_1 = similar[similar["item_id"] == 1]
    assert of_1["similar_item_id"].tolist() == [2, 3]
    assert np.isclose(of_1["score"].iloc[0], 2 / np.sqrt(2 * 2))
    assert 4 not in set(similar["item_id"])


def test_bot_sessions_are_ignored_by_covisitation() -> None:
    rows = [(1, item, "view", "2015-06-01 10:00") for item in range(1, 8)]
    data = InteractionData.build(frame(rows), catalogue(list(range(1, 8))))
    assert covisitation_similar_items(data, n=5, max_session_items=5).empty


def test_top_n_per_row_keeps_the_largest() -> None:
    import scipy.sparse as sp

    matrix = sp.csr_matrix(np.array([[0, 3, 1, 2], [5, 0, 0, 0], [0, 0, 0, 0]], dtype=np.float32))
    rows, cols, values = top_n_per_row(matrix, 2)
    assert rows.tolist() == [0, 0, 1]
    assert cols.tolist() == [1, 3, 0]
    assert values.tolist() == [3, 2, 5]


def test_merged_similar_items_fill_from_the_fallback() -> None:
    primary = pd.DataFrame({"item_id": [1], "similar_item_id": [2], "score": [0.9], "rank": [1]})
    fallback = pd.DataFrame(
        {"item_id": [1, 1, 1], "similar_item_id": [2, 3, 4], "score": [0.5, 0.4, 0.3], "rank": [1, 2, 3]}
    )
    merged = merge_similar_items(primary, fallback, n=2)
    assert merged["similar_item_id"].tolist() == [2, 3]
    assert merged["source"].tolist() == ["covisitation", "als"]


def test_fallback_for_the_short_lists_only_merges_to_the_same_lists(window: InteractionData) -> None:
    n = 8
    covisited = covisitation_similar_items(window, n)
    # Every item of the clustered window has 19 co-visited items: cut half the lists short.
    covisited = covisited[(covisited["item_id"] % 2 == 0) | (covisited["rank"] <= 3)]
    als = ALSModel(ALSConfig(factors=16, iterations=5)).fit(window)
    every_item = window.item_codes.ids
    short = items_short_of(covisited, every_item, n)
    lengths = covisited["item_id"].value_counts().reindex(every_item, fill_value=0)
    assert 0 < short.size < every_item.size  # both kinds present, so the check below means something
    assert set(short) == set(lengths.index[lengths < n])
    merged_all = merge_similar_items(covisited, als.similar_items(every_item, n), n)
    merged_short = merge_similar_items(covisited, als.similar_items(short, n), n)
    pd.testing.assert_frame_equal(merged_short.reset_index(drop=True), merged_all.reset_index(drop=True))


def test_als_similar_items_of_no_item_is_an_empty_frame(window: InteractionData) -> None:
    als = ALSModel(ALSConfig(factors=8, iterations=2)).fit(window)
    assert als.similar_items(np.empty(0, dtype=np.int64), 5).empty
    assert als.similar_items(np.array([-5]), 5).empty  # unknown items have no neighbours


def test_i2i_votes_favour_recent_items() -> None:
    recent = pd.DataFrame({"user_id": [1, 1], "item_id": [10, 20], "position": [0, 3]})
    similar = pd.DataFrame(
        {"item_id": [10, 20, 20], "similar_item_id": [11, 21, 10], "score": [0.5, 0.9, 0.9]}
    )
    scored = score_from_recent_items(recent, similar, recency_half_life=3.0).set_index("item_id")["score"]
    assert scored.index.tolist() == [11, 21]  # 10 is a recent item itself
    assert np.isclose(scored[11], 0.5)
    assert np.isclose(scored[21], 0.45)


def test_recent_items_are_distinct_and_newest_first() -> None:
    history = frame(
        [(1, 5, "view", "2015-06-01"), (1, 6, "view", "2015-06-02"), (1, 5, "view", "2015-06-03")]
    )
    assert recent_items(history, 5)["item_id"].tolist() == [5, 6]


def test_user_histories_hold_the_latest_items_then_earlier_purchases() -> None:
    rows = [
        (1, 7, "transaction", "2015-06-01 09:00"),
        (1, 1, "view", "2015-06-01 10:00"),
        (1, 2, "view", "2015-06-01 10:01"),
        (1, 1, "addtocart", "2015-06-01 10:02"),
        (1, 3, "transaction", "2015-06-01 10:03"),
        (2, 4, "view", "2015-06-01 11:00"),
    ]
    data = InteractionData.build(frame(rows), catalogue([1, 2, 3, 4, 7]))
    histories = user_histories(data, n_recent=3)
    assert histories.to_dict("list") == {
        "user_id": [1, 1, 1, 1, 2],
        # Newest distinct items first (1's latest event is the add-to-cart), then item 7, bought before.
        "item_id": [3, 1, 2, 7, 4],
        "score": [8.0, 5.0, 1.0, 8.0, 1.0],
        "rank": [1, 2, 3, 4, 1],
        "relation": ["bought", "seen", "seen", "bought", "seen"],
    }
    first_rows = histories[histories["rank"] <= 3][["user_id", "item_id"]]
    pd.testing.assert_frame_equal(
        first_rows.reset_index(drop=True),
        recent_items(data.interactions, 3)[["user_id", "item_id"]]
        .sort_values(["user_id"], kind="stable")
        .reset_index(drop=True),
    )


def test_i2i_recommends_within_the_cluster(window: InteractionData) -> None:
    recs = ItemToItemModel().fit(window).recommend(window.users.ids, window, k=5)
    same = cluster(recs["item_id"]) == recs["user_id"].map(user_clusters(window)).to_numpy()
    assert same.mean() > 0.9


def test_itemknn_scores_are_weighted_votes_of_the_users_items() -> None:
    # Items 1 and 2 share users 10 and 11; item 3 is only user 12's, with item 1.
    rows = [(10, 1, "view", "2015-06-01"), (10, 2, "view", "2015-06-01"), (11, 1, "view", "2015-06-02")]
    rows += [(11, 2, "view", "2015-06-02"), (12, 1, "view", "2015-06-03"), (12, 3, "view", "2015-06-03")]
    rows += [(13, 2, "view", "2015-06-04")]
    window = InteractionData.build(frame(rows), catalogue([1, 2, 3]))
    model = ItemKNNModel().fit(window)
    recs = model.recommend([13, 12], window, k=3)
    # User 13 viewed item 2: item 2 itself (cosine 1), then item 1 (2 shared users of 3 and 3).
    user_13 = recs[recs["user_id"] == 13]
    assert user_13["item_id"].tolist() == [2, 1]
    assert np.allclose(user_13["score"], [1.0, 2 / 3])
    # User 12's items 1 and 3 vote for themselves and each other (1 shared user of 3 and 1),
    # and item 1 votes for item 2.
    user_12 = recs[recs["user_id"] == 12].set_index("item_id")["score"]
    assert np.allclose(user_12.loc[[1, 3, 2]], [1 + 1 / np.sqrt(3), 1 + 1 / np.sqrt(3), 2 / 3])


def test_itemknn_filters_bought_and_unavailable_items() -> None:
    rows = [(10, 1, "view", "2015-06-01"), (10, 2, "view", "2015-06-01"), (10, 3, "view", "2015-06-01")]
    rows += [
        (11, 1, "transaction", "2015-06-02"),
        (11, 2, "view", "2015-06-02"),
        (11, 3, "view", "2015-06-02"),
    ]
    items = catalogue([1, 2, 3]).assign(available=[True, True, False])
    window = InteractionData.build(frame(rows), items)
    recs = ItemKNNModel().fit(window).recommend([11], window, k=3)
    assert recs["item_id"].tolist() == [2]


def test_two_stage_needs_a_candidate_source_and_drops_the_features_of_switched_off_ones(
    window: InteractionData,
) -> None:
    with pytest.raises(ValueError, match="every candidate source is switched off"):
        TwoStageConfig(n_als=0, n_knn=0, n_i2i=0, n_popular=0, n_history=0)
    model = TwoStageModel(TwoStageConfig(n_knn=0, label_days=7, ranker=CatBoostConfig(iterations=20)))
    model.fit(window)
    assert "als_score" in model.feature_names
    assert not any(name.startswith("knn_") for name in model.feature_names)


def test_two_stage_reports_candidate_recall_and_trains_on_the_past(window: InteractionData) -> None:
    model = TwoStageModel(
        TwoStageConfig(label_days=7, label_windows=2, ranker=CatBoostConfig(iterations=30))
    ).fit(window)
    report = model.training_report
    assert 0 < report["candidate_recall"] <= 1
    assert report["train_groups"] > 10
    # The serving candidate models were refitted on the whole window.
    assert model.als.trained_until == window.now
    assert set(model.feature_names) >= {
        "als_score",
        "knn_score",
        "i2i_score",
        "popular_rank",
        "history_rank",
        "price",
        "category_share",
        "root_days_since",
        "item_trend",
    }


def test_two_stage_batches_are_its_recommendations_in_parts(window: InteractionData) -> None:
    config = TwoStageConfig(
        label_days=7, label_windows=2, users_per_batch=7, ranker=CatBoostConfig(iterations=20)
    )
    model = TwoStageModel(config).fit(window)
    users = np.concatenate([window.users.ids[:30], [99_999_999]])  # one without history: popular items
    batches = list(model.recommend_batches(users, window, 5))
    assert len(batches) == 1 + 5  # the user without history, then 30 users in batches of 7
    assert all(batch["user_id"].nunique() <= 7 for batch in batches)
    pd.testing.assert_frame_equal(pd.concat(batches, ignore_index=True), model.recommend(users, window, 5))


def test_two_stage_learns_from_a_sample_of_the_users_who_only_viewed(window: InteractionData) -> None:
    def report(**options: float) -> dict[str, float]:
        ranker = CatBoostConfig(iterations=30)
        config = TwoStageConfig(label_days=7, label_windows=2, ranker=ranker, **options)
        return TwoStageModel(config).fit(window).training_report

    without_views = report(view_label=0.0)
    with_views = report(view_label=0.2, view_only_users_per_relevant=4)
    none_sampled = report(view_label=0.2, view_only_users_per_relevant=0)
    assert without_views["train_groups"] == without_views["relevant_groups"]
    # Users with a cart or purchase whose candidates hold only viewed items join as groups ...
    assert none_sampled["train_groups"] > none_sampled["relevant_groups"]
    # ... and users who only viewed join as a sample, at most four per user with a cart or purchase
    # (there are at most as many such users as cart/purchase pairs) ...
    view_only = with_views["train_groups"] - none_sampled["train_groups"]
    assert 0 < view_only <= 4 * with_views["label_pairs"]
    # ... and never more than the absolute bound per label window (two windows here).
    bounded = report(view_label=0.2, view_only_users_per_relevant=4, max_view_only_users=3)
    assert 0 < bounded["train_groups"] - none_sampled["train_groups"] <= 2 * 3
    # ... and change neither the users with a cart or purchase nor the recall of their pairs.
    for name in ("relevant_groups", "label_pairs", "candidate_recall"):
        assert with_views[name] == without_views[name] == none_sampled[name]


def test_two_stage_trains_on_at_most_its_row_budget_keeping_users_with_a_cart_first(
    window: InteractionData,
) -> None:
    def report(max_train_rows: int) -> dict[str, float]:
        config = TwoStageConfig(
            label_days=7,
            label_windows=2,
            users_per_batch=5,
            view_only_users_per_relevant=4,
            max_train_rows=max_train_rows,
            ranker=CatBoostConfig(iterations=20),
        )
        return TwoStageModel(config).fit(window).training_report

    unbounded = report(10**9)
    assert unbounded["sampled_out_users"] == 0
    rows_per_group = unbounded["train_rows"] / unbounded["train_groups"]
    # A budget that holds the users with a cart or purchase but not all the users who only viewed.
    budget = int((unbounded["relevant_groups"] + unbounded["train_groups"]) / 2 * rows_per_group)
    bounded = report(budget)
    assert bounded["train_rows"] <= budget < unbounded["train_rows"]
    assert bounded["sampled_out_users"] > 0
    assert bounded["relevant_groups"] == unbounded["relevant_groups"]
    assert bounded["train_groups"] < unbounded["train_groups"]
    # A budget below the users with a cart: a sample of them, whose label pairs alone are counted.
    tight = report(int(unbounded["relevant_groups"] / 2 * rows_per_group))
    assert 0 < tight["relevant_groups"] < unbounded["relevant_groups"]
    assert tight["label_pairs"] < unbounded["label_pairs"]
    assert 0 < tight["candidate_recall"] <= 1


def test_two_stage_trains_on_users_with_history_and_picks_its_trees_on_the_newest_window(
    clustered: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    interactions, items = clustered
    # Twenty users first seen in the last days, putting the most popular item in their cart.
    newcomers = pd.DataFrame(
        {
            "user_id": np.arange(10_000, 10_020, dtype=np.int64),
            "item_id": interactions["item_id"].value_counts().index[0],
            "event": "addtocart",
            "weight": 4.0,
            "datetime": interactions["datetime"].max() - pd.Timedelta(days=1),
            "session_index": 0,
        }
    )
    window = InteractionData.build(
        pd.concat([interactions, newcomers], ignore_index=True).sort_values("datetime", ignore_index=True),
        items,
    )

    def fitted(**options: bool) -> TwoStageModel:
        config = TwoStageConfig(
            label_days=7, label_windows=2, ranker=CatBoostConfig(iterations=200), **options
        )
        return TwoStageModel(config).fit(window)

    chosen = fitted()
    report = chosen.training_report
    # The number of trees was validated on the newest window (at most the configured number).
    assert 1 <= report["iterations"] <= 200
    assert chosen.ranker is not None and chosen.ranker.tree_count_ == report["iterations"]
    assert 0 <= report["validation_ndcg"] <= 1
    fixed = fitted(early_stopping=False, train_cold_users=True)
    assert fixed.training_report["iterations"] == 200
    assert np.isnan(fixed.training_report["validation_ndcg"])
    # The newcomers (no history before their label window) are trained on only when asked.
    assert fixed.training_report["train_groups"] == report["train_groups"] + 20
