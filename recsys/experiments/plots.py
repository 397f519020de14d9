"""The few chart shapes the experiment helpers draw: bars, grouped bars, log-log points, lines, histograms.

Every function builds a standalone :class:`matplotlib.figure.Figure` (no ``pyplot`` state), so
figures can be created in tests, logged to MLflow and shown in a notebook alike; nothing is
shown or kept open as a side effect.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

FIGSIZE = (7.0, 4.0)


def new_figure(title: str, xlabel: str = "", ylabel: str = "") -> tuple[Figure, Axes]:
    """A figure with one titled, labelled axes.

    Parameters
    ----------
    title : str
        Axes title.
    xlabel, ylabel : str
        Axis labels.

    Returns
    -------
    tuple of Figure and Axes
        The figure and its only axes.
    """
    figure = Figure(figsize=FIGSIZE, layout="constrained")
    axes = figure.add_subplot()
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    return figure, axes


def bar_chart(
    values: pd.Series,
    title: str,
    ylabel: str = "",
    log: bool = False,
    labels: Sequence[str] | None = None,
) -> Figure:
    """Vertical bars, one per index entry, optionally annotated.

    Parameters
    ----------
    values : Series
        Bar heights; the index gives the bar names.
    title, ylabel : str
        Title and y-axis label.
    log : bool
        Logarithmic y axis.
    labels : sequence of str, optional
        Text written above each bar (same order as ``values``).

    Returns
    -------
    Figure
    """
    figure, axes = new_figure(title, str(values.index.name or ""), ylabel)
    bars = axes.bar([str(name) for name in values.index], values.to_numpy(dtype=float))
    if labels is not None:
        axes.bar_label(bars, labels=list(labels), padding=2)
    if log:
        axes.set_yscale("log")
    axes.margins(y=0.15)  # room for the labels above the highest bar
    return figure


def grouped_bars(frame: pd.DataFrame, title: str, ylabel: str = "") -> Figure:
    """Groups of bars: one group per row of ``frame``, one bar per column (with a legend).

    Parameters
    ----------
    frame : DataFrame
        Index = groups on the x axis, columns = bars within a group.
    title, ylabel : str
        Title and y-axis label.

    Returns
    -------
    Figure
    """
    figure, axes = new_figure(title, str(frame.index.name or ""), ylabel)
    positions = np.arange(len(frame))
    width = 0.8 / max(len(frame.columns), 1)
    for number, column in enumerate(frame.columns):
        offset = (number - (len(frame.columns) - 1) / 2) * width
        axes.bar(positions + offset, frame[column].to_numpy(dtype=float), width, label=str(column))
    axes.set_xticks(positions, [str(name) for name in frame.index])
    axes.legend(fontsize="small")
    return figure


def loglog_points(series: Mapping[str, pd.Series], title: str, xlabel: str, ylabel: str) -> Figure:
    """Points ``(index, value)`` of each series on log-log axes (non-positive values are left out).

    Parameters
    ----------
    series : mapping of str to Series
        Legend label → series whose index is x and values are y.
    title, xlabel, ylabel : str
        Title and axis labels.

    Returns
    -------
    Figure
    """
    figure, axes = new_figure(title, xlabel, ylabel)
    for label, values in series.items():
        x = values.index.to_numpy(dtype=float)
        y = values.to_numpy(dtype=float)
        keep = (x > 0) & (y > 0)
        axes.scatter(x[keep], y[keep], s=10, alpha=0.7, label=label)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.legend(fontsize="small")
    return figure


def line_chart(frame: pd.DataFrame, title: str, ylabel: str = "", log: bool = False) -> Figure:
    """One line per column of ``frame`` against its index (with markers and a legend).

    Parameters
    ----------
    frame : DataFrame
        Index = x values (numbers or dates), columns = lines.
    title, ylabel : str
        Title and y-axis label.
    log : bool
        Logarithmic y axis.

    Returns
    -------
    Figure
    """
    figure, axes = new_figure(title, str(frame.index.name or ""), ylabel)
    for column in frame.columns:
        axes.plot(frame.index, frame[column].to_numpy(dtype=float), marker=".", label=str(column))
    if log:
        axes.set_yscale("log")
    axes.legend(fontsize="small")
    figure.autofmt_xdate()
    return figure


def log_histogram(values: pd.Series, title: str, xlabel: str, bins: int = 50) -> Figure:
    """Histogram of the positive values on a logarithmic x axis with log-spaced bins.

    Parameters
    ----------
    values : Series
        The values; zero, negative and missing ones are left out (count them separately).
    title, xlabel : str
        Title and x-axis label.
    bins : int
        Number of bins.

    Returns
    -------
    Figure
    """
    figure, axes = new_figure(title, xlabel, "count")
    positive = values.to_numpy(dtype=float, na_value=np.nan)
    positive = positive[np.isfinite(positive) & (positive > 0)]
    if positive.size:
        low, high = positive.min(), positive.max()
        edges = np.geomspace(low, high if high > low else low * 10, bins + 1)
        axes.hist(positive, bins=edges.tolist())
    axes.set_xscale("log")
    return figure
