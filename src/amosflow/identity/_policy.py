"""The one policy function: may this principal do this to a resource in this folder?

Routes never look at roles. They name a permission (``runs.start``) and, where there is
one, the resource; ``authorize`` answers by raising, ``folder_scope`` tells a list query which
folders to look in. A resource the caller may not even read answers 404, exactly like one
that does not exist, so folders leak nothing; one it may read but not change answers 403.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from amosflow.dsl.expr import evaluate_condition
from amosflow.errors import ExpressionError, NotFoundError, PermissionDeniedError
from amosflow.identity._principal import ALL_FOLDERS, Binding, Principal

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

_READ = frozenset(
    {
        "flows.read",
        "configs.read",
        "models.read",
        "mcp.read",
        "triggers.read",
        "runs.read",
        "secrets.read",
        "approvals.read",
        "runners.read",
        "folders.read",
    }
)
_AUDIT = frozenset({"audit.read", "audit.export"})
_MANAGE = frozenset(
    {
        "flows.write",
        "configs.write",
        "models.write",
        "mcp.write",
        "mcp.approve",
        "triggers.write",
        "runs.start",
        "runs.cancel",
        "secrets.write",
        "approvals.decide",
        "runners.write",
        "folders.write",
        "identity.read",
        "identity.write",
        "audit.manage",
    }
)

#: Every permission there is; ``docs/security.md`` shows this matrix, and a test keeps them equal.
PERMISSIONS: frozenset[str] = _READ | _AUDIT | _MANAGE

#: What each role allows. Identity and folder administration only count in a ``*`` binding.
ROLE_PERMISSIONS: Mapping[str, frozenset[str]] = {
    "analyst": frozenset(
        {
            "flows.read",
            "flows.write",
            "configs.read",
            "models.read",
            "mcp.read",
            "triggers.read",
            "runs.read",
            "runs.start",
            "secrets.read",
            "approvals.read",
            "folders.read",
        }
    ),
    "operator": frozenset(
        {
            "flows.read",
            "configs.read",
            "configs.write",
            "models.read",
            "models.write",
            "mcp.read",
            "mcp.write",
            "triggers.read",
            "triggers.write",
            "runs.read",
            "runs.start",
            "runs.cancel",
            "secrets.read",
            "secrets.write",
            "approvals.read",
            "runners.read",
            "folders.read",
        }
    ),
    "approver": frozenset(
        {"flows.read", "runs.read", "approvals.read", "approvals.decide", "folders.read"}
    ),
    "auditor": _READ | _AUDIT | frozenset({"identity.read"}),
    "service": frozenset(
        {
            "flows.read",
            "configs.read",
            "models.read",
            "triggers.read",
            "runs.read",
            "runs.start",
            "runs.cancel",
            "folders.read",
        }
    ),
    "administrator": PERMISSIONS,
}
ROLES: tuple[str, ...] = tuple(ROLE_PERMISSIONS)
#: Not tied to any folder: granted only by a binding on ``*``. Approving an MCP server is one:
#: approval starts the server's command on the node, outside any folder.
GLOBAL_PERMISSIONS = frozenset(
    {"identity.read", "identity.write", "folders.write", "runners.read", "runners.write"}
    | {"audit.manage", "mcp.approve"}
)


@dataclass(frozen=True, slots=True)
class FolderScope:
    """The folders a principal may look in for one permission; ``every`` means all of them."""

    every: bool
    folders: frozenset[str] = frozenset()

    def __contains__(self, folder: object) -> bool:
        return self.every or folder in self.folders

    @property
    def empty(self) -> bool:
        """True when there is nowhere to look."""
        return not self.every and not self.folders


def _reader_of(permission: str) -> str:
    return permission.split(".", 1)[0] + ".read"


def _scoped(principal: Principal, permission: str) -> bool:
    return principal.scopes is None or permission in principal.scopes


def _grants(binding: Binding, permission: str, folder: str | None) -> bool:
    if permission not in ROLE_PERMISSIONS.get(binding.role, frozenset()):
        return False
    if binding.folder == ALL_FOLDERS:
        return True
    return folder is not None and permission not in GLOBAL_PERMISSIONS and binding.folder == folder


def _condition_holds(
    binding: Binding, principal: Principal, resource: Mapping[str, Any] | None
) -> bool:
    """Whether a binding's condition holds on ``resource``; no resource decides nothing."""
    if binding.condition is None:
        return True
    if resource is None:
        # Nothing to evaluate the condition on: a conditional binding grants nothing here.
        return False
    scope = {
        "resource": dict(resource),
        "principal": {
            "id": principal.id,
            "username": principal.username,
            "kind": principal.kind,
            "groups": list(principal.groups),
        },
    }
    try:
        return evaluate_condition("${" + binding.condition + "}", scope, "/condition")
    except ExpressionError:
        # A condition that cannot be decided grants nothing: deny by default.
        return False


