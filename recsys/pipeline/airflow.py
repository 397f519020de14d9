"""Wiring of the pipeline stages into Airflow DAGs, shared by the seven files in ``airflow_service/dags``.

A DAG file only names its steps and schedule and calls :func:`pipeline_dag`. Every task runs a
step through :func:`run_step`, which calls the same stage functions as ``recsys pipeline run``
with the run's moment: the DAG run's data interval end (naive UTC), so a re-run of the same
date rebuilds the same tables.

This module is imported by the DAG processor every time it parses a DAG file, so at import
time it loads only the standard library and ``airflow.sdk``; the stages (pandas, models,
database drivers) are imported inside the tasks.

Backfills: a table published for an older moment than the one served is recorded but does not
replace it (``recsys.publishing.tables``); a model trained for an older moment than the one in
service is saved but not promoted (``recsys.publishing.registry``); DAG 1 keeps prepared tables
of a later moment (``recsys.data.prepare``). Trigger the run or the backfill with the DAG param
``promote_backfill`` set to true (``--dag-run-conf '{"promote_backfill": true}'``) to serve what
it builds.

Settings come from the ``RECSYS_*`` environment like everywhere else, except that the database
URL may come from an Airflow connection: set ``RECSYS_AIRFLOW_DB_CONN_ID`` to a Postgres
connection id and the tasks use that connection instead of ``RECSYS_DATABASE_URL``.

Telegram: when ``RECSYS_TELEGRAM_TOKEN`` and ``RECSYS_TELEGRAM_CHAT_ID`` are set, a successful
DAG run and every failed task send a message to the chat (``sendMessage`` of the Bot API at
``RECSYS_TELEGRAM_API_BASE_URL``). A notification that cannot be sent is logged, never raised.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk import DAG, Param, chain, dag, get_current_context, task

if TYPE_CHECKING:
    from recsys.config import Settings
    from recsys.pipeline.stages import RunContext

logger = logging.getLogger(__name__)

# Fixed and in the past: with catchup=False the scheduler starts from the latest interval. It is
# the start of the RetailRocket data because a run gets no tasks for dates before it, and runs
# for the data's own period (backfills, tests on the twin) must work.
START_DATE = datetime(2015, 5, 1, tzinfo=UTC)
TAGS = ("recsys",)
# Environment variable naming the Airflow connection that holds the project database.
DB_CONN_ID_VARIABLE = "RECSYS_AIRFLOW_DB_CONN_ID"
TELEGRAM_TIMEOUT_S = 10.0
# Telegram rejects messages over 4096 characters; long tracebacks are cut well before that.
MAX_ERROR_CHARS = 1500
# DAG param: serve what the run publishes even if older than the served tables.
PROMOTE_BACKFILL = "promote_backfill"


# -- steps -------------------------------------------------------------------------------------
def _load_raw_files(ctx: RunContext) -> dict[str, Any]:
    """Extract: load the raw files from the raw data folder into the raw tables (replacing them).

    Where another process keeps the raw tables up to date and the folder holds none of the
    files, the step leaves the tables as they are (a folder with only some files still fails,
    naming the missing one).
    """
    import sqlalchemy as sa

    from recsys.data.loader import load_raw_data
    from recsys.data.schema import RAW_TABLES
    from recsys.data.sources import candidate_paths

    names = [name for table in RAW_TABLES for name in table.files]
    no_files = not any(p.is_file() for name in names for p in candidate_paths(ctx.settings.raw_dir, name))
    tables_exist = all(sa.inspect(ctx.engine).has_table(table.name) for table in RAW_TABLES)
    if no_files and tables_exist:
        logger.info(
            "no raw files in %s: keeping the raw tables already in the database", ctx.settings.raw_dir
        )
        return {"skipped": f"no raw files in {ctx.settings.raw_dir}; raw tables kept"}
    reports = load_raw_data(ctx.engine, ctx.settings.raw_dir)
    return {r.table: {"rows": r.rows_loaded, "duplicates_dropped": r.duplicates_dropped} for r in reports}


def _check_als_model(ctx: RunContext) -> dict[str, Any]:
    """Fail at once, without retries, when no ALS model has been promoted yet."""
    from airflow.sdk.exceptions import AirflowFailException

    from recsys.models.base import ModelError
    from recsys.pipeline.stages import ALS_MODEL, ALS_STAGE_HINT

    try:
        promoted = ctx.registry.require_current(ALS_MODEL, stage_hint=ALS_STAGE_HINT)
    except ModelError as exc:
        # Retrying cannot help: another DAG has to train the model first.
        raise AirflowFailException(str(exc)) from exc
    return {"model": ALS_MODEL, "version": promoted.version, "promoted_at": promoted.promoted_at}


# Steps a DAG may run besides the seven stages of recsys.pipeline.stages.STAGES.
EXTRA_STEPS: dict[str, Callable[[RunContext], dict[str, Any]]] = {
    "load_raw_data": _load_raw_files,
    "check_als_model": _check_als_model,
}


def airflow_settings() -> Settings:
    """Project settings read afresh for a task, with the database from an Airflow connection if set.

    Returns
    -------
    Settings
        ``RECSYS_*`` settings; when ``RECSYS_AIRFLOW_DB_CONN_ID`` names a connection, its URL
        replaces ``RECSYS_DATABASE_URL``.
    """
    from recsys.config import Settings

    settings = Settings()
    conn_id = os.environ.get(DB_CONN_ID_VARIABLE)
    if conn_id:
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        # The hook would pick psycopg 3 when it is installed; the loaders use psycopg2's COPY.
        hook = PostgresHook(postgres_conn_id=conn_id, sqlalchemy_scheme="postgresql+psycopg2")
        url = hook.sqlalchemy_url.render_as_string(hide_password=False)
        settings = settings.model_copy(update={"database_url": url})
    return settings


def run_step(
    name: str, moment: datetime, settings: Settings | None = None, promote_backfill: bool = False
) -> dict[str, Any]:
    """Run one step (a stage or an extra step) for a moment and return its JSON summary.

    Parameters
    ----------
    name : str
        A key of ``STAGES`` or of :data:`EXTRA_STEPS`.
    moment : datetime
        The run's moment (naive UTC).
    settings : Settings, optional
        Defaults to :func:`airflow_settings`.
    promote_backfill : bool
        Serve the tables the step publishes even if they describe an older moment than the
        served ones.

    Returns
    -------
    dict
        The step's summary, made JSON-safe so that it fits XCom.
    """
    from recsys.pipeline.stages import STAGES, RunContext

    step = EXTRA_STEPS.get(name) or STAGES.get(name)
    if step is None:
        raise KeyError(f"unknown step {name!r}; steps are: {', '.join([*EXTRA_STEPS, *STAGES])}")
    ctx = RunContext(settings or airflow_settings(), moment, promote_backfill=promote_backfill)
    try:
        summary = step(ctx)
    finally:
        # Only if the step opened it: tasks may share a process (dag.test), so pools are closed.
        if "engine" in ctx.__dict__:
            ctx.engine.dispose()
    return dict(json.loads(json.dumps(summary, default=_json_default)))


def _json_default(value: Any) -> Any:
    # numpy scalars (metrics, counts) become Python numbers; anything else (datetimes) its text.
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        return value.item()
    return str(value)


def run_moment(context: Mapping[str, Any]) -> datetime:
    """The moment a DAG run describes, as naive UTC.

    The data interval end (with the default cron timetable, the time the run was scheduled
    for); manual runs without a logical date fall back to when they were triggered.
    """
    moment = context.get("data_interval_end") or context.get("logical_date") or context["dag_run"].run_after
    utc = moment.astimezone(UTC)
    # A plain datetime, not pendulum's subclass: it goes into SQL parameters and pandas.
    return datetime.combine(utc.date(), utc.time())


# -- DAG factory -------------------------------------------------------------------------------
def _step_task(name: str) -> Any:
    """A TaskFlow task with id ``name`` that runs the step for the DAG run's moment."""

    @task(task_id=name)
    def run() -> dict[str, Any]:
        context = get_current_context()
        promote = bool(context["params"].get(PROMOTE_BACKFILL, False))
        return run_step(name, run_moment(context), promote_backfill=promote)

    return run()


