"""Parse the project's own Python source for the tests that check its structure."""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

_ATTEMPTS = 5


def parse_module(path: Path) -> ast.Module:
    """``parse_text`` of the file at ``path``."""
    return parse_text(path.read_text(encoding="utf-8"), filename=str(path))


def parse_text(text: str, *, filename: str = "<source>") -> ast.Module:
    """``ast.parse`` of ``text``, safe beside threads that format tracebacks.

    CPython 3.11 keeps the AST converter's recursion depth in interpreter-wide state, and its
    tracebacks parse source lines to place their carets; when a background thread of an earlier
    test (a server, a relay) logs an exception while this thread parses, the converter sees
    the other's depth and raises ``SystemError: AST constructor recursion depth mismatch``.
    The source did not change, so parsing it again gives the one true tree.
    """
    for attempt in range(_ATTEMPTS):
        try:
            return ast.parse(text, filename=filename)
        except SystemError as err:
            if "recursion depth mismatch" not in str(err) or attempt == _ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover
