"""Retention: remove the oldest audit records, never past a legal hold, leaving a signed anchor.

``prune`` deletes one contiguous prefix of the chain (records older than a date) and keeps
the seq and hash of the last record it removed in ``audit_anchor``, so ``verify`` can start
there. It stops at the first record whose folder is under an active hold (a ``*`` hold stops
it at once), checks the hashes and links of everything it removes before removing it,
appends an ``audit.prune`` record naming the new anchor, and signs a prune statement into
the checkpoint sink before the transaction commits: without that signature ``verify``
treats the missing head as deleted (ADR 0048). Holds are signed the same way when placed
and released, and a hold counts while either its row or its signed statements say so, so
deleting a hold's row from the database does not lift it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime  # noqa: TC003 - a dataclass field type
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, or_, select, text
from sqlalchemy.exc import SQLAlchemyError

from amosflow.audit._chainer import AUDIT_LOCK_KEY
from amosflow.audit._keys import signature_valid
from amosflow.audit._records import append_linked
from amosflow.audit._statements import HOLD, PRUNE, Pruned, held, hold_body, prune_body, sign
from amosflow.audit._verify import (
    PRUNE_ACTION,
    Anchor,
    read_anchor,
    rows,
    signed_reach,
    walk_chain,
)
from amosflow.errors import (
    AuditError,
    ConflictError,
    Diagnostic,
    NotFoundError,
    ValidationFailedError,
)
from amosflow.store import AuditAnchorRow, AuditHoldRow, AuditRow
from amosflow.store._types import utcnow

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy import Select
    from sqlalchemy.orm import Session

    from amosflow.audit._checkpoints import CheckpointSink
    from amosflow.audit._keys import CheckpointSigner
    from amosflow.store import Store

#: A hold on this folder stops retention for every folder.
ALL_FOLDERS = "*"
#: The actor ``prune`` records when none is given.
RETENTION_ACTOR = "service:retention"
_LOCK = text("SELECT pg_advisory_xact_lock(:key)")
_CHECK_PAGE = 5000
_MAX_FOLDER = 200
_MAX_REASON = 500


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What ``prune`` removed, where the chain now starts, and why it stopped where it did."""

    deleted: int
    first_seq: int | None
    through_seq: int | None
    anchor_seq: int | None
    anchor_hash: str | None
    stopped_by: str
    record_seq: int


@dataclass(frozen=True, slots=True)
class Hold:
    """A legal hold on the audit records of ``folder`` (``*``: every folder)."""

    id: int
    folder: str
    reason: str
    created_by: str
    created_at: datetime
    released_at: datetime | None

    @property
    def active(self) -> bool:
        """Whether the hold still stops retention."""
        return self.released_at is None


def _hold(row: AuditHoldRow) -> Hold:
    return Hold(row.id, row.folder, row.reason, row.created_by, row.created_at, row.released_at)


def _lock(session: Session) -> None:
    """Serialise with appenders: the same lock ``append`` takes (SQLite: BEGIN IMMEDIATE)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_LOCK, {"key": AUDIT_LOCK_KEY})


def _active_holds(session: Session, sink: CheckpointSink) -> list[tuple[int, str]]:
    """(hold id, folder) of every hold in force: its row is active or its statements say so.

    The rows live in the database an attacker may control; the signed statements do not, so
    a hold whose row was deleted, reused or marked released by hand still stops retention.
    """
    statement = select(AuditHoldRow).where(AuditHoldRow.released_at.is_(None))
    rows_ = {(row.id, row.folder) for row in session.scalars(statement)}
    return sorted(rows_ | set(held(sink.statements()).items()))


def _stop(
    session: Session, before: datetime, holds: list[tuple[int, str]], max_seq: int | None
) -> tuple[int | None, str]:
    """The seq of the first record prune must keep (None: none), and why."""
    everywhere = [hold_id for hold_id, folder in holds if folder == ALL_FOLDERS]
    first = session.scalar(select(func.min(AuditRow.seq)))
    if everywhere:
        return first, f"hold {everywhere[0]} covers every folder"
    by_folder: dict[str, int] = {}
    for hold_id, folder in holds:
        by_folder.setdefault(folder, hold_id)
    conditions: list[Any] = [AuditRow.at >= before]
    if by_folder:
        conditions.append(AuditRow.folder.in_(by_folder))
    if max_seq is not None:
        conditions.append(AuditRow.seq > max_seq)
    stop = session.scalar(select(func.min(AuditRow.seq)).where(or_(*conditions)))
    if stop is None:
        return None, "every record is older than the cut-off"
    kept = session.execute(select(AuditRow.at, AuditRow.folder).where(AuditRow.seq == stop)).one()
    if kept.folder in by_folder:
        return stop, f"seq {stop} is in folder {kept.folder}, held by hold {by_folder[kept.folder]}"
    if kept.at >= before:
        return stop, f"seq {stop} is not older than the cut-off"
    return stop, f"seq {stop} has not been shipped yet (after seq {max_seq})"


def _signed_hashes(sink: CheckpointSink, signer: CheckpointSigner) -> dict[int, str]:
    """Seq → hash of every checkpoint in the sink that ``signer``'s key signed."""
    return {
        checkpoint.seq: checkpoint.hash
        for checkpoint in sink.read()
        if checkpoint.key_id == signer.key_id
        and signature_valid(signer.public_key, checkpoint.payload(), checkpoint.signature)
    }


def _check_range(
    session: Session, anchor: Anchor | None, through: int, signed: dict[int, str]
) -> str:
    """Walk the records about to be removed (and the first one kept); return the last hash.

    Raises AuditError when they do not check out, by their own hashes and links or against
    the signed checkpoints in ``signed``: retention must not launder tampering by deleting
    the evidence and signing whatever hash it finds.
    """

    def read(statement: Select[Any]) -> Sequence[Sequence[Any]]:
        return session.execute(statement).all()

    raw = session.get_bind().dialect.name == "sqlite"
    after = anchor.seq if anchor is not None else 0
    found: dict[int, str] = {}
    wanted = {seq for seq in signed if after < seq <= through} | {through}
    records = rows(read, raw=raw, page=_CHECK_PAGE, after=after, through=through + 1)
    walk = walk_chain(records, anchor, wanted, found)
    if walk.bad is not None:
        raise AuditError(
            f"refusing to prune: {walk.problem}; run `amos audit verify` and investigate first"
        )
    if walk.tail < through or through not in found:
        raise AuditError(f"refusing to prune: the chain ends at seq {walk.tail}, before {through}")
    for seq in sorted(seq for seq in wanted if seq in signed):
        if found.get(seq) != signed[seq]:
            raise AuditError(
                f"refusing to prune: seq {seq} differs from its signed checkpoint; run "
                "`amos audit verify` and investigate first"
            )
    return found[through]


def _set_anchor(session: Session, anchor: Anchor, moment: datetime) -> None:
    row = session.get(AuditAnchorRow, 1)
    if row is None:
        session.add(AuditAnchorRow(id=1, seq=anchor.seq, hash=anchor.hash, pruned_at=moment))
    else:
        row.seq, row.hash, row.pruned_at = anchor.seq, anchor.hash, moment
    session.flush()


def _removed_folders(session: Session, after: int, through: int) -> list[str]:
    statement = select(AuditRow.folder).where(AuditRow.seq > after, AuditRow.seq <= through)
    return sorted(set(session.scalars(statement.distinct())))


