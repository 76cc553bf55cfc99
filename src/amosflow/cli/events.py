"""`amos events …`: follow the CloudEvents that runs and triggers publish on NATS."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer
from nats.errors import Error as NatsError
from nats.js.api import DeliverPolicy

from amosflow.bus import ALL_SUBJECTS, configured_url, connect_bus
from amosflow.cli import exits
from amosflow.config import BusSettings
from amosflow.errors import BusError

app = typer.Typer(help="Follow the event bus.", no_args_is_help=True)


@app.callback()
def events() -> None:
    """Follow the CloudEvents that runs and triggers publish (keeps `tail` a subcommand)."""


def _line(subject: str, payload: bytes) -> str:
    try:
        event: dict[str, Any] = json.loads(payload)
        data = event.get("data")
        run_id = data.get("run_id") if isinstance(data, dict) else None
        if run_id is None and str(event.get("type", "")).startswith(
            ("io.amosflow.run.", "io.amosflow.step.")
        ):
            run_id = event.get("subject")
        fields = (event.get("time"), event.get("type"), subject, run_id)
    except (ValueError, AttributeError):
        fields = (None, "(not a CloudEvent)", subject, None)
    return "  ".join(str(f) if f else "-" for f in fields)


async def _follow(
    url: str, stream: str, subject: str, *, since_start: bool, as_json: bool, count: int | None
) -> None:
    bus = await connect_bus(url)
    try:
        await bus.ensure_stream(stream)
        policy = DeliverPolicy.ALL if since_start else DeliverPolicy.NEW
        try:
            sub = await bus.nc.jetstream().subscribe(
                subject, stream=stream, ordered_consumer=True, deliver_policy=policy
            )
        except NatsError as err:
            raise BusError(f"cannot follow {subject!r}: {err}") from err
        typer.echo(f"following {subject} on {url}", err=True)
        seen = 0
        async for msg in sub.messages:
            typer.echo(
                msg.data.decode(errors="replace") if as_json else _line(msg.subject, msg.data)
            )
            seen += 1
            if count is not None and seen >= count:
                break
    finally:
        await bus.close()


@app.command("tail")
def tail(
    subject: Annotated[
        str, typer.Option("--subject", help="Subject filter, e.g. 'amos.run.*.failed'.")
    ] = ALL_SUBJECTS,
    since_start: Annotated[
        bool, typer.Option("--since-start", help="Replay the stream from its first event.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print each event as its raw CloudEvent JSON.")
    ] = False,
    count: Annotated[
        int | None, typer.Option("--count", min=1, help="Stop after this many events.")
    ] = None,
) -> None:
    """Print events as they arrive: time, type, subject and run id, one line each."""
    settings = BusSettings()
    url = configured_url(settings)
    if url is None:
        err = BusError("no NATS to follow: set AMOS_NATS_URL or start a node with `amos up`")
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(exits.for_error(err))
    try:
        asyncio.run(
            _follow(
                url,
                settings.stream,
                subject,
                since_start=since_start,
                as_json=as_json,
                count=count,
            )
        )
    except BusError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(exits.for_error(err)) from None
    except KeyboardInterrupt:
        raise typer.Exit(exits.OK) from None
