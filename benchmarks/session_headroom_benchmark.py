"""How far in-session discovery is from what a generated shop allows: the planted truth as a ceiling.

On a generated shop the generator's own item popularity per week and price levels are known
(:func:`recsys.data.synthetic.planted_items`); no model sees them. Stage 6 is run as the
pipeline runs it at the cut ``--test-days`` before the data's end (its weights tuned on the
window's validation sessions), and its validation prefixes are then scored with the published
weights for four category models: as fitted (what the service serves), with the planted price
levels, with the planted popularity of the validation weeks, and with both. The blend is scored
with the published price fit and with the price fit chosen again on the same prefixes (the
planted levels may want another width). The ratio of each to the fitted category list shows
how much a better estimate of popularity or of a visitor's price level could add at most: it
bounds what the discovery target (the blend ≥ 1.10× the best single method) can reach on the
shape.

Usage::

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/session_headroom_benchmark.py --shape sparse

Appends a section to ``benchmarks/results/session_headroom.md``.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from datetime import UTC, datetime
from itertools import product
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp
from common import record

from recsys.config import Settings
from recsys.data.loader import load_raw_data
from recsys.data.synthetic import START_MS, generate_twin, planted_items, resolve_shape
from recsys.data.synthetic.items import Items
from recsys.evaluation.sessions import task_hit_ranks
from recsys.models.dataset import InteractionData
from recsys.models.session_blend import SessionBlendWeights
from recsys.models.session_category import CategoryPopularModel
from recsys.pipeline.session_blend import (
    GOAL,
    PRICE_WEIGHTS,
    PRICE_WIDTHS,
    BlendSearch,
    K,
    blend_lists,
    single_lists,
    tune_session_blend,
)
from recsys.pipeline.stages import STAGES, RunContext
from recsys.publishing.catalogue import SIMILAR_ITEMS
from recsys.storage.database import create_db_engine


def week_of(moment: pd.Timestamp) -> int:
    """The generator's event week of ``moment`` (0 = the week of its first event)."""
    return int((moment - pd.Timestamp(START_MS, unit="ms")) // pd.Timedelta(days=7))


def planted_category(
    fitted: CategoryPopularModel,
    train: InteractionData,
    items: Items,
    weeks: list[int],
    popularity: bool,
    price: bool,
) -> CategoryPopularModel:
    """``fitted`` with the planted popularity of ``weeks`` (shares within each category of the
    known available items) and/or the planted price levels in place of its estimates."""
    planted = copy.copy(fitted)
    index = pd.Series(np.arange(items.n), index=items.ids).reindex(train.item_codes.ids).to_numpy()
    known = ~np.isnan(index)
    pool = index[known].astype(np.int64)
    if popularity:
        weight = np.zeros(train.n_items)
        weight[known] = sum(items.week_weights(week)[pool] for week in weeks)
        category = fitted.item_category
        kept = np.flatnonzero((category >= 0) & (weight > 0) & ~train.is_unavailable(train.item_codes.ids))
        totals = np.bincount(category[kept], weights=weight[kept], minlength=fitted.shares.shape[0])
        planted.shares = sp.csr_matrix(
            (weight[kept] / totals[category[kept]], (category[kept], kept)), shape=fitted.shares.shape
        )
    if price:
        levels = np.full(train.n_items, np.nan)
        levels[known] = items.price_z[pool]
        planted.price_level = levels
    return planted


def discovery_mrr(lists: pd.DataFrame, search: BlendSearch) -> tuple[float, float]:
    """MRR@K of the discovery targets and its standard error."""
    ranks = task_hit_ranks(lists, search.replay)["discovery"]
    reciprocal: npt.NDArray[np.float64] = np.where(ranks <= K, 1.0 / ranks, 0.0)
    return float(reciprocal.mean()), float(reciprocal.std(ddof=1) / np.sqrt(reciprocal.size))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", default="sparse", help="twin, dense or sparse (docs/synthetic_twin.md)")
    parser.add_argument("--scale", default="small", help="the twin's scale")
    parser.add_argument("--test-days", type=float, default=14)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    started = time.perf_counter()
    spec = resolve_shape(args.shape, args.scale if args.shape == "twin" else None)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        generate_twin(folder / "raw", scale=spec, seed=args.seed)
        settings = Settings(
            data_dir=folder,
            database_url=f"sqlite:///{folder / 'pipeline.sqlite3'}",
            object_store_url=str(folder / "object_store"),
        )
        load_raw_data(create_db_engine(settings.db_url), folder / "raw")
        events = pd.read_csv(folder / "raw" / "events.csv", usecols=["timestamp"])
        cut = pd.to_datetime(events["timestamp"].max(), unit="ms") - pd.Timedelta(days=args.test_days)
        context = RunContext(settings, cut.to_pydatetime())
        next(iter(STAGES.values()))(context)
        window = context.window
        depth = context.depth(SIMILAR_ITEMS)
        sizes = (settings.session_validation_sessions, settings.session_validation_prefixes)
        print(f"stage 6's tuning at the cut {cut:%Y-%m-%d %H:%M} …", flush=True)
        weights, _ = tune_session_blend(window, settings.validation_days, depth, *sizes)
        search = BlendSearch.on_validation(window, settings.validation_days, depth, *sizes, weights)
        end = pd.Timestamp(window.interactions["datetime"].max())
        start = end - pd.Timedelta(days=settings.validation_days)
        weeks = list(range(week_of(start), week_of(end) + 1))
        items = planted_items(spec, args.seed)
        rows = []
        for label, popularity, price in (
            ("fitted (served)", False, False),
            ("planted price levels", False, True),
            ("planted popularity", True, False),
            ("planted popularity and price levels", True, True),
        ):
            category = planted_category(search.model.category, search.train, items, weeks, popularity, price)
            prefixes = search.recomputed(search.model.with_category(category))
            alone = discovery_mrr(single_lists(prefixes)["category_popular"], search)
            blend = discovery_mrr(blend_lists(prefixes, weights), search)
            refitted = max(
                (
                    weights.model_copy(update={"price_weight": weight, "price_width": width})
                    for weight, width in product(PRICE_WEIGHTS, PRICE_WIDTHS)
                ),
                key=lambda trial: search.score(trial, prefixes)[GOAL],
            )
            rechosen = discovery_mrr(blend_lists(prefixes, refitted), search)
            rows.append((label, alone, blend, rechosen, refitted))
            print(f"  {label}: category {alone[0]:.4f}, blend {blend[0]:.4f} / {rechosen[0]:.4f}", flush=True)
    served = rows[0][1][0]

    def cell(value: tuple[float, float]) -> str:
        return f"{value[0]:.4f} ± {value[1]:.4f} ({value[0] / served:.2f}×)"

    lines = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — `{spec.name}`, cut {args.test_days:g} days before the end",
        "",
        f"Stage 6's validation prefixes at the cut {cut:%Y-%m-%d %H:%M} ({len(search.prefixes):,} prefixes, "
        f"{len(search.replay.targets['discovery']):,} discovery targets; validation weeks {weeks}); "
        f"published weights: {_weights_text(weights)}. Discovery MRR@{K} ± its standard error "
        f"(ratio to the fitted category list). Run time {(time.perf_counter() - started) / 60:.1f} min.",
        "",
        "| category model | category list | blend, published weights | blend, price fit re-chosen (weight, width) |",
        "|---|---:|---:|---:|",
        *(
            f"| {label} | {cell(alone)} | {cell(blend)} | {cell(rechosen)} ({refitted.price_weight:g}, "
            f"{refitted.price_width:g}) |"
            for label, alone, blend, rechosen, refitted in rows
        ),
        "",
    ]
    record("session_headroom.md", lines)


def _weights_text(weights: SessionBlendWeights) -> str:
    """The blend weights that shape discovery, as text."""
    return (
        ", ".join(
            f"{name} {getattr(weights, name)}"
            for name in (
                "category_weight",
                "price_weight",
                "price_width",
                "covisitation_weight",
                "extend_length",
            )
        )
        + f"; category {weights.category.model_dump(exclude={'remind', 'batch_size', 'filter_bought', 'available_only'})}"
    )


if __name__ == "__main__":
    main()
