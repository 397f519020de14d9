"""The whole pipeline on PostgreSQL: time and peak RSS of every stage, row counts of every table.

Each stage runs as ``recsys pipeline run --stage NAME`` in its own process (as an Airflow
task would), so its peak RSS is its own. Raw files are loaded first (``recsys data load``).

With ``--factors`` the pipeline runs on the twin grown by each factor (e.g. ``0.5 1 2`` of the
full twin, generated into ``--raw-dir/x<factor>`` if missing) and a growth table compares every
stage's time and peak RSS with the factor-1 run (issue 16's targets: time at ×2 ≤ 2.4× time at
×1, peak RSS of the whole pipeline at ×2 ≤ 8 GB). The hyper-parameter search is off in growth
runs (``RECSYS_TUNING_MAX_TRIALS=0``): its cost is its time budget, a setting, not the data.

Usage::

    .venv/bin/python benchmarks/pipeline_benchmark.py --raw-dir /tmp/twin_full [--scale full]
    .venv/bin/python benchmarks/pipeline_benchmark.py --raw-dir /tmp/growth --factors 0.5 1 2
    # part of the stages, keeping the databases; later, the rest on them:
    .venv/bin/python benchmarks/pipeline_benchmark.py --raw-dir /tmp/growth --factors 1 2 \
        --keep /tmp/kept --until prepare_similar_items
    .venv/bin/python benchmarks/pipeline_benchmark.py --raw-dir /tmp/growth --factors 1 2 \
        --keep /tmp/kept --from-stage train_ranking_model_and_rank_recommendations

Appends Markdown sections to ``benchmarks/results/pipeline.md``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from common import add_postgres_argument, record, scratch_database

from recsys.data.synthetic import generate_twin, resolve_shape
from recsys.pipeline.stages import STAGES

ROOT = Path(__file__).resolve().parents[1]
RECSYS = Path(sys.executable).parent / "recsys"
LOAD_STEP = "data load (raw files → raw tables)"
GROWTH_TIME_LIMIT = 2.4
GROWTH_PEAK_LIMIT_BYTES = 8 * 10**9
STAGES_IN_ORDER = list(STAGES)


@dataclass
class PipelineRun:
    """Per-step seconds and peak RSS of one pipeline run, and the rows it produced."""

    steps: dict[str, tuple[float, int]] = field(default_factory=dict)
    prepared: dict[str, int] = field(default_factory=dict)
    published: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def total_seconds(self) -> float:
        return sum(seconds for seconds, _ in self.steps.values())

    @property
    def peak_rss(self) -> int:
        return max(rss for _, rss in self.steps.values())


def timed(command: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Run a command; return seconds and its peak RSS in bytes (GNU time)."""
    with tempfile.NamedTemporaryFile("r") as report:
        started = time.perf_counter()
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", report.name, *command], env=env, check=True)
        seconds = time.perf_counter() - started
        return seconds, int(report.read().strip().splitlines()[-1]) * 1024


def run_pipeline(
    raw_dir: Path,
    moment: str,
    postgres_url: str,
    keep: Path | None,
    extra_env: dict[str, str],
    stages: list[str] = STAGES_IN_ORDER,
    resume: bool = False,
) -> PipelineRun:
    """Load ``raw_dir`` into a scratch database and run ``stages`` in order, each in its own process;
    with ``resume``, run them on the database and object store an earlier run kept in ``keep``."""
    run = PipelineRun()
    with ExitStack() as stack:
        if resume:
            assert keep is not None, "resuming needs the folder an earlier run kept"
            db_url = (keep / "database_url").read_text()
        else:
            db_url = stack.enter_context(
                scratch_database(postgres_url, "recsys_pipeline", keep=keep is not None)
            )
        store = str(keep / "object_store") if keep else stack.enter_context(tempfile.TemporaryDirectory())
        env = {
            **os.environ,
            "OPENBLAS_NUM_THREADS": "1",
            "RECSYS_DATABASE_URL": db_url,
            "RECSYS_OBJECT_STORE_URL": store,
            "RECSYS_RAW_DATA_DIR": str(raw_dir),
            **extra_env,
        }
        if keep and not resume:
            keep.mkdir(parents=True, exist_ok=True)
            (keep / "database_url").write_text(db_url)
        steps = ([] if resume else [(LOAD_STEP, [str(RECSYS), "data", "load"])]) + [
            (stage, [str(RECSYS), "pipeline", "run", "--stage", stage, "--moment", moment])
            for stage in stages
        ]
        for step, command in steps:
            print(f"{datetime.now(UTC):%H:%M:%S} {step} …", flush=True)
            run.steps[step] = timed(command, env)
            seconds, rss = run.steps[step]
            print(f"{datetime.now(UTC):%H:%M:%S} {step}: {seconds:.1f} s, {rss / 2**30:.2f} GiB", flush=True)
        with sa.create_engine(db_url).connect() as conn:
            run.published = [
                (name, version, rows)
                for name, version, rows in conn.execute(
                    sa.text("SELECT name, version, rows FROM published_tables ORDER BY name")
                ).all()
            ]
            run.prepared = {
                t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
                for t in ("items", "interactions")
            }
    return run


