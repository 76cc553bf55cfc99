"""Run untrusted code in a sandbox: gVisor (``runsc``) first, bubblewrap second.

Contract: ``run_python`` runs one ``code.python`` script in a fresh sandbox and reports how
it ended (decision 0025); ``sandboxed_command`` prepares a fresh sandbox for a long-lived
program that its caller starts with pipes, such as an MCP server over stdio (decision 0045).
Both give what runs the same world: ``/usr`` read-only, only the paths they are given, no
network, an unprivileged user without capabilities, and a private job directory on the host
that is deleted afterwards. The backend is picked by ``AMOS_SANDBOX`` (``auto``, ``gvisor``
or ``bubblewrap``); each one is probed once per process before it is trusted.
"""

from amosflow.sandbox._command import ProgramNotFoundError, SandboxedCommand, sandboxed_command
from amosflow.sandbox._script import (
    Limits,
    Outcome,
    detect_backend,
    probe,
    run_python,
)
from amosflow.sandbox._world import _BINARIES as _BINARIES  # for tests that hide a backend
from amosflow.sandbox._world import (
    BACKENDS,
    SANDBOX_ENV,
    Backend,
    SandboxError,
    SandboxUnavailableError,
    backend_binary,
)

__all__ = [
    "BACKENDS",
    "SANDBOX_ENV",
    "Backend",
    "Limits",
    "Outcome",
    "ProgramNotFoundError",
    "SandboxError",
    "SandboxUnavailableError",
    "SandboxedCommand",
    "backend_binary",
    "detect_backend",
    "probe",
    "run_python",
    "sandboxed_command",
]
