"""Real MCP servers for the gateway's tests, and helpers to define and start them."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amosflow.engine.embedded import free_port
from amosflow.host import await_ready, spawn, terminate_group

if TYPE_CHECKING:
    from collections.abc import Iterator

NOTES = Path(__file__).with_name("notes.py")


def stdio_document(name: str, state: Path, **extra: Any) -> dict[str, Any]:
    """A definition of the notes server, started over stdio with its state in ``state``."""
    return {
        "name": name,
        "transport": "stdio",
        "command": [sys.executable, str(NOTES), str(state)],
        **extra,
    }


def http_document(name: str, url: str, **extra: Any) -> dict[str, Any]:
    """A definition of a notes server reached over streamable HTTP."""
    return {"name": name, "transport": "http", "url": url, **extra}


def calls(state: Path) -> list[dict[str, Any]]:
    """Every call that reached the server keeping ``state``."""
    log = state / "calls.jsonl"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def http_notes(state: Path) -> Iterator[str]:
    """A notes server over streamable HTTP on loopback; yields its endpoint URL."""
    state.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc: subprocess.Popen[bytes] = spawn(
        [sys.executable, str(NOTES), str(state), "--http", str(port)], state / "server.log"
    )
    why = await_ready(proc, lambda: _listening(port), 30)
    assert why is None, f"the MCP server {why}: {(state / 'server.log').read_text()}"
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        terminate_group(proc)
