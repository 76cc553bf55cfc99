"""Signed statements beside the checkpoints: what retention removed, which legal holds stand.

Whoever can write the database can delete the oldest records, write a matching anchor and
append a plausible ``audit.prune`` record; the chain then links and names its anchor. Only a
statement signed with the checkpoint key, kept in the sink the database's writers cannot
change, tells retention's prune apart from that (ADR 0048). Legal holds are signed the same
way, so retention honours a hold even after someone deleted its row, and ``verify`` can tell
that no signed prune removed records of a folder under a signed hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from amosflow.audit._canonical import GENESIS, canonical_value, stamp
from amosflow.errors import AuditError
from amosflow.store._types import utcnow

if TYPE_CHECKING:
    from collections.abc import Iterable

    from amosflow.audit._keys import CheckpointSigner

#: Retention removed ``from_seq + 1 .. anchor_seq``; the chain goes on from the anchor.
PRUNE = "amos.audit.prune/v1"
#: A legal hold on a folder was placed or released.
HOLD = "amos.audit.hold/v1"
_ENVELOPE = frozenset({"type", "at", "key_id", "signature"})


@dataclass(frozen=True, slots=True)
class Statement:
    """A signed ``kind`` statement: ``body`` was true when ``key_id`` signed it at ``at``."""

    kind: str
    body: dict[str, Any]
    at: datetime
    key_id: str
    signature: str

    def _fields(self) -> dict[str, Any]:
        return {"type": self.kind, **self.body, "at": stamp(self.at), "key_id": self.key_id}

    def payload(self) -> bytes:
        """The canonical bytes the signature covers (everything but the signature)."""
        return canonical_value(self._fields()).encode()

    def to_json(self) -> str:
        """One canonical JSON line for a sink."""
        return canonical_value(self._fields() | {"signature": self.signature})

    @classmethod
    def from_fields(cls, raw: dict[str, Any]) -> Statement:
        """Read a parsed sink line that has a ``type``; raises AuditError when it is malformed."""
        try:
            return cls(
                kind=str(raw["type"]),
                body={k: v for k, v in raw.items() if k not in _ENVELOPE},
                at=datetime.fromisoformat(raw["at"]),
                key_id=str(raw["key_id"]),
                signature=str(raw["signature"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise AuditError(f"not a signed statement: {str(raw)[:80]!r}") from exc


def sign(signer: CheckpointSigner, kind: str, body: dict[str, Any]) -> Statement:
    """Sign ``body`` as a ``kind`` statement now."""
    if _ENVELOPE & body.keys():
        raise ValueError(f"a statement body may not use {sorted(_ENVELOPE & body.keys())}")
    unsigned = Statement(kind, body, utcnow(), signer.key_id, signature="")
    return Statement(kind, body, unsigned.at, unsigned.key_id, signer.sign(unsigned.payload()))


@dataclass(frozen=True, slots=True)
class Pruned:
    """A signed prune: it removed ``from_seq + 1 .. anchor_seq`` (records of ``folders``)."""

    from_seq: int
    from_hash: str
    anchor_seq: int
    anchor_hash: str
    folders: frozenset[str]
    record_seq: int
    record_hash: str
    position: int  # its place in the sink, which orders it against hold statements

    @classmethod
    def of(cls, statement: Statement, position: int) -> Pruned:
        """Read a PRUNE statement's body; raises AuditError when it is not one."""
        body = statement.body
        try:
            return cls(
                from_seq=int(body["from_seq"]),
                from_hash=str(body["from_hash"]),
                anchor_seq=int(body["anchor_seq"]),
                anchor_hash=str(body["anchor_hash"]),
                folders=frozenset(str(f) for f in body["folders"]),
                record_seq=int(body["record_seq"]),
                record_hash=str(body["record_hash"]),
                position=position,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise AuditError(f"a signed prune statement is malformed: {exc}") from exc


def prune_body(
    *,
    from_seq: int,
    from_hash: str | None,
    anchor_seq: int,
    anchor_hash: str,
    folders: Iterable[str],
    record_seq: int,
    record_hash: str,
) -> dict[str, Any]:
    """The body of a PRUNE statement; ``from_hash`` None means the start of the chain."""
    return {
        "from_seq": from_seq,
        "from_hash": from_hash or GENESIS,
        "anchor_seq": anchor_seq,
        "anchor_hash": anchor_hash,
        "folders": sorted(set(folders)),
        "record_seq": record_seq,
        "record_hash": record_hash,
    }


def hold_body(*, hold_id: int, folder: str, placed: bool) -> dict[str, Any]:
    """The body of a HOLD statement: hold ``hold_id`` on ``folder`` was placed or released."""
    return {"hold_id": hold_id, "folder": folder, "state": "placed" if placed else "released"}


def held(statements: Iterable[Statement], *, until: int | None = None) -> dict[int, str]:
    """The signed holds in force (hold id → folder) after the first ``until`` statements."""
    active: dict[int, str] = {}
    for position, statement in enumerate(statements):
        if until is not None and position >= until:
            break
        if statement.kind != HOLD:
            continue
        hold_id, folder = statement.body.get("hold_id"), statement.body.get("folder")
        if not isinstance(hold_id, int) or not isinstance(folder, str):
            continue
        if statement.body.get("state") == "placed":
            active[hold_id] = folder
        elif active.get(hold_id) == folder:
            del active[hold_id]
    return active
