"""RecTools baselines on a split written by quality_benchmark.py; run with .venv-rectools/bin/python.

Usage: python rectools_baselines.py FOLDER K [--ease-items N]

FOLDER holds train.csv (user_id,item_id,weight,datetime) and users.csv (user_id). Writes
reco_<model>.csv (user_id,item_id,score,rank) and timings.json. EASE inverts a dense
items × items matrix, so it only sees the N most popular items (default 10,000).
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from implicit.als import AlternatingLeastSquares
from implicit.nearest_neighbours import CosineRecommender
from rectools import Columns
from rectools.dataset import Dataset
from rectools.models import EASEModel, ImplicitALSWrapperModel, ImplicitItemKNNWrapperModel, PopularModel

parser = argparse.ArgumentParser()
parser.add_argument("folder", type=Path)
parser.add_argument("k", type=int)
parser.add_argument("--ease-items", type=int, default=10_000)
args = parser.parse_args()

train = pd.read_csv(args.folder / "train.csv", parse_dates=["datetime"]).rename(
    columns={"user_id": Columns.User, "item_id": Columns.Item, "weight": Columns.Weight}
)
users = pd.read_csv(args.folder / "users.csv")["user_id"].to_numpy()
dataset = Dataset.construct(train)
known = users[np.isin(users, train[Columns.User].unique())]

popular_items = train.groupby(Columns.Item).size().nlargest(args.ease_items).index
ease_dataset = Dataset.construct(train[train[Columns.Item].isin(popular_items)])
ease_users = known[np.isin(known, ease_dataset.user_id_map.external_ids)]

models = {
    "rectools_popular": (PopularModel(), dataset, users),
    "rectools_itemknn": (ImplicitItemKNNWrapperModel(CosineRecommender(K=50)), dataset, known),
    "rectools_als": (
        ImplicitALSWrapperModel(
            AlternatingLeastSquares(factors=64, iterations=15, regularization=0.05, alpha=10, random_state=42)
        ),
        dataset,
        known,
    ),
    "rectools_ease": (EASEModel(regularization=500.0), ease_dataset, ease_users),
}
timings = {}
for name, (model, data, targets) in models.items():
    started = time.perf_counter()
    model.fit(data)
    reco = model.recommend(targets, data, k=args.k, filter_viewed=False)
    timings[name] = time.perf_counter() - started
    reco.rename(
        columns={
            Columns.User: "user_id",
            Columns.Item: "item_id",
            Columns.Score: "score",
            Columns.Rank: "rank",
        }
    ).to_csv(args.folder / f"reco_{name}.csv", index=False)
(args.folder / "timings.json").write_text(json.dumps(timings))
