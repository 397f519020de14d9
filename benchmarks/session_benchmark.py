"""In-session quality: every online method side by side on the replayed test sessions, in one run.

Steps: the twin (or the real files) is loaded twice into scratch SQLite databases: once
prepared up to the end of the data (the test sessions come from there), once for the
pipeline, whose seven stages run at the cut ``--test-days`` before the end (the tables the
service would have served then). The test sessions (2+ events) of the window after the cut
are replayed prefix by prefix (:mod:`recsys.evaluation.sessions`): discovery (the next view of
an item not yet seen in the session) and cart (items carted or bought later in the session).

Methods, each given the prefix of the running session:

* ``popular`` — the published default list;
* ``recently_seen`` — the session's items, latest first;
* ``covisitation_i2i`` / ``als_i2i`` — neighbours of the session's latest items
  (:func:`recsys.models.i2i.score_from_recent_items`) in the co-visitation table and in ALS
  factor space, trained before the cut;
* ``vsknn`` / ``stan`` — session kNN (:mod:`recsys.models.sknn`) with the reference's
  reminders, and ``vsknn_discovery`` / ``stan_discovery`` without them;
* ``category_popular`` — the items most popular in the categories of the session's latest items
  (:mod:`recsys.models.session_category`, the settings of the session model stage 6 published);
* ``service_online`` / ``service_personalized`` — a :class:`RecommendationService` on the
  pipeline's tables, fed the visitors' test-window events one by one and asked at every prefix
  (``/online`` and the personalised endpoint: the code the service runs, not a copy).

The service never shows a visitor what they bought, nor items its catalogue does not know or
holds unavailable (the catalogue as of the cut here: the benchmark does not refresh it during
the test window, as the daily pipeline would). The single methods are scored under the same
rules (their lists made ``DEPTH`` deep, what the visitor bought up to the prefix's last event
and the items unknown or unavailable at the cut taken out, the first ``K`` kept: the headline
comparison, as the quality benchmark puts the RecTools baselines under the product's rules)
and also unfiltered (reported beside it).

Usage::

    .venv/bin/python benchmarks/session_benchmark.py --scale small [--test-days 14]

Appends a section to ``benchmarks/results/session_<scale>.md``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import count
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
from common import record
from quality_benchmark import catalogue_at, load_prepared

from recsys.config import Settings
from recsys.data.loader import load_raw_data
from recsys.data.prepare import to_epoch_ms
from recsys.data.synthetic import generate_twin, resolve_shape
from recsys.evaluation.sessions import (
    SessionReplay,
    recently_seen,
    replay_online,
    segment_of_sessions,
    session_metrics,
    session_replay,
)
from recsys.models.als import ALSModel
from recsys.models.dataset import PURCHASE_EVENTS, InteractionData
from recsys.models.i2i import ItemToItemConfig, recent_items, score_from_recent_items, top_k
from recsys.models.session_blend import BLEND_WEIGHTS, SESSION_BLEND_MODEL, SessionBlendModel
from recsys.models.session_category import CategoryPopularModel
from recsys.models.similar import covisitation_similar_items
from recsys.models.sknn import SessionQueries, STANConfig, STANModel, VSKNNConfig, VSKNNModel
from recsys.pipeline.stages import ALS_MODEL, STAGES, RunContext
from recsys.service.events import OnlineEvent
from recsys.service.service import RecommendationService
from recsys.service.settings import ServiceSettings
from recsys.storage.database import create_db_engine

K = 20
# The single methods' lists are made this deep, so that K are left once the items the visitor
# bought and those the catalogue does not show are taken out (the product's rules, which the
# service applies).
DEPTH = 2 * K
SHOWN = [
    f"{task}_{metric}@{k}" for task in ("discovery", "cart") for metric in ("hr", "mrr") for k in (10, 20)
]


def run_pipeline_at(raw_dir: Path, folder: Path, cut: pd.Timestamp) -> Settings:
    """The seven stages at ``cut`` in a scratch SQLite database and object store."""
    folder.mkdir()
    settings = Settings(
        data_dir=folder,
        database_url=f"sqlite:///{folder / 'pipeline.sqlite3'}",
        object_store_url=str(folder / "object_store"),
    )
    load_raw_data(create_db_engine(settings.db_url), raw_dir)
    context = RunContext(settings, cut.to_pydatetime())
    for name, stage in STAGES.items():
        started = time.perf_counter()
        context.summary = {}
        stage(context)
        print(f"  pipeline {name}: {time.perf_counter() - started:.1f} s", flush=True)
    return settings


def neighbour_lists(history: pd.DataFrame, similar: pd.DataFrame, data: InteractionData) -> pd.DataFrame:
    """The online i2i scoring of every prefix (``prefix_id`` as ``user_id``), unavailable items out."""
    config = ItemToItemConfig()
    scored = score_from_recent_items(
        recent_items(history, config.n_recent), similar, config.recency_half_life
    )
    scored = data.exclude(scored, bought=False)
    return top_k(scored, DEPTH).rename(columns={"user_id": "prefix_id"})


def service_lists(
    settings: Settings, replay: SessionReplay, previous: pd.DataFrame, endpoint: str
) -> pd.DataFrame:
    """A fresh service on the pipeline's tables, replayed through; ``endpoint``: online or personalized."""
    service = RecommendationService(ServiceSettings(**settings.model_dump()))
    service.reload()
    service.activity.apply_poll(np.empty((0, 5), dtype=np.int64))  # loaded: no events yet
    event_ids = count(1)

    def record_event(user: int, item: int, event: str, moment: pd.Timestamp) -> None:
        stamp = to_epoch_ms(moment.to_pydatetime())
        service.activity.add(OnlineEvent(next(event_ids), user, item, event, stamp))

    answer = service.online if endpoint == "online" else service.personalized

    def recommend(user: int) -> list[int]:
        return [r["item_id"] for r in answer(user, K).items]

    try:
        return replay_online(replay, record_event, recommend, previous)
    finally:
        service.close()


