"""The fault harness: the node's processes under the test's hand, and bounded waits.

A fault test starts real processes (``amos runner start``, ``amos up``, the checkpointer),
hurts them the way the outside battery did (SIGKILL, SIGSTOP/SIGCONT, a stopped Temporal)
and then waits for the system to say it recovered, polling a condition with a bound; it
never sleeps to paper over a race. Every fault it injects is written to ``faults`` so a
failing test prints what happened, in order, with the seed of its schedule.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T | None], *, timeout: float = 30.0, what: str = "condition"
) -> T:
    """Poll ``predicate`` until it answers something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not met within {timeout:g} s")
        time.sleep(0.1)  # polling a live system for a condition, not waiting out a race


@dataclass
class Faults:
    """The faults a test injected, in order, for its failure message."""

    seed: int = 0
    injected: list[str] = field(default_factory=list)

    def note(self, what: str) -> None:
        """Record one injected fault."""
        self.injected.append(f"{time.strftime('%H:%M:%S')} {what}")

    def __str__(self) -> str:
        return f"seed {self.seed}: " + "; ".join(self.injected)


@dataclass
class Process:
    """One real child process the harness can start, kill, pause and start again."""

    name: str
    argv: Sequence[str]
    env: dict[str, str]
    log: Path
    faults: Faults
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        """Start it (again), its output appended to ``log``."""
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                list(self.argv), env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        return self

    @property
    def alive(self) -> bool:
        """Whether it runs now."""
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would; waits until it is gone."""
        assert self.popen is not None
        self.faults.note(f"SIGKILL {self.name} (pid {self.popen.pid})")
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=30)

    def pause(self) -> None:
        """SIGSTOP: the process holds its sockets and leases but does nothing."""
        assert self.popen is not None
        self.faults.note(f"SIGSTOP {self.name}")
        os.kill(self.popen.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after ``pause``."""
        assert self.popen is not None
        self.faults.note(f"SIGCONT {self.name}")
        os.kill(self.popen.pid, signal.SIGCONT)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM and wait; SIGKILL if it does not go. Idempotent, for teardown."""
        if self.popen is None or self.popen.poll() is not None:
            return
        os.kill(self.popen.pid, signal.SIGCONT)  # a paused process cannot handle SIGTERM
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()

    def output(self) -> str:
        """What it wrote so far, for a failure message."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""
