"""`amos-runner`: the runner host's own command, with `amos runner`'s exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from amosflow.cli import exits
from amosflow.errors import AmosError, AuthenticationError
from amosflow.runner.agent.main import main


def test_start_without_an_enrollment_is_refused_like_amos_runner(tmp_path: Path, capsys) -> None:
    """No identity in the directory: exit 4 and say how to enroll."""
    code = main(["start", "--dir", str(tmp_path / "none")])
    assert code == exits.for_error(AuthenticationError("x")) == 4
    assert "run `amos runner enroll`" in capsys.readouterr().err


def test_enroll_against_an_unreachable_api_fails(tmp_path: Path, capsys) -> None:
    """A control plane that does not answer: exit 1, nothing written."""
    code = main(
        [
            "enroll",
            "--url",
            "http://127.0.0.1:9",
            "--token",
            "amos_enr_x",
            "--dir",
            str(tmp_path / "r"),
        ]
    )
    assert code == exits.for_error(AmosError("x")) == 1
    assert "cannot reach http://127.0.0.1:9" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_command_is_required() -> None:
    """Without a command the parser refuses, as argparse does (exit 2)."""
    with pytest.raises(SystemExit) as stopped:
        main([])
    assert stopped.value.code == 2


def test_it_runs_as_a_module(tmp_path: Path) -> None:
    """`python -m amosflow.runner.agent.main` is the same command."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMOS_")}
    env["AMOS_HOME"] = str(tmp_path / "home")
    done = subprocess.run(
        [sys.executable, "-m", "amosflow.runner.agent.main", "start"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=env,
    )
    assert done.returncode == 4, done.stderr
    assert str(tmp_path / "home" / "runner") in done.stderr
