"""Daily at 22:30 UTC: publish the popular available items for cold users.

- **prepare_default_recommendations**: publishes ``default_recommendations``.
"""

from recsys.pipeline.airflow import pipeline_dag

dag = pipeline_dag(
    "3_prepare_default_recommendations",
    schedule="30 22 * * *",
    steps=["prepare_default_recommendations"],
    tags=["recommendations"],
    doc_md=__doc__,
)
