"""The seven pipeline stages, shared by the Airflow DAGs and the ``recsys pipeline run`` runner.

Every stage takes a :class:`RunContext` (settings + the run's moment, i.e. the DAG's data
interval end) and returns a small JSON-able summary (fit for XCom). Stages are idempotent:
running one again for the same moment rebuilds the same tables from the same data. They read
the prepared tables, save models to the object store and publish tables atomically.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recsys.config import Settings
from recsys.data.prepare import PrepareSkipped, prepare_datasets
from recsys.data.readers import read_interactions, read_items
from recsys.evaluation.offline import SELECTION_METRIC, TimeSplit, evaluate, split_data
from recsys.evaluation.operating_point import StrengthChoice, tune_strength
from recsys.evaluation.tuning import TuningResult, tune, untuned
from recsys.models.als import ALSModel
from recsys.models.base import ModelError, Recommender
from recsys.models.dataset import InteractionData
from recsys.models.i2i import ItemToItemModel, user_histories
from recsys.models.popular import PopularModel
from recsys.models.ranker import TwoStageConfig, TwoStageModel
from recsys.models.rerank import PopularityReRanker, ReRankConfig
from recsys.models.session_blend import (
    BLEND_WEIGHTS,
    SESSION_BLEND_MODEL,
    SessionBlendModel,
    SessionBlendWeights,
)
from recsys.models.similar import covisitation_similar_items, items_short_of, merge_similar_items
from recsys.pipeline.session_blend import CART, GOAL, tune_session_blend
from recsys.publishing.catalogue import (
    DEFAULT_RECOMMENDATIONS,
    I2I_RECOMMENDATIONS,
    PERSONALIZED_RECOMMENDATIONS,
    RANKED_RECOMMENDATIONS,
    SIMILAR_ITEMS,
    USER_HISTORIES,
    PublishedTable,
)
from recsys.publishing.registry import ModelRegistry, ModelVersion, quality_gate
from recsys.storage.database import create_db_engine
from recsys.storage.object_store import ObjectStore, open_object_store

logger = logging.getLogger(__name__)

ALS_MODEL = "als"
# Named in the error a stage raises when it needs the ALS model and none has been promoted yet.
ALS_STAGE_HINT = "stage train_als_model (DAG 2_train_als_model)"
RANKER_MODEL = "two_stage"
# The record, stored with each ranker version, of the re-ranking strength chosen for it.
RERANK_RECORD = "rerank"


@dataclass
class RunContext:
    """What a stage needs: settings and the moment the run describes (naive UTC).

    ``promote_backfill``: serve the tables this run publishes even when they describe an older
    moment than the served ones (by default such a backfill only records its versions).
    """

    settings: Settings
    moment: datetime
    summary: dict[str, Any] = field(default_factory=dict)
    promote_backfill: bool = False

    @cached_property
    def engine(self) -> Engine:
        """The project database."""
        return create_db_engine(self.settings.db_url)

    @cached_property
    def store(self) -> ObjectStore:
        """The object store for models."""
        return open_object_store(self.settings.store_url, self.settings)

    @cached_property
    def registry(self) -> ModelRegistry:
        """Model versions in the object store."""
        return ModelRegistry(self.store)

    @cached_property
    def window(self) -> InteractionData:
        """Interactions of the training window ending at the run's moment (or the data's end)."""
        with self.engine.connect() as conn:
            last = conn.execute(sa.text("SELECT MAX(datetime) FROM interactions")).scalar()
        if last is None:
            raise ValueError("the interactions table is empty: run stage prepare_dataset first")
        end = min(pd.Timestamp(self.moment), pd.Timestamp(last) + pd.Timedelta(milliseconds=1))
        days = self.settings.training_window_days
        since = None if days is None else (end - pd.Timedelta(days=days)).to_pydatetime()
        frame = read_interactions(self.engine, since=since, before=end.to_pydatetime())
        window = InteractionData.build(frame, read_items(self.engine), now=end)
        logger.info(
            "training window until %s: %d interactions of %d users and %d items",
            end,
            len(frame),
            window.n_users,
            window.n_items,
        )
        return window

    def active_users(self) -> np.ndarray:
        """Users with an event in the last ``active_user_days`` of the window."""
        data = self.window
        recent = data.interactions["datetime"] >= data.now - pd.Timedelta(days=self.settings.active_user_days)
        return np.unique(data.interactions.loc[recent, "user_id"].to_numpy())

    def validation_split(self) -> tuple[TimeSplit, InteractionData]:
        """The window's last ``validation_days`` held out, and the training data before them."""
        return split_data(self.window, self.settings.validation_days)

    def depth(self, table: PublishedTable) -> int:
        """Rows per key the run publishes in ``table``."""
        return table.depth(self.settings)

    def publish(self, table: PublishedTable, frame: pd.DataFrame | Iterable[pd.DataFrame]) -> int:
        """Publish a catalogue table (or its batches) for the run's moment; returns its new version."""
        published = table.publish(
            self.engine,
            frame,
            as_of=self.moment,
            keep_versions=self.settings.keep_table_versions,
            promote=self.promote_backfill,
        )
        self.summary[table.name] = {
            "version": published.version,
            "rows": published.rows,
            "served": published.served,
        }
        return published.version

    def save_model(self, name: str, model: Recommender, metrics: dict[str, float]) -> dict[str, Any]:
        """Save a trained model as a new version and promote it, unless a model trained on a
        later moment is in service (a backfill: the version is kept but not served)."""
        version = f"{pd.Timestamp(self.moment):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
        self.registry.save(name, version, model, metrics)
        promoted = self.registry.promote(
            name, version, metrics, as_of=self.moment, force=self.promote_backfill
        )
        if promoted is None:
            logger.warning(
                "%s %s saved, not promoted: the model in service was trained on data of a later "
                "moment (promote_backfill serves it)",
                name,
                version,
            )
        return {"version": version, "promoted": promoted is not None}


