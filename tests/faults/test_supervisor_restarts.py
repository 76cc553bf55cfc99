"""Bug 3 of the battery: the supervisor brings children back quickly and independently.

The outside battery (seed 1) saw children stay down for long stretches: the restart counter
never reset, so from the sixth restart on each waited up to 30 s, and restarts ran one at a
time behind the API's 60 s health check. Here the real ``Supervisor`` watches real child
processes that the test SIGKILLs.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from amosflow.node._supervisor import HEALTHY_RESET_S, Child, NodePlan, Supervisor
from tests.faults.harness import Faults, wait_until

SEED = 1


def _sleeper(name: str, healthy: threading.Event | None = None) -> Child:
    """A child running a sleeping interpreter; healthy at once, or when ``healthy`` is set."""

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])

    child = Child(
        name=name,
        start=start,
        healthy=(lambda: True) if healthy is None else healthy.is_set,
        stop=lambda: None,
    )

    def stop() -> None:
        if child.process is not None and child.process.poll() is None:
            child.process.kill()
            child.process.wait()

    child.stop = stop
    return child


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisor]:
    node = Supervisor(NodePlan(home=tmp_path / "home"))
    node.plan.home.mkdir()
    try:
        yield node
    finally:
        node.shutdown()


def _supervise(node: Supervisor, children: list[Child]) -> threading.Thread:
    """Start ``children`` (healthy now) and watch them in a thread, as `amos up` does."""
    node.children = children
    for child in children:
        child.process = child.start()
        child.started_at = time.monotonic()
    watching = threading.Thread(target=node.watch, daemon=True)
    watching.start()
    return watching


def _kill(child: Child, faults: Faults) -> int:
    assert child.process is not None
    pid = child.process.pid
    faults.note(f"SIGKILL {child.name} (pid {pid})")
    child.process.kill()
    child.process.wait()
    return pid


def _restarted(child: Child, old_pid: int) -> bool:
    return child.alive() and child.process is not None and child.process.pid != old_pid


def _awaiting_health(child: Child) -> bool:
    """Started again, and that start not yet healthy (node.json still names the last one)."""
    return child.process is not None and child.healthy_pid != child.process.pid


def test_a_child_that_ran_healthy_restarts_at_once_whatever_its_past_restarts(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    faults = Faults(seed=SEED)
    child = _sleeper("api")
    # Its history: many restarts, the last one's 30 s pause still ahead, then a long
    # healthy run (its start moved back rather than waited for).
    child.restarts = 9
    child.backoff_until = time.monotonic() + 30
    _supervise(supervisor, [child])
    child.started_at = time.monotonic() - HEALTHY_RESET_S - 1
    old = _kill(child, faults)
    wait_until(lambda: _restarted(child, old), timeout=5, what=f"api restarted ({faults})")
    assert child.restarts == 1


def test_one_childs_slow_health_check_does_not_hold_up_anothers_restart(
    supervisor: Supervisor,
) -> None:
    faults = Faults(seed=SEED)
    api_healthy = threading.Event()
    api_healthy.set()
    api, worker = _sleeper("api", api_healthy), _sleeper("worker")
    _supervise(supervisor, [api, worker])
    api_healthy.clear()  # the API's next start is slow to become healthy
    old_api = _kill(api, faults)
    wait_until(lambda: _awaiting_health(api) and _restarted(api, old_api), what="api restarting")
    old_worker = _kill(worker, faults)
    wait_until(lambda: _restarted(worker, old_worker), timeout=5, what=f"worker back ({faults})")
    assert _awaiting_health(api)  # still waiting for its health meanwhile
    api_healthy.set()
    wait_until(lambda: not _awaiting_health(api), what="api healthy")
