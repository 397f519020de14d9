"""Exploratory summaries of the three raw tables: ``events``, ``item_properties``, ``category_tree``.

Each summary runs its aggregation in SQL (the same statements on SQLite and PostgreSQL), so
only a small result reaches pandas even on the full 20 M property rows, and returns a small
data frame; a ``plot_*`` function turns that frame into a :class:`~matplotlib.figure.Figure`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import sqlalchemy as sa
from matplotlib.figure import Figure
from sqlalchemy.engine import Engine

from recsys.data.prepare import category_ancestry
from recsys.data.schema import AVAILABLE_PROPERTY, CATEGORY_PROPERTY, EVENT_TYPES, PRICE_PROPERTY
from recsys.experiments import plots

DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
# Properties whose churn is shown by default: the readable ones that preparation uses.
CHURN_PROPERTIES: tuple[str, ...] = (CATEGORY_PROPERTY, AVAILABLE_PROPERTY, PRICE_PROPERTY)

# One statement per raw table; every one yields the same columns (NULL where they do not apply).
_SIZE_QUERIES = {
    "events": """
        SELECT COUNT(*) AS "rows", COUNT(DISTINCT visitorid) AS visitors, COUNT(DISTINCT itemid) AS items,
               NULL AS properties, NULL AS categories,
               MIN("timestamp") AS first_ms, MAX("timestamp") AS last_ms
        FROM events""",
    "item_properties": """
        SELECT COUNT(*) AS "rows", NULL AS visitors, COUNT(DISTINCT itemid) AS items,
               COUNT(DISTINCT property) AS properties, NULL AS categories,
               MIN("timestamp") AS first_ms, MAX("timestamp") AS last_ms
        FROM item_properties""",
    "category_tree": """
        SELECT COUNT(*) AS "rows", NULL AS visitors, NULL AS items, NULL AS properties,
               COUNT(DISTINCT categoryid) AS categories, NULL AS first_ms, NULL AS last_ms
        FROM category_tree""",
}


def _query(engine: Engine, sql: str, **params: Any) -> pd.DataFrame:
    """Run one read-only statement and return its rows."""
    with engine.connect() as conn:
        return pd.read_sql(sa.text(sql), conn, params=params)


def _from_epoch_ms(values: pd.Series) -> pd.Series:
    """Naive UTC timestamps of a column of epoch milliseconds (missing stays missing)."""
    return pd.to_datetime(pd.to_numeric(values, errors="coerce"), unit="ms")


# -- table sizes --------------------------------------------------------------------------------
def table_sizes(engine: Engine) -> pd.DataFrame:
    """Rows, distinct entities and time span of each raw table.

    Parameters
    ----------
    engine : Engine
        Database holding the raw tables (``recsys data load``).

    Returns
    -------
    DataFrame
        Index ``table``; columns ``rows``, ``visitors``, ``items``, ``properties``,
        ``categories`` (missing where they do not apply), ``first`` and ``last`` (UTC).
    """
    frames = [_query(engine, sql).assign(table=name) for name, sql in _SIZE_QUERIES.items()]
    sizes = pd.concat(frames, ignore_index=True).set_index("table")
    counts = ["rows", "visitors", "items", "properties", "categories"]
    sizes[counts] = sizes[counts].apply(pd.to_numeric).astype("Int64")
    sizes["first"] = _from_epoch_ms(sizes.pop("first_ms"))
    sizes["last"] = _from_epoch_ms(sizes.pop("last_ms"))
    return sizes


def plot_table_sizes(sizes: pd.DataFrame) -> Figure:
    """Rows per raw table (log scale), from :func:`table_sizes`."""
    rows = sizes["rows"].astype("float64")
    return plots.bar_chart(rows, "Rows per raw table", "rows", log=True, labels=[f"{n:,.0f}" for n in rows])


# -- events -------------------------------------------------------------------------------------
def event_funnel(engine: Engine) -> pd.DataFrame:
    """The view → add-to-cart → purchase funnel.

    Returns
    -------
    DataFrame
        Index ``event`` (view, addtocart, transaction); columns ``events``, ``visitors`` and
        ``items`` with that event, ``visitor_share`` (visitors with the event / all
        visitors) and ``per_view`` (events per view event).
    """
    funnel = _query(
        engine,
        """SELECT event, COUNT(*) AS events, COUNT(DISTINCT visitorid) AS visitors,
                  COUNT(DISTINCT itemid) AS items
           FROM events GROUP BY event""",
    ).set_index("event")
    funnel = funnel.reindex(list(EVENT_TYPES), fill_value=0).astype("int64")
    total = _query(engine, "SELECT COUNT(DISTINCT visitorid) AS n FROM events")["n"].iloc[0]
    funnel["visitor_share"] = funnel["visitors"] / max(int(total), 1)
    funnel["per_view"] = funnel["events"] / max(int(funnel.loc["view", "events"]), 1)
    funnel.index.name = "event"
    return funnel


def plot_event_funnel(funnel: pd.DataFrame) -> Figure:
    """Visitors reaching each stage (log scale), labelled with their share of all visitors."""
    labels = [f"{share:.2%}" for share in funnel["visitor_share"]]
    return plots.bar_chart(funnel["visitors"], "Event funnel: visitors per stage", "visitors", True, labels)


def activity_distribution(engine: Engine, per: Literal["visitor", "item"]) -> pd.DataFrame:
    """How many visitors (or items) have exactly n events.

    Parameters
    ----------
    engine : Engine
        Database holding the raw ``events``.
    per : {"visitor", "item"}
        Count events per visitor or per item.

    Returns
    -------
    DataFrame
        Index ``events`` (n, ascending); columns ``count`` (visitors or items with n events),
        ``share`` of them and ``event_share`` (share of all events made by them).
    """
    column = {"visitor": "visitorid", "item": "itemid"}[per]
    counts = _query(
        engine,
        f"""SELECT n AS events, COUNT(*) AS "count"
            FROM (SELECT {column}, COUNT(*) AS n FROM events GROUP BY {column}) AS per_entity
            GROUP BY n ORDER BY n""",
    ).set_index("events")
    counts["share"] = counts["count"] / counts["count"].sum()
    made = counts.index.to_numpy(dtype=np.float64) * counts["count"].to_numpy(dtype=np.float64)
    counts["event_share"] = made / made.sum()
    return counts


def plot_activity(distributions: dict[str, pd.DataFrame]) -> Figure:
    """Log-log plot of :func:`activity_distribution` results, e.g. ``{"visitors": ..., "items": ...}``."""
    return plots.loglog_points(
        {label: frame["count"] for label, frame in distributions.items()},
        "Activity distribution (log-log)",
        "events",
        "visitors / items with that many events",
    )


def daily_events(engine: Engine) -> pd.DataFrame:
    """Events per UTC day and event type (index ``day``, one column per event type)."""
    daily = _query(
        engine,
        f"""SELECT "timestamp" / {DAY_MS} AS day_number, event, COUNT(*) AS events
            FROM events GROUP BY "timestamp" / {DAY_MS}, event""",
    )
    table = daily.pivot_table(index="day_number", columns="event", values="events", fill_value=0)
    table = table.reindex(columns=list(EVENT_TYPES), fill_value=0).astype("int64")
    table.index = pd.to_datetime(table.index.to_numpy(dtype=np.int64) * DAY_MS, unit="ms")
    table.index.name = "day"
    table.columns.name = None
    return table


def plot_daily_events(daily: pd.DataFrame) -> Figure:
    """Events per day and type (log scale), from :func:`daily_events`."""
    return plots.line_chart(daily, "Events per day", "events", log=True)


# -- category tree ------------------------------------------------------------------------------
def category_depth(engine: Engine) -> pd.DataFrame:
    """Categories per depth of the tree (root = 1).

    Returns
    -------
    DataFrame
        Index ``depth``; columns ``categories`` and ``leaves`` (categories without children).

    Raises
    ------
    ValueError
        If the tree has a cycle.
    """
    tree = _query(engine, "SELECT categoryid, parentid FROM category_tree")
    ancestry = category_ancestry(tree)
    is_leaf = ~ancestry.index.isin(tree["parentid"].dropna().astype("int64"))
    depth = pd.DataFrame({"depth": ancestry["depth"].to_numpy(), "leaf": is_leaf})
    summary = depth.groupby("depth").agg(categories=("leaf", "size"), leaves=("leaf", "sum"))
    return summary.astype("int64")


def plot_category_depth(depths: pd.DataFrame) -> Figure:
    """Categories per depth of the tree, from :func:`category_depth`."""
    return plots.bar_chart(depths["categories"], "Category tree: categories per depth", "categories")


# -- item properties ----------------------------------------------------------------------------
def property_churn(engine: Engine, properties: Sequence[str] = CHURN_PROPERTIES) -> pd.DataFrame:
    """How often item properties change, per week of snapshots.

    Every property row is compared with the previous row of the same item and property:
    it is ``new`` (the pair's first row), ``changed`` (another value) or ``repeated``.
    The weekly churn rate is the share of the items known before the week whose value changed.

    Parameters
    ----------
    engine : Engine
        Database holding the raw ``item_properties``.
    properties : sequence of str
        Properties to look at (default: category, availability and price).

    Returns
    -------
    DataFrame
        Columns ``week`` (start, UTC), ``property``, ``rows``, ``new``, ``changed``,
        ``repeated``, ``known_before`` (items with the property before the week) and
        ``churn`` (changed / known_before; missing in a property's first week).
    """
    if not properties:
        raise ValueError("name at least one property")
    names = {f"p{number}": name for number, name in enumerate(properties)}
    churn = _query(
        engine,
        f"""SELECT "timestamp" / {WEEK_MS} AS week_number, property, COUNT(*) AS "rows",
                   SUM(CASE WHEN previous IS NULL THEN 1 ELSE 0 END) AS new,
                   SUM(CASE WHEN previous IS NOT NULL AND previous <> value THEN 1 ELSE 0 END) AS changed
            FROM (
                SELECT "timestamp", property, value,
                       LAG(value) OVER (PARTITION BY itemid, property ORDER BY "timestamp") AS previous
                FROM item_properties WHERE property IN ({", ".join(f":{key}" for key in names)})
            ) AS compared
            GROUP BY "timestamp" / {WEEK_MS}, property
            ORDER BY week_number, property""",
        **names,
    )
    for column in ("rows", "new", "changed"):
        churn[column] = churn[column].astype("int64")
    churn["repeated"] = churn["rows"] - churn["new"] - churn["changed"]
    churn["known_before"] = churn.groupby("property")["new"].cumsum() - churn["new"]
    churn["churn"] = churn["changed"] / churn["known_before"].replace(0, np.nan)
    churn.insert(0, "week", _from_epoch_ms(churn.pop("week_number") * WEEK_MS))
    return churn


def churn_summary(churn: pd.DataFrame) -> pd.DataFrame:
    """Totals per property of a :func:`property_churn` table and its mean weekly churn rate."""
    per_property = churn.groupby("property")
    summary = per_property[["rows", "new", "changed", "repeated"]].sum()
    summary["mean_weekly_churn"] = per_property["churn"].mean()
    return summary


def plot_property_churn(churn: pd.DataFrame) -> Figure:
    """Weekly churn rate of each property, from :func:`property_churn`."""
    table = churn.pivot(index="week", columns="property", values="churn").dropna(how="all")
    table = table.rename(columns={PRICE_PROPERTY: f"{PRICE_PROPERTY} (price)"})
    table.columns.name = None
    return plots.line_chart(table, "Weekly property churn", "share of known items whose value changed")


def latest_prices(engine: Engine) -> pd.Series:
    """The latest price (property ``790``) of every item that has one.

    Prices are stored hashed as ``n<number>`` (``n15360.000`` is 15360); values that are not
    numbers become missing.

    Returns
    -------
    Series
        Index ``itemid``; name ``price``.
    """
    rows = _query(
        engine,
        """SELECT itemid, "timestamp", value FROM item_properties WHERE property = :price""",
        price=PRICE_PROPERTY,
    )
    latest = rows.sort_values(["itemid", "timestamp"], kind="stable").groupby("itemid")["value"].last()
    prices = pd.to_numeric(latest.astype("string").str.lstrip("n"), errors="coerce")
    return prices.astype("float64").rename("price")


def price_summary(prices: pd.Series) -> pd.DataFrame:
    """Count, zero and missing prices and quantiles of the positive ones (one row, ``price``)."""
    positive = prices[prices > 0]
    row: dict[str, float] = {
        "items": float(len(prices)),
        "missing": float(prices.isna().sum()),
        "zero_or_negative": float((prices <= 0).sum()),
    }
    for quantile in (0.01, 0.25, 0.5, 0.75, 0.99):
        row[f"q{round(quantile * 100):02d}"] = float(positive.quantile(quantile)) if len(positive) else np.nan
    row["max"] = float(positive.max()) if len(positive) else np.nan
    return pd.DataFrame([row], index=pd.Index(["price"], name="property"))


def plot_price_distribution(prices: pd.Series) -> Figure:
    """Histogram of the latest positive prices on a log axis, from :func:`latest_prices`."""
    return plots.log_histogram(prices, "Latest item price (property 790)", "price (log scale)")
