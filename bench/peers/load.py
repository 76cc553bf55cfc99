"""The same measurements for every product: sequential latency, then 20 clients for a while.

A product is a process tree (measured from /proc) and an ``execute(case, n)`` that delivers one
request and returns once its result is known and checked.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from procs import usage

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable


@dataclass(frozen=True)
class Result:
    """One case on one product."""

    median_s: float
    p99_s: float
    per_s: float
    load_p99_s: float
    cpu_per_exec_s: float
    peak_rss: int


def quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


async def measure(
    execute: Callable[[str, int], Awaitable[None]],
    case: str,
    root: int,
    *,
    runs: int,
    warmup: int,
    clients: int,
    seconds: float,
) -> Result:
    """Sequential runs, then ``clients`` clients in a closed loop for ``seconds``."""
    counter = itertools.count()
    for _ in range(warmup):
        await execute(case, next(counter))
    sequential = []
    for _ in range(runs):
        t0 = time.perf_counter()
        await execute(case, next(counter))
        sequential.append(time.perf_counter() - t0)

    loaded: list[float] = []
    peak = usage(root).rss_bytes
    deadline = time.monotonic() + seconds

    async def client() -> None:
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            await execute(case, next(counter))
            loaded.append(time.perf_counter() - t0)

    async def sample() -> None:
        nonlocal peak
        while time.monotonic() < deadline:
            peak = max(peak, (await asyncio.to_thread(usage, root)).rss_bytes)
            await asyncio.sleep(0.5)  # the sampling period of the peak RSS

    before, t0 = usage(root), time.perf_counter()
    await asyncio.gather(sample(), *(client() for _ in range(clients)))
    wall, after = time.perf_counter() - t0, usage(root)
    return Result(
        median_s=quantile(sequential, 0.5),
        p99_s=quantile(sequential, 0.99),
        per_s=len(loaded) / wall,
        load_p99_s=quantile(loaded, 0.99),
        cpu_per_exec_s=(after.cpu_s - before.cpu_s) / max(1, len(loaded)),
        peak_rss=max(peak, after.rss_bytes),
    )
