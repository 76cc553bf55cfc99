"""`amos flow push/pull/ls` and `amos run --remote` against a real control-plane node."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from amosflow.engine.embedded import free_port
from tests.api.conftest import Node

AMOS = str(Path(sys.executable).with_name("amos"))
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RESULT_KEYS = {"run_id", "status", "output", "error"}

pytestmark = pytest.mark.temporal


def amos(target: Node | str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed `amos` executable against a node (as its administrator) or a URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMOS_")}
    if isinstance(target, Node):
        env["AMOS_API_URL"] = target.url
        env["AMOS_TOKEN"] = target.client.headers["Authorization"].removeprefix("Bearer ")
    else:
        env["AMOS_API_URL"] = target
    return subprocess.run(
        [AMOS, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def flows(node: Node) -> list[dict[str, Any]]:
    """The catalog's flows as the API lists them."""
    listed: list[dict[str, Any]] = node.client.get("/api/v1/flows").json()
    return listed


def test_push_saves_each_file_and_prints_its_version(node: Node) -> None:
    """Pushing two examples saves both and prints name, short commit and content hash."""
    done = amos(
        node,
        "flow",
        "push",
        str(EXAMPLES / "hello.json"),
        str(EXAMPLES / "send-welcome.json"),
        "-m",
        "from the cli",
    )
    assert done.returncode == 0, done.stderr
    saved = {f["name"]: f["version"] for f in flows(node)}
    assert set(saved) == {"hello", "send-welcome"}
    lines = done.stdout.splitlines()
    assert lines == [
        f"{name}  {saved[name]['commit'][:12]}  {saved[name]['content_hash']}"
        for name in ("hello", "send-welcome")
    ]
    assert saved["hello"]["message"] == "from the cli"


def test_ls_lists_pushed_flows(node: Node) -> None:
    """`flow ls` shows each flow with its folder, short commit and description; --json the list."""
    amos(node, "flow", "push", str(EXAMPLES / "hello.json"), str(EXAMPLES / "send-welcome.json"))
    table = amos(node, "flow", "ls")
    assert table.returncode == 0, table.stderr
    rows = table.stdout.splitlines()
    assert rows[0].split() == ["NAME", "FOLDER", "COMMIT", "DESCRIPTION"]
    for flow in flows(node):
        row = next(r for r in rows[1:] if r.split()[0] == flow["name"])
        assert row.split()[1:3] == ["default", flow["version"]["commit"][:12]]
        assert row.endswith(flow["description"])
    as_json = amos(node, "flow", "ls", "--json")
    assert [f["name"] for f in json.loads(as_json.stdout)] == ["hello", "send-welcome"]


def test_pull_round_trips_the_document(node: Node, tmp_path: Path) -> None:
    """A pulled flow equals the file pushed, on stdout and through -o."""
    original = json.loads((EXAMPLES / "hello.json").read_text(encoding="utf-8"))
    amos(node, "flow", "push", str(EXAMPLES / "hello.json"))
    printed = amos(node, "flow", "pull", "hello")
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout) == original
    target = tmp_path / "pulled.json"
    written = amos(node, "flow", "pull", "hello", "-o", str(target))
    assert written.returncode == 0, written.stderr
    assert json.loads(target.read_text(encoding="utf-8")) == original


def test_pull_of_an_old_version_and_unknown_name(node: Node) -> None:
    """`--version` reads an earlier version; an unknown flow prints the problem and exits 1."""
    document = json.loads((EXAMPLES / "hello.json").read_text(encoding="utf-8"))
    first = node.client.put("/api/v1/flows/hello", json={"document": document}).json()
    node.client.put("/api/v1/flows/hello", json={"document": {**document, "description": "v2"}})
    old = amos(node, "flow", "pull", "hello", "--version", first["version"]["commit"])
    assert json.loads(old.stdout) == document
    missing = amos(node, "flow", "pull", "nope")
    assert missing.returncode == 1
    assert "nope" in missing.stderr


def test_push_of_an_invalid_file_exits_2_and_saves_nothing(node: Node, tmp_path: Path) -> None:
    """One invalid file among valid ones prints `POINTER: message` lines, exits 2, saves none."""
    bad = json.loads((EXAMPLES / "hello.json").read_text(encoding="utf-8"))
    bad["steps"][0]["type"] = "nope"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad), encoding="utf-8")
    done = amos(node, "flow", "push", str(EXAMPLES / "send-welcome.json"), str(path))
    assert done.returncode == 2
    assert done.stderr.splitlines()
    assert all(line.startswith("/steps/0") for line in done.stderr.splitlines())
    assert flows(node) == []


