"""The embedded nats-server: starts from the wheel, serves JetStream, stops without a trace."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from amosflow.bus import Ack, EmbeddedNats, configured_url, connect_bus, running_url
from amosflow.config import BusSettings


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _jetstream_round_trip(url: str) -> Ack:
    bus = await connect_bus(url)
    try:
        await bus.ensure_stream("PROBE")
        return await bus.publish("amos.probe", {"id": "probe-1"})
    finally:
        await bus.close()


def test_starts_serves_jetstream_and_stops_with_no_process_left(tmp_path: Path) -> None:
    """A fresh server accepts a JetStream publish, then leaves no process or state file behind."""
    server = EmbeddedNats(tmp_path)
    with server:
        pid = server.pid
        assert pid is not None
        assert server.url.startswith("nats://127.0.0.1:")
        assert asyncio.run(_jetstream_round_trip(server.url)) == Ack(seq=1, duplicate=False)
        assert (tmp_path / "nats").is_dir()
        assert (tmp_path / "nats.log").stat().st_size > 0
    assert not _alive(pid)
    assert not (tmp_path / "nats.json").exists()


def test_state_file_advertises_the_running_server(nats_server: EmbeddedNats) -> None:
    """Other processes find the embedded server through `<home>/nats.json`."""
    state = json.loads((nats_server.home / "nats.json").read_text(encoding="utf-8"))
    assert state == {"url": nats_server.url, "pid": nats_server.pid}
    assert running_url(nats_server.home) == nats_server.url
    assert configured_url(BusSettings(home=nats_server.home)) == nats_server.url


def test_configured_url_prefers_the_environment(tmp_path: Path) -> None:
    """`AMOS_NATS_URL` wins over the embedded server, and nothing running means no URL."""
    assert configured_url(BusSettings(home=tmp_path)) is None
    external = BusSettings(home=tmp_path, nats_url="nats://10.0.0.1:4222")
    assert configured_url(external) == "nats://10.0.0.1:4222"


def test_listens_on_loopback_without_monitoring(nats_server: EmbeddedNats) -> None:
    """The command line binds 127.0.0.1 and never opens the HTTP monitoring port."""
    cmd = nats_server.command()
    assert cmd[cmd.index("--addr") + 1] == "127.0.0.1"
    assert not {"-m", "--http_port", "-ms", "--https_port"} & set(cmd)


def test_restart_keeps_the_stream_and_its_duplicate_window(tmp_path: Path) -> None:
    """After a restart the stored event is still there, so its re-publish is still dropped."""
    server = EmbeddedNats(tmp_path)
    with server:
        asyncio.run(_jetstream_round_trip(server.url))
    with server:
        assert asyncio.run(_jetstream_round_trip(server.url)) == Ack(seq=1, duplicate=True)
