"""The whole pipeline on PostgreSQL: time and peak RSS of every stage, row counts of every table.

Each stage runs as ``recsys pipeline run --stage NAME`` in its own process (as an Airflow
task would), so its peak RSS is its own. Raw files are loaded first (``recsys data load``).

Usage::

    .venv/bin/python benchmarks/pipeline_benchmark.py --raw-dir /tmp/twin_full [--scale full]

Appends a Markdown section to ``benchmarks/results/pipeline.md``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from common import add_postgres_argument, record, scratch_database

from recsys.data.synthetic import generate_twin
from recsys.pipeline.stages import STAGES

ROOT = Path(__file__).resolve().parents[1]
RECSYS = Path(sys.executable).parent / "recsys"


def timed(command: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Run a command; return seconds and its peak RSS in bytes (GNU time)."""
    with tempfile.NamedTemporaryFile("r") as report:
        started = time.perf_counter()
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", report.name, *command], env=env, check=True)
        seconds = time.perf_counter() - started
        return seconds, int(report.read().strip().splitlines()[-1]) * 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--raw-dir", type=Path, required=True)
    parser.add_argument("--scale", default="full")
    parser.add_argument(
        "--moment", default="2015-09-18T03:00:00", help="the run's moment (data interval end)"
    )
    parser.add_argument(
        "--keep", type=Path, help="keep the database; write its URL and the object store here"
    )
    add_postgres_argument(parser)
    args = parser.parse_args()
    if not (args.raw_dir / "events.csv").exists():
        generate_twin(args.raw_dir, scale=args.scale)

    rows: list[tuple[str, float, int]] = []
    keep = args.keep is not None
    with (
        scratch_database(args.postgres_url, "recsys_pipeline", keep=keep) as db_url,
        tempfile.TemporaryDirectory() as scratch,
    ):
        store = str(args.keep / "object_store") if args.keep else scratch
        env = {
            **os.environ,
            "OPENBLAS_NUM_THREADS": "1",
            "RECSYS_DATABASE_URL": db_url,
            "RECSYS_OBJECT_STORE_URL": store,
            "RECSYS_RAW_DATA_DIR": str(args.raw_dir),
        }
        if keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            (args.keep / "database_url").write_text(db_url)
        rows.append(("data load (raw files → raw tables)", *timed([str(RECSYS), "data", "load"], env)))
        for stage in STAGES:
            print(f"{stage} …", flush=True)
            seconds, rss = timed(
                [str(RECSYS), "pipeline", "run", "--stage", stage, "--moment", args.moment], env
            )
            rows.append((stage, seconds, rss))
        with sa.create_engine(db_url).connect() as conn:
            counts = conn.execute(
                sa.text("SELECT name, version, rows FROM published_tables ORDER BY name")
            ).all()
            prepared = {
                t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
                for t in ("items", "interactions")
            }

    total = sum(seconds for _, seconds, _ in rows)
    lines = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — `{args.scale}` twin on PostgreSQL, {os.cpu_count()} cores",
        "",
        "| step | seconds | peak RSS |",
        "|---|---:|---:|",
        *(f"| {step} | {seconds:.1f} | {rss / 2**30:.2f} GiB |" for step, seconds, rss in rows),
        f"| **total** | **{total:.1f}** | max **{max(r for _, _, r in rows) / 2**30:.2f} GiB** |",
        "",
        "| table | rows |",
        "|---|---:|",
        *(f"| {table} | {count:,} |" for table, count in prepared.items()),
        *(f"| {table} (published v{version}) | {count:,} |" for table, version, count in counts),
        "",
    ]
    record("pipeline.md", lines)


if __name__ == "__main__":
    main()
