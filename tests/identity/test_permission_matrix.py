"""The permission matrix in docs/security.md is the one the policy enforces."""

from __future__ import annotations

from pathlib import Path

from amosflow.identity import GLOBAL_PERMISSIONS, PERMISSIONS, ROLE_PERMISSIONS, ROLES

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"


def _matrix() -> tuple[list[str], dict[str, set[str]]]:
    rows = [line for line in DOC.read_text(encoding="utf-8").splitlines() if line.startswith("| `")]
    header = next(
        line
        for line in DOC.read_text(encoding="utf-8").splitlines()
        if line.startswith("| permission")
    )
    roles = [cell.strip() for cell in header.strip("|").split("|")[1:]]
    granted: dict[str, set[str]] = {role: set() for role in roles}
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        permission = cells[0].split("`")[1]
        for role, cell in zip(roles, cells[1:], strict=True):
            if cell == "✔":
                granted[role].add(permission)
    return roles, granted


def test_the_documented_matrix_equals_the_policy() -> None:
    roles, granted = _matrix()
    assert roles == list(ROLES)
    for role in ROLES:
        assert granted[role] == set(ROLE_PERMISSIONS[role]), role


def test_every_permission_is_documented_and_global_ones_are_marked() -> None:
    text = DOC.read_text(encoding="utf-8")
    for permission in PERMISSIONS:
        marker = f"`{permission}` ¹" if permission in GLOBAL_PERMISSIONS else f"`{permission}` |"
        assert marker in text, permission
