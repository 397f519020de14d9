"""Bootstrap confidence intervals for ratios of mean per-user metrics between models.

The per-user metrics of several models on the same test users are resampled together
(a paired bootstrap), by cluster: every resample draws clusters (users) with replacement
and keeps all rows of a drawn cluster, so a user who appears in several folds is drawn
with all their folds at once.
"""

from __future__ import annotations

import warnings

import numpy as np
import numpy.typing as npt
import pandas as pd


def _ratio(
    numerator: npt.NDArray[np.float64], denominator: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(numerator / denominator, dtype=np.float64)


def bootstrap_ratios(
    values: pd.DataFrame,
    reference: str,
    clusters: npt.ArrayLike | None = None,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Mean of ``reference`` over the mean of every other column, with percentile bootstrap CIs.

    Parameters
    ----------
    values : DataFrame
        One row per (user, fold) and one column per model: the models' metric for that row.
    reference : str
        The column in the numerator (the model being compared).
    clusters : array-like, optional
        Resampling unit of every row (e.g. the user id); by default every row is its own.
    n_resamples : int
        Number of bootstrap resamples.
    level : float
        Coverage of the percentile interval.
    seed : int
        Seed of the resampling.

    Returns
    -------
    DataFrame
        Index: the other columns. Columns: ``ratio`` (on the full sample), ``low`` and
        ``high`` (the percentile interval, without interpolation between resamples). A zero
        denominator gives an infinite ratio; resamples with 0/0 are left out of the interval.

    Raises
    ------
    ValueError
        If ``values`` is empty, ``reference`` is not one of its columns or no other column exists.
    """
    if values.empty:
        raise ValueError("no rows to resample")
    if reference not in values.columns or values.shape[1] < 2:
        raise ValueError(f"need {reference!r} and at least one other column, got {list(values.columns)}")
    others = [c for c in values.columns if c != reference]
    ordered = values[[reference, *others]].to_numpy(dtype=np.float64)
    codes, uniques = pd.factorize(pd.Series(np.arange(len(values)) if clusters is None else clusters))
    n_clusters = len(uniques)
    # Sums and sizes per cluster, so a resample is a (resamples × clusters) count matrix.
    sums = np.zeros((n_clusters, ordered.shape[1]))
    np.add.at(sums, codes, ordered)
    sizes = np.bincount(codes, minlength=n_clusters).astype(np.float64)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n_clusters, np.full(n_clusters, 1.0 / n_clusters), size=n_resamples)
    means = (counts @ sums) / (counts @ sizes)[:, None]
    full = sums.sum(axis=0) / sizes.sum()

    point = _ratio(full[0], full[1:])
    resampled = _ratio(means[:, [0]], means[:, 1:])
    tail = (1.0 - level) / 2.0 * 100.0
    with warnings.catch_warnings():  # a column of 0/0 only has no interval
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanpercentile(resampled, [tail, 100.0 - tail], axis=0, method="inverted_cdf")
    return pd.DataFrame({"ratio": point, "low": low, "high": high}, index=pd.Index(others))
