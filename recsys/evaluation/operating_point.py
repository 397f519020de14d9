"""The re-ranking strength chosen on a validation split: the most accurate one that meets the targets.

The targets (issue 14): item coverage@10 at least the most accurate reference's, and Novelty@5
at least ALS's, over the validation users with history (the users the re-ranking changes;
light and heavy pooled, since a validation window holds too few of each for a per-segment
choice). RecTools is not available inside the pipeline, so the references are the pipeline's
own baseline models — every candidate source of the two-stage model (ALS, item-kNN, i2i,
popularity), fitted on the same training days — and the coverage to reach is that of
whichever of them is the most accurate (NDCG@10) on the validation split: on a dense shop
that is item-kNN, whose coverage is higher than ALS's, on the twin ALS.

A validation window holds few users, so two references can be tied for the most accurate: a
reference is tied with the best when the 95% confidence interval of their paired per-user NDCG@10
difference includes 0. Any of them is then "the most accurate", and the target is the least
demanding of their coverages, since accuracy comes first (the chosen strength is the most
accurate one that meets the targets). On the small twin, where item-kNN and ALS are within
noise of each other (RecTools' test figures: NDCG@10 0.0326 and 0.0332), this keeps the
strength from being pushed up by item-kNN's wider coverage at a cost in accuracy.

A list that is the same for every user (popularity) joins a tie only when it is the most
accurate itself: its coverage is ten items of the catalogue by construction, so a tie with it
says the window is too small to rank the personalised references, not that coverage may drop
to ten items (on the small twin's 28-user validation window it did, and the strength fell to 0).

Coverage on other users lands on either side of a target met with nothing to spare (on the dense
shop the chosen strength covered 0.97× item-kNN's on the test window), so a strength meets the
coverage target only with a margin of :data:`COVERAGE_MARGIN` standard errors of its paired
coverage difference from the target reference, bootstrapped over the validation users
(:func:`coverage_difference_error`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from recsys.evaluation.metrics import item_coverage
from recsys.evaluation.offline import SELECTION_METRIC, TimeSplit, per_user_metrics
from recsys.models.als import ALSModel
from recsys.models.dataset import InteractionData
from recsys.models.popular import PopularModel
from recsys.models.ranker import TwoStageConfig, TwoStageModel
from recsys.models.rerank import PopularityReRanker, ReRankConfig

K = 10
COVERAGE = f"item_coverage@{K}"
NOVELTY = "novelty@5"
CURVE_METRICS = (SELECTION_METRIC, "recall@10", COVERAGE, NOVELTY)
# λ from 0 (the ranker's order) to 1 (novelty alone), every 0.05.
STRENGTHS: tuple[float, ...] = tuple(np.round(np.linspace(0.0, 1.0, 21), 2))


# Two-sided 95% normal quantile: the paired-difference interval that decides a tie.
Z_95 = 1.959964
# Standard errors of the paired coverage difference by which a strength must exceed the target.
COVERAGE_MARGIN = 1.0
COVERAGE_ERROR = f"{COVERAGE}_error"
# Prefix of the targets' key that names the reference whose coverage is the target.
TARGET_OF = f"{SELECTION_METRIC}_of_"
COVERAGE_RESAMPLES = 200


def warm_per_user(reco: pd.DataFrame, split: TimeSplit) -> pd.DataFrame:
    """Per-user metrics of the test users with history (every such user, in one order)."""
    return per_user_metrics(reco, split).loc[split.segments.index[split.segments != "cold"]]


def warm_metrics(reco: pd.DataFrame, split: TimeSplit) -> dict[str, float]:
    """NDCG@10, Recall@10, Novelty@5 (means) and item coverage@10 over the test users with history.

    Item coverage is over the training catalogue, as :func:`recsys.evaluation.offline.evaluate`'s.
    """
    warm = split.segments.index[split.segments != "cold"]
    per_user = warm_per_user(reco, split)
    catalogue = split.train["item_id"].nunique()
    return {
        SELECTION_METRIC: float(per_user[SELECTION_METRIC].mean()),
        "recall@10": float(per_user["recall@10"].mean()),
        COVERAGE: item_coverage(reco[reco["user_id"].isin(warm)], K, catalogue),
        NOVELTY: float(per_user[NOVELTY].mean()),
    }


def rerank_curve(
    reranker: PopularityReRanker,
    pool: pd.DataFrame,
    split: TimeSplit,
    strengths: Sequence[float] = STRENGTHS,
    reference: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Validation metrics (``CURVE_METRICS``) of the re-ranked pool at every strength (index
    ``strength``), and with a ``reference``'s lists the standard error of each strength's coverage
    difference from it (``COVERAGE_ERROR``, see :func:`coverage_difference_error`)."""
    warm = split.segments.index[split.segments != "cold"].to_numpy()
    catalogue = split.train["item_id"].nunique()
    # One draw of resamples for every strength, and the reference's coverage in each, once.
    resamples = _Resamples.draw(warm)
    baseline = None if reference is None else resamples.covered(reference)
    rows = {}
    for strength in strengths:
        lists = reranker.rerank(pool, K, strength=strength)
        rows[strength] = warm_metrics(lists, split)
        if baseline is not None:
            rows[strength][COVERAGE_ERROR] = resamples.error(lists, baseline, catalogue)
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("strength")


