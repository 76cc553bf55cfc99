"""`amos worker`: a standalone worker process for the flow task queue."""

from __future__ import annotations

import asyncio
import logging
import signal

import typer

from amosflow.config import EngineSettings
from amosflow.engine.client import connect
from amosflow.engine.codec import payload_codec
from amosflow.engine.embedded import running_address
from amosflow.engine.worker import build_worker
from amosflow.errors import EngineError
from amosflow.node import private_umask
from amosflow.telemetry import redaction


def worker() -> None:
    """Run the interpreter and the actions for the configured Temporal until stopped."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    redaction.install()  # secrets in use never reach the worker's log
    private_umask()  # artifacts, sandbox jobs and logs it writes are its own alone
    settings = EngineSettings()
    address = settings.temporal_address or running_address(settings.home)
    if address is None:
        typer.echo("error: no Temporal to work for: set AMOS_TEMPORAL_ADDRESS", err=True)
        raise typer.Exit(3)

    async def main() -> None:
        # A worker never creates key material: it stays sealed until the node has made it.
        codec = payload_codec(settings.home, create=False)
        client = await connect(address, settings.temporal_namespace, codec=codec)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with build_worker(client, settings):
            typer.echo(f"worker ready on {address} queue {settings.task_queue}", err=True)
            await stop.wait()
        typer.echo("worker stopped", err=True)

    try:
        asyncio.run(main())
    except EngineError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(3) from None
