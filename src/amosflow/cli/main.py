"""The `amos` command: one Typer root, one module per command group."""

from __future__ import annotations

import typer

from amosflow.cli import admin, audit, events, flow, model, run, runner, secret, up, worker

app = typer.Typer(
    name="amos",
    help="AMOS FLOW: validate and run amos.flow/v1 documents on a durable engine.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("validate")(run.validate)
app.command("run")(run.run)
app.command("worker")(worker.worker)
app.command("up")(up.up)
app.add_typer(flow.app, name="flow")
app.add_typer(events.app, name="events")
app.add_typer(audit.app, name="audit")
app.add_typer(secret.app, name="secret")
app.add_typer(admin.app, name="admin")
app.add_typer(runner.app, name="runner")
app.add_typer(model.app, name="model")

if __name__ == "__main__":  # pragma: no cover
    app()
