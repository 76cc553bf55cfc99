"""The CLI's client of the control-plane API: JSON calls, problem+json errors and SSE."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Annotated, Any, Self

import httpx
import typer

from amosflow.cli import exits
from amosflow.errors import (
    AmosError,
    AuthenticationError,
    ConflictError,
    Diagnostic,
    EngineError,
    NotFoundError,
    PermissionDeniedError,
    ValidationFailedError,
)

DEFAULT_API_URL = "http://127.0.0.1:8686"
#: The bearer token the CLI sends: a personal API token or a session token.
TOKEN_ENV = "AMOS_TOKEN"  # noqa: S105 - the name of a variable, not a secret
TIMEOUT_S = 30.0
POLL_S = 0.1
RECORD_WAIT_S = 30.0
#: How long a start waits for the run's end in the same request by default; a run that takes
#: longer is followed over its event stream.
START_WAIT = "25s"
#: The API holds a waiting start at most this long (``POST /runs?wait=`` refuses more).
MAX_WAIT_S = 120.0
TERMINAL = frozenset({"completed", "failed", "cancelled", "timed_out"})

ApiOption = Annotated[
    str,
    typer.Option(
        "--api", envvar="AMOS_API_URL", metavar="URL", help="Base URL of the AMOS FLOW API."
    ),
]
#: Which folder an object is in; needed only when the caller sees its name in several.
FolderOption = Annotated[
    str | None,
    typer.Option(
        "--folder", help="Folder of the object (needed only when the name is in several)."
    ),
]


class RefusedError(ValidationFailedError):
    """The API refused a request as invalid (422); keeps the problem's detail line."""

    def __init__(self, detail: str, diagnostics: list[Diagnostic]) -> None:
        self.detail = detail
        super().__init__(diagnostics)


def problem_error(response: httpx.Response) -> AmosError:
    """Turn an API error answer (problem+json, or anything else) into an error of the tree."""
    try:
        body: Any = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    detail = str(body.get("detail") or f"HTTP {response.status_code} {response.reason_phrase}")
    found = body.get("errors") if isinstance(body.get("errors"), list) else []
    diagnostics = [
        Diagnostic(str(e.get("pointer", "")), str(e.get("detail", "")))
        for e in found
        if isinstance(e, dict)
    ]
    if response.status_code == httpx.codes.UNPROCESSABLE_ENTITY:
        return RefusedError(detail, diagnostics or [Diagnostic("", detail)])
    if response.status_code == httpx.codes.NOT_FOUND:
        return NotFoundError(detail)
    if response.status_code == httpx.codes.CONFLICT:
        return ConflictError(detail)
    if response.status_code == httpx.codes.UNAUTHORIZED:
        return AuthenticationError(f"{detail} (set {TOKEN_ENV} to an API token)")
    if response.status_code == httpx.codes.FORBIDDEN:
        return PermissionDeniedError(detail)
    return AmosError(detail)


def report(err: AmosError) -> typer.Exit:
    """Print an error on stderr (detail, then each `POINTER: message`) and pick the exit code."""
    if isinstance(err, RefusedError) and err.detail not in {str(d) for d in err.diagnostics}:
        typer.echo(f"error: {err.detail}", err=True)
    if isinstance(err, ValidationFailedError):
        for diagnostic in err.diagnostics:
            typer.echo(str(diagnostic), err=True)
    else:
        typer.echo(f"error: {err}", err=True)
    return typer.Exit(exits.for_error(err))


