"""Time splits and rolling-origin folds: windows, leakage, segments and pooled evaluation."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from recsys.evaluation.offline import evaluate, evaluate_folds, time_folds, time_split

START = pd.Timestamp("2015-05-03 03:00")


def interactions(days: int = 60, n: int = 6000, seed: int = 0) -> pd.DataFrame:
    """Random views, carts and purchases of 300 users and 80 items over ``days`` days."""
    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.uniform(0, days * 86_400, n))
    return pd.DataFrame(
        {
            "user_id": rng.integers(0, 300, n),
            "item_id": rng.integers(0, 80, n),
            "event": rng.choice(["view", "addtocart", "transaction"], n, p=[0.8, 0.15, 0.05]),
            "datetime": (START + pd.to_timedelta(seconds, unit="s")).astype("datetime64[us]"),
        }
    )


def reco_for(users: np.ndarray, seed: int) -> pd.DataFrame:
    """Ten random items per user (some users get none)."""
    rng = np.random.default_rng(seed)
    served = users[rng.random(users.size) < 0.9]
    items = np.argsort(rng.random((served.size, 80)), axis=1)[:, :10]
    return pd.DataFrame(
        {
            "user_id": np.repeat(served, 10),
            "item_id": items.ravel(),
            "rank": np.tile(np.arange(1, 11), served.size),
        }
    )


def test_folds_tile_the_end_of_the_data_without_overlap_or_leakage() -> None:
    frame = interactions()
    last = frame["datetime"].max()
    folds = time_folds(frame, n_folds=4, test_days=7)

    assert len(folds) == 4
    for number, fold in enumerate(folds):
        later = 4 - number - 1
        assert fold.test_start == last - pd.Timedelta(days=7 * (later + 1))
        assert fold.test_end - fold.test_start <= pd.Timedelta(days=7, microseconds=1)
        # Train precedes test, and the train is everything before the test window.
        assert fold.train["datetime"].max() < fold.test_start <= fold.test["datetime"].min()
        assert fold.test["datetime"].max() < fold.test_end
        assert fold.train.index.equals(frame.index[frame["datetime"] < fold.test_start])
        # No test event of the fold (nor any later event) is in its training window.
        assert fold.train.index.intersection(fold.test.index).empty
        assert not (frame.loc[fold.train.index, "datetime"] >= fold.test_start).any()
        # Segments count the fold's own training events.
        counts = fold.train.groupby("user_id").size().reindex(fold.segments.index, fill_value=0)
        assert ((counts == 0) == (fold.segments == "cold")).all()
        assert set(fold.relevant["user_id"]) == set(fold.segments.index)
    for earlier, later_fold in itertools.pairwise(folds):
        assert earlier.test_end == later_fold.test_start  # consecutive, not overlapping
        assert earlier.test.index.intersection(later_fold.test.index).empty
        assert earlier.test.index.isin(later_fold.train.index).all()  # expanding window
    # The test windows together are exactly the last 28 days.
    held_out = np.concatenate([fold.test.index.to_numpy() for fold in folds])
    assert np.array_equal(np.sort(held_out), frame.index[frame["datetime"] >= folds[0].test_start])


def test_one_fold_is_the_single_split() -> None:
    frame = interactions()
    (fold,) = time_folds(frame, n_folds=1, test_days=10)
    split = time_split(frame, test_days=10)
    assert fold.test_start == split.test_start
    assert fold.train.index.equals(split.train.index)
    assert fold.test.index.equals(split.test.index)
    assert fold.test["datetime"].max() == frame["datetime"].max()  # the last event is tested
    pd.testing.assert_series_equal(fold.segments, split.segments)


def test_folds_reject_bad_counts_and_windows_without_training_data() -> None:
    frame = interactions(days=30)
    with pytest.raises(ValueError, match="at least 1"):
        time_folds(frame, n_folds=0, test_days=7)
    with pytest.raises(ValueError, match="training window"):
        time_folds(frame, n_folds=5, test_days=7)


def test_pooled_evaluation_stacks_users_of_all_folds() -> None:
    frame = interactions()
    folds = time_folds(frame, n_folds=3, test_days=7)
    recos = [reco_for(fold.test_users, seed) for seed, fold in enumerate(folds)]

    single, per_user = evaluate_folds(recos[-1:], folds[-1:])
    pd.testing.assert_frame_equal(single, evaluate(recos[-1], folds[-1]))
    assert len(per_user) == len(folds[-1].test_users)

    pooled, per_user = evaluate_folds(recos, folds)
    tables = [evaluate(reco, fold) for reco, fold in zip(recos, folds, strict=True)]
    sizes = np.array([table["n_users"] for table in tables])  # folds × segments
    assert pooled["n_users"].tolist() == sizes.sum(axis=0).tolist()
    assert len(per_user) == sum(len(fold.test_users) for fold in folds)
    assert per_user.groupby("fold").size().tolist() == [len(fold.test_users) for fold in folds]
    for metric in ("ndcg@10", "recall@10", "user_coverage@10"):
        weighted = sum(t[metric] * t["n_users"] for t in tables) / pooled["n_users"]
        np.testing.assert_allclose(pooled[metric], weighted.fillna(0.0), err_msg=metric)
    np.testing.assert_allclose(
        pooled["item_coverage@10"], np.mean([t["item_coverage@10"] for t in tables], axis=0)
    )
    # A user who is a test user of two folds is counted twice.
    repeated = per_user["user_id"].value_counts()
    assert (repeated > 1).any()
