"""Found by the long battery (seed 7, PostgreSQL): an API that hung while starting stayed hung.

After a burst of faults the API's restart never answered its health check (it hung in its
start-up, holding a connection the faults had left half-open). The supervisor gave up on
that start after ``HEALTH_TIMEOUT_S`` but left the process running: its keeper saw a live
process, so it never restarted it, and the node had no API until someone stopped it.

Here the real ``Supervisor`` keeps a real child process that the test SIGKILLs and whose next
start never becomes healthy (a shortened health timeout stands for the 60 s one). The keeper
must stop that start and try again, and the child comes back once it can be healthy.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from amosflow.node import _supervisor
from amosflow.node._supervisor import Child, NodePlan, Supervisor
from tests.faults.harness import Faults, wait_until

SEED = 7


@pytest.fixture
def supervisor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Supervisor]:
    monkeypatch.setattr(_supervisor, "HEALTH_TIMEOUT_S", 1.0)
    node = Supervisor(NodePlan(home=tmp_path / "home"))
    node.plan.home.mkdir()
    try:
        yield node
    finally:
        node.shutdown()


def _sleeper(healthy: threading.Event, started: list[int]) -> Child:
    """A child running a sleeping interpreter, healthy while ``healthy`` is set."""

    def start() -> subprocess.Popen[bytes]:
        process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        started.append(process.pid)
        return process

    child = Child(name="api", start=start, healthy=healthy.is_set, stop=lambda: None)

    def stop() -> None:
        if child.process is not None and child.process.poll() is None:
            child.process.kill()
            child.process.wait()

    child.stop = stop
    return child


def test_a_start_that_never_becomes_healthy_is_stopped_and_tried_again(
    supervisor: Supervisor,
) -> None:
    faults = Faults(seed=SEED)
    healthy, started = threading.Event(), []
    healthy.set()
    child = _sleeper(healthy, started)
    supervisor.children = [child]
    child.process = child.start()
    child.started_at = time.monotonic()
    threading.Thread(target=supervisor.watch, daemon=True).start()
    healthy.clear()  # the next start hangs: alive, never healthy
    first = child.process
    faults.note(f"SIGKILL api (pid {first.pid})")
    first.kill()
    first.wait()
    wait_until(lambda: len(started) >= 3, timeout=30, what=f"the hung start tried again ({faults})")
    # Each hung start was stopped, not left running beside its successor.
    assert not any(Path(f"/proc/{pid}").exists() for pid in started[1:-1]), faults
    healthy.set()
    wait_until(
        lambda: child.alive() and child.healthy_pid not in {None, first.pid},
        timeout=60,
        what=f"api healthy again ({faults})",
    )
