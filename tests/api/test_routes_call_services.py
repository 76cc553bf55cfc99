"""Routes parse, authorize, call a service and shape the answer: none opens a store session."""

from __future__ import annotations

import ast
from pathlib import Path

from amosflow import api
from tests.support.pysource import parse_module

API = Path(api.__file__).parent
#: The composition root builds the store; it serves no request itself.
COMPOSITION_ROOT = API / "app.py"


def _session_calls(path: Path) -> list[int]:
    tree = parse_module(path)
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "session"
    ]


def test_no_api_module_opens_a_store_session() -> None:
    """Every store transaction of a request is opened by a service, never by the API."""
    opened = {
        f"{path.relative_to(API)}:{line}"
        for path in API.rglob("*.py")
        if path != COMPOSITION_ROOT
        for line in _session_calls(path)
    }
    assert opened == set()


def test_routes_authorize_through_the_one_policy_function() -> None:
    """Of the policy, the API uses ``authorize`` only; scopes and filters are a service's work."""
    other_decisions = {"allows", "folder_scope", "holds_unconditionally", "sees"}
    used = {
        f"{path.relative_to(API)}:{alias.name}"
        for path in API.rglob("*.py")
        for node in ast.walk(parse_module(path))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("amosflow.identity")
        for alias in node.names
        if alias.name in other_decisions
    }
    assert used == set()