def prune(
    store: Store,
    *,
    before: datetime,
    signer: CheckpointSigner,
    sink: CheckpointSink,
    now: datetime | None = None,
    actor: str = RETENTION_ACTOR,
    max_seq: int | None = None,
) -> PruneReport:
    """Delete the oldest records with ``at`` before ``before``, as one prefix of the chain.

    Stops at the first record that is not older than ``before``, whose folder is under an
    active hold (any ``*`` hold stops it before the first record), or whose seq is above
    ``max_seq`` (pass the SIEM cursor to keep what was not shipped yet). Everything removed
    is checked first (hash, link, seq) and the new first record must link to it; then the
    anchor is updated and an ``audit.prune`` record appended, and a prune statement signed
    by ``signer`` is written to ``sink`` before the transaction commits. ``before`` must be
    timezone-aware and not after ``now``. Raises AuditError when the chain does not check
    out, the store fails or the sink cannot be written (nothing is removed then).
    """
    if before.tzinfo is None:
        raise ValidationFailedError([Diagnostic("/before", "needs a time zone offset")])
    moment = now or utcnow()
    if before > moment:
        raise ValidationFailedError([Diagnostic("/before", "is in the future")])
    try:
        with store.session() as session:
            _lock(session)
            anchor = previous = read_anchor(session)
            stop, reason = _stop(session, before, _active_holds(session, sink), max_seq)
            tail = session.scalar(select(func.max(AuditRow.seq))) or 0
            through = (tail if stop is None else stop - 1) if tail else 0
            first = (anchor.seq if anchor is not None else 0) + 1
            deleted = 0
            folders: list[str] = []
            if through >= first:
                last_hash = _check_range(session, anchor, through, _signed_hashes(sink, signer))
                folders = _removed_folders(session, first - 1, through)
                result = session.execute(
                    delete(AuditRow).where(AuditRow.seq <= through),
                    execution_options={"synchronize_session": False},
                )
                deleted = int(getattr(result, "rowcount", 0) or 0)
                _set_anchor(session, Anchor(through, last_hash), moment)
                anchor = Anchor(through, last_hash)
            record = append_linked(
                session,
                actor=actor,
                action=PRUNE_ACTION,
                resource="audit:records",
                folder=ALL_FOLDERS,
                details={
                    "before": before.isoformat(),
                    "deleted": deleted,
                    "first_seq": first if deleted else None,
                    "through_seq": through if deleted else None,
                    "anchor_seq": anchor.seq if anchor is not None else None,
                    "anchor_hash": anchor.hash if anchor is not None else None,
                    "stopped_by": reason,
                },
            )
            if deleted and anchor is not None:
                # Signed before the commit: a statement whose prune then rolls back is
                # harmless (verify finds its records still there), a prune without one is not.
                body = prune_body(
                    from_seq=first - 1,
                    from_hash=previous.hash if previous is not None else None,
                    anchor_seq=anchor.seq,
                    anchor_hash=anchor.hash,
                    folders=folders,
                    record_seq=record.seq,
                    record_hash=record.hash,
                )
                sink.write(sign(signer, PRUNE, body))
    except SQLAlchemyError as exc:
        raise AuditError(f"cannot prune the audit trail: {exc}") from exc
    return PruneReport(
        deleted=deleted,
        first_seq=first if deleted else None,
        through_seq=through if deleted else None,
        anchor_seq=anchor.seq if anchor is not None else None,
        anchor_hash=anchor.hash if anchor is not None else None,
        stopped_by=reason,
        record_seq=record.seq,
    )


def adopt_anchor(
    store: Store, *, reason: str, actor: str, signer: CheckpointSigner, sink: CheckpointSink
) -> int:
    """Vouch with the key for an anchor no signed prune leads to; return the record's seq.

    For a chain pruned before prunes were signed (ADR 0048). Nothing can tell such a prune
    from a head cut by someone with the database, so only the key's holder can vouch for
    it, after checking the chain's history and its SIEM or export copies: this signs a prune
    from the last signed anchor (or the start) to the store's anchor, marked ``adopted``
    with ``reason``, and appends an ``audit.anchor_adopt`` record naming both. The records
    it covers are gone, so verify cannot hold their folders against legal holds. Raises
    ConflictError when there is no anchor, or signed prunes already lead to it.
    """
    _check_text("/reason", reason, _MAX_REASON)
    prunes = [Pruned.of(s, i) for i, s in enumerate(sink.statements()) if s.kind == PRUNE]
    reached = signed_reach(prunes)
    try:
        with store.session() as session:
            _lock(session)
            anchor = read_anchor(session)
            if anchor is None:
                raise ConflictError("the chain was never pruned: there is no anchor to adopt")
            if (anchor.seq, anchor.hash) in reached:
                raise ConflictError(f"signed prunes already lead to the anchor at seq {anchor.seq}")
            start = max((point for point in reached if point[0] < anchor.seq), default=(0, ""))
            record = append_linked(
                session,
                actor=actor,
                action="audit.anchor_adopt",
                resource="audit:records",
                folder=ALL_FOLDERS,
                details={
                    "from_seq": start[0],
                    "anchor_seq": anchor.seq,
                    "anchor_hash": anchor.hash,
                    "reason": reason,
                },
            )
            body = prune_body(
                from_seq=start[0],
                from_hash=start[1] or None,
                anchor_seq=anchor.seq,
                anchor_hash=anchor.hash,
                folders=[],
                record_seq=record.seq,
                record_hash=record.hash,
            )
            sink.write(sign(signer, PRUNE, body | {"adopted": reason}))
    except SQLAlchemyError as exc:
        raise AuditError(f"cannot adopt the anchor: {exc}") from exc
    return record.seq


