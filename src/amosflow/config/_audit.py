"""Where the audit trail keeps its keys and checkpoints, and whether it ships to a SIEM."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


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
    audit_siem_url: str | None = Field(
        default=None,
        description="Syslog receiver to ship records to, tcp://host:port or udp://host:port; "
        "unset: nothing is ever sent.",
    )
    audit_siem_format: Literal["cef", "jsonl"] = Field(
        default="cef",
        description="Message body: ArcSight CEF, or the canonical JSON line of the record.",
    )
    audit_siem_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Host names or addresses records may be shipped to (comma separated or a "
        "JSON list); a SIEM URL whose host is not listed is refused.",
    )
    audit_siem_cursor: Path | None = Field(
        default=None,
        description="File holding the seq of the last record shipped; unset: <home>/siem.cursor "
        "(<audit_dir>/siem.cursor while an older install's file is there).",
    )

    @field_validator("audit_siem_allow", mode="before")
    @classmethod
    def _split_allow(cls, value: Any) -> Any:
        """Accept ``a,b`` as well as ``["a", "b"]`` from the environment."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [item.strip() for item in text.split(",") if item.strip()]
        return value

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

    @property
    def siem_cursor_path(self) -> Path:
        """The SIEM forwarder's cursor file actually used.

        Not in the audit directory: under a root node the shipper runs as the service user,
        which may read that directory but not write it (ADR 0049).
        """
        if self.audit_siem_cursor is not None:
            return self.audit_siem_cursor
        legacy = self.directory / "siem.cursor"
        return legacy if legacy.exists() else self.home / "siem.cursor"
