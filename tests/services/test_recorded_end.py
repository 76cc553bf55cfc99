"""The run's end, its timeline and its events are recorded from the workflow's completion."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, ParamSpec

import pytest
from sqlalchemy import event

from amosflow.config import EngineSettings
from amosflow.services import RunWatcher
from amosflow.store import Store, outbox
from amosflow.store import runs as run_store
from tests.support.tasks import Plane, control_plane

pytestmark = pytest.mark.temporal
P = ParamSpec("P")
WAIT = timedelta(seconds=60)
STEPS = 5


def _flow(*, failing: bool = False) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [
        {"id": f"s{i}", "type": "action", "action": "core.echo", "with": {"value": i}}
        for i in range(STEPS)
    ]
    if failing:
        steps.append({"id": "stop", "type": "fail", "message": "stopped on purpose"})
    return {
        "dsl": "amos.flow/v1",
        "name": "chain",
        "outputs": {"last": f"${{steps.s{STEPS - 1}.output}}"},
        "steps": steps,
    }


@contextmanager
def transactions(store: Store) -> Iterator[list[list[str]]]:
    """Every committed transaction on ``store`` while the block runs, as its SQL statements."""
    committed: list[list[str]] = []
    current: list[str] = []

    def on_execute(*args: Any) -> None:
        current.append(str(args[2]).lower())

    def on_commit(_conn: Any) -> None:
        committed.append(list(current))
        current.clear()

    def on_rollback(_conn: Any) -> None:
        current.clear()

    event.listen(store.engine, "before_cursor_execute", on_execute)
    event.listen(store.engine, "commit", on_commit)
    event.listen(store.engine, "rollback", on_rollback)
    try:
        yield committed
    finally:
        event.remove(store.engine, "before_cursor_execute", on_execute)
        event.remove(store.engine, "commit", on_commit)
        event.remove(store.engine, "rollback", on_rollback)


def _outbox_types(store: Store, run_id: str) -> list[str]:
    """The types of the run's events waiting in the outbox, oldest first (no relay runs here)."""
    with store.session() as session:
        rows = outbox.claim_pending(session, 10_000)
    return [row.event["type"] for row in rows if row.event.get("subject") == run_id]


def synchronously(
    test: Callable[P, Coroutine[Any, Any, None]],
) -> Callable[P, None]:
    """Run an async test body on a fresh event loop (the suite's tests are synchronous)."""

    @functools.wraps(test)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


@synchronously
async def test_end_and_every_step_event_share_one_transaction(
    settings: EngineSettings, tmp_path: Path
) -> None:
    """The end, the timeline's step events and the run event are written by one commit."""
    async with control_plane(settings, tmp_path) as plane:
        watcher = RunWatcher(plane.cp)
        plane.cp.watcher = watcher
        run_id = f"chain-{uuid.uuid4().hex[:8]}"
        with transactions(plane.store) as committed:
            await plane.start(_flow(), run_id=run_id)
            ended = await watcher.wait(run_id, WAIT)
        await watcher.close()
    assert ended is not None
    assert ended.status == "completed"
    assert ended.output == {"last": STEPS - 1}
    writing = [tx for tx in committed if any("outbox" in s and "insert" in s for s in tx)]
    assert len(writing) == 1, "every step event and the end go in one transaction"
    (end_tx,) = writing
    assert any(s.startswith("update runs") for s in end_tx)
    assert any("audit" in s and "insert" in s for s in end_tx), "runs.end is audited with it"
    assert any(s.startswith("insert into run_timelines") for s in end_tx)
    with plane.store.session(read_only=True) as session:
        timeline = run_store.get_timeline(session, run_id)
    assert timeline is not None
    assert sorted(timeline) == [f"s{i}" for i in range(STEPS)]
    assert {rec["status"] for rec in timeline.values()} == {"completed"}
    subjects = _outbox_types(plane.store, run_id)
    assert subjects.count("io.amosflow.step.completed") == STEPS
    assert subjects.count("io.amosflow.step.started") == STEPS
    assert subjects[-1] == "io.amosflow.run.completed"


@synchronously
async def test_a_failed_run_records_its_timeline_with_its_end(
    settings: EngineSettings, tmp_path: Path
) -> None:
    """A run that fails is recorded failed, with the steps before the failure and the failure."""
    async with control_plane(settings, tmp_path) as plane:
        watcher = RunWatcher(plane.cp)
        plane.cp.watcher = watcher
        run_id = f"chain-{uuid.uuid4().hex[:8]}"
        await plane.start(_flow(failing=True), run_id=run_id)
        ended = await watcher.wait(run_id, WAIT)
        await watcher.close()
    assert ended is not None
    assert ended.status == "failed"
    assert ended.error is not None
    assert ended.error["step"] == "stop"
    subjects = _outbox_types(plane.store, run_id)
    assert subjects.count("io.amosflow.step.completed") == STEPS
    assert "io.amosflow.step.failed" in subjects
    assert subjects[-1] == "io.amosflow.run.failed"


@synchronously
async def test_runs_unfinished_at_a_restart_get_their_end(
    settings: EngineSettings, tmp_path: Path
) -> None:
    """A run that ended while nobody followed it is recorded by the next watcher's resume."""
    async with control_plane(settings, tmp_path) as plane:
        run_id = f"chain-{uuid.uuid4().hex[:8]}"
        await plane.start(_flow(), run_id=run_id)
        await plane.result(run_id)  # ended in Temporal; the store still says running
        with plane.store.session(read_only=True) as session:
            assert run_store.get_run(session, run_id).status == "running"
        watcher = RunWatcher(plane.cp)
        plane.cp.watcher = watcher
        assert await watcher.resume() == 1
        ended = await watcher.wait(run_id, WAIT)
        await watcher.close()
    assert ended is not None
    assert ended.status == "completed"
    assert _outbox_types(plane.store, run_id).count("io.amosflow.step.completed") == STEPS
    with plane.store.session(read_only=True) as session:
        timeline = run_store.get_timeline(session, run_id)
    assert timeline is not None
    assert len(timeline) == STEPS


async def _until_running(plane: Plane, run_id: str, step: str) -> None:
    """Wait until the run's progress shows ``step`` running."""
    deadline = asyncio.get_running_loop().time() + WAIT.total_seconds()
    while (await plane.progress(run_id)).get(step, {}).get("status") != "running":
        assert asyncio.get_running_loop().time() < deadline, f"{step} never ran"
        await asyncio.sleep(0.05)  # polling the run's progress for the condition


@synchronously
async def test_a_cancelled_run_gets_its_end_recorded(
    settings: EngineSettings, tmp_path: Path
) -> None:
    """A run cancelled from outside is recorded cancelled, with the steps it had reached."""
    flow = _flow()
    flow["steps"].insert(1, {"id": "pause", "type": "wait", "duration": "1h"})
    async with control_plane(settings, tmp_path) as plane:
        watcher = RunWatcher(plane.cp)
        plane.cp.watcher = watcher
        run_id = f"chain-{uuid.uuid4().hex[:8]}"
        await plane.start(flow, run_id=run_id)
        watcher.watch(run_id)
        await _until_running(plane, run_id, "pause")
        await plane.client.get_workflow_handle(run_id).cancel()
        ended = await watcher.wait(run_id, WAIT)
        await watcher.close()
    assert ended is not None
    assert ended.status == "cancelled"
    subjects = _outbox_types(plane.store, run_id)
    assert subjects.count("io.amosflow.step.completed") == 1  # s0 ran before the pause
    assert subjects.count("io.amosflow.step.started") == 2  # s0 and the pause
    assert subjects[-1] == "io.amosflow.run.failed"
