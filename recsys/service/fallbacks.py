"""Why an answer fell back: the reasons the service reports, the API lists and the metrics count.

The values are the ``fallbacks`` strings of the API answers and the ``reason`` label values of
``recsys_recommendation_fallbacks_total``: dashboards and alerts match them, so they never change.
"""

from __future__ import annotations

from enum import StrEnum


class FallbackReason(StrEnum):
    """A fallback an answer took."""

    # No offline list for the user: the popular items are the base list.
    COLD_USER = "cold_user"
    # The user has ALS (or offline i2i) recommendations but no ranked ones.
    NO_RANKED_RECOMMENDATIONS = "no_ranked_recommendations"
    # The online events could not be read: the answer is offline only.
    DATABASE_UNAVAILABLE = "database_unavailable"
    # Online and offline lists together had fewer than k items: popular items completed them.
    FILLED_WITH_DEFAULT = "filled_with_default"
    # Online i2i asked for a user without online events (or whose items have no neighbours).
    NO_ONLINE_EVENTS = "no_online_events"
