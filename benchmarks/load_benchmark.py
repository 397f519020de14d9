"""Raw-data load and preparation benchmark on PostgreSQL, side by side in one run.

Compares, on the same files and the same server:

1. ``psql \\copy`` of every raw file into fresh tables (the physical limit: no validation);
2. ``recsys.data.loader.load_raw_data`` (validation, duplicate removal, one transaction);
3. pandas ``DataFrame.to_sql`` on a 1 M-row slice of ``item_properties`` (the naive way),

then prepares ``items``/``interactions`` and reports time and peak RSS. Each step runs in its
own child process so that its peak RSS is its own.

Usage::

    .venv/bin/python benchmarks/load_benchmark.py --raw-dir /tmp/twin_full [--scale full]

Without ``--raw-dir`` files the twin of ``--scale`` is generated first (into ``--raw-dir``).
Results are appended as a Markdown section to ``benchmarks/results/load.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from common import add_postgres_argument, record, scratch_database
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

TO_SQL_ROWS = 1_000_000


def child(code: str, env: dict[str, str]) -> tuple[dict[str, object], float, int]:
    """Run Python code in a child; return its JSON result (last stdout line), seconds, peak RSS bytes.

    ``code`` must print one JSON object last; the child's own peak RSS is added to it.
    """
    wrapped = f"{code}\nimport resource as _r; print(_r.getrusage(_r.RUSAGE_SELF).ru_maxrss)"
    started = time.perf_counter()
    done = subprocess.run([PYTHON, "-c", wrapped], env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"child failed:\n{done.stderr[-4000:]}")
    *_, result, peak_kib = done.stdout.strip().splitlines()
    return json.loads(result), seconds, int(peak_kib) * 1024


def psql_copy(db_url: str, raw_dir: Path) -> tuple[int, float]:
    """Load every raw file with psql \\copy into fresh tables; return rows and seconds."""
    url = make_url(db_url)
    base = [
        "psql",
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        url.host or "127.0.0.1",
        "-p",
        str(url.port or 5432),
        "-U",
        url.username or "postgres",
        url.database or "postgres",
    ]
    ddl = """
        DROP TABLE IF EXISTS b_events, b_item_properties, b_category_tree;
        CREATE TABLE b_category_tree (categoryid BIGINT NOT NULL, parentid BIGINT);
        CREATE TABLE b_item_properties ("timestamp" BIGINT NOT NULL, itemid BIGINT NOT NULL,
                                        property TEXT NOT NULL, value TEXT);
        CREATE TABLE b_events ("timestamp" BIGINT NOT NULL, visitorid BIGINT NOT NULL, event TEXT NOT NULL,
                               itemid BIGINT NOT NULL, transactionid BIGINT);
    """
    subprocess.run([*base, "-c", ddl], check=True)
    files = [
        ("b_category_tree", "category_tree.csv"),
        ("b_item_properties", "item_properties_part1.csv"),
        ("b_item_properties", "item_properties_part2.csv"),
        ("b_events", "events.csv"),
    ]
    started = time.perf_counter()
    for table, name in files:
        path = raw_dir / name
        subprocess.run(
            [*base, "-c", f"\\copy {table} FROM '{path}' WITH (FORMAT csv, HEADER true)"], check=True
        )
    seconds = time.perf_counter() - started
    with sa.create_engine(db_url).connect() as conn:
        rows = sum(
            conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
            for t in ("b_events", "b_item_properties", "b_category_tree")
        )
        conn.execute(sa.text("DROP TABLE b_events, b_item_properties, b_category_tree"))
        conn.commit()
    return rows, seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--raw-dir", type=Path, required=True)
    parser.add_argument("--scale", default="full")
    add_postgres_argument(parser)
    args = parser.parse_args()

    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    if not (args.raw_dir / "events.csv").exists():
        print(f"generating the {args.scale} twin into {args.raw_dir}", flush=True)
        _, gen_seconds, gen_rss = child(
            "import json; from pathlib import Path; from recsys.data.synthetic import generate_twin; "
            f"s = generate_twin(Path({str(args.raw_dir)!r}), scale={args.scale!r}); print(json.dumps(str(s)))",
            env,
        )
        print(f"  generated in {gen_seconds:.0f} s, peak RSS {gen_rss / 2**20:.0f} MiB", flush=True)

    with scratch_database(args.postgres_url, "recsys_bench") as db_url:
        print("psql \\copy …", flush=True)
        copy_rows, copy_seconds = psql_copy(db_url, args.raw_dir)
        print(f"  {copy_rows:,} rows in {copy_seconds:.1f} s", flush=True)

        print("recsys load_raw_data …", flush=True)
        loaded, load_seconds, load_rss = child(
            "import json; from pathlib import Path; from recsys.storage.database import create_db_engine; "
            "from recsys.data.loader import load_raw_data; "
            f"r = load_raw_data(create_db_engine({db_url!r}), Path({str(args.raw_dir)!r})); "
            "print(json.dumps({'rows_read': sum(x.rows_read for x in r), "
            "'rows_loaded': sum(x.rows_loaded for x in r), 'duplicates': sum(x.duplicates_dropped for x in r)}))",
            env,
        )
        print(f"  {loaded} in {load_seconds:.1f} s, peak RSS {load_rss / 2**20:.0f} MiB", flush=True)

        print(f"pandas to_sql on {TO_SQL_ROWS:,} rows …", flush=True)
        to_sql, _, _ = child(
            "import json, time, pandas as pd, sqlalchemy as sa; "
            f"df = pd.read_csv({str(args.raw_dir / 'item_properties_part1.csv')!r}, nrows={TO_SQL_ROWS}, "
            "dtype={'property': str, 'value': str}); "
            f"e = sa.create_engine({db_url!r}); t = time.perf_counter(); "
            "df.to_sql('b_to_sql', e, if_exists='replace', index=False, chunksize=10000, method='multi'); "
            "s = time.perf_counter() - t; print(json.dumps({'rows': len(df), 'seconds': s}))",
            env,
        )
        print(f"  {to_sql}", flush=True)

        print("recsys prepare_datasets …", flush=True)
        prepared, prep_seconds, prep_rss = child(
            "import json; from recsys.storage.database import create_db_engine; "
            "from recsys.data.prepare import prepare_datasets; from recsys.config import EventWeights; "
            f"r = prepare_datasets(create_db_engine({db_url!r}), EventWeights()); "
            "print(json.dumps({'items': r.n_items, 'interactions': r.n_interactions, 'users': r.n_users}))",
            env,
        )
        print(f"  {prepared} in {prep_seconds:.1f} s, peak RSS {prep_rss / 2**20:.0f} MiB", flush=True)

    copy_rate = copy_rows / copy_seconds
    load_rate = int(loaded["rows_read"]) / load_seconds  # type: ignore[call-overload]
    to_sql_rate = float(to_sql["rows"]) / float(to_sql["seconds"])  # type: ignore[arg-type]
    lines = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — scale `{args.scale}`, PostgreSQL, {os.cpu_count()} cores",
        "",
        "| step | rows | seconds | rows/s | ratio | peak RSS |",
        "|---|---:|---:|---:|---:|---:|",
        f"| psql `\\copy` (baseline, no validation) | {copy_rows:,} | {copy_seconds:.1f} | {copy_rate:,.0f} | 1.00 | – |",
        f"| `recsys data load` (validate, dedupe, 1 transaction) | {loaded['rows_read']:,} | {load_seconds:.1f} | "
        f"{load_rate:,.0f} | **{load_rate / copy_rate:.2f}× copy** | {load_rss / 2**20:,.0f} MiB |",
        f"| pandas `to_sql` (multi, 10k chunks) | {to_sql['rows']:,} | {float(to_sql['seconds']):.1f} | "  # type: ignore[arg-type]
        f"{to_sql_rate:,.0f} | load = **{load_rate / to_sql_rate:.1f}× to_sql** | – |",
        f"| `recsys data prepare` (items + interactions) | {prepared['interactions']:,} interactions, "
        f"{prepared['items']:,} items | {prep_seconds:.1f} | – | – | {prep_rss / 2**20:,.0f} MiB |",
        "",
        f"Rows loaded after dropping {loaded['duplicates']:,} exact duplicates: {loaded['rows_loaded']:,}.",
        "Seconds of the recsys steps include the Python start-up of their child process.",
        "",
    ]
    record("load.md", lines)


if __name__ == "__main__":
    main()
