"""Human tasks: the inbox, the activities a human step runs, and what people do with a task.

A ``human`` step's run opens a task through ``task_activities`` (on the control plane's
queue) and waits in the interpreter (``engine/workflow/human.py``) for the ``decide`` update.
People list, claim, unclaim and decide tasks through ``list_tasks``, ``claim``, ``unclaim``
and ``decide``, after the caller is authorized on the task (``task_resource`` is what ABAC
conditions see). New and escalated tasks are announced by mail and chat webhooks, with a link
(``console_link``) and nothing one could decide with (decisions 0032-0034 and 0052).
"""

from amosflow.humantasks._activities import task_activities
from amosflow.humantasks._inbox import TaskRecord, list_inbox
from amosflow.humantasks._message import console_link
from amosflow.humantasks._service import (
    Decision,
    TaskPlane,
    TaskQuery,
    claim,
    decide,
    get_task,
    is_assignee,
    list_tasks,
    task_resource,
    unclaim,
)

__all__ = [
    "Decision",
    "TaskPlane",
    "TaskQuery",
    "TaskRecord",
    "claim",
    "console_link",
    "decide",
    "get_task",
    "is_assignee",
    "list_inbox",
    "list_tasks",
    "task_activities",
    "task_resource",
    "unclaim",
]
