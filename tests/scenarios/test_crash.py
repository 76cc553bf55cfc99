"""Kill the worker mid-run: the run completes and every side effect happens exactly once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from amosflow.config import EngineSettings
from amosflow.engine.client import RunRequest, connect, result_of, start_run
from amosflow.engine.codec import payload_codec

pytestmark = pytest.mark.temporal

AMOS = str(Path(sys.executable).with_name("amos"))


class IdempotentServer:
    """Applies each Idempotency-Key's side effect once; holds the first step-3 call open."""

    def __init__(self) -> None:
        self.arrivals: Counter[str] = Counter()
        self.applied: Counter[str] = Counter()
        self.cond = threading.Condition()
        self.release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                return

            def do_POST(self) -> None:
                key = self.headers.get("idempotency-key", "")
                self.rfile.read(int(self.headers.get("content-length") or 0))
                with owner.cond:
                    owner.arrivals[key] += 1
                    first_step3 = self.path == "/step/3" and owner.arrivals[key] == 1
                    owner.cond.notify_all()
                if first_step3:
                    # The worker is killed while this request is in flight; nothing is applied.
                    owner.release.wait(timeout=60)
                    return
                with owner.cond:
                    if owner.applied[key] == 0:
                        owner.applied[key] += 1
                body = json.dumps({"key": key}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def wait_for(self, predicate: Any, timeout: float = 60) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout=timeout)

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def idempotent_server() -> Iterator[IdempotentServer]:
    server = IdempotentServer()
    try:
        yield server
    finally:
        server.close()


def start_worker(settings: EngineSettings) -> subprocess.Popen[str]:
    """Start `amos worker` as its own process and wait until it says it is ready."""
    env = {
        **os.environ,
        "AMOS_TEMPORAL_ADDRESS": str(settings.temporal_address),
        "AMOS_TASK_QUEUE": settings.task_queue,
        "AMOS_HOME": str(settings.home),
    }
    proc = subprocess.Popen(
        [AMOS, "worker"], env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "worker ready" in line, line
    return proc


def five_step_flow(url: str) -> dict[str, Any]:
    steps = [
        {
            "id": f"s{n}",
            "type": "action",
            "action": "http.request",
            "with": {"method": "POST", "url": f"{url}/step/{n}", "json": {"n": n}, "expect": [200]},
            "timeout": "3s",
            "retry": {"max_attempts": 10, "backoff": "200ms"},
        }
        for n in range(1, 6)
    ]
    return {"dsl": "amos.flow/v1", "name": "crash-test", "steps": steps}


def test_sigkill_worker_mid_run(
    settings: EngineSettings, idempotent_server: IdempotentServer
) -> None:
    """SIGKILL after step two: a new worker finishes the run; each key's effect is applied once."""
    server = idempotent_server
    first = start_worker(settings)
    doc = five_step_flow(server.url)

    async def begin() -> str:
        codec = payload_codec(settings.home, create=True)  # the worker reads and writes with it
        client = await connect(str(settings.temporal_address), codec=codec)
        handle = await start_run(
            client, RunRequest(flow=doc, inputs={}, library={}), task_queue=settings.task_queue
        )
        return handle.id

    run_id = asyncio.run(begin())
    key3 = f"{run_id}/s3/0"
    try:
        assert server.wait_for(lambda: server.arrivals[key3] >= 1), "step 3 never started"
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == -signal.SIGKILL
    server.release.set()

    second = start_worker(settings)
    try:

        async def finish() -> dict[str, Any]:
            codec = payload_codec(settings.home)
            client = await connect(str(settings.temporal_address), codec=codec)
            return await result_of(client.get_workflow_handle(run_id))

        result = asyncio.run(finish())
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)

    assert result["status"] == "completed", result
    expected = {f"{run_id}/s{n}/0" for n in range(1, 6)}
    assert set(server.arrivals) == expected
    assert all(server.applied[key] == 1 for key in expected), server.applied
    assert server.arrivals[key3] >= 2, "the retry of step 3 must reuse its idempotency key"
    for n in (1, 2, 4, 5):
        assert server.arrivals[f"{run_id}/s{n}/0"] == 1, f"step {n} ran more than once"
