"""Settings of the recommendation service: the project settings plus a few service knobs.

They are read like every project setting, from ``RECSYS_*`` variables and ``.env``; the
service-only ones are documented in ``fast_api_service/.env.example``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from recsys.config import Settings


class ServiceSettings(Settings):
    """Project settings extended with what only the service needs."""

    # How often the service looks for a newer published version of its tables.
    reload_interval_seconds: float = Field(60.0, gt=0)
    # Latest online events kept per user (the i2i part uses the distinct items among them).
    online_events_limit: int = Field(100, ge=1, le=10_000)
    # Latest distinct items bought online kept per user (filtered out of their lists).
    online_purchases_limit: int = Field(100, ge=1, le=10_000)
    # How often each worker reads the online events other workers recorded (their delay to show).
    online_events_refresh_seconds: float = Field(0.5, gt=0)
    # After a failed database call, the background refreshes wait this long before trying again.
    database_retry_seconds: float = Field(5.0, ge=0)
    # Bound on connecting to PostgreSQL, so an unreachable server degrades requests quickly.
    database_connect_timeout_seconds: int = Field(3, ge=1)
    # The storefront page's own event route (no API key; see recsys.service.storefront for the
    # trade-off): off unless enabled, and at most this many events per visitor and minute.
    browser_events_enabled: bool = False
    browser_events_per_minute: int = Field(30, ge=1)
    # Largest request body accepted (413 beyond): an event is about 100 bytes, and a big body
    # would be read, parsed and validated whole before being refused.
    max_request_body_bytes: int = Field(16_384, ge=1)


def load_service_settings(project_root: Path) -> ServiceSettings:
    """The settings as the service reads them: the environment, then ``<project_root>/.env``.

    A relative ``data_dir`` is taken from the project root, so that the service started from
    ``fast_api_service/`` finds the same embedded database as the ``recsys`` CLI run from the root.
    """
    env_file = project_root / ".env"
    settings = ServiceSettings(_env_file=env_file)
    if settings.data_dir.is_absolute():
        return settings
    return ServiceSettings(_env_file=env_file, data_dir=project_root / settings.data_dir)
