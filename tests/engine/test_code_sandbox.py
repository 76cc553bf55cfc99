"""`code.python` runs scripts in a real sandbox (gVisor and bubblewrap): no mocks.

Every behaviour is checked on each backend whose program is installed; the last tests run
the action through the interpreter on the session's Temporal server.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amosflow import sandbox
from amosflow.config import EngineSettings
from amosflow.dsl.actions import validate_with
from amosflow.engine.activities import ActionContext
from amosflow.engine.activities.code import python as code_python
from amosflow.engine.types import ActionCall
from amosflow.errors import ActionError
from amosflow.testing import run_flow
from tests.engine.flows import flow

CANARY = "canary-5d1e0b7a-sandbox-must-not-see"


@pytest.fixture(params=sandbox.BACKENDS)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each backend in turn, selected through AMOS_SANDBOX as an operator would."""
    name = request.param
    program = {"gvisor": "runsc", "bubblewrap": "bwrap"}[name]
    if sandbox.backend_binary(name) is None:
        pytest.skip(f"{program} is not installed, so the {name} backend cannot be tested")
    if name == "gvisor" and os.geteuid() != 0:
        pytest.skip("runsc (gVisor) needs root; this test process is not root")
    problem = sandbox.probe(name)
    assert problem is None, f"{name} is installed but does not work: {problem}"
    monkeypatch.setenv(sandbox.SANDBOX_ENV, name)
    return name


@pytest.fixture
def jobs_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A temp dir of its own for the sandbox's job directories, to see them deleted."""
    path = Path(tempfile.mkdtemp(prefix="amos-test-jobs-"))
    path.chmod(0o711)  # an unprivileged bubblewrap must reach the mount sources in it
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    yield path
    shutil.rmtree(path)


def run_action(**with_: Any) -> dict[str, Any]:
    """Run the code.python implementation the way the activity wrapper does."""
    params = validate_with("code.python", with_)
    call = ActionCall(
        action="code.python",
        with_=with_,
        run_id="r",
        step_id="code",
        iteration="",
        idempotency_key="r/code/",
    )
    ctx = ActionContext(call=call, artifacts=None)
    return asyncio.run(code_python(ctx, params))


def fails(error_type: str, **with_: Any) -> ActionError:
    """Run the action, expecting an ActionError of ``error_type``; return it."""
    with pytest.raises(ActionError) as caught:
        run_action(**with_)
    assert caught.value.type == error_type, str(caught.value)
    return caught.value


# -- results ---------------------------------------------------------------------------------


def test_script_computes_a_result_from_inputs(backend: str, jobs_dir: Path) -> None:
    """`inputs` is a variable (and JSON on stdin); `result` is the answer; print is stdout."""
    script = (
        "import json, sys\n"
        "print('adding', len(inputs['xs']), 'numbers')\n"
        "print('a warning', file=sys.stderr)\n"
        "result = {'total': sum(inputs['xs']), 'greeting': 'hi ' + inputs['name'],\n"
        "          'stdin': json.load(sys.stdin) == inputs}\n"
    )
    output = run_action(script=script, inputs={"xs": [1, 2, 39], "name": "Ada"})
    assert output["result"] == {"total": 42, "greeting": "hi Ada", "stdin": True}
    assert output["stdout"] == "adding 3 numbers\n"
    assert output["stderr"] == "a warning\n"
    assert isinstance(output["duration_ms"], int)
    assert output["duration_ms"] >= 0
    assert list(jobs_dir.iterdir()) == []


def test_no_result_is_null_and_output_is_capped(backend: str, jobs_dir: Path) -> None:
    """A script that sets no `result` returns null; stdout keeps its first 64 KiB."""
    output = run_action(script="print('x' * 200_000)")
    assert output["result"] is None
    assert output["stdout"].startswith("x" * 65536 + "\n[truncated: 200001 bytes")


def test_raising_script_is_a_script_error_with_its_last_traceback_line(
    backend: str, jobs_dir: Path
) -> None:
    """The message is the last traceback line; stderr has the script's own frames only."""
    script = "def f(n):\n    raise ValueError(f'bad n={n}')\nf(7)\n"
    err = fails("ScriptError", script=script)
    assert str(err) == "the script failed: ValueError: bad n=7"
    assert not err.retryable
    outcome = asyncio.run(sandbox.run_python(script, {}, sandbox.Limits(), backend=backend))
    assert outcome.kind == "error"
    assert outcome.stderr.startswith("Traceback (most recent call last):\n")
    assert 'File "<script>", line 2, in f' in outcome.stderr
    assert "<string>" not in outcome.stderr  # the runner's own frame is left out
    assert str(jobs_dir) not in outcome.stderr
    syntax = fails("ScriptError", script="def f(:\n")
    assert "SyntaxError" in str(syntax)
    assert "line 1" in str(syntax)


def test_result_that_is_not_json_is_a_bad_result(backend: str, jobs_dir: Path) -> None:
    """A set (or NaN) cannot become the step's output."""
    err = fails("BadResult", script="result = {1, 2}")
    assert "not JSON" in str(err)
    assert "set" in str(err)
    fails("BadResult", script="result = float('nan')")


