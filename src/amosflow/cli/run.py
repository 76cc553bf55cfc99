"""`amos validate` and `amos run`: check a flow, then run it to the end on the engine."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.live import Live

from amosflow.cli import exits
from amosflow.cli._local import fail
from amosflow.cli.files import read_flow, read_inputs, resolve_library
from amosflow.cli.progress import STYLE, step_table
from amosflow.cli.remote import (
    DEFAULT_API_URL,
    START_WAIT,
    ApiOption,
    RemoteRun,
    report,
    start_and_follow,
)
from amosflow.config import EngineSettings
from amosflow.dsl import iter_steps, parse_flow, validate_inputs
from amosflow.engine.client import RunRequest, open_engine, progress, result_of, start_run
from amosflow.engine.worker import build_worker
from amosflow.errors import AmosError, ValidationFailedError
from amosflow.node import private_umask
from amosflow.telemetry import redaction

FlowPath = Annotated[Path, typer.Argument(help="Path of the flow document (JSON).")]
RunTarget = Annotated[
    Path,
    typer.Argument(
        metavar="FLOW", help="Path of the flow document (JSON); with --remote, a catalog name."
    ),
]
POLL_S = 0.2


def validate(flow_file: FlowPath) -> None:
    """Validate a flow: print `ok`, or each error as `POINTER: message` on stderr (exit 1)."""
    try:
        read_flow(flow_file)
    except ValidationFailedError as err:
        for diagnostic in err.diagnostics:
            typer.echo(str(diagnostic), err=True)
        raise typer.Exit(1) from None
    typer.echo("ok")


def run(  # noqa: PLR0917 - Typer passes every option as an argument
    flow_file: RunTarget,
    input_json: Annotated[
        str | None, typer.Option("--input", help="Run inputs as a JSON object.")
    ] = None,
    input_file: Annotated[
        Path | None, typer.Option("--input-file", help="File holding the run inputs (JSON).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print only the result object as JSON.")
    ] = False,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Use this run id.")] = None,
    remote: Annotated[
        bool, typer.Option("--remote", help="Run the catalog flow FLOW through the API.")
    ] = False,
    version: Annotated[
        str | None,
        typer.Option("--version", help="With --remote: commit, commit prefix or content hash."),
    ] = None,
    environment: Annotated[
        str | None, typer.Option("--environment", help="With --remote: config environment.")
    ] = None,
    folder: Annotated[
        str | None,
        typer.Option(
            "--folder", help="With --remote: the flow's folder, if its name is in several."
        ),
    ] = None,
    wait: Annotated[
        str,
        typer.Option(
            "--wait",
            help="With --remote: how long the start waits for the run's end (at most 120s)"
            " before following its events.",
        ),
    ] = START_WAIT,
    api: ApiOption = DEFAULT_API_URL,
) -> None:
    """Run a flow to its end. Exit 0 completed, 1 failed, 2 invalid flow or inputs."""
    if remote:
        _remote(
            RemoteRun(
                api=api,
                flow=str(flow_file),
                version=version,
                environment=environment,
                run_id=run_id,
                folder=folder,
                wait=wait,
            ),
            input_json,
            input_file,
            as_json=as_json,
        )
    try:
        flow, doc = read_flow(flow_file)
        inputs = validate_inputs(flow, read_inputs(input_json, input_file))
        library = resolve_library(flow, flow_file.resolve().parent)
    except AmosError as err:
        raise fail(err) from None
    request = RunRequest(flow=doc, inputs=inputs, library=library, run_id=run_id or "")
    redaction.install()  # the worker of this process masks the secrets its steps use
    private_umask()  # what its steps write (artifacts, sandbox jobs) is the caller's alone
    console = Console(stderr=True)
    try:
        result = _run_async(_execute(request, EngineSettings(), None if as_json else console))
    except AmosError as err:
        raise fail(err) from None
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False))
    else:
        _print_result(console, result)
    raise typer.Exit(exits.for_status(str(result["status"])))


def _remote(
    request: RemoteRun, input_json: str | None, input_file: Path | None, *, as_json: bool
) -> NoReturn:
    """Start a catalog flow through the API, follow it, print its result and exit."""
    console = Console(stderr=True)
    try:
        inputs = read_inputs(input_json, input_file)
        result = _follow_remote(request, inputs, None if as_json else console)
    except AmosError as err:
        raise report(err) from None
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False))
    else:
        _print_result(console, result)
    raise typer.Exit(exits.for_status(str(result["status"])))


def _follow_remote(
    request: RemoteRun, inputs: dict[str, Any], console: Console | None
) -> dict[str, Any]:
    """Run remotely; with a console, show the step table (document order) as events arrive."""
    if console is None:
        return start_and_follow(request, inputs, lambda _kind, _data: None)
    order: list[str] = []
    steps: dict[str, Any] = {}
    run_id = ""
    with contextlib.ExitStack() as stack:
        live: Live | None = None

        def on_start(started: str, document: dict[str, Any]) -> None:
            nonlocal live, run_id
            run_id = started
            order.extend(step.id for _, step in iter_steps(parse_flow(document).steps))
            live = stack.enter_context(Live(step_table(run_id, order, steps), console=console))

        def on_event(kind: str, data: dict[str, Any]) -> None:
            step = data.get("step")
            if kind.startswith("step.") and isinstance(step, str) and live is not None:
                steps[step] = data
                live.update(step_table(run_id, order, steps))

        result = start_and_follow(request, inputs, on_event, on_start)
    console.print()
    return result


def _run_async(coro: Any) -> Any:
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up, absent on some platforms
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)
    return uvloop.run(coro)


async def _execute(
    request: RunRequest, settings: EngineSettings, console: Console | None
) -> dict[str, Any]:
    async with open_engine(settings) as client, build_worker(client, settings):
        handle = await start_run(client, request, task_queue=settings.task_queue, eager=True)
        if console is None:
            return await result_of(handle)
        waiter = asyncio.ensure_future(result_of(handle))
        order = [step.id for _, step in iter_steps(parse_flow(request.flow).steps)]
        with Live(step_table(handle.id, order, {}), console=console) as live:
            while not waiter.done():
                await asyncio.wait({waiter}, timeout=POLL_S)
                try:
                    live.update(step_table(handle.id, order, await progress(handle)))
                except Exception:  # noqa: S112 - progress is best effort; the result is not
                    continue
        console.print()
        return waiter.result()


def _print_result(console: Console, result: dict[str, Any]) -> None:
    status = str(result["status"])
    console.print(f"[{STYLE.get(status, 'red')}]run {result['run_id']} {status}[/]")
    if result.get("error"):
        error = result["error"]
        console.print(
            f"[red]{error.get('type')}: {error.get('message')} (step {error.get('step')})"
        )
    sys.stdout.write(json.dumps(result.get("output"), indent=2, ensure_ascii=False) + "\n")
