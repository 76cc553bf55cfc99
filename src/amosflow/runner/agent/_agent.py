"""The runner process: heartbeat, lease, perform and report — outbound only.

It opens no port and talks to nothing but the control plane's runner endpoint over mutual
TLS. A job runs through the same Performer as on a worker; while it runs, the lease is
renewed, and if a renewal is refused (the lease moved on) the job is abandoned, so two
runners never both report one job. Reports carry the lease's fence; a late one is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
from typing import TYPE_CHECKING, Any

import httpx

from amosflow.config import env_secret
from amosflow.engine.activities import ArtifactStore, Failure, Performer
from amosflow.engine.types import ActionCall
from amosflow.runner.agent._actions import load_actions, misplaced
from amosflow.runner.agent._secrets import step_resolver
from amosflow.telemetry import redaction

if TYPE_CHECKING:
    from pathlib import Path

    from amosflow.runner.agent._identity import RunnerIdentity

log = logging.getLogger(__name__)
HEARTBEAT_EVERY_S = 5.0
LONG_POLL_S = 20.0
#: How long a report also waits for the next job. Short, because a report in flight is not
#: cancelled when the runner stops; after it, the ordinary (cancellable) long-poll waits.
NEXT_JOB_WAIT_S = 1.0
#: Connections stay open between requests (the endpoint keeps them longer than this).
KEEP_ALIVE_S = 60.0
INLINE_LIMIT = 64 * 1024


class Agent:
    """One runner: one job at a time, leases renewed while it works."""

    def __init__(self, identity: RunnerIdentity, artifacts: Path) -> None:
        self.identity = identity
        load_actions(identity.capabilities)
        self.performer = Performer(
            ArtifactStore(artifacts), INLINE_LIMIT, resolve_secret=env_secret
        )
        self.busy = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set; a lost connection is retried, never fatal."""
        redaction.install()
        # One client, one TLS context and a small pool of kept-alive connections: the
        # long-poll and the heartbeat each hold one, and a job's requests reuse them.
        async with httpx.AsyncClient(
            base_url=self.identity.endpoint,
            verify=self.identity.tls(),
            timeout=LONG_POLL_S + 15,
            limits=httpx.Limits(max_keepalive_connections=4, keepalive_expiry=KEEP_ALIVE_S),
        ) as client:
            beats = asyncio.create_task(self._heartbeats(client, stop))
            try:
                while not stop.is_set():
                    try:
                        await self._next(client, stop)
                    except httpx.HTTPError as err:
                        log.warning("runner endpoint unreachable: %s", err)
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), timeout=1)
            finally:
                beats.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beats

    async def _next(self, client: httpx.AsyncClient, stop: asyncio.Event) -> None:
        """Wait for a lease, but give up waiting (not working) as soon as ``stop`` is set."""
        polling = asyncio.create_task(self._one(client, stop))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({polling, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if polling.done():
            polling.result()
            return
        if self.busy:
            await polling  # a job in hand is finished and reported before exiting
            return
        polling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await polling

    async def _heartbeats(self, client: httpx.AsyncClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await client.post("/runner/v1/heartbeat", json={"load": self.busy})
            except httpx.HTTPError as err:
                log.warning("heartbeat failed: %s", err)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=HEARTBEAT_EVERY_S)

    async def _one(self, client: httpx.AsyncClient, stop: asyncio.Event) -> None:
        response = await client.post("/runner/v1/lease", json={"wait_seconds": LONG_POLL_S})
        if response.status_code == httpx.codes.NO_CONTENT or stop.is_set():
            return
        if response.is_error:
            log.warning("lease refused: %s %s", response.status_code, response.text[:200])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=HEARTBEAT_EVERY_S)
            return
        lease: dict[str, Any] | None = response.json()
        while lease is not None:  # a lease in hand is performed and reported, stopping or not
            lease = await self._perform(client, lease, stop)

    async def _perform(
        self, client: httpx.AsyncClient, lease: dict[str, Any], stop: asyncio.Event
    ) -> dict[str, Any] | None:
        """Perform and report one leased job; return the next lease if the report got one."""
        job_id, fence = str(lease["job_id"]), int(lease["fence"])
        payload = lease["payload"]
        call = ActionCall(**payload["call"])
        self.busy += 1  # until the report is answered: a stop must not cut it off
        try:
            try:
                outcome = misplaced(call.action)
                if outcome is None:
                    outcome = await self._attempt(client, lease, call, payload)
            except asyncio.CancelledError:
                log.warning("job %s abandoned: its lease moved on", job_id)
                return None
            report = _report(job_id, fence, outcome)
            if not stop.is_set():
                report["wait_seconds"] = NEXT_JOB_WAIT_S  # the report is the next long-poll
            done = await client.post("/runner/v1/complete", json=report)
            if done.status_code == httpx.codes.UNPROCESSABLE_ENTITY and "wait_seconds" in report:
                del report["wait_seconds"]  # an endpoint from before reports could wait
                done = await client.post("/runner/v1/complete", json=report)
        finally:
            self.busy -= 1
        if done.is_error:
            log.warning("report of %s refused: %s", job_id, done.status_code)
            return None
        following = done.json().get("lease")
        return following if isinstance(following, dict) else None

    async def _attempt(
        self,
        client: httpx.AsyncClient,
        lease: dict[str, Any],
        call: ActionCall,
        payload: dict[str, Any],
    ) -> Any:
        """Perform the leased call with its delivered secrets, renewing the lease meanwhile."""
        job_id, fence = str(lease["job_id"]), int(lease["fence"])
        delivered = await self._secrets(client, job_id, fence, call)
        performer = dataclasses.replace(self.performer, resolve_secret=step_resolver(delivered))
        work = asyncio.create_task(
            redaction.run_step(  # the step's secrets are masked in every log line (0031)
                performer.perform(call, heartbeat=None, config=payload.get("config") or {}),
                tuple(delivered.values()),
            )
        )
        renewals = asyncio.create_task(
            self._renew(client, job_id, fence, float(lease["lease_seconds"]), work)
        )
        try:
            return await work
        finally:
            delivered.clear()  # held for this step only
            renewals.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewals

    async def _secrets(
        self, client: httpx.AsyncClient, job_id: str, fence: int, call: ActionCall
    ) -> dict[str, str]:
        """Ask the control plane, bound to this lease, for the secrets the step refers to.

        A control plane without a vault (or a name it does not hold) leaves the name to the
        runner's own ``AMOS_SECRET_*`` binding; anything else is an error of the step.
        """
        names = sorted(call.secret_names())
        if not names:
            return {}
        body = {"job_id": job_id, "fence": fence, "names": names}
        answer = await client.post("/runner/v1/secrets", json=body)
        if answer.status_code == httpx.codes.SERVICE_UNAVAILABLE:
            return {}
        if answer.is_error:
            log.warning("secrets for %s refused: %s", job_id, answer.status_code)
            return {}
        values = answer.json().get("values", {})
        return {str(k): str(v) for k, v in values.items()} if isinstance(values, dict) else {}

    async def _renew(
        self,
        client: httpx.AsyncClient,
        job_id: str,
        fence: int,
        ttl: float,
        work: asyncio.Task[Any],
    ) -> None:
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                renewed = await client.post(
                    "/runner/v1/renew", json={"job_id": job_id, "fence": fence}
                )
            except httpx.HTTPError:
                continue  # try again; the lease may still hold
            if renewed.status_code == httpx.codes.CONFLICT:
                work.cancel()
                return


def _report(job_id: str, fence: int, outcome: Any) -> dict[str, Any]:
    """The body of a job's report: its fence and its output or failure."""
    report: dict[str, Any] = {"job_id": job_id, "fence": fence}
    if isinstance(outcome, Failure):
        report["failure"] = {
            "message": outcome.message,
            "type": outcome.type,
            "retryable": outcome.retryable,
        }
    else:
        report["output"] = outcome
    return report


async def serve(agent: Agent) -> None:
    """Run ``agent`` until SIGINT or SIGTERM; a job in hand is finished and reported first."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await agent.run(stop)
