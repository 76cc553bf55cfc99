"""Automatic checkpoints: the loop of `amos audit checkpointer`, run in-process in a thread."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from amosflow import audit
from amosflow.store import Store
from tests.audit.chain import build
from tests.audit.syslog import until

POLL = 0.02


def _seqs(sink: audit.JsonlSink) -> list[int]:
    return [checkpoint.seq for checkpoint in sink.read()]


@contextmanager
def running(checkpointer: audit.Checkpointer) -> Iterator[threading.Event]:
    """Run the checkpoint loop in its own thread; stop it and wait for it on the way out."""
    stop = threading.Event()
    failures: list[BaseException] = []

    def loop() -> None:
        try:
            audit.run_checkpoints(checkpointer, stop, POLL)
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive(), "the checkpoint loop did not stop"
    assert failures == []


def test_records_from_other_transactions_are_checkpointed_every_n(
    store: Store, signer: audit.CheckpointSigner, sink: audit.JsonlSink
) -> None:
    """Appends committed by this thread reach a signed checkpoint once N of them are in."""
    checkpointer = audit.Checkpointer(store, signer, sink, every_records=3, every_seconds=3600)
    with running(checkpointer):
        build(store, 2)
        build(store, 1)
        until(lambda: _seqs(sink) == [3], what="a checkpoint at seq 3")
        build(store, 3)
        until(lambda: _seqs(sink) == [3, 6], what="a checkpoint at seq 6")
    report = audit.verify(store, sink=sink, public_key=signer.public_key)
    assert (report.ok, report.last_checkpoint_seq) == (True, 6)


def test_a_few_records_are_checkpointed_after_t_seconds(
    store: Store, signer: audit.CheckpointSigner, sink: audit.JsonlSink
) -> None:
    """Below N records, the time cadence signs the tail without anyone forcing it."""
    checkpointer = audit.Checkpointer(store, signer, sink, every_records=1000, every_seconds=0.2)
    with running(checkpointer) as stop:
        build(store, 2)
        until(lambda: _seqs(sink) == [2], what="a timed checkpoint at seq 2")
        assert not stop.is_set()


def test_stopping_signs_the_unsigned_tail(
    store: Store, signer: audit.CheckpointSigner, sink: audit.JsonlSink
) -> None:
    """On stop, records not yet due for a checkpoint get a final one; none when none are new."""
    checkpointer = audit.Checkpointer(store, signer, sink, every_records=100, every_seconds=3600)
    with running(checkpointer):
        build(store, 7)
    assert _seqs(sink) == [7]
    with running(checkpointer):
        pass
    assert _seqs(sink) == [7]
    assert audit.verify(store, sink=sink, public_key=signer.public_key).ok


def test_appends_from_concurrent_writers_are_all_covered(
    store: Store, signer: audit.CheckpointSigner, sink: audit.JsonlSink
) -> None:
    """Writers in several threads append while the loop runs; the final checkpoint covers all."""
    checkpointer = audit.Checkpointer(store, signer, sink, every_records=4, every_seconds=3600)
    with running(checkpointer):
        writers = [threading.Thread(target=build, args=(store, 5)) for _ in range(3)]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()
    assert _seqs(sink)[-1] == 15
    assert audit.verify(store, sink=sink, public_key=signer.public_key).ok


def test_a_failing_sink_is_retried_until_it_works(
    store: Store,
    signer: audit.CheckpointSigner,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A sink that cannot be written (its directory is a file) is logged, then retried."""
    blocker = tmp_path / "outside"
    blocker.write_text("a file where the sink's directory should be")
    sink = audit.JsonlSink(blocker / "checkpoints.jsonl")
    checkpointer = audit.Checkpointer(store, signer, sink, every_records=1, every_seconds=3600)
    with caplog.at_level(logging.WARNING), running(checkpointer):
        build(store, 2)
        until(lambda: "audit checkpoint failed" in caplog.text, what="a failed checkpoint")
        assert sink.read() == []
        blocker.unlink()
        until(lambda: _seqs(sink) == [2], what="a checkpoint once the sink works")


def test_a_bad_poll_interval_is_refused(checkpointer: audit.Checkpointer) -> None:
    """A zero poll interval would spin; it is refused."""
    with pytest.raises(ValueError, match="poll_seconds"):
        audit.run_checkpoints(checkpointer, threading.Event(), 0)
