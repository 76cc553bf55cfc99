"""The actions a runner performs: the action modules of the capabilities it was enrolled for.

A worker loads every action module (``engine.activities``), the AI ones included, which open
the node's store. A runner loads only the modules of its own capabilities, when it starts,
so importing the agent loads none of them and a slim runner host needs only the packages of
what it offers. Steps of a capability that belongs on the flow worker (``llm``: models,
budgets and their audit trail live with the control plane, decision 0038) are refused.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from amosflow.dsl.actions import get_action
from amosflow.engine.activities import Failure
from amosflow.errors import AmosError, UnknownActionError

if TYPE_CHECKING:
    from collections.abc import Iterable

#: The action modules of each capability a runner can perform.
ACTION_MODULES: dict[str, tuple[str, ...]] = {
    "core": ("amosflow.engine.activities.core",),
    "http": ("amosflow.engine.activities.http",),
    "browser": ("amosflow.engine.activities.browser",),
    "file": ("amosflow.engine.activities.file",),
    "sql": ("amosflow.engine.activities.sql",),
    "email": ("amosflow.engine.activities.email",),
    "sandbox": ("amosflow.engine.activities.code",),
    "document": (),
}
#: Capabilities whose steps run on the node's flow worker only, never on a runner.
WORKER_ONLY = frozenset({"llm"})


def load_actions(capabilities: Iterable[str]) -> list[str]:
    """Import the action modules of ``capabilities`` (each registers its actions); return them.

    A module whose packages this host lacks is an error naming the capability, so a runner
    never takes jobs it cannot perform.
    """
    loaded: list[str] = []
    for capability in sorted(set(capabilities)):
        for module in ACTION_MODULES.get(capability, ()):
            try:
                importlib.import_module(module)
            except ImportError as err:
                raise AmosError(
                    f"this runner is enrolled for {capability!r} but cannot load {module}: {err}"
                ) from None
            loaded.append(module)
    return loaded


def misplaced(action: str) -> Failure | None:
    """The failure of a step that must not run on a runner; None for every other step."""
    try:
        spec = get_action(action)
    except UnknownActionError:
        return None  # the performer reports an unknown action like any worker does
    if spec.capability not in WORKER_ONLY:
        return None
    return Failure(
        f"{action} runs on the node's flow worker, next to the model definitions and"
        " budgets; remove the step's `runner` selector",
        "WrongPlacement",
        retryable=False,
    )
