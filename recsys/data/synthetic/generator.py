"""Writing a whole twin: the steps in order, each with its own random stream."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from recsys.data.schema import (
    CATEGORY_TREE,
    EVENTS,
    ITEM_PROPERTIES,
)
from recsys.data.synthetic.events import simulate_events
from recsys.data.synthetic.items import Items, build_items
from recsys.data.synthetic.properties import build_property_rows
from recsys.data.synthetic.samplers import build_samplers
from recsys.data.synthetic.sampling import ProgressFn
from recsys.data.synthetic.scales import TwinScale, TwinSummary, resolve_scale
from recsys.data.synthetic.tree import build_tree
from recsys.data.synthetic.writing import write_category_tree, write_events, write_item_properties


def generate_twin(
    out_dir: Path,
    scale: str | TwinScale = "small",
    seed: int = 42,
    progress: ProgressFn | None = None,
) -> TwinSummary:
    """Write a synthetic twin of the RetailRocket files into ``out_dir``.

    Parameters
    ----------
    out_dir : Path
        Target folder, created if missing; files of an earlier twin are replaced.
    scale : str or TwinScale
        ``"tiny"`` (unit tests), ``"small"`` (demo, ~5 % of the real size), ``"full"``
        (the real size) or a custom :class:`TwinScale`.
    seed : int
        Seed of every random choice: the same seed and scale give byte-identical files.
    progress : callable, optional
        Called with a short message at each step.

    Returns
    -------
    TwinSummary
        Paths and row counts of the written files.

    Notes
    -----
    Each file is written under a temporary name in ``out_dir`` and renamed when complete, so
    a failure never leaves a half-written file under a Kaggle name.
    """
    started = time.perf_counter()
    spec = resolve_scale(scale)
    say: ProgressFn = progress if progress is not None else _silent
    out_dir.mkdir(parents=True, exist_ok=True)
    rngs = _random_streams(seed)

    say(f"twin {spec.name} (seed {seed}): category tree and items")
    tree = build_tree(rngs["tree"], spec)
    items = build_items(rngs["items"], spec, tree)
    samplers, category_popularity = build_samplers(items, tree.n_total)
    say("events: visitors, sessions and views")
    events = simulate_events(rngs["events"], spec, tree, items, samplers, category_popularity)
    del samplers

    files = {name: out_dir / name for name in (*CATEGORY_TREE.files, *EVENTS.files, *ITEM_PROPERTIES.files)}
    rows: dict[str, int] = {}
    say(f"writing {CATEGORY_TREE.files[0]}")
    rows[CATEGORY_TREE.files[0]] = write_category_tree(files[CATEGORY_TREE.files[0]], tree, rngs["tree"])
    say(f"writing {EVENTS.files[0]}")
    rows[EVENTS.files[0]] = write_events(files[EVENTS.files[0]], events, items)

    say("item properties: states, values and rows")
    event_counts = np.bincount(events.item, minlength=items.n).astype(np.int64)
    property_rows = build_property_rows(rngs["properties"], spec, tree, items, event_counts)
    del events
    rows |= write_item_properties(out_dir, property_rows, items, rngs["order"], say)
    seconds = time.perf_counter() - started
    say(f"twin {spec.name} written to {out_dir} in {seconds:.1f} s")
    return TwinSummary(out_dir=out_dir, scale=spec.name, seed=seed, files=files, rows=rows, seconds=seconds)


def planted_items(scale: str | TwinScale = "small", seed: int = 42) -> Items:
    """The items as :func:`generate_twin` draws them for ``scale`` and ``seed``: the planted truth
    (weekly popularity, price levels) that no model sees, for measuring how far a model is from it."""
    spec = resolve_scale(scale)
    rngs = _random_streams(seed)
    return build_items(rngs["items"], spec, build_tree(rngs["tree"], spec))


def _silent(_message: str) -> None:
    """A progress callback that ignores messages."""


def _random_streams(seed: int) -> dict[str, np.random.Generator]:
    """Independent generators per part, so that changing one part leaves the others as they were."""
    names = ("tree", "items", "events", "properties", "order")
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {name: np.random.default_rng(child) for name, child in zip(names, children, strict=True)}
