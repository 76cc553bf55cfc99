"""`amos admin …`: the first administrator, role bindings and folders, on the node's store.

These commands work on the store directly (``AMOS_DATABASE_URL`` or the SQLite file in
``AMOS_HOME``), not through the API: they are how an operator on the host gets in before
any account exists, and how they get back in when every administrator is locked out.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from amosflow import identity
from amosflow.cli._local import fail, local_store
from amosflow.config import ApiSettings
from amosflow.errors import (
    AmosError,
    ConflictError,
    Diagnostic,
    NotFoundError,
    ValidationFailedError,
)
from amosflow.identity import ALL_FOLDERS, IdentitySettings
from amosflow.store import Store

app = typer.Typer(help="Administer accounts, roles and folders on this node.", no_args_is_help=True)


def _read_password(from_stdin: bool) -> str:
    """One line of standard input (its line ending dropped), or a hidden prompt asked twice."""
    if from_stdin:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    else:
        password = str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))
    if not password:
        raise ValidationFailedError([Diagnostic("/password", "the password is empty")])
    return password


def _ensure_fresh(store: Store) -> None:
    with store.session(read_only=True) as session:
        if identity.setup_complete(session):
            raise ConflictError(
                "setup is complete: the first administrator exists already; "
                "sign in as an administrator to add accounts"
            )


@app.command("create")
def create(
    username: Annotated[str, typer.Option("--username", help="Username of the administrator.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from one line of stdin.")
    ] = False,
) -> None:
    """Create the first administrator; refused once any account exists."""
    settings = IdentitySettings()
    try:
        with local_store() as store:
            _ensure_fresh(store)  # before asking for a password that could not be used
            password = _read_password(password_stdin)
            with store.session() as session:
                row = identity.create_first_admin(
                    session, username=username, password=password, settings=settings
                )
    except AmosError as err:
        raise fail(err) from None
    typer.echo(f"created administrator {row.username} (id {row.id}), administrator on every folder")


def _host(host: str) -> str:
    if host in {"0.0.0.0", "::", ""}:  # noqa: S104 - a wildcard is not an address to visit
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


@app.command("setup-link")
def setup_link() -> None:
    """Print a one-time link that creates the first administrator in the browser."""
    settings = IdentitySettings()
    api = ApiSettings()
    try:
        with local_store() as store:
            _ensure_fresh(store)
        token = identity.create_setup_token(settings)
    except AmosError as err:
        raise fail(err) from None
    typer.echo(f"http://{_host(api.host)}:{api.port}/setup?token={token}")


@app.command("grant")
def grant(
    subject: Annotated[str, typer.Argument(help="Username (or group name with --group).")],
    role: Annotated[str, typer.Argument(help="Role to grant, e.g. operator.")],
    folder: Annotated[
        str, typer.Option("--folder", help="Folder the role applies in; * for every folder.")
    ] = ALL_FOLDERS,
    condition: Annotated[
        str | None,
        typer.Option("--condition", help="CEL over resource and principal; grants where true."),
    ] = None,
    group: Annotated[
        bool, typer.Option("--group", help="SUBJECT is a group's display name.")
    ] = False,
) -> None:
    """Grant a role to a user, a service account or a group, in one folder or all of them."""
    try:
        with local_store() as store, store.session() as session:
            if group:
                binding = identity.grant(
                    session,
                    subject_kind="group",
                    subject=subject,
                    role=role,
                    folder=folder,
                    condition=condition,
                )
            else:
                row = identity.find_by_username(session, subject)
                if row is None:
                    raise NotFoundError(f"no account is called {subject!r}")
                binding = identity.grant(
                    session,
                    subject_kind="principal",
                    subject=row.id,
                    role=role,
                    folder=folder,
                    condition=condition,
                )
            binding_id = binding.id
    except AmosError as err:
        raise fail(err) from None
    kind = "group" if group else "account"
    where = "every folder" if folder == ALL_FOLDERS else f"folder {folder}"
    typer.echo(f"granted {role} on {where} to {kind} {subject} (binding {binding_id})")


@app.command("folder-create")
def folder_create(
    name: Annotated[str, typer.Argument(help="Folder name: lower case, digits, . _ -.")],
    description: Annotated[str, typer.Option("--description", help="What it holds.")] = "",
) -> None:
    """Create a folder, the isolation boundary of flows, runs, triggers and secrets."""
    try:
        with local_store() as store, store.session() as session:
            identity.create_folder(session, name, description)
    except AmosError as err:
        raise fail(err) from None
    typer.echo(f"created folder {name}")
