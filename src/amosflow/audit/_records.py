"""Append records to the chain inside the caller's transaction, and fingerprint secret values."""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, cast

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import insert, select, text
from sqlalchemy.exc import SQLAlchemyError

from amosflow.audit._canonical import GENESIS, record_hash
from amosflow.errors import AuditError
from amosflow.store import AUDIT_OUTCOMES, AuditAnchorRow, AuditRow
from amosflow.store._types import utcnow

if TYPE_CHECKING:
    from sqlalchemy import Table
    from sqlalchemy.orm import Session

Outcome = Literal["ok", "denied", "error"]
#: Held until the caller's transaction ends, so one appender at a time reads the tail.
AUDIT_LOCK_KEY = 0x414D4155  # "AMAU"; differs from the migration lock
_ACTION = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
_LOCK = text("SELECT pg_advisory_xact_lock(:key)")
# Built once: a statement built per call costs more than the SQLite write itself.
_TABLE = cast("Table", AuditRow.__table__)
_TAIL = select(_TABLE.c.seq, _TABLE.c.hash).order_by(_TABLE.c.seq.desc()).limit(1)
_INSERT = insert(_TABLE)
_ANCHOR = select(AuditAnchorRow.seq, AuditAnchorRow.hash).where(AuditAnchorRow.id == 1)


class AuditRecord(BaseModel):
    """One audit record as stored; ``hash`` covers every other field, ``prev_hash`` included."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    seq: int = Field(ge=1, description="Position in the chain, from 1, without gaps.")
    at: AwareDatetime
    actor: str = Field(max_length=200, description="Who acted: user:…, token:…, service:….")
    action: str = Field(max_length=100, description="resource.verb, e.g. flows.create.")
    resource: str = Field(max_length=500, description="What was acted on, e.g. flow:invoice.")
    folder: str = Field(default="default", max_length=200)
    outcome: Outcome = "ok"
    details: dict[str, Any] = Field(default_factory=dict)
    prev_hash: str = Field(min_length=64, max_length=64)
    hash: str = Field(min_length=64, max_length=64)

    @field_validator("at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    def hash_fields(self) -> dict[str, Any]:
        """Every field except ``hash``, as ``record_hash`` takes them."""
        return self.model_dump(exclude={"hash"})


def fingerprint(value: str, key: bytes) -> str:
    """Return ``hmac-sha256:<hex>`` of ``value`` under the install's key.

    Use this for anything derived from a secret (a token, a password attempt, a secret's
    value) before it goes into ``details``: a plain hash of a low-entropy secret can be
    reversed by guessing, an HMAC cannot without the key.
    """
    return "hmac-sha256:" + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def _check(action: str, outcome: str) -> None:
    if not _ACTION.fullmatch(action):
        raise AuditError(f"audit action {action!r} is not resource.verb")
    if outcome not in AUDIT_OUTCOMES:
        raise AuditError(f"audit outcome {outcome!r} is not one of {AUDIT_OUTCOMES}")


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    resource: str,
    folder: str = "default",
    outcome: str = "ok",
    details: dict[str, Any] | None = None,
) -> AuditRecord:
    """Append one record in the caller's transaction and return it.

    Fails closed: any problem (a bad field, a value that is not JSON, a database error)
    raises AuditError, so the change being recorded rolls back with it. On PostgreSQL the
    transaction takes an advisory lock held until it ends; on SQLite the store's sessions
    begin IMMEDIATE, so there is one writer already. Values derived from secrets must be
    passed through ``fingerprint`` first.
    """
    _check(action, outcome)
    try:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(_LOCK, {"key": AUDIT_LOCK_KEY})
        tail = session.execute(_TAIL).first()
        if tail is None:
            # Empty: the first record, or retention removed every record up to its anchor.
            tail = session.execute(_ANCHOR).first()
        seq, prev_hash = (1, GENESIS) if tail is None else (tail.seq + 1, tail.hash)
        fields: dict[str, Any] = {
            "seq": seq,
            "at": utcnow(),
            "actor": actor,
            "action": action,
            "resource": resource,
            "folder": folder,
            "outcome": outcome,
            "details": details or {},
            "prev_hash": prev_hash,
        }
        record = AuditRecord(**fields, hash=record_hash(**fields))
        session.execute(_INSERT, record.model_dump())
    except SQLAlchemyError as exc:
        raise AuditError(f"cannot write the audit record {action} {resource}: {exc}") from exc
    except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
        raise AuditError(f"cannot build the audit record {action} {resource}: {exc}") from exc
    return record


def record_secret_read(session: Session, name: str, folder: str, run_id: str, step: str) -> None:
    """Record that a worker read ``folder``'s secret ``name`` for a run's step; never the value."""
    append(
        session,
        actor="engine:worker",
        action="secrets.read",
        resource=f"secrets/{name}",
        folder=folder,
        details={"secret": name, "run_id": run_id, "step": step},
    )
