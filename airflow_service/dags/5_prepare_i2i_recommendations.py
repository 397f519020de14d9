"""Daily at 23:00 UTC: publish item-to-item recommendations for every active user.

- **prepare_i2i_recommendations**: neighbours (co-visitation) of each user's recent items,
  published as ``i2i_recommendations``.
"""

from recsys.pipeline.airflow import pipeline_dag

dag = pipeline_dag(
    "5_prepare_i2i_recommendations",
    schedule="0 23 * * *",
    steps=["prepare_i2i_recommendations"],
    tags=["recommendations", "i2i"],
    doc_md=__doc__,
)