# -- stage 1 -----------------------------------------------------------------------------------
def prepare_dataset(ctx: RunContext) -> dict[str, Any]:
    """Build the prepared ``items`` and ``interactions`` tables as of the run's moment."""
    report = prepare_datasets(
        ctx.engine,
        ctx.settings.event_weights,
        ctx.settings.session_gap_minutes,
        ctx.moment,
        allow_older=ctx.promote_backfill,
    )
    if isinstance(report, PrepareSkipped):
        return {"skipped": str(report)}
    return {"items": report.n_items, "interactions": report.n_interactions, "users": report.n_users}


# -- stages 2 and 7: training with a quality gate ---------------------------------------------
class GateOutcome(NamedTuple):
    """What the quality gate decided, and the candidate it judged (fitted on the data before the
    validation days; None when the window was too short to validate)."""

    summary: dict[str, Any]
    validation_fit: Recommender | None


def _train_with_gate(ctx: RunContext, name: str, factory: Callable[[], Recommender]) -> GateOutcome:
    """Train on the window minus the validation days, compare with the model in service on the
    same validation days, and if the candidate is at least as good, retrain it on the whole
    window and promote it. A worse candidate is not saved: the working model keeps serving.

    The model in service was trained on days that may include the validation days, so judging
    it as it is would favour it; its configuration is fitted on the candidate's training days
    instead (skipped when it is the candidate's configuration: the same fit would result)."""
    data = ctx.window
    try:
        split, train = ctx.validation_split()
    except ValueError as exc:
        unvalidated = _train_unvalidated(ctx, name, factory, f"too little data to validate: {exc}")
        return GateOutcome(unvalidated, None)
    candidate = factory().fit(train)
    users = split.test_users
    metrics = evaluate(candidate.recommend(users, train, 10), split).loc["all"].to_dict()
    current = ctx.registry.current(name)
    current_metrics = None
    unreadable = None
    if current is not None:
        try:
            _, in_service = ctx.registry.load_current(name)
        except ModelError as exc:
            # Corrupt, or saved by an older version of the model class: it could not serve
            # either, so any working candidate replaces it.
            unreadable = f"the model in service (version {current.version}) cannot be loaded: {exc}"
            logger.warning("%s training: %s", name, unreadable)
        else:
            if type(in_service) is type(candidate) and in_service.config == candidate.config:
                current_metrics = metrics
            else:
                rival = type(in_service)(in_service.config).fit(train)
                current_metrics = evaluate(rival.recommend(users, train, 10), split).loc["all"].to_dict()
    promote, reason = quality_gate(metrics, current, SELECTION_METRIC, current_metrics)
    reason = unreadable or reason
    result: dict[str, Any] = {
        "promoted": promote,
        "reason": reason,
        SELECTION_METRIC: metrics[SELECTION_METRIC],
    }
    if current_metrics is not None:
        result[f"current_{SELECTION_METRIC}"] = current_metrics[SELECTION_METRIC]
    if promote:
        result.update(ctx.save_model(name, factory().fit(data), metrics))
        if not result["promoted"]:
            reason = result["reason"] = f"{reason}; kept unserved: the model in service is of a later moment"
    logger.info("%s training: %s", name, reason)
    _log_to_mlflow(ctx, name, factory().config.model_dump(mode="json"), metrics, current_metrics, result)
    return GateOutcome(result, candidate)


