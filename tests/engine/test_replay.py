"""Determinism guard: recorded example histories replay against today's interpreter.

A change to the interpreter that changes the commands it issues for an existing history
(an extra timer, a missing activity, another order) breaks every run in flight when a worker
is upgraded; these replays catch it. Re-record only for an intended change: see
tests/histories/README.md.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner, WorkflowReplayResult

from amosflow.dsl import ActionStep, WaitStep
from amosflow.engine.types import WORKFLOW_NAME, RunInput
from amosflow.engine.workflow import FlowWorkflow, Frame
from tests.scenarios.examples import INPUTS

HISTORIES = Path(__file__).resolve().parents[1] / "histories"


def recorded() -> list[Path]:
    """Every recorded history file."""
    return sorted(HISTORIES.glob("*.json"))


def replay(path: Path, workflow_class: type) -> WorkflowReplayResult:
    """Replay one recorded history against ``workflow_class``, without raising on failure."""
    history = WorkflowHistory.from_json(f"{path.stem}-recorded", path.read_text(encoding="utf-8"))
    replayer = Replayer(workflows=[workflow_class], workflow_runner=UnsandboxedWorkflowRunner())
    return asyncio.run(replayer.replay_workflow(history, raise_on_replay_failure=False))


@workflow.defn(name=WORKFLOW_NAME)
class ExtraTimerWorkflow(FlowWorkflow):
    """The interpreter with one deliberate change: an extra timer before every `wait` step."""

    @workflow.run
    async def run(self, inp: RunInput) -> dict[str, Any]:
        """Run the flow as the real interpreter does."""
        return await super().run(inp)

    async def _dispatch(self, step: Any, frame: Frame, pointer: str) -> tuple[Any, int | None]:
        if isinstance(step, WaitStep):
            await workflow.sleep(timedelta(milliseconds=1))
        return await super()._dispatch(step, frame, pointer)


@workflow.defn(name=WORKFLOW_NAME)
class SkippedActionWorkflow(FlowWorkflow):
    """The interpreter with one deliberate change: the action step `notify` issues nothing."""

    @workflow.run
    async def run(self, inp: RunInput) -> dict[str, Any]:
        """Run the flow as the real interpreter does."""
        return await super().run(inp)

    async def _dispatch(self, step: Any, frame: Frame, pointer: str) -> tuple[Any, int | None]:
        if isinstance(step, ActionStep) and step.id == "notify":
            return {"status": 200}, 1
        return await super()._dispatch(step, frame, pointer)


def test_every_example_has_a_recorded_history() -> None:
    """Each example that the scenarios run has a history here to replay."""
    assert {p.stem for p in recorded()} == set(INPUTS)


@pytest.mark.parametrize("path", recorded(), ids=lambda p: p.stem)
def test_recorded_history_replays(path: Path) -> None:
    """Today's interpreter issues exactly the commands recorded in the example's history."""
    result = replay(path, FlowWorkflow)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"


@pytest.mark.parametrize(
    ("altered", "example"),
    [(ExtraTimerWorkflow, "job-polling"), (SkippedActionWorkflow, "order-fulfilment")],
    ids=["extra-timer", "missing-activity"],
)
def test_changed_command_sequence_is_caught(altered: type, example: str) -> None:
    """An interpreter that issues different commands fails replay with a nondeterminism error."""
    result = replay(HISTORIES / f"{example}.json", altered)
    assert isinstance(result.replay_failure, workflow.NondeterminismError), result.replay_failure