# -- isolation -------------------------------------------------------------------------------


def test_no_network_even_to_a_loopback_server_of_the_host(
    backend: str, jobs_dir: Path, http_server
) -> None:
    """A server the host reaches on 127.0.0.1 is out of reach from inside the sandbox."""
    port = int(http_server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass  # the host can connect: the server is really there
    script = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=5)\n"
    err = fails("ScriptError", script=script)
    assert any(
        word in str(err)
        for word in ("ConnectionRefusedError", "Network is unreachable", "OSError", "timed out")
    ), str(err)
    err = fails("ScriptError", script="import socket\nsocket.getaddrinfo('example.com', 80)\n")
    assert "gaierror" in str(err)
    assert http_server.requests == []


def test_cannot_read_a_host_file_outside_the_scratch_dir(
    tmp_path: Path, backend: str, jobs_dir: Path
) -> None:
    """A file the test created on the host does not exist for the script."""
    secret = tmp_path / "host-secret.txt"
    secret.write_text("host only")
    err = fails("ScriptError", script=f"print(open({str(secret)!r}).read())")
    assert "FileNotFoundError" in str(err) or "PermissionError" in str(err)
    assert "host only" not in str(err)


def test_filesystem_is_read_only_outside_scratch(backend: str, jobs_dir: Path) -> None:
    """/etc/shadow cannot be read; /, /usr and /usr/lib cannot be written."""
    script = (
        "attempts = {}\n"
        "for path in ['/etc/shadow', '/etc/passwd', '/root/.bashrc']:\n"
        "    try:\n"
        "        open(path).read()\n"
        "        attempts[path] = 'read'\n"
        "    except OSError as exc:\n"
        "        attempts[path] = type(exc).__name__\n"
        "for path in ['/amos-escape', '/usr/amos-escape', '/usr/lib/amos-escape',\n"
        "             '/amos/in/script.py']:\n"
        "    try:\n"
        "        open(path, 'w').write('x')\n"
        "        attempts[path] = 'written'\n"
        "    except OSError as exc:\n"
        "        attempts[path] = type(exc).__name__\n"
        "result = attempts\n"
    )
    attempts = run_action(script=script)["result"]
    assert set(attempts) == {
        "/etc/shadow",
        "/etc/passwd",
        "/root/.bashrc",
        "/amos-escape",
        "/usr/amos-escape",
        "/usr/lib/amos-escape",
        "/amos/in/script.py",
    }
    assert not {"read", "written"} & set(attempts.values()), attempts
    for path in ("/amos-escape", "/usr/amos-escape", "/usr/lib/amos-escape"):
        assert not Path(path).exists()


def test_scratch_dir_is_writable_and_deleted_afterwards(backend: str, jobs_dir: Path) -> None:
    """The script can write and read back files in its scratch dir (cwd and HOME)."""
    script = (
        "import os, pathlib\n"
        "pathlib.Path('notes.txt').write_text('kept ' + str(inputs))\n"
        "os.makedirs('sub/dir')\n"
        "pathlib.Path(os.environ['HOME'], 'sub/dir/x.bin').write_bytes(b'0' * 1000)\n"
        "result = {'cwd': os.getcwd(), 'home': os.environ['HOME'],\n"
        "          'notes': open('/scratch/notes.txt').read(),\n"
        "          'size': os.path.getsize('sub/dir/x.bin'), 'uid': os.getuid()}\n"
    )
    result = run_action(script=script, inputs=7)["result"]
    assert result == {
        "cwd": "/scratch",
        "home": "/scratch",
        "notes": "kept 7",
        "size": 1000,
        "uid": result["uid"],
    }
    assert result["uid"] != 0
    assert list(jobs_dir.iterdir()) == []


def test_environment_is_scrubbed(
    backend: str, jobs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A secret in the worker's environment (AMOS_*) is invisible to the script."""
    monkeypatch.setenv("AMOS_SECRET_CANARY", CANARY)
    output = run_action(script="import os\nresult = dict(os.environ)\n")
    env = output["result"]
    assert not [key for key in env if key.startswith("AMOS_")]
    assert CANARY not in str(output)
    assert set(env) <= {"PATH", "LANG", "HOME", "PWD", "LC_CTYPE"}
    assert env["HOME"] == "/scratch"


# -- limits ----------------------------------------------------------------------------------


def test_memory_limit(backend: str, jobs_dir: Path) -> None:
    """Allocating more than memory_mb fails with MemoryLimit; less than it works."""
    big = "x = bytearray(256 * 1024 * 1024)\nresult = len(x)\n"
    err = fails("MemoryLimit", script=big, memory_mb=64)
    assert "64 MiB" in str(err)
    small = "x = bytearray(16 * 1024 * 1024)\nresult = len(x)\n"
    assert run_action(script=small, memory_mb=128)["result"] == 16 * 1024 * 1024


def test_wall_clock_timeout(backend: str, jobs_dir: Path) -> None:
    """A busy loop is stopped at the timeout (CPU limit far away), in bounded time."""
    started = time.monotonic()
    err = fails("Timeout", script="while True:\n    pass\n", timeout="2s", cpu_seconds=600)
    assert time.monotonic() - started < 20
    assert "2s" in str(err)
    fails("Timeout", script="import time\ntime.sleep(600)\n", timeout="1s")
    assert list(jobs_dir.iterdir()) == []


def test_cpu_limit(backend: str, jobs_dir: Path) -> None:
    """A busy loop with a 1 CPU-second budget and a far timeout fails with CpuLimit."""
    started = time.monotonic()
    err = fails("CpuLimit", script="while True:\n    pass\n", timeout="60s", cpu_seconds=1)
    assert time.monotonic() - started < 30
    assert "1 CPU seconds" in str(err)


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, UnicodeDecodeError):
            continue
        if text in cmdline:
            found.append(cmdline)
    return found


