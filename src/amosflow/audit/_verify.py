"""Walk the chain, name the first record that was edited, deleted, inserted or reordered.

Then hold the chain against the signed checkpoints, which catch what the chain cannot see on
its own: a tail cut off, or every hash recomputed after a change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Text, select, type_coerce
from sqlalchemy.exc import SQLAlchemyError

from amosflow.audit._canonical import GENESIS, record_hash
from amosflow.audit._checkpoints import Checkpoint, CheckpointSink
from amosflow.audit._keys import key_id, signature_valid
from amosflow.errors import AuditError
from amosflow.store.tables import AuditCheckpointRow, AuditRow

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from sqlalchemy import Table

    from amosflow.store import Store

PAGE = 5000
_TABLE = cast("Table", AuditRow.__table__)
_NAMES = ("seq", "at", "actor", "action", "resource", "folder", "outcome", "details")
# Core columns, not ORM attributes: the ORM's row loading would double the cost of a walk.
_COLUMNS = [*(_TABLE.c[name] for name in _NAMES), _TABLE.c.prev_hash, _TABLE.c.hash]
# On SQLite, SQLAlchemy's per-value conversion of the timestamp and JSON text costs more
# than hashing the record; the walk reads the text and converts it itself.
_RAW_COLUMNS = [
    type_coerce(column, Text) if column.name in {"at", "details"} else column for column in _COLUMNS
]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What ``verify`` found; ``first_bad_seq`` names the first record that cannot be trusted."""

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str | None = None
    last_checkpoint_seq: int | None = None


@dataclass(slots=True)
class _Walk:
    checked: int = 0
    tail: int = 0
    bad: int | None = None
    problem: str | None = None


def _rows(store: Store, page: int) -> Iterator[Sequence[Any]]:
    """Every record in seq order as plain values, one page per short read-only transaction."""
    raw = store.dialect == "sqlite"
    after: int | None = None
    while True:
        statement = select(*(_RAW_COLUMNS if raw else _COLUMNS)).order_by(_TABLE.c.seq).limit(page)
        if after is not None:
            statement = statement.where(_TABLE.c.seq > after)
        with store.session(read_only=True) as session:
            rows = session.execute(statement).all()
        if raw:
            for seq, at, *middle, details, prev_hash, stored in rows:
                at_utc = datetime.fromisoformat(at).replace(tzinfo=UTC)
                yield (seq, at_utc, *middle, json.loads(details), prev_hash, stored)
        else:
            yield from rows
        if len(rows) < page:
            return
        after = rows[-1][0]


def _link_problem(seq: int, *, shifted: bool, self_ok: bool) -> tuple[int, str]:
    """Blame the right record when ``seq`` does not link to the one before it.

    ``shifted`` means the record links to the one two back and its hash is right for the
    seq before its own: it was pushed down by one to make room for the record before it.
    """
    if shifted:
        return seq - 1, f"seq {seq - 1} was inserted: seq {seq} links to seq {seq - 2}"
    if seq == 1:
        return 1, "seq 1 does not link to the start of the chain"
    if self_ok:
        # Both records are self-consistent: one of them was replaced with recomputed hashes.
        return seq - 1, f"seq {seq} does not link to seq {seq - 1}: one of them was replaced"
    return seq, f"seq {seq} has the wrong hash and link: edited, moved or reordered"


def _walk(store: Store, wanted: set[int], hashes: dict[int, str], page: int) -> _Walk:
    walk = _Walk()
    prev, prev2 = GENESIS, None
    for seq, at, actor, action, resource, folder, outcome, details, prev_hash, stored in _rows(
        store, page
    ):
        expected = walk.tail + 1
        if seq != expected:
            walk.bad = min(seq, expected)
            walk.problem = (
                f"seq {expected} is missing (deleted); the next record is seq {seq}"
                if seq > expected
                else f"seq {seq} is out of order"
            )
            return walk
        fields = {
            "at": at, "actor": actor, "action": action, "resource": resource, "folder": folder,
            "outcome": outcome, "details": details, "prev_hash": prev_hash,
        }  # fmt: skip
        self_ok = record_hash(seq=seq, **fields) == stored
        if prev_hash != prev:
            shifted = prev_hash == prev2 and record_hash(seq=seq - 1, **fields) == stored
            walk.bad, walk.problem = _link_problem(seq, shifted=shifted, self_ok=self_ok)
            return walk
        if not self_ok:
            walk.bad, walk.problem = seq, f"seq {seq} does not match its hash: edited"
            return walk
        if seq in wanted:
            hashes[seq] = stored
        walk.checked = walk.tail = seq
        prev, prev2 = stored, prev
    return walk


