"""Run an untrusted Python script in a sandbox: gVisor (``runsc``) first, bubblewrap second.

Both backends give the script the same world (docs/decisions/0025-code-sandbox.md):

* no network: gVisor's ``--network=none`` or bubblewrap's empty network namespace, each
  with nothing but its own loopback;
* an unprivileged user (uid 65534 when the worker runs as root, else the worker's own uid
  inside a user namespace) with no capabilities;
* a read-only root made of ``/usr`` (and the ``/bin``, ``/lib*`` links), the interpreter's
  install, a small ``/tmp`` tmpfs, ``/proc``, ``/dev``, the script at ``/amos/in`` (read-only),
  the result directory ``/amos/out`` and a fresh scratch directory ``/scratch`` (both
  writable, both deleted afterwards); nothing else of the host's filesystem;
* an environment of ``PATH``, ``LANG`` and ``HOME=/scratch`` only;
* the interpreter started with ``-I -S -B``; a small runner sets hard resource limits
  (address space, CPU seconds, file size, processes, no core files) and then runs the script.

The wall clock is enforced from outside: the sandbox's process group is killed on expiry.
The backend is picked by ``AMOS_SANDBOX`` (``auto``, ``gvisor`` or ``bubblewrap``); each one
is probed once per process with a trivial script before it is trusted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from amosflow.errors import AmosError

__all__ = [
    "BACKENDS",
    "SANDBOX_ENV",
    "Backend",
    "Limits",
    "Outcome",
    "SandboxError",
    "SandboxUnavailableError",
    "backend_binary",
    "detect_backend",
    "probe",
    "run_python",
]

Backend = Literal["gvisor", "bubblewrap"]
Kind = Literal["ok", "error", "timeout", "memory", "cpu", "bad_result"]
BACKENDS: tuple[Backend, ...] = ("gvisor", "bubblewrap")
SANDBOX_ENV = "AMOS_SANDBOX"
SANDBOX_UID = 65534  # nobody
SANDBOX_GID = 65534  # nogroup
MIB = 1024 * 1024
MAX_FILE_BYTES = 1024 * MIB  # RLIMIT_FSIZE: no single file above 1 GiB
MAX_PROCESSES = 256  # RLIMIT_NPROC
MAX_RESULT_BYTES = 16 * MIB
TMP_TMPFS_MB = 64
RESULT_FILE = "result.json"
STARTED_FILE = "started"
KILL_GRACE_S = 5.0
PROBE_TIMEOUT_S = 60.0

# Paths inside the sandbox.
SCRATCH = "/scratch"
TMP = "/tmp"  # noqa: S108 - the sandbox's own small tmpfs, not the host's /tmp
IN_DIR = "/amos/in"
OUT_DIR = "/amos/out"
SYSTEM_PYTHON = Path("/usr/bin/python3")
SANDBOX_ENVIRONMENT = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": SCRATCH}
_ROOT_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_BINARIES: dict[Backend, str] = {"gvisor": "runsc", "bubblewrap": "bwrap"}
# gVisor's ptrace platform needs neither KVM nor a recent runsc; it works in containers.
RUNSC_FLAGS = ("--network=none", "--platform=ptrace")

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


class SandboxUnavailableError(AmosError):
    """No sandbox backend works on this machine (or the one asked for does not)."""

    code = "amos.sandbox.unavailable"


class SandboxError(AmosError):
    """The sandbox itself failed (not the script): it did not start or it broke.

    ``detail`` is the backend's last line of complaint, host paths replaced, for operators.
    """

    code = "amos.sandbox"

    def __init__(self, message: str, detail: str = "") -> None:
        self.detail = detail
        super().__init__(message)


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


def backend_binary(backend: Backend) -> str | None:
    """The path of the backend's program (``runsc`` or ``bwrap``), or None if absent."""
    name = _BINARIES[backend]
    found = shutil.which(name)
    if found is None:
        for folder in ("/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"):
            candidate = Path(folder) / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    return found


