"""The seven DAGs under Airflow's real scheduler with CeleryExecutor, two workers and a worker killed.

Started as processes, as an operator would without Docker (``airflow_service/README.md``): ``airflow
db migrate`` on a fresh PostgreSQL database, then api-server, scheduler, dag-processor, triggerer
and two ``airflow celery worker`` (concurrency 1 each) on the machine's Redis (db
:data:`REDIS_DB`, a queue of this run's own). The DAG folder is ``airflow_service/dags``; the
project database is a second fresh PostgreSQL database, the object store a local folder, the raw
data the tiny twin. One scenario for the module:

1. the DAGs are triggered through the REST API (v2, JWT from the simple auth manager) in
   dependency order for one day: 1; then 2, 3, 5 and 6 together; then 4 and 7 together; each
   run succeeds and the tables and models are published;
2. while DAG 7's task runs, the worker running it is killed with SIGKILL (its task process may
   live on, a zombie); the scheduler notices the missing heartbeats, the retry runs on the other
   worker, the run succeeds and exactly one version is served;
3. ``airflow backfill create`` for an earlier date (started with DAGs 4 and 7) runs DAG 3 again:
   its version is recorded, the served one stays.

Every component is started in its own session; at the end every process of those sessions (task
processes that left their worker's process group, a zombie, ``serve-logs`` included) is killed by
PID, and the databases and the Redis db are dropped. The whole module is bounded by
:data:`DEADLINE_S`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
import requests
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recsys.data.synthetic import generate_twin
from recsys.storage.database import create_db_engine
from tests.airflow.conftest import DAGS_FOLDER
from tests.conftest import POSTGRES_URL, unavailable
from tests.helpers import scratch_database

pytestmark = [pytest.mark.airflow_scheduler, pytest.mark.postgres, pytest.mark.slow]

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
# Chosen for this test; flushed before and after.
REDIS_DB = 12
DEADLINE_S = 290.0
DAY = date(2015, 9, 10)
BACKFILL_DAG = "3_prepare_default_recommendations"
BACKFILL_FROM, BACKFILL_TO = "2015-08-01", "2015-08-02"
SCHEDULES = {
    "1_prepare_dataset": (22, 0),
    "2_train_als_model": (22, 15),
    "3_prepare_default_recommendations": (22, 30),
    "4_prepare_personalized_recommendations": (22, 45),
    "5_prepare_i2i_recommendations": (23, 0),
    "6_prepare_similar_items": (23, 0),
    "7_train_ranking_model_and_rank_recommendations": (23, 45),
}
RANKING_DAG = "7_train_ranking_model_and_rank_recommendations"
RANKING_TASK = "train_ranking_model_and_rank_recommendations"
PUBLISHED = [
    "default_recommendations",
    "personalized_recommendations",
    "i2i_recommendations",
    "similar_items",
    "ranked_recommendations",
]
USER, PASSWORD = "admin", secrets.token_hex(8)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Deadline:
    """The module's time budget."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def wait(self, condition: Callable[[], Any], what: str, details: Callable[[], str]) -> Any:
        """Poll until ``condition()`` is truthy; fail naming ``what`` once the budget is spent."""
        while self.left() > 0:
            value = condition()
            if value:
                return value
            time.sleep(1.0)
        pytest.fail(f"time budget spent waiting for {what}:\n{details()}", pytrace=False)


