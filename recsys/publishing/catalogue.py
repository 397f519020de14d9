"""The catalogue of published tables: the one contract between the pipeline and the service.

Each entry says what a recommendation table is called, its columns, what its rows are keyed
by, the index built before it goes into service and how many rows per key are published (its
depth, a setting). The pipeline publishes through these entries, the service loads the columns
they name, and the service's ``k`` bounds are their depths, so a setting that changes what is
published changes what may be asked for in the same move.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from recsys.config import Settings
from recsys.publishing.tables import PublishedVersion, publish_frame


@dataclass(frozen=True)
class PublishedTable:
    """A recommendation table the pipeline publishes and the service reads.

    Attributes
    ----------
    name : str
        Logical name (the view that always shows the current version).
    columns : tuple of Column
        Column definitions of every physical version.
    key : str or None
        Column the lists are keyed by (``user_id``, ``item_id``); ``None`` for one list for all.
    depth_setting : str or None
        The :class:`~recsys.config.Settings` field giving the rows published per key; ``None``
        for a table that is not a list of recommendations (no ``k`` is answered from it).
    item : str
        Column of the recommended item.
    label : str or None
        Text column kept beside each row (similar items' ``source``).
    """

    name: str
    columns: tuple[sa.Column[Any], ...]
    key: str | None
    depth_setting: str | None
    item: str = "item_id"
    label: str | None = None

    @property
    def recommends(self) -> bool:
        """Whether the rows are recommendations (which the service filters of unavailable items)."""
        return self.depth_setting is not None

    @property
    def index(self) -> list[str]:
        """Columns of the index built before the version goes into service."""
        return [self.key] if self.key is not None else ["rank"]

    @property
    def served_columns(self) -> list[str]:
        """Columns the service reads: key, item, score and rank (which orders them), label."""
        return [c for c in (self.key, self.item, "score", "rank", self.label) if c is not None]

    def depth(self, settings: Settings) -> int:
        """Rows published per key, hence the largest ``k`` that can be answered from the table."""
        if self.depth_setting is None:
            raise ValueError(f"{self.name} holds no recommendations: it has no depth")
        depth: int = getattr(settings, self.depth_setting)
        return depth

    def new_columns(self) -> list[sa.Column[Any]]:
        """Fresh copies of the column definitions (a Column belongs to at most one Table)."""
        return [column._copy() for column in self.columns]

    def publish(
        self,
        engine: Engine,
        frame: pd.DataFrame | Iterable[pd.DataFrame],
        as_of: datetime | None = None,
        keep_versions: int = 3,
        promote: bool = False,
    ) -> PublishedVersion:
        """Publish ``frame`` (or its batches) as the table's next version (see :func:`publish_frame`)."""
        return publish_frame(
            engine,
            self.name,
            frame,
            self.new_columns(),
            as_of=as_of,
            keep_versions=keep_versions,
            indexes=[self.index],
            promote=promote,
        )


def _user_list_columns() -> tuple[sa.Column[Any], ...]:
    return (
        sa.Column("user_id", sa.BigInteger, nullable=False),
        *_ranked_item_columns(),
    )


def _ranked_item_columns() -> tuple[sa.Column[Any], ...]:
    return (
        sa.Column("item_id", sa.BigInteger, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("rank", sa.Integer, nullable=False),
    )


DEFAULT_RECOMMENDATIONS = PublishedTable(
    name="default_recommendations",
    columns=_ranked_item_columns(),
    key=None,
    depth_setting="n_default_recommendations",
)
RANKED_RECOMMENDATIONS = PublishedTable(
    name="ranked_recommendations",
    columns=_user_list_columns(),
    key="user_id",
    depth_setting="n_personalized_recommendations",
)
PERSONALIZED_RECOMMENDATIONS = PublishedTable(
    name="personalized_recommendations",
    columns=_user_list_columns(),
    key="user_id",
    depth_setting="n_personalized_recommendations",
)
I2I_RECOMMENDATIONS = PublishedTable(
    name="i2i_recommendations",
    columns=_user_list_columns(),
    key="user_id",
    depth_setting="n_personalized_recommendations",
)
SIMILAR_ITEMS = PublishedTable(
    name="similar_items",
    columns=(
        sa.Column("item_id", sa.BigInteger, nullable=False),
        sa.Column("similar_item_id", sa.BigInteger, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("rank", sa.Integer, nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
    ),
    key="item_id",
    depth_setting="n_similar_items",
    item="similar_item_id",
    label="source",
)

# Users' latest items and purchases, for the users without published lists: the service scores
# their neighbours at request time (recsys.models.i2i.user_histories), so every user with
# history is answered personally without publishing lists for all of them.
USER_HISTORIES = PublishedTable(
    name="user_histories",
    columns=(
        sa.Column("user_id", sa.BigInteger, nullable=False),
        *_ranked_item_columns(),
        sa.Column("relation", sa.String(8), nullable=False),
    ),
    key="user_id",
    depth_setting=None,
    label="relation",
)

CATALOGUE: dict[str, PublishedTable] = {
    table.name: table
    for table in (
        DEFAULT_RECOMMENDATIONS,
        RANKED_RECOMMENDATIONS,
        PERSONALIZED_RECOMMENDATIONS,
        I2I_RECOMMENDATIONS,
        SIMILAR_ITEMS,
        USER_HISTORIES,
    )
}
