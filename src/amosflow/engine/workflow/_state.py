"""Run state the interpreter keeps in memory: frames, step records and progress.

Nothing here does I/O or reads a clock: the workflow hands in `workflow.now()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PENDING = "pending"
RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
SKIPPED = "skipped"
WAITING = "waiting"


class StepFailedError(Exception):
    """A step failed; carries the DSL error object (`message`, `type`, `step`)."""

    def __init__(self, message: str, type_: str, step: str) -> None:
        super().__init__(message)
        self.message = message
        self.type = type_
        self.step = step

    def as_dict(self) -> dict[str, Any]:
        """The `error` value seen by `catch` steps and in the run result."""
        return {"message": self.message, "type": self.type, "step": self.step}


class SucceedSignal(Exception):  # noqa: N818 - a control signal, not an error
    """A `succeed` step stops the run successfully; `finally` blocks still run."""


@dataclass
class Frame:
    """What a step sees: the step records, loop locals and its iteration path."""

    steps: dict[str, dict[str, Any]]
    locals: dict[str, Any] = field(default_factory=dict)
    iteration: tuple[int, ...] = ()

    def child(self, position: int, local_values: dict[str, Any]) -> Frame:
        """A frame for one loop iteration; its step records start as a copy of ours."""
        return Frame(
            steps=dict(self.steps),
            locals={**self.locals, **local_values},
            iteration=(*self.iteration, position),
        )

    def adopt(self, other: Frame, step_ids: list[str]) -> None:
        """Take over the records of the given steps from a finished iteration frame."""
        for step_id in step_ids:
            record = other.steps.get(step_id)
            if record is not None:
                self.steps[step_id] = record

    @property
    def iteration_key(self) -> str:
        """The iteration part of an idempotency key: `0` at top level, else `i.j.k`."""
        return ".".join(str(i) for i in self.iteration) if self.iteration else "0"


@dataclass
class Progress:
    """Per-step status, attempts and timing, served by the progress query."""

    steps: dict[str, dict[str, Any]] = field(default_factory=dict)

    def start(self, step_id: str, now: str) -> None:
        """Mark a step running."""
        rec = self.steps.setdefault(step_id, {"runs": 0})
        rec.update(status=RUNNING, started_at=now, ended_at=None, error=None)
        rec["runs"] += 1

    def wait(self, step_id: str, task_id: str) -> None:
        """Mark a running step as waiting on a person (its human task)."""
        rec = self.steps.setdefault(step_id, {"runs": 1})
        rec.update(status=WAITING, task_id=task_id)

    def resume(self, step_id: str) -> None:
        """A waiting step has its decision (or gave up waiting): it runs again."""
        rec = self.steps.get(step_id)
        if rec is not None and rec.get("status") == WAITING:
            rec["status"] = RUNNING

    def end(
        self,
        step_id: str,
        status: str,
        now: str,
        *,
        attempt: int | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        """Mark a step finished with its status, attempt and error."""
        rec = self.steps.setdefault(step_id, {"runs": 1, "started_at": now})
        rec.update(status=status, ended_at=now, error=error)
        if attempt is not None:
            rec["attempt"] = attempt

    def snapshot(self) -> dict[str, Any]:
        """A JSON copy safe to hand to a query caller."""
        return {step_id: dict(rec) for step_id, rec in self.steps.items()}


def initial_records(step_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Every step starts `pending` with no output, so expressions can look at it."""
    return {step_id: {"status": PENDING, "output": None} for step_id in step_ids}
