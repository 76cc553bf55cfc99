"""What a runner performs: the action modules of its capabilities, and never an AI step."""

from __future__ import annotations

import pytest

from amosflow.dsl.actions import all_actions
from amosflow.engine.activities import base
from amosflow.errors import AmosError
from amosflow.runner.agent import ACTION_MODULES, WORKER_ONLY, load_actions, misplaced
from amosflow.runner.dispatch import CAPABILITIES


def test_every_capability_is_performed_by_a_runner_or_kept_on_the_worker() -> None:
    """Each capability a runner can be enrolled for has its action modules, or is worker-only."""
    assert set(ACTION_MODULES) | WORKER_ONLY == CAPABILITIES
    assert set(ACTION_MODULES).isdisjoint(WORKER_ONLY)


@pytest.mark.parametrize("capability", sorted(ACTION_MODULES))
def test_a_capabilitys_modules_implement_all_of_its_actions(capability: str) -> None:
    """Loading one capability registers an implementation of every action that names it."""
    assert load_actions([capability]) == list(ACTION_MODULES[capability])
    wanted = {spec.name for spec in all_actions() if spec.capability == capability}
    assert wanted <= set(base._IMPLEMENTATIONS)


def test_a_module_this_host_lacks_is_an_error_naming_the_capability(monkeypatch) -> None:
    """A runner never starts taking jobs of a capability whose packages are missing."""
    monkeypatch.setitem(ACTION_MODULES, "core", ("amosflow.no_such_module",))
    with pytest.raises(AmosError, match="enrolled for 'core' but cannot load"):
        load_actions(["core"])


@pytest.mark.parametrize("action", ["llm.generate", "agent.run"])
def test_ai_steps_are_refused_on_a_runner(action: str) -> None:
    """Models, budgets and their audit trail live on the node's flow worker (decision 0038)."""
    failure = misplaced(action)
    assert failure is not None
    assert (failure.type, failure.retryable) == ("WrongPlacement", False)
    assert failure.message == (
        f"{action} runs on the node's flow worker, next to the model definitions and"
        " budgets; remove the step's `runner` selector"
    )


@pytest.mark.parametrize("action", ["http.request", "core.echo", "no.such"])
def test_other_steps_are_performed(action: str) -> None:
    """Every other action, unknown ones included, goes to the performer as on a worker."""
    assert misplaced(action) is None
