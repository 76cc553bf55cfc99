"""What a task notification says: the task, why it is sent, and where to open it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from amosflow.humantasks._inbox import TaskRecord

PRODUCT = "AMOS FLOW"
_HEADLINES = {"created": "New task", "escalated": "Escalated task", "overdue": "Overdue task"}


def console_link(public_url: str, task_id: str) -> str:
    """The console's deep link to one task."""
    return f"{public_url.rstrip('/')}/#/tasks/{task_id}"


@dataclass(frozen=True)
class TaskNotification:
    """One notice about one task; rendered as a mail and as a chat message."""

    event: str
    task: TaskRecord
    link: str

    @property
    def subject(self) -> str:
        """The mail subject and the chat headline."""
        headline = _HEADLINES.get(self.event, "Task")
        return f"[{PRODUCT}] {headline}: {self.task.title}"

    @property
    def text(self) -> str:
        """The plain-text body: facts and the link, never a way to decide."""
        task = self.task
        lines = [
            self.subject,
            "",
            f"Flow: {task.flow} (folder {task.folder})",
            f"Run: {task.run_id}, step {task.step_id}",
            f"Kind: {task.kind}",
            f"Assignees: {', '.join(task.assignees) or 'anyone who may decide tasks'}",
        ]
        if task.due_at is not None:
            lines.append(f"Due: {task.due_at.isoformat()}")
        lines += ["", f"Open it in the console: {self.link}"]
        return "\n".join(lines) + "\n"
