"""Where the runner endpoint listens and how long leases and heartbeats last."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    return Path.home() / ".amos"


class RunnerSettings(BaseSettings):
    """The control plane's side of the fleet, from ``AMOS_RUNNER_*`` variables."""

    model_config = SettingsConfigDict(
        env_prefix="AMOS_RUNNER_", extra="ignore", populate_by_name=True
    )

    home: Path = Field(
        default_factory=_default_home, validation_alias="AMOS_HOME", description="Data directory."
    )
    host: str = Field(default="127.0.0.1", description="Address of the mTLS runner endpoint.")
    port: int = Field(default=8687, ge=0, le=65535, description="Its port; 0 turns it off.")
    lease_seconds: float = Field(default=30.0, gt=0, description="A lease's time to live.")
    heartbeat_ttl_seconds: float = Field(
        default=30.0, gt=0, description="A runner without a heartbeat this long is not eligible."
    )
    dispatch_wait_seconds: float = Field(
        default=120.0,
        gt=0,
        description=(
            "How long a runner step waits for an enrolled runner that is not sending "
            "heartbeats (restarting) before it fails; a step no enrolled runner can take "
            "fails at once."
        ),
    )
    long_poll_seconds: float = Field(default=20.0, gt=0, le=60)
    server_names: list[str] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1"],
        description="DNS names and addresses in the endpoint's server certificate.",
    )

    @property
    def directory(self) -> Path:
        """The CA and the endpoint's certificate."""
        return self.home / "runners"

    @property
    def lease(self) -> timedelta:
        """``lease_seconds`` as a timedelta."""
        return timedelta(seconds=self.lease_seconds)

    @property
    def dispatch_wait(self) -> timedelta:
        """``dispatch_wait_seconds`` as a timedelta."""
        return timedelta(seconds=self.dispatch_wait_seconds)

    @property
    def heartbeat_ttl(self) -> timedelta:
        """``heartbeat_ttl_seconds`` as a timedelta."""
        return timedelta(seconds=self.heartbeat_ttl_seconds)
