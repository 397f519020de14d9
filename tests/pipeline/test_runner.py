"""``recsys pipeline run``: the seven stages without Airflow, on SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import Result
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from recsys.cli import app
from recsys.config import get_settings
from recsys.pipeline.stages import STAGES
from recsys.publishing.tables import PUBLISHED_TABLES, current_version
from recsys.storage.database import create_db_engine
from tests.pipeline.conftest import MOMENT

PUBLISHED = [
    "default_recommendations",
    "personalized_recommendations",
    "i2i_recommendations",
    "similar_items",
    "ranked_recommendations",
    "user_histories",
]


@pytest.fixture
def project(tmp_path: Path, tiny_raw_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh data folder as the embedded default; the raw files are the tiny twin."""
    monkeypatch.chdir(tmp_path)  # no developer .env
    for name in [n for n in os.environ if n.startswith("RECSYS_") and not n.startswith("RECSYS_TEST_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RECSYS_RAW_DATA_DIR", str(tiny_raw_dir))
    # Two trials per search run every part of it; tests/pipeline/test_tuning.py tests the search.
    monkeypatch.setenv("RECSYS_TUNING_MAX_TRIALS", "2")
    # The CLI reads the process-wide settings once; each test gets its own.
    get_settings.cache_clear()
    yield tmp_path / "data"
    get_settings.cache_clear()


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def words(result: Result) -> str:
    """The output on one line: Rich wraps long lines, so compare words, not line breaks."""
    return " ".join(result.output.split())


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def project_engine(
    request: pytest.FixtureRequest, project: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Engine]:
    """The project database: the embedded default SQLite file, or the PostgreSQL test database."""
    if request.param == "postgres":
        engine: Engine = request.getfixturevalue("postgres_engine")
        monkeypatch.setenv("RECSYS_DATABASE_URL", engine.url.render_as_string(hide_password=False))
        yield engine
        return
    engine = create_db_engine(f"sqlite:///{project / 'recsys.sqlite3'}")
    yield engine
    engine.dispose()


@pytest.mark.slow
def test_all_stages_run_in_order(project: Path, project_engine: Engine) -> None:
    assert invoke("data", "load").exit_code == 0
    result = invoke("pipeline", "run", "--moment", MOMENT)
    assert result.exit_code == 0, result.output
    for number, name in enumerate(STAGES, start=1):
        assert f"[{number}/7] {name}" in words(result)
    with project_engine.connect() as conn:
        names = conn.execute(sa.select(PUBLISHED_TABLES.c.name)).scalars().all()
        counts = {
            name: conn.execute(sa.text(f'SELECT COUNT(*) FROM "{name}"')).scalar() for name in PUBLISHED
        }
    assert sorted(names) == sorted(PUBLISHED)
    for name in PUBLISHED:
        pointer = current_version(project_engine, name)
        assert pointer.version == 1
        assert pointer.as_of == datetime.fromisoformat(MOMENT)
        assert pointer.rows == counts[name] > 0
    # Models went to the embedded object store.
    assert (project / "object_store" / "models" / "als" / "current.json").is_file()
    assert (project / "object_store" / "models" / "two_stage" / "current.json").is_file()


def test_list_names_the_stages_in_order(project: Path) -> None:
    result = invoke("pipeline", "list")
    assert result.exit_code == 0
    assert result.output.splitlines() == [f"{n}. {name}" for n, name in enumerate(STAGES, start=1)]


def test_unknown_stage_is_refused_before_anything_runs(project: Path) -> None:
    result = invoke("pipeline", "run", "--stage", "prepare_dataset", "--stage", "nope")
    assert result.exit_code == 1
    assert "unknown stage(s) ['nope']; stages are: prepare_dataset, train_als_model" in words(result)
    assert "[1/2]" not in result.output
    assert not (project / "recsys.sqlite3").exists()


def test_personalized_before_training_names_the_stage_to_run(project: Path) -> None:
    assert invoke("data", "load").exit_code == 0
    result = invoke(
        "pipeline", "run", "--moment", MOMENT,
        "--stage", "prepare_dataset", "--stage", "prepare_personalized_recommendations",
    )  # fmt: skip
    assert result.exit_code == 1
    flat = words(result)
    assert "[1/2] prepare_dataset" in flat
    assert "stage prepare_personalized_recommendations failed: no als model has been published" in flat
    assert "run stage train_als_model (DAG 2_train_als_model) first" in flat


def test_stages_show_their_progress_on_the_console(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_TUNING_MAX_TRIALS", "1")  # the search's one trial: the shipped config
    assert invoke("data", "load").exit_code == 0
    result = invoke(
        "pipeline", "run", "--moment", MOMENT, "--stage", "prepare_dataset", "--stage", "train_als_model"
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    flat = words(result)
    assert f"stage prepare_dataset started for the moment {datetime.fromisoformat(MOMENT)}" in flat
    prepared = re.search(
        r"stage prepare_dataset finished in \d+\.\d s: "
        r"\{'items': (\d+), 'interactions': (\d+), 'users': (\d+)\}",
        flat,
    )
    assert prepared is not None and all(int(count) > 0 for count in prepared.groups()), flat
    assert re.search(r"training window until \S+ \S+: \d+ interactions of \d+ users and \d+ items", flat)
    # ALS is fitted three times: the search's trial (on the days before the tuning's validation
    # days), the candidate (on the window minus the validation days), then on all of it.
    assert re.search(r"als tuning: trial 1/1, ndcg@10 \d\.\d{4}, best \d\.\d{4}, budget 300 s", flat)
    assert flat.count("als: iteration 1/15, elapsed") == 3
    assert flat.count("als: iteration 15/15, elapsed") == 3
    assert re.search(r"stage train_als_model finished in \d+\.\d s: \{'promoted': True", flat)
    assert flat.index("[2/2] train_als_model") < flat.index("stage train_als_model started")
