"""The re-ranking curve (strength → NDCG@10, Recall@10, item coverage@10, Novelty@5) per shop shape,
with every baseline's point, the default operating point and the issue 14 targets.

For every fold (``--folds`` consecutive test windows of ``--test-days``, as in
quality_benchmark.py) the two-stage ranker is trained on everything before the window and
its ``--pool``-deep lists are re-ranked at every strength of
:data:`recsys.evaluation.operating_point.STRENGTHS`. The default operating point is chosen
as the pipeline chooses it (:func:`recsys.evaluation.operating_point.tune_strength`): on the
last ``--validation-days`` of the fold's training data, by a ranker fitted on the days before.
Beside the curve: our candidate sources (ALS, item-kNN, i2i, popularity — the pipeline's
references for the strength), RecTools Popular / ItemKNN / ALS / EASE (their lists
under the product's rules, as in quality_benchmark.py), and the issue's quick try — the
ranker's top 30 re-ordered by rank discount / popularity^α. Metrics are over the test users
with history (the ones the re-ranking changes; cold users get the popularity list either
way), pooled over folds; item coverage is the mean of the folds'. CIs: 95% paired bootstrap
over users of the ratio to RecTools ALS.

Usage::

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/rerank_benchmark.py --shape dense [--folds 1] [--scale-factor 1]

Writes ``benchmarks/results/rerank_<shape>.md`` and ``rerank_<shape>.png``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from common import RESULTS_DIR, record
from quality_benchmark import catalogue_at, load_prepared, peak_rss_mib, rectools_baselines, top_k

from recsys.data.synthetic import SHAPES, generate_twin, resolve_shape
from recsys.evaluation.bootstrap import bootstrap_ratios
from recsys.evaluation.metrics import item_coverage
from recsys.evaluation.offline import SELECTION_METRIC, TimeSplit, per_user_metrics, time_folds, time_split
from recsys.evaluation.operating_point import (
    COVERAGE,
    CURVE_METRICS,
    NOVELTY,
    STRENGTHS,
    K,
    StrengthChoice,
    tune_strength,
)
from recsys.models.dataset import InteractionData
from recsys.models.ranker import TwoStageModel
from recsys.models.rerank import PopularityReRanker, ReRankConfig
from recsys.models.topk import top_k_per_key

QUICK_TRY_DEPTH = 30
QUICK_TRY_ALPHAS = (0.5, 1.0, 2.0)
ALS = "rectools_als"
RECTOOLS = ("rectools_popular", "rectools_itemknn", ALS, "rectools_ease")
# Fewer users in a segment than this decide nothing (the dense shop has 4 light test users).
MIN_SEGMENT_USERS = 30


def curve_name(strength: float) -> str:
    return f"rerank_{strength:.2f}"


def quick_try(pool: pd.DataFrame, data: InteractionData, alpha: float) -> pd.DataFrame:
    """The issue's quick try: the top 30 re-ordered by (1 / log2(rank + 1)) / popularity^α."""
    top = pool[pool["rank"] <= QUICK_TRY_DEPTH]
    users_per_item = data.interactions.groupby("item_id")["user_id"].nunique()
    popularity = top["item_id"].map(users_per_item).fillna(1.0).to_numpy(dtype=np.float64)
    key = -np.log2(top["rank"].to_numpy(dtype=np.float64) + 1) - alpha * np.log(popularity)
    order = np.lexsort((top["rank"].to_numpy(), -key, top["user_id"].to_numpy()))
    return top_k_per_key(top.iloc[order], "user_id", K)


