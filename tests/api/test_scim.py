"""SCIM 2.0 through a real node: discovery, errors, PATCH, PUT, DELETE, queries and ETags."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Node

pytestmark = pytest.mark.temporal
SCIM = "application/scim+json"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


def _patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


def _user(node: Node, user_name: str, **extra: Any) -> dict[str, Any]:
    created = node.client.post(
        "/scim/v2/Users", json={"schemas": [USER], "userName": user_name, **extra}
    )
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


def _error(response: Any, status: int, scim_type: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(SCIM)
    body = response.json()
    assert body["schemas"] == [ERROR]
    assert body["status"] == str(status)
    if scim_type is not None:
        assert body.get("scimType") == scim_type, body


def test_scim_provisions_groups_and_deactivation_revokes_every_token(node: Node) -> None:
    """A SCIM user in a SCIM group gets the group's role; `active: false` kills its tokens."""
    headers = {"Content-Type": SCIM}
    user = node.client.post(
        "/scim/v2/Users",
        json={
            "schemas": [USER],
            "userName": "sue@example.com",
            "externalId": "00u1",
            "emails": [{"value": "sue@example.com", "primary": True}],
        },
        headers=headers,
    )
    assert user.status_code == 201, user.text
    assert user.headers["content-type"].startswith(SCIM)
    user_id = user.json()["id"]
    group = node.client.post(
        "/scim/v2/Groups",
        json={"schemas": [GROUP], "displayName": "finance-ops", "members": [{"value": user_id}]},
        headers=headers,
    )
    assert group.status_code == 201, group.text
    binding = {"subject_kind": "group", "subject": "finance-ops", "role": "operator"}
    assert node.client.post("/api/v1/role-bindings", json=binding).status_code == 201
    found = node.client.get("/scim/v2/Users", params={"filter": 'userName eq "sue@example.com"'})
    assert found.json()["totalResults"] == 1

    token = node.token_for("sue@example.com", None)
    with node.as_caller(token) as sue:
        assert sue.get("/api/v1/me").json()["groups"] == ["finance-ops"]
        assert sue.get("/api/v1/runs").status_code == 200
        patch = _patch({"op": "Replace", "path": "active", "value": False})
        assert node.client.patch(f"/scim/v2/Users/{user_id}", json=patch).json()["active"] is False
        assert sue.get("/api/v1/runs").status_code == 401
    missing = node.client.get("/scim/v2/Users/nope")
    _error(missing, 404)
    remove = _patch({"op": "remove", "path": f'members[value eq "{user_id}"]'})
    emptied = node.client.patch(f"/scim/v2/Groups/{group.json()['id']}", json=remove)
    assert emptied.status_code == 200, emptied.text
    assert emptied.json().get("members", []) == []


def test_scim_needs_an_identity_administrator(node: Node) -> None:
    """An operator cannot provision: 403 in SCIM's error format."""
    with node.as_caller(node.token_for("oli", "operator", "*")) as oli:
        refused = oli.post("/scim/v2/Users", json={"schemas": [USER], "userName": "x"})
    _error(refused, 403)


def test_discovery_says_what_is_supported(node: Node) -> None:
    """ServiceProviderConfig, ResourceTypes and Schemas answer, and declare no bulk."""
    config = node.client.get("/scim/v2/ServiceProviderConfig")
    assert config.status_code == 200, config.text
    declared = config.json()
    assert declared["patch"]["supported"] is True
    assert declared["bulk"]["supported"] is False
    assert declared["etag"]["supported"] is True
    assert declared["changePassword"]["supported"] is False
    types = node.client.get("/scim/v2/ResourceTypes").json()
    assert {t["id"] for t in types["Resources"]} == {"User", "Group"}
    assert node.client.get("/scim/v2/ResourceTypes/User").json()["schemaExtensions"][0][
        "schema"
    ] == (ENTERPRISE)
    listed = node.client.get("/scim/v2/Schemas").json()
    assert {s["id"] for s in listed["Resources"]} == {USER, ENTERPRISE, GROUP}
    assert node.client.get(f"/scim/v2/Schemas/{USER}").json()["name"] == "User"
    _error(node.client.get("/scim/v2/Schemas/urn:nope"), 404)
    _error(node.client.post("/scim/v2/Bulk", json={}), 501)


def test_user_name_is_mutable_unique_and_case_insensitive(node: Node) -> None:
    """A rename by PATCH and PUT lands; a clash in any case is 409; `eq` ignores case."""
    ann = _user(node, "ann@example.com")
    _user(node, "bob@example.com")
    found = node.client.get("/scim/v2/Users", params={"filter": 'userName eq "ANN@example.com"'})
    assert [u["id"] for u in found.json()["Resources"]] == [ann["id"]]
    clash = node.client.post(
        "/scim/v2/Users", json={"schemas": [USER], "userName": "BOB@example.com"}
    )
    _error(clash, 409, "uniqueness")
    spaced = node.client.post("/scim/v2/Users", json={"schemas": [USER], "userName": "a b"})
    _error(spaced, 400, "invalidValue")
    renamed = node.client.patch(
        f"/scim/v2/Users/{ann['id']}",
        json=_patch({"op": "replace", "path": "userName", "value": "anne@example.com"}),
    )
    assert renamed.json()["userName"] == "anne@example.com"
    put = node.client.put(
        f"/scim/v2/Users/{ann['id']}",
        json={"schemas": [USER], "userName": "anna@example.com", "displayName": "Anna"},
    )
    assert put.status_code == 200, put.text
    again = node.client.get(f"/scim/v2/Users/{ann['id']}").json()
    assert (again["userName"], again["displayName"]) == ("anna@example.com", "Anna")