class Api:
    """A synchronous client of one API base URL; every failure is an `AmosError`."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(base_url=self.url, timeout=TIMEOUT_S, headers=headers)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self._client.close()

    def _unreachable(self, err: httpx.TransportError) -> EngineError:
        return EngineError(f"the API is not reachable at {self.url} ({err})")

    def call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        timeout: float = TIMEOUT_S,
    ) -> Any:
        """Send one request and return its JSON answer, or raise the problem as an error."""
        try:
            response = self._client.request(method, path, json=body, params=params, timeout=timeout)
        except httpx.TransportError as err:
            raise self._unreachable(err) from None
        if response.is_error:
            raise problem_error(response)
        return response.json()

    def events(self, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """Follow a Server-Sent Events stream, yielding `(event, data)` until the server ends it."""
        # httpx-sse is still a dev extra in pyproject; importing it here keeps the rest of the
        # CLI working on an install without it.
        from httpx_sse import SSEError, connect_sse  # noqa: PLC0415

        timeout = httpx.Timeout(TIMEOUT_S, read=None)  # a run may stay quiet for a long time
        try:
            with connect_sse(self._client, "GET", path, timeout=timeout) as source:
                if source.response.is_error:
                    source.response.read()
                    raise problem_error(source.response)
                for sse in source.iter_sse():
                    try:
                        data = json.loads(sse.data) if sse.data else {}
                    except ValueError:
                        continue
                    yield sse.event, data if isinstance(data, dict) else {"value": data}
        except httpx.TransportError as err:
            raise self._unreachable(err) from None
        except SSEError as err:
            raise AmosError(f"unexpected answer from {self.url}{path}: {err}") from None


@dataclass(frozen=True)
class RemoteRun:
    """What `amos run --remote` asks the API for, besides the inputs."""

    api: str
    flow: str
    version: str | None = None
    environment: str | None = None
    run_id: str | None = None
    folder: str | None = None
    #: How long the start waits for the run's end before following its event stream.
    wait: str = START_WAIT


def _result(record: dict[str, Any]) -> dict[str, Any]:
    return {key: record.get(key) for key in ("run_id", "status", "output", "error")}


def start_and_follow(
    request: RemoteRun,
    inputs: dict[str, Any],
    on_event: Callable[[str, dict[str, Any]], None],
    on_start: Callable[[str, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Start a run through the API, pass each SSE event on, and return its recorded result.

    The start waits for the run's end in the same request; only a run still going after
    ``request.wait`` is followed over its event stream. ``on_start`` gets the run id and the
    flow document the run pinned, before any event.
    """
    body: dict[str, Any] = {"flow": request.flow, "inputs": inputs}
    body.update(
        (key, value)
        for key, value in (
            ("version", request.version),
            ("environment", request.environment),
            ("run_id", request.run_id),
            ("folder", request.folder),
        )
        if value is not None
    )
    with Api(request.api) as api:
        try:
            started = api.call(
                "POST",
                "/api/v1/runs",
                body=body,
                params={"wait": request.wait},
                timeout=TIMEOUT_S + MAX_WAIT_S,
            )
        except NotFoundError as err:  # an unknown flow or version is an invalid request
            raise RefusedError(str(err), [Diagnostic("/flow", str(err))]) from None
        run_id = str(started["run_id"])
        if on_start is not None:
            pinned = api.call(
                "GET",
                f"/api/v1/flows/{request.flow}",
                params={"version": str(started["flow_version"]), "folder": started["folder"]},
            )
            on_start(run_id, pinned["document"])
        if started.get("status") in TERMINAL:
            if on_start is not None:  # someone shows the steps: give them the recorded timeline
                _replay_steps(api, run_id, on_event)
            return _result(started)
        final: dict[str, Any] | None = None
        while True:
            for kind, data in api.events(f"/api/v1/runs/{run_id}/events"):
                on_event(kind, data)
                if kind.startswith("run."):
                    final = data
            record = _recorded(api, run_id, patience_s=RECORD_WAIT_S if final else 0)
            if record is not None:
                return _result(record)
            if final is not None:
                return _result(final)


def _replay_steps(api: Api, run_id: str, on_event: Callable[[str, dict[str, Any]], None]) -> None:
    """Pass each step of an ended run's recorded timeline on, as its last event."""
    steps = api.call("GET", f"/api/v1/runs/{run_id}").get("steps") or {}
    for step, data in steps.items():
        if isinstance(data, dict):
            kind = "step.failed" if data.get("status") == "failed" else "step.completed"
            on_event(kind, {"step": step, **data})


def _recorded(api: Api, run_id: str, *, patience_s: float) -> dict[str, Any] | None:
    """The run as the API recorded it once it has ended; None if it has not within patience."""
    deadline = time.monotonic() + patience_s
    while True:
        record: dict[str, Any] = api.call("GET", f"/api/v1/runs/{run_id}")
        if record.get("status") in TERMINAL:
            return record
        if time.monotonic() >= deadline:
            return None
        time.sleep(POLL_S)  # the watcher records the end a moment after the stream shows it
