"""`amos audit …`: verify the hash-chained audit trail against its signed checkpoints."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from amosflow import audit
from amosflow.cli import exits
from amosflow.config import StoreSettings
from amosflow.errors import AmosError
from amosflow.store import open_store

app = typer.Typer(help="Check the audit trail.", no_args_is_help=True)
#: A chain that fails verification exits like a failed run: 1.
VERIFY_FAILED = exits.RUN_FAILED


@app.callback()
def audit_group() -> None:
    """Check the audit trail (keeps `verify` a subcommand)."""


def _public_key(path: Path, *, required: bool) -> Ed25519PublicKey | None:
    if not path.exists() and not required:
        return None
    return audit.load_public_key(path)


@app.command("verify")
def verify(
    sink: Annotated[
        Path | None,
        typer.Option("--sink", help="Checkpoint JSON Lines file; default from AMOS_AUDIT_SINK."),
    ] = None,
    public_key: Annotated[
        Path | None,
        typer.Option("--public-key", help="Checkpoint public key; default <home>/audit."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Walk the whole chain and its checkpoints; exit 0 when intact, 1 at the first bad record."""
    settings = audit.AuditSettings()
    try:
        key = _public_key(public_key or settings.public_key_path, required=public_key is not None)
        store = open_store(StoreSettings().url)
        try:
            report = audit.verify(
                store, sink=audit.JsonlSink(sink or settings.sink_path), public_key=key
            )
        finally:
            store.dispose()
    except AmosError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(exits.for_error(err)) from None
    if as_json:
        typer.echo(json.dumps(asdict(report)))
    elif report.ok:
        last = report.last_checkpoint_seq
        typer.echo(f"ok: {report.checked} records, last checkpoint at seq {last or '-'}")
    else:
        typer.echo(f"FAIL at seq {report.first_bad_seq or '-'}: {report.problem}")
    raise typer.Exit(exits.OK if report.ok else VERIFY_FAILED)


@app.command("checkpoint")
def checkpoint() -> None:
    """Sign the chain's current tail now, creating the install's key on first use."""
    settings = audit.AuditSettings()
    try:
        store = open_store(StoreSettings().url)
        try:
            written = audit.open_checkpointer(store, settings).checkpoint()
        finally:
            store.dispose()
    except AmosError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(exits.for_error(err)) from None
    if written is None:
        typer.echo("nothing to checkpoint: the chain is empty or its tail is already signed")
    else:
        typer.echo(f"checkpoint at seq {written.seq} written to {settings.sink_path}")
