"""Push dispatch: a waiting lease long-poll is woken by a queued job, not found by polling.

The endpoint runs in-process behind httpx's ASGI transport, with the runner's real client
certificate put where the mTLS server puts it. Each wake-up test sets the fallback poll to an
hour, so only the notification under test can hand the runner its job within the guard.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import httpx
import pytest

from amosflow.config import RunnerSettings
from amosflow.engine.client import connect
from amosflow.engine.embedded import EmbeddedTemporal, free_port
from amosflow.runner.agent import generate_runner_key, make_csr
from amosflow.runner.dispatch import (
    PlatformCA,
    acquire,
    create_enrollment_token,
    enqueue,
    enroll,
    fleet_server,
    get_job,
    heartbeat,
)
from amosflow.runner.dispatch import _wake as wake
from amosflow.runner.dispatch._endpoint import Fleet, create_endpoint
from amosflow.runner.dispatch._leases import any_takeable
from amosflow.runner.dispatch._tls import PEER_CERT
from amosflow.store import Store, open_store
from tests.runner.dispatch.conftest import TTL, add_runner, at, new_job

if TYPE_CHECKING:
    from temporalio.client import Client

GUARD_S = 20.0  # a hang guard only: a woken long-poll answers at once
AN_HOUR = 3600.0


def _enrolled_runner(store: Store, ca: PlatformCA) -> bytes:
    """Enroll a runner now (the endpoint reads the real clock) and return its certificate."""
    now = datetime.now(UTC)
    with store.session() as session:
        token = create_enrollment_token(
            session,
            zone="dc1",
            capabilities=("core",),
            created_by="user:ops",
            ttl=timedelta(hours=1),
            now=now,
        )
        enrolled = enroll(
            session,
            ca,
            token=token,
            csr_pem=make_csr(generate_runner_key(), "edge-1"),
            name="edge-1",
            now=now,
        )
        heartbeat(session, enrolled.runner_id, load=0, capabilities=["core"], zone="dc1", now=now)
    return enrolled.cert_pem


def _as_runner(app: Any, cert: bytes) -> Any:
    """The endpoint app, with the peer certificate in each request as the TLS server sets it."""

    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope = scope | {"state": {**scope.get("state", {}), PEER_CERT: cert}}
        await app(scope, receive, send)

    return asgi


@pytest.fixture
def ca(tmp_path: Path) -> PlatformCA:
    """A CA made now."""
    return PlatformCA.load_or_create(tmp_path / "ca")


@contextlib.asynccontextmanager
async def _door(
    store: Store,
    ca: PlatformCA,
    home: Path,
    fallback_poll_s: float,
    temporal: Client | None = None,
) -> AsyncIterator[httpx.AsyncClient]:
    """The endpoint on ``store``, reached as an enrolled runner."""
    cert = await asyncio.to_thread(_enrolled_runner, store, ca)
    fleet = Fleet(
        store=store,
        ca=ca,
        client=cast("Client", temporal),  # leases never touch Temporal; reports do
        settings=RunnerSettings(home=home),
        fallback_poll_s=fallback_poll_s,
    )
    transport = httpx.ASGITransport(app=_as_runner(create_endpoint(fleet), cert))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://runner") as client:
            yield client
    finally:
        wake.stop_listening(store)


def _lease(client: httpx.AsyncClient) -> asyncio.Task[httpx.Response]:
    """A runner's long-poll for a job, waiting up to a minute."""
    return asyncio.create_task(client.post("/runner/v1/lease", json={"wait_seconds": 60}))


async def _waiting(signal: wake.JobSignal) -> None:
    """Return once a long-poll waits on ``signal``."""
    async with asyncio.timeout(GUARD_S):
        while not signal.waiting:
            await asyncio.sleep(0.01)  # polling the system under test for a condition


def _queue(store: Store, job_id: str, *, announce: bool = False) -> None:
    with store.session() as session:
        enqueue(session, new_job(job_id, zone="dc1"))
        if announce:
            wake.announce(session)


