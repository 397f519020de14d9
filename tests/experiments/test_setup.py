"""The notebook's settings and ``ensure_dataset``: each missing piece is built, nothing more."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recsys.config import Settings
from recsys.data.loader import load_raw_data
from recsys.experiments.setup import ensure_dataset, has_rows, notebook_settings, raw_files_present
from tests.data.raw_files import write_raw_files


def test_notebook_settings_put_given_values_over_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.delenv("RECSYS_MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("RECSYS_MLFLOW_EXPERIMENT", "from_env")
    monkeypatch.setenv("RECSYS_DATABASE_URL", "sqlite:///from_env.sqlite3")
    settings = notebook_settings(data_dir=tmp_path, database_url=None, mlflow_tracking_uri=None)
    assert settings.data_dir == tmp_path
    assert settings.db_url == "sqlite:///from_env.sqlite3"  # None keeps the configured value
    assert settings.mlflow_experiment == "from_env"
    assert settings.experiments_uri == f"sqlite:///{(tmp_path / 'mlflow.sqlite3').resolve()}"
    overridden = notebook_settings(mlflow_tracking_uri="http://127.0.0.1:5000", mlflow_experiment="x")
    assert (overridden.experiments_uri, overridden.mlflow_experiment) == ("http://127.0.0.1:5000", "x")


def test_ensure_dataset_generates_loads_and_prepares_only_what_is_missing(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")
    assert not raw_files_present(settings.raw_dir)
    messages: list[str] = []
    steps = ensure_dataset(settings, sqlite_engine, scale="tiny", seed=3, progress=messages.append)
    assert steps == messages
    assert [step.split()[0] for step in steps] == ["generated", "loaded", "prepared"]
    assert "tiny synthetic twin (seed 3)" in steps[0]
    assert raw_files_present(settings.raw_dir)
    assert has_rows(sqlite_engine, "interactions") and has_rows(sqlite_engine, "items")
    assert ensure_dataset(settings, sqlite_engine) == []  # everything is there now

    with sqlite_engine.begin() as conn:  # prepared tables gone: only preparation runs again
        conn.execute(sa.text("DROP TABLE interactions"))
    assert [step.split()[0] for step in ensure_dataset(settings, sqlite_engine)] == ["prepared"]


def test_ensure_dataset_loads_raw_files_that_are_there(sqlite_engine: Engine, tmp_path: Path) -> None:
    raw = write_raw_files(tmp_path / "raw")
    settings = Settings(_env_file=None, data_dir=tmp_path, raw_data_dir=raw)
    steps = ensure_dataset(settings, sqlite_engine, scale="tiny")
    assert [step.split()[0] for step in steps] == ["loaded", "prepared"]  # no twin over real files
    assert "events (6 rows)" in steps[0]  # the duplicate event was dropped


def test_ensure_dataset_prepares_loaded_raw_tables(sqlite_engine: Engine, tmp_path: Path) -> None:
    load_raw_data(sqlite_engine, write_raw_files(tmp_path / "raw"))
    settings = Settings(_env_file=None, data_dir=tmp_path / "empty")
    assert [step.split()[0] for step in ensure_dataset(settings, sqlite_engine)] == ["prepared"]
    assert not has_rows(sqlite_engine, "no_such_table")
