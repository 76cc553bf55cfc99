"""Append records to the chain inside the caller's transaction, and fingerprint secret values."""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, cast

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import event, insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from amosflow.audit._canonical import GENESIS, record_bytes, record_hash
from amosflow.audit._chainer import chain_group, chain_tail, lock_chain
from amosflow.errors import AuditError
from amosflow.store import AUDIT_OUTCOMES, AuditPendingRow, AuditRow
from amosflow.store._types import utcnow

if TYPE_CHECKING:
    from sqlalchemy import Engine, Table

Outcome = Literal["ok", "denied", "error"]
_ACTION = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
# Built once: a statement built per call costs more than the SQLite write itself.
_INSERT = insert(cast("Table", AuditRow.__table__))
_INSERT_PENDING = insert(cast("Table", AuditPendingRow.__table__))
#: ``Session.info`` key: the engine whose chain a committed session left records pending on.
_PENDING_ON = "amosflow.audit.pending"


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


class PendingRecord(BaseModel):
    """A record committed with its change whose chain link the chainer assigns after commit."""

    model_config = ConfigDict(frozen=True)

    at: AwareDatetime
    actor: str = Field(max_length=200)
    action: str = Field(max_length=100)
    resource: str = Field(max_length=500)
    folder: str = Field(default="default", max_length=200)
    outcome: Outcome = "ok"
    details: dict[str, Any] = Field(default_factory=dict)


def fingerprint(value: str, key: bytes) -> str:
    """Return ``hmac-sha256:<hex>`` of ``value`` under the install's key.

    Use this for anything derived from a secret (a token, a password attempt, a secret's
    value) before it goes into ``details``: a plain hash of a low-entropy secret can be
    reversed by guessing, an HMAC cannot without the key.
    """
    return "hmac-sha256:" + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    resource: str,
    folder: str = "default",
    outcome: str = "ok",
    details: dict[str, Any] | None = None,
) -> AuditRecord | PendingRecord:
    """Add one record to the caller's transaction and return it.

    Fails closed: any problem (a bad field, a value that is not JSON, a database error)
    raises AuditError, so the change being recorded rolls back with it. On SQLite, whose
    store sessions begin IMMEDIATE (one writer already), the record is linked at once and
    returned as an ``AuditRecord``. On PostgreSQL it goes to ``audit_pending`` without the
    chain's lock and comes back as a ``PendingRecord``; when the transaction commits, the
    committing thread waits for a linking pass shared with every other committer (group
    commit), so the record is in the chain before the session's ``with`` block returns.
    Values derived from secrets must be passed through ``fingerprint`` first.
    """
    fields = _fields(
        actor=actor,
        action=action,
        resource=resource,
        folder=folder,
        outcome=outcome,
        details=details,
    )
    try:
        bind = session.get_bind()
        if bind.dialect.name != "postgresql":
            return _link_now(session, fields)
        pending = PendingRecord(**fields)
        # The bytes the chainer will hash, built now so a value it could not hash fails here.
        record_bytes(seq=1, prev_hash=GENESIS, **fields)
        session.execute(_INSERT_PENDING, fields)
        session.info[_PENDING_ON] = bind.engine
    except SQLAlchemyError as exc:
        raise AuditError(f"cannot write the audit record {action} {resource}: {exc}") from exc
    except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
        raise AuditError(f"cannot build the audit record {action} {resource}: {exc}") from exc
    return pending


def append_linked(
    session: Session,
    *,
    actor: str,
    action: str,
    resource: str,
    folder: str = "default",
    details: dict[str, Any] | None = None,
) -> AuditRecord:
    """Append one record linked at once, under the chain's lock held until the transaction ends.

    For retention and holds, which sign the record's seq and hash before they commit.
    Raises AuditError as ``append`` does.
    """
    fields = _fields(
        actor=actor, action=action, resource=resource, folder=folder, outcome="ok", details=details
    )
    try:
        return _link_now(session, fields)
    except SQLAlchemyError as exc:
        raise AuditError(f"cannot write the audit record {action} {resource}: {exc}") from exc
    except (ValueError, TypeError) as exc:
        raise AuditError(f"cannot build the audit record {action} {resource}: {exc}") from exc


def _fields(
    *,
    actor: str,
    action: str,
    resource: str,
    folder: str,
    outcome: str,
    details: dict[str, Any] | None,
) -> dict[str, Any]:
    """Check the action and outcome and return a record's own fields, stamped now."""
    if not _ACTION.fullmatch(action):
        raise AuditError(f"audit action {action!r} is not resource.verb")
    if outcome not in AUDIT_OUTCOMES:
        raise AuditError(f"audit outcome {outcome!r} is not one of {AUDIT_OUTCOMES}")
    return {
        "at": utcnow(),
        "actor": actor,
        "action": action,
        "resource": resource,
        "folder": folder,
        "outcome": outcome,
        "details": details or {},
    }


def _link_now(session: Session, fields: dict[str, Any]) -> AuditRecord:
    """Insert ``fields`` as the chain's next record, taking the chain's lock first."""
    lock_chain(session)
    seq, prev_hash = chain_tail(session)
    linked = fields | {"seq": seq + 1, "prev_hash": prev_hash}
    record = AuditRecord(**linked, hash=record_hash(**linked))
    session.execute(_INSERT, record.model_dump())
    return record


@event.listens_for(Session, "after_commit")
def _link_after_commit(session: Session) -> None:
    """Wait for the records this transaction left pending to be linked into the chain.

    A savepoint's release fires this too, while the outer transaction (and the record) is not
    committed yet: only the outermost commit may start the linking pass it waits for.
    """
    if session.in_nested_transaction():
        return
    engine: Engine | None = session.info.pop(_PENDING_ON, None)
    if engine is not None:
        chain_group(engine).link_committed()


@event.listens_for(Session, "after_rollback")
def _forget_pending(session: Session) -> None:
    """A rolled-back transaction's pending records are gone; there is nothing to link.

    A savepoint rolled back inside a transaction that goes on leaves the outer one's records;
    they are linked when it commits.
    """
    if session.in_nested_transaction():
        return
    session.info.pop(_PENDING_ON, None)


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
