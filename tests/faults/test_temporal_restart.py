"""A restart of the embedded Temporal server while runs are in flight.

The node runs on a Temporal server of its own (the session's is shared by other tests), with
its persistent database file: stopping it mid-run and starting it on the same port and file
must keep every history. Runs are between their two side effects (a timer between them) when
Temporal goes; while it is away the API still reads runs from its store and refuses a start
with a clear 503. Once it is back every run must end, each side effect done once.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from amosflow.bus.embedded import EmbeddedNats
from amosflow.config import EngineSettings
from amosflow.engine.embedded import EmbeddedTemporal
from tests.api.conftest import Node, running_node
from tests.faults.checker import TERMINAL, check
from tests.faults.flows import save_and_start
from tests.faults.flows import two_effects as flow
from tests.faults.harness import Faults, wait_until
from tests.faults.injectors import restart_temporal
from tests.scenarios.test_runners import SideEffects

pytestmark = [pytest.mark.temporal]
SEED = 1
RUNS = 6
STEPS = ("first", "second")


@pytest.fixture
def faults() -> Faults:
    return Faults(seed=SEED)


@pytest.fixture
def own_temporal(tmp_path: Path) -> Iterator[EmbeddedTemporal]:
    """A Temporal server of this test alone, its history in ``temporal.db`` under its home."""
    server = EmbeddedTemporal(tmp_path / "temporal")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_node(
    settings: EngineSettings,
    tmp_path: Path,
    nats_server: EmbeddedNats,
    own_temporal: EmbeddedTemporal,
) -> Iterator[Node]:
    private = settings.model_copy(update={"temporal_address": own_temporal.address})
    with running_node(private, tmp_path, nats_server) as node:
        yield node


def test_runs_in_flight_survive_a_temporal_restart_with_every_side_effect_once(
    own_node: Node, own_temporal: EmbeddedTemporal, target: SideEffects, faults: Faults
) -> None:
    node = own_node
    run_ids = save_and_start(node.client, flow(target.url), RUNS)
    wait_until(lambda: len(target.requests) >= RUNS, what="every run's first side effect")
    assert (own_temporal.home / "temporal.db").is_file()
    outage: dict[str, httpx.Response] = {}

    def while_down() -> None:
        outage["read"] = node.client.get(f"/api/v1/runs/{run_ids[0]}")
        outage["start"] = node.client.post(
            "/api/v1/runs", json={"flow": "pg-battery", "inputs": {}}, timeout=120
        )

    began = time.monotonic()
    restart_temporal(own_temporal, faults, while_down=while_down)
    assert outage["read"].status_code == 200, outage["read"].text
    refused = outage["start"]
    assert refused.status_code == 503, (refused.status_code, refused.text, str(faults))
    assert refused.headers["content-type"].startswith("application/problem+json")
    refused_id = None
    listed = node.client.get("/api/v1/runs", params={"limit": 100}).json()["items"]
    others = [r for r in listed if r["run_id"] not in run_ids]
    if others:  # the refused start was recorded: it must be failed saying why, or finish
        (refused_run,) = others
        refused_id = refused_run["run_id"]

    def ended() -> list[dict[str, Any]] | None:
        runs = [node.client.get(f"/api/v1/runs/{r}").json() for r in run_ids]
        return runs if all(r.get("status") in TERMINAL for r in runs) else None

    runs = wait_until(ended, timeout=120, what=f"every run ended ({faults})")
    with target.lock:
        performed, requested = Counter(target.done), list(target.requests)
    if refused_id is not None:
        refused_run = wait_until(
            lambda: (
                (r := node.client.get(f"/api/v1/runs/{refused_id}").json())["status"] in TERMINAL
                and r
            ),
            timeout=60,
            what="the refused start reconciled",
        )
        if refused_run["status"] == "failed":
            assert refused_run["error"]["type"] == "RunNotStarted", refused_run
        else:
            runs.append(refused_run)
    findings = check(runs, performed, requested, STEPS, node.config.store_url)
    assert findings.ok, f"{findings} [{faults}]"
    assert {r["status"] for r in runs} == {"completed"}, (runs, str(faults))
    assert time.monotonic() - began < 120
