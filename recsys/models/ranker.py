"""Two-stage recommender: candidates from ALS, item-kNN, i2i, popularity and history, ranked by CatBoost.

Training avoids leakage with time splits inside the training window: for each of
``label_windows`` consecutive windows of ``label_days``, candidate models and features see
only the interactions before the window, and the window's pairs are the labels: purchase 2,
add-to-cart 1 and view ``view_label`` (a weak positive: carts are rare, and the views of the
many users who bought nothing in a window still show which candidates they preferred; a
sample of those users, ``view_only_users_per_relevant`` per user with a cart or purchase and
at most ``max_view_only_users`` per window, keeps the training set in proportion and
bounded). Only users with history before a window are trained on: they are the users the
ranker serves (a user without history gets the popularity ranking itself). The training set
is bounded by ``max_train_rows`` (an equal share per window): beyond it a random sample of the
window's users is kept, users with a cart or purchase first, so the ranker's time and memory
stop growing with the shop once it has that much to learn from. The number of
trees is chosen on the training period's own validation: a ranker is first fitted on the
older windows and evaluated (NDCG@10) on the newest one's users with a cart or purchase, the
peak of the curve's moving average (``iteration_smoothing`` trees) is taken, and the final
ranker is fitted on all windows with that number of trees, so a short history with few label
groups gets a small, strongly regularised ranker and a long one a large ranker. After the
ranker is trained, the candidate models are refitted on the whole window, so serving uses
all the data.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from catboost import CatBoostRanker, Pool
from pydantic import Field, model_validator

from recsys.data.schema import RELEVANT_EVENTS
from recsys.models.als import ALSConfig, ALSModel
from recsys.models.base import RECOMMENDATION_COLUMNS, ModelConfig, ModelError, Recommender
from recsys.models.dataset import InteractionData
from recsys.models.i2i import ItemToItemConfig, ItemToItemModel, recent_items
from recsys.models.itemknn import ItemKNNConfig, ItemKNNModel
from recsys.models.popular import PopularConfig, PopularModel
from recsys.models.ranking_features import RankingFeatures
from recsys.models.topk import top_k_per_key
from recsys.progress import ProgressLog
from recsys.storage.object_store import ObjectStore

logger = logging.getLogger(__name__)

# Label of an add-to-cart pair (a purchase is 2, a view ``view_label`` < 1): a label at least
# this marks the pairs the evaluation counts as relevant.
CART_LABEL = 1.0
# The validation metric that chooses the number of trees.
VALIDATION_METRIC = "NDCG:top=10"
# The probe ranker stops after this many trees without a better validation NDCG.
EARLY_STOPPING_ROUNDS = 100


class CatBoostConfig(ModelConfig):
    """CatBoostRanker settings."""

    loss_function: str = "YetiRank"
    iterations: int = Field(300, ge=1)
    learning_rate: float = Field(0.08, gt=0)
    depth: int = Field(6, ge=1, le=16)
    random_seed: int = 42
    thread_count: int = 2


class TwoStageConfig(ModelConfig):
    """Candidate counts per source, the label window and the stage models' configs."""

    n_als: int = Field(50, ge=0)
    n_knn: int = Field(50, ge=0)
    n_i2i: int = Field(50, ge=0)
    n_popular: int = Field(50, ge=0)
    n_history: int = Field(50, ge=0)
    label_days: float = Field(14.0, gt=0)
    # Consecutive label windows stacked into one training set (more groups to learn from).
    label_windows: int = Field(5, ge=1)
    # Gain of a viewed (not carted, not bought) pair in a label window; 0 = views are negatives.
    view_label: float = Field(0.1, ge=0, lt=1)
    # Users of a label window who only viewed, sampled: at most this many per user with a cart/purchase.
    view_only_users_per_relevant: float = Field(8.0, ge=0)
    # ... and at most this many per label window (bounds the training set's memory at full scale).
    max_view_only_users: int = Field(1_000, ge=0)
    # Candidate rows of all label windows the ranker trains on, at most (an equal share per window;
    # users are sampled beyond it): bounds the ranker's fitting time and memory as data grows.
    max_train_rows: int = Field(1_000_000, ge=1)
    # Train on users without history before a label window too (they are never ranked).
    train_cold_users: bool = False
    # Choose the number of trees (at most ranker.iterations) on the newest label window.
    early_stopping: bool = True
    # Trees of the moving average of the validation curve whose peak sets the number of trees.
    iteration_smoothing: int = Field(15, ge=1)
    users_per_batch: int = Field(20_000, ge=1)
    als: ALSConfig = ALSConfig()
    itemknn: ItemKNNConfig = ItemKNNConfig()
    i2i: ItemToItemConfig = ItemToItemConfig()
    popular: PopularConfig = PopularConfig()
    ranker: CatBoostConfig = CatBoostConfig()

    @model_validator(mode="after")
    def _some_source(self) -> TwoStageConfig:
        if not (self.n_als or self.n_knn or self.n_i2i or self.n_popular or self.n_history):
            raise ValueError(
                "every candidate source is switched off: set at least one of n_als, n_knn, "
                "n_i2i, n_popular, n_history above 0"
            )
        return self


