"""``code.python``: run an untrusted Python script once, in a fresh sandbox.

The script gets the sandbox's world (see ``_world``) with the interpreter started with
``-I -S -B``, the script read-only at ``/amos/in``, the result directory ``/amos/out`` and a
scratch directory ``/scratch`` (both writable, both deleted afterwards) and an environment of
``PATH``, ``LANG`` and ``HOME=/scratch``. A small runner sets hard resource limits (address
space, CPU seconds, file size, processes, no core files) and then runs the script. The wall
clock is enforced from outside: the sandbox's process group is killed on expiry.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from amosflow.sandbox._world import (
    _BINARIES,
    BACKENDS,
    MIB,
    SANDBOX_ENV,
    SANDBOX_GID,
    SANDBOX_UID,
    SCRATCH,
    Backend,
    Job,
    Mount,
    SandboxError,
    SandboxUnavailableError,
    as_root,
    backend_binary,
    bwrap_argv,
    gvisor_argv,
)

Kind = Literal["ok", "error", "timeout", "memory", "cpu", "bad_result"]
MAX_FILE_BYTES = 1024 * MIB  # RLIMIT_FSIZE: no single file above 1 GiB
MAX_PROCESSES = 256  # RLIMIT_NPROC
MAX_RESULT_BYTES = 16 * MIB
RESULT_FILE = "result.json"
STARTED_FILE = "started"
KILL_GRACE_S = 5.0
PROBE_TIMEOUT_S = 60.0

# Paths inside the sandbox.
IN_DIR = "/amos/in"
OUT_DIR = "/amos/out"
SYSTEM_PYTHON = Path("/usr/bin/python3")
SANDBOX_ENVIRONMENT = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": SCRATCH}

_log = logging.getLogger(__name__)

# The program the sandboxed interpreter runs (with ``-c``). It reads the inputs from stdin,
# compiles the script, sets hard limits the script cannot raise, runs it as ``__main__``
# and writes one JSON document to /amos/out/result.json. Keep it compatible with any
# Python 3.8+, since the interpreter may be the system's.
RUNNER = r"""
import errno, io, json, os, resource, sys, traceback

IN, OUT = "/amos/in", "/amos/out"


def _finish(text, code):
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    tmp = OUT + "/.result.tmp"
    with open(tmp, "w", encoding="ascii") as handle:
        handle.write(text)
    os.replace(tmp, OUT + "/result.json")
    os._exit(code)


def _describe(exc):
    kind = type(exc)
    name = kind.__qualname__
    if kind.__module__ not in ("builtins", "__main__"):
        name = kind.__module__ + "." + name
    try:
        text = str(exc)
    except BaseException:
        text = ""
    if isinstance(exc, SyntaxError) and exc.lineno:
        text = "%s (line %d)" % (exc.msg, exc.lineno)
    return name + (": " + text if text else "")


def _failed(status, message):
    return json.dumps({"status": status, "error": message[:4000]})