def run_section(title: str, run: PipelineRun) -> list[str]:
    """Markdown of one run: the steps and the row counts."""
    return [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — {title} on PostgreSQL, {os.cpu_count()} cores",
        "",
        "| step | seconds | peak RSS |",
        "|---|---:|---:|",
        *(
            f"| {step} | {seconds:.1f} | {rss / 2**30:.2f} GiB |"
            for step, (seconds, rss) in run.steps.items()
        ),
        f"| **total** | **{run.total_seconds:.1f}** | max **{run.peak_rss / 2**30:.2f} GiB** |",
        "",
        "| table | rows |",
        "|---|---:|",
        *(f"| {table} | {count:,} |" for table, count in run.prepared.items()),
        *(f"| {table} (published v{version}) | {count:,} |" for table, version, count in run.published),
        "",
    ]


def growth_section(scale: str, runs: dict[float, PipelineRun]) -> list[str]:
    """Markdown comparing every step's time and peak RSS across factors with the factor-1 run."""
    factors = sorted(runs)
    base = runs.get(1.0)
    header = " | ".join(f"×{f:g} s | ×{f:g} RSS GiB" for f in factors)
    lines = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — growth of the `{scale}` twin: "
        + ", ".join(f"×{f:g}" for f in factors),
        "",
        f"Time ratios are to the ×1 run; target: ×2 time ≤ {GROWTH_TIME_LIMIT}× ×1 time for every stage, "
        "whole-pipeline peak RSS at ×2 ≤ 8 GB.",
        "",
        f"| step | {header} | time ratios to ×1 | RSS ratios to ×1 |",
        "|---|" + "---:|" * (2 * len(factors) + 2),
    ]
    for step in runs[factors[0]].steps:
        cells = []
        for f in factors:
            seconds, rss = runs[f].steps.get(step, (float("nan"), 0))
            cells += [f"{seconds:.1f}", f"{rss / 2**30:.2f}"]
        ratios_t = ratios_r = "—"
        if base is not None and step in base.steps:
            base_s, base_r = base.steps[step]
            ratios_t = ", ".join(
                f"×{f:g}: {runs[f].steps[step][0] / base_s:.2f}" for f in factors if f != 1.0
            )
            ratios_r = ", ".join(
                f"×{f:g}: {runs[f].steps[step][1] / base_r:.2f}" for f in factors if f != 1.0
            )
        lines.append(f"| {step} | {' | '.join(cells)} | {ratios_t} | {ratios_r} |")
    lines.append("")
    if base is not None and 2.0 in runs:
        worst = max(runs[2.0].steps[s][0] / base.steps[s][0] for s in base.steps)
        peak = runs[2.0].peak_rss
        lines += [
            f"- Worst stage time ratio ×2 / ×1: **{worst:.2f}** (target ≤ {GROWTH_TIME_LIMIT}): "
            f"{'met' if worst <= GROWTH_TIME_LIMIT else 'not met'}.",
            f"- Peak RSS at ×2: **{peak / 2**30:.2f} GiB** ({peak / 1e9:.2f} GB; target ≤ 8 GB): "
            f"{'met' if peak <= GROWTH_PEAK_LIMIT_BYTES else 'not met'}.",
            "",
        ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--raw-dir", type=Path, required=True)
    parser.add_argument("--scale", default="full")
    parser.add_argument(
        "--factors", type=float, nargs="+", help="growth run: the twin times each factor, e.g. 0.5 1 2"
    )
    parser.add_argument(
        "--moment", default="2015-09-18T03:00:00", help="the run's moment (data interval end)"
    )
    parser.add_argument(
        "--keep",
        type=Path,
        help="keep the database; write its URL and the object store here (per factor: <keep>/x<factor>)",
    )
    parser.add_argument(
        "--until",
        choices=STAGES_IN_ORDER,
        default=STAGES_IN_ORDER[-1],
        help="the last stage to run (default: all); the earlier ones run before it",
    )
    parser.add_argument(
        "--from-stage",
        choices=STAGES_IN_ORDER,
        help="re-run from this stage on the databases and object stores kept by an earlier run "
        "with the same --keep (no load, the earlier stages' tables and models are used)",
    )
    add_postgres_argument(parser)
    args = parser.parse_args()
    if args.from_stage and not args.keep:
        parser.error("--from-stage needs the --keep folder of the earlier run")
    first = STAGES_IN_ORDER.index(args.from_stage) if args.from_stage else 0
    stages = STAGES_IN_ORDER[first : STAGES_IN_ORDER.index(args.until) + 1]
    resume = args.from_stage is not None
    if not args.factors:
        if not (args.raw_dir / "events.csv").exists():
            generate_twin(args.raw_dir, scale=args.scale)
        run = run_pipeline(args.raw_dir, args.moment, args.postgres_url, args.keep, {}, stages, resume)
        record("pipeline.md", run_section(f"`{args.scale}` twin", run))
        return

    until_note = "" if stages == STAGES_IN_ORDER else f", stages {stages[0]} … {stages[-1]}"
    if resume:
        until_note += ", on the databases of the earlier run"
    runs: dict[float, PipelineRun] = {}
    for factor in args.factors:
        raw_dir = args.raw_dir / f"x{factor:g}"
        if not (raw_dir / "events.csv").exists():
            print(f"generating the {args.scale} twin ×{factor:g} into {raw_dir}", flush=True)
            generate_twin(raw_dir, scale=resolve_shape("twin", args.scale, factor))
        keep = args.keep / f"x{factor:g}" if args.keep else None
        runs[factor] = run_pipeline(
            raw_dir, args.moment, args.postgres_url, keep, {"RECSYS_TUNING_MAX_TRIALS": "0"}, stages, resume
        )
        title = f"`{args.scale}` twin ×{factor:g} (growth run, no hyper-parameter search{until_note})"
        record("pipeline.md", run_section(title, runs[factor]))
    record("pipeline.md", growth_section(args.scale, runs))


if __name__ == "__main__":
    main()
