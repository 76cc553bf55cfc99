"""Dispatch benchmark: a step run by a runner against the same step run in-process.

Run with `make bench-dispatch` (or `python bench/dispatch.py`). One embedded Temporal server,
the flow worker in this process, the API (with its mTLS runner endpoint) as its own process,
and 1 then 4 `amos runner start` processes. Both flows have one `core.echo` step; the only
difference is `"runner": {"zone": "bench"}`, so the difference is the cost of dispatch:
enqueue, lease (long-poll), mTLS round trips, report, async completion.

Prints, for 1 and 4 runners:
- step latency p50/p99 (run start to workflow result), runner vs in-process, the p50 added by
  dispatch and the ratio. The two flows' samples alternate (in-process, runner, in-process,
  ...), so a machine busy with other work slows both alike and the difference stays fair;
- enqueue-to-report latency p50/p99 of the jobs (from the store's timestamps);
- jobs per second with BENCH_DISPATCH_BURST runs started at once, and the in-process rate.

The target (issue 15): dispatch adds at most 25 ms p50 over the in-process step.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from amosflow.config import EngineSettings, RunnerSettings, StoreSettings
from amosflow.engine.client import connect, result_of
from amosflow.engine.codec import payload_codec
from amosflow.engine.embedded import EmbeddedTemporal, free_port
from amosflow.engine.worker import build_worker
from amosflow.runner.dispatch import enroll_local
from amosflow.store import RunnerJobRow, open_store
from auth import admin_token

SAMPLES = int(os.environ.get("BENCH_DISPATCH_SAMPLES", "40"))
BURST = int(os.environ.get("BENCH_DISPATCH_BURST", "40"))
ZONE = "bench"


def flow(name: str, *, remote: bool) -> dict[str, Any]:
    """One echo step, on a runner or in the flow worker."""
    step: dict[str, Any] = {
        "id": "echo",
        "type": "action",
        "action": "core.echo",
        "with": {"value": "${inputs.n}"},
    }
    if remote:
        step["runner"] = {"zone": ZONE}
    return {
        "dsl": "amos.flow/v1",
        "name": name,
        "inputs": {"type": "object", "properties": {"n": {"type": "integer"}}},
        "outputs": {"n": "${steps.echo.output}"},
        "steps": [step],
    }


def pct(values: list[float], q: float) -> float:
    """The q-quantile in milliseconds."""
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def child_env(home: Path, settings: EngineSettings, runner_port: int) -> dict[str, str]:
    """The environment of the API and runner processes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMOS_")}
    return env | {
        "AMOS_HOME": str(home),
        "AMOS_TEMPORAL_ADDRESS": str(settings.temporal_address),
        "AMOS_TASK_QUEUE": settings.task_queue,
        "AMOS_RUNNER_PORT": str(runner_port),
    }


async def wait_ready(client: httpx.AsyncClient) -> None:
    """Wait until the API answers."""
    for _ in range(600):
        try:
            if (await client.get("/healthz")).status_code == httpx.codes.OK:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.05)
    raise RuntimeError("API did not start")


async def one_run(client: httpx.AsyncClient, temporal: Any, name: str, n: int) -> float:
    """Start a run through the API and wait for its workflow result; seconds taken."""
    t0 = time.perf_counter()
    started = await client.post("/api/v1/runs", json={"flow": name, "inputs": {"n": n}})
    started.raise_for_status()
    await result_of(temporal.get_workflow_handle(started.json()["run_id"]))
    return time.perf_counter() - t0


async def latencies(client: httpx.AsyncClient, temporal: Any, name: str) -> list[float]:
    """SAMPLES sequential runs of ``name``."""
    return [await one_run(client, temporal, name, i) for i in range(SAMPLES)]


async def paired(client: httpx.AsyncClient, temporal: Any) -> tuple[list[float], list[float]]:
    """SAMPLES sequential runs of each flow, alternating: (in-process, runner) latencies."""
    local: list[float] = []
    remote: list[float] = []
    for i in range(SAMPLES):
        local.append(await one_run(client, temporal, "bench-local", i))
        remote.append(await one_run(client, temporal, "bench-remote", i))
    return local, remote


async def burst(client: httpx.AsyncClient, temporal: Any, name: str) -> float:
    """Runs per second with BURST runs started at once."""
    t0 = time.perf_counter()
    await asyncio.gather(*(one_run(client, temporal, name, i) for i in range(BURST)))
    return BURST / (time.perf_counter() - t0)


def job_latencies(home: Path) -> list[float]:
    """Enqueue-to-report seconds of every finished job."""
    store = open_store(StoreSettings(home=home).url)
    try:
        with store.session(read_only=True) as session:
            rows = session.scalars(select(RunnerJobRow).where(RunnerJobRow.state == "completed"))
            return [(r.updated_at - r.created_at).total_seconds() for r in rows]
    finally:
        store.dispose()


