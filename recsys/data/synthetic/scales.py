"""The sizes and behaviour of a generated shop: the twin's scales and the other shop shapes.

A :class:`TwinScale` holds the sizes of every file and the :class:`Behaviour` of its visitors.
The twin's scales (``tiny``, ``small``, ``full``) keep the ratios and behaviour of the real
RetailRocket data; the shapes in :data:`SHAPES` are other shops in the same file format, so
that quality claims can be checked on more than one kind of data: ``dense`` (a small catalogue,
a few hundred loyal visitors with many events each, many add-to-carts, returns after weeks)
and ``sparse`` (a large long-tail catalogue, few events per visitor). Any of them can be grown
or shrunk by a factor (:meth:`TwinScale.times`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recsys.data.synthetic.constants import REAL_ITEMS_WITH_PROPERTIES, REAL_PROPERTY_ROWS


@dataclass(frozen=True)
class Behaviour:
    """The parts of the visitors' behaviour a shop shape changes (the defaults are the twin's).

    Attributes
    ----------
    p_single_event : float
        Share of the regular visitors with a single browse event.
    tail_alpha : float
        Lomax shape of the browse events of the other visitors (larger: less spread).
    p_new_session : float
        Chance that a regular visitor's next view starts a new session.
    return_gap_median_days, return_gap_sigma : float
        Log-normal median and spread, over visitors, of the mean time before a return.
    p_long_tail : float
        Share of the views outside the session's category drawn uniformly among items on sale.
    popularity_sigma : float
        Log-normal spread of the items' base popularity (smaller: a flatter catalogue).
    """

    p_single_event: float = 0.725
    tail_alpha: float = 1.45
    p_new_session: float = 0.30
    return_gap_median_days: float = 2.5
    return_gap_sigma: float = 1.2
    p_long_tail: float = 0.15
    popularity_sigma: float = 2.05


@dataclass(frozen=True)
class TwinScale:
    """The sizes of a twin; every ratio between them is that of the real data.

    Attributes
    ----------
    name : str
        Scale name, as in :data:`SCALES`.
    n_views, n_addtocart, n_transaction_rows : int
        Rows of ``events.csv`` per event type (exact duplicates included).
    n_transactions : int
        Distinct ``transactionid`` values.
    n_buyers : int
        Visitors with at least one transaction.
    n_visitors : int
        Distinct visitors.
    n_duplicate_events : int
        Exact duplicate rows of ``events.csv``.
    n_items_with_properties : int
        Distinct items in the item properties files.
    n_property_rows : int
        Rows of both item properties files together.
    n_categories, n_category_roots : int
        Nodes and roots of the category tree.
    n_missing_categories : int
        Category ids used by ``categoryid`` properties that are not in the tree.
    n_bots : int
        Heavy visitors with hundreds to thousands of events.
    max_visitor_events : int
        Views of the heaviest bot.
    behaviour : Behaviour
        How visitors behave; the twin's by default.
    """

    name: str
    n_views: int
    n_addtocart: int
    n_transaction_rows: int
    n_transactions: int
    n_buyers: int
    n_visitors: int
    n_duplicate_events: int
    n_items_with_properties: int
    n_property_rows: int
    n_categories: int
    n_category_roots: int
    n_missing_categories: int
    n_bots: int
    max_visitor_events: int
    behaviour: Behaviour = Behaviour()

    def __post_init__(self) -> None:
        problems = []
        if min(self.n_views, self.n_addtocart, self.n_transaction_rows, self.n_visitors) < 1:
            problems.append("every event type and the visitors need at least one row")
        if not 1 <= self.n_buyers <= self.n_transactions <= self.n_transaction_rows:
            problems.append("need 1 <= n_buyers <= n_transactions <= n_transaction_rows")
        if self.n_transaction_rows > self.n_addtocart:
            problems.append("need n_transaction_rows <= n_addtocart (purchases follow carts)")
        if self.n_views < 1.3 * self.n_visitors:
            problems.append("need n_views >= 1.3 * n_visitors (every visitor views something)")
        if not 1 <= self.n_bots < self.n_visitors or self.max_visitor_events < 2:
            problems.append("need 1 <= n_bots < n_visitors and max_visitor_events >= 2")
        if self.n_duplicate_events >= self.n_views:
            problems.append("too many duplicate events")
        if not 1 <= self.n_category_roots <= self.n_categories - 10:
            problems.append("need 1 <= n_category_roots <= n_categories - 10")
        if self.n_missing_categories < 0:
            problems.append("n_missing_categories must be >= 0")
        if self.n_items_with_properties < 200:
            problems.append("need n_items_with_properties >= 200")
        if self.n_property_rows < 40 * self.n_items_with_properties:
            problems.append("need n_property_rows >= 40 * n_items_with_properties")
        if problems:
            raise ValueError(f"invalid TwinScale {self.name!r}: {'; '.join(problems)}")

    @property
    def n_events(self) -> int:
        """Rows of ``events.csv``."""
        return self.n_views + self.n_addtocart + self.n_transaction_rows

    def times(self, factor: float) -> TwinScale:
        """The same shop ``factor`` times as large: every count but the category tree scales.

        Parameters
        ----------
        factor : float
            Growth factor, e.g. 0.5, 1 or 2; 1 returns the scale itself.
        """
        if factor <= 0:
            raise ValueError(f"the scale factor must be positive, got {factor}")
        if factor == 1:
            return self

        def grown(value: int) -> int:
            return max(1, round(value * factor))

        counts = (
            "n_views",
            "n_addtocart",
            "n_transaction_rows",
            "n_transactions",
            "n_buyers",
            "n_visitors",
            "n_duplicate_events",
            "n_items_with_properties",
            "n_property_rows",
            "n_bots",
        )
        changes: dict[str, Any] = {name: grown(getattr(self, name)) for name in counts}
        return dataclasses.replace(self, name=f"{self.name}x{factor:g}", **changes)

    @classmethod
    def scaled(
        cls,
        name: str,
        fraction: float,
        *,
        n_categories: int,
        n_category_roots: int,
        n_missing_categories: int,
    ) -> TwinScale:
        """A scale with ``fraction`` of every count of the real data.

        Parameters
        ----------
        name : str
            Name of the new scale.
        fraction : float
            Share of the real sizes, in (0, 1].
        n_categories, n_category_roots, n_missing_categories : int
            The category tree does not shrink linearly (a tiny catalogue still needs a few
            items per category), so its size is given explicitly.

        Returns
        -------
        TwinScale
            The scaled sizes.
        """
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")

        def part(value: int) -> int:
            return max(1, round(value * fraction))

        return cls(
            name=name,
            n_views=part(FULL.n_views),
            n_addtocart=part(FULL.n_addtocart),
            n_transaction_rows=part(FULL.n_transaction_rows),
            n_transactions=part(FULL.n_transactions),
            n_buyers=part(FULL.n_buyers),
            n_visitors=part(FULL.n_visitors),
            n_duplicate_events=part(FULL.n_duplicate_events),
            n_items_with_properties=part(FULL.n_items_with_properties),
            n_property_rows=part(FULL.n_property_rows),
            n_categories=n_categories,
            n_category_roots=n_category_roots,
            n_missing_categories=n_missing_categories,
            n_bots=part(FULL.n_bots),
            max_visitor_events=max(30, round(FULL.max_visitor_events * fraction)),
        )


FULL = TwinScale(
    name="full",
    n_views=2_664_312,
    n_addtocart=69_332,
    n_transaction_rows=22_457,
    n_transactions=17_672,
    n_buyers=11_719,
    n_visitors=1_407_580,
    n_duplicate_events=460,
    n_items_with_properties=REAL_ITEMS_WITH_PROPERTIES,
    n_property_rows=REAL_PROPERTY_ROWS,
    n_categories=1_669,
    n_category_roots=25,
    n_missing_categories=30,
    n_bots=12,
    max_visitor_events=7_757,
)

SCALES: dict[str, TwinScale] = {
    "tiny": TwinScale.scaled("tiny", 0.006, n_categories=60, n_category_roots=4, n_missing_categories=3),
    "small": TwinScale.scaled("small", 0.05, n_categories=200, n_category_roots=8, n_missing_categories=5),
    "full": FULL,
}


DENSE = TwinScale(
    name="dense",
    # ~750 visitors with ~190 events each; a third of the events are add-to-carts.
    n_views=86_500,
    n_addtocart=47_500,
    n_transaction_rows=8_500,
    n_transactions=6_000,
    n_buyers=420,
    n_visitors=750,
    n_duplicate_events=20,
    n_items_with_properties=1_600,
    n_property_rows=80_000,
    n_categories=60,
    n_category_roots=4,
    n_missing_categories=2,
    n_bots=1,
    max_visitor_events=1_500,
    behaviour=Behaviour(
        p_single_event=0.0,
        tail_alpha=5.0,
        p_new_session=0.04,
        return_gap_median_days=14.0,
        return_gap_sigma=0.5,
        popularity_sigma=1.5,
    ),
)

SPARSE = TwinScale(
    name="sparse",
    # A catalogue three times the small twin's, browsed thinly: ~1.6 events per visitor.
    n_views=92_000,
    n_addtocart=2_600,
    n_transaction_rows=850,
    n_transactions=700,
    n_buyers=600,
    n_visitors=60_000,
    n_duplicate_events=10,
    n_items_with_properties=60_000,
    n_property_rows=2_700_000,
    n_categories=400,
    n_category_roots=12,
    n_missing_categories=5,
    n_bots=2,
    max_visitor_events=300,
    behaviour=Behaviour(p_single_event=0.85, tail_alpha=2.2, p_long_tail=0.5, popularity_sigma=1.2),
)

# Shop shapes beside the twin, each with one base size (grow or shrink it with ``times``).
SHAPES: dict[str, TwinScale] = {"dense": DENSE, "sparse": SPARSE}
TWIN_SHAPE = "twin"


def resolve_shape(shape: str, scale: str | None = None, factor: float = 1.0) -> TwinScale:
    """The :class:`TwinScale` of a shape (``twin``, ``dense``, ``sparse``) grown by ``factor``.

    Parameters
    ----------
    shape : str
        ``twin`` or a name of :data:`SHAPES`.
    scale : str, optional
        The twin's scale (default ``small``); the other shapes have one size and refuse it.
    factor : float
        Growth factor applied to the chosen sizes, see :meth:`TwinScale.times`.
    """
    if shape == TWIN_SHAPE:
        return resolve_scale(scale or "small").times(factor)
    if shape not in SHAPES:
        raise ValueError(f"unknown shop shape {shape!r}; expected one of {', '.join([TWIN_SHAPE, *SHAPES])}")
    if scale is not None:
        raise ValueError(
            f"shape {shape!r} has one size; grow or shrink it with a scale factor, not {scale!r}"
        )
    return SHAPES[shape].times(factor)


@dataclass(frozen=True)
class TwinSummary:
    """What :func:`generate_twin` wrote.

    Attributes
    ----------
    out_dir : Path
        The folder holding the files.
    scale : str
        Name of the scale used.
    seed : int
        The seed used.
    files : dict of str to Path
        Path of each file, keyed by its Kaggle file name.
    rows : dict of str to int
        Data rows (without the header) of each file, keyed by its Kaggle file name.
    seconds : float
        Wall-clock time of the generation.
    """

    out_dir: Path
    scale: str
    seed: int
    files: dict[str, Path]
    rows: dict[str, int]
    seconds: float


def resolve_scale(scale: str | TwinScale) -> TwinScale:
    """The :class:`TwinScale` for a scale name (``tiny``, ``small``, ``full``) or a scale itself."""
    if isinstance(scale, TwinScale):
        return scale
    try:
        return SCALES[scale]
    except KeyError:
        raise ValueError(f"unknown twin scale {scale!r}; expected one of {', '.join(SCALES)}") from None
