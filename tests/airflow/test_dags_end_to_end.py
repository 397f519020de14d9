"""All seven DAGs run with ``dag.test()`` on the tiny twin, PostgreSQL and a local S3 server.

One scenario runs once for the module (about a minute) and the tests check what it left:

1. DAG 4 before any ALS model exists: it fails in ``check_als_model`` and says which DAG to run;
2. the seven DAGs in order for one day: every task succeeds, tables and models are published;
3. the seven DAGs again for the same day: the same table contents (idempotent);
4. DAGs 1, 3 and 5 for an earlier day (a backfill): DAG 1 keeps the later day's prepared tables,
   and DAGs 3 and 5 read their window up to the earlier day from them; the published tables are
   recorded as new versions but the later day's keep serving;
5. DAG 3 for that earlier day with the param ``promote_backfill``: its table is served.

The project database comes from an Airflow connection (``RECSYS_AIRFLOW_DB_CONN_ID``) and the
Telegram callbacks post to a local fake Bot API, so both paths are exercised as deployed.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from recsys.data.synthetic import generate_twin
from recsys.storage.database import create_db_engine
from tests.airflow.conftest import DAGS_FOLDER, FakeTelegram
from tests.s3_server import ACCESS_KEY, REGION, SECRET_KEY, s3_client

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    # Raised inside Airflow's in-process execution API, which dag.test() uses.
    pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated"),
]

DAY = date(2015, 9, 10)
BACKFILL_DAY = date(2015, 8, 27)
BACKFILLED = ["1_prepare_dataset", "3_prepare_default_recommendations", "5_prepare_i2i_recommendations"]
PUBLISHED = {
    "default_recommendations": ["rank"],
    "personalized_recommendations": ["user_id", "rank"],
    "i2i_recommendations": ["user_id", "rank"],
    "similar_items": ["item_id", "rank"],
    "ranked_recommendations": ["user_id", "rank"],
    "user_histories": ["user_id", "rank"],
}
PREPARED = {"items": ["item_id"], "interactions": ["user_id", "datetime", "item_id", "event"]}
TOKEN = "123456:test-token"
CHAT_ID = "-100777"


@dataclass
class Run:
    """What one ``dag.test`` run left: states and the tasks' XCom summaries."""

    state: str
    tasks: dict[str, str]
    xcoms: dict[str, Any]


@dataclass
class Scenario:
    """Everything the module's tests inspect."""

    engine: Engine
    bucket: str
    objects: list[str] = field(default_factory=list)
    before_model: Run | None = None
    first: dict[str, Run] = field(default_factory=dict)
    rerun: dict[str, Run] = field(default_factory=dict)
    backfill: dict[str, Run] = field(default_factory=dict)
    promoted: Run | None = None
    snapshots: dict[str, dict[str, Any]] = field(default_factory=dict)


def logical_date(dag: Any, day: date) -> datetime:
    """The time of ``day`` at which the DAG's cron schedule fires (all schedules are ``M H ...``)."""
    minute, hour = dag.schedule.split()[:2]
    return datetime(day.year, day.month, day.day, int(hour), int(minute), tzinfo=UTC)


