"""The floor for durable steps: the hand-written Temporal workflow on the node's server settings.

One embedded Temporal server (the product's settings: eager start, poll rate, SQLite WAL) and
a worker in this process run `bench.baseline` with 20 `core.echo` local activities, with the
payload codec the node uses. Nothing else: no API, no store, no webhook.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import common
from amosflow.engine.client import connect
from amosflow.engine.codec import payload_codec
from amosflow.engine.embedded import EmbeddedTemporal
from common import LOCAL_ECHO

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from pathlib import Path

QUEUE = "bench-floor"


@asynccontextmanager
async def floor(home: Path) -> AsyncIterator[tuple[int, Callable[[str, int], Awaitable[None]]]]:
    """The server's pid and an ``execute`` that runs the baseline workflow to its end."""
    server = EmbeddedTemporal(home / "temporal")
    await asyncio.to_thread(server.start)
    try:
        pid = int(json.loads(server.state_file.read_text(encoding="utf-8"))["pid"])
        client = await connect(server.address, codec=payload_codec(home, create=True))

        async def execute(_case: str, _n: int) -> None:
            await common.run_baseline(client, QUEUE, action=LOCAL_ECHO, local=True, eager=True)

        async with common.baseline_worker(client, home / "artifacts", QUEUE):
            yield pid, execute
    finally:
        await asyncio.to_thread(server.stop)