def start_runners(home: Path, env: dict[str, str], count: int) -> list[subprocess.Popen[bytes]]:
    """Enroll (once) and start ``count`` runner processes in zone ``bench``."""
    settings = RunnerSettings(home=home, port=int(env["AMOS_RUNNER_PORT"]))
    store = open_store(StoreSettings(home=home).url)
    try:
        dirs = [home / f"runner-{i}" for i in range(count)]
        for i, directory in enumerate(dirs):
            enroll_local(store, settings, directory, name=f"bench-{i}", zone=ZONE)
    finally:
        store.dispose()
    cmd = [sys.executable, "-m", "amosflow.runner.agent.main", "start", "--dir"]
    return [subprocess.Popen([*cmd, str(d)], env=env, stderr=subprocess.DEVNULL) for d in dirs]


async def wait_heartbeats(client: httpx.AsyncClient, count: int, since: datetime) -> None:
    """Wait until ``count`` runners of the zone have sent a heartbeat after ``since``."""
    for _ in range(600):
        listed = (await client.get("/api/v1/runners")).json()
        fresh = [
            r
            for r in listed
            if r["zone"] == ZONE
            and r["last_heartbeat_at"]
            and datetime.fromisoformat(r["last_heartbeat_at"]) > since
        ]
        if len(fresh) >= count:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("runners did not start")


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every process and wait."""
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout=30)


def start_api(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    """The API (and its runner endpoint) as its own process."""
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "amosflow.api.app:create_app"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    return subprocess.Popen(cmd, env=env)


async def measure(home: Path, settings: EngineSettings, temporal: Any) -> list[list[str]]:
    """Every row of the table."""
    runner_port = free_port()
    env = child_env(home, settings, runner_port)
    port = free_port()
    headers = {"Authorization": f"Bearer {admin_token(home)}"}
    api = start_api(env, port)
    rows: list[list[str]] = []
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=120, headers=headers
        ) as client:
            await wait_ready(client)
            for name, remote in (("bench-local", False), ("bench-remote", True)):
                body = {"document": flow(name, remote=remote)}
                (await client.put(f"/api/v1/flows/{name}", json=body)).raise_for_status()
            await latencies(client, temporal, "bench-local")  # warm-up
            local_rate = await burst(client, temporal, "bench-local")
            for count in (1, 4):
                since = datetime.now(UTC)
                runners = await asyncio.to_thread(start_runners, home, env, count)
                try:
                    await wait_heartbeats(client, count, since)
                    await one_run(client, temporal, "bench-remote", -1)  # warm-up
                    local, remote = await paired(client, temporal)
                    rate = await burst(client, temporal, "bench-remote")
                finally:
                    await asyncio.to_thread(stop, runners)
                ratio = statistics.median(remote) / statistics.median(local)
                added = 1000 * (statistics.median(remote) - statistics.median(local))
                rows.append(
                    [
                        f"{count} runner(s)",
                        f"{pct(local, 0.5):.1f} / {pct(local, 0.99):.1f}",
                        f"{pct(remote, 0.5):.1f} / {pct(remote, 0.99):.1f}",
                        f"{added:.1f}",
                        f"{ratio:.2f}",
                        f"{local_rate:.1f}",
                        f"{rate:.1f}",
                    ]
                )
            jobs = job_latencies(home)
            spread = f"{pct(jobs, 0.5):.1f} / {pct(jobs, 0.99):.1f}"
            rows.append(["jobs, enqueue to report", "", spread, "", "", "", f"{len(jobs)} jobs"])
    finally:
        api.terminate()
        api.wait(timeout=30)
    return rows


async def main() -> None:
    """Run the measurements against one Temporal server and print the table."""
    with tempfile.TemporaryDirectory(prefix="amos-bench-dispatch-") as tmp:
        home = Path(tmp)
        server = EmbeddedTemporal(home / "temporal")
        server.start()
        try:
            settings = EngineSettings(
                home=home, temporal_address=server.address, task_queue="bench-dispatch"
            )
            temporal = await connect(server.address, codec=payload_codec(home, create=True))
            async with build_worker(temporal, settings):
                rows = await measure(home, settings, temporal)
        finally:
            server.stop()
    print(f"samples per latency: {SAMPLES}; burst of {BURST} runs; one core.echo step")
    header = ["", "in-process p50/p99 ms", "runner p50/p99 ms", "added p50 ms", "ratio p50"]
    header += ["in-process runs/s", "runner runs/s"]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(f"{c:<{w}}" for c, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    asyncio.run(main())
