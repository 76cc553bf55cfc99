"""What SCIM users and groups share: the kept document, its version (the ETag) and paging."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scim2_models import PreconditionFailedException, SearchRequest

from amosflow.services._scim_models import MAX_RESULTS, POLICY
from amosflow.store import ScimResourceRow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

#: Attributes the node derives and never keeps in the stored document: its own id and meta,
#: a user's groups (held in the node's own tables), and a password (users sign in through
#: the IdP). A group's members are kept only for the ``display`` the IdP gave each; who is a
#: member is always read from the node's tables.
_DERIVED = ("id", "meta", "groups", "password")


def etag(version: int) -> str:
    """The weak ETag of a resource version, as ``meta.version`` and the ETag header carry it."""
    return f'W/"{version}"'


def check_version(row: ScimResourceRow | None, if_match: str | None) -> None:
    """Refuse a write whose If-Match names another version (RFC 7644 §3.14): 412."""
    if if_match is None or if_match.strip() == "*":
        return
    current = etag(row.version if row is not None else 0)
    wanted = {tag.strip() for tag in if_match.split(",")}
    if current not in wanted and current.removeprefix("W/") not in wanted:
        raise PreconditionFailedException(detail=f"the resource is at version {current}")


def scim_row(session: Session, resource_id: str) -> ScimResourceRow | None:
    """The kept document of a user or group, if it has one."""
    return session.get(ScimResourceRow, resource_id)


def _document(resource: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = resource.model_dump(mode="json", scim_policy=POLICY)
    return {key: value for key, value in dumped.items() if key not in _DERIVED}


def save(session: Session, resource_id: str, kind: str, resource: Any) -> None:
    """Keep ``resource``'s document (what the node does not derive) and count a new version."""
    row = scim_row(session, resource_id)
    if row is None:
        session.add(
            ScimResourceRow(
                id=resource_id, resource_type=kind, document=_document(resource), version=1
            )
        )
    else:
        row.document = _document(resource)
        row.version += 1
        row.deleted_at = None
    session.flush()


def page(resources: list[Any], search: SearchRequest[Any]) -> tuple[int, list[Any]]:
    """Filter, sort and page ``resources`` as ``search`` asks; the total before paging."""
    if search.filter is not None:
        resources = [r for r in resources if search.filter.match(r)]
    if search.sort_by is not None:
        resources = search.sort(resources)
    start = search.start_index_0 or 0
    count = min(search.count if search.count is not None else MAX_RESULTS, MAX_RESULTS)
    return len(resources), resources[start : start + count]