RULES = (
    "under the product's rules (nothing the visitor bought before the prefix's end, nothing unknown "
    "or unavailable in the catalogue at the cut)"
)
UNFILTERED = "unfiltered"


def bought_before(replay: SessionReplay, interactions: pd.DataFrame) -> pd.DataFrame:
    """``prefix_id, item_id``: what the prefix's visitor bought up to its last event (the training
    days and the test window), i.e. what the service leaves out of their lists."""
    events = replay.prefix_events()
    ends = events.groupby("prefix_id").agg(user_id=("user_id", "first"), end=("datetime", "max"))
    purchases = interactions.loc[
        interactions["event"].isin(PURCHASE_EVENTS), ["user_id", "item_id", "datetime"]
    ]
    joined = ends.reset_index().merge(purchases, on="user_id")
    return joined.loc[joined["datetime"] <= joined["end"], ["prefix_id", "item_id"]].drop_duplicates()


def cut_to(
    found: pd.DataFrame, k: int, bought: pd.DataFrame | None, shown: npt.NDArray[np.int64] | None
) -> pd.DataFrame:
    """A method's ``prefix_id, item_id, rank`` lists: without ``bought`` (if given) and with only
    the ``shown`` items (if given), ranks renumbered, the first ``k`` of each prefix."""
    if bought is not None:
        marked = found.merge(bought.assign(bought=True), on=["prefix_id", "item_id"], how="left")
        found = marked[marked["bought"].isna()].drop(columns="bought")
    if shown is not None:
        found = found[found["item_id"].isin(shown)]
    found = found.sort_values(["prefix_id", "rank"], kind="stable")
    found = found.assign(rank=found.groupby("prefix_id").cumcount() + 1)
    return found[found["rank"] <= k]


def metrics_table(lists: dict[str, pd.DataFrame], replay: SessionReplay, segments: pd.Series) -> pd.DataFrame:
    """Every method's metrics, for all visitors and per segment (cold, returning)."""
    rows = {}
    for name, found in lists.items():
        rows[(name, "all")] = session_metrics(found, replay)
        for segment in ("cold", "returning"):
            ids = segments.index[segments == segment]
            rows[(name, segment)] = session_metrics(found, replay.subset(ids))
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.names = ["method", "visitors"]
    return table


LATENCY_VISITORS = 200


