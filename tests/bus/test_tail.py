"""`amos events tail`: follows the stream and prints events as lines or raw JSON."""

from __future__ import annotations

import asyncio
import json
import selectors
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from typer.testing import CliRunner

from amosflow.bus import EmbeddedNats, cloud_event, connect_bus, subject_for
from amosflow.bus import events as ev
from amosflow.cli import exits
from amosflow.cli.events import app
from amosflow.errors import BusError

WAIT_S = 20.0


async def _publish(url: str, events: list[dict[str, object]]) -> None:
    bus = await connect_bus(url)
    try:
        for event in events:
            await bus.publish(subject_for(str(event["type"]), str(event["subject"])), event)
    finally:
        await bus.close()


def _events(run_id: str, *types: str) -> list[dict[str, object]]:
    return [
        cloud_event(type_, source="/test", subject=run_id, data={"run_id": run_id})
        for type_ in types
    ]


def _readline(stream: IO[str], timeout: float) -> str:
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError("timed out waiting for output")
    return stream.readline()


def test_tail_count_json_prints_the_published_events(
    nats_server: EmbeddedNats, run_id: str, tmp_path: Path
) -> None:
    """`tail --since-start --count 2 --json` prints the two events as their CloudEvent JSON."""
    published = _events(run_id, ev.RUN_STARTED, ev.RUN_COMPLETED)
    asyncio.run(_publish(nats_server.url, published))
    env = {"AMOS_NATS_URL": nats_server.url, "AMOS_HOME": str(tmp_path)}
    args = ["tail", "--subject", f"amos.run.{run_id}.>", "--since-start", "--count", "2", "--json"]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert printed == published


def test_tail_finds_the_embedded_server_of_the_home(nats_server: EmbeddedNats, run_id: str) -> None:
    """Without AMOS_NATS_URL the command follows the server advertised in `<home>/nats.json`."""
    asyncio.run(_publish(nats_server.url, _events(run_id, ev.STEP_COMPLETED)))
    env = {"AMOS_NATS_URL": None, "AMOS_HOME": str(nats_server.home)}
    args = ["tail", "--subject", f"amos.run.{run_id}.>", "--since-start", "--count", "1"]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    _, type_, subject, printed_run = result.stdout.split()
    assert (type_, subject, printed_run) == (
        ev.STEP_COMPLETED,
        f"amos.run.{run_id}.step.completed",
        run_id,
    )


def test_tail_follows_events_published_after_it_starts(
    nats_server: EmbeddedNats, run_id: str, tmp_path: Path
) -> None:
    """A running tail prints a new event as one line: time, type, subject and run id."""
    env = {"AMOS_NATS_URL": nats_server.url, "AMOS_HOME": str(tmp_path)}
    code = "from amosflow.cli.events import app; app(prog_name='amos events')"
    args = ["tail", "--subject", f"amos.run.{run_id}.>", "--count", "1"]
    with subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stderr is not None
            assert _readline(proc.stderr, WAIT_S).startswith("following amos.run.")
            [event] = _events(run_id, ev.RUN_FAILED)
            asyncio.run(_publish(nats_server.url, [event]))
            out, _ = proc.communicate(timeout=WAIT_S)
        finally:
            proc.kill()
    assert proc.returncode == 0
    when, type_, subject, printed_run = out.split()
    assert when == event["time"]
    assert (type_, subject, printed_run) == (ev.RUN_FAILED, f"amos.run.{run_id}.failed", run_id)


def test_tail_without_any_nats_says_so(tmp_path: Path) -> None:
    """No configured URL and no running node is an error that names the fix."""
    env = {"AMOS_NATS_URL": None, "AMOS_HOME": str(tmp_path)}
    started = time.monotonic()
    result = CliRunner().invoke(app, ["tail"], env=env)
    assert result.exit_code == exits.for_error(BusError("no NATS"))
    assert "AMOS_NATS_URL" in result.output
    assert time.monotonic() - started < WAIT_S
