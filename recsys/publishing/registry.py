"""Versioned models in the object store, with a pointer to the one in service.

Each trained model is saved under ``models/<name>/<version>/``; ``models/<name>/current.json``
names the version readers use. Writing that one small object is the promotion, so a reader
sees either the old or the new pointer, and a failed training run (which never reaches the
promotion) leaves the working model in place.

Promotion only moves forward, like table publication (``recsys.publishing.tables``): a version
trained on data as of an older moment than the one in service (a backfill, or a zombie task
finishing late) is saved but not promoted unless asked explicitly (``force``). The check and
the pointer write are two object-store calls, not a transaction: two writers racing within
that gap both hold models of comparable moments, and the later write wins.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from recsys.models.base import ModelError, Recommender
from recsys.storage.object_store import ObjectNotFoundError, ObjectStore


@dataclass(frozen=True)
class ModelVersion:
    """A promoted model: its version, validation metrics, when it was promoted and the moment
    of the data it was trained on (``as_of``, ISO; None for pointers written before it was kept)."""

    name: str
    version: str
    metrics: dict[str, float]
    promoted_at: str
    as_of: str | None = None

    def is_newer_than(self, as_of: datetime) -> bool:
        """Whether this version describes a later moment than ``as_of`` (naive = UTC)."""
        return self.as_of is not None and _utc(datetime.fromisoformat(self.as_of)) > _utc(as_of)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


class ModelRegistry:
    """Saves model versions and promotes one per name."""

    def __init__(self, store: ObjectStore, root: str = "models") -> None:
        self.store = store
        self.root = root

    def prefix(self, name: str, version: str) -> str:
        """Object-store folder of a model version."""
        return f"{self.root}/{name}/{version}"

    def save(
        self, name: str, version: str, model: Recommender, metrics: dict[str, float] | None = None
    ) -> str:
        """Save a trained model version (not yet promoted); returns its folder."""
        prefix = self.prefix(name, version)
        model.save(self.store, prefix)
        self.store.put_bytes(f"{prefix}/metrics.json", json.dumps(metrics or {}, indent=2).encode())
        return prefix

    def save_record(self, name: str, version: str, record: str, payload: dict[str, Any]) -> None:
        """Store a JSON record beside a saved version (e.g. a setting chosen for it after training)."""
        self.store.put_bytes(
            f"{self.prefix(name, version)}/{record}.json", json.dumps(payload, indent=2).encode()
        )

    def load_record(self, name: str, version: str, record: str) -> dict[str, Any] | None:
        """A record stored with :meth:`save_record`, or None if there is none."""
        try:
            payload: dict[str, Any] = json.loads(
                self.store.get_bytes(f"{self.prefix(name, version)}/{record}.json")
            )
        except ObjectNotFoundError:
            return None
        return payload

    def current(self, name: str) -> ModelVersion | None:
        """The promoted version of ``name``, or None if there is none yet."""
        try:
            pointer = json.loads(self.store.get_bytes(f"{self.root}/{name}/current.json"))
        except ObjectNotFoundError:
            return None
        return ModelVersion(**pointer)

    def promote(
        self,
        name: str,
        version: str,
        metrics: dict[str, float],
        as_of: datetime | None = None,
        force: bool = False,
    ) -> ModelVersion | None:
        """Make ``version`` the one in service, unless it is older than the one in service.

        Parameters
        ----------
        name, version : str
            The saved model version.
        metrics : dict of str to float
            Its validation metrics, kept with the pointer.
        as_of : datetime, optional
            The moment of the data it was trained on (naive = UTC).
        force : bool
            Promote even when the version in service was trained on data of a later moment.

        Returns
        -------
        ModelVersion or None
            The new pointer, or None when a newer version stays in service.
        """
        if not self.store.exists(f"{self.prefix(name, version)}/model.json"):
            where = self.store.url(self.prefix(name, version))
            raise ModelError(f"cannot promote {name} {version}: no saved model at {where}")
        current = self.current(name)
        if as_of is not None and not force and current is not None and current.is_newer_than(as_of):
            return None
        promoted = ModelVersion(
            name=name,
            version=version,
            metrics=metrics,
            promoted_at=datetime.now(UTC).isoformat(timespec="seconds"),
            as_of=None if as_of is None else _utc(as_of).isoformat(timespec="seconds"),
        )
        self.store.put_bytes(
            f"{self.root}/{name}/current.json", json.dumps(asdict(promoted), indent=2).encode()
        )
        return promoted

    def require_current(self, name: str, stage_hint: str = "") -> ModelVersion:
        """The promoted version of ``name``, without loading the model.

        Raises
        ------
        ModelError
            If no version has been promoted yet (``stage_hint`` names the stage that trains it).
        """
        promoted = self.current(name)
        if promoted is None:
            hint = f": run {stage_hint} first" if stage_hint else ""
            raise ModelError(f"no {name} model has been published in {self.store.url(self.root)}{hint}")
        return promoted

    def load_current(self, name: str, stage_hint: str = "") -> tuple[ModelVersion, Recommender]:
        """The promoted model, loaded.

        Raises
        ------
        ModelError
            If no version has been promoted yet (``stage_hint`` names the stage that trains it).
        """
        promoted = self.require_current(name, stage_hint)
        return promoted, Recommender.load(self.store, self.prefix(name, promoted.version))

    def versions(self, name: str) -> list[str]:
        """Saved versions of ``name``, oldest first."""
        keys = self.store.list(f"{self.root}/{name}")
        return sorted({key.split("/")[-2] for key in keys if key.endswith("/model.json")})


def quality_gate(
    candidate: dict[str, float],
    current: ModelVersion | None,
    metric: str,
    current_on_same_split: dict[str, Any] | None,
) -> tuple[bool, str]:
    """Whether the candidate should replace the current model, and why.

    The comparison uses the current model's configuration fitted on the candidate's training
    days and measured on the SAME validation days (``current_on_same_split``), so neither was
    trained on what it is judged on; without a current model the candidate wins.
    """
    if current is None or current_on_same_split is None:
        return True, "no model in service yet"
    new, old = candidate[metric], float(current_on_same_split[metric])
    if new >= old:
        return True, f"{metric} {new:.5f} >= {old:.5f} of version {current.version}'s configuration"
    return False, (
        f"{metric} {new:.5f} < {old:.5f} of version {current.version}'s configuration: "
        f"keeping {current.version}"
    )
