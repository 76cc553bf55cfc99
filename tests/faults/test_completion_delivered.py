"""Bug 4 of the battery: a runner's stored completion reaches Temporal once it is back.

In the outside battery a runner reported its outcome while Temporal was down; the report
was stored, telling Temporal failed, the error was ignored, and the step waited out its
five-minute timeout. Here the API's link to Temporal is cut by a proxy just before the
runner reports; once the delivery has failed the link is restored, and the run must end
long before the step's timeout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from amosflow.bus.embedded import EmbeddedNats
from amosflow.config import EngineSettings, RunnerSettings
from amosflow.engine.embedded import EmbeddedTemporal, free_port
from tests.api.conftest import Node, running_node
from tests.api.flows_util import wait_for_end
from tests.faults.harness import Faults, Process, TcpProxy, wait_until
from tests.scenarios.test_runners import (
    AMOS,
    SideEffects,
    _enroll,
    _env,
    _flow,
    _runner_alive,
    _save_and_start,
)

pytestmark = [pytest.mark.temporal]
SEED = 3  # the battery seed that showed it
STEP_TIMEOUT_S = 300


class Records(logging.Handler):
    """The dispatch package's log records, to see a delivery fail."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    logger = logging.getLogger("amosflow.runner.dispatch")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
def faults() -> Faults:
    return Faults(seed=SEED)


@pytest.fixture
def link(temporal_server: EmbeddedTemporal, faults: Faults) -> Iterator[TcpProxy]:
    proxy = TcpProxy(temporal_server.address, faults)
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def proxied_node(
    settings: EngineSettings, tmp_path: Path, nats_server: EmbeddedNats, link: TcpProxy
) -> Iterator[Node]:
    proxied = settings.model_copy(update={"temporal_address": link.address})
    runners = RunnerSettings(port=free_port(), lease_seconds=30.0)
    with running_node(proxied, tmp_path, nats_server, runners=runners) as node:
        yield node


def test_a_completion_stored_while_temporal_is_away_is_delivered_when_it_returns(
    proxied_node: Node,
    link: TcpProxy,
    target: SideEffects,
    *,
    records: Records,
    faults: Faults,
    tmp_path: Path,
) -> None:
    identity = _enroll(proxied_node, tmp_path / "runner-a")
    argv = [AMOS, "runner", "start", "--dir", str(identity.directory)]
    runner = Process("runner", argv, _env(proxied_node), tmp_path / "runner.log", faults).start()
    try:
        wait_until(lambda: _runner_alive(proxied_node, identity.runner_id), what="runner up")
        target.hold_first = True
        flow = _flow(target.url) | {"name": "remote-effect"}
        flow["steps"][0]["timeout"] = f"{STEP_TIMEOUT_S}s"
        run_id = _save_and_start(proxied_node, flow)
        job_id = f"{run_id}/call/0"
        assert target.arrived.wait(60), "the runner never called the target"
        link.cut()  # Temporal is away when the runner reports
        target.release.set()
        wait_until(
            lambda: any(job_id in m for m in records.messages),
            timeout=120,
            what="the completion's delivery to Temporal failed",
        )
        link.restore()
        restored = time.monotonic()
        done = wait_for_end(proxied_node.client, run_id, timeout=90)
        assert done["status"] == "completed", (done, str(faults), records.messages)
        assert time.monotonic() - restored < STEP_TIMEOUT_S / 3
        assert target.done[job_id] == 1
    finally:
        runner.stop()


def test_a_completion_lost_with_the_api_process_is_delivered_by_the_next_one(
    settings: EngineSettings,
    tmp_path: Path,
    nats_server: EmbeddedNats,
    link: TcpProxy,
    target: SideEffects,
    *,
    records: Records,
    faults: Faults,
) -> None:
    """The API stops while the completion still waits for Temporal; the next API delivers it."""
    proxied = settings.model_copy(update={"temporal_address": link.address})
    runners = RunnerSettings(port=free_port(), lease_seconds=30.0)
    identity_dir = tmp_path / "runner-a"
    with running_node(proxied, tmp_path, nats_server, runners=runners) as first:
        identity = _enroll(first, identity_dir)
        argv = [AMOS, "runner", "start", "--dir", str(identity.directory)]
        runner = Process("runner", argv, _env(first), tmp_path / "runner.log", faults).start()
        try:
            wait_until(lambda: _runner_alive(first, identity.runner_id), what="runner up")
            target.hold_first = True
            flow = _flow(target.url)
            flow["steps"][0]["timeout"] = f"{STEP_TIMEOUT_S}s"
            run_id = _save_and_start(first, flow)
            job_id = f"{run_id}/call/0"
            assert target.arrived.wait(60), "the runner never called the target"
            link.cut()
            target.release.set()
            wait_until(
                lambda: any(job_id in m for m in records.messages),
                timeout=120,
                what="the completion's delivery to Temporal failed",
            )
        finally:
            runner.stop()
    # The first API is gone with its retry; Temporal comes back; a new API starts.
    link.restore()
    restored = time.monotonic()
    with running_node(proxied, tmp_path, nats_server, runners=runners) as second:
        done = wait_for_end(second.client, run_id, timeout=90)
        assert done["status"] == "completed", (done, str(faults), records.messages)
        assert time.monotonic() - restored < STEP_TIMEOUT_S / 3
        assert target.done[job_id] == 1
