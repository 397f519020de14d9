"""Logging experiments to MLflow: one run per model, and one run comparing them.

A model run gets

- **params**: the model's pydantic config flattened (``als.factors``), plus the caller's (e.g. the split);
- **metrics**: every column of the evaluation table per segment, ``@`` spelled ``_at_``
  (``ndcg@10`` of segment ``heavy`` → ``ndcg_at_10_heavy``), plus the caller's (e.g. timings);
- **artifacts**: ``model/`` (the folder :meth:`Recommender.save` writes: ``model.json``, the
  state and the user and item encoders), ``plots/<name>.png`` and
  ``evaluation/metrics.csv`` / ``.md``.

The tracker talks to MLflow through an explicit :class:`mlflow.MlflowClient`, so it sets no
global MLflow state. With a database store (the default ``sqlite:///<data_dir>/mlflow.sqlite3``)
experiments it creates keep their artifacts in a folder next to the database (see
:func:`artifact_location`), the same folder ``dev_scripts/run_mlflow_server.sh`` serves.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pandas as pd
from matplotlib.figure import Figure
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus
from pydantic import BaseModel

from recsys.experiments.modelling import ModelRun, plot_comparison
from recsys.storage.object_store import LocalObjectStore

# Folder of the artifacts next to a SQLite store (and under data_dir for the MLflow server script).
ARTIFACTS_FOLDER = "mlartifacts"
MODEL_ARTIFACT_PATH = "model"
# MLflow's limits (mlflow.utils.validation): values per batch and length of a parameter value.
_PARAMS_PER_BATCH = 100
_METRICS_PER_BATCH = 1000
_MAX_PARAM_LENGTH = 6000
_DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


def metric_key(name: str) -> str:
    """A metric or parameter name MLflow accepts: ``@`` becomes ``_at_``, other odd characters ``_``."""
    return re.sub(r"[^0-9A-Za-z_\-./ ]", "_", name.replace("@", "_at_"))


def flatten_metrics(table: pd.DataFrame) -> dict[str, float]:
    """Every cell of an evaluation table as ``<metric>_<segment>`` (``ndcg_at_10_heavy``).

    Parameters
    ----------
    table : DataFrame
        Rows = segments, columns = metrics (:func:`recsys.evaluation.offline.evaluate`).

    Returns
    -------
    dict of str to float
        Missing values are left out.
    """
    return {
        metric_key(f"{column}_{segment}"): float(value)
        for segment, row in table.iterrows()
        for column, value in row.items()
        if pd.notna(value)
    }


def flatten_params(config: BaseModel | Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A (nested) config as flat ``name → text`` pairs; nested fields are joined with dots.

    Parameters
    ----------
    config : BaseModel or mapping
        A pydantic model (e.g. a model's config) or a plain mapping.
    prefix : str
        Put before every name (used for the recursion).

    Returns
    -------
    dict of str to str
        Values as text, cut to MLflow's 6000 characters.
    """
    values = config.model_dump(mode="json") if isinstance(config, BaseModel) else dict(config)
    flat: dict[str, str] = {}
    for name, value in values.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping | BaseModel):
            flat |= flatten_params(value, f"{key}.")
        else:
            flat[metric_key(key)] = str(value)[:_MAX_PARAM_LENGTH]
    return flat


