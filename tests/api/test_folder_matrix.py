"""The folder matrix: every route, every role bound to `alpha` alone, nothing of `beta` shows.

Generated from the OpenAPI document, so a new route is walked as soon as it exists. For each
route, each role holding `alpha` only sends the requests that could reach `beta`: its
objects by name, by `?folder=beta`, its run and task ids, its hooks. Each answer must equal,
status and body, the answer for a target that does not exist at all (missing and hidden
look the same); no answer may carry beta's canary (nothing read or listed); and beta is the
same afterwards as before (nothing changed). Runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from amosflow.bus.embedded import EmbeddedNats
from amosflow.config import EngineSettings
from tests.api import folder_world
from tests.api.conftest import running_node
from tests.api.folder_world import CANARY, NO_FOLDER, NOWHERE, ONLY_BETA, SHARED, World
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.temporal
ROLES = ("analyst", "operator", "approver", "auditor", "service", "administrator")
OPENAPI = json.loads((Path(__file__).resolve().parents[2] / "openapi.json").read_text())
#: Routes that hand out credentials or describe the node: nothing of a folder is behind them.
OUTSIDE = {"/api/v1/auth/login", "/api/v1/auth/token", "/api/v1/setup", "/healthz", "/readyz"}
OUTSIDE_PREFIX = ("/api/v1/runners/enroll",)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """The store the node of this module runs on."""
    return str(request.param)


@pytest.fixture
def world(
    backend: str,
    settings: EngineSettings,
    tmp_path: Path,
    nats_server: EmbeddedNats,
    request: pytest.FixtureRequest,
) -> Iterator[World]:
    """A node on the backend, both folders filled."""
    store_url = None
    if backend == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        store_url = server.create_database()
    with running_node(settings, tmp_path, nats_server, store_url=store_url) as node:
        yield folder_world.build(node)


@dataclass(frozen=True)
class Probe:
    """One request aimed at beta, and the same request aimed at nothing."""

    method: str
    hidden: tuple[str, dict[str, Any], Any]
    missing: tuple[str, dict[str, Any], Any]
    swap: tuple[tuple[str, str], ...]
    """(beta's value, the missing one's) pairs; replacing them makes the two answers alike."""


def _routes() -> Iterator[tuple[str, str]]:
    for path, operations in OPENAPI["paths"].items():
        if path in OUTSIDE or path.startswith(OUTSIDE_PREFIX):
            continue
        for method in operations:
            yield method.upper(), path


def _kind(path: str) -> str:
    return path.split("/")[3]


def _body(  # noqa: PLR0911 - one body per kind of request
    method: str, path: str, name: str, folder: str | None, run_id: str | None
) -> Any:
    """A body that gets the request as far as its authorization decision."""
    kind = _kind(path)
    if method == "PUT" and kind in folder_world.CATALOG_KINDS and path.endswith("{name}"):
        target = folder or "alpha"
        document = folder_world.document(kind, name, target)
        if kind == "triggers":
            document["flow"] = name
        return {"document": document, "folder": folder}
    if (method, path) == ("POST", "/api/v1/flows"):
        return {"document": folder_world.flow(name, "alpha"), "folder": folder}
    if (method, path) == ("PUT", "/api/v1/secrets/{name}"):
        return {"value": "probe-value", "folder": folder}
    if (method, path) == ("POST", "/api/v1/runs"):
        return {"flow": name, "inputs": {}, "folder": folder, "run_id": run_id}
    if path.endswith("/decide"):
        return {"outcome": "approved", "comment": "probe"}
    if path.endswith("/backfill"):
        return {"start_at": "2026-01-01T00:00:00Z", "end_at": "2026-01-01T03:00:00Z"}
    return {} if method in {"POST", "PUT", "PATCH"} else None


def _fill(path: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "x"), path)


def probes(world: World) -> Iterator[Probe]:
    """Every request of every route that could reach beta, with its missing twin."""
    beta_run, beta_task = world.runs["beta"], world.tasks["beta"]
    by_name = (
        # beta's own name with no folder given, and the shared name in beta's folder
        ({"name": ONLY_BETA}, {"name": NOWHERE}),
        ({"name": SHARED, "folder": "beta"}, {"name": SHARED, "folder": NO_FOLDER}),
    )
    for method, path in _routes():
        names = re.findall(r"\{(\w+)\}", path)
        body_named = (method, path) in {("POST", "/api/v1/flows"), ("POST", "/api/v1/runs")}
        if "run_id" in names:
            yield _probe(method, path, {"run_id": beta_run}, {"run_id": "nowhere:run"})
        elif "task_id" in names:
            yield _probe(method, path, {"task_id": beta_task}, {"task_id": "0" * len(beta_task)})
        elif "name" in names or body_named:
            for hidden, missing in by_name:
                yield _probe(method, path, hidden, missing)
            if (method, path) == ("POST", "/api/v1/runs"):  # beta's run id, asked for again
                shared = {"name": SHARED}
                yield _probe(method, path, shared, shared, run=(beta_run, "beta:nope-12345678"))
        elif _has_query(path, method, "folder"):
            yield _probe(method, path, {"folder": "beta"}, {"folder": NO_FOLDER})
        else:  # nothing of a folder to aim at: the answer is still searched for the canary
            yield _probe(method, path, {}, {})


def _has_query(path: str, method: str, name: str) -> bool:
    parameters = OPENAPI["paths"][path][method.lower()].get("parameters", [])
    return any(p["in"] == "query" and p["name"] == name for p in parameters)


def _probe(
    method: str,
    path: str,
    hidden: dict[str, str],
    missing: dict[str, str],
    *,
    run: tuple[str | None, str | None] = (None, None),
) -> Probe:
    def request(values: dict[str, str], run_id: str | None) -> tuple[str, dict[str, Any], Any]:
        given = values.get("folder")
        query = {"folder": given} if given and _has_query(path, method, "folder") else {}
        name = values.get("name", NOWHERE)
        body = _body(method, path, name, given, run_id)
        return _fill(path, values), query, body

    pairs = [(hidden[key], missing[key]) for key in hidden if key in missing]
    if run[0] is not None and run[1] is not None:
        pairs.append((run[0], run[1]))
    swap = tuple((one, other) for one, other in pairs if one != other)
    return Probe(method, request(hidden, run[0]), request(missing, run[1]), swap)


def _send(
    client: httpx.Client, method: str, request: tuple[str, dict[str, Any], Any]
) -> httpx.Response:
    path, query, body = request
    if path.endswith("/events"):  # a stream that stays open: its status and headers say enough
        with client.stream(method, path, params=query or None) as response:
            if response.status_code < 300:
                return httpx.Response(response.status_code, text="")
            response.read()
            return response
    return client.request(method, path, params=query or None, json=body)


def _text(response: httpx.Response, swap: tuple[tuple[str, str], ...]) -> str:
    text = response.text
    for hidden, missing in swap:
        text = text.replace(hidden, missing)
    return text


def _folders_in(value: Any) -> set[str]:
    """Every `folder` value anywhere in a JSON answer."""
    if isinstance(value, dict):
        found = {str(value["folder"])} if "folder" in value else set()
        return found.union(*(_folders_in(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_folders_in(v) for v in value))
    return set()


def _check_listings(client: httpx.Client, role: str) -> None:
    """Listings show nothing of beta: no canary, no beta folder, no beta-only name."""
    for method, path in _routes():
        if method != "GET" or "{" in path or path.endswith("/export"):
            continue
        response = client.get(path)
        assert CANARY not in response.text, (role, path)
        assert ONLY_BETA not in response.text, (role, path)
        if response.headers.get("content-type", "").startswith("application/json"):
            assert "beta" not in _folders_in(response.json()), (role, path)


def walk(world: World, client: httpx.Client, role: str) -> list[str]:
    """Send every probe as ``client``; return each way beta showed through."""
    failures: list[str] = []
    for probe in probes(world):
        hidden = _send(client, probe.method, probe.hidden)
        missing = _send(client, probe.method, probe.missing)
        where = f"{role} {probe.method} {probe.hidden[0]} {probe.hidden[1]}"
        if CANARY in hidden.text:
            failures.append(f"{where}: beta's canary in the answer")
        if hidden.status_code != missing.status_code:
            failures.append(f"{where}: {hidden.status_code} vs {missing.status_code}")
        elif hidden.status_code >= 300 and _text(hidden, probe.swap) != missing.text:
            failures.append(f"{where}: {hidden.text} vs {missing.text}")
        elif hidden.status_code < 300 and "beta" in _folders_in(_json(hidden)):
            failures.append(f"{where}: answered with an object of beta")
    return failures


@pytest.mark.timeout(900)
def test_a_role_bound_to_one_folder_sees_uses_and_changes_nothing_of_another(
    world: World,
) -> None:
    """For every route and role in `alpha` only: beta answers like nothing, leaks and stays put."""
    before = folder_world.snapshot(world)
    failures: list[str] = []
    tokens = {role: world.node.token_for(f"{role}-of-alpha", role, "alpha") for role in ROLES}
    for role, token in tokens.items():  # before any probe could save alpha objects of that name
        with world.node.as_caller(token) as client:
            _check_listings(client, role)
    for role, token in tokens.items():
        with world.node.as_caller(token) as client:
            failures += walk(world, client, role)
    assert not failures, "\n".join(failures)
    assert folder_world.snapshot(world) == before


def test_the_walk_does_see_beta_through_a_binding_on_every_folder(world: World) -> None:
    """The same walk as an auditor of every folder finds beta: the checks can fail."""
    token = world.node.token_for("auditor-of-all", "auditor", "*")
    with world.node.as_caller(token) as client:
        failures = walk(world, client, "auditor@*")
    assert any("canary" in failure for failure in failures)
    assert any("200 vs 404" in failure for failure in failures)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
