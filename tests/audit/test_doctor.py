"""`amos audit doctor`: whether the API's OS user could read the checkpoint key or swap the sink."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from amosflow import audit
from amosflow.node import ServiceUser, share_home

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="changes file owners")

AMOS = str(Path(sys.executable).with_name("amos"))
NOBODY = pwd.getpwnam("nobody")


def _doctor(home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMOS_")}
    return subprocess.run(
        [AMOS, "audit", "doctor", "--api-user", "nobody"],
        env=env | {"AMOS_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _install(home: Path) -> audit.AuditSettings:
    """An install whose key, public key and sink exist, all root's, 0600 in 0700 directories."""
    settings = audit.AuditSettings(home=home)
    audit.CheckpointSigner.from_file(settings.key_path)
    settings.sink_path.touch(mode=0o600)
    home.chmod(0o700)
    return settings


def test_the_root_node_layout_keeps_the_key_from_the_api_user(tmp_path: Path) -> None:
    """After share_home, the service user can read neither the key nor swap anything: exit 0."""
    home = tmp_path / "home"
    home.mkdir()
    settings = audit.AuditSettings(home=home)
    share_home(home, ServiceUser("nobody", NOBODY.pw_uid, NOBODY.pw_gid), settings)
    assert audit.key_exposure(settings, audit.os_user("nobody")) == []
    done = _doctor(home)
    assert done.returncode == 0, done.stdout
    assert done.stdout.endswith(
        "ok: nobody can neither read the checkpoint key nor change the sink\n"
    )


def test_a_key_the_api_user_can_read_is_reported(tmp_path: Path) -> None:
    """A key in directories anyone may enter, readable by anyone: exit 1, naming the key."""
    home = tmp_path / "home"
    settings = _install(home)
    for directory in (home, settings.directory):
        directory.chmod(0o755)
    settings.key_path.chmod(0o644)
    done = _doctor(home)
    assert done.returncode == 1
    assert f"problem: nobody can read {settings.key_path}\n" in done.stdout


def test_an_audit_directory_the_api_user_can_swap_is_reported(tmp_path: Path) -> None:
    """When the API user owns the home, it can rename the audit directory and plant its own."""
    home = tmp_path / "home"
    settings = _install(home)
    os.chown(home, NOBODY.pw_uid, NOBODY.pw_gid)
    done = _doctor(home)
    assert done.returncode == 1
    assert f"problem: nobody can rename or replace {settings.directory}, and so" in done.stdout