def _stored_checkpoints(store: Store) -> list[Checkpoint]:
    with store.session(read_only=True) as session:
        rows = session.scalars(select(AuditCheckpointRow)).all()
    return [Checkpoint(r.seq, r.hash, r.at, r.key_id, r.signature) for r in rows]


def _check_checkpoints(
    checkpoints: list[Checkpoint],
    public_key: Ed25519PublicKey,
    hashes: dict[int, str],
    walk: _Walk,
) -> tuple[int | None, str | None, int | None]:
    """Return the first bad seq and problem the checkpoints show, and the last good one."""
    expected_id = key_id(public_key)
    good = 0
    for checkpoint in sorted(checkpoints, key=lambda c: c.seq):
        if checkpoint.key_id != expected_id or not signature_valid(
            public_key, checkpoint.payload(), checkpoint.signature
        ):
            return None, f"the checkpoint at seq {checkpoint.seq} has a bad signature", good
        if walk.bad is not None and checkpoint.seq >= walk.bad:
            break  # the chain already failed before this point
        if checkpoint.seq > walk.tail:
            return (
                walk.tail + 1,
                (
                    f"the chain ends at seq {walk.tail} but was checkpointed at seq "
                    f"{checkpoint.seq}: its tail was cut off"
                ),
                good,
            )
        if hashes.get(checkpoint.seq) != checkpoint.hash:
            return (
                good + 1,
                (
                    f"seq {checkpoint.seq} differs from its signed checkpoint: "
                    f"seq {good + 1}..{checkpoint.seq} were rewritten"
                ),
                good,
            )
        good = checkpoint.seq
    return None, None, good


def verify(
    store: Store,
    *,
    sink: CheckpointSink | None,
    public_key: Ed25519PublicKey | None,
    page: int = PAGE,
) -> VerifyReport:
    """Check every record's hash, link and seq, then the chain against signed checkpoints.

    Checkpoints come from ``sink`` (the copy outside the database, which is what catches a
    truncation or a full rewrite) and from the store's own table; each must carry a valid
    signature by ``public_key``. Raises AuditError only when the store cannot be read.
    """
    try:
        external = sink.read() if sink is not None else []
        stored = _stored_checkpoints(store)
        checkpoints = list({(c.seq, c.signature): c for c in external + stored}.values())
        hashes: dict[int, str] = {}
        walk = _walk(store, {c.seq for c in checkpoints}, hashes, page)
    except SQLAlchemyError as exc:
        raise AuditError(f"cannot read the audit trail: {exc}") from exc
    except AuditError as exc:  # an unreadable sink line
        return VerifyReport(ok=False, checked=0, problem=str(exc))
    found = [(walk.bad, walk.problem)]
    last = None
    if checkpoints and public_key is None:
        found.append((None, f"{len(checkpoints)} checkpoints but no public key to check them"))
    elif public_key is not None:
        bad, problem, last = _check_checkpoints(checkpoints, public_key, hashes, walk)
        found.append((bad, problem))
    problems = sorted(
        ((bad, problem) for bad, problem in found if problem is not None),
        key=lambda item: item[0] or 0,  # a bad signature (no seq) casts doubt on everything
    )
    bad, problem = problems[0] if problems else (None, None)
    return VerifyReport(
        ok=problem is None,
        checked=walk.checked,
        first_bad_seq=bad,
        problem=problem,
        last_checkpoint_seq=last or None,
    )
