"""AMOS FLOW beside n8n, both started as a user starts them (`make bench-peers`).

Same flows on both: a webhook, then 0, 1 or 20 pure steps (n8n: Set nodes answering with the
last node's output; AMOS: `set` steps, the run recorded completed with the right output), and
on AMOS a webhook then 20 durable `core.echo` steps, set beside the floor for durable steps: a
hand-written Temporal workflow on the same server settings. Every number is measured in this
run, one product after the other, and printed as a ratio to its counterpart. Exits non-zero
only on an error (a wrong answer is one), never because a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: common, baseline

from amos_node import AmosNode
from floor import floor
from load import Result, measure
from n8n_node import N8nNode, install, newest_version
from procs import usage

import common

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

PURE = ("pure-0", "pure-1", "pure-20")
DURABLE = "durable-20"
LABELS = {
    "pure-0": "webhook -> 0 steps",
    "pure-1": "webhook -> 1 step",
    "pure-20": "webhook -> 20 pure steps",
    DURABLE: "webhook -> 20 durable steps",
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path.home() / ".cache" / "amosflow-bench",
        help="where n8n is installed (reused across runs)",
    )
    parser.add_argument("--n8n-version", help="this n8n version instead of the newest that fits")
    parser.add_argument("--runs", type=int, default=50, help="sequential runs per case")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured runs per case first")
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients")
    parser.add_argument("--seconds", type=float, default=30, help="load per case")
    parser.add_argument("--settle", type=float, default=10, help="seconds before idle RSS")
    parser.add_argument("--without-n8n", action="store_true", help="AMOS FLOW and the floor only")
    parser.add_argument(
        "--quick", action="store_true", help="a few runs of everything: proves the bench runs"
    )
    args = parser.parse_args()
    if args.quick:
        args.runs, args.warmup, args.clients, args.seconds, args.settle = 3, 1, 2, 2.0, 0.0
    return args


async def idle_rss(root: int, settle: float) -> int:
    """Resident memory of the whole tree once the product has had ``settle`` seconds of rest."""
    await asyncio.sleep(settle)  # the rest before an idle reading is part of the measurement
    return usage(root).rss_bytes


async def cases(
    execute: Callable[[str, int], Awaitable[None]],
    names: tuple[str, ...],
    root: int,
    args: argparse.Namespace,
) -> dict[str, Result]:
    """Measure each case in turn on one running product."""
    results = {}
    for name in names:
        results[name] = await measure(
            execute,
            name,
            root,
            runs=args.runs,
            warmup=args.warmup,
            clients=args.clients,
            seconds=args.seconds,
        )
        print(f"  {name}: done", flush=True)
    return results


async def amos(home: Path, args: argparse.Namespace) -> tuple[dict[str, Result], int, str]:
    """The node from `amos up`: every case, and its idle RSS."""
    node = AmosNode(home)
    t0 = time.monotonic()
    pid = await asyncio.to_thread(node.start)
    print(f"AMOS FLOW: `amos up` ready in {time.monotonic() - t0:.1f} s", flush=True)
    try:
        await node.prepare()
        for name in (*PURE, DURABLE):
            await node.execute(name, 0)
        idle = await idle_rss(pid, args.settle)
        results = await cases(node.execute, (*PURE, DURABLE), pid, args)
    finally:
        await node.aclose()
        await asyncio.to_thread(node.stop)
    how = "`respond: result`" if node.respond_result else "202, then polling GET /runs/{id}"
    return results, idle, how


async def n8n(home: Path, args: argparse.Namespace) -> tuple[dict[str, Result], int, str]:
    """`n8n start` with the same flows: the pure cases, and its idle RSS."""
    version = args.n8n_version or newest_version()
    command = await asyncio.to_thread(install, args.cache, version)
    node = N8nNode(command, home)
    await asyncio.to_thread(node.import_workflows)
    t0 = time.monotonic()
    pid = await asyncio.to_thread(node.start)
    print(f"n8n {version}: ready in {time.monotonic() - t0:.1f} s", flush=True)
    try:
        for name in PURE:
            await node.execute(name, 0)
        idle = await idle_rss(pid, args.settle)
        results = await cases(node.execute, PURE, pid, args)
    finally:
        await node.aclose()
        await asyncio.to_thread(node.stop)
    return results, idle, version


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def mib(size: int) -> str:
    return f"{size / 2**20:.0f}"


def x(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}" if theirs else "-"


def report(
    ours: dict[str, Result],
    peer: dict[str, Result] | None,
    base: Result,
    idle: tuple[int, int | None],
) -> None:
    """The side-by-side tables; every ratio is AMOS FLOW / its counterpart."""
    if peer:
        print("\nSequential latency (ms; x = AMOS FLOW / n8n, lower is better)")
        rows = [
            [
                LABELS[c],
                ms(peer[c].median_s),
                ms(ours[c].median_s),
                x(ours[c].median_s, peer[c].median_s),
                ms(peer[c].p99_s),
                ms(ours[c].p99_s),
                x(ours[c].p99_s, peer[c].p99_s),
            ]
            for c in PURE
        ]
        head = ["case", "n8n median", "AMOS median", "x", "n8n p99", "AMOS p99", "x"]
        print(common.table(head, rows))
        print("\nUnder load (x = AMOS FLOW / n8n; completions/s: higher is better)")
        rows = [
            [
                LABELS[c],
                f"{peer[c].per_s:.1f}",
                f"{ours[c].per_s:.1f}",
                x(ours[c].per_s, peer[c].per_s),
                ms(peer[c].load_p99_s),
                ms(ours[c].load_p99_s),
                ms(peer[c].cpu_per_exec_s),
                ms(ours[c].cpu_per_exec_s),
                x(ours[c].cpu_per_exec_s, peer[c].cpu_per_exec_s),
            ]
            for c in PURE
        ]
        head = ["case", "n8n /s", "AMOS /s", "x", "n8n p99 ms", "AMOS p99 ms"]
        print(common.table([*head, "n8n CPU ms", "AMOS CPU ms", "x CPU"], rows))
    else:
        print("\nAMOS FLOW alone (n8n left out)")
        rows = [
            [
                LABELS[c],
                ms(ours[c].median_s),
                ms(ours[c].p99_s),
                f"{ours[c].per_s:.1f}",
                ms(ours[c].load_p99_s),
                ms(ours[c].cpu_per_exec_s),
            ]
            for c in PURE
        ]
        head = ["case", "median ms", "p99 ms", "/s", "load p99 ms", "CPU ms/exec"]
        print(common.table(head, rows))
    d = ours[DURABLE]
    print("\nDurable steps: AMOS FLOW / floor (hand-written Temporal workflow, same settings)")
    rows = [
        [
            label,
            ms(r.median_s),
            ms(r.p99_s),
            f"{r.per_s:.1f}",
            ms(r.load_p99_s),
            ms(r.cpu_per_exec_s),
        ]
        for label, r in (("hand-written workflow", base), (LABELS[DURABLE], d))
    ]
    rows.append(
        [
            "AMOS FLOW / floor",
            x(d.median_s, base.median_s),
            x(d.p99_s, base.p99_s),
            x(base.per_s, d.per_s),
            x(d.load_p99_s, base.load_p99_s),
            x(d.cpu_per_exec_s, base.cpu_per_exec_s),
        ]
    )
    head = ["", "median ms", "p99 ms", "/s (x: floor / AMOS)", "load p99 ms", "CPU ms"]
    print(common.table(head, rows))
    print(
        "(the floor's CPU includes its in-process client, worker and Temporal server;"
        " the node's excludes its clients)"
    )
    print("\nResident memory of the whole process tree (MiB)")
    peak_ours = max(r.peak_rss for r in ours.values())
    rows = [["AMOS FLOW (amos up)", mib(idle[0]), mib(peak_ours)]]
    if peer and idle[1] is not None:
        peak_peer = max(r.peak_rss for r in peer.values())
        rows.append(["n8n (n8n start)", mib(idle[1]), mib(peak_peer)])
        rows.append(["x AMOS FLOW / n8n", x(idle[0], idle[1]), x(peak_ours, peak_peer)])
    print(common.table(["", "idle", "peak"], rows))
    worst = max(r.load_p99_s for r in ours.values())
    print(f"\nWorst AMOS FLOW p99 under load: {ms(worst)} ms (target: no outlier over 1000 ms)")


async def main_async(args: argparse.Namespace) -> int:
    started = datetime.now(UTC)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="amos-bench-peers-") as tmp:
        home = Path(tmp)
        ours, idle_ours, how = await amos(home / "amos", args)
        peer, idle_peer, version = None, None, None
        if not args.without_n8n:
            peer, idle_peer, version = await n8n(home / "n8n", args)
        common.register_remote_echo()
        async with floor(home / "floor") as (_pid, execute):
            for _ in range(args.warmup):
                await execute(DURABLE, 0)
            print("floor: hand-written Temporal workflow", flush=True)
            base = (await cases(execute, (DURABLE,), os.getpid(), args))[DURABLE]
    print(
        f"\nAMOS FLOW beside {f'n8n {version}' if version else 'no peer'},"
        f" {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs"
    )
    print(
        f"{args.runs} sequential runs per case after {args.warmup} warm-up; then {args.clients}"
        f" clients for {args.seconds:.0f} s. AMOS FLOW answers via {how}."
    )
    print(
        "CPU per execution: CPU time of the product's whole process tree over the load,"
        " divided by the completions (the clients are not counted)."
    )
    report(ours, peer, base, (idle_ours, idle_peer))
    print(
        f"\n1-minute load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after"
        f" (on {os.cpu_count()} CPUs: other work on the machine shows up in every number)"
    )
    return 0


def main() -> int:
    args = parse_args()
    return common.run_loop(lambda: main_async(args))


if __name__ == "__main__":
    sys.exit(main())