def _check_text(pointer: str, value: str, limit: int) -> None:
    if not value.strip():
        raise ValidationFailedError([Diagnostic(pointer, "must not be empty")])
    if len(value) > limit:
        raise ValidationFailedError([Diagnostic(pointer, f"is longer than {limit} characters")])


def place_hold(
    store: Store,
    *,
    folder: str,
    reason: str,
    actor: str,
    signer: CheckpointSigner,
    sink: CheckpointSink,
) -> int:
    """Hold the audit records of ``folder`` (``*``: all) against retention; return the hold id.

    The hold and its ``audit_holds.place`` record commit together; then a hold statement
    signed by ``signer`` goes to ``sink``, which keeps the hold in force even if its row is
    later deleted. Raises AuditError when the statement cannot be written (the hold then
    stands only in the store: place it again).
    """
    _check_text("/folder", folder, _MAX_FOLDER)
    _check_text("/reason", reason, _MAX_REASON)
    try:
        with store.session() as session:
            row = AuditHoldRow(folder=folder, reason=reason, created_by=actor, created_at=utcnow())
            session.add(row)
            session.flush()
            append_linked(
                session,
                actor=actor,
                action="audit_holds.place",
                resource=f"audit_hold:{row.id}",
                folder=folder,
                details={"hold_id": row.id, "reason": reason},
            )
            hold_id = row.id
    except SQLAlchemyError as exc:
        raise AuditError(f"cannot place the hold: {exc}") from exc
    # After the commit, so the id is final: a signed hold without a row still holds.
    sink.write(sign(signer, HOLD, hold_body(hold_id=hold_id, folder=folder, placed=True)))
    return hold_id


def release_hold(
    store: Store,
    hold_id: int,
    *,
    actor: str,
    signer: CheckpointSigner,
    sink: CheckpointSink,
) -> Hold:
    """Release an active hold and return it; NotFoundError or ConflictError when it is not one.

    A hold is active while its row or its signed statements say so; the release is signed
    into ``sink`` before the row changes, so a failure leaves the hold in force.
    """
    signed = held(sink.statements())
    try:
        with store.session() as session:
            row = session.get(AuditHoldRow, hold_id)
            if row is None and hold_id not in signed:
                raise NotFoundError(f"no audit hold {hold_id}")
            if (row is None or row.released_at is not None) and hold_id not in signed:
                raise ConflictError(f"audit hold {hold_id} was already released")
            folder = signed.get(hold_id) or (row.folder if row is not None else ALL_FOLDERS)
            moment = utcnow()
            if row is not None and row.released_at is None:
                row.released_at = moment
                session.flush()
            append_linked(
                session,
                actor=actor,
                action="audit_holds.release",
                resource=f"audit_hold:{hold_id}",
                folder=folder,
                details={"hold_id": hold_id, "reason": row.reason if row is not None else ""},
            )
            sink.write(sign(signer, HOLD, hold_body(hold_id=hold_id, folder=folder, placed=False)))
            if row is not None:
                return _hold(row)
            return Hold(hold_id, folder, "", actor, moment, moment)
    except SQLAlchemyError as exc:
        raise AuditError(f"cannot release hold {hold_id}: {exc}") from exc


def list_holds(store: Store, *, include_released: bool = False) -> list[Hold]:
    """The active holds (all of them with ``include_released``), oldest first."""
    statement = select(AuditHoldRow).order_by(AuditHoldRow.id)
    if not include_released:
        statement = statement.where(AuditHoldRow.released_at.is_(None))
    try:
        with store.session(read_only=True) as session:
            return [_hold(row) for row in session.scalars(statement)]
    except SQLAlchemyError as exc:
        raise AuditError(f"cannot list the holds: {exc}") from exc
