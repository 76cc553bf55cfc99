"""The single node end to end: `amos up`, runs from the API, a webhook and a schedule, SIGKILL."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from amosflow import console
from amosflow.engine.embedded import free_port
from amosflow.triggers import sign

pytestmark = [pytest.mark.slow]

AMOS = str(Path(sys.executable).with_name("amos"))
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
HOOK_KEY = "node-hook-key-0c2b"


PASSWORD = "node-scenario-password-0c2b"


@dataclass
class RunningNode:
    """An `amos up` process, where its API answers, and what it printed until it was up."""

    process: subprocess.Popen[str]
    url: str
    home: Path
    printed: list[str]

    def env(self) -> dict[str, str]:
        """The environment of a CLI command on this node's host."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AMOS_")}
        return env | {"AMOS_HOME": str(self.home), "AMOS_API_URL": self.url}

    def admin(self) -> httpx.Client:
        """Create the first administrator with `amos admin create` (once), sign in, return a client."""
        if not (self.home / "admin-created").exists():
            created = subprocess.run(
                [AMOS, "admin", "create", "--username", "ops", "--password-stdin"],
                input=PASSWORD + "\n",
                env=self.env(),
                capture_output=True,
                text=True,
                check=False,
            )
            assert created.returncode == 0, created.stderr
            (self.home / "admin-created").touch()
        login = httpx.post(
            f"{self.url}/api/v1/auth/login", json={"username": "ops", "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]
        return httpx.Client(
            base_url=self.url, timeout=30, headers={"Authorization": f"Bearer {token}"}
        )


def _start(home: Path, port: int, *, split: bool = False) -> RunningNode:
    env = {
        **os.environ,
        "AMOS_HOME": str(home),
        "AMOS_API_PORT": str(port),
        "AMOS_RUNNER_PORT": str(free_port()),
    }
    for key in (
        "AMOS_TEMPORAL_ADDRESS",
        "AMOS_NATS_URL",
        "AMOS_DATABASE_URL",
        "AMOS_TASK_QUEUE",
        "AMOS_NODE_SPLIT",
        "AMOS_API_RUN_WORKER",
    ):
        env.pop(key, None)
    proc = subprocess.Popen(
        [AMOS, "up", "--examples", str(EXAMPLES), *(["--split"] if split else [])],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    printed: list[str] = []
    for line in proc.stdout:
        printed.append(line)
        if "node is up" in line:
            break
    else:
        raise AssertionError(f"amos up exited with {proc.wait()} before it was up")
    return RunningNode(proc, f"http://127.0.0.1:{port}", home, printed)


def _stop(node: RunningNode) -> None:
    if node.process.poll() is None:
        node.process.send_signal(signal.SIGTERM)
        node.process.wait(timeout=60)
    if node.process.stdout is not None:
        node.process.stdout.close()


def _until(predicate: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)  # polling the live node's HTTP API for a condition
    raise AssertionError("condition not met in time")


def _run(client: httpx.Client, run_id: str) -> dict[str, Any]:
    body: dict[str, Any] = client.get(f"/api/v1/runs/{run_id}").json()
    return body


@pytest.fixture
def node(tmp_path: Path) -> Iterator[RunningNode]:
    running = _start(tmp_path / "home", free_port())
    try:
        yield running
    finally:
        _stop(running)


def test_node_runs_from_api_webhook_and_schedule(node: RunningNode, tmp_path: Path) -> None:
    """A flow pushed with the CLI runs from the API, a signed webhook and a cron schedule."""
    flow = json.loads((EXAMPLES / "hello.json").read_text())
    flow["name"] = "pushed-hello"
    flow_file = tmp_path / "pushed-hello.json"
    flow_file.write_text(json.dumps(flow))
    client = node.admin()
    token = client.post("/api/v1/me/tokens", json={"name": "cli"}).json()["token"]
    pushed = subprocess.run(
        [AMOS, "flow", "push", str(flow_file), "-m", "pushed by the scenario"],
        env=node.env() | {"AMOS_TOKEN": token},
        capture_output=True,
        text=True,
        check=False,
    )
    assert pushed.returncode == 0, pushed.stderr
    with contextlib.closing(client):
        assert _until(lambda: client.get("/readyz").status_code == 200)
        names = {f["name"] for f in client.get("/api/v1/flows").json()}
        assert {"hello", "job-polling", "send-welcome", "pushed-hello"} <= names
        run = client.post(
            "/api/v1/runs", json={"flow": "pushed-hello", "inputs": {"who": "node"}}
        ).json()
        done = _until(lambda: (r := _run(client, run["run_id"]))["status"] == "completed" and r)
        assert done["output"]["greeting"] == "Hello, node!"

        hook = {
            "name": "node-hook",
            "type": "webhook",
            "flow": "pushed-hello",
            "secret": "hooks.node",
        }
        assert client.put("/api/v1/triggers/node-hook", json={"document": hook}).status_code == 200
        key = client.put("/api/v1/secrets/hooks.node", json={"value": HOOK_KEY})
        assert key.status_code == 201, key.text
        body = json.dumps({"who": "hook"}).encode()
        stamp = str(int(time.time()))
        headers = {
            "content-type": "application/json",
            "X-Amos-Timestamp": stamp,
            "X-Amos-Delivery": "n1",
        }
        bad = client.post(
            "/api/v1/hooks/node-hook",
            content=body,
            headers={**headers, "X-Amos-Signature": sign(b"wrong", stamp, "n1", body)},
        )
        assert bad.status_code == 401
        old = str(int(time.time()) - 3600)
        replayed = client.post(
            "/api/v1/hooks/node-hook",
            content=body,
            headers={
                **headers,
                "X-Amos-Timestamp": old,
                "X-Amos-Signature": sign(HOOK_KEY.encode(), old, "n1", body),
            },
        )
        assert replayed.status_code == 401
        assert [
            r for r in client.get("/api/v1/runs").json()["items"] if r["trigger"] == "webhook"
        ] == []
        good = client.post(
            "/api/v1/hooks/node-hook",
            content=body,
            headers={**headers, "X-Amos-Signature": sign(HOOK_KEY.encode(), stamp, "n1", body)},
        )
        assert good.status_code == 202, good.text
        assert _until(lambda: _run(client, good.json()["run_id"])["status"] == "completed")

        tick = {
            "name": "node-tick",
            "type": "schedule",
            "flow": "pushed-hello",
            "cron": "@every 1s",
            "inputs": {"who": "cron"},
        }
        assert client.put("/api/v1/triggers/node-tick", json={"document": tick}).status_code == 200
        fired = _until(
            lambda: [
                r
                for r in client.get("/api/v1/runs", params={"flow": "pushed-hello"}).json()["items"]
                if r["trigger"] == "schedule" and r["status"] == "completed"
            ]
        )
        assert fired[0]["output"]["greeting"] == "Hello, cron!"
        client.request("DELETE", "/api/v1/triggers/node-tick")


def test_sigkill_mid_run_then_restart_completes_once(tmp_path: Path) -> None:
    """SIGKILL of `amos up` mid-run takes every child down; after a restart the run completes once."""
    home, port = tmp_path / "home", free_port()
    first = _start(home, port)
    flow = {
        "dsl": "amos.flow/v1",
        "name": "slow-steps",
        "steps": [
            {"id": "one", "type": "action", "action": "core.echo", "with": {"value": 1}},
            {"id": "pause", "type": "wait", "duration": "3s"},
            {"id": "two", "type": "action", "action": "core.echo", "with": {"value": 2}},
        ],
        "outputs": {"two": "${steps.two.output}"},
    }
    with first.admin() as client:
        assert client.put("/api/v1/flows/slow-steps", json={"document": flow}).status_code == 200
        run_id = client.post("/api/v1/runs", json={"flow": "slow-steps", "inputs": {}}).json()[
            "run_id"
        ]
        _until(
            lambda: (
                _run(client, run_id).get("steps", {}).get("pause", {}).get("status") == "running"
            )
        )
    first.process.send_signal(signal.SIGKILL)
    _stop(first)
    with httpx.Client(base_url=first.url, timeout=2) as client:
        _until(lambda: _api_down(client), timeout=30)

    second = _start(home, port)
    try:
        with second.admin() as client:
            done = _until(lambda: (r := _run(client, run_id))["status"] == "completed" and r)
            assert done["output"] == {"two": 2}
            listed = [
                r["run_id"]
                for r in client.get("/api/v1/runs", params={"flow": "slow-steps"}).json()["items"]
            ]
            assert listed == [run_id]
    finally:
        _stop(second)


def _api_down(client: httpx.Client) -> bool:
    try:
        client.get("/healthz")
    except httpx.HTTPError:
        return True
    return False


@pytest.mark.parametrize(
    ("split", "runs_flows"), [(False, "api"), (True, "worker")], ids=["single", "split"]
)
def test_crashed_child_is_restarted(tmp_path: Path, *, split: bool, runs_flows: str) -> None:
    """The process that runs flows, killed with SIGKILL, is restarted and runs complete again.

    The single node runs the flow worker inside the API process (no `worker` child at all);
    `amos up --split` runs it as a process of its own, as a scaled-out install does.
    """
    node = _start(tmp_path / "home", free_port(), split=split)
    try:
        state_file = node.home / "node.json"
        children = json.loads(state_file.read_text())["children"]
        assert ("worker" in children) is split
        victim = children[runs_flows]
        os.kill(victim, signal.SIGKILL)
        restarted = _until(
            lambda: (
                (pid := json.loads(state_file.read_text())["children"][runs_flows]) != victim
                and pid
            )
        )
        assert restarted != victim
        with node.admin() as client:
            run = client.post(
                "/api/v1/runs", json={"flow": "hello", "inputs": {"who": "again"}}
            ).json()
            assert _until(lambda: _run(client, run["run_id"])["status"] == "completed")
    finally:
        _stop(node)


def test_the_node_prints_the_console_address_and_serves_it_there(node: RunningNode) -> None:
    """`amos up` says where the Operator Console is, and that address answers with its page."""
    printed = [line.split()[1] for line in node.printed if line.startswith("console")]
    assert printed == [f"{node.url}/"]
    page = httpx.get(printed[0], timeout=10)
    assert page.headers["content-type"].startswith("text/html"), page.text[:200]
    built = (console.DIST / "index.html").is_file()  # `make install` builds it where npm is
    assert page.status_code == (200 if built else 503), page.text[:200]
    assert page.headers["content-security-policy"] == console.CONTENT_SECURITY_POLICY


def test_a_fresh_node_has_no_way_in_until_the_setup_link_makes_an_admin(node: RunningNode) -> None:
    """No default account: 401 everywhere; the printed one-time link creates the first admin."""
    with httpx.Client(base_url=node.url, timeout=30) as anonymous:
        assert anonymous.get("/api/v1/flows").status_code == 401
        refused = anonymous.post(
            "/api/v1/auth/login", json={"username": "admin", "password": "admin"}
        )
        assert refused.status_code == 401
        links = [line for line in node.printed if line.startswith("setup")]
        assert len(links) == 1, node.printed
        token = links[0].split("token=", 1)[1].split()[0]
        body = {"token": token, "username": "first", "password": PASSWORD}
        assert anonymous.post("/api/v1/setup", json=body).status_code == 201
        again = {"token": token, "username": "second", "password": PASSWORD}
        assert anonymous.post("/api/v1/setup", json=again).status_code == 401
        login = anonymous.post(
            "/api/v1/auth/login", json={"username": "first", "password": PASSWORD}
        )
        assert login.status_code == 200
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        assert anonymous.get("/api/v1/flows", headers=headers).status_code == 200
    keys = sorted(p.name for p in (node.home / "identity").iterdir())
    assert "session.key" in keys
    assert oct((node.home / "identity" / "session.key").stat().st_mode & 0o777) == "0o600"


def test_the_node_signs_audit_checkpoints_in_a_process_of_its_own(node: RunningNode) -> None:
    """The checkpointer child signs the tail on shutdown; `amos audit verify` passes after it."""
    state = json.loads((node.home / "node.json").read_text())
    assert "audit-checkpointer" in state["children"]
    with node.admin() as client:
        assert client.get("/api/v1/me").status_code == 200
    _stop(node)
    sink = node.home / "audit" / "checkpoints.jsonl"
    assert sink.read_text().strip(), "no checkpoint was written on shutdown"
    verified = subprocess.run(
        [AMOS, "audit", "verify"], env=node.env(), capture_output=True, text=True, check=False
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_the_supervisor_carries_neither_the_store_nor_the_temporal_sdk(node: RunningNode) -> None:
    """`amos up` only starts and watches children: its set-up ran in children that exited.

    Their native libraries are what a Python process cannot unload: the supervisor, alive as
    long as the node, maps neither SQLAlchemy's nor the Temporal SDK's, nor the Rust bridge.
    The API child (which does need them) shows that the probe can see them.
    """
    state = json.loads((node.home / "node.json").read_text())

    def mapped(pid: int) -> str:
        return Path(f"/proc/{pid}/maps").read_text(encoding="utf-8", errors="replace")

    supervisor = mapped(node.process.pid)
    assert "temporal_sdk_bridge" not in supervisor
    assert "/sqlalchemy/" not in supervisor
    assert "/pydantic_core/" in supervisor  # settings are pydantic: the probe reads .so maps
    assert "temporal_sdk_bridge" in mapped(int(state["children"]["api"]))


def test_the_node_runs_its_own_runner_for_steps_that_ask_for_one(node: RunningNode) -> None:
    """`amos up` enrolls a local runner; a step with `runner` runs on it over mTLS."""
    flow = {
        "dsl": "amos.flow/v1",
        "name": "on-runner",
        "steps": [
            {
                "id": "echo",
                "type": "action",
                "action": "core.echo",
                "runner": {"zone": "local"},
                "with": {"value": "from the runner"},
            }
        ],
        "outputs": {"said": "${steps.echo.output}"},
    }
    with node.admin() as client:
        runners = _until(
            lambda: [r for r in client.get("/api/v1/runners").json() if r["last_heartbeat_at"]]
        )
        assert runners[0]["zone"] == "local"
        assert client.put("/api/v1/flows/on-runner", json={"document": flow}).status_code == 200
        run = client.post("/api/v1/runs", json={"flow": "on-runner", "inputs": {}}).json()
        done = _until(lambda: (r := _run(client, run["run_id"]))["status"] == "completed" and r)
        assert done["output"] == {"said": "from the runner"}
