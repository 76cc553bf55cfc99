"""Leases as a state machine: several runners with skewed clocks acquire, renew, complete.

The model predicts every answer of the store (which job an acquisition gets, whether a
renewal or completion is accepted, what a sweep requeues), and after every step the
invariants are checked against the rows:

* at most one valid holder per job: only the latest lease's ``(runner, fence)`` matches;
* fence tokens strictly increase per job, by one per acquisition;
* only the current holder with the current fence, before its lease ran out, completes;
* a completed job is never leased again.

Each runner acts at ``store clock + its skew`` (bounded, fixed per runner, possibly
negative), while the sweep runs on the store clock, which only moves forward.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import delete, func, select

from amosflow.errors import StaleLeaseError
from amosflow.runner.dispatch import (
    Lease,
    RunnerRefused,
    acquire,
    complete_or_deny,
    enqueue,
    expire,
    renew,
    revoke,
)
from amosflow.store import AuditRow, RunnerJobRow, RunnerRow, Store, open_store
from tests.runner.dispatch.conftest import T0, add_runner, new_job

TTL = timedelta(seconds=30)
MAX_SKEW_MS = 5_000
MAX_JOBS = 2
RUNNER_ZONES = {"r0": "a", "r1": "a", "r2": "b"}
#: In creation order, which is the order acquisitions take them.
JOB_ZONES = {"j0": None, "j1": "a", "j2": "b", "j3": None, "j4": "a"}
FINISHED = {"completed", "failed"}


class LeaseMachine(RuleBasedStateMachine):
    """The model of the job table; the store must agree with it after every step."""

    store: ClassVar[Store]

    def __init__(self) -> None:
        super().__init__()
        with self.store.session() as session:
            session.execute(delete(RunnerJobRow))
            session.execute(delete(RunnerRow))
            self.denied_before = self._denied(session)
        self.clock = T0
        self.skew: dict[str, timedelta] = {}
        self.granted: dict[str, list[Lease]] = {job: [] for job in JOB_ZONES}
        self.current: dict[str, Lease | None] = dict.fromkeys(JOB_ZONES)
        self.expires: dict[str, datetime] = {}
        self.finished: dict[str, Lease] = {}
        self.revoked: set[str] = set()
        self.denied = 0

    @staticmethod
    def _denied(session) -> int:
        query = select(func.count()).where(
            AuditRow.action == "runners.complete", AuditRow.outcome == "denied"
        )
        return int(session.scalar(query) or 0)

    @initialize(
        skews=st.lists(
            st.integers(-MAX_SKEW_MS, MAX_SKEW_MS),
            min_size=len(RUNNER_ZONES),
            max_size=len(RUNNER_ZONES),
        )
    )
    def start(self, skews: list[int]) -> None:
        with self.store.session() as session:
            for (runner, zone), skew in zip(RUNNER_ZONES.items(), skews, strict=True):
                self.skew[runner] = timedelta(milliseconds=skew)
                add_runner(session, runner, zone=zone, capabilities=("core",), max_jobs=MAX_JOBS)
            for index, (job, zone) in enumerate(JOB_ZONES.items()):
                enqueue(session, new_job(job, zone=zone), now=T0 + timedelta(seconds=index))
        self.clock = T0 + timedelta(seconds=len(JOB_ZONES))

    # --- the model ------------------------------------------------------------------------

    def now_of(self, runner: str) -> datetime:
        return self.clock + self.skew[runner]

    def live(self, job: str, now: datetime) -> bool:
        """The job is leased (not finished) and its lease has not run out at ``now``."""
        return (
            job not in self.finished and self.current[job] is not None and self.expires[job] > now
        )

    def valid(self, job: str, runner: str, fence: int, now: datetime) -> bool:
        lease = self.current[job]
        return (
            self.live(job, now)
            and lease is not None
            and (lease.runner_id, lease.fence) == (runner, fence)
        )

    def all_leases(self) -> list[Lease]:
        return [lease for leases in self.granted.values() for lease in leases]

    # --- the rules ------------------------------------------------------------------------

    @rule(seconds=st.floats(0, 40, allow_nan=False))
    def advance(self, seconds: float) -> None:
        self.clock += timedelta(seconds=seconds)

    @rule(runner=st.sampled_from(sorted(RUNNER_ZONES)))
    def acquire_job(self, runner: str) -> None:
        now = self.now_of(runner)
        zone = RUNNER_ZONES[runner]
        takeable = [
            job
            for job, job_zone in JOB_ZONES.items()
            if job not in self.finished
            and job_zone in {None, zone}
            and (self.current[job] is None or self.expires[job] <= now)
        ]
        held = sum(
            1
            for job, lease in self.current.items()
            if lease is not None and lease.runner_id == runner and self.live(job, now)
        )
        expected = takeable[0] if takeable and held < MAX_JOBS else None
        with self.store.session() as session:
            if runner in self.revoked:
                with pytest.raises(RunnerRefused):
                    acquire(session, runner, capabilities=["core"], zone=zone, now=now, ttl=TTL)
                return
            lease = acquire(session, runner, capabilities=["core"], zone=zone, now=now, ttl=TTL)
        assert (lease.job_id if lease else None) == expected
        if lease is None:
            return
        previous = self.granted[lease.job_id]
        assert lease.fence == (previous[-1].fence if previous else 0) + 1
        assert lease.expires_at == now + TTL
        previous.append(lease)
        self.current[lease.job_id] = lease
        self.expires[lease.job_id] = lease.expires_at

    @precondition(lambda self: self.all_leases())
    @rule(data=st.data())
    def renew_lease(self, data: st.DataObject) -> None:
        lease = data.draw(st.sampled_from(self.all_leases()))
        now = self.now_of(lease.runner_id)
        expected = self.valid(lease.job_id, lease.runner_id, lease.fence, now)
        with self.store.session() as session:
            if not expected:
                with pytest.raises(StaleLeaseError):
                    renew(
                        session,
                        lease.job_id,
                        runner_id=lease.runner_id,
                        fence=lease.fence,
                        now=now,
                        ttl=TTL,
                    )
                return
            until = renew(
                session,
                lease.job_id,
                runner_id=lease.runner_id,
                fence=lease.fence,
                now=now,
                ttl=TTL,
            )
        assert until == now + TTL
        self.expires[lease.job_id] = until

    @precondition(lambda self: self.all_leases())
    @rule(data=st.data(), reporter=st.sampled_from(sorted(RUNNER_ZONES)), ok=st.booleans())
    def complete_job(self, data: st.DataObject, reporter: str, ok: bool) -> None:
        """A completion by the lease's holder or by an impostor replaying its fence."""
        lease = data.draw(st.sampled_from(self.all_leases()))
        if data.draw(st.booleans()):
            reporter = lease.runner_id
        now = self.now_of(reporter)
        done = self.finished.get(lease.job_id)
        repeat = done is not None and (done.runner_id, done.fence) == (reporter, lease.fence)
        expected = repeat or self.valid(lease.job_id, reporter, lease.fence, now)
        outcome = {"result": {"by": reporter}} if ok else {"error": {"type": "Boom"}}
        if not expected:
            with pytest.raises(StaleLeaseError) as stale:
                complete_or_deny(
                    self.store,
                    lease.job_id,
                    runner_id=reporter,
                    fence=lease.fence,
                    now=now,
                    **outcome,
                )
            assert stale.value.current_fence == len(self.granted[lease.job_id])
            self.denied += 1
            return
        row = complete_or_deny(
            self.store, lease.job_id, runner_id=reporter, fence=lease.fence, now=now, **outcome
        )
        assert row.state in FINISHED
        if not repeat:
            self.finished[lease.job_id] = lease

    @rule()
    def sweep(self) -> None:
        expected = sorted(
            job
            for job, lease in self.current.items()
            if lease is not None and job not in self.finished and self.expires[job] <= self.clock
        )
        with self.store.session() as session:
            assert expire(session, now=self.clock) == expected
        for job in expected:
            self.current[job] = None

    @precondition(lambda self: not self.revoked)
    @rule(runner=st.sampled_from(sorted(RUNNER_ZONES)))
    def revoke_runner(self, runner: str) -> None:
        with self.store.session() as session:
            revoke(session, runner, actor="user:ops", now=self.clock)
        self.revoked.add(runner)
        for job, lease in self.current.items():
            if lease is not None and lease.runner_id == runner and job not in self.finished:
                self.current[job] = None

    # --- the invariants -------------------------------------------------------------------

    @invariant()
    def the_store_agrees_with_the_model(self) -> None:
        if not self.skew:  # before initialisation
            return
        with self.store.session(read_only=True) as session:
            rows = {row.job_id: row for row in session.scalars(select(RunnerJobRow))}
            assert self._denied(session) - self.denied_before == self.denied
        for job, row in rows.items():
            fences = [lease.fence for lease in self.granted[job]]
            # Strictly increasing, by exactly one per acquisition.
            assert fences == list(range(1, len(fences) + 1))
            assert row.fence == len(fences)
            assert row.attempts == len(fences)
            # At most one valid holder: the lease the row names, and no other.
            holders = Counter(
                (lease.runner_id, lease.fence)
                for lease in self.granted[job]
                if row.state == "leased"
                and (lease.runner_id, lease.fence) == (row.runner_id, row.fence)
            )
            assert sum(holders.values()) <= 1
            if job in self.finished:
                # Never leased again once finished: same holder, same fence.
                done = self.finished[job]
                assert row.state in FINISHED
                assert (row.runner_id, row.fence) == (done.runner_id, done.fence)
            elif (lease := self.current[job]) is not None:
                assert row.state == "leased"
                assert (row.runner_id, row.fence) == (lease.runner_id, lease.fence)
                assert row.lease_expires_at == self.expires[job]
            else:
                assert (row.state, row.runner_id, row.lease_expires_at) == ("queued", None, None)


def _run(store: Store, *, max_examples: int) -> None:
    LeaseMachine.store = store
    run_state_machine_as_test(
        LeaseMachine,
        settings=settings(
            max_examples=max_examples,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def test_leases_hold_their_invariants_on_sqlite(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'leases.db'}")
    try:
        _run(store, max_examples=60)
    finally:
        store.dispose()


@pytest.mark.slow
def test_leases_hold_their_invariants_on_postgres(pg_store: Store) -> None:
    _run(pg_store, max_examples=15)