def test_cancelling_a_run_kills_the_sandbox_and_deletes_its_files(
    backend: str, jobs_dir: Path
) -> None:
    """An activity cancelled mid-run leaves no sandbox process and no job directory."""

    async def cancel_midway() -> None:
        task = asyncio.create_task(
            sandbox.run_python("import time\ntime.sleep(600)\n", {}, sandbox.Limits(timeout_s=600))
        )
        await asyncio.sleep(1.5)
        assert _processes_mentioning(str(jobs_dir))  # the backend is running
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_midway())
    assert _processes_mentioning(str(jobs_dir)) == []
    assert list(jobs_dir.iterdir()) == []


# -- selection and reporting -----------------------------------------------------------------


def test_unknown_backend_name_is_sandbox_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    """AMOS_SANDBOX accepts auto, gvisor and bubblewrap only."""
    monkeypatch.setenv(sandbox.SANDBOX_ENV, "docker")
    err = fails("SandboxUnavailable", script="result = 1")
    assert "auto, gvisor or bubblewrap" in str(err)
    assert not err.retryable


def test_missing_backend_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the asked-for backend's program is absent, the error says so, without retry."""
    monkeypatch.setitem(sandbox._BINARIES, "gvisor", "amos-no-such-runsc")
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv(sandbox.SANDBOX_ENV, "gvisor")
    sandbox.probe.cache_clear()
    try:
        err = fails("SandboxUnavailable", script="result = 1")
    finally:
        sandbox.probe.cache_clear()
    assert "amos-no-such-runsc is not installed" in str(err)


def test_auto_prefers_gvisor(monkeypatch: pytest.MonkeyPatch) -> None:
    """With both working, auto picks gVisor; with only bubblewrap, bubblewrap."""
    expected = (
        "gvisor"
        if sandbox.backend_binary("gvisor") and sandbox.probe("gvisor") is None
        else "bubblewrap"
    )
    monkeypatch.delenv(sandbox.SANDBOX_ENV, raising=False)
    assert sandbox.detect_backend() == expected


# -- through the engine ----------------------------------------------------------------------


def _step(script: str, **with_: Any) -> dict[str, Any]:
    return {
        "id": "calc",
        "type": "action",
        "action": "code.python",
        "with": {"script": script, **with_},
        "retry": {"max_attempts": 2, "backoff": "50ms"},
    }


@pytest.mark.temporal
def test_flow_runs_code_python_on_temporal(backend: str, settings: EngineSettings) -> None:
    """A flow passes its inputs to the script and uses the script's result downstream."""
    script = "result = {'doubled': [x * 2 for x in inputs['xs']], 'count': len(inputs['xs'])}"
    doc = flow(
        _step(script, inputs={"xs": "${inputs.xs}"}, timeout="30s"),
        {"id": "after", "type": "set", "values": {"n": "${steps.calc.output.result.count + 1}"}},
        outputs={
            "calc": "${steps.calc.output.result}",
            "n": "${vars.n}",
            "ms": "${steps.calc.output.duration_ms >= 0}",
        },
        requires={"capabilities": ["sandbox"]},
    )
    result = asyncio.run(run_flow(settings, doc, {"xs": [1, 2, 3]}))
    assert result["status"] == "completed", result["error"]
    assert result["output"] == {"calc": {"doubled": [2, 4, 6], "count": 3}, "n": 4, "ms": True}


@pytest.mark.temporal
def test_flow_script_error_is_redacted(
    backend: str, settings: EngineSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A secret passed in as input and echoed by the raising script is masked in the error."""
    monkeypatch.setenv("AMOS_SECRET_API_TOKEN", CANARY)
    doc = flow(
        _step(
            "raise RuntimeError('token was ' + inputs['token'])",
            inputs={"token": "${secrets.api.token}"},
        ),
        requires={"secrets": ["api.token"]},
    )
    result = asyncio.run(run_flow(settings, doc, {}))
    assert result["status"] == "failed"
    assert result["error"]["type"] == "ScriptError"
    assert result["error"]["step"] == "calc"
    assert result["error"]["message"].endswith("RuntimeError: token was ***")
    assert CANARY not in str(result)
