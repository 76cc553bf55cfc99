"""Where the audit trail keeps its keys and its checkpoints outside the database."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    return Path.home() / ".amos"


class AuditSettings(BaseSettings):
    """Audit checkpoint keys, sink and cadence, from ``AMOS_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="AMOS_", extra="ignore")

    home: Path = Field(default_factory=_default_home, description="Data directory.")
    audit_dir: Path | None = Field(
        default=None,
        description="Directory of checkpoint.key (0600) and checkpoint.pub; unset: <home>/audit.",
    )
    audit_sink: Path | None = Field(
        default=None,
        description="JSON Lines file of signed checkpoints; unset: <audit_dir>/checkpoints.jsonl. "
        "Point it at storage the database's writers cannot change.",
    )
    audit_checkpoint_records: int = Field(
        default=1000, ge=1, description="Checkpoint after this many new records."
    )
    audit_checkpoint_seconds: float = Field(
        default=300.0, gt=0, description="Checkpoint new records at least this often."
    )

    @property
    def directory(self) -> Path:
        """The key directory actually used."""
        return self.audit_dir or self.home / "audit"

    @property
    def key_path(self) -> Path:
        """The Ed25519 private key that signs checkpoints."""
        return self.directory / "checkpoint.key"

    @property
    def public_key_path(self) -> Path:
        """The public half, which `amos audit verify` reads."""
        return self.directory / "checkpoint.pub"

    @property
    def fingerprint_key_path(self) -> Path:
        """The HMAC key for fingerprints of secret-derived values."""
        return self.directory / "fingerprint.key"

    @property
    def sink_path(self) -> Path:
        """The checkpoint sink actually used."""
        return self.audit_sink or self.directory / "checkpoints.jsonl"
