"""A runner host installs the runner alone: requirements/runner.txt plus amosflow without deps."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
REQUIREMENTS = ROOT / "requirements"
#: What a slim runner host must not have at all: the control plane's libraries.
ABSENT = ("sqlalchemy", "alembic", "dulwich", "fastapi", "uvicorn", "nats", "playwright", "mcp")


def _requirements(name: str) -> list[str]:
    lines = (REQUIREMENTS / name).read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line and not line.startswith(("#", "-r "))]


@pytest.mark.parametrize("name", ["runner.txt", "runner-browser.txt", "runner-sql.txt"])
def test_the_runner_requirements_are_the_projects_own(name: str) -> None:
    """Each runner requirement is a dependency of pyproject.toml, with the same range."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert set(_requirements(name)) <= set(project["dependencies"])


@pytest.mark.slow
def test_a_fresh_venv_with_the_runner_requirements_runs_the_agent(tmp_path: Path) -> None:
    """Install the documented way into an empty venv; the agent imports and its command runs."""
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMOS_", "VIRTUAL_ENV"))}
    env["AMOS_HOME"] = str(tmp_path / "home")

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in args],
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
            env=env,
            cwd=tmp_path,
        )

    assert run(sys.executable, "-m", "venv", venv).returncode == 0
    python = venv / "bin" / "python"
    pip = (python, "-m", "pip", "install", "--quiet")
    installed = run(*pip, "-r", REQUIREMENTS / "runner.txt")
    assert installed.returncode == 0, installed.stderr
    installed = run(*pip, "--no-deps", ROOT)
    assert installed.returncode == 0, installed.stderr

    probe = run(
        python,
        "-c",
        "import importlib.util, amosflow.runner.agent.main;"
        " from amosflow.runner.agent import load_actions;"
        " load_actions(['core', 'http', 'file', 'email', 'sandbox']);"
        f" print([n for n in {ABSENT!r} if importlib.util.find_spec(n)])",
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "[]"
    started = run(venv / "bin" / "amos-runner", "start")
    assert started.returncode == 4, started.stderr
    assert "no runner is enrolled" in started.stderr
