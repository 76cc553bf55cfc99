"""Walk the chain, name the first record that was edited, deleted, inserted or reordered.

Then hold the chain against the signed checkpoints, which catch what the chain cannot see on
its own: a tail cut off, or every hash recomputed after a change. A chain shortened by
retention starts at its anchor (the seq and hash of the last record removed), which the
latest ``audit.prune`` record in the chain must vouch for.
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
from amosflow.store.tables import AuditAnchorRow, AuditCheckpointRow, AuditRow

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from sqlalchemy import Select, Table
    from sqlalchemy.orm import Session

    from amosflow.store import Store

    Reader = Callable[[Select[Any]], Sequence[Sequence[Any]]]

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
#: The action of the record retention appends; its details name the anchor it left.
PRUNE_ACTION = "audit.prune"


@dataclass(frozen=True, slots=True)
class Anchor:
    """The last record retention removed: the chain goes on at ``seq + 1``, linked to ``hash``."""

    seq: int
    hash: str


def read_anchor(session: Session) -> Anchor | None:
    """The store's retention anchor, or None while nothing was ever pruned."""
    row = session.get(AuditAnchorRow, 1)
    return None if row is None else Anchor(row.seq, row.hash)


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What ``verify`` found; ``first_bad_seq`` names the first record that cannot be trusted."""

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str | None = None
    last_checkpoint_seq: int | None = None
    anchor_seq: int | None = None


@dataclass(slots=True)
class _Walk:
    checked: int = 0
    tail: int = 0
    bad: int | None = None
    problem: str | None = None
    prune: tuple[int, Any] | None = None  # seq and details of the latest audit.prune record


def rows(
    read: Reader, *, raw: bool, page: int, after: int = 0, through: int | None = None
) -> Iterator[Sequence[Any]]:
    """Records ``after`` < seq ≤ ``through`` in seq order as plain values, a page per ``read``.

    ``raw`` (SQLite) reads the timestamp and JSON as text and converts them here, which is
    cheaper than SQLAlchemy's per-value conversion.
    """
    while True:
        statement = (
            select(*(_RAW_COLUMNS if raw else _COLUMNS))
            .where(_TABLE.c.seq > after)
            .order_by(_TABLE.c.seq)
            .limit(page)
        )
        if through is not None:
            statement = statement.where(_TABLE.c.seq <= through)
        batch = read(statement)
        if raw:
            for seq, at, *middle, details, prev_hash, stored in batch:
                at_utc = datetime.fromisoformat(at).replace(tzinfo=UTC)
                yield (seq, at_utc, *middle, json.loads(details), prev_hash, stored)
        else:
            yield from batch
        if len(batch) < page:
            return
        after = batch[-1][0]


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


def walk_chain(
    records: Iterator[Sequence[Any]],
    anchor: Anchor | None,
    wanted: set[int] | None = None,
    hashes: dict[int, str] | None = None,
) -> _Walk:
    """Check seq, hash and link of ``records`` from ``anchor`` (or the start) to the first bad one.

    Records the hashes of the seqs in ``wanted`` into ``hashes`` as it goes.
    """
    walk = _Walk(tail=anchor.seq if anchor is not None else 0)
    prev, prev2 = (anchor.hash if anchor is not None else GENESIS), None
    for seq, at, actor, action, resource, folder, outcome, details, prev_hash, stored in records:
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
            if anchor is not None and seq == anchor.seq + 1:
                walk.bad = seq
                walk.problem = (
                    f"seq {seq} does not link to the retention anchor at seq {anchor.seq}"
                )
                return walk
            shifted = prev_hash == prev2 and record_hash(seq=seq - 1, **fields) == stored
            walk.bad, walk.problem = _link_problem(seq, shifted=shifted, self_ok=self_ok)
            return walk
        if not self_ok:
            walk.bad, walk.problem = seq, f"seq {seq} does not match its hash: edited"
            return walk
        if hashes is not None and wanted is not None and seq in wanted:
            hashes[seq] = stored
        if action == PRUNE_ACTION:
            walk.prune = (seq, details)
        walk.checked += 1
        walk.tail = seq
        prev, prev2 = stored, prev
    return walk


def _anchor_problem(anchor: Anchor | None, walk: _Walk) -> tuple[int | None, str | None]:
    """Hold the anchor against the latest audit.prune record, which the chain protects.

    Someone who deletes the oldest records and writes a matching anchor gets a chain that
    links; only the prune record (whose details name the anchor it left) tells them apart.
    """
    if walk.bad is not None:
        return None, None  # the walk stopped early: a later prune record may exist
    claimed: tuple[object, object] = (None, None)
    if walk.prune is not None:
        details = walk.prune[1] if isinstance(walk.prune[1], dict) else {}
        claimed = (details.get("anchor_seq"), details.get("anchor_hash"))
    if anchor is None:
        if claimed[0] is not None:
            return 1, (
                f"the retention anchor is missing, but the audit.prune record at seq "
                f"{walk.prune[0] if walk.prune else '-'} left one at seq {claimed[0]}"
            )
        return None, None
    if walk.prune is None:
        return 1, (
            f"the chain starts after seq {anchor.seq} but no audit.prune record vouches for "
            f"its anchor: seq 1..{anchor.seq} were removed outside retention, or the tail "
            "holding the prune record was cut off"
        )
    if claimed != (anchor.seq, anchor.hash):
        vouched = claimed[0] if isinstance(claimed[0], int) else 0
        first = min(vouched, anchor.seq) + 1
        return first, (
            f"the retention anchor (seq {anchor.seq}) is not the one the audit.prune record at "
            f"seq {walk.prune[0]} left (seq {vouched}): seq {first}..{max(vouched, anchor.seq)} "
            "were removed or altered outside retention"
        )
    return None, None


def _stored_checkpoints(store: Store) -> list[Checkpoint]:
    with store.session(read_only=True) as session:
        rows = session.scalars(select(AuditCheckpointRow)).all()
    return [Checkpoint(r.seq, r.hash, r.at, r.key_id, r.signature) for r in rows]


def _check_checkpoints(
    checkpoints: list[Checkpoint],
    public_key: Ed25519PublicKey,
    hashes: dict[int, str],
    walk: _Walk,
    floor: int,
) -> tuple[int | None, str | None, int | None]:
    """Return the first bad seq and problem the checkpoints show, and the last good one.

    Checkpoints below ``floor`` (the retention anchor) sign records that no longer exist:
    their signatures are still checked, their hashes cannot be and are skipped.
    """
    expected_id = key_id(public_key)
    good, last = floor, None
    for checkpoint in sorted(checkpoints, key=lambda c: c.seq):
        if checkpoint.key_id != expected_id or not signature_valid(
            public_key, checkpoint.payload(), checkpoint.signature
        ):
            return None, f"the checkpoint at seq {checkpoint.seq} has a bad signature", last
        if checkpoint.seq < floor:
            continue
        if walk.bad is not None and checkpoint.seq >= walk.bad:
            break  # the chain already failed before this point
        if checkpoint.seq > walk.tail:
            return (
                walk.tail + 1,
                (
                    f"the chain ends at seq {walk.tail} but was checkpointed at seq "
                    f"{checkpoint.seq}: its tail was cut off"
                ),
                last,
            )
        if hashes.get(checkpoint.seq) != checkpoint.hash:
            return (
                good + 1,
                (
                    f"seq {checkpoint.seq} differs from its signed checkpoint: "
                    f"seq {good + 1}..{checkpoint.seq} were rewritten"
                ),
                last,
            )
        good = last = checkpoint.seq
    return None, None, last


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
    signature by ``public_key``. A chain pruned by retention is walked from its anchor, which
    the latest ``audit.prune`` record must name; checkpoints older than the anchor are
    skipped. Raises AuditError only when the store cannot be read.
    """
    raw = store.dialect == "sqlite"

    def read(statement: Select[Any]) -> Sequence[Sequence[Any]]:
        with store.session(read_only=True) as session:
            return session.execute(statement).all()

    try:
        external = sink.read() if sink is not None else []
        stored = _stored_checkpoints(store)
        with store.session(read_only=True) as session:
            anchor = read_anchor(session)
        checkpoints = list({(c.seq, c.signature): c for c in external + stored}.values())
        hashes: dict[int, str] = {}
        after = anchor.seq if anchor is not None else 0
        records = rows(read, raw=raw, page=page, after=after)
        walk = walk_chain(records, anchor, {c.seq for c in checkpoints}, hashes)
    except SQLAlchemyError as exc:
        raise AuditError(f"cannot read the audit trail: {exc}") from exc
    except AuditError as exc:  # an unreadable sink line
        return VerifyReport(ok=False, checked=0, problem=str(exc))
    found = [(walk.bad, walk.problem)]
    if anchor is not None:
        hashes[anchor.seq] = anchor.hash
    last = None
    cut = False
    if checkpoints and public_key is None:
        found.append((None, f"{len(checkpoints)} checkpoints but no public key to check them"))
    elif public_key is not None:
        bad, problem, last = _check_checkpoints(
            checkpoints, public_key, hashes, walk, anchor.seq if anchor is not None else 0
        )
        found.append((bad, problem))
        cut = walk.bad is None and bad == walk.tail + 1  # only a cut-off tail is blamed there
    if not cut:
        # A proven cut-off tail may have taken the latest audit.prune record with it; then
        # the anchor cannot be held against it, and the cut is what to report.
        found.append(_anchor_problem(anchor, walk))
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
        last_checkpoint_seq=last,
        anchor_seq=anchor.seq if anchor is not None else None,
    )
