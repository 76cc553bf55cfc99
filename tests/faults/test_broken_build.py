"""A deliberately broken build fails the battery, and the checker names what it broke.

The product has no break switch. Each case copies the package source into a temporary
directory, applies one small textual patch there, and runs the node's processes from that
copy (``PYTHONPATH``; a child prints where ``amosflow`` resolves to prove it). If the text
a patch targets is gone, the case fails: the product changed and the patch must follow it,
never pass silently. Each case is a small seeded battery, then the checker and the history
readers read what happened and must name the broken promise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

import amosflow
from amosflow.api.app import NodeConfig
from amosflow.bus.embedded import EmbeddedNats
from amosflow.config import EngineSettings, RunnerSettings
from amosflow.engine.embedded import EmbeddedTemporal, free_port
from tests.api.conftest import Node, running_node
from tests.api.flows_util import TERMINAL, wait_for_end
from tests.faults import history
from tests.faults.checker import Findings, check
from tests.faults.harness import Faults, Process, wait_until
from tests.scenarios.test_runners import (
    AMOS,
    SideEffects,
    _enroll,
    _env,
    _flow,
    _runner_alive,
    _save_and_start,
)
from tests.support.identity import admin_token

pytestmark = [pytest.mark.temporal]
SEED = 16
SOURCE = Path(amosflow.__file__).parent
LEASE_SECONDS = 2.0


@dataclass(frozen=True)
class Patch:
    """One textual change to one module of the package: ``old`` must occur exactly once."""

    module: str
    old: str
    new: str


#: The HTTP action's idempotency key made random per attempt (a retry is a new side effect).
RANDOM_KEY = Patch(
    "engine/activities/http.py",
    "headers[IDEMPOTENCY_HEADER] = ctx.idempotency_key\n",
    "headers[IDEMPOTENCY_HEADER] = f\"{ctx.idempotency_key}/{__import__('uuid').uuid4()}\"\n",
)
#: The lease holder check (renewals, completions, secret deliveries) without its fence.
NO_FENCE = Patch("runner/dispatch/_leases.py", "        or row.fence != fence\n", "")


def patched_build(root: Path, patch: Patch) -> Path:
    """Copy the package under ``root`` with ``patch`` applied; return the PYTHONPATH entry."""
    build = root / "broken-build"
    shutil.copytree(SOURCE, build / "amosflow", ignore=shutil.ignore_patterns("__pycache__"))
    module = build / "amosflow" / patch.module
    text = module.read_text()
    if text.count(patch.old) != 1:
        pytest.fail(
            f"the patch's target text is not found once in {patch.module}: the product "
            f"changed, update the patch ({patch.old!r})",
            pytrace=False,
        )
    module.write_text(text.replace(patch.old, patch.new))
    return build


def with_build(env: dict[str, str], build: Path) -> dict[str, str]:
    """``env`` for a child that imports the broken build; checked by asking a child."""
    patched = env | {"PYTHONPATH": str(build)}
    where = subprocess.run(
        [sys.executable, "-c", "import amosflow; print(amosflow.__file__)"],
        env=patched,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    assert Path(where).is_relative_to(build), f"amosflow resolves to {where}, not the build"
    return patched


def test_a_patch_whose_target_text_is_gone_fails_the_case(tmp_path: Path) -> None:
    """A patch that no longer applies fails the test instead of testing the unbroken build."""
    gone = Patch("runner/dispatch/_leases.py", "text the product never had\n", "")
    with pytest.raises(pytest.fail.Exception, match="the product changed"):
        patched_build(tmp_path, gone)


@pytest.fixture
def battery_node(
    settings: EngineSettings, tmp_path: Path, nats_server: EmbeddedNats
) -> Iterator[Node]:
    runners = RunnerSettings(
        port=free_port(), lease_seconds=LEASE_SECONDS, dispatch_wait_seconds=60.0
    )
    with running_node(settings, tmp_path, nats_server, runners=runners) as node:
        yield node


def _two_step_flow(url: str) -> dict[str, Any]:
    flow = _flow(url) | {"name": "battery"}
    step = flow.pop("steps")[0]
    flow.pop("outputs")
    flow["steps"] = [step | {"id": "first"}, step | {"id": "second"}]
    return flow


def test_random_idempotency_keys_fail_the_battery_as_unexpected_keys(
    battery_node: Node, target: SideEffects, tmp_path: Path
) -> None:
    """Runner kills on a seed with a runner whose HTTP key changes per attempt: keys are named."""
    node, faults = battery_node, Faults(seed=SEED)
    env = with_build(_env(node), patched_build(tmp_path, RANDOM_KEY))
    identity = _enroll(node, tmp_path / "runner")
    argv = [AMOS, "runner", "start", "--dir", str(identity.directory)]
    runner = Process("runner", argv, env, tmp_path / "runner.log", faults).start()
    try:
        wait_until(lambda: _runner_alive(node, identity.runner_id), what="runner up")
        saved = node.client.put(
            "/api/v1/flows/battery", json={"document": _two_step_flow(target.url)}
        )
        assert saved.status_code == 200, saved.text
        run_ids = [_start(node, "battery") for _ in range(3)]
        spacing = threading.Event()  # never set: the schedule's spacing between faults
        for _ in range(2):
            spacing.wait(faults.dice.uniform(0.5, 2.0))
            runner.kill()
            runner.start()
        runs = wait_until(lambda: _ended(node, run_ids), timeout=60, what=f"runs ended ({faults})")
    finally:
        runner.stop()
    with target.lock:
        performed, requested = Counter(target.done), list(target.requests)
    findings = check(runs, performed, requested, ("first", "second"), node.config.store_url)
    _read_leases(findings, node.config.store_url)
    assert not findings.ok, f"the broken build passed the checker [{faults}]"
    assert "unexpected key" in str(findings), f"{findings} [{faults}]"


def _start(node: Node, flow: str) -> str:
    started = node.client.post("/api/v1/runs", json={"flow": flow, "inputs": {}})
    assert started.status_code == 201, started.text
    return str(started.json()["run_id"])


def _ended(node: Node, run_ids: list[str]) -> list[dict[str, Any]] | None:
    runs = [node.client.get(f"/api/v1/runs/{r}").json() for r in run_ids]
    return runs if all(r["status"] in TERMINAL for r in runs) else None


def _read_leases(findings: Findings, store_url: str) -> None:
    for violation in history.leases(store_url):
        findings.add(violation)


class HeldTarget:
    """A counting target that holds each of its first ``hold`` calls until it is released."""

    def __init__(self, hold: int) -> None:
        self.requests: list[str] = []
        self.done: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.gates = [threading.Event() for _ in range(hold)]
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                return

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                key = self.headers.get("idempotency-key", "")
                with owner.lock:
                    owner.requests.append(key)
                    arrival = len(owner.requests) - 1
                    if owner.done[key] == 0:
                        owner.done[key] += 1  # the side effect, once per key
                if arrival < len(owner.gates):
                    owner.gates[arrival].wait(60)
                body = json.dumps({"key": key}).encode()
                try:
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    return  # the caller is gone

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/effect"

    def arrived(self, count: int) -> bool:
        with self.lock:
            return len(self.requests) >= count

    def stop(self) -> None:
        for gate in self.gates:
            gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def held_target() -> Iterator[HeldTarget]:
    service = HeldTarget(hold=2)
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def broken_fence_node(
    settings: EngineSettings,
    temporal_server: EmbeddedTemporal,
    nats_server: EmbeddedNats,
    tmp_path: Path,
) -> Iterator[Node]:
    """The API (its runner endpoint and flow worker) as a process run from the broken build."""
    build = patched_build(tmp_path, NO_FENCE)
    runners = RunnerSettings(port=free_port(), lease_seconds=LEASE_SECONDS)
    config = NodeConfig(
        engine=settings,
        store_url=f"sqlite:///{tmp_path / 'amos.db'}",
        catalog_path=tmp_path / "catalog",
        nats_url=nats_server.url,
        runners=runners,
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("AMOS_")}
    env = with_build(
        base
        | {
            "AMOS_HOME": str(settings.home),
            "AMOS_DATABASE_URL": config.store_url,
            "AMOS_CATALOG_PATH": str(config.catalog_path),
            "AMOS_TEMPORAL_ADDRESS": temporal_server.address,
            "AMOS_TASK_QUEUE": settings.task_queue,
            "AMOS_NATS_URL": nats_server.url,
            "AMOS_RUNNER_PORT": str(runners.port),
            "AMOS_RUNNER_LEASE_SECONDS": str(LEASE_SECONDS),
            "AMOS_API_RUN_WORKER": "true",
            "AMOS_EGRESS_ALLOW": os.environ.get("AMOS_EGRESS_ALLOW", ""),
        },
        build,
    )
    port = free_port()
    argv = [
        *(sys.executable, "-m", "uvicorn", "--factory", "amosflow.api.app:create_app"),
        *("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"),
    ]
    api = Process("api", argv, env, tmp_path / "api.log", Faults(seed=SEED)).start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: _ready(url) or not api.alive, timeout=60, what="the broken build's API ready"
        )
        assert api.alive, api.output()
        headers = {"Authorization": f"Bearer {admin_token(config.store_url, settings.home)}"}
        with httpx.Client(base_url=url, timeout=30, headers=headers) as client:
            yield Node(url=url, client=client, config=config)
    finally:
        api.stop()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=5).status_code == httpx.codes.OK
    except httpx.HTTPError:
        return False


def test_a_lease_check_without_its_fence_lets_a_paused_runner_report_as_a_second_holder(
    broken_fence_node: Node, held_target: HeldTarget, tmp_path: Path
) -> None:
    """A runner restarted while its old process hangs: the old report is named as two holders.

    The old process holds the job, calling the target, and is paused past its lease; the
    runner is started again and leases the job at the next fence. The old process resumes
    and reports at its old fence while the new one still holds the job: the real build
    refuses that report (409); the broken one accepts it.
    """
    node, faults = broken_fence_node, Faults(seed=SEED)
    identity = _enroll(node, tmp_path / "runner")
    argv = [AMOS, "runner", "start", "--dir", str(identity.directory)]
    old = Process("runner", argv, _env(node), tmp_path / "runner.log", faults).start()
    new = Process("runner-again", argv, _env(node), tmp_path / "runner-again.log", faults)
    try:
        wait_until(lambda: _runner_alive(node, identity.runner_id), what="runner up")
        run_id = _save_and_start(node, _flow(held_target.url))
        wait_until(lambda: held_target.arrived(1), what="the first call at the target")
        old.pause()
        new.start()
        wait_until(lambda: held_target.arrived(2), what=f"the call of the next lease ({faults})")
        held_target.gates[0].set()
        old.resume()
        leased = wait_until(
            lambda: history.leases(node.config.store_url),
            timeout=30,
            what=f"the old holder's report accepted by the broken build ({faults})",
        )
        held_target.gates[1].set()
        run = wait_for_end(node.client, run_id, timeout=60)
    finally:
        old.stop()
        new.stop()
    with held_target.lock:
        performed, requested = Counter(held_target.done), list(held_target.requests)
    findings = check([run], performed, requested, ("call",), node.config.store_url)
    _read_leases(findings, node.config.store_url)
    assert leased
    assert not findings.ok, f"the broken build passed the checker [{faults}]"
    assert "two holders" in str(findings), f"{findings} [{faults}]"
