"""Hyper-parameter search on a time-split validation of the loaded data (Optuna's TPE).

The shipped configs were chosen on the synthetic twin; a shop of another shape needs other
values. :func:`tune` holds out the last ``validation_days`` of the data it is given, fits
each trial's config on the days before and scores NDCG@10 of the held-out add-to-cart and
purchase pairs (:func:`recsys.evaluation.offline.evaluate`, as the quality gate does). The
shipped config is the first trial and the best trial replaces it only when strictly better,
so tuning never picks a config worse than the default on validation. The sampler is seeded:
the same data, seed and trial cap give the same trials.

The budget is ``seconds`` and ``max_trials`` (either 0 switches tuning off): no trial starts
after ``seconds``, a running one finishes. A window too short to hold out validation days
with add-to-cart or purchase events (or an environment without Optuna) gets the shipped
config and a ``reason`` saying why, never an error.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from recsys.evaluation.offline import SELECTION_METRIC, evaluate, split_data
from recsys.models.base import ModelConfig, Recommender
from recsys.models.dataset import InteractionData
from recsys.progress import ProgressLog

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IntRange:
    """Integers from ``low`` to ``high`` (inclusive), sampled on a log scale if ``log``."""

    low: int
    high: int
    log: bool = False


@dataclass(frozen=True)
class FloatRange:
    """Reals from ``low`` to ``high``, sampled on a log scale if ``log``."""

    low: float
    high: float
    log: bool = False


SearchSpace = dict[str, IntRange | FloatRange]

# The parameters that matter, per model kind; a dotted name reaches into a nested config
# (``ranker.depth`` is ``TwoStageConfig.ranker.depth``). Every shipped default lies inside.
SEARCH_SPACES: dict[str, SearchSpace] = {
    "als": {
        "factors": IntRange(16, 256, log=True),
        "regularization": FloatRange(1e-3, 1.0, log=True),
        "alpha": FloatRange(1.0, 100.0, log=True),
        "iterations": IntRange(5, 30),
    },
    "two_stage": {
        "itemknn.neighbours": IntRange(10, 200, log=True),
        "ranker.depth": IntRange(3, 10),
        # The most trees; early stopping on the newest label window picks how many are kept.
        "ranker.iterations": IntRange(100, 1000, log=True),
        "ranker.learning_rate": FloatRange(0.02, 0.3, log=True),
    },
}


@dataclass(frozen=True)
class TuningResult:
    """The chosen config and how it was found.

    ``trials`` has one row per trial: ``number``, ``state``, ``value`` (NaN unless
    complete), ``seconds`` and one column per searched parameter. ``reason`` says why the
    default was kept when no search ran.
    """

    config: ModelConfig
    default_config: ModelConfig
    trials: pd.DataFrame
    best_value: float | None
    default_value: float | None
    seconds: float
    reason: str

    @property
    def params(self) -> dict[str, Any]:
        """The searched parameters' chosen values (dotted names)."""
        return {name: _get(self.config, name) for name in _space_names(self.trials)}

    def summary(self) -> dict[str, Any]:
        """A small JSON-able summary (fit for XCom)."""
        return {
            "trials": len(self.trials),
            "completed": int((self.trials["state"] == "COMPLETE").sum()) if len(self.trials) else 0,
            f"best_{SELECTION_METRIC}": self.best_value,
            f"default_{SELECTION_METRIC}": self.default_value,
            "params": self.params,
            "tuned": self.config != self.default_config,
            "seconds": round(self.seconds, 1),
            "reason": self.reason,
        }


def _space_names(trials: pd.DataFrame) -> list[str]:
    return [c for c in trials.columns if c not in {"number", "state", "value", "seconds"}]


def _get(config: ModelConfig, name: str) -> Any:
    value: Any = config
    for part in name.split("."):
        value = getattr(value, part)
    return value


def with_params(config: ModelConfig, params: dict[str, Any]) -> ModelConfig:
    """``config`` with dotted-name parameters replaced (validated by the config's class)."""
    values = config.model_dump()
    for name, value in params.items():
        *path, leaf = name.split(".")
        node = values
        for part in path:
            node = node[part]
        node[leaf] = value
    return type(config).model_validate(values)


def untuned(
    model_class: type[Recommender], reason: str, default: ModelConfig | None = None, seconds: float = 0.0
) -> TuningResult:
    """The result of no search: ``default`` (the shipped config by default) and why."""
    default = default if default is not None else model_class.config_class()
    columns = ["number", "state", "value", "seconds", *SEARCH_SPACES[model_class.kind]]
    return TuningResult(
        config=default,
        default_config=default,
        trials=pd.DataFrame(columns=columns),
        best_value=None,
        default_value=None,
        seconds=seconds,
        reason=reason,
    )


