"""What several fault tests build alike: a node with short runner leases, a runner step."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from amosflow.bus.embedded import EmbeddedNats
from amosflow.config import EngineSettings, RunnerSettings
from amosflow.engine.embedded import free_port
from tests.api.conftest import Node, running_node


@contextlib.contextmanager
def leased_node(
    settings: EngineSettings, tmp_path: Path, nats: EmbeddedNats, *, lease_seconds: float
) -> Iterator[Node]:
    """A node whose runner leases run out in ``lease_seconds``, and whose runner steps wait
    a minute for a runner that is restarting (a fault test's runner comes back within it)."""
    runners = RunnerSettings(
        port=free_port(), lease_seconds=lease_seconds, dispatch_wait_seconds=60.0
    )
    with running_node(settings, tmp_path, nats, runners=runners) as node:
        yield node


def runner_post(url: str) -> dict[str, Any]:
    """A step (without its id) that POSTs to ``url`` on a runner of zone ``core``."""
    return {
        "type": "action",
        "action": "http.request",
        "runner": {"zone": "core"},
        "timeout": "60s",
        "with": {"method": "POST", "url": url, "json": {}},
    }
