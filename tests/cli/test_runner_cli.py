"""`amos runner`: enrollment tokens and the fleet listing, through the real CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from amosflow.cli.main import app
from amosflow.runner.agent import generate_runner_key, make_csr
from amosflow.runner.dispatch import PlatformCA, drain, enroll, heartbeat, token_hash
from amosflow.store import AuditRow, EnrollmentTokenRow, Store, open_store
from tests.store.conftest import store_url  # noqa: F401

AMOS = str(Path(sys.executable).with_name("amos"))
TOKEN = re.compile(r"amos_enr_[0-9a-f]{16}_[A-Za-z0-9_-]{43}")


@pytest.fixture
def home(monkeypatch, tmp_path: Path, store_url: str) -> Path:  # noqa: F811
    """AMOS_HOME and AMOS_DATABASE_URL of a fresh install; no other AMOS_ variable leaks in."""
    for key in list(os.environ):
        if key.startswith("AMOS_"):
            monkeypatch.delenv(key)
    path = tmp_path / "amos-home"
    monkeypatch.setenv("AMOS_HOME", str(path))
    monkeypatch.setenv("AMOS_DATABASE_URL", store_url)
    return path


@pytest.fixture
def store(home: Path, store_url: str) -> Iterator[Store]:  # noqa: F811
    opened = open_store(store_url)
    try:
        yield opened
    finally:
        opened.dispose()


def amos(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def test_token_create_prints_the_token_once_and_stores_its_hash(home: Path, store: Store) -> None:
    result = amos(
        "runner", "token", "create", "--zone", "dmz", "--capability", "http",
        "--capability", "browser", "--ttl-hours", "2",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert TOKEN.fullmatch(token), result.stdout
    assert "zone dmz for browser, http" in result.stderr
    assert "not shown again" in result.stderr
    with store.session(read_only=True) as session:
        row = session.query(EnrollmentTokenRow).one()
        assert row.token_hash == token_hash(token)
        assert (row.zone, row.capabilities) == ("dmz", ["browser", "http"])
        assert (
            timedelta(hours=1, minutes=59) < row.expires_at - row.created_at <= timedelta(hours=2)
        )
        record = session.query(AuditRow).filter(AuditRow.action == "runners.token_create").one()
        assert record.actor.startswith("cli:")
        assert token not in json.dumps(record.details)


def test_token_create_refuses_unknown_capabilities_and_needs_one(home: Path, store: Store) -> None:
    bad = amos("runner", "token", "create", "--zone", "dmz", "--capability", "teleport")
    assert bad.exit_code == 2
    assert "/capabilities/0: unknown capability 'teleport'" in bad.stderr
    missing = amos("runner", "token", "create", "--zone", "dmz")
    assert missing.exit_code == 2
    assert "--capability" in missing.output
    too_long = amos(
        "runner", "token", "create", "--zone", "dmz", "--capability", "core", "--ttl-hours", "9999"
    )
    assert too_long.exit_code == 2
    with store.session(read_only=True) as session:
        assert session.query(EnrollmentTokenRow).count() == 0


def test_ls_shows_the_fleet(home: Path, store: Store, tmp_path: Path) -> None:
    assert "NAME" in amos("runner", "ls").stdout  # an empty fleet: the header only
    ca = PlatformCA.load_or_create(tmp_path / "ca")
    now = datetime.now(UTC)
    ids = {}
    for name, zone in (("edge-b", "dmz"), ("edge-a", "dc1")):
        created = amos("runner", "token", "create", "--zone", zone, "--capability", "http")
        assert created.exit_code == 0, created.output
        with store.session() as session:
            enrolled = enroll(
                session,
                ca,
                token=created.stdout.strip(),
                csr_pem=make_csr(generate_runner_key(), name),
                name=name,
                now=now,
                max_jobs=4,
            )
        ids[name] = enrolled.runner_id
    with store.session() as session:
        heartbeat(session, ids["edge-a"], load=3, capabilities=["http"], zone="dc1", now=now)
        drain(session, ids["edge-b"], actor="user:ops", now=now)

    result = amos("runner", "ls")
    assert result.exit_code == 0, result.output
    header, first, second = result.stdout.splitlines()
    assert header.split() == [
        "NAME",
        "ZONE",
        "CAPABILITIES",
        "STATUS",
        "LAST",
        "HEARTBEAT",
        "LOAD",
        "ID",
    ]
    beat = now.isoformat(timespec="seconds")
    assert first.split() == ["edge-a", "dc1", "http", "active", beat, "3/4", ids["edge-a"]]
    assert second.split() == ["edge-b", "dmz", "http", "draining", "never", "0/4", ids["edge-b"]]

    listed = json.loads(amos("runner", "ls", "--json", "--zone", "dmz").stdout)
    assert [(r["name"], r["status"], r["last_heartbeat_at"]) for r in listed] == [
        ("edge-b", "draining", None)
    ]


def test_the_installed_command_creates_a_token_and_lists(tmp_path: Path) -> None:
    """The real `amos` executable, in a process of its own, on the SQLite default store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMOS_")}
    env["AMOS_HOME"] = str(tmp_path / "home")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [AMOS, "runner", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    created = run("token", "create", "--zone", "dc1", "--capability", "sql")
    assert created.returncode == 0, created.stderr
    assert TOKEN.fullmatch(created.stdout.strip())
    listed = run("ls", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    assert (tmp_path / "home" / "amos.db").exists()
