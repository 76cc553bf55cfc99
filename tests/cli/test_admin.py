"""`amos admin`: the first administrator from the console, setup links, grants and folders."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from amosflow import identity
from amosflow.cli.main import app
from amosflow.identity import Binding, IdentitySettings
from amosflow.store import Store, open_store
from tests.store.conftest import store_url  # noqa: F401

AMOS = str(Path(sys.executable).with_name("amos"))
PASSWORD = "correct horse battery staple"
LINK = re.compile(r"^http://127\.0\.0\.1:8787/setup\?token=([A-Za-z0-9_-]{43})$")


@pytest.fixture
def home(monkeypatch, tmp_path: Path, store_url: str) -> Path:  # noqa: F811
    """AMOS_HOME and AMOS_DATABASE_URL of a fresh install; no other AMOS_ variable leaks in."""
    for key in list(os.environ):
        if key.startswith("AMOS_"):
            monkeypatch.delenv(key)
    path = tmp_path / "amos-home"
    monkeypatch.setenv("AMOS_HOME", str(path))
    monkeypatch.setenv("AMOS_DATABASE_URL", store_url)
    monkeypatch.setenv("AMOS_API_HOST", "127.0.0.1")
    monkeypatch.setenv("AMOS_API_PORT", "8787")
    return path


@pytest.fixture
def store(home: Path, store_url: str) -> Iterator[Store]:  # noqa: F811
    opened = open_store(store_url)
    try:
        yield opened
    finally:
        opened.dispose()


def amos(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=stdin)


def create(username: str = "root", password: str = PASSWORD) -> Result:
    return amos(
        "admin", "create", "--username", username, "--password-stdin", stdin=password + "\n"
    )


def test_fresh_install_has_no_account_and_no_default_password(home: Path, store: Store) -> None:
    with store.session(read_only=True) as session:
        assert identity.count_principals(session) == 0
    # There is no built-in "admin" to grant anything to, or to sign in as.
    result = amos("admin", "grant", "admin", "administrator")
    assert result.exit_code == 1
    assert "no account is called 'admin'" in result.stderr


def test_first_create_succeeds_and_the_second_refuses(home: Path, store: Store) -> None:
    first = create()
    assert first.exit_code == 0, first.output
    assert "created administrator root" in first.stdout
    assert PASSWORD not in first.output
    with store.session() as session:
        row = identity.authenticate_password(session, "root", PASSWORD, settings=IdentitySettings())
        assert identity.bindings_for(session, row.id) == (Binding("administrator", "*"),)

    second = create("another")
    assert second.exit_code != 0
    assert "the first administrator exists already" in second.stderr
    with store.session(read_only=True) as session:
        assert [p.username for p in identity.list_principals(session)] == ["root"]


def test_the_nodes_own_service_account_does_not_block_setup(home: Path, store: Store) -> None:
    """`amos up` creates `amos-node` on its first start; the first administrator still works."""
    with store.session() as session:
        identity.create_service_account(session, name="amos-node", settings=IdentitySettings())
    link = amos("admin", "setup-link")
    assert link.exit_code == 0, link.output
    result = create()
    assert result.exit_code == 0, result.output
    with store.session(read_only=True) as session:
        assert identity.count_principals(session, kind="user") == 1


def test_create_prompts_twice_without_echo(home: Path, store: Store) -> None:
    result = amos("admin", "create", "--username", "root", stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    with store.session(read_only=True) as session:
        assert identity.count_principals(session) == 1


def test_weak_password_is_invalid_and_creates_nothing(home: Path, store: Store) -> None:
    result = create(password="root")
    assert result.exit_code == 2
    assert "/password:" in result.stderr
    with store.session(read_only=True) as session:
        assert identity.count_principals(session) == 0


def test_setup_link_is_printed_once_and_refused_after_setup(home: Path, store: Store) -> None:
    result = amos("admin", "setup-link")
    assert result.exit_code == 0, result.output
    match = LINK.fullmatch(result.stdout.strip())
    assert match is not None, result.stdout
    settings = IdentitySettings()
    assert settings.setup_token_path.is_relative_to(home)
    assert identity.consume_setup_token(settings, match.group(1))
    assert not identity.consume_setup_token(settings, match.group(1))

    assert create().exit_code == 0
    refused = amos("admin", "setup-link")
    assert refused.exit_code != 0
    assert "setup is complete" in refused.stderr
    assert not settings.setup_token_path.exists()


def test_grant_and_folder_create(home: Path, store: Store) -> None:
    assert create().exit_code == 0
    with store.session() as session:
        alice = identity.create_user(
            session, username="alice", password=PASSWORD, settings=IdentitySettings()
        )
    assert amos("admin", "folder-create", "finance", "--description", "Money").exit_code == 0
    again = amos("admin", "folder-create", "finance")
    assert again.exit_code == 1
    assert "exists already" in again.stderr

    result = amos(
        "admin",
        "grant",
        "alice",
        "operator",
        "--folder",
        "finance",
        "--condition",
        "resource.owner == principal.username",
    )
    assert result.exit_code == 0, result.output
    assert "granted operator on folder finance to account alice" in result.stdout
    assert amos("admin", "grant", "ops", "analyst", "--group").exit_code == 0

    bad = amos("admin", "grant", "alice", "operator", "--condition", "resource.owner ==")
    assert bad.exit_code == 2
    assert "/condition:" in bad.stderr
    unknown_role = amos("admin", "grant", "alice", "wizard")
    assert unknown_role.exit_code == 2
    assert "/role:" in unknown_role.stderr
    missing_folder = amos("admin", "grant", "alice", "operator", "--folder", "hr")
    assert missing_folder.exit_code == 1

    with store.session(read_only=True) as session:
        assert [f.name for f in identity.list_folders(session)] == ["default", "finance"]
        assert identity.bindings_for(session, alice.id, ["ops"]) == (
            Binding("operator", "finance", "resource.owner == principal.username"),
            Binding("analyst"),
        )


def test_the_installed_amos_command_creates_the_first_admin(home: Path, store: Store) -> None:
    env = dict(os.environ)
    args = [AMOS, "admin", "create", "--username", "root", "--password-stdin"]
    done = subprocess.run(
        args,
        env=env,
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    again = subprocess.run(
        args,
        env=env,
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 1
    assert "the first administrator exists already" in again.stderr
