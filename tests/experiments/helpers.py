"""Helpers shared by the MLflow tests (here and in ``tests/test_notebook.py``)."""

from __future__ import annotations

from mlflow import MlflowClient

MODEL_FILES = {"model/model.json", "model/state.npz", "model/users.npz", "model/items.npz"}


def artifact_paths(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    """Every artifact file of a run, recursively."""
    found: set[str] = set()
    for entry in client.list_artifacts(run_id, path):
        found |= artifact_paths(client, run_id, entry.path) if entry.is_dir else {entry.path}
    return found
