"""Offline quality of our models against RecTools baselines, on one time split, in one run.

Steps: the twin (or the real files) is loaded and prepared in a throwaway SQLite database;
the last ``--test-days`` days are held out; popularity, ALS, i2i and the two-stage ranker are
trained on the rest, and so are RecTools' Popular, ItemKNN, implicit ALS and EASE (in the
RecTools environment, .venv-rectools). Every model is evaluated by the same code per user
segment (cold / light / heavy / all), and the online i2i recommender by session replay.
It also measures our ALS stage against a bare ``implicit`` fit on the same matrix.

Usage::

    .venv/bin/python benchmarks/quality_benchmark.py --scale small [--test-days 14]

Writes ``benchmarks/results/quality_<scale>.md`` and ``quality_<scale>.png``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
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
from implicit.cpu.als import AlternatingLeastSquares

from recsys.config import EventWeights
from recsys.data.loader import load_raw_data
from recsys.data.prepare import prepare_datasets
from recsys.data.readers import read_interactions, read_items
from recsys.data.synthetic import generate_twin
from recsys.evaluation.offline import evaluate, time_split
from recsys.evaluation.online import session_replay
from recsys.models.als import ALSModel
from recsys.models.base import Recommender
from recsys.models.dataset import InteractionData
from recsys.models.i2i import ItemToItemModel
from recsys.models.popular import PopularModel
from recsys.models.ranker import TwoStageModel
from recsys.storage.database import create_db_engine

ROOT = Path(__file__).resolve().parents[1]
RECTOOLS_PYTHON = ROOT / ".venv-rectools" / "bin" / "python"
K = 10
SHOWN = ["ndcg@10", "recall@10", "precision@5", "map@10", "novelty@5", "item_coverage@10", "user_coverage@10"]


def peak_rss_mib() -> float:
    """Peak RSS of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_split(raw_dir: Path, work: Path, test_days: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    engine = create_db_engine(f"sqlite:///{work / 'bench.sqlite3'}")
    load_raw_data(engine, raw_dir)
    prepare_datasets(engine, EventWeights())
    return read_interactions(engine), read_items(engine)


def als_overhead(data: InteractionData, repeats: int = 3) -> dict[str, float]:
    """Our ALS stage vs a bare implicit fit on the same matrix, alternating, best of ``repeats``."""
    matrix = data.matrix()
    ours, bare = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        ALSModel().fit(data)
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        config = ALSModel().config
        AlternatingLeastSquares(
            factors=config.factors,
            regularization=config.regularization,
            alpha=config.alpha,
            iterations=config.iterations,
            random_state=config.random_state,
        ).fit(matrix, show_progress=False)
        bare.append(time.perf_counter() - started)
    return {"ours_s": min(ours), "bare_s": min(bare), "ratio": min(ours) / min(bare)}


def rectools_baselines(split_train: pd.DataFrame, users: np.ndarray, work: Path) -> dict[str, pd.DataFrame]:
    folder = work / "rectools"
    folder.mkdir()
    split_train[["user_id", "item_id", "weight", "datetime"]].to_csv(folder / "train.csv", index=False)
    pd.DataFrame({"user_id": users}).to_csv(folder / "users.csv", index=False)
    subprocess.run(
        [str(RECTOOLS_PYTHON), str(ROOT / "benchmarks" / "rectools_baselines.py"), str(folder), str(K)],
        check=True,
    )
    timings = json.loads((folder / "timings.json").read_text())
    recos = {}
    for name in timings:
        recos[name] = pd.read_csv(folder / f"reco_{name}.csv")
        recos[name].attrs["seconds"] = timings[name]
    return recos


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", default="small")
    parser.add_argument("--raw-dir", type=Path, help="Kaggle files; default: generate the twin of --scale")
    parser.add_argument("--test-days", type=float, default=14)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        raw_dir = args.raw_dir
        if raw_dir is None:
            raw_dir = work / "raw"
            generate_twin(raw_dir, scale=args.scale)
        print("loading and preparing …", flush=True)
        interactions, items = load_split(raw_dir, work, args.test_days)
        split = time_split(interactions, args.test_days)
        data = InteractionData.build(split.train, items, now=split.test_start)
        users = split.test_users
        print(
            f"train {len(split.train):,} interactions; test users {split.segments.value_counts().to_dict()}",
            flush=True,
        )

        results: dict[str, pd.DataFrame] = {}
        seconds: dict[str, float] = {}
        models: dict[str, Recommender] = {
            "popular": PopularModel(),
            "als": ALSModel(),
            "i2i": ItemToItemModel(),
            "two_stage": TwoStageModel(),
        }
        for name, model in models.items():
            started = time.perf_counter()
            reco = model.fit(data).recommend(users, data, K)
            seconds[name] = time.perf_counter() - started
            results[name] = evaluate(reco, split)
            print(f"  {name}: {seconds[name]:.1f} s", flush=True)
        two_stage = models["two_stage"]
        assert isinstance(two_stage, TwoStageModel)
        ranker_report = two_stage.training_report

        print("RecTools baselines …", flush=True)
        for name, reco in rectools_baselines(split.train, users, work).items():
            results[name] = evaluate(reco, split)
            seconds[name] = float(reco.attrs["seconds"])

        i2i = models["i2i"]
        assert isinstance(i2i, ItemToItemModel)
        replay = session_replay(split.test, i2i.similar, k=K)
        overhead = als_overhead(data)

    table = pd.concat(
        {name: frame.loc[:, SHOWN] for name, frame in results.items()}, names=["model", "segment"]
    )
    segments = split.segments.value_counts().to_dict()
    lines = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — `{args.scale}` twin, last {args.test_days:g} days held out",
        "",
        f"Test users by segment: {segments}. Training interactions: {len(split.train):,}. "
        f"Peak RSS of the run: {peak_rss_mib():,.0f} MiB.",
        "",
    ]
    for segment in ("light", "heavy", "cold", "all"):
        lines += [f"### {segment}", "", table.xs(segment, level="segment").round(4).to_markdown(), ""]
    baselines = [n for n in results if n != "two_stage"]
    lines += [
        "### Two-stage vs the best baseline (NDCG@10 / Recall@10)",
        "",
        "| segment | metric | two-stage | best baseline | ratio |",
        "|---|---|---:|---:|---:|",
    ]
    for segment in ("light", "heavy", "cold", "all"):
        for metric in ("ndcg@10", "recall@10"):
            ours = results["two_stage"].loc[segment, metric]
            best_name = max(baselines, key=lambda n: results[n].loc[segment, metric])
            best = results[best_name].loc[segment, metric]
            ratio = ours / best if best else float("inf")
            lines.append(f"| {segment} | {metric} | {ours:.4f} | {best:.4f} ({best_name}) | {ratio:.2f} |")
    lines += [
        "",
        "### Other figures",
        "",
        f"- Fit + recommend seconds: {json.dumps({k: round(v, 1) for k, v in seconds.items()})}",
        f"- Two-stage training: {json.dumps({k: round(v, 4) for k, v in ranker_report.items()})}",
        f"- ALS stage vs bare implicit on the same matrix (best of 3): ours {overhead['ours_s']:.2f} s, "
        f"bare {overhead['bare_s']:.2f} s, ratio **{overhead['ratio']:.2f}**",
        "- Online session replay (targets = add-to-cart/purchase after earlier events of the session):",
        "",
        replay.round(4).to_markdown(),
        "",
    ]
    record(f"quality_{args.scale}.md", lines)

    figure, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    for axis, metric in zip(axes, ("ndcg@10", "recall@10"), strict=True):
        table[metric].unstack("segment")[["cold", "light", "heavy", "all"]].plot.bar(ax=axis)
        axis.set_title(f"{metric} by segment ({args.scale} twin)")
        axis.set_xlabel("")
    figure.tight_layout()
    figure.savefig(RESULTS_DIR / f"quality_{args.scale}.png", dpi=110)


if __name__ == "__main__":
    main()
