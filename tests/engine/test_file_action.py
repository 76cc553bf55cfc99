"""`file.read`, `file.write` and `file.list` on real directories: roots, no escape, atomicity.

The last tests run the actions through the interpreter on the session's Temporal server.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from amosflow.config import EngineSettings
from amosflow.dsl import actions as file_spec
from amosflow.dsl import validate_flow
from amosflow.dsl.actions import validate_with
from amosflow.engine.activities import ActionContext, ArtifactStore
from amosflow.engine.activities import file as file_actions
from amosflow.engine.types import ActionCall
from amosflow.errors import ActionError
from amosflow.testing import run_flow
from tests.engine.flows import flow

CANARY = "canary-outside-the-root-7f3a"
IMPLEMENTATIONS = {
    "file.read": file_actions.read,
    "file.write": file_actions.write,
    "file.list": file_actions.list_,
}


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory next to the root holding a file no action may touch."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "secret.txt").write_text(CANARY)
    return path


@pytest.fixture
def root(tmp_path: Path, outside: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The root named `data` in AMOS_FILE_ROOTS (plus an empty root `spare`)."""
    path = tmp_path / "root"
    path.mkdir()
    spare = tmp_path / "spare"
    spare.mkdir()
    monkeypatch.setenv("AMOS_FILE_ROOTS", f"data={path}, spare={spare}")
    return path


