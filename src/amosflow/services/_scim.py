"""SCIM provisioning of users and groups from the enterprise IdP: the state changes behind /scim/v2.

A resource is a ``scim2-models`` User (with the enterprise extension) or Group. What the rest
of the node reads (username, display name, email, external id, active, group members) lives
on the principal or group; the whole document lives beside it in ``scim_resources`` so every
attribute an IdP writes reads back (decision 0059).

Deactivating a user (``active: false``) or deleting it revokes every session and API token it
holds in the same transaction, so an IdP offboarding takes effect on the next request. A
deleted user keeps its principal, renamed out of the way, so the audit trail still resolves,
but SCIM answers 404 for it (decision 0060). Each change commits with its audit record, by
the identity of the IdP's token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from amosflow import identity
from amosflow.services import _scim_documents as docs
from amosflow.services._scim_documents import etag
from amosflow.services._scim_groups import (
    create_group,
    delete_group,
    get_group,
    group,
    patch_group,
    replace_group,
    search_groups,
)
from amosflow.services._scim_models import (
    MAX_RESULTS,
    PATCH_POLICY,
    POLICY,
    UserResource,
    config,
    resource_types,
    schemas,
)
from amosflow.services._scim_users import (
    create_user,
    delete_user,
    get_user,
    patch_user,
    replace_user,
    search_users,
    users,
)

if TYPE_CHECKING:
    from scim2_models import SearchRequest

    from amosflow.store import Store

__all__ = [
    "MAX_RESULTS",
    "PATCH_POLICY",
    "POLICY",
    "UserResource",
    "config",
    "create_group",
    "create_user",
    "delete_group",
    "delete_user",
    "etag",
    "get_group",
    "get_user",
    "patch_group",
    "patch_user",
    "replace_group",
    "replace_user",
    "resource_types",
    "schemas",
    "search_all",
    "search_groups",
    "search_users",
]


def search_all(store: Store, search: SearchRequest[Any]) -> tuple[int, list[Any]]:
    """Users and groups a query matches (POST /.search, RFC 7644 §3.4.3), sorted and paged.

    An attribute one resource type lacks evaluates to false for it, as §3.4.2.1 asks.
    """
    with store.session(read_only=True) as session:
        found: list[Any] = [*users(session)]
        found.extend(group(session, row) for row in identity.list_groups(session))
    return docs.page(found, search)
