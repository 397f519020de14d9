"""Daily at 22:00 UTC: load the raw files and prepare ``items`` and ``interactions``.

- **load_raw_data** (extract): the four RetailRocket files in ``RECSYS_RAW_DATA_DIR`` replace
  the raw tables ``category_tree``, ``item_properties`` and ``events`` in one transaction.
- **prepare_dataset** (transform and load): ``items`` and ``interactions`` as of the run's data
  interval end, using only events and property snapshots before it.
"""

from recsys.pipeline.airflow import pipeline_dag

dag = pipeline_dag(
    "1_prepare_dataset",
    schedule="0 22 * * *",
    steps=["load_raw_data", "prepare_dataset"],
    tags=["data"],
    doc_md=__doc__,
)
