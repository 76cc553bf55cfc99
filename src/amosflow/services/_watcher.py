"""Keep the run index in step with Temporal and announce what runs do on the event bus.

One task per unfinished run waits for its end (one result long-poll, no query); the end, the
step timeline the workflow reports with it and every step event go into the store and the
transactional outbox in one transaction, from which the relay publishes them. After a
restart every unfinished run in the store is followed again, so no ending is missed.

It is also the reconciler of starts (decision 0064): a run recorded but never started (the
API died between the record and the start, or the start's fate was unknown) is unknown to
Temporal; once it is older than ``START_GRACE`` it is failed with the reason, so no run
stays pending forever. At API start ``resume`` follows every pending run, and each follow
looks again every second, which makes the reconciliation periodic too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from temporalio.service import RPCError, RPCStatusCode

from amosflow.bus import subject_for
from amosflow.engine.client import outcome_of
from amosflow.services._progress import RunEvent, diff, final_steps
from amosflow.services._runs import (
    START_GRACE,
    TERMINAL,
    fail_unstarted,
    record_status,
    run_cloud_event,
)
from amosflow.store import outbox
from amosflow.store import runs as run_store

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from amosflow.services._runs import ControlPlane
    from amosflow.store import RunRecord

log = logging.getLogger(__name__)
RETRY_S = 1.0
MAX_FOLLOWED = 64


class RunWatcher:
    """Follows unfinished runs until they end."""

    def __init__(self, cp: ControlPlane, *, max_followed: int = MAX_FOLLOWED) -> None:
        self._cp = cp
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # Each followed run holds two long-polls on Temporal; past a bound the server refuses
        # pollers and memory grows with the backlog, so the rest wait their turn. A run that
        # ended while it waited still gets all of its events, only later.
        self._slots = asyncio.Semaphore(max_followed)
        # One future per run that someone waits on, resolved where its end is recorded, so
        # every waiter of a run in this process shares the one completion long-poll.
        self._ends: dict[str, asyncio.Future[RunRecord]] = {}
        # Starts whose fate was unknown (the call broke off): finished here once Temporal
        # answers, so the recorded run starts without the client's help.
        self._starts: dict[str, Callable[[], Awaitable[None]]] = {}

    def finish_start(self, run_id: str, start: Callable[[], Awaitable[None]]) -> None:
        """Follow ``run_id`` and, while Temporal does not know it, call ``start`` until it does."""
        self._starts[run_id] = start
        self.watch(run_id)

    def watch(self, run_id: str) -> None:
        """Follow ``run_id`` unless it is already followed."""
        if run_id not in self._tasks:
            task = asyncio.create_task(self._follow(run_id), name=f"watch-{run_id}")
            self._tasks[run_id] = task
            task.add_done_callback(lambda _t: self._tasks.pop(run_id, None))

    async def wait(self, run_id: str, patience: timedelta) -> RunRecord | None:
        """The run's recorded end if it comes within ``patience``, else None.

        Reads the store once (an end recorded before the wait began) and otherwise waits on
        the run's shared end; it never asks Temporal anything itself.
        """
        ended = self._ends.get(run_id)
        if ended is None:
            ended = asyncio.get_running_loop().create_future()
            self._ends[run_id] = ended
        with self._cp.store.session(read_only=True) as session:
            record = run_store.get_run(session, run_id)
        if record.status in TERMINAL:
            self._settle(record)
            return record
        self.watch(run_id)
        try:
            return await asyncio.wait_for(asyncio.shield(ended), patience.total_seconds())
        except TimeoutError:
            return None

    def _settle(self, record: RunRecord) -> None:
        ended = self._ends.pop(record.run_id, None)
        if ended is not None and not ended.done():
            ended.set_result(record)

    async def resume(self) -> int:
        """Follow every run the store still thinks is unfinished."""
        count = 0
        with self._cp.store.session() as session:
            for status in ("pending", "running"):
                cursor: str | None = None
                while True:
                    page = run_store.list_runs(session, status=status, cursor=cursor, limit=200)
                    for record in page.items:
                        self.watch(record.run_id)
                        count += 1
                    cursor = page.next_cursor
                    if not cursor:
                        break
        return count

    async def close(self) -> None:
        """Stop following (runs go on; a later start resumes them)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _follow(self, run_id: str) -> None:
        async with self._slots:
            await self._follow_now(run_id)

    async def _follow_now(self, run_id: str) -> None:
        handle = self._cp.client.get_workflow_handle(run_id)
        while True:
            try:
                outcome = await outcome_of(handle)
            except RPCError as err:
                if err.status == RPCStatusCode.NOT_FOUND:
                    if await self._start_again(run_id):
                        continue
                    if self._fail_if_never_started(run_id):
                        return
                    log.info("run %s is not known to Temporal yet", run_id)
                else:
                    log.warning("following run %s failed: %s", run_id, err)
                await asyncio.sleep(RETRY_S)
                continue
            steps = await final_steps(handle, outcome.steps)
            self._record_end(run_id, outcome.result, steps)
            return

    async def _start_again(self, run_id: str) -> bool:
        """Finish a start whose fate was unknown; whether the workflow runs now."""
        start = self._starts.get(run_id)
        if start is None:
            return False
        try:
            await start()
        except RPCError as err:
            log.warning("starting run %s again failed: %s", run_id, err)
            return False
        del self._starts[run_id]
        return True

    def _fail_if_never_started(self, run_id: str) -> bool:
        """Fail a pending run Temporal does not know once it is older than START_GRACE."""
        with self._cp.store.session() as session:
            stored = run_store.get_run(session, run_id)
            if stored.status in TERMINAL:
                self._settle(stored)
                return True
            young = datetime.now(UTC) - stored.created_at < START_GRACE
            if stored.status != "pending" or young or run_id in self._starts:
                return False
            log.warning("run %s was recorded but never started; it is failed", run_id)
            ended = fail_unstarted(
                session, run_id, "the node stopped between recording it and starting it"
            )
        self._settle(ended)
        return True

    def _record_end(self, run_id: str, result: dict[str, Any], steps: dict[str, Any]) -> None:
        """Record the run's end, its timeline and every event of it in one transaction."""
        status = str(result["status"])
        events = [*diff({}, steps, run_id), RunEvent(f"run.{status}", run_id, result)]
        with self._cp.store.session() as session:
            stored = run_store.get_run(session, run_id)
            if stored.status in TERMINAL:  # recorded already (another process, or a restart)
                self._settle(stored)
                return
            ended = record_status(
                session,
                run_id,
                status,
                output=result.get("output"),
                error=result.get("error"),
                ended_at=datetime.now(UTC),
                steps=steps,
            )
            outbox.enqueue_many(
                session,
                ((subject_for(type_, run_id), ce) for type_, ce in map(run_cloud_event, events)),
            )
        self._settle(ended)  # only once the end is committed
