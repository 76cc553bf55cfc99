"""AMOS FLOW as a user runs it: `amos up` in its own home, flows and signed webhooks via the API."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from amosflow.engine.embedded import free_port
from amosflow.triggers import sign

AMOS = str(Path(sys.executable).with_name("amos"))
PASSWORD = secrets.token_urlsafe(18)
HOOK_KEY_NAME = "hooks.bench"
TERMINAL = {"completed", "failed", "cancelled", "timed_out"}
INPUTS = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


def flows() -> dict[str, dict[str, Any]]:
    """The four flows, each answering ``{"x": ...}`` computed from the delivery's ``n``.

    A flow needs at least one step, so "0 steps" is a lone `succeed`: it only ends the run.
    """
    pure20 = [{"id": "s0", "type": "set", "values": {"x": "${inputs.n + 1}"}}]
    pure20 += [
        {"id": f"s{i}", "type": "set", "values": {"x": "${vars.x + 1}"}} for i in range(1, 20)
    ]
    durable = [
        {"id": f"s{i}", "type": "action", "action": "core.echo", "with": {"value": "${inputs.n}"}}
        for i in range(20)
    ]
    bodies: dict[str, tuple[list[dict[str, Any]], str]] = {
        "pure-0": ([{"id": "done", "type": "succeed"}], "${inputs.n}"),
        "pure-1": ([{"id": "s0", "type": "set", "values": {"x": "${inputs.n + 1}"}}], "${vars.x}"),
        "pure-20": (pure20, "${vars.x}"),
        "durable-20": (durable, "${steps.s19.output}"),
    }
    return {
        name: {
            "dsl": "amos.flow/v1",
            "name": f"bench-{name}",
            "inputs": INPUTS,
            "outputs": {"x": output},
            "steps": steps,
        }
        for name, (steps, output) in bodies.items()
    }


def expected(case: str, n: int) -> int:
    """What each flow answers for ``n``."""
    return {"pure-0": n, "pure-1": n + 1, "pure-20": n + 20, "durable-20": n}[case]


class AmosNode:
    """One `amos up` process in a private home, and a client signed in to its API."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[str] | None = None
        self.printed: list[str] = []
        self._up = threading.Event()
        self.key = secrets.token_hex(32)
        self.respond_result = False
        self.client: httpx.AsyncClient | None = None

    def env(self) -> dict[str, str]:
        """A user's environment on this host: no AMOS_ settings but the home and ports."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AMOS_")}
        return env | {
            "AMOS_HOME": str(self.home),
            "AMOS_API_PORT": str(self.port),
            "AMOS_API_URL": self.url,
            "AMOS_RUNNER_PORT": str(free_port()),
        }

    def _drain(self) -> None:
        """Keep reading the node's output, so its pipe never fills."""
        assert self.process is not None
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.printed.append(line)
            if "node is up" in line:
                self._up.set()
        self._up.set()

    def start(self, timeout_s: float = 300) -> int:
        """Start `amos up` and wait until it says the node is up; return its pid."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [AMOS, "up"],
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._drain, daemon=True).start()
        if not self._up.wait(timeout_s) or self.process.poll() is not None:
            raise RuntimeError("amos up did not come up:\n" + "".join(self.printed[-40:]))
        deadline = time.monotonic() + timeout_s
        while self.process.poll() is None and time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=5).status_code == httpx.codes.OK:
                    return self.process.pid
            except httpx.HTTPError:
                pass
            time.sleep(0.2)  # waiting for the node we started to answer, as a user's script would
        raise RuntimeError("amos up never became ready:\n" + "".join(self.printed[-40:]))

    def stop(self) -> None:
        """SIGTERM, as Ctrl-C would; the supervisor stops its children."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def create_admin(self) -> None:
        """The first administrator, created on the host as the README shows."""
        created = subprocess.run(
            [AMOS, "admin", "create", "--username", "bench", "--password-stdin"],
            input=PASSWORD + "\n",
            env=self.env(),
            capture_output=True,
            text=True,
            check=False,
        )
        if created.returncode != 0:
            raise RuntimeError(f"amos admin create failed: {created.stderr}")

    async def prepare(self) -> None:
        """Create an administrator, sign in, save the flows, the hook key and the hooks."""
        await asyncio.to_thread(self.create_admin)
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as plain:
            login = await plain.post(
                "/api/v1/auth/login", json={"username": "bench", "password": PASSWORD}
            )
            login.raise_for_status()
            access = login.json()["access_token"]
            pat = await plain.post(
                "/api/v1/me/tokens",
                json={"name": "bench"},
                headers={"Authorization": f"Bearer {access}"},
            )
            pat.raise_for_status()
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        self.client = httpx.AsyncClient(
            base_url=self.url,
            timeout=120,
            limits=limits,
            headers={"Authorization": f"Bearer {pat.json()['token']}"},
        )
        (
            await self.client.put(f"/api/v1/secrets/{HOOK_KEY_NAME}", json={"value": self.key})
        ).raise_for_status()
        for case, doc in flows().items():
            saved = await self.client.put(f"/api/v1/flows/{doc['name']}", json={"document": doc})
            saved.raise_for_status()
            await self._hook(case, doc["name"])

    async def _hook(self, case: str, flow: str) -> None:
        """A webhook on ``flow`` with room for the load; `respond: result` when the node has it."""
        assert self.client is not None
        doc: dict[str, Any] = {
            "name": f"hook-{case}",
            "type": "webhook",
            "flow": flow,
            "secret": HOOK_KEY_NAME,
            "rate_per_s": 10_000,
            "burst": 10_000,
        }
        saved = await self.client.put(
            f"/api/v1/triggers/{doc['name']}",
            json={"document": {**doc, "respond": "result", "wait_s": 60}},
        )
        if saved.status_code == httpx.codes.UNPROCESSABLE_ENTITY:
            saved = await self.client.put(f"/api/v1/triggers/{doc['name']}", json={"document": doc})
            self.respond_result = False
        else:
            self.respond_result = True
        saved.raise_for_status()

    async def execute(self, case: str, n: int) -> None:
        """One signed delivery, then its run's recorded end; a wrong answer is an error."""
        assert self.client is not None
        body = json.dumps({"n": n}).encode()
        stamp, delivery = str(int(time.time())), uuid.uuid4().hex
        response = await self.client.post(
            f"/api/v1/hooks/hook-{case}",
            content=body,
            headers={
                "content-type": "application/json",
                "X-Amos-Timestamp": stamp,
                "X-Amos-Delivery": delivery,
                "X-Amos-Signature": sign(self.key.encode(), stamp, delivery, body),
            },
        )
        if response.status_code not in {httpx.codes.OK, httpx.codes.ACCEPTED}:
            raise RuntimeError(f"hook {case}: {response.status_code} {response.text}")
        run = response.json()
        while run["status"] not in TERMINAL:
            await asyncio.sleep(0.01)  # polling interval of a client without `respond: result`
            polled = await self.client.get(f"/api/v1/runs/{run['run_id']}")
            polled.raise_for_status()
            run = polled.json()
        got = (run.get("output") or {}).get("x")
        if run["status"] != "completed" or got != expected(case, n):
            raise RuntimeError(f"run {run['run_id']} of {case}: {run['status']}, x={got!r}")

    async def aclose(self) -> None:
        """Close the API client."""
        if self.client is not None:
            await self.client.aclose()
