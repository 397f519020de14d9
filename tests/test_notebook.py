"""``research.ipynb`` runs headless, top to bottom, and logs the expected MLflow runs; its
executed copy ``research.executed.ipynb`` shows the same cells with their outputs.

The notebook is executed with papermill (``recsys.experiments.notebook``, what ``make notebook``
runs) on a kernel spec that points at the running interpreter (the project's venv), on the
``tiny`` twin in a temporary data folder and with MLflow tracking into a temporary SQLite store.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from mlflow import MlflowClient

from recsys.experiments.notebook import EXECUTED, INJECTED_TAG, NOTEBOOK, execute
from tests.experiments.helpers import MODEL_FILES, artifact_paths

EXPERIMENT = "notebook_test"
MODELS = ("popular", "als", "i2i", "two_stage")
SEGMENTS = ("cold", "light", "heavy", "all")
# The executed copy is committed: it stays small enough to diff and to open in a browser.
EXECUTED_MAX_BYTES = 2_000_000


@dataclass(frozen=True)
class Executed:
    """The executed notebook, how long it took and where it logged."""

    notebook: nbformat.NotebookNode
    seconds: float
    tracking_uri: str
    data_dir: Path


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Executed]:
    """Run the notebook once for all tests of this module."""
    tmp = tmp_path_factory.mktemp("notebook")
    data_dir = tmp / "data"
    tracking_uri = f"sqlite:///{tmp / 'mlflow' / 'mlflow.sqlite3'}"
    (tmp / "mlflow").mkdir()
    started = time.perf_counter()
    notebook = execute(
        tmp / "executed.ipynb",
        tmp,  # no .env in the working folder: the parameters and defaults alone decide
        {"SCALE": "tiny", "DATA_DIR": str(data_dir), "TRACKING_URI": tracking_uri, "EXPERIMENT": EXPERIMENT},
    )
    seconds = time.perf_counter() - started
    yield Executed(notebook, seconds, tracking_uri, data_dir)


def test_notebook_in_git_has_no_outputs_and_a_parameters_cell() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    tagged = [cell for cell in code if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1
    for name in ("SCALE", "DATA_DIR", "DATABASE_URL", "TRACKING_URI", "EXPERIMENT"):
        assert f"{name} = " in tagged[0].source


def images(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    outputs = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    return [output for output in outputs if "image/png" in output.get("data", {})]


def test_executed_copy_shows_the_notebook_as_it_is_with_its_outputs() -> None:
    source = nbformat.read(NOTEBOOK, as_version=4)
    executed = nbformat.read(EXECUTED, as_version=4)
    kept = [cell for cell in executed.cells if INJECTED_TAG not in cell.metadata.get("tags", [])]
    assert [(cell.cell_type, cell.source) for cell in kept] == [
        (cell.cell_type, cell.source) for cell in source.cells
    ], f"{EXECUTED.name} is out of date with {NOTEBOOK.name}: run `make notebook`"
    code = [cell for cell in kept if cell.cell_type == "code"]
    # Run top to bottom in one go, without an error.
    assert [cell.execution_count for cell in code] == sorted(c.execution_count for c in code)
    assert all(cell.execution_count is not None for cell in code)
    assert not [o for cell in code for o in cell.outputs if o.output_type == "error"]
    assert len(images(executed)) >= 12
    assert EXECUTED.stat().st_size < EXECUTED_MAX_BYTES
    # Nothing of the machine it ran on: relative paths only, no timings.
    text = EXECUTED.read_text()
    assert "/tmp/" not in text and str(Path.home()) not in text and '"start_time"' not in text


def test_notebook_runs_on_the_tiny_twin_and_shows_its_plots(executed: Executed) -> None:
    assert executed.seconds < 120, f"the notebook took {executed.seconds:.0f} s on the tiny twin"
    outputs = [output for cell in executed.notebook.cells for output in cell.get("outputs", [])]
    assert not [output for output in outputs if output.output_type == "error"]
    assert len(images(executed.notebook)) >= 12  # seven EDA plots, one per model, the comparison
    text = "".join(output.get("text", "") for output in outputs)
    assert "generated the tiny synthetic twin" in text  # the data folder started empty
    assert (executed.data_dir / "recsys.sqlite3").is_file()


def test_notebook_logs_one_run_per_model_and_a_comparison(executed: Executed) -> None:
    client = MlflowClient(tracking_uri=executed.tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {*MODELS, "comparison"}
    assert all(run.info.status == "FINISHED" for run in runs.values())

    for name in MODELS:
        run = runs[name]
        assert run.data.tags["mlflow.source.name"] == "research.ipynb"
        assert run.data.params["model.kind"] == name
        assert "split.test_start" in run.data.params
        for segment in SEGMENTS:
            for k in (5, 10):
                for metric in ("precision", "recall", "ndcg", "map", "novelty"):
                    assert f"{metric}_at_{k}_{segment}" in run.data.metrics, (name, metric, k, segment)
        assert 0.0 <= run.data.metrics["ndcg_at_10_all"] <= 1.0
        artifacts = artifact_paths(client, run.info.run_id)
        assert (
            MODEL_FILES
            | {
                "plots/segment_metrics.png",
                "evaluation/metrics.csv",
                "evaluation/metrics.md",
            }
            <= artifacts
        ), (name, artifacts)
    # The two-stage model carries its candidate models, each with its encoders.
    two_stage = artifact_paths(client, runs["two_stage"].info.run_id)
    for part in ("als", "i2i", "popular"):
        assert {f"model/{part}/users.npz", f"model/{part}/items.npz", f"model/{part}/model.json"} <= two_stage
    assert "als.factors" in runs["two_stage"].data.params

    comparison = runs["comparison"]
    for name in MODELS:
        assert comparison.data.tags[f"run_id.{name}"] == runs[name].info.run_id
        assert comparison.data.metrics[f"{name}/ndcg_at_10_all"] == runs[name].data.metrics["ndcg_at_10_all"]
    assert comparison.data.tags["best_model"] in MODELS
    assert artifact_paths(client, comparison.info.run_id) == {
        "evaluation/comparison.csv",
        "evaluation/comparison.md",
        "plots/comparison_ndcg_at_10.png",
    }
