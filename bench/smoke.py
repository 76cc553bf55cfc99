"""A short pass of every benchmark, so none of them can rot unnoticed (`make bench-smoke`).

Each bench runs with its smallest sizes and must exit 0 and print its result table (a line
it always prints last). Nothing here is timed against a target: the numbers of a short pass on
a shared CI machine mean nothing, only that the bench still runs to its end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Bench:
    """One benchmark: its script, the flags of its short pass, and what its output must show."""

    script: str
    args: tuple[str, ...]
    expect: str
    env: dict[str, str] = field(default_factory=dict)


BENCHES = (
    Bench("engine.py", ("--quick",), "interpreter/baseline latency"),
    Bench("temporal_settings.py", ("--quick",), "shipped, product activity wrapper"),
    Bench("api.py", ("--quick",), "API / in-process start latency (p50 ratio)"),
    Bench(
        "dispatch.py",
        (),
        "runner",
        {"BENCH_DISPATCH_SAMPLES": "3", "BENCH_DISPATCH_BURST": "4"},
    ),
    Bench("audit.py", ("--appends", "50", "--verify", "500"), "postgresql"),
    Bench("llm.py", ("--quick",), "ratio of medians"),
    Bench("peers/run.py", ("--quick", "--without-n8n"), "AMOS FLOW / floor"),
    Bench("faults/battery.py", ("--faults", "3", "--minutes", "1.5"), "soak (every minute)"),
    Bench(
        "faults/fuzz.py",
        ("--cases", "200", "--examples", "2", "--without-coverage"),
        "server errors      0",
    ),
)


def run(bench: Bench) -> str | None:
    """Run one bench; return why it failed, or None."""
    command = [sys.executable, str(HERE / bench.script), *bench.args]
    print(f"== {bench.script} {' '.join(bench.args)}", flush=True)
    started = time.monotonic()
    done = subprocess.run(
        command,
        env={**os.environ, **bench.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    print(done.stdout, end="", flush=True)
    print(f"== {bench.script}: exit {done.returncode} in {time.monotonic() - started:.0f} s")
    if done.returncode != 0:
        return f"{bench.script} exited {done.returncode}"
    if bench.expect not in done.stdout:
        return f"{bench.script} ran but never printed {bench.expect!r}"
    return None


def main() -> int:
    """Run every bench in turn; exit 1 naming each one that failed."""
    only = set(sys.argv[1:])
    failures = [f for b in BENCHES if not only or b.script in only if (f := run(b))]
    for failure in failures:
        print(f"bench smoke FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
