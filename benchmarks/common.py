"""Pieces the benchmark scripts share: recording results, a scratch PostgreSQL database, kept stores."""

from __future__ import annotations

import argparse
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from recsys.models.als import ALSModel
from recsys.publishing.registry import ModelRegistry
from recsys.storage.object_store import open_object_store

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def record(file_name: str, lines: list[str]) -> None:
    """Append ``lines`` as a section of ``results/<file_name>`` and print them."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    with (RESULTS_DIR / file_name).open("a", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def add_postgres_argument(parser: argparse.ArgumentParser) -> None:
    """``--postgres-url``: the server the benchmark creates its scratch database on."""
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "RECSYS_BENCH_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
        ),
    )


@contextmanager
def scratch_database(server_url: str, prefix: str, keep: bool = False) -> Iterator[str]:
    """A new database on the server of ``server_url``; dropped afterwards unless ``keep``."""
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        if not keep:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def add_store_argument(parser: argparse.ArgumentParser) -> None:
    """``--store LABEL=URL`` (repeatable): object stores of kept pipeline runs, e.g. ``x1=/tmp/keep/x1/object_store``."""
    parser.add_argument("--store", action="append", required=True, help="LABEL=object store URL or folder")


def labelled_stores(items: list[str]) -> dict[str, str]:
    """``--store`` values as ``{label: url}``, in the order given."""
    return dict(item.split("=", 1) for item in items)


def promoted_als(store_url: str) -> ALSModel:
    """The ALS model in service in an object store."""
    _, model = ModelRegistry(open_object_store(store_url)).load_current("als")
    assert isinstance(model, ALSModel)
    return model
