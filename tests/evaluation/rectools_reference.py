"""RecTools' metrics on CSV inputs; run with the RecTools environment's Python (.venv-rectools).

Usage: python rectools_reference.py FOLDER K [K ...]
FOLDER holds reco.csv (user_id,item_id,rank), relevant.csv and train.csv (user_id,item_id).
Prints one JSON object: {"precision@5": {"user": value, ...}, ...} with per-user values, and
"item_coverage@k" (CatalogCoverage over the items of train.csv, normalised) as a number.
"""

import json
import sys
from pathlib import Path

import pandas as pd
from rectools import Columns
from rectools.metrics import (
    MAP,
    NDCG,
    CatalogCoverage,
    CoveredUsers,
    MeanInvUserFreq,
    Precision,
    Recall,
    SufficientReco,
)

folder = Path(sys.argv[1])
names = {"user_id": Columns.User, "item_id": Columns.Item, "rank": Columns.Rank}
reco = pd.read_csv(folder / "reco.csv").rename(columns=names)
relevant = pd.read_csv(folder / "relevant.csv").rename(columns=names)
train = pd.read_csv(folder / "train.csv").rename(columns=names)
result = {}
for k in map(int, sys.argv[2:]):
    for name, metric in (
        ("precision", Precision(k)),
        ("recall", Recall(k)),
        ("ndcg", NDCG(k)),
        ("map", MAP(k)),
    ):
        per_user = metric.calc_per_user(reco, relevant)
        result[f"{name}@{k}"] = {str(u): float(v) for u, v in per_user.items()}
    novelty = MeanInvUserFreq(k).calc_per_user(reco, train)
    result[f"novelty@{k}"] = {str(u): float(v) for u, v in novelty.items()}
    catalog = train[Columns.Item].unique()
    result[f"item_coverage@{k}"] = float(CatalogCoverage(k, normalize=True).calc(reco, catalog))
    # Per recommended user: 1 if the top k is full; per test user: 1 if the top k is not empty.
    sufficient = SufficientReco(k).calc_per_user(reco)
    result[f"sufficient_reco@{k}"] = {str(u): int(v) for u, v in sufficient.items()}
    covered = CoveredUsers(k).calc_per_user(reco, relevant)
    result[f"covered_users@{k}"] = {str(u): int(v) for u, v in covered.items()}
print(json.dumps(result))
