"""The notebook's settings (the project settings with parameters on top) and prepared tables on demand.

:func:`ensure_dataset` makes sure the prepared tables exist before the experiments read them:
whatever is missing is built, each step only when needed: the synthetic twin is generated
when the raw folder has no RetailRocket files, the raw tables are loaded when they are empty,
and ``items`` / ``interactions`` are prepared.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recsys.config import Settings
from recsys.data.loader import load_raw_data
from recsys.data.prepare import INTERACTIONS, ITEMS, prepare_datasets
from recsys.data.schema import RAW_TABLES
from recsys.data.sources import candidate_paths


def notebook_settings(**overrides: Any) -> Settings:
    """Project settings (environment and ``.env``) with the given values on top.

    Parameters
    ----------
    **overrides
        Settings fields, e.g. ``data_dir`` or ``database_url``; ``None`` values are ignored,
        so notebook parameters that default to ``None`` keep the configured value.

    Returns
    -------
    Settings
    """
    return Settings(**{name: value for name, value in overrides.items() if value is not None})


def has_rows(engine: Engine, table: str) -> bool:
    """Whether ``table`` exists and holds at least one row."""
    if not sa.inspect(engine).has_table(table):
        return False
    with engine.connect() as conn:
        first = conn.execute(sa.select(sa.literal(1)).select_from(sa.table(table)).limit(1)).first()
    return first is not None


def raw_files_present(raw_dir: Path) -> bool:
    """Whether every RetailRocket file (plain, gzipped or zipped) is in ``raw_dir``."""
    names = [name for table in RAW_TABLES for name in table.files]
    return all(any(path.is_file() for path in candidate_paths(raw_dir, name)) for name in names)


def ensure_dataset(
    settings: Settings,
    engine: Engine,
    scale: str = "tiny",
    seed: int = 42,
    progress: Callable[[str], None] | None = None,
) -> list[str]:
    """Build whatever is missing for the prepared tables ``items`` and ``interactions``.

    Parameters
    ----------
    settings : Settings
        Raw data folder, event weights and session gap.
    engine : Engine
        The project database.
    scale : str
        Scale of the synthetic twin generated when ``settings.raw_dir`` has no raw files.
    seed : int
        Seed of that twin.
    progress : callable, optional
        Called with a line for every step taken.

    Returns
    -------
    list of str
        The steps taken, in order; empty when the prepared tables were already there.
    """
    if has_rows(engine, ITEMS.name) and has_rows(engine, INTERACTIONS.name):
        return []
    steps: list[str] = []

    def step(message: str) -> None:
        steps.append(message)
        if progress is not None:
            progress(message)

    if not all(has_rows(engine, table.name) for table in RAW_TABLES):
        if not raw_files_present(settings.raw_dir):
            from recsys.data.synthetic import generate_twin

            summary = generate_twin(settings.raw_dir, scale=scale, seed=seed)
            step(f"generated the {summary.scale} synthetic twin (seed {seed}) in {settings.raw_dir}")
        reports = load_raw_data(engine, settings.raw_dir)
        step("loaded " + ", ".join(f"{r.table} ({r.rows_loaded:,} rows)" for r in reports))
    # Asked for explicitly: prepared as of the data's end even if newer tables were prepared.
    report = prepare_datasets(engine, settings.event_weights, settings.session_gap_minutes, allow_older=True)
    step(
        f"prepared {report.n_items:,} items and {report.n_interactions:,} interactions "
        f"of {report.n_users:,} users as of {report.as_of:%Y-%m-%d %H:%M} UTC"
    )
    return steps
