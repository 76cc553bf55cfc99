"""Child processes that must not outlive the process that started them."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

_PR_SET_PDEATHSIG = 1
# Resolved in the parent: between fork and exec the child may only make this one plain call.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent() -> None:
    """In a forked child, ask Linux to SIGKILL it when its parent dies (a `preexec_fn`).

    Without this, killing `amos up` or `amos run` with SIGKILL would leave the embedded Temporal
    and NATS servers running on the same files, and the next start would fight them. The
    signal follows the thread that forked the child, so start children from a long-lived thread.
    """
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def terminate_group(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """Stop a child started in its own session: SIGTERM to its group, SIGKILL after a grace."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace_s)


def live_state(path: Path) -> dict[str, Any] | None:
    """Read a server's state file, but only while the process it names is still alive."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        os.kill(int(state["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state if isinstance(state, dict) else None


def spawn(command: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start a server in its own session, logging to ``log_path``, dying with this process."""
    with log_path.open("ab") as log:
        return subprocess.Popen(  # noqa: S603 - callers pass a fixed binary, no shell
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - one prctl call, no locks
        )


def await_ready(
    proc: subprocess.Popen[bytes], ready: Callable[[], bool], timeout_s: float
) -> str | None:
    """Wait until ``ready()``; return None then, or why not (the process is stopped by then)."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if proc.poll() is not None:
            return f"exited with {proc.returncode}"
        if time.monotonic() > deadline:
            terminate_group(proc)
            return "did not start in time"
        time.sleep(0.05)  # polling a port the server has not opened yet
    return None
