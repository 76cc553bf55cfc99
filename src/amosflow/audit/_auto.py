"""Checkpoint the chain automatically, in a process of its own that holds the signing key.

The processes that append records (the API, the workers) never hold ``checkpoint.key``: a
separate ``amos audit checkpointer``, run as another OS user that owns the key and the sink,
polls the tail and signs it every N records or T seconds (ADR 0019).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from amosflow.errors import AmosError, AuditError

if TYPE_CHECKING:
    import threading

    from amosflow.audit._checkpoints import Checkpointer

_log = logging.getLogger(__name__)


def poll_interval(every_seconds: float) -> float:
    """How often to look at the tail for a checkpoint cadence of ``every_seconds``: ≤ 1 s."""
    return min(1.0, every_seconds)


def run_checkpoints(checkpointer: Checkpointer, stop: threading.Event, poll_seconds: float) -> None:
    """Call ``maybe_checkpoint()`` every ``poll_seconds`` until ``stop`` is set, then sign the tail.

    Each poll costs two indexed reads (the chain's tail and the newest checkpoint). A failed
    poll (the database or the sink unavailable) is logged and retried on the next one; the
    final checkpoint of the unsigned tail, written once ``stop`` is set, raises AuditError
    when it cannot be written, so the caller can exit non-zero.
    """
    if poll_seconds <= 0:
        raise ValueError("poll_seconds must be positive")
    while not stop.wait(poll_seconds):
        try:
            written = checkpointer.maybe_checkpoint()
        except (AmosError, SQLAlchemyError) as exc:
            _log.warning("audit checkpoint failed, retrying: %s", exc)
            continue
        if written is not None:
            _log.info("audit checkpoint at seq %d", written.seq)
    try:
        final = checkpointer.checkpoint()
    except SQLAlchemyError as exc:
        raise AuditError(f"cannot write the final audit checkpoint: {exc}") from exc
    if final is not None:
        _log.info("final audit checkpoint at seq %d", final.seq)