def _interpreter() -> tuple[str, str | None]:
    """The Python the sandbox runs and the directory to mount for it (None: under /usr)."""
    if SYSTEM_PYTHON.exists():
        return str(SYSTEM_PYTHON), None
    base = Path(sys.base_prefix)
    exe = base / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    return str(exe), (None if base.is_relative_to("/usr") else str(base))


def _root_layout() -> tuple[list[tuple[str, str]], list[str]]:
    """The host's ``/bin``-style links as (target, path) and the directories to mount."""
    links: list[tuple[str, str]] = []
    binds = ["/usr"]
    for name in _ROOT_LINKS:
        path = Path("/") / name
        if path.is_symlink():
            links.append((str(path.readlink()), str(path)))
        elif path.is_dir():
            binds.append(str(path))
    _, prefix = _interpreter()
    if prefix is not None:
        binds.append(prefix)
    return links, binds


def _drop_to_nobody() -> bool:
    """Whether the sandbox must be started as uid 65534 (the worker runs as root)."""
    return os.geteuid() == 0


@dataclass(frozen=True)
class _Job:
    """The host directory of one run: script, result, scratch and the backend's state."""

    root: Path

    @property
    def in_dir(self) -> Path:
        return self.root / "in"

    @property
    def out_dir(self) -> Path:
        return self.root / "out"

    @property
    def scratch(self) -> Path:
        return self.root / "scratch"

    @property
    def bundle(self) -> Path:
        return self.root / "bundle"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @classmethod
    def create(cls, script: str) -> _Job:
        root = Path(tempfile.mkdtemp(prefix="amos-sandbox-"))
        job = cls(root)
        # Traversable but not listable: an unprivileged bwrap must reach the mount sources.
        root.chmod(0o711)
        job.in_dir.mkdir(mode=0o755)
        job.in_dir.chmod(0o755)
        script_file = job.in_dir / "script.py"
        script_file.write_text(script, encoding="utf-8", errors="surrogatepass")
        script_file.chmod(0o644)
        for private in (job.out_dir, job.scratch):
            private.mkdir(mode=0o700)
            if _drop_to_nobody():
                os.chown(private, SANDBOX_UID, SANDBOX_GID)
        return job

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


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


@functools.cache
def _bwrap_supports(binary: str, option: str) -> bool:
    """Whether this bubblewrap knows ``option`` (``--disable-userns`` came in 0.8)."""
    try:
        shown = subprocess.run(  # noqa: S603 - a fixed argv
            [binary, "--help"], capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return option.encode() in shown.stdout + shown.stderr


def _bwrap_argv(binary: str, job: _Job, limits: Limits) -> list[str]:
    links, binds = _root_layout()
    argv = [binary, "--unshare-all", "--unshare-user", "--unshare-net"]
    if _bwrap_supports(binary, "--disable-userns"):  # no nested user namespaces
        argv.append("--disable-userns")
    argv += ["--die-with-parent", "--new-session", "--cap-drop", "ALL", "--hostname", "sandbox"]
    for path in binds:
        argv += ["--ro-bind", path, path]
    for target, path in links:
        argv += ["--symlink", target, path]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    argv += ["--size", str(TMP_TMPFS_MB * MIB), "--tmpfs", TMP]
    argv += ["--ro-bind", str(job.in_dir), IN_DIR]
    argv += ["--bind", str(job.out_dir), OUT_DIR, "--bind", str(job.scratch), SCRATCH]
    argv += ["--chdir", SCRATCH, "--remount-ro", "/", "--", *_runner_argv(limits)]
    return argv


def _oci_spec(job: _Job, limits: Limits) -> dict[str, Any]:
    links, binds = _root_layout()
    rootfs = job.bundle / "rootfs"
    for target, path in links:
        (rootfs / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (rootfs / path.lstrip("/")).symlink_to(target)
    for path in (*binds, "/proc", "/dev", TMP, IN_DIR, OUT_DIR, SCRATCH):
        (rootfs / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["mode=755"]},
        {
            "destination": TMP,
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "nodev", "mode=1777", f"size={TMP_TMPFS_MB}m"],
        },
    ]
    mounts += [
        {"destination": path, "type": "bind", "source": path, "options": ["rbind", "ro"]}
        for path in binds
    ]
    for source, destination, mode in (
        (job.in_dir, IN_DIR, "ro"),
        (job.out_dir, OUT_DIR, "rw"),
        (job.scratch, SCRATCH, "rw"),
    ):
        mounts.append(
            {
                "destination": destination,
                "type": "bind",
                "source": str(source),
                "options": ["rbind", mode, "nosuid", "nodev"],
            }
        )
    no_caps: list[str] = []
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": SANDBOX_UID, "gid": SANDBOX_GID},
            "args": _runner_argv(limits),
            "env": [f"{key}={value}" for key, value in SANDBOX_ENVIRONMENT.items()],
            "cwd": SCRATCH,
            "capabilities": {
                "bounding": no_caps,
                "effective": no_caps,
                "inheritable": no_caps,
                "permitted": no_caps,
                "ambient": no_caps,
            },
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "sandbox",
        "mounts": mounts,
        "linux": {
            "namespaces": [{"type": kind} for kind in ("pid", "network", "ipc", "uts", "mount")],
        },
    }


