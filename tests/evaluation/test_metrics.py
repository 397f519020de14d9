"""Metrics: hand-checked values, and agreement with RecTools on random inputs."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.evaluation.metrics import (
    item_coverage,
    novelty_per_user,
    ranking_metrics_per_user,
    recommended_per_user,
    user_coverage,
)
from tests.conftest import unavailable

ROOT = Path(__file__).resolve().parents[2]
RECTOOLS_PYTHON = Path(os.environ.get("RECSYS_RECTOOLS_PYTHON", ROOT / ".venv-rectools" / "bin" / "python"))


def reco_frame(rows: dict[int, list[int]]) -> pd.DataFrame:
    return pd.DataFrame(
        [(user, item, rank) for user, items in rows.items() for rank, item in enumerate(items, start=1)],
        columns=["user_id", "item_id", "rank"],
    )


def pairs(rows: dict[int, list[int]]) -> pd.DataFrame:
    return pd.DataFrame([(u, i) for u, items in rows.items() for i in items], columns=["user_id", "item_id"])


def test_ranking_metrics_by_hand() -> None:
    reco = reco_frame({1: [10, 11, 12], 2: [20, 21, 22]})
    relevant = pairs({1: [11, 13], 2: [99], 3: [10]})  # user 3 got no recommendations
    metrics = ranking_metrics_per_user(reco, relevant, k=3)

    assert metrics.loc[1, "precision"] == pytest.approx(1 / 3)
    assert metrics.loc[1, "recall"] == pytest.approx(1 / 2)
    ideal = 1 + 1 / np.log2(3) + 1 / np.log2(4)
    assert metrics.loc[1, "ndcg"] == pytest.approx((1 / np.log2(3)) / ideal)
    assert metrics.loc[1, "map"] == pytest.approx((1 / 2) / 2)
    assert metrics.loc[2].tolist() == [0, 0, 0, 0]
    assert metrics.loc[3].tolist() == [0, 0, 0, 0]
    assert sorted(metrics.index) == [1, 2, 3]


def test_novelty_and_coverage_by_hand() -> None:
    train = pairs({1: [10, 11], 2: [10], 3: [10, 12]})  # 3 users; item 10 used by all, 11 by one
    reco = reco_frame({1: [10, 11], 2: [99]})
    novelty = novelty_per_user(reco, train, k=2)
    assert novelty.loc[1] == pytest.approx((0 + np.log2(3)) / 2)
    assert novelty.loc[2] == pytest.approx(np.log2(3))  # an unseen item counts as used by one user
    assert item_coverage(reco, k=2, catalogue_size=6) == pytest.approx(3 / 6)
    assert user_coverage(reco, np.array([1, 2, 3]), k=2) == pytest.approx(1 / 3)


def random_case(seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    users = np.arange(200)
    reco_rows = []
    for user in users[rng.random(users.size) < 0.8]:  # 20% of users get nothing
        n = rng.integers(1, 15)
        reco_rows += [(user, item, rank) for rank, item in enumerate(rng.choice(60, n, replace=False), 1)]
    reco = pd.DataFrame(reco_rows, columns=["user_id", "item_id", "rank"])
    relevant = pd.DataFrame({"user_id": rng.choice(users, 500), "item_id": rng.integers(0, 60, 500)})
    relevant = relevant.drop_duplicates().reset_index(drop=True)
    train = pd.DataFrame({"user_id": rng.choice(users, 2000), "item_id": rng.integers(0, 70, 2000)})
    return reco, relevant, train


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_agree_with_rectools(tmp_path: Path, seed: int) -> None:
    if not RECTOOLS_PYTHON.exists():
        unavailable(
            f"the RecTools environment is missing ({RECTOOLS_PYTHON}); `make venv-rectools` builds it"
        )
    reco, relevant, train = random_case(seed)
    for name, frame in (("reco", reco), ("relevant", relevant), ("train", train)):
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
    done = subprocess.run(
        [
            str(RECTOOLS_PYTHON),
            str(Path(__file__).with_name("rectools_reference.py")),
            str(tmp_path),
            "1",
            "5",
            "10",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    reference = json.loads(done.stdout)
    for k in (1, 5, 10):
        ours = ranking_metrics_per_user(reco, relevant, k)
        for metric in ("precision", "recall", "ndcg", "map"):
            theirs = pd.Series(reference[f"{metric}@{k}"]).rename(index=int).sort_index()
            np.testing.assert_allclose(
                ours[metric].sort_index().to_numpy(), theirs.to_numpy(), rtol=1e-9, err_msg=f"{metric}@{k}"
            )
            assert ours.index.sort_values().tolist() == theirs.index.tolist()
        novelty = novelty_per_user(reco, train, k)
        theirs = pd.Series(reference[f"novelty@{k}"]).rename(index=int).sort_index()
        np.testing.assert_allclose(novelty.sort_index().to_numpy(), theirs.to_numpy(), rtol=1e-9)

        # Item coverage is RecTools' CatalogCoverage(normalize=True) over the same catalogue.
        catalogue_size = train["item_id"].nunique()
        assert item_coverage(reco, k, catalogue_size) == pytest.approx(
            reference[f"item_coverage@{k}"], rel=1e-12
        )

        # User coverage counts a test user with a full top k: RecTools' CoveredUsers (a non-empty
        # top k, over the test users) and SufficientReco (a full top k, over the recommended users) both.
        test_users = relevant["user_id"].unique()
        covered = pd.Series(reference[f"covered_users@{k}"]).rename(index=int)
        sufficient = pd.Series(reference[f"sufficient_reco@{k}"]).rename(index=int)
        assert sorted(covered.index) == sorted(test_users)
        both = covered.reindex(test_users) * sufficient.reindex(test_users, fill_value=0)
        assert user_coverage(reco, test_users, k) == pytest.approx(both.mean(), rel=1e-12)
        served = recommended_per_user(reco, k) >= k
        pd.testing.assert_series_equal(
            served.astype(int).reindex(sufficient.index, fill_value=0).sort_index(),
            sufficient.sort_index(),
            check_names=False,
        )
        if k == 1:  # a non-empty top 1 is a full one: here the definitions coincide
            assert user_coverage(reco, test_users, k) == pytest.approx(covered.mean(), rel=1e-12)
        else:  # lists of 1 to 14 items: some test users have a short top k, which CoveredUsers counts
            assert user_coverage(reco, test_users, k) < covered.mean()