def _train_unvalidated(
    ctx: RunContext, name: str, factory: Callable[[], Recommender], why: str
) -> dict[str, Any]:
    """A window too short to validate: the model in service keeps serving; without one, the
    candidate is trained on the whole window and promoted (a model beats no model)."""
    current = ctx.registry.current(name)
    if current is not None:
        reason = f"{why}; version {current.version} stays in service"
        logger.warning("%s training: %s", name, reason)
        return {"promoted": False, "reason": reason, SELECTION_METRIC: None}
    reason = f"{why}; trained on the whole window without validation"
    logger.warning("%s training: %s", name, reason)
    return {"reason": reason, SELECTION_METRIC: None, **ctx.save_model(name, factory().fit(ctx.window), {})}


def _log_to_mlflow(
    ctx: RunContext,
    name: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    current_metrics: dict[str, float] | None,
    result: dict[str, Any],
) -> None:
    """Record a retraining run when a tracking URI is configured."""
    if not ctx.settings.mlflow_tracking_uri:
        return
    import mlflow

    mlflow.set_tracking_uri(ctx.settings.mlflow_tracking_uri)
    mlflow.set_experiment(ctx.settings.mlflow_experiment)
    with mlflow.start_run(run_name=f"pipeline_{name}_{pd.Timestamp(ctx.moment):%Y%m%d}"):
        mlflow.set_tags(
            {"stage": f"train_{name}", "promoted": str(result["promoted"]), "reason": result["reason"]}
        )
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.log_metrics({f"candidate_{k.replace('@', '_at_')}": float(v) for k, v in metrics.items()})
        if current_metrics is not None:
            mlflow.log_metrics(
                {f"current_{k.replace('@', '_at_')}": float(v) for k, v in current_metrics.items()}
            )


def _tuned_factory(
    ctx: RunContext, name: str, model_class: type[Recommender], seconds: float
) -> tuple[Callable[[], Recommender], dict[str, Any]]:
    """A factory of ``model_class`` with the config tuned on the gate's training days, and the
    search's summary.

    The search never sees the gate's validation days (it splits the days before them in
    time), so the gate still judges the tuned candidate and the refitted incumbent on days
    neither was chosen or trained on. Too little data to split twice: the shipped config.
    """
    try:
        _, train = ctx.validation_split()
    except ValueError as exc:
        result = untuned(model_class, f"too little data to validate, the shipped defaults are used: {exc}")
        logger.warning("%s tuning: %s", name, result.reason)
    else:
        result = tune(
            model_class,
            train,
            ctx.settings.validation_days,
            seconds,
            ctx.settings.tuning_max_trials,
            seed=ctx.settings.tuning_seed,
        )
        del train
    _log_tuning_to_mlflow(ctx, name, result)
    config = result.config
    return (lambda: model_class(config)), result.summary()


