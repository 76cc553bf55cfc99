"""Audit trail throughput: appends/s with 1 and 8 writers, verify records/s, SQLite and PostgreSQL.

Each append is its own transaction (as in the product, where it rides on the change it
records). PostgreSQL is a throw-away local server started from tests/support/postgres.py,
with fsync off; SQLite runs in WAL mode with synchronous=NORMAL, as the store configures it.

    .venv/bin/python bench/audit.py [--appends 2000] [--verify 100000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.support

from tests.support.postgres import PostgresServer

from amosflow import audit
from amosflow.store import Store, open_store

DETAILS = {"flow": "invoice", "version": "3f2a9c1", "inputs": {"amount": 1250, "currency": "EUR"}}


def _append_one(store: Store, writer: int, n: int) -> None:
    with store.session() as session:
        audit.append(
            session,
            actor=f"user:w{writer}",
            action="runs.start",
            resource=f"run:{n}",
            details=DETAILS,
        )


def appends_per_second(store: Store, writers: int, total: int) -> float:
    """Time ``total`` appends, one per transaction, spread over ``writers`` threads."""
    each = total // writers
    barrier = threading.Barrier(writers + 1)

    def work(writer: int) -> None:
        barrier.wait()
        for n in range(each):
            _append_one(store, writer, n)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return each * writers / (time.perf_counter() - started)


def verify_per_second(store: Store, records: int) -> float:
    """Fill the chain to ``records`` in large transactions, then time one full verify."""
    with store.session(read_only=True) as session:
        have = audit.query(session, limit=1).items
    start = have[0].seq if have else 0
    batch = 5000
    for first in range(start, records, batch):
        with store.session() as session:
            for n in range(first, min(first + batch, records)):
                audit.append(
                    session, actor="user:bulk", action="flows.update", resource=f"flow:{n}",
                    details=DETAILS,
                )  # fmt: skip
    started = time.perf_counter()
    report = audit.verify(store, sink=None, public_key=None)
    elapsed = time.perf_counter() - started
    if not report.ok or report.checked != records:
        raise SystemExit(f"verify failed during the benchmark: {report}")
    return records / elapsed


def measure(name: str, url: str, appends: int, records: int) -> list[tuple[str, str, float]]:
    """All three measurements on one fresh database."""
    store = open_store(url)
    try:
        return [
            (name, "append, 1 writer (tx/s)", appends_per_second(store, 1, appends)),
            (name, "append, 8 writers (tx/s)", appends_per_second(store, 8, appends)),
            (name, "verify (records/s)", verify_per_second(store, records)),
        ]
    finally:
        store.dispose()


def main() -> None:
    """Run the benchmark on SQLite and on a throw-away PostgreSQL, and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=2000, help="appends per writer setting")
    parser.add_argument("--verify", type=int, default=100_000, help="records to verify")
    args = parser.parse_args()
    rows: list[tuple[str, str, float]] = []
    with tempfile.TemporaryDirectory(prefix="amos-bench-audit-") as tmp:
        rows += measure("sqlite", f"sqlite:///{Path(tmp) / 'audit.db'}", args.appends, args.verify)
    server = PostgresServer().start()
    try:
        rows += measure("postgresql", server.create_database(), args.appends, args.verify)
    finally:
        server.stop()
    print(f"{'backend':<12} {'measure':<28} {'rate':>10}")
    for backend, what, rate in rows:
        print(f"{backend:<12} {what:<28} {rate:>10,.0f}")


if __name__ == "__main__":
    main()
