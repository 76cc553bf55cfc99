"""The runner fleet end to end: real `amos runner` processes, mTLS, leases, SIGKILL, zones."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from amosflow.bus.embedded import EmbeddedNats
from amosflow.config import EngineSettings, RunnerSettings
from amosflow.engine.client import connect
from amosflow.engine.embedded import free_port
from amosflow.runner.agent import RunnerIdentity
from amosflow.runner.dispatch import create_enrollment_token
from amosflow.store import open_store
from tests.api.conftest import Node, running_node
from tests.api.flows_util import wait_for_end
from tests.support.history import history_text

pytestmark = [pytest.mark.temporal, pytest.mark.slow]
AMOS = str(Path(sys.executable).with_name("amos"))
LEASE_SECONDS = 2.0


class SideEffects:
    """A target service that performs each Idempotency-Key once and can hold the first call."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.authorization: list[str] = []
        self.done: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.hold_first = False
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                key = self.headers.get("idempotency-key", "")
                with owner.lock:
                    owner.requests.append(key)
                    owner.authorization.append(self.headers.get("authorization", ""))
                    first = len(owner.requests) == 1
                    if owner.done[key] == 0:
                        owner.done[key] += 1  # the side effect, once per key
                if first and owner.hold_first:
                    owner.arrived.set()
                    owner.release.wait(30)
                body = json.dumps({"key": key}).encode()
                try:
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    return  # the caller died meanwhile

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/effect"

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def target() -> Iterator[SideEffects]:
    service = SideEffects()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def fleet_node(
    settings: EngineSettings, tmp_path: Path, nats_server: EmbeddedNats
) -> Iterator[Node]:
    """A node whose runner endpoint listens on a free port, with short leases."""
    runners = RunnerSettings(port=free_port(), lease_seconds=LEASE_SECONDS)
    with running_node(settings, tmp_path, nats_server, runners=runners) as node:
        yield node


def _token(node: Node, zone: str, capabilities: list[str]) -> str:
    store = open_store(node.config.store_url)
    try:
        with store.session() as session:
            return create_enrollment_token(
                session,
                zone=zone,
                capabilities=capabilities,
                created_by="user:admin",
                ttl=timedelta(hours=1),
                now=datetime.now(UTC),
            )
    finally:
        store.dispose()


def _env(node: Node) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMOS_")}
    return env | {
        "AMOS_HOME": str(node.config.engine.home),
        "AMOS_EGRESS_ALLOW": os.environ.get("AMOS_EGRESS_ALLOW", ""),
    }


def _enroll_cli(node: Node, directory: Path, token: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            AMOS,
            "runner",
            "enroll",
            "--url",
            node.url,
            "--token",
            token,
            "--name",
            directory.name,
            "--dir",
            str(directory),
        ],
        env=_env(node),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def _enroll(node: Node, directory: Path, zone: str = "core") -> RunnerIdentity:
    done = _enroll_cli(node, directory, _token(node, zone, ["http", "core"]))
    assert done.returncode == 0, done.stderr
    return RunnerIdentity.load(directory)


