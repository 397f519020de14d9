"""Monthly on the 25th at 23:45 UTC: retrain the two-stage ranker and publish ranked recommendations.

- **train_ranking_model_and_rank_recommendations**: trains the candidate generators and the
  CatBoost ranker behind the quality gate (promoted to ``models/two_stage/current.json`` only
  if at least as good as the ranker in service), then ranks the candidates of every active
  user with the promoted ranker and publishes ``ranked_recommendations``.
"""

from recsys.pipeline.airflow import pipeline_dag

dag = pipeline_dag(
    "7_train_ranking_model_and_rank_recommendations",
    schedule="45 23 25 * *",
    steps=["train_ranking_model_and_rank_recommendations"],
    tags=["model", "ranking", "recommendations"],
    doc_md=__doc__,
)