@dataclass
class Airflow:
    """The running deployment and what the scenario recorded."""

    home: Path
    env: dict[str, str]
    api: str
    project: Engine
    store: Path
    deadline: Deadline
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    session: requests.Session = field(default_factory=requests.Session)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    killed: dict[str, Any] = field(default_factory=dict)
    backfill: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    # -- processes ------------------------------------------------------------------------------
    def start(self, name: str, *args: str, **extra_env: str) -> None:
        log = (self.home / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "airflow", *args],
            env={**self.env, **extra_env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.home,
        )
        log.close()

    def logs(self, lines: int = 25) -> str:
        parts = []
        for name, proc in self.procs.items():
            text = (self.home / f"{name}.log").read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {name} (pid {proc.pid}, exit {proc.poll()}) ---\n" + "\n".join(text))
        return "\n".join(parts)

    def stop_everything(self) -> None:
        """SIGKILL, by PID, every process of the components' sessions (each was started as a
        session leader; task processes change their process group, not their session)."""
        sessions = {proc.pid for proc in self.procs.values()}
        for pid in session_members(sessions):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in self.procs.values():
            proc.wait(timeout=30)

    # -- REST API -------------------------------------------------------------------------------
    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.session.request(method, f"{self.api}/api/v2{path}", timeout=30, **kwargs)
        if response.status_code >= 400:
            pytest.fail(f"{method} {path}: {response.status_code} {response.text}", pytrace=False)
        return response.json()

    def trigger(self, dag_id: str) -> str:
        hour, minute = SCHEDULES[dag_id]
        moment = datetime(DAY.year, DAY.month, DAY.day, hour, minute, tzinfo=UTC).isoformat()
        # The data interval is given: the run's moment is its end (as a scheduled run's would be).
        body = {"logical_date": moment, "data_interval_start": moment, "data_interval_end": moment}
        return str(self.call("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"])

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
        listing = self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return {ti["task_id"]: ti for ti in listing["task_instances"]}

    def wait_finished(self, runs: dict[str, str], what: str) -> dict[str, str]:
        def finished() -> dict[str, str] | None:
            states = {dag_id: self.run_state(dag_id, run_id) for dag_id, run_id in runs.items()}
            return states if all(s in {"success", "failed"} for s in states.values()) else None

        return dict(self.deadline.wait(finished, what, self.logs))


def session_members(sessions: set[int]) -> list[int]:
    """PIDs of the processes whose session id is in ``sessions``."""
    members = []
    for pid in psutil.pids():
        with contextlib.suppress(OSError):
            if os.getsid(pid) in sessions:
                members.append(pid)
    return members


def descendants(pid: int) -> set[int]:
    try:
        return {child.pid for child in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def redis_db() -> redis.Redis:
    return redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB, socket_timeout=5)


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Airflow]:
    """The deployment of the module docstring, stopped and dropped at the end."""
    started = time.monotonic()
    deadline = Deadline(DEADLINE_S)
    try:
        redis_db().flushdb()
    except redis.RedisError as exc:
        unavailable(f"Redis is not reachable at {REDIS_HOST}:{REDIS_PORT}: {exc}")
    try:
        sa.create_engine(POSTGRES_URL).connect().close()
    except sa.exc.OperationalError as exc:
        unavailable(f"PostgreSQL is not reachable at {POSTGRES_URL}: {exc.orig}")
    home = tmp_path_factory.mktemp("airflow_scheduler")
    generate_twin(home / "raw", scale="tiny", seed=42)
    with (
        scratch_database(POSTGRES_URL, "airflow_meta") as meta_url,
        scratch_database(POSTGRES_URL, "recsys_airflow") as project_url,
    ):
        api_port = free_port()
        (home / "passwords.json").write_text(json.dumps({USER: PASSWORD}))
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RECSYS_"))}
        queue = f"recsys_test_{uuid.uuid4().hex[:8]}"
        env = {
            **base,
            "OPENBLAS_NUM_THREADS": "1",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__DEFAULT_TASK_RETRIES": "1",
            "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta_url,
            "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{meta_url}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            # Only the runs triggered here: no scheduled run of today's date.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            # Zombie detection in seconds rather than minutes (README: "Zombies").
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "12",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
            # The DAG files do not change during the test: parse them once, spare the 2 cores.
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
            "RECSYS_DATABASE_URL": project_url,
            "RECSYS_DATA_DIR": str(home / "data"),
            "RECSYS_RAW_DATA_DIR": str(home / "raw"),
            # A month of the twin keeps every task short on 2 cores.
            "RECSYS_TRAINING_WINDOW_DAYS": "30",
            # The search is tested in tests/pipeline/test_tuning.py; here it only costs time.
            "RECSYS_TUNING_MAX_TRIALS": "0",
        }
        deployment = Airflow(
            home=home,
            env=env,
            api=f"http://127.0.0.1:{api_port}",
            project=create_db_engine(project_url),
            store=home / "data" / "object_store",
            deadline=deadline,
        )
        deployment.session.trust_env = False
        try:
            migrate = subprocess.run(
                [sys.executable, "-m", "airflow", "db", "migrate"],
                env=env,
                capture_output=True,
                text=True,
                timeout=deadline.left(),
                check=False,
                cwd=home,
            )
            assert migrate.returncode == 0, migrate.stdout + migrate.stderr
            deployment.timings["migrate"] = time.monotonic() - started
            deployment.start("api-server", "api-server")
            deployment.start("scheduler", "scheduler")
            deployment.start("dag-processor", "dag-processor")
            deployment.start("triggerer", "triggerer")
            for number in (1, 2):
                deployment.start(
                    f"worker{number}",
                    "celery",
                    "worker",
                    "--queues",
                    queue,
                    "--celery-hostname",
                    f"worker{number}@%h",
                    AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
                )
            run_scenario(deployment)
            deployment.timings["total"] = time.monotonic() - started
            yield deployment
        finally:
            deployment.stop_everything()
            deployment.project.dispose()
            redis_db().flushdb()


