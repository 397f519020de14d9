"""Monthly on the 25th at 22:15 UTC: retrain the ALS model behind the quality gate.

- **train_als_model**: fits the id encoders and ALS on the training window, compares the
  candidate with the model in service on the same validation days and promotes it
  (``models/als/current.json``) only if it is at least as good.
"""

from recsys.pipeline.airflow import pipeline_dag

dag = pipeline_dag(
    "2_train_als_model",
    schedule="15 22 25 * *",
    steps=["train_als_model"],
    tags=["model", "als"],
    doc_md=__doc__,
)