def test_a_job_queued_in_this_process_wakes_the_waiting_long_poll(
    store: Store, ca: PlatformCA, tmp_path: Path
) -> None:
    """The in-process signal hands a waiting runner a job queued after it began to wait."""

    async def scenario() -> httpx.Response:
        async with _door(store, ca, tmp_path, AN_HOUR) as client:
            polling = _lease(client)
            await _waiting(wake.job_signal(store))
            await asyncio.to_thread(_queue, store, "j1", announce=False)
            wake.job_queued(store)
            async with asyncio.timeout(GUARD_S):
                return await polling

    answer = asyncio.run(scenario())
    assert answer.status_code == httpx.codes.OK, answer.text
    assert (answer.json()["job_id"], answer.json()["fence"]) == ("j1", 1)


@pytest.fixture
def other_process(pg_store: Store) -> Iterator[Store]:
    """A second engine on the same PostgreSQL database: another process's view of it."""
    other = open_store(pg_store.engine.url.render_as_string(hide_password=False))
    try:
        yield other
    finally:
        other.dispose()


def test_a_job_queued_by_another_process_wakes_the_long_poll_through_notify(
    pg_store: Store, other_process: Store, ca: PlatformCA, tmp_path: Path
) -> None:
    """PostgreSQL NOTIFY, sent in the job's transaction, reaches a long-poll in another engine."""

    async def scenario() -> httpx.Response:
        async with _door(pg_store, ca, tmp_path, AN_HOUR) as client:
            polling = _lease(client)
            await _waiting(wake.job_signal(pg_store))
            async with asyncio.timeout(GUARD_S):
                while not wake.is_listening(pg_store):
                    await asyncio.sleep(0.01)  # the listener connects in its own thread
            await asyncio.to_thread(_queue, other_process, "j1", announce=True)
            async with asyncio.timeout(GUARD_S):
                return await polling

    answer = asyncio.run(scenario())
    assert answer.status_code == httpx.codes.OK, answer.text
    assert answer.json()["job_id"] == "j1"
    assert not wake.is_listening(pg_store)


def test_a_lost_notification_costs_one_fallback_poll_not_the_job(
    store: Store, ca: PlatformCA, tmp_path: Path
) -> None:
    """A job queued with no notification at all is still found by the long-poll's next look."""

    async def scenario() -> httpx.Response:
        async with _door(store, ca, tmp_path, 0.05) as client:
            polling = _lease(client)
            await _waiting(wake.job_signal(store))
            await asyncio.to_thread(_queue, store, "j1", announce=False)
            async with asyncio.timeout(GUARD_S):
                return await polling

    answer = asyncio.run(scenario())
    assert answer.status_code == httpx.codes.OK, answer.text
    assert answer.json()["job_id"] == "j1"


def test_a_notification_between_the_look_and_the_wait_is_not_missed() -> None:
    """A waiter that read the generation before a notification returns at once."""
    signal = wake.JobSignal()
    seen = signal.generation
    signal.notify()
    assert asyncio.run(asyncio.wait_for(signal.wait(seen, AN_HOUR), GUARD_S))


def test_a_notification_from_another_thread_wakes_a_waiter() -> None:
    """notify() is safe from any thread: the waiter's loop is woken through call_soon_threadsafe."""
    signal = wake.JobSignal()

    async def scenario() -> bool:
        waiter = asyncio.create_task(signal.wait(signal.generation, AN_HOUR))
        await _waiting(signal)
        threading.Thread(target=signal.notify).start()
        async with asyncio.timeout(GUARD_S):
            return await waiter

    assert asyncio.run(scenario())
    assert signal.waiting == 0


def test_a_wait_without_a_notification_ends_at_its_limit() -> None:
    """The fallback: with nothing queued, the wait gives up and the long-poll looks anyway."""
    signal = wake.JobSignal()
    assert not asyncio.run(signal.wait(signal.generation, 0.01))
    assert signal.waiting == 0


