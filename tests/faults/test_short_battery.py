"""The short battery: runs with runner steps while the runner is SIGKILLed on a seeded schedule.

The first slice of issue 16's battery. A node with short leases runs a handful of flows of
two runner steps against a counting target; the harness kills and restarts the runner on a
schedule drawn from ``SEED``; then the checker reads the history and names what was broken.
The seed is in every failure message, so a failing schedule can be replayed.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amosflow.bus.embedded import EmbeddedNats
from amosflow.config import EngineSettings
from tests.api.conftest import Node
from tests.faults.checker import TERMINAL, check
from tests.faults.flows import leased_node, runner_post
from tests.faults.harness import Faults, Process, wait_until
from tests.scenarios.test_runners import AMOS, SideEffects, _enroll, _env, _runner_alive

pytestmark = [pytest.mark.temporal]
SEED = 16
RUNS = 6
KILLS = 5
STEPS = ("first", "second")


@pytest.fixture
def battery_node(
    settings: EngineSettings, tmp_path: Path, nats_server: EmbeddedNats
) -> Iterator[Node]:
    with leased_node(settings, tmp_path, nats_server, lease_seconds=2.0) as node:
        yield node


def _flow(url: str) -> dict[str, Any]:
    step = runner_post(url)
    return {
        "dsl": "amos.flow/v1",
        "name": "battery",
        "steps": [{"id": s, **step} for s in STEPS],
    }


def test_runs_survive_runner_kills_with_every_side_effect_once(
    battery_node: Node, target: SideEffects, tmp_path: Path
) -> None:
    faults = Faults(seed=SEED)
    node = battery_node
    identity = _enroll(node, tmp_path / "runner")
    argv = [AMOS, "runner", "start", "--dir", str(identity.directory)]
    runner = Process("runner", argv, _env(node), tmp_path / "runner.log", faults).start()
    try:
        wait_until(lambda: _runner_alive(node, identity.runner_id), what="runner up")
        saved = node.client.put("/api/v1/flows/battery", json={"document": _flow(target.url)})
        assert saved.status_code == 200, saved.text
        run_ids = []
        for _ in range(RUNS):
            started = node.client.post("/api/v1/runs", json={"flow": "battery", "inputs": {}})
            assert started.status_code == 201, started.text
            run_ids.append(started.json()["run_id"])
        spacing = threading.Event()  # never set: the schedule's spacing between faults
        for _ in range(KILLS):
            spacing.wait(faults.dice.uniform(0.5, 2.0))
            runner.kill()
            runner.start()

        def ended() -> list[dict[str, Any]] | None:
            runs = [node.client.get(f"/api/v1/runs/{r}").json() for r in run_ids]
            return runs if all(r["status"] in TERMINAL for r in runs) else None

        began = time.monotonic()
        runs = wait_until(ended, timeout=120, what=f"every run ended ({faults})")
        with target.lock:
            performed, requested = Counter(target.done), list(target.requests)
        findings = check(runs, performed, requested, STEPS, node.config.store_url)
        assert findings.ok, f"{findings} [{faults}]"
        assert [r["status"] for r in runs] == ["completed"] * RUNS, (runs, str(faults))
        assert time.monotonic() - began < 120
    finally:
        runner.stop()
