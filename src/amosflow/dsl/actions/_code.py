"""The ``code.python`` action: a Python script run in a sandbox with no network."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, ValidationInfo, field_validator

from amosflow.dsl.actions._registry import (
    ActionSpec,
    Duration,
    Expr,
    WithModel,
    bounded_timeout,
    register,
)

MAX_SCRIPT_BYTES = 256 * 1024
MIN_MEMORY_MB = 16
MAX_MEMORY_MB = 4096
MAX_CPU_SECONDS = 600
OUTPUT_CAP_BYTES = 64 * 1024

MemoryMb = Annotated[int, Field(ge=MIN_MEMORY_MB, le=MAX_MEMORY_MB)]
CpuSeconds = Annotated[int, Field(ge=1, le=MAX_CPU_SECONDS)]


class CodePythonWith(WithModel):
    r"""``with`` of ``code.python``: a Python 3 script run in a sandbox.

    Protocol: the script runs as ``__main__`` with a variable ``inputs`` already set to the
    JSON value of ``with.inputs`` (the same JSON is also readable from ``sys.stdin``). Its
    answer is the variable ``result`` when the script ends (``null`` if it never sets one),
    which must be JSON (dict, list, str, int, float, bool or None; no NaN). ``print`` goes to
    the output's ``stdout`` and does not become the result.

    The sandbox (gVisor, else bubblewrap) has no network, an unprivileged user, a read-only
    filesystem with the host's ``/usr`` (system libraries, the Python standard library) and
    nothing else of the host, a writable scratch directory that is the working directory
    and ``HOME`` (``/scratch``, empty at start and deleted after), a small ``/tmp``, and an
    environment of ``PATH``, ``LANG`` and ``HOME`` only. The interpreter runs with ``-I -S``:
    no site-packages. Limits: ``timeout`` (wall clock),
    ``memory_mb`` (address space) and ``cpu_seconds`` (CPU time). The step's own
    ``timeout`` (5m by default) still bounds the whole attempt: raise it for longer scripts.

    Output: ``{"result": …, "stdout": "…", "stderr": "…", "duration_ms": n}``; stdout and
    stderr keep their first 64 KiB. Failures: ``ScriptError`` (the script raised; the
    message is the last traceback line), ``Timeout``, ``MemoryLimit``, ``CpuLimit``,
    ``BadResult`` (``result`` is not JSON) and ``SandboxUnavailable``.

    ``${…}`` in the script is a flow expression, rendered before the script runs; write
    ``\${`` for a literal ``${``. Pass data through ``inputs`` rather than into the text.
    """

    script: str = Field(min_length=1, max_length=MAX_SCRIPT_BYTES)
    inputs: Any = Field(default_factory=dict)
    timeout: Duration = "30s"
    memory_mb: Expr[MemoryMb] = 256
    cpu_seconds: Expr[CpuSeconds] = 30

    @field_validator("script")
    @classmethod
    def _script_size(cls, value: str) -> str:
        size = len(value.encode("utf-8", "surrogatepass"))
        if size > MAX_SCRIPT_BYTES:
            raise ValueError(f"script is {size} bytes of UTF-8, more than {MAX_SCRIPT_BYTES}")
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout_bounds(cls, value: str, info: ValidationInfo) -> str:
        return bounded_timeout(value, info, "10m")


register(
    ActionSpec(
        name="code.python",
        capability="sandbox",
        with_model=CodePythonWith,
        description=(
            "Runs a Python script in a sandbox (no network, read-only filesystem but a scratch"
            " directory, CPU, memory and wall-clock limits); the script reads `inputs` and sets"
            " `result`; returns result, stdout, stderr and duration_ms."
        ),
    )
)
