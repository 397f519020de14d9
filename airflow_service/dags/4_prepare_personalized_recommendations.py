"""Daily at 22:45 UTC: publish ALS recommendations for every active user.

- **check_als_model**: fails at once (no retries) if DAG ``2_train_als_model`` has not
  promoted an ALS model yet.
- **prepare_personalized_recommendations**: recommends with the newest promoted ALS model and
  publishes ``personalized_recommendations``.
"""

from recsys.pipeline.airflow import pipeline_dag

dag = pipeline_dag(
    "4_prepare_personalized_recommendations",
    schedule="45 22 * * *",
    steps=["check_als_model", "prepare_personalized_recommendations"],
    tags=["recommendations", "als"],
    doc_md=__doc__,
)
