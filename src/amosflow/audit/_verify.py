"""Walk the chain, name the first record that was edited, deleted, inserted or reordered.

Then hold the chain against what the checkpoint key signed, which catches what the chain
cannot see on its own: a tail cut off, every hash recomputed after a change, or a head cut
off and papered over with an anchor and a plausible ``audit.prune`` record. A chain shortened
by retention starts at its anchor (the seq and hash of the last record removed), and a
series of signed prune statements must lead from the start of the chain to exactly that
anchor, none of them removing a folder under a signed legal hold (ADR 0048).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Text, select, type_coerce
from sqlalchemy.exc import SQLAlchemyError

from amosflow.audit._canonical import GENESIS, record_hash
from amosflow.audit._chainer import count_pending
from amosflow.audit._checkpoints import Checkpoint, CheckpointSink
from amosflow.audit._keys import key_id, signature_valid
from amosflow.audit._statements import PRUNE, Pruned, Statement, held
from amosflow.errors import AuditError
from amosflow.store import AuditAnchorRow, AuditCheckpointRow, AuditRow

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
    #: Records committed with their change but not linked yet: not covered by ``checked``.
    unlinked: int = 0


@dataclass(slots=True)
class _Walk:
    checked: int = 0
    tail: int = 0
    bad: int | None = None
    problem: str | None = None


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
        walk.checked += 1
        walk.tail = seq
        prev, prev2 = stored, prev
    return walk


def _stored_checkpoints(store: Store) -> list[Checkpoint]:
    with store.session(read_only=True) as session:
        rows = session.scalars(select(AuditCheckpointRow)).all()
    return [Checkpoint(r.seq, r.hash, r.at, r.key_id, r.signature) for r in rows]


@dataclass(frozen=True, slots=True)
class _Point:
    """A (seq, hash) the key signed: a checkpoint, or an anchor or record a prune left."""

    seq: int
    hash: str
    checkpoint: bool


Found = tuple[int | None, str | None]


def _bad_signature(
    checkpoints: list[Checkpoint], statements: list[Statement], public_key: Ed25519PublicKey
) -> str | None:
    """Name the first checkpoint or statement the key did not sign, or None."""
    expected_id = key_id(public_key)
    for checkpoint in sorted(checkpoints, key=lambda c: c.seq):
        if checkpoint.key_id != expected_id or not signature_valid(
            public_key, checkpoint.payload(), checkpoint.signature
        ):
            return f"the checkpoint at seq {checkpoint.seq} has a bad signature"
    for position, statement in enumerate(statements):
        if statement.key_id != expected_id or not signature_valid(
            public_key, statement.payload(), statement.signature
        ):
            return f"statement {position + 1} of the sink ({statement.kind}) has a bad signature"
    return None


def _check_points(
    points: list[_Point], hashes: dict[int, str], walk: _Walk, floor: int
) -> tuple[int | None, str | None, int | None]:
    """Return the first bad seq and problem the signed points show, and the last good checkpoint.

    Points below ``floor`` (the retention anchor) name records that no longer exist: only
    those that coincide with an anchor of the signed prunes leading there can be compared.
    """
    good, last = floor, None
    for point in sorted(points, key=lambda p: (p.seq, not p.checkpoint)):
        if point.seq < floor:
            if point.seq in hashes and hashes[point.seq] != point.hash:
                return point.seq, f"seq {point.seq} differs from what the key signed for it", last
            continue
        if walk.bad is not None and point.seq >= walk.bad:
            break  # the chain already failed before this point
        if point.seq > walk.tail:
            return (
                walk.tail + 1,
                (
                    f"the chain ends at seq {walk.tail} but was signed at seq {point.seq}: "
                    "its tail was cut off"
                ),
                last,
            )
        if hashes.get(point.seq) != point.hash:
            what = "its signed checkpoint" if point.checkpoint else "what a signed prune left"
            return (
                good + 1,
                f"seq {point.seq} differs from {what}: seq {good + 1}..{point.seq} were rewritten",
                last,
            )
        good = point.seq
        if point.checkpoint:
            last = point.seq
    return None, None, last


def signed_reach(prunes: list[Pruned]) -> dict[tuple[int, str], Pruned | None]:
    """Every (seq, hash) signed prunes lead to from the start, each with the prune that got there.

    Each prune starts where an earlier one ended (or at the start); a prune whose transaction
    rolled back leaves a statement no later prune starts from, which is harmless.
    """
    reached: dict[tuple[int, str], Pruned | None] = {(0, GENESIS): None}
    for prune in sorted(prunes, key=lambda p: (p.from_seq, p.position)):
        start, end = (prune.from_seq, prune.from_hash), (prune.anchor_seq, prune.anchor_hash)
        if prune.anchor_seq > prune.from_seq and start in reached and end not in reached:
            reached[end] = prune
    return reached


def _prune_path(prunes: list[Pruned], anchor: Anchor | None) -> tuple[list[Pruned], Found]:
    """The signed prunes that lead from the start of the chain to ``anchor``, or the problem."""
    if anchor is None:
        return [], (None, None)
    reached = signed_reach(prunes)
    target = (anchor.seq, anchor.hash)
    if target not in reached:
        below = max((seq for seq, _ in reached if seq < anchor.seq), default=0)
        problem = (
            f"seq {below + 1}..{anchor.seq} were removed, but no prune signed with the "
            f"checkpoint key covers them: the retention anchor at seq {anchor.seq} was set "
            "outside retention"
        )
        return [], (below + 1, problem)
    path: list[Pruned] = []
    step = reached[target]
    while step is not None:
        path.append(step)
        step = reached[(step.from_seq, step.from_hash)]
    return path[::-1], (None, None)


def _hold_problem(path: list[Pruned], statements: list[Statement]) -> Found:
    """Name the first signed prune that removed records of a folder under a signed hold."""
    for prune in path:
        holds = held(statements, until=prune.position)
        span = f"seq {prune.from_seq + 1}..{prune.anchor_seq}"
        for hold_id, folder in sorted(holds.items()):
            if folder == "*" or folder in prune.folders:
                return prune.from_seq + 1, (
                    f"the signed prune of {span} removed records of folder "
                    f"{'(every folder)' if folder == '*' else folder} while hold {hold_id} held it"
                )
    return None, None


def _signed_points(
    checkpoints: list[Checkpoint], prunes: list[Pruned], path: list[Pruned]
) -> list[_Point]:
    """Every (seq, hash) the key vouched for: checkpoints, prune anchors, applied prune records.

    A prune whose transaction rolled back never wrote its record, so only the records of the
    prunes that lead to the anchor are held against the chain.
    """
    points = [_Point(c.seq, c.hash, checkpoint=True) for c in checkpoints]
    points += [_Point(p.anchor_seq, p.anchor_hash, checkpoint=False) for p in prunes]
    points += [_Point(p.record_seq, p.record_hash, checkpoint=False) for p in path]
    return points


def verify(
    store: Store,
    *,
    sink: CheckpointSink | None,
    public_key: Ed25519PublicKey | None,
    page: int = PAGE,
) -> VerifyReport:
    """Check every record's hash, link and seq, then the chain against what the key signed.

    Checkpoints come from ``sink`` (the copy outside the database, which is what catches a
    truncation or a full rewrite) and from the store's own table; prune and hold statements
    come from ``sink`` only. Each must carry a valid signature by ``public_key``. A chain
    pruned by retention is walked from its anchor, which signed prunes must lead to from the
    start of the chain; checkpoints older than the anchor are compared where a signed prune
    left the same seq. Raises AuditError only when the store cannot be read.
    """
    raw = store.dialect == "sqlite"

    def read(statement: Select[Any]) -> Sequence[Sequence[Any]]:
        with store.session(read_only=True) as session:
            return session.execute(statement).all()

    try:
        external = sink.read() if sink is not None else []
        statements = sink.statements() if sink is not None else []
        prunes = [Pruned.of(s, i) for i, s in enumerate(statements) if s.kind == PRUNE]
        stored = _stored_checkpoints(store)
        with store.session(read_only=True) as session:
            anchor = read_anchor(session)
            unlinked = count_pending(session)
        checkpoints = list({(c.seq, c.signature): c for c in external + stored}.values())
        path, path_problem = _prune_path(prunes, anchor)
        points = _signed_points(checkpoints, prunes, path)
        hashes: dict[int, str] = {}
        after = anchor.seq if anchor is not None else 0
        records = rows(read, raw=raw, page=page, after=after)
        walk = walk_chain(records, anchor, {p.seq for p in points}, hashes)
    except SQLAlchemyError as exc:
        raise AuditError(f"cannot read the audit trail: {exc}") from exc
    except AuditError as exc:  # an unreadable sink line
        return VerifyReport(ok=False, checked=0, problem=str(exc))
    found: list[Found] = [(walk.bad, walk.problem), path_problem]
    for prune in path:
        hashes[prune.anchor_seq] = prune.anchor_hash
    if anchor is not None:
        hashes[anchor.seq] = anchor.hash
    last = None
    if (checkpoints or statements) and public_key is None:
        signed = len(checkpoints) + len(statements)
        found.append((None, f"{signed} signed checkpoints or statements but no public key"))
    elif public_key is not None:
        found.append((None, _bad_signature(checkpoints, statements, public_key)))
        bad, problem, last = _check_points(points, hashes, walk, after)
        found.append((bad, problem))
        found.append(_hold_problem(path, statements))
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
        unlinked=unlinked,
    )
