"""The seven DAG files: they load, are wired as documented and stay cheap to parse."""

from __future__ import annotations

import ast
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from recsys.pipeline.airflow import EXTRA_STEPS, START_DATE, notify_failure, notify_success
from recsys.pipeline.stages import STAGES
from tests.airflow.conftest import DAGS_FOLDER

# dag_id: (schedule, tasks in order, tags besides "recsys")
EXPECTED: dict[str, tuple[str, list[str], set[str]]] = {
    "1_prepare_dataset": ("0 22 * * *", ["load_raw_data", "prepare_dataset"], {"data"}),
    "2_train_als_model": ("15 22 25 * *", ["train_als_model"], {"model", "als"}),
    "3_prepare_default_recommendations": (
        "30 22 * * *",
        ["prepare_default_recommendations"],
        {"recommendations"},
    ),
    "4_prepare_personalized_recommendations": (
        "45 22 * * *",
        ["check_als_model", "prepare_personalized_recommendations"],
        {"recommendations", "als"},
    ),
    "5_prepare_i2i_recommendations": (
        "0 23 * * *",
        ["prepare_i2i_recommendations"],
        {"recommendations", "i2i"},
    ),
    "6_prepare_similar_items": (
        "0 23 * * *",
        ["prepare_similar_items"],
        {"recommendations", "similar_items"},
    ),
    "7_train_ranking_model_and_rank_recommendations": (
        "45 23 25 * *",
        ["train_ranking_model_and_rank_recommendations"],
        {"model", "ranking", "recommendations"},
    ),
}
# What a DAG file may import at its top level: Airflow's SDK and the import-light wiring module.
ALLOWED_IMPORTS = {"__future__", "airflow.sdk", "recsys.pipeline.airflow"}
# Modules that parsing the DAG folder must not load (the DAG processor parses every file often).
HEAVY_MODULES = [
    "pandas",
    "numpy",
    "scipy",
    "pyarrow",
    "implicit",
    "catboost",
    "sklearn",
    "boto3",
    "mlflow",
    "recsys.pipeline.stages",
    "recsys.data.loader",
    "recsys.models.base",
]
DAG_FILES = sorted(DAGS_FOLDER.glob("*.py"))


@pytest.fixture(scope="module")
def dagbag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_FOLDER))


def test_every_dag_file_loads(dagbag: Any) -> None:
    assert dagbag.import_errors == {}
    assert set(dagbag.dags) == set(EXPECTED)
    # One DAG per file, named after it.
    assert sorted(path.stem for path in DAG_FILES) == sorted(EXPECTED)
    for dag_id, dag in dagbag.dags.items():
        assert Path(dag.fileloc).stem == dag_id


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_dag_is_wired_as_documented(dagbag: Any, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    schedule, tasks, tags = EXPECTED[dag_id]
    assert dag.schedule == schedule
    # Cron in UTC; the default timetable fires at the scheduled time with data interval end = that time.
    assert type(dag.timetable).__name__ == "CronTriggerTimetable"
    assert (dag.timetable.expression, str(dag.timetable.timezone)) == (schedule, "UTC")
    assert set(dag.tags) == {"recsys", *tags}
    assert dag.max_active_runs == 1
    assert dag.catchup is False
    assert dag.start_date == START_DATE
    assert dag.doc_md
    # Tasks run one after the other in the listed order.
    assert [task.task_id for task in dag.topological_sort()] == tasks
    for upstream, downstream in itertools.pairwise(tasks):
        assert dag.get_task(downstream).upstream_task_ids == {upstream}
    callbacks = dag.on_success_callback
    assert notify_success in (callbacks if isinstance(callbacks, list) else [callbacks])
    for task in dag.tasks:
        assert notify_failure in task.on_failure_callback


def test_every_stage_has_exactly_one_dag() -> None:
    steps = [step for _, tasks, _ in EXPECTED.values() for step in tasks]
    assert sorted(s for s in steps if s in STAGES) == sorted(STAGES)
    assert set(steps) <= set(STAGES) | set(EXTRA_STEPS)


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_top_level_is_light(path: Path) -> None:
    """Only allowed imports, and no statement besides the docstring, imports and ``dag = ...``."""
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the docstring
        else:
            assert isinstance(node, ast.Assign), f"{path.name}: top-level {type(node).__name__}"
            assert [ast.unparse(t) for t in node.targets] == ["dag"]
            assert isinstance(node.value, ast.Call) and ast.unparse(node.value.func) == "pipeline_dag"
            continue
        assert set(names) <= ALLOWED_IMPORTS, f"{path.name} imports {names} at top level"


def test_parsing_the_dags_loads_no_heavy_module() -> None:
    """The wiring module imports the stages only inside tasks; parse in a fresh interpreter to see."""
    code = (
        "import json, sys\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(DAGS_FOLDER)!r})\n"
        f"print(json.dumps([len(bag.dags), [m for m in {HEAVY_MODULES!r} if m in sys.modules]]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy(), check=False
    )
    assert result.returncode == 0, result.stderr
    n_dags, loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert n_dags == 7
    assert loaded == []
