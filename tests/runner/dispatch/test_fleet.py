"""The fleet's use cases, each in a transaction of its own: enroll, list, drain, revoke, tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from amosflow.config import RunnerSettings
from amosflow.errors import AuthenticationError
from amosflow.runner.agent import generate_runner_key, make_csr
from amosflow.runner.dispatch import (
    acquire,
    drain_runner,
    enqueue,
    enroll_with_token,
    fleet,
    issue_enrollment_token,
    revoke_runner,
)
from amosflow.store import Store
from tests.runner.dispatch.conftest import T0, TTL, add_runner, at, audit_rows, new_job


def test_the_fleet_shows_each_runner_with_the_jobs_it_holds_now(store: Store) -> None:
    """A live lease is listed with its runner; an expired one is not; a zone filters."""
    with store.session() as session:
        add_runner(session, "r-b", zone="dc1")
        add_runner(session, "r-a", zone="dmz")
        enqueue(session, new_job("j1"), now=T0)
        lease = acquire(session, "r-b", capabilities=["core"], zone="dc1", now=at(1), ttl=TTL)
        assert lease is not None
    listed = fleet(store, now=at(2))
    assert [(e.name, e.jobs) for e in listed] == [("r-a", []), ("r-b", ["j1"])]
    assert [e.name for e in fleet(store, now=at(2), zone="dmz")] == ["r-a"]
    assert fleet(store, now=at(1) + TTL)[1].jobs == []


def test_drain_and_revoke_answer_the_runner_as_it_is_now(store: Store) -> None:
    """Each change is its own audited transaction and returns the runner's new state."""
    with store.session() as session:
        add_runner(session, "r-1")
    drained = drain_runner(store, "r-1", actor="user:ops", now=at(1))
    assert (drained.id, drained.status, drained.jobs) == ("r-1", "draining", [])
    revoked = revoke_runner(store, "r-1", actor="user:ops", now=at(2))
    assert (revoked.status, revoked.revoked_at) == ("revoked", at(2))
    with store.session(read_only=True) as session:
        assert [r.action for r in audit_rows(session, "runners.drain")] == ["runners.drain"]
        assert [r.action for r in audit_rows(session, "runners.revoke")] == ["runners.revoke"]


def test_a_token_enrolls_once_and_a_refusal_is_audited(store: Store, tmp_path: Path) -> None:
    """The second use of a token is refused, and the refusal names reason and address only."""
    settings = RunnerSettings(home=tmp_path)
    now = datetime.now(UTC)
    token = issue_enrollment_token(
        store,
        zone="dc1",
        capabilities=["http"],
        created_by="user:ops",
        ttl=timedelta(hours=1),
        now=now,
    )

    def enroll(name: str) -> object:
        return enroll_with_token(
            store,
            settings,
            token=token,
            csr_pem=make_csr(generate_runner_key(), name).decode(),
            name=name,
            address="10.0.0.7",
            now=now,
        )

    enroll("edge-1")
    with pytest.raises(AuthenticationError):
        enroll("edge-2")
    assert [e.name for e in fleet(store, now=now)] == ["edge-1"]
    with store.session(read_only=True) as session:
        denied = [r for r in audit_rows(session, "runners.enroll") if r.outcome == "denied"]
    assert [(r.actor, r.details) for r in denied] == [
        ("anonymous", {"reason": "used", "address": "10.0.0.7"})
    ]
    assert token not in str(denied[0].details)