@pytest.fixture
def artifacts(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


def run_action(action: str, artifacts: ArtifactStore | None = None, **with_: Any) -> Any:
    """Run an implementation the way the activity wrapper does (with validated params)."""
    params = validate_with(action, with_)
    call = ActionCall(
        action=action, with_=with_, run_id="r", step_id="f", iteration="", idempotency_key="r/f/"
    )
    ctx = ActionContext(call=call, artifacts=artifacts)  # type: ignore[arg-type]
    return asyncio.run(IMPLEMENTATIONS[action](ctx, params))


def fails(error_type: str, action: str, **with_: Any) -> ActionError:
    with pytest.raises(ActionError) as caught:
        run_action(action, **with_)
    assert caught.value.type == error_type, str(caught.value)
    return caught.value


def denied(action: str, tmp_path: Path, **with_: Any) -> str:
    """Expect FileAccessDenied, not retryable, and a message without any host path."""
    err = fails("FileAccessDenied", action, **with_)
    assert not err.retryable
    message = str(err)
    assert str(tmp_path) not in message
    assert CANARY not in message
    return message


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


# -- configuration ---------------------------------------------------------------------------


def test_no_roots_configured_refuses_every_action(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without AMOS_FILE_ROOTS nothing is read, written or listed; the message names it."""
    monkeypatch.delenv("AMOS_FILE_ROOTS", raising=False)
    for action, with_ in [
        ("file.read", {"path": "a.txt"}),
        ("file.write", {"path": "a.txt", "content": "x"}),
        ("file.list", {}),
    ]:
        message = denied(action, tmp_path, root="data", **with_)
        assert "AMOS_FILE_ROOTS" in message
        assert message.startswith(f"{action}: ")
    monkeypatch.setenv("AMOS_FILE_ROOTS", " , ")
    assert "AMOS_FILE_ROOTS" in denied("file.list", tmp_path, root="data")


@pytest.mark.parametrize(
    "setting", ["data", "data=relative/path", "Data=/srv/files", "data=/srv/files,data=/srv/other"]
)
def test_a_malformed_setting_refuses_every_action(
    setting: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A malformed AMOS_FILE_ROOTS fails closed and says which setting to fix."""
    monkeypatch.setenv("AMOS_FILE_ROOTS", setting)
    message = denied("file.read", tmp_path, root="data", path="a.txt")
    assert "AMOS_FILE_ROOTS" in message
    assert "/srv" not in message


def test_unknown_root_names_the_configured_roots(root: Path, tmp_path: Path) -> None:
    """A root the runner does not have is refused; the known names (not paths) are listed."""
    message = denied("file.read", tmp_path, root="elsewhere", path="a.txt")
    assert "unknown root 'elsewhere'" in message
    assert "data, spare" in message


# -- read ------------------------------------------------------------------------------------


def test_read_text_and_base64(root: Path) -> None:
    """UTF-8 text comes back as text, any bytes as base64; size and sha256 of the bytes."""
    text = "Grüße, Ada\nline 2\n"
    (root / "notes").mkdir()
    (root / "notes" / "hello.txt").write_text(text, encoding="utf-8")
    data = text.encode()
    assert run_action("file.read", root="data", path="notes/hello.txt") == {
        "content": text,
        "encoding": "utf-8",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    binary = bytes(range(256))
    (root / "blob.bin").write_bytes(binary)
    output = run_action("file.read", root="data", path="./blob.bin", encoding="base64")
    assert base64.b64decode(output["content"]) == binary
    assert output["encoding"] == "base64"
    assert output["sha256"] == hashlib.sha256(binary).hexdigest()


def test_read_binary_as_text_fails_with_a_hint(root: Path) -> None:
    """Bytes that are not UTF-8 are not mangled into text: FileNotText says to use base64."""
    (root / "blob.bin").write_bytes(b"\xff\xfe\x00")
    err = fails("FileNotText", "file.read", root="data", path="blob.bin")
    assert "base64" in str(err)
    assert not err.retryable


def test_read_of_a_large_file_returns_an_artifact_reference(
    root: Path, artifacts: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above the inline cap (16 MiB; 1 KiB here) the bytes go to the artifact store."""
    monkeypatch.setattr(file_spec, "INLINE_READ_BYTES", 1024)
    data = os.urandom(4096)
    (root / "big.bin").write_bytes(data)
    output = run_action("file.read", artifacts, root="data", path="big.bin")
    digest = hashlib.sha256(data).hexdigest()
    assert output["encoding"] == "artifact"
    assert output["size"] == 4096
    assert output["sha256"] == digest
    assert output["content"] == {
        "$ref": f"artifact://sha256/{digest}",
        "sha256": digest,
        "size": 4096,
    }
    assert artifacts.get(output["content"]) == data


def test_read_refuses_what_is_not_there_or_not_a_file(root: Path, tmp_path: Path) -> None:
    """A missing file is FileNotFound; a directory or a FIFO is refused (and never blocks)."""
    err = fails("FileNotFound", "file.read", root="data", path="missing/a.txt")
    assert "root 'data', path 'missing'" in str(err)
    (root / "dir").mkdir()
    assert "not a regular file" in denied("file.read", tmp_path, root="data", path="dir")
    os.mkfifo(root / "pipe")
    assert "not a regular file" in denied("file.read", tmp_path, root="data", path="pipe")


# -- no escape -------------------------------------------------------------------------------


ESCAPES = ["../outside/secret.txt", "a/../../outside/secret.txt", "/etc/passwd", "a\x00b"]


@pytest.mark.parametrize("path", ESCAPES, ids=["dotdot", "inner-dotdot", "absolute", "nul"])
def test_paths_that_leave_the_root_are_refused(
    path: str, root: Path, outside: Path, tmp_path: Path
) -> None:
    """`..`, absolute paths and NUL bytes are refused by every action, naming root and path."""
    (root / "a").mkdir()
    for action, with_ in [
        ("file.read", {}),
        ("file.write", {"content": "pwned", "overwrite": True, "parents": True}),
        ("file.list", {}),
    ]:
        message = denied(action, tmp_path, root="data", path=path, **with_)
        assert "root 'data'" in message
        assert repr(path) in message
    assert (outside / "secret.txt").read_text() == CANARY
    assert files_under(outside) == ["secret.txt"]


def test_absolute_host_path_of_a_file_inside_the_root_is_refused(
    root: Path, tmp_path: Path
) -> None:
    """Even the absolute path of a file that is inside the root is refused, without echo."""
    (root / "a.txt").write_text("x")
    with pytest.raises(ActionError) as caught:
        run_action("file.read", root="data", path=str(root / "a.txt"))
    assert caught.value.type == "FileAccessDenied"


def test_literal_escapes_are_refused_when_the_flow_is_validated() -> None:
    """A literal path with `..` fails validation at its pointer; a computed one waits for the run."""
    doc = flow(
        {
            "id": "r",
            "type": "action",
            "action": "file.read",
            "with": {"root": "data", "path": "../x"},
        },
        {
            "id": "w",
            "type": "action",
            "action": "file.write",
            "with": {"root": "data", "path": "/etc/cron.d/x", "content": ""},
        },
        {
            "id": "ok",
            "type": "action",
            "action": "file.read",
            "with": {"root": "data", "path": "${inputs.name}"},
        },
    )
    problems = {d.pointer: d.message for d in validate_flow(doc)}
    assert problems == {
        "/steps/0/with/path": "path '../x' has a '..' component",
        "/steps/1/with/path": "path '/etc/cron.d/x' is absolute; give a path relative to the root",
    }


def test_a_symlink_to_a_file_outside_is_never_followed(
    root: Path, outside: Path, tmp_path: Path
) -> None:
    """Reading through a link is refused; writing over one is refused, the target untouched."""
    (root / "link.txt").symlink_to(outside / "secret.txt")
    denied("file.read", tmp_path, root="data", path="link.txt")
    denied("file.write", tmp_path, root="data", path="link.txt", content="pwned", overwrite=True)
    assert (outside / "secret.txt").read_text() == CANARY
    assert (root / "link.txt").is_symlink()


def test_a_symlinked_directory_is_never_walked_through(
    root: Path, outside: Path, tmp_path: Path
) -> None:
    """An intermediate directory that is a link (to outside) refuses read, write and list."""
    (root / "shared").symlink_to(outside, target_is_directory=True)
    denied("file.read", tmp_path, root="data", path="shared/secret.txt")
    denied(
        "file.write",
        tmp_path,
        root="data",
        path="shared/new/evil.txt",
        content="pwned",
        parents=True,
    )
    denied(
        "file.write", tmp_path, root="data", path="shared/secret.txt", content="x", overwrite=True
    )
    denied("file.list", tmp_path, root="data", path="shared")
    assert files_under(outside) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == CANARY


def test_links_inside_the_root_are_not_followed_either(root: Path, tmp_path: Path) -> None:
    """A link is refused wherever it points: no link is ever followed."""
    (root / "real").mkdir()
    (root / "real" / "a.txt").write_text("inside")
    (root / "alias").symlink_to(root / "real", target_is_directory=True)
    (root / "a-link.txt").symlink_to("real/a.txt")
    assert run_action("file.read", root="data", path="real/a.txt")["content"] == "inside"
    denied("file.read", tmp_path, root="data", path="alias/a.txt")
    denied("file.read", tmp_path, root="data", path="a-link.txt")


def test_the_root_itself_may_be_reached_through_a_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator's root path may be a link: it is resolved once, then nothing else is."""
    real = tmp_path / "real-root"
    real.mkdir()
    (real / "a.txt").write_text("via link")
    (tmp_path / "root-link").symlink_to(real, target_is_directory=True)
    monkeypatch.setenv("AMOS_FILE_ROOTS", f"data={tmp_path / 'root-link'}")
    assert run_action("file.read", root="data", path="a.txt")["content"] == "via link"


# -- write -----------------------------------------------------------------------------------


def test_write_creates_a_file_and_refuses_to_overwrite_by_default(
    root: Path, tmp_path: Path
) -> None:
    """overwrite=false writes a new file, refuses a different existing one, accepts a retry."""
    output = run_action("file.write", root="data", path="out.txt", content="first")
    assert output == {
        "root": "data",
        "path": "out.txt",
        "size": 5,
        "sha256": hashlib.sha256(b"first").hexdigest(),
        "created": True,
    }
    assert (root / "out.txt").read_text() == "first"
    message = denied("file.write", tmp_path, root="data", path="out.txt", content="second")
    assert "exists and overwrite is false" in message
    assert (root / "out.txt").read_text() == "first"
    retried = run_action("file.write", root="data", path="out.txt", content="first")
    assert retried["created"] is False  # the same bytes again: a retried attempt succeeds
    assert files_under(root) == ["out.txt"]  # no temporary file left behind


def test_overwrite_replaces_atomically(root: Path) -> None:
    """overwrite=true puts a new file in place with one rename (a new inode), no leftovers."""
    target = root / "report.csv"
    target.write_text("old")
    before = target.stat().st_ino
    with target.open() as reader:  # a reader of the old file keeps reading the old bytes
        output = run_action(
            "file.write", root="data", path="report.csv", content="new", overwrite=True
        )
        assert reader.read() == "old"
    assert output["created"] is False
    assert target.read_text() == "new"
    assert target.stat().st_ino != before
    assert files_under(root) == ["report.csv"]


def test_write_parents_and_base64(root: Path) -> None:
    """Missing directories need parents=true; base64 content is written as its bytes."""
    err = fails("FileNotFound", "file.write", root="data", path="a/b/c.bin", content="")
    assert "root 'data', path 'a'" in str(err)
    data = bytes(range(256))
    output = run_action(
        "file.write",
        root="data",
        path="a/b/c.bin",
        content=base64.b64encode(data).decode(),
        encoding="base64",
        parents=True,
    )
    assert (root / "a" / "b" / "c.bin").read_bytes() == data
    assert output["size"] == 256
    assert (root / "a" / "b" / "c.bin").stat().st_mode & 0o7133 == 0  # at most 0644
    bad = fails(
        "FileContentInvalid",
        "file.write",
        root="data",
        path="x.bin",
        content="%%",
        encoding="base64",
    )
    assert not bad.retryable
    assert not (root / "x.bin").exists()


def test_write_refuses_the_root_and_directories(root: Path, tmp_path: Path) -> None:
    """Neither the root nor an existing directory can be written over."""
    (root / "dir").mkdir()
    denied("file.write", tmp_path, root="data", path="dir", content="x", overwrite=True)
    denied("file.write", tmp_path, root="data", path=".", content="x", overwrite=True)
    assert (root / "dir").is_dir()


# -- list ------------------------------------------------------------------------------------


def test_list_entries_pattern_and_recursion(root: Path, outside: Path) -> None:
    """Entries with type, size and time; a glob on names; recursion never through a link."""
    (root / "a.csv").write_text("1,2\n")
    (root / "b.txt").write_text("hello")
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "sub" / "c.csv").write_text("3\n")
    (root / "sub" / "deeper" / "d.csv").write_text("")
    (root / "elsewhere").symlink_to(outside, target_is_directory=True)
    flat = run_action("file.list", root="data")
    assert [(e["name"], e["type"]) for e in flat["entries"]] == [
        ("a.csv", "file"),
        ("b.txt", "file"),
        ("elsewhere", "symlink"),
        ("sub", "dir"),
    ]
    assert flat["truncated"] is False
    first = flat["entries"][0]
    assert first["path"] == "a.csv"
    assert first["size"] == 4
    assert datetime.fromisoformat(first["modified"]).utcoffset().total_seconds() == 0
    deep = run_action("file.list", root="data", pattern="*.csv", recursive=True)
    assert [e["name"] for e in deep["entries"]] == ["a.csv", "sub/c.csv", "sub/deeper/d.csv"]
    assert not any("secret" in e["name"] for e in deep["entries"])
    inner = run_action("file.list", root="data", path="sub", recursive=True)
    assert [(e["name"], e["path"]) for e in inner["entries"]] == [
        ("c.csv", "sub/c.csv"),
        ("deeper", "sub/deeper"),
        ("deeper/d.csv", "sub/deeper/d.csv"),
    ]


def test_list_is_truncated_at_max_entries(root: Path) -> None:
    """At most max_entries entries come back, and truncated says more were left."""
    for n in range(5):
        (root / f"f{n}.txt").write_text(str(n))
    output = run_action("file.list", root="data", max_entries=3)
    assert len(output["entries"]) == 3
    assert output["truncated"] is True
    assert run_action("file.list", root="data", max_entries=5)["truncated"] is False


def test_list_of_a_missing_directory_is_not_found(root: Path) -> None:
    fails("FileNotFound", "file.list", root="data", path="nope")


# -- through the engine ----------------------------------------------------------------------


def _file_step(step_id: str, action: str, **with_: Any) -> dict[str, Any]:
    return {
        "id": step_id,
        "type": "action",
        "action": action,
        "with": {"root": "data", **with_},
        "retry": {"max_attempts": 2, "backoff": "50ms"},
    }


@pytest.mark.temporal
def test_flow_writes_reads_and_lists_files_on_temporal(
    settings: EngineSettings, root: Path
) -> None:
    """A flow writes a report under a root, reads it back and lists the directory."""
    doc = flow(
        _file_step(
            "save",
            "file.write",
            path="reports/${inputs.name}.txt",
            content="Hello, ${inputs.name}!",
            parents=True,
        ),
        _file_step("load", "file.read", path="${steps.save.output.path}"),
        _file_step("ls", "file.list", path="reports", pattern="*.txt"),
        outputs={
            "content": "${steps.load.output.content}",
            "sha_matches": "${steps.load.output.sha256 == steps.save.output.sha256}",
            "names": "${steps.ls.output.entries.map(e, e.name)}",
        },
        requires={"capabilities": ["file"]},
    )
    result = asyncio.run(run_flow(settings, doc, {"name": "ada"}))
    assert result["status"] == "completed", result["error"]
    assert result["output"] == {"content": "Hello, ada!", "sha_matches": True, "names": ["ada.txt"]}
    assert (root / "reports" / "ada.txt").read_text() == "Hello, ada!"


@pytest.mark.temporal
def test_flow_with_an_escaping_computed_path_fails_closed(
    settings: EngineSettings, root: Path, outside: Path, tmp_path: Path
) -> None:
    """A path computed from inputs that leaves the root fails the run with FileAccessDenied."""
    doc = flow(_file_step("load", "file.read", path="${inputs.path}"))
    result = asyncio.run(run_flow(settings, doc, {"path": "../outside/secret.txt"}))
    assert result["status"] == "failed"
    assert result["error"]["type"] == "FileAccessDenied"
    assert result["error"]["step"] == "load"
    assert "root 'data', path '../outside/secret.txt'" in result["error"]["message"]
    assert str(tmp_path) not in str(result)
    assert CANARY not in str(result)
