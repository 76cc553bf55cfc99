"""A clock jump on the runner: its wall clock moves hours forward, then hours back.

The runner process runs under libfaketime, whose offset it reads from a file on every clock
call, so the test moves the runner's wall clock while it works, as an operator's ``date -s``
or a broken NTP would; its monotonic clock (sleeps, timeouts, the renewal interval) runs on,
as on a real host. Leases are measured on the control plane's clock and fenced, so a runner
whose clock lies must neither lose a step nor do one twice. The runner's own log lines carry
its wall time, which shows the jump happened.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from amosflow.bus.embedded import EmbeddedNats
from amosflow.config import EngineSettings
from tests.api.conftest import Node
from tests.faults.checker import TERMINAL, check
from tests.faults.flows import leased_node, runner_post
from tests.faults.harness import Faults, Process, wait_until
from tests.faults.injectors import ClockFile, faketime_env
from tests.scenarios.test_runners import AMOS, SideEffects, _enroll, _env, _runner_alive

pytestmark = [pytest.mark.temporal]
SEED = 3
RUNS = 4
STEPS = ("first", "second")
JUMP_S = 3 * 3600
RENEWALS = 4  # a 3 s lease renewed every second: four renewals outlast it
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+ ", re.MULTILINE)


@pytest.fixture
def faults() -> Faults:
    return Faults(seed=SEED)


@pytest.fixture
def lease_node(
    settings: EngineSettings, tmp_path: Path, nats_server: EmbeddedNats
) -> Iterator[Node]:
    with leased_node(settings, tmp_path, nats_server, lease_seconds=3.0) as node:
        yield node


def _flow(url: str) -> dict[str, Any]:
    call = runner_post(url)
    return {
        "dsl": "amos.flow/v1",
        "name": "clock-battery",
        "steps": [
            {"id": "first", **call},
            {"id": "pause", "type": "wait", "duration": "2s"},
            {"id": "second", **call},
        ],
    }


def _performed(target: SideEffects) -> int:
    with target.lock:
        return len(target.done)


def _lines_at(runner: Process, offset: float, needle: str) -> int:
    """How many of the runner's log lines containing ``needle`` it wrote at ``offset`` s."""
    now = datetime.now(UTC)
    count = 0
    for line in runner.output().splitlines():
        stamp = LOG_TIME.match(line)
        if stamp is None or needle not in line:
            continue
        logged = datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S").astimezone(UTC)
        count += abs((logged - now).total_seconds() - offset) < 600
    return count


def test_a_runner_clock_jumping_hours_forward_and_back_neither_loses_nor_doubles_a_step(
    lease_node: Node, target: SideEffects, tmp_path: Path, faults: Faults
) -> None:
    node = lease_node
    identity = _enroll(node, tmp_path / "runner")
    clock = ClockFile(tmp_path / "runner-clock")
    env = faketime_env(_env(node), clock)
    argv = [AMOS, "runner", "start", "--dir", str(identity.directory)]
    runner = Process("runner", argv, env, tmp_path / "runner.log", faults).start()
    try:
        wait_until(lambda: _runner_alive(node, identity.runner_id), what="runner up")
        saved = node.client.put("/api/v1/flows/clock-battery", json={"document": _flow(target.url)})
        assert saved.status_code == 200, saved.text
        target.hold_first = True  # the first step is in the runner's hands across the jump
        run_ids = []
        for _ in range(RUNS):
            started = node.client.post("/api/v1/runs", json={"flow": "clock-battery", "inputs": {}})
            assert started.status_code == 201, started.text
            run_ids.append(started.json()["run_id"])
        assert target.arrived.wait(60), "the runner never called the target"

        # Forward: the lease is renewed under a clock 3 h ahead, past the lease's length.
        clock.jump(JUMP_S, faults)
        wait_until(
            lambda: _lines_at(runner, JUMP_S, "/runner/v1/renew") >= RENEWALS,
            timeout=30,
            what=f"lease renewals from the runner at +{JUMP_S} s ({faults})",
        )
        target.release.set()
        wait_until(
            lambda: _performed(target) > 1,
            timeout=60,
            what=f"the runner working at +{JUMP_S} s ({faults})",
        )

        # Back: 3 h behind the node, a new runner process cannot trust the endpoint's fresh
        # certificate (not valid yet on its clock): it says so and does nothing meanwhile.
        clock.jump(-JUMP_S, faults)
        runner.kill()
        before = _performed(target)
        runner.start()
        wait_until(
            lambda: _lines_at(runner, -JUMP_S, "certificate is not yet valid") >= 1,
            timeout=30,
            what=f"the runner saying why it cannot connect at -{JUMP_S} s ({faults})",
        )
        assert _performed(target) == before, str(faults)

        clock.jump(0, faults)

        def ended() -> list[dict[str, Any]] | None:
            runs = [node.client.get(f"/api/v1/runs/{r}").json() for r in run_ids]
            return runs if all(r["status"] in TERMINAL for r in runs) else None

        began = time.monotonic()
        runs = wait_until(ended, timeout=90, what=f"every run ended ({faults})")
        with target.lock:
            performed, requested = Counter(target.done), list(target.requests)
        findings = check(runs, performed, requested, STEPS, node.config.store_url)
        assert findings.ok, f"{findings} [{faults}] {runner.output()[-3000:]}"
        assert [r["status"] for r in runs] == ["completed"] * RUNS, (runs, str(faults))
        assert time.monotonic() - began < 90
    finally:
        runner.stop()