def pipeline_dag(
    dag_id: str,
    *,
    schedule: str,
    steps: Sequence[str],
    tags: Sequence[str] = (),
    doc_md: str | None = None,
) -> DAG:
    """Build a DAG running ``steps`` one after the other.

    Parameters
    ----------
    dag_id : str
        The DAG's id (also its file name).
    schedule : str
        Cron expression, UTC.
    steps : sequence of str
        Stage names (``recsys pipeline list``) or :data:`EXTRA_STEPS`, in run order; each
        becomes a task of that id.
    tags : sequence of str
        Tags shown in the UI, after ``recsys``.
    doc_md : str, optional
        Documentation shown in the UI (the DAG file's docstring).

    Returns
    -------
    DAG
        Param ``promote_backfill`` (default false), one run at a time (each published table
        has one writer), no catch-up, Telegram callbacks for the run's success and every
        task's failure.
    """

    @dag(
        dag_id=dag_id,
        schedule=schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        tags=[*TAGS, *tags],
        doc_md=doc_md,
        # Retries come from Airflow's [core] default_task_retries, set by the deployment.
        default_args={"owner": "recsys", "on_failure_callback": notify_failure},
        on_success_callback=notify_success,
        params={
            PROMOTE_BACKFILL: Param(
                False,
                type="boolean",
                description=(
                    "Serve the tables this run publishes even if they describe an older moment than "
                    "the served ones (by default a backfill only records its versions)."
                ),
            )
        },
    )
    def pipeline() -> None:
        chain(*(_step_task(name) for name in steps))

    return pipeline()


