"""`amos flow …`: work with flow documents."""

from __future__ import annotations

import json

import typer

from amosflow.dsl import flow_json_schema

app = typer.Typer(help="Work with flow documents.", no_args_is_help=True)


@app.command("schema")
def schema() -> None:
    """Print the JSON Schema (2020-12) of amos.flow/v1."""
    typer.echo(json.dumps(flow_json_schema(), indent=2, sort_keys=True))
