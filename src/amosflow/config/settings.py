"""Settings read from the environment (``AMOS_*``), one class per area, every field described."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    return Path.home() / ".amos"


class EngineSettings(BaseSettings):
    """Where state lives and which Temporal the engine talks to."""

    model_config = SettingsConfigDict(env_prefix="AMOS_", extra="ignore")

    home: Path = Field(
        default_factory=_default_home,
        description="Data directory: embedded Temporal database, artifacts, logs.",
    )
    temporal_address: str | None = Field(
        default=None,
        description="host:port of an existing Temporal frontend; unset starts the embedded one.",
    )
    temporal_namespace: str = Field(default="default", description="Temporal namespace.")
    task_queue: str = Field(default="amos-flows", description="Task queue of the interpreter.")
    inline_limit: int = Field(
        default=64 * 1024,
        description="Values larger than this many bytes travel as artifact references.",
    )
    egress_allow: str = Field(
        default="",
        description=(
            "Comma-separated egress allow entries (host, *.suffix, IP, CIDR, optional :port)"
            " this worker adds to every run's egress policy (decision 0024)."
        ),
    )

    @property
    def artifacts_dir(self) -> Path:
        """Directory of the content-addressed artifact store."""
        return self.home / "artifacts"


class StoreSettings(BaseSettings):
    """The relational store of the control plane."""

    model_config = SettingsConfigDict(env_prefix="AMOS_", extra="ignore")

    home: Path = Field(default_factory=_default_home, description="Data directory.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL (postgresql+psycopg://…); unset uses SQLite in the home.",
    )

    @property
    def url(self) -> str:
        """The URL actually used."""
        return self.database_url or f"sqlite:///{self.home / 'amos.db'}"


class CatalogSettings(BaseSettings):
    """The Git repository that holds flows, config bundles and triggers."""

    model_config = SettingsConfigDict(env_prefix="AMOS_", extra="ignore")

    home: Path = Field(default_factory=_default_home, description="Data directory.")
    catalog_path: Path | None = Field(
        default=None, description="Working copy of the catalog; unset uses <home>/catalog."
    )

    @property
    def path(self) -> Path:
        """The catalog directory actually used."""
        return self.catalog_path or self.home / "catalog"


class BusSettings(BaseSettings):
    """The NATS JetStream event bus."""

    model_config = SettingsConfigDict(env_prefix="AMOS_", extra="ignore")

    home: Path = Field(default_factory=_default_home, description="Data directory.")
    nats_url: str | None = Field(
        default=None, description="nats://host:port of an existing server; unset embeds one."
    )
    stream: str = Field(default="AMOS_EVENTS", description="JetStream stream of all events.")


class ApiSettings(BaseSettings):
    """The HTTP API of the control plane."""

    model_config = SettingsConfigDict(env_prefix="AMOS_API_", extra="ignore")

    host: str = Field(default="127.0.0.1", description="Address the API listens on.")
    port: int = Field(default=8686, description="Port the API listens on.")
