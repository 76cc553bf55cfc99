"""The short whole-node battery: `amos up` under 50 faults from a fixed seed, on both stores.

`amos up` runs as a real process with all its children (Temporal, NATS, the API with the
flow worker and the runner endpoint, the audit checkpointer, the local runner), plus a remote
runner whose link to the endpoint goes through a proxy, and on PostgreSQL the store's link
too. A mixed workload (``workload.py``) runs through the public API while the schedule drawn
from ``SEED`` SIGKILLs, pauses, partitions and slows them; then every fault is healed and
the checker reads the history. The seed and every fault are in each failure message.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.harness import Faults
from tests.faults.node import start_node
from tests.faults.workload import run_battery
from tests.scenarios.test_runners import SideEffects
from tests.support.postgres import PostgresServer

pytestmark = [pytest.mark.slow]
SEED = 1616
FAULTS = 50


@pytest.fixture
def target() -> Iterator[SideEffects]:
    service = SideEffects()
    try:
        yield service
    finally:
        service.stop()


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_the_node_loses_and_doubles_nothing_under_fifty_faults(
    store: str, tmp_path: Path, target: SideEffects, request: pytest.FixtureRequest
) -> None:
    """Every run ends, each completed run did each side effect once, the checker finds nothing."""
    faults = Faults(seed=SEED)
    database_url = None
    if store == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        database_url = server.create_database()
    node = start_node(tmp_path, faults, database_url=database_url)
    try:
        outcome = run_battery(node, target, seed=SEED, faults=FAULTS, every=2.0)
    finally:
        node.stop()
    report = f"{outcome.report()}\n[{faults}]"
    assert sum(outcome.faults.values()) >= FAULTS, report
    assert outcome.findings.ok, report
    assert not outcome.failed, report
    assert outcome.runs["completed"] > 0, report
