"""Link pending records into the chain in batches: the group-commit half of ``append``.

On PostgreSQL an appender commits its record to ``audit_pending`` with its change and takes
no lock, so concurrent commits share PostgreSQL's WAL flushes instead of queueing behind one
lock held across each fsync. Linking (seq, previous hash, hash) happens afterwards, under the
chain's advisory lock, for every committed pending record at once. ``ChainGroup`` makes
the threads of one process share those passes: a committer waits for a pass that started
after its commit, and only one thread per process runs it, so N concurrent committers cost
one linking transaction, not N.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Connection, delete, func, insert, select, text, true

from amosflow.audit._canonical import GENESIS, record_hash
from amosflow.store import AuditAnchorRow, AuditPendingRow, AuditRow

if TYPE_CHECKING:
    from sqlalchemy import Engine, Table
    from sqlalchemy.orm import Session

#: Held until the linking transaction ends, so one chainer at a time reads the tail.
AUDIT_LOCK_KEY = 0x414D4155  # "AMAU"; differs from the migration lock
#: Records linked per transaction: large enough to amortise the commit, small enough to keep
#: the lock (which retention and holds also take) short.
BATCH = 1000
LOCK = text("SELECT pg_advisory_xact_lock(:key)")

_log = logging.getLogger(__name__)
_RECORDS = cast("Table", AuditRow.__table__)
_PENDING = cast("Table", AuditPendingRow.__table__)
_TAIL = select(_RECORDS.c.seq, _RECORDS.c.hash).order_by(_RECORDS.c.seq.desc()).limit(1)
_ANCHOR = select(AuditAnchorRow.seq, AuditAnchorRow.hash).where(AuditAnchorRow.id == 1)
_OLDEST = select(_PENDING.c.id).order_by(_PENDING.c.id).limit(BATCH).scalar_subquery()
# Taken and removed in one round trip: the chain lock keeps every other chainer out.
_TAKE = delete(_PENDING).where(_PENDING.c.id.in_(_OLDEST)).returning(*_PENDING.c)
_TAKEN = _TAKE.cte("taken")
_LAST = _TAIL.subquery("last")
# PostgreSQL: the tail rides along with the taken rows, saving a round trip on every pass.
_TAKE_WITH_TAIL = select(_TAKEN, _LAST.c.seq.label("tail_seq"), _LAST.c.hash.label("tail_hash"))
_TAKE_WITH_TAIL = _TAKE_WITH_TAIL.select_from(_TAKEN.outerjoin(_LAST, true()))
_INSERT = insert(_RECORDS)
_COUNT = select(func.count()).select_from(_PENDING)
_FLUSH = text("SELECT pg_current_xact_id()")
# One round trip for both: the linking commit need not wait for its flush (see link_pending).
_LOCK_NO_FLUSH_WAIT = text(
    "SELECT set_config('synchronous_commit', 'off', true), pg_advisory_xact_lock(:key)"
)


def lock_chain(db: Session | Connection) -> None:
    """Take the chain's lock for the rest of the transaction (SQLite: BEGIN IMMEDIATE did)."""
    dialect = db.dialect if isinstance(db, Connection) else db.get_bind().dialect
    if dialect.name == "postgresql":
        db.execute(LOCK, {"key": AUDIT_LOCK_KEY})


def chain_tail(db: Session | Connection) -> tuple[int, str]:
    """Seq and hash the next record links to: the last record, else the anchor, else genesis."""
    tail = db.execute(_TAIL).first()
    if tail is None:
        # Empty: the first record, or retention removed every record up to its anchor.
        tail = db.execute(_ANCHOR).first()
    return (0, GENESIS) if tail is None else (int(tail.seq), str(tail.hash))


def link_batch(db: Session | Connection) -> int:
    """Link up to ``BATCH`` pending records, oldest id first; the caller holds the chain lock."""
    dialect = db.dialect if isinstance(db, Connection) else db.get_bind().dialect
    if dialect.name != "postgresql":
        pending = sorted(db.execute(_TAKE).all(), key=lambda row: int(row.id))
        if not pending:
            return 0
        seq, prev_hash = chain_tail(db)
    else:
        pending = sorted(db.execute(_TAKE_WITH_TAIL).all(), key=lambda row: int(row.id))
        if not pending:
            return 0
        if pending[0].tail_seq is None:
            seq, prev_hash = chain_tail(db)  # no record: the anchor, or genesis
        else:
            seq, prev_hash = int(pending[0].tail_seq), str(pending[0].tail_hash)
    linked: list[dict[str, Any]] = []
    for row in pending:
        seq += 1
        fields: dict[str, Any] = {
            "seq": seq,
            "at": row.at,
            "actor": row.actor,
            "action": row.action,
            "resource": row.resource,
            "folder": row.folder,
            "outcome": row.outcome,
            "details": row.details,
            "prev_hash": prev_hash,
        }
        prev_hash = record_hash(**fields)
        linked.append(fields | {"hash": prev_hash})
    db.execute(_INSERT, linked)
    return len(pending)


def link_pending(engine: Engine) -> int:
    """Link every committed pending record, a batch per transaction; return how many."""
    total = 0
    while True:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(_LOCK_NO_FLUSH_WAIT, {"key": AUDIT_LOCK_KEY})
            else:
                lock_chain(conn)
            done = link_batch(conn)
        total += done
        if done < BATCH:
            return total


def flush_links(engine: Engine) -> None:
    """Make every link this process can see durable before it leaves the database.

    Linking passes commit without waiting for their WAL flush, so a link seen a moment ago
    could still be lost to a server crash and then be redone in another order. A commit that
    is given a transaction id waits for the flush of everything before it; the checkpointer
    calls this before it signs and the SIEM forwarder before it ships, so nothing outside the
    database ever vouches for a link that a crash could undo.
    """
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(_FLUSH)


def count_pending(db: Session | Connection) -> int:
    """How many committed records wait to be linked."""
    return int(db.execute(_COUNT).scalar_one())


class ChainGroup:
    """One process's linking passes for one engine, shared by every committing thread."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._changed = threading.Condition()
        self._asked = 0
        self._done = 0
        self._running = False

    def link_committed(self) -> None:
        """Return once a pass that started after this call has linked what was committed.

        The caller's record is already durable in ``audit_pending``; a pass that fails is
        logged and leaves the records pending for the next pass, so this never raises.
        """
        with self._changed:
            self._asked += 1
            ticket = self._asked
            while self._done < ticket:
                if self._running:
                    self._changed.wait()
                    continue
                self._running = True
                through = self._asked
                self._changed.release()
                try:
                    self._pass()
                finally:
                    self._changed.acquire()
                    self._running = False
                    self._done = through
                    self._changed.notify_all()

    def _pass(self) -> None:
        try:
            link_pending(self._engine)
        except Exception as exc:  # the change is committed; the record waits
            # The driver's message only: SQLAlchemy's own would print the records' values.
            reason = getattr(exc, "orig", None) or type(exc).__name__
            _log.warning("audit records stay pending until the next linking pass: %s", reason)


_groups: weakref.WeakKeyDictionary[Engine, ChainGroup] = weakref.WeakKeyDictionary()
_groups_lock = threading.Lock()


def chain_group(engine: Engine) -> ChainGroup:
    """The process's ``ChainGroup`` for ``engine``, created on first use."""
    with _groups_lock:
        group = _groups.get(engine)
        if group is None:
            group = _groups[engine] = ChainGroup(engine)
        return group
