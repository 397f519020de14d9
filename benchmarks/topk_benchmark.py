"""Exact top-k of ALS scores: implicit's brute force against the norm-pruned index, side by side.

Loads the promoted ALS model of each given object store (e.g. the pipeline benchmark's kept
stores of the twin ×1 and ×2), draws the same number of trained users from each, and times
``implicit.cpu.topk.topk`` over the whole catalogue and ``InnerProductTopK.query`` on those
users (same k, same threads), checks the lists agree, and reports the share of the user × item
scores the bound spared and how the cost per user grows from the first store to the others.

Usage::

    .venv/bin/python benchmarks/topk_benchmark.py --store x1=/tmp/keep/x1/object_store \\
        --store x2=/tmp/keep/x2/object_store [--users 20000] [--k 30]

Appends a Markdown section to ``benchmarks/results/topk.md``.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime

import numpy as np
from common import add_store_argument, labelled_stores, promoted_als, record
from implicit.cpu.topk import topk

from recsys.models.inner_product_topk import InnerProductTopK


def measure(store_url: str, users: int, k: int, seed: int) -> dict[str, float]:
    """Seconds of both methods on ``users`` random trained users of the store's ALS model."""
    model = promoted_als(store_url)
    items = model.item_factors
    rng = np.random.default_rng(seed)
    vectors = model.user_factors[rng.choice(model.user_factors.shape[0], users, replace=False)]
    started = time.perf_counter()
    brute_ids, brute_scores = topk(items, vectors, k, num_threads=0)
    brute = time.perf_counter() - started
    started = time.perf_counter()
    index = InnerProductTopK(items)
    built = time.perf_counter() - started
    ids, scores = index.query(vectors, k)
    pruned = time.perf_counter() - started
    # Lists agree up to the order of equal scores: compare the item sets where scores are distinct.
    same = np.mean([set(a) == set(b) for a, b in zip(ids, brute_ids, strict=True)])
    np.testing.assert_allclose(scores, brute_scores, rtol=1e-4, atol=1e-5)
    return {
        "items": float(items.shape[0]),
        "users_total": float(model.user_factors.shape[0]),
        "brute": brute,
        "pruned": pruned,
        "built": built,
        "scored_share": index.scored_pairs / (users * items.shape[0]),
        "same_lists": float(same),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_store_argument(parser)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--k", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    stores = labelled_stores(args.store)
    results = {}
    for label, url in stores.items():
        results[label] = measure(url, args.users, args.k, args.seed)
        print(label, results[label], flush=True)
    first = results[next(iter(results))]
    lines = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — exact ALS top-{args.k} of {args.users:,} users, "
        f"{os.cpu_count()} cores (OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')})",
        "",
        "| store | items | brute force s | pruned s (index build) | speed-up | scores computed | "
        "same item sets | brute ms/user vs first | pruned ms/user vs first |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, r in results.items():
        lines.append(
            f"| {label} | {r['items']:,.0f} | {r['brute']:.1f} | {r['pruned']:.1f} ({r['built']:.2f}) | "
            f"{r['brute'] / r['pruned']:.1f}× | {r['scored_share']:.1%} | {r['same_lists']:.2%} | "
            f"{r['brute'] / first['brute']:.2f}× | {r['pruned'] / first['pruned']:.2f}× |"
        )
    lines.append("")
    record("topk.md", lines)


if __name__ == "__main__":
    main()
