"""Core library of the RetailRocket recommender system.

Everything with logic lives here; the notebook, the Airflow DAGs and the FastAPI service import it.
"""

__version__ = "0.1.0"
