"""Property-based API testing: schemathesis finds no 5xx and no response that breaks the spec.

Every operation of the spec is fuzzed. Three kinds need different handling (the last two share
one schemathesis run here):
- the main pass: every operation but the two kinds below, as the administrator;
- the protected pass: operations that could take the administrator's own access away
  (deleting a role binding, deactivating or activating a user, replacing, patching or deleting
  a SCIM user). Their path ids are pinned to a victim account made for the pass, and the
  stateful phase is off, so no response can hand the fuzzer its own id;
- the events pass: the run event stream lasts as long as its run, so its run id is pinned to a
  run that has ended: every stream it reads ends, and ``--request-timeout`` bounds the rest.

The long run (100,000 cases against `amos up`) is ``bench/faults/fuzz.py``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import Node
from tests.api.flows_util import doc, save, wait_for_end

pytestmark = [pytest.mark.temporal, pytest.mark.slow]
SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))
CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance"
SEED = "20261125"
PROTECTED = (
    r"DELETE /api/v1/role-bindings/\{binding_id\}",
    r"POST /api/v1/users/\{principal_id\}/(de)?activate",
    r"(PUT|PATCH|DELETE) /scim/v2/Users/\{user_id\}",
)
EVENTS = (r"GET /api/v1/runs/\{run_id\}/events",)


def names(patterns: tuple[str, ...]) -> str:
    """A regex matching exactly the operation names ("METHOD /path") of ``patterns``."""
    return "^(" + "|".join(patterns) + ")$"


def fuzz(node: Node, tmp_path: Path, label: str, *options: str, pinned: dict[str, Any]) -> None:
    """One schemathesis run over ``node``; path parameters in ``pinned`` take those values."""
    config = tmp_path / f"{label}.toml"
    config.write_text(
        "[parameters]\n" + "".join(f'"path.{k}" = {v!r}\n' for k, v in pinned.items())
    )
    result = subprocess.run(
        [
            SCHEMATHESIS,
            "--config-file",
            str(config),
            "run",
            f"{node.url}/api/v1/openapi.json",
            "--checks",
            CHECKS,
            "--max-examples",
            "30",
            "--seed",
            SEED,
            "--request-timeout",
            "20",
            *options,
            "--header",
            node.client.headers["Authorization"].join(["Authorization: ", ""]),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, label + result.stdout[-6000:] + result.stderr[-2000:]
    assert "Selected: " in result.stdout, result.stdout[-2000:]


def victims(node: Node) -> dict[str, Any]:
    """A local user with a role binding and a SCIM user: what the protected pass may break."""
    user = node.client.post(
        "/api/v1/users", json={"username": "victim", "password": "victim-9!Qx-unused"}
    )
    assert user.status_code in {200, 201}, user.text
    principal = user.json()["id"]
    binding = node.client.post(
        "/api/v1/role-bindings",
        json={"subject_kind": "principal", "subject": principal, "role": "operator"},
    )
    assert binding.status_code in {200, 201}, binding.text
    scim = node.client.post(
        "/scim/v2/Users",
        json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "scim-v"},
    )
    assert scim.status_code == 201, scim.text
    return {
        "principal_id": principal,
        "binding_id": binding.json()["id"],
        "user_id": scim.json()["id"],
    }


def ended_run(node: Node) -> str:
    """The id of a run of the saved flow that has completed."""
    started = node.client.post("/api/v1/runs", json={"flow": "greet", "inputs": {"who": "x"}})
    assert started.status_code in {200, 201, 202}, started.text
    run_id = str(started.json()["run_id"])
    assert wait_for_end(node.client, run_id)["status"] == "completed"
    return run_id


def test_schemathesis_finds_no_server_errors(node: Node, tmp_path: Path) -> None:
    """Generated requests against every operation never get a 5xx or an off-spec response."""
    save(node.client, doc())
    # Made before the main pass, which may delete the flow the run needs.
    pinned = {**victims(node), "run_id": ended_run(node)}
    fuzz(node, tmp_path, "main", "--exclude-name-regex", names(PROTECTED + EVENTS), pinned={})
    # The protected and the events operations share one run: both have pinned ids and no
    # stateful phase, and one schemathesis start is saved.
    fuzz(
        node,
        tmp_path,
        "pinned",
        "--include-name-regex",
        names(PROTECTED + EVENTS),
        "--phases",
        "examples,coverage,fuzzing",
        pinned=pinned,
    )
    assert node.client.get("/api/v1/me").status_code == 200, "the fuzzer locked itself out"
