"""`amos audit checkpointer|ship|export|prune|hold`: real processes, real store, real sockets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from amosflow import audit
from amosflow.cli.audit import app
from amosflow.store import Store, open_store
from tests.audit.chain import build, row
from tests.audit.syslog import TcpReceiver, parse_cef, parse_syslog, until
from tests.support.postgres import PostgresServer

AMOS = str(Path(sys.executable).with_name("amos"))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on each backend, reachable from another process."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'amos.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()


@pytest.fixture
def db(db_url: str) -> Iterator[Store]:
    """This process's own store on that database (the writer the API would be)."""
    opened = open_store(db_url)
    try:
        yield opened
    finally:
        opened.dispose()


def _env(db_url: str, home: Path, **more: str) -> dict[str, str]:
    """The environment of a process on this store and home, free of the caller's AMOS_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMOS_")}
    return env | {"AMOS_DATABASE_URL": db_url, "AMOS_HOME": str(home)} | more


def _invoke(env: dict[str, str], *args: str) -> Result:
    # CliRunner's env only overrides; clear the AMOS_* it does not name.
    cleared: dict[str, str | None] = {k: None for k in os.environ if k.startswith("AMOS_")}
    return CliRunner().invoke(app, list(args), env=cleared | env)


def _stop(proc: subprocess.Popen[str], sig: signal.Signals) -> tuple[str, str]:
    proc.send_signal(sig)
    try:
        return proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _started(proc: subprocess.Popen[str], what: str) -> None:
    """Fail with the process's stderr if it died instead of starting."""
    if proc.poll() is not None:
        _, err = proc.communicate()
        raise AssertionError(f"{what} exited with {proc.returncode}: {err}")


