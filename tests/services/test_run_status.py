"""One place writes a run's status: ``services.runs.record_status``, over the store's SQL."""

from __future__ import annotations

import ast
from pathlib import Path

import amosflow
from tests.support.pysource import parse_module

SRC = Path(amosflow.__file__).parent
#: The SQL of the status (store/_runs.py) and its one caller (services/_runs.py).
ALLOWED = {SRC / "store" / "_runs.py", SRC / "services" / "_runs.py"}


def _calls(path: Path, name: str) -> list[int]:
    tree = parse_module(path)
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (
            (isinstance(node.func, ast.Attribute) and node.func.attr == name)
            or (isinstance(node.func, ast.Name) and node.func.id == name)
        )
    ]


def test_only_the_run_service_calls_the_status_sql() -> None:
    """No module but services/runs.py calls ``set_status``; the watcher and the start go through it."""
    callers = {
        f"{path.relative_to(SRC)}:{line}"
        for path in SRC.rglob("*.py")
        if path not in ALLOWED
        for line in _calls(path, "set_status")
    }
    assert callers == set()


def test_the_run_service_calls_the_status_sql_once() -> None:
    """Inside services/runs.py, ``record_status`` is the one function that calls ``set_status``."""
    assert len(_calls(SRC / "services" / "_runs.py", "set_status")) == 1
