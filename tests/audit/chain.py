"""Builders for audit tests: a chain of records, raw rows, and tampering through plain SQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update

from amosflow import audit
from amosflow.store import AuditCheckpointRow, AuditRow, Store

FIELDS = ("at", "actor", "action", "resource", "folder", "outcome", "details", "prev_hash", "hash")


def build(store: Store, count: int, checkpointer: audit.Checkpointer | None = None) -> None:
    """Append ``count`` records, one transaction each, checkpointing after every commit."""
    for n in range(1, count + 1):
        with store.session() as session:
            audit.append(
                session,
                actor=f"user:u{n % 3}",
                action="flows.create" if n % 2 else "runs.start",
                resource=f"flow:f{n}",
                folder="finance" if n % 4 == 0 else "default",
                details={"n": n, "note": f"record {n}", "ratio": n / 4},
            )
        if checkpointer is not None:
            checkpointer.maybe_checkpoint()


def row(store: Store, seq: int) -> dict[str, Any]:
    """The stored columns of record ``seq``."""
    with store.session(read_only=True) as session:
        found = session.execute(select(AuditRow).where(AuditRow.seq == seq)).scalar_one()
        return {name: getattr(found, name) for name in ("seq", *FIELDS)}


def set_columns(store: Store, seq: int, **values: Any) -> None:
    """UPDATE record ``seq`` directly, as someone with database access would."""
    with store.session() as session:
        session.execute(update(AuditRow).where(AuditRow.seq == seq).values(**values))


def delete_where(store: Store, *conditions: Any) -> None:
    """DELETE audit records directly."""
    with store.session() as session:
        session.execute(delete(AuditRow).where(*conditions))


def drop_stored_checkpoints(store: Store) -> None:
    """Remove the checkpoints kept in the database, which an attacker there can do."""
    with store.session() as session:
        session.execute(delete(AuditCheckpointRow))


def rehash_from(store: Store, start: int) -> None:
    """Recompute every hash from ``start`` on, as an attacker rewriting the chain would."""
    prev = row(store, start - 1)["hash"] if start > 1 else audit.GENESIS
    with store.session() as session:
        rows = session.scalars(select(AuditRow).where(AuditRow.seq >= start).order_by(AuditRow.seq))
        for found in rows.all():
            fields = {name: getattr(found, name) for name in ("seq", *FIELDS[:-2])}
            found.prev_hash = prev
            found.hash = prev = audit.record_hash(**fields, prev_hash=prev)