def markdown_table(frame: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub-flavoured Markdown table of ``frame`` with its index (floats rounded to ``digits``)."""
    shown = frame.reset_index(names=[str(name) if name is not None else "" for name in frame.index.names])

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return str(int(value)) if value.is_integer() else f"{value:.{digits}f}"
        return str(value).replace("|", "\\|")

    lines = [
        "| " + " | ".join(str(column) for column in shown.columns) + " |",
        "|" + "---|" * len(shown.columns),
        *("| " + " | ".join(cell(value) for value in row) + " |" for row in shown.itertuples(index=False)),
    ]
    return "\n".join(lines) + "\n"


def is_database_uri(tracking_uri: str) -> bool:
    """Whether ``tracking_uri`` names a database store (SQLite, PostgreSQL...) rather than a server."""
    return urlsplit(tracking_uri).scheme.split("+")[0].lower() in _DATABASE_SCHEMES


def artifact_location(tracking_uri: str, experiment: str, fallback_root: Path | None = None) -> str | None:
    """Where a new experiment keeps its artifacts, or ``None`` to let a tracking server decide.

    Parameters
    ----------
    tracking_uri : str
        The MLflow tracking URI.
    experiment : str
        Name of the experiment (becomes a folder name, odd characters replaced).
    fallback_root : Path, optional
        Artifact root for database stores other than a SQLite file; defaults to
        ``./mlartifacts``.

    Returns
    -------
    str or None
        ``<folder of the SQLite file>/mlartifacts/<experiment>`` for ``sqlite:///path``,
        ``<fallback_root>/<experiment>`` for other database URIs and ``None`` for servers.
    """
    if not is_database_uri(tracking_uri):
        return None
    folder = re.sub(r"[^0-9A-Za-z_.-]", "_", experiment)
    sqlite = tracking_uri.lower().startswith("sqlite") and ":///" in tracking_uri
    database = tracking_uri.split(":///", 1)[1] if sqlite else ""
    if database and database != ":memory:":
        root = Path(database).resolve().parent / ARTIFACTS_FOLDER
    else:
        root = (fallback_root or Path(ARTIFACTS_FOLDER)).resolve()
    return (root / folder).as_uri()


class ExperimentTracker:
    """Logs runs into one MLflow experiment, created on first use.

    Parameters
    ----------
    tracking_uri : str
        MLflow tracking URI (``settings.experiments_uri``: a server URL or a database URI).
    experiment : str
        Experiment name (``settings.mlflow_experiment``).
    artifact_root : Path, optional
        Artifact root of a new experiment on a non-SQLite database store (see
        :func:`artifact_location`); ignored for servers and for existing experiments.
    source : str, optional
        Recorded as the runs' ``mlflow.source.name`` tag (e.g. ``research.ipynb``).

    Raises
    ------
    ValueError
        If the experiment exists but was deleted, or was created through a tracking server
        (its artifacts are then reachable only through that server) and ``tracking_uri``
        names the database behind it.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        artifact_root: Path | None = None,
        source: str | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.source = source
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            location = artifact_location(tracking_uri, experiment, artifact_root)
            self.experiment_id: str = self.client.create_experiment(experiment, artifact_location=location)
        elif found.lifecycle_stage != "active":
            raise ValueError(
                f"MLflow experiment {experiment!r} at {tracking_uri} is deleted: restore it "
                "or choose another name (RECSYS_MLFLOW_EXPERIMENT)"
            )
        elif found.artifact_location.startswith("mlflow-artifacts:") and is_database_uri(tracking_uri):
            raise ValueError(
                f"MLflow experiment {experiment!r} keeps its artifacts behind a tracking server "
                f"({found.artifact_location}): log through that server "
                "(RECSYS_MLFLOW_TRACKING_URI=http://host:port) rather than to the database directly"
            )
        else:
            self.experiment_id = found.experiment_id

    @contextmanager
    def run(self, name: str, tags: Mapping[str, str] | None = None) -> Iterator[str]:
        """Open a run and yield its id; it ends ``FINISHED``, or ``FAILED`` if the block raises."""
        all_tags = dict(tags or {})
        if self.source is not None:
            all_tags.setdefault("mlflow.source.name", self.source)
        run_id: str = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags).info.run_id
        try:
            yield run_id
        except BaseException:
            self.client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
            raise
        self.client.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))

    def log_values(
        self, run_id: str, params: Mapping[str, Any] | None = None, metrics: Mapping[str, float] | None = None
    ) -> None:
        """Log parameters (as text) and metrics (step 0) in as few batches as MLflow allows."""
        param_list = [Param(metric_key(k), str(v)[:_MAX_PARAM_LENGTH]) for k, v in (params or {}).items()]
        now = int(time.time() * 1000)
        metric_list = [Metric(metric_key(k), float(v), now, 0) for k, v in (metrics or {}).items()]
        for start in range(0, len(param_list), _PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=param_list[start : start + _PARAMS_PER_BATCH])
        for start in range(0, len(metric_list), _METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=metric_list[start : start + _METRICS_PER_BATCH])

    def log_table(self, run_id: str, frame: pd.DataFrame, stem: str) -> None:
        """Log a table as ``<stem>.csv`` and ``<stem>.md``."""
        self.client.log_text(run_id, frame.to_csv(), f"{stem}.csv")
        self.client.log_text(run_id, markdown_table(frame), f"{stem}.md")

    def log_figures(self, run_id: str, figures: Mapping[str, Figure]) -> None:
        """Log figures as ``plots/<name>.png``."""
        for name, figure in figures.items():
            self.client.log_figure(run_id, figure, f"plots/{name}.png")

    def log_model_run(
        self,
        run: ModelRun,
        params: Mapping[str, Any] | None = None,
        figures: Mapping[str, Figure] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Log one experiment as its own run (see the module docstring for what is logged).

        Parameters
        ----------
        run : ModelRun
            The experiment: fitted model, evaluation table and timings.
        params : mapping, optional
            More parameters (e.g. :func:`recsys.experiments.modelling.split_params`).
        figures : mapping of str to Figure, optional
            More plots; the per-segment metrics plot is always logged as ``segment_metrics``.
        tags : mapping, optional
            More run tags; ``model_kind`` is always set.

        Returns
        -------
        str
            The MLflow run id.
        """
        with self.run(run.name, {"model_kind": run.model.kind, **(tags or {})}) as run_id:
            self.log_values(
                run_id,
                params={"model.kind": run.model.kind, **flatten_params(run.model.config), **(params or {})},
                metrics={**flatten_metrics(run.table), **run.timings},
            )
            with tempfile.TemporaryDirectory(prefix="recsys-model-") as folder:
                run.model.save(LocalObjectStore(Path(folder)), MODEL_ARTIFACT_PATH)
                saved = Path(folder) / MODEL_ARTIFACT_PATH
                self.client.log_artifacts(run_id, str(saved), MODEL_ARTIFACT_PATH)
            self.log_table(run_id, run.table, "evaluation/metrics")
            self.log_figures(run_id, {"segment_metrics": run.figure(), **(figures or {})})
        return run_id

    def log_comparison(
        self,
        comparison: pd.DataFrame,
        run_ids: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        metric: str = "ndcg@10",
        name: str = "comparison",
    ) -> str:
        """Log a comparison of models as one run.

        Metrics are ``<model>/<metric>_<segment>`` (``als/ndcg_at_10_all``); the table is logged
        as ``evaluation/comparison.csv`` / ``.md`` and the bar plot of ``metric`` as
        ``plots/comparison_<metric>.png``. The tag ``best_model`` names the model with the best
        ``metric`` over all users, and ``run_id.<model>`` links each model's own run.

        Parameters
        ----------
        comparison : DataFrame
            :func:`recsys.experiments.modelling.comparison_table` output.
        run_ids : mapping of str to str, optional
            Model name → its MLflow run id.
        params : mapping, optional
            Parameters shared by the compared runs (e.g. the split).
        metric : str
            Metric that is plotted and picks the best model.
        name : str
            Run name.

        Returns
        -------
        str
            The MLflow run id.
        """
        overall = comparison.xs("all", level="segment")[metric]
        tags = {"best_model": str(overall.idxmax()), **{f"run_id.{m}": r for m, r in (run_ids or {}).items()}}
        metrics = {
            f"{model}/{key}": value
            for model in comparison.index.get_level_values("model").unique()
            for key, value in flatten_metrics(comparison.loc[model]).items()
        }
        with self.run(name, tags) as run_id:
            self.log_values(run_id, params=params, metrics=metrics)
            self.log_table(run_id, comparison, "evaluation/comparison")
            figure = plot_comparison(comparison, metric)
            self.log_figures(run_id, {f"comparison_{metric_key(metric)}": figure})
        return run_id
