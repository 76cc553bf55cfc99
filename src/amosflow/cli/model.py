"""`amos model …`: model definitions for AI steps, in the catalog behind the API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from amosflow.ai import ModelDefinition
from amosflow.cli.remote import DEFAULT_API_URL, Api, ApiOption, report
from amosflow.errors import AmosError, Diagnostic, ValidationFailedError

app = typer.Typer(help="Model definitions for AI steps.", no_args_is_help=True)
MODELS = "/api/v1/models"


def _read(path: Path) -> dict[str, Any]:
    """A definition file, checked here so a bad one is refused before anything is sent."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        ModelDefinition.model_validate(document)
    except (OSError, ValueError) as err:
        if isinstance(err, ValidationError):
            raise ValidationFailedError(
                [
                    Diagnostic(f"{path.name}:/{'/'.join(map(str, e['loc']))}", e["msg"])
                    for e in err.errors()
                ]
            ) from None
        raise ValidationFailedError([Diagnostic(path.name, str(err))]) from None
    if not isinstance(document, dict):
        raise ValidationFailedError([Diagnostic(path.name, "expected a JSON object")])
    return document


@app.command("push")
def push(
    files: Annotated[list[Path], typer.Argument(help="Model definitions (JSON) to save.")],
    folder: Annotated[str | None, typer.Option("--folder", help="Folder to file them in.")] = None,
    message: Annotated[str | None, typer.Option("--message", "-m", help="Commit message.")] = None,
    api: ApiOption = DEFAULT_API_URL,
) -> None:
    """Save each definition into the catalog; prints name and commit."""
    try:
        documents = [(path, _read(path)) for path in files]
        with Api(api) as client:
            for path, document in documents:
                body: dict[str, Any] = {
                    "document": document,
                    "message": message or f"push {path.name}",
                }
                if folder is not None:
                    body["folder"] = folder
                saved = client.call("PUT", f"{MODELS}/{document['name']}", body=body)
                typer.echo(f"{saved['name']}  {saved['version']['commit'][:12]}")
    except AmosError as err:
        raise report(err) from None


@app.command("ls")
def ls(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the API's listing as JSON.")
    ] = False,
    folder: Annotated[str | None, typer.Option("--folder", help="Only this folder.")] = None,
    api: ApiOption = DEFAULT_API_URL,
) -> None:
    """List the model definitions: name, folder, model id and revision."""
    try:
        with Api(api) as client:
            params = {"folder": folder} if folder else None
            models: list[dict[str, Any]] = client.call("GET", MODELS, params=params)
    except AmosError as err:
        raise report(err) from None
    if as_json:
        typer.echo(json.dumps(models, indent=2, ensure_ascii=False))
        return
    typer.echo("NAME\tFOLDER\tMODEL\tREVISION")
    for entry in models:
        doc = entry["document"]
        typer.echo(
            f"{entry['name']}\t{entry['folder']}\t{doc.get('model', '')}\t{doc.get('revision', '')}"
        )
