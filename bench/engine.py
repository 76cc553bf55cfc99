"""The interpreter against a hand-written Temporal workflow, on one embedded node (`make bench`).

One process, one embedded Temporal server in a temporary directory, two workers with the same
settings: the product worker (`build_worker`) and one for the baseline workflow. Prints
latency, throughput, the cost of a control-flow-only step and of rendering a `with`.
Exits non-zero only on an error, never because a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import timeit
import traceback
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import common
from amosflow.config import EngineSettings
from amosflow.dsl import expr
from amosflow.engine.client import RunRequest, connect, start_run
from amosflow.engine.codec import payload_codec
from amosflow.engine.embedded import EmbeddedTemporal
from amosflow.engine.worker import build_worker
from common import LOCAL_ECHO, REMOTE_ECHO, STEPS

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from temporalio.client import Client, WorkflowHistory
    from temporalio.converter import DataConverter

FLOW_QUEUE = "bench-flow"
BASE_QUEUE = "bench-baseline"
LATENCY_TARGET_S = 0.2
RATIO_TARGET = 1.15
SET_STEPS = 200
REPLAYS = 50
THROUGHPUT_COLUMNS = [
    "case",
    "wall s",
    "runs/s",
    "steps/s",
    "ms/step CPU",
    "srv ms/step",
    "x runs/s",
    "x by CPU",
]
# A typical action `with`: literal keys, a templated URL, typed values from vars and inputs.
TYPICAL_WITH: dict[str, Any] = {
    "method": "POST",
    "url": "${config.erp_url}/orders/${inputs.order_id}/post",
    "headers": {"Accept": "application/json", "X-Run": "${run.id}"},
    "json": {
        "order": "${inputs.order_id}",
        "amount": "${vars.total * 1.2}",
        "lines": "${size(vars.lines)}",
        "approved": "${steps.approve.output.approved}",
        "note": "posted by AMOS FLOW",
    },
    "expect": [200, 201],
}
TYPICAL_SCOPE: dict[str, Any] = {
    "inputs": {"order_id": "A-1042"},
    "vars": {"total": 99.5, "lines": [{"sku": "x", "qty": 2}, {"sku": "y", "qty": 1}]},
    "steps": {"approve": {"status": "completed", "output": {"approved": True}}},
    "config": {"erp_url": "https://erp.example.internal"},
    "run": {"id": "bench-1", "flow": "bench", "flow_hash": "0" * 64, "started_at": "now"},
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=15, help="measured sequential runs per case")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured runs per case first")
    parser.add_argument("--concurrent", type=int, default=100, help="runs per throughput burst")
    parser.add_argument("--rounds", type=int, default=2, help="throughput bursts per case")
    parser.add_argument("--replays", type=int, default=REPLAYS, help="replays per history")
    parser.add_argument("--calls", type=int, default=2000, help="render calls per timing")
    parser.add_argument("--no-uvloop", action="store_true", help="use the asyncio event loop")
    parser.add_argument(
        "--quick", action="store_true", help="a few runs of everything: proves the bench runs"
    )
    args = parser.parse_args()
    if args.quick:
        args.runs, args.warmup, args.concurrent, args.rounds = 2, 1, 5, 1
        args.replays, args.calls = 2, 100
    return args


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def ratio(interp: float, base: float) -> str:
    return f"{interp / base:.2f}"


async def latency_section(
    client: Client, pid: int, args: argparse.Namespace
) -> tuple[list[list[str]], dict[str, Any]]:
    """Sequential runs, both modes, baseline and interpreter interleaved."""
    cases: dict[str, Callable[[], Awaitable[Any]]] = {}
    for mode, action, local in (("regular", REMOTE_ECHO, False), ("local", LOCAL_ECHO, True)):
        cases[f"baseline/{mode}"] = partial(
            common.run_baseline, client, BASE_QUEUE, action=action, local=local, eager=True
        )
        cases[f"interpreter/{mode}"] = partial(
            common.run_flow, client, common.echo_flow(action), FLOW_QUEUE, eager=True
        )
    samples = await common.latencies(cases, pid, args.runs, args.warmup)
    rows: list[list[str]] = []
    facts: dict[str, Any] = {}
    for mode in ("regular", "local"):
        base, interp = samples[f"baseline/{mode}"], samples[f"interpreter/{mode}"]
        for who, got in (("baseline", base), ("interpreter", interp)):
            cpu_self, cpu_server = common.cpu_per_run(got)
            rows.append(
                [
                    f"{who}, {mode} activities",
                    ms(common.median(got)),
                    ms(common.p90(got)),
                    ms(cpu_self / STEPS),
                    ms(cpu_server / STEPS),
                    ratio(common.median(got), common.median(base)),
                    ratio(common.p90(got), common.p90(base)),
                ]
            )
        facts[mode] = common.median(interp)
        facts[f"{mode}-ratio"] = common.median(interp) / common.median(base)
    return rows, facts


async def throughput_section(
    client: Client, pid: int, count: int, rounds: int
) -> tuple[list[list[str]], dict[str, float]]:
    """``count`` concurrent runs started together, in both modes; the best of ``rounds``."""
    rows: list[list[str]] = []
    facts: dict[str, float] = {}
    for mode, action, local in (("regular", REMOTE_ECHO, False), ("local", LOCAL_ECHO, True)):
        base_work = partial(
            common.run_baseline, client, BASE_QUEUE, action=action, local=local, eager=True
        )
        flow_work = partial(
            common.run_flow, client, common.echo_flow(action), FLOW_QUEUE, eager=True
        )
        bases: list[common.Sample] = []
        interps: list[common.Sample] = []
        for _ in range(rounds):  # alternated, so load from elsewhere hits both alike
            bases.append(await common.burst(base_work, count, pid))
            interps.append(await common.burst(flow_work, count, pid))
        base = min(bases, key=lambda s: s.wall)
        interp = min(interps, key=lambda s: s.wall)
        steps = count * STEPS
        base_cpu = base.cpu_self + base.cpu_server
        for who, got in (("baseline", base), ("interpreter", interp)):
            rows.append(
                [
                    f"{who}, {mode} activities",
                    f"{got.wall:.2f}",
                    f"{count / got.wall:.1f}",
                    f"{steps / got.wall:.0f}",
                    ms(got.cpu_self / steps),
                    ms(got.cpu_server / steps),
                    f"{base.wall / got.wall:.2f}",
                    f"{base_cpu / (got.cpu_self + got.cpu_server):.2f}",
                ]
            )
        facts[mode] = base.wall / interp.wall
        facts[f"{mode}-cpu"] = base_cpu / (interp.cpu_self + interp.cpu_server)
    return rows, facts


async def collect_histories(client: Client) -> dict[str, WorkflowHistory]:
    """One finished run of each case, for replay."""
    histories: dict[str, WorkflowHistory] = {}
    for mode, action, local in (("regular", REMOTE_ECHO, False), ("local", LOCAL_ECHO, True)):
        base = await common.start_baseline(
            client, BASE_QUEUE, action=action, local=local, eager=True
        )
        await base.result()
        histories[f"baseline, {mode} activities"] = await base.fetch_history()
        flow = await start_run(
            client,
            RunRequest(flow=common.echo_flow(action), inputs={}, library={}),
            task_queue=FLOW_QUEUE,
            eager=True,
        )
        await flow.result()
        histories[f"interpreter, {mode} activities"] = await flow.fetch_history()
    for steps in (SET_STEPS, 1):
        flow = await start_run(
            client,
            RunRequest(flow=common.set_flow(steps), inputs={}, library={}),
            task_queue=FLOW_QUEUE,
            eager=True,
        )
        await flow.result()
        histories[f"set x{steps}"] = await flow.fetch_history()
    return histories


async def replay_section(
    histories: dict[str, WorkflowHistory], converter: DataConverter, replays: int
) -> list[list[str]]:
    """Workflow-side CPU alone: replay each history (no server, no activity runs)."""
    cpu = await common.replay_cpu(histories, replays, converter)
    rows = []
    for mode in ("regular", "local"):
        base = cpu[f"baseline, {mode} activities"]
        for who in ("baseline", "interpreter"):
            spent = cpu[f"{who}, {mode} activities"]
            rows.append(
                [f"{who}, {mode} activities", ms(spent), ms(spent / STEPS), ratio(spent, base)]
            )
    per_set = (cpu[f"set x{SET_STEPS}"] - cpu["set x1"]) / (SET_STEPS - 1)
    rows.append([f"per set step ({SET_STEPS} vs 1, us)", "", f"{per_set * 1e6:.0f}", ""])
    return rows


async def control_flow_section(
    client: Client, pid: int, args: argparse.Namespace
) -> list[list[str]]:
    """A flow of N `set` steps against a flow of one: the per-step cost inside the workflow."""
    many, one = common.set_flow(SET_STEPS), common.set_flow(1)
    cases: dict[str, Callable[[], Awaitable[Any]]] = {
        "many": partial(common.run_flow, client, many, FLOW_QUEUE, eager=True),
        "one": partial(common.run_flow, client, one, FLOW_QUEUE, eager=True),
    }
    got = await common.run_flow(client, many, FLOW_QUEUE, eager=True)
    if got != {"x": SET_STEPS - 1}:
        raise RuntimeError(f"the set flow computed {got}")
    samples = await common.latencies(cases, pid, args.runs, args.warmup)
    wall = (common.median(samples["many"]) - common.median(samples["one"])) / (SET_STEPS - 1)
    cpu_many, _ = common.cpu_per_run(samples["many"])
    cpu_one, _ = common.cpu_per_run(samples["one"])
    cpu = (cpu_many - cpu_one) / (SET_STEPS - 1)
    return [
        [f"flow of {SET_STEPS} set steps", ms(common.median(samples["many"])), ""],
        ["flow of 1 set step", ms(common.median(samples["one"])), ""],
        ["per set step (difference / (N-1))", f"{wall * 1e6:.0f}", f"{cpu * 1e6:.0f}"],
    ]


def render_section(number: int) -> list[list[str]]:
    """Micro-benchmark of rendering: the typical `with`, one expression, a literal `with`."""
    literal = {"value": 7, "note": "no expression here", "list": [1, 2, 3]}
    cases = [
        ("render_with_secrets(typical with), 8 ${}", expr.render_with_secrets, TYPICAL_WITH),
        ("render(typical with), 8 ${}", expr.render, TYPICAL_WITH),
        ("render('${vars.total * 1.2}')", expr.render, "${vars.total * 1.2}"),
        ("render(literal with, no ${})", expr.render, literal),
    ]
    rows = []
    for label, func, value in cases:
        func(value, TYPICAL_SCOPE, "/steps/0/with")  # compile once; the cache is warm after
        timer = timeit.Timer(lambda f=func, v=value: f(v, TYPICAL_SCOPE, "/steps/0/with"))
        best = min(timer.repeat(repeat=5, number=number)) / number
        rows.append([label, f"{best * 1e6:.1f}"])
    return rows


async def main_async(args: argparse.Namespace) -> int:
    common.register_remote_echo()
    started = datetime.now(UTC)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="amos-bench-") as tmp:
        home = Path(tmp)
        server = EmbeddedTemporal(home / "temporal")
        await asyncio.to_thread(server.start)
        try:
            pid = int(json.loads(server.state_file.read_text(encoding="utf-8"))["pid"])
            client = await connect(server.address, codec=payload_codec(home, create=True))
            settings = EngineSettings(
                home=home, temporal_address=server.address, task_queue=FLOW_QUEUE
            )
            flow_worker = build_worker(client, settings)
            base_worker = common.baseline_worker(client, settings.artifacts_dir, BASE_QUEUE)
            async with flow_worker, base_worker:
                lat_rows, lat = await latency_section(client, pid, args)
                thr_rows, thr = await throughput_section(client, pid, args.concurrent, args.rounds)
                cf_rows = await control_flow_section(client, pid, args)
                histories = await collect_histories(client)
        finally:
            await asyncio.to_thread(server.stop)
        # The codec reads its keys from the home, so the replay must finish before it goes.
        replay_rows = await replay_section(histories, client.data_converter, args.replays)
    render_rows = render_section(args.calls)
    took = (datetime.now(UTC) - started).total_seconds()

    print(
        f"AMOS FLOW engine benchmark, {started:%Y-%m-%d %H:%M} UTC, event loop {common.loop_name()}"
    )
    print(f"{STEPS} echo steps per run; {args.runs} measured runs after {args.warmup} warm-up")
    print(
        "(ms/step CPU: this process = worker + client, Python and SDK core;"
        " srv = the Temporal process. x by CPU: baseline CPU per step (both processes)"
        " / this case's, the throughput ratio of a saturated machine)\n"
    )
    print("Latency, sequential runs")
    print(
        common.table(
            ["case", "median ms", "p90 ms", "ms/step CPU", "srv ms/step", "x median", "x p90"],
            lat_rows,
        )
    )
    print(
        f"\nThroughput, {args.concurrent} concurrent runs started together"
        f" (best of {args.rounds}, alternated)"
    )
    print(
        common.table(
            THROUGHPUT_COLUMNS,
            thr_rows,
        )
    )
    print(
        f"\nWorkflow side alone: CPU per replay of one run's history (best of 2 x {args.replays})"
    )
    print(common.table(["case", "ms/run", "ms/step", "x"], replay_rows))
    print("\nControl flow inside the workflow (medians)")
    print(common.table(["case", "wall ms / us", "CPU us"], cf_rows))
    print(f"\nexpr rendering, best of 5 x {args.calls} calls")
    print(common.table(["call", "us/call"], render_rows))
    print("\nTargets (informative; missing one is not an error)")
    for mode in ("regular", "local"):
        print(
            f"  {mode}: interpreter/baseline latency {lat[f'{mode}-ratio']:.2f}"
            f" (target <= {RATIO_TARGET}), throughput {thr[mode]:.2f} of baseline"
            f" ({thr[f'{mode}-cpu']:.2f} by CPU per step)"
        )
    print(f"  20-step core.echo flow (local): {lat['local'] * 1000:.0f} ms (target < 200 ms)")
    print(
        f"\nTotal {took:.0f} s; 1-minute load average {load_before:.2f} before,"
        f" {os.getloadavg()[0]:.2f} after (on {os.cpu_count()} CPUs: other work on the machine"
        " shows up in every number)"
    )
    return 0


def main() -> int:
    args = parse_args()
    try:
        return common.run_loop(partial(main_async, args), use_uvloop=not args.no_uvloop)
    except Exception:
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
