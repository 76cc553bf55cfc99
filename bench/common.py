"""What the benchmarks share: flows, workers, timed runs, CPU accounting and the table."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from temporalio.converter import DataConverter
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner, Worker

from amosflow.dsl.actions import ActionSpec, EchoWith, register
from amosflow.engine.activities import ArtifactStore, build_activities, implementation
from amosflow.engine.activities.core import echo
from amosflow.engine.client import RunRequest, result_of, start_run
from amosflow.engine.workflow import FlowWorkflow
from baseline import BASELINE_WORKFLOW, BaselineInput, BaselineWorkflow, noop

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
    from pathlib import Path

    from temporalio.client import Client, WorkflowHandle, WorkflowHistory
    from temporalio.worker import WorkflowRunner

T = TypeVar("T")
LOCAL_ECHO = "core.echo"
REMOTE_ECHO = "bench.echo"
STEPS = 20
_TICKS = os.sysconf("SC_CLK_TCK")


def register_remote_echo() -> None:
    """Register ``bench.echo``: ``core.echo`` as a regular activity, in this process only.

    Product behaviour is untouched: ``core.echo`` stays local; the twin has the same ``with``
    model and the same implementation, and exists only while a benchmark runs.
    """
    register(
        ActionSpec(
            name=REMOTE_ECHO,
            capability="core",
            with_model=EchoWith,
            description="core.echo as a regular (non-local) activity; benchmarks only.",
            local=False,
        )
    )
    implementation(REMOTE_ECHO)(echo)


def echo_flow(action: str, steps: int = STEPS) -> dict[str, Any]:
    """A flow of ``steps`` echo actions with literal values, as the baseline runs them."""
    return {
        "dsl": "amos.flow/v1",
        "name": "bench-echo",
        "steps": [
            {"id": f"s{i}", "type": "action", "action": action, "with": {"value": i}}
            for i in range(steps)
        ],
    }


def set_flow(steps: int) -> dict[str, Any]:
    """A flow of ``steps`` control-flow-only ``set`` steps that count in ``vars.x``."""
    body: list[dict[str, Any]] = [{"id": "s0", "type": "set", "values": {"x": 0}}]
    body += [
        {"id": f"s{i}", "type": "set", "values": {"x": "${vars.x + 1}"}} for i in range(1, steps)
    ]
    return {
        "dsl": "amos.flow/v1",
        "name": f"bench-set-{steps}",
        "outputs": {"x": "${vars.x}"},
        "steps": body,
    }


def baseline_worker(
    client: Client, artifacts: Path, task_queue: str, runner: WorkflowRunner | None = None
) -> Worker:
    """A worker for the baseline workflow with the settings of `build_worker`."""
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[BaselineWorkflow],
        activities=[*build_activities(ArtifactStore(artifacts)), noop],
        workflow_runner=runner or UnsandboxedWorkflowRunner(),
        max_concurrent_activities=200,
        max_concurrent_local_activities=200,
    )


async def run_flow(client: Client, doc: dict[str, Any], task_queue: str, *, eager: bool) -> Any:
    """Run a flow through the interpreter to its end; an unfinished run is an error."""
    handle = await start_run(
        client, RunRequest(flow=doc, inputs={}, library={}), task_queue=task_queue, eager=eager
    )
    result = await result_of(handle)
    if result["status"] != "completed":
        raise RuntimeError(f"flow {doc['name']} ended {result['status']}: {result['error']}")
    return result["output"]


async def start_baseline(
    client: Client, task_queue: str, *, action: str, local: bool, eager: bool, steps: int = STEPS
) -> WorkflowHandle[Any, Any]:
    """Start the hand-written workflow with the start options `start_run` uses."""
    return await client.start_workflow(
        BASELINE_WORKFLOW,
        BaselineInput(steps=steps, action=action, local=local),
        id=f"bench-baseline-{uuid.uuid4().hex[:12]}",
        task_queue=task_queue,
        request_eager_start=eager,
        execution_timeout=timedelta(days=365),
    )


async def run_baseline(
    client: Client, task_queue: str, *, action: str, local: bool, eager: bool, steps: int = STEPS
) -> Any:
    """Run the hand-written workflow to its end."""
    handle = await start_baseline(
        client, task_queue, action=action, local=local, eager=eager, steps=steps
    )
    result = await handle.result()
    if len(result["output"]) != steps:
        raise RuntimeError(f"baseline returned {len(result['output'])} outputs, not {steps}")
    return result["output"]


async def replay_cpu(
    histories: dict[str, WorkflowHistory],
    times: int,
    converter: DataConverter = DataConverter.default,
) -> dict[str, float]:
    """CPU seconds per replay of each history: the workflow side alone, without any server.

    ``converter`` must be the one that wrote the histories (the node's payload codec).
    """
    replayer = Replayer(
        workflows=[FlowWorkflow, BaselineWorkflow],
        workflow_runner=UnsandboxedWorkflowRunner(),
        data_converter=converter,
    )
    best: dict[str, float] = {}
    for _ in range(2):
        for name, history in histories.items():

            async def copies(h: WorkflowHistory = history) -> AsyncIterator[WorkflowHistory]:
                for _ in range(times):
                    yield h

            cpu0 = time.process_time()
            await replayer.replay_workflows(copies(), raise_on_replay_failure=True)
            spent = (time.process_time() - cpu0) / times
            best[name] = min(best.get(name, spent), spent)
    return best


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by another process, from /proc."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:  # noqa: PTH123 - a /proc read
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


@dataclass
class Sample:
    """Wall time and CPU time (this process, the server) of one measured piece of work."""

    wall: float
    cpu_self: float
    cpu_server: float


async def measure(work: Callable[[], Awaitable[Any]], server_pid: int) -> Sample:
    """Time one awaited piece of work, with the CPU this process and the server spent on it."""
    cpu0, srv0, t0 = time.process_time(), process_cpu(server_pid), time.perf_counter()
    await work()
    wall = time.perf_counter() - t0
    return Sample(wall, time.process_time() - cpu0, process_cpu(server_pid) - srv0)


async def latencies(
    works: dict[str, Callable[[], Awaitable[Any]]], server_pid: int, runs: int, warmup: int
) -> dict[str, list[Sample]]:
    """Run each piece of work ``warmup`` + ``runs`` times, interleaved so drift hits all alike."""
    samples: dict[str, list[Sample]] = {name: [] for name in works}
    for index in range(warmup + runs):
        for name, work in works.items():
            sample = await measure(work, server_pid)
            if index >= warmup:
                samples[name].append(sample)
    return samples


async def burst(work: Callable[[], Awaitable[Any]], count: int, server_pid: int) -> Sample:
    """Start ``count`` runs at once and wait for all of them."""

    async def everything() -> None:
        await asyncio.gather(*(work() for _ in range(count)))

    return await measure(everything, server_pid)


def median(samples: list[Sample]) -> float:
    """Median wall time."""
    return statistics.median(s.wall for s in samples)


def p90(samples: list[Sample]) -> float:
    """90th percentile of wall time (nearest rank)."""
    walls = sorted(s.wall for s in samples)
    return walls[max(0, round(0.9 * len(walls)) - 1)]


def cpu_per_run(samples: list[Sample]) -> tuple[float, float]:
    """Mean CPU seconds per run: this process, the server (whose clock ticks are coarse)."""
    return (
        statistics.fmean(s.cpu_self for s in samples),
        statistics.fmean(s.cpu_server for s in samples),
    )


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain-text table with right-aligned columns after the first."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest])

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def run_loop(main: Callable[[], Coroutine[Any, Any, T]], *, use_uvloop: bool = True) -> T:
    """Run the benchmark on uvloop when it is installed (as `amos run` does), else asyncio."""
    if use_uvloop:
        try:
            import uvloop  # noqa: PLC0415 - optional speed-up
        except ImportError:
            pass
        else:
            return uvloop.run(main())
    return asyncio.run(main())


def loop_name() -> str:
    """Which event loop is running."""
    return type(asyncio.get_running_loop()).__module__.split(".")[0]