class TwoStageModel(Recommender):
    """Candidates from five sources, one CatBoost ranker on top."""

    kind = "two_stage"
    config_class = TwoStageConfig
    config: TwoStageConfig

    def __init__(self, config: TwoStageConfig | None = None) -> None:
        super().__init__(config)
        self.als = ALSModel(self.config.als)
        self.itemknn = ItemKNNModel(self.config.itemknn)
        self.i2i = ItemToItemModel(self.config.i2i)
        self.popular = PopularModel(self.config.popular)
        self.ranker: CatBoostRanker | None = None
        self.feature_names: list[str] = []
        self.training_report: dict[str, float] = {}

    # -- candidates -------------------------------------------------------------------------
    def candidates(self, user_ids: npt.NDArray[np.int64], data: InteractionData) -> pd.DataFrame:
        """Union of the sources' proposals with ``<source>_score`` / ``<source>_rank`` columns."""
        proposals = []
        if self.config.n_als:
            proposals.append(("als", self.als.recommend(user_ids, data, self.config.n_als)))
        if self.config.n_knn:
            proposals.append(("knn", self.itemknn.recommend(user_ids, data, self.config.n_knn)))
        if self.config.n_i2i:
            proposals.append(("i2i", self.i2i.recommend(user_ids, data, self.config.n_i2i)))
        if self.config.n_popular:
            proposals.append(("popular", self.popular.recommend(user_ids, data, self.config.n_popular)))
        if self.config.n_history:
            proposals.append(("history", self._history(user_ids, data)))
        merged: pd.DataFrame | None = None
        for source, frame in proposals:
            part = frame[["user_id", "item_id", "score", "rank"]].rename(
                columns={"score": f"{source}_score", "rank": f"{source}_rank"}
            )
            merged = part if merged is None else merged.merge(part, on=["user_id", "item_id"], how="outer")
        # A source switched off (n = 0) has no columns, so it is no feature of the ranker either.
        assert merged is not None  # the config has at least one source
        return merged

    def _history(self, user_ids: npt.NDArray[np.int64], data: InteractionData) -> pd.DataFrame:
        """The user's own latest items (not bought, available), newest first."""
        history = data.of_users(user_ids)
        recent = recent_items(history, self.config.n_history)
        recent = data.exclude(recent, bought=True, unavailable=True)
        return recent.assign(score=1.0 / (recent["position"] + 1), rank=recent["position"] + 1)

    # -- training ---------------------------------------------------------------------------
    def candidate_models(self) -> tuple[Recommender, ...]:
        """The candidate sources' models (ALS, item-kNN, i2i, popularity), fitted with the ranker."""
        return (self.als, self.itemknn, self.i2i, self.popular)

    def _fit_candidate_models(self, data: InteractionData) -> None:
        for model in self.candidate_models():
            model.fit(data)

    def _label_window(self, data: InteractionData, label_end: pd.Timestamp) -> pd.DataFrame | None:
        """Features and labels of one window: candidates from the data before ``label_days`` ending at
        ``label_end``, labelled with that period's purchase (2), add-to-cart (1) and view
        (``view_label``) pairs."""
        label_start = label_end - pd.Timedelta(days=self.config.label_days)
        frame = data.interactions
        base_frame = frame[frame["datetime"] < label_start]
        in_window = (frame["datetime"] >= label_start) & (frame["datetime"] < label_end)
        labelled_events = [*RELEVANT_EVENTS, "view"] if self.config.view_label else list(RELEVANT_EVENTS)
        labels = frame.loc[in_window & frame["event"].isin(labelled_events)]
        if base_frame.empty or not labels["event"].isin(RELEVANT_EVENTS).any():
            return None
        base = InteractionData.build(
            base_frame.drop(columns=["user_code", "item_code"]), data.items.reset_index(), now=label_start
        )
        self._fit_candidate_models(base)
        gain = labels.assign(
            label=labels["event"]
            .map({"view": self.config.view_label, "addtocart": CART_LABEL, "transaction": 2 * CART_LABEL})
            .astype(np.float64)
        )
        gain = gain.groupby(["user_id", "item_id"], as_index=False)["label"].max()
        if not self.config.train_cold_users:
            gain = gain[base.users.contains(gain["user_id"].to_numpy())]
            if gain.empty:
                return None
        users = self._training_users(gain, seed=int(label_end.timestamp()))
        if users.size == 0:  # only views of users with history: nobody to learn a cart from
            return None
        features = RankingFeatures(base)
        budget = max(1, self.config.max_train_rows // self.config.label_windows)
        parts: list[pd.DataFrame] = []
        done = rows = 0
        while done < users.size and rows < budget:
            batch = users[done : done + self.config.users_per_batch]
            candidates = self.candidates(batch, base).merge(gain, on=["user_id", "item_id"], how="left")
            parts.append(features.build(candidates.fillna({"label": 0.0})))
            done += batch.size
            rows += len(parts[-1])
        window = pd.concat(parts, ignore_index=True)
        kept = _first_users_within(window, users[:done], budget)
        window = window[window["user_id"].isin(kept)].reset_index(drop=True)
        window.attrs["label_pairs"] = int((gain.loc[gain["user_id"].isin(kept), "label"] >= CART_LABEL).sum())
        window.attrs["sampled_out_users"] = users.size - kept.size
        return window

    def _training_users(self, gain: pd.DataFrame, seed: int) -> npt.NDArray[np.int64]:
        """Users with an add-to-cart or purchase, then a sample of the users who only viewed (at
        most ``view_only_users_per_relevant`` per user with one, and ``max_view_only_users``),
        each part in random order, so that any prefix is a random sample of the most useful users."""
        best = gain.groupby("user_id")["label"].max()
        relevant = best.index[best >= CART_LABEL].to_numpy()
        view_only = best.index[best < CART_LABEL].to_numpy()
        per_relevant = int(self.config.view_only_users_per_relevant * relevant.size)
        limit = min(per_relevant, self.config.max_view_only_users)
        rng = np.random.default_rng(seed)
        return np.concatenate(
            [relevant[rng.permutation(relevant.size)], view_only[rng.permutation(view_only.size)[:limit]]]
        )

    def _fit(self, data: InteractionData) -> None:
        windows = []
        for number in range(self.config.label_windows):
            label_end = data.now - pd.Timedelta(days=number * self.config.label_days)
            window = self._label_window(data, label_end)
            logger.info(
                "ranker: label window %d/%d ending %s: %s",
                number + 1,
                self.config.label_windows,
                label_end,
                "no label pairs, skipped"
                if window is None
                else f"{len(window)} candidate rows of {window['user_id'].nunique()} users",
            )
            if window is not None:
                windows.append(
                    window.assign(window=number, group=f"{number}:" + window["user_id"].astype(str))
                )
        if not windows:
            raise ValueError(
                "the ranker needs interactions before, and add-to-cart/purchase events of users with "
                f"history within, its label window(s) of {self.config.label_days} days: widen the "
                "training window or lower label_days"
            )
        label_pairs = sum(int(w.attrs["label_pairs"]) for w in windows)
        train = pd.concat(windows, ignore_index=True)
        covered = int((train["label"] >= CART_LABEL).sum())
        # Groups without a positive teach a ranking loss nothing.
        useful = train.groupby("group")["label"].transform("max") > 0
        train = train[useful].sort_values("group", kind="stable")
        if train.empty:
            raise ValueError("no label pair is among the candidates: the ranker cannot be trained")
        self.feature_names = RankingFeatures.feature_columns(train.drop(columns="window"))
        started = time.perf_counter()
        iterations, validation_ndcg = self._choose_iterations(train)
        settings = self.config.ranker.model_dump() | {"iterations": iterations}
        self.ranker = CatBoostRanker(**settings, verbose=False, allow_writing_files=False)
        self.ranker.fit(self._pool(train), callbacks=[_CatBoostProgress("ranker", iterations)])
        ranker_seconds = time.perf_counter() - started
        self.training_report = {
            "label_windows": float(len(windows)),
            "label_pairs": float(label_pairs),
            "candidate_recall": covered / label_pairs,
            "train_rows": float(len(train)),
            "sampled_out_users": float(sum(int(w.attrs["sampled_out_users"]) for w in windows)),
            "train_groups": float(train["group"].nunique()),
            "relevant_groups": float(train.loc[train["label"] >= CART_LABEL, "group"].nunique()),
            "iterations": float(iterations),
            "validation_ndcg": validation_ndcg,
            # CatBoost's share of the fit: the validation probe and the final ranker.
            "ranker_seconds": ranker_seconds,
        }
        logger.info("ranker trained: %s", self.training_report)
        logger.info("ranker: refitting the candidate models on the whole window")
        self._fit_candidate_models(data)

    def _pool(self, frame: pd.DataFrame) -> Pool:
        return Pool(frame[self.feature_names], label=frame["label"], group_id=frame["group"])

    def _choose_iterations(self, train: pd.DataFrame) -> tuple[int, float]:
        """The number of trees that ranks the newest label window best when trained on the older ones.

        Returns the configured number (and NaN) when early stopping is off, there is only one
        window, or the newest window has no user with a cart or purchase among the candidates.
        """
        newest = train["window"] == train["window"].min()
        # Judged on what is evaluated: the newest window's users with an add-to-cart or purchase.
        relevant = train.groupby("group")["label"].transform("max") >= CART_LABEL
        validation = train[newest & relevant]
        if not self.config.early_stopping or newest.all() or validation.empty:
            return self.config.ranker.iterations, float("nan")
        probe = CatBoostRanker(
            **self.config.ranker.model_dump(),
            eval_metric=VALIDATION_METRIC,
            verbose=False,
            allow_writing_files=False,
        )
        probe.fit(
            self._pool(train[~newest]),
            eval_set=self._pool(validation),
            use_best_model=False,
            early_stopping_rounds=EARLY_STOPPING_ROUNDS,
            callbacks=[_CatBoostProgress("ranker validation", self.config.ranker.iterations)],
        )
        ndcg = _validation_ndcg(probe.get_evals_result())
        if len(ndcg) < self.config.ranker.iterations:
            logger.info(
                "ranker validation: stopped after %d trees (no better validation NDCG@10 in the last %d)",
                len(ndcg),
                EARLY_STOPPING_ROUNDS,
            )
        # A validation of a few dozen users is noisy from one tree to the next: the peak of the
        # curve's moving average is a steadier choice than its single highest point.
        smoothed = pd.Series(ndcg).rolling(self.config.iteration_smoothing, center=True, min_periods=1).mean()
        best = int(smoothed.to_numpy().argmax())
        logger.info(
            "ranker: %d trees chosen (smoothed validation NDCG@10 %.4f)", best + 1, smoothed.iloc[best]
        )
        return best + 1, float(smoothed.iloc[best])

    # -- serving ----------------------------------------------------------------------------
    def recommend_batches(
        self, user_ids: npt.ArrayLike, data: InteractionData, k: int
    ) -> Iterator[pd.DataFrame]:
        """:meth:`recommend`'s rows, ``users_per_batch`` users at a time: for ranking every active
        user without holding all their rows (the window's features are computed once)."""
        users = self._checked_users(user_ids, data, k)
        yield from self._batches(users, data, k)

    def _recommend(self, user_ids: npt.NDArray[np.int64], data: InteractionData, k: int) -> pd.DataFrame:
        return pd.concat(list(self._batches(user_ids, data, k)), ignore_index=True)

    def _batches(
        self, user_ids: npt.NDArray[np.int64], data: InteractionData, k: int
    ) -> Iterator[pd.DataFrame]:
        if self.ranker is None:
            raise ModelError("the two-stage model has no trained ranker")
        # A user without history has only popular candidates and no user features: the
        # popularity ranking itself serves them at least as well as a re-ranking of it.
        known = data.users.contains(user_ids)
        if (~known).any():
            yield self.popular.recommend(user_ids[~known], data, k)
        with_history = user_ids[known]
        if with_history.size == 0:
            return
        features = RankingFeatures(data)
        for start in range(0, with_history.size, self.config.users_per_batch):
            batch = with_history[start : start + self.config.users_per_batch]
            built = features.build(self.candidates(batch, data))
            built["score"] = self.ranker.predict(built[self.feature_names]).astype(np.float32)
            ordered = built.sort_values(["user_id", "score"], ascending=[True, False], kind="stable")
            yield top_k_per_key(ordered, "user_id", k)[RECOMMENDATION_COLUMNS]

    # -- persistence ------------------------------------------------------------------------
    def _state(self) -> dict[str, npt.NDArray[Any]]:
        assert self.ranker is not None
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "ranker.cbm"
            self.ranker.save_model(str(path))
            blob = path.read_bytes()
        return {
            "ranker": np.frombuffer(blob, dtype=np.uint8),
            "feature_names": np.array(self.feature_names),
        }

    def _restore(self, state: dict[str, npt.NDArray[Any]]) -> None:
        self.ranker = CatBoostRanker().load_model(blob=state["ranker"].tobytes())
        self.feature_names = [str(name) for name in state["feature_names"]]

    def _save_parts(self, store: ObjectStore, prefix: str) -> None:
        for model in self.candidate_models():
            model.save(store, f"{prefix}/{model.kind}")

    def _load_parts(self, store: ObjectStore, prefix: str) -> None:
        self.als = ALSModel.load(store, f"{prefix}/als")
        self.itemknn = ItemKNNModel.load(store, f"{prefix}/itemknn")
        self.i2i = ItemToItemModel.load(store, f"{prefix}/i2i")
        self.popular = PopularModel.load(store, f"{prefix}/popular")


def _first_users_within(
    frame: pd.DataFrame, users: npt.NDArray[np.int64], rows: int
) -> npt.NDArray[np.int64]:
    """The longest prefix of ``users`` that has at most ``rows`` rows in ``frame`` (at least the
    first user, so that a budget below one user's candidates still trains)."""
    sizes = frame["user_id"].value_counts().reindex(users, fill_value=0).to_numpy()
    within = int(np.searchsorted(np.cumsum(sizes), rows, side="right"))
    return users[: max(within, 1)]


def _validation_ndcg(metrics: dict[str, dict[str, list[float]]]) -> list[float]:
    """The validation NDCG curve (one value per tree) of CatBoost's evaluation results."""
    validation = metrics.get("validation", {})
    return next((values for name, values in validation.items() if name.startswith("NDCG")), [])


class _CatBoostProgress:
    """CatBoost training callback: rate-limited progress lines with the validation NDCG@10, if any."""

    def __init__(self, task: str, iterations: int) -> None:
        self.log = ProgressLog(logger, task, iterations)

    def after_iteration(self, info: Any) -> bool:
        ndcg = _validation_ndcg(info.metrics)
        self.log.update(info.iteration, f"validation NDCG@10 {ndcg[-1]:.4f}" if ndcg else "")
        return True  # go on training
