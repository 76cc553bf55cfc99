"""The short whole-node battery: `amos up` under 50 faults from a fixed seed, on both stores.

`amos up` runs as a real process with all its children (Temporal, NATS, the API with the
flow worker and the runner endpoint, the audit checkpointer, the local runner), plus a remote
runner whose link to the endpoint goes through a proxy, and on PostgreSQL the store's link
too. A mixed workload (``workload.py``) runs through the public API while the schedule drawn
from ``SEED`` SIGKILLs, pauses, partitions and slows them; then every fault is healed and
the checker reads the history. The seed and every fault are in each failure message.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.faults.checker import check_history
from tests.faults.harness import Faults
from tests.faults.node import start_node
from tests.faults.workload import expected_keys, run_battery
from tests.scenarios.test_runners import SideEffects
from tests.support.postgres import PostgresServer

SEED = 1616
FAULTS = 50


@pytest.mark.slow
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


def test_the_checker_names_each_broken_promise_of_the_mixed_workload(tmp_path: Path) -> None:
    """A planted history breaks each promise once; the checker names every one, and no more."""
    leaf = {"run_id": "r-leaf", "flow": "mix-leaf", "status": "completed"}
    main = {"run_id": "r-main", "flow": "mix-main", "status": "completed"}
    stuck = {"run_id": "r-stuck", "flow": "mix-human", "status": "running"}
    asking = {"run_id": "r-asking", "flow": "mix-human", "status": "running"}
    silent = {"run_id": "r-silent", "flow": "mix-leaf", "status": "failed", "error": None}
    performed = Counter({"r-leaf/leaf/0": 2, "r-main/a/0": 1, "r-asking/before/0": 1})
    requested = [*performed, "r-leaf/leaf/1"]
    store_url = f"sqlite:///{tmp_path / 'amos.db'}"
    runs = [leaf, main, stuck, asking, silent]
    findings = check_history(
        runs, performed, requested, expected_keys, store_url, waiting={"r-asking"}
    )
    found = str(findings)
    assert "side effect r-leaf/leaf/0 happened 2 times" in found
    assert "unexpected key 'r-leaf/leaf/1'" in found
    assert "run r-main completed without its side effects ['r-main/each/0'" in found
    assert "run r-stuck did not end (running)" in found
    assert "r-asking did not end" not in found
    assert "run r-silent ended failed without a clear error" in found
    assert "no runs.start audit record for run r-asking" in found
    assert "no runs.end audit record for run r-asking" not in found  # it waits on a person
    assert "no runs.end audit record for run r-leaf" in found
