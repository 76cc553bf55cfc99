"""What each embedded-server setting buys, on the hand-written baseline workflow.

Each configuration gets its own fresh embedded Temporal server (temporary directory) and its
own event loop, one after the other: Temporal's defaults, then the settings of
`amosflow.engine.embedded` added one at a time, then two ablations of the client side
(sandboxed workflow runner, plain asyncio loop) and the product's activity wrapper.
Run: ``.venv/bin/python bench/temporal_settings.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import traceback
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from temporalio.worker import UnsandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

import common
from amosflow.engine.client import connect
from amosflow.engine.codec import payload_codec
from amosflow.engine.embedded import EmbeddedTemporal
from baseline import NOOP_ACTIVITY
from common import REMOTE_ECHO

if TYPE_CHECKING:
    from temporalio.worker import WorkflowRunner

QUEUE = "bench-settings"
POLL_RPS = {"history.transferProcessorMaxPollRPS": "1000"}
EAGER = {"system.enableEagerWorkflowStart": "true"}
WAL = ("journal_mode=wal", "synchronous=NORMAL")


@dataclass
class TunedTemporal(EmbeddedTemporal):
    """The embedded server with exactly the given dynamic config and SQLite pragmas."""

    dynamic: dict[str, str] = field(default_factory=dict)
    pragmas: tuple[str, ...] = ()

    def command(self) -> list[str]:
        base = super().command()
        kept: list[str] = []
        skip = False
        for arg in base:
            if skip:
                skip = False
            elif arg in {"--dynamic-config-value", "--sqlite-pragma"}:
                skip = True
            else:
                kept.append(arg)
        for key, value in self.dynamic.items():
            kept += ["--dynamic-config-value", f"{key}={value}"]
        for pragma in self.pragmas:
            kept += ["--sqlite-pragma", pragma]
        return kept


@dataclass
class Config:
    """One row of the comparison."""

    label: str
    dynamic: dict[str, str]
    pragmas: tuple[str, ...]
    eager: bool
    sandboxed: bool = False
    uvloop: bool = True
    action: str = NOOP_ACTIVITY


SHIPPED = {**POLL_RPS, **EAGER}
CONFIGS = [
    Config("Temporal defaults", {}, (), eager=False),
    Config("+ transferProcessorMaxPollRPS=1000", POLL_RPS, (), eager=False),
    Config("+ SQLite WAL, synchronous=NORMAL", POLL_RPS, WAL, eager=False),
    Config("+ eager workflow start (= shipped)", SHIPPED, WAL, eager=True),
    Config("shipped, but sandboxed runner", SHIPPED, WAL, eager=True, sandboxed=True),
    Config("shipped, but asyncio loop", SHIPPED, WAL, eager=True, uvloop=False),
    Config("shipped, product activity wrapper", SHIPPED, WAL, eager=True, action=REMOTE_ECHO),
]


async def measure(config: Config, args: argparse.Namespace) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="amos-bench-settings-") as tmp:
        home = Path(tmp)
        server = TunedTemporal(home / "temporal", dynamic=config.dynamic, pragmas=config.pragmas)
        await asyncio.to_thread(server.start)
        try:
            pid = int(json.loads(server.state_file.read_text(encoding="utf-8"))["pid"])
            client = await connect(server.address, codec=payload_codec(home, create=True))
            runner: WorkflowRunner = (
                SandboxedWorkflowRunner() if config.sandboxed else UnsandboxedWorkflowRunner()
            )
            work = partial(
                common.run_baseline,
                client,
                QUEUE,
                action=config.action,
                local=False,
                eager=config.eager,
            )
            works = {"run": work, "one": partial(work, steps=1)}
            async with common.baseline_worker(client, home / "artifacts", QUEUE, runner):
                got = await common.latencies(works, pid, args.runs, args.warmup)
                thr = await common.burst(work, args.concurrent, pid)
        finally:
            await asyncio.to_thread(server.stop)
    lat = got["run"]
    cpu_self, cpu_server = common.cpu_per_run(lat)
    steps = args.concurrent * common.STEPS
    return [
        config.label,
        f"{common.median(lat) * 1000:.0f}",
        f"{common.p90(lat) * 1000:.0f}",
        f"{common.median(got['one']) * 1000:.0f}",
        f"{args.concurrent / thr.wall:.1f}",
        f"{cpu_self / common.STEPS * 1000:.1f}",
        f"{cpu_server / common.STEPS * 1000:.1f}",
        f"{thr.cpu_server / steps * 1000:.1f}",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=10, help="measured sequential runs")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured runs first")
    parser.add_argument("--concurrent", type=int, default=50, help="runs in the burst")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one run of each client-side variant of the shipped settings: proves the bench runs",
    )
    args = parser.parse_args()
    configs = CONFIGS
    if args.quick:
        # The untuned servers take about a second per run; the shipped rows cover every code path.
        configs = CONFIGS[3:]
        args.runs, args.warmup, args.concurrent = 1, 1, 3
    common.register_remote_echo()
    rows = []
    try:
        for config in configs:
            row = common.run_loop(partial(measure, config, args), use_uvloop=config.uvloop)
            print(" | ".join(row), flush=True)
            rows.append(row)
    except Exception:
        traceback.print_exc()
        return 1
    print(
        f"\nBaseline workflow, {common.STEPS} `{NOOP_ACTIVITY}` activities per run (last row:"
        f" `{REMOTE_ECHO}`, i.e. core.echo in the product wrapper); {args.runs} sequential runs"
        f" after {args.warmup} warm-up, then {args.concurrent} concurrent runs\n"
    )
    headers = [
        "configuration",
        "median ms",
        "p90 ms",
        "1-step ms",
        "runs/s",
        "ms/step CPU",
        "srv ms/step",
    ]
    print(common.table([*headers, "srv ms/step burst"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
