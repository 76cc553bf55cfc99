"""Signed checkpoints of the chain, written to the store and to a sink outside it.

A chain alone cannot see its own tail cut off, nor a rewrite that recomputes every hash; a
checkpoint signed with a key the database never holds, kept where a database writer cannot
reach, can.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite

from amosflow.audit._canonical import canonical_value, stamp
from amosflow.audit._chainer import flush_links, link_pending
from amosflow.audit._statements import Statement
from amosflow.errors import AuditError
from amosflow.store import AuditCheckpointRow, AuditRow
from amosflow.store._types import utcnow

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from amosflow.audit._keys import CheckpointSigner
    from amosflow.store import Store

_PAYLOAD_TYPE = "amos.audit.checkpoint/v1"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The chain had ``hash`` at ``seq`` when ``key_id`` signed it at ``at``."""

    seq: int
    hash: str
    at: datetime
    key_id: str
    signature: str

    def payload(self) -> bytes:
        """The canonical bytes the signature covers (everything but the signature)."""
        return canonical_value(
            {
                "type": _PAYLOAD_TYPE,
                "seq": self.seq,
                "hash": self.hash,
                "at": stamp(self.at),
                "key_id": self.key_id,
            }
        ).encode()

    def to_json(self) -> str:
        """One canonical JSON line for a sink."""
        return canonical_value(asdict(self) | {"at": stamp(self.at)})

    @classmethod
    def from_json(cls, line: str) -> Checkpoint:
        """Parse a sink line; raises AuditError when it is not a checkpoint."""
        try:
            raw = json.loads(line)
            return cls(
                seq=int(raw["seq"]),
                hash=str(raw["hash"]),
                at=datetime.fromisoformat(raw["at"]),
                key_id=str(raw["key_id"]),
                signature=str(raw["signature"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise AuditError(f"not a checkpoint line: {line[:80]!r}") from exc


class CheckpointSink(Protocol):
    """Somewhere outside the database that keeps checkpoints and signed statements.

    A file, a WORM bucket, a SIEM: anything the database's writers cannot change.
    """

    def write(self, entry: Checkpoint | Statement) -> None:
        """Store ``entry`` durably before returning."""

    def read(self) -> list[Checkpoint]:
        """Return every checkpoint stored, oldest first."""

    def statements(self) -> list[Statement]:
        """Return every signed statement stored (prunes, holds), oldest first."""


class JsonlSink:
    """A JSON Lines file, appended to and fsynced once per checkpoint or statement."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fd: int | None = None

    def keep_open(self) -> None:
        """Open the file for appending now and keep it open, for a writer about to lose access.

        The checkpointer of a root node opens the sink as root, then becomes a user that may
        read the file but not write it (ADR 0049). Links are not followed.
        """
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            self._fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            raise AuditError(f"cannot open the checkpoint sink {self.path}: {exc}") from exc

    def write(self, entry: Checkpoint | Statement) -> None:
        """Append one line and fsync the file (and its directory when the file is new)."""
        try:
            self._append(entry.to_json() + "\n")
        except OSError as exc:
            raise AuditError(f"cannot write the checkpoint sink {self.path}: {exc}") from exc

    def _append(self, line: str) -> None:
        with self._lock:
            if self._fd is not None:
                os.write(self._fd, line.encode())
                os.fsync(self._fd)
                return
            new = not self.path.exists()
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # 0600 whatever the umask; a node running as root widens it for its API (ADR 0049).
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as out:
                out.write(line)
                out.flush()
                os.fsync(out.fileno())
            if new:
                directory = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(directory)
                finally:
                    os.close(directory)

    def _entries(self) -> list[Checkpoint | Statement]:
        """Parse every complete line; a final line without its newline was never acknowledged."""
        if not self.path.exists():
            return []
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AuditError(f"cannot read the checkpoint sink {self.path}: {exc}") from exc
        entries: list[Checkpoint | Statement] = []
        for line in text.split("\n")[:-1]:
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except ValueError as exc:
                raise AuditError(f"not a checkpoint line: {line[:80]!r}") from exc
            if isinstance(raw, dict) and "type" in raw:
                entries.append(Statement.from_fields(raw))
            else:
                entries.append(Checkpoint.from_json(line))
        return entries

    def read(self) -> list[Checkpoint]:
        """Every checkpoint in the file, oldest first."""
        return [entry for entry in self._entries() if isinstance(entry, Checkpoint)]

    def statements(self) -> list[Statement]:
        """Every signed statement in the file, oldest first."""
        return [entry for entry in self._entries() if isinstance(entry, Statement)]


def _insert_checkpoint(dialect: str) -> Any:
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(AuditCheckpointRow)


class Checkpointer:
    """Signs the chain's tail every ``every_records`` records or ``every_seconds`` seconds.

    Call ``maybe_checkpoint()`` after committing appends (and from a timer if you like);
    ``checkpoint()`` forces one. Safe to share between threads.

    The seconds count from the last *signed* checkpoint as the store has it, not from this
    object's creation: a checkpointer that keeps being restarted (killed before its timer
    ran out) would otherwise never sign anything (decision 0067). With no checkpoint yet they
    count from the oldest record still unsigned.
    """

    def __init__(
        self,
        store: Store,
        signer: CheckpointSigner,
        sink: CheckpointSink,
        *,
        every_records: int = 1000,
        every_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if every_records < 1 or every_seconds <= 0:
            raise ValueError("checkpoint intervals must be positive")
        self.store = store
        self.signer = signer
        self.sink = sink
        self.every_records = every_records
        self.every_seconds = every_seconds
        self._clock = clock
        #: When the last checkpoint was signed, on ``clock``; read from the store at first use.
        self._last_time: float | None = None
        self._lock = threading.Lock()

    def _state(self) -> tuple[int, str | None, int]:
        """Tail seq and hash of the committed chain, and the seq of the newest checkpoint.

        Links any committed record still pending first: one whose appender crashed before
        its linking pass is in the chain, and under a checkpoint, by the next tick.
        """
        link_pending(self.store.engine)
        with self.store.session(read_only=True) as session:
            tail = session.execute(
                select(AuditRow.seq, AuditRow.hash).order_by(AuditRow.seq.desc()).limit(1)
            ).first()
            last = session.scalar(select(func.max(AuditCheckpointRow.seq)))
        flush_links(self.store.engine)  # the tail read above is durable before it is signed
        if tail is None:
            return 0, None, int(last or 0)
        return int(tail.seq), str(tail.hash), int(last or 0)

    def _anchor(self, last: int) -> float:
        """The time of the last signed checkpoint (else of the oldest unsigned record) on ``clock``.

        The store keeps wall-clock times and ``clock`` is monotonic, so the anchor is the
        checkpoint's age carried over: now on ``clock`` minus how long ago it was signed.
        """
        with self.store.session(read_only=True) as session:
            signed = session.scalar(
                select(AuditCheckpointRow.at).where(AuditCheckpointRow.seq == last)
            )
            if signed is None:
                signed = session.scalar(select(AuditRow.at).where(AuditRow.seq == last + 1))
        now = self._clock()
        if signed is None:
            return now
        age = (utcnow() - signed).total_seconds()  # the store hands back aware UTC
        return now - max(age, 0.0)

    def _write(self, seq: int, hash_: str) -> Checkpoint:
        unsigned = Checkpoint(seq, hash_, utcnow(), self.signer.key_id, signature="")
        checkpoint = Checkpoint(
            seq, hash_, unsigned.at, unsigned.key_id, self.signer.sign(unsigned.payload())
        )
        # The sink first: once the store says "checkpointed", the outside copy exists.
        self.sink.write(checkpoint)
        with self.store.session() as session:
            statement = _insert_checkpoint(self.store.dialect).values(
                seq=seq,
                hash=hash_,
                at=checkpoint.at,
                signature=checkpoint.signature,
                key_id=checkpoint.key_id,
            )
            session.execute(statement.on_conflict_do_nothing(index_elements=["seq"]))
        self._last_time = self._clock()
        return checkpoint

    def maybe_checkpoint(self) -> Checkpoint | None:
        """Write a checkpoint if one is due; return it, or None when none was due."""
        with self._lock:
            seq, hash_, last = self._state()
            if hash_ is None or seq <= last:
                return None
            if self._last_time is None:
                self._last_time = self._anchor(last)
            due = seq - last >= self.every_records
            due = due or self._clock() - self._last_time >= self.every_seconds
            return self._write(seq, hash_) if due else None

    def checkpoint(self) -> Checkpoint | None:
        """Checkpoint the current tail now; None when the chain is empty or already covered."""
        with self._lock:
            seq, hash_, last = self._state()
            if hash_ is None or seq <= last:
                return None
            return self._write(seq, hash_)
