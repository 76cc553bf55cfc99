"""`amos flow …`: work with flow documents, locally and in the catalog behind the API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from amosflow.cli.files import read_flow
from amosflow.cli.remote import DEFAULT_API_URL, Api, ApiOption, FolderOption, report
from amosflow.dsl import flow_json_schema
from amosflow.errors import AmosError, ValidationFailedError

app = typer.Typer(help="Work with flow documents.", no_args_is_help=True)
FLOWS = "/api/v1/flows"


@app.command("schema")
def schema() -> None:
    """Print the JSON Schema (2020-12) of amos.flow/v1."""
    typer.echo(json.dumps(flow_json_schema(), indent=2, sort_keys=True))


def _read_all(files: list[Path]) -> list[tuple[Path, str, dict[str, Any]]]:
    """Validate every file before anything is sent, so one bad file saves nothing."""
    found: list[tuple[Path, str, dict[str, Any]]] = []
    problems = []
    for path in files:
        try:
            flow, document = read_flow(path)
        except ValidationFailedError as err:
            problems.extend(err.diagnostics)
            continue
        found.append((path, flow.name, document))
    if problems:
        raise ValidationFailedError(problems)
    return found


@app.command("push")
def push(
    files: Annotated[list[Path], typer.Argument(help="Flow documents (JSON) to save.")],
    message: Annotated[str | None, typer.Option("--message", "-m", help="Commit message.")] = None,
    author: Annotated[
        str | None, typer.Option("--author", help="Commit author, `Name <email>`.")
    ] = None,
    folder: FolderOption = None,
    api: ApiOption = DEFAULT_API_URL,
) -> None:
    """Validate flow files, then save each into the catalog; prints name, commit and hash."""
    try:
        documents = _read_all(files)
        with Api(api) as client:
            for path, name, document in documents:
                body: dict[str, Any] = {
                    "document": document,
                    "message": message or f"push {path.name}",
                }
                if author is not None:
                    body["author"] = author
                if folder is not None:
                    body["folder"] = folder
                saved = client.call("PUT", f"{FLOWS}/{name}", body=body)
                version = saved["version"]
                typer.echo(f"{name}  {version['commit'][:12]}  {version['content_hash']}")
    except AmosError as err:
        raise report(err) from None


@app.command("pull")
def pull(
    name: Annotated[str, typer.Argument(help="Flow name in the catalog.")],
    version: Annotated[
        str | None,
        typer.Option("--version", help="Commit, commit prefix or content hash; latest if unset."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    folder: FolderOption = None,
    api: ApiOption = DEFAULT_API_URL,
) -> None:
    """Print a catalog flow (latest, or a version) as pretty JSON, or write it to a file."""
    given = {"version": version, "folder": folder}
    params = {key: value for key, value in given.items() if value} or None
    try:
        with Api(api) as client:
            saved = client.call("GET", f"{FLOWS}/{name}", params=params)
    except AmosError as err:
        raise report(err) from None
    text = json.dumps(saved["document"], indent=2, ensure_ascii=False) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")


@app.command("ls")
def ls(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the API's listing as JSON.")
    ] = False,
    folder: Annotated[str | None, typer.Option("--folder", help="Only this folder.")] = None,
    api: ApiOption = DEFAULT_API_URL,
) -> None:
    """List the catalog's flows: name, folder, latest commit and description."""
    try:
        with Api(api) as client:
            params = {"folder": folder} if folder else None
            flows: list[dict[str, Any]] = client.call("GET", FLOWS, params=params)
    except AmosError as err:
        raise report(err) from None
    if as_json:
        typer.echo(json.dumps(flows, indent=2, ensure_ascii=False))
        return
    rows = [
        (f["name"], f["folder"], f["version"]["commit"][:12], f.get("description") or "")
        for f in flows
    ]
    width = max((len(row[0]) for row in rows), default=4)
    place = max((len(row[1]) for row in rows), default=6)
    typer.echo(f"{'NAME':<{width}}  {'FOLDER':<{place}}  {'COMMIT':<12}  DESCRIPTION")
    for row_name, row_folder, commit, description in rows:
        line = f"{row_name:<{width}}  {row_folder:<{place}}  {commit:<12}  {description}"
        typer.echo(line.rstrip())
