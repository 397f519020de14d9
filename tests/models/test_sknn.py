"""V-SKNN and STAN against scores computed by hand, and against a direct transcription of the
reference's loops (session-rec's ``vsknn.py``) on random data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from recsys.models.dataset import InteractionData
from recsys.models.session_category import CategoryPopularConfig, CategoryPopularModel
from recsys.models.sknn import (
    SessionQueries,
    SessionRecommender,
    STANConfig,
    STANModel,
    VSKNNConfig,
    VSKNNModel,
    position_weights,
    step_decay,
)

DAY = pd.Timedelta(days=1)
T0 = pd.Timestamp("2015-06-01")

# Four past sessions (one per visitor), ending on days 1..4:
#   A = [1, 2, 3]   B = [2, 4]   C = [1, 4, 5]   D = [6, 7]
PAST = {"A": [1, 2, 3], "B": [2, 4], "C": [1, 4, 5], "D": [6, 7]}


def past_sessions() -> InteractionData:
    rows = []
    for day, (user, items) in enumerate(PAST.items(), start=1):
        for offset, item in enumerate(items):
            moment = T0 + day * DAY - pd.Timedelta(minutes=len(items) - offset)
            rows.append((ord(user), item, "view", 1.0, moment, 0))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "event", "weight", "datetime", "session_index"])
    catalogue = pd.DataFrame({"item_id": np.arange(1, 8), "available": True})
    return InteractionData.build(frame, catalogue)


def scores(
    model: VSKNNModel | STANModel, items: list[int], moment: pd.Timestamp = T0 + 5 * DAY
) -> dict[int, float]:
    """The model's scores of one prefix given oldest first."""
    queries = SessionQueries.single(items[::-1], int(moment.value // 1_000_000))
    found = model.recommend_sessions(queries, k=10)
    return dict(zip(found["item_id"].tolist(), found["score"].tolist(), strict=True))


def test_vsknn_scores_by_hand() -> None:
    # Prefix [1, 2] (length 2): "div" weights 1 -> 1/2, 2 -> 2/2 = 1; 2 distinct items.
    # Candidates (share an item): A, B, C. Similarity = weighted overlap / 2:
    #   A ∋ 1, 2: (0.5 + 1) / 2 = 0.75    B ∋ 2: 1 / 2 = 0.5    C ∋ 1: 0.5 / 2 = 0.25
    # Decay "div" = 1/step, step = 1 + events since the latest prefix item the neighbour holds:
    #   A holds 2 (the last): 1    B holds 2: 1    C holds only 1: step 2 -> 1/2
    # Votes: A 0.75 to 1, 2, 3; B 0.5 to 2, 4; C 0.25 × 0.5 = 0.125 to 1, 4, 5.
    model = VSKNNModel().fit(past_sessions())
    expected = {2: 1.25, 1: 0.875, 3: 0.75, 4: 0.625, 5: 0.125}
    assert scores(model, [1, 2]) == pytest.approx(expected)
    # Discovery: the prefix's own items are not recommended.
    no_reminders = VSKNNModel(VSKNNConfig(remind=False)).fit(past_sessions())
    assert scores(no_reminders, [1, 2]) == pytest.approx({3: 0.75, 4: 0.625, 5: 0.125})


def test_vsknn_neighbours_sampling_and_idf_by_hand() -> None:
    # k = 2: the two most similar, A (0.75) and B (0.5): 1 -> 0.75, 2 -> 1.25, 3 -> 0.75, 4 -> 0.5.
    top_two = VSKNNModel(VSKNNConfig(k=2)).fit(past_sessions())
    assert scores(top_two, [1, 2]) == pytest.approx({2: 1.25, 1: 0.75, 3: 0.75, 4: 0.5})
    # sample_size = 2: only the two most recent candidates, B (day 2) and C (day 3), are compared.
    recent_two = VSKNNModel(VSKNNConfig(sample_size=2)).fit(past_sessions())
    assert scores(recent_two, [1, 2]) == pytest.approx({4: 0.625, 2: 0.5, 1: 0.125, 5: 0.125})
    # idf = log(4 sessions / events of the item): item 3 has 1 event, item 4 has 2.
    # With idf_weighting 1: 3 -> 0.75 × (1 + log 4); 4 -> 0.5 × (1 + log 2) + 0.125 × (1 + log 2).
    idf = VSKNNModel(VSKNNConfig(idf_weighting=1.0)).fit(past_sessions())
    found = scores(idf, [1, 2])
    assert found[3] == pytest.approx(0.75 * (1 + math.log(4)))
    assert found[4] == pytest.approx(0.625 * (1 + math.log(2)))


def test_vsknn_positions_count_repeats_and_skip_unknown_items() -> None:
    # [2, 1, 2]: length 3, item 2's latest position is 3 (weight 1), item 1's is 2 (weight 2/3).
    #   A: (1 + 2/3) / 2 = 5/6, step 1    B: 1/2, step 1    C: (2/3) / 2 = 1/3, step 2 -> 1/6
    # 3 -> 5/6; 4 -> 1/2 + 1/6 = 2/3; 5 -> 1/6.
    model = VSKNNModel(VSKNNConfig(remind=False)).fit(past_sessions())
    assert scores(model, [2, 1, 2]) == pytest.approx({3: 5 / 6, 4: 2 / 3, 5: 1 / 6})
    # An item the model never saw (99) is dropped before positions are counted.
    assert scores(model, [99, 1, 2]) == pytest.approx(scores(model, [1, 2]))
    # A prefix of unknown items only gets nothing (the caller falls back).
    assert scores(model, [98, 99]) == {}


def test_stan_scores_by_hand() -> None:
    # lambda_spw = 1: weights 1 -> e^-1 (one event before the last), 2 -> 1; norm = sqrt(e^-2 + 1).
    # Cosine with the neighbour's binary vector (|A| = 3, |B| = 2, |C| = 3):
    #   A: (e^-1 + 1) / (norm √3)    B: 1 / (norm √2)    C: e^-1 / (norm √3)
    # lambda_snh = 1 day, asked on day 5: A, B, C ended on days 1, 2, 3 -> × e^-4, e^-3, e^-2.
    # lambda_inh = 1: p* = last position in the neighbour of a prefix item (A: 2, B: 1, C: 1);
    # an item at position p gets × e^-|p - p*|: 3 in A, 4 in B, 4 in C -> e^-1; 5 in C -> e^-2.
    config = STANConfig(remind=False, lambda_spw=1.0, lambda_snh=1.0, lambda_inh=1.0)
    model = STANModel(config).fit(past_sessions())
    e = math.e
    norm = math.sqrt(e**-2 + 1)
    sim_a = (e**-1 + 1) / (norm * math.sqrt(3)) * e**-4
    sim_b = 1 / (norm * math.sqrt(2)) * e**-3
    sim_c = e**-1 / (norm * math.sqrt(3)) * e**-2
    expected = {3: sim_a * e**-1, 4: (sim_b + sim_c) * e**-1, 5: sim_c * e**-2}
    # The neighbours' ends are a few minutes before midnight: allow for that in the time decay.
    assert scores(model, [1, 2]) == pytest.approx(expected, rel=1e-2)


def test_unavailable_items_are_never_recommended() -> None:
    data = past_sessions()
    data.items.loc[3, "available"] = False
    model = VSKNNModel(VSKNNConfig(remind=False)).fit(data)
    assert scores(model, [1, 2]) == pytest.approx({4: 0.625, 5: 0.125})


def reference_vsknn(
    sessions: dict[int, list[int]], ends: dict[int, int], prefix: list[int], k: int, sample_size: int
) -> dict[int, float]:
    """session-rec's ``VMContextKNN.predict_next`` (div / div, remind) written as its loops."""
    relevant = {s for s, items in sessions.items() if set(items) & set(prefix)}
    sample = sorted(relevant, key=lambda s: ends[s], reverse=True)[:sample_size]
    weight = {item: (i + 1) / len(prefix) for i, item in enumerate(prefix)}
    neighbours = []
    for s in sample:
        shared = set(prefix) & set(sessions[s])
        neighbours.append((s, sum(weight[i] for i in shared) / len(weight)))
    neighbours = sorted(neighbours, key=lambda pair: (pair[1], ends[pair[0]]), reverse=True)[:k]
    result: dict[int, float] = {}
    for s, similarity in neighbours:
        step = next(n for n, item in enumerate(reversed(prefix), start=1) if item in sessions[s])
        for item in set(sessions[s]):
            result[item] = result.get(item, 0.0) + similarity / step
    return result


def test_vsknn_matches_the_reference_loops_on_random_sessions() -> None:
    rng = np.random.default_rng(7)
    rows = []
    for session in range(400):
        items = rng.integers(0, 40, rng.integers(2, 7))
        for offset, item in enumerate(items):
            rows.append(
                (
                    session,
                    int(item),
                    "view",
                    1.0,
                    T0 + session * pd.Timedelta(hours=1) + offset * pd.Timedelta(seconds=1),
                    0,
                )
            )
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "event", "weight", "datetime", "session_index"])
    data = InteractionData.build(frame, pd.DataFrame({"item_id": np.arange(40), "available": True}))
    model = VSKNNModel(VSKNNConfig(k=20, sample_size=50)).fit(data)
    grouped = frame.groupby("user_id")["item_id"].agg(list)
    sessions = {s: items for s, items in grouped.items() if len(set(items)) >= 2}
    ends = {s: s for s in sessions}
    prefixes = [list(rng.integers(0, 40, rng.integers(1, 6))) for _ in range(30)]
    events = pd.DataFrame(
        [
            (q, int(item), T0 + 1000 * DAY + n * pd.Timedelta(seconds=1))
            for q, p in enumerate(prefixes)
            for n, item in enumerate(p)
        ],
        columns=["query", "item_id", "datetime"],
    )
    found = model.recommend_sessions(SessionQueries.from_frame(events, "query"), k=100)
    for query, prefix in enumerate(prefixes):
        expected = reference_vsknn(sessions, ends, [int(i) for i in prefix], k=20, sample_size=50)
        ours = found[found["session_id"] == query]
        assert dict(zip(ours["item_id"].tolist(), ours["score"].tolist(), strict=True)) == pytest.approx(
            expected
        )


