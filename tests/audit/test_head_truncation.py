"""Finding 11 through the CLI: a head cut papered over by a database writer fails `amos audit verify`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import delete

from amosflow import audit
from amosflow.store import AuditAnchorRow, AuditHoldRow, AuditRow, Store, open_store
from tests.audit.chain import build, row
from tests.support.postgres import PostgresServer

AMOS = str(Path(sys.executable).with_name("amos"))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on each backend, reachable from the CLI's processes."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'amos.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()


@pytest.fixture
def db(db_url: str) -> Iterator[Store]:
    """The store as the API process sees it: it appends records and may be compromised."""
    opened = open_store(db_url)
    try:
        yield opened
    finally:
        opened.dispose()


def _amos(db_url: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMOS_")}
    env |= {"AMOS_DATABASE_URL": db_url, "AMOS_HOME": str(home)}
    return subprocess.run(
        [AMOS, "audit", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _cut_head(db: Store, through: int) -> None:
    """Delete seq 1..through, set the anchor and append a valid audit.prune, with SQL alone."""
    hidden = row(db, through)["hash"]
    with db.session() as session:
        session.execute(delete(AuditRow).where(AuditRow.seq <= through))
        session.add(AuditAnchorRow(id=1, seq=through, hash=hidden, pruned_at=datetime.now(UTC)))
        audit.append(
            session,
            actor="service:retention",
            action="audit.prune",
            resource="audit:records",
            folder="*",
            details={"deleted": through, "anchor_seq": through, "anchor_hash": hidden},
        )


def test_amos_audit_verify_fails_a_head_cut_with_a_forged_anchor_and_prune_record(
    db: Store, db_url: str, tmp_path: Path
) -> None:
    """Delete records 1..6, set the anchor, append a valid prune record: verify exits 1 naming it."""
    home = tmp_path / "home"
    build(db, 10)
    signed = _amos(db_url, home, "checkpoint")
    assert signed.returncode == 0, signed.stderr
    _cut_head(db, 6)
    verified = _amos(db_url, home, "verify")
    assert verified.returncode == 1, verified.stdout + verified.stderr
    assert verified.stdout == (
        "FAIL at seq 1: seq 1..6 were removed, but no prune signed with the checkpoint key "
        "covers them: the retention anchor at seq 6 was set outside retention\n"
    )


def test_retentions_own_prune_still_verifies(db: Store, db_url: str, tmp_path: Path) -> None:
    """`amos audit prune` signs what it removes, so `amos audit verify` passes after it."""
    home = tmp_path / "home"
    build(db, 10)
    assert _amos(db_url, home, "checkpoint").returncode == 0
    pruned = _amos(db_url, home, "prune", "--before", row(db, 7)["at"].isoformat())
    assert pruned.stdout.startswith("pruned 6 records (seq 1..6)"), pruned.stderr
    verified = _amos(db_url, home, "verify")
    assert verified.returncode == 0, verified.stdout
    assert verified.stdout == "ok: 5 records after seq 6 (pruned), last checkpoint at seq 10\n"


def test_a_legal_hold_survives_its_row_being_deleted(
    db: Store, db_url: str, tmp_path: Path
) -> None:
    """`amos audit hold add` signs the hold: deleting its row does not let retention past it."""
    home = tmp_path / "home"
    build(db, 8)  # seq 4 and 8 are in folder finance
    placed = _amos(db_url, home, "hold", "add", "--folder", "finance", "--reason", "case 9")
    assert placed.stdout == "hold 1 placed on folder finance\n", placed.stderr
    with db.session() as session:
        session.execute(delete(AuditHoldRow))
    pruned = _amos(db_url, home, "prune", "--older-than-days", "0")
    assert pruned.stdout == (
        "pruned 3 records (seq 1..3); stopped: seq 4 is in folder finance, held by hold 1\n"
    ), pruned.stderr
    assert _amos(db_url, home, "verify").returncode == 0
