"""Settings of the engine, read from the environment (``AMOS_*``) with described defaults."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class EngineSettings(BaseSettings):
    """Where state lives and which Temporal the engine talks to."""

    model_config = SettingsConfigDict(env_prefix="AMOS_", extra="ignore")

    home: Path = Field(
        default_factory=lambda: Path.home() / ".amos",
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

    @property
    def artifacts_dir(self) -> Path:
        """Directory of the content-addressed artifact store."""
        return self.home / "artifacts"
