"""`amos runner …`: enrollment tokens and the fleet listing, on the node's store.

Like ``amos admin``, these commands open the store directly (``AMOS_DATABASE_URL`` or the
SQLite file in ``AMOS_HOME``): an operator on the host enrolls runners, and that must work
before any API account exists. The CLI user is the audit actor (``cli:<os user>``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from amosflow.cli._local import fail, local_store, os_actor
from amosflow.config import EngineSettings
from amosflow.errors import AmosError
from amosflow.runner import agent
from amosflow.runner.dispatch import (
    CAPABILITIES,
    FleetEntry,
    fleet,
    issue_enrollment_token,
)

app = typer.Typer(help="Enroll runners and look at the fleet.", no_args_is_help=True)
token_app = typer.Typer(help="One-time runner enrollment tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create(
    zone: Annotated[str, typer.Option("--zone", help="Network zone the runner will serve.")],
    capability: Annotated[
        list[str],
        typer.Option(
            "--capability",
            help=f"What the runner may run (repeatable): {', '.join(sorted(CAPABILITIES))}.",
        ),
    ],
    ttl_hours: Annotated[
        float, typer.Option("--ttl-hours", help="Hours until the unused token expires.")
    ] = 24.0,
) -> None:
    """Create a one-time enrollment token; it is printed once and stored only as a hash."""
    now = datetime.now(UTC)
    try:
        with local_store() as store:
            token = issue_enrollment_token(
                store,
                zone=zone,
                capabilities=capability,
                created_by=os_actor(),
                ttl=timedelta(hours=ttl_hours),
                now=now,
            )
    except AmosError as err:
        raise fail(err) from None
    # The token alone on stdout, so `TOKEN=$(amos runner token create …)` works.
    typer.echo(token)
    expires = (now + timedelta(hours=ttl_hours)).isoformat(timespec="seconds")
    typer.echo(
        f"enrolls one runner in zone {zone} for {', '.join(sorted(set(capability)))}; "
        f"expires {expires}; it is not shown again",
        err=True,
    )


def _listing(row: FleetEntry) -> dict[str, Any]:
    beat = row.last_heartbeat_at
    return {
        "id": row.id,
        "name": row.name,
        "zone": row.zone,
        "capabilities": list(row.capabilities),
        "status": row.status,
        "last_heartbeat_at": beat.isoformat(timespec="seconds") if beat else None,
        "load": row.load,
        "max_jobs": row.max_jobs,
    }


@app.command("ls")
def ls(
    zone: Annotated[str | None, typer.Option("--zone", help="Only runners of this zone.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the listing as JSON.")] = False,
) -> None:
    """List the runners: name, zone, capabilities, status, last heartbeat and load."""
    try:
        with local_store() as store:
            found = [_listing(row) for row in fleet(store, now=datetime.now(UTC), zone=zone)]
    except AmosError as err:
        raise fail(err) from None
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    header = ("NAME", "ZONE", "CAPABILITIES", "STATUS", "LAST HEARTBEAT", "LOAD", "ID")
    rows = [
        (
            r["name"],
            r["zone"],
            ",".join(r["capabilities"]),
            r["status"],
            r["last_heartbeat_at"] or "never",
            f"{r['load']}/{r['max_jobs']}",
            r["id"],
        )
        for r in found
    ]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        typer.echo(
            "  ".join(f"{cell:<{width}}" for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def _runner_dir(directory: Path | None) -> Path:
    return directory or EngineSettings().home / "runner"


DirOption = Annotated[
    Path | None,
    typer.Option("--dir", help="Where the runner keeps its key and certificate (0700)."),
]


@app.command("enroll")
def enroll_command(
    url: Annotated[str, typer.Option("--url", help="The control plane's API base URL.")],
    token: Annotated[str, typer.Option("--token", help="The one-time enrollment token.")],
    name: Annotated[str, typer.Option("--name", help="A name for this runner.")] = "runner",
    directory: DirOption = None,
) -> None:
    """Swap a one-time token for a client certificate; the key never leaves this machine."""
    target = _runner_dir(directory)
    try:
        identity = agent.enroll(url, token, name, target)
    except AmosError as err:
        raise fail(err) from None
    typer.echo(f"enrolled {identity.runner_id} (zone {identity.zone}) -> {identity.endpoint}")


@app.command("start")
def start_command(directory: DirOption = None) -> None:
    """Run jobs for the control plane until Ctrl-C or SIGTERM; listens on no port."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        identity = agent.RunnerIdentity.load(_runner_dir(directory))
        worker = agent.Agent(identity, EngineSettings().artifacts_dir)
    except AmosError as err:
        raise fail(err) from None
    typer.echo(f"runner {identity.runner_id} working for {identity.endpoint}", err=True)
    asyncio.run(agent.serve(worker))
