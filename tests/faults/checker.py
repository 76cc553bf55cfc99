"""The checker over a battery's recorded history: what happened, read from where it is kept.

It reads the target server's log of side effects (every idempotency key it performed), the
node's run index, and the audit trail, and names each promise that was broken:
- every started run ended (completed, or failed with a clear error);
- no side effect happened twice for one idempotency key;
- every completed run's side effects happened, once each;
- the audit chain verifies, and records every run's start and end.
It grows with the battery (leases, durable consumers, secret canaries).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from amosflow import audit
from amosflow.store import AuditRow, open_store

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
    findings = Findings()
    runs = list(runs)
    step_ids = list(steps)
    expected = {f"{r['run_id']}/{s}/0" for r in runs for s in step_ids}
    for key, times in performed.items():
        if times > 1:
            findings.add(f"side effect {key} happened {times} times")
    for key in sorted(set(requested) - expected):
        findings.add(f"side effect under an unexpected key {key!r} (a retry changed its key?)")
    for run in runs:
        run_id, status = run["run_id"], run["status"]
        if status not in TERMINAL:
            findings.add(f"run {run_id} did not end ({status})")
        elif status == "completed":
            missing = [s for s in step_ids if performed[f"{run_id}/{s}/0"] != 1]
            if missing:
                findings.add(f"run {run_id} completed without its side effects {missing}")
        elif not (run.get("error") or {}).get("message"):
            findings.add(f"run {run_id} ended {status} without a clear error")
    _check_audit(findings, [r["run_id"] for r in runs], store_url)
    return findings


def _check_audit(findings: Findings, run_ids: list[str], store_url: str) -> None:
    store = open_store(store_url)
    try:
        report = audit.verify(store, sink=None, public_key=None)
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
    for run_id in run_ids:
        for action in ("runs.start", "runs.end"):
            if (action, f"runs/{run_id}") not in recorded:
                findings.add(f"no {action} audit record for run {run_id}")
