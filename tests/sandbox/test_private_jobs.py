"""The sandbox's files on the host are private: other users can read nothing of a running job.

A ``code.python`` script may hold rendered secrets; its job directory is checked while the
script runs, from another host user's side (a real uid, not a mode calculation alone).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from amosflow import sandbox

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")

OTHER_UID = 4321  # a host user that is neither the worker (root) nor the sandbox's (65534)
SANDBOX_UID = 65534
CANARY = "canary-2b7e51-rendered-secret"
SCRIPT = f"token = {CANARY!r}\nimport time\ntime.sleep(600)\n"
START_DEADLINE_S = 60.0


@pytest.fixture(params=sandbox.BACKENDS)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> sandbox.Backend:
    """Each backend in turn, selected through AMOS_SANDBOX as an operator would."""
    name: sandbox.Backend = request.param
    if sandbox.backend_binary(name) is None:
        pytest.skip(f"the {name} backend is not installed")
    problem = sandbox.probe(name)
    assert problem is None, f"{name} is installed but does not work: {problem}"
    monkeypatch.setenv(sandbox.SANDBOX_ENV, name)
    return name


@pytest.fixture
def jobs_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A temp dir of its own for the job directories (traversable, like /tmp)."""
    monkeypatch.delenv("AMOS_HOME", raising=False)
    path = Path(tempfile.mkdtemp(prefix="amos-test-private-"))
    path.chmod(0o711)
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    yield path
    shutil.rmtree(path)


def _as_other_user(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run a system program as ``OTHER_UID``."""
    return subprocess.run(
        argv,
        user=OTHER_UID,
        group=OTHER_UID,
        extra_groups=[],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )


async def _started(jobs: Path) -> Path:
    """The job directory of the running script, once its runner has started inside."""
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        found = list(jobs.glob("**/out/started"))
        if found:
            return found[0].parent.parent
        await asyncio.sleep(0.05)
    pytest.fail("the script did not start in its sandbox")


def _while_running(jobs: Path, check: Callable[[Path], None]) -> None:
    """Run ``check`` on the job directory (under ``jobs``) of a script while it runs."""

    async def scenario() -> None:
        limits = sandbox.Limits(timeout_s=120)
        task = asyncio.create_task(sandbox.run_python(SCRIPT, {}, limits))
        try:
            check(await _started(jobs))
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(scenario())


def test_a_running_script_is_unreadable_to_other_host_users(
    backend: sandbox.Backend, jobs_dir: Path
) -> None:
    """Another host user can neither read a running script nor list its job directory."""

    def check(job: Path) -> None:
        script = job / "in" / "script.py"
        assert CANARY in script.read_text()  # the worker (root) can
        assert _as_other_user("/usr/bin/cat", str(script)).returncode != 0
        assert _as_other_user("/usr/bin/ls", str(job)).returncode != 0
        assert _as_other_user("/usr/bin/ls", str(job / "in")).returncode != 0

    _while_running(jobs_dir, check)
    assert list(jobs_dir.iterdir()) == []


def test_job_directories_are_0700_and_files_0600(backend: sandbox.Backend, jobs_dir: Path) -> None:
    """Every directory the sandbox writes is 0700, every file 0600."""

    def check(job: Path) -> None:
        assert stat.S_IMODE(job.stat().st_mode) == 0o700
        script = (job / "in" / "script.py").stat()
        assert stat.S_IMODE(script.st_mode) == 0o600
        assert script.st_uid == SANDBOX_UID  # the sandbox user must read it, nobody else
        for name in ("in", "out", "scratch"):
            folder = (job / name).stat()
            assert (stat.S_IMODE(folder.st_mode), folder.st_uid) == (0o700, SANDBOX_UID)
        for path in job.rglob("*"):
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode) or path.is_relative_to(job / "state"):
                continue  # links have no mode; runsc's state is its own, behind 0700
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISDIR(info.st_mode):
                assert mode == 0o700, f"{path.relative_to(job)} is {mode:o}"
            else:
                assert mode == 0o600, f"{path.relative_to(job)} is {mode:o}"

    _while_running(jobs_dir, check)


def test_a_configured_home_holds_the_jobs_in_its_private_sandbox_directory(
    jobs_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With AMOS_HOME set, gVisor's job directories live in AMOS_HOME/sandbox, made 0700."""
    if sandbox.backend_binary("gvisor") is None or sandbox.probe("gvisor") is not None:
        pytest.skip("gVisor does not work here; bubblewrap under root keeps jobs in the temp dir")
    monkeypatch.setenv(sandbox.SANDBOX_ENV, "gvisor")
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("AMOS_HOME", str(home))
    base = home / "sandbox"

    def check(job: Path) -> None:
        assert job.parent == base
        assert stat.S_IMODE(base.stat().st_mode) == 0o700

    _while_running(home, check)