def request_latency(service: RecommendationService, train: pd.DataFrame, test: pd.DataFrame) -> str:
    """p50/p95 (ms) of the personalised and online answers for new visitors with 20 online events, each
    asked right after its 20th event (the candidates are computed, not memoised), beside the personalised
    answer of returning visitors without online events (the path that does not change)."""
    rng = np.random.default_rng(0)
    items = test["item_id"].to_numpy()
    returning = rng.choice(train["user_id"].unique(), LATENCY_VISITORS)
    now = to_epoch_ms(datetime.now(UTC))
    timings: dict[str, list[float]] = {
        "personalized (no online events)": [],
        "personalized": [],
        "online": [],
    }
    for visitor in range(LATENCY_VISITORS):
        user = 10**12 + visitor
        for step, item in enumerate(rng.choice(items, 20)):
            service.activity.add(
                OnlineEvent(10**9 + visitor * 20 + step, user, int(item), "view", now + step)
            )
        for name, call, who in (
            ("personalized (no online events)", service.personalized, int(returning[visitor])),
            ("personalized", service.personalized, user),
            ("online", service.online, user),
        ):
            service._online_memo.pop(who, None)
            started = time.perf_counter()
            call(who, K)
            timings[name].append((time.perf_counter() - started) * 1000)
    return "; ".join(
        f"{name} p50 {np.percentile(t, 50):.2f} ms, p95 {np.percentile(t, 95):.2f} ms"
        for name, t in timings.items()
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", default="small")
    parser.add_argument("--shape", default="twin", help="twin, dense or sparse (docs/synthetic_twin.md)")
    parser.add_argument("--raw-dir", type=Path, help="Kaggle files; default: generate the twin of --scale")
    parser.add_argument("--test-days", type=float, default=14)
    parser.add_argument("--max-prefix-events", type=int, default=100, help="latest events of a prefix used")
    parser.add_argument(
        "--keep",
        type=Path,
        help="copy the pipeline's database and object store here (for service_benchmark.py)",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        raw_dir = args.raw_dir
        if raw_dir is None:
            raw_dir = work / "raw"
            generate_twin(
                raw_dir, scale=resolve_shape(args.shape, args.scale if args.shape == "twin" else None)
            )
        print("loading and preparing …", flush=True)
        engine, interactions, _ = load_prepared(raw_dir, work)
        cut = pd.Timestamp(interactions["datetime"].max()) - pd.Timedelta(days=args.test_days)
        train = interactions[interactions["datetime"] < cut]
        test = interactions[interactions["datetime"] >= cut]
        catalogue = catalogue_at(engine, cut)
        data = InteractionData.build(train, catalogue, now=cut)
        # What the service may show: items of the catalogue at the cut not marked unavailable.
        hidden = catalogue["available"].eq(False).fillna(False).to_numpy(dtype=bool)
        shown = catalogue.loc[~hidden, "item_id"].to_numpy(dtype=np.int64)
        print(f"pipeline at the cut {cut:%Y-%m-%d %H:%M} …", flush=True)
        settings = run_pipeline_at(raw_dir, work / "pipeline", cut)
        if args.keep is not None:
            shutil.copytree(work / "pipeline", args.keep, dirs_exist_ok=True)

        replay = session_replay(test)
        prefix_events = replay.prefix_events(args.max_prefix_events)
        history = prefix_events.rename(columns={"user_id": "visitor_id", "prefix_id": "user_id"})
        queries = SessionQueries.from_frame(prefix_events, "prefix_id")
        lists: dict[str, pd.DataFrame] = {}

        def timed(name: str, make: Callable[[], pd.DataFrame]) -> None:
            begun = time.perf_counter()
            lists[name] = make()
            seconds[name] = time.perf_counter() - begun
            print(f"  {name}: {seconds[name]:.1f} s", flush=True)

        context = RunContext(settings, cut.to_pydatetime())
        _, als = context.registry.load_current(ALS_MODEL)
        assert isinstance(als, ALSModel)
        _, published = context.registry.load_current(SESSION_BLEND_MODEL)
        assert isinstance(published, SessionBlendModel)
        n_similar = settings.n_similar_items
        timed("recently_seen", lambda: recently_seen(prefix_events, DEPTH))
        timed(
            "covisitation_i2i",
            lambda: neighbour_lists(history, covisitation_similar_items(data, n_similar), data),
        )
        timed(
            "als_i2i",
            lambda: neighbour_lists(history, als.similar_items(data.item_codes.ids, n_similar), data),
        )
        models = {
            "vsknn": VSKNNModel(),
            "vsknn_discovery": VSKNNModel(VSKNNConfig(remind=False)),
            "stan": STANModel(),
            "stan_discovery": STANModel(STANConfig(remind=False)),
            "category_popular": CategoryPopularModel(published.config.category),
        }
        for name, model in models.items():
            timed(
                name,
                lambda model=model: (
                    model.fit(data)
                    .recommend_sessions(queries, DEPTH)
                    .rename(columns={"session_id": "prefix_id"})
                ),
            )
        # Test-window events outside the replayed sessions (one-event sessions): the service has them too.
        sizes = test.groupby(["user_id", "session_index"])["item_id"].transform("size")
        previous = test[sizes < 2]
        for endpoint in ("online", "personalized"):
            timed(f"service_{endpoint}", lambda e=endpoint: service_lists(settings, replay, previous, e))
        service = RecommendationService(ServiceSettings(**settings.model_dump()))
        service.reload()
        popular = [r["item_id"] for r in service.default(DEPTH).items]
        latency = request_latency(service, train, test)
        blend_version = service.registry.current(SESSION_BLEND_MODEL)
        weights = (
            service.session_model.config.model_dump(include=set(BLEND_WEIGHTS))
            if service.session_model
            else {}
        )
        service.close()
        default = replay.prefixes[["prefix_id"]].merge(
            pd.DataFrame({"item_id": popular, "rank": np.arange(1, len(popular) + 1)}), how="cross"
        )
        lists = {"popular": default, **lists}

    segments = segment_of_sessions(replay, train["user_id"].unique())
    bought = bought_before(replay, interactions)
    served_names = ("service_online", "service_personalized")
    views = {
        view: metrics_table(
            {
                name: found
                if name in served_names
                else cut_to(found, K, *((bought, shown) if view == RULES else (None, None)))
                for name, found in lists.items()
            },
            replay,
            segments,
        )
        for view in (RULES, UNFILTERED)
    }
    table = views[RULES]
    singles = table.xs("all", level="visitors").drop(list(served_names))
    best_discovery = singles["discovery_mrr@20"]
    best_cart = singles["cart_hr@10"]
    unfiltered = views[UNFILTERED].xs("all", level="visitors").drop(list(served_names))
    served = table.loc[("service_personalized", "all")]
    counts = {s: int((segments == s).sum()) for s in ("cold", "returning")}
    lines = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — `{args.scale if args.shape == 'twin' else args.shape}` {'twin' if args.shape == 'twin' else 'shape'}, cut {cut:%Y-%m-%d %H:%M}, "
        f"test window {args.test_days:g} days",
        "",
        f"Test sessions of 2+ events: {replay.events['session_id'].nunique():,}; counted prefixes: "
        f"{len(replay.prefixes):,} ({counts['cold']:,} of new visitors, {counts['returning']:,} of returning "
        f"ones); discovery targets: {int(table.loc[('popular', 'all'), 'discovery_prefixes']):,}, "
        f"cart prefixes: {int(table.loc[('popular', 'all'), 'cart_prefixes']):,}. Lists of {K}; prefixes "
        f"cut to their latest {args.max_prefix_events} events.",
        "",
        f"Single methods {RULES} (as the service's lists):",
        "",
        table[SHOWN].round(4).to_markdown(),
        "",
        f"Single methods {UNFILTERED} (all visitors):",
        "",
        unfiltered[SHOWN].round(4).to_markdown(),
        "",
        f"- Best single method on discovery MRR@20 (all visitors, {RULES}): {best_discovery.idxmax()} "
        f"{best_discovery.max():.4f}; the service's personalised list "
        f"{table.loc[('service_personalized', 'all'), 'discovery_mrr@20']:.4f} "
        f"({table.loc[('service_personalized', 'all'), 'discovery_mrr@20'] / best_discovery.max():.2f}×), "
        f"online list {table.loc[('service_online', 'all'), 'discovery_mrr@20']:.4f} "
        f"({table.loc[('service_online', 'all'), 'discovery_mrr@20'] / best_discovery.max():.2f}×) "
        "(target ≥ 1.10×); "
        f"the best single method {UNFILTERED}: {unfiltered['discovery_mrr@20'].idxmax()} "
        f"{unfiltered['discovery_mrr@20'].max():.4f} "
        f"({served['discovery_mrr@20'] / unfiltered['discovery_mrr@20'].max():.2f}×).",
        f"- Best single method on cart HR@10: {best_cart.idxmax()} {best_cart.max():.4f}; the personalised "
        f"list {served['cart_hr@10']:.4f} ({served['cart_hr@10'] / best_cart.max():.2f}×), online list "
        f"{table.loc[('service_online', 'all'), 'cart_hr@10']:.4f} (target ≥ 1.00×); the best single "
        f"method {UNFILTERED}: {unfiltered['cart_hr@10'].idxmax()} {unfiltered['cart_hr@10'].max():.4f} "
        f"({served['cart_hr@10'] / unfiltered['cart_hr@10'].max():.2f}×).",
        f"- Session model published by stage 6: version {blend_version.version if blend_version else None}, "
        f"weights chosen on validation sessions {weights}.",
        f"- In-process latency, {LATENCY_VISITORS} visitors, each request right after one more event (no "
        f"memo): {latency}.",
        f"- Seconds (fit + all prefixes): {', '.join(f'{n} {s:.1f}' for n, s in seconds.items())}; "
        f"whole run {(time.perf_counter() - started) / 60:.1f} min.",
        "",
    ]
    record(f"session_{args.scale if args.shape == 'twin' else args.shape}.md", lines)


if __name__ == "__main__":
    main()
