"""Child processes that must not outlive the process that started them."""

from __future__ import annotations

import ctypes
import signal
import sys

_PR_SET_PDEATHSIG = 1
# Resolved in the parent: between fork and exec the child may only make this one plain call.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent() -> None:
    """In a forked child, ask Linux to SIGKILL it when its parent dies (a `preexec_fn`).

    Without this, killing `amos up` or `amos run` with SIGKILL would leave the embedded Temporal
    and NATS servers running on the same files, and the next start would fight them. The
    signal follows the thread that forked the child, so start children from a long-lived thread.
    """
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
