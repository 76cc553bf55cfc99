"""The runner process: enroll once, then heartbeat, lease, perform and report — outbound only.

It opens no port and talks to nothing but the control plane's runner endpoint over mutual
TLS. A job runs through the same Performer as on a worker; while it runs, the lease is
renewed, and if a renewal is refused (the lease moved on) the job is abandoned, so two
runners never both report one job. Reports carry the lease's fence; a late one is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx

from amosflow.config import env_secret
from amosflow.engine.activities import ArtifactStore
from amosflow.engine.activities.base import Failure, Performer, load_implementations
from amosflow.engine.types import ActionCall
from amosflow.errors import AmosError, AuthenticationError
from amosflow.host import write_private
from amosflow.runners import leases, pki
from amosflow.runners.server import endpoint_url
from amosflow.telemetry import redaction

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from amosflow.config import RunnerSettings
    from amosflow.store import Store

log = logging.getLogger(__name__)
KEY_FILE, CERT_FILE, CA_FILE, META_FILE = "runner.key", "runner.crt", "ca.pem", "runner.json"
HEARTBEAT_EVERY_S = 5.0
#: The zone of the runner `amos up` starts on the node itself.
LOCAL_ZONE = "local"
LONG_POLL_S = 20.0
INLINE_LIMIT = 64 * 1024


@dataclass(frozen=True)
class RunnerIdentity:
    """An enrolled runner's files: key (0600), certificate, the pinned CA, and its endpoint."""

    directory: Path
    runner_id: str
    endpoint: str
    zone: str
    capabilities: tuple[str, ...]

    @classmethod
    def load(cls, directory: Path) -> RunnerIdentity:
        """Read an enrolled runner's identity; a clear error when it is not enrolled."""
        meta_path = directory / META_FILE
        if not meta_path.exists():
            raise AuthenticationError(
                f"no runner is enrolled in {directory}: run `amos runner enroll`"
            )
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        return cls(
            directory=directory,
            runner_id=str(meta["runner_id"]),
            endpoint=str(meta["endpoint"]),
            zone=str(meta["zone"]),
            capabilities=tuple(meta["capabilities"]),
        )

    def tls(self) -> ssl.SSLContext:
        """Client TLS: present our certificate, trust only the platform CA."""
        context = ssl.create_default_context(cafile=str(self.directory / CA_FILE))
        context.load_cert_chain(str(self.directory / CERT_FILE), str(self.directory / KEY_FILE))
        return context


def enroll(api_url: str, token: str, name: str, directory: Path) -> RunnerIdentity:
    """Create a key pair, send a CSR with the one-time token, keep what comes back."""
    key = pki.generate_runner_key()
    body = {"token": token, "csr": pki.make_csr(key, name).decode(), "name": name}
    try:
        response = httpx.post(f"{api_url.rstrip('/')}/api/v1/runners/enroll", json=body, timeout=30)
    except httpx.HTTPError as err:
        raise AmosError(f"cannot reach {api_url}: {err}") from None
    if response.status_code == httpx.codes.UNAUTHORIZED:
        raise AuthenticationError("the enrollment token was refused (unknown, used or expired)")
    if response.is_error:
        raise AmosError(f"enrollment refused: HTTP {response.status_code} {response.text[:300]}")
    return save_identity(directory, key, response.json())


def save_identity(directory: Path, key: pki.RunnerKey, enrolled: dict[str, Any]) -> RunnerIdentity:
    """Keep what enrollment gave: the key (0600), certificate, CA and endpoint."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private(directory / KEY_FILE, pki.key_pem(key), exclusive=False)
    (directory / CERT_FILE).write_text(enrolled["certificate"], encoding="utf-8")
    (directory / CA_FILE).write_text(enrolled["ca"], encoding="utf-8")
    meta = {k: enrolled[k] for k in ("runner_id", "endpoint", "zone", "capabilities")}
    (directory / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return RunnerIdentity.load(directory)


def enroll_local(
    store: Store,
    settings: RunnerSettings,
    directory: Path,
    *,
    name: str = "local",
    zone: str = LOCAL_ZONE,
) -> RunnerIdentity:
    """Enroll a runner of this node directly against the store and the CA.

    `amos up` owns both, so no token crosses a network; the runner still gets its own key
    and certificate and talks to the endpoint over mTLS like any other.
    """
    meta_path = directory / META_FILE
    if meta_path.exists():
        # The node may have moved its endpoint (another port) since the runner enrolled.
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        meta["endpoint"] = endpoint_url(settings)
        meta_path.write_text(json.dumps(meta, indent=2), encoding="utf-8")
        return RunnerIdentity.load(directory)
    ca = pki.PlatformCA.load_or_create(settings.directory / "ca")
    key = pki.generate_runner_key()
    now = datetime.now(UTC)
    with store.session() as session:
        token = pki.create_enrollment_token(
            session,
            zone=zone,
            capabilities=sorted(leases.CAPABILITIES),
            created_by="service:amos-node",
            ttl=timedelta(minutes=5),
            now=now,
        )
        done = pki.enroll(
            session, ca, token=token, csr_pem=pki.make_csr(key, name), name=name, now=now
        )
    enrolled = {
        "certificate": done.cert_pem.decode(),
        "ca": done.ca_pem.decode(),
        "runner_id": done.runner_id,
        "endpoint": endpoint_url(settings),
        "zone": done.zone,
        "capabilities": list(done.capabilities),
    }
    return save_identity(directory, key, enrolled)


def _resolver(delivered: dict[str, str]) -> Callable[[str, str, str], str]:
    """Resolve from what the control plane delivered for this step, else the runner's env."""

    def resolve(name: str, run_id: str, step: str) -> str:
        value = delivered.get(name)
        return value if value is not None else env_secret(name, run_id, step)

    return resolve


class Agent:
    """One runner: one job at a time, leases renewed while it works."""

    def __init__(self, identity: RunnerIdentity, artifacts: Path) -> None:
        self.identity = identity
        load_implementations()
        self.performer = Performer(
            ArtifactStore(artifacts), INLINE_LIMIT, resolve_secret=env_secret
        )
        self.busy = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set; a lost connection is retried, never fatal."""
        redaction.install()
        async with httpx.AsyncClient(
            base_url=self.identity.endpoint, verify=self.identity.tls(), timeout=LONG_POLL_S + 15
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
        await self._perform(client, response.json())

    async def _perform(self, client: httpx.AsyncClient, lease: dict[str, Any]) -> None:
        job_id, fence = str(lease["job_id"]), int(lease["fence"])
        payload = lease["payload"]
        call = ActionCall(**payload["call"])
        self.busy += 1
        delivered = await self._secrets(client, job_id, fence, call)
        performer = dataclasses.replace(self.performer, resolve_secret=_resolver(delivered))
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
            outcome = await work
        except asyncio.CancelledError:
            log.warning("job %s abandoned: its lease moved on", job_id)
            return
        finally:
            delivered.clear()  # held for this step only
            self.busy -= 1
            renewals.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewals
        report: dict[str, Any] = {"job_id": job_id, "fence": fence}
        if isinstance(outcome, Failure):
            report["failure"] = {
                "message": outcome.message,
                "type": outcome.type,
                "retryable": outcome.retryable,
            }
        else:
            report["output"] = outcome
        done = await client.post("/runner/v1/complete", json=report)
        if done.is_error:
            log.warning("report of %s refused: %s", job_id, done.status_code)

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
