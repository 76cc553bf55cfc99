"""Payloads that cross the workflow/activity boundary; plain dataclasses of JSON values.

They are part of every recorded history, so a change here must keep old histories
deserialisable (add fields with defaults, never rename).
"""

# No `from __future__ import annotations`: the SDK reads these hints on every payload it
# converts (typing.get_type_hints), and string annotations are compiled again each time.

from dataclasses import dataclass, field
from typing import Any

WORKFLOW_NAME = "amos.flow"
PROGRESS_QUERY = "progress"
#: Where a run's result (and its failure's details) carries the step timeline at the end.
TIMELINE_KEY = "steps"
NON_RETRYABLE = "AmosNonRetryable"


@dataclass
class LoopSegment:
    """The rest of a loop, handed to a child run so no history grows past its limits."""

    pointer: str
    start: int
    items: list[Any] | None = None
    vars: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, Any] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    iteration: list[int] = field(default_factory=list)


@dataclass
class RunInput:
    """Everything a run needs: the pinned flow, its hash, the inputs and the config snapshot."""

    flow: dict[str, Any]
    flow_hash: str
    inputs: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    config_hash: str = ""
    library: dict[str, dict[str, Any]] = field(default_factory=dict)
    run_id: str = ""
    segment: LoopSegment | None = None


@dataclass
class SegmentResult:
    """What a loop segment hands back: its outputs and the state the loop carries on with."""

    outputs: list[Any]
    vars: dict[str, Any]
    steps: dict[str, Any]
    last: Any = None
    done: bool = True


@dataclass
class ActionCall:
    """One action attempt's input: the rendered `with` and where secrets go."""

    action: str
    with_: dict[str, Any]
    run_id: str
    step_id: str
    iteration: str
    idempotency_key: str
    secret_slots: list[dict[str, Any]] = field(default_factory=list)
    check: str | None = None
    pointer: str = ""
    check_scope: dict[str, Any] = field(default_factory=dict)

    def secret_names(self) -> set[str]:
        """The secrets this call refers to (its slots): all a runner may be given for it."""
        return {
            str(part["secret"])
            for slot in self.secret_slots
            for part in slot.get("parts", [])
            if isinstance(part, dict) and "secret" in part
        }


@dataclass
class DispatchCall:
    """An action attempt for a runner: the call and where it may run."""

    call: ActionCall
    capability: str
    zone: str | None = None


@dataclass
class ActionResult:
    """An action's output (inline, or an artifact reference) and the attempt that made it."""

    output: Any
    attempt: int = 1


# -- human tasks ----------------------------------------------------------------------------

#: The workflow update a decision on a human task goes through.
DECIDE_UPDATE = "decide"
TASK_OPEN_ACTIVITY = "amos.task.open"
TASK_ESCALATE_ACTIVITY = "amos.task.escalate"
TASK_CLOSE_ACTIVITY = "amos.task.close"
TASK_NOTIFY_ACTIVITY = "amos.task.notify"


@dataclass
class TaskOpen:
    """A human step's task as the workflow opens it; keyed by run, step and iteration."""

    task_id: str
    run_id: str
    step_id: str
    iteration: str
    kind: str
    title: str
    assignees: list[str] = field(default_factory=list)
    form: dict[str, Any] | None = None
    due_at: str | None = None
    flow: str = ""
    workflow_id: str = ""


@dataclass
class TaskOpened:
    """What the inbox knows that the workflow needs: who started the run, and four-eyes."""

    task_id: str
    started_by: str | None = None
    four_eyes: bool = True


@dataclass
class TaskDecision:
    """A person's decision on a task, sent as the `decide` update."""

    task_id: str
    outcome: str
    by: str
    comment: str = ""
    data: dict[str, Any] | None = None
    channel: str = "api"


@dataclass
class TaskEscalation:
    """An SLA breach: the assignees to add, so the inbox and notifications follow."""

    task_id: str
    add_assignees: list[str] = field(default_factory=list)


@dataclass
class TaskClose:
    """The end of a task: its final status and the decision, if any, to reconcile the inbox."""

    task_id: str
    status: str
    decision: dict[str, Any] | None = None
    channel: str = "api"


@dataclass
class TaskNotice:
    """Ask for the notifications of a task event (`created` or `escalated`)."""

    task_id: str
    event: str
