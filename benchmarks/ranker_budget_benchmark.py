"""The ranker's training-row budget as the shop grows: the two-stage fit with and without it.

For each growth factor of the full twin (generated into ``--raw-dir/x<factor>`` if missing, as
the pipeline benchmark does), the raw files are loaded and prepared into a scratch SQLite
database and split at their last ``--test-days``. Every configuration — the shipped
``max_train_rows`` and an unbounded one — fits ``TwoStageModel`` on the training days in a
process of its own (forked after loading, so its peak RSS is that fit's, data included) and
ranks the test users with history. Reported side by side: fit seconds and CatBoost's share,
trees chosen, training rows and groups, peak RSS, and NDCG@10 / Recall@10 of the warm test
users, with the bounded fit's ratio to the unbounded one (paired bootstrap CI).

Usage::

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/ranker_budget_benchmark.py \\
        --raw-dir /tmp/growth --factors 1 2

Appends a Markdown section per factor to ``benchmarks/results/ranker_budget.md`` as each ends
(and one on the growth when there are several).
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from common import record
from quality_benchmark import catalogue_at, load_prepared, peak_rss_mib

from recsys.data.synthetic import generate_twin, resolve_shape
from recsys.evaluation.bootstrap import bootstrap_ratios
from recsys.evaluation.offline import TimeSplit, per_user_metrics, time_split
from recsys.models.dataset import InteractionData
from recsys.models.ranker import TwoStageConfig, TwoStageModel

K = 10
UNBOUNDED = 10**12
METRICS = (f"ndcg@{K}", f"recall@{K}")

# Filled in the parent before forking, read by the fitting child (nothing large crosses a pipe).
_LOADED: dict[str, tuple[InteractionData, TimeSplit]] = {}


def fit_and_rank(max_train_rows: int) -> tuple[dict[str, float], pd.DataFrame]:
    """Fit the two-stage model with ``max_train_rows`` and rank the warm test users (in a child)."""
    data, split = _LOADED["twin"]
    started = time.perf_counter()
    model = TwoStageModel(TwoStageConfig(max_train_rows=max_train_rows)).fit(data)
    seconds = time.perf_counter() - started
    warm = split.segments.index[split.segments != "cold"].to_numpy(dtype=np.int64)
    per_user = per_user_metrics(model.recommend(warm, data, K), split, (K,))
    summary = model.training_report | {"fit_seconds": seconds, "peak_rss_gib": peak_rss_mib() / 1024}
    return summary, per_user.loc[warm, list(METRICS)]


def measure(raw_dir: Path, test_days: float, budget: int) -> tuple[dict[str, dict[str, float]], pd.DataFrame]:
    """Both configurations' reports and per-user metrics on one twin."""
    with tempfile.TemporaryDirectory(prefix="ranker_budget_") as work:
        engine, interactions, _ = load_prepared(raw_dir, Path(work))
        split = time_split(interactions, test_days)
        catalogue = catalogue_at(engine, split.test_start)
        engine.dispose()
    _LOADED["twin"] = (InteractionData.build(split.train, catalogue, now=split.test_start), split)
    reports, metrics = {}, {}
    for name, rows in (("bounded", budget), ("unbounded", UNBOUNDED)):
        print(f"  {name} fit …", flush=True)
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
            reports[name], metrics[name] = pool.submit(fit_and_rank, rows).result()
        print(f"  {name}: {reports[name]}", flush=True)
    per_user = pd.concat(metrics, axis=1)
    return reports, per_user


def factor_section(
    budget: int, test_days: float, factor: float, reports: dict[str, dict[str, float]], per_user: pd.DataFrame
) -> list[str]:
    """Markdown for one factor: a row per configuration, then bounded / unbounded with its CI."""
    lines = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — two-stage fit, `max_train_rows` {budget:,} vs unbounded, "
        f"full twin ×{factor:g}",
        "",
        f"Training days: all but the last {test_days:g}; test users: those with history and an "
        "add-to-cart/purchase in the last days. One fit per cell, each in its own process.",
        "",
        "| config | fit s | CatBoost s | trees | train rows | groups | sampled out | peak RSS GiB "
        f"| NDCG@{K} | Recall@{K} | test users |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, report in reports.items():
        means = per_user[name].mean()
        lines.append(
            f"| {name} | {report['fit_seconds']:.0f} | {report['ranker_seconds']:.0f} "
            f"| {report['iterations']:.0f} | {report['train_rows']:,.0f} | {report['train_groups']:,.0f} "
            f"| {report['sampled_out_users']:,.0f} | {report['peak_rss_gib']:.2f} "
            f"| {means[METRICS[0]]:.4f} | {means[METRICS[1]]:.4f} | {len(per_user):,} |"
        )
    lines += ["", "Bounded / unbounded on the same test users (paired bootstrap, 95% CI):", ""]
    for metric in METRICS:
        values = per_user.xs(metric, axis=1, level=1)
        ratio = bootstrap_ratios(values, "bounded").loc["unbounded"]
        lines.append(f"- {metric}: {ratio['ratio']:.3f} [{ratio['low']:.3f}, {ratio['high']:.3f}]")
    return [*lines, ""]


def growth_section(reports: dict[float, dict[str, dict[str, float]]]) -> list[str]:
    """Markdown: each configuration's fit time and peak RSS, largest factor over smallest."""
    factors = sorted(reports)
    small, large = reports[factors[0]], reports[factors[-1]]
    lines = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — two-stage fit growth, full twin "
        f"×{factors[-1]:g} / ×{factors[0]:g} (the sections above)",
        "",
    ]
    for name in small:
        lines.append(
            f"- {name}: fit {large[name]['fit_seconds'] / small[name]['fit_seconds']:.2f}×, CatBoost "
            f"{large[name]['ranker_seconds'] / small[name]['ranker_seconds']:.2f}×, peak RSS "
            f"{large[name]['peak_rss_gib'] / small[name]['peak_rss_gib']:.2f}×"
        )
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--raw-dir", type=Path, required=True)
    parser.add_argument("--factors", type=float, nargs="+", default=[1.0, 2.0])
    parser.add_argument("--test-days", type=float, default=7.0)
    args = parser.parse_args()
    budget = TwoStageConfig().max_train_rows
    reports = {}
    for factor in args.factors:
        raw_dir = args.raw_dir / f"x{factor:g}"
        if not (raw_dir / "events.csv").exists():
            print(f"generating the full twin ×{factor:g} into {raw_dir} …", flush=True)
            generate_twin(raw_dir, scale=resolve_shape("twin", "full", factor))
        print(f"×{factor:g}:", flush=True)
        # Recorded as each factor ends: a long run stopped later keeps what it measured.
        reports[factor], per_user = measure(raw_dir, args.test_days, budget)
        record("ranker_budget.md", factor_section(budget, args.test_days, factor, reports[factor], per_user))
    if len(reports) > 1:
        record("ranker_budget.md", growth_section(reports))


if __name__ == "__main__":
    main()