def tune(
    model_class: type[Recommender],
    data: InteractionData,
    validation_days: float,
    seconds: float,
    max_trials: int,
    seed: int = 42,
    default: ModelConfig | None = None,
) -> TuningResult:
    """Search ``model_class``'s space on ``data`` split in time; return the best config.

    Parameters
    ----------
    model_class : type of Recommender
        A model kind with a search space in :data:`SEARCH_SPACES`.
    data : InteractionData
        The interactions to tune on; the last ``validation_days`` validate.
    validation_days : float
        Length of the validation window.
    seconds : float
        No trial starts after this many seconds (0 = no search).
    max_trials : int
        At most this many trials, the default config's included (0 = no search).
    seed : int
        Seed of the TPE sampler.
    default : ModelConfig, optional
        The starting config (first trial, and the result without a search); the model's
        shipped config by default.

    Returns
    -------
    TuningResult
        The chosen config (the default unless a trial scored strictly higher) and the trials.
    """
    started = time.perf_counter()
    default = default if default is not None else model_class.config_class()
    space = SEARCH_SPACES[model_class.kind]
    if seconds <= 0 or max_trials <= 0:
        return untuned(model_class, "tuning is off (budget 0)", default)
    try:
        import optuna
    except ModuleNotFoundError:
        reason = "optuna is not installed (pip install 'recsys[airflow]'): the shipped defaults are used"
        logger.warning("%s tuning: %s", model_class.kind, reason)
        return untuned(model_class, reason, default)
    try:
        split, train = split_data(data, validation_days)
    except ValueError as exc:
        reason = f"too little data to validate, the shipped defaults are used: {exc}"
        logger.warning("%s tuning: %s", model_class.kind, reason)
        return untuned(model_class, reason, default, time.perf_counter() - started)
    users = split.test_users
    logger.info(
        "%s tuning: at most %d trials in %.0f s, trained before %s, validated on %d users",
        model_class.kind,
        max_trials,
        seconds,
        split.test_start,
        users.size,
    )

    def objective(trial: optuna.Trial) -> float:
        params: dict[str, Any] = {}
        for name, bounds in space.items():
            if isinstance(bounds, IntRange):
                params[name] = trial.suggest_int(name, bounds.low, bounds.high, log=bounds.log)
            else:
                params[name] = trial.suggest_float(name, bounds.low, bounds.high, log=bounds.log)
        model = model_class(with_params(default, params)).fit(train)
        table = evaluate(model.recommend(users, train, 10), split, k_values=(10,))
        return float(table.loc["all", SELECTION_METRIC])

    # One line per trial: a trial takes seconds to minutes, so none is held back.
    progress_log = ProgressLog(logger, f"{model_class.kind} tuning", max_trials, unit="trial", interval_s=0)

    def progress(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        best = max((t.value for t in study.trials if t.value is not None), default=float("nan"))
        value = "failed" if trial.value is None else f"{trial.value:.4f}"
        progress_log.update(
            trial.number + 1, f"{SELECTION_METRIC} {value}, best {best:.4f}, budget {seconds:.0f} s"
        )

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial({name: _get(default, name) for name in space})
    # A config the model refuses to train on (e.g. a ranker without label pairs) fails its
    # trial only; the search goes on.
    study.optimize(
        objective,
        n_trials=max_trials,
        timeout=seconds,
        catch=(ValueError,),
        callbacks=[progress],
        gc_after_trial=True,
    )
    trials = pd.DataFrame(
        [
            {
                "number": t.number,
                "state": t.state.name,
                "value": np.nan if t.value is None else t.value,
                "seconds": (t.duration.total_seconds() if t.duration is not None else np.nan),
                **t.params,
            }
            for t in study.trials
        ],
        columns=["number", "state", "value", "seconds", *space],
    )
    default_value = trials["value"].iloc[0]
    complete = trials.dropna(subset=["value"])
    elapsed = time.perf_counter() - started
    if complete.empty:
        reason = "no trial could be trained: the shipped defaults are used"
        logger.warning("%s tuning: %s", model_class.kind, reason)
        return TuningResult(default, default, trials, None, None, elapsed, reason)
    best = complete.loc[complete["value"].idxmax()]
    if np.isnan(default_value) or best["value"] > default_value:
        chosen = with_params(default, study.trials[int(best["number"])].params)
        reason = f"trial {int(best['number']) + 1} of {len(trials)} is the best on validation"
    else:
        chosen = default
        reason = f"no trial of {len(trials)} beats the default on validation"
    logger.info(
        "%s tuning: %s (%s %.4f) in %.0f s",
        model_class.kind,
        reason,
        SELECTION_METRIC,
        best["value"],
        elapsed,
    )
    return TuningResult(
        config=chosen,
        default_config=default,
        trials=trials,
        best_value=float(best["value"]),
        default_value=None if np.isnan(default_value) else float(default_value),
        seconds=elapsed,
        reason=reason,
    )
