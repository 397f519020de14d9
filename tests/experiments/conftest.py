"""Fixtures of the experiment helpers: hand-checked raw tables, a time split, MLflow stores."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from recsys.data.loader import load_raw_data
from recsys.evaluation.offline import TimeSplit, time_split
from recsys.models.dataset import InteractionData
from tests.data.raw_files import write_raw_files
from tests.models.conftest import clustered_interactions

# 2015-06-01 00:00 UTC (a Monday); property snapshots are taken at W1, W1 + 7 days, W1 + 14 days.
W1 = 1_433_116_800_000
HOUR = 3_600_000
WEEK = 7 * 24 * HOUR

# Visitor 10 views item 1 twice, carts and buys it; 11 views items 2 and 1; 12 views 2; 13 views 3.
# The second day starts at W1 + 24 h.
EVENTS = [
    f"{W1 + 1 * HOUR},10,view,1,",
    f"{W1 + 2 * HOUR},10,view,1,",
    f"{W1 + 3 * HOUR},10,addtocart,1,",
    f"{W1 + 4 * HOUR},10,transaction,1,7",
    f"{W1 + 25 * HOUR},11,view,2,",
    f"{W1 + 26 * HOUR},11,view,1,",
    f"{W1 + 27 * HOUR},12,view,2,",
    f"{W1 + 28 * HOUR},13,view,3,",
]
# Prices: item 1 100 → 120 → 120 (repeated), item 2 50, item 3 0; item 1 becomes unavailable.
PROPERTIES_PART1 = [
    f"{W1},1,790,n100.000",
    f"{W1},2,790,n50.000",
    f"{W1},3,790,n0.000",
    f"{W1},1,available,1",
    f"{W1},1,categoryid,3",
    f"{W1},2,categoryid,4",
]
PROPERTIES_PART2 = [
    f"{W1 + WEEK},1,790,n120.000",
    f"{W1 + WEEK},1,available,0",
    f"{W1 + 2 * WEEK},1,790,n120.000",
    f"{W1},1,888,1116713 960601",
]
# Depths: 1 and 5 are roots, 2 and 4 are at depth 2, 3 at depth 3; leaves are 3, 4 and 5.
TREE = ["1,", "2,1", "3,2", "4,1", "5,"]


@pytest.fixture
def raw_db(db_engine: Engine, tmp_path: Path) -> Engine:
    """The hand-checked raw tables above, loaded (on SQLite and on PostgreSQL)."""
    folder = write_raw_files(
        tmp_path / "raw", events=EVENTS, part1=PROPERTIES_PART1, part2=PROPERTIES_PART2, tree=TREE
    )
    load_raw_data(db_engine, folder)
    return db_engine


@pytest.fixture(scope="session")
def clustered_split() -> tuple[TimeSplit, InteractionData]:
    """The model tests' clustered interactions split at their last 7 days, and the training window."""
    frame, catalogue = clustered_interactions()
    split = time_split(frame, test_days=7)
    return split, InteractionData.build(split.train, catalogue, now=split.test_start)


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, fully migrated MLflow SQLite store (creating one takes seconds; copying it does not)."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.sqlite3"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_uri(mlflow_template: Path, tmp_path: Path) -> str:
    """Tracking URI of a fresh MLflow SQLite store in the test's folder."""
    target = tmp_path / "mlflow" / "mlflow.sqlite3"
    target.parent.mkdir()
    shutil.copyfile(mlflow_template, target)
    return f"sqlite:///{target}"
