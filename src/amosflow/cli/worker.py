"""`amos worker`: a standalone worker process for the flow task queue."""

from __future__ import annotations

import asyncio
import signal

import typer

from amosflow.config import EngineSettings
from amosflow.engine.client import connect
from amosflow.engine.embedded import running_address
from amosflow.engine.worker import build_worker
from amosflow.errors import EngineError


def worker() -> None:
    """Run the interpreter and the actions for the configured Temporal until stopped."""
    settings = EngineSettings()
    address = settings.temporal_address or running_address(settings.home)
    if address is None:
        typer.echo("error: no Temporal to work for: set AMOS_TEMPORAL_ADDRESS", err=True)
        raise typer.Exit(3)

    async def main() -> None:
        client = await connect(address, settings.temporal_namespace)
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
