"""The public surface of amosflow.humantasks, and the interpreter's independence from it."""

from __future__ import annotations

import subprocess
import sys

import amosflow.humantasks

EXPECTED = {
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
}


def test_exports_are_pinned() -> None:
    """The package exports exactly the names others code against, and each one exists."""
    assert set(amosflow.humantasks.__all__) == EXPECTED
    assert all(hasattr(amosflow.humantasks, name) for name in EXPECTED)


def test_the_interpreter_loads_without_the_human_task_package() -> None:
    """Importing the interpreter workflow loads nothing of the human-task package."""
    probe = (
        "import sys, amosflow.engine.workflow; "
        "print(sorted(m for m in sys.modules if m.startswith('amosflow.humantasks')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "[]"