def test_run_remote_json_prints_the_result_and_exits_0(node: Node) -> None:
    """A remote run of hello prints the result object of a completed run and exits 0."""
    amos(node, "flow", "push", str(EXAMPLES / "hello.json"))
    done = amos(node, "run", "--remote", "hello", "--input", '{"who":"Ada"}', "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result) == RESULT_KEYS
    assert result["status"] == "completed"
    assert result["output"] == {"greeting": "Hello, Ada!", "long_name": False}
    assert node.client.get(f"/api/v1/runs/{result['run_id']}").json()["status"] == "completed"


def test_run_remote_shows_steps_then_the_output(node: Node) -> None:
    """Without --json the steps and the run's end go to stderr and the output to stdout."""
    amos(node, "flow", "push", str(EXAMPLES / "hello.json"))
    done = amos(node, "run", "--remote", "hello", "--input", '{"who":"Ada"}')
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"greeting": "Hello, Ada!", "long_name": False}
    assert "greet" in done.stderr
    assert "completed" in done.stderr


def test_run_remote_of_a_failing_flow_exits_1(node: Node) -> None:
    """A remote run that reaches a `fail` step prints a failed result and exits 1."""
    failing = {
        "dsl": "amos.flow/v1",
        "name": "broken",
        "steps": [{"id": "stop", "type": "fail", "message": "stopped on purpose"}],
    }
    node.client.put("/api/v1/flows/broken", json={"document": failing})
    done = amos(node, "run", "--remote", "broken", "--json")
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "failed"
    assert result["error"]["step"] == "stop"
    assert "stopped on purpose" in result["error"]["message"]


def test_run_remote_of_an_unknown_flow_exits_2(node: Node) -> None:
    """Running a flow the catalog does not have exits 2 and names it, starting nothing."""
    done = amos(node, "run", "--remote", "ghost", "--json")
    assert done.returncode == 2
    assert "ghost" in done.stderr
    assert node.client.get("/api/v1/runs").json()["items"] == []


def test_run_remote_with_invalid_inputs_exits_2(node: Node) -> None:
    """Inputs the flow's schema refuses exit 2 with the pointer of each problem."""
    amos(node, "flow", "push", str(EXAMPLES / "hello.json"))
    done = amos(node, "run", "--remote", "hello", "--input", '{"who": 5}', "--json")
    assert done.returncode == 2
    assert any(line.startswith("/inputs") for line in done.stderr.splitlines())


def test_api_down_exits_3() -> None:
    """Every remote command exits 3 and says so when nothing answers at the API URL."""
    down = f"http://127.0.0.1:{free_port()}"
    for args in (
        ("flow", "ls"),
        ("flow", "pull", "hello"),
        ("flow", "push", str(EXAMPLES / "hello.json")),
        ("run", "--remote", "hello", "--json"),
    ):
        done = amos(down, *args)
        assert done.returncode == 3, args
        assert f"not reachable at {down}" in done.stderr


def test_without_a_token_the_cli_says_how_to_get_in(node: Node) -> None:
    """No AMOS_TOKEN: exit 4 and a message naming the variable, never a traceback."""
    done = amos(node.url, "flow", "ls")
    assert done.returncode == 4
    assert "AMOS_TOKEN" in done.stderr
    assert "Traceback" not in done.stderr


def test_run_remote_follows_the_events_of_a_run_that_outlasts_its_wait(node: Node) -> None:
    """A run still going when `--wait` is over is followed to its end over the event stream."""
    slow = {
        "dsl": "amos.flow/v1",
        "name": "slow",
        "outputs": {"said": "${steps.say.output}"},
        "steps": [
            {"id": "pause", "type": "wait", "duration": "1s"},
            {"id": "say", "type": "action", "action": "core.echo", "with": {"value": "late"}},
        ],
    }
    node.client.put("/api/v1/flows/slow", json={"document": slow})
    done = amos(node, "run", "--remote", "slow", "--wait", "0s")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"said": "late"}
    assert "say" in done.stderr


def test_run_remote_with_a_bad_wait_exits_2_and_starts_nothing(node: Node) -> None:
    """A `--wait` the API refuses exits 2 naming the problem, and no run is started."""
    amos(node, "flow", "push", str(EXAMPLES / "hello.json"))
    done = amos(node, "run", "--remote", "hello", "--wait", "10h", "--json")
    assert done.returncode == 2
    assert "/wait" in done.stderr or "duration" in done.stderr
    assert node.client.get("/api/v1/runs").json()["items"] == []
