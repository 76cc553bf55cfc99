"""The store's tables as typed SQLAlchemy models; migrations must match them exactly."""

from __future__ import annotations

from datetime import datetime  # noqa: TC003 - Mapped[] annotations are read at run time
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from amosflow.store._types import JSONValue, UTCDateTime, utcnow

RUN_STATUSES = ("pending", "running", "completed", "failed", "cancelled", "timed_out")
RUN_TRIGGERS = ("manual", "schedule", "webhook", "deferred", "rerun", "cli")

# Deterministic constraint names keep migrations identical on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    """Declarative base whose metadata is the target of every migration."""

    metadata = MetaData(naming_convention=NAMING)


class RunRow(Base):
    """One run as the control plane knows it (Temporal holds the history)."""

    __tablename__ = "runs"
    __table_args__ = (
        CheckConstraint(_one_of("status", RUN_STATUSES), name="status"),
        CheckConstraint(_one_of("trigger", RUN_TRIGGERS), name="trigger"),
        Index(None, "created_at", "run_id"),
        Index(None, "flow_name", "created_at"),
        Index(None, "status", "created_at"),
    )

    run_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    flow_name: Mapped[str] = mapped_column(String(200))
    flow_version: Mapped[str] = mapped_column(String(64), default="")
    flow_hash: Mapped[str] = mapped_column(String(128))
    config_hash: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    trigger: Mapped[str] = mapped_column(String(16))
    trigger_ref: Mapped[str | None] = mapped_column(String(500))
    inputs: Mapped[Any] = mapped_column(JSONValue)
    output: Mapped[Any | None] = mapped_column(JSONValue)
    error: Mapped[Any | None] = mapped_column(JSONValue)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class OutboxEntry(Base):
    """An event waiting to be published, written in the transaction of the change it announces."""

    __tablename__ = "outbox"
    __table_args__ = (Index(None, "published_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject: Mapped[str] = mapped_column(String(500))
    event: Mapped[Any] = mapped_column(JSONValue)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class WebhookDelivery(Base):
    """A webhook delivery id already accepted, kept to refuse replays."""

    __tablename__ = "webhook_deliveries"

    hook: Mapped[str] = mapped_column(String(200), primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    run_id: Mapped[str] = mapped_column(String(200))


AUDIT_OUTCOMES = ("ok", "denied", "error")


class AuditRow(Base):
    """One record of the hash-chained audit trail; ``amosflow.audit`` is its only writer."""

    __tablename__ = "audit_records"
    __table_args__ = (
        CheckConstraint(_one_of("outcome", AUDIT_OUTCOMES), name="outcome"),
        Index(None, "at"),
        Index(None, "actor", "seq"),
        Index(None, "action", "seq"),
        Index(None, "resource", "seq"),
        Index(None, "folder", "seq"),
    )

    # Assigned by the writer under its lock, never by the database: the chain must be gap-free.
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    resource: Mapped[str] = mapped_column(String(500))
    folder: Mapped[str] = mapped_column(String(200))
    outcome: Mapped[str] = mapped_column(String(8))
    details: Mapped[Any] = mapped_column(JSONValue)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditCheckpointRow(Base):
    """A signed statement that the audit chain had ``hash`` at ``seq`` (also kept outside)."""

    __tablename__ = "audit_checkpoints"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    signature: Mapped[str] = mapped_column(String(128))
    key_id: Mapped[str] = mapped_column(String(64))


class SecretRow(Base):
    """A named secret of the vault: its folder and current version, never its value."""

    __tablename__ = "secrets"
    __table_args__ = (Index(None, "folder", "name"),)

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    folder: Mapped[str] = mapped_column(String(100))
    current_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)


class SecretVersionRow(Base):
    """One version of a secret: AES-256-GCM ciphertext and its wrapped data key, only."""

    __tablename__ = "secret_versions"
    __table_args__ = (Index(None, "kek_id", "kek_version"),)

    name: Mapped[str] = mapped_column(String(200), ForeignKey("secrets.name"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    kek_id: Mapped[str] = mapped_column(String(200))
    kek_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
