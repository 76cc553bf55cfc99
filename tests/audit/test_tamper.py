"""Tampering with the table through plain SQL: verify and `amos audit verify` name the first bad seq."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import insert, text
from typer.testing import CliRunner

from amosflow import audit
from amosflow.cli.audit import app
from amosflow.store import AuditRow, Store
from tests.audit.chain import (
    FIELDS,
    build,
    delete_where,
    drop_stored_checkpoints,
    rehash_from,
    row,
    set_columns,
)

COUNT = 12


def _edit_a_field(store: Store) -> int:
    set_columns(store, 4, actor="user:mallory")
    return 4


def _edit_details(store: Store) -> int:
    set_columns(store, 6, details={"n": 6, "note": "record 6", "ratio": 99})
    return 6


def _replace_with_its_hash_recomputed(store: Store) -> int:
    forged = row(store, 5) | {"resource": "flow:elsewhere"}
    forged_hash = audit.record_hash(**{k: v for k, v in forged.items() if k != "hash"})
    set_columns(store, 5, resource="flow:elsewhere", hash=forged_hash)
    return 5


def _delete_a_row(store: Store) -> int:
    delete_where(store, AuditRow.seq == 7)
    return 7


def _delete_the_first_row(store: Store) -> int:
    delete_where(store, AuditRow.seq == 1)
    return 1


def _delete_and_renumber(store: Store) -> int:
    delete_where(store, AuditRow.seq == 3)
    with store.session() as session:
        session.execute(text("UPDATE audit_records SET seq = seq + 1000 WHERE seq > 3"))
        session.execute(text("UPDATE audit_records SET seq = seq - 1001 WHERE seq > 1000"))
    return 3


def _insert_a_row(store: Store) -> int:
    """Shift seq 4.. up by one and insert a well-formed record linked to seq 3 at seq 4."""
    with store.session() as session:
        session.execute(text("UPDATE audit_records SET seq = seq + 1000 WHERE seq >= 4"))
        session.execute(text("UPDATE audit_records SET seq = seq - 999 WHERE seq >= 1000"))
    forged = row(store, 3) | {"seq": 4, "actor": "user:mallory", "prev_hash": row(store, 3)["hash"]}
    forged["hash"] = audit.record_hash(**{k: v for k, v in forged.items() if k != "hash"})
    with store.session() as session:
        session.execute(insert(AuditRow).values(**forged))
    return 4


def _append_a_forged_tail(store: Store) -> int:
    forged = row(store, COUNT) | {"seq": COUNT + 1, "hash": "f" * 64}
    with store.session() as session:
        session.execute(insert(AuditRow).values(**forged))
    return COUNT + 1


def _swap_two_rows(store: Store) -> int:
    third, eighth = row(store, 3), row(store, 8)
    set_columns(store, 3, **{name: eighth[name] for name in FIELDS})
    set_columns(store, 8, **{name: third[name] for name in FIELDS})
    return 3


def _swap_neighbours(store: Store) -> int:
    fifth, sixth = row(store, 5), row(store, 6)
    set_columns(store, 5, **{name: sixth[name] for name in FIELDS})
    set_columns(store, 6, **{name: fifth[name] for name in FIELDS})
    return 5


def _cut_the_tail(store: Store) -> int:
    delete_where(store, AuditRow.seq > 8)
    return 9


TAMPERING: dict[str, Callable[[Store], int]] = {
    "edit a field": _edit_a_field,
    "edit details": _edit_details,
    "replace with its hash recomputed": _replace_with_its_hash_recomputed,
    "delete a row": _delete_a_row,
    "delete the first row": _delete_the_first_row,
    "delete and renumber": _delete_and_renumber,
    "insert a row": _insert_a_row,
    "append a forged tail": _append_a_forged_tail,
    "swap two rows": _swap_two_rows,
    "swap neighbours": _swap_neighbours,
    "cut the tail": _cut_the_tail,
}


def _env(store_url: str, settings: audit.AuditSettings) -> dict[str, str]:
    return {"AMOS_DATABASE_URL": store_url, "AMOS_HOME": str(settings.home)}


def test_an_untouched_chain_verifies(
    store: Store, checkpointer: audit.Checkpointer, sink: audit.JsonlSink
) -> None:
    """Every record and every checkpoint checks out on an untouched chain."""
    build(store, COUNT, checkpointer)
    report = audit.verify(store, sink=sink, public_key=checkpointer.signer.public_key)
    assert report == audit.VerifyReport(ok=True, checked=COUNT, last_checkpoint_seq=10)


def test_the_cli_exits_0_on_an_untouched_chain(
    store: Store, store_url: str, checkpointer: audit.Checkpointer, settings: audit.AuditSettings
) -> None:
    """`amos audit verify` prints the record count and the last checkpoint, and exits 0."""
    build(store, COUNT, checkpointer)
    result = CliRunner().invoke(app, ["verify"], env=_env(store_url, settings))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"ok: {COUNT} records, last checkpoint at seq 10\n"


@pytest.mark.parametrize("tamper", TAMPERING.values(), ids=TAMPERING.keys())
def test_verify_names_the_first_tampered_record(
    store: Store,
    checkpointer: audit.Checkpointer,
    sink: audit.JsonlSink,
    tamper: Callable[[Store], int],
) -> None:
    """Each kind of direct SQL tampering fails verification at exactly the first bad seq."""
    build(store, COUNT, checkpointer)
    first_bad = tamper(store)
    report = audit.verify(store, sink=sink, public_key=checkpointer.signer.public_key)
    assert (report.ok, report.first_bad_seq) == (False, first_bad), report.problem


@pytest.mark.parametrize("tamper", TAMPERING.values(), ids=TAMPERING.keys())
def test_the_cli_exits_1_naming_the_first_tampered_record(
    store: Store,
    store_url: str,
    checkpointer: audit.Checkpointer,
    settings: audit.AuditSettings,
    tamper: Callable[[Store], int],
) -> None:
    """`amos audit verify` prints `FAIL at seq K: …` for the first bad seq and exits 1."""
    build(store, COUNT, checkpointer)
    first_bad = tamper(store)
    result = CliRunner().invoke(app, ["verify"], env=_env(store_url, settings))
    assert result.exit_code == 1, result.output
    assert result.stdout.startswith(f"FAIL at seq {first_bad}: ")


def test_verify_reads_the_chain_in_pages(
    store: Store, checkpointer: audit.Checkpointer, sink: audit.JsonlSink
) -> None:
    """A deletion that falls on a page boundary is still found when pages are tiny."""
    build(store, COUNT, checkpointer)
    delete_where(store, AuditRow.seq == 7)
    report = audit.verify(store, sink=sink, public_key=checkpointer.signer.public_key, page=3)
    assert (report.first_bad_seq, report.checked) == (7, 6)


def test_a_rewritten_chain_passes_alone_and_fails_against_the_external_checkpoint(
    store: Store, checkpointer: audit.Checkpointer, sink: audit.JsonlSink
) -> None:
    """Edit seq 7 and recompute every later hash: only the signed checkpoint outside sees it."""
    build(store, COUNT, checkpointer)
    set_columns(store, 7, actor="user:mallory")
    rehash_from(store, 7)
    drop_stored_checkpoints(store)  # the attacker empties the table they can reach too
    key = checkpointer.signer.public_key
    assert audit.verify(store, sink=None, public_key=key).ok
    report = audit.verify(store, sink=sink, public_key=key)
    # Checkpoint 5 still matches, checkpoint 10 does not: seq 6..10 cannot be trusted.
    assert (report.ok, report.first_bad_seq) == (False, 6)
    assert "rewritten" in (report.problem or "")


def test_a_truncated_chain_passes_alone_and_fails_against_the_external_checkpoint(
    store: Store, checkpointer: audit.Checkpointer, sink: audit.JsonlSink
) -> None:
    """Cut the tail: the bare chain is consistent, the checkpoint at seq 10 names seq 9."""
    build(store, COUNT, checkpointer)
    delete_where(store, AuditRow.seq > 8)
    drop_stored_checkpoints(store)
    key = checkpointer.signer.public_key
    assert audit.verify(store, sink=None, public_key=key).ok
    report = audit.verify(store, sink=sink, public_key=key)
    assert (report.ok, report.first_bad_seq) == (False, 9)
    assert "cut off" in (report.problem or "")


def test_a_forged_checkpoint_line_is_refused(
    store: Store, checkpointer: audit.Checkpointer, sink: audit.JsonlSink
) -> None:
    """A checkpoint whose signature does not verify fails the check instead of vouching."""
    build(store, COUNT, checkpointer)
    lines = sink.path.read_text().splitlines()
    sink.path.write_text(lines[0].replace('"seq":5', '"seq":4') + "\n")
    report = audit.verify(store, sink=sink, public_key=checkpointer.signer.public_key)
    assert not report.ok
    assert "bad signature" in (report.problem or "")