# -- amos audit checkpointer ---------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_the_checkpointer_process_signs_new_records_and_the_tail_when_stopped(
    db: Store, db_url: str, tmp_path: Path, sig: signal.Signals
) -> None:
    """Records this process appends are signed by the other one every N; a signal signs the rest."""
    home = tmp_path / "home"
    settings = audit.AuditSettings(home=home)
    sink = audit.JsonlSink(settings.sink_path)
    env = _env(
        db_url,
        home,
        AMOS_AUDIT_CHECKPOINT_RECORDS="3",
        AMOS_AUDIT_CHECKPOINT_SECONDS="3600",
    )
    proc = subprocess.Popen(
        [AMOS, "audit", "checkpointer", "--poll", "0.05"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        build(db, 3)
        until(
            lambda: (
                _started(proc, "amos audit checkpointer") or [c.seq for c in sink.read()] == [3]
            ),
            timeout=60,
            what="a checkpoint at seq 3",
        )
        build(db, 2)
    finally:
        _, err = _stop(proc, sig)
    assert proc.returncode == 0, err
    assert "audit checkpointer stopped" in err
    assert [c.seq for c in sink.read()] == [3, 5]
    public_key = audit.load_public_key(settings.public_key_path)
    report = audit.verify(db, sink=sink, public_key=public_key)
    assert (report.ok, report.last_checkpoint_seq) == (True, 5)


def test_the_checkpointer_refuses_a_key_others_can_read(
    db: Store, db_url: str, tmp_path: Path
) -> None:
    """A checkpoint key readable by others is refused at start: exit 1, nothing signed."""
    home = tmp_path / "home"
    settings = audit.AuditSettings(home=home)
    audit.CheckpointSigner.from_file(settings.key_path)
    settings.key_path.chmod(0o644)
    done = subprocess.run(
        [AMOS, "audit", "checkpointer"],
        env=_env(db_url, home),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "mode 0644" in done.stderr


# -- amos audit ship ---------------------------------------------------------------------------


def test_amos_audit_ship_forwards_until_sigterm_and_resumes_after_its_cursor(
    db: Store, db_url: str, tmp_path: Path
) -> None:
    """The real process ships old and new records, exits 0 on SIGTERM; a rerun sends only new ones."""
    receiver = TcpReceiver()
    home = tmp_path / "home"
    env = _env(
        db_url,
        home,
        AMOS_AUDIT_SIEM_URL=f"tcp://127.0.0.1:{receiver.port}",
        AMOS_AUDIT_SIEM_ALLOW="127.0.0.1",
    )
    try:
        build(db, 3)
        proc = subprocess.Popen(
            [AMOS, "audit", "ship"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            until(
                lambda: _started(proc, "amos audit ship") or len(receiver.messages) >= 3,
                timeout=60,
                what="three records at the receiver",
            )
            build(db, 2)
            receiver.wait_for(5, timeout=60)
        finally:
            _, err = _stop(proc, signal.SIGTERM)
        assert proc.returncode == 0, err
        assert "SIEM shipping stopped" in err
        assert audit.AuditSettings(home=home).siem_cursor_path.read_text() == "5\n"
        build(db, 1)
        again = subprocess.run(
            [AMOS, "audit", "ship", "--once"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert again.returncode == 0, again.stderr
        assert again.stdout == f"shipped 1 records to tcp://127.0.0.1:{receiver.port}\n"
        messages = receiver.wait_for(6)
    finally:
        receiver.stop()
    seqs = [int(parse_cef(parse_syslog(m).message).extension["externalId"]) for m in messages]
    assert seqs == [1, 2, 3, 4, 5, 6]


def test_amos_audit_ship_refuses_a_host_not_in_the_allow_list(
    db: Store, db_url: str, tmp_path: Path
) -> None:
    """Named once is not enough: exit 1 with the reason, and nothing connects."""
    receiver = TcpReceiver()
    try:
        env = _env(
            db_url, tmp_path / "home", AMOS_AUDIT_SIEM_URL=f"tcp://127.0.0.1:{receiver.port}"
        )
        result = _invoke(env, "ship")
        assert result.exit_code == 1
        assert "not in AMOS_AUDIT_SIEM_ALLOW" in result.stderr
        assert receiver.connections == 0
    finally:
        receiver.stop()


def test_amos_audit_ship_is_off_without_a_url(db: Store, db_url: str, tmp_path: Path) -> None:
    """No URL: the command says so and exits 0 without sending anything."""
    build(db, 2)
    env = _env(db_url, tmp_path / "home", AMOS_AUDIT_SIEM_ALLOW="127.0.0.1")
    result = _invoke(env, "ship")
    assert result.exit_code == 0
    assert "SIEM shipping is off" in result.stderr
    assert not audit.AuditSettings(home=tmp_path / "home").siem_cursor_path.exists()


# -- amos audit export -------------------------------------------------------------------------


def test_export_writes_cef_or_jsonl_for_a_time_window(
    db: Store, db_url: str, tmp_path: Path
) -> None:
    """--since is inclusive, --until exclusive; --output writes a file, else stdout."""
    build(db, 5)
    env = _env(db_url, tmp_path / "home")
    since, until_ = row(db, 2)["at"], row(db, 4)["at"]
    target = tmp_path / "out.cef"
    result = _invoke(
        env,
        "export",
        "--format",
        "cef",
        "--since",
        since.isoformat(),
        "--until",
        until_.isoformat(),
        "--output",
        str(target),
    )
    assert result.exit_code == 0, result.output
    assert "exported 2 records" in result.stderr
    lines = target.read_text().splitlines()
    assert [parse_cef(line).extension["externalId"] for line in lines] == ["2", "3"]
    plain = _invoke(env, "export")
    assert [json.loads(line)["seq"] for line in plain.stdout.splitlines()] == [1, 2, 3, 4, 5]
    bad = _invoke(env, "export", "--since", "last tuesday")
    assert bad.exit_code == 2


# -- amos audit prune / hold -------------------------------------------------------------------


def test_holds_and_prune_from_the_command_line(db: Store, db_url: str, tmp_path: Path) -> None:
    """Place a hold, prune up to it, release it, prune the rest, and verify the pruned chain."""
    build(db, 8)  # seq 4 and 8 are in folder finance
    env = _env(db_url, tmp_path / "home")
    placed = _invoke(
        env, "hold", "add", "--folder", "finance", "--reason", "case 7", "--actor", "user:legal"
    )
    assert placed.stdout == "hold 1 placed on folder finance\n"
    listed = _invoke(env, "hold", "ls")
    assert listed.stdout.startswith("1\tfinance\tactive\tuser:legal\t")
    assert listed.stdout.rstrip("\n").endswith("\tcase 7")
    first = _invoke(env, "prune", "--older-than-days", "0")
    assert first.stdout == (
        "pruned 3 records (seq 1..3); stopped: seq 4 is in folder finance, held by hold 1\n"
    )
    released = _invoke(env, "hold", "release", "1")
    assert released.stdout == "hold 1 on folder finance released\n"
    assert _invoke(env, "hold", "ls").stdout == ""
    (every,) = _invoke(env, "hold", "ls", "--all", "--json").stdout.splitlines()
    assert json.loads(every)["active"] is False
    second = _invoke(env, "prune", "--before", datetime.now(UTC).isoformat(), "--json")
    report = json.loads(second.stdout)
    assert (report["first_seq"], report["through_seq"]) == (4, 11)
    verified = _invoke(env, "verify")
    assert verified.exit_code == 0, verified.output
    assert verified.stdout == "ok: 1 records after seq 11 (pruned), last checkpoint at seq -\n"
    with db.session(read_only=True) as session:
        actions = [r.action for r in audit.query(session).items]
    assert actions == ["audit.prune"]


def test_prune_keeps_what_the_siem_has_not_received(db: Store, db_url: str, tmp_path: Path) -> None:
    """With shipping configured, records after the SIEM cursor are not pruned."""
    build(db, 6)
    home = tmp_path / "home"
    cursor = audit.AuditSettings(home=home).siem_cursor_path
    cursor.parent.mkdir(parents=True)
    cursor.write_text("2\n")
    env = _env(
        db_url, home, AMOS_AUDIT_SIEM_URL="tcp://127.0.0.1:1", AMOS_AUDIT_SIEM_ALLOW="127.0.0.1"
    )
    result = _invoke(env, "prune", "--older-than-days", "0")
    assert result.stdout.startswith(
        "pruned 2 records (seq 1..2); stopped: seq 3 has not been shipped"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["prune"],
        ["prune", "--before", "2020-01-01", "--older-than-days", "3"],
        ["prune", "--before", "yesterday"],
        ["prune", "--before", (datetime.now(UTC) + timedelta(days=2)).date().isoformat()],
    ],
    ids=["neither", "both", "not-a-date", "future"],
)
def test_prune_arguments_are_checked(
    db: Store, db_url: str, tmp_path: Path, args: list[str]
) -> None:
    """Exactly one cut-off, a real date, not in the future: otherwise exit 2, nothing removed."""
    build(db, 2)
    result = _invoke(_env(db_url, tmp_path / "home"), *args)
    assert result.exit_code == 2, result.output
    with db.session(read_only=True) as session:
        assert len(audit.query(session).items) == 2


def test_releasing_an_unknown_hold_fails(db: Store, db_url: str, tmp_path: Path) -> None:
    """A hold id that does not exist is an error, exit 1."""
    result = _invoke(_env(db_url, tmp_path / "home"), "hold", "release", "9")
    assert result.exit_code == 1
    assert "no audit hold 9" in result.stderr
