"""How accounts, sessions and the first-admin setup behave, and where their key files live."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    return Path.home() / ".amos"


class IdentitySettings(BaseSettings):
    """Session lifetime, lockout, password policy and key paths, from ``AMOS_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="AMOS_", extra="ignore")

    home: Path = Field(default_factory=_default_home, description="Data directory.")
    session_ttl_seconds: int = Field(
        default=900,
        ge=30,
        description="Lifetime of a session token; short, because it cannot be revoked one by one.",
    )
    lockout_threshold: int = Field(
        default=5, ge=1, description="Failed sign-ins in a row that lock an account."
    )
    lockout_seconds: int = Field(
        default=900, ge=1, description="How long a locked account refuses every sign-in."
    )
    login_rate_per_minute: int = Field(
        default=10, ge=1, description="Failed authentication attempts allowed per address."
    )
    api_token_max_days: int = Field(
        default=365, ge=1, description="Longest lifetime of a personal API token."
    )
    min_password_length: int = Field(
        default=12, ge=8, description="Shortest password a local account may have."
    )

    @property
    def key_dir(self) -> Path:
        """Directory (0700) of the identity key files."""
        return self.home / "identity"

    @property
    def session_key_path(self) -> Path:
        """The Ed25519 private key (0600) that signs session tokens."""
        return self.key_dir / "session.key"

    @property
    def setup_token_path(self) -> Path:
        """The SHA-256 (0600) of the pending one-time setup token, while there is one."""
        return self.key_dir / "setup.token"