def login(airflow: Airflow) -> None:
    def token() -> str | None:
        try:
            response = airflow.session.post(
                f"{airflow.api}/auth/token", json={"username": USER, "password": PASSWORD}, timeout=10
            )
        except requests.ConnectionError:
            return None
        return response.json()["access_token"] if response.status_code in {200, 201} else None

    access = airflow.deadline.wait(token, "the api-server to answer /auth/token", airflow.logs)
    airflow.session.headers["Authorization"] = f"Bearer {access}"


def run_scenario(airflow: Airflow) -> None:
    login(airflow)
    airflow.deadline.wait(
        lambda: airflow.call("GET", "/dags", params={"limit": 100})["total_entries"] == len(SCHEDULES),
        "the dag-processor to parse the seven DAGs",
        airflow.logs,
    )
    airflow.runs["import_errors"] = airflow.call("GET", "/importErrors")
    for dag_id in SCHEDULES:
        airflow.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
    # Dependency order: 1 feeds everything; 4 needs 2's ALS model; 7 trains its own.
    for wave in (["1_prepare_dataset"], [*list(SCHEDULES)[1:3], *list(SCHEDULES)[4:6]]):
        started = time.monotonic()
        run_ids = {dag_id: airflow.trigger(dag_id) for dag_id in wave}
        record_runs(airflow, run_ids, airflow.wait_finished(run_ids, f"runs of {wave}"))
        airflow.timings[f"wave {wave[0]}"] = time.monotonic() - started
    backfill = start_backfill(airflow)
    try:
        kill_a_worker_during_ranking(airflow)
        finish_backfill(airflow, backfill)
    finally:
        if backfill.poll() is None:
            backfill.kill()
            backfill.wait(timeout=30)


def record_runs(airflow: Airflow, run_ids: dict[str, str], states: dict[str, str]) -> None:
    for dag_id, run_id in run_ids.items():
        airflow.runs[dag_id] = {
            "state": states[dag_id],
            "tasks": {k: v["state"] for k, v in airflow.task_instances(dag_id, run_id).items()},
        }


def kill_a_worker_during_ranking(airflow: Airflow) -> None:
    """Trigger DAGs 4 and 7; SIGKILL the worker running 7's task a few seconds into it."""
    started = time.monotonic()
    personalized = "4_prepare_personalized_recommendations"
    run_ids = {personalized: airflow.trigger(personalized), RANKING_DAG: airflow.trigger(RANKING_DAG)}
    workers = {name: airflow.procs[name] for name in ("worker1", "worker2")}

    def victim() -> str | None:
        task = airflow.task_instances(RANKING_DAG, run_ids[RANKING_DAG]).get(RANKING_TASK, {})
        if task.get("state") != "running" or not task.get("pid"):
            return None
        return next((name for name, proc in workers.items() if task["pid"] in descendants(proc.pid)), None)

    name = airflow.deadline.wait(victim, "DAG 7's task to run on a worker", airflow.logs)
    time.sleep(3.0)  # inside the ranker's training
    worker = workers[name]
    airflow.killed["worker"] = name
    left_behind = descendants(worker.pid)
    os.kill(worker.pid, signal.SIGKILL)
    states = airflow.wait_finished(run_ids, "DAGs 4 and 7 after the worker kill")
    record_runs(airflow, {personalized: run_ids[personalized]}, states)
    airflow.killed["state"] = states[RANKING_DAG]
    airflow.killed["task"] = airflow.task_instances(RANKING_DAG, run_ids[RANKING_DAG])[RANKING_TASK]
    # A task process that outlived its worker (a zombie) may still publish: give it a moment.
    until = time.monotonic() + 5
    airflow.deadline.wait(
        lambda: time.monotonic() > until or not any(psutil.pid_exists(pid) for pid in left_behind),
        "the killed worker's task process to end",
        airflow.logs,
    )
    airflow.killed["zombies"] = sorted(pid for pid in left_behind if psutil.pid_exists(pid))
    airflow.timings["4 and 7 with the worker kill"] = time.monotonic() - started


