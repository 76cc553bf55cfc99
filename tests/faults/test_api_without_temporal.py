"""Bug 3 of the battery: the API comes up without Temporal and is ready once it returns.

In the outside battery a Temporal killed while the API restarted kept the API down: its
start connected to Temporal and exited 3 when it could not, and the supervisor waited. Here
a real API process starts with its link to Temporal cut by a proxy; it must serve /healthz,
answer /readyz 503, and become ready when the link is restored.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from amosflow.bus.embedded import EmbeddedNats
from amosflow.engine.embedded import EmbeddedTemporal, free_port
from tests.faults.harness import Faults, Process, TcpProxy, wait_until

pytestmark = [pytest.mark.temporal]
SEED = 1


@pytest.fixture
def faults() -> Faults:
    return Faults(seed=SEED)


@pytest.fixture
def link(temporal_server: EmbeddedTemporal, faults: Faults) -> Iterator[TcpProxy]:
    proxy = TcpProxy(temporal_server.address, faults)
    try:
        yield proxy
    finally:
        proxy.close()


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.HTTPError:
        return None


def test_the_api_serves_while_temporal_is_away_and_is_ready_when_it_returns(
    tmp_path: Path, link: TcpProxy, nats_server: EmbeddedNats, faults: Faults
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMOS_")} | {
        "AMOS_HOME": str(tmp_path / "home"),
        "AMOS_DATABASE_URL": f"sqlite:///{tmp_path / 'amos.db'}",
        "AMOS_CATALOG_PATH": str(tmp_path / "catalog"),
        "AMOS_TEMPORAL_ADDRESS": link.address,
        "AMOS_NATS_URL": nats_server.url,
        "AMOS_RUNNER_PORT": "0",
    }
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "amosflow.api.app:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    link.cut()  # Temporal is away when the API starts
    api = Process("api", argv, env, tmp_path / "api.log", faults).start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: _status(f"{base}/healthz") == 200 or not api.alive,
            timeout=60,
            what="the API serving",
        )
        assert api.alive, api.output()
        assert _status(f"{base}/readyz") == 503, api.output()
        link.restore()
        wait_until(
            lambda: _status(f"{base}/readyz") == 200,
            timeout=90,
            what=f"the API ready once Temporal is back ({faults})",
        )
    finally:
        api.stop()
    # uvicorn re-raises the SIGTERM it handled; what matters is a clean shutdown.
    assert "Traceback" not in api.output(), api.output()
