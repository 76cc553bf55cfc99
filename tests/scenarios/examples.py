"""The example flows with realistic inputs, and a helper that runs one and keeps its history.

Shared by the example scenarios and by ``tests/histories/record.py``, so the histories the
replay test checks come from exactly the runs the scenarios assert on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHistory

from amosflow.cli.files import resolve_library
from amosflow.config import EngineSettings
from amosflow.dsl import parse_flow
from amosflow.engine.client import new_run_id
from amosflow.testing import run_flow

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
SECRET_ENV = "AMOS_SECRET_ERP_TOKEN"

# The main (happy) path of every example: a function of the loopback server's base URL.
# A new example needs an entry here; test_every_example_has_a_scenario says so.
INPUTS: dict[str, Callable[[str], dict[str, Any]]] = {
    "hello": lambda _api: {"who": "Ada"},
    "send-welcome": lambda api: {"api": api, "email": "ada@example.com"},
    "customer-onboarding": lambda api: {"api": api, "email": "ada@example.com", "plan": "pro"},
    "expense-claim": lambda api: {"api": api, "employee": "e-17", "amount": 42.5, "limit": 100},
    "invoice-approval": lambda api: {
        "api": api,
        "invoice": {"id": "INV-7", "vendor": "Acme", "amount": 250.0},
        "limit": 1000,
    },
    "invoice-posting": lambda api: {"api": api},
    "job-polling": lambda api: {"api": api, "max_polls": 10},
    "order-fulfilment": lambda api: {"api": api, "order": {"id": "o-1001", "channel": "web"}},
}


# Inputs that take an example down its human-task path: the run waits on an approval, so a
# test must decide the task (the main paths above never wait on a person).
NEEDS_APPROVAL: dict[str, Callable[[str], dict[str, Any]]] = {
    "invoice-approval": lambda api: {
        "api": api,
        "invoice": {"id": "INV-9", "vendor": "Acme", "amount": 5000},
        "limit": 1000,
    },
}


def example_paths() -> list[Path]:
    """Every example flow file, sorted."""
    return sorted(EXAMPLES_DIR.glob("*.json"))


def load_example(name: str) -> dict[str, Any]:
    """The raw document of ``examples/<name>.json``."""
    doc: dict[str, Any] = json.loads((EXAMPLES_DIR / f"{name}.json").read_text(encoding="utf-8"))
    return doc


async def run_example(
    client: Client,
    settings: EngineSettings,
    name: str,
    inputs: dict[str, Any],
    *,
    run_id: str = "",
) -> tuple[dict[str, Any], WorkflowHistory]:
    """Run an example to its end with the flows it calls pinned; return result and history."""
    doc = load_example(name)
    library = resolve_library(parse_flow(doc), EXAMPLES_DIR)
    run_id = run_id or new_run_id(name)
    result = await run_flow(settings, doc, inputs, library=library, run_id=run_id, client=client)
    history = await client.get_workflow_handle(run_id).fetch_history()
    return result, history