def coverage_difference_error(
    lists: pd.DataFrame,
    reference: pd.DataFrame,
    users: npt.ArrayLike,
    catalogue: int,
    n_resamples: int = COVERAGE_RESAMPLES,
    seed: int = 0,
) -> float:
    """Bootstrap standard error (over ``users``) of item coverage@10 of ``lists`` minus ``reference``'s.

    Both are top lists (``user_id, item_id, rank``); coverage is the share of the ``catalogue``
    in the top 10 of the resampled users, as :func:`warm_metrics` measures it.
    """
    resamples = _Resamples.draw(users, n_resamples, seed)
    return resamples.error(lists, resamples.covered(reference), catalogue)


@dataclass(frozen=True)
class _Resamples:
    """Bootstrap resamples of ``users``: ``weights`` (resample × user) counts each user's draws."""

    users: npt.NDArray[Any]
    weights: npt.NDArray[np.int64]

    @classmethod
    def draw(cls, users: npt.ArrayLike, n_resamples: int = COVERAGE_RESAMPLES, seed: int = 0) -> _Resamples:
        users = np.asarray(users)
        if users.size == 0:
            return cls(users, np.zeros((n_resamples, 0), dtype=np.int64))
        rng = np.random.default_rng(seed)
        return cls(
            users, rng.multinomial(users.size, np.full(users.size, 1.0 / users.size), size=n_resamples)
        )

    def covered(self, lists: pd.DataFrame) -> npt.NDArray[np.int64]:
        """Distinct items in the top ``K`` of the users of each resample."""
        top = lists[(lists["rank"] <= K) & lists["user_id"].isin(self.users)]
        rows = pd.Index(self.users).get_indexer(top["user_id"])
        items, columns = np.unique(top["item_id"].to_numpy(), return_inverse=True)
        shown = sp.csr_matrix((np.ones(rows.size), (rows, columns)), shape=(self.users.size, items.size))
        # Resample × items: how often each item is shown; covered where at least once.
        counts = np.asarray(shown.T @ self.weights.T).T
        return (counts > 0).sum(axis=1)

    def error(self, lists: pd.DataFrame, baseline: npt.NDArray[np.int64], catalogue: int) -> float:
        """Standard error of ``lists``' coverage minus the one ``baseline`` counts (0 with one user)."""
        if self.users.size < 2:
            return 0.0
        return float(np.std((self.covered(lists) - baseline) / max(catalogue, 1), ddof=1))


