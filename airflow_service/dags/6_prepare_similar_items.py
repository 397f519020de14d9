"""Daily at 23:00 UTC: publish the similar items of every item.

- **prepare_similar_items**: co-visited items, completed with ALS neighbours when an ALS model
  has been promoted, published as ``similar_items``.
"""

from recsys.pipeline.airflow import pipeline_dag

dag = pipeline_dag(
    "6_prepare_similar_items",
    schedule="0 23 * * *",
    steps=["prepare_similar_items"],
    tags=["recommendations", "similar_items"],
    doc_md=__doc__,
)
