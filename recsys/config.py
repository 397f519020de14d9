"""One configuration object for the whole project, read from the environment and ``.env``.

Every variable is prefixed with ``RECSYS_`` and documented in ``.env.example``. The defaults
describe the *embedded* setup: a SQLite file and a local folder object store under
``RECSYS_DATA_DIR``, so that the pipeline runs on a laptop without any server.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class EventWeights(BaseModel):
    """Confidence given to each event type when it becomes an interaction.

    Set with ``RECSYS_EVENT_WEIGHTS__VIEW`` / ``__ADDTOCART`` / ``__TRANSACTION``.
    """

    view: float = Field(1.0, gt=0)
    addtocart: float = Field(4.0, gt=0)
    transaction: float = Field(8.0, gt=0)

    def as_dict(self) -> dict[str, float]:
        """Weights keyed by the raw ``event`` value."""
        return {"view": self.view, "addtocart": self.addtocart, "transaction": self.transaction}


class Settings(BaseSettings):
    """Project settings; see ``.env.example`` for every variable and its meaning."""

    model_config = SettingsConfigDict(
        env_prefix="RECSYS_",
        env_file=".env",
        env_file_encoding="utf-8",
        env_nested_delimiter="__",
        extra="ignore",
    )

    # Where the embedded defaults live (SQLite database, local object store, raw files).
    data_dir: Path = Path("data")
    # Folder with the RetailRocket files; defaults to ``<data_dir>/raw``.
    raw_data_dir: Path | None = None

    # SQLAlchemy URL; defaults to ``sqlite:///<data_dir>/recsys.sqlite3``.
    database_url: str | None = None
    # ``s3://bucket/prefix`` or a local folder; defaults to ``<data_dir>/object_store``.
    object_store_url: str | None = None
    s3_endpoint_url: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_region: str = "us-east-1"

    # The pipeline logs to MLflow only when this is set; the notebook falls back to a SQLite
    # store under data_dir (see experiments_uri).
    mlflow_tracking_uri: str | None = None
    mlflow_experiment: str = "retailrocket_recsys"

    telegram_token: SecretStr | None = None
    telegram_chat_id: str | None = None
    telegram_api_base_url: str = "https://api.telegram.org"

    service_host: str = "0.0.0.0"
    service_port: int = Field(8081, ge=1, le=65535)
    api_key: SecretStr | None = None
    cors_allowed_origins: list[str] = Field(default_factory=list)

    # Rows published per key: the default list, per user, per item. Each is also the largest k the
    # service answers from that table (recsys.publishing.catalogue).
    n_default_recommendations: int = Field(100, ge=1)
    n_personalized_recommendations: int = Field(30, ge=1)
    n_similar_items: int = Field(20, ge=1)

    # Pipeline windows, in days before the run's moment (the DAG's data interval end).
    # Training uses this many days of interactions (None = everything before the moment).
    training_window_days: int | None = Field(None, ge=1)
    # Users with an event in this many days get published lists; other users with history are
    # answered from their published history by the service (user_histories).
    active_user_days: int = Field(30, ge=1)
    # The last days of the training window that validate a retrained model (quality gate).
    validation_days: int = Field(7, ge=1)
    # Strength λ in [0, 1] of the popularity-penalised re-ranking of ranked_recommendations;
    # unset = chosen on the validation days when a ranker is promoted (stage 7).
    rerank_strength: float | None = Field(None, ge=0.0, le=1.0)
    # Depth of the ranker's list per user that the re-ranking re-orders.
    rerank_pool: int = Field(100, ge=1)
    # Validation sessions replayed (at most) to choose the session blend's weights in stage 6.
    session_validation_sessions: int = Field(3000, ge=1)
    # ... and of their prefixes, at most this many (a seeded sample: long sessions have many).
    session_validation_prefixes: int = Field(3000, ge=1)
    # Hyper-parameter search of the training stages on the window's own validation days
    # (recsys.evaluation.tuning): no trial starts after this many seconds, at most this many
    # trials (the shipped config is the first); 0 switches tuning off.
    tuning_seconds_als: float = Field(300.0, ge=0)
    tuning_seconds_ranker: float = Field(600.0, ge=0)
    tuning_max_trials: int = Field(30, ge=0)
    # Seed of the search's sampler: the same data, seed and trial cap give the same trials.
    tuning_seed: int = 42
    # Complete versions of each published table kept for slow readers.
    keep_table_versions: int = Field(3, ge=1)

    event_weights: EventWeights = Field(default_factory=EventWeights)
    # A visitor's session ends after this many minutes without an event.
    session_gap_minutes: int = Field(30, ge=1)

    @model_validator(mode="after")
    def _derive_embedded_defaults(self) -> Settings:
        if self.raw_data_dir is None:
            self.raw_data_dir = self.data_dir / "raw"
        if self.database_url is None:
            self.database_url = f"sqlite:///{self.data_dir / 'recsys.sqlite3'}"
        if self.object_store_url is None:
            self.object_store_url = str(self.data_dir / "object_store")
        return self

    # The validator above fills these; the properties give callers non-optional types.
    @property
    def raw_dir(self) -> Path:
        """Folder with the raw RetailRocket files."""
        assert self.raw_data_dir is not None
        return self.raw_data_dir

    @property
    def db_url(self) -> str:
        """SQLAlchemy URL of the project database."""
        assert self.database_url is not None
        return self.database_url

    @property
    def experiments_uri(self) -> str:
        """Where experiments are logged: the configured tracking URI or a SQLite store under data_dir."""
        return self.mlflow_tracking_uri or f"sqlite:///{(self.data_dir / 'mlflow.sqlite3').resolve()}"

    @property
    def store_url(self) -> str:
        """URL of the object store (``s3://bucket/prefix`` or a folder)."""
        assert self.object_store_url is not None
        return self.object_store_url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
