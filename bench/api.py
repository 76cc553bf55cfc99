"""API benchmark: start-run latency through the API against an in-process start, and a soak.

Run with `make bench-api` (or `python bench/api.py`). One embedded Temporal server, one worker
in this process, the API as its own uvicorn process (so its memory can be read alone).

Prints:
- start latency p50/p99: `POST /api/v1/runs` (validate, record, start) against
  `engine.client.start_run` in-process (what `amos run` does), and the ratio;
- end-to-end latency p50/p99 (start until the run is recorded completed);
- a soak: runs started per second held for BENCH_API_SECONDS (default 60) with the API
  process's resident memory sampled at the start and the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from amosflow.config import EngineSettings
from amosflow.engine.client import RunRequest, connect, result_of, start_run
from amosflow.engine.codec import payload_codec
from amosflow.engine.embedded import EmbeddedTemporal, free_port
from amosflow.engine.worker import build_worker
from auth import admin_token

SAMPLES = int(os.environ.get("BENCH_API_SAMPLES", "50"))
SOAK_S = float(os.environ.get("BENCH_API_SECONDS", "60"))
SOAK_CONCURRENCY = int(os.environ.get("BENCH_API_CONCURRENCY", "8"))
FLOW = {
    "dsl": "amos.flow/v1",
    "name": "bench-api",
    "inputs": {"type": "object", "properties": {"n": {"type": "integer"}}},
    "outputs": {"n": "${steps.echo.output}"},
    "steps": [
        {"id": "echo", "type": "action", "action": "core.echo", "with": {"value": "${inputs.n}"}}
    ],
}


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of the values, in milliseconds."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


def rss_kib(pid: int) -> int:
    """Resident memory of a process in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def start_api(home: Path, settings: EngineSettings, port: int) -> subprocess.Popen[bytes]:
    """The API as its own process, against this benchmark's Temporal."""
    env = {
        **os.environ,
        "AMOS_HOME": str(home),
        "AMOS_TEMPORAL_ADDRESS": str(settings.temporal_address),
        "AMOS_TASK_QUEUE": settings.task_queue,
        "AMOS_RUNNER_PORT": "0",
    }
    env.pop("AMOS_NATS_URL", None)
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "amosflow.api.app:create_app"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    return subprocess.Popen(cmd, env=env)


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


async def wait_completed(client: httpx.AsyncClient, run_id: str) -> None:
    """Poll the run until the control plane records its end."""
    while (await client.get(f"/api/v1/runs/{run_id}")).json()["status"] != "completed":
        await asyncio.sleep(0.005)


async def api_latency(client: httpx.AsyncClient, samples: int) -> tuple[list[float], list[float]]:
    """Start latency and end-to-end latency of runs started through the API."""
    starts, ends = [], []
    for i in range(samples):
        t0 = time.perf_counter()
        response = await client.post("/api/v1/runs", json={"flow": "bench-api", "inputs": {"n": i}})
        starts.append(time.perf_counter() - t0)
        await wait_completed(client, response.json()["run_id"])
        ends.append(time.perf_counter() - t0)
    return starts, ends


async def direct_latency(
    temporal: Any, settings: EngineSettings, samples: int
) -> tuple[list[float], list[float]]:
    """Start latency and end-to-end latency of runs started in-process, as `amos run` does."""
    starts, ends = [], []
    for i in range(samples):
        t0 = time.perf_counter()
        request = RunRequest(flow=FLOW, inputs={"n": i}, library={})
        handle = await start_run(temporal, request, task_queue=settings.task_queue)
        starts.append(time.perf_counter() - t0)
        await result_of(handle)
        ends.append(time.perf_counter() - t0)
    return starts, ends


async def unfinished(client: httpx.AsyncClient) -> int:
    """How many runs the control plane has not yet recorded as ended."""
    total = 0
    for status in ("pending", "running"):
        cursor = None
        while True:
            params = {"status": status, "limit": 200, **({"cursor": cursor} if cursor else {})}
            page = (await client.get("/api/v1/runs", params=params)).json()
            total += len(page["items"])
            cursor = page["next_cursor"]
            if not cursor:
                break
    return total


async def drain(client: httpx.AsyncClient, limit_s: float = 300) -> float:
    """Wait until every run is recorded as ended; return how long that took."""
    t0 = time.monotonic()
    while await unfinished(client) and time.monotonic() - t0 < limit_s:
        await asyncio.sleep(0.5)
    return time.monotonic() - t0


