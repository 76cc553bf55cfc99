"""The checker over a battery's recorded history: what happened, read from where it is kept.

It reads the target server's log of side effects (every idempotency key it performed), the
node's run index, the audit trail and the node's files, and names each promise that was
broken:
- every started run ended (completed, failed with a clear error, or waits on a person);
- no side effect happened twice for one idempotency key, nor under a key no run owns;
- every completed run's side effects happened, once each;
- the audit chain verifies, and records every run's start and the end of every ended run;
- no secret canary appears in the node's logs, stores or histories.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amosflow import audit
from amosflow.store import AuditRow, open_store
from tests.faults import history

TERMINAL = {"completed", "failed", "cancelled", "timed_out"}


@dataclass
class Findings:
    """What the checker found broken; empty when every promise held."""

    violations: list[str] = field(default_factory=list)

    def add(self, what: str) -> None:
        """Record one broken promise."""
        self.violations.append(what)

    @property
    def ok(self) -> bool:
        """Whether nothing was broken."""
        return not self.violations

    def __str__(self) -> str:
        return "; ".join(self.violations) or "no violations"


def check(
    runs: Iterable[Mapping[str, Any]],
    performed: Counter[str],
    requested: Iterable[str],
    steps: Iterable[str],
    store_url: str,
) -> Findings:
    """Check the history of ``runs`` (the API's run resources) against the target's log.

    ``performed`` counts how often the target performed each idempotency key, ``requested``
    is every key it was called with (a retry repeats its key; a new key would be a second
    side effect); ``steps`` are the step ids of the flow whose keys (``run/step/0``) a
    completed run must have performed.
    """
    step_ids = list(steps)
    return check_history(
        runs,
        performed,
        requested,
        lambda run: {f"{run['run_id']}/{s}/0" for s in step_ids},
        store_url,
    )


def check_history(  # noqa: PLR0917 - each is one source of the history
    runs: Iterable[Mapping[str, Any]],
    performed: Counter[str],
    requested: Iterable[str],
    expected: Callable[[Mapping[str, Any]], set[str]],
    store_url: str,
    waiting: Iterable[str] = (),
    canary: str | None = None,
    files: Iterable[Path] = (),
    home: Path | None = None,
) -> Findings:
    """Check a mixed workload's history: ``expected(run)`` names a completed run's keys.

    ``waiting`` are runs with an open human task (a legitimate place to stay); ``canary`` is
    a secret value that must not appear in any of ``files`` (every file under each given
    directory is read: logs, the store, Temporal's and NATS's state); ``home`` is the node's,
    whose signed checkpoints the audit chain is verified against.
    """
    findings = Findings()
    runs = list(runs)
    waiting = set(waiting)
    owned = {r["run_id"]: expected(r) for r in runs}
    every_key = set().union(*owned.values()) if owned else set()
    for key, times in sorted(performed.items()):
        if times > 1:
            findings.add(f"side effect {key} happened {times} times")
    for key in sorted(set(requested) - every_key):
        findings.add(f"side effect under an unexpected key {key!r} (a retry changed its key?)")
    for run in runs:
        _check_end(findings, run, owned[run["run_id"]], performed, waiting)
    ended = [r["run_id"] for r in runs if r["status"] in TERMINAL]
    _check_audit(findings, [r["run_id"] for r in runs], ended, store_url, home)
    if canary:
        _check_canary(findings, canary, files)
    return findings


def _check_end(
    findings: Findings,
    run: Mapping[str, Any],
    keys: set[str],
    performed: Counter[str],
    waiting: set[str],
) -> None:
    """A run ended (or waits on a person); a completed one did each of its ``keys`` once."""
    run_id, status = run["run_id"], run["status"]
    if status not in TERMINAL:
        if run_id not in waiting:
            findings.add(f"run {run_id} did not end ({status})")
    elif status == "completed":
        missing = sorted(k for k in keys if performed[k] != 1)
        if missing:
            findings.add(f"run {run_id} completed without its side effects {missing}")
    elif not (run.get("error") or {}).get("message"):
        findings.add(f"run {run_id} ended {status} without a clear error")


def _check_canary(findings: Findings, canary: str, places: Iterable[Path]) -> None:
    """Name every file that holds ``canary`` in the clear."""
    needle = canary.encode()
    for place in places:
        paths = [place] if place.is_file() else sorted(p for p in place.rglob("*") if p.is_file())
        for path in paths:
            try:
                content = path.read_bytes()
            except OSError:
                continue  # a socket, or a file removed meanwhile
            if needle in content:
                findings.add(f"secret canary in the clear in {path.name} ({path.parent.name}/)")


def _check_audit(
    findings: Findings,
    run_ids: list[str],
    ended: list[str] | None,
    store_url: str,
    home: Path | None = None,
) -> None:
    sink, key = None, None
    if home is not None:
        # The node's checkpoints and their public key, as `amos audit verify` reads them.
        settings = audit.AuditSettings(home=home)
        sink = audit.JsonlSink(settings.sink_path)
        if settings.public_key_path.exists():
            key = audit.load_public_key(settings.public_key_path)
    store = open_store(store_url)
    try:
        report = audit.verify(store, sink=sink, public_key=key)
        if not report.ok:
            findings.add(f"audit chain broken at seq {report.first_bad_seq}: {report.problem}")
        with store.session(read_only=True) as session:
            recorded = {
                (row.action, row.resource)
                for row in session.query(AuditRow).filter(
                    AuditRow.action.in_(["runs.start", "runs.end"])
                )
            }
    finally:
        store.dispose()
    ends = set(run_ids if ended is None else ended)
    for run_id in run_ids:
        for action in ("runs.start", "runs.end"):
            if action == "runs.end" and run_id not in ends:
                continue  # still waiting on a person: its end is not due
            if (action, f"runs/{run_id}") not in recorded:
                findings.add(f"no {action} audit record for run {run_id}")


def check_node_stores(  # noqa: PLR0917 - where each store of the node answers
    findings: Findings,
    temporal_address: str,
    nats_url: str,
    home: Path,
    run_ids: Iterable[str],
    store_url: str,
    canary: str,
    files: Iterable[Path] = (),
) -> None:
    """Add what the readers of ``history`` find in a live node's own stores.

    Temporal histories (every run ended or waits legitimately, no activity completed twice
    for one key), leases (no job had two holders), the event stream read as a durable
    consumer (no event twice under different ids), and the canary in the store's tables,
    files and decoded Temporal histories.
    """
    run_ids = list(run_ids)
    for found in (
        history.temporal_histories(temporal_address, home, run_ids, store_url=store_url),
        history.leases(store_url),
        history.durable_consumer(nats_url),
        history.secret_canaries(
            [canary],
            store_url=store_url,
            paths=files,
            temporal=(temporal_address, home, run_ids),
        ),
    ):
        for what in found:
            findings.add(what)
