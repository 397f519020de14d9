"""Facts of the real RetailRocket files and the calibrated behaviour model of the twin."""

from __future__ import annotations

import numpy as np

# --------------------------------------------------------------------------------------
# Time line of the real data
# --------------------------------------------------------------------------------------
START_MS = 1_430_622_000_000  # 2015-05-03 03:00:00 UTC, the first event
END_MS = 1_442_545_200_000  # 2015-09-18 03:00:00 UTC, after the last event
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS
# Event weeks counted from START_MS; the 20th is cut after 5 days (138 days in all).
N_WEEKS = 20
# Property snapshots are taken on Sundays 03:00 UTC; Sunday i (0 = 2015-05-10) opens event
# week i + 1. There are 19 Sundays up to 2015-09-13 but the real file holds 18 distinct
# timestamps: one week is missing. Which one is not known here; the twin drops 2015-07-12.
_MISSING_SUNDAY = 9
_SNAPSHOT_SUNDAYS = np.array([s for s in range(19) if s != _MISSING_SUNDAY], dtype=np.int64)
SNAPSHOT_WEEKS = _SNAPSHOT_SUNDAYS + 1
N_SNAPSHOTS = len(_SNAPSHOT_SUNDAYS)
SNAPSHOT_TIMESTAMPS_MS: tuple[int, ...] = tuple(int(START_MS + w * WEEK_MS) for w in SNAPSHOT_WEEKS)

# --------------------------------------------------------------------------------------
# Fixed facts of the real files
# --------------------------------------------------------------------------------------
N_PROPERTIES = 1104  # distinct property names: categoryid, available and 1,102 hashed ones
N_HASHED_PROPERTIES = N_PROPERTIES - 2
REAL_PROPERTY_ROWS = 20_275_902
REAL_PART1_ROWS = 10_999_999
REAL_ITEMS_WITH_PROPERTIES = 417_053
REAL_ITEM_ID_SPACE = 466_868  # item ids run from 0 to 466,867
NO_PROPERTY_SHARE = 0.01  # event items without any property row ...
NO_PROPERTY_BIAS = 1.3  # ... picked with weight events ** bias: they carry ~9 % of the events
PRICE_STEP = 120  # real prices ("n15360.000", "n5400.000", ...) are multiples of 120

# --------------------------------------------------------------------------------------
# Behaviour model (calibrated against the real statistics, see docs/synthetic_twin.md); the
# parts a shop shape changes are in scales.Behaviour.
# --------------------------------------------------------------------------------------
P_NEW_SESSION_BOT = 0.02
P_FOCUS_FAVOURITE = 0.8  # a session focuses on a favourite category
P_IN_FOCUS = 0.85  # a view stays in the session's category
P_IN_FOCUS_BOT = 0.2
P_REVIEW = 0.23  # a view repeats the item seen just before
P_REVIEW_NEW_SESSION = 0.45  # ... at the start of a later session
PRICE_FIT_WIDTH = 0.9  # how strictly visitors keep to their price level (z units)
TREND_SIGMA = 0.9  # log-popularity drift from the first to the last week
NEW_ITEM_SHARE = 0.15
DYING_ITEM_SHARE = 0.045
CATEGORY_FLIP_SHARE = 0.055
AVAILABLE_FLIP_SHARE = 0.12  # plus the dying items: ~16 % change availability
PRICE_FLIP_SHARE = 0.30
P_TX_WITH_CART = 0.93  # transactions preceded by an add-to-cart of the same item
P_TX_FROM_SESSION = 0.5  # bought item is one viewed earlier in the session
LATE_FIRST_SNAPSHOT = 0.4  # items already on sale whose properties start after 2015-05-10
