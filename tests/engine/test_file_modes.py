"""file.write keeps what it writes private: files 0600, directories 0700, unless `mode` says else.

Regression tests for issue 13, finding 14 (files written by `file.write` were 0644 in 0755
directories, readable by every user of the host).
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amosflow.config import EngineSettings
from amosflow.dsl import validate_flow
from amosflow.dsl.actions import validate_with
from amosflow.engine.activities import ActionContext
from amosflow.engine.activities import file as file_actions
from amosflow.engine.types import ActionCall
from amosflow.testing import run_flow
from tests.engine.flows import flow


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The root named `data` in AMOS_FILE_ROOTS."""
    path = tmp_path / "root"
    path.mkdir()
    monkeypatch.setenv("AMOS_FILE_ROOTS", f"data={path}")
    return path


@pytest.fixture
def umask() -> Iterator[Any]:
    """Set the process umask for one test (the usual 022 unless the test picks another)."""
    previous = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(previous)


def write(**with_: Any) -> dict[str, Any]:
    """Run file.write the way the activity wrapper does (with validated params)."""
    params = validate_with("file.write", {"root": "data", **with_})
    call = ActionCall(
        action="file.write", with_=with_, run_id="r", step_id="w", iteration="", idempotency_key="k"
    )
    ctx = ActionContext(call=call, artifacts=None)  # type: ignore[arg-type]

    async def go() -> dict[str, Any]:
        result: dict[str, Any] = await file_actions.write(ctx, params)
        return result

    return asyncio.run(go())


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("umask")
def test_write_creates_the_file_0600_and_its_directories_0700(root: Path) -> None:
    """Under the usual umask 022, a new file is 0600 and each directory made for it 0700."""
    write(path="a/b/report.txt", content="quarterly", parents=True)
    assert mode_of(root / "a" / "b" / "report.txt") == 0o600
    assert mode_of(root / "a") == 0o700
    assert mode_of(root / "a" / "b") == 0o700


@pytest.mark.usefixtures("umask")
def test_overwrite_leaves_the_replacement_0600(root: Path) -> None:
    """A file replaced with overwrite=true gets 0600, whatever the old file's mode was."""
    (root / "shared.txt").write_text("old")
    (root / "shared.txt").chmod(0o644)
    write(path="shared.txt", content="new", overwrite=True)
    assert mode_of(root / "shared.txt") == 0o600


def test_mode_is_applied_exactly_whatever_the_umask(root: Path, umask: Any) -> None:
    """mode "0640" gives a 0640 file in 0750 directories, even under umask 077."""
    umask(0o077)
    write(path="out/team.csv", content="a,b", parents=True, mode="0640")
    assert mode_of(root / "out" / "team.csv") == 0o640
    assert mode_of(root / "out") == 0o750
    write(path="public.txt", content="x", mode="644")
    assert mode_of(root / "public.txt") == 0o644


@pytest.mark.usefixtures("umask")
def test_existing_directories_keep_their_mode(root: Path) -> None:
    """Only directories file.write makes get its mode; an existing one is left as it is."""
    (root / "kept").mkdir()
    (root / "kept").chmod(0o755)
    write(path="kept/new/file.txt", content="x", parents=True)
    assert mode_of(root / "kept") == 0o755
    assert mode_of(root / "kept" / "new") == 0o700


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("0666", "lets every user write the file"),
        ("0602", "lets every user write the file"),
        ("0200", "does not let the owner read the file"),
        ("4755", "is not octal permission bits"),
        ("01777", "is not octal permission bits"),
        ("0o640", "is not octal permission bits"),
        ("rw-r-----", "is not octal permission bits"),
        ("0680", "is not octal permission bits"),
    ],
)
def test_an_unsafe_or_malformed_mode_is_refused_when_the_flow_is_validated(
    mode: str, message: str
) -> None:
    """World-writable, owner-unreadable, special bits or non-octal text fail validation at `mode`."""
    step = {
        "id": "w",
        "type": "action",
        "action": "file.write",
        "with": {"root": "data", "path": "x.txt", "content": "x", "mode": mode},
    }
    found = {d.pointer: d.message for d in validate_flow(flow(step))}
    assert list(found) == ["/steps/0/with/mode"]
    assert message in found["/steps/0/with/mode"]


def _write_step(**with_: Any) -> dict[str, Any]:
    return {
        "id": "save",
        "type": "action",
        "action": "file.write",
        "with": {"root": "data", "content": "private", **with_},
        "retry": {"max_attempts": 1},
    }


@pytest.mark.temporal
@pytest.mark.usefixtures("umask")
def test_flow_writes_a_private_file_and_a_computed_mode_on_temporal(
    settings: EngineSettings, root: Path
) -> None:
    """Through the engine: the default is 0600, a mode from inputs applies, a bad one fails."""
    inputs = {"type": "object", "properties": {"mode": {"type": "string"}}}
    default = flow(_write_step(path="default.txt"), inputs=inputs)
    computed = flow(_write_step(path="computed.txt", mode="${inputs.mode}"), inputs=inputs)
    assert validate_flow(computed) == []

    async def go() -> list[dict[str, Any]]:
        return [
            await run_flow(settings, default, {}),
            await run_flow(settings, computed, {"mode": "0640"}),
            await run_flow(settings, computed, {"mode": "0666"}),
        ]

    first, second, refused = asyncio.run(go())
    assert first["status"] == "completed", first["error"]
    assert mode_of(root / "default.txt") == 0o600
    assert second["status"] == "completed", second["error"]
    assert mode_of(root / "computed.txt") == 0o640
    assert refused["status"] == "failed"
    assert refused["error"]["type"] == "ValidationError"
    assert "lets every user write the file" in refused["error"]["message"]