def _log_tuning_to_mlflow(ctx: RunContext, name: str, result: TuningResult) -> None:
    """Record a search (chosen params, best and default values, the trials as a table) when a
    tracking URI is configured."""
    if not ctx.settings.mlflow_tracking_uri or result.trials.empty:
        return
    import mlflow

    mlflow.set_tracking_uri(ctx.settings.mlflow_tracking_uri)
    mlflow.set_experiment(ctx.settings.mlflow_experiment)
    metric = SELECTION_METRIC.replace("@", "_at_")
    with mlflow.start_run(run_name=f"tuning_{name}_{pd.Timestamp(ctx.moment):%Y%m%d}"):
        mlflow.set_tags({"stage": f"train_{name}", "tuning": "true", "reason": result.reason})
        mlflow.log_params({k: str(v)[:500] for k, v in result.params.items()})
        mlflow.log_metrics({"trials": float(len(result.trials)), "tuning_seconds": result.seconds})
        for value, step in zip(result.trials["value"], result.trials["number"], strict=True):
            if pd.notna(value):
                mlflow.log_metric(f"trial_{metric}", float(value), step=int(step))
        if result.best_value is not None:
            mlflow.log_metric(f"best_{metric}", result.best_value)
        if result.default_value is not None:
            mlflow.log_metric(f"default_{metric}", result.default_value)
        mlflow.log_text(result.trials.to_csv(index=False), "tuning/trials.csv")


def train_als_model(ctx: RunContext) -> dict[str, Any]:
    """Tune ALS on the window's training days, fit it, save it, promote it if not worse."""
    factory, tuning = _tuned_factory(ctx, ALS_MODEL, ALSModel, ctx.settings.tuning_seconds_als)
    return {**_train_with_gate(ctx, ALS_MODEL, factory).summary, "tuning": tuning}


# -- stage 3 -----------------------------------------------------------------------------------
def prepare_default_recommendations(ctx: RunContext) -> dict[str, Any]:
    """Popular available items for cold users."""
    ranking = PopularModel().fit(ctx.window).ranking(ctx.window, ctx.depth(DEFAULT_RECOMMENDATIONS))
    if ranking.empty:
        raise ValueError(
            "no available item has interactions in the window: default recommendations would be empty"
        )
    ctx.publish(DEFAULT_RECOMMENDATIONS, ranking)
    return ctx.summary


# -- stages 4 and 5 ----------------------------------------------------------------------------
def _publish_user_recommendations(
    ctx: RunContext, table: PublishedTable, model: Recommender
) -> dict[str, Any]:
    users = ctx.active_users()
    recs = model.recommend(users, ctx.window, ctx.depth(table))
    ctx.publish(table, recs)
    ctx.summary[table.name]["users"] = int(recs["user_id"].nunique())
    return ctx.summary


def prepare_personalized_recommendations(ctx: RunContext) -> dict[str, Any]:
    """ALS recommendations for every active user, from the promoted ALS model."""
    version, model = ctx.registry.load_current(ALS_MODEL, stage_hint=ALS_STAGE_HINT)
    ctx.summary["model_version"] = version.version
    return _publish_user_recommendations(ctx, PERSONALIZED_RECOMMENDATIONS, model)


def prepare_i2i_recommendations(ctx: RunContext) -> dict[str, Any]:
    """Neighbours of each active user's recent items, and every user's history, from which the
    service scores the neighbours of users without a published list at request time."""
    model = ItemToItemModel().fit(ctx.window)
    histories = user_histories(ctx.window, model.config.n_recent)
    ctx.publish(USER_HISTORIES, histories)
    ctx.summary[USER_HISTORIES.name]["users"] = int(histories["user_id"].nunique())
    return _publish_user_recommendations(ctx, I2I_RECOMMENDATIONS, model)


# -- stage 6 -----------------------------------------------------------------------------------
def prepare_similar_items(ctx: RunContext) -> dict[str, Any]:
    """Co-visited items of every item, completed with ALS neighbours when an ALS model exists; then
    the session model the service blends online (:func:`publish_session_blend`)."""
    n = ctx.depth(SIMILAR_ITEMS)
    similar = covisitation_similar_items(ctx.window, n)
    if ctx.registry.current(ALS_MODEL) is not None:
        _, als = ctx.registry.load_current(ALS_MODEL)
        assert isinstance(als, ALSModel)
        short = items_short_of(similar, ctx.window.item_codes.ids, n)
        similar = merge_similar_items(similar, als.similar_items(short, n), n)
        assert als.similar_search is not None
        ctx.summary["als_neighbours"] = {"items": int(short.size), **asdict(als.similar_search)}
    else:
        logger.warning("no ALS model yet: similar items come from co-visitation only")
        similar = similar.assign(source="covisitation")
    ctx.publish(SIMILAR_ITEMS, similar)
    ctx.summary[SESSION_BLEND_MODEL] = publish_session_blend(ctx)
    return ctx.summary


