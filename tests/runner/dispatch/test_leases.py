"""Job leases and the runner registry on SQLite and PostgreSQL: choice, fencing, revocation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from amosflow.errors import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    StaleLeaseError,
    ValidationFailedError,
)
from amosflow.runner.dispatch import (
    RunnerRefused,
    acquire,
    complete,
    complete_or_deny,
    drain,
    eligible_runners,
    enqueue,
    expire,
    get_job,
    get_runner,
    heartbeat,
    list_runners,
    no_eligible_runner_message,
    renew,
    resume,
    revoke,
)
from amosflow.store import Store
from tests.runner.dispatch.conftest import (
    HEARTBEAT_TTL,
    T0,
    TTL,
    add_runner,
    at,
    audit_rows,
    new_job,
)


def _ids(rows) -> list[str]:
    return [row.id for row in rows]


def test_stale_lease_error_is_a_conflict_with_its_own_code() -> None:
    err = StaleLeaseError("x", job_id="j", runner_id="r", fence=1, current_fence=2)
    assert isinstance(err, ConflictError)
    assert err.code == "amos.lease.stale"


def test_enqueue_is_idempotent_and_a_finished_job_stays_finished(store: Store) -> None:
    with store.session() as session:
        add_runner(session, "r1")
        first = enqueue(session, new_job("j1"), now=T0)
        assert (first.state, first.fence, first.attempts) == ("queued", 0, 0)
    with store.session() as session:
        again = enqueue(session, new_job("j1").model_copy(update={"payload": {"n": 2}}), now=at(5))
        assert again.payload == {"url": "${secrets.erp_url}", "n": 1}
        assert again.created_at == T0
        assert again.state == "queued"
    with store.session() as session:
        lease = acquire(session, "r1", capabilities=["core"], zone="dc1", now=at(1), ttl=TTL)
        assert lease is not None
        complete(session, "j1", runner_id="r1", fence=lease.fence, now=at(2), result={"ok": 1})
    with store.session() as session:
        retried = enqueue(session, new_job("j1", token=b"token-2"), now=at(10))
        assert retried.state == "completed"
        assert retried.result == {"ok": 1}
        assert retried.fence == 1
        assert retried.task_token == b"token-1"
    with store.session() as session:
        assert (
            acquire(session, "r1", capabilities=["core"], zone="dc1", now=at(11), ttl=TTL) is None
        )


def test_enqueue_gives_an_unfinished_job_the_newest_task_token(store: Store) -> None:
    """Temporal completes one activity attempt; a retried attempt brings a new token."""
    with store.session() as session:
        add_runner(session, "r1")
        enqueue(session, new_job("j1", token=b"attempt-1"), now=T0)
        lease = acquire(session, "r1", capabilities=["core"], zone="dc1", now=at(1), ttl=TTL)
        assert lease is not None
    with store.session() as session:
        row = enqueue(session, new_job("j1", token=b"attempt-2"), now=at(2))
        assert (row.state, row.fence, row.runner_id) == ("leased", 1, "r1")
        assert row.task_token == b"attempt-2"


def test_new_job_validates_capability_and_zone() -> None:
    with pytest.raises(ValidationError, match="unknown capability"):
        new_job("j", capability="teleport")
    with pytest.raises(ValidationError, match="zone name"):
        new_job("j", zone="DC:1")


def test_eligible_runners_least_loaded_first(store: Store) -> None:
    with store.session() as session:
        add_runner(session, "busy", load=3, max_jobs=4)  # 0.75
        add_runner(session, "half", load=1, max_jobs=2)  # 0.5
        add_runner(session, "idle", load=0, max_jobs=1)  # 0
        add_runner(session, "big", load=2, max_jobs=8)  # 0.25
    with store.session(read_only=True) as session:
        found = eligible_runners(
            session, capability="core", zone="dc1", now=at(10), heartbeat_ttl=HEARTBEAT_TTL
        )
        assert _ids(found) == ["idle", "big", "half", "busy"]


def test_eligible_runners_match_zone_capability_status_and_heartbeat(store: Store) -> None:
    with store.session() as session:
        add_runner(session, "dc1-http", zone="dc1", capabilities=("http",))
        add_runner(session, "dc1-browser", zone="dc1", capabilities=("browser", "http"), load=1)
        add_runner(session, "dmz-http", zone="dmz", capabilities=("http",), load=2)
        add_runner(session, "silent", zone="dc1", capabilities=("http",), beat=False)
        add_runner(session, "stale", zone="dc1", capabilities=("http",), now=at(-120))
        add_runner(session, "drained", zone="dc1", capabilities=("http",))
        add_runner(session, "gone", zone="dc1", capabilities=("http",))
        drain(session, "drained", actor="user:ops", now=T0)
        revoke(session, "gone", actor="user:ops", now=T0)

    def eligible(capability: str, zone: str | None) -> list[str]:
        with store.session(read_only=True) as session:
            return _ids(
                eligible_runners(
                    session,
                    capability=capability,
                    zone=zone,
                    now=at(1),
                    heartbeat_ttl=HEARTBEAT_TTL,
                )
            )

    assert eligible("http", "dc1") == ["dc1-http", "dc1-browser"]
    assert eligible("http", None) == ["dc1-http", "dc1-browser", "dmz-http"]
    assert eligible("browser", None) == ["dc1-browser"]
    assert eligible("browser", "dmz") == []
    assert eligible("sql", None) == []


def test_no_eligible_runner_message_names_capability_and_zone() -> None:
    message = no_eligible_runner_message("browser", "dmz")
    assert "'browser'" in message
    assert "zone 'dmz'" in message
    assert "any zone" in no_eligible_runner_message("sql", None)


def test_acquire_takes_the_oldest_job_the_runner_may_take(store: Store) -> None:
    with store.session() as session:
        add_runner(session, "r-dc1", zone="dc1", capabilities=("http",))
        enqueue(session, new_job("browser-any", capability="browser"), now=at(0))
        enqueue(session, new_job("http-dmz", capability="http", zone="dmz"), now=at(1))
        enqueue(session, new_job("http-dc1", capability="http", zone="dc1"), now=at(2))
        enqueue(session, new_job("http-any", capability="http"), now=at(3))
    taken = []
    for second in range(4, 8):
        with store.session() as session:
            lease = acquire(
                session, "r-dc1", capabilities=["http"], zone="dc1", now=at(second), ttl=TTL
            )
            taken.append(None if lease is None else lease.job_id)
    assert taken == ["http-dc1", "http-any", None, None]
    with store.session(read_only=True) as session:
        row = get_job(session, "http-dc1")
        assert (row.state, row.runner_id, row.fence, row.attempts) == ("leased", "r-dc1", 1, 1)
        assert row.lease_expires_at == at(4) + TTL
        assert get_job(session, "http-dmz").state == "queued"


def test_the_lease_carries_the_job(store: Store) -> None:
    with store.session() as session:
        add_runner(session, "r1")
        enqueue(session, new_job("j1", folder="default"), now=T0)
        lease = acquire(session, "r1", capabilities=["core"], zone="dc1", now=at(1), ttl=TTL)
    assert lease is not None
    assert (lease.job_id, lease.runner_id, lease.fence, lease.attempt) == ("j1", "r1", 1, 1)
    assert lease.expires_at == at(31)
    assert (lease.run_id, lease.step, lease.action, lease.capability) == (
        "run-j1",
        "s1",
        "core.do",
        "core",
    )
    assert lease.payload == {"url": "${secrets.erp_url}", "n": 1}


def test_acquire_only_offers_what_the_runner_was_enrolled_for(store: Store) -> None:
    with store.session() as session:
        add_runner(session, "r1", capabilities=("http",))
        enqueue(session, new_job("sql", capability="sql"), now=T0)
        assert (
            acquire(session, "r1", capabilities=["http", "sql"], zone="dc1", now=at(1), ttl=TTL)
            is None
        )


def test_acquire_respects_max_jobs_drain_revoke_and_zone(store: Store) -> None:
    with store.session() as session:
        add_runner(session, "r1", max_jobs=1)
        for index in range(3):
            enqueue(session, new_job(f"j{index}"), now=at(index))
    with store.session() as session:
        assert acquire(session, "r1", capabilities=["core"], zone="dc1", now=at(5), ttl=TTL)
        assert acquire(session, "r1", capabilities=["core"], zone="dc1", now=at(6), ttl=TTL) is None
        with pytest.raises(PermissionDeniedError, match="zone 'dc1'"):
            acquire(session, "r1", capabilities=["core"], zone="dmz", now=at(6), ttl=TTL)
        # Once its lease ran out the runner has room again (and may take its own job back).
        again = acquire(session, "r1", capabilities=["core"], zone="dc1", now=at(40), ttl=TTL)
        assert again is not None
        assert (again.job_id, again.fence) == ("j0", 2)
    with store.session() as session:
        drain(session, "r1", actor="user:ops", now=at(41))
        assert (
            acquire(session, "r1", capabilities=["core"], zone="dc1", now=at(80), ttl=TTL) is None
        )
        resume(session, "r1", actor="user:ops", now=at(81))
        assert acquire(session, "r1", capabilities=["core"], zone="dc1", now=at(82), ttl=TTL)
    with store.session() as session:
        revoke(session, "r1", actor="user:ops", now=at(83))
    with store.session() as session, pytest.raises(RunnerRefused) as refused:
        acquire(session, "r1", capabilities=["core"], zone="dc1", now=at(84), ttl=TTL)
    assert refused.value.reason == "revoked"
    with store.session() as session, pytest.raises(NotFoundError):
        acquire(session, "nobody", capabilities=["core"], zone="dc1", now=at(84), ttl=TTL)


def test_renew_extends_only_the_current_unexpired_lease(store: Store) -> None:
    with store.session() as session:
        add_runner(session, "r1")
        add_runner(session, "r2")
        enqueue(session, new_job("j1"), now=T0)
        lease = acquire(session, "r1", capabilities=["core"], zone="dc1", now=at(1), ttl=TTL)
        assert lease is not None
    with store.session() as session:
        assert renew(session, "j1", runner_id="r1", fence=1, now=at(20), ttl=TTL) == at(50)
    for runner_id, fence, second in (("r2", 1, 21), ("r1", 2, 21), ("r1", 1, 50)):
        with store.session() as session, pytest.raises(StaleLeaseError) as stale:
            renew(session, "j1", runner_id=runner_id, fence=fence, now=at(second), ttl=TTL)
        assert stale.value.current_fence == 1
    with store.session() as session, pytest.raises(StaleLeaseError) as missing:
        renew(session, "nope", runner_id="r1", fence=1, now=at(1), ttl=TTL)
    assert missing.value.current_fence is None


def test_an_expired_lease_goes_to_the_next_runner_with_a_higher_fence(store: Store) -> None:
    with store.session() as session:
        add_runner(session, "r1")
        add_runner(session, "r2")
        enqueue(session, new_job("j1"), now=T0)
        first = acquire(session, "r1", capabilities=["core"], zone="dc1", now=at(1), ttl=TTL)
        assert first is not None
    with store.session() as session:
        # Not yet expired: r2 gets nothing.
        assert (
            acquire(session, "r2", capabilities=["core"], zone="dc1", now=at(30), ttl=TTL) is None
        )
        second = acquire(session, "r2", capabilities=["core"], zone="dc1", now=at(31), ttl=TTL)
        assert second is not None
        assert (second.job_id, second.fence, second.attempt) == ("j1", 2, 2)
    # The first holder wakes up and reports late: refused, whatever its clock says.
    with store.session() as session, pytest.raises(StaleLeaseError):
        complete(session, "j1", runner_id="r1", fence=1, now=at(2), result="late")
    with store.session() as session:
        done = complete(session, "j1", runner_id="r2", fence=2, now=at(40), result="fresh")
        assert (done.state, done.result, done.fence) == ("completed", "fresh", 2)


def test_complete_writes_the_result_and_an_ok_audit_record(store: Store) -> None:
    with store.session() as session:
        add_runner(session, "r1")
        enqueue(session, new_job("good"), now=T0)
        enqueue(session, new_job("bad"), now=at(1))
        for second in (2, 3):
            assert acquire(
                session, "r1", capabilities=["core"], zone="dc1", now=at(second), ttl=TTL
            )
    with store.session() as session:
        done = complete(session, "good", runner_id="r1", fence=1, now=at(4), result={"rows": 3})
        failed = complete(
            session, "bad", runner_id="r1", fence=1, now=at(4), error={"type": "Timeout"}
        )
        assert (done.state, done.result, done.error) == ("completed", {"rows": 3}, None)
        assert (failed.state, failed.result, failed.error) == ("failed", None, {"type": "Timeout"})
        assert done.lease_expires_at is None
    with store.session() as session:
        # A repeated report from the same holder (its answer was lost) changes nothing.
        repeat = complete(session, "good", runner_id="r1", fence=1, now=at(5), result="other")
        assert repeat.result == {"rows": 3}
        records = audit_rows(session, "runners.complete")
        assert [(r.resource, r.outcome, r.actor) for r in records] == [
            ("job:good", "ok", "runner:r1"),
            ("job:bad", "ok", "runner:r1"),
        ]
        assert records[1].details["state"] == "failed"
        assert records[0].details["fence"] == 1
    with store.session() as session, pytest.raises(ValidationFailedError):
        complete(session, "good", runner_id="r1", fence=1, now=at(5), result=1, error={"x": 1})


def test_a_stale_completion_is_audited_as_denied_and_changes_nothing(store: Store) -> None:
    with store.session() as session:
        add_runner(session, "r1")
        add_runner(session, "r2")
        enqueue(session, new_job("j1"), now=T0)
        assert acquire(session, "r1", capabilities=["core"], zone="dc1", now=at(1), ttl=TTL)
        assert acquire(session, "r2", capabilities=["core"], zone="dc1", now=at(40), ttl=TTL)
    with pytest.raises(StaleLeaseError) as stale:
        complete_or_deny(store, "j1", runner_id="r1", fence=1, now=at(41), result="late")
    assert (stale.value.fence, stale.value.current_fence) == (1, 2)
    # A lease that ran out is stale for its own holder too.
    with pytest.raises(StaleLeaseError):
        complete_or_deny(store, "j1", runner_id="r2", fence=2, now=at(70), result="slow")
    with store.session(read_only=True) as session:
        row = get_job(session, "j1")
        assert (row.state, row.runner_id, row.fence, row.result) == ("leased", "r2", 2, None)
        records = audit_rows(session, "runners.complete")
    assert [(r.outcome, r.actor, r.resource) for r in records] == [
        ("denied", "runner:r1", "job:j1"),
        ("denied", "runner:r2", "job:j1"),
    ]
    assert records[0].details == {"job_id": "j1", "runner_id": "r1", "fence": 1, "current_fence": 2}
    assert records[1].details == {"job_id": "j1", "runner_id": "r2", "fence": 2, "current_fence": 2}
    done = complete_or_deny(store, "j1", runner_id="r2", fence=3 - 1, now=at(60), result="ok")
    assert done.state == "completed"


def test_revoke_frees_the_runners_leases_at_once(store: Store) -> None:
    with store.session() as session:
        add_runner(session, "bad")
        add_runner(session, "good")
        enqueue(session, new_job("j1"), now=T0)
        enqueue(session, new_job("j2"), now=at(1))
        for second in (2, 3):
            assert acquire(
                session, "bad", capabilities=["core"], zone="dc1", now=at(second), ttl=TTL
            )
    with store.session() as session:
        revoked = revoke(session, "bad", actor="user:ops", now=at(4))
        assert (revoked.status, revoked.revoked_at) == ("revoked", at(4))
        assert revoke(session, "bad", actor="user:ops", now=at(9)).revoked_at == at(4)
    with store.session() as session:
        # Long before the leases would have run out, the other runner takes both jobs.
        leases = [
            acquire(session, "good", capabilities=["core"], zone="dc1", now=at(5), ttl=TTL)
            for _ in range(2)
        ]
        assert [(lease.job_id, lease.fence) for lease in leases if lease] == [("j1", 2), ("j2", 2)]
    with pytest.raises(StaleLeaseError):
        complete_or_deny(store, "j1", runner_id="bad", fence=1, now=at(6), result="x")
    with store.session() as session, pytest.raises(RunnerRefused) as refused:
        heartbeat(session, "bad", load=0, capabilities=["core"], zone="dc1", now=at(7))
    assert refused.value.reason == "revoked"
    with store.session(read_only=True) as session:
        (record,) = audit_rows(session, "runners.revoke")
        assert record.details["requeued"] == ["j1", "j2"]
        assert record.actor == "user:ops"
    with store.session() as session, pytest.raises(ConflictError):
        drain(session, "bad", actor="user:ops", now=at(8))


def test_expire_requeues_run_out_leases_and_keeps_the_fence(store: Store) -> None:
    with store.session() as session:
        add_runner(session, "r1")
        enqueue(session, new_job("short"), now=T0)
        enqueue(session, new_job("long"), now=at(1))
        assert acquire(session, "r1", capabilities=["core"], zone="dc1", now=at(2), ttl=TTL)
        assert acquire(
            session, "r1", capabilities=["core"], zone="dc1", now=at(2), ttl=timedelta(minutes=5)
        )
    with store.session() as session:
        assert expire(session, now=at(31)) == []
        assert expire(session, now=at(32)) == ["short"]
        assert expire(session, now=at(33)) == []
    with store.session(read_only=True) as session:
        short = get_job(session, "short")
        assert (short.state, short.fence, short.runner_id, short.lease_expires_at) == (
            "queued",
            1,
            None,
            None,
        )
        assert get_job(session, "long").state == "leased"
    with store.session() as session:
        lease = acquire(session, "r1", capabilities=["core"], zone="dc1", now=at(34), ttl=TTL)
        assert lease is not None
        assert (lease.job_id, lease.fence) == ("short", 2)


def test_heartbeat_keeps_the_zone_and_the_granted_capabilities(store: Store) -> None:
    with store.session() as session:
        add_runner(session, "r1", capabilities=("browser", "http"))
    with store.session() as session:
        row = heartbeat(session, "r1", load=2, capabilities=["http"], zone="dc1", now=at(10))
        assert (row.capabilities, row.load, row.last_heartbeat_at) == (["http"], 2, at(10))
        row = heartbeat(session, "r1", load=1, capabilities=["http"], zone="dc1", now=at(20))
        # A replica with a slow clock does not move the heartbeat backwards.
        row = heartbeat(
            session, "r1", load=0, capabilities=["http"], zone="dc1", now=at(15), max_jobs=8
        )
        assert (row.last_heartbeat_at, row.max_jobs) == (at(20), 8)
    with store.session() as session, pytest.raises(PermissionDeniedError, match="sql"):
        heartbeat(session, "r1", load=0, capabilities=["http", "sql"], zone="dc1", now=at(30))
    # Registered without an enrollment token, it has no grant on record beyond what it
    # offers now, so it cannot grow back (enrolled runners can: see test_pki).
    with store.session() as session, pytest.raises(PermissionDeniedError, match="browser"):
        heartbeat(session, "r1", load=0, capabilities=["browser"], zone="dc1", now=at(30))
    with store.session() as session, pytest.raises(PermissionDeniedError, match="zone"):
        heartbeat(session, "r1", load=0, capabilities=["http"], zone="dmz", now=at(30))
    with store.session() as session, pytest.raises(ValidationFailedError):
        heartbeat(session, "r1", load=-1, capabilities=["http"], zone="dc1", now=at(30))
    with store.session() as session, pytest.raises(ValidationFailedError):
        heartbeat(session, "r1", load=0, capabilities=["teleport"], zone="dc1", now=at(30))


def test_registry_lists_and_finds_runners(store: Store) -> None:
    with store.session() as session:
        add_runner(session, "b", zone="dmz")
        add_runner(session, "a", zone="dc1")
        drain(session, "a", actor="user:ops", now=T0)
        with pytest.raises(ConflictError):
            add_runner(session, "a")
    with store.session(read_only=True) as session:
        assert _ids(list_runners(session)) == ["a", "b"]
        assert _ids(list_runners(session, zone="dmz")) == ["b"]
        assert _ids(list_runners(session, status="draining")) == ["a"]
        assert get_runner(session, "a").status == "draining"
        with pytest.raises(NotFoundError):
            get_runner(session, "c")
    with store.session(read_only=True) as session:
        assert [r.action for r in audit_rows(session, "runners.drain")] == ["runners.drain"]


def test_times_must_be_timezone_aware(store: Store) -> None:
    with store.session() as session:
        add_runner(session, "r1")
        with pytest.raises(ValueError, match="timezone-aware"):
            acquire(
                session,
                "r1",
                capabilities=["core"],
                zone="dc1",
                now=T0.replace(tzinfo=None),
                ttl=TTL,
            )
        with pytest.raises(ValueError, match="positive"):
            acquire(session, "r1", capabilities=["core"], zone="dc1", now=T0, ttl=timedelta(0))


def test_runners_polling_at_once_get_different_jobs_on_postgres(pg_store: Store) -> None:
    """FOR UPDATE SKIP LOCKED: a second poller skips the row the first holds, never waits."""
    with pg_store.session() as session:
        add_runner(session, "r1")
        add_runner(session, "r2")
        enqueue(session, new_job("j1"), now=T0)
        enqueue(session, new_job("j2"), now=at(1))
    with pg_store.session() as first:
        one = acquire(first, "r1", capabilities=["core"], zone="dc1", now=at(2), ttl=TTL)
        # ``first`` is still open and holds j1's row lock.
        with pg_store.session() as second:
            two = acquire(second, "r2", capabilities=["core"], zone="dc1", now=at(2), ttl=TTL)
            three = acquire(second, "r2", capabilities=["core"], zone="dc1", now=at(2), ttl=TTL)
    assert one is not None
    assert two is not None
    assert (one.job_id, two.job_id, three) == ("j1", "j2", None)