@dataclass(frozen=True)
class StrengthChoice:
    """The chosen strength, why, and the curve and targets it was chosen on."""

    strength: float
    tuned: bool
    reason: str
    targets: dict[str, float] = field(default_factory=dict)
    curve: pd.DataFrame | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-able record of the choice (stored with the model, logged by the stage)."""
        curve = None if self.curve is None else self.curve.reset_index().round(6).to_dict(orient="records")
        return {
            "strength": self.strength,
            "tuned": self.tuned,
            "reason": self.reason,
            "targets": self.targets,
            "curve": curve,
        }


def reference_targets(
    references: dict[str, pd.DataFrame],
    split: TimeSplit,
    als: str = ALSModel.kind,
    same_for_everyone: Collection[str] = (PopularModel.kind,),
) -> dict[str, float]:
    """Coverage of the most accurate reference and ALS's novelty, over the validation users with history.

    Parameters
    ----------
    references : dict of str to DataFrame
        Top-10 lists of the reference models, keyed by name; ``als`` among them.
    split : TimeSplit
        The validation split the lists are scored on.
    als : str
        Key of the reference whose Novelty@5 is the novelty target.
    same_for_everyone : collection of str
        Keys of the non-personalised references: tied only when the most accurate themselves.

    Returns
    -------
    dict of str to float
        ``item_coverage@10`` and ``novelty@5`` to reach, and ``ndcg@10_of_<name>``: the
        NDCG@10 of the reference whose coverage is the target (the most accurate one, or the
        least covering of those tied with it), which names it.
    """
    measured = {name: warm_metrics(reco, split) for name, reco in references.items()}
    accuracy = {name: warm_per_user(reco, split)[SELECTION_METRIC] for name, reco in references.items()}
    tied = tied_with_most_accurate(accuracy)
    if tied[0] not in same_for_everyone:
        tied = [name for name in tied if name not in same_for_everyone]
    target = min(tied, key=lambda name: measured[name][COVERAGE])
    return {
        COVERAGE: measured[target][COVERAGE],
        NOVELTY: measured[als][NOVELTY],
        f"{TARGET_OF}{target}": measured[target][SELECTION_METRIC],
    }


def tied_with_most_accurate(per_user: dict[str, pd.Series]) -> list[str]:
    """The most accurate model and every one whose paired per-user difference from it is within noise.

    Parameters
    ----------
    per_user : dict of str to Series
        Each model's per-user accuracy over the same users (same index).

    Returns
    -------
    list of str
        The names, the most accurate first: a model is tied when the 95% confidence interval
        of the mean paired difference (normal approximation) includes 0.
    """
    best = max(per_user, key=lambda name: float(per_user[name].mean()))
    tied = [best]
    for name, scores in per_user.items():
        difference = (per_user[best] - scores).to_numpy(dtype=float)
        if name == best or difference.size == 0:
            continue
        spread = float(difference.std(ddof=1)) if difference.size > 1 else 0.0
        if difference.mean() <= Z_95 * spread / np.sqrt(difference.size):
            tied.append(name)
    return tied


def choose_strength(curve: pd.DataFrame, targets: dict[str, float]) -> tuple[float, str]:
    """The strength of the highest NDCG@10 among those meeting both targets (the weakest such on ties).

    Coverage meets its target by a margin of :data:`COVERAGE_MARGIN` times the curve's
    ``COVERAGE_ERROR`` column where it has one.

    When no strength meets both, the one nearest to them (the highest of the smaller of the
    two ratios to target) is returned, and the reason says so.
    """
    margin = COVERAGE_MARGIN * curve[COVERAGE_ERROR] if COVERAGE_ERROR in curve else 0.0
    coverage = (curve[COVERAGE] - margin) / max(targets[COVERAGE], 1e-12)
    novelty = curve[NOVELTY] / max(targets[NOVELTY], 1e-12)
    meets = (coverage >= 1.0) & (novelty >= 1.0)
    wanted = f"item coverage@10 >= {targets[COVERAGE]:.4f}"
    if COVERAGE_ERROR in curve:
        wanted += f" (+ {COVERAGE_MARGIN:g} standard error of the difference)"
    wanted += f" and Novelty@5 >= {targets[NOVELTY]:.3f}"
    if meets.any():
        accuracy = curve.loc[meets, SELECTION_METRIC]
        strength = float(accuracy.index[int(np.argmax(accuracy.to_numpy()))])
        return strength, f"most accurate strength with {wanted} (NDCG@10 {accuracy.max():.4f})"
    nearest = np.minimum(coverage, novelty)
    strength = float(nearest.index[int(np.argmax(nearest.to_numpy()))])
    return strength, f"no strength meets {wanted}: took the nearest ({nearest.max():.0%} of the target)"


def tune_strength(
    config: TwoStageConfig,
    split: TimeSplit,
    train: InteractionData,
    pool: int,
    fitted: TwoStageModel | None = None,
) -> StrengthChoice:
    """Fit the ranker's configuration on ``train`` (the data before the validation days of ``split``)
    and choose the re-ranking strength of its ``pool``-deep lists on the validation users with history.

    ``fitted``: ``config`` already fitted on ``train`` (the quality gate's candidate), used
    instead of a second identical fit.

    Raises
    ------
    ValueError
        If the data is too short to validate: no validation user with an add-to-cart or
        purchase has earlier history, or the ranker cannot be trained on the shorter window.
    """
    warm = split.segments.index[split.segments != "cold"].to_numpy()
    if warm.size == 0:
        raise ValueError("no user with an add-to-cart or purchase in the validation days has earlier history")
    model = fitted if fitted is not None else TwoStageModel(config).fit(train)
    references = {source.kind: source.recommend(warm, train, K) for source in model.candidate_models()}
    targets = reference_targets(references, split)
    target = next(key.removeprefix(TARGET_OF) for key in targets if key.startswith(TARGET_OF))
    reranker = PopularityReRanker(ReRankConfig(pool=pool)).fit(train)
    curve = rerank_curve(reranker, model.recommend(warm, train, pool), split, reference=references[target])
    strength, reason = choose_strength(curve, targets)
    return StrengthChoice(strength, tuned=True, reason=reason, targets=targets, curve=curve)