# -- Telegram ----------------------------------------------------------------------------------
def notify_success(context: Mapping[str, Any]) -> None:
    """DAG success callback: report the run to Telegram (if configured)."""
    _notify(context, failed=False)


def notify_failure(context: Mapping[str, Any]) -> None:
    """Task failure callback: report the task and its error to Telegram (if configured)."""
    _notify(context, failed=True)


def _notify(context: Mapping[str, Any], failed: bool) -> None:
    try:
        send_telegram(telegram_message(context, failed))
    except Exception:
        # A notification must never fail the task or the run it reports on.
        logger.exception("could not build or send the Telegram notification")


def _seconds(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return "unknown"
    return f"{((end or datetime.now(UTC)) - start).total_seconds():.1f} s"


def telegram_message(context: Mapping[str, Any], failed: bool) -> str:
    """The text of a notification: DAG, run, task, duration and (on failure) the error.

    Parameters
    ----------
    context : mapping
        The Airflow callback context: a task's on failure, the DAG run's (with its last task)
        on success.
    failed : bool
        Whether a task failed.
    """
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    dag_id = getattr(context.get("dag"), "dag_id", None) or getattr(dag_run, "dag_id", "?")
    task_id = getattr(ti, "task_id", "-")
    lines = [f"recsys: DAG {dag_id} " + ("FAILED" if failed else "succeeded")]
    lines.append(f"run: {context.get('run_id') or getattr(dag_run, 'run_id', '?')}")
    if failed:
        lines.append(f"task: {task_id}")
        duration = _seconds(getattr(ti, "start_date", None), getattr(ti, "end_date", None))
        error = context.get("exception") or context.get("reason") or "unknown"
        text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)
        lines += [f"duration: {duration}", f"error: {text[:MAX_ERROR_CHARS]}"]
    else:
        lines.append(f"last task: {task_id}")
        duration = _seconds(getattr(dag_run, "start_date", None), getattr(dag_run, "end_date", None))
        lines.append(f"duration: {duration}")
    return "\n".join(lines)


def send_telegram(text: str, settings: Settings | None = None) -> bool:
    """Send ``text`` to the configured chat; returns whether a message was delivered.

    Does nothing (returns False) unless both the bot token and the chat id are set. Errors
    are logged, with the token masked (it is part of the URL), and not raised.
    """
    if settings is None:
        from recsys.config import Settings

        settings = Settings()
    # An empty variable (as left in a copied .env) counts as unset.
    token = settings.telegram_token.get_secret_value() if settings.telegram_token else ""
    if not token or not settings.telegram_chat_id:
        return False
    import requests

    url = f"{settings.telegram_api_base_url.rstrip('/')}/bot{token}/sendMessage"
    try:
        response = requests.post(
            url, json={"chat_id": settings.telegram_chat_id, "text": text}, timeout=TELEGRAM_TIMEOUT_S
        )
        response.raise_for_status()
    except requests.RequestException as exc:
        logger.warning("Telegram notification not sent: %s", str(exc).replace(token, "***"))
        return False
    return True