def _start(node: Node, directory: Path) -> subprocess.Popen[str]:
    """Start `amos runner start`; its log goes to runner.log beside its key, for diagnosis."""
    with (directory / "runner.log").open("a") as log:
        return subprocess.Popen(
            [AMOS, "runner", "start", "--dir", str(directory)],
            env=_env(node),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until(predicate: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)  # polling a live system for a condition
    raise AssertionError("condition not met in time")


def _runner_alive(node: Node, runner_id: str) -> bool:
    runners = node.client.get("/api/v1/runners").json()
    return any(r["id"] == runner_id and r["last_heartbeat_at"] for r in runners)


def _flow(url: str, zone: str = "core", headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "dsl": "amos.flow/v1",
        "name": "remote-effect",
        "steps": [
            {
                "id": "call",
                "type": "action",
                "action": "http.request",
                "runner": {"zone": zone},
                "timeout": "60s",
                "with": {"method": "POST", "url": url, "json": {"n": 1}, "headers": headers or {}},
            }
        ],
        "outputs": {"status": "${steps.call.output.status}"},
    }


def _save_and_start(node: Node, flow: dict[str, Any]) -> str:
    saved = node.client.put(f"/api/v1/flows/{flow['name']}", json={"document": flow})
    assert saved.status_code == 200, saved.text
    started = node.client.post("/api/v1/runs", json={"flow": flow["name"], "inputs": {}})
    assert started.status_code == 201, started.text
    return str(started.json()["run_id"])


def test_a_runner_enrolls_and_runs_a_step_once(
    fleet_node: Node, target: SideEffects, tmp_path: Path
) -> None:
    """Enrollment swaps the token for a certificate; the step runs on the runner, once."""
    identity = _enroll(fleet_node, tmp_path / "runner-a")
    assert oct((identity.directory / "runner.key").stat().st_mode & 0o777) == "0o600"
    runner = _start(fleet_node, identity.directory)
    try:
        _wait_until(lambda: _runner_alive(fleet_node, identity.runner_id))
        run_id = _save_and_start(fleet_node, _flow(target.url))
        done = wait_for_end(fleet_node.client, run_id)
        assert done["status"] == "completed", done
        assert done["output"] == {"status": 200}
        assert list(target.done.values()) == [1]
    finally:
        _stop(runner)
        print((identity.directory / "runner.log").read_text())


def test_sigkill_mid_job_another_runner_finishes_once_and_the_late_report_is_refused(
    fleet_node: Node, target: SideEffects, tmp_path: Path
) -> None:
    """Kill the runner holding the lease; it expires, the other runner finishes; 409 for the dead."""
    first = _enroll(fleet_node, tmp_path / "runner-a")
    second = _enroll(fleet_node, tmp_path / "runner-b")
    target.hold_first = True
    runner_a = _start(fleet_node, first.directory)
    runner_b: subprocess.Popen[str] | None = None
    try:
        _wait_until(lambda: _runner_alive(fleet_node, first.runner_id))
        run_id = _save_and_start(fleet_node, _flow(target.url))
        assert target.arrived.wait(30), "the runner never called the target"
        fleet = {r["id"]: r for r in fleet_node.client.get("/api/v1/runners").json()}
        assert fleet[first.runner_id]["jobs"] == [f"{run_id}/call/0"]
        runner_a.send_signal(signal.SIGKILL)
        runner_a.wait(timeout=10)
        target.release.set()
        runner_b = _start(fleet_node, second.directory)
        done = wait_for_end(fleet_node.client, run_id, timeout=90)
        assert done["status"] == "completed", done
        key = f"{run_id}/call/0"
        assert [k for k in target.requests if k.startswith(run_id)] == [key, key]
        assert target.done[key] == 1  # the side effect happened once for the key

        late = httpx.post(
            f"{first.endpoint}/runner/v1/complete",
            json={"job_id": key, "fence": 1, "output": {"status": 200}},
            verify=first.tls(),
            timeout=10,
        )
        assert late.status_code == 409, late.text
        denied = fleet_node.client.get(
            "/api/v1/audit", params={"action": "runners.complete"}
        ).json()["items"]
        assert any(r["outcome"] == "denied" for r in denied)
    finally:
        _stop(runner_a)
        if runner_b is not None:
            _stop(runner_b)


def test_a_step_pinned_to_a_zone_without_runners_fails_fast_and_says_why(
    fleet_node: Node, target: SideEffects, tmp_path: Path
) -> None:
    """A `dmz` step with only a `core` runner fails in under 2 seconds, naming zone and capability."""
    identity = _enroll(fleet_node, tmp_path / "runner-core")
    runner = _start(fleet_node, identity.directory)
    try:
        _wait_until(lambda: _runner_alive(fleet_node, identity.runner_id))
        began = time.monotonic()
        run_id = _save_and_start(fleet_node, _flow(target.url, zone="dmz"))
        done = wait_for_end(fleet_node.client, run_id)
        elapsed = time.monotonic() - began
        assert done["status"] == "failed", done
        assert "dmz" in json.dumps(done["error"])
        assert "http" in json.dumps(done["error"])
        assert elapsed < 2.0, elapsed
        assert target.requests == []
    finally:
        _stop(runner)


def test_the_endpoint_refuses_no_certificate_a_revoked_runner_and_a_reused_token(
    fleet_node: Node, tmp_path: Path
) -> None:
    """No client certificate: no TLS session. Revoked: 401 at once. A used token: 401."""
    identity = _enroll(fleet_node, tmp_path / "runner-a")
    anonymous = ssl.create_default_context(cafile=str(identity.directory / "ca.pem"))
    with pytest.raises(httpx.HTTPError):
        httpx.post(
            f"{identity.endpoint}/runner/v1/heartbeat", json={}, verify=anonymous, timeout=10
        )
    beat = httpx.post(
        f"{identity.endpoint}/runner/v1/heartbeat", json={}, verify=identity.tls(), timeout=10
    )
    assert beat.status_code == 200, beat.text
    revoked = fleet_node.client.post(f"/api/v1/runners/{identity.runner_id}/revoke")
    assert revoked.status_code == 200, revoked.text
    refused = httpx.post(
        f"{identity.endpoint}/runner/v1/heartbeat", json={}, verify=identity.tls(), timeout=10
    )
    assert refused.status_code == 401
    token = _token(fleet_node, "core", ["http"])
    assert _enroll_cli(fleet_node, tmp_path / "runner-b", token).returncode == 0
    reused = _enroll_cli(fleet_node, tmp_path / "runner-c", token)
    assert reused.returncode == 4
    assert "refused" in reused.stderr
    assert not (tmp_path / "runner-c" / "runner.crt").exists()


CANARY = "canary-runner-secret-7f3a91"


def test_a_runner_gets_exactly_its_jobs_secrets_just_in_time_and_audited(
    fleet_node: Node, target: SideEffects, tmp_path: Path
) -> None:
    """The vault's value reaches the target through the runner; history and logs never see it."""
    saved = fleet_node.client.put("/api/v1/secrets/api.token", json={"value": CANARY})
    assert saved.status_code == 201, saved.text
    identity = _enroll(fleet_node, tmp_path / "runner-a")
    runner = _start(fleet_node, identity.directory)
    try:
        _wait_until(lambda: _runner_alive(fleet_node, identity.runner_id))
        flow = _flow(target.url, headers={"Authorization": "Bearer ${secrets.api.token}"})
        flow["requires"] = {"secrets": ["api.token"]}
        run_id = _save_and_start(fleet_node, flow)
        done = wait_for_end(fleet_node.client, run_id)
        assert done["status"] == "completed", done
        assert target.authorization == [f"Bearer {CANARY}"]
    finally:
        _stop(runner)
    delivered = fleet_node.client.get("/api/v1/audit", params={"action": "secrets.deliver"}).json()[
        "items"
    ]
    assert [(r["actor"], r["resource"], r["outcome"]) for r in delivered] == [
        (f"runner:{identity.runner_id}", "secrets/api.token", "ok")
    ]

    async def history() -> str:
        client = await connect(str(fleet_node.config.engine.temporal_address))
        return history_text(await client.get_workflow_handle(run_id).fetch_history())

    assert CANARY not in asyncio.run(history())
    assert CANARY not in (identity.directory / "runner.log").read_text()
    assert CANARY not in json.dumps(delivered)

    # a job's secrets go to its lease holder only, and only the names its call refers to
    late = httpx.post(
        f"{identity.endpoint}/runner/v1/secrets",
        json={"job_id": f"{run_id}/call/0", "fence": 1, "names": ["api.token"]},
        verify=identity.tls(),
        timeout=10,
    )
    assert late.status_code == 409
    assert CANARY not in late.text
