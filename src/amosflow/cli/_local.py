"""What the commands that work on this host's install share: failing, the store, the actor."""

from __future__ import annotations

import contextlib
import getpass
import os
from typing import TYPE_CHECKING

import typer

from amosflow.cli import exits
from amosflow.config import StoreSettings
from amosflow.errors import AmosError, ValidationFailedError
from amosflow.store import Store, open_store

if TYPE_CHECKING:
    from collections.abc import Iterator


def fail(err: AmosError) -> typer.Exit:
    """Print why a command failed (each problem of an invalid document on its own line)."""
    if isinstance(err, ValidationFailedError):
        for diagnostic in err.diagnostics:
            typer.echo(str(diagnostic), err=True)
    else:
        typer.echo(f"error: {err}", err=True)
    return typer.Exit(exits.for_error(err))


@contextlib.contextmanager
def local_store(settings: StoreSettings | None = None) -> Iterator[Store]:
    """The install's store, as its settings name it, closed on the way out."""
    store = open_store((settings or StoreSettings()).url)
    try:
        yield store
    finally:
        store.dispose()


def os_actor() -> str:
    """Who runs the CLI: the OS account, since these commands talk to the store directly."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return f"cli:uid-{os.getuid()}"
