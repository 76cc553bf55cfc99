"""The outbox relay: moves events committed with a run's state onto JetStream, in its own loop.

A run only ever writes its events to the transactional outbox, so publishing can neither block
nor fail it. Each claim and each settlement is a short transaction of its own and nothing is
held open while a publish waits (on SQLite that would hold the one write lock); a row
published but not yet marked (crash, lost connection, a second relay) goes out again and
JetStream drops the copy by its ``Nats-Msg-Id`` (decision 0012).

A pass publishes its rows pipelined (``Bus.publish_many``): all are written in order before
any acknowledgement is awaited. They are stored in that order; only when one of them fails
(a timeout, a lost connection) can later ones of the same pass already be stored, and the
failed one then follows them when it is retried (decision 0068).

After every reconnect (NATS may have restarted with a damaged store) the stream is checked
against the relay's ledger before anything else is published (decision 0072).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Final

from amosflow.bus._ledger import StreamLedger, check_stream
from amosflow.errors import BusError
from amosflow.store import outbox

if TYPE_CHECKING:
    from amosflow.bus._publisher import Bus
    from amosflow.store import OutboxRow, Store

BATCH: Final = 100
BACKOFF_BASE_S: Final = 0.5
BACKOFF_MAX_S: Final = 60.0

_log = logging.getLogger(__name__)


def backoff(attempts: int) -> float:
    """Seconds to wait before the next try of a row that failed ``attempts`` times."""
    return float(min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** max(attempts - 1, 0)))


class OutboxRelay:
    """Publishes pending outbox rows in order and marks each one published or failed."""

    def __init__(self, store: Store, bus: Bus, *, batch: int = BATCH) -> None:
        self.store = store
        self.bus = bus
        self.batch = batch
        self._paused_until = 0.0
        self._due: dict[int, float] = {}  # rejected row id -> when it may be tried again
        self.ledger = StreamLedger()
        self._checked: int | None = None  # the reconnect count the stream was last checked at

    def _claim(self) -> list[OutboxRow]:
        with self.store.session() as session:
            return outbox.claim_pending(session, self.batch)

    def _settle(self, published: list[int], failed: list[tuple[int, str]]) -> None:
        with self.store.session() as session:
            outbox.mark_published(session, published)
            for id_, error in failed:
                outbox.mark_failed(session, id_, error)

    async def run_once(self) -> int:
        """Publish what is pending and due now, and return how many rows went out."""
        now = time.monotonic()
        if not self.bus.connected or now < self._paused_until:
            # Leave the rows untouched: an outage must not use up their attempts.
            return 0
        if self._checked != self.bus.reconnects and not await self._check_stream():
            return 0
        rows = await asyncio.to_thread(self._claim)
        due = [row for row in rows if self._due.get(row.id, 0.0) <= now]
        answers = (
            await self.bus.publish_many([(row.subject, row.event) for row in due]) if due else []
        )
        published: list[int] = []
        failed: list[tuple[int, str]] = []
        outage = False
        for row, answer in zip(due, answers, strict=True):
            if not isinstance(answer, BusError):
                self.ledger.stored(answer)
                self._due.pop(row.id, None)
                published.append(row.id)  # stored, even when an earlier one was not
            elif not answer.retryable:
                failed.append((row.id, str(answer)))
                self._due[row.id] = time.monotonic() + backoff(row.attempts + 1)
            elif not outage:
                # The first casualty of an outage counts the attempt and pauses the relay;
                # the rest keep theirs, so an outage cannot use them up.
                outage = True
                failed.append((row.id, str(answer)))
                self._paused_until = time.monotonic() + backoff(row.attempts + 1)
        if published or failed:
            await asyncio.to_thread(self._settle, published, failed)
        return len(published)

    async def _check_stream(self) -> bool:
        """Check (and repair) the stream after a (re)connect; say what was lost. False: not now."""
        reconnects = self.bus.reconnects
        try:
            said = await check_stream(self.bus, self.ledger)
        except BusError as err:
            _log.warning("event stream not checked yet: %s", err)
            return False
        for line in said:
            _log.warning("event bus: %s", line)
        self._checked = reconnects
        return True

    async def run_forever(self, stop: asyncio.Event, interval: float = 0.2) -> None:
        """Relay until ``stop`` is set; a failed pass is logged and tried again."""
        while not stop.is_set():
            try:
                sent = await self.run_once()
            except Exception:
                _log.exception("outbox relay pass failed; retrying")
                sent = 0
            if sent >= self.batch:
                continue  # more may be waiting: go again at once
            wait = max(interval, self._paused_until - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)