def run_dag(dag: Any, day: date, conf: dict[str, Any] | None = None) -> Run:
    """``dag.test`` for the day; the run's state, task states and XComs, read before the session ends."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    dag_run = dag.test(logical_date=logical_date(dag, day), run_conf=conf)
    with create_session() as session:
        tasks = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances(session=session)}
        rows = session.scalars(
            XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag.dag_id, key="return_value")
        ).all()
        xcoms = {row.task_id: XComModel.deserialize_value(row) for row in rows}
    return Run(state=str(dag_run.state), tasks=tasks, xcoms=xcoms)


def snapshot(engine: Engine) -> dict[str, Any]:
    """Pointer rows, view contents (sorted) and prepared tables, to compare runs."""
    with engine.connect() as conn:
        versions = {
            (row["name"], row["version"]): dict(row)
            for row in conn.execute(sa.text("SELECT * FROM published_table_versions")).mappings()
        }
        pointers = {
            row["name"]: dict(row)
            for row in conn.execute(sa.text("SELECT * FROM published_tables")).mappings()
        }
        views = {
            name: pd.read_sql(sa.text(f'SELECT * FROM "{name}"'), conn).sort_values(keys, ignore_index=True)
            for name, keys in PUBLISHED.items()
        }
        prepared = {
            name: pd.read_sql(sa.text(f'SELECT * FROM "{name}"'), conn).sort_values(keys, ignore_index=True)
            for name, keys in PREPARED.items()
        }
        tables = set(sa.inspect(conn).get_table_names())
        view_names = set(sa.inspect(conn).get_view_names())
    return {
        "versions": versions,
        "pointers": pointers,
        "views": views,
        "prepared": prepared,
        "tables": tables,
        "view_names": view_names,
    }


def _reset_schema(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))


def _connection_uri(postgres_url: str) -> str:
    """The test database as an Airflow connection URI (``AIRFLOW_CONN_<ID>``)."""
    return make_url(postgres_url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def scenario(
    airflow_db: Path,
    postgres_url: str,
    s3_endpoint: str,
    telegram: FakeTelegram,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Scenario]:
    """Run the scenario of the module docstring once."""
    work = tmp_path_factory.mktemp("airflow_e2e")
    generate_twin(work / "raw", scale="tiny", seed=42)
    client = s3_client(s3_endpoint)
    result = Scenario(engine=create_db_engine(postgres_url), bucket=f"recsys-airflow-{uuid.uuid4().hex[:10]}")
    client.create_bucket(Bucket=result.bucket)
    _reset_schema(result.engine)
    with pytest.MonkeyPatch.context() as mp:
        # Only what is set here: no developer .env (read from the working folder), no RECSYS_* leftovers.
        mp.chdir(work)
        for name in [n for n in os.environ if n.startswith("RECSYS_") and not n.startswith("RECSYS_TEST_")]:
            mp.delenv(name)
        settings = {
            "RECSYS_DATA_DIR": str(work / "data"),
            "RECSYS_RAW_DATA_DIR": str(work / "raw"),
            "RECSYS_AIRFLOW_DB_CONN_ID": "recsys_db",
            "AIRFLOW_CONN_RECSYS_DB": _connection_uri(postgres_url),
            "RECSYS_OBJECT_STORE_URL": f"s3://{result.bucket}/recsys",
            "RECSYS_S3_ENDPOINT_URL": s3_endpoint,
            "RECSYS_S3_ACCESS_KEY_ID": ACCESS_KEY,
            "RECSYS_S3_SECRET_ACCESS_KEY": SECRET_KEY,
            "RECSYS_S3_REGION": REGION,
            "RECSYS_TELEGRAM_TOKEN": TOKEN,
            "RECSYS_TELEGRAM_CHAT_ID": CHAT_ID,
            "RECSYS_TELEGRAM_API_BASE_URL": telegram.url,
            # Two trials per search run every part of it (tests/pipeline/test_tuning.py tests it).
            "RECSYS_TUNING_MAX_TRIALS": "2",
        }
        for name, value in settings.items():
            mp.setenv(name, value)
        from airflow.dag_processing.dagbag import DagBag

        dags = DagBag(dag_folder=str(DAGS_FOLDER)).dags
        try:
            result.before_model = run_dag(dags["4_prepare_personalized_recommendations"], DAY)
            result.first = {dag_id: run_dag(dags[dag_id], DAY) for dag_id in sorted(dags)}
            result.snapshots["first"] = snapshot(result.engine)
            result.rerun = {dag_id: run_dag(dags[dag_id], DAY) for dag_id in sorted(dags)}
            result.snapshots["rerun"] = snapshot(result.engine)
            result.backfill = {dag_id: run_dag(dags[dag_id], BACKFILL_DAY) for dag_id in BACKFILLED}
            result.snapshots["backfill"] = snapshot(result.engine)
            default_dag = dags["3_prepare_default_recommendations"]
            result.promoted = run_dag(default_dag, BACKFILL_DAY, conf={"promote_backfill": True})
            result.snapshots["promoted"] = snapshot(result.engine)
            listing = client.list_objects_v2(Bucket=result.bucket, Prefix="recsys/")
            result.objects = [item["Key"] for item in listing.get("Contents", [])]
            yield result
        finally:
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=result.bucket):
                for item in page.get("Contents", []):
                    client.delete_object(Bucket=result.bucket, Key=item["Key"])
            client.delete_bucket(Bucket=result.bucket)
            _reset_schema(result.engine)
            result.engine.dispose()


def test_personalized_dag_fails_clearly_before_any_als_model(
    scenario: Scenario, telegram: FakeTelegram
) -> None:
    run = scenario.before_model
    assert run is not None
    assert run.state == "failed"
    assert run.tasks == {
        "check_als_model": "failed",
        "prepare_personalized_recommendations": "upstream_failed",
    }
    failure = [text for text in telegram.texts() if "FAILED" in text]
    assert len(failure) == 1
    assert "4_prepare_personalized_recommendations" in failure[0]
    assert "task: check_als_model" in failure[0]
    assert "run stage train_als_model (DAG 2_train_als_model) first" in failure[0]


def test_all_seven_dags_succeed_and_publish(scenario: Scenario) -> None:
    assert len(scenario.first) == 7
    for dag_id, run in scenario.first.items():
        assert run.state == "success", (dag_id, run.tasks)
        assert set(run.tasks.values()) == {"success"}, (dag_id, run.tasks)
    first = scenario.snapshots["first"]
    moment = datetime.combine(DAY, datetime.min.time())
    for name in PUBLISHED:
        pointer = first["pointers"][name]
        assert pointer["version"] == 1
        # Every table is published as of its own DAG's data interval end on that day.
        assert pointer["as_of"].date() == DAY and pointer["as_of"] >= moment.replace(hour=22)
        assert pointer["rows"] == len(first["views"][name]) > 0
        assert f"{name}__v1" in first["tables"]
        assert name in first["view_names"]
    assert first["prepared"]["interactions"]["datetime"].max() < moment.replace(hour=22)
    # The ranked and personalized lists cover the same active users.
    assert (
        first["views"]["ranked_recommendations"]["user_id"].nunique()
        == first["views"]["personalized_recommendations"]["user_id"].nunique()
    )


def test_xcoms_are_small_summaries(scenario: Scenario) -> None:
    personalized = scenario.first["4_prepare_personalized_recommendations"].xcoms
    assert personalized["check_als_model"]["model"] == "als"
    summary = personalized["prepare_personalized_recommendations"]
    assert summary["model_version"] == personalized["check_als_model"]["version"]
    assert summary["personalized_recommendations"]["version"] == 1
    training = scenario.first["2_train_als_model"].xcoms["train_als_model"]
    assert training["promoted"] is True
    for run in scenario.first.values():
        for value in run.xcoms.values():
            assert len(repr(value)) < 1000


def test_models_are_promoted_in_s3(scenario: Scenario) -> None:
    objects = set(scenario.objects)
    assert "recsys/models/als/current.json" in objects
    assert "recsys/models/two_stage/current.json" in objects
    als_version = scenario.first["2_train_als_model"].xcoms["train_als_model"]["version"]
    assert f"recsys/models/als/{als_version}/model.json" in objects


def test_rerun_of_the_same_day_gives_the_same_tables(scenario: Scenario) -> None:
    for dag_id, run in scenario.rerun.items():
        assert run.state == "success", (dag_id, run.tasks)
    first, rerun = scenario.snapshots["first"], scenario.snapshots["rerun"]
    for name in PUBLISHED:
        assert rerun["pointers"][name]["version"] == 2
        assert rerun["pointers"][name]["as_of"] == first["pointers"][name]["as_of"]
        pd.testing.assert_frame_equal(
            rerun["views"][name], first["views"][name], check_exact=False, rtol=1e-5
        )
    for name in PREPARED:
        pd.testing.assert_frame_equal(rerun["prepared"][name], first["prepared"][name])


def test_backfill_of_an_earlier_day_is_recorded_but_does_not_take_over(scenario: Scenario) -> None:
    for dag_id, run in scenario.backfill.items():
        assert run.state == "success", (dag_id, run.tasks)
    backfill, rerun = scenario.snapshots["backfill"], scenario.snapshots["rerun"]
    # DAG 1 does not roll the prepared tables back to the earlier day.
    prepared = scenario.backfill["1_prepare_dataset"].xcoms["prepare_dataset"]
    assert f"later than {BACKFILL_DAY:%Y-%m-%d} " in prepared["skipped"] and ": kept" in prepared["skipped"]
    for name in PREPARED:
        pd.testing.assert_frame_equal(backfill["prepared"][name], rerun["prepared"][name])
    for name in ("default_recommendations", "i2i_recommendations"):
        # Recorded as version 3 of the earlier day, not served: the later day's version 2 is.
        record = backfill["versions"][(name, 3)]
        assert record["as_of"].date() == BACKFILL_DAY and not record["served"]
        assert record["rows"] > 0 and f"{name}__v3" in backfill["tables"]
        assert backfill["pointers"][name] == rerun["pointers"][name]
        pd.testing.assert_frame_equal(backfill["views"][name], rerun["views"][name])
    summary = scenario.backfill["3_prepare_default_recommendations"].xcoms["prepare_default_recommendations"]
    assert summary["default_recommendations"] == {
        "version": 3,
        "rows": record_rows(backfill),
        "served": False,
    }
    assert backfill["pointers"]["similar_items"] == rerun["pointers"]["similar_items"]


def record_rows(snap: dict[str, Any]) -> int:
    return int(snap["versions"][("default_recommendations", 3)]["rows"])


def test_backfill_with_promote_backfill_is_served(scenario: Scenario) -> None:
    assert scenario.promoted is not None and scenario.promoted.state == "success"
    promoted = scenario.snapshots["promoted"]
    pointer = promoted["pointers"]["default_recommendations"]
    assert pointer["version"] == 4 and pointer["as_of"].date() == BACKFILL_DAY
    assert pointer["rows"] == len(promoted["views"]["default_recommendations"])
    # The other tables keep the later day.
    assert promoted["pointers"]["i2i_recommendations"]["version"] == 2


def test_every_successful_run_and_failed_task_was_announced(
    scenario: Scenario, telegram: FakeTelegram
) -> None:
    runs = 1 + len(scenario.first) + len(scenario.rerun) + len(scenario.backfill) + 1
    assert len(telegram.received) == runs
    for path, body in telegram.received:
        assert path == f"/bot{TOKEN}/sendMessage"
        assert body["chat_id"] == CHAT_ID
    successes = [text for text in telegram.texts() if "succeeded" in text]
    assert len(successes) == runs - 1
    for dag_id in scenario.first:
        assert any(f"DAG {dag_id} succeeded" in text for text in successes)
    assert all("run: manual__" in text and "duration: " in text for text in telegram.texts())
