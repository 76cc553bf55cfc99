"""Root's work in AMOS_HOME never follows a link the service user could have planted there."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from amosflow.node import ServiceUser, claim, claim_dir, hand_over, secure_home

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="changes file owners")
NOBODY = ServiceUser("nobody", 65534, 65534)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_repairing_modes_leaves_what_a_link_points_at_alone(tmp_path: Path) -> None:
    """A link in the home to a file outside it: the home is repaired, the outside file is not."""
    outside = tmp_path / "outside.conf"
    outside.write_text("root's own file\n")
    outside.chmod(0o644)
    home = tmp_path / "home"
    (home / "logs").mkdir(parents=True, mode=0o755)
    (home / "logs" / "old.log").write_text("x")
    (home / "logs" / "old.log").chmod(0o644)
    (home / "catalog").symlink_to(outside)
    secure_home(home)
    assert (_mode(home), _mode(home / "logs"), _mode(home / "logs" / "old.log")) == (
        0o700, 0o700, 0o600,
    )  # fmt: skip
    assert _mode(outside) == 0o644


def test_handing_over_the_home_does_not_enter_a_linked_directory(tmp_path: Path) -> None:
    """A directory swapped for a link to another tree: the link is handed over, the tree is not."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "secret").write_text("root's")
    home = tmp_path / "home"
    (home / "vault").mkdir(parents=True)
    (home / "vault" / "ring.json").write_text("{}")
    (home / "identity").symlink_to(elsewhere, target_is_directory=True)
    hand_over(home, NOBODY, skip=[])
    assert (home / "vault" / "ring.json").stat().st_uid == NOBODY.uid
    assert (home / "identity").lstat().st_uid == NOBODY.uid
    assert (elsewhere.stat().st_uid, (elsewhere / "secret").stat().st_uid) == (0, 0)


def test_a_planted_link_where_root_will_write_is_replaced_by_roots_own_file(
    tmp_path: Path,
) -> None:
    """`temporal.json` planted as a link to a root file: claim removes the link, not the target."""
    target = tmp_path / "passwd"
    target.write_text("root:x:0:0\n")
    home = tmp_path / "home"
    home.mkdir()
    (home / "temporal.json").symlink_to(target)
    (home / "nats").symlink_to(tmp_path, target_is_directory=True)
    claim(home / "temporal.json")
    claim_dir(home / "nats")
    state = (home / "temporal.json").lstat()
    assert (stat.S_ISREG(state.st_mode), state.st_uid, state.st_size) == (True, 0, 0)
    assert stat.S_ISDIR((home / "nats").lstat().st_mode)
    assert target.read_text() == "root:x:0:0\n"
