"""The runner agent carries no control-plane code, checked in fresh interpreters."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from amosflow.runner.agent import ACTION_MODULES

#: Libraries of the control plane (store, migrations, catalog, API, bus) and of other hosts.
LIBRARIES = ("sqlalchemy", "alembic", "dulwich", "fastapi", "starlette", "uvicorn", "nats")
#: Project packages the agent must never load, directly or through another package.
PACKAGES = (
    "vault",
    "store",
    "audit",
    "catalog",
    "identity",
    "services",
    "api",
    "bus",
    "ai",
    "runner.dispatch",
)


def _modules(code: str) -> list[str]:
    """The sorted ``sys.modules`` a fresh interpreter prints after running ``code``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMOS_")}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    modules: list[str] = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    return modules


def _forbidden(modules: list[str]) -> list[str]:
    return [
        name
        for name in modules
        if name.split(".")[0] in LIBRARIES
        or any(name == f"amosflow.{p}" or name.startswith(f"amosflow.{p}.") for p in PACKAGES)
    ]


def test_importing_the_agent_loads_no_control_plane_code() -> None:
    """`import amosflow.runner.agent.main` loads no store, vault, API or bus code or library."""
    modules = _modules("import amosflow.runner.agent.main; import sys; print(sorted(sys.modules))")
    assert "amosflow.runner.agent.main" in modules
    assert _forbidden(modules) == []
    actions = {module for modules in ACTION_MODULES.values() for module in modules}
    assert actions.isdisjoint(modules)  # loaded when the agent starts, for its capabilities


def test_a_starting_agent_loads_only_its_capabilities_actions(tmp_path: Path) -> None:
    """An agent enrolled for core, http, file, email and sandbox starts without the control plane."""
    directory = tmp_path / "runner"
    directory.mkdir()
    meta = {
        "runner_id": "rnr-0123456789abcdef",
        "endpoint": "https://127.0.0.1:8687",
        "zone": "dmz",
        "capabilities": ["core", "email", "file", "http", "sandbox"],
    }
    (directory / "runner.json").write_text(json.dumps(meta), encoding="utf-8")
    modules = _modules(
        "import sys; from pathlib import Path;"
        " from amosflow.runner.agent import Agent, RunnerIdentity;"
        f" Agent(RunnerIdentity.load(Path({str(directory)!r})), Path({str(tmp_path / 'a')!r}));"
        " print(sorted(sys.modules))"
    )
    assert _forbidden(modules) == []
    assert "amosflow.engine.activities.http" in modules
    assert "amosflow.engine.activities.code" in modules
    assert "amosflow.engine.activities.sql" not in modules
    assert "amosflow.engine.activities.browser" not in modules