def publish_session_blend(ctx: RunContext) -> dict[str, Any]:
    """V-SKNN over the window's sessions with the blend's weights chosen on its validation days,
    saved and promoted for the service (default weights when the window has no validation session)."""
    try:
        weights, metrics = tune_session_blend(
            ctx.window,
            ctx.settings.validation_days,
            ctx.depth(SIMILAR_ITEMS),
            ctx.settings.session_validation_sessions,
            ctx.settings.session_validation_prefixes,
        )
    except ValueError as error:
        logger.warning("session blend: default weights (%s)", error)
        weights, metrics = SessionBlendWeights(), {}
    model = SessionBlendModel(weights).fit(ctx.window)
    # Every validation metric (the blend's and each single method's) is kept with the model and
    # logged; the XCom carries the two the weights were chosen on.
    saved = ctx.save_model(SESSION_BLEND_MODEL, model, metrics)
    logger.info("session blend validation metrics: %s", metrics)
    chosen_on = {
        key: round(metrics[key], 4) for key in (f"validation_{GOAL}", f"validation_{CART}") if key in metrics
    }
    return {**saved, "weights": weights.model_dump(include=set(BLEND_WEIGHTS)), **chosen_on}


# -- stage 7 -----------------------------------------------------------------------------------
def train_ranking_model_and_rank_recommendations(ctx: RunContext) -> dict[str, Any]:
    """Tune and train the two-stage ranker (with the quality gate), then publish its recommendations
    re-ranked with the strength chosen for the model in service."""
    factory, tuning = _tuned_factory(ctx, RANKER_MODEL, TwoStageModel, ctx.settings.tuning_seconds_ranker)
    try:
        training, validation_fit = _train_with_gate(ctx, RANKER_MODEL, factory)
    except ValueError as exc:
        # E.g. no add-to-cart or purchase in any label window: no ranker can learn from the
        # data. A ranker in service still ranks; without one, the service answers from the
        # other tables (nothing is published, rather than an empty table).
        training = {"promoted": False, "reason": f"the ranker cannot be trained on this window: {exc}"}
        validation_fit = None
        logger.warning("%s training: %s", RANKER_MODEL, training["reason"])
    ctx.summary["training"] = {**training, "tuning": tuning}
    if ctx.registry.current(RANKER_MODEL) is None:
        return ctx.summary
    version, ranker = ctx.registry.load_current(RANKER_MODEL)
    assert isinstance(ranker, TwoStageModel)
    strength = _rerank_strength(ctx, version, ranker.config, validation_fit)
    del validation_fit  # not needed for ranking every active user: its memory is freed first
    return _publish_reranked(ctx, ranker, strength)


def _rerank_strength(
    ctx: RunContext, version: ModelVersion, config: TwoStageConfig, validation_fit: Recommender | None
) -> float:
    """The re-ranking strength: the setting if fixed, else the one chosen for the ranker version in
    service (on the validation days, once per version, stored with it).

    ``validation_fit``: the gate's candidate, fitted on the days before the validation days;
    when it has the configuration in service, the choice reuses it instead of fitting again."""
    if ctx.settings.rerank_strength is not None:
        ctx.summary["rerank"] = {"strength": ctx.settings.rerank_strength, "reason": "RECSYS_RERANK_STRENGTH"}
        return ctx.settings.rerank_strength
    record = ctx.registry.load_record(RANKER_MODEL, version.version, RERANK_RECORD)
    if record is None:
        fitted = validation_fit if isinstance(validation_fit, TwoStageModel) else None
        reusable = fitted is not None and fitted.config == config
        choice = _choose_rerank_strength(ctx, config, fitted if reusable else None)
        record = choice.summary()
        ctx.registry.save_record(RANKER_MODEL, version.version, RERANK_RECORD, record)
        _log_rerank_curve(ctx, choice)
    ctx.summary["rerank"] = {key: record[key] for key in ("strength", "tuned", "reason", "targets")}
    logger.info("re-ranking strength %.2f: %s", record["strength"], record["reason"])
    return float(record["strength"])