def _main():
    os.umask(0o077)  # what the script writes is its own, like the job directory around it
    memory, cpu, fsize, nproc, max_result = (int(arg) for arg in sys.argv[1:6])
    open(OUT + "/started", "w").close()
    raw = sys.stdin.buffer.read().decode("utf-8")
    inputs = json.loads(raw)
    sys.stdin = io.StringIO(raw)
    with open(IN + "/script.py", "rb") as handle:
        source = handle.read()
    try:
        code = compile(source, "<script>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:
        traceback.print_exception(type(exc), exc, None)
        _finish(_failed("error", _describe(exc)), 1)
    del raw, source
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    sys.argv = ["<script>"]
    scope = {"__name__": "__main__", "__builtins__": __builtins__, "inputs": inputs}
    del inputs
    try:
        exec(code, scope)
    except SystemExit as exc:
        if exc.code not in (None, 0):
            _finish(_failed("error", "SystemExit: %s" % (exc.code,)), 1)
    except MemoryError:
        scope.clear()
        _finish('{"status": "memory"}', 1)
    except BaseException as exc:
        if isinstance(exc, OSError) and exc.errno == errno.ENOMEM:
            scope.clear()
            _finish('{"status": "memory"}', 1)
        tb = exc.__traceback__
        traceback.print_exception(type(exc), exc, tb.tb_next if tb is not None else None)
        _finish(_failed("error", _describe(exc)), 1)
    try:
        data = json.dumps(scope.get("result"), allow_nan=False)
    except MemoryError:
        scope.clear()
        _finish('{"status": "memory"}', 1)
    except BaseException as exc:
        _finish(_failed("bad_result", "result is not JSON: " + _describe(exc)), 1)
    if len(data) > max_result:
        message = "result is %d bytes of JSON, more than %d" % (len(data), max_result)
        _finish(_failed("bad_result", message), 1)
    _finish('{"status": "ok", "result": ' + data + "}", 0)


_main()
"""


@dataclass(frozen=True)
class Limits:
    """What one run may use."""

    timeout_s: float = 30.0
    memory_mb: int = 256
    cpu_seconds: int = 30
    output_bytes: int = 64 * 1024


@dataclass(frozen=True)
class Outcome:
    """How a run ended: ``kind`` says which way, ``message`` says why when it failed."""

    kind: Kind
    result: Any
    stdout: str
    stderr: str
    duration_ms: int
    message: str
    backend: Backend


def _interpreter() -> tuple[str, str | None]:
    """The Python the sandbox runs and the directory to mount for it (None: under /usr)."""
    if SYSTEM_PYTHON.exists():
        return str(SYSTEM_PYTHON), None
    base = Path(sys.base_prefix)
    exe = base / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    return str(exe), (None if base.is_relative_to("/usr") else str(base))


@dataclass(frozen=True)
class _ScriptJob:
    """A job directory holding the script (``in``), the result (``out``) and ``scratch``."""

    job: Job

    @property
    def in_dir(self) -> Path:
        return self.job.root / "in"

    @property
    def out_dir(self) -> Path:
        return self.job.root / "out"

    @property
    def scratch(self) -> Path:
        return self.job.root / "scratch"

    @classmethod
    def create(cls, backend: Backend, script: str) -> _ScriptJob:
        job = Job.create(backend)
        try:
            job.directory("in", sandbox=True)
            source = script.encode("utf-8", errors="surrogatepass")
            job.file(job.root / "in" / "script.py", source, sandbox=True)
            job.directory("out", sandbox=True)
            job.directory("scratch", sandbox=True)
        except BaseException:
            job.remove()
            raise
        return cls(job)

    def mounts(self) -> list[Mount]:
        _, prefix = _interpreter()
        interpreter = [Mount(Path(prefix), prefix)] if prefix is not None else []
        return [
            *interpreter,
            Mount(self.in_dir, IN_DIR),
            Mount(self.out_dir, OUT_DIR, writable=True),
            Mount(self.scratch, SCRATCH, writable=True),
        ]

    def remove(self) -> None:
        self.job.remove()


def _runner_argv(limits: Limits) -> list[str]:
    python, _ = _interpreter()
    return [
        python,
        "-I",
        "-S",
        "-B",
        "-c",
        RUNNER,
        str(limits.memory_mb * MIB),
        str(max(1, limits.cpu_seconds)),
        str(MAX_FILE_BYTES),
        str(MAX_PROCESSES),
        str(MAX_RESULT_BYTES),
    ]


@dataclass(frozen=True)
class _Launch:
    argv: list[str]
    env: dict[str, str]
    user: int | None
    group: int | None
    extra_groups: list[int] | None


def _launch(backend: Backend, job: _ScriptJob, limits: Limits) -> _Launch:
    binary = backend_binary(backend)
    if binary is None:
        raise SandboxUnavailableError(f"{_BINARIES[backend]} is not installed")
    argv, env = _runner_argv(limits), SANDBOX_ENVIRONMENT
    if backend == "gvisor":
        if not as_root():
            raise SandboxUnavailableError("gVisor's runsc needs a worker running as root")
        # runsc itself sees only PATH; the sandboxed process gets the spec's environment.
        line = gvisor_argv(binary, job.job, job.mounts(), argv, env, cwd=SCRATCH)
        return _Launch(line, {"PATH": "/usr/bin:/bin"}, None, None, None)
    line = bwrap_argv(binary, job.mounts(), argv, env, cwd=SCRATCH)
    if as_root():  # the user namespace then maps to nobody, not to host root
        return _Launch(line, {"PATH": "/usr/bin:/bin"}, SANDBOX_UID, SANDBOX_GID, [])
    return _Launch(line, {"PATH": "/usr/bin:/bin"}, None, None, None)


def _decode(data: bytes, total: int) -> str:
    text = data.decode("utf-8", "replace")
    if total > len(data):
        text += f"\n[truncated: {total} bytes, the first {len(data)} kept]"
    return text


def _read_result(job: _ScriptJob) -> dict[str, Any] | None:
    """The runner's result document, read without following links the script may plant."""
    path = job.out_dir / RESULT_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_RESULT_BYTES + 4096:
            return None
        data = handle.read(MAX_RESULT_BYTES + 4096)
    try:
        document = json.loads(data)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _signal_of(returncode: int) -> int | None:
    """The signal that ended the sandboxed interpreter, from the backend's exit status."""
    if returncode < 0:
        return -returncode
    if returncode > 128:  # noqa: PLR2004 - both backends report a signal as 128 + number
        return returncode - 128
    return None


def _memory_message(limits: Limits) -> str:
    return f"the script needed more than {limits.memory_mb} MiB"


def _from_document(document: dict[str, Any], limits: Limits) -> tuple[Kind, str, Any]:
    """Kind, message and result from the runner's result document."""
    status = document.get("status")
    if status == "ok":
        return "ok", "", document.get("result")
    if status == "memory":
        return "memory", _memory_message(limits), None
    if status == "bad_result":
        return "bad_result", str(document.get("error", "result is not JSON")), None
    return "error", str(document.get("error", "the script failed")), None


def _from_exit(returncode: int, stderr: str, limits: Limits) -> tuple[Kind, str]:
    """Kind and message when the interpreter ended without writing a result."""
    sig = _signal_of(returncode)
    if sig in (signal.SIGXCPU, signal.SIGKILL):  # the soft, then the hard RLIMIT_CPU
        return "cpu", f"the script used more than {limits.cpu_seconds} CPU seconds"
    if "MemoryError" in stderr[-2000:]:
        return "memory", _memory_message(limits)
    if sig is not None:
        name = signal.Signals(sig).name if sig in signal.valid_signals() else str(sig)
        return "error", f"the script's interpreter was killed by {name}"
    return "error", f"the script's interpreter exited with status {returncode}"


def _check_started(backend: Backend, job: _ScriptJob, returncode: int, stderr: str) -> None:
    """Raise SandboxError when the runner never started: the backend itself failed."""
    if (job.out_dir / STARTED_FILE).exists():
        return
    _log.warning("%s sandbox failed to start (status %s): %s", backend, returncode, stderr)
    lines = [line for line in job.job.scrub(stderr).splitlines() if line]
    raise SandboxError(
        f"the {backend} sandbox failed to start (exit status {returncode})",
        lines[-1][:500] if lines else "",
    )


def _outcome(
    backend: Backend,
    job: _ScriptJob,
    *,
    returncode: int,
    timed_out: bool,
    stdout: str,
    stderr: str,
    duration_ms: int,
    limits: Limits,
) -> Outcome:
    """How the run ended: our timeout first, then the runner's document, then the exit."""
    result: Any = None
    kind: Kind
    if timed_out:
        kind, message = "timeout", f"the script ran longer than {limits.timeout_s:g}s"
    elif (document := _read_result(job)) is not None:
        kind, message, result = _from_document(document, limits)
    else:
        _check_started(backend, job, returncode, stderr)
        kind, message = _from_exit(returncode, stderr, limits)
    return Outcome(kind, result, stdout, stderr, duration_ms, message, backend)


async def _read_capped(stream: asyncio.StreamReader | None, cap: int) -> tuple[bytes, int]:
    """Read a stream to its end, keeping the first ``cap`` bytes; also return the total."""
    if stream is None:
        return b"", 0
    kept = bytearray()
    total = 0
    while chunk := await stream.read(64 * 1024):
        total += len(chunk)
        if len(kept) < cap:
            kept += chunk[: cap - len(kept)]
    return bytes(kept), total


async def _feed(stream: asyncio.StreamWriter | None, data: bytes) -> None:
    if stream is None:
        return
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stream.write(data)
        await stream.drain()
        stream.close()
        await stream.wait_closed()


def _kill_group(process: asyncio.subprocess.Process | subprocess.Popen[bytes]) -> None:
    """Kill the backend's whole process group; the sandbox dies with it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


async def run_python(
    script: str, inputs: Any, limits: Limits, *, backend: Backend | None = None
) -> Outcome:
    """Run ``script`` with ``inputs`` in a fresh sandbox and return how it ended.

    Raises:
        SandboxUnavailableError: no backend works (or the chosen one does not).
        SandboxError: the sandbox broke before the script could run.
    """
    chosen = backend if backend is not None else await asyncio.to_thread(detect_backend)
    payload = json.dumps(inputs, allow_nan=False).encode()
    job = await asyncio.to_thread(_ScriptJob.create, chosen, script)
    try:
        launch = _launch(chosen, job, limits)
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            *launch.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=launch.env,
            start_new_session=True,
            user=launch.user,
            group=launch.group,
            extra_groups=launch.extra_groups,
        )
        readers = (
            asyncio.create_task(_read_capped(process.stdout, limits.output_bytes)),
            asyncio.create_task(_read_capped(process.stderr, limits.output_bytes)),
        )
        feeder = asyncio.create_task(_feed(process.stdin, payload))
        timed_out = False
        try:
            try:
                async with asyncio.timeout(limits.timeout_s):
                    await process.wait()
            except TimeoutError:
                timed_out = True
                _kill_group(process)
                await process.wait()
            duration_ms = int((time.monotonic() - started) * 1000)
            done, _ = await asyncio.wait((*readers, feeder), timeout=KILL_GRACE_S)
            (out, out_total), (err, err_total) = (
                task.result() if task in done else (b"", 0) for task in readers
            )
        finally:
            if process.returncode is None:  # cancelled: leave nothing running
                _kill_group(process)
                await asyncio.shield(process.wait())
            for task in (*readers, feeder):
                task.cancel()
        return _outcome(
            chosen,
            job,
            returncode=process.returncode if process.returncode is not None else -9,
            timed_out=timed_out,
            stdout=_decode(out, out_total),
            stderr=_decode(err, err_total),
            duration_ms=duration_ms,
            limits=limits,
        )
    finally:
        await asyncio.to_thread(job.remove)


def _run_sync(backend: Backend, script: str, inputs: Any, limits: Limits) -> Outcome:
    """The blocking twin of run_python, for the probe (no event loop needed)."""
    job = _ScriptJob.create(backend, script)
    try:
        launch = _launch(backend, job, limits)
        started = time.monotonic()
        with subprocess.Popen(  # noqa: S603 - argv built here, never from a shell
            launch.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=launch.env,
            start_new_session=True,
            user=launch.user,
            group=launch.group,
            extra_groups=launch.extra_groups,
        ) as process:
            try:
                out, err = process.communicate(json.dumps(inputs).encode(), limits.timeout_s)
                timed_out = False
            except subprocess.TimeoutExpired:
                _kill_group(process)
                out, err = process.communicate()
                timed_out = True
        return _outcome(
            backend,
            job,
            returncode=process.returncode,
            timed_out=timed_out,
            stdout=_decode(out[: limits.output_bytes], len(out)),
            stderr=_decode(err[: limits.output_bytes], len(err)),
            duration_ms=int((time.monotonic() - started) * 1000),
            limits=limits,
        )
    finally:
        job.remove()


def _probe_problem(outcome: Outcome) -> str | None:
    if outcome.kind != "ok":
        return f"the probe script ended with {outcome.kind}: {outcome.message}"
    if not isinstance(outcome.result, list) or outcome.result[0] != 42:  # noqa: PLR2004
        return "the probe script returned a wrong result"
    if outcome.result[1] == 0:
        return "the sandboxed process ran as root"
    return None


@functools.cache
def probe(backend: Backend) -> str | None:
    """Run a trivial script in ``backend``; None when it works, else why not (cached)."""
    if backend_binary(backend) is None:
        return f"{_BINARIES[backend]} is not installed"
    script = "import os\nresult = [inputs + 1, os.getuid()]\n"
    limits = Limits(timeout_s=PROBE_TIMEOUT_S, memory_mb=256, cpu_seconds=30)
    try:
        outcome = _run_sync(backend, script, 41, limits)
    except SandboxError as err:
        return f"{err}: {err.detail}" if err.detail else str(err)
    except SandboxUnavailableError as err:
        return str(err)
    except OSError as err:
        return f"could not start {_BINARIES[backend]}: {err.strerror or type(err).__name__}"
    return _probe_problem(outcome)


def detect_backend() -> Backend:
    """The backend ``AMOS_SANDBOX`` asks for (``auto``: gVisor, else bubblewrap) that works.

    Raises:
        SandboxUnavailableError: the asked-for backend, or every backend for ``auto``, fails
            its probe; the message says why for each.
    """
    mode = os.environ.get(SANDBOX_ENV, "").strip().lower() or "auto"
    if mode == "auto":
        order = BACKENDS
    elif mode in BACKENDS:
        order = tuple(backend for backend in BACKENDS if backend == mode)
    else:
        raise SandboxUnavailableError(
            f"{SANDBOX_ENV} must be auto, gvisor or bubblewrap, not {mode!r}"
        )
    reasons: list[str] = []
    for backend in order:
        problem = probe(backend)
        if problem is None:
            return backend
        reasons.append(f"{backend}: {problem}")
    raise SandboxUnavailableError("no working sandbox (" + "; ".join(reasons) + ")")