async def soak(
    client: httpx.AsyncClient, pid: int, seconds: float, concurrency: int
) -> tuple[int, float, list[int]]:
    """Start runs from several clients for ``seconds``; return count, rate and RSS samples."""
    samples = [rss_kib(pid)]
    deadline = time.monotonic() + seconds
    started = 0

    async def sample() -> None:
        while time.monotonic() < deadline:
            await asyncio.sleep(seconds / 6)
            samples.append(rss_kib(pid))

    async def one_client(k: int) -> None:
        nonlocal started
        i = 0
        while time.monotonic() < deadline:
            body = {"flow": "bench-api", "inputs": {"n": k * 1_000_000 + i}}
            response = await client.post("/api/v1/runs", json=body)
            response.raise_for_status()
            started += 1
            i += 1

    t0 = time.monotonic()
    await asyncio.gather(sample(), *(one_client(k) for k in range(concurrency)))
    elapsed = time.monotonic() - t0
    return started, started / elapsed, samples


def parse_args() -> argparse.Namespace:
    """Sizes from the command line; the environment variables give the defaults."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--samples", type=int, default=SAMPLES, help="runs per latency")
    parser.add_argument("--seconds", type=float, default=SOAK_S, help="length of each soak")
    parser.add_argument("--concurrency", type=int, default=SOAK_CONCURRENCY, help="soak clients")
    parser.add_argument(
        "--quick", action="store_true", help="a few runs of everything: proves the bench runs"
    )
    args = parser.parse_args()
    if args.quick:
        args.samples, args.seconds, args.concurrency = 3, 2.0, 2
    return args


async def main(args: argparse.Namespace) -> None:
    """Run every measurement against one server and print the table."""
    with tempfile.TemporaryDirectory(prefix="amos-bench-api-") as tmp:
        home = Path(tmp)
        server = EmbeddedTemporal(home / "temporal")
        server.start()
        api: subprocess.Popen[bytes] | None = None
        try:
            settings = EngineSettings(
                home=home, temporal_address=server.address, task_queue="bench-api"
            )
            temporal = await connect(server.address, codec=payload_codec(home, create=True))
            async with build_worker(temporal, settings):
                port = free_port()
                headers = {"Authorization": f"Bearer {admin_token(home)}"}
                api = start_api(home, settings, port)
                async with httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{port}", timeout=60, headers=headers
                ) as client:
                    await wait_ready(client)
                    saved = await client.put("/api/v1/flows/bench-api", json={"document": FLOW})
                    saved.raise_for_status()
                    await api_latency(client, args.samples)  # warm-up: imports, connections, caches
                    api_start, api_end = await api_latency(client, args.samples)
                    direct_start, direct_end = await direct_latency(
                        temporal, settings, args.samples
                    )
                    count, rate, rss = await soak(client, api.pid, args.seconds, args.concurrency)
                    backlog = await unfinished(client)
                    drained = await drain(client)
                    rss_drained = rss_kib(api.pid)
                    count2, rate2, rss2 = await soak(
                        client, api.pid, args.seconds, args.concurrency
                    )
                    await drain(client)
                    rss2_drained = rss_kib(api.pid)
        finally:
            if api is not None:
                api.terminate()
                api.wait(timeout=30)
            server.stop()
    print(
        f"samples per measurement: {args.samples}; soak {args.seconds:.0f}s"
        f" with {args.concurrency} clients"
    )
    print(f"{'measurement':<34}{'p50 ms':>10}{'p99 ms':>10}")
    for label, values in (
        ("start, in-process (amos run)", direct_start),
        ("start, through the API", api_start),
        ("start to completed, in-process", direct_end),
        ("start to recorded completed, API", api_end),
    ):
        print(f"{label:<34}{pct(values, 0.5):>10.1f}{pct(values, 0.99):>10.1f}")
    ratio = statistics.median(api_start) / statistics.median(direct_start)
    print(f"API / in-process start latency (p50 ratio): {ratio:.2f}")
    for label, n, r, samples, after in (
        ("soak 1", count, rate, rss, rss_drained),
        ("soak 2", count2, rate2, rss2, rss2_drained),
    ):
        series = " -> ".join(f"{kib / 1024:.0f}" for kib in samples)
        print(
            f"{label}: {n} runs started, {r:.1f} runs/s; API RSS MiB every {args.seconds / 6:.0f}s: {series}; after drain {after / 1024:.0f}"
        )
    print(
        f"backlog at the end of soak 1: {backlog} runs not yet recorded ended, drained in {drained:.1f}s"
    )


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