@pytest.mark.temporal
def test_a_report_that_waits_carries_the_runners_next_job(
    store: Store, ca: PlatformCA, tmp_path: Path, temporal_server: EmbeddedTemporal
) -> None:
    """One round trip per job: the report is recorded and its answer holds the next lease."""

    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        temporal = await connect(temporal_server.address)
        async with _door(store, ca, tmp_path, AN_HOUR, temporal) as client:
            await asyncio.to_thread(_queue, store, "j1")
            first = await client.post("/runner/v1/lease", json={"wait_seconds": 0})
            assert first.json()["job_id"] == "j1", first.text
            report = {"job_id": "j1", "fence": 1, "output": "one", "wait_seconds": 60}
            reporting = asyncio.create_task(client.post("/runner/v1/complete", json=report))
            await _waiting(wake.job_signal(store))  # recorded; now waiting for the next job
            await asyncio.to_thread(_queue, store, "j2")
            wake.job_queued(store)
            async with asyncio.timeout(GUARD_S):
                done = await reporting
            stale = await client.post(
                "/runner/v1/complete",
                json={"job_id": "j1", "fence": 2, "output": "late", "wait_seconds": 60},
            )
            return done, stale

    done, stale = asyncio.run(scenario())
    assert done.status_code == httpx.codes.OK, done.text
    assert done.json()["state"] == "completed"
    assert (done.json()["lease"]["job_id"], done.json()["lease"]["fence"]) == ("j2", 1)
    assert stale.status_code == httpx.codes.CONFLICT  # refused before any wait
    with store.session(read_only=True) as session:
        assert get_job(session, "j1").result == "one"
        assert get_job(session, "j2").state == "leased"


@pytest.mark.temporal
def test_a_report_without_a_wait_is_answered_without_a_lease(
    store: Store, ca: PlatformCA, tmp_path: Path, temporal_server: EmbeddedTemporal
) -> None:
    """A stopping runner reports without waiting and is handed nothing, even with work queued."""

    async def scenario() -> httpx.Response:
        temporal = await connect(temporal_server.address)
        async with _door(store, ca, tmp_path, AN_HOUR, temporal) as client:
            await asyncio.to_thread(_queue, store, "j1")
            await asyncio.to_thread(_queue, store, "j2")
            await client.post("/runner/v1/lease", json={"wait_seconds": 0})
            return await client.post(
                "/runner/v1/complete", json={"job_id": "j1", "fence": 1, "output": "one"}
            )

    done = asyncio.run(scenario())
    assert done.status_code == httpx.codes.OK, done.text
    assert done.json() == {"state": "completed", "lease": None}
    with store.session(read_only=True) as session:
        assert get_job(session, "j2").state == "queued"


def test_the_read_before_a_lease_sees_exactly_what_acquire_could_take(store: Store) -> None:
    """any_takeable: wrong zone or capability no; queued yes; leased no, until the lease ends."""
    with store.session() as session:
        add_runner(session, "r1", zone="dc1", capabilities=("core",))

        def takeable(seconds: float) -> bool:
            return any_takeable(session, capabilities=["core"], zone="dc1", now=at(seconds))

        enqueue(session, new_job("elsewhere", zone="dc2"), now=at(1))
        enqueue(session, new_job("http", capability="http"), now=at(1))
        assert not takeable(2)
        enqueue(session, new_job("mine", zone="dc1"), now=at(3))
        assert takeable(4)
        lease = acquire(session, "r1", capabilities=["core"], zone="dc1", now=at(5), ttl=TTL)
        assert lease is not None
        assert lease.job_id == "mine"
        assert not takeable(6)
        assert takeable(5 + TTL.total_seconds())


def test_the_endpoint_server_closes_its_listener_when_it_stops(
    pg_store: Store, tmp_path: Path
) -> None:
    """The LISTEN connection lives as long as the runner endpoint serving it, no longer."""
    settings = RunnerSettings(home=tmp_path, port=free_port())
    server = fleet_server(pg_store, cast("Client", None), settings)

    async def scenario() -> bool:
        serving = asyncio.create_task(server.serve())
        wake.listen(pg_store)  # what the first long-poll does
        async with asyncio.timeout(GUARD_S):
            while not (server.started and wake.is_listening(pg_store)):
                await asyncio.sleep(0.01)  # the server and the listener start on their own
        listening = wake.is_listening(pg_store)
        server.should_exit = True
        async with asyncio.timeout(GUARD_S):
            await serving
        return listening

    assert asyncio.run(scenario())
    assert not wake.is_listening(pg_store)
