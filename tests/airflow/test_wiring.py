"""The pieces a DAG task uses: settings (with an Airflow connection), the run's moment, run_step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from recsys.pipeline import airflow as wiring
from recsys.pipeline.airflow import airflow_settings, run_moment, run_step

MOMENT = datetime(2015, 9, 10, 22, 45)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no developer .env
    monkeypatch.delenv(wiring.DB_CONN_ID_VARIABLE, raising=False)
    monkeypatch.setenv("RECSYS_DATABASE_URL", "sqlite:///from-env.sqlite3")


def test_settings_take_the_database_from_the_environment_by_default() -> None:
    assert airflow_settings().db_url == "sqlite:///from-env.sqlite3"


def test_settings_take_the_database_from_an_airflow_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(wiring.DB_CONN_ID_VARIABLE, "recsys_db")
    monkeypatch.setenv("AIRFLOW_CONN_RECSYS_DB", "postgresql://recsys:p%40ss@db.internal:5433/recsys")
    # psycopg2 explicitly: the loaders' COPY needs it even where the hook would default to psycopg 3.
    assert airflow_settings().db_url == "postgresql+psycopg2://recsys:p%40ss@db.internal:5433/recsys"


def test_moment_is_the_data_interval_end_in_naive_utc() -> None:
    end = datetime(2015, 9, 11, 1, 45, tzinfo=timezone(timedelta(hours=3)))
    moment = run_moment({"data_interval_end": end, "logical_date": datetime(2000, 1, 1, tzinfo=UTC)})
    assert moment == MOMENT
    assert type(moment) is datetime and moment.tzinfo is None


def test_manual_run_without_logical_date_uses_its_trigger_time() -> None:
    dag_run = SimpleNamespace(run_after=MOMENT.replace(tzinfo=UTC))
    assert run_moment({"data_interval_end": None, "logical_date": None, "dag_run": dag_run}) == MOMENT


def test_unknown_step_is_named_with_the_valid_ones() -> None:
    with pytest.raises(
        KeyError, match="unknown step 'nope'; steps are: load_raw_data, check_als_model, prepare"
    ):
        run_step("nope", MOMENT)


def test_step_summary_is_json_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(wiring.EXTRA_STEPS, "numbers", lambda ctx: {"x": np.float32(0.5), "when": ctx.moment})
    assert run_step("numbers", MOMENT) == {"x": 0.5, "when": "2015-09-10 22:45:00"}


def test_raw_load_keeps_existing_tables_when_the_folder_has_no_files(tmp_path: Path) -> None:
    from recsys.config import Settings
    from recsys.data.errors import RawDataError
    from tests.data.raw_files import write_raw_files

    settings = Settings(
        _env_file=None, database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}", raw_data_dir=tmp_path / "raw"
    )
    (tmp_path / "raw").mkdir()
    with pytest.raises(RawDataError, match="file not found"):  # nothing to keep yet: a clear failure
        run_step("load_raw_data", MOMENT, settings)

    write_raw_files(tmp_path / "raw")
    assert run_step("load_raw_data", MOMENT, settings)["events"]["rows"] == 6
    for path in (tmp_path / "raw").iterdir():
        path.unlink()
    assert "raw tables kept" in run_step("load_raw_data", MOMENT, settings)["skipped"]
