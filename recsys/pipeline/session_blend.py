"""The session blend's weights, chosen on validation sessions of the loaded data.

The training window's last ``validation_days`` are held out; V-SKNN, popularity in the
session's categories and co-visitation are fitted on the days before, and the validation
sessions are replayed prefix by prefix (:func:`recsys.evaluation.sessions.session_replay`).
Every prefix's candidates are computed once with the service's own functions
(:func:`recsys.service.blending.session_candidates`), and each weighting is scored by running
the service's :func:`~recsys.service.blending.session_blend` on them, so what is tuned is what
is served. The single methods are scored on the same prefixes, from the same candidates:
recently seen (the strip), V-SKNN with and without reminders, co-visitation, popular in the
session's categories, popularity. The search is coordinate-wise:

1. ``category_weight``, then the category model's settings (popularity's half-life, how much a
   visitor's many events count, how many of the session's latest items vote for their
   categories and how fast their votes fade: the candidates computed again for each), then
   ``category_weight`` again, then ``price_weight`` and ``price_width`` together, then
   ``category_weight`` again (the price fit reorders what it adds), then
   ``covisitation_weight``, then ``extend_length`` (the candidates computed again
   for each value, with ``category_weight`` chosen again for each), then ``offline_share`` (the
   offline list of a returning visitor is the neighbours of their training history, what the
   service serves users without a published list), then ``earlier_length`` and
   ``earlier_rank`` together: best discovery MRR@20 (no strip, no reminders);
2. ``reminder_weight``, ``strip_length`` and ``strip_rank`` together (the strip starting at
   ``strip_rank``, or ending at rank 10), plus the weights that reproduce V-SKNN with
   reminders (its query the session alone, as the single method's): best discovery MRR@20
   among those whose cart HR@10 is at least the best single method's, by a margin for chance
   (:func:`at_least_as_good`), and of those one that keeps the reference's items in its top 10
   unless the best beats it on discovery by more than a standard error (the
   one-standard-error rule); if none is, the best cart HR@10. The strip's ranks reach 10: a
   strip at ranks 9–10 still counts for cart HR@10 and moves fewer discovery items.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from itertools import product
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from recsys.evaluation.sessions import (
    SessionReplay,
    first_hit_ranks,
    metrics_of_ranks,
    session_metrics,
    session_replay,
    task_hit_ranks,
)
from recsys.models.dataset import PURCHASE_EVENTS, InteractionData
from recsys.models.i2i import ItemToItemConfig, user_histories
from recsys.models.popular import PopularModel
from recsys.models.session_blend import BLEND_WEIGHTS, SessionBlendModel, SessionBlendWeights
from recsys.models.session_category import CategoryPopularModel
from recsys.models.similar import covisitation_similar_items
from recsys.service.blending import (
    HISTORY_I2I,
    Recommendation,
    SessionCandidates,
    as_recommendations,
    discovery_list,
    history_activity,
    online_i2i,
    session_blend,
    session_candidates,
)
from recsys.service.events import UserActivity
from recsys.service.store import Candidates, GroupedLists, Ids, compact_ids

logger = logging.getLogger(__name__)

K = 20
CATEGORY_WEIGHTS = (0.0, 0.3, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0)
PRICE_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
PRICE_WIDTHS = (0.5, 1.0, 1.5, 2.0, 4.0)
COVISITATION_WEIGHTS = (0.0, 0.1, 0.3, 1.0)
OFFLINE_SHARES = (0.0, 0.1, 0.25, 0.5)
REMINDER_WEIGHTS = (0.0, 0.3, 1.0)
EARLIER_LENGTHS = (0, 1, 2, 3, 5)
EXTEND_LENGTHS = (0, 3, 10)
HALF_LIFE_DAYS = (3.0, 7.0, 14.0, 30.0)
VOTING_ITEMS = (1, 3, 5, 10)
VOTE_HALF_LIVES = (0.5, 1.0, 3.0, 10.0)
VISITOR_EXPONENTS = (0.0, 0.5, 1.0)
STRIP_LENGTHS = (0, 1, 2, 3, 5, 10)
STRIP_RANKS = (1, 2, 4, 8, 9, 10)
GOAL = "discovery_mrr@20"
CART_K = 10
CART = f"cart_hr@{CART_K}"
# Standard errors of the paired difference by which a weighting's validation cart hits must
# exceed the reference's (the one-standard-error rule), after one pseudo-miss: without them, a
# strip of one item at rank 10 passed on the sparse shop's few validation carts and scored
# 0.89-0.90x of the reference (the strip of ten) on the test window.
CART_MARGIN = 1.0


@dataclass(frozen=True)
class _Prefix:
    """One validation prefix as the service would see it."""

    prefix_id: int
    session: UserActivity
    earlier: npt.NDArray[np.int64]
    candidates: SessionCandidates
    offline: Candidates
    default: Candidates


def tune_session_blend(
    data: InteractionData,
    validation_days: float,
    n_similar: int,
    max_sessions: int,
    max_prefixes: int,
    base: SessionBlendWeights | None = None,
    seed: int = 0,
) -> tuple[SessionBlendWeights, dict[str, float]]:
    """The blend's weights chosen on the last ``validation_days`` of ``data``, with their metrics.

    Parameters
    ----------
    data : InteractionData
        The training window.
    validation_days : float
        Days held out at the end of the window.
    n_similar : int
        Co-visitation neighbours per item (as published).
    max_sessions : int
        Validation sessions replayed at most (a seeded sample: bounds the stage's time).
    max_prefixes : int
        Prefixes of those scored at most (a seeded sample, likewise).
    base : SessionBlendWeights, optional
        V-SKNN's settings (kept) and the starting weights.

    Raises
    ------
    ValueError
        If the window leaves no training days or no validation session with a target.
    """
    base = base or SessionBlendWeights()
    search = BlendSearch.on_validation(
        data, validation_days, n_similar, max_sessions, max_prefixes, base, seed
    )
    replay = search.replay
    # The candidates are V-SKNN's on the session alone until tune_extend tries extensions.
    base = base.model_copy(update={"extend_length": 0})
    logger.info("session blend: %d validation prefixes", len(search.prefixes))
    single = single_lists(search.prefixes)
    singles = {name: session_metrics(lists, replay) for name, lists in single.items()}
    reference = max(singles, key=lambda name: singles[name][CART])
    score = search.score
    best = base.model_copy(
        update={"strip_length": 0, "offline_share": 0.0, "reminder_weight": 0.0, "covisitation_weight": 0.0}
    )
    best = _best(best, "category_weight", CATEGORY_WEIGHTS, score)
    best = search.tune_category(best)
    best = _best(best, "category_weight", CATEGORY_WEIGHTS, score)
    prices = [
        best.model_copy(update={"price_weight": weight, "price_width": width})
        for weight, width in product(PRICE_WEIGHTS, PRICE_WIDTHS)
        if weight > 0 or width == PRICE_WIDTHS[0]
    ]
    best = max(prices, key=lambda weights: score(weights)[GOAL])
    best = _best(best, "category_weight", CATEGORY_WEIGHTS, score)
    best = _best(best, "covisitation_weight", COVISITATION_WEIGHTS, score)
    best = search.tune_extend(best)
    best = _best(best, "offline_share", OFFLINE_SHARES, score)
    earlier = [
        best.model_copy(update={"earlier_length": length, "earlier_rank": rank})
        for length, rank in product(EARLIER_LENGTHS, STRIP_RANKS)
        if length > 0 or rank == 1
    ]
    best = max(earlier, key=lambda weights: score(weights)[GOAL])
    chosen = choose_cart_trial(search.cart_trials(best, single[reference]))
    result = {f"validation_{name}": value for name, value in chosen.metrics.items()}
    for name, found in singles.items():
        result[f"validation_{name}_{GOAL}"] = found[GOAL]
        result[f"validation_{name}_{CART}"] = found[CART]
    logger.info("session blend weights: %s", chosen.weights.model_dump(include=set(BLEND_WEIGHTS)))
    return chosen.weights, result


@dataclass
class BlendSearch:
    """The validation prefixes with the candidates of the current model, and the steps of the
    search that compute them again (other category settings, other query extensions)."""

    replay: SessionReplay
    catalogue: _Catalogue
    train: InteractionData
    model: SessionBlendModel
    prefixes: list[_Prefix]
    # The candidates with V-SKNN's query the session alone (as before tune_extend).
    unextended: list[_Prefix]

    @classmethod
    def on_validation(
        cls,
        data: InteractionData,
        validation_days: float,
        n_similar: int,
        max_sessions: int,
        max_prefixes: int,
        base: SessionBlendWeights,
        seed: int = 0,
    ) -> BlendSearch:
        """The last ``validation_days`` of ``data`` replayed (see :func:`tune_session_blend`), with
        the candidates of ``base``'s V-SKNN (its query not extended) fitted on the days before."""
        interactions = data.interactions.drop(columns=["user_code", "item_code"])
        start = pd.Timestamp(interactions["datetime"].max()) - pd.Timedelta(days=validation_days)
        before = interactions[interactions["datetime"] < start]
        if before.empty:
            raise ValueError(
                f"no training days before the validation start {start}: use fewer validation days"
            )
        train = InteractionData.build(before, data.items.reset_index(), now=start)
        validation = interactions[interactions["datetime"] >= start]
        sessions = validation[["user_id", "session_index"]].drop_duplicates()
        replayed = validation
        if len(sessions) > max_sessions:
            sessions = sessions.sample(max_sessions, random_state=seed)
            replayed = validation.merge(sessions, on=["user_id", "session_index"])
        replay = session_replay(replayed)
        if len(replay.prefixes) > max_prefixes:
            replay = replay.subset(replay.prefixes["prefix_id"].sample(max_prefixes, random_state=seed))
        model = SessionBlendModel(base).fit(train)
        catalogue = _Catalogue.of(train, n_similar)
        unextended = model.with_weights(base.model_copy(update={"extend_length": 0}))
        prefixes = _prefixes(replay, catalogue, unextended, validation)
        return cls(replay, catalogue, train, model, prefixes, prefixes)

    def score(self, weights: SessionBlendWeights, prefixes: list[_Prefix] | None = None) -> dict[str, float]:
        """The blend's metrics with ``weights`` on ``prefixes`` (default: the current candidates)."""
        return session_metrics(
            blend_lists(self.prefixes if prefixes is None else prefixes, weights), self.replay
        )

    def recomputed(self, model: SessionBlendModel) -> list[_Prefix]:
        """The prefixes with ``model``'s candidates."""
        return [replace(p, candidates=self.catalogue.candidates(p, model)) for p in self.prefixes]

    def tune_category(self, best: SessionBlendWeights) -> SessionBlendWeights:
        """The category model's settings (popularity's half-life, how much a visitor's many events
        count, then how many latest items vote and how fast their votes fade), each scored on its
        own candidates; the best kept."""
        for settings in (
            [{"half_life_days": days} for days in HALF_LIFE_DAYS],
            [{"visitor_exponent": exponent} for exponent in VISITOR_EXPONENTS],
            [
                {"n_recent": n, "recency_half_life": h}
                for n, h in product(VOTING_ITEMS, VOTE_HALF_LIVES)
                if n > 1 or h == VOTE_HALF_LIVES[0]  # one voter: its fading does not matter
            ],
        ):
            # The current settings first: kept on ties.
            found = [(self.score(best)[GOAL], self.model, self.prefixes, best)]
            for update in settings:
                config = best.category.model_copy(update=update)
                if config != best.category:
                    model = self.model.with_category(CategoryPopularModel(config).fit(self.train))
                    weights = best.model_copy(update={"category": config})
                    prefixes = self.recomputed(model)
                    found.append((self.score(weights, prefixes)[GOAL], model, prefixes, weights))
            _, self.model, self.prefixes, best = max(found, key=lambda trial: trial[0])
        return best

    def tune_extend(self, best: SessionBlendWeights) -> SessionBlendWeights:
        """``extend_length`` (V-SKNN's query extended with earlier items), each value scored on its
        own candidates with ``category_weight`` chosen again; the best kept."""
        found = [(self.score(best)[GOAL], self.prefixes, best)]
        for length in EXTEND_LENGTHS[1:]:
            weights = best.model_copy(update={"extend_length": length})
            prefixes = self.recomputed(self.model.with_weights(weights))
            weights = _best(
                weights, "category_weight", CATEGORY_WEIGHTS, lambda w, p=prefixes: self.score(w, p)
            )
            found.append((self.score(weights, prefixes)[GOAL], prefixes, weights))
        _, self.prefixes, best = max(found, key=lambda trial: trial[0])
        return best

    def cart_trials(self, best: SessionBlendWeights, reference: pd.DataFrame) -> list[CartTrial]:
        """The strip, the reminders, and the weights that reproduce V-SKNN with reminders, each
        scored against the ``reference`` lists (see :func:`choose_cart_trial`)."""
        candidates = [
            best.model_copy(update={"reminder_weight": reminder, "strip_length": length, "strip_rank": rank})
            for reminder, length, rank in product(REMINDER_WEIGHTS, STRIP_LENGTHS, STRIP_RANKS)
            if length > 0 or rank == 1
        ]
        # The strip ending at rank CART_K: the session's items all in the top, below discovery.
        candidates += [
            best.model_copy(
                update={
                    "reminder_weight": reminder,
                    "strip_length": length,
                    "strip_rank": CART_K,
                    "strip_ends": True,
                }
            )
            for reminder, length in product(REMINDER_WEIGHTS, STRIP_LENGTHS[1:])
        ]
        trials = [(weights, self.prefixes) for weights in candidates]
        # V-SKNN with reminders, as a blend (the best single cart method on some shops): its query
        # the session alone, as the single method's, on the candidates from before tune_extend.
        vsknn = best.model_copy(
            update={
                "reminder_weight": 1.0,
                "covisitation_weight": 0.0,
                "category_weight": 0.0,
                "price_weight": 0.0,
                "offline_share": 0.0,
                "earlier_length": 0,
                "extend_length": 0,
                "strip_length": 0,
                "strip_rank": 1,
            }
        )
        trials.append((vsknn, self.unextended))
        carts = self.replay.targets["cart"]["prefix_id"].unique()
        reference_hits = first_hit_ranks(reference, self.replay, "cart").to_numpy() <= CART_K
        scored = []
        for weights, prefixes in trials:
            lists = blend_lists(prefixes, weights)
            ranks = task_hit_ranks(lists, self.replay)
            keeps = holds_items(lists, reference, carts, CART_K)
            scored.append(
                CartTrial(
                    weights,
                    metrics_of_ranks(ranks),
                    at_least_as_good(ranks["cart"] <= CART_K, reference_hits, keeps),
                    keeps,
                    np.where(ranks["discovery"] <= K, 1.0 / ranks["discovery"], 0.0),
                )
            )
        return scored


@dataclass(frozen=True)
class CartTrial:
    """One weighting's validation scores in the cart step."""

    weights: SessionBlendWeights
    metrics: dict[str, float]
    passes: bool  # at least as good as the reference on cart hits (see at_least_as_good)
    keeps: bool  # its top 10 holds the reference's on every cart prefix
    discovery: npt.NDArray[np.float64]  # reciprocal rank of the discovery target, per prefix


def choose_cart_trial(trials: list[CartTrial]) -> CartTrial:
    """The best discovery among the trials that pass the cart rule (else the best cart hit rate);
    one that keeps the reference's items is preferred unless the best beats it on discovery by
    more than the standard error of the best's discovery MRR (Breiman's one-standard-error rule:
    no dropping the reference's items for a gain the validation cannot resolve)."""
    meeting = [t for t in trials if t.passes]
    if not meeting:
        return max(trials, key=lambda t: (t.metrics[CART], t.metrics[GOAL]))
    chosen = max(meeting, key=lambda t: (t.metrics[GOAL], t.metrics[CART]))
    keepers = [t for t in meeting if t.keeps]
    if keepers and not chosen.keeps:
        keeper = max(keepers, key=lambda t: (t.metrics[GOAL], t.metrics[CART]))
        ranks = chosen.discovery
        error = ranks.std(ddof=1) / np.sqrt(ranks.size) if ranks.size > 1 else np.inf
        if chosen.metrics[GOAL] - keeper.metrics[GOAL] <= error:
            return keeper
    return chosen


def at_least_as_good(
    hits: npt.NDArray[np.bool_], reference: npt.NDArray[np.bool_], keeps_reference: bool
) -> bool:
    """Whether a weighting's cart hits are at least the reference's, with a margin for chance.

    ``hits`` and ``reference`` are the two lists' hits on the same validation prefixes;
    ``keeps_reference``: whether the weighting's top 10 holds the reference's top 10 on every
    one of them (then it cannot miss where the reference hits, e.g. the strip first: it passes).
    Otherwise it starts one miss behind (a pseudo-observation: no evidence is no licence to drop
    the reference's items), and the mean paired difference minus :data:`CART_MARGIN` standard
    errors must be ≥ 0, a margin that shrinks as the loaded data gives more prefixes."""
    if keeps_reference or reference.size == 0:
        return True
    difference = np.append(hits.astype(np.float64) - reference.astype(np.float64), -1.0)
    error = difference.std(ddof=1) / np.sqrt(difference.size)
    return bool(difference.mean() - CART_MARGIN * error >= 0)


def holds_items(lists: pd.DataFrame, reference: pd.DataFrame, prefix_ids: npt.ArrayLike, k: int) -> bool:
    """Whether ``lists``' top ``k`` hold every item of ``reference``'s top ``k`` on the given
    prefixes (both ``prefix_id, item_id, rank``, one row per listed item)."""
    wanted = reference[(reference["rank"] <= k) & reference["prefix_id"].isin(np.asarray(prefix_ids))]
    shown = lists.loc[lists["rank"] <= k, ["prefix_id", "item_id"]]
    return len(wanted.merge(shown, on=["prefix_id", "item_id"])) == len(wanted)


def single_lists(prefixes: list[_Prefix]) -> dict[str, pd.DataFrame]:
    """Each single method's list of every prefix (``prefix_id, item_id, rank``), from the
    prefix's candidates: the same items the blend mixes."""
    vsknn = SessionBlendWeights(
        reminder_weight=1.0, covisitation_weight=0.0, category_weight=0.0, strip_length=0
    )
    methods: dict[str, Callable[[_Prefix], Candidates]] = {
        "recently_seen": lambda p: p.candidates.strip,
        "vsknn": lambda p: discovery_list(p.candidates, vsknn),
        "vsknn_discovery": lambda p: p.candidates.neighbours,
        "covisitation_i2i": lambda p: p.candidates.covisitation,
        "category_popular": lambda p: p.candidates.category,
        "popular": lambda p: p.default,
    }
    return {
        name: _frame(prefixes, lambda p, method=method: as_recommendations(method(p), K))  # type: ignore[misc]
        for name, method in methods.items()
    }


def _best(
    weights: SessionBlendWeights, field: str, values: tuple[Any, ...], score: Any
) -> SessionBlendWeights:
    """``weights`` with ``field`` set to the value of best discovery MRR@20 (the first on ties)."""
    trials = [weights.model_copy(update={field: value}) for value in values]
    goals = [score(trial)[GOAL] for trial in trials]
    return trials[int(np.argmax(goals))]


def blend_lists(prefixes: list[_Prefix], weights: SessionBlendWeights) -> pd.DataFrame:
    """The service's session blend for every prefix: ``prefix_id, item_id, rank``."""
    return _frame(prefixes, lambda p: session_blend(p.candidates, p.offline, [p.default], K, weights))


def _frame(prefixes: list[_Prefix], answer_of: Callable[[_Prefix], list[Recommendation]]) -> pd.DataFrame:
    """Every prefix's answer as rows ``prefix_id, item_id, rank``."""
    ids: list[int] = []
    items: list[int] = []
    ranks: list[int] = []
    for prefix in prefixes:
        answer = answer_of(prefix)
        ids.extend([prefix.prefix_id] * len(answer))
        items.extend(r["item_id"] for r in answer)
        ranks.extend(range(1, len(answer) + 1))
    return pd.DataFrame({"prefix_id": ids, "item_id": items, "rank": ranks}, dtype=np.int64)


@dataclass(frozen=True)
class _Catalogue:
    """What the service holds beside the session model, as of the validation start."""

    similar: GroupedLists
    histories: GroupedLists
    popular: Candidates
    known: Ids
    unavailable: Ids
    config: ItemToItemConfig

    @classmethod
    def of(cls, train: InteractionData, n_similar: int) -> _Catalogue:
        config = ItemToItemConfig()
        similar = GroupedLists.from_frame(
            covisitation_similar_items(train, n_similar).assign(source="covisitation"),
            "item_id",
            item="similar_item_id",
            label="source",
        )
        ranking = PopularModel().fit(train).ranking(train, 100)
        popular = compact_ids(ranking["item_id"]), ranking["score"].to_numpy(dtype=np.float32)
        return cls(
            similar,
            GroupedLists.from_frame(user_histories(train, config.n_recent), "user_id", label="relation"),
            Candidates("default", *popular),
            compact_ids(np.sort(train.items.index.to_numpy())),
            compact_ids(np.sort(train.item_codes.ids[train.is_unavailable(train.item_codes.ids)])),
            config,
        )

    def candidates(self, prefix: _Prefix, model: SessionBlendModel) -> SessionCandidates:
        """The prefix's candidates by ``model``, as the service computes them."""
        return session_candidates(
            prefix.session, model, self.similar, self.config, self.known, self.unavailable, prefix.earlier
        )


def _prefixes(
    replay: SessionReplay, catalogue: _Catalogue, model: SessionBlendModel, validation: pd.DataFrame
) -> list[_Prefix]:
    """Each prefix's candidates, as the service computes them for a visitor with those events
    (and, as the service holds them, the visitor's ``validation`` events before the session)."""
    config = catalogue.config
    events = replay.prefix_events()
    events = events.assign(ms=events["datetime"].to_numpy().astype("datetime64[ms]").astype(np.int64))
    ordered = validation.sort_values("datetime", ascending=False, kind="stable")
    online = {
        int(user): (rows["datetime"].to_numpy(), rows["item_id"].to_numpy(dtype=np.int64))
        for user, rows in ordered.groupby("user_id", sort=False)
    }
    result = []
    for (prefix_id, user_id), rows in events.groupby(["prefix_id", "user_id"], sort=True):
        newest = rows.iloc[::-1]
        past = history_activity(catalogue.histories.get(int(user_id), "history"), config.n_recent)
        times, items = online[int(user_id)]
        earlier = np.concatenate([items[times < rows["datetime"].iloc[0]], past.recent])
        purchases = newest.loc[newest["event"].isin(PURCHASE_EVENTS), "item_id"].to_numpy(dtype=np.int64)
        bought = np.union1d(purchases, past.bought)
        session = UserActivity(
            newest["item_id"].to_numpy(dtype=np.int64), bought, newest["ms"].to_numpy(dtype=np.int64)
        )
        offline = online_i2i(past, catalogue.similar, config, HISTORY_I2I).without(bought)
        prefix = _Prefix(
            int(prefix_id),
            session,
            earlier,
            SessionCandidates.empty(),
            offline.without(catalogue.unavailable),
            catalogue.popular.without(bought).without(catalogue.unavailable),
        )
        result.append(replace(prefix, candidates=catalogue.candidates(prefix, model)))
    return result