def start_backfill(airflow: Airflow) -> subprocess.Popen[str]:
    """``airflow backfill create`` of DAG 3 for an earlier date (its runs go on with DAGs 4 and 7)."""
    with airflow.project.connect() as conn:
        airflow.backfill["before"] = dict(
            conn.execute(sa.text("SELECT * FROM published_tables WHERE name = 'default_recommendations'"))
            .mappings()
            .one()
        )
    airflow.backfill["started"] = time.monotonic()
    command = ["backfill", "create", "--dag-id", BACKFILL_DAG, "--from-date", BACKFILL_FROM]
    return subprocess.Popen(
        [sys.executable, "-m", "airflow", *command, "--to-date", BACKFILL_TO],
        env=airflow.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def finish_backfill(airflow: Airflow, cli: subprocess.Popen[str]) -> None:
    output, _ = cli.communicate(timeout=max(1.0, airflow.deadline.left()))
    assert cli.returncode == 0, output

    def backfill_runs() -> list[dict[str, Any]] | None:
        listing = airflow.call("GET", f"/dags/{BACKFILL_DAG}/dagRuns", params={"run_type": "backfill"})
        runs = listing["dag_runs"]
        done = runs and all(run["state"] in {"success", "failed"} for run in runs)
        return runs if done else None

    airflow.backfill["runs"] = airflow.deadline.wait(backfill_runs, "the backfill's runs", airflow.logs)
    airflow.timings["backfill"] = time.monotonic() - airflow.backfill["started"]


# -- checks --------------------------------------------------------------------------------------
def versions(engine: Engine, name: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT * FROM published_table_versions WHERE name = :name ORDER BY version"),
            {"name": name},
        ).mappings()
        return [dict(row) for row in rows]


def test_all_seven_dags_succeed_under_the_scheduler(airflow: Airflow) -> None:
    assert airflow.runs["import_errors"]["total_entries"] == 0
    for dag_id in list(SCHEDULES)[:6]:
        run = airflow.runs[dag_id]
        assert run["state"] == "success", (dag_id, run)
        assert set(run["tasks"].values()) == {"success"}, (dag_id, run)
    assert airflow.killed["state"] == "success"
    with airflow.project.connect() as conn:
        pointers = {
            row["name"]: row for row in conn.execute(sa.text("SELECT * FROM published_tables")).mappings()
        }
        for name in PUBLISHED:
            assert pointers[name]["as_of"].date() == DAY, name
            rows = conn.execute(sa.text(f'SELECT COUNT(*) FROM "{name}"')).scalar()
            assert rows == pointers[name]["rows"] > 0, name
    for model in ("als", "two_stage"):
        assert (airflow.store / "models" / model / "current.json").is_file(), model


def test_a_killed_worker_is_replaced_and_exactly_one_version_is_served(airflow: Airflow) -> None:
    task = airflow.killed["task"]
    assert task["state"] == "success"
    # The first try died with its worker; the retry ran on the other one.
    assert task["try_number"] == 2, task
    records = versions(airflow.project, "ranked_recommendations")
    served = [r for r in records if r["served"]]
    assert len(served) == 1, records
    with airflow.project.connect() as conn:
        pointer = (
            conn.execute(sa.text("SELECT * FROM published_tables WHERE name = 'ranked_recommendations'"))
            .mappings()
            .one()
        )
    assert (
        pointer["version"] == served[0]["version"] == max(r["version"] for r in records if r["published_at"])
    )


def test_a_backfill_leaves_the_served_version(airflow: Airflow) -> None:
    runs = airflow.backfill["runs"]
    assert runs and all(run["state"] == "success" for run in runs), runs
    with airflow.project.connect() as conn:
        after = dict(
            conn.execute(sa.text("SELECT * FROM published_tables WHERE name = 'default_recommendations'"))
            .mappings()
            .one()
        )
    assert after == airflow.backfill["before"]
    recorded = [
        r for r in versions(airflow.project, "default_recommendations") if r["version"] > after["version"]
    ]
    assert len(recorded) == len(runs)
    for record in recorded:
        assert record["as_of"].date() < DAY and not record["served"] and record["rows"] > 0


def test_the_scenario_stays_within_its_time_budget(airflow: Airflow) -> None:
    print("timings (s):", {k: round(v, 1) for k, v in airflow.timings.items()}, airflow.killed)
    assert airflow.timings["total"] < DEADLINE_S
