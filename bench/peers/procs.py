"""A process and everything it started: CPU time and resident memory of the whole tree, from /proc.

Each product is measured as the tree under the process a user starts (`amos up`, `n8n start`),
so helpers (Temporal, NATS, the API, task runners) count as much as the main process does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name, or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rsplit(")", 1)[1].split()


def tree(root: int) -> list[int]:
    """``root`` and all its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


@dataclass(frozen=True)
class Usage:
    """CPU seconds used so far and resident bytes now, summed over a process tree."""

    cpu_s: float
    rss_bytes: int
    processes: int


def usage(root: int) -> Usage:
    """The tree's CPU time (user + system, including reaped children) and its resident set."""
    cpu, rss, count = 0.0, 0, 0
    for pid in tree(root):
        fields = _stat(pid)
        if fields is None:
            continue
        # utime, stime, cutime, cstime: children that already exited still count.
        cpu += sum(int(f) for f in fields[11:15]) / _TICKS
        rss += int(fields[21]) * _PAGE
        count += 1
    return Usage(cpu, rss, count)
