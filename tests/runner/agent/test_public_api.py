"""The public surface of amosflow.runner.agent."""

from __future__ import annotations

import amosflow.runner
import amosflow.runner.agent

EXPECTED = {
    "ACTION_MODULES",
    "WORKER_ONLY",
    "Agent",
    "RunnerIdentity",
    "RunnerKey",
    "enroll",
    "generate_runner_key",
    "key_pem",
    "load_actions",
    "make_csr",
    "misplaced",
    "repoint",
    "save_identity",
    "serve",
}


def test_exports_are_pinned() -> None:
    """The package exports exactly the names others code against, and each one exists."""
    assert set(amosflow.runner.agent.__all__) == EXPECTED
    assert all(hasattr(amosflow.runner.agent, name) for name in EXPECTED)


def test_the_runner_package_itself_exports_nothing() -> None:
    """Importing one side never loads the other through the parent package."""
    assert amosflow.runner.__all__ == []
