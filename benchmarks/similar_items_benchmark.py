"""ALS similar items of every item: exact cosine neighbours against the IVF index, side by side.

Loads the promoted ALS model of each given object store (e.g. the pipeline benchmark's kept
stores of the twin ×1 and ×2) and finds the ``k`` cosine neighbours of every item two ways:
exact (implicit's ``topk`` over the whole catalogue, timed on a sample of the items and scaled
to all of them, since all of them take minutes at ×2) and ``cosine_neighbours`` as the
similar-items stage runs it (index built, probes chosen by measured recall, every item
searched). The index's recall is then measured against the exact neighbours of another sample.

Usage::

    .venv/bin/python benchmarks/similar_items_benchmark.py --store x1=/tmp/keep/x1/object_store \\
        --store x2=/tmp/keep/x2/object_store [--k 21] [--sample 5000]

Appends a Markdown section to ``benchmarks/results/similar_items.md``.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime

import numpy as np
from common import add_store_argument, labelled_stores, promoted_als, record

from recsys.models.als import ALSConfig
from recsys.models.cosine_neighbours import cosine_neighbours, exact_neighbours, unit_rows


def measure(store_url: str, k: int, sample: int, seed: int) -> dict[str, float]:
    """Seconds of both ways for every item of the store's ALS model, and the index's recall."""
    model = promoted_als(store_url)
    factors = model.item_factors
    n = factors.shape[0]
    rng = np.random.default_rng(seed)
    timed, checked = (np.sort(rng.choice(n, sample, replace=False)) for _ in range(2))
    unit = unit_rows(factors)
    started = time.perf_counter()
    exact_neighbours(unit, timed, k)
    exact_per_item = (time.perf_counter() - started) / sample
    config = ALSConfig()
    started = time.perf_counter()
    ids, _, search = cosine_neighbours(
        factors, np.arange(n), k, config.similar_exact_max_items, config.similar_min_recall, seed
    )
    indexed = time.perf_counter() - started
    truth, _ = exact_neighbours(unit, checked, k)
    found = ids[checked]
    recall = np.mean([len(set(f) & set(t)) / k for f, t in zip(found, truth, strict=True)])
    return {
        "items": float(n),
        "exact": exact_per_item * n,
        "indexed": indexed,
        "cells": float(search.cells),
        "probes": float(search.probes),
        "sample_recall": search.recall,
        "recall": float(recall),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_store_argument(parser)
    parser.add_argument("--k", type=int, default=21, help="neighbours per item (the stage asks depth + 1)")
    parser.add_argument("--sample", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    results = {}
    for label, url in labelled_stores(args.store).items():
        results[label] = measure(url, args.k, args.sample, args.seed)
        print(label, results[label], flush=True)
    first = results[next(iter(results))]
    lines = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — ALS similar items, {args.k} cosine neighbours of "
        f"every item, {os.cpu_count()} cores",
        "",
        f"Exact: implicit's `topk`, timed on {args.sample:,} items and scaled to all. Index: "
        "`cosine_neighbours` as the stage runs it (build, probes chosen on 2,000 items, every item "
        f"searched); recall against the exact neighbours of another {args.sample:,} items.",
        "",
        "| store | items | exact s (scaled) | index s | speed-up | cells | probes | recall (stage's sample) | "
        "recall (check) | exact vs first | index vs first |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, r in results.items():
        lines.append(
            f"| {label} | {r['items']:,.0f} | {r['exact']:.1f} | {r['indexed']:.1f} | "
            f"{r['exact'] / r['indexed']:.1f}× | {r['cells']:.0f} | {r['probes']:.0f} | "
            f"{r['sample_recall']:.3f} | {r['recall']:.3f} | {r['exact'] / first['exact']:.2f}× | "
            f"{r['indexed'] / first['indexed']:.2f}× |"
        )
    lines.append("")
    record("similar_items.md", lines)


if __name__ == "__main__":
    main()
