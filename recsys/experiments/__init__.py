"""Helpers for ``research.ipynb``: data set-up, EDA of the raw tables, model experiments, MLflow logging.

The notebook is a thin shell over these modules, so everything it shows is tested code:

- :mod:`recsys.experiments.setup`: settings for the notebook and a prepared data set on demand;
- :mod:`recsys.experiments.eda`: summaries of the raw tables, each a small data frame, and their plots;
- :mod:`recsys.experiments.modelling`: fit one model on a time split and evaluate it per user segment;
- :mod:`recsys.experiments.tracking`: log a model run or a comparison of runs to MLflow;
- :mod:`recsys.experiments.plots`: the few chart shapes everything above draws with.
"""
