"""Found by the long battery (seed 7, PostgreSQL): NATS that failed to start stayed down for good.

`amos up`'s keeper thread for NATS restarted it after a SIGKILL; a second SIGKILL came while
that start still waited for the server to be ready, so ``EmbeddedNats.start`` raised its
``BusError`` ("exited with -9"). The keeper caught only ``RuntimeError``: the error ended
the thread, and NATS was never restarted again while every other child carried on.

Here the real ``Supervisor`` keeps the real embedded NATS. The battery hit the window by
chance; the test makes a start fail for certain, through the same path: while NATS is down
the test holds its port, so the restarted server exits before it is ready and
``EmbeddedNats.start`` raises. Then the port is freed, and the keeper must bring NATS back.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from amosflow.errors import AmosError
from amosflow.node._supervisor import Child, NodePlan, Supervisor
from tests.faults.harness import Faults, wait_until

SEED = 7


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisor]:
    # A Temporal address of its own: only NATS is embedded, the child this test is about.
    node = Supervisor(NodePlan(home=tmp_path / "home", temporal_address="127.0.0.1:1"))
    node.plan.home.mkdir()
    try:
        yield node
    finally:
        node.shutdown()


def _recording_failures(child: Child) -> list[Exception]:
    """Let the child's starts run as they do, keeping what each failed one raised."""
    failures: list[Exception] = []
    real_start = child.start

    def start() -> object:
        try:
            return real_start()
        except (AmosError, RuntimeError, OSError) as err:
            failures.append(err)
            raise

    child.start = start  # type: ignore[assignment]
    return failures


def test_nats_whose_restart_failed_is_restarted_again(supervisor: Supervisor) -> None:
    faults = Faults(seed=SEED)
    supervisor.children = supervisor._embedded_children()  # NATS alone
    (child,) = supervisor.children
    assert supervisor.nats is not None
    supervisor._start_child(child)  # started as `amos up` starts it
    failures = _recording_failures(child)
    first = child.process
    assert first is not None
    port = supervisor.nats.port
    faults.note(f"SIGKILL nats (pid {first.pid})")
    first.kill()
    first.wait()
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", port))
    squatter.listen()
    faults.note(f"hold NATS's port {port}")
    threading.Thread(target=supervisor.watch, daemon=True).start()
    try:
        wait_until(lambda: failures, timeout=30, what=f"a restart that fails ({faults})")
    finally:
        squatter.close()
    faults.note(f"free port {port} after {failures[0]!r}")
    wait_until(
        lambda: child.alive() and child.healthy_pid not in {None, first.pid},
        timeout=60,
        what=f"nats running again after a failed restart ({faults})",
    )