def _gvisor_argv(binary: str, job: _Job, limits: Limits) -> list[str]:
    job.bundle.mkdir(mode=0o700)
    job.state.mkdir(mode=0o700)
    spec = _oci_spec(job, limits)
    (job.bundle / "config.json").write_text(json.dumps(spec), encoding="utf-8")
    container = "amos-" + secrets.token_hex(8)
    return [binary, f"--root={job.state}", *RUNSC_FLAGS, "run", f"--bundle={job.bundle}", container]


@dataclass(frozen=True)
class _Launch:
    argv: list[str]
    env: dict[str, str]
    user: int | None
    group: int | None
    extra_groups: list[int] | None


def _launch(backend: Backend, job: _Job, limits: Limits) -> _Launch:
    binary = backend_binary(backend)
    if binary is None:
        raise SandboxUnavailableError(f"{_BINARIES[backend]} is not installed")
    if backend == "gvisor":
        if os.geteuid() != 0:
            raise SandboxUnavailableError("gVisor's runsc needs a worker running as root")
        # runsc itself sees only PATH; the sandboxed process gets the spec's environment.
        return _Launch(
            _gvisor_argv(binary, job, limits), {"PATH": "/usr/bin:/bin"}, None, None, None
        )
    argv = _bwrap_argv(binary, job, limits)
    if _drop_to_nobody():
        return _Launch(argv, dict(SANDBOX_ENVIRONMENT), SANDBOX_UID, SANDBOX_GID, [])
    return _Launch(argv, dict(SANDBOX_ENVIRONMENT), None, None, None)


def _decode(data: bytes, total: int) -> str:
    text = data.decode("utf-8", "replace")
    if total > len(data):
        text += f"\n[truncated: {total} bytes, the first {len(data)} kept]"
    return text


def _read_result(job: _Job) -> dict[str, Any] | None:
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


def _check_started(backend: Backend, job: _Job, returncode: int, stderr: str) -> None:
    """Raise SandboxError when the runner never started: the backend itself failed."""
    if (job.out_dir / STARTED_FILE).exists():
        return
    _log.warning("%s sandbox failed to start (status %s): %s", backend, returncode, stderr)
    lines = [line for line in stderr.replace(str(job.root), "<job>").splitlines() if line]
    raise SandboxError(
        f"the {backend} sandbox failed to start (exit status {returncode})",
        lines[-1][:500] if lines else "",
    )


def _outcome(
    backend: Backend,
    job: _Job,
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
    job = await asyncio.to_thread(_Job.create, script)
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
    job = _Job.create(script)
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
    raise SandboxUnavailableError("no working sandbox for code.python (" + "; ".join(reasons) + ")")