def test_weightings_follow_the_reference() -> None:
    position, length = np.array([1.0, 2.0, 4.0]), np.array([4.0, 4.0, 4.0])
    assert position_weights("div", position, length) == pytest.approx([0.25, 0.5, 1.0])
    assert position_weights("quadratic", position, length) == pytest.approx([0.0625, 0.25, 1.0])
    assert position_weights("log", position, length) == pytest.approx(1 / np.log10([4.7, 3.7, 1.7]))
    step = np.array([1.0, 2.0, 4.0])
    assert step_decay("div", step) == pytest.approx([1.0, 0.5, 0.25])
    assert step_decay("quadratic", step) == pytest.approx([1.0, 0.25, 0.0625])
    assert step_decay("same", step) == pytest.approx([1.0, 1.0, 1.0])


@pytest.mark.parametrize(
    "model",
    [
        VSKNNModel(VSKNNConfig(k=20, sample_size=30)),
        VSKNNModel(VSKNNConfig(remind=False, idf_weighting=1.0)),
        STANModel(STANConfig(k=20, sample_size=30)),
        CategoryPopularModel(CategoryPopularConfig(top_items=5)),
    ],
    ids=["vsknn", "vsknn_discovery_idf", "stan", "category_popular"],
)
def test_one_prefix_alone_scores_exactly_as_in_a_batch(
    model: SessionRecommender, window: InteractionData
) -> None:
    """The service scores one prefix per request (``top_items`` of a single query); the benchmark
    and the tuner score batches: the same items with bit-identical scores."""
    model.fit(window)
    rng = np.random.default_rng(3)
    known = window.item_codes.ids
    # Prefixes with repeats, unknown items (ids below the catalogue's) and an empty one.
    prefixes = [list(rng.choice(np.append(known, [1, 2]), rng.integers(0, 12))) for _ in range(60)]
    events = pd.DataFrame(
        [
            (q, int(item), T0 + 100 * DAY + n * pd.Timedelta(seconds=1))
            for q, p in enumerate(prefixes)
            for n, item in enumerate(p)
        ],
        columns=["query", "item_id", "datetime"],
    )
    batch = SessionQueries.from_frame(events, "query")
    rows, items, scores = model.top_items(batch, 25)
    assert len(np.unique(rows)) > 40  # most prefixes are scored
    for row, key in enumerate(batch.keys.tolist()):
        single = SessionQueries.single(prefixes[key][::-1], int(batch.timestamps[row]))
        alone_rows, alone_items, alone_scores = model.top_items(single, 25)
        assert (alone_rows == 0).all()
        np.testing.assert_array_equal(alone_items, items[rows == row])
        np.testing.assert_array_equal(alone_scores, scores[rows == row])
    assert model.top_items(SessionQueries.single([], 0), 25)[1].size == 0
