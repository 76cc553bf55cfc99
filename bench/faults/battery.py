"""The long fault battery and soak: `amos up` under a thousand faults for about an hour.

The same harness as the short battery (``tests/faults/test_node_battery.py``): `amos up` and
its children as real processes, a remote runner behind a proxy, the store behind one on
PostgreSQL, the mixed workload through the public API, faults drawn from a seed. It stops
after ``--faults`` faults or ``--minutes`` minutes, whichever comes first, heals everything,
and has the checker read the history. Meanwhile a soak samples, once a minute, the node's
resident memory (summed over its processes), its open files and its database's size, so a
leak shows as growth beyond what the workload's own data explains.

    .venv/bin/python bench/faults/battery.py --faults 1000 --minutes 60 --store sqlite

Exit status 0 when the checker found nothing and no run failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # for tests.faults

from tests.faults.harness import Faults
from tests.faults.node import Node, start_node
from tests.faults.workload import run_battery
from tests.scenarios.test_runners import SideEffects
from tests.support.postgres import PostgresServer

SAMPLE_EVERY_S = 60.0


@dataclass
class Sample:
    """One minute of the soak."""

    minute: float
    rss_mb: float
    open_files: int
    processes: int
    db_mb: float
    side_effects: int


def _rss_kb(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _open_files(pid: int) -> int:
    try:
        return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return 0


def _db_bytes(node: Node) -> int:
    """The store's size: the SQLite file and its journal, or PostgreSQL's database size."""
    if node.store_url.startswith("sqlite"):
        path = Path(node.store_url.removeprefix("sqlite:///"))
        files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
        return sum(p.stat().st_size for p in files if p.exists())
    engine = sqlalchemy.create_engine(node.store_url)
    try:
        with engine.connect() as conn:
            size = conn.execute(sqlalchemy.text("SELECT pg_database_size(current_database())"))
            return int(size.scalar_one())
    finally:
        engine.dispose()


class Soak:
    """Samples the node once a minute, called between faults."""

    def __init__(self, node: Node, target: SideEffects) -> None:
        self.node, self.target = node, target
        self.began = time.monotonic()
        self.samples: list[Sample] = []
        self._next = self.began

    def tick(self, *, now_or_never: bool = False) -> None:
        """Take a sample when a minute has passed since the last one (or now, if told)."""
        now = time.monotonic()
        if now < self._next and not now_or_never:
            return
        self._next = now + SAMPLE_EVERY_S
        pids = self.node.pids()
        with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError, OSError):
            db = _db_bytes(self.node)
            with self.target.lock:
                done = len(self.target.done)
            self.samples.append(
                Sample(
                    minute=(now - self.began) / 60,
                    rss_mb=sum(_rss_kb(p) for p in pids) / 1024,
                    open_files=sum(_open_files(p) for p in pids),
                    processes=len(pids),
                    db_mb=db / 2**20,
                    side_effects=done,
                )
            )
            print(f"soak {self.samples[-1]}", flush=True)

    def report(self) -> str:
        """The samples and their growth from the first to the last."""
        lines = ["soak (every minute): minute rss_MB open_files processes db_MB side_effects"]
        lines += [
            f"  {s.minute:6.1f} {s.rss_mb:8.1f} {s.open_files:6d} {s.processes:4d} "
            f"{s.db_mb:8.2f} {s.side_effects:7d}"
            for s in self.samples
        ]
        if len(self.samples) > 1:
            first, last = self.samples[0], self.samples[-1]
            effects = max(1, last.side_effects - first.side_effects)
            lines.append(
                f"  growth: rss {last.rss_mb - first.rss_mb:+.1f} MB, open files "
                f"{last.open_files - first.open_files:+d}, db {last.db_mb - first.db_mb:+.2f} MB "
                f"({(last.db_mb - first.db_mb) * 1024 / effects:.2f} KB per side effect)"
            )
        return "\n".join(lines)


def main() -> int:
    """Run the battery, print its report, exit 1 on any finding or failed run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", type=int, default=1000, help="faults to inject")
    parser.add_argument("--minutes", type=float, default=60.0, help="at most this long")
    parser.add_argument("--seed", type=int, default=16, help="the fault schedule's seed")
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--every", type=float, default=2.0, help="seconds between run starts")
    parser.add_argument("--dir", type=Path, default=None, help="where the node lives")
    args = parser.parse_args()
    if args.faults < 1 or args.minutes <= 0:
        parser.error("--faults must be at least 1 and --minutes above 0")
    directory = args.dir or Path(tempfile.mkdtemp(prefix="amos-battery-"))
    directory.mkdir(parents=True, exist_ok=True)
    print(f"battery: seed {args.seed}, store {args.store}, in {directory}", flush=True)
    postgres = PostgresServer().start() if args.store == "postgresql" else None
    target = SideEffects()
    faults = Faults(seed=args.seed)
    try:
        database_url = postgres.create_database() if postgres else None
        node = start_node(directory, faults, database_url=database_url)
        soak = Soak(node, target)
        try:
            outcome = run_battery(
                node,
                target,
                seed=args.seed,
                faults=args.faults,
                minutes=args.minutes,
                every=args.every,
                tick=soak.tick,
            )
            soak.tick(now_or_never=True)
        except AssertionError as err:
            # The node did not come back whole, or runs did not end: that is the finding.
            print(f"battery stopped: {err}")
            print(soak.report())
            return 1
        finally:
            node.stop()
    finally:
        target.stop()
        if postgres is not None:
            postgres.stop()
    print(outcome.report())
    print(soak.report())
    return 0 if outcome.findings.ok and not outcome.failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
