"""What the node's SCIM service is: its resources, its declared capabilities, its errors.

The resources and their grammar (attribute paths, filters, PATCH) are ``scim2-models``'
(decision 0059): User with the enterprise extension, and Group. The service provider
configuration says exactly what the node does: PATCH, filters, sorting and ETags yes; bulk,
password changes and cursors no.
"""

from __future__ import annotations

from typing import Any

from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    EnterpriseUser,
    ETag,
    Filter,
    Group,
    Patch,
    ResourceType,
    ScimPolicy,
    ScimProvider,
    ServiceProviderConfig,
    Sort,
    User,
)

#: A User as the node serves it: the core schema and the enterprise extension.
UserResource = User[EnterpriseUser]
#: The most resources one query answers; a larger ``count`` is clamped to it.
MAX_RESULTS = 1000

CONFIG = ServiceProviderConfig(
    documentation_uri=None,
    patch=Patch(supported=True),
    bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
    filter=Filter(supported=True, max_results=MAX_RESULTS),
    change_password=ChangePassword(supported=False),
    sort=Sort(supported=True),
    etag=ETag(supported=True),
    authentication_schemes=[
        AuthenticationScheme(
            type="oauthbearertoken",
            name="Bearer token",
            description="An API token of a principal holding identity.write",
            primary=True,
        )
    ],
)

#: How the node reads what IdPs send: attributes of schemas it does not serve are dropped
#: (RFC 7644 §3.3 lets a server ignore them; Okta and Entra send custom ones), a ``remove``
#: with a ``value`` removes those values (Entra's member removal), and a PATCH path filter that
#: matches nothing creates the entry (Entra's ``emails[type eq "work"].value`` on a user
#: without a work address).
POLICY = ScimPolicy(
    unknown=ScimPolicy.Unknown.ignore,
    remove_value_as_filter=ScimPolicy.RemoveValue.apply,
    unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create,
)

#: How the node reads a PATCH: the same, except that a path naming no attribute it serves is
#: refused (400 invalidPath), since dropping it would answer 200 for a change that never
#: landed, and the IdP would believe it had.
PATCH_POLICY = POLICY.model_copy(update={"unknown": ScimPolicy.Unknown.forbid})

PROVIDER = ScimProvider(
    models=[User, EnterpriseUser, Group],
    resource_types=[
        ResourceType.from_resource(UserResource),
        ResourceType.from_resource(Group),
    ],
    config=CONFIG,
    policy=POLICY,
)


def schemas() -> list[dict[str, Any]]:
    """What ``/Schemas`` lists: one schema per resource and extension."""
    return [schema.model_dump(mode="json") for schema in PROVIDER.schemas]


def resource_types() -> list[dict[str, Any]]:
    """What ``/ResourceTypes`` lists: Users (with the enterprise extension) and Groups."""
    return [resource.model_dump(mode="json") for resource in PROVIDER.resource_types]


def config() -> dict[str, Any]:
    """What ``/ServiceProviderConfig`` answers."""
    return CONFIG.model_dump(mode="json")
