"""The `amos` command: one Typer root, one module per command group, each imported when used.

Every command module brings what its command needs (the store, the engine, the model runtime):
about two seconds and 100 MiB for all of them. A command only loads its own, so `amos up`'s
supervisor, which lives as long as the node, stays small, and `amos --version`-sized commands
start fast. `amos`, `amos --help` and the tests load them all.
"""

from __future__ import annotations

import functools
import importlib
import sys
from typing import Any

import typer

HELP = "AMOS FLOW: validate and run amos.flow/v1 documents on a durable engine."

# name -> (module under amosflow.cli, attribute, whether it is a group), in help order.
_COMMANDS: dict[str, tuple[str, str, bool]] = {
    "validate": ("run", "validate", False),
    "run": ("run", "run", False),
    "worker": ("worker", "worker", False),
    "up": ("up", "up", False),
    "flow": ("flow", "app", True),
    "events": ("events", "app", True),
    "audit": ("audit", "app", True),
    "secret": ("secret", "app", True),
    "admin": ("admin", "app", True),
    "runner": ("runner", "app", True),
    "model": ("model", "app", True),
}


def _root() -> None:
    """AMOS FLOW: validate and run amos.flow/v1 documents on a durable engine."""


def build(only: str | None = None) -> typer.Typer:
    """The root command with every command, or only with the command named ``only``."""
    root = typer.Typer(
        name="amos",
        help=HELP,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    # A root callback keeps `amos <command>` a group even when it holds a single command.
    root.callback()(_root)
    for name, (module, attribute, group) in _COMMANDS.items():
        if only is not None and name != only:
            continue
        target: Any = getattr(importlib.import_module(f"amosflow.cli.{module}"), attribute)
        if group:
            root.add_typer(target, name=name)
        else:
            root.command(name)(target)
    return root


@functools.cache
def _everything() -> typer.Typer:
    return build()


def __getattr__(name: str) -> typer.Typer:
    # `app`, the whole command, for tests and tools that inspect it.
    if name == "app":
        return _everything()
    raise AttributeError(name)


def main() -> None:
    """The `amos` entry point: load the command about to run, or all of them for help."""
    first = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), None)
    build(first if first in _COMMANDS else None)()


if __name__ == "__main__":  # pragma: no cover
    main()