def _choose_rerank_strength(
    ctx: RunContext, config: TwoStageConfig, fitted: TwoStageModel | None = None
) -> StrengthChoice:
    """The strength chosen on the gate's validation split (``fitted``: ``config`` already fitted on
    its training days); with too little data for that, the default."""
    default = ReRankConfig().strength
    try:
        split, train = ctx.validation_split()
        choice = tune_strength(config, split, train, ctx.settings.rerank_pool, fitted)
    except ValueError as exc:
        reason = (
            f"too little data to choose the re-ranking strength on the last "
            f"{ctx.settings.validation_days} validation days ({exc}): using the default {default}"
        )
        logger.warning(reason)
        return StrengthChoice(default, tuned=False, reason=reason)
    assert choice.curve is not None
    logger.info("re-ranking curve on the validation days:\n%s", choice.curve.round(4).to_string())
    return choice


def _publish_reranked(ctx: RunContext, ranker: TwoStageModel, strength: float) -> dict[str, Any]:
    """Rank every active user's pool and publish its re-ranked top, batch by batch as they are
    ranked (users in batches: the whole table is never held in memory)."""
    depth = ctx.depth(RANKED_RECOMMENDATIONS)
    reranker = PopularityReRanker(ReRankConfig(strength=strength, pool=ctx.settings.rerank_pool)).fit(
        ctx.window
    )
    ranked_users = 0

    def batches() -> Iterator[pd.DataFrame]:
        nonlocal ranked_users
        pools = ranker.recommend_batches(ctx.active_users(), ctx.window, max(depth, reranker.config.pool))
        for pool in pools:
            recs = reranker.rerank(pool, depth)
            ranked_users += int(recs["user_id"].nunique())  # batches hold disjoint users
            yield recs

    ctx.publish(RANKED_RECOMMENDATIONS, batches())
    ctx.summary[RANKED_RECOMMENDATIONS.name]["users"] = ranked_users
    return ctx.summary


def _log_rerank_curve(ctx: RunContext, choice: StrengthChoice) -> None:
    """Record the validation curve and the chosen strength when a tracking URI is configured."""
    if not ctx.settings.mlflow_tracking_uri or choice.curve is None:
        return
    import mlflow

    mlflow.set_tracking_uri(ctx.settings.mlflow_tracking_uri)
    mlflow.set_experiment(ctx.settings.mlflow_experiment)
    with mlflow.start_run(run_name=f"pipeline_rerank_{pd.Timestamp(ctx.moment):%Y%m%d}"):
        mlflow.set_tags({"stage": "rerank", "reason": choice.reason[:500]})
        mlflow.log_params({"strength": choice.strength, "tuned": choice.tuned})
        mlflow.log_metrics({f"target_{k.replace('@', '_at_')}": v for k, v in choice.targets.items()})
        strengths = choice.curve.index.to_numpy(dtype=np.float64)
        for strength, row in zip(strengths, choice.curve.to_dict(orient="records"), strict=True):
            metrics = {name.replace("@", "_at_"): float(value) for name, value in row.items()}
            mlflow.log_metrics(metrics, step=round(strength * 100))


STAGES: dict[str, Callable[[RunContext], dict[str, Any]]] = {
    "prepare_dataset": prepare_dataset,
    "train_als_model": train_als_model,
    "prepare_default_recommendations": prepare_default_recommendations,
    "prepare_personalized_recommendations": prepare_personalized_recommendations,
    "prepare_i2i_recommendations": prepare_i2i_recommendations,
    "prepare_similar_items": prepare_similar_items,
    "train_ranking_model_and_rank_recommendations": train_ranking_model_and_rank_recommendations,
}


def _logged(
    name: str, stage: Callable[[RunContext], dict[str, Any]]
) -> Callable[[RunContext], dict[str, Any]]:
    """The stage with a start and a finish line (seconds taken, its summary with row counts) in the log."""

    @functools.wraps(stage)
    def run(ctx: RunContext) -> dict[str, Any]:
        logger.info("stage %s started for the moment %s", name, ctx.moment)
        started = time.perf_counter()
        summary = stage(ctx)
        logger.info("stage %s finished in %.1f s: %s", name, time.perf_counter() - started, summary)
        return summary

    return run


# The CLI and the Airflow tasks run the stages through here, so both show the same progress lines.
STAGES = {name: _logged(name, stage) for name, stage in STAGES.items()}
