"""Webhook delivery ids: the first delivery is accepted, every replay is recognised."""

from __future__ import annotations

import threading
from datetime import timedelta

from amosflow.store import Store, prune_deliveries, remember_delivery
from amosflow.store._types import utcnow


def test_a_replayed_delivery_is_recognised(store: Store) -> None:
    """The first delivery id of a hook is new; the same id again is a replay."""
    with store.session() as session:
        assert remember_delivery(session, "invoices", "d-1", "run-1") is True
    with store.session() as session:
        assert remember_delivery(session, "invoices", "d-1", "run-1") is False


def test_delivery_ids_are_scoped_to_their_hook(store: Store) -> None:
    """The same delivery id on another hook is a different delivery."""
    with store.session() as session:
        assert remember_delivery(session, "a", "d-1", "run-a") is True
        assert remember_delivery(session, "b", "d-1", "run-b") is True


def test_five_concurrent_deliveries_are_accepted_once(store: Store) -> None:
    """Of five simultaneous copies of one delivery exactly one is new."""
    barrier = threading.Barrier(5)
    answers: list[bool] = []

    def deliver() -> None:
        barrier.wait()
        with store.session() as session:
            answers.append(remember_delivery(session, "h", "d-1", "run-1"))

    threads = [threading.Thread(target=deliver) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [False, False, False, False, True]


def test_pruned_deliveries_are_forgotten(store: Store) -> None:
    """Deliveries older than the cut-off are deleted; newer ones are kept."""
    with store.session() as session:
        remember_delivery(session, "h", "old", "run-1")
    with store.session() as session:
        assert prune_deliveries(session, utcnow() + timedelta(seconds=1)) == 1
        assert remember_delivery(session, "h", "old", "run-1") is True
        assert prune_deliveries(session, utcnow() - timedelta(days=1)) == 0
