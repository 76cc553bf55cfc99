"""The one policy function: folders hide (404), roles limit (403), conditions and scopes narrow."""

from __future__ import annotations

import pytest

from amosflow.errors import NotFoundError, PermissionDeniedError
from amosflow.identity import (
    PERMISSIONS,
    ROLE_PERMISSIONS,
    Binding,
    Principal,
    allows,
    authorize,
    folder_scope,
    holds_unconditionally,
    sees,
)


def _who(*bindings: Binding, scopes: frozenset[str] | None = None) -> Principal:
    return Principal(id="p", kind="user", username="p", bindings=bindings, scopes=scopes)


def test_a_folder_binding_grants_only_in_that_folder() -> None:
    sales = _who(Binding("operator", "sales"))
    assert allows(sales, "runs.start", "sales")
    assert not allows(sales, "runs.start", "finance")
    assert folder_scope(sales, "runs.read").folders == frozenset({"sales"})
    assert not folder_scope(sales, "runs.read").every


def test_another_folder_is_not_found_and_a_missing_right_is_forbidden() -> None:
    sales = _who(Binding("analyst", "sales"))
    with pytest.raises(NotFoundError, match="no such run"):
        authorize(sales, "runs.cancel", folder="finance", missing="no such run")
    with pytest.raises(PermissionDeniedError):
        authorize(sales, "runs.cancel", folder="sales")


def test_global_permissions_need_a_star_binding() -> None:
    folder_admin = _who(Binding("administrator", "sales"))
    everywhere = _who(Binding("administrator"))
    assert not allows(folder_admin, "identity.write")
    assert not allows(folder_admin, "identity.write", "sales")
    assert allows(everywhere, "identity.write")


def test_a_condition_grants_only_where_it_holds_and_fails_closed() -> None:
    small = _who(Binding("operator", "default", "resource.inputs.amount < 10000"))
    assert allows(small, "runs.start", "default", {"inputs": {"amount": 5}})
    assert not allows(small, "runs.start", "default", {"inputs": {"amount": 50000}})
    assert not allows(small, "runs.start", "default", {"inputs": {}})  # cannot decide: no
    assert not allows(small, "runs.start", "default")  # nothing to decide on: grants nothing
    assert sees(small, "runs.read", "default")  # still knows where to look: 403, not 404
    assert folder_scope(small, "runs.read").folders == frozenset({"default"})


def test_a_conditional_binding_grants_nothing_where_no_resource_is_checked() -> None:
    """`administrator@* if resource.folder == 'lab'` holds no install-wide right (finding 6)."""
    lab = _who(Binding("administrator", "*", "resource.folder == 'lab'"))
    assert allows(lab, "flows.write", "lab")
    assert not allows(lab, "flows.write", "default")
    assert not allows(lab, "identity.write")
    with pytest.raises(PermissionDeniedError):
        authorize(lab, "identity.write")
    assert not holds_unconditionally(lab, ["flows.read"], "lab")


def test_nobody_holds_unconditionally_more_than_its_unconditional_bindings() -> None:
    """A folder administrator holds its role there outright, and nothing install-wide."""
    sales = _who(Binding("administrator", "sales"), Binding("approver", "*", "true"))
    assert holds_unconditionally(sales, ROLE_PERMISSIONS["analyst"], "sales")
    assert not holds_unconditionally(sales, ROLE_PERMISSIONS["analyst"], "finance")
    assert not holds_unconditionally(sales, ROLE_PERMISSIONS["approver"], "*")
    assert not holds_unconditionally(sales, ["identity.write"], "sales")


def test_approving_an_mcp_server_is_an_install_wide_right() -> None:
    """A folder administrator may not approve an MCP server, an administrator of `*` may."""
    assert not allows(_who(Binding("administrator", "sales")), "mcp.approve", "sales")
    assert allows(_who(Binding("administrator")), "mcp.approve", "sales")


def test_scopes_narrow_and_never_widen() -> None:
    scoped = _who(Binding("administrator"), scopes=frozenset({"flows.read"}))
    assert allows(scoped, "flows.read", "x")
    assert not allows(scoped, "flows.write", "x")
    assert folder_scope(scoped, "runs.read").empty
    viewer = _who(Binding("analyst"), scopes=frozenset({"identity.write"}))
    assert not allows(viewer, "identity.write")


def test_no_binding_no_access_and_unknown_permissions_are_bugs() -> None:
    nobody = _who()
    assert not any(allows(nobody, p, "default") for p in PERMISSIONS)
    with pytest.raises(ValueError, match="unknown permission"):
        allows(nobody, "flows.fly", "default")
