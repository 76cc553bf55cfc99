"""Hand a finished job's outcome to Temporal until it takes it.

The runner's report is stored first (fenced, audited); completing the waiting dispatch
activity comes second, and Temporal may be away at that moment. A lost completion would
leave the step waiting for its whole timeout, so a completion Temporal did not take is
retried with a growing pause until it does, or until Temporal says the activity is gone
(NOT_FOUND: it completed already, or gave up and its retry finds the job done). Because the
outcome is stored, the retry survives a restart too: when the endpoint starts, the jobs that
finished within ``REDELIVER_WINDOW`` are delivered again, and a completion Temporal had
taken answers NOT_FOUND and is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from temporalio.service import RPCError, RPCStatusCode

from amosflow.engine.types import ActionResult
from amosflow.runner.dispatch import _jobs as jobs
from amosflow.runner.dispatch._activity import job_failure

if TYPE_CHECKING:
    from temporalio.client import Client

    from amosflow.store import RunnerJobRow, Store

log = logging.getLogger(__name__)
#: Finished jobs whose completion is delivered again when the endpoint starts: a step
#: waiting longer than this has timed out, and its retry finds the job done by itself.
REDELIVER_WINDOW = timedelta(hours=1)
FIRST_PAUSE_S = 0.5
MAX_PAUSE_S = 10.0


class Deliveries:
    """The completions on their way to Temporal, one retrying task per job at most."""

    def __init__(self, client: Client, store: Store) -> None:
        self._client = client
        self._store = store
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def retrying(self) -> int:
        """How many completions wait for Temporal now."""
        return len(self._tasks)

    async def deliver(self, row: RunnerJobRow) -> None:
        """Complete the job's activity now; if Temporal is away, keep trying in the background."""
        if row.job_id in self._tasks:
            return
        if not await self._try(row.job_id, row.task_token, row.result, row.error, row.attempts):
            self._spawn(row, FIRST_PAUSE_S)

    def _spawn(self, row: RunnerJobRow, pause: float) -> None:
        job_id = row.job_id
        if job_id in self._tasks:
            return
        outcome = (row.task_token, row.result, row.error, row.attempts)
        task = asyncio.create_task(self._retry(job_id, pause, *outcome), name=f"deliver-{job_id}")
        self._tasks[job_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(job_id, None))

    async def redeliver_recent(self, *, now: datetime | None = None) -> int:
        """Deliver again every job finished within REDELIVER_WINDOW (at endpoint start)."""
        since = (now or datetime.now(UTC)) - REDELIVER_WINDOW
        rows = await asyncio.to_thread(self._finished_since, since)
        for row in rows:  # in the background: Temporal may be away at this start, too
            self._spawn(row, 0.0)
        return len(rows)

    async def close(self) -> None:
        """Stop retrying (the stored outcomes are delivered again at the next start)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _finished_since(self, since: datetime) -> list[RunnerJobRow]:
        with self._store.session(read_only=True) as session:
            rows = jobs.finished_since(session, since)
            session.expunge_all()
        return rows

    async def _retry(  # noqa: PLR0917 - private, one outcome spread out
        self, job_id: str, pause: float, token: bytes, result: Any, error: Any, attempt: int
    ) -> None:
        while True:
            await asyncio.sleep(pause)
            if await self._try(job_id, token, result, error, attempt):
                return
            pause = min(MAX_PAUSE_S, max(pause, FIRST_PAUSE_S) * 2)

    async def _try(self, job_id: str, token: bytes, result: Any, error: Any, attempt: int) -> bool:
        """One delivery; whether it is settled (taken, or the activity is gone)."""
        handle = self._client.get_async_activity_handle(task_token=token)
        try:
            if error is not None:
                await handle.fail(job_failure(error).to_application_error())
            else:
                await handle.complete(ActionResult(output=result, attempt=attempt))
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                log.info("activity of job %s is gone (%s); its retry will answer", job_id, err)
                return True
            log.warning(
                "completing job %s failed (%s); retrying until Temporal takes it", job_id, err
            )
            return False
        return True