def test_patch_applies_entra_paths_and_refuses_what_it_cannot(node: Node) -> None:
    """Entra's value-filter and sub-attribute paths land; a bad path is 400, never 200."""
    user = _user(
        node,
        "eve@example.com",
        emails=[{"value": "eve@example.com", "type": "work", "primary": True}],
    )
    url = f"/scim/v2/Users/{user['id']}"
    patched = node.client.patch(
        url,
        json=_patch(
            {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "e@example.com"},
            {"op": "Add", "path": "name.givenName", "value": "Eve"},
            {"op": "Add", "path": "title", "value": "Engineer"},
            {"op": "Add", "path": f"{ENTERPRISE}:department", "value": "R&D"},
            {"op": "Add", "path": "phoneNumbers", "value": [{"value": "+1 555", "type": "work"}]},
        ),
    )
    assert patched.status_code == 200, patched.text
    read = node.client.get(url).json()
    assert read["emails"][0]["value"] == "e@example.com"
    assert read["name"]["givenName"] == "Eve"
    assert read["title"] == "Engineer"
    assert read[ENTERPRISE]["department"] == "R&D"
    assert read["phoneNumbers"][0]["value"] == "+1 555"
    removed = node.client.patch(url, json=_patch({"op": "remove", "path": "title"}))
    assert "title" not in removed.json()
    _error(
        node.client.patch(url, json=_patch({"op": "replace", "path": "nope", "value": 1})),
        400,
        "invalidPath",
    )
    _error(node.client.patch(url, json=_patch({"op": "jump", "path": "title"})), 400)
    _error(
        node.client.get("/scim/v2/Users", params={"filter": "userName eq"}), 400, "invalidFilter"
    )


def test_delete_makes_a_user_404_and_revokes_its_tokens(node: Node) -> None:
    """After DELETE the user is gone from reads and queries, and its token is dead at once."""
    user = _user(node, "dan@example.com")
    token = node.token_for("dan@example.com", "analyst", "default")
    with node.as_caller(token) as dan:
        assert dan.get("/api/v1/me").status_code == 200
        assert node.client.delete(f"/scim/v2/Users/{user['id']}").status_code == 204
        assert dan.get("/api/v1/me").status_code == 401
    _error(node.client.get(f"/scim/v2/Users/{user['id']}"), 404)
    _error(node.client.delete(f"/scim/v2/Users/{user['id']}"), 404)
    listed = node.client.get("/scim/v2/Users", params={"filter": 'userName eq "dan@example.com"'})
    assert listed.json()["totalResults"] == 0
    again = _user(node, "dan@example.com")
    assert again["id"] != user["id"]
    gone = node.client.post(
        "/scim/v2/Groups",
        json={"schemas": [GROUP], "displayName": "gone", "members": [{"value": user["id"]}]},
    )
    _error(gone, 400, "invalidValue")


def test_attributes_paging_sorting_and_etags(node: Node) -> None:
    """Projections, clamped paging, sortBy, /.search and If-Match (412 when stale) hold."""
    users = [_user(node, f"u{n}@example.com", displayName=f"User {n}") for n in (3, 1, 2)]
    group = node.client.post(
        "/scim/v2/Groups",
        json={"schemas": [GROUP], "displayName": "g", "members": [{"value": users[0]["id"]}]},
    ).json()
    listed = node.client.get("/scim/v2/Groups", params={"excludedAttributes": "members"})
    assert "members" not in listed.json()["Resources"][0]
    only = node.client.get(f"/scim/v2/Users/{users[0]['id']}", params={"attributes": "userName"})
    assert "displayName" not in only.json()
    assert only.json()["userName"] == "u3@example.com"
    page = node.client.get(
        "/scim/v2/Users",
        params={
            "startIndex": 0,
            "count": 100000,
            "sortBy": "userName",
            "filter": 'userName sw "u"',
        },
    ).json()
    assert page["startIndex"] == 1
    assert [u["userName"] for u in page["Resources"]] == [
        "u1@example.com",
        "u2@example.com",
        "u3@example.com",
    ]
    second = node.client.get(
        "/scim/v2/Users",
        params={"startIndex": 2, "count": 1, "sortBy": "userName", "filter": 'userName sw "u"'},
    ).json()
    assert [u["userName"] for u in second["Resources"]] == ["u2@example.com"]
    assert second["totalResults"] == 3

    across = node.client.post(
        "/scim/v2/.search",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": 'userName eq "u1@example.com" or displayName eq "g"',
            "attributes": ["id"],
        },
    )
    assert across.status_code == 200, across.text
    assert {r["id"] for r in across.json()["Resources"]} == {users[1]["id"], group["id"]}

    url = f"/scim/v2/Groups/{group['id']}"
    current = node.client.get(url)
    tag = current.headers["ETag"]
    assert current.json()["meta"]["version"] == tag
    rename = _patch({"op": "replace", "path": "displayName", "value": "g2"})
    assert node.client.patch(url, json=rename, headers={"If-Match": tag}).status_code == 200
    stale = node.client.patch(url, json=rename, headers={"If-Match": tag})
    _error(stale, 412)