def run_fold(
    split: TimeSplit, data: InteractionData, folder: Path, args: argparse.Namespace
) -> tuple[dict[str, pd.DataFrame], StrengthChoice | None, float]:
    """Every list of one fold (keyed by name), the strength chosen on its validation days, and the
    pool's bound: the item coverage of the warm users' whole pools, which no re-ranking can exceed."""
    users = split.test_users
    started = time.perf_counter()
    ranker = TwoStageModel().fit(data)
    print(f"  two-stage fitted in {time.perf_counter() - started:.0f} s", flush=True)
    pool = ranker.recommend(users, data, args.pool)
    warm = split.segments.index[split.segments != "cold"]
    bound = pool.loc[pool["user_id"].isin(warm), "item_id"].nunique() / split.train["item_id"].nunique()
    reranker = PopularityReRanker(ReRankConfig(pool=args.pool)).fit(data)
    recos = {curve_name(s): reranker.rerank(pool, K, strength=s) for s in STRENGTHS}
    recos |= {f"quick_try_{a:g}": quick_try(pool, data, a) for a in QUICK_TRY_ALPHAS}
    recos |= {source.kind: source.recommend(users, data, K) for source in ranker.candidate_models()}
    for name, reco in rectools_baselines(split.train, users, folder).items():
        recos[name] = top_k(data.exclude(reco), K)
    started = time.perf_counter()
    try:
        validation = time_split(split.train, args.validation_days)
        train = InteractionData.build(validation.train, data.items.reset_index(), now=validation.test_start)
        choice: StrengthChoice | None = tune_strength(ranker.config, validation, train, args.pool)
    except ValueError as exc:
        print(f"  no validation: {exc}", flush=True)
        choice = None
    print(
        f"  strength chosen in {time.perf_counter() - started:.0f} s: {choice and choice.reason}", flush=True
    )
    return recos, choice, bound


