"""`amos secret …`: write and manage vault secrets through the API; values are never shown."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from amosflow.cli.remote import DEFAULT_API_URL, Api, ApiOption, FolderOption, report
from amosflow.errors import AmosError, Diagnostic, ValidationFailedError

app = typer.Typer(help="Manage vault secrets (values are write-only).", no_args_is_help=True)
SECRETS = "/api/v1/secrets"


def _read_value(from_stdin: bool) -> str:
    """The value from standard input (one trailing newline dropped) or a no-echo prompt."""
    if from_stdin:
        value = sys.stdin.read()
        value = value.removesuffix("\n").removesuffix("\r")
    else:
        value = str(typer.prompt("Value", hide_input=True, confirmation_prompt=True))
    if not value:
        raise ValidationFailedError([Diagnostic("/value", "the value is empty")])
    return value


def _line(meta: dict[str, Any]) -> str:
    return (
        f"{meta['name']}\tfolder={meta['folder']}\tversion={meta['version']}"
        f"\tkek={meta['kek_id']}#{meta['kek_version']}\tupdated={meta['updated_at']}"
    )


@app.command("set")
def set_secret(
    name: Annotated[str, typer.Argument(help="Name of the secret, as in ${secrets.NAME}.")],
    value_stdin: Annotated[
        bool, typer.Option("--value-stdin", help="Read the value from standard input.")
    ] = False,
    folder: FolderOption = None,
    api: ApiOption = DEFAULT_API_URL,
) -> None:
    """Create a secret or add a new version; the value comes from stdin or a hidden prompt."""
    try:
        body: dict[str, Any] = {"value": _read_value(value_stdin)}
        if folder is not None:
            body["folder"] = folder
        with Api(api) as client:
            meta = client.call("PUT", f"{SECRETS}/{name}", body=body)
    except AmosError as err:
        raise report(err) from None
    typer.echo(_line(meta))


@app.command("ls")
def list_secrets(
    folder: Annotated[str | None, typer.Option("--folder", help="Only this folder.")] = None,
    api: ApiOption = DEFAULT_API_URL,
) -> None:
    """List the secrets' metadata (never values)."""
    try:
        with Api(api) as client:
            found = client.call("GET", SECRETS, params={"folder": folder} if folder else None)
    except AmosError as err:
        raise report(err) from None
    for meta in found:
        typer.echo(_line(meta))


@app.command("rm")
def remove_secret(
    name: Annotated[str, typer.Argument(help="Name of the secret to delete.")],
    folder: FolderOption = None,
    api: ApiOption = DEFAULT_API_URL,
) -> None:
    """Delete a secret and destroy the ciphertext of all its versions."""
    try:
        with Api(api) as client:
            params = {"folder": folder} if folder else None
            client.call("DELETE", f"{SECRETS}/{name}", params=params)
    except AmosError as err:
        raise report(err) from None
    typer.echo(f"deleted {name}")


@app.command("rotate")
def rotate(
    codec: Annotated[
        bool,
        typer.Option("--codec", help="Rotate the Temporal payload codec's key instead of the KEK."),
    ] = False,
    api: ApiOption = DEFAULT_API_URL,
) -> None:
    """Rotate the key-encryption key and re-wrap every stored data key (or the codec key)."""
    try:
        with Api(api) as client:
            result = client.call(
                "POST", f"{SECRETS}/codec/rotate" if codec else f"{SECRETS}/rotate"
            )
    except AmosError as err:
        raise report(err) from None
    if codec:
        typer.echo(f"payload codec key {result['key_id']} is current; {result['keys']} key(s) kept")
        return
    typer.echo(
        f"key ring {result['kek_id']} now at version {result['kek_version']}; "
        f"{result['rewrapped']} data key(s) re-wrapped"
    )
