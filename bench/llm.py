"""Model gateway benchmark: a chat completion through the gateway against calling the server.

Run with `make bench-llm` (or `python bench/llm.py`). Starts the llama.cpp server with the tiny
test model on loopback (one slot, so calls never overlap), then makes BENCH_LLM_CALLS pairs of
the same request, interleaved: once with a plain httpx client, once through
`ModelGateway.chat` (egress check, budget reservation and prompt record, forward, usage and
response record, on a SQLite store). Temperature 0 and a fixed seed keep both answers the same
length, so the difference is the gateway's own work.

Prints p50/p90 of each, the ratio of the medians, the median per-pair difference, and the
gateway's own time per call measured inside it (total minus the upstream round trip).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support.llama

from tests.support.llama import MODEL_ID, LlamaServer, model_revision

from amosflow.ai import CallContext, ModelDefinition, ModelGateway
from amosflow.egress import EgressPolicy
from amosflow.store import open_store

CALLS = int(os.environ.get("BENCH_LLM_CALLS", "30"))
WARMUP = 3
PROMPTS = [
    "Name a colour.",
    "Say yes or no.",
    "Give one fruit.",
    "Count to three.",
    "Name an animal.",
]


def body(index: int) -> dict[str, Any]:
    """The request of pair ``index``: same prompt, deterministic sampling, few tokens."""
    return {
        "model": MODEL_ID,
        "messages": [{"role": "user", "content": PROMPTS[index % len(PROMPTS)]}],
        "max_tokens": 8,
        "temperature": 0,
        "seed": 7,
    }


def pct(values: list[float], q: float) -> float:
    """The q-quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(
    server: LlamaServer, home: Path, calls: int, warmup: int
) -> dict[str, list[float]]:
    """Interleaved pairs of direct and gateway calls; times in milliseconds."""
    store = open_store(f"sqlite:///{home / 'bench.db'}")
    model = ModelDefinition(
        name="tiny",
        base_url=server.base_url,
        model=MODEL_ID,
        revision=model_revision(),
        budget_run_tokens=10_000_000,
        budget_folder_tokens=10_000_000,
    )
    gateway = ModelGateway(store)
    context = CallContext(
        run_id="bench",
        step_id="ask",
        egress=EgressPolicy.from_config({}, extra_allow=["127.0.0.1"]),
    )
    times: dict[str, list[float]] = {"direct": [], "gateway": [], "inside": [], "diff": []}
    async with httpx.AsyncClient(timeout=120, trust_env=False) as direct:
        for index in range(warmup + calls):
            request = body(index)
            started = time.perf_counter()
            response = await direct.post(model.chat_url, json=request)
            response.raise_for_status()
            plain = (time.perf_counter() - started) * 1000
            started = time.perf_counter()
            result = await gateway.chat(
                model,
                request["messages"],
                context=context,
                max_tokens=request["max_tokens"],
                temperature=request["temperature"],
            )
            governed = (time.perf_counter() - started) * 1000
            if index < warmup:
                continue
            times["direct"].append(plain)
            times["gateway"].append(governed)
            times["inside"].append(governed - result.latency_ms)
            times["diff"].append(governed - plain)
    await gateway.aclose()
    store.dispose()
    return times


def main() -> None:
    """Start the server, measure, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=CALLS, help="measured pairs of calls")
    parser.add_argument("--warmup", type=int, default=WARMUP, help="unmeasured pairs first")
    parser.add_argument("--quick", action="store_true", help="a few calls: proves the bench runs")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.warmup = 3, 1
    with tempfile.TemporaryDirectory(prefix="amos-bench-llm-") as tmp:
        home = Path(tmp)
        server = LlamaServer(home / "llama", parallel=1).start()
        try:
            times = asyncio.run(measure(server, home, args.calls, args.warmup))
        finally:
            server.stop()
    direct, governed = times["direct"], times["gateway"]
    print(
        f"llm gateway: {args.calls} interleaved pairs, same request (max_tokens 8, temperature 0)"
    )
    print(f"  direct httpx   p50 {pct(direct, 0.5):8.1f} ms   p90 {pct(direct, 0.9):8.1f} ms")
    print(f"  gateway        p50 {pct(governed, 0.5):8.1f} ms   p90 {pct(governed, 0.9):8.1f} ms")
    print(
        f"  ratio of medians        {statistics.median(governed) / statistics.median(direct):.3f}"
    )
    print(f"  per-pair difference p50 {statistics.median(times['diff']):8.1f} ms")
    print(f"  gateway's own work p50  {statistics.median(times['inside']):8.1f} ms per call")


if __name__ == "__main__":
    main()
