"""The OpenAPI document kept in the repository is the one the API serves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amosflow.api.openapi import render
from tests.api.conftest import Node

REPO_FILE = Path(__file__).resolve().parents[2] / "openapi.json"


def test_repo_openapi_is_current() -> None:
    """openapi.json matches the code; regenerate with `python -m amosflow.api.openapi`."""
    assert REPO_FILE.read_text(encoding="utf-8") == render()


@pytest.mark.temporal
def test_served_openapi_is_the_repo_file(node: Node) -> None:
    """/api/v1/openapi.json serves OpenAPI 3.1 equal to the repository's file."""
    served = node.client.get("/api/v1/openapi.json").json()
    assert served["openapi"].startswith("3.1")
    assert served == json.loads(REPO_FILE.read_text(encoding="utf-8"))