def allows(
    principal: Principal,
    permission: str,
    folder: str | None = None,
    resource: Mapping[str, Any] | None = None,
) -> bool:
    """Whether any binding of ``principal`` grants ``permission`` in ``folder`` on ``resource``.

    ``folder=None`` asks about a permission not tied to a folder (identity administration).
    A conditional binding grants only on a resource its condition holds for: asked without a
    resource, only unconditional bindings count. With a folder and no resource, the folder
    itself is the resource (``resource.folder``), so a condition on the folder still decides.
    """
    if permission not in PERMISSIONS:
        raise ValueError(f"unknown permission {permission!r}")
    if not _scoped(principal, permission):
        return False
    if folder is not None:
        resource = {**(resource or {}), "folder": folder}
    return any(
        _grants(binding, permission, folder) and _condition_holds(binding, principal, resource)
        for binding in principal.bindings
    )


def holds_unconditionally(principal: Principal, permissions: Iterable[str], folder: str) -> bool:
    """Whether ``principal`` holds every one of ``permissions`` in ``folder`` with no condition.

    ``folder`` may be ``*``: then only unconditional bindings on every folder count. This is
    the bar for handing a right to someone else: nobody grants more than they hold outright.
    """
    unconditional = [b for b in principal.bindings if b.condition is None]
    return all(
        _scoped(principal, permission)
        and any(_grants(binding, permission, folder) for binding in unconditional)
        for permission in permissions
    )


def sees(principal: Principal, reader: str, folder: str) -> bool:
    """Whether any binding, conditional or not, lets ``principal`` look into ``folder``.

    This decides only what a refusal says (403 rather than 404); it grants nothing.
    """
    return folder in folder_scope(principal, reader)


def folder_scope(principal: Principal, permission: str) -> FolderScope:
    """Where a list query for ``permission`` may look."""
    if permission not in PERMISSIONS:
        raise ValueError(f"unknown permission {permission!r}")
    if not _scoped(principal, permission):
        return FolderScope(every=False)
    granting = [
        b for b in principal.bindings if permission in ROLE_PERMISSIONS.get(b.role, frozenset())
    ]
    if any(b.folder == ALL_FOLDERS for b in granting):
        return FolderScope(every=True)
    return FolderScope(every=False, folders=frozenset(b.folder for b in granting))


def authorize(
    principal: Principal,
    permission: str,
    *,
    folder: str | None = None,
    resource: Mapping[str, Any] | None = None,
    missing: str = "not found",
) -> None:
    """Raise unless ``principal`` may do ``permission``; the only check routes make.

    Raises NotFoundError (``missing`` as its message) when the caller cannot see into
    ``folder`` at all, so a resource elsewhere looks exactly like one that does not exist, and
    PermissionDeniedError when it can but may not do this — including when the ABAC condition
    of its bindings is false for this resource, or cannot be evaluated on it.
    """
    if folder is not None and not sees(principal, _reader_of(permission), folder):
        raise NotFoundError(missing)
    if not allows(principal, permission, folder, resource):
        raise PermissionDeniedError(f"{principal.actor} may not {permission}")
