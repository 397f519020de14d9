"""The base of every recommender: ``fit`` / ``recommend`` / ``save`` / ``load``.

A model is rebuilt from its pydantic config (``Model.from_config``) and saved to the object
store as a folder: ``model.json`` (kind, config, metadata) next to the ``.npz`` arrays of its
state, including the id encoders it was trained with.
"""

from __future__ import annotations

import io
import json
import logging
import time
import zipfile
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict

from recsys.models.dataset import InteractionData
from recsys.models.encoders import IdEncoder
from recsys.storage.object_store import ObjectNotFoundError, ObjectStore

logger = logging.getLogger(__name__)

RECOMMENDATION_COLUMNS = ["user_id", "item_id", "score", "rank"]


class ModelError(RuntimeError):
    """A model that cannot be used: not fitted, missing or corrupt in the object store."""


class ModelConfig(BaseModel):
    """Hyper-parameters of a model; enough to rebuild it untrained."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Recommender(ABC):
    """Base class: public methods check and delegate to the private ``_fit`` / ``_recommend``."""

    kind: ClassVar[str]
    config_class: ClassVar[type[ModelConfig]]
    _registry: ClassVar[dict[str, type[Recommender]]] = {}

    def __init__(self, config: ModelConfig | None = None) -> None:
        self.config = config if config is not None else self.config_class()
        self.users: IdEncoder | None = None
        self.items: IdEncoder | None = None
        self.trained_until: pd.Timestamp | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            Recommender._registry[cls.kind] = cls

    @classmethod
    def from_config(cls, config: ModelConfig | dict[str, Any]) -> Self:
        """Build an untrained model from its config (or the config's dict)."""
        return cls(config if isinstance(config, ModelConfig) else cls.config_class(**config))

    @property
    def is_fitted(self) -> bool:
        """Whether ``fit`` (or ``load``) has run."""
        return self.items is not None

    def fit(self, data: InteractionData) -> Self:
        """Train on a window of interactions."""
        started = time.perf_counter()
        self._fit(data)
        self.users, self.items, self.trained_until = data.users, data.item_codes, data.now
        logger.info(
            "%s fitted in %.1f s on %d interactions of %d users and %d items",
            self.kind,
            time.perf_counter() - started,
            len(data.interactions),
            data.n_users,
            data.n_items,
        )
        return self

    def recommend(self, user_ids: npt.ArrayLike, data: InteractionData, k: int) -> pd.DataFrame:
        """Top-``k`` items for each user, best first.

        Parameters
        ----------
        user_ids : array-like of int
            External user ids; users the model cannot serve get no rows (callers fall back).
        data : InteractionData
            Current interactions (histories, bought items to filter) and catalogue (availability).
        k : int
            Number of items per user.

        Returns
        -------
        DataFrame
            ``user_id, item_id, score, rank`` (rank 1 = best).
        """
        users = self._checked_users(user_ids, data, k)
        if users.size == 0:
            return pd.DataFrame({c: pd.Series(dtype="int64") for c in RECOMMENDATION_COLUMNS})
        return self._recommend(users, data, k)

    def _checked_users(self, user_ids: npt.ArrayLike, data: InteractionData, k: int) -> npt.NDArray[np.int64]:
        """The distinct ``user_ids``, once the model is known to be able to recommend ``k`` items."""
        if not self.is_fitted:
            raise ModelError(f"{type(self).__name__} is not fitted: call fit() or load() first")
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        assert self.items is not None
        if getattr(self.config, "available_only", False) and data.is_unavailable(self.items.ids).all():
            raise ValueError(
                f"all {len(self.items)} items known to the {self.kind} model are unavailable: "
                "nothing can be recommended (check the 'available' property of the catalogue)"
            )
        return np.unique(np.asarray(user_ids, dtype=np.int64))

    def _to_model_items(self, data: InteractionData, matrix: sp.csr_matrix) -> sp.csr_matrix:
        """Re-index the columns of a matrix over ``data``'s items to this model's items.

        Items the model was not trained on are dropped (it has nothing to say about them).
        """
        assert self.items is not None
        model_cols = self.items.transform(data.item_codes.ids, unknown="mask")
        keep = model_cols >= 0
        coo = matrix[:, np.flatnonzero(keep)].tocoo()
        return sp.csr_matrix(
            (coo.data, (coo.row, model_cols[keep][coo.col])), shape=(matrix.shape[0], len(self.items))
        )

    @abstractmethod
    def _fit(self, data: InteractionData) -> None: ...

    @abstractmethod
    def _recommend(self, user_ids: npt.NDArray[np.int64], data: InteractionData, k: int) -> pd.DataFrame: ...

    @abstractmethod
    def _state(self) -> dict[str, npt.NDArray[Any]]:
        """Arrays that, with the config and encoders, restore the fitted model."""

    @abstractmethod
    def _restore(self, state: dict[str, npt.NDArray[Any]]) -> None: ...

    def _save_parts(self, store: ObjectStore, prefix: str) -> None:  # noqa: B027  # optional hook
        """Save nested models (composite models override this)."""

    def _load_parts(self, store: ObjectStore, prefix: str) -> None:  # noqa: B027  # optional hook
        """Load nested models (composite models override this)."""

    def save(self, store: ObjectStore, prefix: str) -> None:
        """Write the fitted model under ``prefix`` (``model.json`` is written last, as the commit mark)."""
        if not self.is_fitted:
            raise ModelError(f"{type(self).__name__} is not fitted: nothing to save")
        assert self.users is not None and self.items is not None
        store.put_bytes(f"{prefix}/users.npz", self.users.to_bytes())
        store.put_bytes(f"{prefix}/items.npz", self.items.to_bytes())
        buffer = io.BytesIO()
        np.savez_compressed(buffer, allow_pickle=False, **self._state())
        store.put_bytes(f"{prefix}/state.npz", buffer.getvalue())
        self._save_parts(store, prefix)
        meta = {
            "kind": self.kind,
            "config": self.config.model_dump(mode="json"),
            "trained_until": None if self.trained_until is None else self.trained_until.isoformat(),
        }
        store.put_bytes(f"{prefix}/model.json", json.dumps(meta, indent=2).encode())

    @classmethod
    def load(cls, store: ObjectStore, prefix: str) -> Self:
        """Load a model saved with :meth:`save`; its class comes from the saved ``kind``.

        Raises
        ------
        ModelError
            If the model is missing (``model.json`` not found), of another kind than ``cls``,
            or any of its files is corrupt; the message names the object.
        """
        url = store.url(f"{prefix}/model.json")
        try:
            meta = json.loads(store.get_bytes(f"{prefix}/model.json"))
        except ObjectNotFoundError as exc:
            raise ModelError(f"no model at {url}: train it first") from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelError(f"corrupt model description {url}: {exc}") from exc
        model_class = Recommender._registry.get(meta.get("kind", ""))
        if model_class is None or not issubclass(model_class, cls):
            raise ModelError(f"{url} holds a model of kind {meta.get('kind')!r}, not a {cls.__name__}")
        model = model_class.from_config(meta["config"])
        try:
            model.users = IdEncoder.from_bytes(store.get_bytes(f"{prefix}/users.npz"))
            model.items = IdEncoder.from_bytes(store.get_bytes(f"{prefix}/items.npz"))
            with np.load(io.BytesIO(store.get_bytes(f"{prefix}/state.npz")), allow_pickle=False) as saved:
                model._restore({name: saved[name] for name in saved.files})
            model._load_parts(store, prefix)
        except ObjectNotFoundError as exc:
            raise ModelError(f"incomplete model under {store.url(prefix)}: {exc}") from exc
        except (ValueError, OSError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            raise ModelError(f"corrupt model files under {store.url(prefix)}: {exc}") from exc
        trained_until = meta.get("trained_until")
        model.trained_until = None if trained_until is None else pd.Timestamp(trained_until)
        return model
