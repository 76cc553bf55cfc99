"""Audit trail throughput: appends/s with 1 and 8 writers, verify records/s, SQLite and PostgreSQL.

Each append is its own transaction (as in the product, where it rides on the change it
records). PostgreSQL is a throw-away local server started from tests/support/postgres.py
with fsync, synchronous_commit and full_page_writes ON, so every commit waits for its WAL
flush. On it the bench measures, in the same run and on the same database:

- a bare insert of the same row into a table of the same shape, one transaction each: the
  floor, what any durable write costs here;
- the per-append lock (the previous design): the chain's tail read and the insert under an
  advisory lock held until the caller's commit, so commits and their flushes queue;
- group commit (``audit.append``): the record commits unlocked to ``audit_pending`` and
  linking passes shared by the committers chain it before the caller's block returns.

Ratios are against the bare insert. SQLite runs in WAL mode with synchronous=NORMAL, as the
store configures it, where ``append`` links at once (one writer already).

    .venv/bin/python bench/audit.py [--appends 4000] [--verify 100000] [--writers 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.support

from sqlalchemy import text
from tests.support.postgres import PostgresServer

from amosflow import audit
from amosflow.audit._records import append_linked
from amosflow.store import Store, open_store
from amosflow.store._types import utcnow

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.orm import Session

DETAILS = {"flow": "invoice", "version": "3f2a9c1", "inputs": {"amount": 1250, "currency": "EUR"}}
BARE = "bench_bare_insert"
_BARE_INSERT = text(
    f"INSERT INTO {BARE} (at, actor, action, resource, folder, outcome, details) "  # noqa: S608 - constant
    "VALUES (:at, :actor, :action, :resource, 'default', 'ok', CAST(:details AS jsonb))"
)


def group_commit(session: Session, writer: int, n: int) -> None:
    """The product's append."""
    audit.append(
        session, actor=f"user:w{writer}", action="runs.start", resource=f"run:{n}", details=DETAILS
    )


def per_append_lock(session: Session, writer: int, n: int) -> None:
    """The previous design: lock, read the tail, link and insert, all until the commit."""
    append_linked(
        session, actor=f"user:w{writer}", action="runs.start", resource=f"run:{n}", details=DETAILS
    )


def bare_insert(session: Session, writer: int, n: int) -> None:
    """The same row into a table of the same shape, no chain at all: the floor."""
    session.execute(
        _BARE_INSERT,
        {
            "at": utcnow(),
            "actor": f"user:w{writer}",
            "action": "runs.start",
            "resource": f"run:{n}",
            "details": '{"flow": "invoice"}',
        },
    )


def appends_per_second(
    store: Store, writers: int, total: int, write: Callable[[Session, int, int], None]
) -> float:
    """Time ``total`` writes, one per transaction, spread over ``writers`` threads."""
    each = total // writers
    barrier = threading.Barrier(writers + 1)
    errors: list[BaseException] = []

    def work(writer: int) -> None:
        barrier.wait()
        try:
            for n in range(each):
                with store.session() as session:
                    write(session, writer, n)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise SystemExit(f"a writer failed during the benchmark: {errors[0]!r}")
    return each * writers / elapsed


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
    if not report.ok or report.checked != records or report.unlinked:
        raise SystemExit(f"verify failed during the benchmark: {report}")
    return records / elapsed


Row = tuple[str, str, float, Any]


def measure_postgres(url: str, appends: int, writers: int, records: int) -> list[Row]:
    """Floor, previous design and group commit at 1 and ``writers`` writers, then verify."""
    store = open_store(url)
    try:
        with store.session() as session:
            session.execute(text(f"CREATE TABLE {BARE} (LIKE audit_pending INCLUDING ALL)"))
        rows: list[Row] = []
        for count in (1, writers):
            floor = appends_per_second(store, count, appends, bare_insert)
            rows.append(("postgresql", f"bare insert, {count} writer(s)", floor, 1.0))
            for name, write in (
                ("per-append lock", per_append_lock),
                ("group commit", group_commit),
            ):
                rate = appends_per_second(store, count, appends, write)
                rows.append(("postgresql", f"{name}, {count} writer(s)", rate, rate / floor))
        report = audit.verify(store, sink=None, public_key=None)
        if not report.ok or report.unlinked:
            raise SystemExit(f"the chain is not whole after the appends: {report}")
        rows.append(("postgresql", "verify (records/s)", verify_per_second(store, records), None))
        return rows
    finally:
        store.dispose()


def measure_sqlite(url: str, appends: int, writers: int, records: int) -> list[Row]:
    """Appends at 1 and ``writers`` writers (linked at once on SQLite), then verify."""
    store = open_store(url)
    try:
        return [
            (
                "sqlite",
                "append, 1 writer",
                appends_per_second(store, 1, appends, group_commit),
                None,
            ),
            (
                "sqlite",
                f"append, {writers} writers",
                appends_per_second(store, writers, appends, group_commit),
                None,
            ),
            ("sqlite", "verify (records/s)", verify_per_second(store, records), None),
        ]
    finally:
        store.dispose()


def main() -> None:
    """Run the benchmark on SQLite and on a throw-away durable PostgreSQL; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=4000, help="appends per measurement")
    parser.add_argument("--verify", type=int, default=100_000, help="records to verify")
    parser.add_argument("--writers", type=int, default=8, help="concurrent writers")
    args = parser.parse_args()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="amos-bench-audit-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'audit.db'}"
        rows += measure_sqlite(url, args.appends, args.writers, args.verify)
    server = PostgresServer(durable=True).start()
    try:
        url = server.create_database()
        rows += measure_postgres(url, args.appends, args.writers, args.verify)
    finally:
        server.stop()
    print(f"{'backend':<12} {'measure':<34} {'per s':>10} {'÷ bare insert':>14}")
    for backend, what, rate, ratio in rows:
        shown = "" if ratio is None else f"{ratio:.2f}"
        print(f"{backend:<12} {what:<34} {rate:>10,.0f} {shown:>14}")


if __name__ == "__main__":
    main()
