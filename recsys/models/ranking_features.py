"""Features of (user, candidate item) pairs for the second-stage ranker.

Everything is computed from one window of interactions (``InteractionData``) and its
catalogue, so features for training (window before the label days) and for serving
(the whole window) come from the same code. Groups of features:

- candidate sources: score and rank from ALS, item-kNN, i2i, popularity and the user's own history
  (missing when a source did not propose the item);
- item: popularity over the last 7 and 30 days and its trend, conversion rate, price,
  availability, days since the item was first seen;
- user: events, distinct items, sessions, days since the last event, mean price of viewed items;
- user × item: the user's events with the item and days since the last one, the price
  relative to the user's mean, the share of the user's events in the item's category,
  parent and root category and days since the user's last event in the item's category.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.models.dataset import InteractionData

_DAY_SECONDS = 86_400.0


class RankingFeatures:
    """Precomputed user, item and category statistics of one window; builds candidate features."""

    def __init__(self, data: InteractionData) -> None:
        self.now = data.now
        frame = data.interactions
        catalogue = data.items
        self.catalogue = catalogue
        age_days = (data.now - frame["datetime"]).dt.total_seconds() / _DAY_SECONDS
        frame = frame.assign(
            age_days=age_days.to_numpy(),
            is_view=(frame["event"] == "view").to_numpy(dtype=np.float64),
            is_cart=(frame["event"] == "addtocart").to_numpy(dtype=np.float64),
        )

        items = frame.groupby("item_id").agg(
            item_events=("user_id", "size"),
            item_users=("user_id", "nunique"),
            item_views=("is_view", "sum"),
        )
        items["item_buys"] = items["item_events"] - items["item_views"]
        recent = frame[frame["age_days"] <= 30]
        items["item_events_30d"] = recent.groupby("item_id").size()
        items["item_events_7d"] = recent[recent["age_days"] <= 7].groupby("item_id").size()
        items = items.fillna({"item_events_30d": 0, "item_events_7d": 0})
        items["item_trend"] = (items["item_events_7d"] + 1) / (items["item_events_30d"] / 30 * 7 + 1)
        items["item_conversion"] = items["item_buys"] / (items["item_views"] + 1)
        self.items = items.drop(columns=["item_views"])

        with_price = frame.join(catalogue["price"], on="item_id")
        self.users = frame.groupby("user_id").agg(
            user_events=("item_id", "size"),
            user_items=("item_id", "nunique"),
            user_sessions=("session_index", "nunique"),
            user_days_since_last=("age_days", "min"),
        )
        self.users["user_mean_price"] = with_price.groupby("user_id")["price"].mean()

        self.user_item = frame.groupby(["user_id", "item_id"]).agg(
            ui_events=("event", "size"),
            ui_carts=("is_cart", "sum"),
            ui_days_since_last=("age_days", "min"),
        )

        # Category affinities at three levels of the tree.
        levels = {"category": "category_id", "parent": "parent_category_id", "root": "root_category_id"}
        self.category_affinity: dict[str, pd.DataFrame] = {}
        for level, column in levels.items():
            tagged = frame.assign(_cat=catalogue[column].reindex(frame["item_id"].to_numpy()).to_numpy())
            tagged = tagged.dropna(subset=["_cat"])
            stats = tagged.groupby(["user_id", "_cat"]).agg(
                share=("item_id", "size"), days_since=("age_days", "min")
            )
            stats["share"] = (
                stats["share"] / self.users["user_events"].reindex(stats.index.get_level_values(0)).to_numpy()
            )
            self.category_affinity[level] = stats.rename(
                columns={"share": f"{level}_share", "days_since": f"{level}_days_since"}
            )

    def build(self, candidates: pd.DataFrame) -> pd.DataFrame:
        """Features of ``user_id, item_id`` pairs carrying ``<source>_score``/``<source>_rank`` columns."""
        out = candidates.join(self.items, on="item_id").join(self.users, on="user_id")
        out = out.join(self.user_item, on=["user_id", "item_id"])
        catalogue = self.catalogue.reindex(out["item_id"].to_numpy())
        out["price"] = catalogue["price"].to_numpy(dtype=np.float64, na_value=np.nan)
        out["available"] = (
            catalogue["available"].astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
        )
        first_seen = pd.to_datetime(catalogue["first_seen"])
        out["item_age_days"] = ((self.now - first_seen).dt.total_seconds() / _DAY_SECONDS).to_numpy()
        out["price_to_user_mean"] = out["price"] / out["user_mean_price"]
        levels = {"category": "category_id", "parent": "parent_category_id", "root": "root_category_id"}
        for level, column in levels.items():
            keys = pd.MultiIndex.from_arrays(
                [out["user_id"].to_numpy(), catalogue[column].to_numpy(dtype=np.float64, na_value=np.nan)]
            )
            stats = self.category_affinity[level].reindex(keys)
            out[f"{level}_share"] = stats[f"{level}_share"].fillna(0.0).to_numpy()
            out[f"{level}_days_since"] = stats[f"{level}_days_since"].to_numpy()
        for column in (
            "ui_events",
            "ui_carts",
            "user_events",
            "user_items",
            "user_sessions",
            "item_events",
            "item_users",
            "item_buys",
            "item_events_30d",
            "item_events_7d",
        ):
            out[column] = out[column].fillna(0.0)
        return out

    @staticmethod
    def feature_columns(frame: pd.DataFrame) -> list[str]:
        """The model's input columns of a built frame (everything but ids)."""
        return [c for c in frame.columns if c not in ("user_id", "item_id", "label", "group")]
