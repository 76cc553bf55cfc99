"""A full disk: the node's home, SQLite store and catalog on a small filesystem that fills up.

The node keeps everything it writes on a size-limited tmpfs. While runs are in flight the
filesystem is filled to its last byte: writes through the API must fail with a clear
problem+json (507 insufficient-storage), never a traceback or a reset connection,
and leave nothing half written (a start refused is no run, or a run failed with a reason).
Once space is freed the node recovers without help: every run ends, each side effect once,
and the audit chain verifies with every run's start and end.

Mounting needs root; where it is impossible the test fails saying so, it never skips.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from amosflow.bus.embedded import EmbeddedNats
from amosflow.config import EngineSettings
from tests.api.conftest import Node, running_node
from tests.api.flows_util import doc
from tests.faults.checker import TERMINAL, check
from tests.faults.flows import save_and_start, two_effects
from tests.faults.harness import Faults, wait_until
from tests.faults.injectors import MountUnavailableError, SmallDisk, fill_disk, free_disk
from tests.scenarios.test_runners import SideEffects

pytestmark = [pytest.mark.temporal]
SEED = 6
RUNS = 4
STEPS = ("first", "second")
DISK_MB = 64
#: Step outputs past this many bytes are written to the artifact store under the home.
INLINE_LIMIT = 1024


def flow(url: str) -> dict[str, Any]:
    """Two side effects, and between them a wait and an output big enough to be an artifact."""
    document = two_effects(url)
    first, pause, second = document["steps"]
    big = {"id": "big", "type": "action", "action": "core.echo"}
    big["with"] = {"value": "x" * (4 * INLINE_LIMIT)}
    document["steps"] = [first, pause | {"duration": "2s"}, big, second]
    return document


@pytest.fixture
def faults() -> Faults:
    return Faults(seed=SEED)


@pytest.fixture
def disk() -> Iterator[SmallDisk]:
    try:
        with SmallDisk.mounted(DISK_MB) as mounted:
            yield mounted
    except MountUnavailableError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def disk_node(
    settings: EngineSettings, disk: SmallDisk, nats_server: EmbeddedNats
) -> Iterator[Node]:
    on_disk = settings.model_copy(update={"home": disk.path / "home", "inline_limit": INLINE_LIMIT})
    with running_node(on_disk, disk.path, nats_server) as node:
        yield node


def _clear_refusal(answer: httpx.Response) -> bool:
    """A 507 insufficient-storage problem+json: the disk, named, not a bare 500."""
    return (
        answer.status_code == 507
        and answer.headers.get("content-type", "").startswith("application/problem+json")
        and answer.json()["type"].endswith(":insufficient-storage")
    )


def _refused_by_disk(records: list[logging.LogRecord]) -> bool:
    for record in records:
        error = record.exc_info[1] if record.exc_info else None
        if "No space left" in f"{record.getMessage()} {error}":
            return True
    return False


def test_a_full_disk_refuses_writes_clearly_and_the_node_recovers_once_space_is_freed(
    disk_node: Node,
    disk: SmallDisk,
    target: SideEffects,
    faults: Faults,
    caplog: pytest.LogCaptureFixture,
) -> None:
    node = disk_node
    caplog.set_level(logging.WARNING)
    assert str(node.config.store_url).startswith(f"sqlite:///{disk.path}")
    run_ids = save_and_start(node.client, flow(target.url), RUNS)
    wait_until(lambda: len(target.requests) >= RUNS, what="every run's first side effect")

    ballast = fill_disk(disk, faults)
    try:
        assert disk.free_bytes() < 4096, disk.free_bytes()
        refused = {
            "start": node.client.post("/api/v1/runs", json={"flow": "pg-battery", "inputs": {}}),
            "save": node.client.put("/api/v1/flows/greet", json={"document": doc()}),
        }
        for what, answer in refused.items():
            assert _clear_refusal(answer), (what, answer.status_code, answer.text, str(faults))
            assert "Traceback" not in answer.text
        read = node.client.get(f"/api/v1/runs/{run_ids[0]}")
        assert read.status_code == 200, read.text  # reads go on
        # The runs go on too, into a step whose output must be written as an artifact.
        wait_until(
            lambda: _refused_by_disk(caplog.records),
            timeout=30,
            what=f"a step's artifact write refused by the full disk ({faults})",
        )
    finally:
        free_disk(ballast, faults)

    began = time.monotonic()

    def ended() -> list[dict[str, Any]] | None:
        runs = [node.client.get(f"/api/v1/runs/{r}").json() for r in run_ids]
        return runs if all(r.get("status") in TERMINAL for r in runs) else None

    runs = wait_until(ended, timeout=90, what=f"every run ended ({faults})")
    # Nothing half written: a refused start is no run, or a run that ended saying why.
    listed = node.client.get("/api/v1/runs", params={"limit": 100}).json()["items"]
    for extra in (r["run_id"] for r in listed if r["run_id"] not in run_ids):
        other = wait_until(
            lambda rid=extra: (
                r
                if (r := node.client.get(f"/api/v1/runs/{rid}").json())["status"] in TERMINAL
                else None
            ),
            timeout=60,
            what="the refused start reconciled",
        )
        if other["status"] == "failed":
            assert other["error"]["message"], other
        else:
            runs.append(other)
    assert node.client.get("/api/v1/flows/greet").status_code == 404  # the refused save
    again = node.client.put("/api/v1/flows/greet", json={"document": doc()})
    assert again.status_code == 200, again.text  # writes work again
    with target.lock:
        performed, requested = Counter(target.done), list(target.requests)
    findings = check(runs, performed, requested, STEPS, node.config.store_url)
    assert findings.ok, f"{findings} [{faults}]"
    assert {r["status"] for r in runs} == {"completed"}, (runs, str(faults))
    assert time.monotonic() - began < 90