def pooled(
    recos: list[dict[str, pd.DataFrame]], splits: list[TimeSplit], name: str
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per-user metrics of the warm test users of every fold (stacked) and the pooled means."""
    rows, coverages = [], []
    for fold, (fold_recos, split) in enumerate(zip(recos, splits, strict=True)):
        warm = split.segments.index[split.segments != "cold"]
        per_user = per_user_metrics(fold_recos[name], split).loc[warm]
        rows.append(per_user.reset_index().assign(fold=fold))
        reco = fold_recos[name]
        coverages.append(item_coverage(reco[reco["user_id"].isin(warm)], K, split.train["item_id"].nunique()))
    stacked = pd.concat(rows, ignore_index=True)
    means = {m: float(stacked[m].mean()) for m in CURVE_METRICS if m != COVERAGE}
    means[COVERAGE] = float(np.mean(coverages))
    means["light_ndcg@10"] = float(stacked.loc[stacked["segment"] == "light", SELECTION_METRIC].mean())
    means["heavy_ndcg@10"] = float(stacked.loc[stacked["segment"] == "heavy", SELECTION_METRIC].mean())
    return stacked, means


def default_vs_baselines(
    per_user: dict[str, pd.DataFrame],
    recos: list[dict[str, pd.DataFrame]],
    splits: list[TimeSplit],
    args: argparse.Namespace,
) -> list[str]:
    """Per warm segment and accuracy metric: the default operating point over the best RecTools
    baseline of that segment, with a 95% paired bootstrap CI over users, against the ≥ 1.10 target."""
    default, _ = pooled(recos, splits, "default")
    lines = []
    for segment in ("light", "heavy"):
        rows = default["segment"] == segment
        if rows.sum() < 2:
            lines.append(f"  - {segment} users: {int(rows.sum())}, too few to judge")
            continue
        for metric in (SELECTION_METRIC, "recall@10"):
            values = pd.DataFrame(
                {"default": default.loc[rows, metric].to_numpy()}
                | {n: per_user[n].loc[rows, metric].to_numpy() for n in RECTOOLS}
            )
            best = values[list(RECTOOLS)].mean().idxmax()
            found = bootstrap_ratios(
                values[["default", best]],
                "default",
                clusters=default.loc[rows, "user_id"].to_numpy(),
                n_resamples=args.resamples,
                seed=args.seed,
            ).loc[best]
            verdict = "met" if found["ratio"] >= 1.1 else "not met"
            if rows.sum() < MIN_SEGMENT_USERS:
                verdict = f"{verdict}, but too few users to judge"
            lines.append(
                f"  - {segment} ({int(rows.sum())} user-folds) {metric} vs the best baseline of the segment "
                f"({best}: {values[best].mean():.4f}): {found['ratio']:.2f}× [95% CI {found['low']:.2f}, "
                f"{found['high']:.2f}] (target ≥ 1.10: **{verdict}**)"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--shape", default="dense", help="twin scale (tiny/small/full) or shape (dense/sparse)"
    )
    parser.add_argument(
        "--scale-factor",
        type=float,
        default=1.0,
        help="grow the shape (as `recsys data generate --scale-factor`), e.g. for more test users with history",
    )
    parser.add_argument("--test-days", type=float, default=14)
    parser.add_argument("--folds", type=int, default=1)
    parser.add_argument("--validation-days", type=int, default=7, help="as RECSYS_VALIDATION_DAYS")
    parser.add_argument("--pool", type=int, default=ReRankConfig().pool, help="as RECSYS_RERANK_POOL")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        twin = args.shape not in SHAPES
        shape = (
            resolve_shape("twin", args.shape, args.scale_factor)
            if twin
            else resolve_shape(args.shape, factor=args.scale_factor)
        )
        generate_twin(work / "raw", shape)
        engine, interactions, _ = load_prepared(work / "raw", work)
        print(f"{shape.name} generated and prepared in {time.perf_counter() - started:.0f} s", flush=True)
        splits = time_folds(interactions, args.folds, args.test_days)
        recos, choices, bounds = [], [], []
        for number, split in enumerate(splits):
            print(
                f"fold {number}: test from {split.test_start:%Y-%m-%d}, {split.segments.value_counts().to_dict()}",
                flush=True,
            )
            data = InteractionData.build(
                split.train, catalogue_at(engine, split.test_start), now=split.test_start
            )
            fold_recos, choice, bound = run_fold(split, data, work / f"rectools_{number}", args)
            bounds.append(bound)
            recos.append(fold_recos)
            choices.append(choice)
    minutes = (time.perf_counter() - started) / 60

    names = list(recos[0])
    per_user, means = {}, {}
    for name in names:
        per_user[name], means[name] = pooled(recos, splits, name)
    table = pd.DataFrame(means).T[[*CURVE_METRICS, "light_ndcg@10", "heavy_ndcg@10"]]
    curve_names = [curve_name(s) for s in STRENGTHS]
    # Ratio to RecTools ALS with a 95% CI: bootstrap of ALS / x, inverted.
    clusters = per_user[ALS]["user_id"]
    ci = {}
    for metric in (SELECTION_METRIC, "recall@10"):
        values = pd.DataFrame({n: per_user[n][metric] for n in [ALS, *[n for n in names if n != ALS]]})
        inverse = bootstrap_ratios(values, ALS, clusters=clusters, n_resamples=args.resamples, seed=args.seed)
        ci[metric] = pd.DataFrame(
            {"ratio": 1 / inverse["ratio"], "low": 1 / inverse["high"], "high": 1 / inverse["low"]}
        )
    for metric, frame in ci.items():
        short = metric.split("@")[0]
        table[f"{short} / ALS [95% CI]"] = [
            "1"
            if n == ALS
            else f"{frame.loc[n, 'ratio']:.2f} [{frame.loc[n, 'low']:.2f}, {frame.loc[n, 'high']:.2f}]"
            for n in table.index
        ]
    baselines = [*(source.kind for source in TwoStageModel().candidate_models()), *RECTOOLS]
    # The issue's baselines are RecTools' (ours are the pipeline's references, shown beside).
    best = max(RECTOOLS, key=lambda n: means[n][SELECTION_METRIC])
    als_cov, als_ndcg = means[ALS][COVERAGE], means[ALS][SELECTION_METRIC]
    dominating = [
        n for n in curve_names if means[n][SELECTION_METRIC] >= als_ndcg and means[n][COVERAGE] >= als_cov
    ]
    # The default operating point: each fold's list at the strength chosen on its own validation days.
    operating = [
        fold[curve_name(c.strength if c is not None else ReRankConfig().strength)]
        for fold, c in zip(recos, choices, strict=True)
    ]
    for fold, reco in zip(recos, operating, strict=True):
        fold["default"] = reco
    _, point = pooled(recos, splits, "default")
    segment_lines = default_vs_baselines(per_user, recos, splits, args)
    cov_target = means[best][COVERAGE]
    nov_target = max(means[n][NOVELTY] for n in ("als", ALS))

    counts = pd.concat([s.segments for s in splits]).value_counts().to_dict()
    lines = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — `{args.shape}` × {args.scale_factor:g}, {args.folds} fold(s) of {args.test_days:g} days, pool {args.pool}",
        "",
        f"Test users (user-folds) by segment: {counts}; metrics over those with history. Run time {minutes:.1f} min; peak RSS {peak_rss_mib():,.0f} MiB.",
        f"Strengths chosen on each fold's last {args.validation_days} training days: {[c and c.strength for c in choices]}"
        + "".join(
            f"\n- fold {i}: {c.reason if c else 'too little data: default'}" for i, c in enumerate(choices)
        ),
        "",
        table.round(4).to_markdown(),
        "",
        "### Issue 14 targets",
        "",
        f"- curve dominates RecTools ALS (some strength with NDCG@10 ≥ {als_ndcg:.4f} and coverage@10 ≥ {als_cov:.4f}): "
        f"**{'met' if dominating else 'not met'}** ({', '.join(dominating) if dominating else 'none'})",
        f"- default operating point (strength chosen per fold on validation): NDCG@10 {point[SELECTION_METRIC]:.4f}, Recall@10 {point['recall@10']:.4f}, "
        f"coverage@10 {point[COVERAGE]:.4f}, Novelty@5 {point[NOVELTY]:.3f}",
        f"  - coverage@10 ≥ the most accurate baseline's ({best}: {cov_target:.4f}): **{'met' if point[COVERAGE] >= cov_target else 'not met'}**",
        f"  - Novelty@5 ≥ ALS's (higher of ours and RecTools': {nov_target:.3f}): **{'met' if point[NOVELTY] >= nov_target else 'not met'}**",
        f"  - NDCG@10 vs the best baseline ({best}: {means[best][SELECTION_METRIC]:.4f}): {point[SELECTION_METRIC] / means[best][SELECTION_METRIC]:.2f}×; "
        f"vs RecTools ALS: {point[SELECTION_METRIC] / als_ndcg:.2f}×",
        f"  - coverage@10 vs RecTools ALS: {point[COVERAGE] / als_cov:.2f}×",
        *segment_lines,
        f"- bound of any re-ranking: item coverage of the warm users' whole {args.pool}-deep pools {np.mean(bounds):.4f} "
        f"(mean of the folds'; {np.mean(bounds) / als_cov:.2f}× RecTools ALS's top-10 coverage)",
        "",
    ]
    record(f"rerank_{args.shape}.md", lines)

    figure, axes = plt.subplots(1, 2, figsize=(13, 5))
    for axis, metric in zip(axes, (COVERAGE, NOVELTY), strict=True):
        axis.plot(
            table.loc[curve_names, metric],
            table.loc[curve_names, SELECTION_METRIC],
            "o-",
            label=f"re-ranked, pool {args.pool}",
        )
        for s in (0.0, 0.3, 0.5, 1.0):
            axis.annotate(
                f"λ={s:g}", (table.loc[curve_name(s), metric], table.loc[curve_name(s), SELECTION_METRIC])
            )
        quick = [f"quick_try_{a:g}" for a in QUICK_TRY_ALPHAS]
        axis.plot(
            table.loc[quick, metric],
            table.loc[quick, SELECTION_METRIC],
            "s--",
            label="quick try: top 30 / pop^α",
        )
        for name in baselines:
            axis.plot(table.loc[name, metric], table.loc[name, SELECTION_METRIC], "^", label=name)
        axis.plot(point[metric], point[SELECTION_METRIC], "*", markersize=15, label="default (chosen)")
        axis.set_xlabel(metric)
        axis.set_ylabel(SELECTION_METRIC)
        axis.set_title(f"{args.shape}: accuracy vs {metric} (users with history)")
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(RESULTS_DIR / f"rerank_{args.shape}.png", dpi=110)


if __name__ == "__main__":
    main()
